#!/usr/bin/env python3
"""One command, only the PyPI ROS 2 wheels needed: starts the camera source and the perception node as two
processes, prints what arrives on the result and diagnostics topics, stops both on Ctrl-C (or after --seconds).

    .venv/bin/python examples/ros2/run_demo.py --model CKPT_OR_ARTIFACT [--backend torch|onnx|packed|auto]
        [--source fmnist|digits|VIDEO|IMAGE_DIR|v4l2:0] [--rate 30] [--width 640 --height 480] [--seconds 20]
        [--node-param key=value ...] [--camera-param key=value ...]

With a dataset source the camera publishes each frame's true label on image_raw/ground_truth (matched to the
result by the image stamp), and the running accuracy is printed.
For a full ROS 2 install use launch/slt_perception.launch.py instead."""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def _params(pairs):
    out = []
    for kv in pairs:
        if "=" not in kv:
            sys.exit(f"run_demo: --*-param wants key=value, got {kv!r}")
        k, v = kv.split(":=", 1) if ":=" in kv else kv.split("=", 1)
        out += ["-p", f"{k}:={v}"]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="checkpoint folder (backend torch) or exported artifact")
    ap.add_argument("--backend", default="auto", help="auto, torch, onnx or packed")
    ap.add_argument("--source", default="fmnist", help="fmnist, digits, a video file, an image folder or v4l2:N")
    ap.add_argument("--rate", type=float, default=30.0, help="camera frames per second")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--encoding", default="rgb8", help="rgb8, bgr8 or mono8")
    ap.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0 = until Ctrl-C)")
    ap.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID for the three processes")
    ap.add_argument("--dds-profile", default=os.path.join(HERE, "fastdds_large_frames.xml"),
                    help="Fast DDS XML for every process (default: large-frame transports; 'none' = stock Fast DDS; "
                         "an already exported FASTDDS_DEFAULT_PROFILES_FILE wins)")
    ap.add_argument("--node-param", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--camera-param", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args(argv)

    env = dict(os.environ)
    if a.domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(a.domain_id)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if a.dds_profile and a.dds_profile != "none":
        env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", os.path.abspath(a.dds_profile))
    env["PYTHONPATH"] = os.pathsep.join([HERE, ROOT, env.get("PYTHONPATH", "")])
    env["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE",
                                           "FASTDDS_DEFAULT_PROFILES_FILE") if k in env})

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    rclpy.init(signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    lis = rclpy.create_node("slt_demo_monitor")
    lock = threading.Lock()
    state = {"n": 0, "ok": 0, "labelled": 0, "last": None, "diag": {}}

    def on_result(m):
        r = json.loads(m.data)
        with lock:
            state["n"] += 1
            state["last"] = r
            st = r["header"]["stamp"]
            y = truth.pop((st["sec"], st["nanosec"]), None)
            if y is not None:
                state["labelled"] += 1
                state["ok"] += int(y == r["class_id"])

    truth = {}

    def on_truth(m):
        g = json.loads(m.data)
        if "label" in g:
            st = g["header"]["stamp"]
            with lock:
                truth[(st["sec"], st["nanosec"])] = int(g["label"])
                while len(truth) > 1000:  # frames the node dropped never get a result
                    truth.pop(next(iter(truth)))

    def on_diag(m):
        for st in m.status:
            if st.name.startswith("slt_perception"):
                with lock:
                    state["diag"] = {kv.key: kv.value for kv in st.values}
                    state["diag"]["_status"] = st.message.split(";")[0]  # "OK: ok", "STALE: no image for ..."
    lis.create_subscription(String, "slt/result", on_result, QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    lis.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    lis.create_subscription(String, "image_raw/ground_truth", on_truth,
                            QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))

    py = sys.executable
    node = subprocess.Popen([py, "-m", "slt_ros2.perception_node", "--ros-args", "-p", f"model:={a.model}",
                             "-p", f"backend:={a.backend}", *_params(a.node_param)], env=env)
    procs = [node]
    stop = {"flag": False}
    signal.signal(signal.SIGINT, lambda *_: stop.update(flag=True))
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    try:
        t_end = time.time() + 120
        while lis.count_subscribers("image_raw") < 1:  # the node is up once it subscribes (model loaded)
            rclpy.spin_once(lis, timeout_sec=0.1)
            if node.poll() is not None or stop["flag"] or time.time() > t_end:
                print("run_demo: the perception node did not come up", file=sys.stderr)
                return node.poll() or 1
        cam = subprocess.Popen([py, "-m", "slt_ros2.camera_node", "--ros-args", "-p", f"source:={a.source}",
                                "-p", f"rate:={a.rate}", "-p", f"width:={a.width}", "-p", f"height:={a.height}",
                                "-p", f"encoding:={a.encoding}", "-p", "loop:=true", "-p", "wait_for_subscribers:=1",
                                *_params(a.camera_param)], env=env)
        procs.append(cam)
        t0 = time.time()
        t_print = t0 + 1.0
        while not stop["flag"] and (a.seconds <= 0 or time.time() - t0 < a.seconds):
            rclpy.spin_once(lis, timeout_sec=0.1)
            if node.poll() is not None:
                print(f"run_demo: the perception node exited ({node.returncode})", file=sys.stderr)
                break
            if time.time() >= t_print:
                t_print += 1.0
                with lock:
                    d, last = state["diag"], state["last"]
                    acc = f" acc {100.0 * state['ok'] / state['labelled']:.1f}% ({state['labelled']})" \
                        if state["labelled"] else ""
                    if d:
                        print(f"[{time.time() - t0:5.1f}s] {d.get('_status')} | {state['n']} results, {d.get('fps')} FPS, latency p50 "
                              f"{d.get('latency_p50_ms')} p99 {d.get('latency_p99_ms')} ms, dropped "
                              f"{d.get('frames_dropped')}, energy/frame {d.get('energy_per_frame_uJ')}"
                              f"{' uJ' if d.get('energy_per_frame_uJ', '').replace('.', '').isdigit() else ''}"
                              f"{acc}; last: {last['label'] if last else '-'}", flush=True)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in reversed(procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        lis.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
