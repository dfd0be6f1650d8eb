"""How the ONNX target stores weight tensors. Every encoding decodes to exactly the float32 tensor the graph
computes with; the decoding is a handful of ONNX ops on constant initializers that onnxruntime constant-folds once
at session creation (graph optimization level >= basic), so inference never runs them.

Encodings (one per weight tensor, `choose()` takes the smallest the `sparse` option allows):
  dense   plain float32 initializer                                          4 B / weight
  coo     ONNX sparse tensor (COO, linear int64 indices: ONNX requires int64) held by a Constant node's
          sparse_value; onnxruntime densifies it at load                     12 B / kept weight
          (a graph-level sparse_initializer stores the same bytes, but onnx.checker's full_check rejects one
          that feeds Conv/MatMul: "unsupported type: sparse_tensor(float)"; Constant(sparse_value) is dense-typed)
  bitmap  packed 1-bit mask (uint8) + the kept values in row-major order;
          decoded by CumSum/Gather                                           1/8 B / weight + 4 B / kept weight
  bits    binary layers only: packed mask (omitted when nothing is pruned)
          + ONE packed sign bit per kept weight; decodes to ±1/0 float32     1/8 B / weight + 1/8 B / kept weight
Binary layers always compute with the integer sign tensor (±1/0); their per-channel scale and bias are separate
float32 initializers (docs/ir.md), so every encoding of a binary layer runs the same exact arithmetic.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

ENCODINGS = ("dense", "coo", "bitmap", "bits")
SPARSE_MODES = ("auto", "none", "coo", "bitmap")


def nbytes(kind: str, n: int, nnz: int, binary: bool) -> int:
    """Bytes the encoding stores for a tensor of n weights, nnz of them kept (payload only)."""
    if kind == "dense":
        return 4 * n
    if kind == "coo":
        return 12 * nnz
    if kind == "bitmap":
        return (n + 7) // 8 + 4 * nnz
    if kind == "bits":
        return ((n + 7) // 8 if nnz < n else 0) + (nnz + 7) // 8
    raise ValueError(kind)


def choose(w: np.ndarray, binary: bool, mode: str) -> str:
    """The encoding of one weight tensor under the export option sparse=mode."""
    if mode == "none":
        return "dense"
    n, nnz = w.size, int(np.count_nonzero(w))
    cands = {"auto": ["dense", "coo", "bitmap"] + (["bits"] if binary else []),
             "coo": ["dense", "coo"], "bitmap": ["dense", "bitmap"] + (["bits"] if binary else [])}[mode]
    return min(cands, key=lambda k: (nbytes(k, n, nnz, binary), cands.index(k)))


class WeightSink:
    """Collects initializers and decode nodes for one model. `add(name, w, binary, mode)` returns the name of a
    float32 tensor equal to `w` (float layers) or to sign(w) (binary layers), plus a record for metadata."""

    def __init__(self, builder):
        self.b = builder          # onnx_lower.GraphBuilder: .init(name, array), .sparse(proto), .op(...)
        self.records = []

    def add(self, name: str, w: np.ndarray, binary: bool, mode: str, transpose: bool = False) -> str:
        w = np.asarray(w, np.float32)
        tgt = np.sign(w).astype(np.float32) if binary else w
        if transpose:
            tgt = np.ascontiguousarray(tgt.T)
        kind = choose(tgt, binary, mode)
        nnz = int(np.count_nonzero(tgt))
        self.records.append({"tensor": name, "encoding": kind, "shape": list(tgt.shape), "kept": nnz,
                             "params": int(tgt.size), "payload_bytes": nbytes(kind, tgt.size, nnz, binary),
                             "dense_bytes": 4 * int(tgt.size), "binary": bool(binary)})
        return getattr(self, "_" + kind)(name, tgt, binary)

    # --- encoders ----------------------------------------------------------------------------------------------
    def _dense(self, name, w, binary):
        return self.b.init(name, w)

    def _coo(self, name, w, binary):
        flat = w.reshape(-1)
        idx = np.flatnonzero(flat).astype(np.int64)
        vals = numpy_helper.from_array(flat[idx].astype(np.float32), name + ".values")
        ind = numpy_helper.from_array(idx, name + ".indices")
        return self.b.op("Constant", [], name, sparse_value=helper.make_sparse_tensor(vals, ind, list(w.shape)))

    def _unpack(self, name, packed: np.ndarray, n: int) -> str:
        """uint8 packed bits (np.packbits order) -> uint8 0/1 tensor [n]."""
        p = self.b.init(name, packed)
        col = self.b.op("Unsqueeze", [p, self.b.const(np.array([1], np.int64))], name + ".col")
        shifted = self.b.op("BitShift", [col, self.b.const(np.arange(8, dtype=np.uint8)[None], "u8.shl")],
                            name + ".shl", direction="LEFT")
        bits = self.b.op("BitShift", [shifted, self.b.const(np.full((1, 8), 7, np.uint8), "u8.shr7")],
                         name + ".bit", direction="RIGHT")
        flat = self.b.op("Reshape", [bits, self.b.const(np.array([-1], np.int64))], name + ".flat")
        return self.b.op("Slice", [flat, self.b.const(np.array([0], np.int64)),
                                   self.b.const(np.array([n], np.int64))], name + ".unpacked")

    def _scatter(self, name, mask_bits: str, vals0: str, shape) -> str:
        """mask (uint8 0/1 [n]) and vals0 = [0, v_1..v_nnz] -> dense tensor of `shape` (kept values in order)."""
        m = self.b.op("Cast", [mask_bits], name + ".m64", to=TensorProto.INT64)
        rank = self.b.op("CumSum", [m, self.b.const(np.array(0, np.int64), "i64.zero")], name + ".rank")
        pos = self.b.op("Mul", [rank, m], name + ".pos")
        dense = self.b.op("Gather", [vals0, pos], name + ".scattered", axis=0)
        return self.b.op("Reshape", [dense, self.b.const(np.array(shape, np.int64))], name)

    def _bitmap(self, name, w, binary):
        flat = w.reshape(-1)
        keep = flat != 0
        mask = self._unpack(name + ".mask", np.packbits(keep), flat.size)
        vals0 = self.b.init(name + ".values", np.concatenate([[0.0], flat[keep]]).astype(np.float32))
        return self._scatter(name, mask, vals0, w.shape)

    def _bits(self, name, w, binary):
        flat = w.reshape(-1)
        keep = flat != 0
        nnz = int(keep.sum())
        sbits = self._unpack(name + ".sign", np.packbits(flat[keep] > 0), nnz)
        sf = self.b.op("Cast", [sbits], name + ".signf", to=TensorProto.FLOAT)
        two = self.b.const(np.array(2.0, np.float32), "f32.two")
        one = self.b.const(np.array(1.0, np.float32), "f32.one")
        pm = self.b.op("Sub", [self.b.op("Mul", [sf, two], name + ".sign2"), one], name + ".pm1")
        if nnz == flat.size:
            return self.b.op("Reshape", [pm, self.b.const(np.array(w.shape, np.int64))], name)
        vals0 = self.b.op("Concat", [self.b.const(np.zeros(1, np.float32), "f32.zero1"), pm], name + ".values",
                          axis=0)
        mask = self._unpack(name + ".mask", np.packbits(keep), flat.size)
        return self._scatter(name, mask, vals0, w.shape)
