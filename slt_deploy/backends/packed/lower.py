"""Lowering of target `packed`: an slt NIR graph (docs/ir.md) -> PackedModel (format.py), and every reason a graph
cannot be packed."""
from __future__ import annotations

import json

import nir
import numpy as np

from ...errors import SltError
from ...ir import meta as K
from ...ir.graph import conv_attrs, gmeta, labels, nmeta, op_of, preds, topo_order
from ...passes.check_shapes import shapes_of
from .format import MAX_INPUTS, Node, PackedModel


def from_graph(graph) -> PackedModel:
    shapes = shapes_of(graph)
    order = topo_order(graph)
    out_name = [n for n in order if isinstance(graph.nodes[n], nir.Output)]
    if len(out_name) != 1:
        raise SltError("packed: the graph needs exactly one Output node")
    order = [n for n in order if n != out_name[0]] + out_name  # Output last (it depends on nothing after it)
    idx = {n: i for i, n in enumerate(order)}
    nodes = []
    for n in order:
        node = graph.nodes[n]
        op = op_of(node)
        p = preds(graph, n)
        nm = nmeta(node, K.LAYER, n)
        sh = tuple(int(s) for s in shapes[n])
        if op == "Input":
            nd = Node("input", [], sh, n)
        elif op == "Output":
            nd = Node("output", [idx[s] for s in p], sh, n)
        elif op in ("Conv2d", "Affine", "Linear"):
            wt = np.asarray(node.weight, np.float32)
            bias = np.asarray(getattr(node, "bias", None) if getattr(node, "bias", None) is not None
                              else np.zeros(wt.shape[0]), np.float32)
            nd = Node("conv" if op == "Conv2d" else "affine", [idx[s] for s in p], sh, nm,
                      binary=bool(nmeta(node, K.BINARY, 0)), weight=wt, bias=bias)
            if op == "Conv2d":
                st, pd = conv_attrs(node)
                nd.k, nd.stride, nd.pad = int(wt.shape[2]), st[0], pd[0]
            elif len(sh) == 2:
                nd.tokens = sh[0]
        elif op == "LIF":
            nd = Node("lif", [idx[s] for s in p], sh, nm, beta=float(nmeta(node, K.BETA)),
                      threshold=float(nmeta(node, K.THRESHOLD)), reset=nmeta(node, K.RESET, "zero"))
        elif op == "Flatten":
            nd = Node("flatten", [idx[s] for s in p], sh, nm)
        elif op in ("add", "tokens", "token_sum"):
            nd = Node(op, [idx[s] for s in p], sh, nm)
        elif op == "patch_select":
            nd = Node(op, [idx[s] for s in p], sh, nm, index=np.asarray(nmeta(node, K.PATCH_INDEX), np.int64))
        elif op == "attention":
            q = json.loads(nmeta(node, K.QKV))
            nd = Node(op, [idx[s] for s in q], sh, nm, heads=int(nmeta(node, K.HEADS)),
                      attn_scale=float(nmeta(node, K.ATTN_SCALE)))
        else:
            raise SltError(f"packed: node {n} ({op}) has no packed form")
        nodes.append(nd)
    return PackedModel(nodes=nodes, T=int(gmeta(graph, K.T)), dt=float(gmeta(graph, K.DT, 1e-4)),
                       input_max=float(gmeta(graph, K.INPUT_MAX, 1.0)), encoding=gmeta(graph, K.ENCODING, "direct"),
                       name=str(gmeta(graph, K.NAME, "")), labels=labels(graph))


def check_graph(graph) -> list[str]:
    """Every reason the packed format cannot hold this graph ([] = ok)."""
    ok_ops = {"Input", "Output", "Conv2d", "Affine", "Linear", "LIF", "Flatten", "add", "tokens", "patch_select",
              "attention", "token_sum"}
    out = []
    for n, node in graph.nodes.items():
        op = op_of(node)
        if op not in ok_ops:
            out.append(f"{n}: {op} has no packed form (supported: {', '.join(sorted(ok_ops))})")
            continue
        if op == "LIF" and nmeta(node, K.BETA) is None:
            out.append(f"{n}: LIF without slt.beta/slt.threshold metadata (not made by slt-deploy's frontend)")
        if op == "Conv2d":
            try:
                st, pd = conv_attrs(node)
            except ValueError:  # string padding
                st, pd = [0, 1], [0, 1]
            w = np.asarray(node.weight)
            if (len(set(st)) != 1 or len(set(pd)) != 1 or w.shape[2] != w.shape[3] or int(node.groups) != 1
                    or any(int(d) != 1 for d in np.atleast_1d(node.dilation))):
                out.append(f"{n}: only square kernels, equal stride/padding, dilation 1, groups 1")
            elif w.shape[2] > 255 or st[0] > 255 or pd[0] >= w.shape[2]:
                out.append(f"{n}: kernel/stride must be <= 255 and padding < kernel")
        if len(preds(graph, n)) > MAX_INPUTS:
            out.append(f"{n}: {len(preds(graph, n))} inputs (at most {MAX_INPUTS})")
        if isinstance(node, nir.IF):
            out.append(f"{n}: nir.IF is not produced by slt-deploy; use LIF with beta = 1")
    return out
