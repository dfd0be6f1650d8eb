"""Runtimes that execute artifacts. `load_runner(path)` picks one by what `path` is:
a checkpoint folder (PyTorch reference), or an artifact of a registered target (backends/__init__.py)."""
from .api import Runner, load_runner

__all__ = ["Runner", "load_runner"]
