import click

from ..demo import run_demo


@click.command("demo")
@click.option("--out", default="runs/demo", type=click.Path(file_okay=False), help="where everything is written")
@click.option("--recipe", default="digits-tiny", help="recipe to train (default: the seconds-fast digits model)")
@click.option("--data-dir", type=click.Path(), default=None)
def command(out, recipe, data_dir):
    """Train (or load) a ticket, export it to every target, verify and profile: the whole pipeline."""
    run_demo(out, recipe, data_dir)
