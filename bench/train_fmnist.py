"""Benchmark (make bench-train): train each Fashion-MNIST recipe on the full dataset (55k train / 5k val / 10k test)
and print test accuracy and time per epoch, against the goals (VGG >= 91%, ResNet >= 91%, transformer >= 89%,
each run < 30 min on a 2-core CPU). Checkpoints go to runs/bench/<recipe>/ (usable by the ticket benchmark)."""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from slt_deploy.checkpoint import save
from slt_deploy.data import load_dataset
from slt_deploy.train import evaluate, train
from slt_deploy.zoo import build_model, load_recipe

GOALS = {"fmnist-vgg": 91.0, "fmnist-resnet": 91.0, "fmnist-spikformer": 89.0}


def plan_epochs(r, data, budget_min):
    """Time 8 training steps on a throw-away copy; keep the recipe's epochs unless they would not fit the budget."""
    import torch.nn.functional as F

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipes", default=",".join(GOALS))
    ap.add_argument("--epochs", type=int, default=None, help="override the recipes' epochs (quick runs)")
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--budget-min", type=float, default=28.0,
                    help="per recipe: fewer epochs than the recipe's if the measured step time would exceed this")
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    rows = []
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
