"""The demo's ticket stage (slt_deploy.demo.stage_ticket) on the demo's own dense model: its accuracy drop stays
within the stated bound (TICKET_BOUND_PT) and the ticket is sparse and binary after its first layer."""
import torch

from slt_deploy.checkpoint import load
from slt_deploy.data import load_dataset
from slt_deploy.demo import DEMO_RECIPE, TICKET_BOUND_PT, stage_ticket
from slt_deploy.nn import synapses
from slt_deploy.train import evaluate, train
from slt_deploy.zoo import build_model, load_recipe


def test_demo_ticket_within_its_bound(tmp_path):
    torch.set_num_threads(1)
    r = load_recipe(DEMO_RECIPE)  # what stage_train does
    data = load_dataset(r["dataset"], None, int(r.get("seed", 0)))
    model = build_model(r)
    train(model, data, r["train"], progress=False, seed=int(r.get("seed", 0)))
    dense_acc = evaluate(model, data.test)
    ctx = {"out": str(tmp_path), "model": model, "data": data, "results": {}}
    stage_ticket(ctx)
    s = ctx["ticket_summary"]
    assert s["dense_test_acc"] == dense_acc
    assert dense_acc - s["test_acc"] <= TICKET_BOUND_PT, (dense_acc, s["test_acc"])
    assert s["measured_sparsity"] >= 0.49
    t, _ = load(ctx["ticket_dir"])
    assert [layer.binary for _, layer in synapses(t)] == [False, True, True]  # the analog-input conv stays float
