"""The perception node's energy modelling, in its own process (python -m slt_ros2.energy_worker CKPT HARDWARE).

In the node's own process the modelling (lowering the checkpoint to NIR, counting spikes on the last frames) held the
GIL for long stretches every energy_period: frames waited for it, and it set the node's p99 latency (docs/ros2.md).
Here it runs at normal scheduling priority, however the node is scheduled, and shares no GIL with the node.

Protocol on stdin/stdout: the node writes an 8-byte little-endian length and that many bytes of a .npy array
(frames [N, C, H, W] float32); the worker answers one JSON line: {"energy_j": float or null, "label": str} or
{"error": str}. End of stdin ends the worker."""
from __future__ import annotations

import io
import json
import os
import signal
import sys

import numpy as np


def main(argv=None) -> int:
    ckpt, hardware = (argv or sys.argv[1:])[:2]
    try:  # started by a SCHED_FIFO node: back to normal scheduling (its threads started later inherit this)
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (AttributeError, OSError):
        pass
    # Ctrl-C in a terminal reaches the whole process group: the node stops, closes our stdin, and we end there
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever the libraries print goes to stderr, not into the answers
    from slt_deploy.profile.activity import profile_activity
    from slt_deploy.profile.energy import evaluate, load_hardware

    hw, graph, error = load_hardware(hardware)[0], None, None
    # lower the checkpoint now, while the node loads its model and waits for frames: the first answer then costs
    # only the spike counting (under load the lowering took longer than the node's first frames)
    try:
        from slt_deploy.export import lower
        _, _, graph = lower(ckpt)
    except Exception as e:  # noqa: BLE001 - answered to each request below
        error = f"{type(e).__name__}: {e}"
    inp = sys.stdin.buffer
    while True:
        head = inp.read(8)
        if len(head) < 8:
            return 0
        x = np.load(io.BytesIO(inp.read(int.from_bytes(head, "little"))), allow_pickle=False)
        if error is not None:
            out.write(json.dumps({"error": error}) + "\n")
            out.flush()
            continue
        try:
            res = evaluate(hw, profile_activity(graph, x, batch=len(x)))
            ans = {"energy_j": res["energy_per_frame_j"], "label": res["label"]}
        except Exception as e:  # noqa: BLE001 - reported to the node, which says it in its diagnostics
            ans = {"error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(ans) + "\n")
        out.flush()


if __name__ == "__main__":
    sys.exit(main())
