"""Run the nodes as real processes and talk to them from this one (tests, bench): environment for an isolated
ROS domain with localhost discovery, a process wrapper with a log file, bounded waits."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

EXAMPLE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(EXAMPLE))
DDS_PROFILE = os.path.join(EXAMPLE, "fastdds_large_frames.xml")
PARAMS_FILE = os.path.join(EXAMPLE, "config", "slt_perception.yaml")


def ros_env(domain: str, dds_profile: str | None = DDS_PROFILE) -> dict:
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               RCUTILS_LOGGING_BUFFERED_STREAM="0", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([EXAMPLE, ROOT, env.get("PYTHONPATH", "")]))
    if dds_profile:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = dds_profile
    return env


def load_factor() -> float:
    """How much slower than on a quiet machine things run now: runnable processes per core, at least 1 -- the larger
    of the 1-minute load average and the processes running right now (the average lags a load that just started by
    a minute). On the 2-core machine these tests were written on, a load of 10 gave 5."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    try:
        with open("/proc/loadavg") as f:  # "0.52 0.58 0.59 RUNNING/TOTAL LASTPID"; RUNNING includes the reader
            load = max(load, int(f.read().split()[3].split("/")[0]) - 1)
    except (OSError, ValueError, IndexError):
        pass
    return max(1.0, load / (os.cpu_count() or 1))


def scaled(seconds: float) -> float:
    """A deadline of `seconds` on a quiet machine, stretched by the load measured now (waits end as soon as their
    condition holds: a long deadline costs nothing when things go well)."""
    return seconds * load_factor()


def wait_for(cond, timeout, what, proc=None):
    t_end = time.time() + timeout
    while time.time() < t_end:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process exited with {proc.returncode}")
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (load average "
                         f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


class Proc:
    """`python -m module --ros-args [--params-file F] -p k:=v ...` with its output in `log_path`."""

    def __init__(self, module, params, log_path, domain, params_file=None, extra_args=()):
        args = [sys.executable, "-m", module, "--ros-args", *extra_args]
        if params_file:
            args += ["--params-file", params_file]
        for k, v in params.items():
            args += ["-p", f"{k}:={v}"]
        self.log_path = str(log_path)
        self.log = open(self.log_path, "wb")
        self.p = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=ros_env(domain), cwd=ROOT)

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def rss_mb(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024

    def interrupt(self, timeout=10):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(5)
            raise AssertionError(f"{self.log_path}: did not stop within {timeout} s of Ctrl-C") from None
        finally:
            self.log.close()
