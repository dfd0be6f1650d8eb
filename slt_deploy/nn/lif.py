"""Leaky integrate-and-fire neuron, one time step per call (state kept inside the module).

Arithmetic (the same in every runtime, see docs/ir.md):
    v = beta * v + I            (two float32 ops: multiply, then add)
    s = 1 if v > threshold else 0
    reset 'zero':     v = v * (1 - s)
    reset 'subtract': v = v - s * threshold
The spike's gradient is snntorch's arctan surrogate.
"""
import torch
from snntorch import surrogate
from torch import nn

RESETS = ("zero", "subtract")


class LIF(nn.Module):
    def __init__(self, beta: float = 0.5, threshold: float = 1.0, reset: str = "zero", slope: float = 2.0):
        super().__init__()
        if reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta (decay) must be in [0, 1], got {beta}")
        self.beta = float(beta)
        self.threshold = float(threshold)
        self.reset = reset
        self.slope = float(slope)
        self.spike_fn = surrogate.atan(alpha=slope)
        self.v = None

    def reset_state(self):
        self.v = None

    def forward(self, current: torch.Tensor) -> torch.Tensor:
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
