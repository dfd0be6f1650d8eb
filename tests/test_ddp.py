"""Data-parallel training under torchrun (2 processes, gloo on loopback) gives the model one process gives."""
import os
import subprocess
import sys

import numpy as np
from safetensors.numpy import load_file


def test_two_process_ddp_matches_one_process(tmp_path, free_port):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    one = subprocess.run([sys.executable, "-m", "slt_deploy.cli", "train", "digits-tiny", "--out",
                          str(tmp_path / "one"), "--epochs", "1", "--quiet"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    two = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
                          str(free_port), "-m", "slt_deploy.cli", "train", "digits-tiny", "--out",
                          str(tmp_path / "two"), "--epochs", "1", "--quiet"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-8000:]
    a = load_file(str(tmp_path / "one" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "model.safetensors"))
    assert a.keys() == b.keys()
    diff = max(float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)))) for k in a)
    # measured: 3.3e-7 after one epoch (16 steps): float summation order only
    assert diff < 1e-4, diff
    acc = [line for line in one.stdout.splitlines() if "accuracy" in line][0].split()[3]
    assert acc in two.stdout
