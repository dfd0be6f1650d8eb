"""The one interface every runtime offers (used by `slt-deploy run`, verify, profile and the ROS 2 node).

    r = load_runner(path)
    r.meta      -> dict: input_shape [C,H,W], input_max, T, encoding, labels, dt, name
    r.predict(images)   images: float32 [B, C, H, W] in RAW units (0..input_max) -> logits float32 [B, classes]
    r.run(seq)          seq: float32 [T, B, C, H, W] already encoded -> dict(logits=[B, classes],
                        spikes={layer: [T, B, ...]} where the runtime can observe them)
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import SltError


class Runner:
    meta: dict

    def run(self, seq: np.ndarray) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    def encode(self, images: np.ndarray, seed: int = 0) -> np.ndarray:
        from ..data import encode
        import torch

        g = torch.Generator().manual_seed(seed)
        return encode(torch.as_tensor(images, dtype=torch.float32), int(self.meta["T"]), self.meta["encoding"],
                      float(self.meta["input_max"]), g).numpy()

    def check_images(self, images) -> np.ndarray:
        a = np.asarray(images)
        want = tuple(self.meta["input_shape"])
        if a.dtype.kind not in "fiu":
            raise SltError(f"input dtype {a.dtype} is not numeric", "pass float32 or uint8 images")
        if a.ndim == len(want):
            a = a[None]
        if tuple(a.shape[1:]) != want:
            raise SltError(f"input shape {list(a.shape)} does not match the model's [B, {', '.join(map(str, want))}]",
                           "resize/convert the images to the shape in the artifact's metadata")
        return a.astype(np.float32, copy=False)

    def predict(self, images) -> np.ndarray:
        return self.run(self.encode(self.check_images(images)))["logits"]


def load_runner(path: str, runtime: str | None = None, **kw) -> Runner:
    """A runner for an artifact (its target found from the file) or a checkpoint folder (the PyTorch reference).
    `runtime`: one of the target's named runtimes (Backend.runtimes, e.g. packed: c|numpy, loihi: reference|lava)."""
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "model.json")):
        from .torch_runner import TorchRunner

        if runtime not in (None, "torch"):
            raise SltError(f"{path} is a checkpoint; it runs only on the PyTorch reference", "drop --runtime")
        return TorchRunner(path)
    from ..backends import target_for_path

    b = target_for_path(path)
    if runtime is not None:
        return b.open_runner(path, runtime)
    return b.runner(path, **kw)
