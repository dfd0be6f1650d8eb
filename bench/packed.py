#!/usr/bin/env python
"""Packed-bit target benchmark (issue 6), one run, batch 1, on Fashion-MNIST.

    .venv/bin/python bench/packed.py                      # trains a small dense VGG (1 epoch) if none given
    .venv/bin/python bench/packed.py --dense CKPT --ticket CKPT
    make bench-packed

1. models: a dense fmnist VGG (float) and a sparse binarized ticket of it (magnitude mask at --density, binary
   weights, --finetune epochs), unless given;
2. file bytes: packed ticket vs fp32 dense vs the information bound log2 C(n, k) + k bits (+ header);
3. exactness: both packed runtimes (C and numpy) vs the PyTorch reference on the WHOLE test set (spikes per layer,
   logits, predictions); the dense float model through the C runtime too (tolerance, not exact);
4. latency at batch 1 (median over --samples images): C runtime (ticket and dense), PyTorch/snntorch eager
   (the checkpoint's own modules, and snntorch.import_from_nir of the dense NIR graph), onnxruntime on the dense
   ONNX export; arena bytes per model.
Writes OUT/results.json."""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import warnings

import numpy as np
import torch

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]  # bench/onnx.py must not shadow onnx
sys.path.insert(0, os.path.dirname(_HERE))

from slt_deploy.backends.packed.fileio import read_file
from slt_deploy.backends.packed.format import size_report
from slt_deploy.checkpoint import atomic_write, load, save
from slt_deploy.data import load_dataset
from slt_deploy.export import export
from slt_deploy.log import speed
from slt_deploy.nn.layers import synapses
from slt_deploy.train import evaluate, train
from slt_deploy.zoo import build_model, validate_recipe

DENSE = {"name": "fmnist-vgg-small", "dataset": "fmnist", "T": 4, "encoding": "direct",
         "neuron": {"beta": 0.5, "threshold": 1.0, "reset": "zero"}, "seed": 0,
         "arch": {"type": "vgg", "convs": [{"out": 16, "stride": 2}, {"out": 32, "stride": 2}], "fc": []},
         "train": {"epochs": 1, "batch_size": 128, "lr": 0.005, "optimizer": "adam", "schedule": "cosine",
                   "weight_decay": 0.0}}


def make_dense(out, data, epochs):
    if os.path.exists(os.path.join(out, "model.json")):
        return out
    r = validate_recipe(copy.deepcopy(DENSE))
    m = build_model(r)
    train(m, data, r["train"], epochs=epochs, progress=False)
    save(m, out, metrics={"test_acc": evaluate(m, data.test)}, labels=data.labels)
    return out


def make_ticket(dense, out, data, density, epochs):
    """Magnitude mask per layer at `density`, binary weights, short fine-tune (masks fixed)."""
    if os.path.exists(os.path.join(out, "model.json")):
        return out
    m, meta = load(dense)
    with torch.no_grad():
        for _, s in synapses(m):
            w = s.weight.abs().flatten()
            k = max(1, int(round(density * w.numel())))
            thr = torch.topk(w, k).values.min()
            s.mask.copy_((s.weight.abs() >= thr).float())
            s.binary = True
    m.recipe = {**m.recipe, "binary": True, "name": m.recipe["name"] + f"-bin{density}"}
    if epochs:
        train(m, data, {**m.recipe["train"], "lr": 0.002}, epochs=epochs, progress=False)
    save(m, out, metrics={"test_acc": evaluate(m, data.test)}, labels=data.labels)
    return out


