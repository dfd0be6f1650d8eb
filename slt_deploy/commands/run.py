import click
import numpy as np

from ..errors import SltError
from .options import check_runner, data_options, echo_json, reporting


def _read_image(path, shape):
    from PIL import Image

    try:
        img = Image.open(path)
        img = img.convert("L" if shape[0] == 1 else "RGB").resize((shape[2], shape[1]))
    except Exception as e:  # noqa: BLE001 - PIL raises many types for files that are not images
        raise SltError(f"cannot read image {path} ({type(e).__name__}: {str(e)[:100]})",
                       "pass a PNG/JPEG file") from None
    a = np.asarray(img, np.float32)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


@click.command("run")
@click.argument("artifact", type=click.Path())
@click.option("--input", "inp", type=click.Path(exists=True, dir_okay=False), multiple=True,
              help="an image file (resized to the model's input) instead of test data; repeat it for several images "
                   "(one line each, in order)")
@data_options(data_help="test data when no --input: auto = the dataset of the model's input shape")
@click.option("--runtime", default=None, help="the target's runtime: packed c|numpy, loihi reference|lava, "
                                              "onnx cpu|cuda (see `slt-deploy targets`)")
@reporting
def command(artifact, inp, data, limit, data_dir, runtime, as_json):
    """Run ARTIFACT (or a checkpoint folder) on an image (--input) or on test data and print the prediction /
    accuracy."""
    from ..log import progress
    from ..runtime import load_runner

    ctx = click.get_current_context()
    if inp and ctx.get_parameter_source("data") != click.core.ParameterSource.DEFAULT:
        raise SltError("--input and --data both given", "pass an image (--input) or test data (--data), not both")
    r = load_runner(artifact, runtime=runtime)
    check_runner(r, artifact)
    if inp:
        scale = float(r.meta["input_max"]) / 255.0
        labels = r.meta.get("labels") or []
        images = [_read_image(path, r.meta["input_shape"]) * scale for path in inp]  # all read before any runs
        results = []
        for path, x in zip(inp, images):
            logits = r.predict(x[None])[0]
            k = int(np.argmax(logits))
            results.append({"input": path, "class": k, "label": labels[k] if k < len(labels) else "?",
                            "logits": [float(v) for v in logits]})
        if as_json:
            echo_json(results[0] if len(results) == 1 else results)
        else:
            for res in results:
                line = f"class {res['class']} ({res['label']}), logits {np.round(res['logits'], 3).tolist()}"
                click.echo(line if len(results) == 1 else f"{res['input']}: {line}")
        return
    from ..data import dataset_for, load_dataset

    name = dataset_for(r.meta["input_shape"], data, artifact)
    ds = load_dataset(name, data_dir)
    x, y = ds.test.x[:limit].numpy(), ds.test.y[:limit].numpy()
    if list(x.shape[1:]) != list(r.meta["input_shape"]):
        raise SltError(f"{name} images are {list(x.shape[1:])}, the model wants {r.meta['input_shape']}",
                       "use the dataset the model was trained on")
    pred = np.concatenate([r.predict(x[i:i + 64]).argmax(1)
                           for i in progress(range(0, len(x), 64), desc="run", unit="batch")])
    acc = 100 * float(np.mean(pred == y))
    if as_json:
        echo_json({"artifact": artifact, "dataset": name, "samples": len(x), "accuracy": acc})
    else:
        click.echo(f"{len(x)} samples: accuracy {acc:.2f}% ({name} test split)")
