"""NIR graph (docs/ir.md) -> ONNX ModelProto, built directly with onnx.helper. One emitter per op in EMIT.

The NIR graph is one time step. Two forms (docs/targets/onnx.md):
  unrolled  the step is emitted T times (state flows between copies as plain tensors); one call per sample.
            Under direct encoding everything before the first LIF sees the same image every step, so it is
            emitted once and reused (same arithmetic, computed once).
  stateful  the step is emitted once; every LIF's membrane potential and the running logits sum are graph inputs
            and outputs; the caller feeds zeros first, then each call's outputs back in.

Arithmetic follows docs/ir.md op for op. Binary synaptic layers run Conv/MatMul with the ±1/0 sign tensor, then a
separate Mul(scale_c) and Add(bias_c). onnxruntime's ConvMulFusion/ConvAddFusion would fold that Mul and Add into
the conv weights (changing rounding), so for binary convs the Mul/Add act on a [B, C, H*W] Reshape of the conv
output: no fusion pattern matches, and Reshape costs no copy. tests/test_onnx.py checks the optimized graph.
"""
from __future__ import annotations

import json

import nir
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ... import __version__
from ...ir import meta as K
from ...ir.graph import binary_parts, conv_attrs, gmeta, is_binary, nmeta, op_of, preds, topo_order
from ...passes.check_shapes import shapes_of
from ..sniff import ONNX_PRODUCER
from .compact import expand_spikes, no_plan, plan, slice_weights
from .schedule import build_layer_major
from .weights import WeightSink

OPSET = 17
IR_VERSION = 8  # readable by onnxruntime >= 1.10 (opset 17 needs >= 1.13)
FORMS = ("unrolled", "stateful")
COMPUTE = ("auto", "dense", "gather", "measure")
# Real sparse compute for Affine layers: Gather the input columns that have a kept weight, then a smaller MatMul.
# bench/onnx_target.py (fc 3136->128, onnxruntime CPU, 1 thread) measured it faster than the full MatMul at batch 1 from
# <= 25% kept columns and at batch 64 only from <= 10% (slower at 50%); so `auto` uses it at <= 10%, `gather` at
# <= 50%, `dense` never.
GATHER_MAX_FRACTION = {"auto": 0.10, "gather": 0.50, "dense": -1.0}
# `measure` (measure.py): both forms timed in onnxruntime at export with the layer's own weights, the faster kept
SPIKES = ("none", "all")


class GraphBuilder:
    def __init__(self):
        self.nodes, self.inits = [], []
        self.names: set = set()
        self._consts: dict = {}
        self._n = 0

    def _unique(self, base: str) -> str:
        name = base
        while name in self.names:
            self._n += 1
            name = f"{base}~{self._n}"
        self.names.add(name)
        return name

    def init(self, name: str, arr) -> str:
        name = self._unique(name)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def const(self, arr, name: str | None = None) -> str:
        arr = np.asarray(arr)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            self._consts[key] = self.init(name or f"c.{len(self._consts)}", arr)
        return self._consts[key]

    def op(self, op_type: str, inputs: list, out: str | None = None, domain: str = "", **attrs) -> str:
        out = self._unique(out or f"{op_type.lower()}.{len(self.nodes)}")
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, domain=domain, **attrs))
        return out


