"""slt_perception: runs an exported slt-deploy model on camera images.

Subscribes  image_topic        sensor_msgs/Image (mono8, rgb8, bgr8, rgba8, bgra8, mono16; any size, any row padding)
Publishes   result_topic       vision_msgs/Classification when vision_msgs is installed (result_format auto), else
                               std_msgs/String holding one JSON object per frame (see README "Result message")
            diagnostics_topic  diagnostic_msgs/DiagnosticArray, every diagnostics_period s: latency p50/p99,
                               FPS, dropped/malformed frames, modelled energy per frame

Frames wait in a bounded queue of qos_depth frames (keep last N, the oldest is dropped and counted), so a slow
model never makes memory grow. Malformed frames are logged and skipped. Ctrl-C / SIGTERM stop it cleanly.

    python -m slt_ros2.perception_node --ros-args -p model:=CKPT_OR_ARTIFACT -p backend:=torch
"""
from __future__ import annotations

import collections
import json
import math
import os
import sys
import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String

from slt_deploy.errors import SltError
from slt_deploy.runtime.image import decode_frame, to_model_input

from .fastpath import AreaResampler, RawImage, fast_model_input
from .params import BACKENDS, PERCEPTION
from .realtime import set_realtime
from .ros_params import declare_all
from .stats import LEVEL_NAMES, Stats, level

try:  # only in full ROS 2 installs (not on PyPI)
    from vision_msgs.msg import Classification, ObjectHypothesis
except ImportError:  # pragma: no cover - depends on the install
    Classification = ObjectHypothesis = None

NOT_AVAILABLE = "not available"


def make_qos(kind: str, depth: int) -> QoSProfile:
    """'sensor_data': best effort, keep last `depth` (ROS sensor-data QoS); 'reliable': reliable, keep last."""
    if kind not in ("sensor_data", "reliable"):
        raise SltError(f"unknown qos {kind!r}", "use 'sensor_data' or 'reliable'")
    if depth < 1:
        raise SltError(f"qos_depth {depth} must be >= 1", "use 1 for 'latest frame only'")
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.BEST_EFFORT if kind == "sensor_data" else ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def _target_of(runner) -> str:
    """The export target a runner executes, from the module that defines it (slt_deploy's runtimes are named after
    their target: onnx_runner, packed_c, loihi_runner, torch_runner)."""
    mod = type(runner).__module__.lower()
    for name in ("onnx", "packed", "loihi", "torch", "nir"):
        if name in mod:
            return name
    return mod


def load_model(path: str, backend: str, threads: int = 1):
    """-> Runner, through slt_deploy.runtime.load_runner only. backend 'auto' takes what `path` is; 'torch' wants a
    checkpoint folder (the PyTorch reference); any other name must be the target of the artifact at `path`.
    `threads`: intra-op threads of the runtime where it has them (0 = its default). onnxruntime by default runs one
    intra-op thread per core that busy-waits between calls: in a node fed at camera rate that spinning took a whole
    core (33.6 ms of CPU per frame at 30 Hz against 4.3 ms of service time, measured), so the node asks for
    `threads` threads and no spinning; runtimes without those options are opened with their defaults."""
    if not path:
        raise SltError("parameter 'model' is empty", "pass -p model:=CHECKPOINT_FOLDER_OR_ARTIFACT")
    if not os.path.exists(path):
        raise SltError(f"model {path} does not exist", "pass a checkpoint folder or an exported artifact")
    if backend not in BACKENDS:
        raise SltError(f"unknown backend {backend!r}", f"use one of {', '.join(BACKENDS)}")
    from slt_deploy.runtime import load_runner

    is_ckpt = os.path.isdir(path) and os.path.exists(os.path.join(path, "model.json"))
    if is_ckpt:
        if backend not in ("auto", "torch"):
            raise SltError(f"{path} is a checkpoint folder, not a {backend} artifact",
                           f"export one with: slt-deploy export CHECKPOINT --target {backend} --out MODEL")
        return load_runner(path)
    if backend == "torch":
        raise SltError(f"backend 'torch' runs a checkpoint folder, {path} is not one",
                       "pass the folder written by 'slt-deploy train', or set backend to the artifact's target")
    try:
        runner = load_runner(path, threads=threads, spinning=False) if threads > 0 else load_runner(path)
    except TypeError:  # this target's runtime has no thread options
        runner = load_runner(path)
    got = _target_of(runner)
    if backend != "auto" and got != backend:
        raise SltError(f"{path} is an artifact of target {got}, not {backend}",
                       f"set backend to {got} (or auto), or export one with: slt-deploy export CHECKPOINT "
                       f"--target {backend} --out MODEL")
    return runner


