"""ROS 2 example, end to end over the real RMW (Fast DDS from the PyPI wheels): the perception node and the camera
source run as their own processes; this process listens (and publishes the malformed frames) with rclpy.

Each run uses its own ROS_DOMAIN_ID, localhost-only discovery and topic names with the pid, so parallel runs do not
talk to each other. Every wait is bounded."""
import json
import math
import os
import re
import signal
import sys
import threading
import time

import numpy as np
import pytest
from conftest import ros2_test_model

rclpy = pytest.importorskip("rclpy", reason="ROS 2 wheels not installed (pip install -r requirements-ros.txt)")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "ros2")
PID = os.getpid()
DOMAIN = str(1 + PID % 200)
N_FRAMES = 100


sys.path.insert(0, EXAMPLE)
from slt_ros2.harness import DDS_PROFILE, scaled, wait_for  # noqa: E402
from slt_ros2.harness import Proc as HarnessProc  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return ros2_test_model()


@pytest.fixture(scope="module")
def offline():
    """-> f(artifact path) = (predictions, labels) of that artifact's own runtime on the same test images, no ROS."""
    from slt_deploy.data import FMNIST_DIR, FMNIST_FILES, read_idx
    from slt_deploy.runtime import load_runner

    x = read_idx(FMNIST_DIR, FMNIST_FILES["test"][0])[:N_FRAMES].astype(np.float32)[:, None]
    y = read_idx(FMNIST_DIR, FMNIST_FILES["test"][1])[:N_FRAMES].astype(np.int64)
    cache = {}

    def run(path):
        if path not in cache:
            r = load_runner(path)
            cache[path] = np.concatenate([r.predict(x[i:i + 25]).argmax(1) for i in range(0, len(x), 25)])
        return cache[path], y
    return run


@pytest.fixture(scope="module")
def artifacts(model, tmp_path_factory):
    """backend -> model path: the checkpoint (torch) and whatever artifact targets exist and export."""
    out = {"torch": model}
    d = tmp_path_factory.mktemp("artifacts")
    try:
        from slt_deploy.backends import all_targets
        from slt_deploy.export import export
        targets = all_targets()
    except Exception as e:  # noqa: BLE001 - the export layer is not there yet
        return {**out, "_skipped": str(e)}
    for name in ("onnx", "packed"):
        if name in targets:
            path = str(d / f"model{targets[name].suffix}")
            try:
                export(model, name, path)
                out[name] = path
            except Exception as e:  # noqa: BLE001
                out[f"_{name}"] = f"{type(e).__name__}: {e}"
    return out


class Listener:
    """This process's ROS side: collects results and diagnostics on a spinning thread."""

    def __init__(self):
        os.environ.update(ROS_DOMAIN_ID=DOMAIN, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                          FASTDDS_DEFAULT_PROFILES_FILE=DDS_PROFILE)
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node(f"slt_test_{PID}", context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.lock = threading.Lock()
        self.results, self.diags = {}, {}
        self.stop = False
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self):
        while not self.stop and self.ctx.ok():
            self.ex.spin_once(timeout_sec=0.05)

    def listen(self, topic, diag_topic):
        self.results[topic], self.diags[diag_topic] = [], []
        t = time.time()

        def on_result(m):
            with self.lock:
                self.results[topic].append((time.time(), json.loads(m.data)))

        def on_diag(m):
            with self.lock:
                self.diags[diag_topic].append({kv.key: kv.value for kv in m.status[0].values})
        rel = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        sub = self.node.create_subscription(String, topic, on_result, rel)
        self.node.create_subscription(DiagnosticArray, diag_topic, on_diag, 10)
        return sub, t

    def listen_camera(self, image_topic):
        """ground truth (JSON) and camera_info the camera publishes beside `image_topic`, keyed by image stamp."""
        base = image_topic.rsplit("/", 1)[0]
        self.results[image_topic + "/ground_truth"], self.results[base + "/camera_info"] = [], []

        def on_truth(m):
            with self.lock:
                self.results[image_topic + "/ground_truth"].append((time.time(), json.loads(m.data)))

        def on_info(m):
            with self.lock:
                self.results[base + "/camera_info"].append((time.time(), m))
        from slt_ros2.camera_node import TRUTH_QOS
        self.node.create_subscription(String, image_topic + "/ground_truth", on_truth, TRUTH_QOS)
        self.node.create_subscription(CameraInfo, base + "/camera_info", on_info,
                                      QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE))
        # a (raw, not decoded) image subscription: the camera waits for it too, so this process has matched the
        # camera's endpoints (camera_info is volatile, like the images) before the first frame
        self.node.create_subscription(Image, image_topic, lambda m: None,
                                      QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT), raw=True)
        return image_topic + "/ground_truth", base + "/camera_info"

    def get(self, topic):
        with self.lock:
            return list(self.results[topic])

    def last_diag(self, topic):
        with self.lock:
            return dict(self.diags[topic][-1]) if self.diags[topic] else {}

    def close(self):
        self.stop = True
        self.thread.join(timeout=2)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


