"""MultiSp for the spiking transformer (arXiv 2309.13302; details after arXiv 2311.12060).

1. Patch-number sparsity (patch tickets): every patch p gets an importance measured on training data,
       importance_p = mean over images and time steps of  ‖s_p‖₂ · ‖e_p‖₂
   where s_p is the ConvPEP stem embedding of patch p (its spikes, the input of the relative position embedding)
   and e_p the position-embedding current the RPE conv adds to it -- the embedding weighted by the position
   embedding. The top (1 - patch_sparsity) patches are kept (PatchSelect.set_index): the transformer blocks
   really run on fewer tokens, and the index is saved with the weights.
2. ConvPEP weight sparsity + binarization: the ConvPEP convolutions (stem and RPE) are pruned per layer to the
   target connection sparsity and binarized (w = sign(w)·α·mask): "multiprize" (default) learns edge-popup
   scores on the frozen trained weights, started at the magnitude mask; "magnitude" prunes by |w| and fine-tunes
   the latent weights. `pep_binary_first=False` keeps the first conv (analog pixels in) real-valued. "random" is
   the baseline: a random patch set of the same size and random ConvPEP masks of the same per-layer sparsity,
   then the same binarization and fine-tuning as "magnitude" (seeded by --seed).
3. ConvPEP activation binarization: everything between ConvPEP layers is LIF spikes and BN is folded at eval
   (per-channel scale and bias in `Synapse.folded()`), so the stem is a purely binary pipeline: binary weights
   times 0/1 spikes. `pep_binary_activations` checks it on data and the result is recorded.
Then the whole network is fine-tuned with the patch set and masks fixed.
"""
from __future__ import annotations

import copy
import math

import torch

from ..errors import SltError
from ..nn import ConvPEP, PatchSelect, synapses
from ..train import evaluate
from .common import Ticket, TicketConfig, epochs_of, run_train, timer
from .masks import magnitude_masks, random_masks, set_masks, sparsity
from .multiprize import attach_scores, freeze


def _find(model, cls):
    for n, m in model.named_modules():
        if isinstance(m, cls):
            return n, m
    raise SltError(f"{model.recipe.get('name')} has no {cls.__name__}",
                   "MultiSp needs a spikformer recipe (e.g. digits-spikformer-tiny, fmnist-spikformer)")


def pep_layers(model):
    name, _ = _find(model, ConvPEP)
    return [(n, m) for n, m in synapses(model) if n.startswith(name + ".")]


@torch.no_grad()
def patch_importance(model, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """[n_patches] importance (see module doc), measured on `images` in eval mode."""
    _, pep = _find(model, ConvPEP)
    acc = {"sum": None, "n": 0}

    def hook(mod, inp, out):
        s, e = inp[0], out  # [B, D, H, W]
        v = (s.flatten(2).norm(dim=1) * e.flatten(2).norm(dim=1))  # [B, H*W]
        acc["sum"] = v.sum(0) if acc["sum"] is None else acc["sum"] + v.sum(0)
        acc["n"] += v.shape[0]

    was = model.training
    model.eval()
    h = pep.rpe.register_forward_hook(hook)
    try:
        for i in range(0, len(images), batch_size):
            model(images[i:i + batch_size])
    finally:
        h.remove()
        model.train(was)
    return acc["sum"] / max(1, acc["n"])


def select_patches(model, importance: torch.Tensor, patch_sparsity: float) -> torch.Tensor:
    """Keep the most important patches so that at least `patch_sparsity` of them are removed."""
    _, sel = _find(model, PatchSelect)
    n = sel.n_patches
    drop = math.ceil(patch_sparsity * n - 1e-9)
    keep = n - drop
    if keep < 1:
        raise SltError(f"patch sparsity {patch_sparsity} removes all {n} patches", "use a smaller --patch-sparsity")
    idx = torch.topk(importance, keep).indices
    sel.set_index(idx)
    return sel.index.clone()


@torch.no_grad()
def pep_binary_activations(model, images: torch.Tensor) -> bool:
    """True when every input of every ConvPEP layer after the first, and the ConvPEP output, is 0/1 on `images`."""
    layers = pep_layers(model)
    _, pep = _find(model, ConvPEP)
    ok = {"v": True}

    def check(x):
        if not bool(torch.all((x == 0) | (x == 1)).item()):
            ok["v"] = False

    hooks = [m.register_forward_pre_hook(lambda mod, inp: check(inp[0])) for _, m in layers[1:]]
    hooks.append(pep.register_forward_hook(lambda mod, inp, out: check(out)))
    was = model.training
    model.eval()
    try:
        model(images)
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return ok["v"]


PEP_METHODS = ("magnitude", "multiprize", "random")


def search(dense, data, cfg: TicketConfig) -> Ticket:
    if cfg.pep_method not in PEP_METHODS:
        raise SltError(f"ConvPEP method {cfg.pep_method!r} unknown", f"use one of {', '.join(PEP_METHODS)}")
    t = timer()
    model = copy.deepcopy(dense)
    model.recipe = copy.deepcopy(dense.recipe)
    layers = pep_layers(model)
    if cfg.pep_method == "random":   # the baseline: random patches, random masks
        g = torch.Generator().manual_seed(int(cfg.seed) + 1)
        imp = torch.rand(_find(model, PatchSelect)[1].n_patches, generator=g)
    else:
        imp = patch_importance(model, data.train.x[:1024])
    idx = select_patches(model, imp, cfg.patch_sparsity)
    if cfg.pep_method in ("magnitude", "random"):
        set_masks(layers, magnitude_masks(layers, cfg.sparsity, "layer") if cfg.pep_method == "magnitude"
                  else random_masks(layers, cfg.sparsity, seed=cfg.seed + 1))
        for _, m in layers:
            m.binary = True
    else:
        attach_scores(layers, 1.0 - cfg.sparsity, init="magnitude")
    if not cfg.pep_binary_first:  # the first conv reads analog pixels: keep its (pruned) weights real-valued
        layers[0][1].binary = False
    e = epochs_of(model, cfg)
    h = run_train(model, data, cfg, e)
    if cfg.pep_method == "multiprize":
        freeze(layers)
    _, sel = _find(model, PatchSelect)
    info = {"patch_sparsity": 1.0 - sel.index.numel() / sel.n_patches, "patch_sparsity_target": cfg.patch_sparsity,
            "n_patches": sel.n_patches, "kept_patches": idx.tolist(), "patch_importance": imp.tolist(),
            "pep_connection_sparsity": sparsity(model, layers), "pep_layers": [n for n, _ in layers],
            "pep_method": cfg.pep_method, "pep_binary_weights": all(m.binary for _, m in layers[1:]),
            "pep_first_layer_binary": layers[0][1].binary,
            "pep_binary_activations": pep_binary_activations(model, data.test.x[:256]), "epochs": e}
    hist = [{"round": 1, "target": cfg.sparsity, "sparsity": info["pep_connection_sparsity"],
             "patch_sparsity": info["patch_sparsity"], "test_acc": evaluate(model, data.test),
             "val_acc": h[-1].get("val_acc") if h else None, "seconds": t()}]
    return Ticket(model, "multisp", cfg.sparsity, hist, t(), t(), info)
