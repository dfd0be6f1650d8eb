"""The `slt-deploy demo` stage of the ONNX target: export the ticket (or the dense model) to ONNX (unrolled form),
verify it through onnxruntime on the whole test set, print its size against a plain dense ONNX export. Its latency
is measured once, with every other runtime, by the demo's profile stage (a one-shot timing here used to print a
speed-up that the profile table contradicted, issue 14)."""
from __future__ import annotations

import os

import click


def stage(ctx):
    from ...export import artifact
    from ...verify import verify
    from .runner import OnnxRunner

    src = ctx.get("ticket_dir") or ctx["dense_dir"]
    out = artifact(ctx, "onnx", "model.onnx")
    dense = artifact(ctx, "onnx", "model-dense.onnx", sparse="none")
    runner = OnnxRunner(out)
    rep = verify(src, out, data_dir=ctx.get("data_dir"), runner=runner)
    so, sd = os.path.getsize(out), os.path.getsize(dense)
    ctx["results"]["onnx"] = {"bytes": so, "dense_bytes": sd, "verify": {k: rep[k] for k in (
        "samples", "ok", "logits_bit_identical", "pred_agreement", "spike_agreement_min")}}
    click.echo(f"  {out}: {so} B vs dense ONNX export {sd} B (1/{sd / so:.1f}); weight sparsity "
               f"{100 * runner.meta['sparsity']:.1f}%, all layers binary: {runner.meta['all_binary']}")
    click.echo(f"  onnxruntime CPU: {rep['samples']} test samples, logits {100 * rep['logits_bit_identical']:.2f}% "
               f"bit-identical, spikes {100 * rep['spike_agreement_min']:.4f}% equal, predictions "
               f"{100 * rep['pred_agreement']:.2f}% agree -> {'PASS' if rep['ok'] else 'FAIL'}"
               f"{' (exact)' if rep['tolerance'].get('exact', True) else ' (within the float tolerance)'}")
    click.echo("  latency: measured with every runtime in the profile stage (one measurement, one table)")
    if not rep["ok"]:
        raise SystemExit("verification of the onnx artifact failed")
