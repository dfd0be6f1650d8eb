"""Shared fixtures. ONE checkpoint factory for the whole suite: `checkpoint(recipe, variant, epochs)` trains a
digits recipe once per test session (real data) and derives its ticket variants from that one dense model."""
from __future__ import annotations

import os
import socket
import sys

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

DIGITS_RECIPES = ["digits-tiny", "digits-resnet-tiny", "digits-spikformer-tiny"]
# variant -> (binary, kept fraction of every synaptic layer's weights); the four kinds of ticket the targets take
VARIANTS = {"dense": (False, 1.0), "sparse": (False, 0.2), "binary": (True, 1.0), "sparse+binary": (True, 0.1)}
PATCHES = [0, 2, 3, 5, 8, 9, 12, 15]   # transformer tickets keep 8 of the 16 digits patches


def prune_to(layer, keep: float):
    """Keep the `keep` fraction of largest-magnitude weights of a synaptic layer (its mask), ties kept."""
    w = layer.weight.detach().abs()
    k = max(1, int(round(keep * w.numel())))
    thr = w.flatten().kthvalue(w.numel() - k + 1).values
    layer.mask.copy_((w >= thr).float())


def _as_ticket(model, binary: bool, keep: float):
    """A trained dense model -> ticket in place: magnitude masks, binarized weights, a patch subset for transformers
    (no fine-tuning); the ticket methods in slt_deploy/tickets/ produce checkpoints of exactly this form."""
    from slt_deploy.nn import synapses

    for _, layer in synapses(model):
        if keep < 1.0:
            prune_to(layer, keep)
        layer.binary = binary
    if keep < 1.0:
        for m in model.modules():
            if hasattr(m, "index") and hasattr(m, "set_index"):
                m.set_index(PATCHES)
    model.recipe = {**model.recipe, "binary": binary}
    return model


def _lively_untrained(recipe: str, binary: bool, keep: float, seed: int = 0):
    """An untrained model with livelier spikes (scaled weights, random masks of density `keep`, random BN
    statistics, a patch subset): every layer spikes, no training time (the packed tests and the fuzz corpus)."""
    from slt_deploy.nn import synapses
    from slt_deploy.zoo import build_model, load_recipe

    model = build_model({**load_recipe(recipe), "binary": binary})
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, s in synapses(model):
            s.weight.mul_(3.0 / keep ** 0.5)
            if keep < 1.0:
                s.mask.copy_((torch.rand(s.mask.shape, generator=g) < keep).float())
            if s.bn is not None:
                s.bn.running_mean.uniform_(-0.2, 0.2, generator=g)
                s.bn.running_var.uniform_(0.5, 2.0, generator=g)
                s.bn.bias.uniform_(0.0, 1.0, generator=g)
        for m in model.modules():
            if hasattr(m, "index") and hasattr(m, "set_index"):
                m.set_index(PATCHES)
    return model


def make_checkpoint(root: str, recipe: str, binary: bool = False, keep: float = 1.0, epochs: int = 2,
                    dense_dir: str | None = None) -> str:
    """THE checkpoint factory -> folder under `root`. epochs > 0: a ticket of the dense model trained `epochs` on
    real digits (trained here unless `dense_dir` holds it); epochs == 0: an untrained lively model."""
    from slt_deploy.checkpoint import load, save
    from slt_deploy.data import load_dataset
    from slt_deploy.train import evaluate, train
    from slt_deploy.zoo import build_model, load_recipe

    out = os.path.join(root, f"{recipe}-{epochs}-{int(binary)}-{keep}")
    if epochs == 0:
        save(_lively_untrained(recipe, binary, keep), out, labels=[str(i) for i in range(10)])
    elif dense_dir is None:
        r = load_recipe(recipe)
        data = load_dataset(r["dataset"], seed=int(r.get("seed", 0)))
        model = build_model(r)
        train(model, data, r["train"], epochs=epochs, progress=False)
        if binary or keep < 1.0:
            _as_ticket(model, binary, keep)
        save(model, out, metrics={"test_acc": evaluate(model, data.test)}, labels=data.labels)
    else:
        model, meta = load(dense_dir)
        save(_as_ticket(model, binary, keep), out, labels=meta["labels"])
    return out


@pytest.fixture(scope="module")
def data():
    """The sklearn digits dataset (real data, seconds), loaded once per test module."""
    from slt_deploy.data import load_dataset

    return load_dataset("digits")


@pytest.fixture
def free_port():
    """A TCP port free on the loopback now (torchrun's rendezvous)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """checkpoint(recipe, variant="dense", epochs=2) -> checkpoint folder, made once per session; trained variants
    are derived from the one dense model of (recipe, epochs)."""
    cache = {}
    root = str(tmp_path_factory.mktemp("ckpts"))

    def get(recipe, variant="dense", epochs=2):
        key = (recipe, variant, epochs)
        if key not in cache:
            binary, keep = VARIANTS[variant]
            dense = None if variant == "dense" or epochs == 0 else get(recipe, "dense", epochs)
            cache[key] = make_checkpoint(root, recipe, binary, keep, epochs, dense_dir=dense)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def trained(checkpoint):
    """trained(recipe, epochs=2) -> the dense checkpoint folder of that digits recipe (checkpoint's dense case)."""
    return lambda recipe, epochs=2: checkpoint(recipe, "dense", epochs)


def ros2_test_model() -> str:
    """The model the ROS 2 tests run: $SLT_ROS2_TEST_MODEL, else a quick narrow transformer checkpoint trained once
    on Fashion-MNIST (examples/ros2/slt_ros2/quick_model.py, cached under runs/)."""
    path = os.environ.get("SLT_ROS2_TEST_MODEL")
    if path:
        return path
    from slt_deploy.data import FMNIST_DIR

    if not os.path.exists(os.path.join(FMNIST_DIR, "t10k-images-idx3-ubyte.gz")):
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    example = os.path.join(root, "examples", "ros2")
    if example not in sys.path:
        sys.path.insert(0, example)
    from slt_ros2.quick_model import NARROW, quick_checkpoint

    return quick_checkpoint(os.path.join(root, "runs"), NARROW, name="ros2-test-fmnist-spikformer")
