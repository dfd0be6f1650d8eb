import click

from ..checkpoint import save
from ..data import load_dataset
from ..train import evaluate, init_distributed, train
from ..zoo import build_model, load_recipe


@click.command("train")
@click.argument("recipe")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="checkpoint folder to write")
@click.option("--epochs", type=int, default=None, help="override the recipe's epoch count")
@click.option("--data-dir", type=click.Path(), default=None, help="folder with the Fashion-MNIST idx files")
@click.option("--quiet", is_flag=True)
def command(recipe, out, epochs, data_dir, quiet):
    """Train RECIPE (a slt_deploy/recipes/*.yaml name or path) and save a checkpoint in --out.
    Runs data-parallel when launched by torchrun."""
    r = load_recipe(recipe)
    rank, _ = init_distributed()
    data = load_dataset(r["dataset"], data_dir, int(r.get("seed", 0)))
    model = build_model(r)
    hist = train(model, data, r["train"], epochs=epochs, progress=not quiet, seed=int(r.get("seed", 0)))
    if rank != 0:
        return
    acc = evaluate(model, data.test)
    save(model, out, metrics={"test_acc": acc, "val_acc": hist[-1].get("val_acc"), "epochs": len(hist),
                              "seconds_per_epoch": sum(h["seconds"] for h in hist) / max(1, len(hist))},
         labels=data.labels)
    click.echo(f"{r['name']}: test accuracy {acc:.2f}% -> {out}")
