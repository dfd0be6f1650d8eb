"""Target `packed`: the packed-bit .slt file (docs/packed-format.md) for microcontrollers, run by the C99
runtime (c/, through ctypes: c_runner.py) or by the numpy reference interpreter.

Runtime choice: make_runner(path, runtime="c" | "numpy"); the default is the environment variable SLT_PACKED_RUNTIME,
else "c" (falling back to numpy, with a note, if no C compiler is available)."""
from __future__ import annotations

import os

import numpy as np

from ...errors import SltError
from ..base import Backend
from ..sniff import packed_file as sniff
from . import format as PF
from .fileio import name_field, read_file, write_file

RUNTIMES = ("c", "numpy")


def write(graph, path, **_):
    from ...fsio import MODEL_KEY
    from ...ir.graph import gmeta
    from .lower import from_graph  # lazy: lowering imports nir; inspect/run of a .slt file need not

    m = from_graph(graph)
    m.name = name_field(m, str(gmeta(graph, MODEL_KEY, "") or ""))  # + identity and node names (fileio.py)
    write_file(m, path)  # the format carries its own CRCs (content digest); the identity rides in the name field


def check(graph) -> list[str]:
    from .lower import check_graph

    return check_graph(graph)


def make_runner(path, runtime: str | None = None, **kw):
    rt = (runtime or os.environ.get("SLT_PACKED_RUNTIME") or "c").lower()
    if rt not in RUNTIMES:
        raise SltError(f"unknown packed runtime {rt!r}", f"use one of {', '.join(RUNTIMES)} (SLT_PACKED_RUNTIME)")
    if rt == "c":
        from .c_runner import CPackedRunner, compiler_available

        if compiler_available():
            return CPackedRunner(path, **kw)
        from ...log import log

        log.warning("no C compiler found; running the packed model in the numpy interpreter")
    from .numpy_runner import NumpyPackedRunner

    return NumpyPackedRunner(path)


def tolerance(r) -> dict:
    """Binary layers are bit-exact by construction; float (non-binary) layers sum in ascending input order
    (float32), which can differ from PyTorch's conv/matmul order in the last bits."""
    m = getattr(r, "model", None)
    syn = [n for n in (m.nodes if m else []) if n.op in ("conv", "affine")]
    if syn and all(n.binary for n in syn):
        return {"exact": True}
    return {"exact": False, "min_pred_agreement": 0.999, "min_spike_agreement": 0.999,
            "why": "float (non-binary) layers sum kept weights in ascending input order in float32; PyTorch's "
                   "order differs, so logits may differ in the last bits and a spike can flip at a threshold"}


def describe(path):
    m = read_file(path)
    rows = []
    for i, n in enumerate(m.nodes):
        # the layer path (body.0) as every target names it; files written before node names: index:op
        row = {"node": n.name or (n.op if n.op in ("input", "output") else f"{i}:{n.op}"), "op": n.op,
               "inputs": n.inputs, "shape": list(n.shape)}
        if n.op in ("conv", "affine"):
            w = n.weight
            kept = int(np.count_nonzero(w))
            bits = PF.log2_binom(w.size, kept) + kept * (1 if n.binary else 32)
            row.update(params=int(w.size), kept=kept, sparsity=1 - kept / max(1, w.size), binary=n.binary,
                       weight_bits="1 (+alpha)" if n.binary else "32", dense_bytes=int(w.size * 4),
                       min_bytes=int(np.ceil(bits / 8)),
                       mask=("bitmap" if n.mask_enc == PF.MASK_BITMAP else f"delta{n.delta_bits}"))
        if n.op == "lif":
            row["neuron"] = f"beta={n.beta} thr={n.threshold} reset={n.reset}"
        rows.append(row)
    with open(path, "rb") as f:
        size = PF.size_report(m, f.read())
    notes = [f"file {size['file_bytes']} B = {size['ratio_to_bound']:.3f}x the information bound "
             f"({size['bound_bytes']:.0f} B incl. {size['header_bytes']} B header/params); fp32 dense "
             f"{size['fp32_dense_bytes']} B"]
    try:
        from .c_runner import c_validate

        with open(path, "rb") as f:
            notes.append(f"C runtime arena: {c_validate(f.read())[2]} bytes")
    except Exception:  # noqa: BLE001 - no compiler: the numpy runtime still works
        pass
    return {"layers": rows, "meta": {"T": m.T, "encoding": m.encoding, "input_max": m.input_max, "name": m.name,
                                     "labels": m.labels, "dt": m.dt}, "notes": notes}


def demo_stage(ctx):
    """`slt-deploy demo` stage "packed": the .slt file verified with both runtimes, its size vs the bound."""
    from .demo import stage

    stage(ctx)


BACKEND = Backend(name="packed", description="packed-bit .slt file (sparse/binarized), C99 event-driven runtime",
                  suffix=".slt", passes=[], check=check, write=write, runner=make_runner, tolerance=tolerance,
                  sniff=sniff, describe=describe, demo=demo_stage,
                  runtimes={"c": {"runtime": "c"}, "numpy": {"runtime": "numpy"}})
