"""One runner measured in its own process (`python -m slt_deploy.profile.child REQUEST.json RESULT.json`), so its
memory figure is its own: the process's resident-set high-water mark is reset once the imports and the test
images are in (the baseline) and read after the measurement; `runner_mb` = peak - baseline is what loading and
running this runner cost. The child also measures batch-1 latency, throughput and accuracy, and counts the
runner's own activity: the spikes it records (`run(seq, record=True)`) on the synapses of its own graph
(`activity_graph()` of the runner, or the `.nir` file itself), see runner_activity.

REQUEST: {"path", "kind": "torch"|"artifact", "images": .npy, "labels": .npy, "frames", "warmup", "batch",
"repeats", "threads", "activity_frames"}."""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np


def runner_graph(runner):
    """The NIR graph whose synapses this runner executes, or None (then its activity is not counted)."""
    if hasattr(runner, "activity_graph"):
        return runner.activity_graph()
    g = getattr(runner, "graph", None)
    if g is not None and hasattr(g, "nodes"):
        return g
    return None


def runner_activity(runner, images, batch=64) -> tuple[dict | None, str]:
    """(activity as profile.activity.ActivityCounter.result, how) counted from the spikes the runner records."""
    from .activity import ActivityCounter

    g = runner_graph(runner)
    if g is None:
        return None, f"not counted: {type(runner).__name__} exposes no graph of its synapses"
    c = ActivityCounter(g)
    for i in range(0, len(images), batch):
        seq = runner.encode(images[i:i + batch])
        res = runner.run(seq, record=True)
        c.add(seq, res.get("spikes") or {})
    return c.result(), f"counted by the runner ({type(runner).__name__}: its recorded spikes on its own synapses)"


def _status_kb(field):
    from .latency import _status_kb as s

    return s(field)


def measure(req: dict) -> dict:
    import torch

    from . import latency as L

    if req.get("threads"):
        torch.set_num_threads(int(req["threads"]))
    x = np.load(req["images"])
    y = np.load(req["labels"])
    # baseline: Python, torch, numpy and the images are resident; reset the high-water mark here
    reset = True
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        reset = False
    base_kb = _status_kb("VmRSS") or 0
    t0 = time.perf_counter()
    if req["kind"] == "torch":
        from ..runtime.torch_runner import TorchRunner

        runner = TorchRunner(req["path"])
    else:
        from ..runtime import load_runner

        runner = load_runner(req["path"])
    load_s = time.perf_counter() - t0
    batch = int(req["batch"])
    runner.predict(np.ascontiguousarray(x[:batch], np.float32))
    counters = L.EnergyCounters()
    lat = L.measure_latency(runner, x, frames=int(req["frames"]), warmup=int(req["warmup"]), energy=counters)
    thr = L.measure_throughput(runner, x, batch=batch, repeats=int(req["repeats"]))
    pred = np.concatenate([runner.predict(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])
    act, how = (None, "not counted (--no-activity)")
    if int(req.get("activity_frames", 0)) > 0:
        try:
            act, how = runner_activity(runner, x[:int(req["activity_frames"])], batch)
        except Exception as e:  # noqa: BLE001 - a runner that cannot record is reported, not fatal
            act, how = None, f"not counted: {type(e).__name__}: {e}"
    if reset:
        peak_kb, method = _status_kb("VmHWM") or 0, ("own process: VmHWM reset after imports and data (baseline), "
                                                     "read after the measurement")
    else:
        import resource

        peak_kb, method = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "own process: ru_maxrss"
    return {"load_s": load_s, "latency": lat, "throughput": thr, "accuracy": float(100.0 * np.mean(pred == y)),
            "memory": {"peak_rss_mb": peak_kb / 1024, "baseline_rss_mb": base_kb / 1024,
                       "runner_mb": max(0, peak_kb - base_kb) / 1024, "delta_mb": max(0, peak_kb - base_kb) / 1024,
                       "method": method},
            "meta": {k: v for k, v in dict(runner.meta).items()}, "activity": act, "activity_source": how,
            "power_counters": counters.describe(), "pid": os.getpid()}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as f:
        req = json.load(f)
    try:
        out = {"ok": True, **measure(req)}
    except Exception as e:  # noqa: BLE001 - the parent reports it (or stops, without skip_errors)
        out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    tmp = argv[1] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))
    os.replace(tmp, argv[1])


if __name__ == "__main__":
    main()
