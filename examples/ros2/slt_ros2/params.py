"""The parameters of both nodes, written once: name, default, meaning, allowed values, and whether a change needs a
restart (read-only) or applies live. The nodes declare them from here with typed ROS descriptors, the launch file
exposes them from here, config/slt_perception.yaml lists them, and the tests check all three agree.
Pure Python (no rclpy): the launch file and the tests read it without a ROS install."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Spec:
    name: str
    default: object            # its Python type is the parameter's ROS type (str, int, float, bool)
    description: str
    read_only: bool = True     # True: read at start-up only (a change needs a restart)
    range: tuple | None = None     # (lo, hi) inclusive, numbers
    choices: tuple | None = None   # allowed strings

    @property
    def type(self):
        return type(self.default)

    def constraints(self) -> str:
        if self.choices:
            return "one of: " + ", ".join(self.choices)
        if self.range:
            return f"{self.range[0]} .. {self.range[1]}"
        return ""

    def check(self, value) -> str | None:
        """-> None if `value` is allowed, else the reason (one line)."""
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.type) or (self.type is int and isinstance(value, bool)):
            return f"{self.name} must be a {self.type.__name__}, got {type(value).__name__} {value!r}"
        if self.choices and value not in self.choices:
            return f"{self.name} must be one of {', '.join(self.choices)}; got {value!r}"
        if self.range and not (self.range[0] <= value <= self.range[1]):
            return f"{self.name} must be in {self.range[0]} .. {self.range[1]}; got {value!r}"
        return None


MAX_PIXELS = 8192 * 8192
BACKENDS = ("auto", "torch", "onnx", "packed")
CROPS = ("none", "center")
INTERPOLATIONS = ("area", "nearest", "linear")
QOS = ("sensor_data", "reliable")

PERCEPTION = [
    Spec("model", "", "checkpoint folder (PyTorch reference) or exported artifact (.onnx, packed)"),
    Spec("backend", "auto", "runtime: torch (checkpoint), onnx, packed, or auto (by what model is)", choices=BACKENDS),
    Spec("image_topic", "image_raw", "input sensor_msgs/Image topic"),
    Spec("result_topic", "slt/result", "output topic (std_msgs/String JSON, or vision_msgs/Classification)"),
    Spec("diagnostics_topic", "/diagnostics", "diagnostic_msgs/DiagnosticArray topic"),
    Spec("qos", "sensor_data", "image QoS: sensor_data (best effort) or reliable, keep last qos_depth", choices=QOS),
    Spec("qos_depth", 1, "frames kept in the DDS reader and the node's queue (older ones dropped, counted)",
         range=(1, 1000)),
    Spec("num_threads", 1, "intra-op threads of torch/onnxruntime (0 = their default)", range=(0, 256)),
    Spec("result_format", "auto", "auto (vision_msgs if installed, else json), json or vision_msgs",
         choices=("auto", "json", "vision_msgs")),
    Spec("stats_window", 300, "frames in the latency/FPS window", range=(10, 1_000_000)),
    Spec("warmup", 3, "warm-up inferences before subscribing", range=(0, 1000)),
    Spec("energy_hardware", "loihi2", "slt_deploy/hardware/energy/<name>.yaml for the modelled energy per frame (none = off)"),
    Spec("energy_checkpoint", "", "checkpoint folder the artifact was exported from (energy model)"),
    Spec("fast_path", True, "read frames as serialized bytes (rosbags CDR, no rclpy message) and area-resize through "
                            "an integral image; false: rclpy message + OpenCV INTER_AREA (slower, same results)"),
    Spec("inline", False, "run the model in the subscription callback (no hand-over to the inference thread; "
                          "frames that arrive meanwhile wait in DDS, keep last qos_depth, counted as dropped "
                          "upstream) instead of queueing them for the inference thread"),
    Spec("sched_priority", 0, "0: normal scheduling; 1..99: every thread of the node (its DDS threads included) "
                              "runs SCHED_FIFO at this priority (real-time: needs CAP_SYS_NICE or an rtprio limit)",
         range=(0, 99)),
    Spec("energy_frames", 8, "frames the energy is modelled on", range=(1, 4096)),
    # live: applied to the next frame / the next diagnostics report
    Spec("crop", "center", "center: largest centred region with the model's aspect ratio; none: stretch",
         read_only=False, choices=CROPS),
    Spec("interpolation", "area", "resize: area (anti-aliased), nearest (pixel centres), linear",
         read_only=False, choices=INTERPOLATIONS),
    Spec("max_pixels", MAX_PIXELS, "larger frames are rejected (bounded memory)", read_only=False,
         range=(1, 1 << 31)),
    Spec("energy_period", 30.0, "seconds between energy re-modelling (0 = once)", read_only=False,
         range=(0.0, 86400.0)),
    Spec("diagnostics_period", 1.0, "seconds between diagnostics reports", read_only=False, range=(0.05, 3600.0)),
    Spec("stale_timeout", 3.0, "diagnostics STALE when no frame arrived for this many seconds", read_only=False,
         range=(0.1, 86400.0)),
    Spec("min_fps", 5.0, "diagnostics WARN when results per second fall below this while frames arrive (0 = off)",
         read_only=False, range=(0.0, 100000.0)),
    Spec("latency_warn_ms", 100.0, "diagnostics WARN when the period's p99 latency (image stamp -> result) is above",
         read_only=False, range=(0.0, 1e7)),
    Spec("latency_error_ms", 1000.0, "diagnostics ERROR when the period's p99 latency is above", read_only=False,
         range=(0.0, 1e7)),
    Spec("drop_warn_ratio", 0.5, "diagnostics WARN when more than this fraction of the period's frames was dropped",
         read_only=False, range=(0.0, 1.0)),
]

CAMERA = [
    Spec("source", "fmnist", "fmnist, digits, a rosbag2 (folder or .mcap/.db3), a video file, an image folder, "
                             "or v4l2:N"),
    Spec("topic", "image_raw", "sensor_msgs/Image topic; camera_info and ground_truth go beside it"),
    Spec("bag_topic", "", "image topic to replay from a bag (empty = the bag's only image topic)"),
    Spec("rate", 30.0, "frames per second (0 = as fast as possible)", read_only=False, range=(0.0, 100000.0)),
    Spec("width", 640, "frame width (video, images, dataset, bag frames are resized to it; 0 = keep)",
         range=(0, 16384)),
    Spec("height", 480, "frame height (0 = keep)", range=(0, 16384)),
    Spec("encoding", "rgb8", "published encoding", choices=("rgb8", "bgr8", "mono8")),
    Spec("row_padding", 0, "bytes added to each row (exercises step handling)", range=(0, 65536)),
    Spec("frame_id", "camera", "header.frame_id of the images and camera_info (the camera's optical frame)"),
    Spec("count", 0, "frames to publish (0 = all); with a dataset and loop, the distinct images cycled",
         range=(0, 1 << 31)),
    Spec("start_index", 0, "first dataset test image", range=(0, 1 << 31)),
    Spec("loop", False, "start over at the end of the source"),
    Spec("qos", "sensor_data", "image QoS: sensor_data (best effort) or reliable", choices=QOS),
    Spec("qos_depth", 1, "keep last N frames", range=(1, 1000)),
    Spec("wait_for_subscribers", 0, "wait for N matched subscribers (image topic + roi_topic) before the first frame", range=(0, 1000)),
    Spec("wait_timeout", 20.0, "seconds to wait for them", range=(0.0, 86400.0)),
    Spec("data_dir", "", "Fashion-MNIST idx folder (default /usr/share/datasets/fashion-mnist)"),
    Spec("roi_topic", "", "also publish the centred square of each frame, area-downscaled to roi_size, here "
                          "(what a camera's ROI/binning or image_proc crop_decimate gives; empty = off)"),
    Spec("roi_size", 112, "side of the roi_topic image in pixels", range=(1, 16384)),
    Spec("sched_priority", 0, "0: normal scheduling; 1..99: every thread of the camera runs SCHED_FIFO at this "
                              "priority (real-time: needs CAP_SYS_NICE or an rtprio limit)", range=(0, 99)),
]

RECORDER = [
    Spec("bag", "", "output rosbag2 folder (must not exist; written beside it, renamed when closed)"),
    Spec("storage", "mcap", "rosbag2 storage", choices=("mcap", "sqlite3")),
    Spec("topics", "slt/result", "comma-separated topics, each optionally TOPIC@pkg/msg/Type"),
    Spec("max_messages", 0, "stop after this many messages in all (0 = until Ctrl-C)", range=(0, 1 << 40)),
]

NODES = {"slt_perception": PERCEPTION, "slt_camera": CAMERA}


def by_name(specs) -> dict:
    return {s.name: s for s in specs}
