"""Channel compaction in the ONNX lowering (backends/onnx/compact.py, `--opt compact=channels`): a structured
binary ticket compacted is bit-identical to the PyTorch reference on the whole digits test set, runs smaller
tensors, and channels that may spike (zero weights, positive bias) are never dropped."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from slt_deploy.backends.onnx.runner import OnnxRunner
from slt_deploy.checkpoint import load, save
from slt_deploy.export import export
from slt_deploy.nn import synapses
from slt_deploy.tickets import TicketConfig, find_ticket
from slt_deploy.verify import verify


@pytest.fixture(scope="module")
def binary_structured(trained, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("sb") / "st-bin")
    cfg = TicketConfig("structured", 0.5, prune_fraction=0.5, epochs=2, rewind="lr", binarize=True,
                       binarize_epochs=2)
    find_ticket(trained("digits-tiny"), cfg, out)
    return out


def _init_shapes(path):
    m = onnx.load(path)
    return {i.name: list(i.dims) for i in m.graph.initializer}, m


@pytest.mark.parametrize("form", ["unrolled", "stateful"])
def test_compacted_is_bit_identical_on_the_whole_test_set(binary_structured, tmp_path, form):
    path = str(tmp_path / f"c-{form}.onnx")
    export(binary_structured, "onnx", path, form=form)
    r = OnnxRunner(path)
    compact = json.loads(r.props["slt.compact"])
    assert {k: (v["kept"], v["total"]) for k, v in compact.items()} == {"body.1": (4, 8), "body.3": (8, 16)}
    rep = verify(binary_structured, path, limit=None, runner=r)
    assert rep["ok"] and rep["tolerance"]["exact"]
    assert rep["logits_bit_identical"] == 1.0 and rep["spike_agreement_min"] == 1.0
    assert rep["spike_layers_compared"] == 2 and rep["samples"] >= 300
    if form == "stateful":  # the neuron state is compact too
        shapes = {i.name: i.shape[1:] for i in r.session.get_inputs()}
        assert shapes["v_in.body.1"] == [4, 8, 8] and shapes["v_in.body.3"] == [8, 4, 4]


def test_compacted_equals_uncompacted_and_is_smaller(binary_structured, tmp_path):
    a, b = str(tmp_path / "c.onnx"), str(tmp_path / "n.onnx")
    export(binary_structured, "onnx", a, sparse="none")
    export(binary_structured, "onnx", b, sparse="none", compact="none")
    (sa, ma), (sb, _) = _init_shapes(a), _init_shapes(b)
    assert sa["body.0.weight"] == [4, 1, 3, 3] and sb["body.0.weight"] == [8, 1, 3, 3]
    assert sa["body.2.weight"] == [8, 4, 3, 3] and sb["body.2.weight"] == [16, 8, 3, 3]
    assert sa["body.5.weight"] == [128, 10] and sb["body.5.weight"] == [256, 10]  # MatMul layout [in, out]
    assert "Pad" not in {n.op_type for n in ma.graph.node}  # no scatter nodes in the compute graph
    from slt_deploy.data import load_dataset

    x = load_dataset("digits").test.x.numpy()
    la, lb = OnnxRunner(a).predict(x), OnnxRunner(b).predict(x)
    assert np.array_equal(la, lb)
    ra = OnnxRunner(a).run(np.repeat(x[None, :50], 4, 0), record=True)["spikes"]
    assert ra["body.1"].shape == (4, 50, 8, 8, 8)  # scattered back to the full width
    kept = OnnxRunner(a).spike_expand["body.1"]["kept"]
    assert not ra["body.1"][:, :, [c for c in range(8) if c not in kept]].any() and ra["body.1"][:, :, kept].any()


def test_spikes_all_outputs_are_full_width(binary_structured, tmp_path):
    path = str(tmp_path / "s.onnx")
    export(binary_structured, "onnx", path, spikes="all")
    r = OnnxRunner(path)
    outs = {o.name: o.shape for o in r.session.get_outputs()}
    assert outs["spikes.body.1"][2:] == [8, 8, 8] and outs["spikes.body.3"][2:] == [16, 4, 4]
    rep = verify(binary_structured, path, limit=200, runner=r)
    assert rep["ok"] and rep["logits_bit_identical"] == 1.0 and rep["spike_agreement_min"] == 1.0


def test_zero_weight_channel_with_positive_bias_is_kept(binary_structured, tmp_path):
    """docs/ir.md: zero weights but bias > 0 gives a constant current that can spike: never compacted."""
    model, meta = load(binary_structured)
    layer = synapses(model)[0][1]
    empty = torch.nonzero(~layer.mask.reshape(layer.mask.shape[0], -1).any(1)).flatten()
    with torch.no_grad():
        layer.bn.weight[empty[0]] = 1.0
        layer.bn.bias[empty[0]] = 3.0   # folded bias > threshold: spikes every other step
    ck = str(tmp_path / "lively")
    save(model, ck, labels=meta["labels"])
    path = str(tmp_path / "l.onnx")
    export(ck, "onnx", path)
    r = OnnxRunner(path)
    assert json.loads(r.props["slt.compact"])["body.1"]["kept"] == 5
    rep = verify(ck, path, limit=None, runner=r)
    assert rep["ok"] and rep["logits_bit_identical"] == 1.0 and rep["spike_agreement_min"] == 1.0
    spk = r.run(np.zeros((4, 2, 1, 8, 8), np.float32), record=True)["spikes"]["body.1"]
    assert spk[:, :, int(empty[0])].any()   # it does spike, so dropping it would have been wrong
