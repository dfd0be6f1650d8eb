"""Runs an artifact through its target's runtime on real data and compares it with the PyTorch reference (the
checkpoint evaluated by slt_deploy): logits, predictions and, where the runtime exposes them, spike rasters per
layer. Exact targets must match bit for bit; others within the bounds their Backend.tolerance declares."""
from __future__ import annotations

import inspect
import os

import numpy as np
import torch

from .checkpoint import load
from .data import load_dataset
from .errors import SltError
from .ir.importer import GraphReference
from .nn import LIF


@torch.no_grad()
def reference_run(model, seq, record=True) -> dict:
    """The PyTorch reference on an encoded batch: logits and (optionally) every LIF's spikes [T, B, ...]."""
    spikes, hooks = {}, []
    if record:
        for name, m in model.named_modules():
            if isinstance(m, LIF):
                hooks.append(m.register_forward_hook(
                    lambda mod, i, o, name=name: spikes.setdefault(name, []).append(o.detach().clone())))
    try:
        logits = model.run(torch.as_tensor(np.asarray(seq, np.float32)))
    finally:
        for h in hooks:
            h.remove()
    return {"logits": logits.numpy(), "spikes": {k: torch.stack(v).numpy() for k, v in spikes.items()}}


def _accumulate(acc, ref, got):
    rl, gl = ref["logits"], got["logits"]
    acc["n"] += len(rl)
    acc["logits_equal"] += int(np.sum(np.all(rl == gl, axis=1)))
    acc["max_abs_logit_diff"] = max(acc["max_abs_logit_diff"], float(np.max(np.abs(rl - gl))) if rl.size else 0.0)
    acc["pred_equal"] += int(np.sum(rl.argmax(1) == gl.argmax(1)))
    for layer, s in (got.get("spikes") or {}).items():
        if layer in ref["spikes"]:
            r = ref["spikes"][layer]
            d = acc["spikes"].setdefault(layer, {"equal": 0, "total": 0, "ref_spikes": 0})
            d["equal"] += int(np.sum(r == s))
            d["total"] += int(r.size)
            d["ref_spikes"] += int(r.sum())


def verify_runner(model, runner, images, labels, batch=64, seed=0, tolerance=None) -> dict:
    tol = tolerance or {"exact": True}
    acc = {"n": 0, "logits_equal": 0, "pred_equal": 0, "max_abs_logit_diff": 0.0, "spikes": {}, "correct_ref": 0,
           "correct_art": 0}
    g = torch.Generator().manual_seed(seed)
    for i in range(0, len(images), batch):
        x = images[i:i + batch]
        seq = model.encode(torch.as_tensor(x), generator=g).numpy()
        ref = reference_run(model, seq)
        got = runner.run(seq, record=True) if "record" in inspect.signature(runner.run).parameters else runner.run(seq)
        _accumulate(acc, ref, got)
        y = np.asarray(labels[i:i + batch])
        acc["correct_ref"] += int(np.sum(ref["logits"].argmax(1) == y))
        acc["correct_art"] += int(np.sum(got["logits"].argmax(1) == y))
    n = max(1, acc["n"])
    spike_eq = [d["equal"] / max(1, d["total"]) for d in acc["spikes"].values()]
    rep = {"samples": acc["n"], "logits_bit_identical": acc["logits_equal"] / n, "pred_agreement": acc["pred_equal"] / n,
           "max_abs_logit_diff": acc["max_abs_logit_diff"], "ref_accuracy": 100 * acc["correct_ref"] / n,
           "artifact_accuracy": 100 * acc["correct_art"] / n,
           "spike_layers_compared": len(spike_eq), "spike_agreement_min": min(spike_eq) if spike_eq else None,
           "layers": acc["spikes"], "tolerance": tol}
    if tol.get("exact", True):
        rep["ok"] = rep["logits_bit_identical"] == 1.0 and (not spike_eq or min(spike_eq) == 1.0)
    else:
        rep["ok"] = (rep["pred_agreement"] >= tol.get("min_pred_agreement", 1.0)
                     and (not spike_eq or min(spike_eq) >= tol.get("min_spike_agreement", 0.0)))
    return rep


def verify(ckpt_dir, artifact, data="auto", limit=None, data_dir=None, batch=64, tolerance=None, runner=None):
    from .backends import target_for_path
    from .backends.nir.fileio import sniff
    from .runtime import load_runner

    if os.path.isfile(ckpt_dir) and sniff(ckpt_dir):  # an NIR graph of ours (e.g. from `slt-deploy import`): the NIR interpreter is the reference
        from .backends.nir.fileio import read_nir

        g = read_nir(ckpt_dir)
        if "slt.T" not in (g.metadata or {}):
            raise SltError(f"{ckpt_dir} is an NIR graph without slt-deploy's metadata",
                           f"import it first: slt-deploy import {ckpt_dir} --T STEPS --out model.nir")
        model = GraphReference(g)
        if data == "auto":
            raise SltError(f"{ckpt_dir} is an NIR graph: it does not say which data it was trained on",
                           "pass --data digits or --data fmnist")
        name, seed = data, 0
    else:
        model, meta = load(ckpt_dir)
        name = meta["recipe"]["dataset"] if data == "auto" else data
        if name != meta["recipe"]["dataset"]:
            raise SltError(f"{ckpt_dir} was trained on {meta['recipe']['dataset']}, not {name}",
                           f"use --data {meta['recipe']['dataset']} (or --data auto)")
        seed = int(meta["recipe"].get("seed", 0))
    ds = load_dataset(name, data_dir, seed)
    x, y = ds.test.x, ds.test.y
    if isinstance(model, GraphReference) and int(np.prod(x.shape[1:])) != int(np.prod(model.input_shape)):
        raise SltError(f"{ckpt_dir} takes inputs {model.input_shape}, {name} images are {list(x.shape[1:])}",
                       "verify with the data the graph was made for")
    if limit:
        x, y = x[:limit], y[:limit]
    if runner is None:
        runner = load_runner(artifact)
    if tolerance is None:
        tol = target_for_path(artifact).tolerance
        tolerance = tol(runner) if callable(tol) else tol
    rep = verify_runner(model, runner, x.numpy(), y.numpy(), batch=batch, tolerance=tolerance)
    rep["dataset"] = name
    return rep
