"""Target `onnx`: a standard ONNX model (opset 17) that onnxruntime runs on any provider. Lowering in
lower.py, weight storage in weights.py, runtime in runner.py, demo stage in demo.py; docs/targets/onnx.md.

Options (slt-deploy export --target onnx --opt KEY=VALUE):
  form    unrolled (default: one call per sample, the T steps unrolled) | stateful (one call per time step)
  sparse  auto (default: smallest encoding per weight tensor) | none (plain dense float32) | coo | bitmap
  spikes  none (default) | all: also output every LIF's spike raster (verification/debugging)
  compute auto (default) | dense | gather | measure: Affine layers whose kept weights touch <= 10% (auto) / <= 50%
          (gather) of their input columns gather those columns and run a smaller MatMul (real sparse compute;
          measured in bench/onnx_target.py, see docs/targets/onnx.md); measure: both forms of each Affine layer timed
          in onnxruntime at export, the faster kept (measure.py; metadata slt.compute_measured)
  compact channels (default) | none: channels that provably never spike (all-zero filter, bias <= 0) are removed
          with their neuron state and the next layer's input columns (compact.py; bit-identical)
  schedule step (default: the step graph T times) | layer: each synaptic layer once over the T steps stacked on
          the batch axis, LIFs split per step (schedule.py; unrolled form only; bit-identical for binary layers)
"""
from __future__ import annotations

import json

from ...errors import SltError
from ...fsio import MODEL_KEY, atomic_write, stamp_onnx
from ...ir.graph import gmeta
from ..base import Backend
from ..sniff import onnx_file as sniff
from .compact import COMPACT
from .lower import COMPUTE, FORMS, OPSET, SPIKES, to_onnx, unsupported
from .schedule import SCHEDULES
from .weights import SPARSE_MODES

OPTIONS = {"form": ("unrolled", "|".join(FORMS)), "sparse": ("auto", "|".join(SPARSE_MODES)),
           "spikes": ("none", "|".join(SPIKES)), "compute": ("auto", "|".join(COMPUTE)),
           "compact": ("channels", "|".join(COMPACT)), "schedule": ("step", "|".join(SCHEDULES))}

# Measured bound for graphs with float (non-binary) synaptic layers; see docs/targets/onnx.md.
FLOAT_TOLERANCE = {
    "exact": False,
    "why": "float conv/matmul layers: onnxruntime (MLAS) sums the products in another order than PyTorch "
           "(oneDNN/MKL), so currents differ in the last bits and a neuron sitting exactly on its threshold can "
           "flip; binary layers and everything else are bit-exact",
    "min_pred_agreement": 0.995,
    "min_spike_agreement": 0.999,
}


def _opt(options, key):
    v = options.get(key, OPTIONS[key][0])
    allowed = OPTIONS[key][1].split("|")
    if v not in allowed:
        raise SltError(f"--opt {key}={v} is not valid for target onnx", f"use one of: {', '.join(allowed)}")
    return v


def build(graph, **options):
    return to_onnx(graph, form=_opt(options, "form"), sparse=_opt(options, "sparse"), spikes=_opt(options, "spikes"),
                   compute=_opt(options, "compute"), compact=_opt(options, "compact"),
                   schedule=_opt(options, "schedule"))


def write(graph, path, **options):
    import onnx

    model = build(graph, **options)
    onnx.checker.check_model(model, full_check=True)
    stamp_onnx(model, str(gmeta(graph, MODEL_KEY, "") or ""))  # content digest + source model identity
    atomic_write(path, model.SerializeToString())


def check(graph) -> list[str]:
    return unsupported(graph)


def make_runner(path, **kw):
    from .runner import OnnxRunner

    return OnnxRunner(path, **kw)


def tolerance(r) -> dict:
    """Exact when every synaptic layer is binary (integer sums); otherwise the measured float bound."""
    if r.meta.get("all_binary"):
        return {"exact": True}
    return dict(FLOAT_TOLERANCE)


def demo_stage(ctx):
    """`slt-deploy demo` stage "onnx": size vs a dense ONNX export, exactness through onnxruntime, latency."""
    from .demo import stage

    stage(ctx)


def describe(path: str) -> dict:
    from .runner import read_model

    m, props = read_model(path)
    recs = json.loads(props.get("slt.weights", "[]"))
    rows = []
    for r in recs:
        rows.append({"node": r.get("layer", r["tensor"]), "op": "binary" if r["binary"] else "float",
                     "shape": r["shape"], "params": r["params"], "kept": r["kept"],
                     "sparsity": 1 - r["kept"] / max(1, r["params"]),
                     "weight_bits": ("1 (+alpha)" if r["binary"] else "32") + f" {r['encoding']}",
                     "dense_bytes": r["dense_bytes"], "min_bytes": r["payload_bytes"]})
    ops = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    meta = {k: v for k, v in props.items() if k not in ("slt.weights", "slt.recipe", "slt.spike_tensors")}
    notes = [f"opset {OPSET}, {len(m.graph.node)} nodes ({', '.join(f'{k} {v}' for k, v in sorted(ops.items()))})",
             f"inputs: {', '.join(i.name for i in m.graph.input)}",
             f"outputs: {', '.join(o.name for o in m.graph.output)}",
             "weight encodings: " + ", ".join(r["tensor"] + "=" + r["encoding"] for r in recs)
             + "; their decoding is constant-folded when onnxruntime loads the file"]
    return {"layers": rows, "meta": meta, "notes": notes}


BACKEND = Backend(name="onnx", description="ONNX model (opset 17) for onnxruntime (CPU/CUDA/ARM): unrolled or "
                                           "stateful per-step form, sparse/bit-packed weights",
                  suffix=".onnx", passes=[], check=check, write=write, runner=make_runner, tolerance=tolerance,
                  options=OPTIONS, sniff=sniff, describe=describe, demo=demo_stage,
                  runtimes={"cpu": {"providers": ["CPUExecutionProvider"]},
                            "cuda": {"providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}})
