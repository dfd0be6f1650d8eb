"""A Fashion-MNIST MultiSp transformer checkpoint in about a minute, for the tests, the benchmark and the demo when
no trained checkpoint is at hand: the fmnist-spikformer recipe (optionally narrowed) trained for one epoch on the
first `n_train` training images. Cached under `cache_root` by recipe hash. Accuracy is modest (~60-80%); what it is
for is exercising the real architecture end to end (train with 'slt-deploy train fmnist-spikformer' for a real one)."""
from __future__ import annotations

import copy
import hashlib
import json
import os

NARROW = {"stem_channels": [8, 16], "dim": 32, "heads": 2, "depth": 1}


def quick_checkpoint(cache_root: str, arch: dict | None = None, n_train: int = 3000, lr: float = 0.01,
                     name: str = "fmnist-spikformer-quick", data_dir: str | None = None) -> str:
    import torch

    from slt_deploy.checkpoint import save
    from slt_deploy.data import Dataset, Split, load_fmnist
    from slt_deploy.train import train
    from slt_deploy.zoo import build_model, load_recipe

    r = copy.deepcopy(load_recipe("fmnist-spikformer"))
    r["name"] = name
    r["arch"].update(arch or {})
    r["train"].update(lr=lr, batch_size=64)
    key = hashlib.sha256(json.dumps([r, n_train], sort_keys=True).encode()).hexdigest()[:12]
    out = os.path.join(cache_root, f"{name}-{key}")
    if os.path.exists(os.path.join(out, "model.json")):
        return out
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        d = load_fmnist(data_dir)
        d = Dataset(d.name, Split(d.train.x[:n_train], d.train.y[:n_train]), Split(d.val.x[:10], d.val.y[:10]),
                    d.test, d.labels, d.input_max)
        m = build_model(r)
        train(m, d, r["train"], epochs=1, progress=False)
        save(m, out, labels=d.labels, metrics={"note": f"quick model: 1 epoch on {n_train} training images"})
    finally:
        torch.set_num_threads(threads)
    return out
