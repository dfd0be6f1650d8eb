"""Layer-major schedule of the unrolled form (`--opt schedule=layer`, docs/targets/onnx.md).

The step-major unrolled graph emits every layer T times (one Conv/MatMul per layer per step). The networks here are
feed-forward within a step (no recurrent synapse: only a LIF carries state from step t to t+1), so layer L at every
step depends only on layer L-1 at every step. The layer-major graph therefore runs each synaptic layer ONCE on the
T steps stacked on the batch axis ([T*B, ...], step-major: row t*B + b), and splits only at the LIFs, whose T
elementwise updates stay sequential (the same ops as the step-major form, on [1, B, ...] slices), then concatenates
the T spike tensors again for the next layer. The weights are read once per call instead of T times and onnxruntime
runs T times fewer Conv/MatMul kernels.

Same arithmetic per element as the step-major form, except that a batched float Conv/MatMul may sum in another
order than the one-step kernel (MLAS picks kernels by shape): binary layers stay bit-exact (integer sums), float
layers stay within the float tolerance (verify checks both).

Under direct encoding everything before the first LIF is computed once on the image ([B, ...], "invariant") and
the first LIF reads it at every step, as in the step-major form.
"""
from __future__ import annotations

import nir
import numpy as np
from onnx import TensorProto, helper

from ...ir import meta as K
from ...ir.graph import nmeta, op_of
from .compact import expand_spikes

SCHEDULES = ("step", "layer")


def build_layer_major(low, inp: str, in_shape, ncls: int, lifs: list):
    """Emit the layer-major unrolled graph into low.b; -> the outputs (value infos)."""
    from .lower import EMIT

    b, g, T = low.b, low.g, low.T
    fl = TensorProto.FLOAT
    batched: set = set()   # values stacked over the T steps [T*B, ...]; the rest are step-invariant [B, ...]

    def stacked(v, n):
        """v as [T*B, ...]: invariant values are repeated T times (Tile on the batch axis = step-major order)."""
        if v in batched:
            return v
        reps = b.const(np.array([T] + [1] * len(low.shapes[n]), np.int64))
        out = b.op("Tile", [v, reps], f"{v}.tiled")
        batched.add(out)
        return out

    if low.encoding == "direct":
        x0 = inp
    else:  # [T, B, ...] -> [T*B, ...]
        x0 = b.op("Reshape", [inp, b.const(np.array([-1, *in_shape], np.int64))], "input.stacked")
        batched.add(x0)
    low.suffix = ""
    low.new_state = {}
    vals = {}
    for n in low.order:
        node = g.nodes[n]
        if isinstance(node, nir.Input):
            vals[n] = x0
            continue
        op = op_of(node)
        srcs = [vals[s] for s in low.preds[n]] if op != "attention" else []
        if op in ("LIF", "IF"):
            if any(s in batched for s in srcs):
                srcs = [stacked(s, n) for s in srcs]
            x = srcs[0]
            for s in srcs[1:]:
                x = b.op("Add", [x, s], f"{n}.in")
            vals[n] = _lif_all_steps(low, n, node, x, srcs[0] in batched)
            batched.add(vals[n])
            continue
        is_b = any(s in batched for s in srcs)
        if is_b and not all(s in batched for s in srcs):
            srcs = [stacked(s, n) for s in srcs]
        x = None
        for s in srcs:
            x = s if x is None else b.op("Add", [x, s], f"{n}.in")
        # attention reads q, k, v by name from vals: LIF outputs, always stacked
        vals[n] = EMIT[op](low, n, node, x, vals)
        if is_b or op == "attention":
            batched.add(vals[n])
    out = vals[low.output]
    if out not in batched:  # an output that never passed a LIF: the same every step
        out = stacked(out, low.output)
    # logits = ((out_0 + out_1) + out_2) + ...: the reference's time order
    steps = b.op("Reshape", [out, b.const(np.array([T, -1, ncls], np.int64))], "logits.steps")
    if T == 1:
        parts = [steps]
    else:
        parts = [f"logits.step{t}" for t in range(T)]
        b.names.update(parts)
        b.nodes.append(helper.make_node("Split", [steps, b.const(np.ones(T, np.int64))], parts, name="logits.split",
                                        axis=0))
    acc = parts[0]
    for t in range(1, T):
        acc = b.op("Add", [acc, parts[t]], f"logits@t{t}")
    b.op("Squeeze", [acc, b.const(np.array([0], np.int64))], "logits")
    outputs = [helper.make_tensor_value_info("logits", fl, ["batch", ncls])]
    if low.spikes_mode == "all":
        for layer, names in low.spike_names.items():
            shp = low.shapes[next(m for m in lifs if nmeta(g.nodes[m], K.LAYER, m) == layer)]
            outputs.append(helper.make_tensor_value_info(names[0], fl, [T, "batch", *shp]))
    return outputs


def _lif_all_steps(low, n, node, x, is_batched: bool) -> str:
    """The LIF over the T steps: split the stacked current, T sequential updates (low.e_lif), concatenate the
    spikes -> [T*B, ...]; records the [T, B, ...] raster as the layer's one spike tensor."""
    b, T = low.b, low.T
    layer = nmeta(node, K.LAYER, n)
    shp = list(low.cshape(n))
    if is_batched:
        x4 = b.op("Reshape", [x, b.const(np.array([T, -1, *shp], np.int64))], f"{layer}.steps")
        if T == 1:
            cur = [x4]
        else:
            cur = [f"{layer}.I@t{t}" for t in range(T)]
            b.names.update(cur)
            b.nodes.append(helper.make_node("Split", [x4, b.const(np.ones(T, np.int64))], cur,
                                            name=f"{layer}.split", axis=0))
    else:
        cur = [b.op("Unsqueeze", [x, b.const(np.array([0], np.int64))], f"{layer}.I")] * T
    low.state = {n: None}
    low.recording = False
    spikes = []
    for t in range(T):
        low.suffix = f"@t{t}"
        low.last_step = t == T - 1
        low.new_state = {}
        spikes.append(low.e_lif(n, node, cur[t], {}))
        low.state = low.new_state
    low.recording = True
    low.suffix = ""
    s = spikes[0] if T == 1 else b.op("Concat", spikes, f"{layer}.spikes", axis=0)
    flat = b.op("Reshape", [s, b.const(np.array([-1, *shp], np.int64))], f"{layer}.stacked")
    rec = s
    if n in low.plan["lif"]:
        keep, total = low.plan["lif"][n]
        if low.spikes_mode == "all":
            full = expand_spikes(b, flat, keep, total, len(low.shapes[n]), f"{layer}.full")
            rec = b.op("Reshape", [full, b.const(np.array([T, -1, *low.shapes[n]], np.int64))], f"spikes.{layer}")
        else:
            low.spike_expand[layer] = {"kept": [int(i) for i in keep], "total": int(total)}
    elif low.spikes_mode == "all":
        rec = b.op("Identity", [s], f"spikes.{layer}")
    low.spike_names[layer] = [rec]
    return flat
