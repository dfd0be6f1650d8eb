import click

from ..checkpoint import load
from ..data import load_dataset
from ..train import evaluate


@click.command("eval")
@click.argument("ckpt", type=click.Path())
@click.option("--data-dir", type=click.Path(), default=None)
@click.option("--split", type=click.Choice(["test", "val"]), default="test")
def command(ckpt, data_dir, split):
    """Print the accuracy of checkpoint folder CKPT on its dataset's test split."""
    model, meta = load(ckpt)
    r = meta["recipe"]
    data = load_dataset(r["dataset"], data_dir, int(r.get("seed", 0)))
    acc = evaluate(model, getattr(data, split))
    click.echo(f"{r['name']}: {split} accuracy {acc:.2f}% ({len(getattr(data, split).x)} samples)")
