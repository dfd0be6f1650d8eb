import click

from ..errors import SltError
from .options import data_dir_option, echo_json, limit_option, parse_opts, reporting

FITTERS = {"loihi": "slt_deploy.backends.loihi.fit"}   # targets with a quantization-aware fine-tuning


@click.command("finetune")
@click.argument("ckpt", type=click.Path())
@click.option("--target", "-t", required=True, help=f"target whose arithmetic is simulated: {', '.join(FITTERS)}")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="fine-tuned checkpoint folder to write")
@click.option("--epochs", type=int, default=2, show_default=True)
@click.option("--lr", type=float, default=None, help="learning rate (default: the recipe's / 10)")
@click.option("--agree-weight", type=float, default=1.0, show_default=True,
              help="weight of the chip-vs-float agreement term (0: cross-entropy of the chip's arithmetic only)")
@click.option("--batch-size", type=int, default=None, help="default: the recipe's")
@limit_option(names=("--limit", "--eval-n"),
              help="the first N test (and validation) images for the before/after agreement (N >= 1, or all; "
                   "--eval-n is its old name)")
@click.option("--train-n", type=int, default=0, help="training images per epoch (a random subset; 0 = all)")
@click.option("--opt", multiple=True, metavar="KEY=VALUE", help="export option of the target (e.g. fold=off)")
@data_dir_option
@click.option("--seed", type=int, default=0)
@reporting
def command(ckpt, target, out, epochs, lr, agree_weight, batch_size, limit, train_n, opt, data_dir, seed, as_json):
    """Quantization-aware fine-tuning: train checkpoint CKPT for a few epochs with TARGET's fixed-point arithmetic
    in the forward pass (straight-through gradients), masks and binarization kept, and save it to --out. Prints the
    export's agreement with the float model and both accuracies before and after."""
    import importlib
    import os

    if target not in FITTERS:
        raise SltError(f"target {target!r} has no fine-tuning", f"use --target {' or '.join(FITTERS)}")
    if not os.path.exists(os.path.join(ckpt, "model.json")):
        raise SltError(f"checkpoint folder {ckpt} does not exist or has no model.json",
                       "pass a folder written by 'slt-deploy train' or 'slt-deploy ticket'")
    for name, v in (("--epochs", epochs), ("--batch-size", batch_size or 1)):
        if v < 1:
            raise SltError(f"{name} must be at least 1 (got {v})")
    if train_n < 0 or agree_weight < 0 or (lr is not None and lr <= 0):
        raise SltError("--train-n and --agree-weight must be >= 0 and --lr > 0")
    opts = parse_opts(opt, "fold=off")
    fit = importlib.import_module(FITTERS[target])
    from ..log import info

    s = fit.finetune(ckpt, out, epochs=epochs, lr=lr, agree_weight=agree_weight, batch_size=batch_size,
                     eval_n=limit, train_n=train_n or None, data_dir=data_dir, seed=seed, log=info,
                     options=opts)
    b, a = s["before"], s["after"]
    if as_json:
        echo_json({"target": target, "out": out, **s})
        return
    click.echo(f"{target} fine-tuning: agreement {b['agreement']:.2f}% -> {a['agreement']:.2f}%, accuracy float "
               f"{b['float_acc']:.2f}% -> {a['float_acc']:.2f}%, {target} {b['loihi_acc']:.2f}% -> "
               f"{a['loihi_acc']:.2f}% ({a['n']} test images; {s['seconds']:.0f}s) -> {out}")
