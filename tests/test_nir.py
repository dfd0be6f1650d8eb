"""Issue 4: frontend -> NIR -> nir target; verify against the PyTorch reference; interop with snntorch."""
import subprocess
import sys
import warnings

import nir
import numpy as np
import pytest
import torch
from conftest import DIGITS_RECIPES
from torch import nn

from slt_deploy.backends import all_targets, get_target, register
from slt_deploy.backends.base import Backend
from slt_deploy.data import load_digits
from slt_deploy.errors import SltError
from slt_deploy.export import export, lower
from slt_deploy.ir.frontend import to_nir
from slt_deploy.ir.interpreter import Interpreter
from slt_deploy.verify import reference_run, verify


def cli(*args):
    return subprocess.run([sys.executable, "-m", "slt_deploy.cli", *args], capture_output=True, text=True)


@pytest.mark.parametrize("recipe", DIGITS_RECIPES)
def test_nir_file_alone_reproduces_the_model_bit_for_bit(trained, tmp_path, recipe):
    ck = trained(recipe)
    out = str(tmp_path / "m.nir")
    export(ck, "nir", out)
    rep = verify(ck, out, limit=120)
    assert rep["ok"] and rep["logits_bit_identical"] == 1.0
    assert rep["spike_layers_compared"] >= 2 and rep["spike_agreement_min"] == 1.0


def test_verify_cli_exit_codes(trained, tmp_path):
    ck = trained("digits-tiny")
    out = str(tmp_path / "m.nir")
    assert cli("export", ck, "--target", "nir", "--out", out).returncode == 0
    res = cli("verify", ck, out, "--limit", "40")
    assert res.returncode == 0 and "PASS" in res.stdout
    # a different model's artifact is refused before running (exit 2: its recorded model identity differs)
    other = str(tmp_path / "other.nir")
    export(trained("digits-tiny", epochs=1), "nir", other)
    res = cli("verify", ck, other, "--limit", "40")
    assert res.returncode == 2 and "exported from another model" in res.stderr


def test_sparsity_and_binarization_are_visible_in_the_graph(trained, tmp_path):
    from slt_deploy.checkpoint import load
    from slt_deploy.nn import synapses

    model, meta = load(trained("digits-tiny"))
    for _, layer in synapses(model):
        k = int(0.2 * layer.mask.numel())
        thr = layer.weight.detach().abs().flatten().kthvalue(layer.mask.numel() - k).values
        layer.mask.copy_((layer.weight.detach().abs() > thr).float())
        layer.binary = True
    g = to_nir(model, meta)
    for n in ("body_0", "body_2", "body_5"):
        w = g.nodes[n].weight
        assert g.nodes[n].metadata["slt.binary"] == 1
        assert abs(np.count_nonzero(w) / w.size - 0.2) < 0.02
        for c in range(w.shape[0]):  # one magnitude per output channel: ±scale_c
            assert len(np.unique(np.abs(w[c][w[c] != 0]))) <= 1
    seq = model.encode(load_digits().test.x[:64]).numpy()
    assert np.array_equal(Interpreter(g).run(seq)["logits"], reference_run(model, seq, record=False)["logits"])


