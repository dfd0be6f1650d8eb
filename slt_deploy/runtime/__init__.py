"""Running artifacts: `load_runner(path)` picks the runner by what `path` is: a checkpoint folder (the PyTorch
reference, torch_runner.py) or an artifact of a registered target (its Backend.runner, found through the registry
in backends/__init__.py). Each target's own runners live in its package, backends/<target>/; the Runner interface
in backends/base.py. image.py: camera-frame preprocessing shared by every runner's callers (the ROS 2 node)."""
from .api import Runner, load_runner

__all__ = ["Runner", "load_runner"]
