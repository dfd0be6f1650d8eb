"""Crash at any moment (issue 20 point 5): checkpoint and Loihi folder writes leave the old artifact or the new one,
never a partial one; temp files are cleaned. Crashes are injected at each rename (fsio._crash_hook) and made real
with SIGKILL on a writer process. Also: artifacts get the mode the umask gives (issue 14 point 2)."""
import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
import torch

from slt_deploy import fsio
from slt_deploy.checkpoint import load, read_meta, save
from slt_deploy.errors import SltError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKET = os.path.join(ROOT, "models", "tickets", "digits-tiny-imp90")


class Crash(BaseException):
    pass


def _model(seed):
    m, _ = load(TICKET)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(seed * 1e-3)
    return m


def _weights_sha(d):
    return read_meta(d)["weights_sha256"]


def _leftovers(folder):
    return [n for n in os.listdir(folder) if fsio.TMP_TAG in n]


@pytest.fixture
def crash_at(monkeypatch):
    def arm(step):
        def hook(s):
            if s == step:
                raise Crash(step)
        monkeypatch.setattr(fsio, "_crash_hook", hook)
    return arm


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
@pytest.mark.parametrize("step", ["dir-exchange", "dir-aside", "dir-rename"])
def test_checkpoint_crash_at_each_rename_keeps_old_or_new(tmp_path, crash_at, monkeypatch, step, exchange):
    out = str(tmp_path / "ck")
    old = save(_model(1), out)["weights_sha256"]
    if not exchange:
        monkeypatch.setattr(fsio, "_exchange", lambda a, b: False)
    crash_at(step)
    new_model = _model(2)
    try:
        save(new_model, out)
        crashed = False
    except Crash:
        crashed = True
    monkeypatch.setattr(fsio, "_crash_hook", None)
    got = _weights_sha(out)  # read_meta repairs an interrupted two-rename swap (fsio.recover)
    load(out)  # complete and consistent
    assert got == old if crashed else got != old
    save(new_model, out)
    assert _leftovers(str(tmp_path)) == []


def test_crash_at_file_rename_keeps_old_file(tmp_path, crash_at):
    p = str(tmp_path / "a.json")
    fsio.atomic_write(p, "old")
    crash_at("file-rename")
    with pytest.raises(Crash):
        fsio.atomic_write(p, "new")
    assert open(p).read() == "old" and _leftovers(str(tmp_path)) == []


def test_loihi_folder_crash_keeps_old_export(tmp_path, crash_at, monkeypatch):
    from slt_deploy.export import export
    from slt_deploy.runtime import load_runner

    out = str(tmp_path / "m.loihi")
    export(TICKET, "loihi", out)
    before = open(os.path.join(out, "manifest.json")).read()
    for exchange in (True, False):
        monkeypatch.setattr(fsio, "_exchange", fsio._exchange if exchange else (lambda a, b: False))
        for step in ("dir-exchange", "dir-aside", "dir-rename"):
            crash_at(step)
            try:
                export(TICKET, "loihi", out, sparse="on")
            except Crash:
                pass
            monkeypatch.setattr(fsio, "_crash_hook", None)
            fsio.recover(out)
            load_runner(out)  # digests check every file: the folder is complete
            m = open(os.path.join(out, "manifest.json")).read()
            assert m == before or json.loads(m)["sparse_fc"] is True
    assert _leftovers(str(tmp_path)) == []


WRITER = r"""
import sys, torch
from slt_deploy.checkpoint import load, save
m, _ = load(sys.argv[1])
i = 0
print("ready", flush=True)
while True:
    with torch.no_grad():
        for p in m.parameters():
            p.add_(1e-3)
    save(m, sys.argv[2])
    i += 1
"""


