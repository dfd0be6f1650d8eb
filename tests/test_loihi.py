"""Issue 7, target `loihi` without Lava: netx folder, quantization, limits, partition (tests/test_loihi_lava.py runs
the same exports in Lava's Loihi 2 simulation)."""
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
import yaml

from slt_deploy.backends import get_target, target_for_path
from slt_deploy.backends.loihi.chip import ChipModel, dense_synapse
from slt_deploy.backends.loihi.netx import read_netx, write_netx
from slt_deploy.backends.loihi.quant import DEFAULT_LIMITS
from slt_deploy.errors import SltError
from slt_deploy.export import export
from slt_deploy.runtime import load_runner
from slt_deploy.verify import verify


def binarized_sparse_ticket(src, dst, keep=0.3):
    """A binarized, magnitude-pruned copy of checkpoint `src` (masked weights are absent, kept ones are +-alpha)."""
    from slt_deploy.checkpoint import load, save
    from slt_deploy.nn import synapses

    model, meta = load(src)
    for _, layer in synapses(model):
        w = layer.weight.detach().abs()
        k = max(1, int(keep * w.numel()))
        thr = w.flatten().kthvalue(w.numel() - k + 1).values
        layer.mask.copy_((w >= thr).float())
        layer.binary = True
    model.recipe = {**model.recipe, "binary": True}
    save(model, dst, labels=meta["labels"])
    return dst


def test_export_writes_a_netx_folder_that_runs_and_agrees_with_float(trained, tmp_path):
    ck = trained("digits-tiny")
    out = str(tmp_path / "m.loihi")
    export(ck, "loihi", out)
    assert sorted(os.listdir(out)) == ["host_in.nir", "manifest.json", "network.h5", "report.md"]
    m = json.load(open(os.path.join(out, "manifest.json")))
    assert m["format"] == "slt-loihi" and m["T"] == 4 and m["encoding"] == "direct"
    assert m["input"]["kind"] == "host_current" and m["readout"]["kind"] == "voltage"
    assert m["labels"] == [str(i) for i in range(10)] and m["cores"] >= 3
    assert target_for_path(out).name == "loihi" and get_target("loihi").suffix == "/"
    # the netx file: what lava-dl's reader expects, integers within the chip's ranges
    with h5py.File(os.path.join(out, "network.h5")) as f:
        types = [f[f"layer/{i}/type"][0].decode() for i in range(len(f["layer"]))]
        assert types == ["input", "conv", "conv", "flatten", "dense"]
        w = f["layer/2/weight"][()]
        assert w.dtype.kind == "i" and np.abs(w).max() <= 127 and w.shape == (16, 8, 3, 3)
        assert int(f["layer/2/neuron/vDecay"][()]) == 2048 and int(f["layer/2/neuron/iDecay"][()]) == 4096
        assert f["layer/2/neuron/type"][0] == b"CUBA"
    # the runner (our fixed-point reference) against the float PyTorch model on the digits test set
    rep = verify(ck, out)
    assert rep["ok"], rep
    assert rep["pred_agreement"] >= 0.97 and rep["spike_layers_compared"] == 2
    r = load_runner(out)
    assert r.predict(np.zeros((2, 1, 8, 8), np.float32)).shape == (2, 10)
    # atomic re-export over the same folder; a non-export folder is never overwritten
    export(ck, "loihi", out)
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "x.txt").write_text("keep")
    with pytest.raises(SltError, match="not a Loihi export folder"):
        export(ck, "loihi", str(tmp_path / "precious"))
    assert (tmp_path / "precious" / "x.txt").read_text() == "keep"


def test_cli_export_and_verify(trained, tmp_path):
    ck = trained("digits-tiny")
    out = str(tmp_path / "cli.loihi")

    def run(*a):
        return subprocess.run([sys.executable, "-m", "slt_deploy.cli", *a], capture_output=True, text=True)

    res = run("export", ck, "--target", "loihi", "--out", out)
    assert res.returncode == 0, res.stderr
    res = run("verify", ck, out, "--limit", "60")
    assert res.returncode == 0 and "PASS" in res.stdout, res.stdout + res.stderr
    res = run("inspect", out, "--json")
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    man = json.load(open(os.path.join(out, "manifest.json")))
    assert d["kind"] == "loihi" and d["meta"]["cores"] == man["cores"]
    assert [r["node"] for r in d["layers"]] == [e.get("layer") or e["kind"] for e in man["layers"]]
    dense = [r for r in d["layers"] if "kept" in r]
    assert dense and all(r["chip_synapses"] == e["synapses"] for r, e in
                         zip(dense, [e for e in man["layers"] if "synapses" in e], strict=True))
    from slt_deploy.inspect_graph import describe_path, totals

    same = ("params", "kept", "min_bytes")  # the model's layers, counted as for the checkpoint itself
    assert {k: totals(d["layers"])[k] for k in same} == {k: totals(describe_path(ck)["layers"])[k] for k in same}


