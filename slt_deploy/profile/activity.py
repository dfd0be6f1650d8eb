"""Counted, not modelled: spike rates and synaptic operations of an NIR graph (docs/ir.md) on real spikes.

Works on the graph, so it applies to every target compiled from it. Spikes come from any runtime that exposes
them; `profile_activity` records them with the reference interpreter (bit-identical to the PyTorch model).

Conventions (the ones an event-driven runtime pays):
- The input of a synaptic node (Conv2d / Affine / Linear) at a step is the sum of its predecessors' outputs
  (docs/ir.md). It is rebuilt from the recorded LIF spikes and the encoded input by running only the stateless
  non-synaptic nodes (Flatten, junction adds, tokens, patch_select, attention, token_sum, pools).
- **Kept fan-out** of an input element = the number of (output element, kept weight) pairs that read it; kept
  means `weight != 0` (the IR's mask). Affine: the kept weights of its input column (per token for `[N, D]`
  inputs). Conv2d: the kept weights of its input channel whose kernel offset maps that input position onto a
  valid output position -- stride and padding exact at the borders. It is computed once per layer as the gradient
  of sum(conv(x, |mask|)) with respect to x (= a transposed convolution of ones), in float64.
- **SOPs** (synaptic accumulates) = sum over input elements of value x kept fan-out, for inputs that are
  non-negative integer event counts (0/1 spikes, or small integer sums after residual junctions).
- **MACs** for inputs that are not events: the first layer of a direct-encoded model reads analog pixels, and a
  layer fed by attention products reads non-integer values. Their cost = (number of non-zero inputs) x kept
  fan-out multiply-accumulates (zeros are skipped, as an event-driven runtime does). `kind` says which.
- **Dense MACs** = what the same layer costs executed densely: every input element x full fan-out (all weights,
  pruned or not), every step. `dense_macs_per_frame` = T x `dense_macs_per_step` (the dense network run for the
  same T steps); `dense_macs_ann` = one step (an ANN of the same shape).
- **Neuron updates** = LIF neurons x T per frame (every neuron's state is updated every step).
Attention products (Q.K^T.V) are not synaptic layers and are not counted.
"""
from __future__ import annotations

import nir
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SltError
from ..ir import meta as K
from ..ir.graph import gmeta, nmeta, op_of, preds, topo_order
from ..ir.interpreter import Interpreter

_SYN = (nir.Conv2d, nir.Affine, nir.Linear)
_LIF = (nir.LIF, nir.IF)


def _conv_args(node):
    stride = tuple(int(s) for s in np.atleast_1d(node.stride)) if node.stride is not None else (1, 1)
    pad = node.padding
    padding = pad if isinstance(pad, str) else tuple(int(p) for p in np.atleast_1d(pad))
    dilation = tuple(int(d) for d in np.atleast_1d(node.dilation))
    return stride, padding, dilation, int(node.groups)


def fanout(node, in_shape, kept: np.ndarray | None = None) -> np.ndarray:
    """Kept fan-out of every input element of a synaptic node (float64 array of the per-sample input shape).
    `kept`: 0/1 array of the weights' shape (default: weight != 0; pass ones for the dense fan-out)."""
    w = np.asarray(node.weight)
    k = torch.as_tensor((w != 0) if kept is None else np.asarray(kept), dtype=torch.float64)
    if isinstance(node, nir.Conv2d):
        stride, padding, dilation, groups = _conv_args(node)
        x = torch.ones((1, *in_shape), dtype=torch.float64, requires_grad=True)
        F.conv2d(x, k, None, stride, padding, dilation, groups).sum().backward()
        return x.grad[0].numpy()
    col = k.sum(0).numpy()  # kept weights per input column
    return np.broadcast_to(col, tuple(in_shape)).copy()


def _is_events(x: torch.Tensor) -> bool:
    return bool(torch.all((x >= 0) & (x == torch.round(x))).item())


