"""The whole profile of one model: the reference (checkpoint through TorchRunner) and any artifacts (through
load_runner, so targets added later are profiled with no change here), measured side by side on real data; the
activity counted once on the model's NIR graph; every hardware profile in slt_deploy/hardware/energy evaluated on it."""
from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..data import dataset_for
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
    """Load a runner inside a peak-memory window that also covers one batch of inference (in-process mode)."""
    with L.PeakMemory() as mem:
        t0 = clock()
        runner = load()
        load_s = clock() - t0
        runner.predict(np.ascontiguousarray(x[:batch], dtype=np.float32))
    return {"name": name, "path": path, "target": _target_of(path), "load_s": load_s, "memory": mem.result(),
            "meta": dict(runner.meta), "_runner": runner}


def artifact_bytes(path: str) -> int:
    """Bytes on disk of an artifact file or folder (a checkpoint folder: its weights and model.json)."""
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs
                   if not f.startswith("."))
    return os.path.getsize(path)


@dataclass
class ProfileOptions:
    """How `profile` measures. isolate: every runner in its own process, one after another (its memory is its
    own); False: all in this process, batch-1 latency in `rounds` interleaved rounds (needed for a fake `clock`)."""
    data: str = "auto"
    limit: int = 200
    frames: int = 100
    warmup: int = 5
    batch: int = 64
    repeats: int = 3
    hardware: object = None
    data_dir: str | None = None
    clock: Callable = time.perf_counter
    log: Callable | None = None
    threads: int | None = None
    skip_errors: bool = False
    rounds: int = 5
    isolate: bool = True


def _is_ckpt(path) -> bool:
    return os.path.isdir(path) and os.path.exists(os.path.join(path, "model.json"))


def _label_artifacts(artifacts, skip_errors, skipped):
    arts = []
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
    return arts


def _measure_isolated(entries, x, y, o: ProfileOptions, tmp) -> list:
    """Each (name, path, kind) measured by `python -m slt_deploy.profile.child` in its own process."""
    import json
    import subprocess
    import sys

    np.save(os.path.join(tmp, "x.npy"), np.ascontiguousarray(x, np.float32))
    np.save(os.path.join(tmp, "y.npy"), np.asarray(y))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    from ..log import progress

    out = []
    for i, (name, path, kind) in enumerate(progress(entries, desc="measuring", unit="runner")):
        if o.log:
            o.log(f"measuring {name} in its own process")
        req = {"path": os.path.abspath(path), "kind": kind, "images": os.path.join(tmp, "x.npy"),
               "labels": os.path.join(tmp, "y.npy"), "frames": o.frames, "warmup": o.warmup, "batch": o.batch,
               "repeats": o.repeats, "threads": o.threads or 0, "activity_frames": len(x)}
        rq, rs = os.path.join(tmp, f"req{i}.json"), os.path.join(tmp, f"res{i}.json")
        with open(rq, "w") as f:
            json.dump(req, f)
        r = subprocess.run([sys.executable, "-m", "slt_deploy.profile.child", rq, rs], env=env, check=False,
                           capture_output=True, text=True)
        if r.returncode != 0 or not os.path.exists(rs):
            tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-4:])
            res = {"ok": False, "error": f"the measuring process failed (exit {r.returncode}): {tail}"}
        else:
            with open(rs) as f:
                res = json.load(f)
        out.append({"name": name, "path": path, "target": _target_of(path), **res})
    return out


def _measure_in_process(entries, x, y, o: ProfileOptions, counters) -> list:
    from ..runtime import load_runner
    from ..runtime.torch_runner import TorchRunner
    from .child import runner_activity

    rows, runners = [], {}
    for name, path, kind in entries:
        try:
            load = (lambda p=path: TorchRunner(p)) if kind == "torch" else (lambda p=path: load_runner(p))
            rep = load_and_measure_memory(name, path, load, x, o.batch, o.clock)
            rep["ok"] = True
        except Exception as e:  # noqa: BLE001 - reported by the caller (skip_errors) or raised there
            rows.append({"name": name, "path": path, "ok": False, "error": f"{type(e).__name__}: {e}"})
            continue
        runners[name] = rep["_runner"]
        rows.append(rep)
    lats = L.measure_latency_interleaved(runners, x, frames=o.frames, warmup=o.warmup, rounds=o.rounds,
                                         clock=o.clock, energy=counters) if runners else {}
    for rr in rows:
        if not rr.get("ok"):
            continue
        runner = rr.pop("_runner")
        rr["latency"] = lats[rr["name"]]
        rr["throughput"] = L.measure_throughput(runner, x, batch=o.batch, repeats=o.repeats, clock=o.clock)
        rr["accuracy"] = _accuracy(runner, x, y, o.batch)
        try:
            rr["activity"], rr["activity_source"] = runner_activity(runner, x, o.batch)
        except Exception as e:  # noqa: BLE001
            rr["activity"], rr["activity_source"] = None, f"not counted: {type(e).__name__}: {e}"
    return rows


