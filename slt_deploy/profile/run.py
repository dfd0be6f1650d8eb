"""The whole profile of one model: the reference (checkpoint through TorchRunner) and any artifacts (through
load_runner, so targets added later are profiled with no change here), measured side by side on real data; the
activity counted once on the model's NIR graph; every hardware profile in slt_deploy/hardware/energy evaluated on it."""
from __future__ import annotations

import os
import platform
import time

import numpy as np
import torch

from ..errors import SltError
from . import latency as L
from .activity import profile_activity
from .energy import evaluate, load_hardware

FORMAT = "slt-deploy-profile"
VERSION = 1


def _target_of(path: str) -> str:
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "model.json")):
        return "torch"
    from ..backends import target_for_path

    return target_for_path(path).name


def _simulated(target: str) -> bool:
    if target == "torch":
        return False
    from ..backends import get_target

    return get_target(target).simulated


def _host() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"machine": platform.machine(), "cpu": cpu, "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "system": platform.system(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def _accuracy(runner, x, y, batch=64) -> float:
    pred = np.concatenate([runner.predict(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])
    return float(100.0 * np.mean(pred == y))


def load_and_measure_memory(name, path, load, x, batch=64, clock=time.perf_counter) -> dict:
    """Load a runner inside a peak-memory window that also covers one batch of inference."""
    with L.PeakMemory() as mem:
        t0 = clock()
        runner = load()
        load_s = clock() - t0
        runner.predict(np.ascontiguousarray(x[:batch], dtype=np.float32))
    return {"name": name, "path": path, "target": _target_of(path), "load_s": load_s, "memory": mem.result(),
            "meta": dict(runner.meta), "_runner": runner}


def profile(ckpt: str, artifacts=(), data: str = "auto", limit: int = 200, frames: int = 100, warmup: int = 5,
            batch: int = 64, repeats: int = 3, hardware=None, data_dir=None, clock=time.perf_counter,
            log=None, threads: int | None = None, skip_errors: bool = False, rounds: int = 5) -> dict:
    """Profile checkpoint folder `ckpt` (the reference) and `artifacts` of the same model. -> report dict.
    `threads`: torch intra-op threads during the measurement (None: leave as is). `skip_errors`: an artifact that
    cannot be loaded or run is listed under measured.skipped instead of failing the whole profile. Batch-1 latency
    is measured in `rounds` interleaved rounds over all runners (fair ratios on a shared machine)."""
    from ..data import load_dataset
    from ..export import lower
    from ..runtime import load_runner
    from ..runtime.torch_runner import TorchRunner

    log = log or (lambda s: None)
    if threads:
        torch.set_num_threads(int(threads))
    hw = load_hardware(hardware)  # fail early on a bad yaml
    _, meta, graph = lower(ckpt)
    r = meta["recipe"]
    name = r["dataset"] if data in (None, "auto") else data
    if name != r["dataset"]:
        raise SltError(f"{ckpt} was trained on {r['dataset']}, not {name}", f"use --data {r['dataset']}")
    ds = load_dataset(name, data_dir, int(r.get("seed", 0)))
    x, y = ds.test.x.numpy(), ds.test.y.numpy()
    if limit:
        x, y = x[:limit], y[:limit]
    # every artifact must be one the registry knows, and of this model
    arts, skipped = [], []
    for p in artifacts:
        try:
            if not os.path.exists(p):
                raise SltError(f"artifact {p} does not exist", "pass files written by 'slt-deploy export'")
            label = f"{_target_of(p)}:{os.path.basename(os.path.normpath(p))}"
            used = [a for a, _ in arts]
            k = 2
            while label in used:  # same target and file name from different folders
                label, k = f"{label.split('#')[0]}#{k}", k + 1
            arts.append((label, p))
        except SltError as e:
            if not skip_errors:
                raise
            skipped.append({"path": p, "error": str(e)})
    log(f"activity: counting synaptic ops on {len(x)} {name} test frames")
    activity = profile_activity(graph, x, batch=batch)
    counters = L.EnergyCounters()
    log("reference (torch): loading")
    runners = [load_and_measure_memory("reference (torch)", ckpt, lambda: TorchRunner(ckpt), x, batch, clock)]
    want = list(meta["input"]["shape"])
    for label, p in arts:
        log(f"{label}: loading")
        try:
            rep = load_and_measure_memory(label, p, lambda p=p: load_runner(p), x, batch, clock)
            if list(rep["meta"].get("input_shape", want)) != want:
                raise SltError(f"artifact {p} takes input {rep['meta'].get('input_shape')}, the checkpoint {want}",
                               "compare artifacts exported from this checkpoint")
        except Exception as e:  # with skip_errors any runtime failure is reported, not fatal
            if not skip_errors:
                raise
            skipped.append({"path": p, "error": f"{type(e).__name__}: {e}"})
            continue
        runners.append(rep)
    log(f"latency: {frames} batch-1 frames per runner in {min(rounds, frames)} interleaved rounds")
    lats = L.measure_latency_interleaved({r["name"]: r["_runner"] for r in runners}, x, frames=frames, warmup=warmup,
                                         rounds=rounds, clock=clock, energy=counters)
    for rr in runners:
        log(f"{rr['name']}: throughput and accuracy")
        runner = rr.pop("_runner")
        rr["latency"] = lats[rr["name"]]
        rr["throughput"] = L.measure_throughput(runner, x, batch=batch, repeats=repeats, clock=clock)
        rr["accuracy"] = _accuracy(runner, x, y, batch)
    ref = runners[0]
    for rr in runners:
        rr["vs_reference"] = {
            "latency_p50": rr["latency"]["p50_ms"] / ref["latency"]["p50_ms"],
            "throughput": rr["throughput"]["frames_per_s"] / ref["throughput"]["frames_per_s"],
            "peak_rss": rr["memory"]["peak_rss_mb"] / ref["memory"]["peak_rss_mb"]}
    modelled, boards = [], []
    for h in hw:
        if h["model"] == "board":
            for rr in runners:
                if _simulated(rr["target"]):  # the host time of a chip simulation says nothing of this board
                    e = evaluate(h, activity, None)
                    e["label"] = (f"not modelled: the {rr['target']} runner simulates its chip on this host; "
                                  "that latency is not the board's")
                else:
                    e = evaluate(h, activity, rr["latency"]["p50_ms"] * 1e-3)
                e["runner"] = rr["name"]
                boards.append(e)
        else:
            modelled.append(evaluate(h, activity))
    return {"format": FORMAT, "format_version": VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model": {"name": r["name"], "ckpt": ckpt, "arch": r["arch"]["type"], "T": meta["T"],
                      "encoding": meta["encoding"], "input_shape": want,
                      "weights_sha256": meta.get("weights_sha256", "")},
            "host": _host(), "data": {"dataset": name, "frames": int(len(x))},
            "settings": {"frames": frames, "warmup": warmup, "batch": batch, "repeats": repeats,
                         "rounds": min(rounds, frames)},
            "measured": {"power_counters": counters.describe(), "runners": runners, "skipped": skipped},
            "activity": activity, "modelled": modelled, "boards": boards}


