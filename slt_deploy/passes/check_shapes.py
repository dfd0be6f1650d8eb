"""Pass: shape inference and check over an slt NIR graph -- THE shape layer: every node's per-sample output shape
is computed here once, and the frontend's metadata, `inspect` and every lowering read it (`shapes_of`).
REQUIRES: a graph made by slt_deploy.ir.frontend (or NIR nodes with consistent shapes).
ENSURES: every node's output shape is computed and stored in graph metadata `slt.shapes` (JSON {node: shape}) and
every node's inputs agree in shape; raises SltError listing EVERY inconsistency. Does not change arithmetic.
Reports modified=True when it wrote (or changed) `slt.shapes`."""
from __future__ import annotations

import json

import nir
import numpy as np

from ..errors import SltError
from ..ir import meta as K
from ..ir.graph import conv_out_shape, gmeta, nmeta, op_of, preds, topo_order


def _out_shape(node, x):
    op = op_of(node)
    if op in ("Input",):
        return [int(v) for v in node.input_type["input"]]
    if op == "Conv2d":
        return conv_out_shape(node, x)
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


def infer_shapes(graph) -> dict[str, list[int]]:
    """{node: per-sample output shape} of every node, in topological order; SltError listing every problem."""
    shapes, problems = {}, []
    for n in topo_order(graph):
        node = graph.nodes[n]
        ins = [shapes[p] for p in preds(graph, n) if p in shapes]
        if ins and any(s != ins[0] for s in ins):
            problems.append(f"{n}: inputs have different shapes {ins}")
        try:
            shapes[n] = _out_shape(node, ins[0] if ins else None)
        except Exception as e:  # noqa: BLE001 - every malformed node is reported, not swallowed
            problems.append(f"{n} ({op_of(node)}): {e}")
            shapes[n] = ins[0] if ins else []
        if isinstance(node, (nir.LIF, nir.IF)) and list(np.shape(node.v_threshold)) not in ([], shapes[n]):
            problems.append(f"{n}: neuron parameter shape {list(np.shape(node.v_threshold))} != input {shapes[n]}")
    want = gmeta(graph, K.INPUT_SHAPE)
    want = None if want is None else [int(v) for v in np.atleast_1d(want)]
    if want is not None and "input" in shapes and want != shapes["input"]:
        problems.append(f"input: slt.input_shape {want} != Input node {shapes['input']}")
    if problems:
        raise SltError("graph shape check failed:\n  " + "\n  ".join(problems))
    return shapes


def shapes_of(graph) -> dict[str, list[int]]:
    """The graph's shapes: its `slt.shapes` when check_shapes stored them, else inferred now (graph unchanged)."""
    s = gmeta(graph, K.SHAPES)
    if s:
        return {k: [int(d) for d in v] for k, v in json.loads(s).items()}
    return infer_shapes(graph)


def check_shapes(graph):
    """(graph) -> (graph with `slt.shapes`, modified)."""
    text = json.dumps(infer_shapes(graph))
    modified = gmeta(graph, K.SHAPES) != text
    if graph.metadata is None:
        graph.metadata = {}
    graph.metadata[K.SHAPES] = text
    return graph, modified
