"""rosbag2 files without a ROS install, through the pure-Python `rosbags` package (mcap and sqlite3 storage) and
`rosbags-image` for image conversion:

    BagFrames(path, topic)      image frames of a recorded topic (Image or CompressedImage, any encoding
                                rosbags-image converts) as RGB uint8 arrays, with each frame's recorded ground truth
    BagWriter(path, storage)    writes serialized (CDR) messages as they arrive from rclpy (raw subscriptions),
                                into a temporary folder renamed to `path` when closed: never a half-written bag
    read_messages(path, topic)  -> [(bag time ns, message)] decoded, for checks and tools
"""
from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np

from slt_deploy.errors import SltError

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
STORAGES = ("mcap", "sqlite3")


def _rosbags():
    try:
        from rosbags.highlevel import AnyReader
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore
    except ImportError:
        raise SltError("rosbag2 support needs the rosbags package", "pip install -r requirements-ros.txt") from None
    return AnyReader, Writer, StoragePlugin, get_typestore(Stores.ROS2_KILTED)


def is_bag(path: str) -> bool:
    p = Path(path)
    return (p.is_dir() and (p / "metadata.yaml").exists()) or (p.is_file() and p.suffix in (".mcap", ".db3"))


def _open(path: str):
    AnyReader, _, _, typestore = _rosbags()
    try:
        reader = AnyReader([Path(path)], default_typestore=typestore)
        reader.open()
    except Exception as e:  # noqa: BLE001 - rosbags raises its own types for every kind of bad file
        raise SltError(f"cannot read bag {path}: {type(e).__name__}: {e}",
                       "pass a rosbag2 folder (metadata.yaml + .mcap/.db3) or a .mcap file") from None
    return reader


def read_messages(path: str, topic: str) -> list:
    reader = _open(path)
    try:
        conns = [c for c in reader.connections if c.topic == topic]
        return [(t, reader.deserialize(raw, c.msgtype)) for c, t, raw in reader.messages(connections=conns)]
    finally:
        reader.close()


class BagFrames:
    """Frames of one image topic of a bag, in recorded order. next() -> (rgb uint8 [H, W, 3], truth dict) or None
    at the end. truth = the frame's record on `<topic>/ground_truth` in the same bag if there is one (matched by
    the image stamp), plus where the frame came from."""

    def __init__(self, path: str, topic: str = ""):
        self.path = path
        self.reader = _open(path)
        images = [c for c in self.reader.connections if c.msgtype in IMAGE_TYPES]
        if topic:
            images = [c for c in images if c.topic == topic]
        topics = sorted({c.topic for c in images})
        if len(topics) != 1:
            have = sorted({f"{c.topic} ({c.msgtype})" for c in self.reader.connections})
            raise SltError(f"bag {path} has {'no' if not topics else len(topics)} image topics"
                           + (f" named {topic!r}" if topic else "") + f"; it has: {', '.join(have) or 'nothing'}",
                           "set bag_topic to one of its sensor_msgs/Image or CompressedImage topics")
        self.topic = topics[0]
        self.count = sum(c.msgcount for c in images)
        self.truth = {}
        for c in self.reader.connections:
            if c.topic == self.topic.rstrip("/") + "/ground_truth" and c.msgtype == "std_msgs/msg/String":
                for _, _, raw in self.reader.messages(connections=[c]):
                    g = json.loads(self.reader.deserialize(raw, c.msgtype).data)
                    st = g.pop("header", {}).get("stamp", {})
                    self.truth[(st.get("sec"), st.get("nanosec"))] = g
        self.images = images
        self.restart()

    def restart(self):
        self.it = self.reader.messages(connections=self.images)
        self.i = 0

    def next(self):
        from rosbags.image import message_to_cvimage

        for conn, _, raw in self.it:
            msg = self.reader.deserialize(raw, conn.msgtype)
            try:
                img = message_to_cvimage(msg, "rgb8")  # any encoding / compression -> RGB (rosbags-image)
            except Exception as e:  # noqa: BLE001 - a frame it cannot convert: say which
                raise SltError(f"bag {self.path} frame {self.i} ({getattr(msg, 'encoding', getattr(msg, 'format', '?'))}): "
                               f"{type(e).__name__}: {e}", "replay a topic rosbags-image can convert") from None
            st = msg.header.stamp
            truth = {**self.truth.get((st.sec, st.nanosec), {}), "bag_index": self.i,
                     "bag_stamp": {"sec": st.sec, "nanosec": st.nanosec}}
            self.i += 1
            return np.ascontiguousarray(img), truth
        return None

    def close(self):
        self.reader.close()


class BagWriter:
    """Thread-safe rosbag2 writer for serialized messages. `path` must not exist; the bag is written to a
    temporary folder beside it and renamed to `path` by close()."""

    def __init__(self, path: str, storage: str = "mcap"):
        if storage not in STORAGES:
            raise SltError(f"unknown bag storage {storage!r}", f"use one of {', '.join(STORAGES)}")
        _, Writer, StoragePlugin, self.typestore = _rosbags()
        self.path = Path(path)
        if self.path.exists():
            raise SltError(f"bag {path} exists", "pick a new path (a bag is never overwritten)")
        self.tmp_root = self.path.parent / f".{self.path.name}.recording"
        shutil.rmtree(self.tmp_root, ignore_errors=True)
        self.tmp_root.mkdir(parents=True)
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self.writer = Writer(self.tmp_root / self.path.name, version=9, storage_plugin=plugin)
        self.writer.open()
        self.lock = threading.Lock()
        self.connections = {}
        self.counts = {}

    def add_topic(self, topic: str, msgtype: str):
        """msgtype as rclpy names it (sensor_msgs/msg/Image); it must be a type the typestore knows."""
        if msgtype not in self.typestore.fielddefs:
            raise SltError(f"cannot record {topic}: type {msgtype} is unknown to rosbags' ROS 2 typestore",
                           "record standard message types")
        with self.lock:
            self.connections[topic] = self.writer.add_connection(topic, msgtype, typestore=self.typestore)
            self.counts[topic] = 0

    def write(self, topic: str, stamp_ns: int, data: bytes):
        with self.lock:
            if self.writer is None:
                return
            self.writer.write(self.connections[topic], stamp_ns, data)
            self.counts[topic] += 1

    def close(self) -> Path:
        with self.lock:
            if self.writer is None:
                return self.path
            self.writer.close()
            self.writer = None
        os.replace(self.tmp_root / self.path.name, self.path)
        shutil.rmtree(self.tmp_root, ignore_errors=True)
        return self.path
