"""Issue 14 point 5: one set of conventions across the commands (docs/cli.md). Every command that reports runs
here on a tiny digits model (the conftest checkpoint factory) with --json: stdout parses as ONE JSON document and
holds nothing else; with --quiet a successful run writes nothing on stderr; run through pipes (not a terminal) no
progress bar writes '\\r'; --data/--limit/--json/--quiet/--verbose are the same options with the same defaults
everywhere; ratios read as "17.3x faster"; `inspect` of a .slt imports neither onnx nor torch."""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys

import click
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(argv):
    """slt_deploy.cli.main in this process (stdout and stderr captured: not terminals) -> (code, stdout, stderr)."""
    from slt_deploy.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in argv])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def subprocess_cli(*argv):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "slt_deploy.cli", *map(str, argv)], capture_output=True, text=True,
                          env=env, cwd=ROOT)


def foreign_nir(path):
    """A dense LIF graph as another NIR tool writes it (flattened 8x8 digits in, 10 LIF out)."""
    import nir

    w = np.random.default_rng(0).normal(0, 0.3, (10, 64)).astype(np.float32)
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([64])}),
                            "fc": nir.Affine(weight=w, bias=np.zeros(10, np.float32)),
                            "lif": nir.LIF(tau=np.full(10, 2e-4, np.float32), r=np.ones(10, np.float32),
                                           v_leak=np.zeros(10, np.float32), v_threshold=np.ones(10, np.float32)),
                            "output": nir.Output(output_type={"output": np.array([10])})},
                     edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")])
    nir.write(path, g)
    return path


@pytest.fixture(scope="module")
def ws(checkpoint, tmp_path_factory):
    """A ticket of the tiny digits model and its packed artifact; every command below reads these."""
    d = tmp_path_factory.mktemp("conv")
    ck = checkpoint("digits-tiny", "sparse+binary", epochs=1)
    slt = str(d / "m.slt")
    code, _, err = run_cli(["export", ck, "--target", "packed", "--out", slt, "--quiet"])
    assert code == 0, err
    return {"d": d, "ck": ck, "slt": slt}


FAST = ["--limit", "32"]


def commands(ws):
    """One small successful call of every command in NAMES (the JSON key that must be in its result)."""
    d, ck, slt = ws["d"], ws["ck"], ws["slt"]
    return {
        "train": (["train", "digits-tiny", "--epochs", "1", "--out", d / "tr"], "test_acc"),
        "eval": (["eval", ck, *FAST], "accuracy"),
        "ticket": (["ticket", ck, "--method", "random", "--sparsity", "0.5", "--epochs", "0", "--rewind-epoch", "0",
                    "--out", d / "tk"], "measured_sparsity"),
        "export": (["export", ck, "--target", "onnx", "--out", d / "m.onnx"], "passes"),
        "targets": (["targets"], "packed"),
        "verify": (["verify", ck, slt, *FAST], "pred_agreement"),
        "inspect": (["inspect", slt], "layers"),
        "run": (["run", slt, *FAST], "accuracy"),
        "profile": (["profile", ck, slt, "--limit", "16", "--frames", "2", "--warmup", "0", "--rounds", "1",
                     "--batch", "8", "--in-process", "--hardware", "loihi2"], "measured"),
        "demo": (["demo", "--ticket", ck, "--only", "export", "--out", d / "demo", "--limit", "16"], "results"),
        "finetune": (["finetune", ck, "--target", "loihi", "--out", d / "ft", "--epochs", "1", "--train-n", "64",
                      *FAST], "after"),
        "import": (["import", foreign_nir(str(d / "foreign.nir")), "--T", "4", "--input-max", "16", "--data", "auto",
                    "--out", d / "ours.nir", *FAST], "check"),
    }


NAMES = ["train", "eval", "ticket", "export", "targets", "verify", "inspect", "run", "profile", "demo", "finetune",
         "import"]


def test_every_command_is_covered():
    from slt_deploy.cli import COMMANDS

    assert sorted(COMMANDS) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_json_alone_on_stdout_and_quiet_stderr(ws, name):
    argv, key = commands(ws)[name]
    code, out, err = run_cli([*argv, "--json", "--quiet"])
    assert code == 0, err
    doc = json.loads(out)  # the whole of stdout is one JSON document: nothing else was printed there
    assert key in doc, sorted(doc)
    assert err == "", err  # --quiet: no progress, no info lines


