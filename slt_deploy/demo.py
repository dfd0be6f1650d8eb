"""`slt-deploy demo`: the main job as an explicit list of stages sharing one context dict.
Each stage is a function (ctx) -> None that prints what it did; later stages read what earlier ones stored."""
from __future__ import annotations

import os
import time

import click

from .checkpoint import save
from .data import load_dataset
from .train import evaluate, train
from .zoo import build_model, load_recipe


def stage_train(ctx):
    r = load_recipe(ctx["recipe"])
    data = load_dataset(r["dataset"], ctx.get("data_dir"), int(r.get("seed", 0)))
    model = build_model(r)
    train(model, data, r["train"], progress=False, seed=int(r.get("seed", 0)))
    acc = evaluate(model, data.test)
    ckpt = os.path.join(ctx["out"], "dense")
    save(model, ckpt, metrics={"test_acc": acc}, labels=data.labels)
    ctx.update(model=model, data=data, dense_dir=ckpt, dense_acc=acc)
    click.echo(f"  {r['name']}: test accuracy {acc:.2f}% ({len(data.test.x)} samples) -> {ckpt}")


def stage_profile(ctx):
    """Last stage: measure every artifact in ctx["artifacts"] ({target: path}) beside the reference, count synaptic
    ops, model energy per targets/energy/*.yaml, print the comparison table (slt_deploy.profile.run.demo_stage)."""
    from .profile.run import demo_stage

    demo_stage(ctx)


# The demo's stages, in order. Later issues append: tickets, exports per target, verification, profiling.
STAGES = [("train", stage_train), ("profile", stage_profile)]


def run_demo(out: str, recipe: str = "digits-tiny", data_dir=None, only=None):
    ctx = {"out": out, "recipe": recipe, "data_dir": data_dir, "results": {}}
    os.makedirs(out, exist_ok=True)
    for name, fn in STAGES:
        if only and name not in only:
            continue
        t0 = time.time()
        click.echo(f"[{name}]")
        fn(ctx)
        click.echo(f"  ({time.time() - t0:.1f}s)")
    return ctx
