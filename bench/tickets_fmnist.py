#!/usr/bin/env python
"""Lottery tickets on Fashion-MNIST (T = 4): IMP (late rewinding), Early-Bird, IMP + binarization, random tickets,
multi-prize (binary, untrained weights) and MultiSp on the spiking transformer, with both "rewards" measured.

    .venv/bin/python bench/tickets_fmnist.py            # full run (plan "full", sized for <= 90 min on 2 cores)
    .venv/bin/python bench/tickets_fmnist.py --quick    # reduced: training subset, fewer rounds/epochs (~10 min)
    make bench-tickets-small [BENCH_TICKETS_SMALL_ARGS=--quick]

Prints one table (accuracy, weight sparsity, patch / ConvPEP sparsity, spike rate, synaptic ops vs dense, search
time) and the goals of issue 3 with met / not met. Writes OUT/results.json, OUT/table.csv and
OUT/sparsity_accuracy.png; every ticket is a normal checkpoint folder under OUT/. Issue 13's bench, on the real
fmnist-vgg and fmnist-spikformer recipes, is bench/tickets_full.py (`make bench-tickets`); the shipped fmnist tickets
(models/tickets/fmnist-*) are its tickets.

The models are small on purpose (CPU budget): a 2-conv spiking VGG (20k weights) and a 1-block spiking
transformer (49 patches of dim 32); the literature anchors use VGG16 / DeiT-sized nets on GPUs.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tickets_full import fmt  # one table-cell formatter for both ticket benches (bench/ is on sys.path)

from slt_deploy.checkpoint import atomic_write, load, save
from slt_deploy.data import Split, load_dataset
from slt_deploy.tickets import (
    early_bird,
    imp,
    multiprize,
    multisp,
    random_ticket,
)
from slt_deploy.tickets.common import Ticket, TicketConfig, binarize, finalize, timer
from slt_deploy.tickets.report import plot_sparsity_accuracy, write_table
from slt_deploy.train import evaluate, train
from slt_deploy.zoo import build_model, validate_recipe

BASE = {"dataset": "fmnist", "T": 4, "encoding": "direct", "neuron": {"beta": 0.5, "threshold": 1.0, "reset": "zero"},
        "seed": 0}
VGG = {**BASE, "name": "fmnist-vgg-small",
       "arch": {"type": "vgg", "convs": [{"out": 16, "stride": 2}, {"out": 32, "stride": 2}], "fc": []}}
SFORMER = {**BASE, "name": "fmnist-spikformer-small",
           "arch": {"type": "spikformer", "stem_channels": [8], "stem_strides": [2, 2], "dim": 32, "heads": 2,
                    "depth": 1, "mlp_ratio": 2}}

PLANS = {
    # epochs are full passes over the (sub)set; "full" is sized from measured epoch times (see docs/tickets.md)
    "full": dict(train_n=None, test_n=None, dense_epochs=6, prune_fraction=0.25, round_epochs=4, rewind_epoch=1,
                 binarize_epochs=3, eb_q=5, eb_tau=0.1, mpt_epochs=6, sf_epochs=6, multisp_epochs=4, lr=0.005),
    "quick": dict(train_n=6000, test_n=2000, dense_epochs=3, prune_fraction=0.5, round_epochs=2, rewind_epoch=1,
                  binarize_epochs=2, eb_q=5, eb_tau=0.1, mpt_epochs=3, sf_epochs=3, multisp_epochs=2, lr=0.005),
}
GOALS = {"imp_sparsity": 0.98, "imp_drop": 0.5, "bin_sparsity": 0.90, "bin_drop": 1.0, "patch": 0.376, "pep": 0.55,
         "sf_drop": 2.0, "eb_ratio": 0.1}


def subset(data, n_train, n_test):
    if n_train:
        data = dataclasses.replace(data, train=Split(data.train.x[:n_train], data.train.y[:n_train]),
                                   val=Split(data.val.x[:max(500, n_train // 10)], data.val.y[:max(500, n_train // 10)]))
    if n_test:
        data = dataclasses.replace(data, test=Split(data.test.x[:n_test], data.test.y[:n_test]))
    return data


def recipe(base, plan):
    r = copy.deepcopy(base)
    r["train"] = {"epochs": plan["dense_epochs"], "batch_size": 128, "lr": plan["lr"], "optimizer": "adam",
                  "schedule": "cosine", "weight_decay": 0.0}
    return validate_recipe(r)


def train_dense(r, data, out, progress):
    t, c0 = timer(), time.process_time()
    m = build_model(r)
    train(m, data, r["train"], progress=progress, seed=int(r.get("seed", 0)))
    secs, cpu = t(), time.process_time() - c0
    acc = evaluate(m, data.test)
    save(m, out, metrics={"test_acc": acc, "seconds": secs, "cpu_seconds": cpu}, labels=data.labels)
    CPU[r["name"]] = cpu / int(r["train"]["epochs"])
    return m, acc, secs


CPU = {}  # recipe name -> CPU seconds per training epoch (process time: what an unloaded core would need)


def row(name, s, extra=None):
    r = {"ticket": name, "test_acc": s["test_acc"], "dense_acc": s.get("dense_test_acc"),
         "drop_pt": s.get("dense_test_acc", s["test_acc"]) - s["test_acc"], "sparsity": s["measured_sparsity"],
         "binary": s["binary"], "patch_sparsity": s.get("patch_sparsity"),
         "pep_sparsity": s.get("pep_connection_sparsity"), "spike_rate": s["spike_rate"],
         "dense_spike_rate": s.get("dense_spike_rate"), "sop_ratio": s.get("sop_ratio"),
         "energy_ratio": s.get("energy_ratio"), "search_s": s.get("search_seconds"), "total_s": s.get("total_seconds")}
    r.update(extra or {})
    return r


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="reduced plan (training subset, fewer rounds)")
    ap.add_argument("--out", default=None, help="output folder (default runs/bench_tickets[_quick])")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--progress", action="store_true")
    a, rest = ap.parse_known_args(argv)
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)} (this is the small plan; the full-scale plan's options, "
                 "e.g. --dense, --table, --ship, belong to bench/tickets_full.py: make bench-tickets "
                 "BENCH_TICKETS_ARGS=...)")
    if a.threads:
        torch.set_num_threads(a.threads)
    plan_name = "quick" if a.quick else "full"
    plan = PLANS[plan_name]
    out = a.out or ("runs/bench_tickets_quick" if a.quick else "runs/bench_tickets")
    os.makedirs(out, exist_ok=True)
    t_all = timer()
    data = subset(load_dataset("fmnist", a.data_dir), plan["train_n"], plan["test_n"])
    print(f"plan {plan_name}: train {len(data.train.x)}, test {len(data.test.x)} images, T=4, "
          f"torch threads {torch.get_num_threads()}", flush=True)
    P = a.progress

    def cfg(method, s, **kw):
        return TicketConfig(method, s, rewind_epoch=plan["rewind_epoch"], progress=P, **kw)

    rows, series, results = [], {}, {"plan": plan_name, "settings": plan}
    # --- dense VGG -------------------------------------------------------------------------------------------
    rv = recipe(VGG, plan)
    dense, dense_acc, dense_s = train_dense(rv, data, os.path.join(out, "dense_vgg"), P)
    epoch_s = dense_s / plan["dense_epochs"]
    print(f"dense VGG: {dense_acc:.2f}% ({dense_s:.0f}s, {epoch_s:.1f}s/epoch)", flush=True)
    rows.append({"ticket": "dense VGG", "test_acc": dense_acc, "sparsity": 0.0, "binary": False,
                 "total_s": dense_s})
    # --- IMP (global, 25%/round, late rewinding) ---------------------------------------------------------------
    c = cfg("imp", GOALS["imp_sparsity"], prune_fraction=plan["prune_fraction"], epochs=plan["round_epochs"],
            save_rounds=os.path.join(out, "imp_rounds"))
    tk = imp.search(dense, data, c)
    imp_time = dense_s + tk.search_seconds  # IMP needs the trained dense net; Early-Bird does not
    s_imp = finalize(tk, data, os.path.join(out, "imp98"), dense)
    write_table(tk.history, os.path.join(out, "imp_summary"))
    series["IMP"] = [(h["sparsity"], h["test_acc"]) for h in tk.history if isinstance(h["round"], int)]
    rows.append(row("IMP (global, rewind k=1)", s_imp, {"search_s": imp_time}))
    print(f"IMP: {len(tk.history) - 1} rounds, {100 * s_imp['measured_sparsity']:.2f}% sparse, "
          f"{s_imp['test_acc']:.2f}% ({imp_time:.0f}s incl. dense)", flush=True)
    # best IMP round at >= 98% (any round >= the goal counts)
    best98 = max((h for h in tk.history if isinstance(h["round"], int) and h["sparsity"] >= GOALS["imp_sparsity"]
                  - 1e-9), key=lambda h: h["test_acc"], default=None)
    # --- IMP -> binarize: the first round >= 90% -----------------------------------------------------------
    r90 = min((h for h in tk.history if isinstance(h["round"], int) and h["sparsity"] >= GOALS["bin_sparsity"]),
              key=lambda h: h["sparsity"])
    m90, _ = load(os.path.join(out, "imp_rounds", f"round_{r90['round']:02d}"))
    m90.recipe = copy.deepcopy(m90.recipe)
    t = timer()
    binarize(m90, data, cfg("imp", r90["target"], binarize_epochs=plan["binarize_epochs"]))
    s_bin = finalize(Ticket(m90, "imp+binarize", r90["target"], [], 0.0, t(),
                            {"from_round": r90["round"], "imp_round_acc": r90["test_acc"]}),
                     data, os.path.join(out, "imp_binary"), dense)
    series["IMP + binarize"] = [(s_bin["measured_sparsity"], s_bin["test_acc"])]
    rows.append(row(f"IMP r{r90['round']} + binarize", s_bin))
    print(f"IMP+binarize: {100 * s_bin['measured_sparsity']:.2f}% sparse binary, {s_bin['test_acc']:.2f}%", flush=True)
    # --- Early-Bird ------------------------------------------------------------------------------------------
    c = cfg("early-bird", GOALS["imp_sparsity"], epochs=plan["round_epochs"], q=plan["eb_q"], tau=plan["eb_tau"])
    tk = early_bird.search(dense, data, c, max_epochs=plan["dense_epochs"] + plan["eb_q"])
    eb_info = tk.info
    s_eb = finalize(tk, data, os.path.join(out, "early_bird98"), dense)
    series["Early-Bird"] = [(s_eb["measured_sparsity"], s_eb["test_acc"])]
    rows.append(row(f"Early-Bird (stop ep {tk.info['stop_epoch']})", s_eb))
    print(f"Early-Bird: stop at epoch {tk.info['stop_epoch']} (converged {tk.info['converged']}), search "
          f"{tk.search_seconds:.0f}s vs IMP {imp_time:.0f}s; {s_eb['test_acc']:.2f}%", flush=True)
    # --- random tickets (same per-layer sparsity) -------------------------------------------------------------
    for name, like, binar in (("random @IMP98", os.path.join(out, "imp98"), False),
                              ("random @IMP-binary", os.path.join(out, "imp_binary"), True)):
        c = cfg("random", s_imp["measured_sparsity"], epochs=plan["round_epochs"], like=like, binarize=binar,
                binarize_epochs=plan["binarize_epochs"])
        tk = random_ticket.search(dense, data, c)
        s_r = finalize(tk, data, os.path.join(out, name.replace(" @", "_").replace("-", "_").lower()), dense)
        series["random (binary)" if binar else "random"] = [(s_r["measured_sparsity"], s_r["test_acc"])]
        rows.append(row(name, s_r))
        print(f"{name}: {100 * s_r['measured_sparsity']:.2f}% sparse, {s_r['test_acc']:.2f}%", flush=True)
    # --- multi-prize: binary 50%-sparse, weights never trained ------------------------------------------------
    tk = multiprize.search(dense, data, cfg("multiprize", 0.5, epochs=plan["mpt_epochs"]))
    s_m = finalize(tk, data, os.path.join(out, "multiprize50"), dense)
    series["multi-prize"] = [(s_m["measured_sparsity"], s_m["test_acc"])]
    rows.append(row("multi-prize 50% (untrained w)", s_m))
    print(f"multi-prize: {s_m['test_acc']:.2f}%", flush=True)
    # --- spiking transformer: dense + MultiSp -----------------------------------------------------------------
    rs = recipe(SFORMER, {**plan, "dense_epochs": plan["sf_epochs"]})
    sf, sf_acc, sf_s = train_dense(rs, data, os.path.join(out, "dense_spikformer"), P)
    rows.append({"ticket": "dense transformer", "test_acc": sf_acc, "sparsity": 0.0, "binary": False,
                 "total_s": sf_s})
    print(f"dense transformer: {sf_acc:.2f}% ({sf_s:.0f}s)", flush=True)
    # fair reference: the dense transformer trained for the same extra epochs MultiSp fine-tunes
    sf_ft = copy.deepcopy(sf)
    train(sf_ft, data, rs["train"], epochs=plan["multisp_epochs"], progress=P, seed=1)
    sf_ft_acc = evaluate(sf_ft, data.test)
    rows.append({"ticket": f"dense transformer +{plan['multisp_epochs']} ep", "test_acc": sf_ft_acc, "sparsity": 0.0,
                 "binary": False})
    print(f"dense transformer + {plan['multisp_epochs']} more epochs: {sf_ft_acc:.2f}%", flush=True)
    sf_ref = max(sf_acc, sf_ft_acc)
    c = cfg("multisp", GOALS["pep"], patch_sparsity=GOALS["patch"], epochs=plan["multisp_epochs"])
    tk = multisp.search(sf, data, c)
    s_ms = finalize(tk, data, os.path.join(out, "multisp"), sf)
    rows.append(row("MultiSp transformer", s_ms))
    print(f"MultiSp ({c.pep_method}): patches {100 * s_ms['patch_sparsity']:.1f}%, ConvPEP "
          f"{100 * s_ms['pep_connection_sparsity']:.1f}%"
          f", {s_ms['test_acc']:.2f}% (dense {sf_acc:.2f}%)", flush=True)

    # --- table, goals, plot ------------------------------------------------------------------------------------
    total = t_all()
    cols = ["ticket", "test_acc", "drop_pt", "sparsity", "binary", "patch_sparsity", "pep_sparsity", "spike_rate",
            "sop_ratio", "energy_ratio", "search_s", "total_s"]
    print(f"\n=== tickets on Fashion-MNIST (T=4), plan {plan_name}, {total / 60:.1f} min ===")
    print(f"{'ticket':32s} {'acc%':>6s} {'drop':>6s} {'sparse%':>8s} {'bin':>4s} {'patch%':>7s} {'pep%':>6s} "
          f"{'spk':>6s} {'SOP/d%':>7s} {'E/d%':>6s} {'search s':>9s}")
    for r in rows:
        print(f"{r['ticket']:32s} {fmt(r['test_acc']):>6s} {fmt(r.get('drop_pt')):>6s} "
              f"{fmt(r.get('sparsity'), True):>8s} {fmt(r.get('binary')):>4s} {fmt(r.get('patch_sparsity'), True, 1):>7s}"
              f" {fmt(r.get('pep_sparsity'), True, 1):>6s} {fmt(r.get('spike_rate'), digits=3):>6s} "
              f"{fmt(r.get('sop_ratio'), True, 1):>7s} {fmt(r.get('energy_ratio'), True, 1):>6s} "
              f"{fmt(r.get('search_s'), digits=0):>9s}")
    eb_ratio = s_eb["search_seconds"] / max(1e-9, imp_time)
    # the machine is shared, so wall time is noisy: also compare training epochs (IMP: dense + replay + rounds)
    imp_epochs = plan["dense_epochs"] + plan["rewind_epoch"] + (len(series["IMP"]) - 1) * plan["round_epochs"]
    eb_epochs = eb_info["search_epochs"]
    imp_best = best98["test_acc"] if best98 else s_imp["test_acc"]
    goals = [
        ("IMP >= 98% sparse within 0.5 pt", s_imp["measured_sparsity"] >= GOALS["imp_sparsity"] - 1e-9
         and dense_acc - imp_best <= GOALS["imp_drop"], f"{100 * s_imp['measured_sparsity']:.2f}%, "
         f"{imp_best:.2f}% vs dense {dense_acc:.2f}% ({dense_acc - imp_best:+.2f} pt drop)"),
        ("binarized >= 90% sparse within 1.0 pt", s_bin["measured_sparsity"] >= GOALS["bin_sparsity"]
         and dense_acc - s_bin["test_acc"] <= GOALS["bin_drop"], f"{100 * s_bin['measured_sparsity']:.2f}%, "
         f"{s_bin['test_acc']:.2f}% ({dense_acc - s_bin['test_acc']:+.2f} pt drop)"),
        ("MultiSp patch >= 37.6%, ConvPEP >= 55%, binary, within 2.0 pt",
         s_ms["patch_sparsity"] >= GOALS["patch"] and s_ms["pep_connection_sparsity"] >= GOALS["pep"] - 1e-9
         and s_ms["pep_binary_weights"] and s_ms["pep_binary_activations"]
         and sf_ref - s_ms["test_acc"] <= GOALS["sf_drop"],
         f"patch {100 * s_ms['patch_sparsity']:.1f}%, ConvPEP {100 * s_ms['pep_connection_sparsity']:.1f}%, "
         f"{s_ms['test_acc']:.2f}% vs dense {sf_ref:.2f}% (best of {sf_acc:.2f}% and {sf_ft_acc:.2f}% with the same "
         f"extra epochs; {sf_ref - s_ms['test_acc']:+.2f} pt drop)"),
        ("Early-Bird search <= 1/10 of IMP's time", eb_ratio <= GOALS["eb_ratio"],
         f"{s_eb['search_seconds']:.0f}s vs {imp_time:.0f}s = {eb_ratio:.3f}; in training epochs {eb_epochs} vs "
         f"{imp_epochs} = {eb_epochs / imp_epochs:.3f}"),
    ]
    print("\ngoals (issue 3):")
    for g, ok, detail in goals:
        print(f"  [{'met' if ok else 'NOT met'}] {g}: {detail}")
    if plan_name == "quick":
        full = PLANS["full"]
        n_full = 55000
        scale = n_full / len(data.train.x)
        ep = (full["dense_epochs"] + full["rewind_epoch"] + 14 * full["round_epochs"] + full["binarize_epochs"]
              + full["dense_epochs"] + full["eb_q"] + full["round_epochs"] + 2 * full["round_epochs"]
              + full["binarize_epochs"] + full["mpt_epochs"])
        sf_ep = full["sf_epochs"] + 2 * full["multisp_epochs"]
        sf_epoch_s = sf_s / plan["sf_epochs"]
        est = scale * (ep * epoch_s + sf_ep * sf_epoch_s)
        est_cpu = scale * (ep * CPU[VGG["name"]] + sf_ep * CPU[SFORMER["name"]])
        print(f"\nfull plan needs ~{ep} VGG epochs + {sf_ep} transformer epochs on 55k images: about "
              f"{est / 60:.0f} min at this run's wall-clock speed ({epoch_s * scale:.0f}s / {sf_epoch_s * scale:.0f}s "
              f"per epoch), {est_cpu / 60:.0f} min of CPU time for {torch.get_num_threads()} thread(s) "
              f"(= wall time on an unloaded machine; evaluation extra)")
        results["full_plan_estimate_min"] = {"wall_at_this_load": est / 60, "cpu": est_cpu / 60}
    results.update(rows=rows, goals=[{"goal": g, "met": bool(ok), "detail": d} for g, ok, d in goals],
                   minutes=total / 60, dense_vgg_acc=dense_acc, dense_transformer_acc=sf_acc,
                   dense_transformer_ft_acc=sf_ft_acc, eb_ratio=eb_ratio,
                   eb_epochs=eb_epochs, imp_epochs=imp_epochs,
                   imp_history=series["IMP"])
    atomic_write(os.path.join(out, "results.json"), json.dumps(results, indent=2, default=float))
    write_table(rows, os.path.join(out, "table"), cols)
    plot_sparsity_accuracy(series, os.path.join(out, "sparsity_accuracy.png"), dense_acc,
                           f"Fashion-MNIST spiking VGG-small, T=4 ({plan_name})")
    print(f"\nresults: {out}/results.json, {out}/table.csv, {out}/sparsity_accuracy.png")


if __name__ == "__main__":
    main()
