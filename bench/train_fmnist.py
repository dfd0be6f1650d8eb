"""Benchmark (make bench-train): train each Fashion-MNIST recipe on the full dataset (55k train / 5k val / 10k test)
and print test accuracy and time per epoch, against the goals (VGG >= 91%, ResNet >= 91%, transformer >= 89%,
each run < 30 min on a 2-core CPU). Checkpoints go to runs/bench/<recipe>/ (usable by the ticket benchmark).

It first prints the training throughput (images/s) of each recipe before and after the speed-ups, measured in the
same run on the same batches with the real training loop (`--throughput-only` stops there):
  before     = the eager LIF graph, every step recomputing the first layer, torch's default threads (the old code)
  1 thread   = the same with one torch thread (train.set_threads' default)
  + fused    = + the fused LIF autograd step (nn/lif.py)
  + reuse    = + the first layer computed once per sequence (nn/layers.py Synapse._repeat_input) = the default now
  + bf16     = + bfloat16 synaptic products (--precision bf16, nn/precision.py; the ticket bench trains so)
The configurations alternate in rounds so the machine's load hits each of them alike."""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from slt_deploy.checkpoint import save
from slt_deploy.data import Dataset, Split, load_dataset
from slt_deploy.log import speed
from slt_deploy.nn.layers import set_input_reuse
from slt_deploy.nn.lif import set_fused
from slt_deploy.train import evaluate, set_threads, train
from slt_deploy.zoo import build_model, load_recipe

GOALS = {"fmnist-vgg": 91.0, "fmnist-resnet": 91.0, "fmnist-spikformer": 89.0}


