"""Leaky integrate-and-fire neuron, one time step per call (state kept inside the module).

Arithmetic (the same in every runtime, see docs/ir.md):
    v = beta * v + I            (two float32 ops: multiply, then add)
    s = 1 if v > threshold else 0
    reset 'zero':     v = v * (1 - s)
    reset 'subtract': v = v - s * threshold
The spike's gradient is snntorch's arctan surrogate: dS/dv = (slope/2) / (1 + (pi/2 * slope * (v - threshold))^2).

Two implementations compute the same numbers:
- fused (default): one autograd Function per step (`_LIFStep`): the forward runs the update, the spike and the reset
  without recording an autograd graph and keeps only the membrane potential; the backward computes the surrogate
  gradient and the reset/leak chain in one place. Fewer tensors and graph nodes per step.
- eager (`fused=False`, or `set_fused(False)` for every LIF): the textbook graph (snntorch's ATan function +
  tensor ops), kept as the reference the fused step is tested against (tests/test_lif_fused.py).
Forward outputs are bit-identical; gradients agree within float rounding (different summation order).
"""
import math

import torch
from snntorch import surrogate
from torch import nn

RESETS = ("zero", "subtract")
_FUSED = True


def set_fused(on: bool) -> bool:
    """Choose the default implementation of every LIF (used by the throughput bench); returns the old setting."""
    global _FUSED
    old, _FUSED = _FUSED, bool(on)
    return old


class _LIFStep(torch.autograd.Function):
    """(current, v_prev or None) -> (spikes, v after reset)."""

    @staticmethod
    def forward(ctx, current, v_prev, beta, threshold, reset_zero, slope):
        # float-only kernels (bool tensors, masked_fill and where are several times slower on CPU)
        if v_prev is None:
            v = current.clone()
        else:
            v = torch.mul(v_prev, beta)
            v.add_(current)
        s = torch.empty_like(v)
        torch.gt(v, threshold, out=s)
        # zero: v - v*s (exactly 0 where s = 1, exactly v where s = 0); subtract: v - threshold*s
        v_new = torch.addcmul(v, v, s, value=-1.0) if reset_zero else torch.add(v, s, alpha=-threshold)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(v, s)
        ctx.cfg = (beta, threshold, reset_zero, slope, v_prev is not None)
        return s, v_new

    @staticmethod
    def backward(ctx, g_s, g_v):
        v, s = ctx.saved_tensors
        beta, threshold, reset_zero, slope, has_prev = ctx.cfg
        g = None
        if g_s is not None:
            x = torch.sub(v, threshold).mul_(math.pi / 2 * slope)
            x.mul_(x).add_(1.0)  # 1 + (pi/2 * slope * (v - threshold))^2
            g = torch.mul(g_s, slope / 2).div_(x)
        if g_v is not None:
            gv = torch.addcmul(g_v, g_v, s, value=-1.0) if reset_zero else g_v  # the reset blocks the gradient
            g = gv if g is None else g.add_(gv)
        if g is None:
            return None, None, None, None, None, None
        return g, (g * beta if has_prev else None), None, None, None, None


class LIF(nn.Module):
    def __init__(self, beta: float = 0.5, threshold: float = 1.0, reset: str = "zero", slope: float = 2.0,
                 fused: bool | None = None):
        super().__init__()
        if reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta (decay) must be in [0, 1], got {beta}")
        self.beta = float(beta)
        self.threshold = float(threshold)
        self.reset = reset
        self.slope = float(slope)
        self.fused = fused  # None: follow set_fused()
        self.spike_fn = surrogate.atan(alpha=slope)
        self.v = None

    def reset_state(self):
        self.v = None

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        if self.fused if self.fused is not None else _FUSED:
            s, self.v = _LIFStep.apply(current, self.v, self.beta, self.threshold, self.reset == "zero", self.slope)
            return s
        # v starts at 0, so the first step is exactly v = I (beta * 0 + I == I in float32).
        v = current if self.v is None else self.beta * self.v + current
        s = self.spike_fn(v - self.threshold)
        sd = s.detach()
        if self.reset == "zero":
            v = v * (1.0 - sd)
        else:
            v = v - sd * self.threshold
        self.v = v
        return s

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}, reset={self.reset}"
