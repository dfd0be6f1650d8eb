import sys

import click

from .options import data_options, echo_json, reporting


@click.command("verify")
@click.argument("ckpt", type=click.Path())
@click.argument("artifact", type=click.Path())
@data_options
@reporting(json_help="print the full report as JSON on stdout")
@click.option("--runtime", default=None, help="the target's runtime: packed c|numpy, loihi reference|lava, "
                                              "onnx cpu|cuda (see `slt-deploy targets`)")
def command(ckpt, artifact, data, limit, data_dir, as_json, runtime):
    """Run ARTIFACT through its runtime on real test data and compare with the PyTorch reference CKPT.
    Refuses (exit 2) an artifact that was not exported from CKPT (its recorded model identity differs) or whose
    contents were damaged; exits 1 on a mismatch beyond the target's declared tolerance (logits, spikes,
    predictions)."""
    from ..runtime import load_runner
    from ..verify import verify
    from .options import check_runner

    runner = load_runner(artifact, runtime=runtime)
    check_runner(runner, artifact)
    rep = verify(ckpt, artifact, data, limit, data_dir, runner=runner)
    if as_json:
        echo_json(rep)
    else:
        sa = rep["spike_agreement_min"]
        click.echo(f"samples {rep['samples']} ({rep['dataset']}): logits bit-identical "
                   f"{100 * rep['logits_bit_identical']:.2f}%, predictions agree {100 * rep['pred_agreement']:.2f}%, "
                   f"max |dlogit| {rep['max_abs_logit_diff']:.3g} ({rep['max_rel_logit_diff']:.3g} of the logit scale)")
        click.echo(f"spike rasters: {rep['spike_layers_compared']} layer(s) compared"
                   + (f", min agreement {100 * sa:.4f}%" if sa is not None
                      else " (the runtime exposes none: judged on logits alone)"))
        click.echo(f"accuracy: reference {rep['ref_accuracy']:.2f}%, artifact {rep['artifact_accuracy']:.2f}%")
        tol = rep["tolerance"]
        click.echo(("PASS" if rep["ok"] else "FAIL") + (" (exact)" if tol.get("exact", True)
                                                         else f" (tolerance: {tol.get('why', '')})"))
        for f in rep["failures"]:
            click.echo(f"  - {f}")
        if rep.get("hint"):
            click.echo(f"hint: {rep['hint']}")
    if not rep["ok"]:
        sys.exit(1)
