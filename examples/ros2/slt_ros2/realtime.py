"""sched_priority of both nodes: every thread of the process (rclpy/DDS threads included) to SCHED_FIFO.

A robot runs its camera driver and perception node like this so that other work on the computer cannot make a frame
wait for a core: on a loaded machine that wait is the p99 (docs/ros2.md). Linux only; needs CAP_SYS_NICE or an
rtprio limit (/etc/security/limits.conf)."""
from __future__ import annotations

import os

from slt_deploy.errors import SltError


def set_realtime(priority: int) -> int:
    """Every thread of this process to SCHED_FIFO `priority` (1..99); threads started later inherit it from the
    thread that starts them. -> the number of threads set."""
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
        for tid in tids:
            os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError:
        raise SltError(f"sched_priority {priority}: not permitted to use SCHED_FIFO",
                       "give the process CAP_SYS_NICE (or an rtprio limit in /etc/security/limits.conf), or set "
                       "sched_priority 0") from None
    except (OSError, AttributeError) as e:  # no /proc/self/task or no os.sched_setscheduler (not Linux)
        raise SltError(f"sched_priority {priority}: {e}", "set sched_priority 0") from None
    return len(tids)
