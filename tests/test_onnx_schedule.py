"""Layer-major schedule of the unrolled ONNX form (`--opt schedule=layer`, backends/onnx/schedule.py): each synaptic
layer runs once over the T steps stacked on the batch axis. Binary models stay bit-identical to the PyTorch
reference (logits and every spike raster), float models stay within the declared tolerance, and the graph really
has one Conv/MatMul per layer instead of T."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from slt_deploy.backends.onnx.runner import OnnxRunner
from slt_deploy.checkpoint import load, save
from slt_deploy.data import load_dataset
from slt_deploy.errors import SltError
from slt_deploy.export import export
from slt_deploy.verify import verify


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def _rate_copy(src, out):
    model, meta = load(src)
    model.recipe = {**model.recipe, "encoding": "rate"}
    model.encoding = "rate"
    save(model, out, labels=meta["labels"])
    return out


def _ops(path):
    ops = {}
    for n in onnx.load(path).graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return ops


@pytest.mark.parametrize("recipe,variant", [("digits-tiny", "sparse+binary"), ("digits-resnet-tiny", "binary"),
                                            ("digits-spikformer-tiny", "binary"), ("digits-tiny", "sparse")])
def test_layer_schedule_matches_the_reference(checkpoint, digits, tmp_path, recipe, variant):
    src = checkpoint(recipe, variant)
    lay, stp = str(tmp_path / "layer.onnx"), str(tmp_path / "step.onnx")
    export(src, "onnx", lay, schedule="layer")
    export(src, "onnx", stp)
    onnx.checker.check_model(onnx.load(lay), full_check=True)
    r = OnnxRunner(lay)
    assert r.props["slt.schedule"] == "layer"
    rep = verify(src, lay, limit=None, runner=r)
    assert rep["ok"], rep
    assert rep["spike_layers_compared"] >= 2 and rep["samples"] >= 300
    if "binary" in variant:
        assert rep["tolerance"] == {"exact": True}
        assert rep["logits_bit_identical"] == 1.0 and rep["spike_agreement_min"] == 1.0
        x = digits.test.x[:32].numpy()
        np.testing.assert_array_equal(r.predict(x), OnnxRunner(stp).predict(x))  # the same bits as step-major
    # one synaptic kernel per layer, not one per step
    ol, os_ = _ops(lay), _ops(stp)
    T = int(r.meta["T"])
    syn_l = ol.get("Conv", 0) + ol.get("MatMul", 0)
    syn_s = os_.get("Conv", 0) + os_.get("MatMul", 0)
    assert syn_l < syn_s and syn_s - syn_l >= T - 1


def test_layer_schedule_rate_encoding_and_spike_outputs(checkpoint, digits, tmp_path):
    src = _rate_copy(checkpoint("digits-tiny", "binary"), str(tmp_path / "rate-bin"))
    lay = str(tmp_path / "rate.onnx")
    export(src, "onnx", lay, schedule="layer", spikes="all")
    r = OnnxRunner(lay)
    assert r.meta["encoding"] == "rate" and r.meta["input_name"] == "input_spikes"
    rep = verify(src, lay, limit=120, runner=r)
    assert rep["ok"] and rep["logits_bit_identical"] == 1.0 and rep["spike_agreement_min"] == 1.0
    seq = r.encode(digits.test.x[:5].numpy())
    out = r.session.run(None, {"input_spikes": seq})
    names = [o.name for o in r.session.get_outputs()]
    spikes = {n: v for n, v in zip(names, out) if n.startswith("spikes.")}
    assert spikes and all(v.shape[:2] == (seq.shape[0], 5) for v in spikes.values())
    rec = r.run(seq, record=True)["spikes"]
    for layer, v in rec.items():
        np.testing.assert_array_equal(v, spikes[f"spikes.{layer}"])


def test_layer_schedule_is_unrolled_only_and_validated(checkpoint, tmp_path):
    src = checkpoint("digits-tiny", "binary")
    p = str(tmp_path / "s.onnx")
    export(src, "onnx", p, form="stateful", schedule="layer")  # the stateful form is one step: nothing to stack
    assert OnnxRunner(p).props["slt.schedule"] == "step"
    with pytest.raises(SltError, match="schedule"):
        export(src, "onnx", str(tmp_path / "bad.onnx"), schedule="time")
    torch.manual_seed(0)


def test_compute_measure_times_each_affine_layer_and_stays_exact(checkpoint, tmp_path):
    """--opt compute=measure: both Affine forms timed at export (metadata names the kept one), results unchanged."""
    import json

    src = checkpoint("digits-tiny", "sparse+binary")
    p = str(tmp_path / "m.onnx")
    export(src, "onnx", p, compute="measure", schedule="layer")
    r = OnnxRunner(p)
    got = json.loads(r.props["slt.compute_measured"])
    assert got and all(v["form"] in ("dense", "gather") and v["dense_ms"] > 0 and v["gather_ms"] > 0
                       for v in got.values())
    assert all(v["rows"] == int(r.meta["T"]) for v in got.values())  # timed at the layer-major batch
    gathers = sum(n.op_type == "Gather" for n in onnx.load(p).graph.node)
    assert gathers >= sum(v["form"] == "gather" for v in got.values())
    rep = verify(src, p, limit=120, runner=r)
    assert rep["ok"] and rep["logits_bit_identical"] == 1.0 and rep["spike_agreement_min"] == 1.0