@pytest.fixture(scope="module")
def ros():
    lis = Listener()
    yield lis
    lis.close()


def Proc(module, params, log_path):
    """A node as a real process in this module's isolated ROS domain (slt_ros2.harness, shared with the bench)."""
    return HarnessProc(module, params, log_path, DOMAIN)


def start_node(ros, model, tmp_path, name, camera=None, **params):
    """Start the node, wait until it is ready (it subscribes to images and its result publisher has matched our
    listener), then the camera `camera` = params. The camera starts only then: it waits just for the node's image
    subscription, so a camera started at once can have frames processed (and results published) before DDS has
    matched the result publisher with our listener; with a fast runtime those results were lost."""
    topics = {"image_topic": f"/t{PID}/{name}/image", "result_topic": f"/t{PID}/{name}/result",
              "diagnostics_topic": f"/t{PID}/{name}/diagnostics"}
    sub, _ = ros.listen(topics["result_topic"], topics["diagnostics_topic"])
    params = {"model": model, "backend": "torch", "diagnostics_period": 0.5, **topics, **params}
    node = Proc("slt_ros2.perception_node", params, tmp_path / f"{name}_node.log")
    # ready = the node subscribes to images (after loading and warming up its model) and we receive its results
    wait_for(lambda: ros.node.count_subscribers(topics["image_topic"]) >= 1 and sub.get_publisher_count() >= 1,
             scaled(60), "the perception node to come up", node.p)
    if camera is None:
        return node, topics
    cam = Proc("slt_ros2.camera_node", {"topic": topics["image_topic"], "wait_for_subscribers": 1,
                                        "wait_timeout": 60.0, **camera}, tmp_path / f"{name}_camera.log")
    return node, topics, cam


