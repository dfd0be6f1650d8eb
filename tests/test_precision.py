"""Training precision (nn/precision.py): under bf16 a synaptic layer's training product is the bfloat16 product of
its input and weights with a float32 result, and nothing else changes (evaluation, batch norm, gradients' dtype);
fp32, the default, is the computation without the option bit for bit; bf16 changes training and still learns; bad
values are clear errors; `train` and `ticket` record the choice."""
import json

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from slt_deploy.cli import cli
from slt_deploy.errors import SltError
from slt_deploy.nn import SConv2d, SLinear
from slt_deploy.nn.precision import compute
from slt_deploy.train import evaluate, train
from slt_deploy.zoo import build_model, load_recipe

torch.set_num_threads(1)


def _spikes(*shape, seed=0):
    return (torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) < 0.3).float()


@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_training_product_is_the_bfloat16_product_with_a_float32_result(kind):
    torch.manual_seed(0)
    layer = SConv2d(4, 8, bn=False) if kind == "conv" else SLinear(40, 24, bn=False)
    x = _spikes(16, 4, 9, 9) if kind == "conv" else _spikes(16, 40)
    with torch.no_grad():
        layer.mask.copy_((torch.rand(layer.mask.shape) > 0.5).float())
    w = layer.weight * layer.mask

    def op(a, b):
        return F.conv2d(a, b, None, 1, 1) if kind == "conv" else F.linear(a, b)

    layer.train()
    fp32 = layer(x)
    with compute("bf16"):
        low = layer(x)
    assert low.dtype == torch.float32
    assert torch.equal(low, op(x.bfloat16(), w.bfloat16()).float())
    assert torch.equal(fp32, op(x, w))
    assert not torch.equal(low, fp32)  # the weights are rounded to 8 significant bits ...
    torch.testing.assert_close(low, fp32, rtol=2e-2, atol=2e-2)  # ... and nothing more
    with compute("bf16"):
        layer(x).sum().backward()
    assert layer.weight.grad.dtype == torch.float32 and layer.weight.grad.abs().sum() > 0
    layer.eval()  # evaluation ignores the training precision
    with torch.no_grad(), compute("bf16"):
        e_low = layer(x)
    with torch.no_grad():
        assert torch.equal(e_low, layer(x))


def _train(data, precision=None, epochs=2):
    torch.manual_seed(0)
    r = load_recipe("digits-tiny")
    model = build_model(r)
    cfg = dict(r["train"])
    if precision is not None:
        cfg["precision"] = precision
    train(model, data, cfg, epochs=epochs, progress=False, seed=0)
    return model


def test_fp32_is_the_default_bit_for_bit_and_bf16_trains_differently(data):
    default, fp32, bf16 = _train(data), _train(data, "fp32"), _train(data, "bf16")
    sd, s32, s16 = default.state_dict(), fp32.state_dict(), bf16.state_dict()
    assert all(torch.equal(sd[k], s32[k]) for k in sd)
    weights = [k for k in sd if k.endswith("weight")]
    assert any(not torch.equal(sd[k], s16[k]) for k in weights)
    assert all(s16[k].dtype == sd[k].dtype for k in sd)  # the checkpoint stays float32
    acc32, acc16 = evaluate(fp32, data.test), evaluate(bf16, data.test)
    assert acc16 > 80 and abs(acc16 - acc32) < 5, (acc32, acc16)


def test_an_unknown_precision_is_a_clear_error(data):
    r = load_recipe("digits-tiny")
    with pytest.raises(SltError, match="fp32, bf16"):
        train(build_model(r), data, {**r["train"], "precision": "fp16"}, epochs=1, progress=False)
    res = CliRunner().invoke(cli, ["train", "digits-tiny", "--precision", "fp16", "--out", "unused"])
    assert res.exit_code == 2 and "'fp16' is not one of 'fp32', 'bf16'" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_train_and_ticket_record_the_precision(tmp_path):
    dense, ticket = str(tmp_path / "dense"), str(tmp_path / "ticket")
    res = CliRunner().invoke(cli, ["train", "digits-tiny", "--epochs", "1", "--precision", "bf16", "--out", dense,
                                   "--quiet"])
    assert res.exit_code == 0, res.output
    assert json.load(open(tmp_path / "dense" / "model.json"))["recipe"]["train"]["precision"] == "bf16"
    res = CliRunner().invoke(cli, ["ticket", dense, "--method", "imp", "--sparsity", "0.5", "--epochs", "1",
                                   "--precision", "fp32", "--out", ticket, "--quiet"])
    assert res.exit_code == 0, res.output
    assert json.load(open(tmp_path / "ticket" / "ticket.json"))["ticket"]["config"]["precision"] == "fp32"


def test_bf16_on_a_cpu_without_native_kernels_warns(data, monkeypatch):
    import importlib
    import logging

    from slt_deploy import log as slt_log
    from slt_deploy.nn import precision

    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    h = Keep(logging.WARNING)
    slt_log.log.addHandler(h)
    try:
        monkeypatch.setattr(precision, "fast", lambda p: p == "fp32")
        # a fresh once-per-process record: on a CPU without native kernels an earlier bf16 test has already warned
        monkeypatch.setattr(importlib.import_module("slt_deploy.train"), "_WARNED_SLOW", set())
        r = load_recipe("digits-tiny")
        train(build_model(r), data, {**r["train"], "precision": "fp32"}, epochs=0, progress=False)
        assert not seen
        train(build_model(r), data, {**r["train"], "precision": "bf16"}, epochs=0, progress=False)
    finally:
        slt_log.log.removeHandler(h)
    assert len(seen) == 1 and "no native bfloat16 kernels" in seen[0] and "--precision fp32" in seen[0]
