"""The `slt-deploy demo` stage of the ONNX target: export the ticket (or the dense model) to ONNX (unrolled form),
verify it through onnxruntime on the whole test set, print its size against a plain dense ONNX export and its
batch-1 latency against the PyTorch eager reference."""
from __future__ import annotations

import os

import click

from ...profile.latency import median_time


def stage(ctx):
    import torch

    from ...checkpoint import load
    from ...export import artifact
    from ...verify import verify
    from .runner import OnnxRunner

    src = ctx.get("ticket_dir") or ctx["dense_dir"]
    out = artifact(ctx, "onnx", "model.onnx")
    dense = artifact(ctx, "onnx", "model-dense.onnx", sparse="none")
    runner = OnnxRunner(out)
    rep = verify(src, out, data_dir=ctx.get("data_dir"), runner=runner)
    so, sd = os.path.getsize(out), os.path.getsize(dense)
    model, _ = load(src)
    x = (ctx["data"].test.x if "data" in ctx else None)
    if x is None:
        from ...data import load_dataset

        x = load_dataset(model.recipe["dataset"], ctx.get("data_dir")).test.x
    x1 = x[:1]
    with torch.no_grad():
        t_eager = median_time(lambda: model(x1))
    t_ort = median_time(lambda: runner.session.run(["logits"], {runner.meta["input_name"]: x1.numpy()}))
    ctx["results"]["onnx"] = {"bytes": so, "dense_bytes": sd, "verify": {k: rep[k] for k in (
        "samples", "ok", "logits_bit_identical", "pred_agreement", "spike_agreement_min")},
        "latency_b1_s": {"eager": t_eager, "onnxruntime": t_ort}}
    click.echo(f"  {out}: {so} B vs dense ONNX export {sd} B (1/{sd / so:.1f}); weight sparsity "
               f"{100 * runner.meta['sparsity']:.1f}%, all layers binary: {runner.meta['all_binary']}")
    click.echo(f"  onnxruntime CPU: {rep['samples']} test samples, logits {100 * rep['logits_bit_identical']:.2f}% "
               f"bit-identical, spikes {100 * rep['spike_agreement_min']:.4f}% equal, predictions "
               f"{100 * rep['pred_agreement']:.2f}% agree -> {'PASS' if rep['ok'] else 'FAIL'}"
               f"{' (exact)' if rep['tolerance'].get('exact', True) else ' (within the float tolerance)'}")
    click.echo(f"  batch-1 latency: eager {1e3 * t_eager:.2f} ms, onnxruntime {1e3 * t_ort:.2f} ms "
               f"({t_eager / t_ort:.1f}x)")
    if not rep["ok"]:
        raise SystemExit("verification of the onnx artifact failed")