@pytest.mark.parametrize("variant", ["torch", "onnx", "packed", "onnx-inline", "onnx-rclpy-path"])
def test_fmnist_frames_through_ros_match_offline_accuracy(ros, model, artifacts, offline, tmp_path, variant):
    """N Fashion-MNIST test images replayed as 640x480 camera frames: N results, each equal to the offline
    prediction of the PyTorch reference on the same image (the artifacts are exact ports), same accuracy.
    -inline: the model runs in the subscription callback; -rclpy-path: fast_path false (rclpy messages)."""
    backend = variant.split("-")[0]
    extra = {"-inline": {"inline": True}, "-rclpy-path": {"fast_path": False}}.get(variant[len(backend):], {})
    if backend not in artifacts:
        pytest.skip(f"no {backend} artifact: {artifacts.get('_' + backend, 'target not registered')}")
    pred, y = offline(artifacts[backend])
    name = "acc_" + variant.replace("-", "_")
    truth_topic, info_topic = ros.listen_camera(f"/t{PID}/{name}/image")
    camera = {"source": "fmnist", "count": N_FRAMES, "rate": 60.0, "width": 640, "height": 480, "encoding": "bgr8",
              "qos": "reliable", "qos_depth": N_FRAMES, "wait_for_subscribers": 2}
    node, topics, cam = start_node(ros, artifacts[backend], tmp_path, name, camera=camera,
                                   backend=backend, energy_checkpoint=model, qos="reliable", qos_depth=N_FRAMES,
                                   interpolation="nearest", crop="center", **extra)
    try:
        wait_for(lambda: len(ros.get(topics["result_topic"])) >= N_FRAMES, scaled(60), f"{N_FRAMES} results", None)
        cam_rc = cam.interrupt(scaled(10))
        res = [r for _, r in ros.get(topics["result_topic"])]
        assert len(res) == N_FRAMES, cam.text()
        # the result carries the image's header (stamp, the camera's frame_id); what the frame shows came on the
        # camera's ground_truth topic with the same stamp
        key = lambda h: (h["stamp"]["sec"], h["stamp"]["nanosec"])  # noqa: E731
        wait_for(lambda: len(ros.get(truth_topic)) >= N_FRAMES and len(ros.get(info_topic)) >= N_FRAMES, scaled(10),
                 "the ground truth and camera_info of every frame")
        truth = {key(g["header"]): g for _, g in ros.get(truth_topic)}
        assert all(r["header"]["frame_id"] == "camera" for r in res), "the camera's frame_id, nothing appended"
        idx = [truth[key(r["header"])]["index"] for r in res]
        lab = [truth[key(r["header"])]["label"] for r in res]
        assert sorted(idx) == list(range(N_FRAMES)), "every frame exactly once"
        infos = [m for _, m in ros.get(info_topic)]
        assert {(m.header.frame_id, m.width, m.height) for m in infos} == {("camera", 640, 480)}
        assert {(m.header.stamp.sec, m.header.stamp.nanosec) for m in infos} == set(truth), \
            "one camera_info per image, with its stamp"
        assert lab == [int(y[i]) for i in idx], "camera labels are the dataset's"
        got = np.array([r["class_id"] for r in res])
        ros_acc, off_acc = float((got == np.array(lab)).mean()), float((pred[idx] == y[idx]).mean())
        print(f"{variant}: accuracy through ROS {ros_acc:.4f} = offline {off_acc:.4f} on {N_FRAMES} Fashion-MNIST "
              f"test images; node latency p50 {np.median([r['latency_ms'] for r in res]):.1f} ms")
        assert np.array_equal(got, pred[idx]), "every prediction through ROS equals the offline one"
        assert ros_acc == off_acc
        assert all(r["latency_ms"] is not None and r["latency_ms"] >= 0 for r in res)
        assert all(0.0 < r["score"] <= 1.0 and r["label"] for r in res)
        assert cam_rc in (0, -signal.SIGINT)
        # modelled energy per frame (slt_deploy.profile, Loihi 2 constants) on the frames the node saw
        wait_for(lambda: re.fullmatch(r"[0-9.]+", ros.last_diag(topics["diagnostics_topic"]).get(
            "energy_per_frame_uJ", "")) and ros.last_diag(topics["diagnostics_topic"]).get(
            "frames_processed") == str(N_FRAMES), scaled(30), "diagnostics with every frame and a modelled energy per frame")
        d = ros.last_diag(topics["diagnostics_topic"])
        print(f"diagnostics: {d}")
        assert float(d["energy_per_frame_uJ"]) > 0 and "loihi2" in d["energy_model"]
        assert int(d["frames_processed"]) == N_FRAMES and d["frames_dropped"] == "0"
    finally:
        assert node.interrupt(scaled(15)) == 0, node.text()[-2000:]


@pytest.fixture(scope="module")
def sensor_node(ros, model, tmp_path_factory):
    """One node with the default sensor-data QoS (best effort, keep last 1) for the robustness tests."""
    # energy modelling off here: its one-time NIR lowering would show up in the overload test's memory samples
    node, topics = start_node(ros, model, tmp_path_factory.mktemp("ros2"), "sensor", energy_hardware="none")
    yield node, topics
    node.interrupt()


