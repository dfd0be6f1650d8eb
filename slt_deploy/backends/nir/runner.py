"""Runner of target `nir`: the .nir file executed by slt-deploy's reference NIR interpreter (ir/interpreter.py)."""
from __future__ import annotations

from ...ir import meta as K
from ...ir.graph import gmeta, labels
from ...ir.interpreter import Interpreter
from ..base import Runner
from .fileio import read_nir


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
