"""Masks shared by every ticket method: which layers are pruned, magnitude and random masks, the normalised Hamming
distance (Early-Bird), and sparsity MEASURED from the stored weights (never copied from a config).

A mask is a dict {layer name: float tensor of 0/1, same shape as the layer's weight}. Layer names are the
`named_modules()` paths of the Synapse layers inside the SpikingNet (e.g. "body.0", "body.0.stem.0").
"""
from __future__ import annotations

import math

import torch

from ..errors import SltError
from ..nn import Synapse, synapses


def prunable(model, only: str | None = None) -> list:
    """(name, layer) of the Synapse layers a ticket prunes: all of them, or those whose path starts with `only`."""
    layers = synapses(model)
    if only:
        layers = [(n, m) for n, m in layers if n == only or n.startswith(only + ".")]
        if not layers:
            raise SltError(f"no synaptic layer under {only!r}", "name a module path printed by 'slt-deploy inspect'")
    return layers


@torch.no_grad()
def kept(layer: Synapse) -> torch.Tensor:
    """Bool tensor: the weights that are really used (effective weight != 0 in the stored, folded form)."""
    wq, _, _ = layer.folded()
    return wq != 0


def layer_stats(model, layers=None) -> list:
    """One row per synaptic layer: name, kind, total, kept, sparsity, binary. Measured from the stored weights."""
    rows = []
    for name, m in (layers if layers is not None else synapses(model)):
        k = int(kept(m).sum().item())
        rows.append({"layer": name, "kind": m.kind, "total": m.weight.numel(), "kept": k,
                     "sparsity": 1.0 - k / m.weight.numel(), "binary": bool(m.binary)})
    return rows


def sparsity(model, layers=None) -> float:
    """Fraction of zero weights over the given layers (default: every synaptic layer), measured."""
    rows = layer_stats(model, layers)
    tot = sum(r["total"] for r in rows)
    return 1.0 - sum(r["kept"] for r in rows) / max(1, tot)


def check_sparsity(s: float, what: str = "sparsity") -> float:
    try:
        s = float(s)
    except (TypeError, ValueError):
        raise SltError(f"{what} {s!r} is not a number", "pass a fraction such as 0.9 (90% of weights removed)") from None
    if not (0.0 <= s < 1.0) or math.isnan(s):
        raise SltError(f"{what} {s} is outside [0, 1)", "pass a fraction such as 0.9 (90% of weights removed)")
    return s


def get_masks(layers) -> dict:
    return {n: m.mask.detach().clone() for n, m in layers}


def set_masks(layers, masks: dict):
    """Install masks and zero the pruned float weights."""
    for n, m in layers:
        with torch.no_grad():
            m.mask.copy_(masks[n].to(m.mask.dtype))
        m.apply_mask_()


def _n_prune(n: int, s: float) -> int:
    return min(n, int(round(s * n)))


SCOPES = ("global", "global-raw", "lamp", "layer")


def gain_of(name: str, layer: Synapse, gains: dict | None) -> float:
    """The ranking gain of one layer from a `--layer-gain` dict: its module path (or a parent path) first, then its
    kind ("conv", "linear"), else 1."""
    if not gains:
        return 1.0
    for key in sorted(gains, key=len, reverse=True):  # the longest (most specific) path that matches
        if name == key or name.startswith(key + "."):
            return float(gains[key])
    return float(gains.get(layer.kind, 1.0))


def check_gains(gains: dict | None, layers):
    """SltError unless every key of a `--layer-gain` dict names a layer kind or a module path of `layers` and every
    value is > 0 (find_ticket checks once, before any training)."""
    if not gains:
        return
    kinds = {m.kind for _, m in layers}
    for key, g in gains.items():
        if not (key in kinds or any(n == key or n.startswith(key + ".") for n, _ in layers)):
            raise SltError(f"--layer-gain {key}={g}: no prunable layer is of kind or under path {key!r}",
                           f"use a kind ({', '.join(sorted(kinds))}) or a path printed by 'slt-deploy inspect'")
        if not (float(g) > 0 and math.isfinite(float(g))):
            raise SltError(f"--layer-gain {key}={g}: the gain must be a positive number", "e.g. conv=1.5")


