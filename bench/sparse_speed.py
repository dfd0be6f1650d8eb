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
this shared machine hits all alike; medians are reported. Then each candidate alone, --rounds calls back to back
("back-to-back": the steady state of a loop that runs one model per frame; in rotation a short call pays for what
the candidate before it left behind: after one snntorch eager forward the packed C call measured 0.19-0.24 ms
against 0.14 ms back to back, while a 16 MB cache flush cost it only 0.01 ms). Then `verify` of ours (ONNX, layer schedule) and of the
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


def snntorch_eager(ckpt, work, name="ticket.nir"):
    """The checkpoint through NIR into snntorch (import_from_nir): run(seq) -> summed logits, eager, no grad."""
    import nir
    from snntorch import utils
    from snntorch.import_nir import import_from_nir

    _, _, g = lower(ckpt)
    path = os.path.join(work, name)
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


def layer_alternatives(ckpt, T, reps=300, density=0.34):
    """Each synaptic layer of the ticket alone in onnxruntime (1 thread), every form we could lower it to, at batch
    1 and at T*1 (the layer-major schedule), timed in rotation on random 0/1 inputs of `density`:
      dense        Conv / MatMul with the pruned weights as zeros (what onnxruntime runs for every export)
      kept-cols    Affine: Gather of the input columns with a kept weight + smaller MatMul (--opt compute=gather)
      kept-rows    Conv: Gather of the im2col rows (ci, ky, kx) with a kept weight + MatMul
      ell          Gather of every kept weight's input (padded to the longest row) * weight, ReduceSum
      com.ms.sparse  com.microsoft.SparseToDenseMatMul (Affine): the weight as a run-time COO sparse input
    -> {layer: {batch: {form: ms}}}; results agree with dense to float rounding (checked)."""
    import nir
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from slt_deploy.ir.graph import conv_attrs
    from slt_deploy.passes.check_shapes import shapes_of

    _, _, g = lower(ckpt)
    shapes = shapes_of(g)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.log_severity_level = 1, 3
    N = helper.make_node
    rng = np.random.default_rng(0)

    def sess(nodes, inits, xshape, extra_inputs=()):
        gr = helper.make_graph(nodes, "l", [helper.make_tensor_value_info("x", TensorProto.FLOAT, xshape),
                                            *extra_inputs],
                               [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                               [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
        ops = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("com.microsoft", 1)] if extra_inputs else [])
        m = helper.make_model(gr, opset_imports=ops, ir_version=8)
        return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])

    out = {}
    for n, node in g.nodes.items():
        if not isinstance(node, (nir.Conv2d, nir.Affine)):
            continue
        w = np.asarray(node.weight, np.float32)
        src = [e[0] for e in g.edges if e[1] == n][0]
        in_shape = list(shapes[src])
        res = {}
        for tb in sorted({1, T}):
            x = (rng.random([tb, *in_shape]) < density).astype(np.float32)
            cand, feeds = {}, {}
            if isinstance(node, nir.Conv2d):
                (st, _), (pd, _) = conv_attrs(node)
                ci, h, k = in_shape[0], in_shape[1], w.shape[2]
                co, ho = w.shape[0], shapes[n][1]
                cand["dense"] = sess([N("Conv", ["x", "W"], ["y"], strides=[st, st], pads=[pd] * 4,
                                       kernel_shape=[k, k])], {"W": w}, [tb, *in_shape])
                hp = h + 2 * pd
                base = (np.arange(ho)[:, None] * st * hp + np.arange(ho)[None, :] * st).ravel()
                nz = w != 0
                rows = np.flatnonzero(nz.any(0).ravel())
                ri = np.stack([np.ravel_multi_index(np.unravel_index(r, (ci, k, k)), (ci, hp, hp)) + base
                               for r in rows]) if len(rows) else np.zeros((1, ho * ho), np.int64)
                pre = [N("Pad", ["x", "pads"], ["xp"]), N("Reshape", ["xp", "flat"], ["xf"])]
                common = {"pads": np.array([0, 0, pd, pd, 0, 0, pd, pd], np.int64), "flat": np.array([0, -1], np.int64)}
                cand["kept-rows"] = sess(pre + [N("Gather", ["xf", "i"], ["xg"], axis=1), N("MatMul", ["Wr", "xg"], ["y"])],
                                         {**common, "i": ri.astype(np.int64),
                                          "Wr": w.reshape(co, -1)[:, rows] if len(rows) else np.zeros((co, 1), np.float32)},
                                         [tb, *in_shape])
                K = max(1, int(nz.reshape(co, -1).sum(1).max()))
                idx = np.zeros((co, K, ho * ho), np.int64)
                wv = np.zeros((co, K, 1), np.float32)
                for o in range(co):
                    for j, (c_, ky, kx) in enumerate(zip(*np.nonzero(w[o]))):
                        idx[o, j] = np.ravel_multi_index((c_, ky, kx), (ci, hp, hp)) + base
                        wv[o, j, 0] = w[o, c_, ky, kx]
                cand["ell"] = sess(pre + [N("Gather", ["xf", "i"], ["xg"], axis=1), N("Mul", ["xg", "w"], ["p"]),
                                          N("ReduceSum", ["p", "ax"], ["y"], keepdims=0)],
                                   {**common, "i": idx, "w": wv, "ax": np.array([2], np.int64)}, [tb, *in_shape])
            else:
                din = w.shape[1]
                cand["dense"] = sess([N("MatMul", ["x", "W"], ["y"])], {"W": w.T.copy()}, [tb, din])
                cols = np.flatnonzero(w.any(0))
                cand["kept-cols"] = sess([N("Gather", ["x", "c"], ["xg"], axis=1), N("MatMul", ["xg", "W"], ["y"])],
                                         {"W": w[:, cols].T.copy(), "c": cols.astype(np.int64)}, [tb, din])
                K = max(1, int((w != 0).sum(1).max()))
                idx = np.zeros((w.shape[0], K), np.int64)
                wv = np.zeros((w.shape[0], K), np.float32)
                for o in range(w.shape[0]):
                    c_ = np.flatnonzero(w[o])
                    idx[o, :len(c_)], wv[o, :len(c_)] = c_, w[o, c_]
                cand["ell"] = sess([N("Gather", ["x", "i"], ["xg"], axis=1), N("Mul", ["xg", "w"], ["p"]),
                                    N("ReduceSum", ["p", "ax"], ["y"], keepdims=0)],
                                   {"i": idx, "w": wv, "ax": np.array([2], np.int64)}, [tb, din])
                A = helper.ValueInfoProto()
                A.name = "A"
                A.type.sparse_tensor_type.elem_type = TensorProto.FLOAT
                for d in w.shape:
                    A.type.sparse_tensor_type.shape.dim.add().dim_value = d
                xt = helper.make_tensor_value_info("x", TensorProto.FLOAT, [din, tb])
                gr = helper.make_graph([N("SparseToDenseMatMul", ["A", "x"], ["y"], domain="com.microsoft")], "s",
                                       [A, xt], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
                m = helper.make_model(gr, opset_imports=[helper.make_opsetid("", 17),
                                                         helper.make_opsetid("com.microsoft", 1)], ir_version=8)
                sp = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
                r_, c2 = np.nonzero(w)
                st_ = ort.SparseTensor.sparse_coo_from_numpy(list(w.shape), w[r_, c2].astype(np.float32),
                                                             np.stack([r_, c2], 1).astype(np.int64).ravel(),
                                                             ort.OrtDevice.make("cpu", 0))
                feeds["com.ms.sparse"] = {"A": ort.OrtValue.ort_value_from_sparse_tensor(st_),
                                          "x": ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(x.T))}
                cand["com.ms.sparse"] = sp
            ref = cand["dense"].run(None, {"x": x})[0].reshape(tb, -1)

            def call(k, x=x, cand=cand, feeds=feeds, tb=tb):
                if k in feeds:
                    return cand[k].run_with_ort_values(["y"], feeds[k])[0].numpy().T.reshape(tb, -1)
                return cand[k].run(None, {"x": x})[0].reshape(tb, -1)

            for k in cand:
                assert np.allclose(call(k), ref, atol=1e-3), (n, k)
            ts = {k: [] for k in cand}
            for _ in range(reps):
                for k in rng.permutation(list(cand)):
                    t0 = time.perf_counter()
                    call(k)
                    ts[k].append(time.perf_counter() - t0)
            res[tb] = {k: 1e3 * float(np.median(v)) for k, v in ts.items()}
            log(f"  {n:8s} batch {tb}: " + ", ".join(f"{k} {v:.3f} ms" for k, v in res[tb].items()))
        out[n] = res
    return out


