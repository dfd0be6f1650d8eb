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

    def add_result(self, latency_ms: float, service_ms: float, infer_ms: float, pre_ms: float = float("nan")):
        with self.lock:
            self.pre_ms.append(pre_ms)
            self.processed += 1
            self.latency_ms.append(latency_ms)
            self.service_ms.append(service_ms)
            self.infer_ms.append(infer_ms)
            self.done_times.append(time.monotonic())

    def count(self, what: str, n: int = 1):
        with self.lock:
            setattr(self, what, getattr(self, what) + n)

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