def synaptic_inputs(graph: nir.NIRGraph, seq, spikes: dict, interp: Interpreter | None = None) -> dict:
    """{synaptic node: (input [T, B, ...] float tensor, from_input bool)} rebuilt from the encoded input `seq`
    [T, B, C, H, W] and `spikes` {slt.layer (or node name): [T, B, ...]} of every LIF node."""
    seq = torch.as_tensor(np.asarray(seq, np.float32))
    T, B = seq.shape[:2]
    interp = interp or Interpreter(graph)
    order = topo_order(graph)
    vals, from_in, out = {}, {}, {}
    def flat(a):
        return torch.as_tensor(np.asarray(a, np.float32)).reshape(T * B, *np.shape(a)[2:])
    for n in order:
        node = graph.nodes[n]
        if isinstance(node, nir.Input):
            vals[n], from_in[n] = flat(seq), True
            continue
        ps = preds(graph, n)
        if isinstance(node, _LIF):
            key = nmeta(node, K.LAYER, n)
            s = spikes.get(key, spikes.get(n))
            if s is None:
                raise SltError(f"no spikes recorded for LIF node {n} (layer {key})",
                               "record every LIF layer (Interpreter.run(seq, record=True))")
            vals[n], from_in[n] = flat(s), False
            continue
        if isinstance(node, _SYN):
            missing = [p for p in ps if vals.get(p) is None]
            if missing:
                raise SltError(f"the input of synaptic node {n} depends on {missing}, whose values are not spikes",
                               "synaptic ops are counted from LIF spikes; put a LIF between synaptic layers")
            x = None
            for p in ps:
                x = vals[p] if x is None else x + vals[p]
            out[n] = (x.reshape(T, B, *x.shape[1:]), any(from_in[p] for p in ps))
            vals[n], from_in[n] = None, False  # a synaptic node's output only feeds LIFs / the output
            continue
        if any(vals.get(p) is None for p in ps) or isinstance(node, nir.Output):
            vals[n], from_in[n] = None, False
            continue
        x = None
        if op_of(node) != "attention":
            for p in ps:
                x = vals[p] if x is None else x + vals[p]
        vals[n] = interp._node(n, x, vals)
        from_in[n] = any(from_in[p] for p in ps)
    return out


