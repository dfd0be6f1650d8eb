#!/usr/bin/env python
"""Cortex-M7 instruction counts of the packed C runtime, without hardware (QEMU), fitted per synaptic op.

    .venv/bin/python bench/mcu.py                      # the shipped tickets (models/tickets/*) + their dense twins
    .venv/bin/python bench/mcu.py --holdout runs/x/dense   # also predict (not fit) a trained dense model
    make bench-mcu

1. installs what it needs when missing (Debian: qemu-system-arm, gcc-arm-none-eabi; as root or with sudo -n);
2. per model (every shipped ticket, and its "dense twin": the same network with every weight kept, so the fit
   sees the dense regime a dense baseline runs in): exports the packed artifact, encodes --frames test frames
   (plus a blank frame and the first frame at half intensity, which move MACs and SOPs apart), counts SOPs / MACs
   / neuron updates of EACH frame with slt_deploy.profile.activity (the counts `slt-deploy profile` prices), and
   runs the same frames through the host C runtime (reference logits and synaptic events);
3. builds a bare-metal Cortex-M7 image (bench/mcu/mcu_bench.c + the packed runtime + the embedded model and frames,
   arm-none-eabi-gcc, no libc) and runs it on QEMU's mps2-an500 board (a Cortex-M7) with `-icount shift=S`:
   the virtual clock then advances exactly 2^S ns per guest instruction, and the board's 25 MHz CMSDK timer,
   read before and after slt_run(), counts instructions (instructions = ticks x 40 ns / 2^S ns; checked against
   a loop of known length). The guest's logits and synaptic events must equal the host C runtime's bit for bit;
4. fits instructions/frame = a x SOPs + b x MACs + c x neuron updates (relative least squares over every frame of
   every model) and prints the fit quality, per-model errors, and diagnostic variants (no attention models, test
   frames only, a 4th term for non-zero inputs, binary vs float SOPs).

QEMU counts INSTRUCTIONS, not cycles: cycles = instructions x CPI, and the CPI of a real Cortex-M7 (dual issue,
TCM vs flash wait states, caches) is an assumption stated in slt_deploy/hardware/energy/cortex-m7.yaml. Writes
OUT/results.json. Single-threaded; about 1.5 minutes for the shipped tickets and their twins.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
ROOT = os.path.dirname(_HERE)
sys.path.insert(0, ROOT)

from slt_deploy.backends.packed.c_runner import C_DIR, SOURCES, c_sources

APT_PACKAGES = {"qemu-system-arm": "qemu-system-arm", "arm-none-eabi-gcc": "gcc-arm-none-eabi"}
TIMER_HZ = 25e6  # mps2-an500 peripheral clock (QEMU hw/arm/mps2.c: SYSCLK_FRQ 25 MHz)
ARM_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-ffp-contract=off", "-mthumb",
             "-mcpu=cortex-m7", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16", "-ffreestanding",
             "-fno-tree-loop-distribute-patterns", "-ffunction-sections", "-fdata-sections"]


# ------------------------------------------------------------------------------------------------------ tools
def ensure_tools():
    """Install the Debian packages the bench needs (qemu-system-arm, gcc-arm-none-eabi) when they are missing."""
    missing = [pkg for tool, pkg in APT_PACKAGES.items() if shutil.which(tool) is None]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise SystemExit(f"error: missing {', '.join(missing)} (fix: install them with your package manager)")
    pre = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if pre is None:
        raise SystemExit(f"error: missing {', '.join(missing)} (fix: sudo apt-get install -y {' '.join(missing)})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing {' '.join(missing)} (apt-get)", flush=True)
    subprocess.run([*pre, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*pre, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True,
                   env=env)


def tool_versions() -> dict:
    def first(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0].strip()
        except (OSError, IndexError):
            return "?"
    return {"qemu": first(["qemu-system-arm", "--version"]), "gcc": first(["arm-none-eabi-gcc", "--version"])}


def runtime_source() -> dict:
    """Which runtime sources were measured: their sha256 and git state (another commit may change the counts)."""
    h = hashlib.sha256()
    for s in SOURCES:
        with open(os.path.join(C_DIR, s), "rb") as f:
            h.update(f.read())
    def git(*a):
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"sha256": h.hexdigest(), "commit": git("log", "-1", "--format=%h", "--", "slt_deploy/backends/packed/c"),
            "dirty": bool(git("status", "--porcelain", "--", "slt_deploy/backends/packed/c"))}


# ---------------------------------------------------------------------------------------------- per model
def c_array(name, ctype, values, per_line=8):
    rows = [", ".join(values[i:i + per_line]) for i in range(0, len(values), per_line)]
    return f"static const {ctype} {name} = {{\n  " + ",\n  ".join(rows) + "\n};\n"


def prepare(ckpt, out, frames, data_dir=None):
    """Export ckpt to packed, pick frames, count their work. -> dict with seq, per-frame counts, host results."""
    from slt_deploy.backends.packed.c_runner import CPackedRunner
    from slt_deploy.data import load_dataset
    from slt_deploy.export import export, lower
    from slt_deploy.ir.graph import is_binary, op_of
    from slt_deploy.ir.interpreter import Interpreter
    from slt_deploy.profile.activity import ActivityCounter

    name = os.path.basename(os.path.normpath(ckpt))
    slt = os.path.join(out, name + ".slt")
    export(ckpt, "packed", slt)
    _, meta, graph = lower(ckpt)
    r = meta["recipe"]
    ds = load_dataset(r["dataset"], data_dir, int(r.get("seed", 0)))
    x = ds.test.x.numpy()[:frames].astype(np.float32)
    kinds = ["test"] * len(x)
    x = np.concatenate([x, np.zeros_like(x[:1]), x[:1] * 0.5])  # blank frame; first frame at half intensity
    kinds += ["blank", "half"]
    runner = CPackedRunner(slt)
    seq = runner.encode(x)  # [T, B, C, H, W]: exactly what every runtime is fed
    interp = Interpreter(graph)
    spikes = interp.run(seq, record=True)["spikes"]
    binary = {n for n, node in graph.nodes.items() if is_binary(node)}
    rows = []
    for i in range(len(x)):
        c = ActivityCounter(graph)
        c.add(seq[:, i:i + 1], {k: np.asarray(v)[:, i:i + 1] for k, v in spikes.items()})
        res = c.result()
        tot, layers = res["totals"], res["layers"].values()
        sop_layers = [v for v in layers if v["kind"] == "sop"]
        e0 = runner.c.events()
        logits, _ = runner.c.run(seq[:, i:i + 1])
        rows.append({"kind": kinds[i], "sops": tot["sops_per_frame"], "macs": tot["macs_per_frame"],
                     "neuron_updates": tot["neuron_updates_per_frame"],
                     "dense_macs": tot["dense_macs_per_frame"], "host_events": runner.c.events() - e0,
                     # diagnostics (not priced by the profile): SOPs of conv vs affine layers, non-zero inputs
                     "sops_conv": sum(v["ops_per_frame"] for v in sop_layers if v["type"] == "Conv2d"),
                     "sops_binary": sum(v["ops_per_frame"] for v in sop_layers if v["node"] in binary),
                     "input_events": sum(v["input_events_per_frame"] for v in layers),
                     "host_logits_bits": [int(v) for v in np.asarray(logits[0], np.float32).view(np.uint32)]})
    attention = any(op_of(n) == "attention" for n in graph.nodes.values())
    return {"name": name, "ckpt": ckpt, "slt": slt, "seq": seq, "rows": rows, "attention": attention,
            "T": int(meta["T"]), "arena_bytes": runner.arena_bytes, "slt_bytes": os.path.getsize(slt)}


def dense_twin(ckpt, out, seed=0):
    """The ticket with every weight kept: mask = 1, pruned weights refilled N(0, std of the kept ones) (seeded),
    binary layers stay binary. Its activity is whatever it is: it is counted and measured like any model, and
    gives the fit the dense regime (every kernel row full) that a dense network runs in. -> checkpoint folder."""
    import torch

    from slt_deploy.checkpoint import load, save
    from slt_deploy.nn.layers import synapses

    dst = os.path.join(out, os.path.basename(os.path.normpath(ckpt)) + "-dense-twin")
    m, meta = load(ckpt)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, syn in synapses(m):
            w = syn.weight
            kept = w[(syn.mask != 0) & (w != 0)]
            std = float(kept.std()) if kept.numel() > 1 else 0.1
            fill = torch.randn(w.shape, generator=g) * std
            w.copy_(torch.where((syn.mask != 0) & (w != 0), w, fill))
            syn.mask.fill_(1.0)
    m.recipe = {**m.recipe, "name": m.recipe["name"] + "-dense-twin"}
    save(m, dst, metrics={"note": "dense twin of a ticket for bench/mcu.py (not trained)"}, labels=meta.get("labels"))
    return dst


def build_image(m, out, opt):
    d = os.path.join(out, m["name"] + opt.replace("-", "_"))
    os.makedirs(d, exist_ok=True)
    subprocess.run([sys.executable, "-m", "slt_deploy.backends.packed.embed", m["slt"],
                    os.path.join(d, "model_data.h")], check=True, cwd=ROOT)
    seq = np.ascontiguousarray(np.transpose(m["seq"], (1, 0, *range(2, m["seq"].ndim))), np.float32)
    B = seq.shape[0]
    flat = seq.reshape(B, -1)
    with open(os.path.join(d, "frames_data.h"), "w") as f:
        f.write(f"/* {B} encoded frames [T][C*H*W] of {m['name']}, generated by bench/mcu.py */\n")
        f.write(f"#define N_FRAMES {B}u\nstatic const float FRAMES[N_FRAMES][SLT_T_IN] = {{\n")
        for row in flat:
            f.write("  {" + ",".join(f"{float(v)!r}f" if v != int(v) else f"{int(v)}.0f" for v in row) + "},\n")
        f.write("};\n")
    elf = os.path.join(d, "bench.elf")
    cmd = ["arm-none-eabi-gcc", *ARM_FLAGS, opt, "-I", C_DIR, "-I", d, "-nostdlib", "-nostartfiles",
           "-Wl,--gc-sections", "-T", os.path.join(_HERE, "mcu", "mcu.ld"),
           *c_sources(), os.path.join(_HERE, "mcu", "mcu_bench.c"), "-lgcc", "-o", elf]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"error: cross-compiling failed:\n{r.stderr[-3000:]}\n{' '.join(cmd)}")
    return elf


def run_qemu(elf, shift, timeout=600):
    cmd = ["qemu-system-arm", "-M", "mps2-an500", "-cpu", "cortex-m7", "-display", "none", "-monitor", "none",
           "-serial", "null", "-semihosting-config", "enable=on,target=native", "-icount", f"shift={shift}",
           "-kernel", elf]
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    text = r.stdout + r.stderr  # semihosting console output goes to stderr
    if r.returncode or "\ndone" not in text:
        raise SystemExit(f"error: the image failed on QEMU (exit {r.returncode}):\n{text[-3000:]}")
    ns_per_insn = 2 ** shift
    per_tick = (1e9 / TIMER_HZ) / ns_per_insn  # instructions per timer tick
    res = {"frames": [], "wall_s": time.time() - t0, "calib": []}
    empty = 0
    for line in text.splitlines():
        w = line.split()
        if w[:2] == ["empty", "ticks"]:
            empty = int(w[2])
        elif w and w[0] == "calib":
            res["calib"].append({"instructions": int(w[1]), "ticks": int(w[3]),
                                 "counted": (int(w[3]) - empty) * per_tick})
        elif w and w[0] == "frame":
            res["frames"].append({"instructions": (int(w[3]) - empty) * per_tick, "events": int(w[5]),
                                  "logits_bits": [int(v, 16) for v in w[7:]]})
    res["empty_ticks"], res["instructions_per_tick"] = empty, per_tick
    return res


# --------------------------------------------------------------------------------------------------- fit
TERMS = ("sops", "macs", "neuron_updates")


def fit(rows, terms=TERMS):
    """Least squares of instructions/frame = sum_k coef_k x count_k (no intercept), RELATIVE: every frame's
    residual is divided by its instructions, so a 0.3 M-instruction ticket weighs as much as a 20 M dense model.
    -> coefficients, their standard errors, R^2 (of the weighted problem) and relative errors."""
    A = np.array([[r[k] for k in terms] for r in rows], float)
    y = np.array([r["instructions"] for r in rows], float)
    Aw, yw = A / y[:, None], y / y
    coef, *_ = np.linalg.lstsq(Aw, yw, rcond=None)
    rel = A @ coef / y - 1
    ss_res = float((rel ** 2).sum())
    dof = max(1, len(y) - len(terms))
    se = np.sqrt(np.clip(np.diag(ss_res / dof * np.linalg.pinv(Aw.T @ Aw)), 0, None))
    pred, yy = A @ coef, np.log(y)
    ss_tot = float(((yy - yy.mean()) ** 2).sum())  # R^2 of log(instructions): models span 0.3 M .. 20 M
    r2_log = 1 - float(((np.log(pred) - yy) ** 2).sum()) / ss_tot if ss_tot > 0 and (pred > 0).all() else float("nan")
    return {"terms": list(terms), "coef": dict(zip(terms, map(float, coef))),
            "stderr": dict(zip(terms, map(float, se))),
            "n_frames": len(y), "models": sorted({r["model"] for r in rows}), "r2_log": r2_log,
            "rms_rel_err": float(np.sqrt((rel ** 2).mean())), "max_abs_rel_err": float(np.abs(rel).max())}


def predict(f, row):
    return sum(f["coef"][k] * row[k] for k in f["terms"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="*", default=None, help="checkpoint folders (default: models/tickets/*)")
    ap.add_argument("--no-dense-twins", dest="dense_twins", action="store_false",
                    help="do not add the dense twin (every weight kept) of each model")
    ap.add_argument("--holdout", nargs="*", default=[],
                    help="checkpoints measured and predicted but NOT fitted (e.g. a trained dense model)")
    ap.add_argument("--frames", type=int, default=6, help="test frames per model (plus a blank and a half one)")
    ap.add_argument("--opt", default="-O2", help="optimisation flag of the Cortex-M7 build (-O2, -Os, -O3)")
    ap.add_argument("--shift", type=int, default=5, help="QEMU -icount shift: 2^shift ns per instruction")
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "bench_mcu"))
    ap.add_argument("--data-dir", default=None)
    a = ap.parse_args(argv)

    ensure_tools()
    os.makedirs(a.out, exist_ok=True)
    models = a.models if a.models is not None else sorted(
        d for d in glob.glob(os.path.join(ROOT, "models", "tickets", "*")) if os.path.isdir(d))
    if a.dense_twins:
        models = [*models, *(dense_twin(t, a.out) for t in models)]
    src, tools = runtime_source(), tool_versions()
    print(f"packed C runtime {src['commit']}{' (modified)' if src['dirty'] else ''} sha256 {src['sha256'][:12]}; "
          f"{tools['qemu']}; build {a.opt}; -icount shift={a.shift}", flush=True)
    results = []
    for ckpt, role in [*((c, "fit") for c in models), *((c, "holdout") for c in a.holdout)]:
        t0 = time.time()
        m = prepare(ckpt, a.out, a.frames, a.data_dir)
        elf = build_image(m, a.out, a.opt)
        q = run_qemu(elf, a.shift)
        if len(q["frames"]) != len(m["rows"]):
            raise SystemExit(f"error: {m['name']}: {len(q['frames'])} frames from QEMU, {len(m['rows'])} expected")
        for c in q["calib"]:
            if abs(c["counted"] - c["instructions"]) > 1e-4 * c["instructions"] + 8:
                raise SystemExit(f"error: instruction counting is off: calibration loop {c}")
        exact = True
        for row, fr in zip(m["rows"], q["frames"]):
            row["instructions"], row["guest_events"] = fr["instructions"], fr["events"]
            exact &= fr["logits_bits"] == row.pop("host_logits_bits") and fr["events"] == row["host_events"]
            row["model"] = m["name"]
        entry = {k: m[k] for k in ("name", "ckpt", "attention", "T", "arena_bytes", "slt_bytes")}
        entry.update(role=role, rows=m["rows"], guest_equals_host=exact, qemu_wall_s=q["wall_s"], calib=q["calib"])
        results.append(entry)
        test = [r for r in m["rows"] if r["kind"] == "test"]

        def mean(k, test=test):
            return float(np.mean([r[k] for r in test]))
        print(f"{m['name']:38s} instr/frame {mean('instructions'):12,.0f}  SOPs {mean('sops'):10,.0f}  "
              f"MACs {mean('macs'):9,.0f}  NU {mean('neuron_updates'):8,.0f}  guest==host {exact}  "
              f"({time.time() - t0:.1f} s)", flush=True)
        if not exact:
            raise SystemExit(f"error: {m['name']}: the Cortex-M7 build departs from the host C runtime")
    rows = [r for e in results if e["role"] == "fit" for r in e["rows"]]
    f = fit(rows)
    diag = {"no_attention": fit([r for e in results if e["role"] == "fit" and not e["attention"] for r in e["rows"]]),
            "test_frames_only": fit([r for r in rows if r["kind"] == "test"]),
            "with_input_events": fit(rows, (*TERMS, "input_events")),
            "binary_float_split": fit([dict(r, sops_float=r["sops"] - r["sops_binary"]) for r in rows],
                                      ("sops_binary", "sops_float", "macs", "neuron_updates"))}
    c = f["coef"]
    print(f"\nfit over {f['n_frames']} frames of {len(f['models'])} models: instructions/frame = "
          f"{c['sops']:.2f} x SOP + {c['macs']:.2f} x MAC + {c['neuron_updates']:.2f} x neuron update "
          f"(std err {', '.join(f'{v:.2f}' for v in f['stderr'].values())}); rms relative error "
          f"{f['rms_rel_err']:.1%}, max {f['max_abs_rel_err']:.1%}, R^2 (log) {f['r2_log']:.4f}")
    print(f"{'model':38s} {'measured':>12s} {'predicted':>12s}  error (mean over the test frames)")
    for e in results:
        test = [r for r in e["rows"] if r["kind"] == "test"]
        e["measured_instructions"] = float(np.mean([r["instructions"] for r in test]))
        e["predicted_instructions"] = float(np.mean([predict(f, r) for r in test]))
        err = e["predicted_instructions"] / e["measured_instructions"] - 1
        e["prediction_error"] = err
        note = "  (held out)" if e["role"] == "holdout" else ("  (attention not counted)" if e["attention"] else "")
        print(f"{e['name']:38s} {e['measured_instructions']:12,.0f} {e['predicted_instructions']:12,.0f}  "
              f"{err:+.1%}{note}")
    for k, d in diag.items():
        print(f"  variant {k:18s}: " + ", ".join(f"{t} {v:.2f}" for t, v in d["coef"].items())
              + f"; rms {d['rms_rel_err']:.1%}, max {d['max_abs_rel_err']:.1%}")
    report = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "runtime": src, "tools": tools,
              "build": {"flags": [*ARM_FLAGS, a.opt], "board": "QEMU mps2-an500 (Cortex-M7)",
                        "icount_shift": a.shift, "timer_hz": TIMER_HZ},
              "fit": f, "fit_variants": diag, "models": results}
    with open(os.path.join(a.out, "results.json"), "w") as fh:
        json.dump(report, fh, indent=1)
    print(f"\nwrote {os.path.join(a.out, 'results.json')}")
    return report


if __name__ == "__main__":
    main()