def median_ms(fn, seqs, rounds=3):
    """Batch-1 latency: the median over the images, best of `rounds` passes (the machine is shared)."""
    fn(seqs[0])  # warm-up
    best = None
    for _ in range(rounds):
        ts = []
        for s in seqs:
            t0 = time.perf_counter()
            fn(s)
            ts.append(time.perf_counter() - t0)
        m = 1000 * float(np.median(ts))
        best = m if best is None else min(best, m)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dense")
    ap.add_argument("--ticket")
    ap.add_argument("--out", default="runs/bench_packed")
    ap.add_argument("--density", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=1, help="dense training epochs if --dense is not given")
    ap.add_argument("--finetune", type=int, default=1, help="ticket fine-tune epochs if --ticket is not given")
    ap.add_argument("--samples", type=int, default=200, help="latency: images, batch 1")
    ap.add_argument("--verify-limit", type=int, default=None, help="exactness: test images (default: all)")
    ap.add_argument("--skip-verify", action="store_true", help="sizes and latency only")
    ap.add_argument("--also", nargs="*", default=[], help="more checkpoints (e.g. other tickets): export, sizes and "
                    "both runtimes vs the reference on the test set")
    a = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    os.makedirs(a.out, exist_ok=True)
    data = load_dataset("fmnist")
    dense = a.dense or make_dense(os.path.join(a.out, "dense"), data, a.epochs)
    ticket = a.ticket or make_ticket(dense, os.path.join(a.out, "ticket"), data, a.density, a.finetune)
    res = {"dense": dense, "ticket": ticket}

    # --- files and sizes
    paths = {"ticket": os.path.join(a.out, "ticket.slt"), "dense": os.path.join(a.out, "dense.slt"),
             "onnx": os.path.join(a.out, "dense.onnx")}
    export(ticket, "packed", paths["ticket"])
    export(dense, "packed", paths["dense"])
    res["sizes"] = {k: size_report(read_file(paths[k])) for k in ("ticket", "dense")}
    for k in res["sizes"]:
        res["sizes"][k].pop("layers", None)
    try:
        export(dense, "onnx", paths["onnx"])
    except Exception as e:  # noqa: BLE001 - the onnx target belongs to another issue; report, don't die
        res["onnx_error"] = str(e)

    # --- exactness on the test set, both runtimes
    from slt_deploy.backends.packed.c_runner import CPackedRunner
    from slt_deploy.backends.packed.numpy_runner import NumpyPackedRunner
    from slt_deploy.verify import verify

    res["verify"] = {}
    t0 = time.time()
    for name, rt in () if a.skip_verify else (("ticket/c", CPackedRunner(paths["ticket"])), ("ticket/numpy", NumpyPackedRunner(paths["ticket"])),
                     ("dense/c", CPackedRunner(paths["dense"]))):
        ck = ticket if name.startswith("ticket") else dense
        rep = verify(ck, paths[name.split("/")[0]], limit=a.verify_limit, runner=rt, batch=256)
        res["verify"][name] = {k: rep[k] for k in ("samples", "ok", "logits_bit_identical", "pred_agreement",
                                                   "spike_agreement_min", "max_abs_logit_diff", "ref_accuracy",
                                                   "artifact_accuracy")}
        print(f"verify {name}: {json.dumps(res['verify'][name])} ({time.time() - t0:.0f}s)", flush=True)

    for ck in [] if a.skip_verify else a.also:
        name = os.path.basename(os.path.normpath(ck))
        out = os.path.join(a.out, f"also-{name}.slt")
        export(ck, "packed", out)
        sz = size_report(read_file(out))
        row = {"file_bytes": sz["file_bytes"], "fp32_dense_bytes": sz["fp32_dense_bytes"],
               "ratio_to_bound": sz["ratio_to_bound"], "arena_bytes": CPackedRunner(out).arena_bytes}
        for rt in (CPackedRunner(out), NumpyPackedRunner(out)):
            rep = verify(ck, out, limit=a.verify_limit, runner=rt, batch=256)
            row[rt.runtime] = {k: rep[k] for k in ("samples", "ok", "logits_bit_identical", "pred_agreement",
                                                   "spike_agreement_min", "max_abs_logit_diff", "tolerance")}
        res.setdefault("also", {})[name] = row
        print(f"also {name}: {json.dumps(row, default=str)} ({time.time() - t0:.0f}s)", flush=True)

    # --- latency, batch 1
    xs = data.test.x[:a.samples]
    mt, _ = load(ticket)
    md, _ = load(dense)
    seqs = [md.encode(xs[i:i + 1]).numpy() for i in range(len(xs))]
    lat = {}
    rc_t, rc_d = CPackedRunner(paths["ticket"]), CPackedRunner(paths["dense"])
    lat["c_ticket"] = median_ms(lambda s: rc_t.run(s), seqs)
    lat["c_dense"] = median_ms(lambda s: rc_d.run(s), seqs)
    ev0 = rc_t.c.events()
    rc_t.run(seqs[0])
    res["events_per_sample_ticket"] = rc_t.c.events() - ev0
    with torch.no_grad():
        lat["torch_eager_dense"] = median_ms(lambda s: md.run(torch.as_tensor(s)), seqs)
    try:
        from sparse_speed import snntorch_eager  # the same snntorch reference as bench/sparse_speed.py

        snn = snntorch_eager(dense, a.out, "dense.nir")
        lat["snntorch_eager_dense"] = median_ms(snn, seqs)
    except Exception as e:  # noqa: BLE001
        res["snntorch_error"] = f"{type(e).__name__}: {e}"
    if os.path.exists(paths["onnx"]):
        from slt_deploy.runtime import load_runner

        ro = load_runner(paths["onnx"])
        lat["onnxruntime_dense"] = median_ms(lambda s: ro.run(s), seqs)
    res["latency_ms"] = lat
    res["arena_bytes"] = {"ticket": rc_t.arena_bytes, "dense": rc_d.arena_bytes}
    eager = lat.get("snntorch_eager_dense", lat["torch_eager_dense"])
    res["goals"] = {
        "file_le_1.3x_bound": res["sizes"]["ticket"]["ratio_to_bound"] <= 1.3,
        "c_ge_20x_snntorch": eager / lat["c_ticket"] >= 20,
        "c_ge_5x_onnxruntime": ("onnxruntime_dense" in lat) and lat["onnxruntime_dense"] / lat["c_ticket"] >= 5,
        "exact_ticket_both_runtimes": None if a.skip_verify else
        all(res["verify"][k]["ok"] for k in ("ticket/c", "ticket/numpy")),
    }
    atomic_write(os.path.join(a.out, "results.json"), json.dumps(res, indent=2, default=float))
    s = res["sizes"]["ticket"]
    print(f"\nticket file {s['file_bytes']} B | fp32 dense {s['fp32_dense_bytes']} B | bound {s['bound_bytes']:.0f} B"
          f" -> {s['ratio_to_bound']:.3f}x bound (weights only {s['weights_ratio_to_bound']:.3f}x);"
          f" dense model packed {res['sizes']['dense']['file_bytes']} B")
    print("latency ms (batch 1): " + ", ".join(f"{k} {v:.3f}" for k, v in lat.items()))
    print(f"C (ticket) vs snntorch eager: {speed(eager / lat['c_ticket'])}"
          + (f"; vs onnxruntime dense: {speed(lat['onnxruntime_dense'] / lat['c_ticket'])}"
             if "onnxruntime_dense" in lat else ""))
    print(f"arena bytes: {res['arena_bytes']}; goals: {res['goals']}")


if __name__ == "__main__":
    main()
