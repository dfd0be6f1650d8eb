"""`slt-deploy demo` end to end, as `make demo` runs it (digits: trains in seconds), and from a shipped ticket."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _demo(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "slt_deploy.cli", "demo", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=1200)


def test_full_demo_trains_exports_verifies_profiles(tmp_path):
    p = _demo("--out", str(tmp_path / "demo"))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    out = p.stdout
    for stage in ("[train]", "[ticket]", "[export]", "[packed]", "[onnx]", "[loihi]", "[profile]"):
        assert stage in out, stage
    assert "FAIL" not in out
    for target in ("nir", "onnx", "packed", "loihi"):
        assert f"  {target}" in out and os.path.exists(tmp_path / "demo" / "artifacts" / (
            "model.loihi" if target == "loihi" else {"nir": "model.nir", "onnx": "model.onnx",
                                                      "packed": "model.slt"}[target]))
    assert "Traceback" not in p.stderr


def test_demo_from_shipped_ticket_skips_training(tmp_path):
    p = _demo("--ticket", "models/tickets/digits-tiny-imp75-binary", "--only", "export,packed",
              "--out", str(tmp_path / "d"))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "loaded models/tickets/digits-tiny-imp75-binary" in p.stdout
    assert "[ticket]" not in p.stdout and "[profile]" not in p.stdout
    assert p.stdout.count("-> PASS") >= 6  # 4 targets + 2 packed runtimes
    meta = json.load(open(os.path.join(ROOT, "models/tickets/digits-tiny-imp75-binary/model.json")))
    assert f"recorded {meta['metrics']['test_acc']:.2f}%" in p.stdout


@pytest.mark.parametrize("args, words", [
    (["--only", "export,bogus"], "unknown stage(s) bogus"),
    (["--ticket", "/nonexistent/ticket"], "not a checkpoint directory"),
])
def test_demo_bad_options_one_clear_line(tmp_path, args, words):
    p = _demo(*args, "--out", str(tmp_path / "x"))
    assert p.returncode == 2 and words in p.stderr + p.stdout
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "x").exists()
