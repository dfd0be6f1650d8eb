"""Synaptic layers (conv and linear) that carry a pruning mask, optional binarization and optional batch norm.

One layer computes, per time step,
    training:  y = BN( op(x, Wq) * s )            (batch statistics)
    eval:      y = op(x, Wq) * scale_c + bias_c   (binary layers: BN folded into a per-channel scale)
               y = op(x, Wq * scale_c) + bias_c   (float layers: the scale is folded into the weight)
where Wq = W * mask (float) or sign(W) * mask (binary, straight-through gradient), s = in_scale (float) or
alpha * in_scale (binary, alpha = ||mask * W||_1 / ||mask||_1), and `op` is conv2d or a matmul over the last dim.

`folded()` is the single place that computes (Wq, scale_c, bias_c); eval forward and the NIR frontend both use it,
so the exported numbers are the ones the PyTorch reference computes. For binary layers with integer inputs
(spikes, raw pixels) op(x, Wq) is an exact integer, which makes every runtime bit-identical (docs/ir.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import precision


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w):
        ctx.save_for_backward(w)
        return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))

    @staticmethod
    def backward(ctx, g):
        (w,) = ctx.saved_tensors
        return g * (w.abs() <= 1).to(g.dtype)


class _TopKSTE(torch.autograd.Function):
    """Edge-popup mask: 1 for the top-k |scores|, gradient passed straight to the scores."""

    @staticmethod
    def forward(ctx, scores, k):
        flat = scores.abs().flatten()
        mask = torch.zeros_like(flat)
        if k > 0:
            mask[torch.topk(flat, k, sorted=False).indices] = 1.0
        return mask.view_as(scores)

    @staticmethod
    def backward(ctx, g):
        return g, None


class weight_cache:
    """Context manager: while active, every Synapse under `module` computes its (masked, binarized, folded)
    weights once and reuses them for every time step. Leaving it drops the cache, so an optimizer step between
    two sequences is always seen."""

    def __init__(self, module: nn.Module):
        self.layers = [m for m in module.modules() if isinstance(m, Synapse)]

    def __enter__(self):
        for m in self.layers:
            m._run_cache = {}
        return self

    def __exit__(self, *exc):
        for m in self.layers:
            m._run_cache = None
        return False


def sign_ste(w: torch.Tensor) -> torch.Tensor:
    return _SignSTE.apply(w)


def _distributed():
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _AllReduceSum(torch.autograd.Function):
    """The sum of a tensor over the data-parallel processes; its gradient is the sum of the processes' gradients
    (every process's output depends on every process's input). torch.distributed.nn.functional.all_reduce did this
    and is deprecated."""

    @staticmethod
    def forward(ctx, x):
        import torch.distributed as dist

        y = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, g):
        import torch.distributed as dist

        g = g.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(g)
        return g


def synced_batch_norm(bn: nn.modules.batchnorm._BatchNorm, y: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """Training-mode batch norm whose statistics are summed over all data-parallel processes (gloo or NCCL;
    torch's SyncBatchNorm is GPU-only). Gradients flow through the all-reduce, so N processes with batch B/N
    compute what one process computes with batch B, up to float summation order."""
    dims = [d for d in range(y.ndim) if d != channel_dim]
    n = torch.tensor(float(y.numel() // y.shape[channel_dim]))
    stats = _AllReduceSum.apply(torch.cat([y.sum(dims), (y * y).sum(dims), n.view(1)]))
    c = y.shape[channel_dim]
    total = stats[-1]
    mean, var = stats[:c] / total, stats[c:2 * c] / total - (stats[:c] / total) ** 2
    with torch.no_grad():
        m = bn.momentum
        bn.running_mean.mul_(1 - m).add_(m * mean.detach())
        bn.running_var.mul_(1 - m).add_(m * var.detach() * total / (total - 1))
        bn.num_batches_tracked += 1
    shape = [1] * y.ndim
    shape[channel_dim] = c
    return (y - mean.view(shape)) / torch.sqrt(var.view(shape) + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)


_REUSE_INPUT = True


def set_input_reuse(on: bool) -> bool:
    """Whether a layer reading the same input at every step computes it once per sequence (Synapse._repeat_input;
    the throughput bench switches it off for its 'before' figure). Returns the old setting."""
    global _REUSE_INPUT
    old, _REUSE_INPUT = _REUSE_INPUT, bool(on)
    return old


class Synapse(nn.Module):
    """Base of SConv2d and SLinear. Subclasses define `_op(x, w)` and the BN type."""

    kind = "synapse"

    def __init__(self, weight: torch.Tensor, bias: bool, bn: bool, binary: bool, in_scale: float):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(weight.shape[0])) if bias else None
        self.register_buffer("mask", torch.ones_like(weight))
        self.bn = self._make_bn(weight.shape[0]) if bn else None
        self.binary = bool(binary)
        self.in_scale = float(in_scale)
        self.scores = None  # set by multi-prize ticket search (edge-popup scores)
        self.score_density = 1.0
        self._run_cache = None  # dict while SpikingNet.run is inside one sequence (see weight_cache)

    # --- masks -------------------------------------------------------------------------------------------------
    def effective_mask(self) -> torch.Tensor:
        if self.scores is None:
            return self.mask
        k = int(round(self.score_density * self.mask.numel()))
        # abs() outside the STE so a negative score gets the gradient of |score| (edge-popup ranks by |score|)
        return _TopKSTE.apply(self.scores.abs(), k)

    def apply_mask_(self):
        """Zero the pruned weights in place (called after every optimizer step)."""
        with torch.no_grad():
            if not self.binary:
                self.weight.mul_(self.mask)

    def freeze_scores(self):
        """Turn learned scores into the fixed mask (end of a multi-prize search)."""
        if self.scores is not None:
            with torch.no_grad():
                self.mask.copy_(self.effective_mask().detach())
            self.scores = None

    # --- arithmetic --------------------------------------------------------------------------------------------
    def alpha(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        m = self.effective_mask() if mask is None else mask
        return (self.weight.abs() * m).sum() / m.sum().clamp_min(1.0)

    def quantized(self):
        """(Wq, s): the weight used by op() and the scalar applied after it (before BN)."""
        m = self.effective_mask()
        if self.binary:
            return sign_ste(self.weight) * m, self.alpha(m) * self.in_scale
        return self.weight * m, torch.tensor(self.in_scale, device=self.weight.device)

    def folded(self):
        """Eval-time (Wq, scale_c, bias_c), BN folded. float32, computed in one fixed way."""
        with torch.no_grad():
            wq, s = self.quantized()
            n = wq.shape[0]
            scale = s.expand(n).clone()
            bias = self.bias.detach().clone() if self.bias is not None else torch.zeros(n, device=wq.device)
            if self.bn is not None:
                g = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
                bias = (bias - self.bn.running_mean) * g + self.bn.bias
                scale = scale * g
            return wq.detach(), scale.detach(), bias.detach()

    def _chan(self, v: torch.Tensor, ndim: int) -> torch.Tensor:
        raise NotImplementedError

    def _weights(self):
        """What forward needs from the parameters: (Wq, s) in training, (W_op, scale_c or None, bias_c) in eval.
        The weights do not change within one sequence, so inside `weight_cache` they are computed once per
        sequence instead of once per step (same tensors, same autograd graph; the gradients sum over steps as
        before)."""
        key = self.training
        if self._run_cache is not None and key in self._run_cache:
            return self._run_cache[key]
        if self.training:
            w = self.quantized()
        else:
            wq, scale, bias = self.folded()
            if self.binary:
                w = (wq, scale, bias)
            else:
                w = (wq * scale.view(-1, *([1] * (wq.ndim - 1))), None, bias)
        if self._run_cache is not None:
            self._run_cache[key] = w
        return w

    def _repeat_input(self, x: torch.Tensor):
        """Inside one sequence (weight_cache), a layer that reads the SAME input tensor at every step (the first
        layer of a direct-encoded model: the image is fed T times) computes its output once and reuses it: eval
        outputs are pure functions of the input; in training the cached output carries the same autograd graph
        (its gradients sum over the steps) and batch norm's running statistics are updated as T calls would
        update them (same batch statistics each step). The entry holds a reference to `x`, so a later tensor
        with the same storage, shape and strides is that same input."""
        if not _REUSE_INPUT or self._run_cache is None or (self.training and self.bn is not None and
                                       (self.bn.momentum is None or _distributed())):
            return None, None
        key = ("input", self.training, x.data_ptr(), tuple(x.shape), tuple(x.stride()), x.dtype)
        return key, self._run_cache.get(key)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key, hit = self._repeat_input(x)
        if hit is not None:
            if self.training and self.bn is not None:
                # the running statistics move as a fresh call would move them, with batch norm's own kernel (on
                # .data, as the kernel does: the buffers are saved for its backward)
                pre = hit[2] if hit[2].ndim != 3 else hit[2].reshape(-1, hit[2].shape[-1])
                torch.batch_norm_update_stats(pre, self.bn.running_mean.data, self.bn.running_var.data,
                                              self.bn.momentum)
                self.bn.num_batches_tracked.data.add_(1)
            return hit[1]
        y, pre = self._forward(x)
        if key is not None:
            self._run_cache[key] = (x, y, pre)
        return y

    def _forward(self, x: torch.Tensor):
        """(output, the batch-norm input detached (training) or None)."""
        if self.training:
            wq, s = self._weights()
            y = self._product(x, wq)
            if self.binary or self.in_scale != 1.0:  # y * 1.0 == y exactly: skip the pass
                y = y * s
            if self.bias is not None:
                y = y + self._chan(self.bias, y.ndim)
            if self.bn is None:
                return y, None
            return self._bn(y), y.detach()
        w, scale, bias = self._weights()
        y = self._op(x, w)
        if scale is not None:
            y = y * self._chan(scale, x.ndim)
        return y + self._chan(bias, y.ndim), None

    def _product(self, x, w):
        """op(x, w) of the training forward, in the training precision (nn/precision.py: bf16 products, float32
        result)."""
        low = precision.low()
        if low is None:
            return self._op(x, w)
        return self._op(x.to(low), w.to(low)).float()

    # --- bookkeeping -------------------------------------------------------------------------------------------
    def n_kept(self) -> int:
        return int(self.effective_mask().detach().sum().item())

    def extra_repr(self):
        return f"binary={self.binary}, in_scale={self.in_scale:g}, kept={self.n_kept()}/{self.mask.numel()}"


class SConv2d(Synapse):
    kind = "conv"

    def __init__(self, cin, cout, k=3, stride=1, padding=None, bias=False, bn=True, binary=False, in_scale=1.0):
        w = torch.empty(cout, cin, k, k)
        nn.init.kaiming_uniform_(w, a=5 ** 0.5)
        super().__init__(w, bias, bn, binary, in_scale)
        self.stride = int(stride)
        self.padding = k // 2 if padding is None else int(padding)

    def _make_bn(self, n):
        return nn.BatchNorm2d(n)

    def _bn(self, y):
        return synced_batch_norm(self.bn, y, 1) if _distributed() else self.bn(y)

    def _chan(self, v, ndim):
        return v.view(1, -1, 1, 1)

    def _op(self, x, w):
        return F.conv2d(x, w, None, self.stride, self.padding)


class SLinear(Synapse):
    """Linear over the last dim (works on [B, F] and on tokens [B, N, D])."""

    kind = "linear"

    def __init__(self, fin, fout, bias=True, bn=False, binary=False, in_scale=1.0):
        w = torch.empty(fout, fin)
        nn.init.kaiming_uniform_(w, a=5 ** 0.5)
        super().__init__(w, bias, bn, binary, in_scale)

    def _make_bn(self, n):
        return nn.BatchNorm1d(n)

    def _bn(self, y):
        shp = y.shape
        y2 = y.reshape(-1, shp[-1])
        return (synced_batch_norm(self.bn, y2, 1) if _distributed() else self.bn(y2)).reshape(shp)

    def _chan(self, v, ndim):
        return v.view(*([1] * (ndim - 1)), -1)

    def _op(self, x, w):
        return F.linear(x, w)


def synapses(model: nn.Module):
    """(name, layer) for every synaptic layer, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, Synapse)]
