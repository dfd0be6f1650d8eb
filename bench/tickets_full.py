#!/usr/bin/env python
"""Full-scale lottery tickets of the real `fmnist-vgg` and `fmnist-spikformer` recipes (issue 13; fmnist-vgg has 426k
weights, not the 20k-weight VGG-small of bench/tickets_fmnist.py), on the whole Fashion-MNIST test set.

    .venv/bin/python bench/tickets_full.py                 # run what is missing, then print the table
    .venv/bin/python bench/tickets_full.py --table         # only the table of what exists
    make bench-tickets [BENCH_TICKETS_ARGS="--dense D --sf-dense S --sf-dense-same S18"]

Every step is one `slt-deploy` command (printed before it runs) writing one folder under OUT (default
runs/bench_tickets_full); a step whose folder holds a finished ticket is skipped and the IMP search is started with
--resume, so an interrupted plan continues where it stopped. Steps run --workers (2) at a time, each command on one
thread, a step as soon as what it reads exists (the binarized ticket starts when the IMP search has finished its round
5, not the whole search), waiting steps in the order of PRIORITY; logs OUT/logs/STEP.log.

Time: with the three dense models given (--dense, --sf-dense, --sf-dense-same) the longer worker has about 74
fmnist-vgg epochs (the IMP search alone is 52 on one worker; the two 16-epoch MultiSp steps about 48 on the other; one
fmnist-spikformer epoch costs about 1.5 fmnist-vgg epochs), 80-100 s each on the AVX512-BF16 machine the plan was
timed on (an AVX2 CPU without AVX-512 trains about 1.65x slower). Training the dense models too adds about 20 epochs
per worker, over the issue's 120 min. --bf16 picks the ticket steps trained with --precision bf16 (bfloat16 synaptic
products, float32 everything else; the dense models always float32). Its default, auto: on a CPU with native
bfloat16 kernels the IMP search, the binarized ticket and their random twins, where bf16 costs nothing beyond seed
noise (MultiSp and Early-Bird lose 0.8-0.9 pt in it and train float32); on a CPU that emulates bfloat16, where it is
slower than float32, none. Timed as one run on the AVX512-BF16 machine: all bf16 95.9 min, all float32 124.1 min;
the bf16 mix replayed from those runs' step times: 109.5 min. The runs, their tickets and what each precision costs are
in docs/tickets.md ("Full scale", "Timing, float32, and the precision per step").
The steps:
  dense          slt-deploy train fmnist-vgg                               (or --dense DIR: an existing checkpoint;
                 without it, make bench-train's runs/bench/fmnist-vgg when that exists)
  sf_dense       slt-deploy train fmnist-spikformer --epochs 2              (or --sf-dense DIR: the MultiSp ticket is
                 taken early, after 2 of 18 epochs, and trained with its patch set and ConvPEP masks for the other 16)
  sf_dense_same  slt-deploy train fmnist-spikformer --epochs 18: the dense transformer trained for as many epochs as
                 sf_dense + MultiSp (the MultiSp row's reference)
  imp98      IMP to 98 % in the steps 50, 75, 87.5, 93.75, 95, 96.9, 97.5, 98 %, learning-rate rewinding, distilled
             from the dense model; rounds 1-3 retrain the dense schedule's last 4 epochs, the later ones all 8 of them
             (--round-epochs 4,4,4,8: the sparse rounds need the longer recovery); global-raw ranking with the
             convolutions' weights counted 1.25x (--layer-gain conv=1.25: at 98 % they keep about twice the weights
             plain global-raw leaves them, taken from the 401k-weight fc1). Its round 5 (95 %) feeds imp_bin95
  imp_bin95  imp98's round 5 (95 %) binarized but for the first layer (its ~100 weights read analog pixels;
             binarizing them costs 25 pt before fine-tuning), 8 epochs, distilled from the dense model
  random98   random masks with imp98's per-layer sparsity, trained from epoch 1 for 8 epochs, distilled
  eb90       Early-Bird at 90 % (relative mask distance, tau 0.25, q 5, a mask every 1/4 epoch: --eb-checks 4; with a
             mask per epoch it never stopped inside the 8-epoch schedule), retrained 2 epochs, distilled. tau 0.25,
             not the default 0.1: it stops at epoch 3.0 instead of 5.5, well inside 1/10 of IMP's search time
  random90   random masks with eb90's per-layer sparsity, trained 4 epochs, distilled
  random_bin95  random masks with imp_bin95's per-layer sparsity, trained 8 epochs, binarized like it (8 epochs),
             distilled
  multisp    MultiSp on sf_dense (2 epochs): 37.6 % of the patches removed, ConvPEP 55 % sparse by magnitude with
             binary weights (but the first conv, which reads analog pixels) and binary activations, then 16 epochs of
             the recipe's schedule (latent weights trained, no distillation), batch norms recalibrated when the
             validation split says so (--bn-recal, default)
  random_multisp  the same with a random patch set and random ConvPEP masks of the same sizes (--pep-method random)
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
# IMP retraining epochs per round (the last repeats): past 87.5 % sparsity a round replays the whole dense schedule
ROUND_EPOCHS = "4,4,4,8"
# IMP's sparsity after each round: halving the kept weights up to 93.75 %, then finer steps (halving them at once from
# 96.9 to 98 % cost 0.8 pt more than two steps of 20 %), with the 95 % round the binarized ticket starts from
IMP_STEPS = "0.5,0.75,0.875,0.9375,0.95,0.96875,0.975,0.98"
# IMP's ranking weighs the convolutions' weights 1.25x (docs/tickets.md, "Global pruning")
LAYER_GAIN = "conv=1.25"
# MultiSp is taken early: from the dense transformer after SF_EPOCHS epochs, then trained MULTISP_EPOCHS with its
# patch set and masks fixed; the reference is a dense model trained SF_EPOCHS + MULTISP_EPOCHS = 18 epochs
# (docs/tickets.md, "MultiSp taken early": 89.80 % against 87.17 % from the 10-epoch model + 8 epochs)
SF_EPOCHS = 2
MULTISP_EPOCHS = 16
MULTISP = ["--method", "multisp", "--sparsity", "0.55", "--patch-sparsity", "0.376", "--pep-float-first",
           "--epochs", str(MULTISP_EPOCHS), "--quiet"]
# the steps trained with --precision bf16 (nn/precision.py: bfloat16 synaptic products, 1.2-1.3x faster training
# steps on an AVX512-BF16 CPU; emulated, and slower than float32, elsewhere: --bf16 auto); the others, and the dense
# models (the users' models), train float32.
# bf16 where it costs no accuracy beyond seed noise: the IMP search and what reads it (the binarized ticket and their
# two random twins; a twin always trains in its ticket's precision). MultiSp and Early-Bird lost 0.8-0.9 pt in bf16
# and stay float32. The whole plan in float32 does not fit 120 min (docs/tickets.md, "Timing, float32, and the
# precision per step").
BF16 = ("imp98", "imp_bin95", "random98", "random_bin95")
# step folder -> shipped name under models/tickets/ (--ship)
# (the tickets of the plan before --layer-gain, fmnist-vgg-imp98 and fmnist-vgg-imp-binary, stay shipped: issue 19's
# speed and Cortex-M figures were measured on them)
SHIP = {"imp98": "fmnist-vgg-imp98-convgain", "imp_bin95": "fmnist-vgg-imp-binary-convgain",
        "multisp": "fmnist-spikformer-multisp"}


def sf_dirs(out: str, sf_dense: str | None = None, sf_same: str | None = None) -> tuple:
    """(the dense transformer the MultiSp ticket starts from, the one trained for as many epochs as both together)."""
    return sf_dense or os.path.join(out, "sf_dense"), sf_same or os.path.join(out, "sf_dense_same")


def steps(out: str, dense: str, scope: str = SCOPE, sf_dense: str | None = None, bf16=BF16) -> list:
    """(folder, label, slt-deploy arguments, reference) of every ticket; reference = the dense row it is compared
    with ("vgg": dense fmnist-vgg; "sf": dense fmnist-spikformer trained for the same total epochs). The steps named
    in `bf16` train with --precision bf16, the others with fp32."""
    def j(*p):
        return os.path.join(out, *p)

    sf = sf_dirs(out, sf_dense)[0]
    plan = [
        ("imp98", "IMP 98% (LR rewinding, KD, conv gain)",
         ["ticket", dense, "--method", "imp", "--sparsity-steps", IMP_STEPS, "--rewind", "lr",
          "--round-epochs", ROUND_EPOCHS, "--scope", scope, "--layer-gain", LAYER_GAIN, "--resume", "--out", j("imp98")]
         + COMMON, "vgg"),
        ("imp_bin95", "IMP 95% + binary (not 1st layer, KD)",
         ["ticket", j("imp98", "rounds", "round_05"), "--method", "binarize", "--binarize-kind", "spikes",
          "--binarize-epochs", "8", "--teacher", dense, "--out", j("imp_bin95")] + COMMON, "vgg"),
        ("random98", "random, imp98's per-layer sparsity",
         ["ticket", dense, "--method", "random", "--sparsity", "0.98", "--like", j("imp98"), "--epochs", "8",
          "--out", j("random98")] + COMMON, "vgg"),
        ("eb90", "Early-Bird 90% (relative distance)",
         ["ticket", dense, "--method", "early-bird", "--sparsity", "0.9", "--epochs", "2", "--eb-checks", "4",
          "--tau", "0.25", "--scope", scope, "--out", j("eb90")] + COMMON, "vgg"),
        ("random90", "random, eb90's per-layer sparsity",
         ["ticket", dense, "--method", "random", "--sparsity", "0.9", "--like", j("eb90"), "--epochs", "4",
          "--out", j("random90")] + COMMON, "vgg"),
        ("random_bin95", "random, imp_bin95's sparsity + binary",
         ["ticket", dense, "--method", "random", "--sparsity", "0.95", "--like", j("imp_bin95"), "--epochs", "8",
          "--binarize", "--binarize-kind", "spikes", "--binarize-epochs", "8", "--out", j("random_bin95")]
         + COMMON, "vgg"),
        ("multisp", "MultiSp transformer (early, 1st conv float)",
         ["ticket", sf, "--pep-method", "magnitude", "--out", j("multisp")] + MULTISP, "sf"),
        ("random_multisp", "random patches + ConvPEP masks, binary",
         ["ticket", sf, "--pep-method", "random", "--out", j("random_multisp")] + MULTISP, "sf"),
    ]
    return [(key, label, args + ["--precision", "bf16" if key in bf16 else "fp32"], ref)
            for key, label, args, ref in plan]


def bf16_steps(spec: str, native: bool | None = None) -> tuple:
    """--bf16's value -> step names: "auto" (BF16 on a CPU with native bfloat16 kernels, `native`, default: this
    CPU's; none elsewhere, where bf16 is emulated and slower than float32), "all", "none" or a comma-separated list of
    ticket steps."""
    if spec == "auto":
        if native is None:
            from slt_deploy.nn.precision import fast

            native = fast("bf16")
        return BF16 if native else ()
    names = [key for key, *_ in steps("", "")]
    if spec in ("all", "none"):
        return tuple(names) if spec == "all" else ()
    picked = tuple(n.strip() for n in spec.split(",") if n.strip())
    wrong = [n for n in picked if n not in names]
    if wrong:
        raise SystemExit(f"error: --bf16: no step {', '.join(wrong)} (the steps: {', '.join(names)}; or all, none)")
    return picked


def dense_steps(out: str, dense: str, sf_dense: str | None = None, sf_same: str | None = None) -> list:
    """(name, folder, slt-deploy arguments) of the dense models the tickets start from or are compared with."""
    sf, same = sf_dirs(out, sf_dense, sf_same)
    return [("dense", dense, ["train", "fmnist-vgg", "--out", dense, "--quiet"]),
            ("sf_dense", sf, ["train", "fmnist-spikformer", "--epochs", str(SF_EPOCHS), "--out", sf, "--quiet"]),
            ("sf_dense_same", same, ["train", "fmnist-spikformer", "--epochs", str(SF_EPOCHS + MULTISP_EPOCHS),
                                     "--out", same, "--quiet"])]


# where `make bench-train` (bench/train_fmnist.py, default --out runs/bench) leaves its dense fmnist-vgg checkpoint
BENCH_TRAIN_VGG = os.path.join("runs", "bench", "fmnist-vgg")


def default_dense(out: str, bench_train: str = BENCH_TRAIN_VGG) -> str:
    """The dense fmnist-vgg when --dense is not given: OUT/dense when an earlier run of the plan trained it, else
    `make bench-train`'s checkpoint when there is one (the same recipe; saves the plan its 8-epoch training), else
    OUT/dense, which the plan then trains."""
    own = os.path.join(out, "dense")
    if not os.path.exists(os.path.join(own, "model.json")) and os.path.exists(os.path.join(bench_train, "model.json")):
        return bench_train
    return own


def done(folder: str) -> bool:
    return os.path.exists(os.path.join(folder, "ticket.json"))


def cli(args: list, log: str | None = None):
    cmd = [sys.executable, "-m", "slt_deploy.cli"] + args
    sys.stdout.write("$ slt-deploy " + " ".join(args) + "\n")  # one write: two workers' lines never interleave
    sys.stdout.flush()
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(log, "a") if log else open(os.devnull, "w") as f:
        subprocess.run(cmd, check=True, env=env, stdout=f if log else None, stderr=subprocess.STDOUT if log else None)


# The order in which waiting steps get a free worker: the IMP search first (the longest chain hangs on it: its round 5
# feeds the binarized ticket, its end the random ticket), the 18-epoch dense transformer next (the longest single
# step), then the two float32 MultiSp steps back to back (together the longest chain of the plan, about 90 min), the
# binarized ticket and its random twin, and the short steps last, where they fill both workers. With the default
# precisions, the step times measured in the two timed runs (bf16: 2026-12-06 late; float32: 2026-12-07) played
# through this order give 109.5 min, through the order before (the binarized ticket before the MultiSp pair) 113,
# and through the best of all 40,320 orders 108.3 (docs/tickets.md, "Timing, float32, and the precision per
# step").
PRIORITY = ["dense", "imp98", "sf_dense", "sf_dense_same", "multisp", "random_multisp", "imp_bin95", "random_bin95",
            "eb90", "random90", "random98"]


def inputs(args: list) -> list:
    """The checkpoint folders a command reads: a ticket's source and its --like / --teacher folders."""
    if args[0] != "ticket":
        return []
    return [args[1]] + [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--like", "--teacher")]


def finished_round(folder: str) -> int:
    """The last IMP round of a search folder that is complete (OUT/rounds/search.json is written after its checkpoint)."""
    try:
        with open(os.path.join(folder, "rounds", "search.json")) as f:
            return int(json.load(f).get("finished_round", 0))
    except (OSError, ValueError):
        return 0


def available(path: str, makers: dict, finished: set) -> bool:
    """Whether a step may read `path` now: made by a step of the plan -> that step has finished (an IMP round
    folder: that round has); not made by the plan -> it is the user's (the command checks that it exists)."""
    path = os.path.normpath(path)
    if path in makers:
        return makers[path] in finished
    parent, leaf = os.path.split(path)
    base, rounds = os.path.split(parent)
    if rounds == "rounds" and leaf.startswith("round_") and base in makers:
        return makers[base] in finished or finished_round(base) >= int(leaf[6:])
    return True


POLL_SECONDS = 30


def run_plan(jobs: list, workers: int, log_dir: str):
    """Run (name, folder, args) jobs on `workers` parallel commands (each trains on one thread), a job as soon as
    its inputs exist, waiting jobs in the order given. A failed job starts nothing new; the running ones finish
    (every step resumes or is skipped next time) and the failure is raised at the end."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    makers = {os.path.normpath(folder): name for name, folder, _ in jobs}
    pending, running, finished, failed = list(jobs), {}, set(), []
    os.makedirs(log_dir, exist_ok=True)
    with ThreadPoolExecutor(workers) as pool:
        while pending or running:
            for job in list(pending):
                if failed or len(running) >= workers:
                    break
                if all(available(p, makers, finished) for p in inputs(job[2])):
                    pending.remove(job)
                    running[pool.submit(cli, job[2], os.path.join(log_dir, job[0] + ".log"))] = job
            if not running:
                if pending and not failed:
                    raise SystemExit("error: no step can start: " + ", ".join(j[0] for j in pending))
                break
            # a timeout, not only completions: an IMP round finishing inside a running search frees its readers
            for f in wait(list(running), timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)[0]:
                name = running.pop(f)[0]
                try:
                    f.result()
                    finished.add(name)
                except subprocess.CalledProcessError as e:
                    failed.append(f"{name} (exit {e.returncode}; log {os.path.join(log_dir, name + '.log')})")
    if failed:
        raise SystemExit("error: failed: " + "; ".join(failed) + " (fix the cause and run again: finished steps "
                         "are skipped)")


def fmt(v, pct=False, digits=2):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return f"{100 * v:.{digits}f}" if pct else f"{v:.{digits}f}"


def _metric(ckpt: str, key: str):
    """metrics[key] of a checkpoint (test_acc, epochs: the epochs it was trained); None when it does not exist"""
    from slt_deploy.checkpoint import read_meta

    return read_meta(ckpt).get("metrics", {}).get(key) if os.path.exists(os.path.join(ckpt, "model.json")) else None


def table(out: str, dense: str, sf_dense: str | None = None, sf_same: str | None = None) -> list:
    sf, sf_same = sf_dirs(out, sf_dense, sf_same)
    same, same_ep = _metric(sf_same, "test_acc"), _metric(sf_same, "epochs")
    ref = {"vgg": _metric(dense, "test_acc"), "sf": same if same is not None else _metric(sf, "test_acc")}
    if same is None and ref["sf"] is not None:
        print(f"note: no {SF_EPOCHS + MULTISP_EPOCHS}-epoch dense transformer yet: MultiSp's drop is against the "
              f"{SF_EPOCHS}-epoch one")
    rows = [{"ticket": "dense fmnist-vgg", "test_acc": ref["vgg"], "sparsity": 0.0, "binary": False,
             "sop_ratio": 1.0, "energy_ratio": 1.0},
            {"ticket": f"dense fmnist-spikformer ({SF_EPOCHS} ep)", "test_acc": _metric(sf, "test_acc"),
             "sparsity": 0.0, "binary": False},
            {"ticket": f"dense fmnist-spikformer ({same_ep or SF_EPOCHS + MULTISP_EPOCHS} ep)",
             "test_acc": same, "sparsity": 0.0, "binary": False}]
    if same is not None and same_ep != SF_EPOCHS + MULTISP_EPOCHS:
        print(f"note: {sf_same} was trained {same_ep} epochs, not {SF_EPOCHS + MULTISP_EPOCHS} (dense + "
              f"MultiSp): MultiSp's drop is against it")
    found = []
    for key, label, args, against in steps(out, dense, sf_dense=sf_dense):
        p = os.path.join(out, key, "ticket.json")
        if not os.path.exists(p):
            found.append((label, None, None, against))
            continue
        with open(p) as f:
            t = json.load(f)
        found.append((label, t, args[1], against))
    # a ticket's own sop/energy ratios are against the checkpoint it started from (for binarize: an IMP round);
    # the table's are against the dense model: its counts as measured for the tickets that
    # started from it (the same 512 test images every time)
    dense_ops = {against: (t["measurements"]["dense_sops"], t["measurements"]["dense_energy_pj"])
                 for _label, t, src, against in found if t and src in (dense, sf) and "dense_sops" in t["measurements"]}
    for label, t, _src, against in found:
        if t is None:
            rows.append({"ticket": label, "missing": True})
            continue
        m, info = t["measurements"], t["ticket"]
        d_sops, d_pj = dense_ops.get(against, (None, None))
        rows.append({"ticket": label, "test_acc": m["test_acc"], "ref_acc": ref[against],
                     "sparsity": m["sparsity"], "binary": info["binary"], "spike_rate": m["spike_rate"],
                     "sop_ratio": m["sops"] / d_sops if d_sops else None,
                     "energy_ratio": m["energy_pj"] / d_pj if d_pj else None,
                     "search_s": info.get("search_seconds"), "total_s": info.get("total_seconds"),
                     "patch_sparsity": info.get("patch_sparsity"),
                     "pep_connection_sparsity": info.get("pep_connection_sparsity")})
    print("\n=== full-scale tickets, 10,000 Fashion-MNIST test images (T=4); drop against the dense model of the same "
          f"architecture (MultiSp: the dense transformer trained longest, {same_ep or '-'} epochs; "
          f"dense + MultiSp = {SF_EPOCHS + MULTISP_EPOCHS}) ===")
    print(f"{'ticket':40s} {'acc%':>6s} {'drop':>6s} {'sparse%':>8s} {'bin':>4s} {'spk':>6s} {'SOP/d%':>7s} "
          f"{'E/d%':>6s} {'search s':>9s}")
    for r in rows:
        if r.get("missing"):
            print(f"{r['ticket']:40s} (not run yet)")
            continue
        drop = None if r["test_acc"] is None or r.get("ref_acc") is None else r["ref_acc"] - r["test_acc"]
        print(f"{r['ticket']:40s} {fmt(r['test_acc']):>6s} {fmt(drop):>6s} "
              f"{fmt(r['sparsity'], True):>8s} {fmt(r['binary']):>4s} {fmt(r.get('spike_rate'), digits=3):>6s} "
              f"{fmt(r.get('sop_ratio'), True, 1):>7s} {fmt(r.get('energy_ratio'), True, 1):>6s} "
              f"{fmt(r.get('search_s'), digits=0):>9s}")
    ms = next((r for r in rows if r["ticket"].startswith("MultiSp") and not r.get("missing")), None)
    if ms:
        print(f"MultiSp: patches {fmt(ms['patch_sparsity'], True, 1)}% removed, ConvPEP connections "
              f"{fmt(ms['pep_connection_sparsity'], True, 1)}% removed")
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
    ap.add_argument("--dense", default=None, help="an existing fmnist-vgg checkpoint (default: OUT/dense if trained, else "
                                                     f"{BENCH_TRAIN_VGG} from make bench-train, else train OUT/dense)")
    ap.add_argument("--sf-dense", default=None,
                    help="an existing fmnist-spikformer checkpoint (default: train OUT/sf_dense)")
    ap.add_argument("--sf-dense-same", default=None,
                    help=f"an existing fmnist-spikformer checkpoint trained {SF_EPOCHS + MULTISP_EPOCHS} epochs (the MultiSp "
                         "row's reference; default: train OUT/sf_dense_same)")
    ap.add_argument("--workers", type=int, default=2, help="commands run in parallel (each trains on one thread)")
    ap.add_argument("--table", action="store_true", help="print the table of what exists, run nothing")
    ap.add_argument("--only", default=None, help="comma-separated step names to run")
    ap.add_argument("--ship", action="store_true",
                    help="copy the finished tickets to models/tickets/ (" + ", ".join(SHIP.values()) + ")")
    from slt_deploy.tickets.masks import SCOPES

    ap.add_argument("--scope", default=SCOPE, choices=list(SCOPES),
                    help=f"pruning scope of IMP and Early-Bird (default {SCOPE})")
    ap.add_argument("--bf16", default="auto", metavar="STEPS",
                    help="ticket steps trained with --precision bf16, comma-separated, or all / none / auto (default "
                         f"auto: {','.join(BF16)} on a CPU with native bfloat16 kernels, AVX512-BF16 or AMX; none "
                         "elsewhere, where bf16 is emulated and slower; none: every step float32)")
    a = ap.parse_args(argv)
    bf16 = bf16_steps(a.bf16)
    print("steps trained in bf16: " + (", ".join(bf16) if bf16 else "none (every step float32)")
          + (" (--bf16 auto: this CPU " + ("has" if bf16 else "has no") + " native bfloat16 kernels)"
             if a.bf16 == "auto" else ""))
    os.makedirs(a.out, exist_ok=True)
    dense = a.dense or default_dense(a.out)
    if not a.dense:
        print(f"dense fmnist-vgg: {dense}" + (" (make bench-train's)" if dense == BENCH_TRAIN_VGG else ""))
    if not a.table:
        only = a.only.split(",") if a.only else None
        jobs = [(name, folder, args) for name, folder, args in dense_steps(a.out, dense, a.sf_dense, a.sf_dense_same)
                if not os.path.exists(os.path.join(folder, "model.json"))]
        if only and not any("multisp" in k for k in only):
            jobs = [j for j in jobs if not j[0].startswith("sf_")]
        jobs += [(key, os.path.join(a.out, key), args) for key, _label, args, _ref in
                 steps(a.out, dense, a.scope, a.sf_dense, bf16)
                 if not (only and key not in only) and not done(os.path.join(a.out, key))]
        jobs.sort(key=lambda j: PRIORITY.index(j[0]) if j[0] in PRIORITY else len(PRIORITY))
        run_plan(jobs, a.workers, os.path.join(a.out, "logs"))
    table(a.out, dense, a.sf_dense, a.sf_dense_same)
    if a.ship:
        ship(a.out)


def ship(out: str):
    """Copy each finished ticket (checkpoint + ticket.json, not its rounds) to models/tickets/NAME, atomically."""
    import shutil

    for key, name in SHIP.items():
        src = os.path.join(out, key)
        if not done(src):
            print(f"not shipped: {src} has no finished ticket")
            continue
        dst = os.path.join(ROOT, "models", "tickets", name)
        tmp = dst + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        for f in ("model.json", "model.safetensors", "ticket.json"):
            shutil.copyfile(os.path.join(src, f), os.path.join(tmp, f))
        shutil.rmtree(dst, ignore_errors=True)
        os.replace(tmp, dst)
        print(f"shipped {dst}")


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
