import os

import click

from .options import COUNT0, echo_json, precision_option, reporting


@click.command("train")
@click.argument("recipe")
@click.option("--out", required=True, help="checkpoint folder to write (created with its parents; an existing "
                                           "checkpoint is replaced atomically, any other non-empty folder refused)")
@click.option("--epochs", type=COUNT0, default=None, help="override the recipe's epoch count (>= 0)")
@click.option("--data-dir", type=click.Path(), default=None, help="folder with the Fashion-MNIST idx files")
@precision_option
@reporting
def command(recipe, out, epochs, data_dir, precision, as_json):
    """Train RECIPE (a slt_deploy/recipes/*.yaml name or path) and save a checkpoint in --out.
    Runs data-parallel when launched by torchrun."""
    from ..checkpoint import save
    from ..data import load_dataset
    from ..fsio import check_out
    from ..schema import Recipe, check_resources
    from ..train import evaluate, init_distributed, train
    from ..zoo import build_model, load_recipe

    r = load_recipe(recipe)
    if epochs is not None:
        check_resources(Recipe.model_validate(r), recipe, epochs=epochs)
        r["train"]["epochs"] = int(epochs)  # the checkpoint's recipe is the schedule it was trained with (LR rewinding)
    if precision is not None:
        r["train"]["precision"] = precision  # recorded with the schedule (the weights stay float32)
    check_out(out, "checkpoint", inputs=[recipe] if os.path.exists(recipe) else [], folder=True)
    rank, _ = init_distributed()
    data = load_dataset(r["dataset"], data_dir, int(r.get("seed", 0)))
    model = build_model(r)
    hist = train(model, data, r["train"], epochs=epochs, progress=True, seed=int(r.get("seed", 0)))
    if rank != 0:
        return
    acc = evaluate(model, data.test)
    metrics = {"test_acc": acc, "val_acc": hist[-1].get("val_acc") if hist else None, "epochs": len(hist),
               "seconds_per_epoch": sum(h["seconds"] for h in hist) / max(1, len(hist))}
    save(model, out, metrics=metrics, labels=data.labels)
    if as_json:
        echo_json({"recipe": r["name"], "out": out, "test_samples": len(data.test.x), **metrics})
    else:
        click.echo(f"{r['name']}: test accuracy {acc:.2f}% -> {out}")
