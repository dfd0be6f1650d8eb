"""The interface every ticket method shares.

    search(dense_model, data, cfg: TicketConfig) -> Ticket        (imp.search, early_bird.search, ...)
    finalize(ticket, data, out_dir, dense_model) -> dict           measure, save a normal checkpoint, report

A method receives the trained dense SpikingNet (its recipe says how it was trained) and returns a Ticket: the
pruned (and possibly binarized) model plus its search history. `finalize` measures everything from the stored
weights and from test data (accuracy, per-layer sparsity, spike rates, synaptic ops vs the dense network), writes
the checkpoint with `extra={"ticket": {...}}` in model.json and checks that the reloaded checkpoint reproduces the
ticket's outputs bit for bit.
"""
from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict, dataclass, field

import torch

from ..checkpoint import atomic_write, load, save
from ..errors import SltError
from ..nn import synapses
from ..train import evaluate, is_main, train
from . import activity
from .bn_recal import DEFAULT_IMAGES as BN_RECAL_IMAGES
from .masks import SCOPES, check_sparsity, layer_stats, sparsity


@dataclass
class TicketConfig:
    method: str
    sparsity: float                      # target fraction of pruned weights (over the layers the method prunes)
    scope: str = "global"                # magnitude pruning over all layers ("global": |w|/layer rms,
    #                                      "global-raw": |w|) or per layer ("layer")
    layer_gain: dict | None = None       # global scopes: {kind or module path: g}, scores of those layers x g
    prune_fraction: float = 0.25         # IMP: fraction of the remaining weights removed per round
    rounds: int | None = None            # IMP: rounds (default: as many as the target needs)
    rewind_epoch: int = 1                # IMP / random: late-rewinding point k (epochs of the dense schedule)
    rewind: str = "weights"              # IMP: "weights" (survivors back to their epoch-k values, a fresh
    #                                      schedule of `epochs`) or "lr" (learning-rate rewinding, Renda et al.
    #                                      2020: weights kept, the dense schedule replayed from epoch E - epochs)
    distill: bool = False                # knowledge distillation from the dense model during (re)training and
    kd_alpha: float = 0.5                #   binarization: (1-a)·CE + a·T²·KL(teacher/T || student/T)
    kd_temp: float = 4.0
    teacher: str | None = None           # distillation teacher checkpoint (default: the model the search starts
    #                                      from; e.g. the dense model when binarizing an IMP round)
    resume: bool = False                 # IMP: continue from the last finished round in save_rounds
    eb_distance: str = "relative"        # Early-Bird: "relative" (Hamming / kept weights of the two masks) or
    #                                      "absolute" (Hamming / all weights, Kim et al.; see early_bird.py)
    eb_min_epochs: int = 0               # Early-Bird: do not stop before this epoch (0: the window q)
    eb_checks: int = 1                   # Early-Bird: masks taken per epoch (N > 1: every 1/N epoch, after that
    #                                      many optimizer steps; the window q then spans q/N epochs)
    epochs: int | None = None            # (re)training epochs per round / search epochs (default: recipe's)
    steps: list | None = None            # IMP: the sparsity after each round (increasing, the last = sparsity);
    #                                      overrides prune_fraction / rounds (fine steps from a sparse ticket)
    round_epochs: list | None = None     # IMP: retraining epochs of round 1, 2, ... (the last repeats); overrides
    #                                      `epochs` per round (late, sparse rounds need longer recovery)
    binarize: bool = False               # binarize the ticket's kept weights and fine-tune
    binarize_epochs: int | None = None   # default: `epochs`
    binarize_kind: str = "all"           # which layers --binarize makes binary: "all", "conv" (a float head),
    #                                      "spikes" (all but the first layer, which reads analog pixels) or
    #                                      "hidden" (all but the first and the last layer, the usual BNN choice)
    q: int = 5                           # Early-Bird window
    tau: float | None = None             # Early-Bird distance threshold (None: 0.1 relative, 0.02 absolute)
    patch_sparsity: float = 0.376        # MultiSp: fraction of patches removed
    pep_method: str = "multiprize"       # MultiSp: ConvPEP masks by learned scores on the frozen weights
    #                                      ("multiprize") or by |w| then weight fine-tuning ("magnitude")
    pep_binary_first: bool = True        # MultiSp: binarize the first ConvPEP conv too (it reads analog pixels)
    bn_recal: int = BN_RECAL_IMAGES      # binary tickets: re-estimate batch-norm statistics on this many training
    #                                      images after training, kept if validation accuracy rises (0: off;
    #                                      bn_recal.py)
    lr: float | None = None              # override the recipe's learning rate
    precision: str | None = None         # override the recipe's training precision ("fp32", "bf16": nn/precision.py)
    seed: int = 0
    progress: bool = False
    only: str | None = None              # prune only the layers under this module path
    like: str | None = None              # random: copy per-layer sparsity from this ticket folder
    save_rounds: str | None = None       # IMP: folder for one checkpoint per round

    def validate(self):
        self.sparsity = check_sparsity(self.sparsity)
        self.patch_sparsity = check_sparsity(self.patch_sparsity, "patch sparsity")
        if self.scope not in SCOPES:
            raise SltError(f"pruning scope {self.scope!r} unknown", f"use one of {', '.join(SCOPES)}")
        if self.q < 2:
            raise SltError(f"Early-Bird window q={self.q} is too small", "use q >= 2 (default 5)")
        if self.tau is None:
            self.tau = 0.1 if self.eb_distance == "relative" else 0.02
        if not self.tau > 0:
            raise SltError(f"Early-Bird threshold tau={self.tau} must be > 0", "default 0.02")
        if self.binarize_kind not in BINARIZE_KINDS:
            raise SltError(f"binarize kind {self.binarize_kind!r} unknown", f"use one of {', '.join(BINARIZE_KINDS)}")
        if self.rewind not in REWINDS:
            raise SltError(f"rewind mode {self.rewind!r} unknown", f"use one of {', '.join(REWINDS)}")
        if self.eb_distance not in ("relative", "absolute"):
            raise SltError(f"Early-Bird distance {self.eb_distance!r} unknown", "use relative or absolute")
        if not 0.0 <= self.kd_alpha <= 1.0:
            raise SltError(f"distillation weight kd_alpha={self.kd_alpha} is outside [0, 1]", "pass e.g. 0.5")
        if not self.kd_temp > 0:
            raise SltError(f"distillation temperature kd_temp={self.kd_temp} must be > 0", "pass e.g. 4")
        if self.eb_checks < 1:
            raise SltError(f"Early-Bird checks per epoch {self.eb_checks} must be >= 1", "pass e.g. 4")
        if self.bn_recal < 0:
            raise SltError(f"--bn-recal {self.bn_recal} is negative", "pass the number of training images, 0 = off")
        if self.rewind_epoch < 0:
            raise SltError(f"rewind epoch {self.rewind_epoch} is negative", "pass k >= 0")
        return self


