"""What a target is. A backend lowers an NIR graph (built by slt_deploy.ir.frontend, conventions in docs/ir.md)
through its explicit list of passes and writes an artifact; its runner executes that artifact."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Backend:
    name: str                      # what users type: --target NAME
    description: str
    suffix: str                    # artifact file suffix (".onnx", ".slt", ".nir") or "/" for a folder
    passes: list = field(default_factory=list)   # pass functions (graph) -> (graph, modified), run in order
    check: Callable = None         # (graph) -> list[str]: EVERY reason this target cannot take the graph ([] = ok)
    write: Callable = None         # (graph, path, **options) -> None: writes atomically
    runner: Callable = None        # (path, **kw) -> slt_deploy.runtime.Runner
    tolerance: dict = field(default_factory=lambda: {"exact": True})  # or {"exact": False, "why": ..., bounds}
    options: dict = field(default_factory=dict)  # export options: {name: (default, help)}
    sniff: Callable = None         # (path) -> bool: is this file/folder an artifact of this target?
    describe: Callable = None      # (path) -> {"layers": [row dicts], "meta": {...}, "notes": [str]} for inspect
    runtimes: dict = field(default_factory=dict)  # --runtime NAME -> runner kwargs; the first one is the default
    simulated: bool = False        # its runner SIMULATES other hardware on this host (Loihi): the host latency is
    #                                not the artifact's own, so `profile` prices no board energy with it

    def open_runner(self, path: str, runtime: str | None = None):
        """The runner for `path`, on the named runtime (`slt-deploy run/verify --runtime NAME`)."""
        from ..errors import SltError

        if runtime is None:
            return self.runner(path)
        if runtime not in self.runtimes:
            have = ", ".join(self.runtimes) or "only its default one"
            raise SltError(f"target {self.name} has no runtime {runtime!r}", f"use one of: {have}")
        return self.runner(path, **self.runtimes[runtime])
