"""Structured tickets (slt_deploy/tickets/structured.py): whole channels removed, removed channels provably silent."""
from __future__ import annotations

import json
import os

import pytest
import torch

from slt_deploy.checkpoint import load
from slt_deploy.nn import synapses
from slt_deploy.tickets import TicketConfig, find_ticket


@pytest.fixture(scope="module")
def structured_ticket(trained, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("st") / "st50")
    cfg = TicketConfig("structured", 0.5, prune_fraction=0.3, epochs=2, rewind="lr")
    summary = find_ticket(trained("digits-tiny"), cfg, out)
    return out, summary


def test_masks_are_whole_channels_and_removed_channels_are_silent(structured_ticket):
    out, summary = structured_ticket
    model, _ = load(out)
    layers = synapses(model)
    info = json.load(open(os.path.join(out, "ticket.json")))["ticket"]
    assert info["method"] == "structured"
    for name, layer in layers[:-1]:
        rows = layer.mask.reshape(layer.mask.shape[0], -1)
        full, empty = rows.all(1), ~rows.any(1)
        removed = int(empty.sum())
        assert removed == round(0.5 * rows.shape[0]), name   # the stated fraction of channels, per layer
        wq, scale, bias = layer.folded()
        # a removed channel: no weight, and zero folded current (so it never spikes)
        assert torch.all(wq.reshape(wq.shape[0], -1)[empty] == 0)
        assert torch.all(bias[empty] == 0), name
        # kept channels keep every weight but the columns reading removed channels of the previous layer
        assert bool((full | empty).all()) or name != layers[0][0]
        assert info["channels"][name]["kept"] == rows.shape[0] - removed
    # the classifier keeps all its rows (classes) but drops the columns of removed channels
    head = layers[-1][1]
    assert head.mask.reshape(head.mask.shape[0], -1).any(1).all()
    assert summary["measured_sparsity"] > 0.5
    assert 50.0 < summary["test_acc"] <= 100.0   # accuracy reported (digits, 2 epochs per round)


def test_removed_channels_never_spike(structured_ticket):
    out, _ = structured_ticket
    model, _ = load(out)
    from slt_deploy.data import load_dataset

    data = load_dataset("digits")
    spikes = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: spikes.setdefault(n, []).append(o))
             for n, m in model.named_modules() if type(m).__name__ == "LIF"]
    model.eval()
    with torch.no_grad():
        model(data.test.x[:200])
    for h in hooks:
        h.remove()
    layers = synapses(model)
    lif_names = list(spikes)
    for (name, layer), lif in zip(layers[:-1], lif_names):
        empty = ~layer.mask.reshape(layer.mask.shape[0], -1).any(1)
        s = torch.stack(spikes[lif])          # [T, B, C, ...]
        assert s[:, :, empty].sum() == 0, name
        assert s[:, :, ~empty].sum() > 0, name
