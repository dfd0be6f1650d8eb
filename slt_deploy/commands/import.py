import click

from .options import data_options, echo_json, reporting


@click.command("import")
@click.argument("foreign", type=click.Path())
@click.option("--T", "T", type=int, required=True, help="time steps per sample (a foreign graph does not say)")
@click.option("--out", "-o", required=True, type=click.Path(), help="our .nir to write (then export/verify it)")
@click.option("--dt", type=float, default=1e-4, show_default=True, help="seconds per step the graph's tau assume")
@click.option("--input-max", type=float, default=1.0, show_default=True, help="raw input range 0..input-max")
@click.option("--encoding", type=click.Choice(["direct", "rate"]), default="direct", show_default=True)
@click.option("--labels", default=None, help="comma-separated class names (default 0..C-1)")
@data_options(data_default=None, data_help="check the import against the foreign graph in the NIR interpreter on "
                                            "these test images (auto: the dataset of the graph's input shape); "
                                            "default: no check")
@reporting
def command(foreign, T, out, dt, input_max, encoding, labels, data, limit, data_dir, as_json):
    """Read FOREIGN, an NIR graph written by another tool (snntorch, norse, spikingjelly: LIF/IF conv or dense
    nets), and write it as our .nir; `slt-deploy export OUT --target onnx|packed|loihi` and `slt-deploy verify OUT
    ARTIFACT --data ...` then work on it (docs/interop.md)."""
    import os

    import numpy as np
    import torch

    from ..backends.nir.fileio import write
    from ..ir.importer import GraphReference, read_foreign
    from ..ir.interpreter import Interpreter
    from ..passes.check_shapes import check_shapes

    name = os.path.splitext(os.path.basename(foreign))[0]
    ours, theirs = read_foreign(foreign, T, dt=dt, input_max=input_max, encoding=encoding,
                                labels=labels.split(",") if labels else None, name=name)
    ours = check_shapes(ours)[0]
    check = None
    if data:
        from ..data import dataset_for, load_dataset

        ref = GraphReference(ours)
        data = dataset_for(ref.input_shape, data, foreign, by_size=True) if data == "auto" else data
        x = load_dataset(data, data_dir).test.x[:limit]
        if int(np.prod(x.shape[1:])) != int(np.prod(ref.input_shape)):
            from ..errors import SltError

            raise SltError(f"the graph takes {ref.input_shape}, {data} images are {list(x.shape[1:])}",
                           "check against the data the graph was trained on")
        seq = ref.encode(x, torch.Generator().manual_seed(0)).numpy()
        fin = next(v for v in theirs.nodes.values() if type(v).__name__ == "Input")
        fshape = [int(v) for v in np.asarray(fin.input_type["input"]).reshape(-1)]
        a = Interpreter(theirs, dt=dt).run(seq.reshape(*seq.shape[:2], *fshape))["logits"]
        b = ref.interp.run(seq)["logits"]
        check = {"dataset": data, "samples": len(x), "pred_agreement": float(np.mean(a.argmax(1) == b.argmax(1))),
                 "logits_bit_identical": float(np.mean(np.all(a == b, axis=1))),
                 "max_abs_logit_diff": float(np.max(np.abs(a - b)))}
    write(ours, out)
    shape = GraphReference(ours).input_shape
    if as_json:
        echo_json({"out": out, "nodes": len(ours.nodes), "T": T, "input_shape": list(shape), "check": check})
        return
    if check:
        click.echo(f"checked on {check['samples']} {data} test images against the foreign graph (NIR interpreter): "
                   f"predictions agree {100 * check['pred_agreement']:.2f}%, logits bit-identical "
                   f"{100 * check['logits_bit_identical']:.2f}%, max |dlogit| {check['max_abs_logit_diff']:.3g}")
    click.echo(f"import: wrote {out} ({len(ours.nodes)} nodes, T = {T}, input {shape})")
