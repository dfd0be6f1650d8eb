"""The bad-input table (issue 20): mistaken or hostile command lines and corrupted inputs, each with what a user
should see. Used in-process by tests/test_bad_input.py and, as real subprocesses of the CLI with a timeout, by

    python tests/bad_input_cases.py [--code ROOT] [--jobs 2] [--timeout 90] [--only SUBSTR]

which prints the number of cases per outcome class (the before/after figures of issue 20).

Outcome classes:
  clean      exit 2, exactly one `error: ... (fix: ...)` line on stderr, no traceback, nothing changed outside --out
  ok         exit 0 where the case is a documented success (e.g. a missing parent folder is created)
  traceback  a Python traceback (uncaught exception)
  hang       still running after the timeout
  accepted   exit 0 on input that should have been refused (silently accepted)
  damaged    a file outside --out was changed, removed, left behind (temp) or replaced by another kind of file
  unclear    anything else (exit 1, several lines, no fix, an error without `error:`)

Every case runs in a fresh workspace (a folder) holding copies of a shipped digits ticket (ckpt/), a transformer
ticket (vit/), the ticket's artifacts (art/m.onnx, art/m.nir, art/m.slt, art/m.loihi/), a 1-epoch digits recipe
(r.yaml), a FIFO (fifo) and a character device (null, = /dev/null's numbers; root only)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKET = os.path.join(ROOT, "models", "tickets", "digits-tiny-imp90")
VIT = os.path.join(ROOT, "models", "tickets", "digits-spikformer-tiny-multisp")
BASE_RECIPE = os.path.join(ROOT, "slt_deploy", "recipes", "digits-tiny.yaml")


@dataclass
class Case:
    id: str
    argv: list
    setup: Callable | None = None      # (ws) -> None: prepares/corrupts files in the workspace
    out: str | None = None             # the path the command may write (relative to ws)
    expect: str = "clean"
    xfail: str | None = None           # reason the case is still open (non-strict xfail)
    run_in_process: bool = True        # False: must not run inside pytest (would hang/allocate) while open
    tags: list = field(default_factory=list)


CASES: list[Case] = []


def case(id, argv, setup=None, out=None, **kw):
    CASES.append(Case(id, argv, setup, out, **kw))


# ---------------------------------------------------------------- helpers for setups

def _base_recipe():
    with open(BASE_RECIPE) as f:
        r = yaml.safe_load(f)
    r["train"]["epochs"] = 1
    return r


def _set(d, dotted, value):
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d[int(k)] if isinstance(d, list) else d[k]
    last = keys[-1]
    if isinstance(d, list):
        d[int(last)] = value
    elif value is _DEL:
        d.pop(last, None)
    else:
        d[last] = value


_DEL = object()


def recipe_with(*changes, raw=None):
    """A setup writing ws/r.yaml: the 1-epoch digits recipe with dotted-path changes (value _DEL removes)."""
    def setup(ws):
        if raw is not None:
            data = raw if isinstance(raw, bytes) else raw.encode()
            with open(os.path.join(ws, "r.yaml"), "wb") as f:
                f.write(data)
            return
        r = _base_recipe()
        for path, value in changes:
            _set(r, path, value)
        with open(os.path.join(ws, "r.yaml"), "w") as f:
            yaml.safe_dump(r, f)
    return setup


def write_file(rel, data):
    def setup(ws):
        p = os.path.join(ws, rel)
        os.makedirs(os.path.dirname(p) or ws, exist_ok=True)
        with open(p, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
    return setup


def chain(*fns):
    def setup(ws):
        for f in fns:
            f(ws)
    return setup


def truncate(rel, keep=0.5):
    def setup(ws):
        p = os.path.join(ws, rel)
        n = os.path.getsize(p)
        with open(p, "r+b") as f:
            f.truncate(int(n * keep) if isinstance(keep, float) else keep)
    return setup


def flip_byte(rel, at=0.5):
    def setup(ws):
        p = os.path.join(ws, rel)
        n = os.path.getsize(p)
        i = int(n * at) if isinstance(at, float) else at
        with open(p, "r+b") as f:
            f.seek(i)
            b = f.read(1)
            f.seek(i)
            f.write(bytes([b[0] ^ 0xFF]))
    return setup


def random_bytes(rel, n=4096):
    return write_file(rel, hashlib.sha256(rel.encode()).digest() * (n // 32))


def remove(rel):
    def setup(ws):
        p = os.path.join(ws, rel)
        shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
    return setup


def edit_json(rel, fn):
    def setup(ws):
        p = os.path.join(ws, rel)
        with open(p) as f:
            d = json.load(f)
        d = fn(d)
        with open(p, "w") as f:
            json.dump(d, f)
    return setup


def _rehash_ckpt(ws, d="ckpt"):
    """Keeps model.json's weights sha256 consistent after a deliberate weights edit (tests the next check)."""
    mp = os.path.join(ws, d, "model.json")
    with open(mp) as f:
        m = json.load(f)
    with open(os.path.join(ws, d, "model.safetensors"), "rb") as f:
        m["weights_sha256"] = hashlib.sha256(f.read()).hexdigest()
    with open(mp, "w") as f:
        json.dump(m, f)


def ckpt_recipe(fn):
    def edit(m):
        fn(m["recipe"])
        return m
    return edit_json("ckpt/model.json", edit)


