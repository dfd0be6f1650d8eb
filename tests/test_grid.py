"""The cross-target grid: every target x every local runtime x {dense, sparse, binary, sparse+binary} x {vgg, resnet,
spikformer}, each artifact run by its real runner on real digits images and compared with the one PyTorch
reference (logits, predictions, spikes where the runtime exposes them) within the bound its target states
(Backend.tolerance). Lava (Loihi's bit-accurate simulator, slow) runs one small case only."""
import os

import numpy as np
import pytest
import torch
from conftest import DIGITS_RECIPES, VARIANTS

from slt_deploy.backends import all_targets, get_target
from slt_deploy.checkpoint import load
from slt_deploy.data import load_dataset
from slt_deploy.export import export
from slt_deploy.verify import verify_runner

IMAGES = 32
RUNTIMES = [("nir", "interpreter"), ("onnx", "cpu"), ("packed", "numpy"), ("packed", "c"), ("loihi", "reference")]
LAVA = ("loihi", "lava", "digits-tiny", "sparse+binary")
LAVA_PY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venv-lava", "bin", "python")
# (target, recipe, variant) -> why the target does not take it; nothing is skipped today
UNSUPPORTED: dict = {}

CASES = [(t, rt, rc, v) for t, rt in RUNTIMES for rc in DIGITS_RECIPES for v in VARIANTS]


def test_grid_covers_every_registered_target_and_runtime():
    """A new target or runtime joins the grid, or this test names it (cuda needs a GPU, lava is the one case)."""
    have = {(t, rt) for t, b in all_targets().items() for rt in b.runtimes}
    assert have - set(RUNTIMES) == {("onnx", "cuda"), ("loihi", "lava")}


@pytest.fixture(scope="module")
def images():
    return load_dataset("digits", seed=0).test.x[:IMAGES].numpy()


@pytest.fixture(scope="module")
def artifact(checkpoint, tmp_path_factory):
    """artifact(target, recipe, variant) -> (checkpoint, artifact path); each exported once per module."""
    root, cache = tmp_path_factory.mktemp("grid"), {}

    def get(target, recipe, variant):
        key = (target, recipe, variant)
        if key not in cache:
            ck = checkpoint(recipe, variant)
            b = get_target(target)
            name = f"{recipe}-{variant.replace('+', '-')}"
            out = str(root / (f"{name}.{target}" if b.suffix == "/" else name + b.suffix))
            export(ck, target, out)
            cache[key] = ck, out
        return cache[key]

    return get


def check_artifact(target, runtime, ckpt, path, images) -> dict:
    """Run `path` on `runtime` of `target` against the PyTorch reference of `ckpt`; assert the target's bound."""
    b = get_target(target)
    runner = b.open_runner(path, runtime)
    tol = b.tolerance(runner) if callable(b.tolerance) else b.tolerance
    model, _ = load(ckpt)
    with torch.no_grad():
        rep = verify_runner(model, runner, images, np.zeros(len(images), np.int64), batch=IMAGES, tolerance=tol)
    assert rep["samples"] == len(images)
    assert rep["ok"], {k: rep[k] for k in ("logits_bit_identical", "pred_agreement", "max_abs_logit_diff",
                                           "spike_agreement_min", "tolerance")}
    if tol.get("exact", True):
        assert rep["logits_bit_identical"] == 1.0 and rep["pred_agreement"] == 1.0
    else:  # a stated bound is a bound on THIS comparison, not a waiver: predictions must still mostly agree
        assert rep["pred_agreement"] >= tol["min_pred_agreement"]
    if rep["spike_layers_compared"]:
        assert rep["spike_agreement_min"] >= (1.0 if tol.get("exact", True) else tol["min_spike_agreement"])
    return rep


@pytest.mark.parametrize("target,runtime,recipe,variant", CASES, ids=["-".join(c) for c in CASES])
def test_grid(artifact, images, target, runtime, recipe, variant):
    if (target, recipe, variant) in UNSUPPORTED:
        pytest.skip(UNSUPPORTED[target, recipe, variant])
    ck, path = artifact(target, recipe, variant)
    rep = check_artifact(target, runtime, ck, path, images)
    # runtimes that expose spikes must expose them: the comparison above then covered every layer they report
    if (target, runtime) in (("nir", "interpreter"), ("packed", "numpy"), ("packed", "c"), ("loihi", "reference")):
        assert rep["spike_layers_compared"] >= 2, rep["spike_layers_compared"]


@pytest.mark.skipif(not os.path.exists(LAVA_PY), reason="no .venv-lava (make setup builds it)")
def test_grid_lava_one_small_case(artifact, images):
    target, runtime, recipe, variant = LAVA
    ck, path = artifact(target, recipe, variant)
    check_artifact(target, runtime, ck, path, images[:8])
