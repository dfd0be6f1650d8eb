"""The Python API (slt_deploy.train / find_ticket / export / load_runner / verify / profile) on digits, and the fast
start of the CLI: `--help`, `import slt_deploy` and `inspect` of ONNX / packed files import no torch (issue 14)."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys

import numpy as np
import pytest

import slt_deploy as slt
from slt_deploy.cli import COMMANDS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKET = os.path.join(ROOT, "models", "tickets", "digits-tiny-imp75-binary")
PROBE = ("import sys, runpy; sys.argv = ['slt-deploy'] + sys.argv[1:]; code = 0\n"
         "try:\n    runpy.run_module('slt_deploy.cli', run_name='__main__')\n"
         "except SystemExit as e:\n    code = e.code\n"
         "sys.stderr.write('\\nEXIT=%s\\nTORCH=%s\\n' % (code, 'torch' in sys.modules))\n")


def _cli_probe(args, cwd):
    """Runs the CLI in a fresh process (cwd outside the checkout, this checkout on PYTHONPATH) -> (stdout, torch?)."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    r = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=300)
    assert "EXIT=0" in r.stderr or "EXIT=None" in r.stderr, r.stderr[-2000:]
    return r.stdout, "TORCH=True" in r.stderr


def test_help_lists_every_command_without_importing_torch(tmp_path):
    out, torch_loaded = _cli_probe(["--help"], tmp_path)
    assert not torch_loaded
    for name in COMMANDS:
        assert f"  {name} " in out, name


def test_import_slt_deploy_is_cheap(tmp_path):
    code = "import sys, slt_deploy; assert callable(slt_deploy.train); print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "PYTHONPATH": ROOT},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stdout + r.stderr


@pytest.mark.parametrize("target,name", [("onnx", "m.onnx"), ("packed", "m.slt")])
def test_inspect_of_onnx_and_packed_files_does_not_import_torch(tmp_path, target, name):
    path = str(tmp_path / name)
    slt.export(TICKET, target, path)
    out, torch_loaded = _cli_probe(["inspect", path], tmp_path)
    assert not torch_loaded
    assert "75.00% sparse" in out and "digits-tiny" in out


def test_every_listed_command_is_a_module_of_that_name():
    for name in COMMANDS:
        cmd = importlib.import_module(f"slt_deploy.commands.{name}").command
        assert cmd.name == name and COMMANDS[name].strip()
    got = {f[:-3] for f in os.listdir(os.path.join(ROOT, "slt_deploy", "commands")) if f.endswith(".py")}
    assert got - {"__init__"} <= set(COMMANDS) | {"common", "options"}, got - set(COMMANDS)


def test_api_names_stay_functions_after_their_modules_are_imported():
    for name in ("train", "export", "verify", "profile"):
        importlib.import_module(f"slt_deploy.{name}")
        assert callable(getattr(slt, name)), name
    assert importlib.import_module("slt_deploy.train").evaluate  # the module is still reachable by its full name
    with pytest.raises(AttributeError):
        slt.no_such_function  # noqa: B018


def test_python_api_pipeline_on_digits(tmp_path):
    ck = slt.train("digits-tiny", tmp_path / "ck", epochs=2)
    assert ck["path"] == str(tmp_path / "ck") and ck["epochs"] == 2 and ck["test_acc"] > 50
    tk = slt.find_ticket(ck, tmp_path / "tk", method="imp", sparsity=0.5, prune_fraction=0.5, epochs=1)
    assert abs(tk["measured_sparsity"] - 0.5) < 0.05 and os.path.exists(tmp_path / "tk" / "model.json")
    arts = [slt.export(tk, "onnx", tmp_path / "m.onnx"), slt.export(tk, "packed", tmp_path / "m.slt")]
    for a in arts:
        rep = slt.verify(tk, a, data="digits", limit=64)
        assert rep["ok"] and rep["samples"] == 64, (a["target"], rep)
    x = np.random.default_rng(0).integers(0, 17, (3, 1, 8, 8)).astype(np.float32)
    ref = slt.load_runner(tk).predict(x)
    got = slt.load_runner(arts[1], runtime="numpy").predict(x)
    assert got.shape == (3, 10) and np.array_equal(got.argmax(1), ref.argmax(1))
    prof = slt.profile(tk, arts, data="digits", limit=32, frames=3, warmup=1, rounds=1, hardware="asic45nm")
    assert "measured" in prof and "asic45nm" in str(prof)
    with pytest.raises(slt.SltError):
        slt.find_ticket(ck, tmp_path / "bad", method="imp", sparsity=0.5, no_such_option=1)
    with pytest.raises(slt.SltError):
        slt.train("no-such-recipe", tmp_path / "x")


def test_inspect_gives_one_sparsity_and_information_bound_across_targets(tmp_path):
    """Issue 14 point 7 (part): the same ticket exported to nir/onnx/packed/loihi has the same totals in `inspect`, and
    float32 metadata prints plainly (dt 0.0001, not 9.999999747378752e-05)."""
    from slt_deploy.inspect_graph import describe_path, information_bits, totals

    seen, names = {}, {}
    for target, name in (("nir", "m.nir"), ("onnx", "m.onnx"), ("packed", "m.slt"), ("loihi", "m.loihi")):
        slt.export(TICKET, target, str(tmp_path / name))
        d = describe_path(str(tmp_path / name))
        names[target] = [r["node"] for r in d["layers"] if "params" in r]
        t = totals(d["layers"])
        seen[target] = (t["params"], t["kept"], round(t["sparsity"], 9), t["min_bytes"])
        dt = d["meta"].get("dt", d["meta"].get("slt.dt"))  # (float32 in packed)
        assert float(dt) == 1e-4 and "e-05" not in str(dt), (target, dt)
    assert len(set(seen.values())) == 1, seen
    assert names["nir"] == names["onnx"] == names["loihi"] == names["packed"] == ["body.0", "body.2", "body.5"], names
    assert seen["nir"][:2] == (3784, 946)
    assert information_bits(10, 0, True) == 0 and information_bits(10, 10, False) == 320
    assert abs(information_bits(4, 2, True) - (2.584962500721156 + 2)) < 1e-9  # log2 C(4,2) + 2 sign bits