def test_binarized_sparse_ticket_maps_to_one_mantissa_per_channel(trained, tmp_path):
    ck = binarized_sparse_ticket(trained("digits-tiny"), str(tmp_path / "bin"))
    out = str(tmp_path / "bin.loihi")
    export(ck, "loihi", out)
    m = json.load(open(os.path.join(out, "manifest.json")))
    assert m["sparse_fc"] is True  # the 30 %-dense head uses Lava's sparse synapses
    from slt_deploy.export import lower

    _, _, g = lower(ck)
    layers = read_netx(os.path.join(out, "network.h5"))
    for L, name in ((layers[2], "body_2"), (layers[4], "body_5")):
        w, src = L["weight"], np.asarray(g.nodes[name].weight)
        assert np.array_equal(w != 0, src != 0)  # masked weights stay absent, kept ones stay
        for c in range(w.shape[0]):
            mags = np.unique(np.abs(w[c][w[c] != 0]))
            assert len(mags) == 1  # a binarized channel is +- one mantissa
        assert np.array_equal(np.sign(w), np.sign(src).astype(np.int64))
    assert verify(ck, out)["pred_agreement"] >= 0.9


def test_limits_exceeded_gives_one_clear_error(trained, tmp_path):
    ck = trained("digits-tiny")
    prof = yaml.safe_load(open(DEFAULT_LIMITS))
    prof["limits"]["neurons_per_core"]["value"] = 64
    prof["limits"]["cores_per_chip"]["value"] = 4
    prof["limits"]["fan_in_per_neuron"]["value"] = 100
    small = str(tmp_path / "small.yaml")
    yaml.safe_dump(prof, open(small, "w"))
    with pytest.raises(SltError) as e:
        export(ck, "loihi", str(tmp_path / "x"), limits=small)
    msg = str(e.value)
    assert "body.5" in msg and "fan-in 256" in msg and "limit 100" in msg and "more sparsity" in msg
    assert "neuro cores" in msg and "4" in msg and "chips=N" in msg and "body.0" in msg
    assert not os.path.exists(tmp_path / "x")
    # more chips lift the core limit (the fan-in one stays)
    with pytest.raises(SltError) as e:
        export(ck, "loihi", str(tmp_path / "x"), limits=small, chips="8")
    assert "neuro cores" not in str(e.value) and "fan-in 256" in str(e.value)


@pytest.mark.parametrize("recipe,on_chip,stop", [
    ("digits-resnet-tiny", ["body.0"], "fans out"),
    ("digits-spikformer-tiny", ["body.0.stem.0", "body.0.stem.2", "body.0.rpe"], "tokens"),
])
def test_resnet_and_transformer_partition(trained, tmp_path, recipe, on_chip, stop):
    ck = trained(recipe)
    out = str(tmp_path / "p.loihi")
    export(ck, "loihi", out)
    m = json.load(open(os.path.join(out, "manifest.json")))
    assert m["partitioned"] and m["readout"]["kind"] == "host" and os.path.exists(os.path.join(out, "host.nir"))
    assert [e["layer"] for e in m["layers"] if "neurons" in e] == on_chip
    assert stop in m["notes"][0]
    rep = verify(ck, out, limit=200)
    assert rep["ok"], {k: rep[k] for k in ("pred_agreement", "spike_agreement_min")}
    # partition=off: one error listing every node netx cannot express
    with pytest.raises(SltError) as e:
        export(ck, "loihi", str(tmp_path / "off"), partition="off")
    msg = str(e.value)
    if recipe == "digits-resnet-tiny":
        assert msg.count("residual add") >= 2 and "body.2.lif2" in msg and "body.3.lif2" in msg
    else:
        for op in ("tokens", "self-attention", "token sum", "junction add"):
            assert op in msg
        assert "linear layer over tokens" in msg