def _frame(w, h, enc, step=None, data=None, value=100):
    m = Image()
    m.width, m.height, m.encoding = w, h, enc
    ch = {"mono8": 1, "rgb8": 3, "bgr8": 3}.get(enc, 3)
    m.step = w * ch if step is None else step
    m.data = bytes([value]) * (m.step * h) if data is None else data
    m.header.frame_id = "camera"
    return m


def test_malformed_frames_are_logged_and_node_keeps_running(ros, sensor_node):
    node, topics = sensor_node
    pub = ros.node.create_publisher(Image, topics["image_topic"], QoSProfile(depth=10))
    wait_for(lambda: pub.get_subscription_count() >= 1, 20, "the node to match the test publisher")
    time.sleep(0.3)
    bad = [
        _frame(64, 48, "rgb8", step=100),                     # wrong step (< width * 3)
        _frame(64, 48, "yuv_unknown"),                        # unknown encoding
        _frame(0, 0, "rgb8", data=b""),                       # zero size
        _frame(64, 48, "rgb8", data=b"\x07" * (64 * 3 * 48 - 500)),  # truncated data
        _frame(64, 48, "mono8", step=70, data=b"\x01" * (70 * 47)),  # padded rows, one row missing
    ]
    n0 = len(ros.get(topics["result_topic"]))
    frames = [(_frame(64, 48, "mono8"), True)]
    for i, b in enumerate(bad):
        frames += [(b, False), (_frame(80, 60, ("rgb8", "bgr8")[i % 2], value=40 * i), True)]
    sent_good = 0
    for m, good in frames:
        m.header.stamp = ros.node.get_clock().now().to_msg()
        pub.publish(m)
        if good:  # one frame at a time: keep-last-1 must not drop these
            sent_good += 1
            wait_for(lambda sent_good=sent_good: len(ros.get(topics["result_topic"])) - n0 >= sent_good, 15, "the good frame's result",
                     node.p)
        else:
            time.sleep(0.05)
    wait_for(lambda: len(ros.get(topics["result_topic"])) - n0 >= sent_good, 20, f"{sent_good} results")
    wait_for(lambda: int(ros.last_diag(topics["diagnostics_topic"]).get("frames_malformed", 0)) >= len(bad), 10,
             "diagnostics counting the malformed frames")
    ros.node.destroy_publisher(pub)
    assert node.p.poll() is None, "node still running"
    log = node.text()
    for words in ("step 100 is smaller", "unknown image encoding 'yuv_unknown'", "zero-size image",
                  "truncated image data", "step*height = 70*48"):
        assert words in log, f"{words!r} not logged:\n{log[-3000:]}"
    assert len(ros.get(topics["result_topic"])) - n0 == sent_good


