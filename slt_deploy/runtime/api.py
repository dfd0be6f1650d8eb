"""`load_runner(path)`: the runner for a checkpoint folder (the PyTorch reference, runtime/torch_runner.py) or for
an artifact of any registered target (found through the registry, backends/__init__.py). The Runner interface
itself is slt_deploy.backends.base.Runner."""
from __future__ import annotations

import os

from ..backends import Runner, target_for_path
from ..errors import SltError

__all__ = ["Runner", "load_runner"]


def load_runner(path: str, runtime: str | None = None, **kw) -> Runner:
    """A runner for an artifact (its target found from the file) or a checkpoint folder (the PyTorch reference).
    `runtime`: one of the target's named runtimes (Backend.runtimes, e.g. packed: c|numpy, loihi: reference|lava)."""
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "model.json")):
        from .torch_runner import TorchRunner

        if runtime not in (None, "torch"):
            raise SltError(f"{path} is a checkpoint; it runs only on the PyTorch reference", "drop --runtime")
        return TorchRunner(path)
    b = target_for_path(path)
    if runtime is not None:
        return b.open_runner(path, runtime)
    return b.runner(path, **kw)
