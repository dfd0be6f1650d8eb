"""Describe an NIR graph (or any artifact whose backend offers `describe`): layers, shapes, sparsity, bits,
bytes, metadata, and which parts other NIR tools can execute."""
from __future__ import annotations

import json
import os

import nir
import numpy as np

from .ir import meta as K
from .ir.graph import gmeta, is_binary, nmeta, op_of, slt_only_nodes, topo_order


def describe_graph(g: nir.NIRGraph) -> dict:
    shapes = json.loads(gmeta(g, "slt.shapes", "{}") or "{}")
    rows = []
    for n in topo_order(g):
        node = g.nodes[n]
        row = {"node": n, "op": op_of(node), "shape": shapes.get(n, "")}
        w = getattr(node, "weight", None)
        if w is not None:
            w = np.asarray(w)
            kept = int(np.count_nonzero(w))
            binary = is_binary(node)
            bits = kept * 1 + w.shape[0] * 32 if binary else kept * 32
            row.update(params=int(w.size), kept=kept, sparsity=1 - kept / max(1, w.size),
                       weight_bits="1 (+alpha)" if binary else "32", dense_bytes=int(w.size * 4),
                       min_bytes=int(np.ceil(bits / 8)))
        if isinstance(node, (nir.LIF, nir.IF)):
            row["neuron"] = f"beta={nmeta(node, K.BETA)} thr={nmeta(node, K.THRESHOLD)} reset={nmeta(node, K.RESET)}"
        rows.append(row)
    meta = {}
    for k, v in (g.metadata or {}).items():
        if k in ("slt.shapes", "slt.recipe"):
            continue
        v = gmeta(g, k)
        meta[k] = v.tolist() if isinstance(v, np.ndarray) else v
    foreign = slt_only_nodes(g)
    notes = ["every node is standard NIR: other NIR tools can execute this graph" if not foreign else
             f"{len(foreign)} node(s) are slt-only ops ({', '.join(sorted({op_of(g.nodes[n]) for n in foreign}))}): "
             "other NIR tools can read the file but cannot execute those nodes; slt-deploy's runtimes can"]
    return {"layers": rows, "meta": meta, "notes": notes}


def totals(rows) -> dict:
    params = sum(r.get("params", 0) for r in rows)
    kept = sum(r.get("kept", 0) for r in rows)
    return {"params": params, "kept": kept, "sparsity": 1 - kept / max(1, params),
            "dense_bytes": sum(r.get("dense_bytes", 0) for r in rows),
            "min_bytes": sum(r.get("min_bytes", 0) for r in rows)}


def describe_path(path: str) -> dict:
    from .backends import target_for_path
    from .backends.nir.fileio import read_nir

    if os.path.isdir(path) and os.path.exists(os.path.join(path, "model.json")):
        from .export import lower

        d = describe_graph(lower(path)[2])
        d["kind"] = "checkpoint"
    else:
        b = target_for_path(path)
        d = b.describe(path) if b.describe else describe_graph(read_nir(path))
        d["kind"] = b.name
    d["file_bytes"] = (os.path.getsize(path) if os.path.isfile(path) else
                       sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs))
    return d
