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
  delta   kept positions as uint8 gaps (a gap > 255 is bridged by filler entries) + float32 values;
          decoded by CumSum/ScatterElements                                  5 B / kept weight
  delta-bits  uint8 gaps + one packed sign bit per kept weight (+ the
          int64 positions of fillers, zeroed after the scatter)             1 1/8 B / kept weight
Binary layers always compute with the integer sign tensor (±1/0); their per-channel scale and bias are separate
float32 initializers (docs/ir.md), so every encoding of a binary layer runs the same exact arithmetic.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

ENCODINGS = ("dense", "coo", "bitmap", "bits", "delta", "delta-bits")
SPARSE_MODES = ("auto", "none", "coo", "bitmap", "delta")


def gap_code(w: np.ndarray):
    """Kept positions (row-major) as uint8 gaps from the previous one (the first from -1). A gap > 255 is bridged by
    filler entries every 255 positions. -> (gaps uint8 [m], is_filler bool [m], positions int64 [m])."""
    idx = np.flatnonzero(np.asarray(w).reshape(-1))
    pos, filler, prev = [], [], -1
    for i in idx.tolist():
        while i - prev > 255:
            prev += 255
            pos.append(prev)
            filler.append(True)
        pos.append(i)
        filler.append(False)
        prev = i
    pos = np.asarray(pos, np.int64)
    gaps = np.diff(np.concatenate([[-1], pos])).astype(np.uint8)
    return gaps, np.asarray(filler, bool), pos


def n_fillers(w: np.ndarray) -> int:
    idx = np.flatnonzero(np.asarray(w).reshape(-1))
    g = np.diff(np.concatenate([[-1], idx]))
    return int(((g - 1) // 255).sum()) if idx.size else 0


def nbytes(kind: str, n: int, nnz: int, binary: bool, fill: int = 0) -> int:
    """Bytes the encoding stores for a tensor of n weights, nnz of them kept (payload only); None = not possible.
    fill = filler entries the gap code needs (n_fillers)."""
    if kind.startswith("delta") and nnz == 0:
        return None
    if kind == "delta":
        return 5 * (nnz + fill)
    if kind == "delta-bits":
        return (nnz + fill) + (nnz + fill + 7) // 8 + 8 * fill
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
    n, nnz, fill = w.size, int(np.count_nonzero(w)), n_fillers(w)
    cands = {"auto": ["dense", "coo", "bitmap", "delta"] + (["bits", "delta-bits"] if binary else []),
             "coo": ["dense", "coo"], "bitmap": ["dense", "bitmap"] + (["bits"] if binary else []),
             "delta": ["dense", "delta"] + (["delta-bits"] if binary else [])}[mode]
    cands = [k for k in cands if nbytes(k, n, nnz, binary, fill) is not None]
    return min(cands, key=lambda k: (nbytes(k, n, nnz, binary, fill), cands.index(k)))


class WeightSink:
    """Collects initializers and decode nodes for one model. `add(name, w, binary, mode)` returns the name of a
    float32 tensor equal to `w` (float layers) or to sign(w) (binary layers), plus a record for metadata."""

    def __init__(self, builder):
        self.b = builder          # lower.GraphBuilder: .init(name, array), .sparse(proto), .op(...)
        self.records = []

    def add(self, name: str, w: np.ndarray, binary: bool, mode: str, transpose: bool = False) -> str:
        w = np.asarray(w, np.float32)
        tgt = np.sign(w).astype(np.float32) if binary else w
        if transpose:
            tgt = np.ascontiguousarray(tgt.T)
        kind = choose(tgt, binary, mode)
        nnz = int(np.count_nonzero(tgt))
        self.records.append({"tensor": name, "encoding": kind, "shape": list(tgt.shape), "kept": nnz,
                             "params": int(tgt.size),
                             "payload_bytes": nbytes(kind, tgt.size, nnz, binary, n_fillers(tgt)),
                             "dense_bytes": 4 * int(tgt.size), "binary": bool(binary)})
        return getattr(self, "_" + kind.replace("-", "_"))(name, tgt, binary)

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

    def _signs(self, name, flat_kept: np.ndarray) -> str:
        """float32 ±1 tensor [nnz] from one packed bit per kept weight."""
        sbits = self._unpack(name + ".sign", np.packbits(flat_kept > 0), flat_kept.size)
        sf = self.b.op("Cast", [sbits], name + ".signf", to=TensorProto.FLOAT)
        two = self.b.const(np.array(2.0, np.float32), "f32.two")
        one = self.b.const(np.array(1.0, np.float32), "f32.one")
        return self.b.op("Sub", [self.b.op("Mul", [sf, two], name + ".sign2"), one], name + ".pm1")

    def _delta_scatter(self, name, w, gaps, vals: str) -> str:
        """Kept positions as uint8 gaps (CumSum -> linear index) + values -> dense tensor [n] (flat)."""
        g = self.b.init(name + ".gaps", gaps)
        g64 = self.b.op("Cast", [g], name + ".g64", to=TensorProto.INT64)
        pos1 = self.b.op("CumSum", [g64, self.b.const(np.array(0, np.int64), "i64.zero")], name + ".pos1")
        pos = self.b.op("Sub", [pos1, self.b.const(np.array(1, np.int64), "i64.one")], name + ".pos")
        zeros = self.b.op("ConstantOfShape", [self.b.const(np.array([w.size], np.int64))], name + ".zeros",
                          value=numpy_helper.from_array(np.zeros(1, np.float32)))
        return self.b.op("ScatterElements", [zeros, pos, vals], name + ".scattered", axis=0)

    def _reshape(self, name, flat: str, shape) -> str:
        return self.b.op("Reshape", [flat, self.b.const(np.array(shape, np.int64))], name)

    def _delta(self, name, w, binary):
        gaps, filler, pos = gap_code(w)
        vals = w.reshape(-1)[pos].astype(np.float32)  # fillers sit on pruned positions: value 0
        flat = self._delta_scatter(name, w, gaps, self.b.init(name + ".values", vals))
        return self._reshape(name, flat, w.shape)

    def _delta_bits(self, name, w, binary):
        gaps, filler, pos = gap_code(w)
        signs = w.reshape(-1)[pos]
        signs[filler] = 1.0  # a sign bit cannot say 0: fillers are zeroed again below
        flat = self._delta_scatter(name, w, gaps, self._signs(name, signs))
        if filler.any():
            fp = self.b.init(name + ".fillers", pos[filler])
            z = self.b.const(np.zeros(int(filler.sum()), np.float32))
            flat = self.b.op("ScatterElements", [flat, fp, z], name + ".unfilled", axis=0)
        return self._reshape(name, flat, w.shape)
