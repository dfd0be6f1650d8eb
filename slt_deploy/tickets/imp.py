"""Iterative magnitude pruning with late rewinding (Frankle et al.; for SNNs Kim et al., ECCV 2022).

Round r: prune `prune_fraction` of the remaining weights by magnitude (global or per layer), rewind the surviving
weights (and BN statistics, biases) to their values at epoch k of the dense training, retrain, repeat. The epoch-k
state is obtained by replaying the dense recipe's training from its seeded initialisation for k epochs with the
same schedule and data order (training is deterministic on CPU for a fixed thread count).
"""
from __future__ import annotations

import copy
import os

import torch

from ..checkpoint import save
from ..train import evaluate, train
from ..zoo import build_model
from .common import Ticket, TicketConfig, binarize, epochs_of, recipe_for, run_train, timer
from .masks import get_masks, imp_schedule, magnitude_masks, prunable, set_masks, sparsity


def rewind_point(recipe: dict, data, k: int, progress: bool = False) -> dict:
    """State dict after k epochs of the recipe's own training from its seeded initialisation (k = 0: init)."""
    m = build_model(recipe)
    if k > 0:
        tc = recipe["train"]
        train(m, data, tc, epochs=int(tc.get("epochs", 1)), progress=progress, seed=int(recipe.get("seed", 0)),
              on_epoch=lambda ep, _: ep >= k)
    return {n: v.detach().clone() for n, v in m.state_dict().items()}


def rewind(model, state: dict, layers):
    """Load `state` everywhere but keep the current masks: kept weights get exactly their saved values, pruned
    weights are zero."""
    masks = get_masks(layers)
    own = model.state_dict()
    with torch.no_grad():
        for n, v in state.items():
            if n in own and not n.endswith(".mask"):
                own[n].copy_(v)
    set_masks(layers, masks)


def search(dense, data, cfg: TicketConfig) -> Ticket:
    t = timer()
    model = copy.deepcopy(dense)
    model.recipe = copy.deepcopy(dense.recipe)
    layers = prunable(model, cfg.only)
    state_k = rewind_point(dense.recipe, data, cfg.rewind_epoch, cfg.progress)
    ladder = imp_schedule(cfg.sparsity, cfg.prune_fraction, cfg.rounds)
    e = epochs_of(model, cfg)
    hist = [{"round": 0, "target": 0.0, "sparsity": sparsity(model, layers), "test_acc": evaluate(model, data.test),
             "seconds": t()}]
    for r, s in enumerate(ladder, 1):
        set_masks(layers, magnitude_masks(layers, s, cfg.scope))
        rewind(model, state_k, layers)
        h = run_train(model, data, cfg, e)
        row = {"round": r, "target": s, "sparsity": sparsity(model, layers), "test_acc": evaluate(model, data.test),
               "val_acc": h[-1].get("val_acc") if h else None, "seconds": t()}
        hist.append(row)
        if cfg.progress:
            print(f"IMP round {r}/{len(ladder)}: sparsity {100 * row['sparsity']:.2f}% "
                  f"test {row['test_acc']:.2f}% ({row['seconds']:.0f}s)")
        if cfg.save_rounds:
            model.recipe = recipe_for(model)
            save(model, os.path.join(cfg.save_rounds, f"round_{r:02d}"),
                 metrics={"test_acc": row["test_acc"], "sparsity": row["sparsity"]}, labels=data.labels,
                 extra={"ticket": {"method": "imp", "round": r, "target_sparsity": s,
                                   "measured_sparsity": row["sparsity"]}})
    search_s = t()
    info = {"rounds": len(ladder), "prune_fraction": cfg.prune_fraction, "rewind_epoch": cfg.rewind_epoch,
            "scope": cfg.scope, "round_epochs": e}
    if cfg.binarize:
        binarize(model, data, cfg, layers)
        info["binarized_after_imp"] = True
        hist.append({"round": "binarized", "target": cfg.sparsity, "sparsity": sparsity(model, layers),
                     "test_acc": evaluate(model, data.test), "seconds": t()})
    return Ticket(model, "imp", cfg.sparsity, hist, search_s, t(), info)
