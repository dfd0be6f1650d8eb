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
    if rl.shape != gl.shape:
        raise SltError(f"the artifact returns logits of shape {list(gl.shape)}, the reference {list(rl.shape)}",
                       "verify an artifact against the checkpoint it was exported from")
    acc["max_abs_logit_diff"] = max(acc["max_abs_logit_diff"], float(np.max(np.abs(rl - gl))) if rl.size else 0.0)
    acc["max_abs_ref_logit"] = max(acc["max_abs_ref_logit"], float(np.max(np.abs(rl))) if rl.size else 0.0)
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
    acc = {"n": 0, "logits_equal": 0, "pred_equal": 0, "max_abs_logit_diff": 0.0, "max_abs_ref_logit": 0.0,
           "spikes": {}, "correct_ref": 0, "correct_art": 0, "exposes_spikes": False,
           "ref_exposes_spikes": False}
    from .log import progress

    g = torch.Generator().manual_seed(seed)
    for i in progress(range(0, len(images), batch), desc="verify", unit="batch"):
        x = images[i:i + batch]
        seq = model.encode(torch.as_tensor(x), generator=g).numpy()
        ref = reference_run(model, seq)
        got = runner.run(seq, record=True) if "record" in inspect.signature(runner.run).parameters else runner.run(seq)
        acc["exposes_spikes"] |= bool(got.get("spikes"))
        acc["ref_exposes_spikes"] |= bool(ref.get("spikes"))
        _accumulate(acc, ref, got)
        y = np.asarray(labels[i:i + batch])
        acc["correct_ref"] += int(np.sum(ref["logits"].argmax(1) == y))
        acc["correct_art"] += int(np.sum(got["logits"].argmax(1) == y))
    n = max(1, acc["n"])
    spike_eq = [d["equal"] / max(1, d["total"]) for d in acc["spikes"].values()]
    rel = acc["max_abs_logit_diff"] / max(acc["max_abs_ref_logit"], 1e-12)
    rep = {"samples": acc["n"], "logits_bit_identical": acc["logits_equal"] / n, "pred_agreement": acc["pred_equal"] / n,
           "max_abs_logit_diff": acc["max_abs_logit_diff"], "max_rel_logit_diff": rel,
           "ref_accuracy": 100 * acc["correct_ref"] / n, "artifact_accuracy": 100 * acc["correct_art"] / n,
           "spike_layers_compared": len(spike_eq), "spike_agreement_min": min(spike_eq) if spike_eq else None,
           "runtime_exposes_spikes": acc["exposes_spikes"], "reference_exposes_spikes": acc["ref_exposes_spikes"],
           "layers": acc["spikes"], "tolerance": tol}
    rep["failures"] = failures(rep, tol)
    rep["ok"] = not rep["failures"]
    return rep


DEFAULT_MAX_REL_LOGIT_DIFF = 0.5  # non-exact targets: max |dlogit| / max |ref logit|; measured <= 0.092 (Loihi, transformer)


def failures(rep: dict, tol: dict) -> list[str]:
    """Every bound the comparison breaks (empty = PASS). Exact targets: logits and spikes bit-identical. Others:
    prediction agreement, spike agreement per layer AND the logit difference relative to the logits' scale; a
    runtime that exposes no spikes is judged on logits alone (and says so)."""
    out = []
    both = rep["runtime_exposes_spikes"] and rep.get("reference_exposes_spikes", True)
    if both and rep["spike_layers_compared"] == 0:
        out.append("the runtime's spike layers match none of the reference's (another model?)")
    sa = rep["spike_agreement_min"]
    if tol.get("exact", True):
        if rep["logits_bit_identical"] != 1.0:
            out.append(f"logits bit-identical on {100 * rep['logits_bit_identical']:.2f}% of samples, not 100%")
        if sa is not None and sa != 1.0:
            out.append(f"spike agreement {100 * sa:.4f}%, not 100%")
        return out
    if rep["pred_agreement"] < tol.get("min_pred_agreement", 1.0):
        out.append(f"predictions agree {100 * rep['pred_agreement']:.2f}% < {100 * tol.get('min_pred_agreement', 1.0):g}%")
    if sa is not None and sa < tol.get("min_spike_agreement", 0.0):
        out.append(f"spike agreement {100 * sa:.4f}% < {100 * tol['min_spike_agreement']:g}%")
    bound = tol.get("max_rel_logit_diff", DEFAULT_MAX_REL_LOGIT_DIFF)
    if rep["max_rel_logit_diff"] > bound:
        out.append(f"max |dlogit| {rep['max_abs_logit_diff']:.3g} = {rep['max_rel_logit_diff']:.3g} of the logit scale "
                   f"> {bound:g}")
    if "max_abs_logit_diff" in tol and rep["max_abs_logit_diff"] > tol["max_abs_logit_diff"]:
        out.append(f"max |dlogit| {rep['max_abs_logit_diff']:.3g} > {tol['max_abs_logit_diff']:g}")
    return out


