#!/usr/bin/env python
"""The fair MCU baseline (issue 19, point 4): a DENSE int8 implementation of the same model, counted on a Cortex-M7
under QEMU beside the packed ticket.

    .venv/bin/python bench/mcu_int8.py [--ckpt models/tickets/fmnist-vgg-imp98] [--frames 6]

The baseline is what an MCU user would deploy instead of our packed runtime: the model's effective (folded) weights
quantized to int8 per output channel (scale = max|w_c| / 127; a binary layer's ±alpha weights are exactly ±127),
run as dense CMSIS-NN-style kernels (bench/mcu/int8_bench.c: im2col into int16, SMLAD dual 16-bit MACs into int32,
two output channels x two output pixels per pass (linear: four channels), per-channel fixed-point requantization),
the LIF in fixed point (membrane Q12 int32).
Every weight is multiplied, pruned or not. The first layer sees the same image every step and is computed once.

1. quantizes the checkpoint (VGG chains: Conv2d/Affine -> LIF -> ... -> Affine -> Output), writes int8_model.h;
2. runs the same integer arithmetic in numpy on the whole test set: the int8 model's ACCURACY, and the reference
   logits of the benchmark frames;
3. cross-compiles and counts instructions per frame on QEMU (bench/mcu.py's toolchain, board, timer and parser);
   the guest's int32 logits must equal numpy's bit for bit;
4. counts the packed runtime on the same ticket and frames (bench/mcu.py) and prints the ratio.
Instructions, not cycles (see bench/mcu.py). `--host` (and automatically when the Cortex-M toolchain or QEMU cannot
be installed) builds the same C file for the host with a portable SMLAD and checks it against numpy: no count.

Status (2026-12-05): run on QEMU (gcc-arm-none-eabi 12.2, qemu-system-arm 7.2, installed by bench/mcu.py's
ensure_tools): shipped fmnist-vgg-imp98 ticket, int8 dense 17.72 M vs packed 3.41 M instructions per frame = 5.20x
(docs/profile.md); the guest's logits equal the numpy twin's on every frame. `--acc-limit N` computes the two
accuracies on the first N test images only (the whole test set takes ~11 min at load 12).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(_HERE)
sys.path.insert(0, ROOT)
Q = 12  # membrane / current fraction bits


def _mcu():
    spec = importlib.util.spec_from_file_location("bench_mcu", os.path.join(_HERE, "mcu.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def chain(graph):
    """[(synapse node, lif node or None)] in order, for a VGG chain; SystemExit otherwise."""
    import nir

    from slt_deploy.ir.graph import succs, topo_order

    out = []
    for n in topo_order(graph):
        node = graph.nodes[n]
        if isinstance(node, (nir.Conv2d, nir.Affine)):
            nxt = succs(graph, n)
            lif = nxt[0] if len(nxt) == 1 and isinstance(graph.nodes[nxt[0]], nir.LIF) else None
            out.append((n, lif))
        elif not isinstance(node, (nir.Input, nir.Output, nir.LIF, nir.Flatten)):
            raise SystemExit(f"error: node {n} ({type(node).__name__}) is not in a plain VGG chain "
                             "(fix: pass a VGG checkpoint)")
    return out


def quantize(graph):
    """-> list of layer dicts (int arrays + geometry) in C order (HWC activations)."""
    from slt_deploy.ir import meta as K
    from slt_deploy.ir.graph import conv_attrs, nmeta
    from slt_deploy.passes.check_shapes import shapes_of

    shapes = shapes_of(graph)
    layers, prev_shape = [], None
    for n, lif in chain(graph):
        node = graph.nodes[n]
        w = np.asarray(node.weight, np.float64)
        b = np.asarray(node.bias if getattr(node, "bias", None) is not None else np.zeros(w.shape[0]), np.float64)
        o = w.shape[0]
        if w.ndim == 4:
            c, k = w.shape[1], w.shape[2]
            (s, _), (p, _) = conv_attrs(node)
            h, wd = prev_shape[1:] if prev_shape is not None else shapes[next(iter(graph.inputs))][1:]
            oh, ow = shapes[n][1:]
            wm = w.transpose(0, 2, 3, 1).reshape(o, -1)  # [O][ky][kx][c]: the im2col order
        else:
            c, k, s, p, h, wd, oh, ow = w.shape[1], 1, 1, 0, 1, 1, 1, 1
            wm = w
            if prev_shape is not None and len(prev_shape) == 3:  # Flatten of CHW -> our HWC activations
                pc, ph, pw = prev_shape
                wm = w.reshape(o, pc, ph, pw).transpose(0, 2, 3, 1).reshape(o, -1)
        scale = np.abs(wm).max(1) / 127.0
        scale[scale == 0] = 1.0
        wq = np.round(wm / scale[:, None]).astype(np.int64)
        assert np.abs(wq).max() <= 127
        m = scale * 2.0 ** Q
        sh = np.clip(30 - np.floor(np.log2(m)), 1, 62).astype(np.int64)
        mult = np.round(m * 2.0 ** sh).astype(np.int64)
        assert mult.max() < 2 ** 31
        L = {"name": nmeta(node, K.LAYER, n), "o": o, "c": c, "k": k, "s": s, "p": p, "h": h, "w": wd, "oh": oh,
             "ow": ow, "wq": wq, "mult": mult, "shift": sh, "bias": np.round(b * 2.0 ** Q).astype(np.int64),
             "lif": lif is not None}
        if lif is not None:
            ln = graph.nodes[lif]
            L["thr"] = int(round(float(nmeta(ln, K.THRESHOLD)) * 2 ** Q))
            L["beta"] = int(round(float(nmeta(ln, K.BETA)) * 2 ** 15))
            L["subtract"] = int(nmeta(ln, K.RESET, "zero") == "subtract")
            prev_shape = list(shapes[lif])
        layers.append(L)
    return layers


def _cur(L, x):
    """Integer currents [B, OH*OW*O] (HWC) of layer L for int activations x [B, H*W*C] (HWC)."""
    B = x.shape[0]
    if L["k"] == 1 and L["h"] == 1:
        acc = x @ L["wq"].T
    else:
        img = x.reshape(B, L["h"], L["w"], L["c"])
        pad = np.pad(img, ((0, 0), (L["p"], L["p"]), (L["p"], L["p"]), (0, 0)))
        cols = []
        for ky in range(L["k"]):
            for kx in range(L["k"]):
                cols.append(pad[:, ky:ky + L["s"] * L["oh"]:L["s"], kx:kx + L["s"] * L["ow"]:L["s"], :])
        col = np.stack(cols, 3).reshape(B, L["oh"], L["ow"], -1)  # [B, OH, OW, k*k*C] in (ky, kx, c) order
        acc = (col @ L["wq"].T).reshape(B, -1)
    o = L["o"]
    mult, sh, bias = (np.tile(L[k], acc.shape[1] // o) for k in ("mult", "shift", "bias"))
    return ((acc * mult + (np.int64(1) << (sh - 1))) >> sh) + bias


def run_int(layers, images, T):
    """The C kernel's arithmetic in int64 numpy: -> int logits [B, classes]."""
    x0 = np.asarray(images, np.int64).reshape(len(images), -1)  # C = 1 first layer: CHW == HWC
    first = _cur(layers[0], x0)
    v = [None] * len(layers)
    logits = 0
    for t in range(T):
        x = None
        for i, L in enumerate(layers):
            cur = first if i == 0 else _cur(L, x)
            if not L["lif"]:
                logits = logits + cur
                continue
            vv = cur if t == 0 else ((v[i] * L["beta"]) >> 15) + cur
            s = vv > L["thr"]
            vv = np.where(s, vv - L["thr"] if L["subtract"] else 0, vv)
            v[i], x = vv, s.astype(np.int64)
    return logits


