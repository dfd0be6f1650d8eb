"""Lottery tickets of spiking networks: one module per method, one interface (see common.py).

    from slt_deploy.tickets import find_ticket, TicketConfig
    summary = find_ticket("runs/dense", TicketConfig("imp", 0.9), "runs/imp90")

Methods: imp (iterative magnitude pruning, late rewinding), early-bird, multiprize (biprop: binary weights, learned
masks, no weight training), random (baseline), multisp (spiking transformer: patch + ConvPEP sparsity,
binarization), binarize (make any ticket binary and fine-tune; its sparsity is the source's). Activity / synaptic-operation counting for the "second reward": tickets.activity.synaptic_ops.
"""
from __future__ import annotations

from ..checkpoint import load
from ..data import load_dataset
from ..errors import SltError
from . import binarize as binarize_ticket
from . import bn_recal, early_bird, imp, multiprize, multisp, random_ticket, structured
from .common import Ticket, TicketConfig, finalize, measure, set_teacher
from .masks import check_gains, prunable

METHODS = {"imp": imp.search, "early-bird": early_bird.search, "multiprize": multiprize.search,
           "random": random_ticket.search, "multisp": multisp.search, "binarize": binarize_ticket.search,
           "structured": structured.search}
ALIASES = {"eb": "early-bird", "early_bird": "early-bird", "earlybird": "early-bird", "mpt": "multiprize",
           "biprop": "multiprize", "multi-prize": "multiprize"}


def method_name(name: str) -> str:
    n = ALIASES.get(str(name).lower(), str(name).lower())
    if n not in METHODS:
        raise SltError(f"ticket method {name!r} unknown", f"use one of {', '.join(METHODS)}")
    return n


def find_ticket(dense, cfg: TicketConfig, out_dir: str, data=None, data_dir=None) -> dict:
    """dense: a checkpoint folder or a SpikingNet. Runs the method, saves the ticket checkpoint in out_dir and
    returns the measured summary (also in out_dir/ticket.json)."""
    cfg.method = method_name(cfg.method)
    dense_model = load(dense)[0] if isinstance(dense, str) else dense
    if cfg.method == "binarize" and cfg.sparsity is None:
        from .masks import sparsity

        cfg.sparsity = sparsity(dense_model)
    if cfg.sparsity is None:
        raise SltError(f"method {cfg.method} needs a target sparsity", "pass --sparsity, e.g. 0.9")
    cfg.validate()
    if cfg.layer_gain:  # before any training: every key must name a prunable layer's kind or path
        check_gains(cfg.layer_gain, prunable(dense_model, cfg.only))
    if data is None:
        r = dense_model.recipe
        data = load_dataset(r["dataset"], data_dir, int(r.get("seed", 0)))
    set_teacher(cfg, dense_model, data)
    ticket = METHODS[cfg.method](dense_model, data, cfg)
    recal = bn_recal.apply(ticket.model, data, cfg.bn_recal, cfg.seed)  # binary tickets only (bn_recal.py)
    if recal is not None:
        ticket.info["bn_recal"] = recal
    from .common import config_dict

    return finalize(ticket, data, out_dir, dense_model, extra_info={"config": config_dict(cfg)})


__all__ = ["METHODS", "Ticket", "TicketConfig", "find_ticket", "finalize", "measure", "method_name"]