def c_before(rev, work):
    """The packed C runtime of git revision `rev` (its C files and headers: one slt_packed.c before 2026-12-06, one
    file per concern since; built here with today's flags) as a callable seq -> logits: the before of a before/after
    in the same run."""
    import ctypes
    import subprocess

    root = os.path.dirname(_HERE)
    d = os.path.join(work, f"c-{rev}")
    os.makedirs(d, exist_ok=True)
    c_dir = "slt_deploy/backends/packed/c"
    names = subprocess.run(["git", "ls-tree", "--name-only", f"{rev}:{c_dir}"], cwd=root, check=True,
                           capture_output=True, text=True).stdout.split()
    names = [f for f in names if f.startswith("slt_") and f.endswith((".c", ".h"))]
    for f in names:
        src = subprocess.run(["git", "show", f"{rev}:{c_dir}/{f}"], cwd=root, check=True, capture_output=True).stdout
        with open(os.path.join(d, f), "wb") as fh:
            fh.write(src)
    so = os.path.join(d, "libslt_packed.so")
    from slt_deploy.backends.packed.c_runner import cflags

    # the binding's own flags (-mavx2 where the CPU has it): a fair before/after
    subprocess.run(["cc", *cflags(), *(os.path.join(d, f) for f in names if f.endswith(".c")), "-o", so], check=True)
    L = ctypes.CDLL(so)
    L.slt_arena_size.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.POINTER(ctypes.c_size_t)]
    L.slt_open.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_void_p, ctypes.c_size_t,
                           ctypes.POINTER(ctypes.c_void_p)]
    L.slt_run_batch.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p, ctypes.c_void_p]
    return L


