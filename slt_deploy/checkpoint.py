"""Checkpoints: DIR/model.safetensors (weights, masks, BN stats, patch index) + DIR/model.json (recipe, T, dt,
encoding, input normalisation, labels, metrics, package versions, sha256 of the weights). Never pickle.
Writes are atomic (temp file + rename); any problem on load is one SltError line."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from importlib import metadata as _md

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from .errors import SltError
from .zoo import DATASET_SHAPES, build_model, validate_recipe

FORMAT_VERSION = 1
WEIGHTS, META = "model.safetensors", "model.json"
DT = 1e-4  # seconds per step in every artifact; snntorch import_from_nir hard-codes dt = 1e-4, so we match it


def atomic_write(path: str, data: bytes | str):
    """Write `data` to `path` through a temp file in the same folder and a rename: never a half-written file."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_path(path: str):
    """A temp path beside `path` for libraries that write files themselves; call os.replace(tmp, path) after."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    os.close(fd)
    return tmp


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def versions() -> dict:
    out = {"slt-deploy": __version__}
    for p in ("torch", "snntorch", "nir", "numpy", "safetensors"):
        try:
            out[p] = _md.version(p)
        except _md.PackageNotFoundError:
            pass
    return out


def save(model, out_dir: str, metrics: dict | None = None, labels: list | None = None, extra: dict | None = None):
    os.makedirs(out_dir, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    tmp = atomic_path(os.path.join(out_dir, WEIGHTS))
    try:
        save_file(state, tmp, metadata={"format": "slt-deploy", "format_version": str(FORMAT_VERSION)})
        digest = sha256_file(tmp)
        os.replace(tmp, os.path.join(out_dir, WEIGHTS))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    r = model.recipe
    shape, ncls, input_max = DATASET_SHAPES[r["dataset"]]
    meta = {
        "format": "slt-deploy-checkpoint", "format_version": FORMAT_VERSION,
        "recipe": r, "T": model.T, "dt": DT, "encoding": model.encoding,
        "input": {"shape": shape, "dtype": "float32", "range": [0.0, input_max],
                  "normalisation": f"x / {input_max:g} (folded into the first layer's in_scale)"},
        "labels": labels or [str(i) for i in range(ncls)],
        "metrics": metrics or {}, "versions": versions(), "weights_sha256": digest,
        **(extra or {}),
    }
    atomic_write(os.path.join(out_dir, META), json.dumps(meta, indent=2, default=float))
    return meta


def read_meta(ckpt_dir: str) -> dict:
    if not os.path.isdir(ckpt_dir):
        raise SltError(f"checkpoint folder {ckpt_dir} does not exist", "pass a folder written by 'slt-deploy train'")
    mp = os.path.join(ckpt_dir, META)
    if not os.path.exists(mp):
        raise SltError(f"{mp} is missing", "a checkpoint folder holds model.json and model.safetensors")
    try:
        with open(mp) as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SltError(f"{mp} is not valid JSON ({e})", "re-save the checkpoint") from e
    if not isinstance(meta, dict) or meta.get("format") != "slt-deploy-checkpoint":
        raise SltError(f"{mp} is not an slt-deploy checkpoint", "pass a folder written by 'slt-deploy train'")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise SltError(f"{mp} has format_version {meta.get('format_version')}, this slt-deploy reads "
                       f"<= {FORMAT_VERSION}", "upgrade slt-deploy")
    return meta


def load(ckpt_dir: str, verify_hash: bool = True):
    """-> (model in eval mode, meta). Raises SltError on anything missing, truncated or mismatched."""
    meta = read_meta(ckpt_dir)
    wp = os.path.join(ckpt_dir, WEIGHTS)
    if not os.path.exists(wp):
        raise SltError(f"{wp} is missing", "a checkpoint folder holds model.json and model.safetensors")
    if verify_hash and meta.get("weights_sha256") and sha256_file(wp) != meta["weights_sha256"]:
        raise SltError(f"{wp} does not match the sha256 recorded in model.json (truncated or replaced?)",
                       "re-copy the checkpoint folder")
    try:
        state = load_file(wp)
    except (SafetensorError, OSError, ValueError) as e:
        raise SltError(f"{wp} is not a readable safetensors file ({e})", "re-copy or re-train the checkpoint") from e
    recipe = validate_recipe(meta.get("recipe"), os.path.join(ckpt_dir, META))
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