REWINDS = ("weights", "lr")
BINARIZE_KINDS = ("all", "conv", "spikes", "hidden")


@dataclass
class Ticket:
    model: object
    method: str
    target: float
    history: list = field(default_factory=list)   # rows: round, sparsity, accuracy, seconds (cumulative ok)
    search_seconds: float = 0.0                     # time to FIND the mask (IMP: all rounds; EB: until the stop)
    total_seconds: float = 0.0                      # search + final (re)training
    info: dict = field(default_factory=dict)


def train_cfg(model, cfg: TicketConfig) -> dict:
    tc = dict(model.recipe["train"])
    if cfg.lr is not None:
        tc["lr"] = float(cfg.lr)
    if cfg.precision is not None:
        tc["precision"] = cfg.precision
    return tc


def epochs_of(model, cfg: TicketConfig) -> int:
    return int(cfg.epochs if cfg.epochs is not None else model.recipe["train"].get("epochs", 1))


def set_teacher(cfg: TicketConfig, dense_model, data):
    """With cfg.distill, the dense model's logits/T on every training image, computed once per search (the
    teacher is fixed: eval mode, BN folded) and used by every run_train of the search."""
    cfg._teacher = None
    if cfg.distill:
        from ..train import predict_logits

        teacher = load(cfg.teacher)[0] if cfg.teacher else dense_model
        cfg._teacher = (predict_logits(teacher, data.train.x), cfg.kd_alpha, cfg.kd_temp)
    return cfg


