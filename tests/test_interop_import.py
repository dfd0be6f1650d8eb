"""Issue 15, import: an NIR graph written by snntorch (export_to_nir of a conv and of a dense LIF net trained here on
real digits) is read by `slt-deploy import`, exported to ONNX, packed and Loihi, and each artifact is verified
against the NIR interpreter running the imported graph; the import itself is checked against the foreign graph."""
import subprocess
import sys
import warnings

import nir
import numpy as np
import pytest
import torch
from torch import nn

from slt_deploy.data import load_digits
from slt_deploy.errors import SltError
from slt_deploy.export import export
from slt_deploy.ir.importer import import_graph, read_foreign
from slt_deploy.ir.interpreter import Interpreter
from slt_deploy.verify import verify

T = 4


def cli(*args):
    return subprocess.run([sys.executable, "-m", "slt_deploy.cli", *args], capture_output=True, text=True)


def _lif(shape, out=False):
    import snntorch as snn

    return snn.Leaky(beta=torch.full(shape, 0.75), threshold=torch.ones(shape), init_hidden=True,
                     reset_mechanism="zero", reset_delay=False, output=out)


def _train_snntorch(kind, epochs=4):
    """A small snntorch net trained on raw digits pixels (0..16), then written by snntorch's own NIR export."""
    warnings.filterwarnings("ignore")
    from snntorch import utils
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    if kind == "conv":
        net = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), _lif((8, 4, 4)), nn.Flatten(),
                            nn.Linear(128, 10), _lif((10,), True))
        sample = torch.zeros(1, 1, 8, 8)
    else:
        net = nn.Sequential(nn.Linear(64, 48), _lif((48,)), nn.Linear(48, 10), _lif((10,), True))
        sample = torch.zeros(1, 64)
    d = load_digits()
    x, y = d.train.x, d.train.y
    x = x if kind == "conv" else x.flatten(1)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(epochs):
        for i in range(0, len(x), 64):
            utils.reset(net)
            out = 0
            for _t in range(T):
                s = net(x[i:i + 64])
                out = out + (s[0] if isinstance(s, tuple) else s)
            loss = nn.functional.cross_entropy(out, y[i:i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return export_to_nir(net, sample, ignore_dims=[0])


@pytest.fixture(scope="module", params=["conv", "dense"])
def foreign(request, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("foreign") / f"{request.param}.nir")
    nir.write(path, _train_snntorch(request.param))
    return path


def test_import_matches_the_foreign_graph(foreign):
    ours, theirs = read_foreign(foreign, T)
    x = load_digits().test.x[:128]
    fin = next(v for v in theirs.nodes.values() if isinstance(v, nir.Input))
    seq = np.repeat(x.numpy()[None], T, 0)
    a = Interpreter(theirs, dt=1e-4).run(seq.reshape(T, len(x), *np.asarray(fin.input_type["input"])))["logits"]
    b = Interpreter(ours).run(seq.reshape(T, len(x), *[int(v) for v in ours.metadata["slt.input_shape"]]))["logits"]
    assert a.sum() > 0 and np.mean(a.argmax(1) == load_digits().test.y[:128].numpy()) > 0.5  # a trained net
    assert np.array_equal(a.argmax(1), b.argmax(1)) and np.max(np.abs(a - b)) <= 1.0


@pytest.mark.parametrize("target", ["onnx", "packed", "loihi"])
def test_imported_graph_deploys_and_verifies(foreign, target, tmp_path):
    ours = str(tmp_path / "ours.nir")
    res = cli("import", foreign, "--T", str(T), "--out", ours, "--input-max", "16", "--data", "digits",
              "--limit", "128")
    assert res.returncode == 0, res.stderr
    assert "predictions agree 100.00%" in res.stdout
    art = str(tmp_path / f"m.{target}")
    export(ours, target, art)
    rep = verify(ours, art, data="digits", limit=200)
    assert rep["ok"], rep
    assert rep["pred_agreement"] >= 0.99


def test_import_errors_are_one_line(tmp_path, foreign):
    res = cli("import", str(tmp_path / "missing.nir"), "--T", "4", "--out", str(tmp_path / "o.nir"))
    assert res.returncode == 2 and "does not exist" in res.stderr and "Traceback" not in res.stderr
    g = nir.read(foreign)
    g.nodes["extra"] = nir.Threshold(threshold=np.ones(10, np.float32))
    g.edges.append((next(n for n, v in g.nodes.items() if isinstance(v, nir.LIF)), "extra"))
    with pytest.raises(SltError, match="Threshold"):
        import_graph(g, T)
    res = cli("verify", foreign, foreign, "--data", "digits")
    assert res.returncode == 2 and "error:" in res.stderr and "Traceback" not in res.stderr
