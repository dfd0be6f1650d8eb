"""sched_priority (slt_ros2/realtime.py): every thread of the process, the ones started before and after, runs
SCHED_FIFO; a process that may not gets one clear error. Each case in a child process (the policy stays with it)."""
import os
import subprocess
import sys

import pytest

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "ros2")

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setscheduler") or not os.path.isdir("/proc/self/task"),
                                reason="Linux scheduling API")

CHILD = """
import os, sys, threading
from slt_ros2.realtime import set_realtime
from slt_deploy.errors import SltError
if len(sys.argv) > 2:  # no rtprio limit and, for root, no root: SCHED_FIFO is then not permitted
    import resource
    resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))
    if os.getuid() == 0:
        os.setgid(65534)
        os.setuid(65534)
ev = threading.Event()
before = threading.Thread(target=ev.wait, daemon=True)
before.start()
try:
    n = set_realtime(int(sys.argv[1]))
except SltError as e:
    print("error:", e)
    sys.exit(2)
after = threading.Thread(target=ev.wait, daemon=True)
after.start()
tids = [int(t) for t in os.listdir("/proc/self/task")]
print(n, len(tids), sorted({(os.sched_getscheduler(t), os.sched_getparam(t).sched_priority) for t in tids}))
ev.set()
"""


def _run(priority, *extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([EXAMPLE, os.path.dirname(os.path.dirname(EXAMPLE)),
                                                      os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", CHILD, str(priority), *extra], capture_output=True, text=True,
                          env=env, timeout=60)


def _can_fifo():
    try:
        p = _run(1)
    except subprocess.TimeoutExpired:
        return False
    return p.returncode == 0


def test_every_thread_runs_sched_fifo():
    if not _can_fifo():
        pytest.skip("this process may not use SCHED_FIFO (no CAP_SYS_NICE / rtprio limit)")
    p = _run(1)
    assert p.returncode == 0, p.stderr
    n, total, policies = p.stdout.strip().splitlines()[-1].split(" ", 2)
    assert int(n) >= 2 and int(total) == int(n) + 1, p.stdout  # main + the thread before; + the one after
    assert policies == str([(os.SCHED_FIFO, 1)]), p.stdout


def test_not_permitted_is_one_clear_error():
    """RLIMIT_RTPRIO 0 and no CAP_SYS_NICE (the child gives up root when it has it): one line, exit 2."""
    p = _run(10, "drop")
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stdout.strip().splitlines()[-1].startswith("error: sched_priority 10: not permitted to use SCHED_FIFO")
    assert "Traceback" not in p.stderr
