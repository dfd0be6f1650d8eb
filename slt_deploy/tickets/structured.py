"""Structured tickets: whole output channels (conv filters / linear rows) removed, so that dense hardware runs a
smaller network (the ONNX lowering compacts them away: backends/onnx/compact.py, docs/targets/onnx.md).

    slt-deploy ticket CKPT --method structured --sparsity 0.5 --out runs/st50

`--sparsity` is the fraction of output CHANNELS removed (per layer with `--scope layer`; over all pruned layers
with the global scopes, every layer keeping at least one channel). The classifier (the last synaptic layer, its
rows are the classes) is never pruned. Rounds like IMP (`--prune-fraction`, `--rounds`, `--rewind weights|lr`,
`--epochs`): each round ranks the kept channels by the L1 norm of their EFFECTIVE filter, i.e. the filter after
binarization and multiplied by the folded batch-norm scale gamma/sqrt(var+eps) (a channel whose BN scale is tiny
contributes little however large its raw weights), removes the weakest, and retrains.

A removed channel is removed entirely, not just its weights: its mask zeroes the filter, and its bias and batch-norm
affine (gamma, beta) are set to zero and kept there during retraining (their gradients are masked). Its current is
then exactly 0 in training and in eval (BN: (0 - 0)/sqrt(0 + eps) * 0 + 0; folded: bias_c = (0 - mean) * 0 + 0),
so its neurons provably never spike (v stays 0, threshold > 0). A channel with zero weights but a nonzero folded
bias would still spike in a fixed pattern (docs/ir.md arithmetic); this method never leaves such a channel.
Because the removed channel is silent, the weights that READ it are useless too: in chains (VGG) the next layer's
input columns of removed channels are masked as well (exactly no change in any output), so the measured weight
sparsity counts them.

The ticket is a normal checkpoint; ticket.json records the kept channels per layer.
"""
from __future__ import annotations

import copy

import torch

from ..errors import SltError
from ..nn import SConv2d, SLinear
from ..train import evaluate
from .common import Ticket, TicketConfig, binarize, epochs_of, run_train, timer
from .imp import lr_rewind_epochs, rewind, rewind_point
from .masks import imp_schedule, prunable, sparsity

NORM_P = 1  # L1 norm of the effective filter (Li et al., "Pruning filters for efficient ConvNets", 2017)


@torch.no_grad()
def effective_filters(layer) -> torch.Tensor:
    """[out, fan-in] effective weights: Wq times the folded per-channel scale (binary alpha, in_scale, BN)."""
    wq, scale, _ = layer.folded()
    return (wq.reshape(wq.shape[0], -1) * scale.view(-1, 1)).float()


def channel_scores(layer) -> torch.Tensor:
    return effective_filters(layer).norm(p=NORM_P, dim=1)


def kept_channels(layer) -> torch.Tensor:
    """Bool [out]: output channels with at least one kept weight in the mask."""
    return layer.mask.reshape(layer.mask.shape[0], -1).any(dim=1)


def _n_remove(n: int, s: float) -> int:
    return min(n - 1, int(round(s * n)))


@torch.no_grad()
def channel_keep(layers, s: float, scope: str) -> dict:
    """{name: bool [out]} keeping the strongest channels so that a fraction s of the channels is removed (per layer
    for scope "layer", else over all layers by score / rms of the layer's kept scores; >= 1 channel per layer).
    Channels removed earlier stay removed."""
    scores = {}
    for n, m in layers:
        sc = channel_scores(m)
        k = kept_channels(m)
        if scope == "global" and k.any():
            sc = sc / sc[k].pow(2).mean().sqrt().clamp_min(1e-12)
        scores[n] = torch.where(k, sc, torch.full_like(sc, -1.0))
    out = {}
    if scope == "layer":
        for n, sc in scores.items():
            keep = torch.zeros(sc.numel(), dtype=torch.bool)
            keep[torch.topk(sc, sc.numel() - _n_remove(sc.numel(), s)).indices] = True
            out[n] = keep
        return out
    for sc in scores.values():  # every layer keeps its best channel
        sc[sc.argmax()] = float("inf")
    flat = torch.cat(list(scores.values()))
    n_keep = flat.numel() - min(flat.numel() - len(scores), int(round(s * flat.numel())))
    keep_flat = torch.zeros(flat.numel(), dtype=torch.bool)
    keep_flat[torch.topk(flat, n_keep).indices] = True
    i = 0
    for n, sc in scores.items():
        out[n] = keep_flat[i:i + sc.numel()].clone()
        i += sc.numel()
    return out


def _chain_consumers(model, layers) -> dict:
    """{producer name: consumer layer} for the sequential (VGG) architecture: layer i's spikes feed layer i+1 only
    (through a Flatten for conv -> linear). Other architectures: {} (residual paths and tokens are not masked)."""
    if (model.recipe.get("arch") or {}).get("type") != "vgg":
        return {}
    return {layers[i][0]: layers[i + 1][1] for i in range(len(layers) - 1)}


