"""slt_camera: publishes real frames as sensor_msgs/Image at a set rate.

source (parameter):
  fmnist | digits          test images of Fashion-MNIST (/usr/share/datasets/fashion-mnist, or data_dir) or sklearn
                           digits, each placed in the centre of a width x height frame
  PATH.avi/.mp4/...        a video file (OpenCV), looped when loop is true
  BAG                      a rosbag2 recording (folder with metadata.yaml, .mcap or .db3; mcap or sqlite3 storage)
                           through rosbags: its image topic (bag_topic, or its only Image/CompressedImage topic),
                           converted by rosbags-image; a recorded <topic>/ground_truth is passed on
  DIR                      a folder of images (png/jpg/bmp/pgm/ppm, sorted by name; OpenCV)
  v4l2:N or /dev/videoN    a V4L2 camera through OpenCV

    python -m slt_ros2.camera_node --ros-args -p source:=fmnist -p rate:=30.0 -p width:=640 -p height:=480
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time

import numpy as np
import rclpy
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.subscription import RCLError  # rclpy's own re-export of the pybind11 error type
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from slt_deploy.errors import SltError
from slt_deploy.runtime.image import center_crop, embed_image, encode_frame, resize

from .bags import BagFrames, is_bag
from .harness import load_factor
from .params import CAMERA
from .perception_node import make_qos
from .realtime import set_realtime
from .ros_params import declare_all

TRUTH_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL)
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp")


def camera_info_topic(image_topic: str) -> str:
    """camera_info beside the image topic, as camera drivers do: /ns/image_raw -> /ns/camera_info."""
    head, _, _ = image_topic.rstrip("/").rpartition("/")
    return f"{head}/camera_info" if head or image_topic.startswith("/") else "camera_info"


def _cv2():
    try:
        import cv2
    except ImportError:
        raise SltError("this source needs OpenCV", "pip install -r requirements-ros.txt (opencv-python-headless)") from None
    return cv2


FMNIST_DIR = "/usr/share/datasets/fashion-mnist"


def _read_idx(directory, stem):
    """Standard idx file (.gz or not) -> uint8 array; the same files slt_deploy.data reads, without importing torch
    (a faster camera start)."""
    import gzip
    for fname in (stem + ".gz", stem):
        path = os.path.join(directory, fname)
        if os.path.exists(path):
            with (gzip.open(path, "rb") if fname.endswith(".gz") else open(path, "rb")) as f:
                raw = f.read()
            break
    else:
        raise SltError(f"Fashion-MNIST file {stem}[.gz] not found in {directory}",
                       "apt-get install dataset-fashion-mnist, or set data_dir")
    if len(raw) < 8 or raw[2] != 0x08:
        raise SltError(f"{directory}/{stem}: not an unsigned-byte idx file", "use the original idx files")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(raw[3])]
    n, start = int(np.prod(dims)), 4 + 4 * raw[3]
    if len(raw) - start != n:
        raise SltError(f"{directory}/{stem}: truncated idx file", "re-install the dataset")
    return np.frombuffer(raw, np.uint8, count=n, offset=start).reshape(dims)


def dataset_frames(name: str, data_dir: str, start: int, count: int):
    """-> (images float32 [N, C, h, w] raw units, labels int [N], input_max): the test split the project evaluates."""
    if name == "fmnist":
        d = data_dir or FMNIST_DIR
        x = _read_idx(d, "t10k-images-idx3-ubyte").astype(np.float32)[:, None]
        y = _read_idx(d, "t10k-labels-idx1-ubyte").astype(np.int64)
        input_max = 255.0
    else:
        from slt_deploy.data import load_digits  # imports torch: only for digits
        ds = load_digits()
        x, y, input_max = ds.test.x.numpy(), ds.test.y.numpy(), ds.input_max
    end = len(x) if count <= 0 else min(len(x), start + count)
    if start >= len(x):
        raise SltError(f"start_index {start} is past the {len(x)} {name} test images", "use a smaller start_index")
    return x[start:end], y[start:end], input_max


class FrameSource:
    """next() -> (rgb uint8 [H, W, 3] or mono [H, W, 1], ground truth dict) until exhausted (None)."""

    def __init__(self, source: str, width: int, height: int, loop: bool, data_dir: str, start: int, count: int,
                 channels: int, bag_topic: str = ""):
        self.width, self.height, self.loop, self.channels = width, height, loop, channels
        self.kind = None
        if source in ("fmnist", "digits"):
            self.kind = "dataset"
            self.name = source
            self.x, self.y, self.input_max = dataset_frames(source, data_dir, start, count)
            self.start = start
            self.w, self.h = width or 640, height or 480
        elif source.startswith("v4l2:") or source.startswith("/dev/video"):
            cv2 = _cv2()
            dev = int(source.split(":", 1)[1]) if source.startswith("v4l2:") else source
            self.cap = cv2.VideoCapture(dev)
            if not self.cap.isOpened():
                raise SltError(f"cannot open camera {source}", "check the device exists and is not in use")
            self.kind = "video"
        elif is_bag(source):  # a rosbag2 recording (folder with metadata.yaml, or a .mcap/.db3 file)
            self.bag = BagFrames(source, bag_topic)
            self.kind = "bag"
        elif os.path.isdir(source):
            self.files = sorted(os.path.join(source, f) for f in os.listdir(source) if f.lower().endswith(IMAGE_EXT))
            if not self.files:
                raise SltError(f"no images ({', '.join(IMAGE_EXT)}) in {source}", "point source at a folder of images")
            self.kind = "folder"
        elif os.path.isfile(source):
            cv2 = _cv2()
            self.cap = cv2.VideoCapture(source)
            if not self.cap.isOpened():
                raise SltError(f"OpenCV cannot read video {source}", "use a format OpenCV decodes (avi, mp4)")
            self.source = source
            self.kind = "video"
        else:
            raise SltError(f"source {source!r} is not fmnist, digits, a video file, an image folder or v4l2:N",
                           "see the camera section of examples/ros2/README.md")
        self.i = 0

    def _fit(self, bgr):
        cv2 = _cv2()
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if bgr.ndim == 3 else bgr[:, :, None]
        if self.width and self.height and rgb.shape[:2] != (self.height, self.width):
            rgb = resize(rgb, self.height, self.width, "linear")
        return rgb

    def next(self):
        if self.kind == "dataset":
            if self.i >= len(self.x):
                if not self.loop:
                    return None
                self.i = 0
            i = self.i
            self.i += 1
            frame = embed_image(self.x[i], self.input_max, (self.h, self.w), channels=self.channels)
            return frame, {"source": self.name, "index": self.start + i, "label": int(self.y[i])}
        if self.kind == "bag":
            item = self.bag.next()
            if item is None and self.loop and self.bag.i:
                self.bag.restart()
                item = self.bag.next()
            if item is None:
                return None
            rgb, truth = item
            if self.width and self.height and rgb.shape[:2] != (self.height, self.width):
                rgb = resize(rgb, self.height, self.width, "linear")
            return rgb, truth
        if self.kind == "folder":
            if self.i >= len(self.files):
                if not self.loop:
                    return None
                self.i = 0
            path = self.files[self.i]
            self.i += 1
            bgr = _cv2().imread(path, 1)
            if bgr is None:
                raise SltError(f"OpenCV cannot read {path}", "remove it from the folder")
            return self._fit(bgr), {"file": os.path.basename(path), "index": self.i - 1}
        ok, bgr = self.cap.read()
        if not ok and self.loop and hasattr(self, "source"):
            self.cap.set(_cv2().CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self.cap.read()
        if not ok:
            return None
        self.i += 1
        return self._fit(bgr), {"frame": self.i - 1}


def compatible_subscribers(node: Node, pub) -> int:
    """Subscriptions of pub's topic in the ROS graph that can match pub (a reliable subscriber never matches a
    best-effort publisher, a transient-local one never a volatile publisher)."""
    q = pub.qos_profile
    n = 0
    for info in node.get_subscriptions_info_by_topic(pub.topic_name):
        s = info.qos_profile
        if s.reliability == ReliabilityPolicy.RELIABLE and q.reliability != ReliabilityPolicy.RELIABLE:
            continue
        if s.durability == DurabilityPolicy.TRANSIENT_LOCAL and q.durability != DurabilityPolicy.TRANSIENT_LOCAL:
            continue
        n += 1
    return n


class CameraNode(Node):
    def __init__(self):
        super().__init__("slt_camera")
        cfg = self.cfg = declare_all(self, CAMERA, apply=self.apply_parameters)
        source, self.topic, self.rate = cfg["source"], cfg["topic"], cfg["rate"]
        width, height, self.encoding = cfg["width"], cfg["height"], cfg["encoding"]
        self.row_padding, self.frame_id, self.count = cfg["row_padding"], cfg["frame_id"], cfg["count"]
        loop = cfg["loop"]
        self.wait_subs, self.wait_timeout = cfg["wait_for_subscribers"], cfg["wait_timeout"]
        qos = make_qos(cfg["qos"], cfg["qos_depth"])
        self.frames = FrameSource(source, width, height, loop, cfg["data_dir"], cfg["start_index"],
                                  self.count if source in ("fmnist", "digits") else 0,
                                  1 if self.encoding == "mono8" else 3, cfg["bag_topic"])
        self.pub = self.create_publisher(Image, self.topic, qos)
        self.info_pub = self.create_publisher(CameraInfo, camera_info_topic(self.topic), qos)
        self.roi_pub = self.create_publisher(Image, cfg["roi_topic"], qos) if cfg["roi_topic"] else None
        self.roi_size = cfg["roi_size"]
        # reliable, transient local: a listener that matched late (a recorder, a test) still gets the last 100
        self.truth_pub = self.create_publisher(String, self.topic.rstrip("/") + "/ground_truth", TRUTH_QOS)
        self.sent = 0
        self.done = threading.Event()
        if cfg["sched_priority"] > 0:  # before the publishing thread starts: it inherits the policy
            set_realtime(cfg["sched_priority"])
        self.thread = threading.Thread(target=self.loop, name="camera", daemon=True)
        self.thread.start()
        self.get_logger().info(f"publishing {source} on {self.topic} at {self.rate:g} Hz "
                               f"({self.encoding}{f', {width}x{height}' if width and height else ''})")

    def publish_side(self, img: Image, truth: dict):
        """camera_info (same header and size as the image) and the ground truth of this frame."""
        info = CameraInfo()
        info.header = img.header
        info.height, info.width = img.height, img.width
        info.distortion_model = "plumb_bob"
        info.d = [0.0] * 5
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]  # k, p stay 0: an uncalibrated camera
        self.info_pub.publish(info)
        gt = String()
        gt.data = json.dumps({"header": {"stamp": {"sec": img.header.stamp.sec, "nanosec": img.header.stamp.nanosec},
                                         "frame_id": img.header.frame_id}, **truth})
        self.truth_pub.publish(gt)

    def publish_roi(self, frame, header, key, cache):
        """The centred square of the frame, area-downscaled to roi_size x roi_size, same header and encoding."""
        if ("roi", key) in cache:
            data, step, n = cache[("roi", key)]
        else:
            small = resize(np.ascontiguousarray(center_crop(frame, 1, 1)), self.roi_size, self.roi_size, "area")
            data, step = encode_frame(small, self.encoding)
            n = small.shape[0]
            if key is not None:
                cache[("roi", key)] = (data, step, n)
        roi = Image()
        roi.header = header
        roi.height = roi.width = n
        roi.encoding, roi.step, roi.is_bigendian, roi.data = self.encoding, step, 0, data
        self.roi_pub.publish(roi)

    def apply_parameters(self, changed: dict):
        """Live parameters (rate): the publishing loop reads them before each frame."""
        self.cfg.update(changed)
        if "rate" in changed:
            self.rate = changed["rate"]
        self.get_logger().info("parameters set: " + ", ".join(f"{k}={v!r}" for k, v in changed.items()))

    def subscribers(self) -> int:
        """Matched subscribers of the image topic and of the ROI topic (a node may take only the ROI)."""
        return self.pub.get_subscription_count() + (self.roi_pub.get_subscription_count() if self.roi_pub else 0)

    def side_pending(self) -> list:
        """Side topics (camera_info, ground truth, ROI) with a QoS-compatible subscriber in the ROS graph that our
        publisher has not matched yet."""
        out = []
        for pub in (self.info_pub, self.truth_pub, self.roi_pub):
            if pub is not None and pub.get_subscription_count() < compatible_subscribers(self, pub):
                out.append(pub.topic_name)
        return out

    def loop(self):
        t_start = None
        try:
            if self.wait_subs > 0:
                t_end = time.monotonic() + self.wait_timeout
                while self.subscribers() < self.wait_subs and time.monotonic() < t_end:
                    if self.done.wait(0.05):
                        return
                if self.subscribers() < self.wait_subs:
                    self.get_logger().warning(f"only {self.subscribers()} subscribers after "
                                              f"{self.wait_timeout:g} s; publishing anyway")
                else:
                    # camera_info and the ground truth are volatile like the images: a subscriber of them (a
                    # recorder, a listener) that the ROS graph shows but our publisher has not matched yet would
                    # miss the first frames' side messages. Wait for those matches (bounded by the same timeout).
                    pending = self.side_pending()
                    while pending and time.monotonic() < t_end:
                        if self.done.wait(0.05):
                            return
                        pending = self.side_pending()
                    if pending:
                        self.get_logger().warning(f"{', '.join(pending)}: subscribers not matched after "
                                                  f"{self.wait_timeout:g} s; publishing anyway")
                    # the subscriber's side of a best-effort match is not observable from here: give it a moment,
                    # longer when the machine is loaded
                    time.sleep(min(3.0, 0.3 * load_factor()))
            cache = {}
            cacheable = self.frames.kind == "dataset" and len(self.frames.x) <= 100
            t_next = time.perf_counter()
            t_start = time.monotonic()
            limit = 0 if self.frames.loop else self.count  # looping: count only picks the dataset images
            while not self.done.is_set() and (limit <= 0 or self.sent < limit):
                item = self.frames.next()
                if item is None:
                    break
                frame, truth = item
                key = truth.get("index")
                if cacheable and key in cache:
                    data, step = cache[key]
                else:
                    data, step = encode_frame(frame, self.encoding, self.row_padding)
                    if cacheable:  # a short looped dataset: encode each frame once (fast high-rate replay)
                        cache[key] = (data, step)
                msg = Image()
                msg.height, msg.width = frame.shape[:2]
                msg.encoding, msg.step, msg.is_bigendian = self.encoding, step, 0
                msg.data = data
                msg.header.frame_id = self.frame_id
                period = 1.0 / self.rate if self.rate > 0 else 0.0  # live parameter
                if period:
                    delay = t_next - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    t_next = max(t_next + period, time.perf_counter() - period)  # no burst after a stall
                msg.header.stamp = self.get_clock().now().to_msg()
                self.publish_side(msg, truth)  # first: a listener has the truth when the result comes
                if self.roi_pub is not None:
                    self.publish_roi(frame, msg.header, key if cacheable else None, cache)
                self.pub.publish(msg)
                self.sent += 1
        except SltError as e:
            self.get_logger().error(str(e))
        except Exception as e:  # noqa: BLE001 -- reported below; a camera that fails mid-stream: report, stop (publish fails once Ctrl-C shut down)
            if not self.done.is_set() and self.context.ok():
                self.get_logger().error(f"camera stopped: {type(e).__name__}: {e}")
        finally:
            dt = time.monotonic() - t_start if t_start else 0.0
            print(f"slt_camera: sent {self.sent} frames in {dt:.2f} s ({self.sent / max(dt, 1e-9):.1f} Hz)",
                  file=sys.stderr, flush=True)
            self.done.set()


def main(args=None):
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = CameraNode()
        ex = SingleThreadedExecutor()
        ex.add_node(node)
        while rclpy.ok() and not node.done.is_set():
            ex.spin_once(timeout_sec=0.1)
        if node is not None:  # let the last samples reach reliable subscribers before the process ends
            t_end = time.monotonic() + 3.0 * load_factor()
            for pub in (node.pub, node.info_pub, node.truth_pub, node.roi_pub):
                if pub is None or not rclpy.ok():
                    continue
                try:
                    pub.wait_for_all_acked(Duration(seconds=max(0.1, t_end - time.monotonic())))
                except RCLError:  # Ctrl-C while waiting shut the context down: stop waiting, end cleanly
                    break
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except SltError as e:
        print(f"slt_camera: error: {e}", file=sys.stderr, flush=True)
        code = 2
    finally:
        if node is not None:
            node.done.set()
            node.thread.join(timeout=2.0)
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
