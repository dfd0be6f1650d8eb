import click

from .options import data_options, echo_json, reporting


@click.command("eval")
@click.argument("ckpt", type=click.Path())
@data_options(data_help="auto = the checkpoint's dataset (another one is refused)")
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True)
@reporting
def command(ckpt, data, limit, data_dir, split, as_json):
    """Print the accuracy of checkpoint folder CKPT on its dataset's test (or validation) split."""
    from ..checkpoint import load
    from ..data import load_dataset
    from ..errors import SltError
    from ..train import evaluate

    model, meta = load(ckpt)
    r = meta["recipe"]
    if data not in (None, "auto") and data != r["dataset"]:
        raise SltError(f"{ckpt} was trained on {r['dataset']}, not {data}", f"use --data {r['dataset']} (or auto)")
    ds = load_dataset(r["dataset"], data_dir, int(r.get("seed", 0)))
    part = getattr(ds, split)
    if limit is not None:
        part = type(part)(part.x[:limit], part.y[:limit])
    acc = evaluate(model, part)
    if as_json:
        echo_json({"ckpt": ckpt, "name": r["name"], "dataset": r["dataset"], "split": split,
                   "samples": len(part.x), "accuracy": acc})
    else:
        click.echo(f"{r['name']}: {split} accuracy {acc:.2f}% ({len(part.x)} samples)")
