"""Batch-norm recalibration of binary tickets (the last step of `slt-deploy ticket` when the ticket has binary
weights; `--bn-recal N`, 0 = off).

During training, batch norm keeps running statistics as an exponential average (momentum 0.1) of the batch
statistics of the last few hundred steps. With binarized weights (w = sign(latent)·α·mask) a small update of a latent
weight flips a sign and moves the next layer's pre-activations at once, so the running statistics lag behind the
weights the training ends with, and the evaluated network (BN folded from those statistics) differs from the
trained one by a random amount: the Fashion-MNIST MultiSp ticket's validation accuracy swung by 1-4 pt from one
epoch to the next even as the learning rate went to zero (docs/tickets.md, "Batch-norm recalibration").

`recalibrate` re-estimates every batch norm's statistics with the final weights: the cumulative (equal-weight)
average over N training images, forward passes only. `apply` does it and keeps the result only when the
validation accuracy is higher (a selection on the validation split, never on the test split); the record says which
was kept.
"""
from __future__ import annotations

import torch

from ..nn import synapses
from ..train import evaluate

DEFAULT_IMAGES = 10000


def batch_norms(model) -> list:
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


@torch.no_grad()
def recalibrate(model, images: torch.Tensor, batch_size: int = 256, seed: int = 0) -> None:
    """Replace every batch norm's running mean and variance by their equal-weight average over `images` (the batch
    statistics of each batch of `batch_size`, as training computes them), with the model's current weights. The
    weights, masks and everything else stay as they are."""
    bns = batch_norms(model)
    momenta = [b.momentum for b in bns]
    was = model.training
    g = torch.Generator().manual_seed(int(seed))
    try:
        for b in bns:
            b.reset_running_stats()
            b.momentum = None  # cumulative moving average: every batch counts the same
        model.train()
        for i in range(0, len(images), batch_size):
            model(images[i:i + batch_size], generator=g)
    finally:
        for b, m in zip(bns, momenta):
            b.momentum = m
        model.train(was)


@torch.no_grad()
def apply(model, data, images: int = DEFAULT_IMAGES, seed: int = 0) -> dict | None:
    """Recalibrate a binary ticket's batch norms on `images` training images (the first of a seeded permutation)
    and keep the result when it scores higher on the validation split, else put the trained statistics back.
    Changes only `model`'s BN buffers; returns the record, or None when nothing applies (images 0, no binary layer,
    no batch norm, no validation split)."""
    bns = batch_norms(model)
    if images <= 0 or not any(m.binary for _, m in synapses(model)) or not bns or not len(data.val.x):
        return None
    n = min(int(images), len(data.train.x))
    idx = torch.randperm(len(data.train.x), generator=torch.Generator().manual_seed(int(seed) + 101))[:n]
    trained = [{k: getattr(b, k).clone() for k in BUFFERS} for b in bns]
    before = evaluate(model, data.val)
    recalibrate(model, data.train.x[idx], seed=seed)
    after = evaluate(model, data.val)
    kept = after > before
    if not kept:
        for b, saved in zip(bns, trained):
            for k, v in saved.items():
                getattr(b, k).copy_(v)
    model.eval()
    return {"images": n, "val_acc_trained": before, "val_acc_recalibrated": after,
            "kept": "recalibrated" if kept else "trained"}
