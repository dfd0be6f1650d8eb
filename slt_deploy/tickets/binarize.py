"""Binarize any ticket: keep its masks (and patch set), make the kept weights binary, w = sign(w)·α·mask with
α = ‖mask⊙w‖₁/‖mask‖₁ per layer, and fine-tune the latent weights (straight-through sign). The input is a ticket
(or dense) checkpoint; the comparison columns of the report ("dense_*") then refer to that input model."""
from __future__ import annotations

import copy

from ..train import evaluate
from .common import Ticket, TicketConfig, binarize, epochs_of, timer
from .masks import prunable, sparsity


def search(source, data, cfg: TicketConfig) -> Ticket:
    t = timer()
    model = copy.deepcopy(source)
    model.recipe = copy.deepcopy(source.recipe)
    layers = prunable(model, cfg.only)
    before = sparsity(model)
    e = cfg.binarize_epochs if cfg.binarize_epochs is not None else epochs_of(model, cfg)
    binarize(model, data, cfg, layers, epochs=e)
    hist = [{"round": 0, "sparsity": before, "test_acc": evaluate(source, data.test), "seconds": 0.0},
            {"round": "binarized", "sparsity": sparsity(model), "test_acc": evaluate(model, data.test),
             "seconds": t()}]
    return Ticket(model, "binarize", before, hist, 0.0, t(),
                  {"epochs": e, "compared_with": "the source checkpoint (dense_* fields)"})
