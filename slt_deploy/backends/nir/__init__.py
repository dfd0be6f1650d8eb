"""Target `nir`: the NIR graph itself as an HDF5 .nir file (fileio.py: nir.write), run by our reference
interpreter (runner.py)."""
from __future__ import annotations

from ..base import Backend
from .fileio import read_nir, sniff, write

__all__ = ["BACKEND", "NirRunner", "read_nir"]


def make_runner(path, **kw):
    from .runner import NirRunner  # lazy: the interpreter imports torch; sniff/describe (inspect) must not (issue 14)

    return NirRunner(path, **kw)


def __getattr__(name):
    if name == "NirRunner":
        from .runner import NirRunner

        return NirRunner
    raise AttributeError(name)


def check(graph) -> list[str]:
    return []  # every graph our frontend makes is writable; slt-only nodes are reported by inspect


BACKEND = Backend(name="nir", description="NIR graph file (HDF5), runs in slt-deploy's reference interpreter",
                  suffix=".nir", passes=[], check=check, write=write, runner=make_runner,
                  tolerance={"exact": True}, sniff=sniff,
                  runtimes={"interpreter": {}})
