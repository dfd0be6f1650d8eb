#!/usr/bin/env python
"""Full-scale lottery tickets of the real `fmnist-vgg` recipe (issue 13; 426k weights, not the 20k-weight
VGG-small of bench/tickets_fmnist.py), on the whole Fashion-MNIST test set.

    .venv/bin/python bench/tickets_full.py                 # run what is missing, then print the table
    .venv/bin/python bench/tickets_full.py --table         # only the table of what exists
    make bench-tickets BENCH_TICKETS_ARGS=--full-scale     # the same through the ticket bench

Every step is one `slt-deploy` command (printed before it runs) writing one folder under OUT (default
runs/bench_tickets_full); a step whose folder holds a finished ticket is skipped and the IMP search is started with
--resume, so an interrupted plan continues where it stopped. The steps:
  dense      slt-deploy train fmnist-vgg                                   (or --dense DIR: an existing checkpoint)
  imp98      IMP to 98 %: 50 % of the remaining weights per round (6 rounds), learning-rate rewinding (each round
             retrains the dense schedule's last 4 epochs), distilled from the dense model
  imp_bin95  IMP round 5 (96.9 %) binarized, 2 epochs, distilled from the dense model
  random98   random masks with imp98's per-layer sparsity, trained from epoch 1 for 4 epochs, distilled
  eb90       Early-Bird at 90 % (relative mask distance, tau 0.1, q 5), retrained 2 epochs, distilled
  random90   random masks with eb90's per-layer sparsity, as random98
The table: test accuracy, drop against dense, weight sparsity, binary, spike rate, synaptic operations and
modelled energy against dense (tickets.activity), search seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMON = ["--distill", "--quiet"]
# pruning scope of IMP and Early-Bird (docs/tickets.md: "global" (|w| / layer rms) prunes every layer of
# fmnist-vgg almost uniformly, starving its small convs; "global-raw" leaves them denser)
SCOPE = "global-raw"


def steps(out: str, dense: str, scope: str = SCOPE) -> list:
    def j(*p):
        return os.path.join(out, *p)

    return [
        ("imp98", "IMP 98% (LR rewinding, KD)",
         ["ticket", dense, "--method", "imp", "--sparsity", "0.98", "--prune-fraction", "0.5", "--rewind", "lr",
          "--epochs", "4", "--scope", scope, "--resume", "--out", j("imp98")] + COMMON),
        ("imp_bin95", "IMP round 5 + binarize (KD)",
         ["ticket", j("imp98", "rounds", "round_05"), "--method", "binarize", "--binarize-epochs", "2",
          "--teacher", dense, "--out", j("imp_bin95")] + COMMON),
        ("random98", "random, imp98's per-layer sparsity",
         ["ticket", dense, "--method", "random", "--sparsity", "0.98", "--like", j("imp98"), "--epochs", "4",
          "--out", j("random98")] + COMMON),
        ("eb90", "Early-Bird 90% (relative distance)",
         ["ticket", dense, "--method", "early-bird", "--sparsity", "0.9", "--epochs", "2", "--scope", scope,
          "--out", j("eb90")]
         + COMMON),
        ("random90", "random, eb90's per-layer sparsity",
         ["ticket", dense, "--method", "random", "--sparsity", "0.9", "--like", j("eb90"), "--epochs", "4",
          "--out", j("random90")] + COMMON),
    ]


def done(folder: str) -> bool:
    return os.path.exists(os.path.join(folder, "ticket.json"))


def cli(args: list, log: str | None = None):
    cmd = [sys.executable, "-m", "slt_deploy.cli"] + args
    print("$ slt-deploy " + " ".join(args), flush=True)
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(log, "a") if log else open(os.devnull, "w") as f:
        subprocess.run(cmd, check=True, env=env, stdout=f if log else None, stderr=subprocess.STDOUT if log else None)


def fmt(v, pct=False, digits=2):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return f"{100 * v:.{digits}f}" if pct else f"{v:.{digits}f}"


def table(out: str, dense: str) -> list:
    from slt_deploy.checkpoint import read_meta

    dm = read_meta(dense).get("metrics", {}) if os.path.exists(os.path.join(dense, "model.json")) else {}
    rows = [{"ticket": "dense fmnist-vgg", "test_acc": dm.get("test_acc"), "sparsity": 0.0, "binary": False,
             "sop_ratio": 1.0, "energy_ratio": 1.0}]
    names = {k: label for k, label, _ in steps(out, dense)}
    for key, label in names.items():
        p = os.path.join(out, key, "ticket.json")
        if not os.path.exists(p):
            rows.append({"ticket": label, "missing": True})
            continue
        with open(p) as f:
            t = json.load(f)
        m, info = t["measurements"], t["ticket"]
        rows.append({"ticket": label, "test_acc": m["test_acc"], "dense_acc": m.get("dense_test_acc"),
                     "sparsity": m["sparsity"], "binary": info["binary"], "spike_rate": m["spike_rate"],
                     "sop_ratio": m.get("sop_ratio"), "energy_ratio": m.get("energy_ratio"),
                     "search_s": info.get("search_seconds"), "total_s": info.get("total_seconds")})
    dacc = dm.get("test_acc")
    print(f"\n=== full-scale tickets: fmnist-vgg (T=4), 10,000 test images; dense {fmt(dacc)}% ===")
    print(f"{'ticket':38s} {'acc%':>6s} {'drop':>6s} {'sparse%':>8s} {'bin':>4s} {'spk':>6s} {'SOP/d%':>7s} "
          f"{'E/d%':>6s} {'search s':>9s}")
    for r in rows:
        if r.get("missing"):
            print(f"{r['ticket']:38s} (not run yet)")
            continue
        drop = None if r["test_acc"] is None or dacc is None else dacc - r["test_acc"]
        print(f"{r['ticket']:38s} {fmt(r['test_acc']):>6s} {fmt(drop) if r['sparsity'] else '-':>6s} "
              f"{fmt(r['sparsity'], True):>8s} {fmt(r['binary']):>4s} {fmt(r.get('spike_rate'), digits=3):>6s} "
              f"{fmt(r.get('sop_ratio'), True, 1):>7s} {fmt(r.get('energy_ratio'), True, 1):>6s} "
              f"{fmt(r.get('search_s'), digits=0):>9s}")
    imp = os.path.join(out, "imp98", "rounds", "search.json")
    if os.path.exists(imp):
        with open(imp) as f:
            h = json.load(f)["history"]
        print("IMP rounds (sparsity -> accuracy): " + ", ".join(
            f"{100 * x['sparsity']:.1f}% {x['test_acc']:.2f}" for x in h if isinstance(x.get("round"), int)))
    with open(os.path.join(out, "table.json"), "w") as f:
        json.dump(rows, f, indent=2, default=float)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/bench_tickets_full")
    ap.add_argument("--dense", default=None, help="an existing fmnist-vgg checkpoint (default: train OUT/dense)")
    ap.add_argument("--table", action="store_true", help="print the table of what exists, run nothing")
    ap.add_argument("--only", default=None, help="comma-separated step names to run")
    ap.add_argument("--scope", default=SCOPE, choices=["global", "global-raw", "layer"],
                    help=f"pruning scope of IMP and Early-Bird (default {SCOPE})")
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    dense = a.dense or os.path.join(a.out, "dense")
    log = os.path.join(a.out, "plan.log")
    if not a.table:
        if not os.path.exists(os.path.join(dense, "model.json")):
            cli(["train", "fmnist-vgg", "--out", dense, "--quiet"], log)
        for key, _label, args in steps(a.out, dense, a.scope):
            if (a.only and key not in a.only.split(",")) or done(os.path.join(a.out, key)):
                continue
            cli(args, log)
    table(a.out, dense)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
