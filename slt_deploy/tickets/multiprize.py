"""Multi-prize tickets (biprop; Diffenderfer & Kailkhura, ICLR 2021; for SNNs arXiv 2311.12060).

The weights keep their random initial values (the recipe's seeded initialisation). Every weight gets a learned
score; each layer uses its top-k scored weights, binarized: w = sign(w)·α·mask, α = ‖mask⊙w‖₁/‖mask‖₁ per layer
(Synapse with `binary=True` and `scores`); gradients reach the scores straight through the top-k and the sign.
Only scores, batch norm and biases train. At the end the scores are frozen into the layer's `mask`.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..train import evaluate
from ..zoo import build_model
from .common import Ticket, TicketConfig, epochs_of, run_train, timer
from .masks import prunable, sparsity


def attach_scores(layers, density: float, init: str = "kaiming", seed: int = 0):
    """Freeze each layer's weight, give it edge-popup scores (kaiming-uniform, or |w| for init="magnitude",
    which starts the search at the magnitude mask) and make it binary."""
    g = torch.Generator().manual_seed(int(seed))
    for _, m in layers:
        m.weight.requires_grad_(False)
        if init == "magnitude":
            sc = m.weight.detach().abs().clone() * m.mask
        else:
            fan_in = m.weight[0].numel()
            bound = math.sqrt(6.0 / ((1 + 5.0) * fan_in))  # kaiming_uniform_(a=sqrt(5)), seeded
            sc = (torch.rand(m.weight.shape, generator=g) * 2 - 1) * bound
        m.scores = nn.Parameter(sc)
        m.score_density = float(density)
        m.binary = True


def freeze(layers):
    for _, m in layers:
        m.freeze_scores()
        m.weight.requires_grad_(True)


def search(dense, data, cfg: TicketConfig) -> Ticket:
    t = timer()
    model = build_model(dense.recipe)  # random initial weights, never trained
    layers = prunable(model, cfg.only)
    attach_scores(layers, 1.0 - cfg.sparsity, seed=cfg.seed)
    e = epochs_of(model, cfg)
    h = run_train(model, data, cfg, e)
    freeze(layers)
    hist = [{"round": 1, "target": cfg.sparsity, "sparsity": sparsity(model, layers),
             "test_acc": evaluate(model, data.test), "val_acc": h[-1].get("val_acc") if h else None,
             "seconds": t()}]
    return Ticket(model, "multiprize", cfg.sparsity, hist, t(), t(), {"epochs": e, "weights": "random init"})
