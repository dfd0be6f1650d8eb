import click

from ..errors import SltError
from ..tickets import METHODS, TicketConfig, find_ticket, method_name
from ..tickets.bn_recal import DEFAULT_IMAGES as BN_RECAL_IMAGES
from ..tickets.masks import SCOPES
from ..tickets.multisp import PEP_METHODS
from ..train import init_distributed, is_main
from .options import (
    COUNT0,
    COUNT1,
    FRACTION,
    FRACTION0,
    POSITIVE,
    SEED,
    CountList,
    FractionList,
    GainList,
    Number,
    echo_json,
    precision_option,
    reporting,
)


@click.command("ticket")
@click.argument("ckpt", type=click.Path())
@click.option("--method", "-m", required=True, help=f"one of: {', '.join(METHODS)}")
@click.option("--sparsity", "-s", type=FRACTION, default=None,
              help="target fraction of pruned weights (multisp: ConvPEP connection sparsity; binarize: not needed)")
@click.option("--out", required=True, help="ticket checkpoint folder to write (not the input; an existing checkpoint "
                                           "is replaced atomically)")
@click.option("--scope", type=click.Choice(list(SCOPES)), default="global",
              help="magnitude pruning scope (global: |w| / layer rms; global-raw: |w|; lamp: LAMP scores, Lee et al. "
                   "2021; layer: per layer)")
@click.option("--layer-gain", type=GainList(), default=None,
              help="global scopes: multiply the pruning scores of some layers (KEY a kind, conv/linear, or a module "
                   "path), e.g. conv=1.5 keeps more convolution weights at the same overall sparsity")
@click.option("--prune-fraction", type=FRACTION, default=0.25, show_default=True, help="IMP: pruned per round")
@click.option("--rounds", type=COUNT1, default=None, help="IMP: rounds (default: enough to reach --sparsity)")
@click.option("--rewind-epoch", type=COUNT0, default=1, show_default=True, help="IMP/random: late-rewinding epoch k")
@click.option("--rewind", type=click.Choice(["weights", "lr"]), default="weights", show_default=True,
              help="IMP: weights = survivors back to epoch k, fresh schedule; lr = learning-rate rewinding (weights "
                   "kept, the dense schedule replayed from epoch E - epochs)")
@click.option("--epochs", type=COUNT0, default=None, help="(re)training epochs per round (default: the recipe's)")
@click.option("--sparsity-steps", type=FractionList(), default=None,
              help="IMP: the sparsity after each round (comma-separated, increasing; the last one is --sparsity, which "
                   "may then be left out), e.g. 0.96,0.97,0.975,0.98 from a 95 % ticket; overrides --prune-fraction "
                   "and --rounds")
@click.option("--round-epochs", type=CountList(), default=None,
              help="IMP: retraining epochs of round 1,2,... (comma-separated, the last repeats; overrides --epochs "
                   "per round), e.g. 4,4,4,8")
@click.option("--distill", is_flag=True, help="knowledge distillation from the dense model while (re)training "
                                               "and binarizing")
@click.option("--kd-alpha", type=Number(float, 0, 1), default=0.5, show_default=True, help="distillation weight of the KL term")
@click.option("--kd-temp", type=POSITIVE, default=4.0, show_default=True, help="distillation temperature")
@click.option("--teacher", type=click.Path(), default=None,
              help="distillation teacher checkpoint (default: CKPT; e.g. the dense model when binarizing a ticket)")
@click.option("--resume", is_flag=True, help="IMP: continue an interrupted search from its last finished round "
                                             "(OUT/rounds/search.json)")
@click.option("--binarize", is_flag=True, help="binarize the ticket's kept weights and fine-tune")
@click.option("--binarize-epochs", type=COUNT0, default=None)
@click.option("--binarize-kind", type=click.Choice(["all", "conv", "spikes", "hidden"]), default="all",
              show_default=True,
              help="layers made binary: all; conv = only the convolutions (float head); spikes = all but the first "
                   "layer (it reads analog pixels); hidden = all but the first and the last layer")
