"""Datasets (Fashion-MNIST from the standard idx files, sklearn digits) and spike encoders.

Images are kept in RAW integer units (Fashion-MNIST 0..255, digits 0..16) as float32 [N, 1, H, W]; the model's first
layer carries 1/input_max as its in_scale, so binarized first layers see exact integer sums."""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass

import numpy as np
import torch

from .errors import SltError

FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FMNIST_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"]
ENCODINGS = ("direct", "rate")


@dataclass
class Split:
    x: torch.Tensor  # float32 [N, C, H, W], raw units
    y: torch.Tensor  # int64 [N]


@dataclass
class Dataset:
    name: str
    train: Split
    val: Split
    test: Split
    labels: list
    input_max: float

    @property
    def input_shape(self):
        return list(self.train.x.shape[1:])


def _open_idx(directory, stem):
    for name in (stem + ".gz", stem):
        p = os.path.join(directory, name)
        if os.path.exists(p):
            return gzip.open(p, "rb") if name.endswith(".gz") else open(p, "rb")
    raise SltError(f"Fashion-MNIST file {stem}[.gz] not found in {directory}",
                   "install it with 'apt-get install dataset-fashion-mnist' or pass --data-dir to a folder with "
                   "the standard idx files")


def read_idx(directory, stem) -> np.ndarray:
    with _open_idx(directory, stem) as f:
        raw = f.read()
    if len(raw) < 8 or raw[0:2] != b"\x00\x00" or raw[2] != 0x08:
        raise SltError(f"{directory}/{stem}: not an unsigned-byte idx file (bad magic)",
                       "point --data-dir at the original Fashion-MNIST idx files")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    start = 4 + 4 * ndim
    n = int(np.prod(dims))
    if len(raw) - start != n:
        raise SltError(f"{directory}/{stem}: truncated or oversized idx file ({len(raw) - start} bytes, want {n})",
                       "re-install the dataset")
    return np.frombuffer(raw, np.uint8, count=n, offset=start).reshape(dims)


def _split_train_val(x, y, val_fraction, seed):
    perm = np.random.default_rng(seed).permutation(len(x))
    nv = int(round(len(x) * val_fraction))
    v, t = perm[:nv], perm[nv:]
    return Split(x[t], y[t]), Split(x[v], y[v])


def _to_split(x, y):
    return torch.from_numpy(np.array(x, dtype=np.float32)).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


def load_fmnist(data_dir=None, seed=0, val_fraction=1 / 12) -> Dataset:
    d = data_dir or FMNIST_DIR
    if not os.path.isdir(d):
        raise SltError(f"Fashion-MNIST folder {d} does not exist",
                       "install it with 'apt-get install dataset-fashion-mnist' or pass --data-dir")
    xs = {k: read_idx(d, f[0]) for k, f in FMNIST_FILES.items()}
    ys = {k: read_idx(d, f[1]) for k, f in FMNIST_FILES.items()}
    xtr, ytr = _to_split(xs["train"], ys["train"])
    train, val = _split_train_val(xtr, ytr, val_fraction, seed)
    return Dataset("fmnist", train, val, Split(*_to_split(xs["test"], ys["test"])), list(FMNIST_LABELS), 255.0)


def load_digits(seed=0) -> Dataset:
    from sklearn.datasets import load_digits as _ld

    d = _ld()
    x = torch.from_numpy(d.images.astype(np.float32)).unsqueeze(1)  # 0..16 integers
    y = torch.from_numpy(d.target.astype(np.int64))
    perm = np.random.default_rng(seed).permutation(len(x))
    n = len(x)
    a, b = int(0.6 * n), int(0.8 * n)
    def sp(idx):
        return Split(x[idx], y[idx])
    return Dataset("digits", sp(perm[:a]), sp(perm[a:b]), sp(perm[b:]), [str(i) for i in range(10)], 16.0)


def dataset_for(shape, data, where, by_size: bool = False) -> str:
    """The dataset name for a model taking inputs `shape` ([C, H, W]): `data` if given (checked against the shape),
    else the one dataset of that shape (`--data auto`, docs/cli.md). `by_size`: the same number of values is enough
    (an imported dense graph reads flattened images)."""
    from .zoo import DATASET_SHAPES

    def size(s):
        return int(np.prod([int(v) for v in s]))

    names = [k for k, (s, _, _) in DATASET_SHAPES.items()
             if list(s) == list(shape) or (by_size and size(s) == size(shape))]
    if data not in (None, "auto"):
        if names and data not in names:
            raise SltError(f"{where} takes input {list(shape)}, not {data} images", f"use --data {names[0]}")
        return data
    if not names:
        raise SltError(f"{where} takes input {list(shape)}, which matches no dataset here", "pass --data")
    return names[0]


def load_dataset(name, data_dir=None, seed=0) -> Dataset:
    if name == "fmnist":
        return load_fmnist(data_dir, seed)
    if name == "digits":
        return load_digits(seed)
    raise SltError(f"unknown dataset {name!r}", "use 'fmnist' or 'digits'")


def encode(x: torch.Tensor, T: int, kind: str, input_max: float, generator: torch.Generator | None = None):
    """[B, ...] raw images -> [T, B, ...]. direct: the raw image every step; rate: Bernoulli(x / input_max)
    spikes (seeded by `generator`)."""
    if kind == "direct":
        return x.unsqueeze(0).expand(T, *x.shape)
    if kind == "rate":
        p = (x / input_max).clamp(0, 1).unsqueeze(0).expand(T, *x.shape)
        return torch.bernoulli(p, generator=generator)
    raise SltError(f"unknown encoding {kind!r}", f"use one of {ENCODINGS}")
