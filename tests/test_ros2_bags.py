"""rosbag2 (mcap and sqlite3, through the pure-Python rosbags package) over the real RMW: record a short bag of real
Fashion-MNIST camera frames with slt_recorder, replay it as the camera source through the perception node while
recording the node's results into a second bag, and compare those results with the offline `slt-deploy run` on the
same test images."""
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ros2_test_model

pytest.importorskip("rclpy", reason="ROS 2 wheels not installed (pip install -r requirements-ros.txt)")
pytest.importorskip("rosbags", reason="pip install -r requirements-ros.txt (rosbags, rosbags-image)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "ros2")
sys.path.insert(0, EXAMPLE)
from slt_ros2.bags import BagFrames, BagWriter, read_messages  # noqa: E402
from slt_ros2.harness import Proc, ros_env, scaled, wait_for  # noqa: E402

PID = os.getpid()
DOMAIN = str(1 + (PID + 23) % 200)
N = 20


@pytest.fixture(scope="module")
def model():
    return ros2_test_model()


def key(h):
    return h["stamp"]["sec"], h["stamp"]["nanosec"]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_of_fmnist_frames_replayed_through_the_node_matches_offline_run(model, tmp_path, storage):
    ns = f"/b{PID}{storage}"
    frames_bag, results_bag = str(tmp_path / "frames"), str(tmp_path / "results")

    # 1. record N real Fashion-MNIST frames (+ their ground truth and camera_info) as a camera publishes them
    rec = Proc("slt_ros2.recorder", {"bag": frames_bag, "storage": storage, "topics": ",".join([
        f"{ns}/image@sensor_msgs/msg/Image", f"{ns}/image/ground_truth@std_msgs/msg/String",
        f"{ns}/camera_info@sensor_msgs/msg/CameraInfo"])}, tmp_path / "rec1.log", DOMAIN)
    # the camera waits for the recorder's image subscription and then for every camera_info / ground-truth
    # subscription the graph shows: start it once the recorder has created all three (they come one by one; under
    # load the camera_info one came 0.2 s after the image one and the first frames' camera_info was lost)
    wait_for(lambda: "recording " in rec.text(), scaled(30), "the recorder to subscribe its topics", rec.p)
    cam = Proc("slt_ros2.camera_node", {"source": "fmnist", "count": N, "rate": 30.0, "width": 320, "height": 240,
                                        "encoding": "rgb8", "qos": "reliable", "qos_depth": N, "topic": f"{ns}/image",
                                        "wait_for_subscribers": 1, "wait_timeout": 60.0}, tmp_path / "cam1.log",
               DOMAIN)
    assert cam.p.wait(scaled(90)) == 0, cam.text()
    cam.log.close()
    # the camera ended once the recorder acknowledged every frame, camera_info and ground truth; on Ctrl-C the
    # recorder writes what it received before closing the bag
    assert rec.interrupt(scaled(10)) == 0, rec.text()
    assert not os.path.exists(tmp_path / ".frames.recording") and os.path.isdir(frames_bag)
    images = read_messages(frames_bag, f"{ns}/image")
    truth = [json.loads(m.data) for _, m in read_messages(frames_bag, f"{ns}/image/ground_truth")]
    assert len(images) == N and sorted(g["index"] for g in truth) == list(range(N)), rec.text()
    assert {(m.width, m.height, m.encoding, m.header.frame_id) for _, m in images} == {(320, 240, "rgb8", "camera")}
    assert len(read_messages(frames_bag, f"{ns}/camera_info")) == N
    kinds = os.listdir(frames_bag)
    assert any(f.endswith(".mcap" if storage == "mcap" else ".db3") for f in kinds), kinds

    # 2. replay the bag as the camera source through the node; record the node's results
    ns2 = ns + "r"
    # the recorder also takes the images, so the camera's wait_for_subscribers = 2 (node + recorder) holds it until it
    # has discovered the recorder itself, not only the node: a camera that had seen only the node could find no
    # ground-truth subscriber in its graph yet and lose the first frame's ground truth (seen once at load ~3)
    rec2 = Proc("slt_ros2.recorder", {"bag": results_bag, "storage": storage, "topics": ",".join([
        f"{ns2}/result@std_msgs/msg/String", f"{ns2}/image/ground_truth@std_msgs/msg/String",
        f"{ns2}/image@sensor_msgs/msg/Image"])},
        tmp_path / "rec2.log", DOMAIN)
    node = Proc("slt_ros2.perception_node", {"model": model, "backend": "torch", "image_topic": f"{ns2}/image",
                                             "result_topic": f"{ns2}/result", "diagnostics_topic": f"{ns2}/diag",
                                             "qos": "reliable", "qos_depth": N, "interpolation": "nearest",
                                             "crop": "center", "energy_hardware": "none"},
                tmp_path / "node.log", DOMAIN)
    try:
        wait_for(lambda: "loaded in" in node.text(), 60, "the node to load its model", node.p)
        time.sleep(1.5)  # the result publisher and the recorder match
        cam2 = Proc("slt_ros2.camera_node", {"source": frames_bag, "rate": 30.0, "width": 320, "height": 240,
                                             "encoding": "rgb8", "qos": "reliable", "qos_depth": N,
                                             "topic": f"{ns2}/image", "wait_for_subscribers": 2,
                                             "wait_timeout": 60.0}, tmp_path / "cam2.log", DOMAIN)
        assert cam2.p.wait(90) == 0, cam2.text()
        cam2.log.close()
        assert f"sent {N} frames" in cam2.text()
        time.sleep(2.0)
        assert rec2.interrupt() == 0, rec2.text()
    finally:
        assert node.interrupt() == 0, node.text()[-2000:]
    results = [json.loads(m.data) for _, m in read_messages(results_bag, f"{ns2}/result")]
    replayed = {key(g["header"]): g for g in
                (json.loads(m.data) for _, m in read_messages(results_bag, f"{ns2}/image/ground_truth"))}
    assert len(results) == N, rec2.text()
    idx = [replayed[key(r["header"])]["index"] for r in results]
    assert sorted(idx) == list(range(N)), "every recorded frame replayed once, its ground truth passed on"
    assert all(r["header"]["frame_id"] == "camera" for r in results)
    got = np.array([r["class_id"] for r in results])[np.argsort(idx)]
    labels = np.array([replayed[key(r["header"])]["label"] for r in results])[np.argsort(idx)]

    # 3. offline: slt-deploy run on the same test images (its accuracy line), and the same runner per image
    from slt_deploy.data import FMNIST_DIR, FMNIST_FILES, read_idx
    from slt_deploy.runtime import load_runner
    y = read_idx(FMNIST_DIR, FMNIST_FILES["test"][1])[:N].astype(np.int64)
    x = read_idx(FMNIST_DIR, FMNIST_FILES["test"][0])[:N].astype(np.float32)[:, None]
    assert np.array_equal(labels, y), "the bag's ground truth is the dataset's"
    pred = load_runner(model).predict(x).argmax(1)
    assert np.array_equal(got, pred), f"through the bag {got.tolist()} vs offline {pred.tolist()}"
    out = subprocess.run([sys.executable, "-m", "slt_deploy.cli", "run", model, "--data", "fmnist", "--limit",
                          str(N)], capture_output=True, text=True, env=ros_env(DOMAIN), cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    acc = float(re.search(r"accuracy ([0-9.]+)%", out.stdout).group(1))
    print(f"{storage}: {N} frames recorded, replayed, results recorded; accuracy through the bag "
          f"{100 * np.mean(got == y):.2f}% = slt-deploy run {acc:.2f}%")
    assert abs(100 * np.mean(got == y) - acc) < 1e-6

    if storage == "mcap":  # one frame as a user would check it: decoded from the bag, slt-deploy run --input
        from PIL import Image as PILImage

        from slt_deploy.runtime.image import from_model_units, to_model_input
        bag = BagFrames(frames_bag)
        for _ in range(3):
            rgb, t = bag.next()
            small = to_model_input(rgb, {"input_shape": [1, 28, 28], "input_max": 255.0}, "center", "nearest")
            assert np.array_equal(small[0], x[t["index"], 0]), "the bag holds the exact test image"
            png = tmp_path / f"frame{t['index']}.png"
            PILImage.fromarray(from_model_units(small, 255.0)[:, :, 0]).save(png)
            out = subprocess.run([sys.executable, "-m", "slt_deploy.cli", "run", model, "--input", str(png)],
                                 capture_output=True, text=True, env=ros_env(DOMAIN), cwd=ROOT, timeout=120)
            assert out.returncode == 0, out.stderr
            assert int(re.search(r"class (\d+)", out.stdout).group(1)) == int(got[t["index"]])
        bag.close()


def test_bag_errors_are_clear(tmp_path):
    from slt_deploy.errors import SltError
    w = BagWriter(str(tmp_path / "empty"), "mcap")
    w.add_topic("/x", "std_msgs/msg/String")
    w.close()
    with pytest.raises(SltError, match="has no image topics.*it has: /x"):
        BagFrames(str(tmp_path / "empty"))
    with pytest.raises(SltError, match="exists"):
        BagWriter(str(tmp_path / "empty"), "mcap")
    with pytest.raises(SltError, match="unknown bag storage"):
        BagWriter(str(tmp_path / "other"), "rosbag1")
    (tmp_path / "broken.mcap").write_bytes(b"not a bag")
    with pytest.raises(SltError, match="cannot read bag"):
        BagFrames(str(tmp_path / "broken.mcap"))
