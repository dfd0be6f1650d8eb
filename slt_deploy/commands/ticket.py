import click

from ..errors import SltError
from ..tickets import METHODS, TicketConfig, find_ticket
from .options import COUNT0, COUNT1, FRACTION, FRACTION0, POSITIVE, SEED, Number


@click.command("ticket")
@click.argument("ckpt", type=click.Path())
@click.option("--method", "-m", required=True, help=f"one of: {', '.join(METHODS)}")
@click.option("--sparsity", "-s", type=FRACTION, default=None,
              help="target fraction of pruned weights (multisp: ConvPEP connection sparsity; binarize: not needed)")
@click.option("--out", required=True, help="ticket checkpoint folder to write (not the input; an existing checkpoint "
                                           "is replaced atomically)")
@click.option("--scope", type=click.Choice(["global", "global-raw", "layer"]), default="global",
              help="magnitude pruning scope (global: |w| / layer rms; global-raw: |w|; layer: per layer)")
@click.option("--prune-fraction", type=FRACTION, default=0.25, show_default=True, help="IMP: pruned per round")
@click.option("--rounds", type=COUNT1, default=None, help="IMP: rounds (default: enough to reach --sparsity)")
@click.option("--rewind-epoch", type=COUNT0, default=1, show_default=True, help="IMP/random: late-rewinding epoch k")
@click.option("--epochs", type=COUNT0, default=None, help="(re)training epochs per round (default: the recipe's)")
@click.option("--binarize", is_flag=True, help="binarize the ticket's kept weights and fine-tune")
@click.option("--binarize-epochs", type=COUNT0, default=None)
@click.option("--q", type=Number(int, 2), default=5, show_default=True, help="Early-Bird window")
@click.option("--tau", type=POSITIVE, default=0.02, show_default=True, help="Early-Bird mask-distance threshold")
@click.option("--patch-sparsity", type=FRACTION0, default=0.376, show_default=True, help="MultiSp: patches removed")
@click.option("--pep-method", type=click.Choice(["magnitude", "multiprize"]), default="multiprize",
              show_default=True, help="MultiSp: how the ConvPEP convolutions are pruned")
@click.option("--pep-float-first", is_flag=True, help="MultiSp: keep the first ConvPEP conv (analog input) real")
@click.option("--like", type=click.Path(), default=None, help="random: copy per-layer sparsity of this ticket")
@click.option("--lr", type=POSITIVE, default=None, help="override the recipe's learning rate")
@click.option("--seed", type=SEED, default=0)
@click.option("--data-dir", type=click.Path(), default=None)
@click.option("--quiet", is_flag=True)
def command(ckpt, method, sparsity, out, scope, prune_fraction, rounds, rewind_epoch, epochs, binarize,
            binarize_epochs, q, tau, patch_sparsity, pep_method, pep_float_first, like, lr, seed, data_dir, quiet):
    """Find a lottery ticket of the dense checkpoint CKPT and save it (a normal checkpoint) in --out.
    `--method binarize` makes the ticket CKPT binary instead (masks kept, fine-tuned).
    IMP also writes one checkpoint per round (OUT/rounds/) and OUT/summary.csv|json + OUT/sparsity_accuracy.png."""
    import os

    from ..checkpoint import read_meta
    from ..fsio import check_out
    from ..tickets import method_name

    method_name(method)  # an unknown method is an SltError naming the known ones
    meta = read_meta(ckpt)
    ep = int(meta["recipe"].get("train", {}).get("epochs", 1))
    if rewind_epoch > ep:
        raise SltError(f"--rewind-epoch {rewind_epoch} is beyond the {ep} epochs the recipe of {ckpt} trains",
                       f"use 0..{ep}")
    if like is not None:
        read_meta(like)
    check_out(out, "checkpoint", inputs=[ckpt] + ([like] if like else []), folder=True)
    cfg = TicketConfig(method, sparsity, scope=scope, prune_fraction=prune_fraction, rounds=rounds,
                       rewind_epoch=rewind_epoch, epochs=epochs, binarize=binarize, binarize_epochs=binarize_epochs,
                       q=q, tau=tau, patch_sparsity=patch_sparsity, pep_method=pep_method,
                       pep_binary_first=not pep_float_first, like=like, lr=lr,
                       seed=seed, progress=not quiet)
    if cfg.method in ("imp",):
        cfg.save_rounds = os.path.join(out, "rounds")
    s = find_ticket(ckpt, cfg, out, data_dir=data_dir)
    if s["method"] == "multisp":
        msg = (f"multisp ticket: patches {100 * s['patch_sparsity']:.1f}% removed, ConvPEP connections "
               f"{100 * s['pep_connection_sparsity']:.1f}% removed (target {100 * s['target_sparsity']:.1f}%), "
               f"ConvPEP binary weights{' and activations' if s['pep_binary_activations'] else ''}; "
               f"whole-network weight sparsity {100 * s['measured_sparsity']:.2f}%")
    else:
        msg = (f"{s['method']} ticket: sparsity {100 * s['measured_sparsity']:.2f}% (target "
               f"{100 * s['target_sparsity']:.1f}%){', binary' if s['binary'] else ''}")
    ref = "source" if s["method"] == "binarize" else "dense"
    msg += (f"; test accuracy {s['test_acc']:.2f}% ({ref} {s['dense_test_acc']:.2f}%); spike rate "
            f"{s['spike_rate']:.3f}; synaptic ops {100 * s['sop_ratio']:.1f}% of dense")
    click.echo(msg + f" -> {out}")