def _grad_mask_hook(keep: torch.Tensor):
    return lambda g: g * keep.to(g.dtype)


@torch.no_grad()
def remove_channels(model, all_layers, keep: dict):
    """Mask whole filters, zero and freeze bias + BN affine of removed channels, mask the consumers' input
    columns (VGG chains)."""
    consumers = _chain_consumers(model, all_layers)
    for n, m in all_layers:
        if n not in keep:
            continue
        k = keep[n].to(m.mask.dtype)
        m.mask.mul_(k.view(-1, *([1] * (m.mask.ndim - 1))))
        m.apply_mask_()
        params = [p for p in (m.bias, getattr(m.bn, "weight", None), getattr(m.bn, "bias", None)) if p is not None]
        for p in params:
            p.mul_(k)
        if m.bn is not None:
            m.bn.running_mean.mul_(k)
        if not hasattr(m, "_channel_keep"):
            m._channel_keep = k.clone()
            for p in params:
                p.register_hook(_grad_mask_hook(m._channel_keep))
        else:
            m._channel_keep.copy_(k)
        c = consumers.get(n)
        if c is None:
            continue
        if isinstance(c, SConv2d):
            c.mask.mul_(k.view(1, -1, 1, 1))
        elif isinstance(c, SLinear):
            per = c.mask.shape[1] // k.numel()
            if per * k.numel() != c.mask.shape[1]:
                continue
            c.mask.mul_(k.repeat_interleave(per).view(1, -1))
        c.apply_mask_()


def search(dense, data, cfg: TicketConfig) -> Ticket:
    t = timer()
    model = copy.deepcopy(dense)
    model.recipe = copy.deepcopy(dense.recipe)
    all_layers = prunable(model, None)
    layers = [(n, m) for n, m in prunable(model, cfg.only) if m is not all_layers[-1][1]]  # never the classifier
    if not layers:
        raise SltError("structured pruning needs a synaptic layer before the classifier",
                       "this model has only its classifier layer")
    ladder = imp_schedule(cfg.sparsity, cfg.prune_fraction, cfg.rounds)
    e = epochs_of(model, cfg)
    if cfg.rewind == "lr":
        total, start = lr_rewind_epochs(model, cfg)
        state_k = None
    else:
        state_k = rewind_point(dense.recipe, data, cfg.rewind_epoch, cfg.progress)
    hist = [{"round": 0, "target": 0.0, "sparsity": sparsity(model), "channels_removed": 0.0,
             "test_acc": evaluate(model, data.test), "seconds": t()}]
    keep = {}
    for r, s in enumerate(ladder, 1):
        keep = channel_keep(layers, s, "layer" if cfg.scope == "layer" else "global")
        remove_channels(model, all_layers, keep)
        if cfg.rewind == "lr":
            h = run_train(model, data, cfg, total, start_epoch=start)
        else:
            rewind(model, state_k, all_layers)
            remove_channels(model, all_layers, keep)  # rewinding restored the removed channels' BN/bias
            h = run_train(model, data, cfg, e)
        removed = 1.0 - sum(int(k.sum()) for k in keep.values()) / sum(k.numel() for k in keep.values())
        row = {"round": r, "target": s, "channels_removed": removed, "sparsity": sparsity(model),
               "test_acc": evaluate(model, data.test), "val_acc": h[-1].get("val_acc") if h else None,
               "seconds": t()}
        hist.append(row)
        if cfg.progress:
            print(f"structured round {r}/{len(ladder)}: channels removed {100 * removed:.1f}%, weight sparsity "
                  f"{100 * row['sparsity']:.2f}%, test {row['test_acc']:.2f}% ({row['seconds']:.0f}s)", flush=True)
    search_s = t()
    info = {"rounds": len(ladder), "prune_fraction": cfg.prune_fraction, "rewind": cfg.rewind,
            "rewind_epoch": cfg.rewind_epoch, "scope": "layer" if cfg.scope == "layer" else "global",
            "criterion": f"L{NORM_P} of the effective (binarized, BN-scaled) filter", "round_epochs": e,
            "target_channels_removed": cfg.sparsity,
            "channels": {n: {"kept": int(k.sum()), "total": k.numel(),
                             "kept_index": [int(i) for i in torch.nonzero(k).flatten()]} for n, k in keep.items()}}
    if cfg.binarize:
        binarize(model, data, cfg, all_layers)
        remove_channels(model, all_layers, keep)
        info["binarized"] = True
        hist.append({"round": "binarized", "target": cfg.sparsity, "sparsity": sparsity(model),
                     "test_acc": evaluate(model, data.test), "seconds": t()})
    return Ticket(model, "structured", cfg.sparsity, hist, search_s, t(), info)
