import os

import click

from ..backends import TARGET_MODULES
from ..demo import DEMO_RECIPE, run_demo, stages
from ..errors import SltError
from .options import data_dir_option, echo_json, limit_option, reporting


@click.command("demo")
@click.option("--out", default="runs/demo", help="folder where everything is written (created; reused if it exists)")
@click.option("--recipe", default=DEMO_RECIPE, help=f"recipe to train (default: {DEMO_RECIPE}, a digits model trained in "
                                                    "seconds)")
@click.option("--ticket", type=click.Path(), default=None,
              help="start from this checkpoint (e.g. models/tickets/fmnist-vgg-imp98) instead of training")
@click.option("--only", default=None, metavar="STAGES",
              help="comma-separated subset of: train,ticket,export, a target's own stage (named after it; targets: "
                   f"{','.join(TARGET_MODULES)}), profile (train always runs)")
@limit_option(help="the first N test samples verified and profiled (N >= 1, or all)")
@data_dir_option
@reporting(json_help="print every stage's result as JSON on stdout (the stage reports go to stderr)")
def command(out, recipe, ticket, only, limit, data_dir, as_json):
    """Train (or load) a ticket, export it to every target, verify and profile: the whole pipeline."""
    chosen = None
    if only:
        names = [n for n, _ in stages()]  # loads the registry: every target with a demo stage
        chosen = [s.strip() for s in only.split(",") if s.strip()]
        bad = [s for s in chosen if s not in names]
        if bad:
            raise SltError(f"--only: unknown stage(s) {', '.join(bad)}", f"use some of {', '.join(names)}")
    if ticket and not os.path.isfile(os.path.join(ticket, "model.json")):
        raise SltError(f"--ticket {ticket}: not a checkpoint directory (no model.json)",
                       "pass a folder written by `slt-deploy train`/`ticket`, e.g. models/tickets/digits-tiny-imp90")
    if not ticket:
        from ..zoo import load_recipe

        load_recipe(recipe)  # a bad recipe is refused before anything is written
    from ..fsio import check_out

    check_out(out, "report", inputs=[ticket] if ticket else [], folder=True)
    if not as_json:
        run_demo(out, recipe, data_dir, only=chosen, ticket=ticket, limit=limit)
        return
    from ..log import stdout_to_log

    with stdout_to_log():  # the stage reports are progress here: the JSON alone on stdout
        ctx = run_demo(out, recipe, data_dir, only=chosen, ticket=ticket, limit=limit)
    echo_json({"out": out, "results": ctx["results"], "artifacts": ctx.get("artifacts", {}),
               "profile": ctx.get("profile")})
