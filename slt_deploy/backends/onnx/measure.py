"""`--opt compute=measure`: each Affine layer's form chosen by timing it in onnxruntime at export.

The two standard-opset forms of an Affine layer (docs/targets/onnx.md "Real sparse compute"): the dense MatMul on
all input columns, and a Gather of the columns that have a kept weight followed by a smaller MatMul. `auto` picks
by a fixed threshold measured once on a fmnist-sized layer (<= 10 % kept columns); `measure` builds both forms with
THIS layer's weights, times them on this machine (onnxruntime CPU, 1 thread, random 0/1 inputs, in rotation,
median) at the batch the graph will run (B = 1 step-major, T x 1 layer-major) and keeps the faster one. The choice
depends on the machine and its load, so two exports may differ in form (never in results: both forms compute the
same products in the same order per output, a MatMul over the kept columns only skips exact zeros). Conv layers have
one standard-opset form worth having (measured: every gather form of a conv is 4-12x slower, docs/targets/onnx.md),
and com.microsoft.SparseToDenseMatMul cannot hold a weight in the file (onnxruntime densifies sparse initializers at
load), so neither is a candidate.
"""
from __future__ import annotations

import time

import numpy as np


def gather_is_faster(w: np.ndarray, cols: np.ndarray, rows: int, reps: int = 60) -> tuple[bool, float, float]:
    """w [out, in] with its kept columns `cols`: (gather faster?, dense ms, gather ms) at batch `rows`."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.log_severity_level = 1, 3
    din = w.shape[1]

    def session(gather: bool):
        wt = np.ascontiguousarray((w[:, cols] if gather else w).T, np.float32)
        inits = [numpy_helper.from_array(wt, "W")]
        nodes, x = [], "x"
        if gather:
            inits.append(numpy_helper.from_array(np.asarray(cols, np.int64), "cols"))
            nodes.append(helper.make_node("Gather", ["x", "cols"], ["xg"], axis=-1))
            x = "xg"
        nodes.append(helper.make_node("MatMul", [x, "W"], ["y"]))
        g = helper.make_graph(nodes, "affine", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, din])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])

    sessions = {"dense": session(False), "gather": session(True)}
    x = (np.random.default_rng(0).random((rows, din)) < 0.3).astype(np.float32)
    times = {k: [] for k in sessions}
    for s in sessions.values():
        s.run(None, {"x": x})
    for _ in range(reps):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, {"x": x})
            times[k].append(time.perf_counter() - t0)
    dense, gath = (1e3 * float(np.median(times[k])) for k in ("dense", "gather"))
    return gath < dense, dense, gath
