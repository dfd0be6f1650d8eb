import click

from .options import echo_json, reporting


@click.command("inspect")
@click.argument("path", type=click.Path())
@reporting
def command(path, as_json):
    """Describe PATH (a checkpoint folder or any exported artifact): layers, shapes, sparsity, bits, bytes,
    metadata, and what other NIR tools can execute."""
    from ..inspect_graph import describe_path, totals

    d = describe_path(path)
    d["totals"] = totals(d["layers"])
    if as_json:
        echo_json(d)
        return
    click.echo(f"{path}: {d['kind']}, {d['file_bytes']} bytes on disk")
    click.echo(f"{'node':28s} {'op':14s} {'shape':16s} {'params':>8s} {'kept':>8s} {'sparsity':>8s} {'bits':>10s}")
    for r in d["layers"]:
        sp = f"{100 * r['sparsity']:.1f}%" if "sparsity" in r else ""
        click.echo(f"{r['node'][:28]:28s} {r['op'][:14]:14s} {str(r.get('shape', ''))[:16]:16s} "
                   f"{r.get('params', ''):>8} {r.get('kept', ''):>8} {sp:>8s} {r.get('weight_bits', ''):>10}")
    t = d["totals"]
    click.echo(f"total: {t['kept']}/{t['params']} weights kept ({100 * t['sparsity']:.2f}% sparse); dense fp32 "
               f"{t['dense_bytes']} B, information-level {t['min_bytes']} B")
    for k, v in d["meta"].items():
        click.echo(f"  {k} = {v}")
    for n in d.get("notes", []):
        click.echo(f"note: {n}")