class Lowering:
    """Lowers one NIR graph. Call build() once."""

    def __init__(self, g: nir.NIRGraph, form="unrolled", sparse="auto", spikes="none", compute="auto",
                 compact="channels", schedule="step"):
        self.g, self.form, self.sparse_mode, self.spikes_mode, self.compute = g, form, sparse, spikes, compute
        self.schedule = schedule if form == "unrolled" else "step"
        self.recording = True  # e_lif records its spike tensor per step (the layer-major schedule records itself)
        self.measured: dict = {}  # compute=measure: layer -> the timed forms and the one kept
        self.b = GraphBuilder()
        self.w = WeightSink(self.b)
        self.order = topo_order(g)
        self.preds = {n: preds(g, n) for n in self.order}
        self.T = int(gmeta(g, K.T, 1))
        self.encoding = gmeta(g, K.ENCODING, "direct")
        self.shapes = shapes_of(g)  # per sample, from the one shape pass
        self.compact = compact  # silent channels removed (compact.py); cshape = the compact state shape
        self.plan = plan(g, self.shapes) if compact == "channels" else no_plan()
        self.cshape = lambda n: self.plan["shape"].get(n, self.shapes[n])
        self.spike_expand: dict = {}    # layer -> kept channels of its compact spike tensors
        self.params: dict = {}          # node -> dict of initializer names
        self.lif_layers: dict = {}      # node -> slt.layer
        self.spike_names: dict = {}     # layer -> [tensor name per step]
        self.state_inputs, self.state_outputs = [], []
        self.suffix = ""


    # --- weights (emitted once, shared by every step) ------------------------------------------------------------
    def _weights(self, n, node):
        layer = nmeta(node, K.LAYER, n)
        w = np.asarray(node.weight, np.float32)
        bias = np.asarray(node.bias if getattr(node, "bias", None) is not None else np.zeros(w.shape[0]), np.float32)
        w, bias = slice_weights(n, w, bias, self.plan)
        conv = isinstance(node, nir.Conv2d)
        binary = is_binary(node)
        d = {"binary": binary, "conv": conv, "out": w.shape[0]}
        if not conv:
            cols = np.flatnonzero(np.any(w != 0, axis=0))
            if self.compute == "measure" and 0 < len(cols) < w.shape[1]:
                from .measure import gather_is_faster

                rows = int(np.prod(self.shapes[n][:-1])) * (self.T if self.schedule == "layer" else 1)
                faster, dense_ms, gather_ms = gather_is_faster(w, cols, max(1, rows))
                self.measured[layer] = {"form": "gather" if faster else "dense", "dense_ms": round(dense_ms, 4),
                                        "gather_ms": round(gather_ms, 4), "kept_columns": int(len(cols)),
                                        "columns": int(w.shape[1]), "rows": max(1, rows)}
                use_gather = faster
            else:  # (measure with no or every column kept: nothing to time, the auto rule)
                use_gather = len(cols) <= GATHER_MAX_FRACTION.get(self.compute, 0.10) * w.shape[1]
            if use_gather:
                d["cols"] = self.b.init(f"{layer}.columns", cols.astype(np.int64))
                w = np.ascontiguousarray(w[:, cols])
        d["W"] = self.w.add(f"{layer}.weight", w, binary, self.sparse_mode, transpose=not conv)
        self.w.records[-1]["layer"] = layer
        if binary:
            _, scale = binary_parts(w)
            shape = (-1, 1) if conv else (-1,)
            d["scale"] = self.b.init(f"{layer}.scale", scale.reshape(shape))
            d["bias"] = self.b.init(f"{layer}.bias", bias.reshape(shape))
        else:
            d["bias"] = self.b.init(f"{layer}.bias", bias)
        if conv:
            d["strides"], pd = conv_attrs(node)
            d["pads"] = [pd[0], pd[1], pd[0], pd[1]]
        self.params[n] = d

    # --- emitters ------------------------------------------------------------------------------------------------
    def name(self, base):
        return base + self.suffix

    def e_synapse(self, n, node, x, vals):
        d, b = self.params[n], self.b
        layer = nmeta(node, K.LAYER, n)
        if d["conv"]:
            ins = [x, d["W"]] + ([] if d["binary"] else [d["bias"]])
            y = b.op("Conv", ins, self.name(f"{layer}.conv"), strides=d["strides"], pads=d["pads"],
                     kernel_shape=list(np.asarray(node.weight).shape[2:]))
            if not d["binary"]:
                return y
            o, (_, ho, wo) = d["out"], self.shapes[n]
            y3 = b.op("Reshape", [y, b.const(np.array([0, o, -1], np.int64))], self.name(f"{layer}.chw"))
            y3 = b.op("Mul", [y3, d["scale"]], self.name(f"{layer}.scaled"))
            y3 = b.op("Add", [y3, d["bias"]], self.name(f"{layer}.biased"))
            return b.op("Reshape", [y3, b.const(np.array([0, o, ho, wo], np.int64))], self.name(f"{layer}.out"))
        if "cols" in d:  # real sparse compute: only the input columns that have a kept weight
            x = b.op("Gather", [x, d["cols"]], self.name(f"{layer}.kept_in"), axis=-1)
        y = b.op("MatMul", [x, d["W"]], self.name(f"{layer}.matmul"))
        if d["binary"]:
            y = b.op("Mul", [y, d["scale"]], self.name(f"{layer}.scaled"))
        return b.op("Add", [y, d["bias"]], self.name(f"{layer}.out"))

    def e_lif(self, n, node, x, vals):
        b = self.b
        layer = nmeta(node, K.LAYER, n)
        beta = float(nmeta(node, K.BETA))
        thr = float(nmeta(node, K.THRESHOLD))
        reset = nmeta(node, K.RESET, "zero")
        thr_c = b.const(np.array(thr, np.float32))
        prev = self.state.get(n)
        if prev is None:
            v = x  # first step from v = 0: v = I exactly
        else:
            v = b.op("Add", [b.op("Mul", [prev, b.const(np.array(beta, np.float32))], self.name(f"{layer}.decay")), x],
                     self.name(f"{layer}.v"))
        sb = b.op("Greater", [v, thr_c], self.name(f"{layer}.fire"))
        sname = self.name(f"spikes.{layer}" if self.form == "stateful" else f"spk.{layer}")
        s = b.op("Cast", [sb], sname + (".compact" if n in self.plan["lif"] else ""), to=TensorProto.FLOAT)
        rec = s
        if not self.recording:
            pass
        elif n in self.plan["lif"] and self.spikes_mode == "all":  # full-width outputs, scattered in the graph
            rec = expand_spikes(b, s, *self.plan["lif"][n], len(self.shapes[n]), sname)
        elif n in self.plan["lif"]:  # recorded compact; the runner scatters them back (slt.spike_expand)
            keep, total = self.plan["lif"][n]
            self.spike_expand[layer] = {"kept": [int(i) for i in keep], "total": int(total)}
        if self.recording:
            self.spike_names.setdefault(layer, []).append(rec)
        if self.last_step:
            self.new_state[n] = None
        elif reset == "zero":
            # v * (1 - s), as the reference (onnxruntime's Where(s, 0, v) was 4x slower than Sub + Mul)
            keep = b.op("Sub", [b.const(np.array(1.0, np.float32)), s], self.name(f"{layer}.keep"))
            self.new_state[n] = b.op("Mul", [v, keep],
                                     self.name(f"v_out.{layer}" if self.form == "stateful" else f"{layer}.vr"))
        else:
            self.new_state[n] = b.op("Sub", [v, b.op("Mul", [s, thr_c], self.name(f"{layer}.sthr"))],
                                     self.name(f"v_out.{layer}" if self.form == "stateful" else f"{layer}.vr"))
        return s

    def e_flatten(self, n, node, x, vals):
        return self.b.op("Flatten", [x], self.name(f"{n}.flat"), axis=1)

    def e_identity(self, n, node, x, vals):
        return x

    def e_scale(self, n, node, x, vals):
        return self.b.op("Mul", [x, self.b.const(np.asarray(node.scale, np.float32))], self.name(f"{n}.scale"))

    def e_tokens(self, n, node, x, vals):
        d = self.shapes[self.preds[n][0]][0]
        y = self.b.op("Reshape", [x, self.b.const(np.array([0, d, -1], np.int64))], self.name(f"{n}.dn"))
        return self.b.op("Transpose", [y], self.name(f"{n}.tokens"), perm=[0, 2, 1])

    def e_patch_select(self, n, node, x, vals):
        idx = np.asarray(nmeta(node, K.PATCH_INDEX), np.int64)
        return self.b.op("Gather", [x, self.b.const(idx, f"{n}.index")], self.name(f"{n}.select"), axis=1)

    def e_token_sum(self, n, node, x, vals):
        return self.b.op("ReduceSum", [x, self.b.const(np.array([1], np.int64))], self.name(f"{n}.sum"), keepdims=0)

    def e_attention(self, n, node, x, vals):
        b = self.b
        q, k, v = (vals[s] for s in json.loads(nmeta(node, K.QKV)))
        h = int(nmeta(node, K.HEADS))
        ntok, dim = self.shapes[n]
        split = b.const(np.array([0, ntok, h, dim // h], np.int64))
        def heads(t, tag, perm):
            return b.op("Transpose", [b.op("Reshape", [t, split], self.name(f"{n}.{tag}4"))],
                        self.name(f"{n}.{tag}h"), perm=perm)
        qh, kt, vh = heads(q, "q", [0, 2, 1, 3]), heads(k, "k", [0, 2, 3, 1]), heads(v, "v", [0, 2, 1, 3])
        a = b.op("MatMul", [b.op("MatMul", [qh, kt], self.name(f"{n}.qk")), vh], self.name(f"{n}.qkv"))
        a = b.op("Mul", [a, b.const(np.array(float(nmeta(node, K.ATTN_SCALE)), np.float32))], self.name(f"{n}.sc"))
        a = b.op("Transpose", [a], self.name(f"{n}.merge"), perm=[0, 2, 1, 3])
        return b.op("Reshape", [a, b.const(np.array([0, ntok, dim], np.int64))], self.name(f"{n}.out"))

    # --- one time step -------------------------------------------------------------------------------------------
    def step(self, x_in, t: int, cache: dict):
        """Emit one step; returns the output node's value. self.state: LIF node -> previous v (or None)."""
        self.new_state = {}
        vals = {}
        for n in self.order:
            node = self.g.nodes[n]
            if isinstance(node, nir.Input):
                vals[n] = x_in
                continue
            if n in cache:
                vals[n] = cache[n]
                continue
            op = op_of(node)
            x = None
            if op != "attention":
                for src in self.preds[n]:
                    x = vals[src] if x is None else self.b.op("Add", [x, vals[src]], self.name(f"{n}.in"))
            vals[n] = EMIT[op](self, n, node, x, vals)
            if n in self.invariant and self.form == "unrolled":
                cache[n] = vals[n]
        self.state = self.new_state
        return vals[self.output]

    def _invariant(self) -> set:
        inv = set()
        if self.encoding != "direct" or self.form != "unrolled":
            return inv
        for n in self.order:
            node = self.g.nodes[n]
            if isinstance(node, nir.Input):
                inv.add(n)
            elif (not isinstance(node, (nir.LIF, nir.IF)) and not isinstance(node, nir.Output)
                  and self.preds[n] and all(p in inv for p in self.preds[n])):
                inv.add(n)
        return inv

    def build(self, meta_extra: dict | None = None) -> onnx.ModelProto:
        g, b = self.g, self.b
        self.output = next(n for n in self.order if isinstance(g.nodes[n], nir.Output))
        self.invariant = self._invariant()
        for n in self.order:
            if isinstance(g.nodes[n], (nir.Conv2d, nir.Affine, nir.Linear)):
                self._weights(n, g.nodes[n])
        in_shape = self.shapes[next(n for n in self.order if isinstance(g.nodes[n], nir.Input))]
        ncls = int(self.shapes[self.output][-1])
        lifs = [n for n in self.order if isinstance(g.nodes[n], (nir.LIF, nir.IF))]
        inputs, outputs = [], []
        fl = TensorProto.FLOAT
        if self.form == "unrolled" and self.schedule == "layer":
            inp = "image" if self.encoding == "direct" else "input_spikes"
            lead = ["batch"] if self.encoding == "direct" else [self.T, "batch"]
            inputs.append(helper.make_tensor_value_info(inp, fl, [*lead, *in_shape]))
            outputs += build_layer_major(self, inp, in_shape, ncls, lifs)
        elif self.form == "unrolled":
            if self.encoding == "direct":
                inp = "image"
                inputs.append(helper.make_tensor_value_info(inp, fl, ["batch", *in_shape]))
            else:
                inp = "input_spikes"
                inputs.append(helper.make_tensor_value_info(inp, fl, [self.T, "batch", *in_shape]))
            self.state = {n: None for n in lifs}
            cache, logits = {}, None
            for t in range(self.T):
                self.suffix = f"@t{t}"
                self.last_step = t == self.T - 1
                x = inp if self.encoding == "direct" else b.op(
                    "Gather", [inp, b.const(np.array(t, np.int64))], self.name("input"), axis=0)
                out = self.step(x, t, cache)
                if logits is None:
                    logits = out
                else:
                    logits = b.op("Add", [logits, out], "logits" if self.last_step else self.name("logits"))
            if logits != "logits":
                logits = b.op("Identity", [logits], "logits")
            outputs.append(helper.make_tensor_value_info("logits", fl, ["batch", ncls]))
            if self.spikes_mode == "all":
                for layer, names in self.spike_names.items():
                    us = [b.op("Unsqueeze", [s, b.const(np.array([0], np.int64))], f"{s}.u") for s in names]
                    out = b.op("Concat", us, f"spikes.{layer}", axis=0)
                    shp = self.shapes[next(m for m in lifs if nmeta(g.nodes[m], K.LAYER, m) == layer)]
                    outputs.append(helper.make_tensor_value_info(out, fl, [self.T, "batch", *shp]))
        else:
            inp = "x"
            inputs.append(helper.make_tensor_value_info(inp, fl, ["batch", *in_shape]))
            inputs.append(helper.make_tensor_value_info("logits_in", fl, ["batch", ncls]))
            self.state = {}
            for n in lifs:
                layer = nmeta(g.nodes[n], K.LAYER, n)
                name = f"v_in.{layer}"
                inputs.append(helper.make_tensor_value_info(name, fl, ["batch", *self.cshape(n)]))
                self.state[n] = name
                self.state_inputs.append(name)
            self.last_step = False
            out = self.step(inp, 0, {})
            b.op("Add", ["logits_in", out], "logits")
            outputs.append(helper.make_tensor_value_info("logits", fl, ["batch", ncls]))
            for n in lifs:
                layer = nmeta(g.nodes[n], K.LAYER, n)
                v = self.state[n]
                if v != f"v_out.{layer}":
                    v = b.op("Identity", [v], f"v_out.{layer}")
                outputs.append(helper.make_tensor_value_info(v, fl, ["batch", *self.cshape(n)]))
                self.state_outputs.append(v)
            if self.spikes_mode == "all":
                for layer, names in self.spike_names.items():
                    outputs.append(helper.make_tensor_value_info(names[0], fl, ["batch", *self.shapes[
                        next(m for m in lifs if nmeta(g.nodes[m], K.LAYER, m) == layer)]]))
        graph = helper.make_graph(b.nodes, f"slt_{gmeta(g, K.NAME, 'model')}_{self.form}", inputs, outputs,
                                  b.inits,
                                  doc_string=f"slt-deploy {__version__}: spiking network, {self.form} form "
                                             f"(see docs/targets/onnx.md)")
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                                  producer_name=ONNX_PRODUCER, producer_version=__version__,
                                  doc_string="exported by slt-deploy from an NIR graph")
        self._metadata(model, inp, in_shape, lifs, meta_extra or {})
        return model

    def _metadata(self, model, inp, in_shape, lifs, extra):
        g = self.g
        recs = self.w.records
        params = sum(r["params"] for r in recs)
        kept = sum(r["kept"] for r in recs)
        layers = {nmeta(g.nodes[n], K.LAYER, n): self.shapes[n] for n in lifs}
        md = {
            "slt.format_version": "1", "slt.form": self.form, "slt.opset": str(OPSET),
            "slt.deploy_version": __version__, "slt.T": str(self.T), "slt.dt": repr(float(gmeta(g, K.DT, 1e-4))),
            "slt.encoding": self.encoding, "slt.input_name": inp, "slt.input_shape": json.dumps(in_shape),
            "slt.input_max": repr(float(gmeta(g, K.INPUT_MAX, 1.0))),
            "slt.input_normalisation": f"raw units 0..{float(gmeta(g, K.INPUT_MAX, 1.0)):g}; the 1/input_max scaling"
                                       " is folded into the first layer (do not normalise)",
            "slt.labels": gmeta(g, K.LABELS, "[]"), "slt.readout": "sum",
            "slt.name": str(gmeta(g, K.NAME, "")), "slt.arch": str(gmeta(g, K.ARCH, "")),
            "slt.source_sha256": str(gmeta(g, K.SOURCE_SHA256, "")),
            "slt.sparsity": repr(1 - kept / max(1, params)), "slt.params": str(params), "slt.kept": str(kept),
            "slt.all_binary": str(int(bool(recs) and all(r["binary"] for r in recs))),
            "slt.sparse_mode": self.sparse_mode, "slt.compute": self.compute, "slt.schedule": self.schedule, "slt.weights": json.dumps(recs),
            "slt.compact": json.dumps(self.plan["layers"]), "slt.spike_expand": json.dumps(self.spike_expand),
            "slt.spike_layers": json.dumps(layers),
            "slt.spike_tensors": json.dumps(self.spike_names),
            "slt.spikes_outputs": self.spikes_mode,
            "slt.state_inputs": json.dumps(self.state_inputs), "slt.state_outputs": json.dumps(self.state_outputs),
        }
        if self.measured:
            md["slt.compute_measured"] = json.dumps(self.measured)
        for key in (K.TICKET, K.RECIPE):
            v = gmeta(g, key)
            if v is not None:
                md[key] = str(v)
        md.update({k: str(v) for k, v in extra.items()})
        helper.set_model_props(model, md)


EMIT = {"Conv2d": Lowering.e_synapse, "Affine": Lowering.e_synapse, "Linear": Lowering.e_synapse,
        "LIF": Lowering.e_lif, "Flatten": Lowering.e_flatten, "Output": Lowering.e_identity,
        "add": Lowering.e_identity, "Scale": Lowering.e_scale, "tokens": Lowering.e_tokens,
        "patch_select": Lowering.e_patch_select, "token_sum": Lowering.e_token_sum,
        "attention": Lowering.e_attention}


def unsupported(g: nir.NIRGraph) -> list[str]:
    """Every reason this lowering cannot take `g` ([] = ok)."""
    out = []
    for n, node in g.nodes.items():
        op = op_of(node)
        if isinstance(node, nir.Input):
            continue
        if op not in EMIT:
            out.append(f"node {n}: op {op} has no ONNX lowering (supported: {', '.join(sorted(EMIT))})")
            continue
        if isinstance(node, nir.Conv2d):
            if int(node.groups) != 1 or any(int(d) != 1 for d in np.atleast_1d(node.dilation)):
                out.append(f"node {n}: grouped/dilated Conv2d is not lowered (groups=1, dilation=1 only)")
            if isinstance(node.padding, str):
                out.append(f"node {n}: string padding {node.padding!r} is not lowered (use explicit padding)")
        if isinstance(node, nir.LIF) and nmeta(node, K.BETA) is None:
            out.append(f"node {n}: LIF without slt.beta (a foreign NIR graph) is not lowered")
        if isinstance(node, nir.LIF) and np.any(np.asarray(node.v_reset) != 0):
            out.append(f"node {n}: LIF with v_reset != 0 is not lowered")
    return out


def to_onnx(g: nir.NIRGraph, form="unrolled", sparse="auto", spikes="none", compute="auto",
            meta_extra=None, compact="channels", schedule="step") -> onnx.ModelProto:
    return Lowering(g, form, sparse, spikes, compute, compact, schedule).build(meta_extra)
