"""Demo stage of the Loihi target: the demo's model (the ticket, else the dense model) as a netx folder, run by our
fixed-point reference and by Lava's Loihi 2 simulation on a few test images; prints whether every spike of every
layer at every step agrees, and how the quantized model agrees with the float PyTorch reference."""
from __future__ import annotations

import os
import time

import click
import numpy as np


def stage(ctx, n_lava: int = 8):
    from ...data import load_dataset
    from ...export import export
    from ...verify import verify
    from .runner import LoihiRunner, lava_python

    src = ctx.get("ticket_dir") or ctx["dense_dir"]
    out = (ctx.get("artifacts") or {}).get("loihi")
    if not out or not os.path.exists(out):
        out = os.path.join(ctx["out"], "artifacts", "model.loihi")
        info = export(src, "loihi", out)
        click.echo(f"  exported {src} -> {out} ({info['seconds']:.2f}s)")
    r = LoihiRunner(out)
    m = r.manifest
    chip = [e for e in m["layers"] if "neurons" in e]
    click.echo(f"  {out}: {len(chip)} CUBA layer(s) on the chip, {m['cores']} neuro core(s), input "
               f"{m['input']['kind']}, readout {m['readout']['kind']}" + (" (partitioned: the rest on the host)"
                                                                         if m["partitioned"] else ""))
    rep = (ctx.get("results") or {}).get("loihi")
    if not rep or "pred_agreement" not in rep:
        rep = verify(src, out, data_dir=ctx.get("data_dir"))
    res = {"pred_agreement": rep["pred_agreement"], "spike_agreement_min": rep["spike_agreement_min"],
           "samples": rep["samples"], "cores": m["cores"]}
    click.echo(f"  fixed-point reference vs float PyTorch on {rep['samples']} test images: predictions "
               f"{100 * rep['pred_agreement']:.2f}% agree, spikes {100 * rep['spike_agreement_min']:.2f}% equal "
               f"(worst layer), accuracy {rep['artifact_accuracy']:.2f}% vs {rep['ref_accuracy']:.2f}%")
    if lava_python() is None:
        click.echo("  Lava: not installed (bash scripts/setup_lava.sh); Loihi 2 simulation skipped")
    else:
        data = ctx.get("data") or load_dataset("fmnist" if m["input_max"] == 255.0 else "digits",
                                               ctx.get("data_dir"))
        x = data.test.x[:n_lava].numpy()
        seq = r.encode(x)
        inp = r.chip_inputs(seq)
        t0 = time.time()
        ref = r.run_chip(inp, "reference")
        t_ref = time.time() - t0
        lv = r.run_chip(inp, "lava")
        layers = [i for i, s in enumerate(ref["spikes"]) if s is not None]
        same = all(np.array_equal(ref["spikes"][i], lv["spikes"][i]) for i in layers)
        vsame = bool(np.array_equal(ref["v_last"], lv["v_last"]))
        nsp = sum(int(ref["spikes"][i].sum()) for i in layers)
        res.update(lava_samples=n_lava, lava_bit_exact=bool(same and vsame),
                   lava_s_per_sample=lv["timing"]["run_s"] / n_lava)
        click.echo(f"  Lava Loihi2SimCfg(select_tag='fixed_pt') on {n_lava} test images: {nsp} spikes in "
                   f"{len(layers)} layer(s) x {m['T']} steps {'ALL bit-identical' if same else 'DIFFER'} to our "
                   f"reference, readout {'identical' if vsame else 'DIFFERS'}; "
                   f"{lv['timing']['run_s'] / n_lava:.2f} s/sample in Lava vs {t_ref / n_lava * 1e3:.1f} ms in ours")
        if not (same and vsame):
            raise SystemExit("Lava's simulation disagrees with the fixed-point reference")
    ctx.setdefault("results", {})["loihi_demo"] = res
