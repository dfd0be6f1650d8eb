"""Reference executor of NIR graphs in PyTorch (float32, batched), following docs/ir.md exactly.

It runs our own graphs bit-for-bit like the model they came from, and foreign NIR graphs (e.g. exported by
snntorch) with the plain NIR semantics: LIF without slt.beta uses beta = 1 - dt/tau and input weight r*dt/tau."""
from __future__ import annotations

import json

import nir
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SltError
from . import meta as K
from .graph import binary_parts, gmeta, is_binary, nmeta, op_of, preds, topo_order


def _t(a):
    return torch.as_tensor(np.asarray(a, np.float32))


def _chan(v, y):
    return v.view(1, -1, 1, 1) if y.ndim == 4 else v.view(*([1] * (y.ndim - 1)), -1)


class _Synapse:
    def __init__(self, node):
        self.conv = isinstance(node, nir.Conv2d)
        w = np.asarray(node.weight, np.float32)
        self.bias = _t(getattr(node, "bias", np.zeros(w.shape[0], np.float32)))
        self.binary = is_binary(node)
        if self.binary:
            sign, scale = binary_parts(w)
            self.w, self.scale = _t(sign), _t(scale)
        else:
            self.w = _t(w)
        if self.conv:
            self.stride = tuple(int(s) for s in np.atleast_1d(node.stride)) if node.stride is not None else (1, 1)
            pad = node.padding
            self.padding = pad if isinstance(pad, str) else tuple(int(p) for p in np.atleast_1d(pad))
            self.dilation = tuple(int(d) for d in np.atleast_1d(node.dilation))
            self.groups = int(node.groups)

    def __call__(self, x):
        if self.conv:
            y = F.conv2d(x, self.w, None, self.stride, self.padding, self.dilation, self.groups)
        else:
            y = F.linear(x, self.w)
        if self.binary:
            y = y * _chan(self.scale, y)
        return y + _chan(self.bias, y)


class _LIF:
    def __init__(self, node, dt):
        beta = nmeta(node, K.BETA)
        if beta is not None:  # our graphs: the exact parameters (docs/ir.md), whatever the NIR fields say
            self.beta, self.w_in = float(beta), None
        elif isinstance(node, nir.IF):
            self.beta, self.w_in = 1.0, _t(np.asarray(node.r) * dt)
        else:
            tau = np.asarray(node.tau, np.float32)
            self.beta, self.w_in = _t(1.0 - dt / tau), _t(np.asarray(node.r) * dt / tau)
        self.thr = float(nmeta(node, K.THRESHOLD, np.nan))
        if np.isnan(self.thr):
            self.thr = _t(node.v_threshold)
        self.reset = nmeta(node, K.RESET, "zero")
        self.v_reset = _t(getattr(node, "v_reset", 0.0) if getattr(node, "v_reset", None) is not None else 0.0)
        self.v = None

    def __call__(self, i):
        if self.w_in is not None:
            i = i * self.w_in
        v = i if self.v is None else self.beta * self.v + i
        s = (v > self.thr).to(v.dtype)
        if self.reset == "zero":
            v = v * (1.0 - s) if not bool(torch.any(self.v_reset != 0)) else torch.where(s > 0, self.v_reset, v)
        else:
            v = v - s * self.thr
        self.v = v
        return s


def _attention(node, ins, by_name):
    order = json.loads(nmeta(node, K.QKV))
    q, k, v = (by_name[n] for n in order)
    h = int(nmeta(node, K.HEADS))
    b, n, d = q.shape
    def sp(t):
        return t.view(b, t.shape[1], h, d // h).transpose(1, 2)
    y = torch.matmul(torch.matmul(sp(q), sp(k).transpose(-2, -1)), sp(v)) * float(nmeta(node, K.ATTN_SCALE))
    return y.transpose(1, 2).reshape(b, n, d)


class Interpreter:
    """Runs an NIR graph over T steps: run(seq [T, B, ...]) -> {logits [B, C], logits_steps [T, B, C] (the output
    node's input per step; logits is their sum in time order), spikes {layer: [T, B, ...]} (record=True)}."""

    SUPPORTED = ("Input", "Output", "Conv2d", "Affine", "Linear", "LIF", "IF", "Flatten", "Scale", "SumPool2d",
                 "AvgPool2d", "add", "tokens", "patch_select", "attention", "token_sum")

    def __init__(self, graph: nir.NIRGraph, dt: float | None = None):
        self.g = graph
        self.order = topo_order(graph)
        self.dt = float(dt if dt is not None else gmeta(graph, K.DT, 1e-4))
        bad = [f"{n} ({op_of(graph.nodes[n])})" for n in self.order if op_of(graph.nodes[n]) not in self.SUPPORTED]
        if bad:
            raise SltError(f"the NIR interpreter cannot run node(s): {', '.join(bad)}",
                           f"supported: {', '.join(self.SUPPORTED)}")
        self.preds = {n: preds(graph, n) for n in self.order}
        self._build()

    def _build(self):
        self.ops = {}
        for n in self.order:
            node = self.g.nodes[n]
            if isinstance(node, (nir.Conv2d, nir.Affine, nir.Linear)):
                self.ops[n] = _Synapse(node)
            elif isinstance(node, (nir.LIF, nir.IF)):
                self.ops[n] = _LIF(node, self.dt)

    def reset(self):
        for op in self.ops.values():
            if isinstance(op, _LIF):
                op.v = None

    def _node(self, n, x, outs):
        node = self.g.nodes[n]
        if n in self.ops:
            return self.ops[n](x)
        op = op_of(node)
        if op == "Flatten":
            return x.flatten(1)
        if op in ("Output", "add"):
            return x
        if op == "Scale":
            return x * _t(node.scale)
        if op == "SumPool2d" or op == "AvgPool2d":
            k, s, p = (tuple(int(v) for v in np.atleast_1d(a)) for a in (node.kernel_size, node.stride, node.padding))
            y = F.avg_pool2d(x, k, s, p, count_include_pad=True)
            return y * float(np.prod(k)) if op == "SumPool2d" else y
        if op == "tokens":
            return x.flatten(2).transpose(1, 2)
        if op == "patch_select":
            return x[:, torch.as_tensor(np.asarray(nmeta(node, K.PATCH_INDEX), np.int64))]
        if op == "token_sum":
            return x.sum(1)
        if op == "attention":
            return _attention(node, x, outs)
        raise AssertionError(op)

    @torch.no_grad()
    def run(self, seq, record: bool = False) -> dict:
        seq = torch.as_tensor(np.asarray(seq, np.float32))
        self.reset()
        logits, spikes, steps = None, {}, []
        for t in range(seq.shape[0]):
            outs = {}
            for n in self.order:
                node = self.g.nodes[n]
                if isinstance(node, nir.Input):
                    outs[n] = seq[t]
                    continue
                p = self.preds[n]
                x = None
                if op_of(node) != "attention":
                    for src in p:
                        x = outs[src] if x is None else x + outs[src]
                outs[n] = self._node(n, x, outs)
                if record and n in self.ops and isinstance(self.ops[n], _LIF):
                    spikes.setdefault(nmeta(node, K.LAYER, n), []).append(outs[n])
                if isinstance(node, nir.Output):
                    logits = outs[n] if logits is None else logits + outs[n]
                    steps.append(outs[n])
        self.reset()
        res = {"logits": logits.numpy(), "logits_steps": torch.stack(steps).numpy()}
        if record:
            res["spikes"] = {k: torch.stack(v).numpy() for k, v in spikes.items()}
        return res
