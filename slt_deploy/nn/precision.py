"""Compute precision of the TRAINING forward: "fp32" (default) or "bf16".

With "bf16" (`train.precision` in a recipe, `--precision bf16` on `train` and `ticket`) every synaptic layer's
convolution or matmul runs in bfloat16 inside the training forward, with float32 accumulation (oneDNN) and its
output cast back to float32 at once: batch norm, the LIF membranes, the attention products, the loss, the gradients'
accumulation into the float32 weights and the optimizer stay float32. Spikes (0/1) and integer pixels up to 256 are
exact in bfloat16; the weights are rounded to 8 significant bits for the product only. Evaluation, export and every
runtime compare float32 models: the precision changes how a model is trained, never what a checkpoint computes.

On this machine's AVX512-BF16 CPU training ran 1.2-1.4x faster (docs/tickets.md, "bf16 training"); a CPU without
native bfloat16 kernels (AVX512-BF16 / AMX) emulates them and can be slower, so `train` warns there (`fast()`).
"""
from __future__ import annotations

import contextlib

import torch

_DTYPES = {"fp32": None, "bf16": torch.bfloat16}
PRECISIONS = tuple(_DTYPES)
_LOW = None  # the dtype of the synaptic products while a training forward runs under compute(), or None


def dtype_of(precision: str):
    """"fp32" -> None (no cast), "bf16" -> torch.bfloat16; ValueError for anything else."""
    if precision not in _DTYPES:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return _DTYPES[precision]


@contextlib.contextmanager
def compute(precision: str):
    """Synaptic products of the forward passes inside this block run in `precision` (training mode only)."""
    global _LOW
    old, _LOW = _LOW, dtype_of(precision)
    try:
        yield
    finally:
        _LOW = old


def low() -> torch.dtype | None:
    return _LOW


def fast(precision: str) -> bool:
    """False when `precision` needs bfloat16 kernels this CPU does not have natively (AVX512-BF16 / AMX)."""
    if dtype_of(precision) is None:
        return True
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without that query: nothing to warn about
        return True
