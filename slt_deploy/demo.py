"""`slt-deploy demo`: the main job as an explicit list of stages sharing one context dict.
Each stage is a function (ctx) -> None that prints what it did; later stages read what earlier ones stored.
A target's own stage lives in its package (backends/<target>/demo.py) and is found through the registry
(Backend.demo); it reuses the export stage's artifact through export.artifact(ctx, ...)."""
from __future__ import annotations

import os
import time

import click

from .checkpoint import save
from .data import load_dataset
from .train import evaluate, train
from .zoo import build_model, load_recipe


def stage_train(ctx):
    """Train the recipe's dense model; with `--ticket DIR`, load that (shipped or earlier) ticket instead."""
    if ctx.get("ticket"):
        from .checkpoint import load, read_meta

        model, _ = load(ctx["ticket"])
        r = model.recipe
        data = load_dataset(r["dataset"], ctx.get("data_dir"), int(r.get("seed", 0)))
        acc = evaluate(model, data.test)
        ctx.update(model=model, data=data, dense_dir=ctx["ticket"], ticket_dir=ctx["ticket"])
        stored = (read_meta(ctx["ticket"]).get("metrics") or {}).get("test_acc")
        click.echo(f"  loaded {ctx['ticket']} ({r['name']}): test accuracy {acc:.2f}% ({len(data.test.x)} samples)"
                   + (f", recorded {stored:.2f}%" if isinstance(stored, (int, float)) else ""))
        return
    r = load_recipe(ctx["recipe"])
    data = load_dataset(r["dataset"], ctx.get("data_dir"), int(r.get("seed", 0)))
    model = build_model(r)
    train(model, data, r["train"], progress=True, seed=int(r.get("seed", 0)))  # bar on a terminal, epochs logged
    acc = evaluate(model, data.test)
    ckpt = os.path.join(ctx["out"], "dense")
    save(model, ckpt, metrics={"test_acc": acc}, labels=data.labels)
    ctx.update(model=model, data=data, dense_dir=ckpt, dense_acc=acc)
    click.echo(f"  {r['name']}: test accuracy {acc:.2f}% ({len(data.test.x)} samples) -> {ckpt}")


def stage_export(ctx):
    """Export the best model so far (the ticket if a ticket stage ran, else the dense model) to EVERY registered
    target, verify each artifact against the PyTorch reference on the test set, record ctx["artifacts"]."""
    from .backends import all_targets
    from .export import export
    from .verify import verify

    src = ctx.get("ticket_dir") or ctx["dense_dir"]
    arts = ctx.setdefault("artifacts", {})
    for name, b in sorted(all_targets().items()):
        out = os.path.join(ctx["out"], "artifacts", f"model.{name}" if b.suffix == "/" else "model" + b.suffix)
        info = export(src, name, out)
        rep = verify(src, out, limit=ctx.get("limit", 360), data_dir=ctx.get("data_dir"))
        arts[name] = out
        ctx["results"][name] = rep
        tol = rep["tolerance"]
        if rep["logits_bit_identical"] == 1.0:
            exact = "bit-identical"
        else:  # the reason is the target's (float summation order, Loihi's fixed point): in `verify --json`
            exact = f"{100 * rep['logits_bit_identical']:.1f}% bit-identical"
            if not tol.get("exact", True):
                need = tol.get("min_pred_agreement")
                exact += " (not exact by design" + (f"; tolerance: predictions >= {100 * need:g}% agree)" if need
                                                     else ")")
        click.echo(f"  {name:7s} {out}: export {info['seconds']:.2f}s, {rep['samples']} samples, logits {exact}, "
                   f"predictions {100 * rep['pred_agreement']:.2f}% agree -> {'PASS' if rep['ok'] else 'FAIL'}")
        if not rep["ok"]:
            raise SystemExit(f"verification of the {name} artifact failed")
    wrong_pairing(ctx, src, arts)


