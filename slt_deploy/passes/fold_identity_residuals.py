"""Pass: fold identity residuals `LIF(syn(S) + S)` into one synapse `W + I`.
REQUIRES: an slt NIR graph (slt_deploy.ir.frontend), shape-checked.
ENSURES: every LIF fed by exactly `syn(S)` and `S` -- where syn is a stride-1, shape-preserving conv (odd kernel,
'same' padding, groups 1) or a square affine/linear whose only input is S and only consumer is that LIF (ConvPEP's
relative position embedding) -- is fed by ONE synapse with weight W + I instead: the same sum in real arithmetic
(float rounding may differ), no residual edge left for it. The folded node is marked float (binary weights plus
the identity are not binary) and records the source in `slt.loihi.identity_folded`.
Option `fold` ("on" | "off"): off leaves the graph unchanged. Used by targets that cannot add two inputs of a
neuron layer (Loihi/netx)."""
from __future__ import annotations

import nir
import numpy as np

from ..errors import SltError
from ..ir import meta as K
from ..ir.graph import conv_attrs

FOLDED = K.LOIHI_IDENTITY_FOLDED   # node metadata: the residual source this synapse absorbed


def _square_same_conv(node, w) -> bool:
    try:
        st, pd = conv_attrs(node)
    except ValueError:  # string padding
        return False
    kh, kw = w.shape[2:]
    return st == [1, 1] and kh % 2 == 1 and kw % 2 == 1 and pd == [kh // 2, kw // 2] and int(node.groups) == 1


def _with_identity(node):
    """The node's synapse plus the identity, or None when it is not square / shape-preserving."""
    if not isinstance(node, (nir.Conv2d, nir.Affine, nir.Linear)):
        return None
    w = np.array(node.weight, np.float32)
    if w.shape[0] != w.shape[1]:
        return None
    md = {**(node.metadata or {}), K.BINARY: 0}
    if isinstance(node, nir.Conv2d):
        if not _square_same_conv(node, w):
            return None
        kh, kw = w.shape[2:]
        idx = np.arange(w.shape[0])
        w[idx, idx, kh // 2, kw // 2] += 1.0
        return nir.Conv2d(input_shape=node.input_shape, weight=w, stride=node.stride, padding=node.padding,
                          dilation=node.dilation, groups=node.groups, bias=node.bias, metadata=md)
    bias = node.bias if isinstance(node, nir.Affine) else np.zeros(w.shape[0], np.float32)
    return nir.Affine(weight=w + np.eye(w.shape[0], dtype=np.float32), bias=bias, metadata=md)


def fold_identity_residuals(g, fold: str = "on"):
    """(graph, fold="on"|"off") -> (graph, modified)."""
    if fold not in ("on", "off"):
        raise SltError(f"option fold={fold!r} unknown", "use fold=on or fold=off")
    if fold == "off":
        return g, False
    nodes, edges = dict(g.nodes), list(g.edges)
    changed = False
    for m in list(nodes):
        if not isinstance(nodes[m], (nir.LIF, nir.IF)):
            continue
        p = [s for s, d in edges if d == m]
        if len(p) != 2:
            continue
        for c, s in ((p[0], p[1]), (p[1], p[0])):
            if [a for a, d in edges if d == c] != [s] or [d for a, d in edges if a == c] != [m]:
                continue
            new = _with_identity(nodes[c])
            if new is None:
                continue
            new.metadata[FOLDED] = s
            nodes[c] = new
            edges.remove((s, m))
            changed = True
            break
    if not changed:
        return g, False
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(g.metadata or {}), type_check=False), True
