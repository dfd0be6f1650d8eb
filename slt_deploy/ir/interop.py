"""The NIR interop matrix (docs/interop.md): our .nir files, loaded by the importers people use, on real test images.

For each checkpoint: export with `--target nir`, encode real test images (Fashion-MNIST or sklearn digits, the
checkpoint's dataset), run the PyTorch reference, and have every importer load the file and run the same encoded
batch, batched and one image at a time. Each importer runs as a subprocess in its own venv
(`slt_deploy/ir/interop_run.py`, npz in/out, no pickle).

    python -m slt_deploy.ir.interop models/tickets/* [--images 64] [--json out.json]
prints the matrix as a markdown table (agreement of predictions with the reference, max |logit difference|)."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().with_name("interop_run.py")
# importer -> venv it lives in (scripts/setup_interop.sh makes the last two)
IMPORTERS = {"snntorch": ".venv", "norse": ".venv-interop", "spikingjelly": ".venv-interop", "sinabs": ".venv-sinabs"}


def importer_python(importer: str) -> str | None:
    """The interpreter of the venv the importer lives in, or None when that venv is not set up."""
    if importer == "snntorch":
        return sys.executable
    py = ROOT / IMPORTERS[importer] / "bin" / "python"
    return str(py) if py.exists() else None


def run_importer(importer: str, nir_path: str, seq: np.ndarray, dt: float, timeout: float = 900) -> dict:
    """-> {"report": {...}, "batched": logits or None, "unbatched": logits or None} (see interop_run.py)."""
    py = importer_python(importer)
    if py is None:
        return {"report": {"importer": importer, "read": "not run",
                           "read_error": f"{IMPORTERS[importer]} missing (bash scripts/setup_interop.sh)"},
                "batched": None, "unbatched": None}
    with tempfile.TemporaryDirectory() as d:
        inp, out = os.path.join(d, "in.npz"), os.path.join(d, "out.npz")
        np.savez(inp, seq=np.asarray(seq, np.float32), dt=np.float64(dt))
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        p = subprocess.run([py, str(WORKER), importer, nir_path, inp, out], capture_output=True, text=True,
                           timeout=timeout, env=env)
        if p.returncode != 0 or not os.path.exists(out):
            tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
            return {"report": {"importer": importer, "read": "crashed", "read_error": tail[0][:300]},
                    "batched": None, "unbatched": None}
        with np.load(out, allow_pickle=False) as f:
            return {"report": json.loads(str(f["report"])), "batched": f["batched"] if "batched" in f else None,
                    "unbatched": f["unbatched"] if "unbatched" in f else None}


def compare(ref: np.ndarray, got: np.ndarray | None) -> dict | None:
    if got is None:
        return None
    if got.shape != ref.shape:
        return {"shape": list(got.shape)}
    return {"agree": float(np.mean(ref.argmax(1) == got.argmax(1))), "max_dlogit": float(np.max(np.abs(ref - got))),
            "bit_identical": bool(np.array_equal(ref, got))}


def test_batch(ckpt_dir: str, n_images: int, seed: int = 0):
    """-> (model, meta, seq [T, B, ...], reference logits) on the first n test images of the checkpoint's data."""
    from ..checkpoint import load
    from ..data import load_dataset
    from ..verify import reference_run

    model, meta = load(ckpt_dir)
    data = load_dataset(meta["recipe"]["dataset"], seed=int(meta["recipe"].get("seed", 0)))
    x = torch.as_tensor(data.test.x[:n_images])
    seq = model.encode(x, generator=torch.Generator().manual_seed(seed)).numpy()
    return model, meta, seq, reference_run(model, seq, record=False)["logits"]


def measure(ckpt_dir: str, n_images: int = 64, importers=tuple(IMPORTERS), nir_path: str | None = None) -> dict:
    """One row group of the matrix: {importer: {"report", "batched", "unbatched"}} for one checkpoint."""
    from ..export import export

    _, meta, seq, ref = test_batch(ckpt_dir, n_images)
    with tempfile.TemporaryDirectory() as d:
        path = nir_path or os.path.join(d, "m.nir")
        if nir_path is None:
            export(ckpt_dir, "nir", path)
        rows = {}
        for imp in importers:
            r = run_importer(imp, path, seq, float(meta.get("dt", 1e-4)))
            rows[imp] = {"report": r["report"], "batched": compare(ref, r["batched"]),
                         "unbatched": compare(ref, r["unbatched"]), "ref_shape": list(ref.shape)}
    return {"ckpt": os.path.basename(os.path.normpath(ckpt_dir)), "arch": meta["recipe"]["arch"]["type"],
            "n": int(seq.shape[1]), "importers": rows}


def cell(entry: dict, mode: str) -> str:
    c = entry[mode]
    if c is not None and "shape" in c:
        return f"✗ output shape {c['shape']} (reference {entry.get('ref_shape')})"
    if c is not None:
        s = f"{100 * c['agree']:.1f} %"
        return s + (" (bit-identical)" if c["bit_identical"] else f" (max Δ {c['max_dlogit']:.1g})")
    rep = entry["report"]
    err = rep.get(f"{mode}_error") or rep.get("import_error") or rep.get("read_error") or "no output"
    return "✗ " + err.replace("|", "/")[:140]


def table(results: list[dict]) -> str:
    lines = ["| checkpoint (arch) | importer | nir.read (type check) | batched | unbatched |",
             "|---|---|---|---|---|"]
    for res in results:
        for imp, e in res["importers"].items():
            read = e["report"].get("read", "?")
            lines.append(f"| {res['ckpt']} ({res['arch']}) | {imp} | {read} | {cell(e, 'batched')} | "
                         f"{cell(e, 'unbatched')} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpts", nargs="+")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--importers", default=",".join(IMPORTERS))
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    results = []
    for ck in a.ckpts:
        results.append(measure(ck, a.images, a.importers.split(",")))
        print(table(results[-1:]).split("\n", 2)[-1], flush=True)
    print()
    print(table(results))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
