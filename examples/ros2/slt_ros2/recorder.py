"""slt_recorder: records topics into a rosbag2 (mcap or sqlite3) with the pure-Python rosbags writer, without a
ROS install -- e.g. the perception node's results, or a camera stream to replay later (camera source:=BAG).

    python -m slt_ros2.recorder --ros-args -p bag:=runs/results_bag -p storage:=mcap \\
        -p topics:="slt/result,image_raw/ground_truth"

`topics`: comma-separated; a topic may name its type (`slt/result@std_msgs/msg/String`) so that recording starts
before any publisher exists; otherwise its type is taken from the ROS graph once a publisher appears. Messages are
stored as they arrive (serialized CDR, no decode), stamped with the receive time. The subscription QoS follows
the publishers (reliable when they all are, else best effort; transient local when they all are). Ctrl-C /
SIGTERM / `max_messages` close the bag, which only then appears at `bag` (written beside it, then renamed)."""
from __future__ import annotations

import importlib
import signal
import sys
import threading
import time

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from slt_deploy.errors import SltError

from .bags import BagWriter
from .params import RECORDER
from .ros_params import declare_all


def get_message(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class (what rosidl_runtime_py does; not in the PyPI wheels)."""
    pkg, kind, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError):
        raise SltError(f"message type {msgtype} is not installed", f"pip install ros-{pkg.replace('_', '-')}") \
            from None


class Recorder(Node):
    def __init__(self):
        super().__init__("slt_recorder")
        cfg = declare_all(self, RECORDER)
        if not cfg["bag"]:
            raise SltError("parameter 'bag' is empty", "pass -p bag:=OUTPUT_FOLDER")
        self.want = {}
        for item in (t.strip() for t in cfg["topics"].split(",")):
            if item:
                topic, _, msgtype = item.partition("@")
                self.want[self.resolve_topic_name(topic)] = msgtype or None
        if not self.want:
            raise SltError("parameter 'topics' is empty", "pass -p topics:=TOPIC[,TOPIC...]")
        self.max_messages = cfg["max_messages"]
        self.writer = BagWriter(cfg["bag"], cfg["storage"])
        self.subs = {}
        self.done = threading.Event()
        self.timer = self.create_timer(0.1, self.subscribe_new)
        self.subscribe_new()
        self.get_logger().info(f"recording {', '.join(self.want)} into {cfg['bag']} ({cfg['storage']})")

    def resolve_topic_name(self, topic: str) -> str:
        return topic if topic.startswith("/") else (self.get_namespace().rstrip("/") + "/" + topic)

    def _qos(self, topic):
        pubs = self.get_publishers_info_by_topic(topic)
        reliable = all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in pubs)
        latched = bool(pubs) and all(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in pubs)
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000,
                          reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)

    def subscribe_new(self):
        graph = dict(self.get_topic_names_and_types())
        for topic, declared in self.want.items():
            if topic in self.subs:
                continue
            msgtype = declared or (graph.get(topic) or [None])[0]
            if msgtype is None:
                continue  # no publisher yet, type unknown
            self.writer.add_topic(topic, msgtype)
            self.subs[topic] = self.create_subscription(get_message(msgtype), topic,
                                                        lambda data, t=topic: self.on_message(t, data),
                                                        self._qos(topic), raw=True)
            self.get_logger().info(f"subscribed {topic} ({msgtype})")

    def on_message(self, topic, data: bytes):
        self.writer.write(topic, time.time_ns(), data)
        if self.max_messages and sum(self.writer.counts.values()) >= self.max_messages:
            self.done.set()

    def close(self):
        path = self.writer.close()
        counts = ", ".join(f"{t}: {n}" for t, n in self.writer.counts.items())
        print(f"slt_recorder: wrote {path} ({counts or 'no topics matched'})", file=sys.stderr, flush=True)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def drain(ex, node, quiet_s: float = 0.2, limit_s: float = 5.0):
    """Write what already arrived (in the DDS reader queues, not taken yet) before closing: spin until no message
    came for `quiet_s`, at most `limit_s`. Without this, Ctrl-C right after a camera ended lost its last frames."""
    t_end = time.monotonic() + limit_s
    last, t_quiet = -1, time.monotonic()
    while time.monotonic() < t_end:
        n = sum(node.writer.counts.values())
        if n != last:
            last, t_quiet = n, time.monotonic()
        elif time.monotonic() - t_quiet >= quiet_s:
            return
        ex.spin_once(timeout_sec=0.02)


def main(args=None):
    # our own Ctrl-C / SIGTERM handling (not rclpy's, which shuts the context down at once): the context stays up
    # until the messages that already arrived are written
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = ex = None
    code = 0
    try:
        node = Recorder()
        ex = SingleThreadedExecutor()
        ex.add_node(node)
        while rclpy.ok() and not node.done.is_set():
            ex.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except SltError as e:
        print(f"slt_recorder: error: {e}", file=sys.stderr, flush=True)
        code = 2
    finally:
        if node is not None and ex is not None and rclpy.ok():
            try:
                drain(ex, node)
            except (KeyboardInterrupt, ExternalShutdownException):  # a second Ctrl-C: close now
                pass
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
