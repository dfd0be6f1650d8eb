"""The explicit target registry. A target is added by writing the package backends/<name>/ (its __init__.py builds
a Backend; lowering, file format, runners, native code and demo stage live beside it) and naming it in
TARGET_MODULES. Registering a name twice is an error. Code outside backends/ (runtime.load_runner, export, demo,
profile, verify) finds a target through these functions; runtime.load_runner and the demo never import one."""
from __future__ import annotations

import importlib

from ..errors import SltError
from .base import Backend, Runner

__all__ = ["Backend", "Runner", "TARGETS", "TARGET_MODULES", "register", "get_target", "all_targets",
           "target_for_path"]

TARGETS: dict[str, Backend] = {}
TARGET_MODULES = ["nir", "onnx", "packed", "loihi"]


def register(backend: Backend) -> Backend:
    if backend.name in TARGETS:
        raise ValueError(f"target {backend.name!r} is registered twice")
    TARGETS[backend.name] = backend
    return backend


def _load_all():
    for mod in TARGET_MODULES:
        m = importlib.import_module(f".{mod}", __package__)
        if m.BACKEND.name not in TARGETS:
            register(m.BACKEND)


def get_target(name: str) -> Backend:
    _load_all()
    if name not in TARGETS:
        raise SltError(f"unknown target {name!r}", f"registered targets: {', '.join(sorted(TARGETS))}")
    return TARGETS[name]


def all_targets() -> dict[str, Backend]:
    _load_all()
    return dict(TARGETS)


def target_for_path(path: str) -> Backend:
    import os

    if not os.path.lexists(path):
        raise SltError(f"{path} does not exist", "pass a checkpoint folder or an artifact written by 'slt-deploy export'")
    _load_all()
    for b in TARGETS.values():
        if b.sniff is not None and b.sniff(path):
            return b
    raise SltError(f"{path} is not an artifact of any registered target",
                   f"pass a checkpoint folder or a file exported with --target ({', '.join(sorted(TARGETS))})")
