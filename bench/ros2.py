"""ROS 2 benchmark (issue 9): the perception node on 640x480 rgb8 camera frames, over the real RMW (Fast DDS), for
the PyTorch reference (checkpoint folder) and every artifact runtime that exists (onnx, packed), in one run.

For each backend, two phases with a fresh camera process (the node stays up):
  1. camera at 30 Hz for --seconds: end-to-end latency (image header stamp -> result received by this process),
     p50/p99, and sustained results/s;
  2. camera at ~2x the node's capacity seen in phase 1 (60 Hz .. --max-rate) for --seconds: the node keeps the
     newest frame (keep last 1), so results/s is its sustainable FPS on this machine with a camera also running.
Also reported: the node's own figures (inference and service time, capacity = 1 / mean service time).

    .venv/bin/python bench/ros2.py [--ckpt CKPT] [--backends torch,onnx,packed] [--seconds 10] [--json OUT]

Without --ckpt it uses a quick Fashion-MNIST checkpoint of the full fmnist-spikformer architecture (1 epoch on 3000
images, cached in runs/): latency and FPS depend on the architecture, not on how well it was trained.
Goals (issue 9): p99 < 5 ms at 30 Hz, and >= 10x the reference's sustainable FPS."""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "ros2")
# bench/ holds scripts named like packages (bench/onnx.py): never import from the script's own folder
sys.path = [EXAMPLE, ROOT] + [p for p in sys.path if os.path.abspath(p or os.curdir) != os.path.join(ROOT, "bench")]
SUFFIX = {"onnx": ".onnx", "packed": ".packed"}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def artifacts(ckpt, names, out_dir):
    """-> {backend: model path}; artifact targets that are not registered or fail to export are skipped (said)."""
    from slt_deploy.backends import all_targets
    from slt_deploy.export import export
    from slt_deploy.runtime import load_runner

    out = {}
    try:
        targets = all_targets()
    except Exception as e:  # noqa: BLE001 - a target module that does not import: bench the reference alone
        log(f"skip artifact targets: the backend registry does not load ({type(e).__name__}: {e})")
        targets = {}
    for name in names:
        if name == "torch":
            out["torch"] = ckpt
            continue
        if name not in targets:
            log(f"skip {name}: no such target registered ({', '.join(sorted(targets))})")
            continue
        suffix = targets[name].suffix
        path = os.path.join(out_dir, "model" + (suffix if suffix != "/" else "." + name))
        try:
            export(ckpt, name, path)
            load_runner(path)
            out[name] = path
        except Exception as e:  # noqa: BLE001 - report and go on with the other backends
            log(f"skip {name}: {type(e).__name__}: {e}")
    return out


