"""ament_python package for full ROS 2 installs (colcon build); with only the PyPI wheels use run_demo.py."""
from glob import glob

from setuptools import setup

setup(
    name="slt_ros2",
    version="0.1.0",
    packages=["slt_ros2"],
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/slt_ros2"]),
        ("share/slt_ros2", ["package.xml"]),
        ("share/slt_ros2/launch", glob("launch/*.launch.py")),
        ("share/slt_ros2/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    entry_points={"console_scripts": [
        "perception_node = slt_ros2.perception_node:main",
        "camera_node = slt_ros2.camera_node:main",
    ]},
)