def c_header(layers, frames, T, classes) -> str:
    out = ["/* generated by bench/mcu_int8.py: dense int8 model + frames */",
           "typedef struct { int o, c, k, s, p, h, w, oh, ow, col_len; const int16_t *w16; const int32_t *mult, "
           "*shift, *bias; int32_t thr, beta_q15; int reset_subtract; } layer_t;",
           f"#define N_LAYERS {len(layers)}", f"#define T_STEPS {T}", f"#define N_CLASSES {classes}",
           f"#define N_FRAMES {len(frames)}"]
    max_col = max_act = state = 0
    rows = []
    for i, L in enumerate(layers):
        n = L["wq"].shape[1]
        col_len = n + (n % 2)
        o_pad = L["o"] + (-L["o"]) % 4  # the kernel reads channels in fours (linear) / pairs (conv)
        w16 = np.zeros((o_pad, col_len), np.int64)
        w16[:L["o"], :n] = L["wq"]
        max_col = max(max_col, col_len)
        max_act = max(max_act, L["oh"] * L["ow"] * L["o"], L["h"] * L["w"] * L["c"] + 2)
        if L["lif"]:
            state += L["oh"] * L["ow"] * L["o"]
        out.append(f"static const int16_t W{i}[{w16.size}] __attribute__((aligned(4))) = {{"
                   + ",".join(map(str, w16.ravel())) + "};")
        for k, typ in (("mult", "int32_t"), ("shift", "int32_t"), ("bias", "int32_t")):
            out.append(f"static const {typ} {k.upper()}{i}[{L['o']}] = {{" + ",".join(map(str, L[k])) + "};")
        rows.append(f"{{{L['o']},{L['c']},{L['k']},{L['s']},{L['p']},{L['h']},{L['w']},{L['oh']},{L['ow']},{col_len},"
                    f"W{i},MULT{i},SHIFT{i},BIAS{i},{L.get('thr', 0)},{L.get('beta', 0)},{L.get('subtract', 0)}}}")
    out += [f"#define MAX_COL {max_col}", f"#define MAX_ACT {max_act}", f"#define MAX_STATE {state}",
            "static const layer_t LAYERS[N_LAYERS] = {" + ",\n  ".join(rows) + "};",
            f"static const int16_t FRAMES[N_FRAMES][{frames.shape[1]}] __attribute__((aligned(4))) = {{"]
    out += ["  {" + ",".join(map(str, f)) + "}," for f in frames]
    out.append("};")
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", default=os.path.join(ROOT, "models", "tickets", "fmnist-vgg-imp98"))
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--opt", default="-O2")
    ap.add_argument("--shift", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "bench_mcu_int8"))
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--no-packed", dest="packed", action="store_false", help="skip counting the packed ticket")
    ap.add_argument("--host", action="store_true", help="only check the C kernel on the host (no Cortex-M count)")
    ap.add_argument("--acc-limit", type=int, default=None,
                    help="test images for the two accuracies (default: the whole test set; ~11 min at load 12)")
    a = ap.parse_args(argv)
    mcu = _mcu()
    if not a.host:
        try:
            mcu.ensure_tools()
        except (SystemExit, subprocess.CalledProcessError, OSError) as e:
            print(f"no Cortex-M toolchain/QEMU ({e}): checking the kernel on the host only, no instruction count")
            a.host = True
    os.makedirs(a.out, exist_ok=True)
    from slt_deploy.data import load_dataset
    from slt_deploy.export import lower
    from slt_deploy.train import evaluate

    model, meta, graph = lower(a.ckpt)
    T = int(meta["T"])
    if meta["recipe"].get("encoding", "direct") != "direct":
        raise SystemExit("error: the int8 baseline takes direct-encoded models (fix: pass a direct-encoding VGG)")
    layers = quantize(graph)
    data = load_dataset(meta["recipe"]["dataset"], a.data_dir, 0)
    test = data.test
    if a.acc_limit:
        from slt_deploy.data import Split

        test = Split(test.x[:a.acc_limit], test.y[:a.acc_limit])
    x = test.x.numpy()
    if not np.array_equal(x, np.round(x)) or x.min() < 0 or x.max() > 255:
        raise SystemExit("error: the int8 baseline needs raw 0..255 integer pixels")
    t0 = time.time()
    preds = np.concatenate([run_int(layers, x[i:i + 500], T).argmax(1) for i in range(0, len(x), 500)])
    acc_int8 = 100.0 * float((preds == test.y.numpy()).mean())
    acc_ref = evaluate(model, test)
    print(f"{os.path.basename(a.ckpt)}: float reference {acc_ref:.2f}%, int8 dense baseline {acc_int8:.2f}% "
          f"({len(x)} test images, {time.time() - t0:.0f}s)", flush=True)
    frames = x[:a.frames].reshape(a.frames, -1).astype(np.int64)
    ref = run_int(layers, frames, T)
    d = os.path.join(a.out, "int8")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "int8_model.h"), "w") as f:
        f.write(c_header(layers, frames, T, ref.shape[1]))
    res = {"ckpt": a.ckpt, "frames": a.frames, "acc_ref": acc_ref, "acc_int8": acc_int8}
    if a.host:
        exe = os.path.join(d, "int8_host")
        src = os.path.join(_HERE, "mcu", "int8_bench.c")
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or "cc"
        r = subprocess.run([cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-DSLT_HOST", "-I", d, src, "-o",
                            exe], capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"error: host build failed:\n{r.stderr[-3000:]}")
        out = subprocess.run([exe], capture_output=True, text=True, check=True).stdout.splitlines()
        got = np.array([[int(v, 16) for v in ln.split()[7:]] for ln in out if ln.startswith("frame")], np.int64)
        got = np.where(got >= 2 ** 31, got - 2 ** 32, got)
        res["host_exact"] = bool(np.array_equal(got, ref))
        print(f"host build of bench/mcu/int8_bench.c: logits == numpy on {len(got)} frames: {res['host_exact']}")
        with open(os.path.join(a.out, "results.json"), "w") as f:
            json.dump(res, f, indent=1, default=float)
        if not res["host_exact"]:
            raise SystemExit("error: the C kernel departs from the numpy reference")
        return res
    elf = os.path.join(d, "int8.elf")
    cmd = ["arm-none-eabi-gcc", *mcu.ARM_FLAGS, a.opt, "-I", d, "-nostdlib", "-nostartfiles", "-Wl,--gc-sections",
           "-T", os.path.join(_HERE, "mcu", "mcu.ld"), os.path.join(_HERE, "mcu", "int8_bench.c"), "-lgcc", "-o", elf]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"error: cross-compiling failed:\n{r.stderr[-3000:]}")
    q = mcu.run_qemu(elf, a.shift)
    got = np.array([[v if v < 2 ** 31 else v - 2 ** 32 for v in fr["logits_bits"]] for fr in q["frames"]])
    exact = bool(np.array_equal(got, ref))
    int8_instr = [fr["instructions"] for fr in q["frames"]]
    macs = sum(L["wq"].size * L["oh"] * L["ow"] * (1 if i == 0 else T) for i, L in enumerate(layers))
    print(f"int8 dense: {np.mean(int8_instr):,.0f} instructions/frame ({macs:,} MACs/frame, "
          f"{np.mean(int8_instr) / macs:.2f} instr/MAC); guest logits == numpy {exact}", flush=True)
    res.update(int8_macs=macs, int8_instructions=int8_instr, int8_exact=exact, build=[*mcu.ARM_FLAGS, a.opt])
    if not exact:
        raise SystemExit("error: the Cortex-M7 int8 build departs from the numpy reference")
    if a.packed:
        m = mcu.prepare(a.ckpt, a.out, a.frames, a.data_dir)
        pq = mcu.run_qemu(mcu.build_image(m, a.out, a.opt), a.shift)
        packed = [fr["instructions"] for fr, row in zip(pq["frames"], m["rows"]) if row["kind"] == "test"]
        res["packed_instructions"] = packed
        from slt_deploy.log import speed

        ratio = speed(np.mean(int8_instr) / np.mean(packed))
        print(f"packed ticket: {np.mean(packed):,.0f} instructions/frame -> {ratio} than int8 dense by instruction "
              f"count (same {len(packed)} test frames)", flush=True)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1, default=float)
    return res


if __name__ == "__main__":
    main()