@click.option("--bn-recal", type=COUNT0, default=BN_RECAL_IMAGES, show_default=True, metavar="N",
              help="binary tickets: re-estimate batch-norm statistics on N training images after training and keep "
                   "them if validation accuracy rises (0: off)")
@click.option("--q", type=Number(int, 2), default=5, show_default=True, help="Early-Bird window")
@click.option("--tau", type=POSITIVE, default=None,
              help="Early-Bird mask-distance threshold (default 0.1 relative, 0.02 absolute)")
@click.option("--eb-distance", type=click.Choice(["relative", "absolute"]), default="relative", show_default=True,
              help="Early-Bird: Hamming distance over the kept weights (relative) or over all weights (absolute)")
@click.option("--eb-min-epochs", type=COUNT0, default=0, help="Early-Bird: earliest stop epoch (default: q)")
@click.option("--eb-checks", type=Number(int, 1), default=1, show_default=True,
              help="Early-Bird: masks taken per epoch (N > 1: every 1/N epoch; the window then spans q/N epochs)")
@click.option("--patch-sparsity", type=FRACTION0, default=0.376, show_default=True, help="MultiSp: patches removed")
@click.option("--pep-method", type=click.Choice(list(PEP_METHODS)), default="multiprize",
              show_default=True, help="MultiSp: how the ConvPEP convolutions are pruned (random: the baseline, "
                                      "random patches and masks of the same sizes)")
@click.option("--pep-float-first", is_flag=True, help="MultiSp: keep the first ConvPEP conv (analog input) real")
@click.option("--like", type=click.Path(), default=None, help="random: copy per-layer sparsity of this ticket")
@click.option("--lr", type=POSITIVE, default=None, help="override the recipe's learning rate")
@click.option("--max-cores", type=click.IntRange(min=1), default=None,
              help="Loihi 2 core budget: keep the most accurate ticket of the search (IMP rounds) that fits")