class EnergyModel:
    """Modelled energy per frame (slt_deploy.profile): spike activity of the model's NIR graph counted on the last
    frames the node received, priced by a hardware profile (slt_deploy/hardware/energy/<hardware>.yaml).
    Needs the checkpoint folder (the model itself for backend torch, else parameter energy_checkpoint)."""

    def __init__(self, ckpt: str, hardware: str, frames: int):
        from slt_deploy.profile.energy import load_hardware

        self.hw = load_hardware(hardware)[0]
        if self.hw["model"] == "board":
            raise SltError(f"energy_hardware {hardware!r} is a board profile (latency x power)",
                           "pick an op-level profile such as loihi2 or asic45nm")
        # the worker process starts now, from the node's main thread before any sched_priority: it runs with
        # normal scheduling from its first instruction
        self.ckpt, self.hw_name, self.proc = ckpt, hardware, None
        self.proc = self._start()
        self.frames = collections.deque(maxlen=max(1, frames))
        self.value_j = None
        self.label = "not available yet (no frames)"

    def update(self):
        """Model the energy on the frames kept, in the worker process (slt_ros2/energy_worker.py): this thread only
        waits for its answer, with the GIL released."""
        import io

        if self.proc.poll() is not None:
            raise RuntimeError(f"the energy worker ended (exit code {self.proc.poll()})")
        buf = io.BytesIO()
        np.save(buf, np.stack(list(self.frames)).astype(np.float32), allow_pickle=False)
        try:
            self.proc.stdin.write(len(buf.getvalue()).to_bytes(8, "little") + buf.getvalue())
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = b""
        if not line:
            raise RuntimeError(f"the energy worker ended (exit code {self.proc.poll()})")
        ans = json.loads(line)
        if "error" in ans:
            raise RuntimeError(ans["error"])
        self.value_j = ans["energy_j"]
        self.label = f"{self.hw['name']}: " + (ans["label"] if self.value_j is None
                                                else f"modelled on the last {len(self.frames)} frames")

    def _start(self):
        import subprocess

        return subprocess.Popen([sys.executable, "-m", "slt_ros2.energy_worker", self.ckpt, self.hw_name],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def close(self):
        """End the worker: end of its input (it returns when idle); one still modelling or lowering is killed
        after 2 s -- its answer is of no use to a node that stops. Unblocks a thread waiting in update()."""
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
        except Exception:  # noqa: BLE001 - a thread in update() may be writing to it; the kill below still ends it
            pass
        try:
            self.proc.wait(timeout=2)
        except Exception:  # noqa: BLE001 - shutting down whatever the worker does
            self.proc.kill()
            self.proc.wait()


class PerceptionNode(Node):
    def __init__(self, **overrides):
        super().__init__("slt_perception", **overrides)
        try:
            self._setup()
        except BaseException:
            # end what was started and destroy the half-built node now: left to the garbage collector, its handles
            # were finalized after rclpy's shutdown at interpreter exit, and once in a test run the process died of
            # SIGSEGV after printing the error instead of exiting 2
            if hasattr(self, "energy_thread"):  # the threads exist (a later step failed): stop() ends them
                self.stop()
            elif getattr(self, "energy", None) is not None:
                self.energy.close()
            self.destroy_node()
            raise

    def _setup(self):
        cfg = self.cfg = declare_all(self, PERCEPTION, apply=self.apply_parameters)
        self.model_path, self.backend = cfg["model"], cfg["backend"]
        self.image_topic, self.result_topic, self.diag_topic = cfg["image_topic"], cfg["result_topic"], \
            cfg["diagnostics_topic"]
        qos_kind, depth = cfg["qos"], cfg["qos_depth"]
        self.crop, self.interpolation, self.max_pixels = cfg["crop"], cfg["interpolation"], cfg["max_pixels"]
        period, window, threads = cfg["diagnostics_period"], cfg["stats_window"], cfg["num_threads"]
        result_format, warmup = cfg["result_format"], cfg["warmup"]
        energy_hw, energy_ckpt, energy_frames = cfg["energy_hardware"], cfg["energy_checkpoint"], cfg["energy_frames"]
        self.energy_period = cfg["energy_period"]
        self.fast_path, self.inline = cfg["fast_path"], cfg["inline"]
        self.resampler = AreaResampler()
        self._last_msg = None
        if result_format == "vision_msgs" and Classification is None:
            raise SltError("result_format vision_msgs but the vision_msgs package is not installed",
                           "install ros-<distro>-vision-msgs or use result_format json")
        self.use_vision = Classification is not None and result_format != "json"

        t0 = time.perf_counter()
        self.runner = load_model(self.model_path, self.backend, threads)
        if threads > 0 and "torch" in sys.modules:  # torch runs the model (or parts of the runtime)
            sys.modules["torch"].set_num_threads(threads)
        self.meta = self.runner.meta
        self.labels = list(self.meta.get("labels") or [])
        self.model_name = str(self.meta.get("name", os.path.basename(self.model_path.rstrip("/"))))
        self.runtime_name = type(self.runner).__name__
        c, h, w = self.meta["input_shape"]
        dummy = np.zeros((1, c, h, w), np.float32)
        for _ in range(max(0, warmup)):
            self.runner.predict(dummy)
        self.energy = None
        self.energy_note = NOT_AVAILABLE + " (energy_hardware is none)"
        if energy_hw and energy_hw.lower() not in ("none", "off"):
            ck = energy_ckpt or self.model_path
            if os.path.isdir(ck) and os.path.exists(os.path.join(ck, "model.json")):
                try:
                    self.energy = EnergyModel(ck, energy_hw, energy_frames)
                except SltError as e:
                    self.energy_note = f"{NOT_AVAILABLE} ({e})"
            else:
                self.energy_note = (f"{NOT_AVAILABLE} (set energy_checkpoint to the checkpoint folder this artifact "
                                    "was exported from)")
        self.get_logger().info(
            f"model {self.model_name} ({self.runtime_name}, backend {self.backend}) input {self.meta['input_shape']} "
            f"0..{self.meta['input_max']:g}, T={self.meta['T']}, loaded in {time.perf_counter() - t0:.2f} s; "
            f"{self.image_topic} -> {self.result_topic} ({'vision_msgs/Classification' if self.use_vision else 'std_msgs/String JSON'}), "
            f"qos {qos_kind} depth {depth}")

        self.stats = Stats(window)
        self.queue = collections.deque(maxlen=depth)
        self.cond = threading.Condition()
        self.running = True
        self.stopped = threading.Event()
        self._log_budget = [time.monotonic(), 0]

        qos = make_qos(qos_kind, depth)
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(10, depth), reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.create_publisher(Classification if self.use_vision else String, self.result_topic, out_qos)
        self.diag_pub = self.create_publisher(DiagnosticArray, self.diag_topic, 10)
        self.last_seq = {}
        # fast_path: the frame arrives as serialized bytes (raw=True) and is read in the inference thread
        self.sub = self.create_subscription(Image, self.image_topic, self.on_image, qos, raw=self.fast_path)
        self.timer = self.create_timer(period, self.publish_diagnostics)
        self.worker = threading.Thread(target=self.work, name="slt-inference", daemon=True)
        if not self.inline:
            self.worker.start()
        self.energy_model = self.energy  # kept for stop(): model_energy() drops self.energy when modelling fails
        self.energy_thread = None
        if self.energy is not None:
            self.energy_thread = threading.Thread(target=self.model_energy, name="slt-energy", daemon=True)
            self.energy_thread.start()
        if cfg["sched_priority"] > 0:
            n = set_realtime(cfg["sched_priority"])
            self.get_logger().info(f"SCHED_FIFO priority {cfg['sched_priority']} for the node's {n} threads")

    def apply_parameters(self, changed: dict):
        """A live parameter was set (ros2 param set): checked by the guard already, takes effect now."""
        self.cfg.update(changed)
        for k in ("crop", "interpolation", "max_pixels", "energy_period"):
            if k in changed:
                setattr(self, k, changed[k])
        if "diagnostics_period" in changed and getattr(self, "timer", None) is not None:
            self.destroy_timer(self.timer)
            self.timer = self.create_timer(changed["diagnostics_period"], self.publish_diagnostics)
        self.get_logger().info("parameters set: " + ", ".join(f"{k}={v!r}" for k, v in changed.items()))

    def model_energy(self):
        """Background: re-model the energy per frame on the latest frames every energy_period s."""
        wait = 0.5
        while not self.stopped.wait(wait):
            if len(self.energy.frames) < self.energy.frames.maxlen:
                continue
            try:
                self.energy.update()
            except Exception as e:  # noqa: BLE001 -- reported in energy_note; the profiler could not take this model: say so, stop trying
                self.energy_note = f"{NOT_AVAILABLE} ({type(e).__name__}: {e})"
                self.energy = None
                return
            if self.energy_period <= 0:
                return
            wait = self.energy_period

    # --- executor thread: only queue the frame (never block on the model) ---
    def on_image(self, msg: Image, info):  # two parameters: rclpy then passes the MessageInfo
        if info:  # frames the publisher sent that never reached us (DDS queue overwritten, lost in transport)
            gid, seq = info.get("publisher_gid"), info.get("publication_sequence_number")
            if gid is not None and seq:
                key = str(gid.get("data") if isinstance(gid, dict) else gid)
                last = self.last_seq.get(key)
                if last is not None and seq > last + 1:
                    self.stats.count("lost", seq - last - 1)
                if len(self.last_seq) > 256:
                    self.last_seq.clear()
                self.last_seq[key] = seq
        if self.inline:  # run the model here, in the executor thread: no hand-over; DDS keeps the newest frames
            self.stats.count("received")
            self.process_safely(msg)
            return
        with self.cond:
            self.stats.count("received")
            if len(self.queue) == self.queue.maxlen:
                self.stats.count("dropped")   # the oldest waiting frame is replaced
            self.queue.append(msg)
            self.cond.notify()

    # --- inference thread ---
    def work(self):
        while True:
            with self.cond:
                while self.running and not self.queue:
                    self.cond.wait(0.2)
                if not self.running:
                    return
                msg = self.queue.popleft()
            if not self.process_safely(msg):
                return

    def process_safely(self, msg) -> bool:
        """process(msg), a failure reported and counted; False when shutting down."""
        try:
            self.process(msg)
        except Exception as e:  # noqa: BLE001 -- any failure of one frame is reported and counted, the node goes on
            if not self.running or not self.context.ok():
                return False  # shutting down (Ctrl-C): the result can no longer be published
            self.report(msg, e)
        return True

    def report(self, msg, e: Exception):
        if isinstance(e, SltError):
            self.stats.count("malformed")
            h = getattr(self._last_msg, "header", None)
            where = (f"stamp {h.stamp.sec}.{h.stamp.nanosec:09d}, frame_id {h.frame_id!r}" if h is not None
                     else "unreadable header")
            self.warn_limited(f"skipped frame ({where}): {e}")
        else:  # keep running whatever one frame does
            self.stats.count("errors")
            self.warn_limited(f"error on a frame: {type(e).__name__}: {e}")

    def warn_limited(self, text: str, per_second: int = 20):
        now = time.monotonic()
        if now - self._log_budget[0] >= 1.0:
            self._log_budget = [now, 0]
        self._log_budget[1] += 1
        if self._log_budget[1] <= per_second:
            self.get_logger().warning(text)

    def process(self, item):
        """item: serialized CDR bytes (fast_path) or an rclpy sensor_msgs/Image."""
        t0 = time.perf_counter()
        self._last_msg = None
        msg = self._last_msg = RawImage(item) if self.fast_path else item
        img = decode_frame(msg.data, msg.width, msg.height, msg.encoding, msg.step, msg.is_bigendian,
                           self.max_pixels)
        if self.fast_path:
            x = fast_model_input(img, self.meta, self.crop, self.interpolation, self.resampler)
        else:
            x = to_model_input(img, self.meta, self.crop, self.interpolation)
        energy = self.energy
        if energy is not None:
            energy.frames.append(x)
        t1 = time.perf_counter()
        logits = np.asarray(self.runner.predict(x[None]), dtype=np.float64)[0]
        t2 = time.perf_counter()
        cls = int(np.argmax(logits))
        z = logits - logits.max()
        score = float(np.exp(z[cls]) / np.exp(z).sum())
        label = self.labels[cls] if cls < len(self.labels) else str(cls)
        stamp = msg.header.stamp
        now_ns = self.get_clock().now().nanoseconds
        src_ns = stamp.sec * 1_000_000_000 + stamp.nanosec
        latency_ms = (now_ns - src_ns) / 1e6 if src_ns > 0 else float("nan")
        if self.use_vision:
            out = Classification()
            out.header.stamp.sec, out.header.stamp.nanosec = stamp.sec, stamp.nanosec
            out.header.frame_id = msg.header.frame_id
            hyp = ObjectHypothesis()
            hyp.class_id = label
            hyp.score = score
            out.results = [hyp]
        else:
            out = String()  # the image's header travels in the JSON (std_msgs/String has none)
            out.data = json.dumps({
                "header": {"stamp": {"sec": stamp.sec, "nanosec": stamp.nanosec}, "frame_id": msg.header.frame_id},
                "class_id": cls, "label": label, "score": round(score, 6),
                "latency_ms": round(latency_ms, 3) if math.isfinite(latency_ms) else None,
                "inference_ms": round((t2 - t1) * 1e3, 3), "seq": self.stats.processed,
            })
        self.pub.publish(out)
        t3 = time.perf_counter()
        self.stats.add_result(latency_ms if math.isfinite(latency_ms) else (t3 - t0) * 1e3,
                              (t3 - t0) * 1e3, (t2 - t1) * 1e3, (t1 - t0) * 1e3)

    # --- diagnostics (executor thread, timer) ---
    def publish_diagnostics(self):
        s = self.stats.snapshot()
        st = DiagnosticStatus()
        st.name = f"slt_perception: {self.model_name}"
        st.hardware_id = f"{self.runtime_name} ({self.backend})"
        st.level, why = level(self.stats.period, self.cfg, self.image_topic)
        st.level = bytes([st.level])
        st.message = (f"{LEVEL_NAMES[st.level[0]]}: {why}; {s['fps']:.1f} FPS, p50 {s['latency_p50_ms']:.2f} ms, "
                      f"p99 {s['latency_p99_ms']:.2f} ms")
        fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
        e = self.energy
        values = {**s, "energy_per_frame_uJ": (f"{e.value_j * 1e6:.3f}" if e is not None and e.value_j is not None
                                               else NOT_AVAILABLE),
                  "energy_model": e.label if e is not None else self.energy_note,
                  "model": self.model_path, "backend": self.backend, "runtime": self.runtime_name}
        st.values = [KeyValue(key=k, value=fmt(v)) for k, v in values.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [st]
        self.diag_pub.publish(arr)

    def stop(self):
        """End the node's threads and the energy worker, and wait for them: a daemon thread still running when the
        interpreter finalizes is ended mid-call, which aborted the process (SIGABRT, 'terminate called without an
        active exception') when Ctrl-C came while the energy thread waited for the worker's answer."""
        self.stopped.set()
        with self.cond:
            self.running = False
            self.cond.notify_all()
        if self.energy_model is not None:
            self.energy_model.close()
        for t in (self.worker, self.energy_thread):
            if t is not None and t.is_alive():
                t.join(timeout=10.0)


def main(args=None):
    sys.setswitchinterval(0.001)  # hand the GIL between the ROS and inference threads within 1 ms (default 5 ms)
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = PerceptionNode()
        ex = SingleThreadedExecutor()
        ex.add_node(node)
        ex.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except SltError as e:
        print(f"slt_perception: error: {e}", file=sys.stderr, flush=True)
        code = 2
    except Exception:   # re-raised unless it is the shutdown race below
        # Ctrl-C shuts the context down from rclpy's signal handler; a timer already due then publishes on it and
        # raises RCLError "publisher's context is invalid" (seen with diagnostics_period 0.1): that is the shutdown
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.stop()
            s = node.stats.snapshot()
            print(f"slt_perception: stopped after {s['frames_processed']} results, {s['frames_dropped']} dropped, "
                  f"{s['frames_malformed']} malformed", file=sys.stderr, flush=True)
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
