"""The explicit target registry. A target is added by writing the package backends/<name>/ (its __init__.py builds
a Backend; lowering, file format, runners, native code and demo stage live beside it), naming it in TARGET_MODULES
and its artifact test in SNIFFERS (sniff.py). Registering a name twice is an error. Code outside backends/
(runtime.load_runner, export, demo, profile, verify) finds a target through these functions; runtime.load_runner and
the demo never import one. Targets load lazily, one by one, when named or recognised."""
from __future__ import annotations

import importlib

from ..errors import SltError
from . import sniff
from .base import Backend, Runner

__all__ = ["Backend", "Runner", "TARGETS", "TARGET_MODULES", "register", "get_target", "all_targets",
           "target_for_path", "sniff_path"]

TARGETS: dict[str, Backend] = {}
TARGET_MODULES = ["nir", "onnx", "packed", "loihi"]
# Lazy per target: a target's package is imported when it is named (get_target) or when its sniffer recognises a
# path (target_for_path); the sniffers (sniff.py) import no target, so inspecting a .slt never loads onnx or torch.
SNIFFERS = {"nir": sniff.nir_file, "onnx": sniff.onnx_file, "packed": sniff.packed_file,
            "loihi": sniff.loihi_folder}


def register(backend: Backend) -> Backend:
    if backend.name in TARGETS:
        raise ValueError(f"target {backend.name!r} is registered twice")
    TARGETS[backend.name] = backend
    return backend


def _load(name: str) -> Backend:
    if name not in TARGETS:
        import time

        t0 = time.perf_counter()
        m = importlib.import_module(f".{name}", __package__)
        if m.BACKEND.name not in TARGETS:
            register(m.BACKEND)
        _log().debug(f"target {name} loaded ({time.perf_counter() - t0:.2f} s)")
    return TARGETS[name]


def _log():
    from ..log import log

    return log


def _names() -> list[str]:
    return list(dict.fromkeys([*TARGET_MODULES, *TARGETS]))  # the shipped targets, then any registered at run time


def get_target(name: str) -> Backend:
    if name in TARGET_MODULES:
        return _load(name)
    if name not in TARGETS:
        raise SltError(f"unknown target {name!r}", f"registered targets: {', '.join(sorted(_names()))}")
    return TARGETS[name]


def all_targets() -> dict[str, Backend]:
    for name in TARGET_MODULES:
        _load(name)
    return dict(TARGETS)


def sniff_path(path: str) -> str | None:
    """The name of the target whose artifact `path` is, or None; imports no target package."""
    for name in _names():
        test = SNIFFERS.get(name) or (TARGETS[name].sniff if name in TARGETS else None)
        if test is not None and test(path):
            _log().debug(f"{path}: a {name} artifact")
            return name
    return None


def target_for_path(path: str) -> Backend:
    import os

    if not os.path.lexists(path):
        raise SltError(f"{path} does not exist", "pass a checkpoint folder or an artifact written by 'slt-deploy export'")
    name = sniff_path(path)
    if name is None:
        raise SltError(f"{path} is not an artifact of any registered target",
                       f"pass a checkpoint folder or a file exported with --target ({', '.join(sorted(_names()))})")
    return get_target(name)