def test_no_spiking_prefix_is_a_clear_error(trained):
    import nir

    from slt_deploy.backends.loihi import check
    from slt_deploy.export import lower

    _, _, g = lower(trained("digits-tiny"))
    g.nodes["body_1"].metadata["slt.reset"] = "subtract"
    reasons = check(g)
    assert len(reasons) == 1 and "no spiking prefix" in reasons[0] and "reset 'subtract'" in reasons[0]
    assert isinstance(g, nir.NIRGraph)


def test_netx_roundtrip_and_weight_optimisation():
    rng = np.random.default_rng(0)
    layers = [{"type": "input", "shape": [3]},
              {"type": "dense", "shape": [4], "weight": rng.integers(-127, 128, (4, 3)), "bias": np.arange(4),
               "neuron": {"iDecay": 4096, "vDecay": 1000, "vThMant": 90}}]
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        write_netx(os.path.join(d, "n.h5"), layers)
        back = read_netx(os.path.join(d, "n.h5"))
    assert back[1]["neuron"] == layers[1]["neuron"] and np.array_equal(back[1]["weight"], layers[1]["weight"])
    # netx + Lava re-scale the 8-bit mantissas; for |w| <= 127 that is lossless
    for w in (rng.integers(-127, 128, (5, 7)), rng.integers(0, 128, (5, 7)), -rng.integers(1, 128, (5, 7)),
              2 * rng.integers(-60, 61, (5, 7))):
        wq, e = dense_synapse(w)
        s = rng.integers(0, 2, (7, 9))
        acc = wq @ s
        assert np.array_equal((acc >> -e) if e <= 0 else (acc << e), w @ s)
    out = ChipModel(back).run(rng.integers(0, 2, (2, 3, 3)))
    assert out["spikes"][1].shape == (3, 2, 4) and out["v_last"].shape == (2, 4)
    torch.manual_seed(0)


def test_fold_identity_residuals_pass_is_the_targets_pipeline(trained, tmp_path):
    """The Loihi target's pass list: the ConvPEP position embedding `LIF(rpe(S) + S)` becomes one synapse W + I
    (the graph computes the same spikes in the NIR interpreter); --opt fold=off leaves it, and the chip stops
    before it."""
    from slt_deploy.data import load_dataset
    from slt_deploy.export import lower
    from slt_deploy.ir.interpreter import Interpreter
    from slt_deploy.passes import run_pipeline
    from slt_deploy.passes.fold_identity_residuals import FOLDED, fold_identity_residuals

    ck = trained("digits-spikformer-tiny")
    model, _, g = lower(ck)
    assert get_target("loihi").passes == [fold_identity_residuals]
    folded, changed = run_pipeline(g, [fold_identity_residuals], {"fold": "on", "partition": "auto"})
    assert changed == ["fold_identity_residuals"]
    absorbed = {n: v.metadata[FOLDED] for n, v in folded.nodes.items() if (v.metadata or {}).get(FOLDED)}
    assert len(absorbed) == 1, absorbed
    (syn, src), = absorbed.items()
    assert (src, syn) in g.edges and (src, syn) in folded.edges and len(folded.edges) == len(g.edges) - 1
    same, changed = run_pipeline(g, [fold_identity_residuals], {"fold": "off"})
    assert same is g and changed == []
    with pytest.raises(SltError, match="fold=.maybe. unknown"):
        fold_identity_residuals(g, fold="maybe")
    x = load_dataset("digits").test.x[:64]
    seq = model.encode(x).numpy()
    a, b = Interpreter(g).run(seq, record=True), Interpreter(folded).run(seq, record=True)
    assert (a["logits"].argmax(1) == b["logits"].argmax(1)).mean() >= 0.98
    for k in a["spikes"]:
        assert (a["spikes"][k] == b["spikes"][k]).mean() >= 0.99, k
    # through export: fold=off keeps the position embedding on the host
    m_on = json.load(open(os.path.join(export(ck, "loihi", str(tmp_path / "on"))["out"], "manifest.json")))
    m_off = json.load(open(os.path.join(export(ck, "loihi", str(tmp_path / "off"), fold="off")["out"],
                                        "manifest.json")))
    chip = lambda m: [e["layer"] for e in m["layers"] if "neurons" in e]  # noqa: E731
    assert "body.0.rpe" in chip(m_on) and "body.0.rpe" not in chip(m_off)
