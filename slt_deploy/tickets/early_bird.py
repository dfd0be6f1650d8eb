"""Early-Bird tickets (You et al., ICLR 2020; for SNNs Kim et al., ECCV 2022).

Train from the initialisation; after every epoch take the magnitude mask at the target sparsity. Keep the last q
masks; stop as soon as the newest mask's distance to each of the q-1 before it is below tau (q = 5), and not before
epoch `eb_min_epochs` (default q). Then prune to that mask and retrain. The search time (until the stop) is
recorded next to IMP's. `eb_checks` N > 1 (`--eb-checks N`) takes a mask every 1/N epoch instead (after that many
optimizer steps and at the epoch's end), so the window of q masks spans q/N epochs and the search can stop inside
the first epochs; search_epochs and stop_epoch are then fractional.

The distance. Kim et al. use the Hamming distance normalised by ALL weights ("absolute", tau = 0.02). Two masks
at sparsity s differ in at most 2(1 - s) of the weights, so at 98 % the absolute distance is at most 0.04 and
tau = 0.02 only asks that half of the 2 % kept weights agree: on the fmnist bench the window distances were
0.013-0.022 from the second epoch on, the stop fired as soon as q masks existed (epoch 5 or 6) and the ticket was
an early, still moving magnitude mask pruned in one shot -- worse than a random mask with the same per-layer
sparsity. The default is therefore the "relative" distance, the Hamming distance divided by the kept weights of
the two masks (|a xor b| / (|a| + |b|), 0 = same kept set, 1 = disjoint), whose meaning does not depend on the
sparsity: tau = 0.1 stops when fewer than 10 % of the kept weights still change between epochs.
"""
from __future__ import annotations

from collections import deque

from ..train import evaluate
from ..zoo import build_model
from .common import Ticket, TicketConfig, binarize, epochs_of, run_train, timer
from .masks import magnitude_masks, mask_distance, prunable, set_masks, sparsity


def relative_distance(a: dict, b: dict) -> float:
    """|a xor b| / (|a| + |b|) over all layers: the fraction of the kept weights the two masks do not share."""
    diff = sum(int((a[n] != b[n]).sum().item()) for n in a)
    kept = sum(int(a[n].sum().item()) + int(b[n].sum().item()) for n in a)
    return diff / max(1, kept)


DISTANCES = {"absolute": mask_distance, "relative": relative_distance}


def window_distance(masks, distance: str = "absolute") -> float:
    """Largest distance between the newest mask and each earlier one in the window."""
    masks = list(masks)
    f = DISTANCES[distance]
    return max(f(masks[-1], m) for m in masks[:-1])


def converged(masks, q: int = 5, tau: float = 0.02, distance: str = "absolute") -> bool:
    """The Early-Bird stop: at least q masks seen and the last q are all within tau of the newest."""
    masks = list(masks)
    return len(masks) >= q and window_distance(masks[-q:], distance) < tau


def search(dense, data, cfg: TicketConfig, max_epochs: int | None = None) -> Ticket:
    t = timer()
    model = build_model(dense.recipe)
    layers = prunable(model, cfg.only)
    window = deque(maxlen=cfg.q)
    hist, found = [], {}
    e = epochs_of(model, cfg)
    checks = int(cfg.eb_checks)
    # the earliest stop, in masks taken: the window q, or --eb-min-epochs epochs of masks
    min_masks = checks * int(cfg.eb_min_epochs) if cfg.eb_min_epochs else cfg.q
    min_e = -(-min_masks // checks)
    # the search follows the dense recipe's schedule (at least min_e epochs); `epochs` is the retraining after it
    max_e = int(max_epochs or max(int(dense.recipe["train"].get("epochs", e)), min_e))

    def take(ep: float):   # hist holds only the search's masks so far: the n-th mask is row n
        window.append(magnitude_masks(layers, cfg.sparsity, cfg.scope, cfg.layer_gain))
        d = window_distance(window, cfg.eb_distance) if len(window) > 1 else 1.0
        hist.append({"round": f"search-{len(hist) + 1}", "epoch": round(ep, 4), "window_distance": d,
                     "seconds": t()})
        if len(hist) >= min_masks and converged(window, cfg.q, cfg.tau, cfg.eb_distance):
            found["epoch"] = round(ep, 4)
            return True
        return False

    def on_step(ep0, step, steps, _m):   # masks inside an epoch, after steps*i/checks steps (its end: on_epoch)
        return take(ep0 + step / steps) if any(step == round(steps * i / checks) for i in range(1, checks)) else False

    run_train(model, data, cfg, max_e, on_epoch=lambda ep, _m: take(ep), on_step=on_step if checks > 1 else None)
    search_s = t()
    set_masks(layers, window[-1])
    run_train(model, data, cfg, e)
    hist.append({"round": "retrained", "sparsity": sparsity(model, layers), "test_acc": evaluate(model, data.test),
                 "seconds": t()})
    info = {"q": cfg.q, "tau": cfg.tau, "distance": cfg.eb_distance, "min_epochs": min_e, "checks_per_epoch": checks,
            "converged": "epoch" in found, "stop_epoch": found.get("epoch"),
            "search_epochs": max([h["epoch"] for h in hist if "epoch" in h], default=0), "retrain_epochs": e,
            "scope": cfg.scope,
            "distill": cfg.distill}
    if cfg.binarize:
        binarize(model, data, cfg, layers)
        info["binarized"] = True
    return Ticket(model, "early-bird", cfg.sparsity, hist, search_s, t(), info)
