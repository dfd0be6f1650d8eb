"""Quantization-aware fine-tuning for Loihi (backends/loihi/qat.py, fit.py, `slt-deploy finetune`) on digits."""
import json
import os

import numpy as np
import pytest
import torch

from slt_deploy.backends.loihi import tolerance
from slt_deploy.backends.loihi.qat import ChipArithmetic, chip_roles, plan_of, snap_to_chip
from slt_deploy.backends.loihi.runner import LoihiRunner, lava_python
from slt_deploy.checkpoint import load
from slt_deploy.data import load_dataset
from slt_deploy.export import export
from slt_deploy.nn import synapses

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY_TICKET = os.path.join(ROOT, "models", "tickets", "digits-tiny-imp75-binary")
MULTISP = os.path.join(ROOT, "models", "tickets", "digits-spikformer-tiny-multisp")


@pytest.mark.parametrize("ckpt,opts", [(BINARY_TICKET, {}), (MULTISP, {}), (BINARY_TICKET, {"scale": "mse"})])
def test_simulated_arithmetic_is_the_exports(ckpt, opts, tmp_path):
    """The fine-tuning's forward pass computes what the exported folder's runner computes (same logits)."""
    model, meta = load(ckpt)
    x = load_dataset("digits").test.x[:120]
    art = str(tmp_path / "m.loihi")
    export(ckpt, "loihi", art, **opts)
    seq = model.encode(x)
    got = LoihiRunner(art).run(seq.numpy())["logits"]
    roles = chip_roles(plan_of(model, meta, **opts))
    with torch.no_grad(), ChipArithmetic(model, roles, meta["T"], model.input_max):
        sim = model.run(seq).numpy()
    assert np.abs(sim - got).max() < 1e-3
    assert (sim.argmax(1) == got.argmax(1)).all()
    # leaving the context restores the float model
    model.eval()
    with torch.no_grad():
        assert np.abs(model.run(seq).numpy() - sim).max() > 0


def _chip_integers(plan):
    return [(L.get("weight"), L.get("bias"), L["neuron"]["vThMant"] if "neuron" in L else None) for L in plan.layers]


@pytest.mark.parametrize("ckpt", [BINARY_TICKET, MULTISP, "dense"])
def test_snap_to_chip_makes_float_compute_the_export(ckpt, trained):
    """snap_to_chip writes the export's integers back into the float model: the float model then computes the
    chip's logits; the export of the snapped model is a fixed point (snapping again changes no integer), and a layer
    whose scale stayed keeps its mantissas."""
    ckpt = trained("digits-tiny", 2) if ckpt == "dense" else ckpt
    model, meta = load(ckpt)
    x = load_dataset("digits").test.x
    p0 = plan_of(model, meta)
    roles = chip_roles(p0)
    seq = model.encode(x)
    model.eval()
    with torch.no_grad():
        before = model.run(seq).numpy()
    done = snap_to_chip(model, roles, meta["T"], model.input_max)
    assert done and all(r["kind"] != "input" for p, r in roles["synapses"].items() if p in done)
    p1 = plan_of(model, meta)
    for (w0, b0, t0), (w1, b1, t1) in zip(_chip_integers(p0), _chip_integers(p1)):
        if t0 == t1:
            for a, b in ((w0, w1), (b0, b1)):
                assert (a is None and b is None) or np.array_equal(np.asarray(a), np.asarray(b))
    snap_to_chip(model, chip_roles(p1), meta["T"], model.input_max)
    p2 = plan_of(model, meta)
    for (w1, b1, t1), (w2, b2, t2) in zip(_chip_integers(p1), _chip_integers(p2)):
        assert t1 == t2
        for a, b in ((w1, w2), (b1, b2)):
            assert (a is None and b is None) or np.array_equal(np.asarray(a), np.asarray(b))
    with torch.no_grad(), ChipArithmetic(model, chip_roles(p2), meta["T"], model.input_max):
        chip = model.run(seq).numpy()
    model.eval()
    with torch.no_grad():
        after = model.run(seq).numpy()
    d_after, d_before = np.abs(after - chip).max(1), np.abs(before - chip).max(1)
    tol = 1e-4 * np.abs(chip).max()
    assert (d_after < tol).mean() >= 0.95                              # samples with the chip's logits
    assert (d_after < tol).mean() >= (d_before < tol).mean() and d_after.sum() < d_before.sum() / 5
    assert (after.argmax(1) == chip.argmax(1)).mean() >= 0.99
    assert np.abs(after - before).max() > 0


