"""Numpy reference interpreter of packed models (docs/packed-format.md, "Arithmetic").

Computes exactly what the C runtime computes, batched:
  * synapse: acc = sum over inputs in ascending input index (ci, y, x) / feature i of x_i * w_i, float32, starting
    from +0, one multiply and one add per term; binary layers use w_i = ±1 and then y = acc * scale_c + bias_c,
    float layers y = acc + bias_c. With integer inputs every binary partial sum is an exact integer, so any order
    gives the same bits; a fast path uses a matmul when that is provably the case.
  * LIF: v = beta * v + I; s = v > thr; reset zero: v = v * (1 - s); subtract: v = v - s * thr (section 4.4: the
    arithmetic, not a select, so an overflowed v = inf becomes NaN exactly as in the C runtime and the reference).
  * node input = sum of its inputs in record order; logits = output summed over T in time order."""
from __future__ import annotations

import numpy as np

from ...errors import SltError
from ..base import Runner
from .format import PackedModel, decode, spike_keys

F32 = np.float32
EXACT_LIMIT = float(1 << 24)


def _conv_patches(x, k, s, p, ho, wo):
    """x [B, C, H, W] -> zero-padded strided windows [B, C, k, k, Ho, Wo] (a view)."""
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))  # [B, C, H', W', k, k]
    win = win[:, :, : (ho - 1) * s + 1: s, : (wo - 1) * s + 1: s]
    return win.transpose(0, 1, 4, 5, 2, 3)


def _integral_and_small(x) -> bool:
    if not np.all(np.isfinite(x)) or not np.array_equal(x, np.floor(x)):
        return False
    return float(np.abs(x).reshape(x.shape[0], -1).sum(1).max(initial=0.0)) < EXACT_LIMIT


class _Syn:
    def __init__(self, nd):
        self.nd = nd
        w = np.asarray(nd.weight, F32)
        self.w = np.sign(w).astype(F32) if nd.binary else w
        self.bias = np.asarray(nd.bias, F32)
        self.scale = np.asarray(nd.scale, F32) if nd.binary else None

    def acc(self, x):
        nd, w = self.nd, self.w
        if nd.op == "conv":
            o, ho, wo = nd.shape
            win = _conv_patches(x, nd.k, nd.stride, nd.pad, ho, wo)
            if nd.binary and _integral_and_small(x):  # exact integers: summation order cannot matter
                return np.einsum("bckl...,ockl->bo...", win, w, optimize=True).astype(F32)
            acc = np.zeros((x.shape[0], o, ho, wo), F32)
            ci = w.shape[1]
            for c in range(ci):
                for ky in range(nd.k):
                    for kx in range(nd.k):
                        col = w[:, c, ky, kx]
                        if not col.any():
                            continue
                        acc = acc + win[:, c, ky, kx][:, None] * col[None, :, None, None]
            return acc
        if nd.binary and _integral_and_small(x):
            return (x.astype(np.float64) @ w.T.astype(np.float64)).astype(F32)
        acc = np.zeros(x.shape[:-1] + (w.shape[0],), F32)
        for i in np.flatnonzero(np.any(w != 0, axis=0)):
            acc = acc + x[..., i, None] * w[:, i]
        return acc

    def __call__(self, x):
        a = self.acc(x)
        cs = (-1, 1, 1) if self.nd.op == "conv" else (-1,)
        if self.nd.binary:
            a = a * self.scale.reshape(cs)
        return a + self.bias.reshape(cs)


