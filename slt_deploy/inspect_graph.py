"""Describe an NIR graph (or any artifact whose backend offers `describe`): layers, shapes, sparsity, bits,
bytes, metadata, and which parts other NIR tools can execute."""
from __future__ import annotations

import json
import math
import os

import numpy as np

from .ir import meta as K


def information_bits(params: int, kept: int, binary: bool) -> float:
    """THE information bound of one synaptic layer, for every target (inspect's "information-level" total): which
    `kept` of `params` weights are kept (log2 C(params, kept) bits) plus their values (1 bit each when binary, the
    per-channel scale aside; 32 bits each when float). Same formula as the packed format's bound."""
    if kept <= 0 or kept >= params:
        pos = 0.0
    else:
        pos = (math.lgamma(params + 1) - math.lgamma(kept + 1) - math.lgamma(params - kept + 1)) / math.log(2)
    return pos + kept * (1 if binary else 32)


def _row_binary(r) -> bool:
    return bool(r.get("binary")) or str(r.get("weight_bits", "")).startswith("1 ") or "(binary)" in str(r.get("op"))


def plain(v):
    """A float32 value printed as its shortest float32 form (dt 1e-4, not 9.999999747378752e-05)."""
    if isinstance(v, float) and math.isfinite(v) and float(np.float32(v)) == v:
        return float(str(np.float32(v)))
    return v


def describe_graph(g) -> dict:
    """Rows of an NIR graph (a checkpoint lowered, a .nir file). nir is imported here, not at module load: inspect of
    an artifact whose target describes itself (packed, onnx, loihi) does not need it."""
    import nir

    from .ir.graph import gmeta, is_binary, nmeta, op_of, slt_only_nodes, topo_order

    shapes = json.loads(gmeta(g, K.SHAPES, "{}") or "{}")
    rows = []
    for n in topo_order(g):
        node = g.nodes[n]
        # the model's module path (body.0), as onnx/loihi name it, not the NIR node id (body_0)
        row = {"node": nmeta(node, K.LAYER, None) or n, "op": op_of(node), "shape": shapes.get(n, "")}
        w = getattr(node, "weight", None)
        if w is not None:
            w = np.asarray(w)
            kept = int(np.count_nonzero(w))
            binary = is_binary(node)
            row.update(params=int(w.size), kept=kept, sparsity=1 - kept / max(1, w.size), binary=binary,
                       weight_bits="1 (+alpha)" if binary else "32", dense_bytes=int(w.size * 4))
        if isinstance(node, (nir.LIF, nir.IF)):
            row["neuron"] = f"beta={nmeta(node, K.BETA)} thr={nmeta(node, K.THRESHOLD)} reset={nmeta(node, K.RESET)}"
        rows.append(row)
    meta = {}
    for k, v in (g.metadata or {}).items():
        if k in (K.SHAPES, K.RECIPE):
            continue
        v = gmeta(g, k)
        meta[k] = v.tolist() if isinstance(v, np.ndarray) else v
    foreign = slt_only_nodes(g)
    notes = ["every node is standard NIR: other NIR tools can execute this graph" if not foreign else
             f"{len(foreign)} node(s) are slt-only ops ({', '.join(sorted({op_of(g.nodes[n]) for n in foreign}))}): "
             "other NIR tools can read the file but cannot execute those nodes; slt-deploy's runtimes can"]
    return {"layers": rows, "meta": meta, "notes": notes}


def totals(rows) -> dict:
    """Sparsity = 1 - kept/params over the synaptic layers; min_bytes = sum of information_bits (one definition)."""
    params = sum(r.get("params", 0) for r in rows)
    kept = sum(r.get("kept", 0) for r in rows)
    bits = sum(information_bits(r["params"], r["kept"], _row_binary(r)) for r in rows if "params" in r)
    return {"params": params, "kept": kept, "sparsity": 1 - kept / max(1, params),
            "dense_bytes": sum(r.get("dense_bytes", 0) for r in rows), "min_bytes": int(math.ceil(bits / 8))}


def describe_path(path: str) -> dict:
    from .backends import target_for_path

    if os.path.isdir(path) and os.path.exists(os.path.join(path, "model.json")):
        from .export import lower

        d = describe_graph(lower(path)[2])
        d["kind"] = "checkpoint"
    else:
        b = target_for_path(path)
        if b.describe:
            d = b.describe(path)
        else:
            from .backends.nir.fileio import read_nir

            d = describe_graph(read_nir(path))
        d["kind"] = b.name
    for r in d["layers"]:  # every target's rows through the same bound
        if "params" in r:
            r["min_bytes"] = int(math.ceil(information_bits(r["params"], r["kept"], _row_binary(r)) / 8))
    d["meta"] = {k: plain(v) for k, v in d["meta"].items()}
    d["file_bytes"] = (os.path.getsize(path) if os.path.isfile(path) else
                       sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs))
    return d
