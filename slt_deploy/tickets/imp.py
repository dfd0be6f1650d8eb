"""Iterative magnitude pruning with late rewinding (Frankle et al.; for SNNs Kim et al., ECCV 2022).

Round r: prune `prune_fraction` of the remaining weights by magnitude (global or per layer), then
- rewind "weights" (default): rewind the surviving weights (and BN statistics, biases) to their values at epoch k of
  the dense training and retrain `epochs` with a fresh schedule. The epoch-k state is obtained by replaying the
  dense recipe's training from its seeded initialisation for k epochs with the same schedule and data order
  (training is deterministic on CPU for a fixed thread count);
- rewind "lr" (learning-rate rewinding, Renda et al., ICLR 2020): keep the trained weights and retrain with the
  dense recipe's own learning-rate schedule and data order from epoch E - e to its end (e = `epochs`, default
  E - k): the late, small learning rates that fine-tune rather than restart.
With `distill`, every retraining (and the binarization) learns from the dense model's logits as well.

Every round is saved (`save_rounds`/round_NN, a normal checkpoint) and then `save_rounds`/search.json records the
finished rounds; `resume` continues from the last finished round. A round's result depends only on the weights it
starts from, which the checkpoint stores exactly, so a resumed search gives the masks of an uninterrupted one bit for
bit (tests/test_tickets_methods.py kills a search with SIGKILL and compares).
"""
from __future__ import annotations

import copy
import json
import os

import torch

from ..checkpoint import atomic_write, load, save
from ..errors import SltError
from ..train import evaluate, is_main, train
from ..zoo import build_model
from .common import RESULT_FIELDS, Ticket, TicketConfig, binarize, config_dict, epochs_of, recipe_for, run_train, timer
from .masks import get_masks, imp_schedule, magnitude_masks, prunable, set_masks, sparsity

SEARCH_FILE = "search.json"


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


def round_epochs(cfg: TicketConfig, r: int) -> int | None:
    """Retraining epochs of round r (1-based): `round_epochs[r-1]` (its last value repeats), else `epochs`."""
    re_ = cfg.round_epochs
    return int(re_[min(r, len(re_)) - 1]) if re_ else cfg.epochs


def lr_rewind_epochs(model, cfg: TicketConfig, epochs: int | None = None) -> tuple[int, int]:
    """(E, start): learning-rate rewinding replays the dense schedule of E epochs from epoch `start` (the last
    `epochs`; start = E - epochs, or the rewind epoch k when no epochs are given)."""
    total = int(model.recipe["train"].get("epochs", 1))
    e = cfg.epochs if epochs is None else epochs
    start = total - int(e) if e is not None else int(cfg.rewind_epoch)
    if not 0 <= start < total:
        raise SltError(f"learning-rate rewinding: {e} retraining epochs do not fit the dense schedule of "
                       f"{total} epochs", f"pass --epochs / --round-epochs between 1 and {total}")
    return total, start


def _read_search(rounds_dir: str) -> dict | None:
    p = os.path.join(rounds_dir, SEARCH_FILE)
    if not os.path.exists(p):
        return None
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise SltError(f"{p}: unreadable ({e})", "delete the folder to start the search again") from None


def _resume_state(model, layers, cfg: TicketConfig, ladder) -> tuple[int, list, float]:
    """(last finished round, history, seconds spent) from save_rounds/search.json, the model loaded with that
    round's weights and masks; (0, [], 0) when there is nothing to resume."""
    if not cfg.save_rounds:
        raise SltError("--resume needs the rounds folder", "pass --out (rounds are kept in OUT/rounds)")
    st = _read_search(cfg.save_rounds)
    if st is None or not st.get("finished_round"):
        return 0, [], 0.0
    want, have = _result_config(cfg), st.get("config", {})
    diff = [k for k in want if want[k] != have.get(k)]
    if diff:
        raise SltError(f"--resume: {cfg.save_rounds} was searched with other settings ({', '.join(diff)}: "
                       f"{', '.join(repr(have.get(k)) for k in diff)})",
                       "repeat the original options, or drop --resume")
    if [round(x, 12) for x in st["ladder"]] != [round(x, 12) for x in ladder]:
        raise SltError(f"--resume: {cfg.save_rounds} has another sparsity ladder", "repeat the original options")
    r = int(st["finished_round"])
    saved, _ = load(os.path.join(cfg.save_rounds, f"round_{r:02d}"))
    model.load_state_dict(saved.state_dict())
    return r, st["history"], float(st.get("seconds", 0.0))


