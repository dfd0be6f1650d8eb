import click

from ..errors import SltError
from .options import COUNT0, COUNT1, data_options, reporting


@click.command("profile")
@click.argument("ckpt", metavar="CKPT_OR_ARTIFACT", type=click.Path())
@click.argument("artifacts", nargs=-1, type=click.Path())
@click.option("--compare", "compare", multiple=True, type=click.Path(), metavar="ARTIFACT",
              help="artifact(s) of the same model to put side by side with the reference (repeatable; "
                   "same as listing them after CKPT)")
@data_options(data_help="test data: auto = the checkpoint's dataset (artifacts: the one of their input shape)",
              limit_help="the first N test frames, for activity and accuracy (N >= 1, or all)")
@click.option("--frames", type=COUNT1, default=100, show_default=True, help="timed batch-1 frames per runner")
@click.option("--warmup", type=COUNT0, default=5, show_default=True, help="untimed frames before timing")
@click.option("--rounds", type=COUNT1, default=5, show_default=True,
              help="batch-1 frames are timed in this many rounds interleaved over all runners")
@click.option("--batch", type=COUNT1, default=64, show_default=True, help="batch size of the throughput measurement")
@click.option("--threads", type=COUNT0, default=1, show_default=True,
              help="torch threads while measuring (batch-1 latency of small SNNs is best on one; 0 = torch default)")
@click.option("--hardware", default=None, metavar="NAMES",
              help="comma-separated profiles from slt_deploy/hardware/energy (or .yaml paths); default: all")
@click.option("--isolate/--in-process", default=True, show_default=True,
              help="measure every runner in its own process (its own memory) or all in this one (interleaved "
                   "latency rounds)")
@reporting(json_help="print the full report as JSON on stdout instead of the table")
@click.option("--json-out", type=click.Path(dir_okay=False), default=None, help="also write the JSON report here")
@click.option("--markdown", type=click.Path(dir_okay=False), default=None, help="write a Markdown report")
@click.option("--plots", type=click.Path(file_okay=False), default=None, help="write PNG plots into this folder")
def command(ckpt, artifacts, compare, data, data_dir, limit, frames, warmup, rounds, batch, threads, hardware,
            isolate, as_json, json_out, markdown, plots):
    """Measure CKPT (the PyTorch reference) and ARTIFACTS of the same model on this device (latency, throughput,
    memory, power counters), count synaptic ops vs dense MACs on real data, and model energy for the hardware
    profiles in slt_deploy/hardware/energy -- side by side. Without a checkpoint (the first path is an artifact) every
    column is an artifact's own runner, and activity and energy come from what that runner counts."""
    from ..profile import report
    from ..profile.run import profile

    for name, v in (("--frames", frames), ("--batch", batch), ("--rounds", rounds)):
        if v < 1:
            raise SltError(f"{name} must be at least 1 (got {v})")
    if threads < 0:
        raise SltError(f"--threads must be >= 0 (got {threads})")
    if warmup < 0:
        raise SltError(f"--warmup must be >= 0 (got {warmup})")
    arts = list(dict.fromkeys([*compare, *artifacts]))  # `--compare A B C` keeps A, B, C in order
    from ..fsio import check_out

    ins = [ckpt, *arts]
    json_out = json_out and check_out(json_out, "report", ins, flag="--json-out")
    markdown = markdown and check_out(markdown, "report", ins, flag="--markdown")
    plots = plots and check_out(plots, "report", ins, folder=True, flag="--plots")
    from ..log import info
    from ..profile.run import ProfileOptions

    opts = ProfileOptions(data=data, limit=limit, frames=frames, warmup=warmup, batch=batch, hardware=hardware,
                          data_dir=data_dir, log=info, threads=threads or None, rounds=rounds, isolate=isolate)
    rep = profile(ckpt, arts, opts)
    if json_out:
        report.write_json(rep, json_out)
    if markdown:
        report.write_markdown(rep, markdown)
    written = report.write_plots(rep, plots) if plots else []
    click.echo(report.to_json(rep) if as_json else report.render_text(rep))
    if not as_json:
        for p in [json_out, markdown, *written]:
            if p:
                click.echo(f"wrote {p}")