def profile(first: str, artifacts=(), opts: ProfileOptions | None = None, **kw) -> dict:
    """Profile `first` -- a checkpoint folder (the reference column) or an artifact -- and `artifacts` of the same
    model. -> report dict. Options: ProfileOptions (or its fields as keywords). With a checkpoint, activity is
    counted on its NIR graph and energy modelled from it; from artifacts alone, on the first artifact whose runner
    can count its own activity. Every runner row also carries the activity its own runner counted."""
    import tempfile

    from ..data import load_dataset
    from ..export import lower

    o = opts or ProfileOptions(**kw)
    log = o.log or (lambda s: None)
    if o.threads:
        torch.set_num_threads(int(o.threads))
    hw = load_hardware(o.hardware)  # fail early on a bad yaml
    ckpt = first if _is_ckpt(first) else None
    artifacts = list(artifacts) if ckpt else [first, *artifacts]
    if ckpt is None and not os.path.exists(first):
        raise SltError(f"{first} does not exist", "pass a checkpoint folder or an artifact written by "
                                                   "'slt-deploy export'")
    skipped = []
    arts = _label_artifacts(artifacts, o.skip_errors, skipped)
    if ckpt:
        _, meta, graph = lower(ckpt)
        r = meta["recipe"]
        name = r["dataset"] if o.data in (None, "auto") else o.data
        if name != r["dataset"]:
            raise SltError(f"{ckpt} was trained on {r['dataset']}, not {name}", f"use --data {r['dataset']}")
        want = list(meta["input"]["shape"])
        model = {"name": r["name"], "ckpt": ckpt, "arch": r["arch"]["type"], "T": meta["T"],
                 "encoding": meta["encoding"], "input_shape": want, "weights_sha256": meta.get("weights_sha256", "")}
        seed = int(r.get("seed", 0))
    else:
        if not arts:
            raise SltError(f"no artifact could be read ({'; '.join(s['error'] for s in skipped)})")
        from ..runtime import load_runner

        m0 = dict(load_runner(arts[0][1]).meta)
        want = list(m0["input_shape"])
        name = dataset_for(want, o.data, arts[0][1])
        model = {"name": m0.get("name") or os.path.basename(os.path.normpath(arts[0][1])), "ckpt": None,
                 "arch": f"artifact ({_target_of(arts[0][1])})", "T": m0["T"], "encoding": m0["encoding"],
                 "input_shape": want, "weights_sha256": ""}
        seed, graph = 0, None
    ds = load_dataset(name, o.data_dir, seed)
    x, y = ds.test.x.numpy(), ds.test.y.numpy()
    if o.limit:
        x, y = x[:o.limit], y[:o.limit]
    entries = ([("reference (torch)", ckpt, "torch")] if ckpt else []) + [(lb, p, "artifact") for lb, p in arts]
    counters = L.EnergyCounters()
    isolate = o.isolate and o.clock is time.perf_counter
    log(f"measuring {len(entries)} runner(s) " + ("each in its own process" if isolate else "in this process"))
    if isolate:
        with tempfile.TemporaryDirectory(prefix="slt-profile-") as tmp:
            rows = _measure_isolated(entries, x, y, o, tmp)
    else:
        rows = _measure_in_process(entries, x, y, o, counters)
    runners = []
    for rr in rows:
        ok = rr.pop("ok", False)
        if ok and list(rr["meta"].get("input_shape", want)) != want:
            ok, rr["error"] = False, (f"SltError: artifact {rr['path']} takes input {rr['meta'].get('input_shape')}, "
                                      f"the {'checkpoint' if ckpt else 'first artifact'} {want}")
        if not ok:
            if not o.skip_errors or (ckpt and rr["path"] == ckpt):
                err = rr["error"].split(": ", 1)[-1] if rr["error"].startswith("SltError") else rr["error"]
                raise SltError(f"{rr['name']}: {err}", "compare artifacts exported from this checkpoint")
            skipped.append({"path": rr["path"], "error": rr["error"]})
            continue
        rr["bytes"] = artifact_bytes(rr["path"])
        runners.append(rr)
    if not runners:
        raise SltError("no runner could be measured (" + "; ".join(s["error"] for s in skipped) + ")")
    ref = runners[0]
    for rr in runners:
        rr["vs_reference"] = {
            "latency_p50": rr["latency"]["p50_ms"] / ref["latency"]["p50_ms"],
            "throughput": rr["throughput"]["frames_per_s"] / ref["throughput"]["frames_per_s"],
            "peak_rss": rr["memory"]["peak_rss_mb"] / ref["memory"]["peak_rss_mb"]}
    if graph is not None:
        log(f"activity: counting synaptic ops on {len(x)} {name} test frames (reference graph)")
        activity, source = profile_activity(graph, x, batch=o.batch), "reference NIR graph of the checkpoint"
    else:
        own = next((rr for rr in runners if rr.get("activity")), None)
        activity = own["activity"] if own else None
        source = f"{own['name']}: {own['activity_source']}" if own else "not counted: no runner records its activity"
    modelled, boards = [], []
    for h in hw if activity is not None else []:
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
    pc = counters.describe() if not isolate else next((rr["power_counters"] for rr in runners
                                                       if "power_counters" in rr), counters.describe())
    return {"format": FORMAT, "format_version": VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model": model, "host": _host(), "data": {"dataset": name, "frames": len(x)},
            "settings": {"frames": o.frames, "warmup": o.warmup, "batch": o.batch, "repeats": o.repeats,
                         "rounds": 1 if isolate else min(o.rounds, o.frames), "isolated": isolate},
            "measured": {"power_counters": pc, "runners": runners, "skipped": skipped},
            "activity": activity, "activity_source": source, "modelled": modelled, "boards": boards}


def demo_stage(ctx, frames: int = 50, limit: int = 200):
    """The demo's last stage: profile every artifact earlier stages stored in ctx["artifacts"] ({target: path},
    exported from ctx.get("artifact_ckpt") or ctx.get("ticket_dir") or ctx["dense_dir"], which is then the
    reference); with none, export the nir target itself. Prints the comparison table; writes profile.json,
    profile.md and the plots under OUT/profile."""
    import click

    from ..export import export
    from . import report

    ckpt = ctx.get("artifact_ckpt") or ctx.get("ticket_dir") or ctx["dense_dir"]
    limit = ctx.get("limit", limit)  # `slt-deploy demo --limit N`
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