def _finetune(ckpt, out, epochs=1):
    from slt_deploy.backends.loihi.fit import finetune

    return finetune(ckpt, out, epochs=epochs, eval_n=None, log=lambda s: None)


def test_finetune_dense_does_not_lose_agreement(trained, tmp_path):
    ck = trained("digits-tiny", 2)
    s = _finetune(ck, str(tmp_path / "fit"), epochs=2)
    assert s["after"]["n"] == 360
    assert s["after"]["agreement"] >= s["before"]["agreement"]
    m = json.load(open(tmp_path / "fit" / "model.json"))
    assert m["finetune"]["after"]["agreement"] == s["after"]["agreement"]
    assert os.path.exists(tmp_path / "fit" / "finetune.json")


def test_finetune_binary_ticket_keeps_masks_and_signs_and_lava_agrees(tmp_path):
    out = str(tmp_path / "fit")
    s = _finetune(BINARY_TICKET, out)
    assert s["after"]["agreement"] >= s["before"]["agreement"]
    a, _ = load(BINARY_TICKET)
    b, meta = load(out)
    assert meta["ticket"]["method"] == load(BINARY_TICKET)[1]["ticket"]["method"]
    for (na, la), (nb, lb) in zip(synapses(a), synapses(b)):
        assert na == nb and la.binary == lb.binary
        assert torch.equal(la.mask, lb.mask), na          # the ticket's mask is kept exactly
        if not lb.binary:
            assert (lb.weight[lb.mask == 0] == 0).all()
    art = str(tmp_path / "fit.loihi")
    export(out, "loihi", art)
    if lava_python() is None:
        pytest.skip("Lava is not installed (.venv-lava)")
    r = LoihiRunner(art)
    inp = r.chip_inputs(r.encode(load_dataset("digits").test.x[:4].numpy()))
    ref, lv = r.run_chip(inp, "reference"), r.run_chip(inp, "lava")
    for x, y in zip(ref["spikes"], lv["spikes"]):
        assert (x is None and y is None) or np.array_equal(x, y)
    assert np.array_equal(ref["v_last"], lv["v_last"])


def test_finetune_partitioned_transformer(tmp_path):
    s = _finetune(MULTISP, str(tmp_path / "fit"))
    assert s["after"]["agreement"] >= s["before"]["agreement"]
    b, _ = load(str(tmp_path / "fit"))
    a, _ = load(MULTISP)
    for (na, la), (_, lb) in zip(synapses(a), synapses(b)):
        assert torch.equal(la.mask, lb.mask) and la.binary == lb.binary, na


def test_finetune_cli_errors(tmp_path):
    from click.testing import CliRunner

    from slt_deploy.cli import cli

    r = CliRunner().invoke(cli, ["finetune", str(tmp_path / "nope"), "--target", "loihi", "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "does not exist" in str(r.exception or r.output)
    r = CliRunner().invoke(cli, ["finetune", BINARY_TICKET, "--target", "onnx", "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "has no fine-tuning" in str(r.exception or r.output)
    assert not os.path.exists(tmp_path / "o")


def test_failing_verify_names_the_fix_until_the_checkpoint_is_fine_tuned(tmp_path):
    """The shipped Fashion-MNIST MultiSp ticket, exported as trained, fails the partitioned Loihi tolerance (8-bit
    mantissas of its binary ConvPEP convs flip stem spikes: 82 % < 85 %): `verify` says how to fix it, and stops
    saying so once the checkpoint carries a `finetune` record."""
    from click.testing import CliRunner

    from slt_deploy.cli import cli
    from slt_deploy.verify import fix_hint

    ckpt = os.path.join(ROOT, "models", "tickets", "fmnist-spikformer-multisp")
    art = str(tmp_path / "ms.loihi")
    export(ckpt, "loihi", art)
    r = CliRunner().invoke(cli, ["verify", ckpt, art, "--limit", "64"])
    assert r.exit_code == 1, r.output
    assert "spike agreement" in r.output and "hint: " in r.output
    assert f"slt-deploy finetune {ckpt} --target loihi" in r.output
    _, meta = load(ckpt)
    rep = {"ok": False}
    tol = tolerance()
    assert "slt-deploy finetune" in fix_hint(rep, tol, ckpt, meta)
    assert fix_hint(rep, tol, ckpt, {**meta, "finetune": {"epochs": 1}}) is None
    assert fix_hint({"ok": True}, tol, ckpt, meta) is None
