"""Target `nir`: the NIR graph itself as an HDF5 .nir file (nir.write), run by our reference interpreter."""
from __future__ import annotations

import os

import h5py
import nir

from ..checkpoint import atomic_path
from ..errors import SltError
from ..ir import meta as K
from ..ir.graph import gmeta, labels
from ..ir.interpreter import Interpreter
from ..runtime.api import Runner
from .base import Backend


def read_nir(path: str) -> nir.NIRGraph:
    if not os.path.exists(path):
        raise SltError(f"{path} does not exist", "pass a .nir file written by 'slt-deploy export --target nir'")
    try:
        return nir.read(path, type_check=False)
    except Exception as e:  # h5py/nir raise many types for corrupt files; all mean the same to a user
        raise SltError(f"{path} is not a readable NIR file ({type(e).__name__}: {str(e).splitlines()[0][:120]})",
                       "re-export it, or check it was written by an NIR-compatible tool")


def graph_meta(g) -> dict:
    return {"input_shape": [int(v) for v in gmeta(g, K.INPUT_SHAPE, [])], "input_max": gmeta(g, K.INPUT_MAX, 1.0),
            "T": int(gmeta(g, K.T, 1)), "encoding": gmeta(g, K.ENCODING, "direct"), "labels": labels(g),
            "dt": gmeta(g, K.DT, 1e-4), "name": gmeta(g, K.NAME, "")}


class NirRunner(Runner):
    def __init__(self, path: str):
        self.graph = read_nir(path)
        self.interp = Interpreter(self.graph)
        self.meta = graph_meta(self.graph)

    def run(self, seq, record=False):
        return self.interp.run(seq, record=record)


def write(graph, path, **_):
    tmp = atomic_path(path)
    try:
        nir.write(tmp, graph)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def check(graph) -> list[str]:
    return []  # every graph our frontend makes is writable; slt-only nodes are reported by inspect


def sniff(path: str) -> bool:
    if not os.path.isfile(path):
        return False
    if path.endswith(".nir"):
        return True
    try:
        with h5py.File(path, "r") as f:
            return "node" in f and "version" in f
    except Exception:
        return False


BACKEND = Backend(name="nir", description="NIR graph file (HDF5), runs in slt-deploy's reference interpreter",
                  suffix=".nir", passes=[], check=check, write=write, runner=NirRunner,
                  tolerance={"exact": True}, sniff=sniff,
                  runtimes={"interpreter": {}})
