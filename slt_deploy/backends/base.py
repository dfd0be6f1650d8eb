"""What a target is. A backend lowers an NIR graph (built by slt_deploy.ir.frontend, conventions in docs/ir.md)
through its explicit list of passes and writes an artifact; its runner executes that artifact.

Both interfaces live here, below every target package (backends/<target>/), so a target imports nothing but this
file and the layers under it (ir, passes, checkpoint); runtime/ and the demo reach targets only through the registry.

The one interface every runner offers (used by `slt-deploy run`, verify, profile and the ROS 2 node):

    r = slt_deploy.runtime.load_runner(path)
    r.meta      -> dict: input_shape [C,H,W], input_max, T, encoding, labels, dt, name
    r.predict(images)   images: float32 [B, C, H, W] in RAW units (0..input_max) -> logits float32 [B, classes]
    r.run(seq)          seq: float32 [T, B, C, H, W] already encoded -> dict(logits=[B, classes],
                        spikes={layer: [T, B, ...]} where the runtime can observe them)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import SltError


class Runner:
    meta: dict

    def run(self, seq: np.ndarray) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    def encode(self, images: np.ndarray, seed: int = 0) -> np.ndarray:
        import torch

        from ..data import encode

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


@dataclass
class Backend:
    name: str                      # what users type: --target NAME
    description: str
    suffix: str                    # artifact file suffix (".onnx", ".slt", ".nir") or "/" for a folder
    passes: list = field(default_factory=list)   # pass functions (graph) -> (graph, modified), run in order
    check: Callable = None         # (graph) -> list[str]: EVERY reason this target cannot take the graph ([] = ok)
    write: Callable = None         # (graph, path, **options) -> None: writes atomically
    runner: Callable = None        # (path, **kw) -> Runner (above); runtime.load_runner calls it
    tolerance: dict = field(default_factory=lambda: {"exact": True})  # or {"exact": False, "why": ..., bounds}
    options: dict = field(default_factory=dict)  # export options: {name: (default, help)}
    sniff: Callable = None         # (path) -> bool: is this file/folder an artifact of this target?
    describe: Callable = None      # (path) -> {"layers": [row dicts], "meta": {...}, "notes": [str]} for inspect
    runtimes: dict = field(default_factory=dict)  # --runtime NAME -> runner kwargs; the first one is the default
    simulated: bool = False        # its runner SIMULATES other hardware on this host (Loihi): the host latency is
    #                                not the artifact's own, so `profile` prices no board energy with it
    demo: Callable = None          # (ctx) -> None: the target's own `slt-deploy demo` stage (named after the
    #                                target, run after "export" in registry order; ctx as in slt_deploy/demo.py)

    def open_runner(self, path: str, runtime: str | None = None):
        """The runner for `path`, on the named runtime (`slt-deploy run/verify --runtime NAME`)."""
        if runtime is None:
            return self.runner(path)
        if runtime not in self.runtimes:
            have = ", ".join(self.runtimes) or "only its default one"
            raise SltError(f"target {self.name} has no runtime {runtime!r}", f"use one of: {have}")
        return self.runner(path, **self.runtimes[runtime])
