"""Small helpers over nir.NIRGraph used by passes, backends and runtimes."""
from __future__ import annotations

import json

import nir
import numpy as np

from . import meta as K


def topo_order(g: nir.NIRGraph) -> list[str]:
    """Node names in execution order (Kahn's algorithm, ties broken by node insertion order)."""
    indeg = {n: 0 for n in g.nodes}
    for _, d in g.edges:
        indeg[d] += 1
    order, ready = [], [n for n in g.nodes if indeg[n] == 0]
    succ = {n: [] for n in g.nodes}
    for s, d in g.edges:
        succ[s].append(d)
    while ready:
        n = ready.pop(0)
        order.append(n)
        for d in succ[n]:
            indeg[d] -= 1
            if indeg[d] == 0:
                ready.append(d)
    if len(order) != len(g.nodes):
        raise ValueError("graph has a cycle (recurrent edges are not supported)")
    return order


def preds(g: nir.NIRGraph, name: str) -> list[str]:
    """Predecessors of `name` in edge order (= the order their outputs are summed)."""
    return [s for s, d in g.edges if d == name]


def succs(g: nir.NIRGraph, name: str) -> list[str]:
    return [d for s, d in g.edges if s == name]


def gmeta(g: nir.NIRGraph, key: str, default=None):
    v = (g.metadata or {}).get(key, default)
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v.item()
    return v


def nmeta(node, key: str, default=None):
    v = (getattr(node, "metadata", None) or {}).get(key, default)
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v.item()
    return v


def op_of(node) -> str:
    """What a node computes: the NIR type name, or its slt.op for slt-only Scale nodes."""
    return nmeta(node, K.OP) or type(node).__name__


def labels(g) -> list:
    v = gmeta(g, K.LABELS)
    return json.loads(v) if v else []


def is_binary(node) -> bool:
    return bool(nmeta(node, K.BINARY, 0))


def binary_parts(weight: np.ndarray):
    """(sign int8 array, scale per out channel float32) of a binary layer's effective weight (docs/ir.md)."""
    w = np.asarray(weight, np.float32)
    sign = np.sign(w).astype(np.int8)
    scale = np.abs(w).reshape(w.shape[0], -1).max(axis=1).astype(np.float32)
    return sign, scale


def slt_only_nodes(g) -> list[str]:
    """Nodes that other NIR tools cannot execute (slt.op other than 'add')."""
    return [n for n, node in g.nodes.items() if nmeta(node, K.OP) not in (None, "add")]


def synaptic_nodes(g) -> list[str]:
    return [n for n, node in g.nodes.items() if isinstance(node, (nir.Conv2d, nir.Affine, nir.Linear))]


def conv_attrs(node) -> tuple[list, list]:
    """A Conv2d node's stride and padding as [sy, sx], [py, px]; ValueError for string padding ('same')."""
    st = [int(v) for v in np.atleast_1d(node.stride)] if node.stride is not None else [1, 1]
    pad = node.padding
    if isinstance(pad, str):
        raise ValueError(f"string padding {pad!r}")
    pd = [int(v) for v in np.atleast_1d(pad)]
    st = st * 2 if len(st) == 1 else st
    pd = pd * 2 if len(pd) == 1 else pd
    return st, pd


def conv_out_hw(in_hw, kernel_hw, stride, padding) -> list[int]:
    """THE conv output size: [Ho, Wo] of an [H, W] input (floor((H + 2p - k) / s) + 1 per axis; dilation 1)."""
    return [(int(in_hw[i]) + 2 * int(padding[i]) - int(kernel_hw[i])) // int(stride[i]) + 1 for i in range(2)]


def conv_out_shape(node, in_shape) -> list[int]:
    """A Conv2d node's output [O, Ho, Wo] for an input [C, H, W] (stride/padding through conv_attrs)."""
    st, pd = conv_attrs(node)
    w = np.shape(node.weight)
    return [int(w[0]), *conv_out_hw(in_shape[1:], w[2:], st, pd)]
