"""Pass: shape inference and check over an slt NIR graph.
REQUIRES: a graph made by slt_deploy.ir.frontend (or NIR nodes with consistent shapes).
ENSURES: every node's output shape is computed (returned in graph.metadata['slt.shapes'] as JSON) and every
node's inputs agree in shape; raises SltError listing EVERY inconsistency. Does not change arithmetic."""
from __future__ import annotations

import json

import nir
import numpy as np

from ..errors import SltError
from ..ir import meta as K
from ..ir.graph import gmeta, nmeta, op_of, preds, topo_order


def _out_shape(node, x):
    op = op_of(node)
    if op in ("Input",):
        return [int(v) for v in node.input_type["input"]]
    if op == "Conv2d":
        k = node.weight.shape[2:]
        s, p = np.atleast_1d(node.stride), np.atleast_1d(node.padding)
        return [node.weight.shape[0]] + [(x[1 + i] + 2 * int(p[i % len(p)]) - k[i]) // int(s[i % len(s)]) + 1
                                         for i in range(2)]
    if op in ("Affine", "Linear"):
        if x[-1] != node.weight.shape[1]:
            raise ValueError(f"input features {x[-1]} != weight in-features {node.weight.shape[1]}")
        return x[:-1] + [node.weight.shape[0]]
    if op == "Flatten":
        return [int(np.prod(x))]
    if op == "tokens":
        return [x[1] * x[2], x[0]]
    if op == "patch_select":
        return [len(np.atleast_1d(nmeta(node, K.PATCH_INDEX))), x[1]]
    if op == "token_sum":
        return [x[1]]
    return x  # LIF, IF, add, attention, Scale, Output: shape preserving


def check_shapes(graph):
    shapes, problems = {}, []
    for n in topo_order(graph):
        node = graph.nodes[n]
        ins = [shapes[p] for p in preds(graph, n) if p in shapes]
        if ins and any(s != ins[0] for s in ins):
            problems.append(f"{n}: inputs have different shapes {ins}")
        try:
            shapes[n] = _out_shape(node, ins[0] if ins else None)
        except Exception as e:  # noqa: BLE001 - reported, not swallowed
            problems.append(f"{n} ({op_of(node)}): {e}")
            shapes[n] = ins[0] if ins else []
        if isinstance(node, (nir.LIF, nir.IF)) and list(np.shape(node.v_threshold)) not in ([], shapes[n]):
            problems.append(f"{n}: neuron parameter shape {list(np.shape(node.v_threshold))} != input {shapes[n]}")
    want = gmeta(graph, K.INPUT_SHAPE)
    if want is not None and "input" in shapes and list(map(int, want)) != shapes["input"]:
        problems.append(f"input: slt.input_shape {list(want)} != Input node {shapes['input']}")
    if problems:
        raise SltError("graph shape check failed:\n  " + "\n  ".join(problems))
    graph.metadata["slt.shapes"] = json.dumps(shapes)
    return graph, False