class PackedInterpreter:
    """run(seq [T, B, C, H, W]) -> {logits [B, classes], logits_steps [T, B, classes] (the output per step; logits =
    their sum in time order), spikes {layer: [T, B, ...]}}."""

    def __init__(self, model: PackedModel):
        self.m = model
        self.syn = {i: _Syn(nd) for i, nd in enumerate(model.nodes) if nd.op in ("conv", "affine")}
        self.keys = spike_keys(model)

    def run(self, seq, record: bool = False) -> dict:
        seq = np.asarray(seq, F32)
        nodes = self.m.nodes
        want = tuple(nodes[0].shape)
        if seq.ndim != 5 or tuple(seq.shape[2:]) != want:
            raise SltError(f"input sequence shape {list(seq.shape)} is not [T, B, {', '.join(map(str, want))}]")
        B = seq.shape[1]
        v = {}
        logits = None
        spikes, steps = {}, []
        for t in range(seq.shape[0]):
            outs = []
            for i, nd in enumerate(nodes):
                if nd.op == "input":
                    outs.append(seq[t])
                    continue
                if nd.op == "attention":
                    outs.append(self._attention(nd, [outs[j] for j in nd.inputs]))
                    continue
                x = outs[nd.inputs[0]]
                for j in nd.inputs[1:]:
                    x = x + outs[j]
                if i in self.syn:
                    y = self.syn[i](x)
                elif nd.op == "lif":
                    vv = x if i not in v else F32(nd.beta) * v[i] + x
                    s = (vv > F32(nd.threshold)).astype(F32)
                    if nd.reset == "zero":
                        with np.errstate(invalid="ignore"):  # inf * 0 = NaN is the contract, not a mistake
                            vv = (vv * (F32(1) - s)).astype(F32)
                    else:
                        vv = (vv - s * F32(nd.threshold)).astype(F32)
                    v[i] = vv
                    y = s
                    if record:
                        spikes.setdefault(self.keys[i], []).append(s)
                elif nd.op == "flatten":
                    y = x.reshape(B, -1)
                elif nd.op in ("add", "output"):
                    y = x
                elif nd.op == "tokens":
                    y = x.reshape(B, x.shape[1], -1).transpose(0, 2, 1)
                elif nd.op == "patch_select":
                    y = x[:, nd.index]
                elif nd.op == "token_sum":
                    y = x.sum(1, dtype=np.float64).astype(F32) if _integral_and_small(x) else _seq_sum(x)
                else:
                    raise AssertionError(nd.op)
                outs.append(np.ascontiguousarray(y, F32))
            out = outs[-1]
            logits = out.copy() if logits is None else logits + out
            steps.append(out.copy())
        res = {"logits": logits, "logits_steps": np.stack(steps)}
        if record:
            res["spikes"] = {k: np.stack(s) for k, s in spikes.items()}
        return res

    @staticmethod
    def _attention(nd, qkv):
        q, k, v = qkv
        b, n, d = q.shape
        h = nd.heads
        def sp(t):
            return t.reshape(b, n, h, d // h).transpose(0, 2, 1, 3).astype(np.float64)
        # q, k, v are spikes (0/1): every product and sum is an exact integer in float64 and in float32 (< 2^24)
        y = (sp(q) @ sp(k).transpose(0, 1, 3, 2)) @ sp(v)
        y = y.astype(F32) * F32(nd.attn_scale)
        return y.transpose(0, 2, 1, 3).reshape(b, n, d)


def _seq_sum(x):
    acc = np.zeros((x.shape[0], x.shape[2]), F32)
    for j in range(x.shape[1]):
        acc = acc + x[:, j]
    return acc


class NumpyPackedRunner(Runner):
    runtime = "numpy"

    def __init__(self, path: str | None = None, data: bytes | None = None):
        from .fileio import read_file, split_name

        self.model = split_name(decode(data)) if data is not None else read_file(path)
        self.interp = PackedInterpreter(self.model)
        self.meta = model_meta(self.model)

    def run(self, seq, record=False):
        return self.interp.run(seq, record=record)


def model_meta(m: PackedModel) -> dict:
    return {"input_shape": m.input_shape, "input_max": m.input_max, "T": m.T, "encoding": m.encoding,
            "labels": m.labels, "dt": m.dt, "name": m.name}