def test_overload_drops_old_frames_with_bounded_memory(ros, sensor_node, tmp_path):
    """Frames arrive ~10x faster than the node can infer: it keeps only the newest, results keep flowing with
    low latency (no backlog) and its memory does not grow."""
    node, topics = sensor_node
    d0 = ros.last_diag(topics["diagnostics_topic"])
    n0 = len(ros.get(topics["result_topic"]))
    secs = 6.0
    cam = Proc("slt_ros2.camera_node", {"source": "fmnist", "loop": True, "rate": 0.0, "width": 160, "height": 120,
                                        "encoding": "mono8", "topic": topics["image_topic"],
                                        "wait_for_subscribers": 1}, tmp_path / "overload_camera.log")
    try:
        wait_for(lambda: len(ros.get(topics["result_topic"])) > n0 + 5, 30, "first results under overload", cam.p)
        t_start = time.time()
        rss = [node.rss_mb()]
        while time.time() - t_start < secs:
            time.sleep(0.5)
            rss.append(node.rss_mb())
    finally:
        cam.interrupt(10)
    sent = int(re.search(r"sent (\d+) frames", cam.text()).group(1))
    res = [(t, r) for t, r in ros.get(topics["result_topic"])[n0:] if t_start <= t <= t_start + secs]
    d1 = ros.last_diag(topics["diagnostics_topic"])
    processed = int(d1["frames_processed"]) - int(d0.get("frames_processed", 0))
    dropped = int(d1["frames_dropped"]) - int(d0.get("frames_dropped", 0))
    lat = np.array([r["latency_ms"] for _, r in res])
    print(f"overload: camera sent {sent}, node produced {processed} results ({len(res) / secs:.1f}/s), "
          f"{dropped} dropped/lost counted, latency p50 {np.median(lat):.1f} ms, RSS {rss[0]:.0f}->{max(rss):.0f} MB")
    assert sent >= 8 * processed, "the camera outpaced inference (the overload really happened)"
    assert node.p.poll() is None
    per_second = np.histogram([t for t, _ in res], bins=int(secs), range=(t_start, t_start + secs))[0]
    assert per_second.min() >= 1, f"results kept flowing every second: {per_second}"
    assert np.median(lat) < 500, "newest frames are processed, no backlog"
    received = int(d1["frames_received"]) - int(d0.get("frames_received", 0))
    assert dropped > 0 and received + int(d1["frames_dropped_upstream"]) - int(d0.get("frames_dropped_upstream", 0)) \
        >= processed + dropped - 5, "the node counts the frames it dropped"
    assert max(rss) - rss[0] < 25, f"memory bounded: RSS went {rss}"


@pytest.mark.parametrize("kind", ["video", "folder"])
def test_video_file_and_image_folder_sources(ros, sensor_node, tmp_path, kind):
    """Real encoded media through OpenCV: an MJPG .avi and a folder of PNGs, resized by the camera to 320x240."""
    cv2 = pytest.importorskip("cv2")
    node, topics = sensor_node
    from slt_deploy.runtime.image import embed_image
    frames = [embed_image(np.full((1, 28, 28), 20.0 * i, np.float32), 255.0, (96, 128), 3) for i in range(12)]
    if kind == "video":
        source = str(tmp_path / "clip.avi")
        w = cv2.VideoWriter(source, cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (128, 96))
        assert w.isOpened()
        for f in frames:
            w.write(f[:, :, ::-1])
        w.release()
    else:
        source = str(tmp_path / "images")
        os.makedirs(source)
        for i, f in enumerate(frames):
            assert cv2.imwrite(os.path.join(source, f"{i:03d}.png"), f[:, :, ::-1])
    n0 = len(ros.get(topics["result_topic"]))
    # the node keeps only the newest frame (best effort, keep last 1): at 20 Hz on a loaded machine it dropped
    # most of them. The camera runs at a third of the rate the node measured it can serve (its diagnostics,
    # capacity_fps, under whatever load there is), at most 20 Hz, so the check is on the source, not the load.
    cap = float(ros.last_diag(topics["diagnostics_topic"]).get("capacity_fps", "nan"))
    rate = round(min(20.0, cap / 3), 3) if math.isfinite(cap) and cap > 0 else 5.0
    cam = Proc("slt_ros2.camera_node", {"source": source, "rate": rate, "width": 320, "height": 240,
                                        "topic": topics["image_topic"], "wait_for_subscribers": 1},
               tmp_path / "camera.log")
    try:
        rc = cam.p.wait(scaled(30) + 12 / rate)
    finally:
        cam.interrupt(scaled(5))
    assert rc == 0, cam.text()
    assert "sent 12 frames" in cam.text()
    wait_for(lambda: len(ros.get(topics["result_topic"])) - n0 >= 6, scaled(10), "results from the camera frames",
             node.p)


def test_ctrl_c_stops_the_node_cleanly(sensor_node):
    node, _ = sensor_node
    assert node.interrupt(10) == 0
    assert "slt_perception: stopped after" in node.text()
    assert "Traceback" not in node.text()


def test_bad_model_path_is_a_clear_error(tmp_path):
    p = Proc("slt_ros2.perception_node", {"model": str(tmp_path / "missing"), "backend": "torch"},
             tmp_path / "bad.log")
    try:
        rc = p.p.wait(60)
    finally:
        p.log.close()
    assert rc == 2
    assert "model" in p.text() and "does not exist" in p.text() and "Traceback" not in p.text()


