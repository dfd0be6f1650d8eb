"""Measured on this device: latency per frame at batch 1 (warm-up, then percentiles), throughput at a larger batch,
peak memory, and energy from the host's power counters where they exist (Intel RAPL, NVIDIA NVML).

Every timing goes through an injectable `clock` (seconds, monotonic; default time.perf_counter) so the statistics
can be tested with a fake clock. A "frame" is one image through `runner.predict` (encode + all T steps + readout):
what a user of the runtime API pays per camera frame.
"""
from __future__ import annotations

import glob
import math
import os
import resource
import statistics
import time
from typing import Callable

import numpy as np

Clock = Callable[[], float]


# --------------------------------------------------------------------------------------------------- statistics
def percentile(samples, q: float) -> float:
    """q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default 'linear')."""
    xs = sorted(float(x) for x in samples)
    if not xs:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q={q} is outside 0..100")
    pos = (len(xs) - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(samples_s) -> dict:
    """Latency statistics in milliseconds from per-call durations in seconds."""
    xs = [float(s) for s in samples_s]
    if not xs:
        return {"n": 0}
    ms = [1e3 * s for s in xs]
    mean = sum(ms) / len(ms)
    return {"n": len(ms), "mean_ms": mean, "std_ms": math.sqrt(sum((m - mean) ** 2 for m in ms) / len(ms)),
            "min_ms": min(ms), "p50_ms": percentile(ms, 50), "p95_ms": percentile(ms, 95),
            "p99_ms": percentile(ms, 99), "max_ms": max(ms)}


def time_calls(fn: Callable[[int], object], n: int, warmup: int = 5, clock: Clock = time.perf_counter) -> list:
    """Call fn(i) `warmup` times untimed, then n times timed; -> n durations in seconds (clock units)."""
    if n < 1:
        raise ValueError("need at least one timed call")
    for i in range(max(0, warmup)):
        fn(i)
    out = []
    for i in range(n):
        t0 = clock()
        fn(i)
        out.append(clock() - t0)
    return out


def median_time(fn: Callable[[], object], n: int = 30, warmup: int = 3) -> float:
    """Median seconds of n calls of fn() after `warmup` untimed ones (quick A/B timings in demos and benches)."""
    return statistics.median(time_calls(lambda i: fn(), n, warmup))


# --------------------------------------------------------------------------------------------------- runners
def measure_latency(runner, images: np.ndarray, frames: int = 100, warmup: int = 5,
                    clock: Clock = time.perf_counter, energy=None) -> dict:
    """Batch-1 latency of runner.predict over `frames` frames cycling through `images` [N, C, H, W] (raw units).
    `energy`: an EnergyCounters; when available, energy per frame over the timed loop is added."""
    n = len(images)
    x = np.ascontiguousarray(images, dtype=np.float32)
    def call(i):
        return runner.predict(x[i % n: i % n + 1])
    for i in range(max(0, warmup)):
        call(i)
    e0 = energy.read() if energy is not None and energy.available else None
    samples = time_calls(call, frames, warmup=0, clock=clock)
    res = summarize(samples)
    res["samples_ms"] = [1e3 * s for s in samples]
    if e0 is not None:
        joules = energy.delta(e0, energy.read())
        res["energy_per_frame_j"] = {k: v / frames for k, v in joules.items()}
    return res


def measure_latency_interleaved(runners: dict, images: np.ndarray, frames: int = 100, warmup: int = 5,
                                rounds: int = 5, clock: Clock = time.perf_counter, energy=None) -> dict:
    """Batch-1 latency of several runners {name: runner}, measured in `rounds` interleaved rounds (runner A's
    chunk, B's chunk, ..., then again) so that load from other processes hits every runner alike and the ratios
    stay meaningful on a shared machine. Each runner gets `warmup` untimed frames first and `frames` timed frames
    in total (the last chunk takes the remainder). -> {name: measure_latency-style result}."""
    n = len(images)
    x = np.ascontiguousarray(images, dtype=np.float32)
    rounds = max(1, min(rounds, frames))
    chunks = [frames // rounds + (1 if r < frames % rounds else 0) for r in range(rounds)]
    samples = {k: [] for k in runners}
    joules = {k: {} for k in runners}
    done = {k: 0 for k in runners}
    for r in runners.values():
        for i in range(max(0, warmup)):
            r.predict(x[i % n: i % n + 1])
    for c in chunks:
        for k, r in runners.items():
            start = done[k]
            def call(i, r=r, start=start):
                return r.predict(x[(start + i) % n: (start + i) % n + 1])
            e0 = energy.read() if energy is not None and energy.available else None
            samples[k] += time_calls(call, c, warmup=0, clock=clock)
            if e0 is not None:
                for dom, j in energy.delta(e0, energy.read()).items():
                    joules[k][dom] = joules[k].get(dom, 0.0) + j
            done[k] += c
    out = {}
    for k in runners:
        res = summarize(samples[k])
        res["samples_ms"] = [1e3 * s for s in samples[k]]
        res["rounds"] = rounds
        if joules[k]:
            res["energy_per_frame_j"] = {d: j / frames for d, j in joules[k].items()}
        out[k] = res
    return out


def measure_throughput(runner, images: np.ndarray, batch: int = 64, repeats: int = 3, warmup: int = 1,
                       clock: Clock = time.perf_counter) -> dict:
    """Frames per second of runner.predict at batch size `batch` (images tiled if fewer than `batch`)."""
    x = np.ascontiguousarray(images, dtype=np.float32)
    if len(x) < batch:
        x = np.concatenate([x] * (batch // len(x) + 1))
    xb = x[:batch]
    samples = time_calls(lambda i: runner.predict(xb), repeats, warmup=warmup, clock=clock)
    total = sum(samples)
    return {"batch": batch, "repeats": repeats, "seconds": total,
            "frames_per_s": batch * repeats / total if total > 0 else math.inf,
            "ms_per_batch_p50": 1e3 * percentile(samples, 50)}


# --------------------------------------------------------------------------------------------------- memory
def _status_kb(field: str):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak resident memory of this process while a block runs.

    On Linux the high-water mark (VmHWM) is reset on entry by writing 5 to /proc/self/clear_refs, so the peak is
    that of the block (it still includes everything already resident: Python, torch, the data). Elsewhere it falls
    back to getrusage's ru_maxrss, the high-water mark of the whole process lifetime (said in `method`)."""

    def __enter__(self):
        self.reset = False
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.reset = True
        except OSError:
            pass
        self.baseline_kb = _status_kb("VmRSS")
        return self

    def __exit__(self, *exc):
        hwm = _status_kb("VmHWM") if self.reset else None
        if hwm is not None:
            self.peak_kb, self.method = hwm, "VmHWM, reset when this runner was loaded (includes the baseline)"
        else:
            ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
            self.peak_kb, self.method = ru, "ru_maxrss: whole-process lifetime high-water mark"
        return False

    def result(self) -> dict:
        base = self.baseline_kb or 0
        return {"peak_rss_mb": self.peak_kb / 1024, "baseline_rss_mb": base / 1024,
                "delta_mb": max(0, self.peak_kb - base) / 1024, "method": self.method}


# --------------------------------------------------------------------------------------------------- power counters
class EnergyCounters:
    """Host energy counters, read when present: Intel RAPL package domains under /sys/class/powercap
    (energy_uj, with wrap-around at max_energy_range_uj) and NVIDIA GPUs through NVML (pynvml,
    nvmlDeviceGetTotalEnergyConsumption, mJ). `available` is False, and `why` says why, when there are none.
    Readings are whole-package / whole-GPU: they include everything else running on the machine."""

    def __init__(self, powercap_root: str = "/sys/class/powercap"):
        self.rapl, self.nvml, notes = {}, [], []
        zones = sorted(glob.glob(os.path.join(powercap_root, "intel-rapl:*")))
        zones = [z for z in zones if os.path.basename(z).count(":") == 1]  # package domains, not sub-domains
        for z in zones:
            try:
                name = open(os.path.join(z, "name")).read().strip()
                int(open(os.path.join(z, "energy_uj")).read())
                rng = int(open(os.path.join(z, "max_energy_range_uj")).read())
                self.rapl[f"rapl:{name}:{os.path.basename(z)}"] = (os.path.join(z, "energy_uj"), rng)
            except (OSError, ValueError):
                notes.append(f"{z}/energy_uj not readable (needs root on most kernels)")
        if not zones:
            notes.append(f"no Intel RAPL domains under {powercap_root}")
        try:
            import pynvml  # optional: only present on NVIDIA hosts

            pynvml.nvmlInit()
            for i in range(pynvml.nvmlDeviceGetCount()):
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
                pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
                self.nvml.append((f"nvml:gpu{i}", h))
            self._pynvml = pynvml
        except ImportError:
            notes.append("no NVML (pynvml not installed / no NVIDIA GPU)")
        except Exception as e:  # noqa: BLE001 - NVML raises its own error types for every absent-GPU case
            notes.append(f"NVML unavailable ({type(e).__name__})")
        self.available = bool(self.rapl or self.nvml)
        self.why = "; ".join(notes) if not self.available else ""

    def read(self) -> dict:
        out = {}
        for k, (path, _) in self.rapl.items():
            with open(path) as f:
                out[k] = int(f.read()) * 1e-6
        for k, h in self.nvml:
            out[k] = self._pynvml.nvmlDeviceGetTotalEnergyConsumption(h) * 1e-3
        return out

    def delta(self, a: dict, b: dict) -> dict:
        """Joules between two read()s, per domain (RAPL counters wrap at max_energy_range_uj)."""
        out = {}
        for k in a:
            d = b[k] - a[k]
            if d < 0 and k in self.rapl:
                d += self.rapl[k][1] * 1e-6
            out[k] = d
        return out

    def describe(self) -> dict:
        return {"available": self.available, "domains": sorted(self.rapl) + [k for k, _ in self.nvml],
                "why_absent": self.why}
