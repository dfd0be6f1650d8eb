"""The second reward, measured: spike (activation) sparsity and synaptic operations.

    synaptic_ops(model, images) -> {layer name: {...}}     per synaptic layer, summed over T, per sample
    spike_rates(model, images)  -> {LIF name: {...}}        per LIF layer

Definitions (exact counts, no sampling):
- Every synaptic layer receives an input x at each time step. Inputs between layers are non-negative integer
  counts (0/1 spikes, or small sums of spikes after residual junctions / the token sum); an input value v at an
  element means v spikes arrive there, each delivered along the element's KEPT fan-out.
- Kept fan-out of an input element = number of (output element, weight) pairs with a non-zero stored weight that
  read it. Linear: kept weights in that input column. Conv: kept weights of that input channel whose kernel
  offset maps the input position onto a valid output position (stride and padding respected exactly).
- `ops` = sum over input elements of  x · kept fan-out  (synaptic accumulates, "SOPs"). This equals
  op(x, kept_mask).sum() -- the layer's own conv/linear applied to the 0/1 kept-weight mask -- which is how it is
  computed (float64, exact for these integer counts).
- The first layer of a direct-encoded model reads analog pixels: its cost is counted as multiply-accumulates:
  `kind = "mac"`, ops = sum of [x != 0] · kept fan-out. All others are `kind = "sop"`.
- `dense_fanout_ops`: the same inputs with EVERY weight kept (what the measured spikes would cost without
  weight pruning). `ops / dense_fanout_ops` is reward 1 on this data; comparing with the dense network's ops
  (its own spikes, its own full fan-out) gives the combined saving.
- Attention products (Q·Kᵀ·V) and LIF updates are not synaptic layers and are not counted here.

Energy convention (PAPER.md): 0.9 pJ per SOP, 4.6 pJ per MAC -> `summarize()`.
"""
from __future__ import annotations

import torch

from ..nn import LIF, Synapse, synapses

E_SOP_PJ, E_MAC_PJ = 0.9, 4.6


@torch.no_grad()
def layer_ops(layer: Synapse, x: torch.Tensor, kept: torch.Tensor | None = None, analog: bool = False):
    """(ops, dense_fanout_ops, input_events) of ONE step of `layer` on input `x` (batch included).
    `kept` = 0/1 tensor of the kept weights (default: the layer's stored non-zero weights)."""
    if kept is None:
        kept = (layer.folded()[0] != 0)
    k = kept.to(torch.float64)
    xe = (x != 0).to(torch.float64) if analog else x.to(torch.float64)
    ops = layer._op(xe, k).sum().item()
    dense = layer._op(xe, torch.ones_like(k)).sum().item()
    return ops, dense, xe.sum().item()


def _drive(model, images, batch_size, hooks, was_training) -> int:
    """Run `images` through `model` in batches (fixed rate-encoding seed) so the installed `hooks` see every step;
    then remove the hooks and restore the training flag. Returns the number of samples."""
    n = 0
    g = torch.Generator().manual_seed(1234)
    try:
        for i in range(0, len(images), batch_size):
            xb = images[i:i + batch_size]
            model(xb, generator=g)
            n += len(xb)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return n


@torch.no_grad()
def synaptic_ops(model, images: torch.Tensor, batch_size: int = 256) -> dict:
    """Per synaptic layer (module order): kind ("sop" | "mac"), ops, dense_fanout_ops, input_events,
    input_elements, kept, total -- ops/events are PER SAMPLE (summed over the T steps, averaged over `images`).
    `model` is a SpikingNet; it runs in eval mode (BN folded) on raw `images` [N, C, H, W]."""
    was = model.training
    model.eval()
    layers = synapses(model)
    first = layers[0][0] if layers else None
    stats, masks, hooks = {}, {}, []
    for name, m in layers:
        masks[name] = m.folded()[0] != 0
        analog = name == first and getattr(model, "encoding", "direct") == "direct"
        stats[name] = {"kind": "mac" if analog else "sop", "ops": 0.0, "dense_fanout_ops": 0.0,
                       "input_events": 0.0, "input_elements": 0, "kept": int(masks[name].sum().item()),
                       "total": masks[name].numel()}

        def pre(mod, inp, name=name, analog=analog):
            x = inp[0]
            st = stats[name]
            a = analog or not bool(torch.all((x >= 0) & (x == torch.round(x))).item())
            if a:
                st["kind"] = "mac"
            o, d, e = layer_ops(mod, x, masks[name], analog=a)
            st["ops"] += o
            st["dense_fanout_ops"] += d
            st["input_events"] += e
            st["input_elements"] += x.numel()

        hooks.append(m.register_forward_pre_hook(pre))
    n = _drive(model, images, batch_size, hooks, was)
    for st in stats.values():
        for k in ("ops", "dense_fanout_ops", "input_events"):
            st[k] /= max(1, n)
        st["input_elements"] = st["input_elements"] // max(1, n)
    return stats


@torch.no_grad()
def spike_rates(model, images: torch.Tensor, batch_size: int = 256) -> dict:
    """Per LIF layer: spikes per sample (summed over T), neurons (per sample per step), rate = spikes /
    (neurons · T) -- the fraction of neuron-steps that fire."""
    was = model.training
    model.eval()
    stats, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, LIF):
            stats[name] = {"spikes": 0.0, "neuron_steps": 0}

            def post(mod, inp, out, name=name):
                stats[name]["spikes"] += out.sum().item()
                stats[name]["neuron_steps"] += out.numel()

            hooks.append(m.register_forward_hook(post))
    n = _drive(model, images, batch_size, hooks, was)
    T = int(getattr(model, "T", 1))
    for st in stats.values():
        st["rate"] = st["spikes"] / max(1, st["neuron_steps"])
        st["spikes"] /= max(1, n)
        st["neurons"] = st["neuron_steps"] // max(1, n * T)
        del st["neuron_steps"]
    return stats


def summarize(ops: dict, rates: dict | None = None) -> dict:
    """Totals per sample: sops, macs, dense_fanout_sops, energy_pj (0.9 pJ/SOP + 4.6 pJ/MAC), spike_rate."""
    sops = sum(v["ops"] for v in ops.values() if v["kind"] == "sop")
    macs = sum(v["ops"] for v in ops.values() if v["kind"] == "mac")
    out = {"sops": sops, "macs": macs,
           "dense_fanout_sops": sum(v["dense_fanout_ops"] for v in ops.values() if v["kind"] == "sop"),
           "dense_fanout_macs": sum(v["dense_fanout_ops"] for v in ops.values() if v["kind"] == "mac"),
           "energy_pj": sops * E_SOP_PJ + macs * E_MAC_PJ}
    if rates:
        neurons = sum(v["neurons"] for v in rates.values())
        out["spikes"] = sum(v["spikes"] for v in rates.values())
        out["spike_rate"] = sum(v["rate"] * v["neurons"] for v in rates.values()) / max(1, neurons)
    return out
