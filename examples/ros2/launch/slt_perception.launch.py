"""Camera source + perception node for a full ROS 2 install (after `colcon build` of examples/ros2):

    ros2 launch slt_ros2 slt_perception.launch.py model:=/path/to/ckpt_or_artifact backend:=onnx camera_source:=v4l2:0
    ros2 launch slt_ros2 slt_perception.launch.py params_file:=my.yaml use_camera:=false   # a real camera driver

Every parameter of both nodes is a launch argument (the perception node's under its own name, the camera's as
camera_<name>); values come from params_file (default: the shipped config/slt_perception.yaml), and an argument
given on the command line overrides its yaml value. An argument left empty keeps the yaml's value.
camera_topic follows image_topic unless set. slt_deploy itself must be importable by the nodes (pip install -e).

The argument table and the yaml/argument merge are plain functions (declared_arguments, node_parameters): the
tests check them against the parameters the real nodes declare, without a launch install."""
import os
import sys

try:
    from slt_ros2.params import CAMERA, PERCEPTION
except ImportError:  # run from the source tree (examples/ros2/launch/...) without colcon
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from slt_ros2.params import CAMERA, PERCEPTION

CAMERA_PREFIX = "camera_"
HERE = os.path.dirname(os.path.abspath(__file__))
PARAMS_FILE = os.path.join(os.path.dirname(HERE), "config", "slt_perception.yaml")  # share/slt_ros2/config/ too


def declared_arguments():
    """-> [(name, default, description)] of every launch argument."""
    args = [("params_file", PARAMS_FILE, "parameter yaml of both nodes (slt_perception, slt_camera)"),
            ("use_camera", "true", "start the camera source node (false: a camera driver publishes image_topic)")]
    for prefix, specs, node in (("", PERCEPTION, "slt_perception"), (CAMERA_PREFIX, CAMERA, "slt_camera")):
        for s in specs:
            c = s.constraints()
            args.append((prefix + s.name, "", f"{node}: {s.description}" + (f" [{c}]" if c else "")
                         + (" (read-only)" if s.read_only else " (live)") + " -- empty: params_file value"))
    return args


def _convert(spec, text: str):
    t = spec.type
    try:
        if t is bool:
            return {"true": True, "false": False, "1": True, "0": False}[text.strip().lower()]
        return t(text)
    except (KeyError, ValueError):
        raise ValueError(f"launch argument {spec.name}:={text!r} is not a {t.__name__}") from None


def node_parameters(values: dict):
    """Launch argument values (strings; empty = not given) -> (perception overrides, camera overrides), typed as
    the nodes declare them. Bad values raise ValueError naming the argument."""
    out = []
    for prefix, specs in (("", PERCEPTION), (CAMERA_PREFIX, CAMERA)):
        d = {}
        for s in specs:
            text = values.get(prefix + s.name, "")
            if text != "":
                v = _convert(s, text)
                why = s.check(v)
                if why:
                    raise ValueError(f"launch argument {prefix}{why}")
                d[s.name] = v
        out.append(d)
    per, cam = out
    if "topic" not in cam and "image_topic" in per:
        cam["topic"] = per["image_topic"]
    for k in ("qos", "qos_depth"):  # one QoS for both ends unless the camera's is given
        if k not in cam and k in per:
            cam[k] = per[k]
    return per, cam


def generate_launch_description():
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    def nodes(context):
        values = {name: LaunchConfiguration(name).perform(context) for name, _, _ in declared_arguments()}
        per, cam = node_parameters(values)
        actions = [Node(package="slt_ros2", executable="perception_node", name="slt_perception", output="screen",
                        parameters=[values["params_file"], per])]
        if values["use_camera"].strip().lower() in ("true", "1"):
            actions.append(Node(package="slt_ros2", executable="camera_node", name="slt_camera", output="screen",
                                parameters=[values["params_file"], cam]))
        return actions

    return LaunchDescription([*[DeclareLaunchArgument(n, default_value=d, description=h)
                                for n, d, h in declared_arguments()],
                              OpaqueFunction(function=nodes)])