def safetensors_edit(fn, rehash=True):
    """Rewrites ckpt/model.safetensors through safetensors.numpy after fn(dict of arrays)."""
    def setup(ws):
        from safetensors.numpy import load_file, save_file

        p = os.path.join(ws, "ckpt", "model.safetensors")
        state = load_file(p)
        fn(state)
        save_file(state, p, metadata={"format": "slt-deploy", "format_version": "1"})
        if rehash:
            _rehash_ckpt(ws)
    return setup


def _first_weight(state):
    return next(k for k in sorted(state) if k.endswith("weight") and state[k].ndim >= 2)


def onnx_edit(fn):
    def setup(ws):
        import onnx

        p = os.path.join(ws, "art", "m.onnx")
        m = onnx.load(p)
        fn(m)
        with open(p, "wb") as f:
            f.write(m.SerializeToString())
    return setup


def onnx_flip_weight(m):
    from onnx import numpy_helper

    for init in m.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype.kind == "f" and a.size >= 16:
            a = a.copy()
            a.flat[a.size // 2] += 1.0
            init.CopyFrom(numpy_helper.from_array(a, init.name))
            return
    raise RuntimeError("no float initializer")


def onnx_meta(key, value):
    def fn(m):
        props = {p.key: p for p in m.metadata_props}
        if value is _DEL:
            keep = [p for p in m.metadata_props if p.key != key]
            del m.metadata_props[:]
            m.metadata_props.extend(keep)
        elif key in props:
            props[key].value = value
        else:
            e = m.metadata_props.add()
            e.key, e.value = key, value
    return fn


def h5_edit(rel, fn):
    def setup(ws):
        import h5py

        with h5py.File(os.path.join(ws, rel), "r+") as f:
            fn(f)
    return setup


def h5_flip_first_weight(f):
    import numpy as np

    found = []

    def visit(name, obj):
        if not found and hasattr(obj, "dtype") and obj.dtype.kind in "fi" and obj.size >= 16 and (
                "weight" in name or name.endswith("/w")):
            found.append(name)
    f.visititems(visit)
    if not found:
        raise RuntimeError("no weight dataset")
    d = f[found[0]]
    a = np.array(d)
    a.flat[a.size // 2] = a.flat[a.size // 2] + (1 if a.dtype.kind == "i" else 1.0)
    d[...] = a


def h5_nir_meta(key, value):
    def fn(f):
        import numpy as np

        g = f["node"]
        if "metadata" in g and key in g["metadata"]:
            del g["metadata"][key]
        if value is not _DEL:
            g.require_group("metadata")[key] = value if not isinstance(value, (int, float)) else np.asarray(value)
    return fn


def slt_with_T(T):
    """A CRC-valid .slt whose T is changed (the header's T field, CRCs recomputed by the format's own encoder)."""
    def setup(ws):
        from slt_deploy.backends.packed.fileio import read_file
        from slt_deploy.backends.packed.fileio import write_file as wf

        p = os.path.join(ws, "art", "m.slt")
        m = read_file(p)
        m.T = T
        os.unlink(p)
        wf(m, p)
    return setup


def symlink(target, rel):
    def setup(ws):
        os.symlink(target, os.path.join(ws, rel))
    return setup


def mkdir(rel, with_file=True):
    def setup(ws):
        os.makedirs(os.path.join(ws, rel), exist_ok=True)
        if with_file:
            with open(os.path.join(ws, rel, "notes.txt"), "w") as f:
                f.write("the user's own file\n")
    return setup


# ---------------------------------------------------------------- recipes: `train r.yaml --out o`

TRAIN = ["train", "r.yaml", "--out", "o", "--quiet"]
for cid, changes in [
    ("T-abc", [("T", "abc")]), ("T-null", [("T", None)]), ("T-zero", [("T", 0)]), ("T-negative", [("T", -3)]),
    ("T-float", [("T", 2.5)]), ("T-bool", [("T", True)]), ("T-list", [("T", [4])]),
    ("convs-string", [("arch.convs", "x")]), ("conv-without-out", [("arch.convs.0", {"stride": 1})]),
    ("conv-out-negative", [("arch.convs.0.out", -8)]), ("conv-out-zero", [("arch.convs.0.out", 0)]),
    ("conv-out-abc", [("arch.convs.0.out", "abc")]), ("conv-stride-zero", [("arch.convs.1.stride", 0)]),
    ("conv-stride-negative", [("arch.convs.1.stride", -1)]), ("conv-k-zero", [("arch.convs.0.k", 0)]),
    ("conv-k-even-huge", [("arch.convs.0.k", 100)]), ("conv-typo-strid", [("arch.convs.1", {"out": 16, "strid": 2})]),
    ("conv-not-mapping", [("arch.convs.0", 8)]), ("convs-empty", [("arch.convs", [])]),
    ("fc-negative", [("arch.fc", [-5])]), ("fc-string", [("arch.fc", "x")]),
    ("batch-size-zero", [("train.batch_size", 0)]), ("batch-size-abc", [("train.batch_size", "abc")]),
    ("batch-size-negative", [("train.batch_size", -64)]),
    ("lr-nan-string", [("train.lr", "nan")]), ("lr-nan", [("train.lr", float("nan"))]),
    ("lr-inf", [("train.lr", float("inf"))]), ("lr-negative", [("train.lr", -0.1)]), ("lr-zero", [("train.lr", 0)]),
    ("lr-abc", [("train.lr", "abc")]),
    ("epochs-abc", [("train.epochs", "abc")]), ("epochs-negative", [("train.epochs", -1)]),
    ("epochs-float", [("train.epochs", 1.5)]),
    ("optimizer-adamx", [("train.optimizer", "adamx")]), ("schedule-bogus", [("train.schedule", "bogus")]),
    ("weight-decay-negative", [("train.weight_decay", -1.0)]), ("train-typo-key", [("train.epoch", 3)]),
    ("train-string", [("train", "x")]), ("train-missing", [("train", _DEL)]),
    ("neuron-string", [("neuron", "x")]), ("neuron-reset-banana", [("neuron.reset", "banana")]),
    ("neuron-beta-2", [("neuron.beta", 2.0)]), ("neuron-beta-negative", [("neuron.beta", -0.5)]),
    ("neuron-threshold-negative", [("neuron.threshold", -1.0)]), ("neuron-threshold-nan", [("neuron.threshold",
                                                                                          float("nan"))]),
    ("neuron-slope-nan", [("neuron.slope", float("nan"))]), ("neuron-typo", [("neuron.treshold", 1.0)]),
    ("dataset-cifar", [("dataset", "cifar")]), ("dataset-missing", [("dataset", _DEL)]),
    ("arch-type-mlp", [("arch.type", "mlp")]), ("arch-missing", [("arch", _DEL)]), ("arch-string", [("arch", "vgg")]),
    ("arch-typo-key", [("arch.fcs", [])]), ("encoding-poisson", [("encoding", "poisson")]),
    ("top-level-typo", [("epochs", 3)]), ("name-list", [("name", [1])]), ("seed-abc", [("seed", "abc")]),
    ("binary-string", [("binary", "maybe")]), ("binary-layers-unknown", [("binary_layers", ["nope"])]),
    ("resnet-stem-zero", [("arch", {"type": "resnet", "stem": 0, "stages": [{"out": 8}]})]),
    ("resnet-stages-string", [("arch", {"type": "resnet", "stem": 8, "stages": "x"})]),
    ("resnet-blocks-negative", [("arch", {"type": "resnet", "stem": 8, "stages": [{"out": 8, "blocks": -1}]})]),
    ("spikformer-heads-not-dividing", [("arch", {"type": "spikformer", "dim": 10, "heads": 3, "depth": 1,
                                                 "stem_channels": [8], "stem_strides": [2]})]),
    ("spikformer-stride-zero", [("arch", {"type": "spikformer", "dim": 16, "heads": 2, "depth": 1,
                                          "stem_channels": [8], "stem_strides": [0]})]),
    ("spikformer-depth-negative", [("arch", {"type": "spikformer", "dim": 16, "heads": 2, "depth": -1,
                                             "stem_channels": [8], "stem_strides": [2]})]),
    ("spikformer-mlp-ratio-zero", [("arch", {"type": "spikformer", "dim": 16, "heads": 2, "depth": 1, "mlp_ratio": 0,
                                             "stem_channels": [8], "stem_strides": [2]})]),
    ("spikformer-channels-strides-mismatch", [("arch", {"type": "spikformer", "dim": 16, "heads": 2, "depth": 1,
                                                        "stem_channels": [8, 8], "stem_strides": [2]})]),
]:
    case(f"recipe/{cid}", TRAIN, recipe_with(*changes), out="o")
# resource guards: refused with an estimate, never started (these would hang or allocate tens of GB)
case("recipe/T-1e9", TRAIN, recipe_with(("T", 1000000000)), out="o")
case("recipe/conv-out-1e6", TRAIN, recipe_with(("arch.convs.0.out", 1000000)), out="o")
case("recipe/fc-1e7", TRAIN, recipe_with(("arch.fc", [10000000])), out="o")
case("recipe/epochs-1e9", TRAIN, recipe_with(("train.epochs", 1000000000)), out="o")
case("recipe/batch-1e9", TRAIN, recipe_with(("train.batch_size", 1000000000)), out="o")
# batch norm after an fc layer cannot train on batches of 1 (make fuzz found it: torch's ValueError at the first step)
case("recipe/batch-1-batch-norm", TRAIN, recipe_with(("train.batch_size", 1), ("arch.fc", [16])), out="o")
case("recipe/spikformer-depth-1e5", TRAIN, recipe_with(("arch", {"type": "spikformer", "dim": 16, "heads": 2,
                                                                 "depth": 100000, "stem_channels": [8],
                                                                 "stem_strides": [2]})), out="o")
case("recipe/memory-guard", TRAIN, recipe_with(("T", 1000), ("train.batch_size", 65536)), out="o")
case("recipe/time-guard", TRAIN, recipe_with(("T", 100), ("train.batch_size", 1), ("arch.convs", [{"out": 4096}, {"out": 4096}]),
                                             ("train.epochs", 1000)), out="o")
case("recipe/params-guard", TRAIN, recipe_with(("arch.fc", [8192] * 16)), out="o")
# the file itself
case("recipe/not-yaml", TRAIN, recipe_with(raw="name: [unclosed\n  T: 4: 5\n"), out="o")
case("recipe/empty-file", TRAIN, recipe_with(raw=""), out="o")
case("recipe/a-list", TRAIN, recipe_with(raw="- 1\n- 2\n"), out="o")
case("recipe/binary-garbage", TRAIN, recipe_with(raw=bytes(range(256)) * 4), out="o")
case("recipe/unknown-name", ["train", "no-such-recipe", "--out", "o", "--quiet"], out="o")
case("recipe/a-directory", ["train", "art", "--out", "o", "--quiet"], out="o")
case("recipe/yaml-anchors-bomb", TRAIN, recipe_with(raw="a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a]\n"
                                                    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b]\nname: bomb\n"), out="o")
# hardware profiles (Loihi limits yaml, energy profiles)
EXPORT_LOIHI = ["export", "ckpt", "--target", "loihi", "--out", "new.loihi"]
for cid, text in [("not-yaml", "cores_per_chip: [\n"), ("a-list", "- 1\n"), ("cores-negative", "cores_per_chip: -1\n"),
                  ("unknown-key", "cores_per_chp: 120\n"), ("cores-abc", "cores_per_chip: abc\n")]:
    case(f"hardware/loihi-{cid}", [*EXPORT_LOIHI, "--opt", "limits=hw.yaml"], write_file("hw.yaml", text),
         out="new.loihi")
case("hardware/loihi-missing", [*EXPORT_LOIHI, "--opt", "limits=missing.yaml"], out="new.loihi")
PROFILE = ["profile", "ckpt", "--limit", "5", "--frames", "2", "--warmup", "0", "--rounds", "1", "--batch", "4"]
for cid, text in [("not-yaml", "name: [\n"), ("a-list", "- 1\n"), ("unknown-key", "nmae: x\n"),
                  ("energy-negative", "name: x\nkind: mcu\nenergy_per_sop_pj: -5\n")]:
    case(f"hardware/energy-{cid}", [*PROFILE, "--hardware", "hw.yaml"], write_file("hw.yaml", text))
case("hardware/energy-unknown-name", [*PROFILE, "--hardware", "no-such-board"])

# ---------------------------------------------------------------- CLI options
TICKET_CMD = ["ticket", "ckpt", "--method", "imp", "--out", "t", "--quiet"]
for cid, extra in [("sparsity-0", ["--sparsity", "0"]), ("sparsity-1", ["--sparsity", "1"]),
                   ("sparsity-1.5", ["--sparsity", "1.5"]), ("sparsity-negative", ["--sparsity", "-0.1"]),
                   ("sparsity-nan", ["--sparsity", "nan"]), ("sparsity-abc", ["--sparsity", "abc"]),
                   ("epochs-negative", ["--sparsity", "0.5", "--epochs", "-1"]),
                   ("rewind-epoch-99", ["--sparsity", "0.5", "--rewind-epoch", "99"]),
                   ("rewind-epoch-negative", ["--sparsity", "0.5", "--rewind-epoch", "-1"]),
                   ("prune-fraction-0", ["--sparsity", "0.5", "--prune-fraction", "0"]),
                   ("prune-fraction-1.5", ["--sparsity", "0.5", "--prune-fraction", "1.5"]),
                   ("rounds-0", ["--sparsity", "0.5", "--rounds", "0"]),
                   ("rounds-negative", ["--sparsity", "0.5", "--rounds", "-2"]),
                   ("lr-nan", ["--sparsity", "0.5", "--lr", "nan"]), ("lr-negative", ["--sparsity", "0.5", "--lr", "-1"]),
                   ("binarize-epochs-negative", ["--sparsity", "0.5", "--binarize", "--binarize-epochs", "-3"]),
                   ("binarize-kind-without-binarize", ["--sparsity", "0.5", "--binarize-kind", "hidden"]),
                   ("q-zero", ["--sparsity", "0.5", "--q", "0"]), ("tau-negative", ["--sparsity", "0.5", "--tau", "-1"]),
                   ("patch-sparsity-1.2", ["--sparsity", "0.5", "--patch-sparsity", "1.2"]),
                   ("scope-bogus", ["--sparsity", "0.5", "--scope", "bogus"]),
                   ("like-missing", ["--sparsity", "0.5", "--like", "nope"]),
                   ("seed-abc", ["--sparsity", "0.5", "--seed", "abc"])]:
    case(f"ticket/{cid}", [*TICKET_CMD, *extra], out="t")
case("ticket/method-bogus", ["ticket", "ckpt", "--method", "bogus", "--sparsity", "0.5", "--out", "t"], out="t")
case("ticket/ckpt-missing", ["ticket", "nope", "--method", "imp", "--sparsity", "0.5", "--out", "t"], out="t")
case("ticket/out-is-input", ["ticket", "ckpt", "--method", "imp", "--sparsity", "0.5", "--out", "ckpt", "--epochs",
                             "0"], out=None)
case("ticket/out-empty", ["ticket", "ckpt", "--method", "imp", "--sparsity", "0.5", "--out", "", "--epochs", "0"])
case("ticket/out-user-dir", ["ticket", "ckpt", "--method", "imp", "--sparsity", "0.5", "--out", "mine", "--epochs",
                             "0"], mkdir("mine"))
case("ticket/out-file", ["ticket", "ckpt", "--method", "imp", "--sparsity", "0.5", "--out", "r.yaml", "--epochs",
                         "0"], recipe_with())

case("train/epochs-negative", ["train", "r.yaml", "--out", "o", "--epochs", "-1", "--quiet"], recipe_with(), out="o")
case("train/epochs-abc", ["train", "r.yaml", "--out", "o", "--epochs", "abc", "--quiet"], recipe_with(), out="o")
case("train/out-empty", ["train", "r.yaml", "--out", "", "--epochs", "0", "--quiet"], recipe_with())
case("train/out-user-dir", ["train", "r.yaml", "--out", "mine", "--epochs", "0", "--quiet"],
     chain(recipe_with(), mkdir("mine")))
case("train/out-is-recipe", ["train", "r.yaml", "--out", "r.yaml", "--epochs", "0", "--quiet"], recipe_with())
case("train/out-proc", ["train", "r.yaml", "--out", "/proc/slt-ckpt", "--epochs", "0", "--quiet"], recipe_with())
case("train/out-under-file", ["train", "r.yaml", "--out", "r.yaml/sub", "--epochs", "0", "--quiet"], recipe_with())
case("train/out-missing-parent", ["train", "r.yaml", "--out", "a/b/c", "--epochs", "0", "--quiet"], recipe_with(),
     out="a", expect="ok")

EXPORT = ["export", "ckpt", "--target"]
case("export/target-bogus", [*EXPORT, "bogus", "--out", "x.onnx"], out="x.onnx")
case("export/opt-not-kv", [*EXPORT, "onnx", "--out", "x.onnx", "--opt", "form"], out="x.onnx")
case("export/opt-bad-value", [*EXPORT, "onnx", "--out", "x.onnx", "--opt", "form=x"], out="x.onnx")
case("export/opt-unknown", [*EXPORT, "onnx", "--out", "x.onnx", "--opt", "nope=1"], out="x.onnx")
case("export/opt-twice", [*EXPORT, "onnx", "--out", "x.onnx", "--opt", "form=stateful", "--opt", "form=unrolled"],
     out="x.onnx")
case("export/loihi-chips-0", [*EXPORT_LOIHI, "--opt", "chips=0"], out="new.loihi")
case("export/loihi-chips-abc", [*EXPORT_LOIHI, "--opt", "chips=abc"], out="new.loihi")
case("export/loihi-partition-bogus", [*EXPORT_LOIHI, "--opt", "partition=bogus"], out="new.loihi")
case("export/loihi-sparse-bogus", [*EXPORT_LOIHI, "--opt", "sparse=bogus"], out="new.loihi")
case("export/loihi-fold-bogus", [*EXPORT_LOIHI, "--opt", "fold=bogus"], out="new.loihi")
case("export/ckpt-missing", ["export", "nope", "--target", "onnx", "--out", "x.onnx"], out="x.onnx")
case("export/ckpt-is-file", ["export", "r.yaml", "--target", "onnx", "--out", "x.onnx"], recipe_with(), out="x.onnx")
case("export/ckpt-is-artifact", ["export", "art/m.loihi", "--target", "onnx", "--out", "x.onnx"], out="x.onnx")
for tgt, suffix in [("onnx", ".onnx"), ("nir", ".nir"), ("packed", ".slt"), ("loihi", ".loihi")]:
    case(f"export/{tgt}-out-over-weights", [*EXPORT, tgt, "--out", "ckpt/model.safetensors"])
    case(f"export/{tgt}-out-is-input-dir", [*EXPORT, tgt, "--out", "ckpt"])
    case(f"export/{tgt}-out-empty", [*EXPORT, tgt, "--out", ""])
    case(f"export/{tgt}-out-char-device", [*EXPORT, tgt, "--out", "null"])
    case(f"export/{tgt}-out-fifo", [*EXPORT, tgt, "--out", "fifo"])
    case(f"export/{tgt}-out-user-dir", [*EXPORT, tgt, "--out", "mine"], mkdir("mine"))
    case(f"export/{tgt}-out-proc", [*EXPORT, tgt, "--out", f"/proc/slt{suffix}"])
    case(f"export/{tgt}-out-under-file", [*EXPORT, tgt, "--out", f"r.yaml/x{suffix}"], recipe_with())
    case(f"export/{tgt}-out-missing-parent", [*EXPORT, tgt, "--out", f"a/b/x{suffix}"], out="a", expect="ok")
case("export/onnx-out-symlink-to-weights", [*EXPORT, "onnx", "--out", "link.onnx"],
     symlink("ckpt/model.safetensors", "link.onnx"))
case("export/onnx-out-over-other-kind", [*EXPORT, "onnx", "--out", "art/m.slt"])
case("export/loihi-out-over-ckpt-folder", [*EXPORT, "loihi", "--out", "vit"])

VERIFY = ["verify", "ckpt"]
case("verify/limit-0", [*VERIFY, "art/m.onnx", "--limit", "0"])
case("verify/limit-negative", [*VERIFY, "art/m.onnx", "--limit", "-5"])
case("verify/limit-abc", [*VERIFY, "art/m.onnx", "--limit", "abc"])
case("verify/wrong-pairing-vit-vs-vgg", ["verify", "vit", "art/m.onnx", "--limit", "20"])
case("verify/wrong-pairing-packed", ["verify", "vit", "art/m.slt", "--limit", "20"])
case("verify/wrong-pairing-nir", ["verify", "vit", "art/m.nir", "--limit", "20"])
case("verify/wrong-pairing-loihi", ["verify", "vit", "art/m.loihi", "--limit", "20"])
case("verify/data-fmnist-on-digits", [*VERIFY, "art/m.onnx", "--data", "fmnist", "--limit", "5"])
case("verify/artifact-missing", [*VERIFY, "nope.onnx", "--limit", "5"])
case("verify/arguments-swapped", ["verify", "art/m.slt", "ckpt", "--limit", "5"])
case("verify/artifact-is-ckpt", [*VERIFY, "vit", "--limit", "5"])
case("verify/ckpt-missing", ["verify", "nope", "art/m.onnx", "--limit", "5"])
case("verify/runtime-bogus", [*VERIFY, "art/m.onnx", "--runtime", "bogus", "--limit", "5"])
case("verify/runtime-on-ckpt", [*VERIFY, "ckpt", "--runtime", "cpu", "--limit", "5"])

RUN = ["run", "art/m.onnx"]
case("run/limit-negative", [*RUN, "--data", "digits", "--limit", "-5"])
case("run/limit-0", [*RUN, "--data", "digits", "--limit", "0"])
case("run/input-and-data", [*RUN, "--input", "x.png", "--data", "digits"], write_file("x.png", b""))
case("run/limit-abc", [*RUN, "--limit", "abc"])
case("eval/data-fmnist-on-digits", ["eval", "ckpt", "--data", "fmnist"])
case("demo/quiet-and-verbose", ["demo", "--out", "d", "--quiet", "--verbose"], out="d")
case("run/input-missing", [*RUN, "--input", "nope.png"])
case("run/input-not-image", [*RUN, "--input", "r.yaml"], recipe_with())
case("run/input-empty", [*RUN, "--input", "empty.png"], write_file("empty.png", b""))
case("run/data-bogus", [*RUN, "--data", "bogus"])
case("run/data-fmnist-on-digits", [*RUN, "--data", "fmnist", "--limit", "5"])
case("run/artifact-missing", ["run", "nope.onnx", "--data", "digits"])
case("run/runtime-bogus", [*RUN, "--data", "digits", "--runtime", "bogus"])
case("run/packed-runtime-loihi", ["run", "art/m.slt", "--data", "digits", "--runtime", "lava"])
case("run/artifact-is-dir", ["run", "mine", "--data", "digits"], mkdir("mine"))
case("run/artifact-is-fifo", ["run", "fifo", "--data", "digits"])

case("eval/ckpt-missing", ["eval", "nope"])
case("eval/split-bogus", ["eval", "ckpt", "--split", "bogus"])
case("eval/ckpt-is-file", ["eval", "r.yaml"], recipe_with())
case("inspect/missing", ["inspect", "nope.onnx"])
case("inspect/empty-file", ["inspect", "e.onnx"], write_file("e.onnx", b""))
case("inspect/random-bytes", ["inspect", "rand.bin"], random_bytes("rand.bin"))
case("inspect/user-dir", ["inspect", "mine"], mkdir("mine"))
case("inspect/fifo", ["inspect", "fifo"])
case("profile/limit-0", [*PROFILE[:2], "--limit", "0"])
case("profile/frames-0", [*PROFILE[:2], "--frames", "0"])
case("profile/threads-negative", [*PROFILE[:2], "--threads", "-1"])
case("profile/json-out-over-ckpt-meta", [*PROFILE, "--json-out", "ckpt/model.json"])
case("profile/markdown-over-weights", [*PROFILE, "--markdown", "ckpt/model.safetensors"])
case("profile/markdown-is-dir", [*PROFILE, "--markdown", "mine"], mkdir("mine"))
case("profile/json-out-char-device", [*PROFILE, "--json-out", "null"])
case("demo/only-bogus", ["demo", "--only", "bogus", "--out", "d"], out="d")
case("demo/ticket-missing", ["demo", "--ticket", "nope", "--out", "d"], out="d")
case("demo/out-is-file", ["demo", "--ticket", "ckpt", "--only", "export", "--out", "r.yaml"], recipe_with())
case("demo/out-is-ckpt", ["demo", "--ticket", "ckpt", "--only", "export", "--out", "ckpt"])
case("demo/recipe-bogus", ["demo", "--recipe", "no-such", "--out", "d"], out="d")
case("cli/unknown-command", ["bogus"])
case("cli/unknown-option", ["export", "ckpt", "--bogus"])
case("cli/missing-argument", ["export"])

# ---------------------------------------------------------------- corrupted inputs
CK = "ckpt/model.json"
CW = "ckpt/model.safetensors"
for cmd_id, argv in [("export", ["export", "ckpt", "--target", "onnx", "--out", "x.onnx"]),
                     ("verify", ["verify", "ckpt", "art/m.onnx", "--limit", "5"]),
                     ("inspect", ["inspect", "ckpt"])]:
    out = "x.onnx" if cmd_id == "export" else None
    for cid, setup in [
        ("json-truncated", truncate(CK, 0.5)), ("json-not-json", write_file(CK, "not json {")),
        ("json-a-list", write_file(CK, "[1, 2]")), ("json-empty", write_file(CK, "")),
        ("json-binary", random_bytes(CK, 256)),
        ("json-format-wrong", edit_json(CK, lambda m: {**m, "format": "other"})),
        ("json-version-99", edit_json(CK, lambda m: {**m, "format_version": 99})),
        ("json-version-abc", edit_json(CK, lambda m: {**m, "format_version": "abc"})),
        ("json-recipe-missing", edit_json(CK, lambda m: {k: v for k, v in m.items() if k != "recipe"})),
        ("json-recipe-T-abc", ckpt_recipe(lambda r: r.__setitem__("T", "abc"))),
        ("json-recipe-T-huge", ckpt_recipe(lambda r: r.__setitem__("T", 10 ** 9))),
        ("json-recipe-convs-string", ckpt_recipe(lambda r: r["arch"].__setitem__("convs", "x"))),
        ("json-labels-int", edit_json(CK, lambda m: {**m, "labels": 5})),
        ("json-missing", remove(CK)), ("weights-missing", remove(CW)),
        ("weights-flipped", flip_byte(CW, 0.7)), ("weights-truncated", truncate(CW, 0.5)),
        ("weights-empty", write_file(CW, b"")),
        ("weights-header-garbage", chain(write_file(CW, struct.pack("<Q", 40) + b"{not json at all, really!!}    "
                                                    + b"\0" * 64), _rehash_ckpt)),
        ("weights-header-huge", chain(write_file(CW, struct.pack("<Q", 1 << 60) + b"{}"), _rehash_ckpt)),
        ("weights-wrong-shape", safetensors_edit(lambda s: s.__setitem__(_first_weight(s), s[_first_weight(s)][:1]))),
        ("weights-extra-tensor", safetensors_edit(lambda s: s.__setitem__("bogus", s[_first_weight(s)]))),
        ("weights-nan", safetensors_edit(lambda s: s[_first_weight(s)].__setitem__((0,), float("nan")))),
        ("weights-is-dir", chain(remove(CW), mkdir(CW))),
    ]:
        if cmd_id != "export" and cid.startswith("json-recipe-T-huge"):
            continue
        case(f"corrupt-ckpt/{cmd_id}/{cid}", argv, setup, out=out)

ONNX, NIRF, SLT, LOI = "art/m.onnx", "art/m.nir", "art/m.slt", "art/m.loihi"
for cmd_id, mk in [("run", lambda a: ["run", a, "--data", "digits", "--limit", "5"]),
                   ("verify", lambda a: ["verify", "ckpt", a, "--limit", "5"]),
                   ("inspect", lambda a: ["inspect", a])]:
    for art, cid, setup in [
        (ONNX, "onnx-truncated", truncate(ONNX, 0.5)), (ONNX, "onnx-random", random_bytes(ONNX)),
        (ONNX, "onnx-empty", write_file(ONNX, b"")), (ONNX, "onnx-flipped-weight", onnx_edit(onnx_flip_weight)),
        (ONNX, "onnx-no-metadata", onnx_edit(lambda m: m.metadata_props.__delitem__(slice(None)))),
        (ONNX, "onnx-meta-T-abc", onnx_edit(onnx_meta("slt.T", "abc"))),
        (ONNX, "onnx-meta-T-huge", onnx_edit(onnx_meta("slt.T", "100000000"))),
        (ONNX, "onnx-meta-shape-bad", onnx_edit(onnx_meta("slt.input_shape", "[1, x]"))),
        (NIRF, "nir-truncated", truncate(NIRF, 0.5)), (NIRF, "nir-random", random_bytes(NIRF)),
        (NIRF, "nir-empty", write_file(NIRF, b"")), (NIRF, "nir-flipped-weight", h5_edit(NIRF, h5_flip_first_weight)),
        (NIRF, "nir-no-nodes", h5_edit(NIRF, lambda f: f["node"].__delitem__("nodes"))),
        (NIRF, "nir-meta-T-huge", h5_edit(NIRF, h5_nir_meta("slt.T", 100000000))),
        (SLT, "slt-truncated", truncate(SLT, 0.5)), (SLT, "slt-flipped", flip_byte(SLT, 0.6)),
        (SLT, "slt-empty", write_file(SLT, b"")), (SLT, "slt-T-33726", slt_with_T(33726)),
        (LOI, "loihi-manifest-missing", remove(f"{LOI}/manifest.json")),
        (LOI, "loihi-manifest-not-json", write_file(f"{LOI}/manifest.json", "{nope")),
        (LOI, "loihi-manifest-list", write_file(f"{LOI}/manifest.json", "[]")),
        (LOI, "loihi-manifest-keys-missing", write_file(f"{LOI}/manifest.json",
                                                        json.dumps({"format": "slt-loihi", "format_version": 1}))),
        (LOI, "loihi-manifest-T-huge", edit_json(f"{LOI}/manifest.json", lambda m: {**m, "T": 10 ** 8})),
        (LOI, "loihi-network-missing", remove(f"{LOI}/network.h5")),
        (LOI, "loihi-network-truncated", truncate(f"{LOI}/network.h5", 0.5)),
        (LOI, "loihi-network-random", random_bytes(f"{LOI}/network.h5")),
        (LOI, "loihi-network-flipped-weight", h5_edit(f"{LOI}/network.h5", h5_flip_first_weight)),
        (LOI, "loihi-host-in-missing", remove(f"{LOI}/host_in.nir")),
    ]:
        # inspect only describes: a CRC-valid file with a large T is shown, refused only when something would run it
        ok = cmd_id == "inspect" and cid == "slt-T-33726"
        case(f"corrupt-art/{cmd_id}/{cid}", mk(art), setup, expect="ok" if ok else "clean")


# ---------------------------------------------------------------- workspace and classification

def make_base(dest: str):
    """The template workspace (artifacts exported once from the shipped digits ticket)."""
    from slt_deploy.export import export

    os.makedirs(dest, exist_ok=True)
    shutil.copytree(TICKET, os.path.join(dest, "ckpt"))
    shutil.copytree(VIT, os.path.join(dest, "vit"))
    os.makedirs(os.path.join(dest, "art"))
    for tgt, name in [("onnx", "m.onnx"), ("nir", "m.nir"), ("packed", "m.slt"), ("loihi", "m.loihi")]:
        export(os.path.join(dest, "ckpt"), tgt, os.path.join(dest, "art", name))
    with open(os.path.join(dest, "r.yaml"), "w") as f:
        yaml.safe_dump(_base_recipe(), f)
    return dest


def make_workspace(base: str, ws: str, c: Case):
    shutil.copytree(base, ws, symlinks=True)
    os.mkfifo(os.path.join(ws, "fifo"))
    try:
        os.mknod(os.path.join(ws, "null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:  # not root: a FIFO stands in
        os.mkfifo(os.path.join(ws, "null"))
    if c.setup:
        c.setup(ws)


def snapshot(ws: str) -> dict:
    snap = {}
    for d, dirs, files in os.walk(ws):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, ws)
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    snap[rel] = ("file", hashlib.sha256(f.read()).hexdigest())
            elif stat.S_ISDIR(st.st_mode):
                snap[rel] = ("dir",)
            else:
                snap[rel] = (stat.S_IFMT(st.st_mode), st.st_rdev)
    return snap


def damage(before: dict, after: dict, out: str | None) -> list[str]:
    def inside(rel):
        return out is not None and (rel == out or rel.startswith(out.rstrip("/") + "/"))
    bad = []
    for rel in sorted(set(before) | set(after)):
        if inside(rel):
            continue
        if before.get(rel) != after.get(rel):
            what = "removed" if rel not in after else "left behind" if rel not in before else "changed"
            bad.append(f"{rel} {what}")
    return bad


def classify(code, stderr: str, damaged: list[str], timed_out: bool, expect: str) -> str:
    if timed_out:
        return "hang"
    if "Traceback (most recent call last)" in stderr:
        return "traceback"
    if damaged:
        return "damaged"
    if code == 0:
        return "ok" if expect == "ok" else "accepted"
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errs = [ln for ln in lines if ln.startswith("error: ")]
    if code == 2 and len(errs) == 1 and "(fix: " in errs[0] and len(lines) == 1:
        return "clean"
    return "unclear"


# ---------------------------------------------------------------- subprocess measurement (issue 20 figures)

def _run_one(args):
    import subprocess
    import tempfile
    import time

    c, base, code_root, timeout = args
    top = tempfile.mkdtemp(prefix="slt-bad-")
    ws = os.path.join(top, "w")
    try:
        try:
            make_workspace(base, ws, c)
        except Exception as e:  # noqa: BLE001 - a broken setup is reported, not fatal
            return c.id, "setup-error", None, 0, f"{type(e).__name__}: {e}", []
        before = snapshot(ws)
        env = {**os.environ, "PYTHONPATH": code_root}

        def limit():
            import resource
            resource.setrlimit(resource.RLIMIT_AS, (12 << 30, 12 << 30))
        t0 = time.time()
        try:
            r = subprocess.run([sys.executable, "-m", "slt_deploy.cli", *c.argv], cwd=ws, env=env,
                               capture_output=True, text=True, timeout=timeout, preexec_fn=limit,
                               stdin=subprocess.DEVNULL)
            code, err, to = r.returncode, r.stderr, False
        except subprocess.TimeoutExpired as e:
            code, err, to = None, (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else "", True
        dt = time.time() - t0
        after = snapshot(ws)
        dmg = damage(before, after, c.out)
        cls = classify(code, err, dmg, to, c.expect)
        last = [ln for ln in err.splitlines() if ln.strip()][-1:] or [""]
        return c.id, cls, code, round(dt, 1), last[0][:200], dmg[:3]
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _run_in_process(c, base, timeout):
    import tempfile
    import time

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import test_bad_input as T

    T.TIME_LIMIT = int(timeout)
    top = tempfile.mkdtemp(prefix="slt-bad-")
    ws = os.path.join(top, "w")
    cwd = os.getcwd()
    try:
        try:
            make_workspace(base, ws, c)
        except Exception as e:  # noqa: BLE001
            return c.id, "setup-error", None, 0, f"{type(e).__name__}: {e}", []
        before = snapshot(ws)
        os.chdir(ws)
        t0 = time.time()
        code, err, to = T.run_in_process(c.argv)
        dt = time.time() - t0
        os.chdir(cwd)
        dmg = damage(before, snapshot(ws), c.out)
        last = [ln for ln in err.splitlines() if ln.strip()][-1:] or [""]
        return c.id, classify(code, err, dmg, to, c.expect), code, round(dt, 1), last[0][:200], dmg[:3]
    finally:
        os.chdir(cwd)
        shutil.rmtree(top, ignore_errors=True)


def main(argv=None):
    import argparse
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    ap = argparse.ArgumentParser()
    ap.add_argument("--code", default=ROOT, help="code root put on PYTHONPATH of the CLI (e.g. a snapshot of main)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=90)
    ap.add_argument("--only", default=None)
    ap.add_argument("--json", default=None, help="write per-case results here")
    ap.add_argument("--sample", type=int, default=0, help="a seeded random sample of N cases")
    ap.add_argument("--start", type=int, default=0, help="skip the first N cases (resume a measurement)")
    ap.add_argument("--mem-gb", type=int, default=12, help="address-space limit of the in-process run")
    ap.add_argument("--in-process", action="store_true",
                    help="run the cases inside this process (slt_deploy.cli.main, SIGALRM timeout, 12 GB address "
                         "space): minutes instead of hours on a loaded machine; --code must then be on PYTHONPATH")
    a = ap.parse_args(argv)
    sys.path.insert(0, a.code)
    cases = [c for c in CASES if not a.only or a.only in c.id][a.start:]
    if a.sample:
        import random

        cases = random.Random(20).sample(cases, min(a.sample, len(cases)))
    base = make_base(os.path.join(tempfile.mkdtemp(prefix="slt-bad-base-"), "base"))
    results = []

    def show(r):
        results.append(r)
        print(f"{r[1]:9s} {r[0]:55s} exit={r[2]} {r[3]}s  {r[4]}  {'; '.join(r[5])}", flush=True)
    if a.in_process:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (a.mem_gb << 30, a.mem_gb << 30))
        for c in cases:
            show(_run_in_process(c, base, a.timeout))
    else:
        with ThreadPoolExecutor(a.jobs) as ex:
            for r in ex.map(_run_one, [(c, base, a.code, a.timeout) for c in cases]):
                show(r)
    counts = {}
    for r in results:
        counts[r[1]] = counts.get(r[1], 0) + 1
    print(f"{len(results)} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"counts": counts, "cases": results}, f, indent=1)


if __name__ == "__main__":
    main()