class Monitor:
    def __init__(self, domain):
        os.environ.update(ROS_DOMAIN_ID=domain, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from std_msgs.msg import String

        self.rclpy = rclpy
        rclpy.init()
        self.node = rclpy.create_node(f"slt_bench_{os.getpid()}")
        self.clock = self.node.get_clock()
        self.lock = threading.Lock()
        self.results, self.diag = [], {}
        self.node.create_subscription(String, "slt/result", self._on_result,
                                      QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.ex = SingleThreadedExecutor()
        self.ex.add_node(self.node)
        self.stop = False
        self.t = threading.Thread(target=self._spin, daemon=True)
        self.t.start()

    def _spin(self):
        while not self.stop:
            self.ex.spin_once(timeout_sec=0.05)

    def _on_result(self, m):
        now = self.clock.now().nanoseconds
        r = json.loads(m.data)
        st = r["header"]["stamp"]
        src = st["sec"] * 1_000_000_000 + st["nanosec"]
        with self.lock:
            self.results.append((time.monotonic(), (now - src) / 1e6, r))

    def _on_diag(self, m):
        for st in m.status:
            if st.name.startswith("slt_perception"):
                with self.lock:
                    self.diag = {kv.key: kv.value for kv in st.values}

    def close(self):
        self.stop = True
        self.t.join(2)
        self.node.destroy_node()
        self.rclpy.try_shutdown()


def start(module, params, env):
    args = [sys.executable, "-m", module, "--ros-args"]
    for k, v in params.items():
        args += ["-p", f"{k}:={v}"]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def stop(p, timeout=10):
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
    return err or ""


def phase(mon, env, rate, seconds, width, height, qos):
    cam = start("slt_ros2.camera_node", {"source": "fmnist", "count": 50, "loop": True, "rate": rate, "width": width,
                                         "height": height, "encoding": "rgb8", "wait_for_subscribers": 1,
                                         "qos": qos}, env)
    t_end = time.monotonic() + 60
    n0 = len(mon.results)
    while len(mon.results) < n0 + 3:  # the camera is up and frames flow
        if time.monotonic() > t_end or cam.poll() is not None:
            raise SystemExit(f"no results within 60 s:\n{stop(cam)}")
        time.sleep(0.05)
    with mon.lock:
        d0 = dict(mon.diag)
    t0 = time.monotonic()
    time.sleep(seconds)
    t1 = time.monotonic()
    with mon.lock:
        res = [(t, lat) for t, lat, _ in mon.results if t0 <= t < t1]
        d1 = dict(mon.diag)
    err = stop(cam)
    m = re.search(r"sent (\d+) frames in ([0-9.]+) s", err)
    lat = np.array([lat for _, lat in res])
    diff = lambda k: int(d1.get(k, 0)) - int(d0.get(k, 0))  # noqa: E731
    return {"camera_rate_hz": rate, "camera_sent_hz": (int(m.group(1)) / float(m.group(2))) if m else None,
            "results": len(res), "fps": len(res) / (t1 - t0),
            "latency_p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
            "latency_p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
            "latency_max_ms": float(lat.max()) if len(lat) else None,
            "frames_dropped": diff("frames_dropped"), "frames_received": diff("frames_received"),
            "node": {k: d1.get(k) for k in ("inference_p50_ms", "inference_p99_ms", "service_p50_ms", "capacity_fps",
                                           "cpu_ms_per_frame", "cpu_capacity_fps",
                                           "energy_per_frame_uJ", "energy_model", "runtime")}}


def bench_backend(mon, env, name, path, ckpt, a):
    node = start("slt_ros2.perception_node", {"model": path, "backend": name, "energy_checkpoint": ckpt,
                                              "num_threads": a.threads, "qos": a.qos}, env)
    try:
        t_end = time.monotonic() + 120
        while mon.node.count_subscribers("image_raw") < 1:
            if time.monotonic() > t_end or node.poll() is not None:
                raise SystemExit(f"{name}: the node did not come up:\n{stop(node)}")
            time.sleep(0.1)
        log(f"{name}: 30 Hz for {a.seconds:g} s")
        steady = phase(mon, env, 30.0, a.seconds, a.width, a.height, a.qos)
        # offer ~2x what the node managed to serve (never below 60 Hz): it stays saturated while the camera
        # process takes no more CPU than needed (both share this machine)
        cap = float(steady["node"].get("capacity_fps") or "nan")
        rate = a.max_rate if not np.isfinite(cap) else float(np.clip(2.0 * cap, 60.0, a.max_rate))
        log(f"{name}: saturating camera at {rate:.0f} Hz for {a.seconds:g} s")
        flood = phase(mon, env, rate, a.seconds, a.width, a.height, a.qos)
    finally:
        err = stop(node)
    if "Traceback" in err:
        log(err)
    return {"backend": name, "model": path, "at_30hz": steady, "sustained": flood}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", help="checkpoint folder (default: quick fmnist-spikformer, cached in runs/)")
    ap.add_argument("--backends", default="torch,onnx,packed")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--max-rate", type=float, default=1000.0, help="camera rate cap in the saturation phase")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the node (the machine is shared)")
    ap.add_argument("--qos", default="sensor_data", choices=["sensor_data", "reliable"],
                    help="image QoS of camera and node (keep last 1 either way)")
    ap.add_argument("--dds-profile", default=os.path.join(EXAMPLE, "fastdds_large_frames.xml"),
                    help="Fast DDS XML for every process ('none' = stock Fast DDS transports)")
    ap.add_argument("--json", default=os.path.join(ROOT, "runs", "bench-ros2.json"))
    a = ap.parse_args(argv)

    if a.ckpt:
        ckpt = a.ckpt
    else:
        from slt_ros2.quick_model import quick_checkpoint
        log("training/loading the quick fmnist-spikformer checkpoint (cached in runs/)")
        ckpt = quick_checkpoint(os.path.join(ROOT, "runs"), name="ros2-bench-fmnist-spikformer")
    out_dir = os.path.join(ROOT, "runs", "bench-ros2")
    os.makedirs(out_dir, exist_ok=True)
    models = artifacts(ckpt, [b.strip() for b in a.backends.split(",") if b.strip()], out_dir)

    domain = str(1 + os.getpid() % 200)
    if a.dds_profile and a.dds_profile != "none":
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = os.path.abspath(a.dds_profile)
    else:
        os.environ.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    env = dict(os.environ, ROS_DOMAIN_ID=domain, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONPATH=os.pathsep.join([EXAMPLE, ROOT, os.environ.get("PYTHONPATH", "")]))
    mon = Monitor(domain)
    rows = []
    try:
        for name, path in models.items():
            rows.append(bench_backend(mon, env, name, path, ckpt, a))
    finally:
        mon.close()

    from slt_deploy.checkpoint import read_meta
    meta = read_meta(ckpt)
    report = {"ckpt": ckpt, "model": meta["recipe"]["name"], "arch": meta["recipe"]["arch"], "frame": [a.width, a.height],
              "seconds": a.seconds, "qos": a.qos, "dds_profile": a.dds_profile, "cpu_count": os.cpu_count(), "load_avg": os.getloadavg(), "rows": rows}
    ref = next((r for r in rows if r["backend"] == "torch"), None)
    print(f"\nROS 2 perception node, {a.width}x{a.height} rgb8, image QoS {a.qos} keep last 1, Fast DDS "
          f"{'stock' if a.dds_profile in (None, '', 'none') else os.path.basename(a.dds_profile)}, model {report['model']} "
          f"({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
    hdr = f"{'backend':8} {'p50 ms':>8} {'p99 ms':>8} {'FPS@30Hz':>9} {'drop@30':>8} {'sust FPS':>9} {'infer ms':>9} " \
          f"{'capacity':>9} {'energy uJ':>10} {'FPS/ref':>8} {'cap/ref':>8} {'infer/ref':>9}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        s, f = r["at_30hz"], r["sustained"]
        ratio = f["fps"] / ref["sustained"]["fps"] if ref and ref["sustained"]["fps"] else float("nan")
        r["sustained_fps_vs_reference"] = ratio
        cap = lambda row: float(row["sustained"]["node"]["capacity_fps"] or "nan")  # noqa: E731
        r["capacity_vs_reference"] = cap(r) / cap(ref) if ref else float("nan")
        inf = lambda row: float(row["sustained"]["node"]["inference_p50_ms"] or "nan")  # noqa: E731
        r["inference_speedup_vs_reference"] = inf(ref) / inf(r) if ref else float("nan")
        r["goal_p99_lt_5ms"] = s["latency_p99_ms"] is not None and s["latency_p99_ms"] < 5.0
        drop = s["frames_dropped"] / max(1, s["frames_dropped"] + s["results"])
        print(f"{r['backend']:8} {s['latency_p50_ms']:8.2f} {s['latency_p99_ms']:8.2f} {s['fps']:9.1f} {drop:8.0%} "
              f"{f['fps']:9.1f} {float(f['node']['inference_p50_ms'] or 'nan'):9.2f} "
              f"{float(f['node']['capacity_fps'] or 'nan'):9.1f} {f['node']['energy_per_frame_uJ']:>10} "
              f"{ratio:7.1f}x {r['capacity_vs_reference']:7.1f}x {r['inference_speedup_vs_reference']:8.1f}x")
    print("p50/p99: image stamp -> result received here, camera at 30 Hz; sust FPS: results/s with the camera at ~2x "
          "the node's capacity; capacity: 1 / mean node service time (decode+preprocess+inference+publish); "
          "infer: runner.predict only, p50 inside the node; energy: modelled (slt_deploy.profile, loihi2 constants)")
    print("goals: p99 < 5 ms at 30 Hz; sustained FPS >= 10x the reference (torch)")
    for r in rows:
        print(f"  {r['backend']}: p99 {'met' if r['goal_p99_lt_5ms'] else 'NOT met'}"
              + ("" if r["backend"] == "torch" else
                 f", FPS x{r['sustained_fps_vs_reference']:.1f} {'met' if r['sustained_fps_vs_reference'] >= 10 else 'NOT met'}"))
    tmp = a.json + ".tmp"
    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
    with open(tmp, "w") as fh:
        json.dump(report, fh, indent=2, default=float)
    os.replace(tmp, a.json)
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
