import click

from .options import echo_json, parse_opts, reporting


@click.command("export")
@click.argument("ckpt", type=click.Path())
@click.option("--target", "-t", required=True, help="a registered target (see 'slt-deploy targets')")
@click.option("--out", "-o", required=True, help="artifact path to write (atomically; its parent is created; never "
                                                 "the checkpoint itself, a device, or a file of another kind)")
@click.option("--opt", multiple=True, metavar="KEY=VALUE", help="target option, e.g. --opt form=stateful")
@reporting
def command(ckpt, target, out, opt, as_json):
    """Lower checkpoint folder CKPT through NIR and the target's passes and write its artifact."""
    from ..export import export

    opts = parse_opts(opt, "form=stateful")
    info = export(ckpt, target, out, **opts)
    if as_json:
        echo_json({"target": target, "out": out, "options": opts, **info})
    else:
        click.echo(f"{target}: wrote {out} ({info['seconds']:.2f}s; passes: {', '.join(info['passes']) or 'none'})")


@click.command("targets")
@reporting
def targets_command(as_json):
    """List the registered targets."""
    from ..backends import all_targets

    ts = sorted(all_targets().items())
    if as_json:
        echo_json({name: {"suffix": b.suffix, "description": b.description, "runtimes": list(b.runtimes),
                          "options": {k: {"default": d, "help": h} for k, (d, h) in b.options.items()}}
                   for name, b in ts})
        return
    for name, b in ts:
        click.echo(f"{name:10s} {b.suffix:6s} {b.description}")
        if b.runtimes:
            click.echo(f"{'':17s} runtimes (--runtime): {', '.join(b.runtimes)} (default {next(iter(b.runtimes))})")