def test_info_goes_to_stderr_and_no_bar_in_pipes(ws):
    """Through real pipes: progress/info on stderr without any '\\r' (no bar when stderr is not a terminal), the
    result alone on stdout."""
    r = subprocess_cli("train", "digits-tiny", "--epochs", "1", "--out", ws["d"] / "tr2")
    assert r.returncode == 0, r.stderr
    assert "epoch 1/1" in r.stderr and "epoch" not in r.stdout  # per-epoch lines are info: stderr
    assert "\r" not in r.stderr and "\r" not in r.stdout
    assert r.stdout.strip().startswith("digits-tiny: test accuracy")
    meta = json.load(open(ws["d"] / "tr2" / "model.json"))  # --epochs is the schedule the checkpoint records
    assert meta["recipe"]["train"]["epochs"] == 1 == meta["metrics"]["epochs"]
    code, out, err = run_cli(["verify", ws["ck"], ws["slt"], "--verbose"])  # captured stderr: not a terminal
    assert code == 0 and "\r" not in err and "PASS" in out, err
    assert "debug: " in err  # --verbose: the registry says which target it loaded


def test_same_options_same_defaults_everywhere():
    import importlib

    from slt_deploy.cli import COMMANDS
    from slt_deploy.commands.options import DATA_CHOICES, LIMIT, LIMIT_DEFAULT

    limits = {}
    for name in COMMANDS:
        cmd = importlib.import_module(f"slt_deploy.commands.{name}").command
        ps = {p.name: p for p in cmd.params}
        assert {"as_json", "quiet", "verbose"} <= set(ps), name  # every command reports
        if "limit" in ps:
            assert ps["limit"].type is LIMIT, name
            limits[name] = ps["limit"].type.convert(ps["limit"].default, None, None)
            assert "--limit" in ps["limit"].opts
        if "data" in ps:
            assert list(ps["data"].type.choices) == DATA_CHOICES, name
            assert ps["data"].default in ("auto", None), name
    assert set(limits) >= {"eval", "verify", "run", "profile", "demo", "finetune", "import"}
    assert set(limits.values()) == {LIMIT_DEFAULT}, limits
    import inspect

    import slt_deploy

    for fn in (slt_deploy.verify, slt_deploy.profile):  # the Python API: the same default
        assert inspect.signature(fn).parameters["limit"].default == LIMIT_DEFAULT
    assert LIMIT.convert("all", None, None) is None
    with pytest.raises(click.BadParameter):
        LIMIT.convert("0", None, None)


def test_bars_only_on_a_terminal(monkeypatch):
    from slt_deploy import log

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("SLT_PROGRESS", raising=False)
    log.setup()
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not log.show_progress()
    monkeypatch.setattr(sys, "stderr", Tty())
    assert log.show_progress()
    for _ in log.progress(range(3), desc="x"):
        pass
    assert "\r" in sys.stderr.getvalue()  # a real bar on a terminal
    log.setup(quiet=True)
    assert not log.show_progress()  # --quiet: no bar even on a terminal
    log.setup()
    monkeypatch.setenv("SLT_PROGRESS", "0")
    assert not log.show_progress()


def test_ratios_read_as_faster_or_slower():
    from slt_deploy.log import speed

    assert speed(17.34) == "17.3x faster"
    assert speed(1 / 2.1) == "2.1x slower"
    assert speed(0.0567) == "17.6x slower"
    assert speed(1310.4) == "1310x faster"
    assert speed(1.004) == "as fast"
    assert speed(float("nan")) == "n/a" and speed(0) == "n/a"


def test_profile_table_says_faster_or_slower():
    from slt_deploy.profile.report import measured_rows

    def runner(name, p50, fps):
        return {"name": name, "latency": {"p50_ms": p50, "p95_ms": p50, "p99_ms": p50},
                "throughput": {"batch": 8, "frames_per_s": fps}, "memory": {"peak_rss_mb": 1.0},
                "vs_reference": {"latency_p50": p50 / 10.0, "throughput": fps / 100.0, "peak_rss": 1.0},
                "accuracy": 90.0}

    rep = {"measured": {"runners": [runner("ref", 10.0, 100.0), runner("c", 0.567, 2100.0)],
                        "power_counters": {"available": False}}, "settings": {}}
    rows = {r[0]: r[1:] for r in measured_rows(rep)}
    assert rows["p50 latency vs reference"] == ["reference", "17.6x faster"]
    assert rows["throughput vs reference"] == ["reference", "21.0x faster"]


