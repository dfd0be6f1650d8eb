"""checkpoint -> NIR -> passes -> backend -> artifact: the one pipeline every target goes through."""
from __future__ import annotations

import os
import time

from .backends import get_target
from .checkpoint import load, model_id
from .errors import SltError
from .fsio import MODEL_KEY, check_out
from .ir.frontend import to_nir
from .passes import run_pipeline
from .passes.check_shapes import check_shapes


def lower(ckpt_dir: str):
    """-> (model, meta, graph): the checkpoint lowered to NIR and shape-checked. The graph carries the model's
    identity (checkpoint.model_id: weights + recipe) that every artifact records and `verify` checks. An .nir file
    of ours (written by `slt-deploy import` or `--target nir`) is taken as it is: (None, None, graph); its identity
    is the one it records, else the digest of the file (fsio.nir_identity)."""
    from .backends.nir.fileio import sniff

    if os.path.isfile(ckpt_dir) and sniff(ckpt_dir):  # an NIR file; anything else: load() says what is wrong
        from .backends.nir.fileio import read_nir
        from .fsio import nir_identity
        from .ir import meta as K

        graph = read_nir(ckpt_dir)
        if K.T not in (graph.metadata or {}):
            raise SltError(f"{ckpt_dir} is an NIR graph without slt-deploy's metadata",
                           f"import it first: slt-deploy import {ckpt_dir} --T STEPS --out model.nir")
        graph = check_shapes(graph)[0]
        graph.metadata[MODEL_KEY] = nir_identity(ckpt_dir)
        return None, None, graph
    model, meta = load(ckpt_dir)
    graph, _ = check_shapes(to_nir(model, meta))
    graph.metadata[MODEL_KEY] = model_id(meta)
    return model, meta, graph


def export(ckpt_dir: str, target: str, out: str, **options) -> dict:
    backend = get_target(target)
    t0 = time.time()
    unknown = set(options) - set(backend.options)
    if unknown:
        raise SltError(f"target {target!r} has no option(s) {sorted(unknown)}",
                       f"its options: {sorted(backend.options) or 'none'}")
    out = check_out(out, target, inputs=[ckpt_dir], folder=backend.suffix == "/")
    _, _, graph = lower(ckpt_dir)
    graph, changed = run_pipeline(graph, backend.passes, options)
    reasons = backend.check(graph) if backend.check else []
    if reasons:
        raise SltError(f"target {target!r} cannot take {ckpt_dir} ({len(reasons)} reason(s)):\n  - "
                       + "\n  - ".join(reasons))
    backend.write(graph, out, **options)
    return {"target": target, "out": out, "passes": [p.__name__ for p in backend.passes], "modified_by": changed,
            "seconds": time.time() - t0}


def artifact(ctx, target: str, filename: str, **options) -> str:
    """The artifact the export stage wrote for `target`, or (stage run alone, `--only`) a fresh export of the
    ticket/dense model to runs/.../artifacts/<filename>."""
    out = (ctx.get("artifacts") or {}).get(target)
    if options or not out or not os.path.exists(out):
        out = os.path.join(ctx["out"], "artifacts", filename)
        export(ctx.get("ticket_dir") or ctx["dense_dir"], target, out, **options)
    return out