def demo_stage(ctx, frames: int = 50, limit: int = 200):
    """The demo's last stage: profile every artifact earlier stages stored in ctx["artifacts"] ({target: path},
    exported from ctx.get("artifact_ckpt") or ctx.get("ticket_dir") or ctx["dense_dir"], which is then the
    reference); with none, export the nir target itself. Prints the comparison table; writes profile.json,
    profile.md and the plots under OUT/profile."""
    import click

    from ..export import export
    from . import report

    ckpt = ctx.get("artifact_ckpt") or ctx.get("ticket_dir") or ctx["dense_dir"]
    out = os.path.join(ctx["out"], "profile")
    os.makedirs(out, exist_ok=True)
    arts = dict(ctx.get("artifacts") or {})
    if not arts:
        path = os.path.join(out, "model.nir")
        export(ckpt, "nir", path)
        arts = {"nir": path}
        click.echo(f"  no artifacts in ctx['artifacts']: exported {path}")
    rep = profile(ckpt, list(arts.values()), data="auto", limit=limit, frames=frames,
                  data_dir=ctx.get("data_dir"), threads=1, skip_errors=True)
    report.write_json(rep, os.path.join(out, "profile.json"))
    report.write_markdown(rep, os.path.join(out, "profile.md"))
    report.write_plots(rep, out)
    text = report.render_text(rep).split("\nsources:")[0]
    click.echo("\n".join("  " + line for line in text.splitlines()))
    for sk in rep["measured"]["skipped"]:
        click.echo(f"  skipped {sk['path']}: {sk['error']}")
    click.echo(f"  report: {out}/profile.md, profile.json, activity.png, energy.png, latency.png")
    ctx["profile"] = rep
