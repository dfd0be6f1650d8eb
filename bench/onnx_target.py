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
from slt_deploy.log import speed
from slt_deploy.nn import synapses
from slt_deploy.profile.latency import median_time
from slt_deploy.train import evaluate, train
from slt_deploy.verify import verify
from slt_deploy.zoo import build_model, load_recipe


def log(*a):
    print(*a, flush=True)


def bench_data(data_dir, n_train):
    data = load_dataset("fmnist", data_dir, 0)
    full_test = data.test
    data.train = Split(data.train.x[:n_train], data.train.y[:n_train])
    data.val = Split(data.val.x[:0], data.val.y[:0])
    return data, full_test


def make_dense(work, data_dir, n_train):
    """Dense fmnist-vgg, 1 epoch on n_train images (cached): the model every ticket of this bench starts from."""
    out = os.path.join(work, f"fmnist-vgg-dense-n{n_train}")
    if os.path.exists(os.path.join(out, "model.json")):
        return out
    r = load_recipe("fmnist-vgg")
    data, full_test = bench_data(data_dir, n_train)
    model = build_model(r)
    t0 = time.time()
    train(model, data, r["train"], epochs=1, progress=False)
    log(f"  dense: 1 epoch on {n_train} images ({time.time() - t0:.0f}s)")
    save(model, out, metrics={"test_acc": evaluate(model, full_test)}, labels=data.labels)
    return out


def make_ticket(work, data_dir, n_train, sparsity):
    """Dense fmnist-vgg (1 epoch on n_train images) -> per-layer magnitude pruning -> binary -> 2 epochs fine-tune."""
    out = os.path.join(work, f"fmnist-vgg-bin{int(round(100 * sparsity))}-n{n_train}-v2")
    if os.path.exists(os.path.join(out, "model.json")):
        return out
    r = load_recipe("fmnist-vgg")
    data, full_test = bench_data(data_dir, n_train)
    model = load(make_dense(work, data_dir, n_train))[0]
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


def make_structured(work, data_dir, n_train, channels, epochs):
    """`slt-deploy ticket --method structured` on the same dense model: `channels` of every conv's output channels
    removed in 2 rounds (rewind to epoch 1, `epochs` per round), then binarized (`epochs`), on the n_train images."""
    from slt_deploy.tickets import TicketConfig, finalize
    from slt_deploy.tickets import structured as st

    out = os.path.join(work, f"fmnist-vgg-structured{int(round(100 * channels))}-bin-n{n_train}-e{epochs}")
    if os.path.exists(os.path.join(out, "model.json")):
        return out
    data, full_test = bench_data(data_dir, n_train)
    dense = load(make_dense(work, data_dir, n_train))[0]
    cfg = TicketConfig("structured", channels, prune_fraction=1 - (1 - channels) ** 0.5, rounds=2, epochs=epochs,
                       rewind="weights", rewind_epoch=1, binarize=True, binarize_epochs=epochs, scope="layer")
    cfg.validate()
    t0 = time.time()
    ticket = st.search(dense, data, cfg)
    data.test = full_test
    s = finalize(ticket, data, out, dense)
    log(f"  structured ticket: {100 * channels:.0f}% of the channels of every layer but the classifier removed, binary, weight sparsity "
        f"{100 * s['measured_sparsity']:.1f}%, test acc {s['test_acc']:.2f}% ({time.time() - t0:.0f}s)")
    return out


def interleaved(fns: dict, reps: int, warmup: int = 3) -> dict:
    """Median seconds per call of each fn, the candidates timed in rotation (one call each per round), so that a
    load change on this shared machine hits all of them alike."""
    for f in fns.values():
        for _ in range(warmup):
            f()
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def structured_bench(a, res):
    """Eager vs onnxruntime on dense exports vs ours, for the dense model, the unstructured binary ticket and the
    structured binary ticket (compacted), batch 1, timed in rotation; the accuracy of each model on the test set."""
    dense_dir = make_dense(a.work, a.data_dir, a.train_samples)
    unstr = a.ticket or make_ticket(a.work, a.data_dir, a.train_samples, a.sparsity)
    struct = make_structured(a.work, a.data_dir, a.train_samples, a.structured, a.structured_epochs)
    data = load_dataset("fmnist", a.data_dir, 0)
    models = {"dense": dense_dir, "unstructured": unstr, "structured": struct}
    files, fns, acc = {}, {}, {}
    x = data.test.x[:1].numpy()
    for name, ck in models.items():
        model = load(ck)[0]
        model.eval()
        acc[name] = evaluate(model, data.test)
        xt = torch.as_tensor(x)

        def eager(model=model, xt=xt):
            with torch.no_grad():
                model(xt)

        fns[f"{name} eager"] = eager
        variants = {"ort-dense": {"sparse": "none", "compact": "none"}}
        if name != "dense":
            variants["ort-ours"] = {}
        for v, opts in variants.items():
            f = os.path.join(a.work, f"{name}-{v}.onnx")
            export(ck, "onnx", f, **opts)
            files[f"{name} {v}"] = f
            sess = OnnxRunner(f, threads=a.threads).session
            fns[f"{name} {v}"] = lambda sess=sess: sess.run(["logits"], {"image": x})
    log(f"[structured vs unstructured] batch 1, {a.reps} rounds in rotation, threads={a.threads}")
    for k, v in acc.items():
        log(f"  accuracy {k:13s} {v:6.2f}% (PyTorch, {len(data.test.x)} test images)")
    t = interleaved(fns, a.reps)
    base = t["structured ort-dense"]
    for k, v in t.items():
        log(f"  {k:28s} {1e3 * v:8.3f} ms  vs structured ort-dense {speed(base / v):>13s}  "
            f"vs dense-model ort-dense {speed(t['dense ort-dense'] / v):>13s}  "
            f"bytes {os.path.getsize(files[k]) if k in files else '-'}")
    r = OnnxRunner(files["structured ort-ours"], threads=a.threads)
    log(f"  compacted layers: {r.props['slt.compact']}")
    t0 = time.time()
    rep = verify(struct, files["structured ort-ours"], limit=a.verify_limit, data_dir=a.data_dir, runner=r)
    log(f"  structured compacted vs reference, {rep['samples']} images: logits bit-identical "
        f"{100 * rep['logits_bit_identical']:.2f}%, spikes min {100 * rep['spike_agreement_min']:.4f}%, accuracy "
        f"{rep['artifact_accuracy']:.2f}% -> {'PASS' if rep['ok'] else 'FAIL'} ({time.time() - t0:.0f}s)")
    res["structured"] = {"accuracy": acc, "latency_b1": t, "verify": {k: v for k, v in rep.items() if k != "layers"},
                         "compact": json.loads(r.props["slt.compact"]), "tickets": models}


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
                f"gather {1e3 * tg:.3f} ms (gather {speed(tf / tg)})")
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
    ap.add_argument("--structured", type=float, default=0.75,
                    help="structured ticket: fraction of conv channels removed (0: skip that section)")
    ap.add_argument("--structured-epochs", type=int, default=2, help="structured ticket: epochs per round")
    ap.add_argument("--only-structured", action="store_true", help="run only the structured-vs-unstructured part")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    os.makedirs(a.work, exist_ok=True)
    if a.only_structured:
        res = {}
        structured_bench(a, res)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(res, f, indent=2, default=float)
        return
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
                f"vs eager {speed(row['eager'] / v)}")
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
    if a.structured > 0:
        structured_bench(a, res)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2, default=float)


if __name__ == "__main__":
    main()
