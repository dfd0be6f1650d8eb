"""The Python API: the CLI's pipeline as six functions, re-exported lazily by `slt_deploy` (README "Python API").

Every step reads and writes the same files as the CLI (checkpoint folders, artifacts), so a notebook and a shell
script can share them. Each function returns a dict that carries its output under "path"; such a dict can be passed
wherever a path is expected, so results chain:

    import slt_deploy as slt
    ck = slt.train("digits-tiny", "runs/ck", epochs=2)          # {"path": "runs/ck", "test_acc": ...}
    tk = slt.find_ticket(ck, "runs/tk", method="imp", sparsity=0.5)
    art = slt.export(tk, "onnx", "runs/m.onnx")
    slt.verify(tk, art)["ok"]                                     # True
    slt.load_runner(art).predict(images)                          # logits [B, classes]
    slt.profile(tk, [art])["measured"]

Mistakes raise slt_deploy.SltError (the CLI's one-line `error:` messages)."""
from __future__ import annotations

import os

from .commands.options import LIMIT_DEFAULT  # the CLI's --limit default (docs/cli.md): one default everywhere

__all__ = ["train", "find_ticket", "export", "load_runner", "verify", "profile"]


def _path(x) -> str:
    """A path, or the dict an API function returned (its "path")."""
    if isinstance(x, dict):
        if "path" not in x:
            from .errors import SltError

            raise SltError("this dict has no 'path'", "pass a path or the result of slt_deploy.train/find_ticket/export")
        return x["path"]
    return os.fspath(x)


def train(recipe, out, *, epochs: int | None = None, data_dir=None, progress: bool = False) -> dict:
    """Train `recipe` (a packaged name such as "digits-tiny", a yaml path, or a recipe dict) and save the checkpoint
    folder `out`. -> {"path", "name", "test_acc", "val_acc", "epochs", "seconds_per_epoch"}."""
    from .checkpoint import save
    from .data import load_dataset
    from .train import evaluate
    from .train import train as _train
    from .zoo import build_model, load_recipe, validate_recipe

    r = validate_recipe(dict(recipe), "recipe") if isinstance(recipe, dict) else load_recipe(os.fspath(recipe))
    seed = int(r.get("seed", 0))
    data = load_dataset(r["dataset"], data_dir, seed)
    model = build_model(r)
    hist = _train(model, data, r["train"], epochs=epochs, progress=progress, seed=seed)
    acc = evaluate(model, data.test)
    metrics = {"test_acc": acc, "val_acc": hist[-1].get("val_acc") if hist else None, "epochs": len(hist),
               "seconds_per_epoch": sum(h["seconds"] for h in hist) / max(1, len(hist))}
    out = os.fspath(out)
    save(model, out, metrics=metrics, labels=data.labels)
    return {"path": out, "name": r["name"], **metrics}


def find_ticket(ckpt, out, *, method: str = "imp", sparsity: float | None = None, data_dir=None,
                progress: bool = False, **options) -> dict:
    """Find a lottery ticket of checkpoint `ckpt` with `method` (imp, early-bird, multiprize, random, multisp,
    binarize) at `sparsity` and save it as checkpoint folder `out`. `options`: the fields of
    slt_deploy.tickets.TicketConfig (the `slt-deploy ticket` options, e.g. prune_fraction=0.5, epochs=1).
    -> the ticket's measured summary (also in out/ticket.json) with "path"."""
    import dataclasses

    from .errors import SltError
    from .tickets import TicketConfig
    from .tickets import find_ticket as _find

    known = {f.name for f in dataclasses.fields(TicketConfig)} - {"method", "sparsity", "progress"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise SltError(f"find_ticket has no option(s) {unknown}", f"use: {', '.join(sorted(known))}")
    out = os.fspath(out)
    cfg = TicketConfig(method, sparsity, progress=progress, **options)
    if cfg.method == "imp" and cfg.save_rounds is None:
        cfg.save_rounds = os.path.join(out, "rounds")  # as the CLI does
    return {**_find(_path(ckpt), cfg, out, data_dir=data_dir), "path": out}


def export(ckpt, target: str, out, **options) -> dict:
    """Lower checkpoint `ckpt` through NIR and the target's passes and write the `target` artifact at `out`
    (atomically). `options`: the target's export options (`slt-deploy targets`). -> {"path", "target", ...}."""
    from .export import export as _export

    out = os.fspath(out)
    return {**_export(_path(ckpt), target, out, **options), "path": out}


def load_runner(path, runtime: str | None = None, **kw):
    """The runner of an artifact (its target found from the file) or of a checkpoint folder (PyTorch reference):
    `.predict(images) -> logits`, `.run(encoded) -> {"logits", "spikes"}`, `.meta`. `runtime`: packed c|numpy,
    loihi reference|lava, onnx cpu|cuda."""
    from .runtime import load_runner as _load

    return _load(_path(path), runtime=runtime, **kw)


def verify(ckpt, artifact, *, data: str = "auto", limit: int | None = LIMIT_DEFAULT, data_dir=None,
           runtime: str | None = None) -> dict:
    """Run `artifact` on the first `limit` test samples (None: all) and compare it with the PyTorch reference `ckpt`,
    spike for spike.
    -> report dict; report["ok"] is False when the artifact departs beyond the target's declared tolerance."""
    from .verify import verify as _verify

    runner = load_runner(artifact, runtime=runtime) if runtime is not None else None
    return _verify(_path(ckpt), _path(artifact), data, limit, data_dir, runner=runner)


def profile(ckpt, artifacts=(), *, data: str = "auto", limit: int | None = LIMIT_DEFAULT, frames: int = 100,
            **options) -> dict:
    """Measured latency/throughput/memory of `ckpt` (the reference) and `artifacts` on this host, synaptic ops
    counted on real data, and modelled energy for the packaged hardware profiles. `options`: as
    `slt-deploy profile` (warmup, rounds, batch, threads, hardware, data_dir). -> report dict."""
    from .profile.run import profile as _profile

    if isinstance(artifacts, (str, os.PathLike, dict)):
        artifacts = [artifacts]
    return _profile(_path(ckpt), [_path(a) for a in artifacts], data=data, limit=limit, frames=frames, **options)
