import click
import numpy as np

from ..errors import SltError
from ..runtime import load_runner
from .options import LIMIT, check_runner


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
@click.option("--input", "inp", type=click.Path(exists=True, dir_okay=False), help="an image file (resized to the model's input)")
@click.option("--data", type=click.Choice(["fmnist", "digits"]), default=None, help="run on the test split")
@click.option("--limit", type=LIMIT, default=100, show_default=True, help="test samples (>= 1)")
@click.option("--data-dir", type=click.Path(), default=None)
@click.option("--runtime", default=None, help="the target's runtime: packed c|numpy, loihi reference|lava, "
                                              "onnx cpu|cuda (see `slt-deploy targets`)")
def command(artifact, inp, data, limit, data_dir, runtime):
    """Run ARTIFACT (or a checkpoint folder) on an image or on test data and print predictions / accuracy."""
    r = load_runner(artifact, runtime=runtime)
    check_runner(r, artifact)
    if inp:
        x = _read_image(inp, r.meta["input_shape"]) * (float(r.meta["input_max"]) / 255.0)
        logits = r.predict(x[None])[0]
        k = int(np.argmax(logits))
        labels = r.meta.get("labels") or []
        click.echo(f"class {k} ({labels[k] if k < len(labels) else '?'}), logits {np.round(logits, 3).tolist()}")
        return
    if not data:
        raise SltError("nothing to run on", "pass --input IMAGE or --data fmnist|digits")
    from ..data import load_dataset

    ds = load_dataset(data, data_dir)
    x, y = ds.test.x[:limit].numpy(), ds.test.y[:limit].numpy()
    if list(x.shape[1:]) != list(r.meta["input_shape"]):
        raise SltError(f"{data} images are {list(x.shape[1:])}, the model wants {r.meta['input_shape']}",
                       "use the dataset the model was trained on")
    pred = np.concatenate([r.predict(x[i:i + 64]).argmax(1) for i in range(0, len(x), 64)])
    click.echo(f"{len(x)} samples: accuracy {100 * np.mean(pred == y):.2f}%")