@torch.no_grad()
def magnitude_masks(layers, s: float, scope: str = "global", gains: dict | None = None) -> dict:
    """Keep the largest |w| among the currently kept weights so that a fraction `s` of all weights is pruned:
    over all layers together ("global", "global-raw") or in each layer ("layer"). Exact counts (top-k, no
    thresholds), so the measured sparsity equals the target within one weight (per layer for "layer", overall for
    the global scopes).
    `gains` ({kind or module path: g}, `--layer-gain`) multiplies a layer's scores in the global ranking: g > 1 keeps
    more of its weights at the same overall sparsity (e.g. conv=1.5: the convolutions, which hold few of a VGG's
    weights but all of its features); no effect on the "layer" scope.
    "lamp" ranks LAMP scores (`lamp_scores`: layer-adaptive, scale invariant per layer, Lee et al., ICLR 2021).
    "global" ranks |w| / rms(kept w of its layer): a layer followed by batch norm is invariant to the scale of its
    weights, so raw magnitudes are not comparable across layers (raw global pruning empties whole layers of small
    nets at 90%); "global-raw" ranks the raw |w| (Kim et al.). In the global scopes every output unit keeps at
    least its largest weight (no layer collapse at extreme sparsity); the total count stays exact."""
    if scope not in SCOPES:
        raise SltError(f"pruning scope {scope!r} unknown", f"use one of {', '.join(SCOPES)}")
    scores = {}
    for n, m in layers:
        w = m.weight.detach().abs()
        if scope == "global":
            kept_w = w[m.mask > 0]
            w = w / kept_w.pow(2).mean().sqrt().clamp_min(1e-12) if kept_w.numel() else w
        elif scope == "lamp":
            w = lamp_scores(w, m.mask > 0)
        g = gain_of(n, m, gains)
        if g != 1.0:
            w = w * g
        scores[n] = torch.where(m.mask > 0, w, torch.full_like(w, -1.0))
    out = {}
    if scope == "layer":
        for n, sc in scores.items():
            keep = sc.numel() - _n_prune(sc.numel(), s)
            out[n] = _topk_mask(sc.flatten(), keep).view_as(sc)
        return out
    for sc in scores.values():  # no layer collapse: every output unit that has a weight keeps its best one
        rows = sc.view(sc.shape[0], -1)
        best = rows.argmax(1)
        has = rows.max(1).values >= 0
        rows[torch.arange(rows.shape[0])[has], best[has]] = float("inf")
    flat = torch.cat([sc.flatten() for sc in scores.values()])
    keep = flat.numel() - _n_prune(flat.numel(), s)
    mflat = _topk_mask(flat, keep)
    i = 0
    for n, sc in scores.items():
        out[n] = mflat[i:i + sc.numel()].view_as(sc).clone()
        i += sc.numel()
    return out


def lamp_scores(w: torch.Tensor, kept_: torch.Tensor) -> torch.Tensor:
    """LAMP score of each kept weight of one layer (Lee et al., "Layer-adaptive sparsity for the magnitude-based
    pruning", ICLR 2021): w_u^2 / sum of w_v^2 over the kept weights v with |w_v| >= |w_u| (ties in a fixed order).
    In (0, 1]; the layer's largest weight scores 1; multiplying a layer by a constant leaves its scores unchanged.
    Pruning the lowest scores globally is the magnitude pruning that least distorts each layer's output in the
    worst case. Pruned weights score 0."""
    flat = w.flatten().pow(2)
    k = kept_.flatten()
    out = torch.zeros_like(flat)
    idx = torch.nonzero(k).flatten()
    if idx.numel():
        v = flat[idx]
        order = torch.argsort(v, stable=True)
        sv = v[order].double()
        suffix = torch.flip(torch.cumsum(torch.flip(sv, [0]), 0), [0])
        sc = torch.zeros_like(sv)
        nz = suffix > 0
        sc[nz] = sv[nz] / suffix[nz]
        out[idx[order]] = sc.to(out.dtype)
    return out.view_as(w)


def _topk_mask(flat: torch.Tensor, k: int) -> torch.Tensor:
    m = torch.zeros_like(flat)
    if k > 0:
        m[torch.topk(flat, k, sorted=False).indices] = 1.0
    return m


@torch.no_grad()
def random_masks(layers, per_layer: dict | float, seed: int = 0) -> dict:
    """Random masks with exactly round(s_l * n_l) pruned weights in layer l (s_l from `per_layer`, a dict
    name -> sparsity, or one number for every layer)."""
    g = torch.Generator().manual_seed(int(seed))
    out = {}
    for n, m in layers:
        s = per_layer[n] if isinstance(per_layer, dict) else float(per_layer)
        keep = m.weight.numel() - _n_prune(m.weight.numel(), s)
        perm = torch.randperm(m.weight.numel(), generator=g)
        flat = torch.zeros(m.weight.numel())
        flat[perm[:keep]] = 1.0
        out[n] = flat.view_as(m.weight)
    return out


def mask_distance(a: dict, b: dict) -> float:
    """Normalised Hamming distance between two masks over all their layers (0 = identical, 1 = complementary)."""
    diff = sum(int((a[n] != b[n]).sum().item()) for n in a)
    return diff / max(1, sum(a[n].numel() for n in a))


def imp_schedule(target: float, prune_fraction: float = 0.25, rounds: int | None = None) -> list:
    """Cumulative sparsity after each IMP round: 1 - (1 - p)^r, the last round clipped to `target`.
    Without `rounds`, as many rounds as needed to reach the target (98% at p=0.25: 14 rounds)."""
    if not 0.0 < prune_fraction < 1.0:
        raise SltError(f"prune fraction {prune_fraction} is outside (0, 1)", "pass e.g. 0.25 (25% per round)")
    if rounds is None:
        rounds = 1 if target <= 0 else max(1, math.ceil(math.log(1 - target) / math.log(1 - prune_fraction) - 1e-9))
    if rounds < 1:
        raise SltError(f"rounds must be >= 1, got {rounds}")
    ladder = [1 - (1 - prune_fraction) ** r for r in range(1, rounds + 1)]
    if rounds is not None:
        ladder = [min(x, target) for x in ladder]
        ladder[-1] = target
    return ladder