def run_train(model, data, cfg: TicketConfig, epochs: int, on_epoch=None, lr_scale: float = 1.0,
              start_epoch: int = 0, on_step=None):
    """Train with the recipe's optimizer and schedule (over `epochs`, from `start_epoch`), distilling from the
    dense model when cfg.distill (set_teacher)."""
    tc = train_cfg(model, cfg)
    tc["lr"] = float(tc.get("lr", 1e-3)) * lr_scale
    return train(model, data, tc, epochs=epochs, progress=cfg.progress, on_epoch=on_epoch, seed=cfg.seed,
                 start_epoch=start_epoch, teacher=getattr(cfg, "_teacher", None), on_step=on_step)


def binarize(model, data, cfg: TicketConfig, layers=None, epochs: int | None = None):
    """Make the kept weights binary (w = sign(w)·α·mask per layer) and fine-tune; the masks stay fixed.
    cfg.binarize_kind "conv" binarizes only the convolutions (the linear head stays float), "spikes" every layer
    but the model's first one (the one that reads analog pixels under direct encoding), "hidden" every layer but
    the first and the last (the output layer, whose few weights set the logits' scale per class)."""
    every = synapses(model)
    first, last = (every[0][1], every[-1][1]) if every else (None, None)
    kind = cfg.binarize_kind
    for _, m in (layers if layers is not None else every):
        if (kind == "all" or m.kind == kind or (kind == "spikes" and m is not first)
                or (kind == "hidden" and m is not first and m is not last)):
            m.binary = True
    e = cfg.binarize_epochs if cfg.binarize_epochs is not None else (epochs or epochs_of(model, cfg))
    if e > 0:
        run_train(model, data, cfg, e)
    return model


def recipe_for(model) -> dict:
    """The model's recipe with the binary flags that rebuild it exactly: `binary: true` when every synaptic layer
    is binary, `arch.binary_pep: true` when exactly the ConvPEP layers are, else `binary_layers: [paths]`."""
    r = copy.deepcopy(model.recipe)
    r.pop("binary_layers", None)
    layers = synapses(model)
    bin_names = [n for n, m in layers if m.binary]
    r["binary"] = False
    if isinstance(r.get("arch"), dict):
        r["arch"].pop("binary_pep", None)
    if len(bin_names) == len(layers) and layers:
        r["binary"] = True
    elif bin_names:
        pep = [n for n, _ in layers if ".stem." in n or n.endswith(".rpe")]
        if r["arch"].get("type") == "spikformer" and sorted(pep) == sorted(bin_names):
            r["arch"]["binary_pep"] = True
        else:
            r["binary_layers"] = bin_names
    return r


@torch.no_grad()
def measure(model, data, dense_model=None, n_activity: int | None = 512) -> dict:
    """Both rewards, measured: accuracy, weight sparsity (from stored weights), spike rates and synaptic ops on
    test data, and the same for the dense network when given."""
    imgs = data.test.x if n_activity is None else data.test.x[:n_activity]
    ops = activity.synaptic_ops(model, imgs)
    rates = activity.spike_rates(model, imgs)
    summ = activity.summarize(ops, rates)
    out = {"test_acc": evaluate(model, data.test), "sparsity": sparsity(model), "layers": layer_stats(model),
           "activity_samples": len(imgs), "spike_rate": summ["spike_rate"], "spikes_per_sample": summ["spikes"],
           "sops": summ["sops"], "macs": summ["macs"], "energy_pj": summ["energy_pj"],
           "dense_fanout_sops": summ["dense_fanout_sops"], "per_layer_ops": ops,
           "per_layer_rates": {k: v["rate"] for k, v in rates.items()}}
    if dense_model is not None:
        d_ops = activity.synaptic_ops(dense_model, imgs)
        d = activity.summarize(d_ops, activity.spike_rates(dense_model, imgs))
        out.update(dense_test_acc=evaluate(dense_model, data.test), dense_sops=d["sops"], dense_macs=d["macs"],
                   dense_energy_pj=d["energy_pj"], dense_spike_rate=d["spike_rate"],
                   sop_ratio=summ["sops"] / max(1e-12, d["sops"]),
                   energy_ratio=summ["energy_pj"] / max(1e-12, d["energy_pj"]))
        out["combined_saving"] = 1.0 - out["energy_ratio"]
    return out


