"""Channel compaction for the ONNX lowering (`--opt compact=channels`, the default): output channels that provably
never spike are removed from the graph, with their neuron state and the next layer's input columns, so onnxruntime
runs a smaller Conv/MatMul and a smaller neuron update. Bit-identical by construction (docs/targets/onnx.md).

When is a channel provably silent (docs/ir.md arithmetic)? Its synapse computes `op(x, W_c) * scale_c + bias_c`;
with every weight of channel c zero, op(x, 0) = 0 exactly for any finite input, so the current is bias_c at every
step and every sample. The LIF then runs `v = beta * v + bias_c` from v = 0 (first step v = bias_c): with
bias_c <= 0, beta >= 0 and threshold > 0, v <= 0 forever and `v > threshold` never holds, so it never spikes and
never resets. A channel with zero weights but bias_c > 0 may spike (a fixed pattern): it is kept (not compacted).
The silent channel's spikes are 0, so whatever reads them (a Conv's input channel, an Affine's input columns
through a Flatten) multiplies zeros: dropping those input columns removes only exact zeros from integer sums
(binary layers) and `+ 0.0` terms from float sums.

Applied per LIF where the pattern is a plain chain: a Conv2d/Affine feeding only this LIF, the LIF feeding only
synaptic layers (directly or through one Flatten) whose only input it is. Residual sums, tokens, attention and the
output layer are left alone. At least one channel is kept per layer (no zero-sized tensors).

The spike rasters keep their full shape: with `--opt spikes=all` the compact spikes are scattered back in the graph
by Pad (one zero channel) + Gather. Without it, the tensors named in slt.spike_tensors (what `verify` records) are
the compact ones and metadata slt.spike_expand says which channels they hold; the runner scatters them back
(`expand`). Scatter nodes in the graph would cost time in every call: onnxruntime keeps nodes nothing reads
(measured: the optimized session still ran all 8 Pad + 8 Gather).
"""
from __future__ import annotations

import nir
import numpy as np

from ...ir import meta as K
from ...ir.graph import nmeta, preds, succs

SYNAPTIC = (nir.Conv2d, nir.Affine, nir.Linear)
COMPACT = ("channels", "none")


def _bias(node) -> np.ndarray:
    w = np.asarray(node.weight)
    b = getattr(node, "bias", None)
    return np.asarray(b if b is not None else np.zeros(w.shape[0]), np.float32)


def silent_channels(syn, lif) -> np.ndarray:
    """Bool [out]: channels of synapse `syn` whose LIF neurons provably never spike (module docstring)."""
    w = np.asarray(syn.weight, np.float32)
    zero = ~np.any(w.reshape(w.shape[0], -1) != 0, axis=1)
    beta, thr = nmeta(lif, K.BETA), nmeta(lif, K.THRESHOLD)
    if beta is None or thr is None or not float(thr) > 0 or not float(beta) >= 0:
        return np.zeros(w.shape[0], bool)
    return zero & (_bias(syn) <= 0)


def no_plan() -> dict:
    return {"out": {}, "in": {}, "lif": {}, "shape": {}, "layers": {}}


def plan(g: nir.NIRGraph, shapes: dict) -> dict:
    """-> {"out": {synapse: kept output channel indices}, "in": {synapse: kept input columns/channels},
    "lif": {lif: (kept indices, total)}, "shape": {node: compact per-sample shape}, "layers": {layer: {...}}}."""
    p = no_plan()
    for n, node in g.nodes.items():
        if not isinstance(node, nir.LIF):
            continue
        src = preds(g, n)
        if len(src) != 1 or not isinstance(g.nodes[src[0]], SYNAPTIC) or succs(g, src[0]) != [n]:
            continue
        syn = src[0]
        shp = list(shapes[n])
        if isinstance(g.nodes[syn], nir.Conv2d) != (len(shp) == 3) or len(shp) not in (1, 3):
            continue
        consumers, ok = [], True
        for d in succs(g, n):
            dn = g.nodes[d]
            if isinstance(dn, SYNAPTIC) and preds(g, d) == [n] and not (isinstance(dn, nir.Affine) and len(shp) != 1):
                consumers.append((d, None))
            elif isinstance(dn, nir.Flatten) and preds(g, d) == [n] and succs(g, d) and all(
                    isinstance(g.nodes[e], (nir.Affine, nir.Linear)) and preds(g, e) == [d] for e in succs(g, d)):
                consumers += [(e, d) for e in succs(g, d)]
            else:
                ok = False
        if not ok or not consumers:
            continue
        silent = silent_channels(g.nodes[syn], node)
        if not silent.any():
            continue
        keep = np.flatnonzero(~silent)
        if len(keep) == 0:
            keep = np.array([0])
        c = len(silent)
        per = int(np.prod(shp[1:])) if len(shp) == 3 else 1
        p["out"][syn] = keep
        p["lif"][n] = (keep, c)
        p["shape"][syn] = p["shape"][n] = [len(keep), *shp[1:]]
        for d, flat in consumers:
            if isinstance(g.nodes[d], nir.Conv2d) or flat is None:
                cols = keep
            else:
                cols = (keep[:, None] * per + np.arange(per)[None, :]).ravel()
                p["shape"][flat] = [len(cols)]
            p["in"][d] = cols
        p["layers"][nmeta(node, K.LAYER, n)] = {"kept": int(len(keep)), "total": int(c),
                                                 "synapse": nmeta(g.nodes[syn], K.LAYER, syn)}
    return p


def slice_weights(n: str, w: np.ndarray, bias: np.ndarray, p: dict):
    """The synapse's weight and bias with removed output channels and removed input columns taken out."""
    if n in p["out"]:
        w, bias = w[p["out"][n]], bias[p["out"][n]]
    if n in p["in"]:
        w = np.take(w, p["in"][n], axis=1)
    return np.ascontiguousarray(w), np.ascontiguousarray(bias)


def expand_spikes(b, s: str, keep: np.ndarray, total: int, ndim: int, name: str) -> str:
    """Full-width spikes [B, total, ...] from the compact [B, len(keep), ...]: Pad one zero channel at the end,
    then Gather every removed channel from it (an exact copy of 0.0/1.0 values)."""
    pads = [0] * (2 * (ndim + 1))
    pads[ndim + 1 + 1] = 1  # end of axis 1
    padded = b.op("Pad", [s, b.const(np.array(pads, np.int64))], f"{name}.pad")
    idx = np.full(total, len(keep), np.int64)
    idx[keep] = np.arange(len(keep))
    return b.op("Gather", [padded, b.const(idx)], name, axis=1)


def expand(a: np.ndarray, kept: list, total: int, axis: int) -> np.ndarray:
    """Numpy twin of expand_spikes: zeros everywhere but the kept channels (a copy of exact 0.0/1.0 values)."""
    shape = list(a.shape)
    shape[axis] = int(total)
    out = np.zeros(shape, a.dtype)
    out[(slice(None),) * axis + (np.asarray(kept, np.int64),)] = a
    return out