def test_unknown_target_lists_registered_ones(trained, tmp_path):
    res = cli("export", trained("digits-tiny"), "--target", "tpu", "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "registered targets:" in res.stderr and "nir" in res.stderr
    assert "Traceback" not in res.stderr


def test_registry_rejects_duplicates():
    with pytest.raises(ValueError, match="twice"):
        register(Backend(name="nir", description="dup", suffix=".nir"))
    assert get_target("nir") is all_targets()["nir"]


def test_unsupported_modules_are_all_listed_in_one_error(trained):
    from slt_deploy.checkpoint import load

    model, meta = load(trained("digits-tiny"))
    model.body[1] = nn.ReLU()
    model.body.insert(3, nn.MaxPool2d(2))
    with pytest.raises(SltError) as e:
        to_nir(model, meta)
    msg = str(e.value)
    assert "2 module(s)" in msg and "body.1 (ReLU)" in msg and "body.3 (MaxPool2d)" in msg


def test_corrupt_or_foreign_nir_is_one_clear_line(tmp_path):
    p = tmp_path / "bad.nir"
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 50)
    res = cli("inspect", str(p))
    assert res.returncode == 2 and "not a readable NIR file" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_inspect_reports_layers_sparsity_and_foreign_parts(trained, tmp_path):
    out = str(tmp_path / "t.nir")
    export(trained("digits-spikformer-tiny"), "nir", out)
    res = cli("inspect", out)
    assert res.returncode == 0
    assert "attention" in res.stdout and "slt.T = 4" in res.stdout
    assert "other NIR tools can read the file but cannot execute" in res.stdout
    out2 = str(tmp_path / "v.nir")
    export(trained("digits-tiny"), "nir", out2)
    assert "every node is standard NIR" in cli("inspect", out2).stdout


def _snn_sum_over_T(net, seq, reset, batched=False):
    outs = []
    with torch.no_grad():
        for x in ([seq] if batched else [seq[:, b] for b in range(seq.shape[1])]):
            reset(net)
            out = None
            for t in range(seq.shape[0]):
                y = net(x[t])
                y = y[0] if isinstance(y, tuple) else y
                out = y if out is None else out + y
            outs.append(out)
    return (outs[0] if batched else torch.stack(outs)).numpy()


@pytest.mark.parametrize("batched", [False, True])
def test_snntorch_import_from_nir_reproduces_our_outputs(trained, tmp_path, batched):
    warnings.filterwarnings("ignore")
    from snntorch import utils
    from snntorch.import_nir import import_from_nir

    ck = trained("digits-tiny")
    model, _, _ = lower(ck)
    export(ck, "nir", str(tmp_path / "v.nir"))
    net = import_from_nir(nir.read(str(tmp_path / "v.nir")))  # NIR's type checking on
    seq = model.encode(load_digits().test.x[:40])
    ref = reference_run(model, seq.numpy(), record=False)["logits"]
    got = _snn_sum_over_T(net, seq, utils.reset, batched)
    # snntorch rebuilds beta = 1 - dt/tau and threshold = v_threshold / (r dt / tau) in float: last bits only
    assert np.array_equal(got.argmax(1), ref.argmax(1))
    assert np.max(np.abs(got - ref)) < 1e-4


def test_per_step_outputs_sum_to_the_logits(trained):
    model, meta, g = lower(trained("digits-tiny"))
    seq = model.encode(load_digits().test.x[:16]).numpy()
    res = Interpreter(g).run(seq)
    steps = res["logits_steps"]
    assert steps.shape == (seq.shape[0], 16, 10)
    acc = steps[0]
    for t in range(1, len(steps)):
        acc = acc + steps[t]
    assert np.array_equal(acc, res["logits"]) and np.array_equal(acc, reference_run(model, seq, False)["logits"])


def test_we_run_an_nir_graph_exported_by_snntorch():
    warnings.filterwarnings("ignore")
    import snntorch as snn
    from snntorch import utils
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 32), snn.Leaky(beta=torch.full((32,), 0.75), threshold=torch.ones(32),
                                                     init_hidden=True, reset_mechanism="zero", reset_delay=False),
                        nn.Linear(32, 10), snn.Leaky(beta=torch.full((10,), 0.5), threshold=torch.ones(10),
                                                     init_hidden=True, reset_mechanism="zero", reset_delay=False,
                                                     output=True))
    with torch.no_grad():
        net[0].weight.mul_(4)
    g = export_to_nir(net, torch.zeros(64))
    x = load_digits().test.x[:30].flatten(1) / 4.0
    seq = x.unsqueeze(0).expand(5, *x.shape)
    want = _snn_sum_over_T(net, seq, utils.reset)
    got = Interpreter(g, dt=1e-4).run(seq.numpy(), record=False)["logits"]
    assert want.sum() > 0  # the network spikes at all
    assert np.array_equal(got, want)
