"""Spiking building blocks above single layers: residual block, convolutional patch embedding (ConvPEP),
spiking self-attention (SSA), spiking MLP and the token helpers. Every block works on ONE time step; LIF state lives
in the LIF modules. Every value that flows between blocks is an integer count (spikes, or sums of spikes), which is
what makes binarized layers exact in every runtime."""
from __future__ import annotations

import torch
from torch import nn

from .layers import SConv2d, SLinear
from .lif import LIF


class ResBlock(nn.Module):
    """conv-BN-LIF, conv-BN, + shortcut (identity or 1x1 conv-BN) summed into the second LIF's input current."""

    def __init__(self, cin, cout, stride, neuron, binary=False):
        super().__init__()
        self.conv1 = SConv2d(cin, cout, 3, stride, binary=binary)
        self.lif1 = LIF(**neuron)
        self.conv2 = SConv2d(cout, cout, 3, 1, binary=binary)
        self.shortcut = None if (cin == cout and stride == 1) else SConv2d(cin, cout, 1, stride, padding=0,
                                                                           binary=binary)
        self.lif2 = LIF(**neuron)

    def forward(self, x):
        y = self.conv2(self.lif1(self.conv1(x)))
        sc = x if self.shortcut is None else self.shortcut(x)
        return self.lif2(y + sc)


class ConvPEP(nn.Module):
    """Convolutional patch embedding: conv-BN-LIF stages (stride 2 to downsample), then a convolutional relative
    position embedding whose output is summed with the stem spikes into one LIF, so the tokens are pure spikes."""

    def __init__(self, cin, channels, strides, dim, neuron, in_scale, binary=False):
        super().__init__()
        chans = list(channels) + [dim]
        layers, c = [], cin
        for i, (co, st) in enumerate(zip(chans, strides)):
            layers += [SConv2d(c, co, 3, st, binary=binary, in_scale=in_scale if i == 0 else 1.0), LIF(**neuron)]
            c = co
        self.stem = nn.Sequential(*layers)
        self.rpe = SConv2d(dim, dim, 3, 1, binary=binary)
        self.rpe_lif = LIF(**neuron)

    def forward(self, x):
        s = self.stem(x)
        return self.rpe_lif(self.rpe(s) + s)


class Tokens(nn.Module):
    """[B, D, H, W] -> [B, H*W, D] (row-major patch order: patch p = row * W + col)."""

    def forward(self, x):
        return x.flatten(2).transpose(1, 2)


class PatchSelect(nn.Module):
    """Keeps only the patches in `index` (a buffer saved with the model): the transformer runs on fewer tokens."""

    def __init__(self, n_patches):
        super().__init__()
        self.n_patches = int(n_patches)
        self.register_buffer("index", torch.arange(n_patches, dtype=torch.long))

    def set_index(self, index):
        idx = torch.as_tensor(index, dtype=torch.long).sort().values
        if idx.numel() == 0 or idx.min() < 0 or idx.max() >= self.n_patches or idx.unique().numel() != idx.numel():
            raise ValueError(f"patch index must be distinct values in [0, {self.n_patches})")
        self.index = idx.to(self.index.device)

    def _load_from_state_dict(self, state, prefix, *args, **kwargs):
        key = prefix + "index"
        if key in state and state[key].shape != self.index.shape:
            self.index = torch.empty_like(state[key])
        super()._load_from_state_dict(state, prefix, *args, **kwargs)

    def forward(self, x):
        if self.index.numel() == self.n_patches:
            return x
        return x[:, self.index, :]


class SSA(nn.Module):
    """Spiking self-attention: Q, K, V = LIF(BN(Linear(x))); y = (Q Kᵀ) V * scale per head (no softmax; all
    integer counts, scale a power of two), LIF (threshold 0.5), then Linear-BN-LIF projection."""

    def __init__(self, dim, heads, neuron, scale=0.125, binary=False):
        super().__init__()
        if dim % heads:
            raise ValueError(f"embed dim {dim} is not divisible by heads {heads}")
        self.heads, self.scale = int(heads), float(scale)
        self.q, self.k, self.v = (SLinear(dim, dim, bias=False, bn=True, binary=binary) for _ in range(3))
        self.q_lif, self.k_lif, self.v_lif = LIF(**neuron), LIF(**neuron), LIF(**neuron)
        self.attn_lif = LIF(**{**neuron, "threshold": 0.5})
        self.proj = SLinear(dim, dim, bias=False, bn=True, binary=binary)
        self.proj_lif = LIF(**neuron)

    def _split(self, x):
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)  # [B, h, N, dh]

    def forward(self, x):
        q = self._split(self.q_lif(self.q(x)))
        k = self._split(self.k_lif(self.k(x)))
        v = self._split(self.v_lif(self.v(x)))
        y = torch.matmul(torch.matmul(q, k.transpose(-2, -1)), v) * self.scale
        y = y.transpose(1, 2).reshape(x.shape)
        return self.proj_lif(self.proj(self.attn_lif(y)))


class MLP(nn.Module):
    def __init__(self, dim, hidden, neuron, binary=False):
        super().__init__()
        self.fc1 = SLinear(dim, hidden, bias=False, bn=True, binary=binary)
        self.lif1 = LIF(**neuron)
        self.fc2 = SLinear(hidden, dim, bias=False, bn=True, binary=binary)
        self.lif2 = LIF(**neuron)

    def forward(self, x):
        return self.lif2(self.fc2(self.lif1(self.fc1(x))))


class TransformerBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, neuron, binary=False):
        super().__init__()
        self.attn = SSA(dim, heads, neuron, binary=binary)
        self.mlp = MLP(dim, int(dim * mlp_ratio), neuron, binary=binary)

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


class TokenSum(nn.Module):
    """[B, N, D] -> [B, D]: sum over tokens (an integer count; the head's in_scale holds 1/N)."""

    def forward(self, x):
        return x.sum(1)
