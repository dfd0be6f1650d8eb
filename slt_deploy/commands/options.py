"""Option types and checks shared by the commands: every number a user types is range-checked by click before any
work starts (a bad value is one `error:` line, exit 2, see cli.main), every output goes through fsio.check_out."""
from __future__ import annotations

import math

import click

from ..errors import SltError


class Number(click.ParamType):
    """A finite int/float in a range; `lo_open`/`hi_open` exclude the ends. NaN and inf are refused (click's
    FloatRange lets NaN through)."""

    def __init__(self, kind=float, lo=None, hi=None, lo_open=False, hi_open=False):
        self.kind, self.lo, self.hi, self.lo_open, self.hi_open = kind, lo, hi, lo_open, hi_open
        self.name = self._range()

    def _range(self):
        lo = "" if self.lo is None else f"{self.lo}{' <' if self.lo_open else ' <='} "
        hi = "" if self.hi is None else f" {'<' if self.hi_open else '<='} {self.hi}"
        return f"{lo}{'integer' if self.kind is int else 'number'}{hi}".strip()

    def convert(self, value, param, ctx):
        if isinstance(value, self.kind) and not isinstance(value, bool):
            v = value
        else:
            try:
                v = self.kind(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not {'an integer' if self.kind is int else 'a number'} (allowed: "
                          f"{self._range()})", param, ctx)
        if self.kind is float and not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number (allowed: {self._range()})", param, ctx)
        bad = ((self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)))
               or (self.hi is not None and (v > self.hi or (self.hi_open and v == self.hi))))
        if bad:
            self.fail(f"{value} is outside the allowed range ({self._range()})", param, ctx)
        return v


FRACTION = Number(float, 0, 1, lo_open=True, hi_open=True)     # (0, 1)
FRACTION0 = Number(float, 0, 1, hi_open=True)                  # [0, 1)
POSITIVE = Number(float, 0, lo_open=True)                      # > 0
COUNT0 = Number(int, 0)                                        # >= 0
COUNT1 = Number(int, 1)                                        # >= 1
SEED = Number(int, 0, 2 ** 32 - 1)
LIMIT = Number(int, 1)

DATA_CHOICES = ["auto", "digits", "fmnist"]


def check_runner(r, path: str):
    """Resource guard on what an artifact declares before it runs: T and the input size (a CRC-valid file can still
    ask for T = 33,726 steps)."""
    from ..schema import MAX_T

    m = r.meta
    try:
        T = int(m["T"])
        shape = [int(v) for v in m["input_shape"]]
    except (KeyError, TypeError, ValueError):
        raise SltError(f"{path}: its metadata lacks a valid T or input shape", "re-export it") from None
    if not 1 <= T <= MAX_T:
        raise SltError(f"{path} declares T = {T} time steps, outside 1..{MAX_T}",
                       "re-export it from a checkpoint (the file is damaged or was edited)")
    n = 1
    for v in shape:
        n *= max(v, 0)
    if not shape or n < 1 or n > 1 << 24:
        raise SltError(f"{path} declares an input shape {shape} this tool will not run", "re-export it")
