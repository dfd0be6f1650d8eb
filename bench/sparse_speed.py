#!/usr/bin/env python
"""Sparse rewards in wall-clock time (issue 19): one ticket, batch 1, every way to run it, timed in rotation.

    .venv/bin/python bench/sparse_speed.py --ticket /work/runs/tf/imp98 [--dense /work/runs/fmnist-vgg]
    make bench-sparse-speed BENCH_SPARSE_SPEED_ARGS="--ticket CKPT --dense CKPT"

Candidates (all on the TICKET unless named "dense model"), one call = one sample (T steps), batch 1, 1 thread:
  snntorch eager   snntorch.import_from_nir of the ticket's NIR graph, stepped in Python (what bench/packed.py calls
                   "snntorch eager")
  slt eager        the checkpoint's own SpikingNet (PyTorch eager, snntorch neurons)
  ORT dense export onnxruntime on the plain dense export of the ticket (--opt sparse=none compact=none, step-major):
                   the baseline of the goals
  ORT ours step    our default export (sparse storage, compact=channels, step-major)
  ORT ours layer   our export with --opt schedule=layer (each synaptic layer once over the T steps stacked)
  packed C         the packed runtime (.slt)
  ORT dense model  onnxruntime on the dense checkpoint's export (--dense), for the accuracy/time trade-off
Every candidate is called once per round, on the same image, for --rounds rounds (images cycle): a load change of
this shared machine hits all alike; medians are reported. Then `verify` of ours (ONNX, layer schedule) and of the
packed C runtime against the PyTorch reference on --verify-limit test images (default: the whole test set).
Writes OUT/results.json and prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np
import torch

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]  # bench/onnx*.py must not shadow onnx
sys.path.insert(0, os.path.dirname(_HERE))

from slt_deploy.checkpoint import atomic_write, load
from slt_deploy.data import load_dataset
from slt_deploy.export import export, lower


def log(*a):
    print(*a, flush=True)


def snntorch_eager(ckpt, work):
    import nir
    from snntorch import utils
    from snntorch.import_nir import import_from_nir

    _, _, g = lower(ckpt)
    path = os.path.join(work, "ticket.nir")
    nir.write(path, g)
    net = import_from_nir(nir.read(path))

    def run(seq):
        utils.reset(net)
        with torch.no_grad():
            out = None
            for t in range(seq.shape[0]):
                y = net(torch.as_tensor(seq[t]))
                y = y[0] if isinstance(y, tuple) else y
                out = y if out is None else out + y
        return out

    return run


def c_before(rev, work):
    """The packed C runtime of git revision `rev` (its slt_packed.c/.h, built here with its own era's flags) as a
    callable seq -> logits: the before of a before/after in the same run."""
    import ctypes
    import subprocess

    root = os.path.dirname(_HERE)
    d = os.path.join(work, f"c-{rev}")
    os.makedirs(d, exist_ok=True)
    for f in ("slt_packed.c", "slt_packed.h"):
        src = subprocess.run(["git", "show", f"{rev}:slt_deploy/backends/packed/c/{f}"], cwd=root, check=True,
                             capture_output=True).stdout
        with open(os.path.join(d, f), "wb") as fh:
            fh.write(src)
    so = os.path.join(d, "libslt_packed.so")
    subprocess.run(["cc", "-std=c99", "-O3", "-ffp-contract=off", "-fPIC", "-shared", os.path.join(d, "slt_packed.c"),
                    "-o", so], check=True)
    L = ctypes.CDLL(so)
    L.slt_arena_size.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.POINTER(ctypes.c_size_t)]
    L.slt_open.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_void_p, ctypes.c_size_t,
                           ctypes.POINTER(ctypes.c_void_p)]
    L.slt_run_batch.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p, ctypes.c_void_p]
    return L


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticket", required=True, help="the ticket checkpoint")
    ap.add_argument("--dense", default=None, help="its dense checkpoint (optional: the accuracy/time reference)")
    ap.add_argument("--out", default="runs/bench_sparse_speed")
    ap.add_argument("--rounds", type=int, default=200, help="timed rounds (one call of every candidate each)")
    ap.add_argument("--images", type=int, default=50, help="distinct test images cycled through the rounds")
    ap.add_argument("--verify-limit", type=int, default=None, help="test images for verify (default: all)")
    ap.add_argument("--skip-verify", action="store_true")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--c-before", default=None, metavar="REV",
                    help="also time the packed C runtime of this git revision (e.g. main): before/after in one run")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    os.makedirs(a.out, exist_ok=True)
    from slt_deploy.backends.onnx.runner import OnnxRunner
    from slt_deploy.backends.packed.c_runner import CPackedRunner

    model, meta = load(a.ticket)
    model.eval()
    data = load_dataset(meta["recipe"]["dataset"], a.data_dir, 0)
    files = {"ORT dense export": ("onnx", {"sparse": "none", "compact": "none"}),
             "ORT ours step": ("onnx", {}),
             "ORT ours layer": ("onnx", {"schedule": "layer"}),
             "packed C": ("packed", {})}
    paths = {}
    for name, (target, opts) in files.items():
        p = os.path.join(a.out, name.replace(" ", "-") + (".onnx" if target == "onnx" else ".slt"))
        export(a.ticket, target, p, **opts)
        paths[name] = p
    if a.dense:
        paths["ORT dense model"] = os.path.join(a.out, "dense-model.onnx")
        export(a.dense, "onnx", paths["ORT dense model"], sparse="none", compact="none")
    xs = data.test.x[:a.images]
    seqs = [model.encode(xs[i:i + 1]).numpy() for i in range(len(xs))]
    imgs = [xs[i:i + 1].numpy() for i in range(len(xs))]
    fns = {"snntorch eager": snntorch_eager(a.ticket, a.out)}

    def slt_eager(seq):
        with torch.no_grad():
            return model.run(torch.as_tensor(seq))

    fns["slt eager"] = slt_eager
    for name in ("ORT dense export", "ORT ours step", "ORT ours layer", "ORT dense model"):
        if name in paths:
            sess = OnnxRunner(paths[name], threads=1).session
            inp = sess.get_inputs()[0].name
            fns[name] = (lambda seq, i, sess=sess, inp=inp: sess.run(["logits"], {inp: imgs[i]}))
    crun = CPackedRunner(paths["packed C"])
    fns["packed C"] = lambda seq: crun.run(seq)
    if a.c_before:
        import ctypes

        L = c_before(a.c_before, a.out)
        with open(paths["packed C"], "rb") as f:
            raw = f.read()
        buf = ctypes.create_string_buffer(raw, len(raw))
        need = ctypes.c_size_t(0)
        assert L.slt_arena_size(buf, len(raw), 0, ctypes.byref(need)) == 0
        arena = np.zeros(need.value // 8 + 2, np.uint64)
        h = ctypes.c_void_p()
        assert L.slt_open(buf, len(raw), 0, arena.ctypes.data, arena.nbytes, ctypes.byref(h)) == 0
        ncls = len(meta["labels"])

        def old_c(seq, L=L, h=h, buf=buf, arena=arena):
            seq = np.ascontiguousarray(seq, np.float32)
            out = np.empty((seq.shape[1], ncls), np.float32)
            L.slt_run_batch(h.value, seq.ctypes.data, seq.shape[1], out.ctypes.data, None)
            return out

        np.testing.assert_array_equal(old_c(seqs[0]), crun.run(seqs[0])["logits"])  # same bits before/after
        fns[f"packed C ({a.c_before})"] = old_c
    times = {k: [] for k in fns}
    for i in range(3):  # warm-up
        for k, f in fns.items():
            f(seqs[i], i) if k.startswith("ORT") else f(seqs[i])
    t_start = time.time()
    load0 = os.getloadavg()
    rng = np.random.default_rng(0)
    for r in range(a.rounds):
        i = r % len(seqs)
        # a fresh random order every round: no candidate always runs right after the cache-flushing eager ones
        for k in rng.permutation(list(fns)):
            f = fns[k]
            t0 = time.perf_counter()
            f(seqs[i], i) if k.startswith("ORT") else f(seqs[i])
            times[k].append(time.perf_counter() - t0)
    load1 = os.getloadavg()
    med = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
    base = med["ORT dense export"]
    res = {"ticket": a.ticket, "dense": a.dense, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "loadavg_before": load0, "loadavg_after": load1, "rounds": a.rounds, "median_ms": med,
           "timing_seconds": time.time() - t_start, "files_bytes": {k: os.path.getsize(p) for k, p in paths.items()},
           "ticket_metrics": meta.get("metrics", {})}
    log(f"[latency] batch 1, {a.rounds} rounds in rotation, load average {load0[0]:.1f} -> {load1[0]:.1f}")
    for k, v in med.items():
        log(f"  {k:18s} {v:8.3f} ms   vs ORT dense export {base / v:6.2f}x   vs snntorch eager "
            f"{med['snntorch eager'] / v:6.1f}x")
    if not a.skip_verify:
        from slt_deploy.verify import verify

        res["verify"] = {}
        for name, runner in (("ORT ours layer", OnnxRunner(paths["ORT ours layer"], threads=1)),
                             ("packed C", CPackedRunner(paths["packed C"]))):
            t0 = time.time()
            rep = verify(a.ticket, paths[name], limit=a.verify_limit, data_dir=a.data_dir, runner=runner, batch=256)
            keep = ("samples", "ok", "logits_bit_identical", "pred_agreement", "spike_agreement_min",
                    "max_abs_logit_diff", "ref_accuracy", "artifact_accuracy", "tolerance")
            res["verify"][name] = {k: rep.get(k) for k in keep}
            log(f"[verify] {name}: {json.dumps(res['verify'][name], default=str)} ({time.time() - t0:.0f}s)")
    atomic_write(os.path.join(a.out, "results.json"), json.dumps(res, indent=2, default=float))
    log("\n| runs | median ms (batch 1) | vs ORT dense export | vs snntorch eager |\n|---|---|---|---|")
    for k, v in med.items():
        log(f"| {k} | {v:.3f} | {base / v:.2f}x | {med['snntorch eager'] / v:.1f}x |")
    return res


if __name__ == "__main__":
    main()
