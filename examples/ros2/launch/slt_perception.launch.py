"""Camera source + perception node for a full ROS 2 install (after `colcon build` of examples/ros2):

    ros2 launch slt_ros2 slt_perception.launch.py model:=/path/to/ckpt_or_artifact backend:=onnx source:=v4l2:0

slt_deploy itself must be importable by the nodes (pip install -e /path/to/slt-deploy, or PYTHONPATH)."""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

ARGS = {
    "model": ("", "checkpoint folder (backend torch) or exported artifact (.onnx, packed)"),
    "backend": ("auto", "auto, torch, onnx or packed"),
    "source": ("fmnist", "fmnist, digits, a video file, an image folder or v4l2:N"),
    "rate": ("30.0", "camera frames per second"),
    "width": ("640", "camera frame width"),
    "height": ("480", "camera frame height"),
    "encoding": ("rgb8", "camera encoding: rgb8, bgr8 or mono8"),
    "image_topic": ("image_raw", "sensor_msgs/Image topic"),
    "result_topic": ("slt/result", "result topic"),
    "qos": ("sensor_data", "sensor_data (best effort) or reliable"),
    "qos_depth": ("1", "keep last N frames"),
}


def generate_launch_description():
    cfg = {k: LaunchConfiguration(k) for k in ARGS}
    return LaunchDescription([
        *[DeclareLaunchArgument(k, default_value=d, description=h) for k, (d, h) in ARGS.items()],
        Node(package="slt_ros2", executable="perception_node", name="slt_perception", output="screen",
             parameters=[{"model": cfg["model"], "backend": cfg["backend"], "image_topic": cfg["image_topic"],
                          "result_topic": cfg["result_topic"], "qos": cfg["qos"], "qos_depth": cfg["qos_depth"]}]),
        Node(package="slt_ros2", executable="camera_node", name="slt_camera", output="screen",
             parameters=[{"source": cfg["source"], "rate": cfg["rate"], "width": cfg["width"],
                          "height": cfg["height"], "encoding": cfg["encoding"], "topic": cfg["image_topic"],
                          "qos": cfg["qos"], "qos_depth": cfg["qos_depth"], "loop": True}]),
    ])