def artifact_identity(path: str) -> str | None:
    """The model identity an artifact records (fsio.MODEL_KEY), '' when it records none."""

    from .backends import target_for_path
    from .checkpoint import model_id, read_meta
    from .fsio import MODEL_KEY, is_checkpoint

    if is_checkpoint(path):
        return model_id(read_meta(path))
    name = target_for_path(path).name
    if name == "nir" and os.path.isfile(path):
        from .fsio import nir_identity

        return nir_identity(path, fallback=False)
    if name == "onnx":
        from .backends.onnx.runner import read_model

        return read_model(path)[1].get(MODEL_KEY, "")
    if name == "packed":
        from .backends.packed.fileio import read_file

        return getattr(read_file(path), "model_sha256", "")
    if name == "loihi":
        from .backends.loihi.runner import read_manifest

        return read_manifest(path).get(MODEL_KEY, "")
    return ""


def check_identity(ckpt_dir: str, artifact: str, meta: dict | None = None, want: str | None = None):
    """Refuses (SltError, exit 2) an artifact that was not exported from this checkpoint (or reference .nir graph),
    before anything runs."""
    from .checkpoint import model_id

    want, got = (want or model_id(meta)), artifact_identity(artifact)
    if not got:
        raise SltError(f"{artifact} records no source model identity (exported by an older slt-deploy)",
                       f"re-export it: slt-deploy export {ckpt_dir} --target ... --out {artifact}")
    if got != want:
        raise SltError(f"{artifact} was exported from another model (identity {got[:12]}), not from {ckpt_dir} "
                       f"(identity {want[:12]}: digest of its weights and recipe)",
                       "pass the checkpoint the artifact was exported from, or re-export the artifact from this one")


def verify(ckpt_dir, artifact, data="auto", limit=None, data_dir=None, batch=64, tolerance=None, runner=None):
    from .backends import target_for_path
    from .backends.nir.fileio import sniff
    from .runtime import load_runner

    if os.path.isfile(ckpt_dir) and sniff(ckpt_dir):  # an NIR graph of ours (e.g. from `slt-deploy import`): the NIR interpreter is the reference
        from .backends.nir.fileio import read_nir
        from .fsio import nir_identity

        g = read_nir(ckpt_dir)
        if "slt.T" not in (g.metadata or {}):
            raise SltError(f"{ckpt_dir} is an NIR graph without slt-deploy's metadata",
                           f"import it first: slt-deploy import {ckpt_dir} --T STEPS --out model.nir")
        check_identity(ckpt_dir, artifact, want=nir_identity(ckpt_dir))
        model = GraphReference(g)
        if data == "auto":
            raise SltError(f"{ckpt_dir} is an NIR graph: it does not say which data it was trained on",
                           "pass --data digits or --data fmnist")
        name, seed = data, 0
    else:
        model, meta = load(ckpt_dir)
        check_identity(ckpt_dir, artifact, meta)
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
    if limit is not None:
        if limit < 1:
            raise SltError(f"limit must be at least 1 (got {limit})", "pass --limit N with N >= 1")
        x, y = x[:limit], y[:limit]
    if runner is None:
        runner = load_runner(artifact)
    if tolerance is None:
        tol = target_for_path(artifact).tolerance
        tolerance = tol(runner) if callable(tol) else tol
    rep = verify_runner(model, runner, x.numpy(), y.numpy(), batch=batch, tolerance=tolerance)
    rep["dataset"] = name
    rep["hint"] = fix_hint(rep, tolerance, ckpt_dir, None if isinstance(model, GraphReference) else meta)
    return rep


def fix_hint(rep: dict, tol: dict, ckpt_dir: str, meta: dict | None) -> str | None:
    """How to make a failing checkpoint match a non-exact target, when the target names one (Backend.tolerance's
    "fix", e.g. Loihi: fine-tune with the chip's integers in the loop, which ends by snapping the float weights to
    them) and the checkpoint has not had it yet (its model.json has no "finetune" record)."""
    fix = tol.get("fix")
    if rep["ok"] or not fix or meta is None or meta.get("finetune"):
        return None
    return fix.format(ckpt=ckpt_dir)
