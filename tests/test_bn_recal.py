"""Batch-norm recalibration of binary tickets (tickets/bn_recal.py) on sklearn digits: the statistics it sets are
the equal-weight average of the batch statistics training computes, it keeps them only when validation accuracy
rises, it leaves float tickets alone, and `slt-deploy ticket` records it."""
import copy
import json
import os

import torch

from slt_deploy.checkpoint import load
from slt_deploy.nn import synapses
from slt_deploy.tickets import TicketConfig, find_ticket
from slt_deploy.tickets.bn_recal import apply, batch_norms, recalibrate
from slt_deploy.train import evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "models", "tickets", "digits-tiny-imp75-binary")
FLOAT = os.path.join(ROOT, "models", "tickets", "digits-tiny-imp90")
torch.set_num_threads(1)


def test_recalibrated_statistics_are_the_average_of_the_batch_statistics(data):
    """Every batch norm ends with the mean over its calls of the per-channel batch mean and unbiased batch variance
    of its inputs (one call per time step and batch), as computed here from the inputs themselves."""
    model, _ = load(BINARY)
    images = data.train.x[:300]
    seen = {id(b): [] for b in batch_norms(model)}
    hooks = [b.register_forward_pre_hook(lambda mod, inp: seen[id(mod)].append(inp[0].detach().clone()))
             for b in batch_norms(model)]
    recalibrate(model, images, batch_size=128)
    for h in hooks:
        h.remove()
    assert batch_norms(model) and all(seen.values())
    for b in batch_norms(model):
        calls = seen[id(b)]
        dims = [0] + list(range(2, calls[0].ndim))
        mean = torch.stack([x.mean(dims) for x in calls]).mean(0)
        var = torch.stack([x.var(dims, unbiased=True) for x in calls]).mean(0)
        assert len(calls) == 3 * model.T  # 300 images in batches of 128: 3 batches, T steps each
        torch.testing.assert_close(b.running_mean, mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(b.running_var, var, rtol=1e-5, atol=1e-6)
        assert b.momentum == 0.1 and int(b.num_batches_tracked) == len(calls)


def test_apply_keeps_the_statistics_only_when_validation_rises(data):
    model, _ = load(BINARY)
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    # statistics a training run could have left behind (stale): every variance 25x too small
    for b in batch_norms(model):
        b.running_var.mul_(1 / 25)
    stale = evaluate(model, data.val)
    rec = apply(model, data, images=1000)
    assert rec["kept"] == "recalibrated" and rec["val_acc_trained"] == stale
    assert rec["val_acc_recalibrated"] > stale and evaluate(model, data.val) == rec["val_acc_recalibrated"]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())  # only BN buffers moved
    # a second pass cannot beat itself on the same images: the statistics stay as they are
    before = copy.deepcopy(model.state_dict())
    rec2 = apply(model, data, images=1000)
    assert rec2["kept"] == "trained"
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_apply_leaves_float_tickets_and_zero_images_alone(data):
    model, _ = load(FLOAT)
    assert not any(m.binary for _, m in synapses(model))
    assert apply(model, data) is None
    assert apply(load(BINARY)[0], data, images=0) is None


def test_ticket_records_the_recalibration_and_bn_recal_0_turns_it_off(data, tmp_path):
    cfg = dict(binarize_epochs=1, seed=0)
    on = find_ticket(BINARY, TicketConfig("binarize", None, bn_recal=2000, **cfg), str(tmp_path / "on"), data=data)
    off = find_ticket(BINARY, TicketConfig("binarize", None, bn_recal=0, **cfg), str(tmp_path / "off"), data=data)
    rec = on["bn_recal"]
    assert rec["images"] == min(2000, len(data.train.x)) and rec["kept"] in ("recalibrated", "trained")
    assert "bn_recal" not in off
    saved = json.load(open(tmp_path / "on" / "ticket.json"))["ticket"]["bn_recal"]
    assert saved == rec
    a, b = load(str(tmp_path / "on"))[0], load(str(tmp_path / "off"))[0]
    same = all(torch.equal(x.running_var, y.running_var) for x, y in zip(batch_norms(a), batch_norms(b)))
    assert same == (rec["kept"] == "trained")
    assert on["test_acc"] == evaluate(a, data.test)
