"""Random tickets: the baseline every plot shows. The same per-layer sparsity as a reference ticket (`like`, a
ticket folder) or as global/layer-wise magnitude pruning of the dense network at the target would give, but random
masks; trained from the same late-rewinding point as IMP for the same number of epochs."""
from __future__ import annotations

import copy
import os

from ..checkpoint import read_meta
from ..errors import SltError
from ..train import evaluate
from ..zoo import build_model
from .common import Ticket, TicketConfig, binarize, epochs_of, run_train, timer
from .imp import rewind, rewind_point
from .masks import magnitude_masks, prunable, random_masks, set_masks, sparsity


def per_layer_target(dense, cfg: TicketConfig) -> dict:
    if cfg.like:
        meta = read_meta(cfg.like)
        rows = (meta.get("ticket") or {}).get("layers")
        if not rows:
            raise SltError(f"{os.path.join(cfg.like, 'model.json')} holds no ticket layer list",
                           "pass a folder written by 'slt-deploy ticket'")
        return {r["layer"]: float(r["sparsity"]) for r in rows}
    ref = copy.deepcopy(dense)
    layers = prunable(ref, cfg.only)
    masks = magnitude_masks(layers, cfg.sparsity, cfg.scope, cfg.layer_gain)
    return {n: 1.0 - float(m.sum()) / m.numel() for n, m in masks.items()}


def search(dense, data, cfg: TicketConfig) -> Ticket:
    t = timer()
    target = per_layer_target(dense, cfg)
    model = build_model(dense.recipe)
    layers = [(n, m) for n, m in prunable(model, cfg.only) if n in target]
    set_masks(layers, random_masks(layers, target, seed=cfg.seed + 1))
    rewind(model, rewind_point(dense.recipe, data, cfg.rewind_epoch, cfg.progress), layers)
    e = epochs_of(model, cfg)
    run_train(model, data, cfg, e)
    hist = [{"round": 1, "target": cfg.sparsity, "sparsity": sparsity(model, layers),
             "test_acc": evaluate(model, data.test), "seconds": t()}]
    info = {"per_layer_from": cfg.like or f"magnitude-{cfg.scope}", "rewind_epoch": cfg.rewind_epoch, "epochs": e}
    if cfg.binarize:
        binarize(model, data, cfg, layers)
        info["binarized"] = True
    return Ticket(model, "random", cfg.sparsity, hist, 0.0, t(), info)
