"""`--runtime NAME` on `slt-deploy run` / `verify`: every named runtime of a target runs the same artifact and agrees;
an unknown name is one clear line listing the target's runtimes."""
import os

import pytest

from slt_deploy.backends import all_targets
from slt_deploy.cli import main
from slt_deploy.export import export

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKET = os.path.join(ROOT, "models", "tickets", "digits-tiny-imp75-binary")
LOCAL = {"packed": ["c", "numpy"], "nir": ["interpreter"], "onnx": ["cpu"], "loihi": ["reference"]}


@pytest.fixture
def cli(capsys):
    def run(*args):
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code
        o = capsys.readouterr()
        return code, o.out + o.err
    return run


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    d = tmp_path_factory.mktemp("rt")
    out = {}
    for name, b in all_targets().items():
        out[name] = str(d / (f"model.{name}" if b.suffix == "/" else "model" + b.suffix))
        export(TICKET, name, out[name])
    return out


def test_every_target_declares_its_runtimes():
    for name, b in all_targets().items():
        assert b.runtimes, name
        assert set(LOCAL[name]) <= set(b.runtimes), name


@pytest.mark.parametrize("target", sorted(LOCAL))
def test_each_runtime_runs_and_verifies(artifacts, target, cli):
    lines = set()
    for rt in LOCAL[target]:
        code, out = cli("run", artifacts[target], "--data", "digits", "--limit", "60", "--runtime", rt)
        assert code == 0 and "60 samples: accuracy" in out, out
        lines.add(out.strip().splitlines()[-1])
        code, out = cli("verify", TICKET, artifacts[target], "--limit", "60", "--runtime", rt)
        assert code == 0 and "PASS" in out, out
    assert len(lines) == 1  # the runtimes of one target give the same accuracy


def test_unknown_runtime_lists_the_real_ones(artifacts, cli):
    code, out = cli("run", artifacts["packed"], "--data", "digits", "--runtime", "gpu")
    assert code == 2 and "no runtime 'gpu'" in out and "c, numpy" in out


def test_checkpoint_with_runtime_is_refused(cli):
    code, out = cli("run", TICKET, "--data", "digits", "--runtime", "c")
    assert code == 2 and "PyTorch reference" in out
