"""A ticket search runs data-parallel under torchrun like training (2 processes, gloo on loopback): rank 0 writes
the rounds and the ticket, and it is the ticket a single process finds: the same first-round masks, final masks
equal up to near-ties (the retrained weights differ only by float summation order, tests/test_ddp.py), the same
accuracy within 2 pt."""
import json
import os
import subprocess
import sys

import torch

from slt_deploy.checkpoint import load
from slt_deploy.nn import synapses

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_imp_under_torchrun_matches_one_process(tmp_path, free_port):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1",
           "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cli = ["-m", "slt_deploy.cli"]
    dense = str(tmp_path / "dense")
    r = subprocess.run([sys.executable] + cli + ["train", "digits-tiny", "--out", dense, "--epochs", "3", "--quiet"],
                       env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    args = ["ticket", dense, "--method", "imp", "--sparsity", "0.75", "--prune-fraction", "0.5", "--epochs", "1",
            "--distill", "--quiet"]
    one = subprocess.run([sys.executable] + cli + args + ["--out", str(tmp_path / "one")], env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert one.returncode == 0, one.stderr[-2000:]
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    two = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
                          str(free_port)] + cli + args + ["--out", str(tmp_path / "two")], env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("imp ticket:") == 1  # one report, from rank 0
    assert json.loads((tmp_path / "two" / "ticket.json").read_text())["ticket"]["reload_bit_exact"]
    m1 = {n: layer.mask for n, layer in synapses(load(str(tmp_path / "one" / "rounds" / "round_01"))[0])}
    m2 = {n: layer.mask for n, layer in synapses(load(str(tmp_path / "two" / "rounds" / "round_01"))[0])}
    assert all(torch.equal(m1[n], m2[n]) for n in m1)  # round 1 prunes the same dense weights
    # round 2 ranks weights retrained in two processes: float-order differences may swap near-equal magnitudes
    f1 = {n: layer.mask for n, layer in synapses(load(str(tmp_path / "one"))[0])}
    f2 = {n: layer.mask for n, layer in synapses(load(str(tmp_path / "two"))[0])}
    differ = sum(int((f1[n] != f2[n]).sum()) for n in f1)
    total = sum(f1[n].numel() for n in f1)
    assert differ <= 0.01 * total, (differ, total)
    acc = [json.loads((tmp_path / d / "ticket.json").read_text())["measurements"]["test_acc"] for d in ("one", "two")]
    assert abs(acc[0] - acc[1]) <= 2.0, acc