def test_backend_parameter_mismatches_are_clear_errors(model, tmp_path):
    sys.path.insert(0, EXAMPLE)
    from slt_ros2.perception_node import load_model

    from slt_deploy.errors import SltError

    with pytest.raises(SltError, match="unknown backend 'tensorrt'"):
        load_model(model, "tensorrt")
    f = tmp_path / "model.onnx"
    f.write_bytes(b"not a model")
    with pytest.raises(SltError, match="backend 'torch' runs a checkpoint folder"):
        load_model(str(f), "torch")
    with pytest.raises(SltError, match="export one with: slt-deploy export CHECKPOINT --target onnx"):
        load_model(model, "onnx")
    with pytest.raises(SltError, match="parameter 'model' is empty"):
        load_model("", "auto")
    assert load_model(model, "torch").meta["input_shape"] == [1, 28, 28]


def test_camera_roi_topic_is_the_downscaled_centre_of_each_frame(ros, tmp_path):
    """roi_topic: the centred square of each frame, area-downscaled to roi_size, with the frame's header (what the
    bench's downscaled-subscription variant feeds the node)."""
    from slt_ros2.camera_node import dataset_frames

    from slt_deploy.runtime.image import center_crop, decode_frame, embed_image, resize
    image, roi = f"/t{PID}/roi/image", f"/t{PID}/roi/image_small"
    got = {"image": [], "roi": []}
    lock = threading.Lock()

    def keep(kind):
        def cb(m):
            with lock:
                got[kind].append(m)
        return cb
    rel = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    ros.node.create_subscription(Image, image, keep("image"), rel)
    ros.node.create_subscription(Image, roi, keep("roi"), rel)
    cam = Proc("slt_ros2.camera_node", {"topic": image, "roi_topic": roi, "roi_size": 56, "source": "fmnist",
                                        "count": 8, "rate": 20.0, "width": 320, "height": 240, "encoding": "bgr8",
                                        "qos": "reliable", "qos_depth": 10, "wait_for_subscribers": 2},
               tmp_path / "roi_camera.log")  # 2 = ours on the image and on the ROI topic
    try:
        assert cam.p.wait(60) == 0, cam.text()
    finally:
        cam.interrupt(5)
    wait_for(lambda: len(got["roi"]) >= 8 and len(got["image"]) >= 8, 10, "8 frames and 8 ROI images")
    x, _, _ = dataset_frames("fmnist", "", 0, 8)
    frames = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in got["image"]}
    for i, m in enumerate(got["roi"]):
        assert (m.width, m.height, m.encoding, m.header.frame_id) == (56, 56, "bgr8", "camera")
        full = frames[(m.header.stamp.sec, m.header.stamp.nanosec)]  # same header as its frame
        big = decode_frame(full.data, full.width, full.height, full.encoding, full.step)
        want = resize(np.ascontiguousarray(center_crop(big, 1, 1)), 56, 56, "area")
        assert np.array_equal(decode_frame(m.data, 56, 56, "bgr8", m.step), want)
        assert np.array_equal(big, embed_image(x[i], 255.0, (240, 320), 3))


def test_artifact_of_another_target_is_a_clear_error(artifacts):
    """backend names a target, the file is another target's artifact: said, with both names (found through
    slt_deploy.runtime.load_runner only)."""
    from slt_ros2.perception_node import load_model

    from slt_deploy.errors import SltError
    if "onnx" not in artifacts or "packed" not in artifacts:
        pytest.skip("needs the onnx and packed artifacts")
    with pytest.raises(SltError, match="is an artifact of target onnx, not packed"):
        load_model(artifacts["onnx"], "packed")
    with pytest.raises(SltError, match="is an artifact of target packed, not onnx"):
        load_model(artifacts["packed"], "onnx")
    assert load_model(artifacts["onnx"], "auto").meta["input_shape"] == [1, 28, 28]