def test_sniff_constants_are_the_targets_own():
    from slt_deploy.backends import sniff
    from slt_deploy.backends.loihi.runner import FORMAT, MANIFEST
    from slt_deploy.backends.packed.format import MAGIC

    assert sniff.PACKED_MAGIC == MAGIC and sniff.LOIHI_FORMAT == FORMAT and sniff.LOIHI_MANIFEST == MANIFEST


@pytest.mark.parametrize("target, name", [("packed", "as.onnx"), ("nir", "as.onnx"), ("onnx", "as.nir"),
                                          ("onnx", "no_suffix")])
def test_an_artifact_is_known_by_its_content_not_its_name(ws, target, name):
    from slt_deploy.backends import sniff_path

    out = str(ws["d"] / f"{target}_{name}")
    code, _, err = run_cli(["export", ws["ck"], "--target", target, "--out", out, "--quiet"])
    assert code == 0, err
    assert sniff_path(out) == target
    code, text, err = run_cli(["verify", ws["ck"], out, "--limit", "8"])
    assert code == 0 and "PASS" in text, text + err


def test_verify_with_its_arguments_swapped_says_so(ws):
    code, _, err = run_cli(["verify", ws["slt"], ws["ck"], "--limit", "8"])
    assert code == 2 and "is a file, where a checkpoint folder is expected" in err and "verify CKPT ARTIFACT" in err


def test_run_on_several_images_prints_one_line_each_in_order(ws):
    from PIL import Image

    paths = []
    for i, v in enumerate((0, 255, 128)):
        p = str(ws["d"] / f"img{i}.png")
        Image.fromarray(np.full((8, 8), v, np.uint8)).save(p)
        paths.append(p)
    code, one, err = run_cli(["run", ws["slt"], "--input", paths[1]])
    assert code == 0 and one.startswith("class "), err
    argv = ["run", ws["slt"]] + [a for p in paths for a in ("--input", p)]
    code, out, err = run_cli(argv)
    lines = out.strip().splitlines()
    assert code == 0 and [ln.split(": ")[0] for ln in lines] == paths, out + err
    assert lines[1] == f"{paths[1]}: {one.strip()}"
    code, js, err = run_cli(argv + ["--json"])
    assert code == 0 and [r["input"] for r in json.loads(js)] == paths, err
    code, _, err = run_cli(["run", ws["slt"], "--input", paths[0], "--input", str(ws["d"] / "m.slt")])
    assert code == 2 and "cannot read image" in err


def test_inspect_packed_imports_neither_onnx_nor_torch(ws):
    probe = ("import sys\nfrom slt_deploy.cli import main\ntry:\n    main(['inspect', sys.argv[1], '--json'])\n"
             "except SystemExit:\n    pass\n"
             "sys.stderr.write('HEAVY=' + ','.join(m for m in ('onnx', 'torch') if m in sys.modules))\n")
    env = {**os.environ, "PYTHONPATH": ROOT}
    r = subprocess.run([sys.executable, "-c", probe, ws["slt"]], capture_output=True, text=True, env=env)
    assert json.loads(r.stdout)["kind"] == "packed", r.stderr
    assert r.stderr.strip().endswith("HEAVY="), r.stderr


def test_a_warning_goes_through_logging_and_survives_quiet(ws, monkeypatch):
    """The packed target's fallback note (no C compiler) is a logging warning: on stderr even under --quiet."""
    from slt_deploy import log
    from slt_deploy.backends.packed import c_runner, make_runner

    monkeypatch.setattr(c_runner, "compiler_available", lambda: False)
    for quiet in (False, True):
        log.setup(quiet=quiet)
        err = io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        r = make_runner(ws["slt"], runtime="c")
        assert r.runtime == "numpy"
        assert err.getvalue().startswith("warning: no C compiler found"), err.getvalue()
    log.setup()
