"""Rolling performance figures for the perception node (pure Python, no ROS)."""
from __future__ import annotations

import collections
import threading
import time

import numpy as np


class Stats:
    """Counters plus a window of the last `window` per-frame timings (bounded memory)."""

    def __init__(self, window: int = 300):
        self.lock = threading.Lock()
        self.latency_ms = collections.deque(maxlen=window)    # source stamp -> result published
        self.service_ms = collections.deque(maxlen=window)    # decode + preprocess + inference + publish
        self.infer_ms = collections.deque(maxlen=window)      # runner.predict only
        self.pre_ms = collections.deque(maxlen=window)        # decode + preprocess
        self.done_times = collections.deque(maxlen=window)    # monotonic time of each result
        self.received = self.processed = self.dropped = self.lost = self.malformed = self.errors = 0
        self._last_report = (time.monotonic(), 0)
        self._last_cpu = (time.process_time(), 0)
        self._cpu_ms = float("nan")
        self.last_frame = None                                # monotonic time of the last frame received
        self._period_lat = collections.deque(maxlen=100_000)  # latencies since the last snapshot
        self._period_counts = {}

    def add_result(self, latency_ms: float, service_ms: float, infer_ms: float, pre_ms: float = float("nan")):
        with self.lock:
            self.pre_ms.append(pre_ms)
            self.processed += 1
            self.latency_ms.append(latency_ms)
            self._period_lat.append(latency_ms)
            self.service_ms.append(service_ms)
            self.infer_ms.append(infer_ms)
            self.done_times.append(time.monotonic())

    def count(self, what: str, n: int = 1):
        with self.lock:
            setattr(self, what, getattr(self, what) + n)
            if what == "received":
                self.last_frame = time.monotonic()

    @staticmethod
    def _pct(values, q):
        return float(np.percentile(np.fromiter(values, float), q)) if values else float("nan")

    def snapshot(self) -> dict:
        """Figures over the window; fps = results per second since the previous snapshot."""
        with self.lock:
            now = time.monotonic()
            t0, n0 = self._last_report
            self._last_report = (now, self.processed)
            fps = (self.processed - n0) / (now - t0) if now > t0 else 0.0
            # CPU time of the whole node process per result (all threads): what a frame costs whatever else the
            # machine is doing; updated once >= 10 results have accumulated since the last update
            cpu, c0n = time.process_time(), self._last_cpu[1]
            if self.processed - c0n >= 10:
                self._cpu_ms = (cpu - self._last_cpu[0]) * 1e3 / (self.processed - c0n)
                self._last_cpu = (cpu, self.processed)
            svc = list(self.service_ms)
            counts = {k: getattr(self, k) for k in ("received", "processed", "dropped", "lost", "malformed", "errors")}
            period = {k: v - self._period_counts.get(k, 0) for k, v in counts.items()}
            self._period_counts = counts
            period.update(latency_p99_ms=self._pct(self._period_lat, 99), fps=fps,
                          silent_s=(now - self.last_frame) if self.last_frame is not None else None)
            self._period_lat.clear()
            self.period = period
            return {
                "latency_p50_ms": self._pct(self.latency_ms, 50), "latency_p99_ms": self._pct(self.latency_ms, 99),
                "inference_p50_ms": self._pct(self.infer_ms, 50), "inference_p99_ms": self._pct(self.infer_ms, 99),
                "preprocess_p50_ms": self._pct(self.pre_ms, 50), "service_p50_ms": self._pct(svc, 50),
                "fps": fps,
                "capacity_fps": 1000.0 / (sum(svc) / len(svc)) if svc and sum(svc) > 0 else float("nan"),
                "cpu_ms_per_frame": self._cpu_ms,
                "cpu_capacity_fps": 1000.0 / self._cpu_ms if self._cpu_ms > 0 else float("nan"),
                "frames_received": self.received, "frames_processed": self.processed,
                # dropped = replaced in the node's keep-last queue + never reached the node (publication
                # sequence-number gaps: DDS keep-last queue overwritten or lost in transport)
                "frames_dropped": self.dropped + self.lost, "frames_dropped_in_queue": self.dropped,
                "frames_dropped_upstream": self.lost,
                "frames_malformed": self.malformed, "errors": self.errors,
            }


OK, WARN, ERROR, STALE = 0, 1, 2, 3  # diagnostic_msgs/DiagnosticStatus levels
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}


def level(period: dict, cfg: dict, topic: str = "the image topic") -> tuple:
    """(level, message) of one diagnostics period, per the diagnostic_msgs conventions:
    STALE  no frame for `stale_timeout` s (or none yet): the input is silent, the figures are old;
    ERROR  the model raised on a frame, or the period's p99 latency is above `latency_error_ms`;
    WARN   malformed frames, results/s below `min_fps` (0 = off), p99 above `latency_warn_ms`, or more than
           `drop_warn_ratio` of the frames dropped (node slower than the camera, or frames lost upstream);
    OK     otherwise. `period`: Stats.period (counts since the previous report, latency p99, fps, silent_s)."""
    silent = period.get("silent_s")
    if silent is None:
        return STALE, f"no image received yet on {topic}"
    if silent > cfg["stale_timeout"]:
        return STALE, f"no image for {silent:.1f} s on {topic} (stale_timeout {cfg['stale_timeout']:g} s)"
    errors, warns = [], []
    p99 = period.get("latency_p99_ms", float("nan"))
    if period.get("errors", 0):
        errors.append(f"{period['errors']} frames failed in the model")
    if p99 == p99 and cfg["latency_error_ms"] > 0 and p99 > cfg["latency_error_ms"]:
        errors.append(f"latency p99 {p99:.1f} ms > latency_error_ms {cfg['latency_error_ms']:g}")
    elif p99 == p99 and cfg["latency_warn_ms"] > 0 and p99 > cfg["latency_warn_ms"]:
        warns.append(f"latency p99 {p99:.1f} ms > latency_warn_ms {cfg['latency_warn_ms']:g}")
    if period.get("malformed", 0):
        warns.append(f"{period['malformed']} malformed frames")
    if cfg["min_fps"] > 0 and period.get("fps", 0.0) < cfg["min_fps"]:
        warns.append(f"{period.get('fps', 0.0):.1f} results/s < min_fps {cfg['min_fps']:g}")
    offered = period.get("received", 0) + period.get("lost", 0)
    dropped = period.get("dropped", 0) + period.get("lost", 0)
    if offered and dropped / offered > cfg["drop_warn_ratio"]:
        warns.append(f"{dropped} of {offered} frames dropped ({dropped / offered:.0%} > drop_warn_ratio "
                     f"{cfg['drop_warn_ratio']:g})")
    if errors:
        return ERROR, "; ".join(errors + warns)
    if warns:
        return WARN, "; ".join(warns)
    return OK, "ok"