def _result_config(cfg: TicketConfig) -> dict:
    d = config_dict(cfg)
    return {k: d[k] for k in RESULT_FIELDS}


def search(dense, data, cfg: TicketConfig) -> Ticket:
    t = timer()
    model = copy.deepcopy(dense)
    model.recipe = copy.deepcopy(dense.recipe)
    layers = prunable(model, cfg.only)
    ladder = list(cfg.steps) if cfg.steps else imp_schedule(cfg.sparsity, cfg.prune_fraction, cfg.rounds)
    e = epochs_of(model, cfg)
    done, hist, before = (_resume_state(model, layers, cfg, ladder) if cfg.resume else (0, [], 0.0))

    def elapsed():
        return before + t()

    if cfg.rewind == "lr":
        spans = {r: lr_rewind_epochs(model, cfg, round_epochs(cfg, r)) for r in range(1, len(ladder) + 1)}
        total, start = spans[len(ladder)]
        state_k = None
    else:
        state_k = rewind_point(dense.recipe, data, cfg.rewind_epoch, cfg.progress) if done < len(ladder) else None
    if not hist:
        hist = [{"round": 0, "target": 0.0, "sparsity": sparsity(model, layers),
                 "test_acc": evaluate(model, data.test), "seconds": elapsed()}]
    elif cfg.progress:
        print(f"IMP: resuming after round {done}/{len(ladder)} ({cfg.save_rounds})")
    for r, s in enumerate(ladder, 1):
        if r <= done:
            continue
        set_masks(layers, magnitude_masks(layers, s, cfg.scope, cfg.layer_gain))
        if cfg.rewind == "lr":
            h = run_train(model, data, cfg, spans[r][0], start_epoch=spans[r][1])
        else:
            rewind(model, state_k, layers)
            h = run_train(model, data, cfg, round_epochs(cfg, r) or e)
        row = {"round": r, "target": s, "sparsity": sparsity(model, layers), "test_acc": evaluate(model, data.test),
               "val_acc": h[-1].get("val_acc") if h else None, "seconds": elapsed()}
        hist.append(row)
        if cfg.progress:
            print(f"IMP round {r}/{len(ladder)}: sparsity {100 * row['sparsity']:.2f}% "
                  f"test {row['test_acc']:.2f}% ({row['seconds']:.0f}s)", flush=True)
        if cfg.save_rounds and is_main():  # under torchrun every rank holds the same model; rank 0 writes
            model.recipe = recipe_for(model)
            save(model, os.path.join(cfg.save_rounds, f"round_{r:02d}"),
                 metrics={"test_acc": row["test_acc"], "sparsity": row["sparsity"]}, labels=data.labels,
                 extra={"ticket": {"method": "imp", "round": r, "target_sparsity": s,
                                   "measured_sparsity": row["sparsity"]}})
            # written after the checkpoint: a round counts as finished only once both exist
            atomic_write(os.path.join(cfg.save_rounds, SEARCH_FILE), json.dumps(
                {"finished_round": r, "rounds": len(ladder), "ladder": ladder, "config": _result_config(cfg),
                 "history": hist, "seconds": elapsed()}, indent=2, default=float))
    search_s = elapsed()
    per_round = ([spans[r][0] - spans[r][1] for r in spans] if cfg.rewind == "lr"
                 else [round_epochs(cfg, r) or e for r in range(1, len(ladder) + 1)])
    info = {"rounds": len(ladder), "prune_fraction": cfg.prune_fraction, "rewind": cfg.rewind,
            "rewind_epoch": cfg.rewind_epoch, "scope": cfg.scope,
            "round_epochs": per_round if cfg.round_epochs else per_round[-1], "distill": cfg.distill,
            "resumed_after_round": done if cfg.resume else None}
    if cfg.steps:
        info["steps"] = list(cfg.steps)
    if cfg.rewind == "lr":
        info["lr_schedule_epochs"] = [start + 1, total]
    if cfg.binarize:
        binarize(model, data, cfg, layers)
        info["binarized_after_imp"] = True
        info["binarize_epochs"] = cfg.binarize_epochs if cfg.binarize_epochs is not None else e
        hist.append({"round": "binarized", "target": cfg.sparsity, "sparsity": sparsity(model, layers),
                     "test_acc": evaluate(model, data.test), "seconds": elapsed()})
    return Ticket(model, "imp", cfg.sparsity, hist, search_s, elapsed(), info)
