"""Benchmark of the ONNX target on a Fashion-MNIST ticket, side by side in one run (docs/targets/onnx.md):

  eager       the reference model (slt_deploy SpikingNet on snntorch neurons, PyTorch eager, per-step Python;
              it re-derives its folded/binarized weights in every step)
  interp      slt-deploy's NIR reference interpreter: PyTorch eager too, weights folded once
  ort-dense   onnxruntime on a plain dense export of the same model (--opt sparse=none: float32 initializers)
  ort-ours    onnxruntime on our export (--opt sparse=auto: bit-packed signs/masks, decoded at load)
  ort-stream  our stateful form, T calls per sample (what a streaming robot loop does)

for batch 1 and batch 64: median latency and throughput; file sizes; exactness of ours on the test set.

The ticket: slt_deploy/recipes/fmnist-vgg.yaml trained briefly (--train-samples images, one epoch), every synaptic layer
magnitude-pruned to --sparsity (the 288-weight first conv to 50%) and binarized, then fine-tuned two epochs on the
same images (cached under --work).
Pass --ticket DIR to benchmark an existing checkpoint (e.g. one made by 'slt-deploy ticket').

    .venv/bin/python bench/onnx_target.py [--threads 1] [--verify-limit 10000] [--json out.json]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from slt_deploy.backends.onnx.runner import OnnxRunner
from slt_deploy.checkpoint import load, save
from slt_deploy.data import Split, load_dataset
from slt_deploy.export import export, lower
from slt_deploy.ir.interpreter import Interpreter
from slt_deploy.nn import synapses
from slt_deploy.profile.latency import median_time
from slt_deploy.train import evaluate, train
from slt_deploy.verify import verify
from slt_deploy.zoo import build_model, load_recipe


def log(*a):
    print(*a, flush=True)


def make_ticket(work, data_dir, n_train, sparsity):
    """Dense fmnist-vgg (1 epoch on n_train images) -> per-layer magnitude pruning -> binary -> 2 epochs fine-tune."""
    out = os.path.join(work, f"fmnist-vgg-bin{int(round(100 * sparsity))}-n{n_train}-v2")
    if os.path.exists(os.path.join(out, "model.json")):
        return out
    r = load_recipe("fmnist-vgg")
    data = load_dataset("fmnist", data_dir, 0)
    full_test = data.test
    data.train = Split(data.train.x[:n_train], data.train.y[:n_train])
    data.val = Split(data.val.x[:0], data.val.y[:0])
    model = build_model(r)
    t0 = time.time()
    train(model, data, r["train"], epochs=1, progress=False)
    log(f"  dense: 1 epoch on {n_train} images ({time.time() - t0:.0f}s)")
    for i, (_, m) in enumerate(synapses(model)):
        w = m.weight.detach().abs().flatten()
        k = int((0.5 if i == 0 else sparsity) * w.numel())  # the 288-weight first conv keeps half
        with torch.no_grad():
            m.mask.copy_((m.weight.detach().abs() > w.kthvalue(k).values).float())
        m.apply_mask_()
        m.binary = True
    model.recipe = {**copy.deepcopy(r), "binary": True}
    t0 = time.time()
    train(model, data, r["train"], epochs=2, progress=False)
    model.eval()
    acc = evaluate(model, Split(full_test.x[:2000], full_test.y[:2000]))
    log(f"  ticket: {100 * sparsity:.0f}% sparse, binary, fine-tuned 2 epochs ({time.time() - t0:.0f}s), "
        f"test acc (first 2000) {acc:.1f}%")
    save(model, out, metrics={"test_acc_2000": acc}, labels=data.labels,
         extra={"ticket": {"method": "magnitude+binarize (bench/onnx_target.py)", "sparsity": sparsity}})
    return out


def gather_microbench(threads, reps):
    """Real sparse compute for Affine layers (--opt compute=gather): x[:, kept columns] @ W[kept] against the full
    x @ W, for a fmnist-vgg-sized fc layer (3136 -> 128) at several kept-column fractions. -> {(batch, f): ratio}"""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.log_severity_level = threads, 3
    fin, fout = 3136, 128

    def session(w, cols):
        nodes, inits = [], [numpy_helper.from_array(w, "W")]
        x = "x"
        if cols is not None:
            inits.append(numpy_helper.from_array(cols, "cols"))
            nodes.append(helper.make_node("Gather", ["x", "cols"], ["xg"], axis=-1))
            x = "xg"
        nodes.append(helper.make_node("MatMul", [x, "W"], ["y"]))
        g = helper.make_graph(nodes, "fc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", fin])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])

    out = {}
    for frac in (0.5, 0.25, 0.1, 0.02):
        k = int(frac * fin)
        cols = np.sort(rng.choice(fin, k, replace=False)).astype(np.int64)
        w = np.zeros((fin, fout), np.float32)
        w[cols] = np.sign(rng.standard_normal((k, fout)))
        full, gath = session(w, None), session(np.ascontiguousarray(w[cols]), cols)
        for bs in (1, 64):
            x = (rng.random((bs, fin)) < 0.2).astype(np.float32)
            n = reps if bs == 1 else max(3, reps // 4)
            tf = median_time(lambda full=full, x=x: full.run(None, {"x": x}), n)
            tg = median_time(lambda gath=gath, x=x: gath.run(None, {"x": x}), n)
            assert np.array_equal(full.run(None, {"x": x})[0], gath.run(None, {"x": x})[0])
            out[f"b{bs}-kept{frac}"] = {"full_ms": 1e3 * tf, "gather_ms": 1e3 * tg, "speedup": tf / tg}
            log(f"  fc 3136->128, {100 * frac:4.0f}% columns kept, batch {bs:2d}: full {1e3 * tf:.3f} ms, "
                f"gather {1e3 * tg:.3f} ms ({tf / tg:.2f}x)")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ticket", help="checkpoint folder to benchmark (default: make the fmnist ticket)")
    ap.add_argument("--work", default="runs/bench-onnx")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--train-samples", type=int, default=6000)
    ap.add_argument("--sparsity", type=float, default=0.92)
    ap.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads")
    ap.add_argument("--reps", type=int, default=60, help="timed calls at batch 1 (batch 64: reps / 6)")
    ap.add_argument("--verify-limit", type=int, default=10000, help="test samples for the exactness check")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    os.makedirs(a.work, exist_ok=True)
    log("[ticket]")
    ckpt = a.ticket or make_ticket(a.work, a.data_dir, a.train_samples, a.sparsity)
    model, meta = load(ckpt)
    graph = lower(ckpt)[2]
    files = {"dense": os.path.join(a.work, "dense.onnx"), "ours": os.path.join(a.work, "ours.onnx"),
             "stream": os.path.join(a.work, "ours-stateful.onnx")}
    export(ckpt, "onnx", files["dense"], sparse="none")
    export(ckpt, "onnx", files["ours"])
    export(ckpt, "onnx", files["stream"], form="stateful")
    sizes = {"checkpoint (safetensors)": os.path.getsize(os.path.join(ckpt, "model.safetensors")),
             "onnx dense": os.path.getsize(files["dense"]), "onnx ours": os.path.getsize(files["ours"])}
    runners = {k: OnnxRunner(f, threads=a.threads) for k, f in files.items()}
    kept = json.loads(runners["ours"].props["slt.weights"])
    sparsity = 1 - sum(r["kept"] for r in kept) / sum(r["params"] for r in kept)
    log(f"[sizes] sparsity {100 * sparsity:.2f}%, all binary: {runners['ours'].meta['all_binary']}")
    for k, v in sizes.items():
        log(f"  {k:26s} {v:>10d} B")
    log(f"  ours / dense = 1/{sizes['onnx dense'] / sizes['onnx ours']:.1f}")

    data = load_dataset(meta["recipe"]["dataset"], a.data_dir, 0)
    res = {"ticket": ckpt, "threads": a.threads, "sparsity": sparsity, "sizes": sizes, "latency": {}}
    log(f"[latency] threads={a.threads} (median of {a.reps} calls at batch 1, {max(3, a.reps // 6)} at batch 64)")
    for bs in (1, 64):
        x = data.test.x[:bs].numpy()
        xt = torch.as_tensor(x)
        n = a.reps if bs == 1 else max(3, a.reps // 6)
        T = model.T

        def eager(xt=xt):
            with torch.no_grad():
                model(xt)

        interp = Interpreter(graph)
        seq = model.encode(xt).numpy()

        def nir_interp(interp=interp, seq=seq):
            interp.run(seq)

        def ort(name, x=x):
            s = runners[name].session
            return lambda: s.run(["logits"], {"image": x})

        def stream(bs=bs, T=T, x=x):
            r = runners["stream"]
            st = r.init_state(bs)
            for _ in range(T):
                _, st = r.step(x, st)

        row = {"eager": median_time(eager, n), "interp": median_time(nir_interp, n),
               "ort-dense": median_time(ort("dense"), n), "ort-ours": median_time(ort("ours"), n),
               "ort-stream": median_time(stream, n)}
        res["latency"][bs] = row
        for k, v in row.items():
            log(f"  batch {bs:2d} {k:10s} {1e3 * v:8.3f} ms  {bs / v:9.1f} samples/s  "
                f"speed-up vs eager {row['eager'] / v:5.2f}x")
    log(f"[exactness] ours vs the PyTorch reference on {a.verify_limit} Fashion-MNIST test images")
    t0 = time.time()
    rep = verify(ckpt, files["ours"], limit=a.verify_limit, data_dir=a.data_dir, runner=runners["ours"])
    log(f"  logits bit-identical {100 * rep['logits_bit_identical']:.2f}%, predictions agree "
        f"{100 * rep['pred_agreement']:.2f}%, spike agreement min {100 * rep['spike_agreement_min']:.4f}% "
        f"({rep['spike_layers_compared']} layers), accuracy {rep['artifact_accuracy']:.2f}% "
        f"-> {'PASS' if rep['ok'] else 'FAIL'} ({time.time() - t0:.0f}s)")
    res["verify"] = {k: v for k, v in rep.items() if k != "layers"}
    log("[sparse compute] Gather of kept input columns + smaller MatMul vs the full MatMul (binary weights)")
    res["gather"] = gather_microbench(a.threads, a.reps)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2, default=float)


if __name__ == "__main__":
    main()
