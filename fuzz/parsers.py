"""Fuzz targets for every parser slt-deploy owns besides the packed reader (fuzz_packed_*.py): the checkpoint
loader (model.json + model.safetensors), the recipe loader (yaml -> schema -> model), the NIR reader path (.nir ->
digest check -> NIR graph -> interpreter) and the Loihi folder reader (manifest + netx HDF5 + host NIR -> runner).

Contract: every input either loads (and, when small, runs) or raises SltError; any other exception is a bug.
An input is one blob; `split` cuts it into the files of a folder with 4-byte little-endian length prefixes, and a
flag byte can re-stamp digests so that mutations reach the parsers behind the integrity checks.

    python fuzz/parsers.py TARGET CORPUS_DIR [libFuzzer flags]    TARGET: checkpoint | recipe | nir | loihi
    python fuzz/parsers.py seed CORPUS_ROOT                       writes seed corpora (from the shipped ticket)
    python fuzz/parsers.py mutate TARGET CORPUS_DIR SECONDS       the same contract with a plain random mutator
                                                                  (no atheris needed); crashes -> fuzz/crash-TARGET-*"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TICKET = os.path.join(ROOT, "models", "tickets", "digits-tiny-imp90")
WORK = tempfile.mkdtemp(prefix="slt-fuzz-")


def join(parts: list[bytes], flags: int = 1) -> bytes:
    return bytes([flags]) + b"".join(struct.pack("<I", len(p)) + p for p in parts)


def split(data: bytes, n: int) -> tuple[int, list[bytes]]:
    flags, i, out = (data[0] if data else 0), 1, []
    for _ in range(n):
        if i + 4 > len(data):
            out.append(b"")
            continue
        ln = min(struct.unpack("<I", data[i:i + 4])[0], len(data) - i - 4)
        out.append(data[i + 4:i + 4 + ln])
        i += 4 + ln
    return flags, out


def fresh(name: str) -> str:
    d = os.path.join(WORK, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


# ------------------------------------------------------------------------------------------- targets
def one_checkpoint(data: bytes):
    from slt_deploy.checkpoint import load
    from slt_deploy.errors import SltError

    flags, (meta, weights) = split(data, 2)
    d = fresh("ckpt")
    if flags & 1:  # keep the recorded sha256 consistent so the safetensors/recipe parsers are reached
        try:
            m = json.loads(meta)
            if isinstance(m, dict):
                m["weights_sha256"] = hashlib.sha256(weights).hexdigest()
                meta = json.dumps(m).encode()
        except (ValueError, UnicodeDecodeError, RecursionError):
            pass
    write(os.path.join(d, "model.json"), meta)
    write(os.path.join(d, "model.safetensors"), weights)
    try:
        model, _ = load(d)
    except SltError:
        return
    import torch

    shape = [1, 8, 8] if model.recipe["dataset"] == "digits" else [1, 28, 28]
    if model.T <= 8:
        with torch.no_grad():
            model(torch.zeros(1, *shape))


def one_recipe(data: bytes):
    from slt_deploy.errors import SltError
    from slt_deploy.schema import Recipe, estimate
    from slt_deploy.zoo import build_model, load_recipe

    p = os.path.join(fresh("recipe"), "r.yaml")
    write(p, data)
    try:
        r = load_recipe(p)
    except SltError:
        return
    e = estimate(Recipe.model_validate(r))
    if e["params"] < 200_000 and e["neurons_per_step"] < 200_000 and r["T"] <= 8:
        import torch

        try:
            net = build_model(r)  # a recipe the schema accepts must build and run (or be an SltError)
        except SltError:
            return
        shape = [1, 8, 8] if r["dataset"] == "digits" else [1, 28, 28]
        net.eval()  # one image, as inference runs it (training's batch-norm batch size is train()'s own check)
        with torch.no_grad():
            net(torch.zeros(1, *shape))


def one_nir(data: bytes):
    import numpy as np

    from slt_deploy.backends.nir.fileio import read_nir
    from slt_deploy.errors import SltError
    from slt_deploy.fsio import stamp_h5
    from slt_deploy.ir.interpreter import Interpreter

    flags, (blob,) = split(data, 1)
    p = os.path.join(fresh("nir"), "m.nir")
    write(p, blob)
    if flags & 1 and RESTAMP_HDF5:
        try:
            stamp_h5(p)
        except Exception:  # noqa: BLE001 - not HDF5: the reader must say so
            pass
    try:
        g = read_nir(p)
        it = Interpreter(g)
        from slt_deploy.backends.nir.runner import graph_meta

        m = graph_meta(g)
        if 1 <= m["T"] <= 8 and m["input_shape"] and int(np.prod(m["input_shape"])) <= 4096:
            it.run(np.ones((m["T"], 1, *m["input_shape"]), np.float32))
    except SltError:
        return


LOIHI_FILES = ("manifest.json", "network.h5", "host_in.nir")
# Re-stamping the digests of a mutated HDF5 file (flags & 1) reaches libhdf5 itself with a crafted file. Known: such a
# file can hang libhdf5 (a vlen string attribute read through a corrupted global heap; input in fuzz/known-hangs/).
# `make fuzz` keeps exploring there; tests/test_bad_input_fuzz.py turns it off and keeps the damaged-file contract
# (the digests refuse every mutation before HDF5 parses it).
RESTAMP_HDF5 = os.environ.get("SLT_FUZZ_RESTAMP_HDF5", "1") == "1"


def one_loihi(data: bytes):
    import numpy as np

    from slt_deploy.backends.loihi.runner import LoihiRunner
    from slt_deploy.errors import SltError
    from slt_deploy.fsio import stamp_folder

    flags, parts = split(data, len(LOIHI_FILES))
    d = fresh("m.loihi")
    for n, b in zip(LOIHI_FILES, parts):
        write(os.path.join(d, n), b)
    if flags & 1 and RESTAMP_HDF5:  # re-stamp the digests so the manifest/netx/NIR parsers themselves are exercised
        try:
            m = json.loads(parts[0])
            if isinstance(m, dict):
                m.pop("files", None)
                m.pop("content_sha256", None)
                stamp_folder(d, m, [n for n in LOIHI_FILES[1:]])
                write(os.path.join(d, "manifest.json"), json.dumps(m).encode())
        except (ValueError, UnicodeDecodeError, RecursionError, TypeError):
            pass
    try:
        r = LoihiRunner(d)
        T, shape = int(r.meta["T"]), list(r.meta["input_shape"])
        if 1 <= T <= 8 and shape and int(np.prod(shape)) <= 4096:
            r.run(np.ones((T, 1, *shape), np.float32))
    except SltError:
        return


TARGETS = {"checkpoint": one_checkpoint, "recipe": one_recipe, "nir": one_nir, "loihi": one_loihi}


def seed(root: str):
    """Seed corpora from the shipped digits ticket and the recipes in models/."""
    import glob

    from slt_deploy.export import export

    for t in TARGETS:
        os.makedirs(os.path.join(root, t), exist_ok=True)
    def rd(p):
        with open(p, "rb") as f:
            return f.read()
    write(os.path.join(root, "checkpoint", "ticket"), join([rd(os.path.join(TICKET, "model.json")),
                                                            rd(os.path.join(TICKET, "model.safetensors"))]))
    for p in glob.glob(os.path.join(ROOT, "slt_deploy", "recipes", "*.yaml")):
        write(os.path.join(root, "recipe", os.path.basename(p)), rd(p))
    art = fresh("seed-art")
    export(TICKET, "nir", os.path.join(art, "m.nir"))
    write(os.path.join(root, "nir", "ticket"), join([rd(os.path.join(art, "m.nir"))], flags=1))
    export(TICKET, "loihi", os.path.join(art, "m.loihi"))
    write(os.path.join(root, "loihi", "ticket"),
          join([rd(os.path.join(art, "m.loihi", n)) for n in LOIHI_FILES], flags=1))


def mutate(name: str, corpus: str, seconds: float, seed_value: int = 0) -> dict:
    """Random mutations of the corpus (bit flips, byte sets, truncation, duplication, splices of JSON/yaml-ish
    tokens) through TARGETS[name] for `seconds`. Returns {"execs", "crashes"}; each crash input is saved."""
    import random
    import time
    import traceback

    fn = TARGETS[name]
    rng = random.Random(seed_value)
    seeds = [open(os.path.join(corpus, f), "rb").read() for f in sorted(os.listdir(corpus))]
    tokens = [b"null", b"-1", b"0", b"1e309", b"NaN", b'"x"', b"[]", b"{}", b"\xff", b"999999999", b": [", b"\n"]
    execs, crashes, t0 = 0, 0, time.time()
    while time.time() - t0 < seconds:
        d = bytearray(rng.choice(seeds))
        for _ in range(rng.choice((1, 1, 2, 4, 16))):
            op = rng.random()
            i = rng.randrange(max(1, len(d)))
            if op < 0.35 and d:
                d[i] ^= 1 << rng.randrange(8)
            elif op < 0.55 and d:
                d[i] = rng.randrange(256)
            elif op < 0.65:
                del d[i:]
            elif op < 0.8:
                tok = rng.choice(tokens)
                d[i:i + rng.randrange(len(tok) + 1)] = tok
            else:
                j = rng.randrange(max(1, len(d)))
                d[i:i] = d[j:j + rng.randrange(1, 64)]
        execs += 1
        try:
            fn(bytes(d))
        except Exception:  # noqa: BLE001 - the contract allows only SltError, which the targets swallow
            crashes += 1
            h = hashlib.sha256(bytes(d)).hexdigest()[:12]
            path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"crash-{name}-{h}")
            write(path, bytes(d))
            print(f"CRASH {name} -> {path}\n{traceback.format_exc(limit=4)}", file=sys.stderr)
    return {"execs": execs, "crashes": crashes}


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "seed":
        seed(sys.argv[2])
        return
    if sys.argv[1] == "mutate":
        r = mutate(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        print(f"{sys.argv[2]}: {r['execs']} inputs, {r['crashes']} crash(es)")
        sys.exit(1 if r["crashes"] else 0)
    name = sys.argv[1]
    fn = TARGETS[name]
    import atheris

    with atheris.instrument_imports(include=["slt_deploy"]):
        import slt_deploy.backends.loihi.runner
        import slt_deploy.backends.nir.fileio
        import slt_deploy.checkpoint
        import slt_deploy.schema
        import slt_deploy.zoo  # noqa: F401
    atheris.Setup([sys.argv[0], *sys.argv[2:]], fn)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
