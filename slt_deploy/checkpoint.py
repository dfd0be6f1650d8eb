"""Checkpoints: DIR/model.safetensors (weights, masks, BN stats, patch index) + DIR/model.json (recipe, T, dt,
encoding, input normalisation, labels, metrics, package versions, sha256 of the weights). Never pickle.
Writes are atomic (temp file + rename); any problem on load is one SltError line."""
from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata as _md

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from .errors import SltError, brief
from .fsio import atomic_dir, atomic_path, atomic_write, canonical_json, recover, sha256_file  # noqa: F401 (re-exported)
from .zoo import DATASET_SHAPES, build_model, validate_recipe

FORMAT_VERSION = 1
WEIGHTS, META = "model.safetensors", "model.json"
DT = 1e-4  # seconds per step in every artifact; snntorch import_from_nir hard-codes dt = 1e-4, so we match it


def model_id(meta: dict) -> str:
    """The identity of a checkpoint's model: sha256 over the weights' sha256 and the canonical recipe. Every artifact
    records it (fsio.MODEL_KEY) and `verify` refuses an artifact whose identity differs from the checkpoint's."""
    return hashlib.sha256(f"{meta.get('weights_sha256', '')}|".encode()
                          + canonical_json(meta.get("recipe"))).hexdigest()


def versions() -> dict:
    out = {"slt-deploy": __version__}
    for p in ("torch", "snntorch", "nir", "numpy", "safetensors"):
        try:
            out[p] = _md.version(p)
        except _md.PackageNotFoundError:
            pass
    return out


OWN_FILES = (WEIGHTS, META, "ticket.json")


def save(model, out_dir: str, metrics: dict | None = None, labels: list | None = None, extra: dict | None = None):
    """Writes the checkpoint folder atomically: built in a temp folder and swapped in with one rename, so a crash
    leaves the old checkpoint or the new one. Entries of an existing folder that are not checkpoint files (a
    ticket's rounds/, summary.*) are carried over; its ticket.json is not (it describes the old weights)."""
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    r = model.recipe
    shape, ncls, input_max = DATASET_SHAPES[r["dataset"]]
    box = {}

    def fill(tmp):
        wp = os.path.join(tmp, WEIGHTS)
        save_file(state, wp, metadata={"format": "slt-deploy", "format_version": str(FORMAT_VERSION)})
        meta = {
            "format": "slt-deploy-checkpoint", "format_version": FORMAT_VERSION,
            "recipe": r, "T": model.T, "dt": DT, "encoding": model.encoding,
            "input": {"shape": shape, "dtype": "float32", "range": [0.0, input_max],
                      "normalisation": f"x / {input_max:g} (folded into the first layer's in_scale)"},
            "labels": labels or [str(i) for i in range(ncls)],
            "metrics": metrics or {}, "versions": versions(), "weights_sha256": sha256_file(wp),
            **(extra or {}),
        }
        meta["model_sha256"] = model_id(meta)
        with open(os.path.join(tmp, META), "w") as f:
            f.write(json.dumps(meta, indent=2, default=float))
        box["meta"] = meta

    atomic_dir(out_dir, fill, keep=lambda n: n not in OWN_FILES)
    return box["meta"]


def read_meta(ckpt_dir: str) -> dict:
    recover(ckpt_dir)
    if not os.path.isdir(ckpt_dir):
        if os.path.isfile(ckpt_dir):  # e.g. an artifact where the checkpoint goes (verify CKPT ARTIFACT swapped)
            raise SltError(f"{ckpt_dir} is a file, where a checkpoint folder is expected",
                           "pass the folder written by 'slt-deploy train' or 'ticket'; verify takes it first: "
                           "slt-deploy verify CKPT ARTIFACT")
        raise SltError(f"checkpoint folder {ckpt_dir} does not exist", "pass a folder written by 'slt-deploy train'")
    mp = os.path.join(ckpt_dir, META)
    if not os.path.isfile(mp):
        raise SltError(f"{mp} is missing", "a checkpoint folder holds model.json and model.safetensors")
    try:
        with open(mp, "rb") as f:
            meta = json.loads(f.read(1 << 26).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise SltError(f"{mp} is not valid JSON ({brief(e, 120)})", "re-save or re-copy the checkpoint") from None
    except OSError as e:
        raise SltError(f"cannot read {mp} ({e.strerror})", "check the checkpoint folder") from None
    if not isinstance(meta, dict) or meta.get("format") != "slt-deploy-checkpoint":
        raise SltError(f"{mp} is not an slt-deploy checkpoint", "pass a folder written by 'slt-deploy train'")
    fv = meta.get("format_version", 0)
    if not isinstance(fv, int) or isinstance(fv, bool) or fv < 1:
        raise SltError(f"{mp}: format_version {fv!r} is not a version number", "re-save the checkpoint")
    if fv > FORMAT_VERSION:
        raise SltError(f"{mp} has format_version {fv}, this slt-deploy reads <= {FORMAT_VERSION}", "upgrade slt-deploy")
    for key, typ, what in (("recipe", dict, "a mapping"), ("labels", list, "a list"),
                           ("weights_sha256", str, "a string")):
        if not isinstance(meta.get(key), typ):
            raise SltError(f"{mp}: {key} is {'missing' if key not in meta else repr(meta[key])[:40]}, must be {what}",
                           "re-save the checkpoint with 'slt-deploy train'/'ticket'")
    return meta


def load(ckpt_dir: str, verify_hash: bool = True):
    """-> (model in eval mode, meta). Raises SltError on anything missing, truncated or mismatched."""
    meta = read_meta(ckpt_dir)
    wp = os.path.join(ckpt_dir, WEIGHTS)
    if not os.path.isfile(wp):
        raise SltError(f"{wp} is missing", "a checkpoint folder holds model.json and model.safetensors")
    if verify_hash and sha256_file(wp) != meta["weights_sha256"]:
        raise SltError(f"{wp} does not match the sha256 recorded in model.json (damaged, truncated or replaced)",
                       "re-copy the checkpoint folder")
    recipe = validate_recipe(meta.get("recipe"), os.path.join(ckpt_dir, META))
    try:
        state = load_file(wp)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise SltError(f"{wp} is not a readable safetensors file ({str(e)[:120]})",
                       "re-copy or re-train the checkpoint") from None
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise SltError(f"{wp}: tensor {bad[0]} holds NaN or infinite values", "re-train or re-copy the checkpoint")
    model = build_model(recipe)
    _load_state(model, state, wp)
    model.eval()
    return model, meta


def _load_state(model, state, where):
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    bad = [k for k in own if k in state and own[k].shape != state[k].shape and not k.endswith("index")]
    if missing or extra or bad:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}")
        if extra:
            parts.append(f"unexpected {extra[:3]}{'...' if len(extra) > 3 else ''}")
        if bad:
            k = bad[0]
            parts.append(f"shape of {k} is {list(state[k].shape)}, recipe wants {list(own[k].shape)}")
        raise SltError(f"{where} does not fit its recipe: " + "; ".join(parts),
                       "the weights and model.json must come from the same training run")
    model.load_state_dict(state, strict=True)


def model_hash(ckpt_dir: str) -> str:
    return read_meta(ckpt_dir).get("weights_sha256", "")


def torch_state_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