def outputs_equal_after_reload(model, out_dir, images) -> bool:
    loaded, _ = load(out_dir)
    model.eval()
    with torch.no_grad():
        a = model(images)
        b = loaded(images)
    return bool(torch.equal(a, b))


def finalize(ticket: Ticket, data, out_dir: str, dense_model=None, labels=None, extra_info: dict | None = None):
    """Measure the ticket, save it as a normal checkpoint (model.json gets recipe binary flags + "ticket"), write
    ticket.json (the measurements) and the per-round summary, and verify the reload is bit-exact."""
    model = ticket.model
    model.eval()
    model.recipe = recipe_for(model)
    m = measure(model, data, dense_model)
    info = {"method": ticket.method, "target_sparsity": ticket.target, "measured_sparsity": m["sparsity"],
            "binary": any(layer.binary for _, layer in synapses(model)),
            "layers": [{k: r[k] for k in ("layer", "total", "kept", "sparsity", "binary")} for r in m["layers"]],
            "search_seconds": ticket.search_seconds, "total_seconds": ticket.total_seconds,
            **ticket.info, **(extra_info or {})}
    metrics = {"test_acc": m["test_acc"], "sparsity": m["sparsity"], "spike_rate": m["spike_rate"],
               "sops": m["sops"], "macs": m["macs"]}
    for k in ("dense_test_acc", "sop_ratio", "energy_ratio", "combined_saving"):
        if k in m:
            metrics[k] = m[k]
    if not is_main():  # data-parallel search (torchrun): the same ticket on every rank, rank 0 writes it
        return {**info, **{k: v for k, v in m.items() if k not in ("layers", "per_layer_ops")}}
    save(model, out_dir, metrics=metrics, labels=labels or data.labels, extra={"ticket": info})
    info["reload_bit_exact"] = outputs_equal_after_reload(model, out_dir, data.test.x[:64])
    if not info["reload_bit_exact"]:
        raise SltError(f"{out_dir}: the reloaded ticket does not reproduce the ticket's outputs",
                       "report this as a bug (recipe flags do not rebuild the ticket)")
    report = {"ticket": info, "measurements": m, "history": ticket.history}
    atomic_write(os.path.join(out_dir, "ticket.json"), json.dumps(report, indent=2, default=float))
    if ticket.history:
        from .report import plot_sparsity_accuracy, write_table

        write_table(ticket.history, os.path.join(out_dir, "summary"))
        pts = [(h["sparsity"], h["test_acc"]) for h in ticket.history
               if isinstance(h.get("round"), int) and "sparsity" in h and "test_acc" in h]
        if len(pts) > 1:  # IMP: one point per round
            plot_sparsity_accuracy({ticket.method: pts}, os.path.join(out_dir, "sparsity_accuracy.png"),
                                   m.get("dense_test_acc"), f"{model.recipe['name']}: {ticket.method} rounds")
    return {**info, **{k: v for k, v in m.items() if k not in ("layers", "per_layer_ops")}}


def timer():
    t0 = time.time()
    return lambda: time.time() - t0


def config_dict(cfg: TicketConfig) -> dict:
    return {k: v for k, v in asdict(cfg).items() if k not in ("progress",)}


# the TicketConfig fields that change what a search computes (a resumed search must match them)
RESULT_FIELDS = ("method", "sparsity", "scope", "layer_gain", "prune_fraction", "rounds", "rewind_epoch", "rewind", "epochs",
                 "round_epochs", "distill", "kd_alpha", "kd_temp", "teacher", "lr", "seed", "only")
