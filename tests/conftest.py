"""Shared fixtures: small trained digits checkpoints (trained once per test session, real data)."""
import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

DIGITS_RECIPES = ["digits-tiny", "digits-resnet-tiny", "digits-spikformer-tiny"]


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """trained(recipe, epochs=2) -> checkpoint folder of that digits recipe, trained once per session."""
    from slt_deploy.checkpoint import save
    from slt_deploy.data import load_dataset
    from slt_deploy.train import evaluate, train
    from slt_deploy.zoo import build_model, load_recipe

    cache = {}
    root = tmp_path_factory.mktemp("ckpts")

    def get(recipe, epochs=2):
        key = (recipe, epochs)
        if key not in cache:
            r = load_recipe(recipe)
            data = load_dataset(r["dataset"], seed=int(r.get("seed", 0)))
            model = build_model(r)
            train(model, data, r["train"], epochs=epochs, progress=False)
            out = str(root / f"{recipe}-{epochs}")
            save(model, out, metrics={"test_acc": evaluate(model, data.test)}, labels=data.labels)
            cache[key] = out
        return cache[key]

    return get