class ActivityCounter:
    """Accumulates counts over batches: add(seq, spikes) per batch, then result() -> per-layer dicts."""

    def __init__(self, graph: nir.NIRGraph):
        self.g = graph
        self.T = int(gmeta(graph, K.T, 1))
        self.encoding = gmeta(graph, K.ENCODING, "direct")
        self.frames = 0
        self.syn, self.lif = {}, {}
        self._fan = {}
        self._interp = Interpreter(graph)

    def _fanouts(self, n, in_shape):
        if n not in self._fan:
            node = self.g.nodes[n]
            self._fan[n] = (fanout(node, in_shape), fanout(node, in_shape, np.ones(np.shape(node.weight))))
        return self._fan[n]

    def add(self, seq, spikes: dict):
        B = int(np.shape(seq)[1])
        self.frames += B
        for n, (x, from_input) in synaptic_inputs(self.g, seq, spikes, self._interp).items():
            node = self.g.nodes[n]
            x = x.to(torch.float64)
            in_shape = tuple(x.shape[2:])
            kept_f, dense_f = self._fanouts(n, in_shape)
            analog = (from_input and self.encoding == "direct") or not _is_events(x)
            ev = (x != 0).to(torch.float64) if analog else x
            per_t = ev.sum(1).numpy()  # [T, *in_shape]: events per input element per step, summed over the batch
            w = np.asarray(node.weight)
            st = self.syn.setdefault(n, {
                "layer": nmeta(node, K.LAYER, n), "node": n, "type": type(node).__name__,
                "kind": "mac" if analog else "sop", "kept": int((w != 0).sum()), "weights": int(w.size),
                "ops_t": np.zeros(self.T), "events_t": np.zeros(self.T), "dense_fanout_t": np.zeros(self.T),
                "in_elements": int(np.prod(in_shape)), "dense_macs_per_step": float(dense_f.sum())})
            if analog:
                st["kind"] = "mac"
            t = per_t.reshape(per_t.shape[0], -1)
            st["ops_t"] += t @ kept_f.reshape(-1)
            st["dense_fanout_t"] += t @ dense_f.reshape(-1)
            st["events_t"] += t.sum(1)
        for n, node in self.g.nodes.items():
            if isinstance(node, _LIF):
                key = nmeta(node, K.LAYER, n)
                s = np.asarray(spikes.get(key, spikes.get(n)))
                d = self.lif.setdefault(key, {"node": n, "neurons": int(np.prod(s.shape[2:])),
                                              "spikes_t": np.zeros(self.T)})
                d["spikes_t"] += s.reshape(s.shape[0], -1).sum(1)

    def result(self) -> dict:
        """{"layers": {layer: {...}}, "neurons": {layer: {...}}, "totals": {...}}: everything PER FRAME (one
        sample through all T steps, averaged over the frames seen); *_per_step lists have T entries."""
        nf = max(1, self.frames)
        layers = {}
        for n, st in self.syn.items():
            ops_t = st["ops_t"] / nf
            layers[st["layer"]] = {
                "node": n, "type": st["type"], "kind": st["kind"], "kept": st["kept"], "weights": st["weights"],
                "density": st["kept"] / max(1, st["weights"]), "in_elements": st["in_elements"],
                "input_events_per_frame": float(st["events_t"].sum() / nf),
                "input_event_rate": float(st["events_t"].sum() / nf / max(1, st["in_elements"] * self.T)),
                "ops_per_frame": float(ops_t.sum()), "ops_per_step": [float(v) for v in ops_t],
                "events_x_dense_fanout_per_frame": float(st["dense_fanout_t"].sum() / nf),
                "dense_macs_per_step": st["dense_macs_per_step"],
                "dense_macs_per_frame": st["dense_macs_per_step"] * self.T}
        neurons = {}
        for key, d in self.lif.items():
            sp = d["spikes_t"] / nf
            neurons[key] = {"node": d["node"], "neurons": d["neurons"], "spikes_per_frame": float(sp.sum()),
                            "spikes_per_step": [float(v) for v in sp],
                            "rate": float(sp.sum() / max(1, d["neurons"] * self.T))}
        sops = sum(v["ops_per_frame"] for v in layers.values() if v["kind"] == "sop")
        macs = sum(v["ops_per_frame"] for v in layers.values() if v["kind"] == "mac")
        dense = sum(v["dense_macs_per_frame"] for v in layers.values())
        n_neurons = sum(v["neurons"] for v in neurons.values())
        spikes = sum(v["spikes_per_frame"] for v in neurons.values())
        totals = {"frames": self.frames, "T": self.T, "encoding": self.encoding,
                  "sops_per_frame": sops, "macs_per_frame": macs, "ops_per_frame": sops + macs,
                  "dense_macs_per_frame": dense, "dense_macs_ann": dense / max(1, self.T),
                  "ops_over_dense": (sops + macs) / dense if dense else float("nan"),
                  "dense_over_ops": dense / (sops + macs) if sops + macs else float("inf"),
                  "neurons": n_neurons, "neuron_updates_per_frame": n_neurons * self.T,
                  "spikes_per_frame": spikes, "spike_rate": spikes / max(1, n_neurons * self.T),
                  "kept_weights": sum(v["kept"] for v in layers.values()),
                  "weights": sum(v["weights"] for v in layers.values())}
        return {"layers": layers, "neurons": neurons, "totals": totals}


def synaptic_ops(graph: nir.NIRGraph, spikes: dict, seq) -> dict:
    """Per-layer synaptic-op counts of ONE batch: `spikes` {layer: [T, B, ...]} recorded on encoded input `seq`
    [T, B, C, H, W]. -> {slt.layer: {...}} per frame (averaged over the batch); see ActivityCounter.result."""
    c = ActivityCounter(graph)
    c.add(seq, spikes)
    return c.result()["layers"]


def profile_activity(graph: nir.NIRGraph, images, batch: int = 64, seed: int = 0) -> dict:
    """Run the graph (reference interpreter, spikes recorded) on raw `images` [N, C, H, W] and count everything.
    Encoding as the runtimes do it (slt_deploy.data.encode, rate encoding seeded by `seed`)."""
    from ..data import encode
    from ..log import progress

    T, enc = int(gmeta(graph, K.T, 1)), gmeta(graph, K.ENCODING, "direct")
    input_max = float(gmeta(graph, K.INPUT_MAX, 1.0))
    interp = Interpreter(graph)
    counter = ActivityCounter(graph)
    g = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(np.asarray(images, np.float32))
    for i in progress(range(0, len(x), batch), desc="activity", unit="batch"):
        seq = encode(x[i:i + batch], T, enc, input_max, g).numpy()
        res = interp.run(seq, record=True)
        counter.add(seq, res["spikes"])
    return counter.result()