def test_sigkill_during_checkpoint_writes_never_leaves_a_partial_one(tmp_path):
    out = str(tmp_path / "ck")
    save(_model(0), out)
    env = {**os.environ, "PYTHONPATH": ROOT}
    outcomes = []
    for trial in range(6):
        p = subprocess.Popen([sys.executable, "-c", WRITER, TICKET, out], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        assert p.stdout.readline().strip() == b"ready"
        time.sleep(0.3 + 0.37 * trial)  # kill somewhere inside the write loop
        p.send_signal(signal.SIGKILL)
        p.wait()
        load(out)  # never "does not match the sha256": the old checkpoint or a new complete one
        outcomes.append(_weights_sha(out))
    assert len(set(outcomes)) > 1  # the writer did replace the checkpoint between kills
    save(_model(0), out)  # the next write removes what the killed writers left
    assert _leftovers(str(tmp_path)) == []


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_artifacts_get_the_mode_the_umask_gives(tmp_path, mask):
    from slt_deploy.export import export

    old = os.umask(mask)
    try:
        ck = str(tmp_path / "ck")
        save(_model(0), ck)
        for tgt, name in (("onnx", "m.onnx"), ("nir", "m.nir"), ("packed", "m.slt"), ("loihi", "m.loihi")):
            export(ck, tgt, str(tmp_path / name))
    finally:
        os.umask(old)
    for p in [tmp_path / "ck", tmp_path / "ck" / "model.json", tmp_path / "ck" / "model.safetensors",
              tmp_path / "m.onnx", tmp_path / "m.nir", tmp_path / "m.slt", tmp_path / "m.loihi",
              tmp_path / "m.loihi" / "manifest.json", tmp_path / "m.loihi" / "network.h5"]:
        mode = stat.S_IMODE(os.stat(p).st_mode)
        want = (0o777 if p.is_dir() else 0o666) & ~mask
        assert mode == want, f"{p}: {oct(mode)} != {oct(want)}"


def test_ticket_rounds_survive_the_final_checkpoint_swap(tmp_path):
    out = str(tmp_path / "t")
    os.makedirs(os.path.join(out, "rounds", "round_01"))
    save(_model(0), out)
    assert os.path.isdir(os.path.join(out, "rounds", "round_01"))


def test_check_out_refuses_device_fifo_inputs_and_foreign_folders(tmp_path):
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    with pytest.raises(SltError, match="FIFO"):
        fsio.check_out(fifo, "onnx")
    with pytest.raises(SltError, match="character device"):
        fsio.check_out("/dev/null", "onnx")
    with pytest.raises(SltError, match="input"):
        fsio.check_out(os.path.join(TICKET, "model.safetensors"), "onnx", inputs=[TICKET])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(SltError, match="not a checkpoint folder"):
        fsio.check_out(str(tmp_path / "mine"), "checkpoint", folder=True)
    assert fsio.check_out(str(tmp_path / "a" / "b" / "m.onnx"), "onnx").endswith("m.onnx")
    assert os.path.isdir(tmp_path / "a" / "b")  # the one rule: a missing parent is created


@pytest.fixture
def read_only_dir(tmp_path):
    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    ro.mkdir()
    (src / "old.onnx").write_bytes(b"x")
    r = subprocess.run(["mount", "--bind", "-o", "ro", str(src), str(ro)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("needs root to bind-mount a read-only folder")
    subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], capture_output=True)
    try:
        yield str(ro)
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)


@pytest.mark.parametrize("argv", [["export", TICKET, "--target", "onnx", "--out", "{ro}/m.onnx"],
                                  ["export", TICKET, "--target", "loihi", "--out", "{ro}/m.loihi"],
                                  ["export", TICKET, "--target", "nir", "--out", "{ro}/sub/m.nir"],
                                  ["train", "digits-tiny", "--out", "{ro}/ck", "--epochs", "0", "--quiet"]],
                         ids=["onnx", "loihi", "nir-missing-parent", "train"])
def test_read_only_location_is_a_clear_error(read_only_dir, argv):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from test_bad_input import run_in_process

    code, err, _ = run_in_process([a.replace("{ro}", read_only_dir) for a in argv])
    assert code == 2 and err.startswith("error: ") and "read-only" in err.lower() and "(fix: " in err, err
    assert sorted(os.listdir(read_only_dir)) == ["old.onnx"]