@click.option("--seed", type=SEED, default=0)
@click.option("--data-dir", type=click.Path(), default=None)
@precision_option
@reporting
def command(ckpt, method, sparsity, out, scope, layer_gain, prune_fraction, rounds, rewind_epoch, rewind, epochs, sparsity_steps,
            round_epochs, distill, kd_alpha, kd_temp, teacher, resume, binarize, binarize_epochs, binarize_kind, bn_recal,
            q, tau,
            eb_distance, eb_min_epochs, eb_checks, patch_sparsity, pep_method, pep_float_first, like, lr, max_cores,
            seed, data_dir, precision, as_json):
    """Find a lottery ticket of the dense checkpoint CKPT and save it (a normal checkpoint) in --out.
    `--method binarize` makes the ticket CKPT binary instead (masks kept, fine-tuned).
    IMP also writes one checkpoint per round (OUT/rounds/) and OUT/summary.csv|json + OUT/sparsity_accuracy.png."""
    import os

    from ..checkpoint import read_meta
    from ..fsio import check_out

    method_name(method)  # an unknown method is an SltError naming the known ones
    meta = read_meta(ckpt)
    ep = int(meta["recipe"].get("train", {}).get("epochs", 1))
    if rewind_epoch > ep:
        raise SltError(f"--rewind-epoch {rewind_epoch} is beyond the {ep} epochs the recipe of {ckpt} trains",
                       f"use 0..{ep}")
    if like is not None:
        read_meta(like)
    # --resume continues in an OUT that holds only rounds/ so far: any folder is accepted there
    check_out(out, "report" if resume else "checkpoint", inputs=[ckpt] + [p for p in (like, teacher) if p],
              folder=True)
    if sparsity_steps is not None:
        if method_name(method) != "imp":
            raise SltError(f"--sparsity-steps is for IMP searches, not {method!r}", "use --sparsity")
        if sparsity is not None and abs(sparsity - sparsity_steps[-1]) > 1e-9:
            raise SltError(f"--sparsity {sparsity} is not the last of --sparsity-steps ({sparsity_steps[-1]})",
                           "drop --sparsity or make it the last step")
        sparsity = sparsity_steps[-1]
    if layer_gain and (scope == "layer" or method_name(method) not in ("imp", "early-bird", "random")):
        what = "--scope layer" if scope == "layer" else f"--method {method}"
        raise SltError(f"--layer-gain has no effect with {what} (it weighs layers in a global magnitude ranking)",
                       "drop --layer-gain, or use an IMP / Early-Bird / random search with --scope global-raw")
    cfg = TicketConfig(method, sparsity, scope=scope, layer_gain=layer_gain, steps=sparsity_steps, prune_fraction=prune_fraction, rounds=rounds,
                       rewind_epoch=rewind_epoch, epochs=epochs, round_epochs=round_epochs, binarize=binarize,
                       binarize_epochs=binarize_epochs, bn_recal=bn_recal,
                       binarize_kind=binarize_kind, q=q, tau=tau, patch_sparsity=patch_sparsity, pep_method=pep_method,
                       pep_binary_first=not pep_float_first, like=like, lr=lr, seed=seed, progress=True,
                       rewind=rewind, distill=distill, kd_alpha=kd_alpha, kd_temp=kd_temp, teacher=teacher,
                       resume=resume, eb_distance=eb_distance, eb_min_epochs=eb_min_epochs,
                       eb_checks=eb_checks, precision=precision)
    if round_epochs and method_name(method) != "imp":
        raise SltError(f"--round-epochs is for IMP searches, not {method!r}", "use --epochs")
    if not binarize and method_name(method) != "binarize" and (binarize_kind != "all" or binarize_epochs is not None):
        given = "--binarize-kind" if binarize_kind != "all" else "--binarize-epochs"
        raise SltError(f"{given} has no effect without --binarize (nothing is binarized by --method {method})",
                       f"add --binarize, or use --method binarize on a ticket, or drop {given}")
    if resume and method_name(method) != "imp":
        raise SltError(f"--resume is for IMP searches, not {method!r}", "drop --resume")
    if method_name(method) == "imp":
        cfg.save_rounds = os.path.join(out, "rounds")
    from ..log import info, stdout_to_log

    init_distributed()  # under torchrun: data-parallel (re)training on every rank, rank 0 writes
    with stdout_to_log():  # the search's round lines are progress: stderr, not the result
        s = find_ticket(ckpt, cfg, out, data_dir=data_dir)
    if not is_main():
        return
    if s["method"] == "multisp":
        msg = (f"multisp ticket: patches {100 * s['patch_sparsity']:.1f}% removed, ConvPEP connections "
               f"{100 * s['pep_connection_sparsity']:.1f}% removed (target {100 * s['target_sparsity']:.1f}%), "
               f"ConvPEP binary weights{' and activations' if s['pep_binary_activations'] else ''}; "
               f"whole-network weight sparsity {100 * s['measured_sparsity']:.2f}%")
    elif s["method"] == "structured":  # --sparsity is the fraction of CHANNELS removed (tickets/structured.py)
        msg = (f"structured ticket: {100 * s['target_sparsity']:.1f}% of the channels removed, weight sparsity "
               f"{100 * s['measured_sparsity']:.2f}%{', binary' if s['binary'] else ''}")
    else:
        msg = (f"{s['method']} ticket: sparsity {100 * s['measured_sparsity']:.2f}% (target "
               f"{100 * s['target_sparsity']:.1f}%){', binary' if s['binary'] else ''}")
    ref = "source" if s["method"] == "binarize" else "dense"
    msg += (f"; test accuracy {s['test_acc']:.2f}% ({ref} {s['dense_test_acc']:.2f}%); spike rate "
            f"{s['spike_rate']:.3f}; synaptic ops {100 * s['sop_ratio']:.1f}% of dense")
    from ..backends.loihi.budget import ticket_budget  # Loihi plan of every ticket; --max-cores keeps one that fits

    if as_json:
        s["loihi_budget"] = ticket_budget(out, ckpt, max_cores, log=info)
        echo_json({"out": out, **s})
    else:
        click.echo(msg + f" -> {out}")
        ticket_budget(out, ckpt, max_cores, log=click.echo)

