"""Early-Bird tickets (You et al., ICLR 2020; for SNNs Kim et al., ECCV 2022).

Train from the initialisation; after every epoch take the magnitude mask at the target sparsity. Keep the last q
masks; stop as soon as the newest mask's normalised Hamming distance to each of the q-1 before it is below tau
(defaults q = 5, tau = 0.02). Then prune to that mask and retrain. The search time (until the stop) is recorded
next to IMP's.
"""
from __future__ import annotations

from collections import deque

from ..train import evaluate
from ..zoo import build_model
from .common import Ticket, TicketConfig, binarize, epochs_of, run_train, timer
from .masks import magnitude_masks, mask_distance, prunable, set_masks, sparsity


def window_distance(masks) -> float:
    """Largest distance between the newest mask and each earlier one in the window."""
    masks = list(masks)
    return max(mask_distance(masks[-1], m) for m in masks[:-1])


def converged(masks, q: int = 5, tau: float = 0.02) -> bool:
    """The Early-Bird stop: at least q masks seen and the last q are all within tau of the newest."""
    masks = list(masks)
    return len(masks) >= q and window_distance(masks[-q:]) < tau


def search(dense, data, cfg: TicketConfig, max_epochs: int | None = None) -> Ticket:
    t = timer()
    model = build_model(dense.recipe)
    layers = prunable(model, cfg.only)
    window = deque(maxlen=cfg.q)
    hist, found = [], {}
    e = epochs_of(model, cfg)
    max_e = int(max_epochs or e)

    def on_epoch(ep, _m):
        window.append(magnitude_masks(layers, cfg.sparsity, cfg.scope))
        d = window_distance(window) if len(window) > 1 else 1.0
        hist.append({"round": f"search-{ep}", "epoch": ep, "window_distance": d, "seconds": t()})
        if converged(window, cfg.q, cfg.tau):
            found["epoch"] = ep
            return True
        return False

    run_train(model, data, cfg, max_e, on_epoch=on_epoch)
    search_s = t()
    set_masks(layers, window[-1])
    run_train(model, data, cfg, e)
    hist.append({"round": "retrained", "sparsity": sparsity(model, layers), "test_acc": evaluate(model, data.test),
                 "seconds": t()})
    info = {"q": cfg.q, "tau": cfg.tau, "converged": "epoch" in found, "stop_epoch": found.get("epoch"),
            "search_epochs": len([h for h in hist if "epoch" in h]), "retrain_epochs": e, "scope": cfg.scope}
    if cfg.binarize:
        binarize(model, data, cfg, layers)
        info["binarized"] = True
    return Ticket(model, "early-bird", cfg.sparsity, hist, search_s, t(), info)
