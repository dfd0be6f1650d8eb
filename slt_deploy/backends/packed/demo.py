"""The `slt-deploy demo` stage of the packed target (docs/packed-format.md): the ticket (or dense model) as a .slt
file, verified with BOTH runtimes (C and numpy) on the whole test set; file bytes vs fp32 dense vs the information
bound."""
from __future__ import annotations

import click


def stage(ctx):
    from ...export import artifact
    from ...verify import verify
    from .c_runner import CPackedRunner
    from .fileio import read_file
    from .format import size_report
    from .numpy_runner import NumpyPackedRunner

    src = ctx.get("ticket_dir") or ctx["dense_dir"]
    out = artifact(ctx, "packed", "model.slt")
    s = size_report(read_file(out))
    ctx["results"]["packed"] = {"size": {k: v for k, v in s.items() if k != "layers"}}
    for rt in (CPackedRunner(out), NumpyPackedRunner(out)):
        rep = verify(src, out, runner=rt, data_dir=ctx.get("data_dir"))
        ctx["results"]["packed"][rt.runtime] = {k: rep[k] for k in ("samples", "ok", "logits_bit_identical",
                                                                    "pred_agreement", "spike_agreement_min")}
        click.echo(f"  packed/{rt.runtime:5s}: {rep['samples']} samples, logits "
                   f"{100 * rep['logits_bit_identical']:.2f}% bit-identical, spikes {100 * rep['spike_agreement_min']:.2f}%"
                   f" equal, predictions {100 * rep['pred_agreement']:.2f}% agree -> {'PASS' if rep['ok'] else 'FAIL'}"
                   + (f" (arena {rt.arena_bytes} B)" if rt.runtime == "c" else ""))
    click.echo(f"  {out}: {s['file_bytes']} B; fp32 dense {s['fp32_dense_bytes']} B "
               f"({s['fp32_dense_bytes'] / s['file_bytes']:.1f}x larger); information bound {s['bound_bytes']:.0f} B "
               f"-> {s['ratio_to_bound']:.3f}x the bound")