def plan_epochs(r, data, budget_min):
    """Time 8 training steps on a throw-away copy; keep the recipe's epochs unless they would not fit the budget."""
    import torch.nn.functional as F

    set_threads(r["train"])
    m = build_model(r)
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    bs = int(r["train"]["batch_size"])
    x, y = data.train.x[:bs], data.train.y[:bs]
    F.cross_entropy(m(x) / m.T, y).backward()  # warm-up
    t0 = time.time()
    for _ in range(8):
        opt.zero_grad()
        F.cross_entropy(m(x) / m.T, y).backward()
        opt.step()
    step = (time.time() - t0) / 8
    per_epoch = step * (len(data.train.x) // bs) * 1.15  # + evaluation on val
    fit = max(1, int(budget_min * 60 / per_epoch))
    want = int(r["train"]["epochs"])
    print(f"{r['name']}: {step:.2f} s/step, ~{per_epoch / 60:.1f} min/epoch -> {min(fit, want)} epochs "
          f"(recipe {want}, budget {budget_min:.0f} min)", flush=True)
    return min(fit, want)


CONFIGS = [("before", dict(fused=False, reuse=False, threads=None)),
           ("1 thread", dict(fused=False, reuse=False, threads=1)),
           ("+ fused LIF", dict(fused=True, reuse=False, threads=1)),
           ("+ input reuse (fp32)", dict(fused=True, reuse=True, threads=1)),
           ("+ bf16 products", dict(fused=True, reuse=True, threads=1, precision="bf16"))]
DEFAULT = "+ input reuse (fp32)"  # what `train` does without --precision


def throughput(r, data, steps: int, rounds: int) -> dict:
    """images/s of the real training loop (train.train) for each CONFIGS entry, `rounds` alternating rounds of
    `steps` batches each (after one warm-up batch)."""
    bs = int(r["train"]["batch_size"])
    sub = Dataset(data.name, Split(data.train.x[:bs * steps], data.train.y[:bs * steps]),
                  Split(data.val.x[:0], data.val.y[:0]), data.test, data.labels, data.input_max)
    warm = Dataset(data.name, Split(data.train.x[:bs], data.train.y[:bs]), sub.val, data.test, data.labels,
                   data.input_max)
    default_threads = os.cpu_count() or 1
    secs = {name: 0.0 for name, _ in CONFIGS}
    try:
        for _ in range(rounds):
            for name, c in CONFIGS:
                set_fused(c["fused"])
                set_input_reuse(c["reuse"])
                tc = {**r["train"], "threads": c["threads"] or default_threads,
                      "precision": c.get("precision", "fp32")}
                model = build_model(r)
                train(model, warm, tc, epochs=1, progress=False)
                t0 = time.time()
                train(model, sub, tc, epochs=1, progress=False)
                secs[name] += time.time() - t0
    finally:
        set_fused(True)
        set_input_reuse(True)
    return {name: rounds * steps * bs / s for name, s in secs.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipes", default=",".join(GOALS))
    ap.add_argument("--epochs", type=int, default=None, help="override the recipes' epochs (quick runs)")
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--budget-min", type=float, default=28.0,
                    help="per recipe: fewer epochs than the recipe's if the measured step time would exceed this")
    ap.add_argument("--throughput-steps", type=int, default=30, help="batches per configuration and round")
    ap.add_argument("--throughput-rounds", type=int, default=2)
    ap.add_argument("--throughput-only", action="store_true", help="measure throughput, train nothing")
    ap.add_argument("--no-throughput", action="store_true")
    a = ap.parse_args()
    rows = []
    if not a.no_throughput:
        tp = {}
        for name in a.recipes.split(","):
            r = load_recipe(name)
            tp[name] = throughput(r, load_dataset(r["dataset"], a.data_dir, int(r.get("seed", 0))),
                                  a.throughput_steps, a.throughput_rounds)
            print(f"{name}: " + ", ".join(f"{k} {v:.0f} img/s" for k, v in tp[name].items()), flush=True)
        names = [n for n, _ in CONFIGS]
        print(f"\ntraining throughput, images/s ({a.throughput_rounds} x {a.throughput_steps} batches per "
              f"configuration; load: {os.getloadavg()[0]:.1f})")
        print(f"{'recipe':20s} " + " ".join(f"{n:>20s}" for n in names) + f" {'fp32 vs before':>15s}"
              f" {'bf16 vs fp32':>15s}")
        for rec, v in tp.items():
            print(f"{rec:20s} " + " ".join(f"{v[n]:20.0f}" for n in names)
                  + f" {speed(v[DEFAULT] / v[names[0]]):>15s} {speed(v[names[-1]] / v[DEFAULT]):>15s}")
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "throughput.json"), "w") as f:
            json.dump(tp, f, indent=2)
        if a.throughput_only:
            return
    for name in a.recipes.split(","):
        r = load_recipe(name)
        data = load_dataset(r["dataset"], a.data_dir, int(r.get("seed", 0)))
        epochs = a.epochs or plan_epochs(r, data, a.budget_min)
        model = build_model(r)
        t0 = time.time()
        hist = train(model, data, r["train"], epochs=epochs, progress=False, seed=int(r.get("seed", 0)))
        total = time.time() - t0
        acc = evaluate(model, data.test)
        save(model, os.path.join(a.out, name), labels=data.labels,
             metrics={"test_acc": acc, "epochs": len(hist), "seconds_total": total,
                      "seconds_per_epoch": total / len(hist)})
        rows.append({"recipe": name, "epochs": len(hist), "test_acc": acc, "s_per_epoch": total / len(hist),
                     "minutes": total / 60, "goal": GOALS.get(name), "met": acc >= GOALS.get(name, 0)
                     and total < 1800})
        print(f"{name}: {acc:.2f}% after {len(hist)} epochs, {total / len(hist):.0f} s/epoch, "
              f"{total / 60:.1f} min", flush=True)
    print(f"\n{'recipe':20s} {'epochs':>6s} {'test acc':>9s} {'goal':>6s} {'s/epoch':>8s} {'minutes':>8s}  met")
    for r in rows:
        print(f"{r['recipe']:20s} {r['epochs']:6d} {r['test_acc']:8.2f}% {r['goal'] or 0:5.1f}% "
              f"{r['s_per_epoch']:8.0f} {r['minutes']:8.1f}  {'yes' if r['met'] else 'NO'}")
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "train_fmnist.json"), "w") as f:
        json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
