"""Issue 2: data, spiking blocks, zoo, training, checkpoints, CLI errors."""
import json
import os
import subprocess
import sys

import pytest
import torch

from slt_deploy.checkpoint import load, save
from slt_deploy.data import encode, load_dataset, load_digits
from slt_deploy.errors import SltError
from slt_deploy.nn import SConv2d, SLinear, synapses
from slt_deploy.train import evaluate, train
from slt_deploy.zoo import MODELS_DIR, build_model, load_recipe

ALL_RECIPES = sorted(f[:-5] for f in os.listdir(MODELS_DIR) if f.endswith(".yaml"))
FMNIST = "/usr/share/datasets/fashion-mnist"


def cli(*args):
    return subprocess.run([sys.executable, "-m", "slt_deploy.cli", *args], capture_output=True, text=True)


def test_digits_splits_are_reproducible_and_disjoint():
    a, b = load_digits(seed=3), load_digits(seed=3)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert len(a.train.x) + len(a.val.x) + len(a.test.x) == 1797
    assert a.input_max == 16.0 and float(a.train.x.max()) == 16.0


@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="dataset-fashion-mnist not installed")
def test_fmnist_full_dataset_loads():
    d = load_dataset("fmnist")
    assert d.input_shape == [1, 28, 28]
    assert len(d.train.x) + len(d.val.x) == 60000 and len(d.test.x) == 10000
    assert float(d.test.x.max()) == 255.0 and sorted(d.test.y.unique().tolist()) == list(range(10))


def test_missing_dataset_names_the_fix(tmp_path):
    with pytest.raises(SltError, match="dataset-fashion-mnist"):
        load_dataset("fmnist", str(tmp_path))


def test_rate_encoding_is_seeded_and_binary():
    x = load_digits().test.x[:8]
    a = encode(x, 4, "rate", 16.0, torch.Generator().manual_seed(1))
    b = encode(x, 4, "rate", 16.0, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0} and a.shape == (4, *x.shape)
    d = encode(x, 3, "direct", 16.0)
    assert torch.equal(d[2], x)


@pytest.mark.parametrize("recipe", ALL_RECIPES)
def test_every_zoo_model_runs_T_steps_and_backpropagates(recipe):
    r = load_recipe(recipe)
    m = build_model(r)
    shape = [1, 8, 8] if r["dataset"] == "digits" else [1, 28, 28]
    x = torch.randint(0, 17, (3, *shape)).float()
    out = m(x)
    assert out.shape == (3, 10)
    out.sum().backward()
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_training_on_digits_reaches_90_percent_in_seconds():
    r = load_recipe("digits-tiny")
    data = load_dataset("digits")
    m = build_model(r)
    hist = train(m, data, r["train"], epochs=6, progress=False)
    acc = evaluate(m, data.test)
    assert acc >= 90.0, acc
    assert sum(h["seconds"] for h in hist) < 120


def test_masks_stay_applied_after_optimizer_steps():
    r = load_recipe("digits-tiny")
    data = load_dataset("digits")
    m = build_model(r)
    for _, layer in synapses(m):
        layer.mask.copy_((torch.rand_like(layer.mask) > 0.7).float())
    train(m, data, r["train"], epochs=1, progress=False)
    for _, layer in synapses(m):
        assert torch.all(layer.weight[layer.mask == 0] == 0)


def test_binarized_layers_hold_exactly_plus_minus_alpha():
    for layer in (SConv2d(2, 4, 3, bn=False, binary=True), SLinear(6, 5, binary=True)):
        layer.mask.copy_((torch.rand_like(layer.mask) > 0.5).float())
        wq, s = layer.quantized()
        w = (wq * s).detach()
        alpha = (layer.weight.abs() * layer.mask).sum() / layer.mask.sum()
        vals = set(w.unique().tolist())
        assert vals <= {-alpha.item(), 0.0, alpha.item()}
        assert torch.all((w != 0) == (layer.mask != 0))


def test_eval_forward_is_the_folded_arithmetic():
    layer = SConv2d(2, 3, 3, bn=True, binary=True)
    layer.train()
    layer(torch.randint(0, 2, (4, 2, 5, 5)).float())  # move BN running stats
    layer.eval()
    x = torch.randint(0, 2, (2, 2, 5, 5)).float()
    wq, scale, bias = layer.folded()
    ref = torch.nn.functional.conv2d(x, wq, None, 1, 1) * scale.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
    assert torch.equal(layer(x), ref)


@pytest.mark.parametrize("recipe", ["digits-tiny", "digits-spikformer-tiny"])
def test_checkpoint_round_trip_is_bit_exact(tmp_path, recipe):
    r = load_recipe(recipe)
    data = load_dataset("digits")
    m = build_model(r)
    train(m, data, r["train"], epochs=1, progress=False)
    m.eval()
    save(m, str(tmp_path / "ck"), labels=data.labels)
    m2, meta = load(str(tmp_path / "ck"))
    x = data.test.x[:32]
    assert torch.equal(m(x), m2(x))
    assert meta["T"] == r["T"] and meta["input"]["range"] == [0.0, 16.0] and "torch" in meta["versions"]
    assert not any(f.endswith(".tmp") for f in os.listdir(tmp_path / "ck"))


def _saved(tmp_path):
    m = build_model(load_recipe("digits-tiny"))
    save(m, str(tmp_path / "ck"))
    return tmp_path / "ck"


def test_truncated_checkpoint_gives_one_clear_line(tmp_path):
    ck = _saved(tmp_path)
    w = ck / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    res = cli("eval", str(ck))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "model.safetensors" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_mismatched_checkpoint_names_the_layer(tmp_path):
    ck = _saved(tmp_path)
    meta = json.loads((ck / "model.json").read_text())
    meta["recipe"]["arch"]["convs"][0]["out"] = 12
    (ck / "model.json").write_text(json.dumps(meta))
    with pytest.raises(SltError, match="body.0"):
        load(str(ck))
    res = cli("eval", str(ck))
    assert res.returncode == 2 and "Traceback" not in res.stderr and "does not fit its recipe" in res.stderr


def test_missing_and_foreign_checkpoints(tmp_path):
    res = cli("eval", str(tmp_path / "nope"))
    assert res.returncode == 2 and "does not exist" in res.stderr and "Traceback" not in res.stderr
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "model.json").write_text("{not json")
    res = cli("eval", str(tmp_path / "x"))
    assert res.returncode == 2 and "not valid JSON" in res.stderr


def test_bad_recipe_is_a_clear_error(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("name: x\ndataset: cifar\nT: 4\narch: {type: vgg}\ntrain: {}\n")
    res = cli("train", str(p), "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "unknown dataset 'cifar'" in res.stderr and "Traceback" not in res.stderr
    res = cli("train", "no-such-recipe", "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "digits-tiny" in res.stderr
