"""The training speed-ups change no result beyond float rounding: the fused LIF step (one autograd Function per
step) computes what the eager snntorch-surrogate graph computes (identical spikes and potentials, gradients within
rounding, both resets, several steps, a whole network); the first layer computed once per sequence gives the same
outputs, gradients and batch-norm running statistics as computing it at every step."""
import pytest
import torch
import torch.nn.functional as F

from slt_deploy.data import load_dataset
from slt_deploy.nn import LIF, synapses
from slt_deploy.nn.layers import set_input_reuse
from slt_deploy.nn.lif import set_fused
from slt_deploy.zoo import build_model, load_recipe

torch.set_num_threads(1)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_fused_step_equals_eager_over_time(reset):
    g = torch.Generator().manual_seed(0)
    cur = (torch.randn(6, 32, 50, generator=g) * 1.5).requires_grad_(True)
    w = torch.randn(6, 32, 50, generator=g)
    outs, grads = [], []
    for fused in (False, True):
        lif = LIF(beta=0.7, threshold=1.0, reset=reset, slope=2.0, fused=fused)
        c = cur.detach().clone().requires_grad_(True)
        spikes = torch.stack([lif(c[t]) for t in range(c.shape[0])])
        ((spikes * w).sum() + (lif.v * w[-1]).sum()).backward()
        outs.append((spikes.detach(), lif.v.detach()))
        grads.append(c.grad)
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    assert outs[0][0].sum() > 0 and (outs[0][0] == 0).any()  # some neurons fire, some do not
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)
    assert grads[0].abs().sum() > 0


def test_fused_network_step_equals_eager():
    data = load_dataset("digits")
    r = load_recipe("digits-tiny")
    x, y = data.train.x[:64], data.train.y[:64]
    res = []
    try:
        for fused in (False, True):
            set_fused(fused)
            m = build_model(r)
            loss = F.cross_entropy(m(x) / m.T, y)
            loss.backward()
            res.append((m(x).detach(), {n: p.grad.clone() for n, p in m.named_parameters()}))
    finally:
        set_fused(True)
    assert torch.equal(res[0][0], res[1][0])
    for n in res[0][1]:
        torch.testing.assert_close(res[1][1][n], res[0][1][n], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("recipe", ["digits-tiny", "digits-spikformer-tiny"])
def test_first_layer_reuse_changes_nothing(recipe):
    data = load_dataset("digits")
    r = load_recipe(recipe)
    x, y = data.train.x[:64], data.train.y[:64]
    res = []
    try:
        for reuse in (False, True):
            set_input_reuse(reuse)
            m = build_model(r)
            first = synapses(m)[0][1]
            calls, op = [], first._op

            def counted(a, w, calls=calls, op=op):
                calls.append(1)
                return op(a, w)

            first._op = counted
            for _ in range(2):  # two training steps' worth of forward/backward (running statistics move twice)
                F.cross_entropy(m(x) / m.T, y).backward()
            assert len(calls) == (2 if reuse else 2 * m.T)  # the reuse really happens (and only when asked)
            first._op = op
            m.eval()
            res.append((m(x), {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None},
                        {k: v.clone() for k, v in m.state_dict().items()}))
    finally:
        set_input_reuse(True)
    torch.testing.assert_close(res[1][0], res[0][0], rtol=1e-5, atol=1e-5)
    assert res[0][1].keys() == res[1][1].keys()
    for n in res[0][1]:
        torch.testing.assert_close(res[1][1][n], res[0][1][n], rtol=1e-4, atol=1e-6)
    for k, v in res[0][2].items():  # batch-norm running statistics: the same kernel, so the same bits
        assert torch.equal(res[1][2][k], v), k