def c_loop(slt_path, seqs, work, src_dir, c_files, tag, calls):
    """The packed runtime whose sources are `c_files` in `src_dir`, timed by bench/packed_loop.c in a C loop (no
    Python between calls; frames = `seqs` cycled): -> ms per call (mean of the fastest of 7 blocks of `calls`)."""
    import subprocess

    from slt_deploy.backends.packed.c_runner import cflags

    exe = os.path.join(work, f"packed_loop-{tag}")
    flags = [f for f in cflags() if f not in ("-shared", "-fPIC")]
    subprocess.run(["cc", *flags, "-I", src_dir, os.path.join(_HERE, "packed_loop.c"),
                    *(os.path.join(src_dir, f) for f in c_files), "-o", exe], check=True)
    frames = os.path.join(work, "frames.f32")
    np.ascontiguousarray(np.stack([s[:, 0] for s in seqs]), np.float32).tofile(frames)
    out = subprocess.run([exe, slt_path, frames, str(calls)], check=True, capture_output=True, text=True).stdout
    return float(out.split()[0])


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
    ap.add_argument("--c-loop-calls", type=int, default=2000,
                    help="calls per block of the packed runtime timed in a C loop (bench/packed_loop.c); 0: skip")
    ap.add_argument("--c-before", default=None, metavar="REV",
                    help="also time the packed C runtime of this git revision (e.g. main): before/after in one run")
    ap.add_argument("--layer-probe", action="store_true",
                    help="also time every synaptic layer alone in each ONNX form (dense, gathers, ELL, com.microsoft)")
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
    def call(k, i):   # one timed sample of candidate k (the ORT ones take the image, the others the sequence)
        t0 = time.perf_counter()
        fns[k](seqs[i], i) if k.startswith("ORT") else fns[k](seqs[i])
        return time.perf_counter() - t0

    times = {k: [] for k in fns}
    for i in range(3):  # warm-up
        for k in fns:
            call(k, i)
    t_start = time.time()
    load0 = os.getloadavg()
    rng = np.random.default_rng(0)
    for r in range(a.rounds):
        i = r % len(seqs)
        # a fresh random order every round: no candidate always runs right after the cache-flushing eager ones
        for k in rng.permutation(list(fns)):
            times[k].append(call(k, i))
    seq_times = {k: [call(k, r % len(seqs)) for r in range(a.rounds)] for k in fns}   # back to back: each alone
    load1 = os.getloadavg()
    med = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
    med_b2b = {k: 1e3 * float(np.median(v)) for k, v in seq_times.items()}
    base = med["ORT dense export"]
    res = {"ticket": a.ticket, "dense": a.dense, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "loadavg_before": load0, "loadavg_after": load1, "rounds": a.rounds, "median_ms": med,
           "median_ms_back_to_back": med_b2b,
           "timing_seconds": time.time() - t_start, "files_bytes": {k: os.path.getsize(p) for k, p in paths.items()},
           "ticket_metrics": meta.get("metrics", {})}
    log(f"[latency] batch 1, {a.rounds} rounds in rotation, load average {load0[0]:.1f} -> {load1[0]:.1f}")
    for k, v in med.items():
        log(f"  {k:18s} {v:8.3f} ms   vs ORT dense export {base / v:6.2f}x   vs snntorch eager "
            f"{med['snntorch eager'] / v:6.1f}x")
    b2b = med_b2b["ORT dense export"]
    log(f"[latency] batch 1, {a.rounds} calls of each candidate back to back")
    for k, v in med_b2b.items():
        log(f"  {k:18s} {v:8.3f} ms   vs ORT dense export {b2b / v:6.2f}x   vs snntorch eager "
            f"{med_b2b['snntorch eager'] / v:6.1f}x")
    if a.c_loop_calls > 0:   # the C call alone: what the Python loop around the back-to-back figures adds
        from slt_deploy.backends.packed.c_runner import C_DIR, C_SOURCES

        loops = {"packed C": c_loop(paths["packed C"], seqs, a.out, C_DIR, C_SOURCES, "now", a.c_loop_calls)}
        if a.c_before:
            d = os.path.join(a.out, f"c-{a.c_before}")
            loops[f"packed C ({a.c_before})"] = c_loop(
                paths["packed C"], seqs, a.out, d, sorted(f for f in os.listdir(d) if f.endswith(".c")), a.c_before,
                a.c_loop_calls)
        res["c_loop_ms"] = loops
        log(f"[latency] the packed runtime in a C loop (bench/packed_loop.c, fastest of 7 blocks of {a.c_loop_calls})")
        for k, v in loops.items():
            log(f"  {k:18s} {v:8.4f} ms   vs ORT dense export back to back {b2b / v:6.2f}x   vs snntorch eager "
                f"back to back {med_b2b['snntorch eager'] / v:6.1f}x")
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
    if a.layer_probe:
        log("[layer alternatives] each synaptic layer alone in onnxruntime, every form it could be lowered to")
        res["layer_alternatives"] = layer_alternatives(a.ticket, int(meta["T"]))
    atomic_write(os.path.join(a.out, "results.json"), json.dumps(res, indent=2, default=float))
    log("\n| runs | median ms in rotation | vs ORT dense export | vs snntorch eager | back to back ms | vs ORT dense "
        "export | vs snntorch eager |\n|---|---|---|---|---|---|---|")
    for k, v in med.items():
        w = med_b2b[k]
        log(f"| {k} | {v:.3f} | {base / v:.2f}x | {med['snntorch eager'] / v:.1f}x | {w:.3f} | {b2b / w:.2f}x | "
            f"{med_b2b['snntorch eager'] / w:.1f}x |")
    return res


if __name__ == "__main__":
    main()