def wrong_pairing(ctx, src, arts):
    """A deliberately wrong pairing: an artifact verified against ANOTHER model must be refused before it runs
    (issue 20: the artifact's recorded identity = digest of its checkpoint's weights and recipe)."""
    import glob

    from .errors import SltError
    from .verify import verify

    shipped = sorted(glob.glob(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models",
                                            "tickets", "*")))
    other = next((d for d in [ctx.get("dense_dir"), *shipped]
                  if d and os.path.realpath(d) != os.path.realpath(src) and os.path.isfile(os.path.join(d, "model.json"))),
                 None)
    art = arts.get("onnx") or next(iter(arts.values()), None)
    if other is None or art is None:
        return
    try:
        verify(other, art, limit=20, data_dir=ctx.get("data_dir"))
    except SltError as e:
        click.echo(f"  wrong pairing {art} vs {other}: refused -> {e.what[:150]}")
        ctx["results"]["wrong_pairing"] = {"artifact": art, "ckpt": other, "refused": True}
        return
    raise SystemExit(f"verify accepted {art} against {other}, a checkpoint it was not exported from")


def stage_profile(ctx):
    """Last stage: measure every artifact in ctx["artifacts"] ({target: path}) beside the reference, count synaptic
    ops, model energy per hardware/energy/*.yaml, print the comparison table (slt_deploy.profile.run.demo_stage)."""
    from .profile.run import demo_stage

    demo_stage(ctx)


TICKET_BOUND_PT = 1.0  # the demo's ticket loses at most this much test accuracy against its dense model
DEMO_RECIPE = "digits-small"  # the demo's model: digits-tiny's binarized ticket lost 0-2.8 pt over seeds (docs/tickets.md)


def stage_ticket(ctx):
    """A sparse binarized lottery ticket within 1 pt of the dense model (TICKET_BOUND_PT): one IMP round of 50% per
    layer (late rewinding to epoch 1, 5 epochs, distilled from the dense model), then the kept weights of every layer
    that reads spikes are binarized and fine-tuned for 15 epochs, distilled (the first conv, reading analog pixels,
    stays float: binarizing it too, or pruning digits-tiny to 75%, cost 3-5 pt, docs/tickets.md)."""
    from .tickets import TicketConfig, find_ticket

    if ctx.get("ticket"):
        click.echo("  skipped: the demo started from a ticket (--ticket)")
        return
    out = os.path.join(ctx["out"], "ticket")
    cfg = TicketConfig("imp", 0.5, scope="layer", prune_fraction=0.5, rounds=1, rewind_epoch=1, epochs=5,
                       distill=True, binarize=True, binarize_epochs=15, binarize_kind="spikes")
    s = find_ticket(ctx["model"], cfg, out, data=ctx["data"])
    ctx.update(ticket_dir=out, ticket_summary=s)
    ctx["results"]["ticket"] = {k: s[k] for k in ("measured_sparsity", "test_acc", "spike_rate", "sop_ratio")}
    click.echo(f"  IMP + binarize: weight sparsity {100 * s['measured_sparsity']:.1f}% (measured), binary weights "
               f"after the first layer; "
               f"test accuracy {s['test_acc']:.2f}% (dense {s['dense_test_acc']:.2f}%); spike rate "
               f"{s['spike_rate']:.3f}; synaptic ops {100 * s['sop_ratio']:.1f}% of dense -> {out}")


def stages() -> list:
    """The demo's stages, in order: train, ticket, export, then each registered target's own stage (Backend.demo,
    named after the target, in registry order), profile LAST (it ends with the table of every target)."""
    from .backends import all_targets

    own = [(name, b.demo) for name, b in all_targets().items() if b.demo is not None]
    return [("train", stage_train), ("ticket", stage_ticket), ("export", stage_export), *own,
            ("profile", stage_profile)]


def run_demo(out: str, recipe: str = DEMO_RECIPE, data_dir=None, only=None, ticket=None, limit: int | None = 360):
    """Run the stages in order (all, or the ones named in `only`; "train" always runs since every later stage
    needs its model). `ticket`: a checkpoint directory to start from instead of training. `limit`: test samples
    verified and profiled (the first N; None = all)."""
    ctx = {"out": out, "recipe": recipe, "data_dir": data_dir, "results": {}, "ticket": ticket, "limit": limit}
    os.makedirs(out, exist_ok=True)
    for name, fn in stages():
        if only and name not in only and name != "train":
            continue
        t0 = time.time()
        click.echo(f"[{name}]")
        fn(ctx)
        click.echo(f"  ({time.time() - t0:.1f}s)")
    return ctx
