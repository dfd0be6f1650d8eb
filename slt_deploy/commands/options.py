"""Option types, shared options and checks of the commands: every number a user types is range-checked by click
before any work starts (a bad value is one `error:` line, exit 2, see cli.main), every output goes through
fsio.check_out; --data/--limit/--data-dir, --json and --quiet/--verbose are defined once here (docs/cli.md)."""
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


class CountList(click.ParamType):
    """A comma-separated list of integers >= 1 (e.g. `--round-epochs 4,4,4,8`)."""

    name = "N[,N...]"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        parts = [p.strip() for p in str(value).split(",")]
        if not all(p.isdigit() and int(p) >= 1 for p in parts):
            self.fail(f"{value!r} is not a comma-separated list of integers >= 1 (e.g. 4,4,8)", param, ctx)
        return [int(p) for p in parts]


class FractionList(click.ParamType):
    """A comma-separated, strictly increasing list of fractions in (0, 1) (e.g. `--sparsity-steps 0.96,0.97,0.98`)."""

    name = "F[,F...]"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            vals = [float(p) for p in str(value).split(",")]
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of numbers (e.g. 0.96,0.97,0.98)", param, ctx)
        if not all(0.0 < v < 1.0 for v in vals) or any(b <= a for a, b in zip(vals, vals[1:])):
            self.fail(f"{value!r}: the steps must be fractions in (0, 1), each larger than the one before", param, ctx)
        return vals


class GainList(click.ParamType):
    """`--layer-gain conv=1.5,body.7=0.8`: comma-separated KEY=G pairs (KEY a layer kind or a module path, G > 0)."""

    name = "KEY=G[,KEY=G...]"

    def convert(self, value, param, ctx):
        if isinstance(value, dict):
            return value
        out = {}
        for part in str(value).split(","):
            key, eq, g = part.strip().partition("=")
            try:
                gf = float(g)
            except ValueError:
                gf = float("nan")
            if not eq or not key.strip() or not (gf > 0 and math.isfinite(gf)):
                self.fail(f"{part.strip()!r} is not KEY=G with G a positive number (e.g. conv=1.5)", param, ctx)
            out[key.strip()] = gf
        return out


class Limit(Number):
    """`--limit N|all`: an integer >= 1, or `all` (-> None: the whole split)."""

    def __init__(self):
        super().__init__(int, 1)

    def _range(self):
        return "an integer >= 1, or all"

    def convert(self, value, param, ctx):
        if value is None or (isinstance(value, str) and value.strip().lower() == "all"):
            return None
        return super().convert(value, param, ctx)


LIMIT = Limit()

# ------------------------------------------------------------------------------------ the shared options (docs/cli.md)
# Every command that reads test data takes the same three options with the same meaning and default:
#   --data auto|digits|fmnist   auto = the model's own dataset (a checkpoint's recipe; an artifact's input shape)
#   --limit N|all               the first N samples of the test split; default LIMIT_DEFAULT (digits has 360: all)
#   --data-dir DIR              folder with the Fashion-MNIST idx files
# Every command that reports takes --json (the result as one JSON document on stdout, nothing else there) and
# --quiet/--verbose (log level of the progress/info lines on stderr, slt_deploy/log.py).
DATA_CHOICES = ["auto", "digits", "fmnist"]
LIMIT_DEFAULT = 1000


def parse_opts(opt, example: str) -> dict:
    """--opt KEY=VALUE pairs -> {KEY: VALUE}; a pair without '=' or a KEY given twice is a user mistake."""
    opts = {}
    for o in opt:
        if "=" not in o:
            raise SltError(f"--opt {o!r} is not KEY=VALUE", f"e.g. --opt {example}")
        k, v = o.split("=", 1)
        if k in opts and opts[k] != v:
            raise SltError(f"--opt {k} is given twice ({opts[k]!r} and {v!r})", f"pass --opt {k}=... once")
        opts[k] = v
    return opts


def data_dir_option(f):
    return click.option("--data-dir", type=click.Path(), default=None,
                        help="folder with the Fashion-MNIST idx files (default: the usual places)")(f)


def precision_option(f):
    """--precision fp32|bf16 (parameter `precision`; None = the recipe's train.precision, default fp32)."""
    from ..nn.precision import PRECISIONS

    return click.option("--precision", type=click.Choice(PRECISIONS), default=None,
                        help="training precision of the synaptic products (default: the recipe's, fp32); bf16 "
                             "trains faster on CPUs with AVX512-BF16/AMX, checkpoints stay float32 "
                             "(docs/tickets.md, \"bf16 training\")")(f)


def limit_option(f=None, *, names=("--limit",), help=None):
    """--limit N|all (parameter `limit`; None = all)."""
    def deco(f):
        return click.option(*names, "limit", type=LIMIT, default=str(LIMIT_DEFAULT), show_default=True,
                            metavar="N|all", help=help or "the first N samples of the test split (N >= 1, or all)")(f)
    return deco(f) if f is not None else deco


def data_options(f=None, *, data_default="auto", data_help=None, limit_help=None):
    """--data, --limit, --data-dir (parameters `data`, `limit`, `data_dir`)."""
    def deco(f):
        f = data_dir_option(f)
        f = limit_option(f, help=limit_help)
        return click.option("--data", type=click.Choice(DATA_CHOICES), default=data_default,
                            show_default=data_default is not None,
                            help=data_help or "test data: auto = the model's own dataset")(f)
    return deco(f) if f is not None else deco


def _verbosity(ctx, param, value):
    ctx.meta[f"slt.{param.name}"] = value
    quiet, verbose = ctx.meta.get("slt.quiet", False), ctx.meta.get("slt.verbose", False)
    if quiet and verbose:
        raise click.BadParameter("--quiet and --verbose exclude each other", ctx, param)
    from ..log import setup

    setup(quiet=quiet, verbose=verbose)
    return value


def reporting(f=None, *, json_help=None):
    """--json (parameter `as_json`) and --quiet/--verbose (handled here: they set the log level, slt_deploy/log.py)."""
    def deco(f):
        f = click.option("--verbose", is_flag=True, expose_value=False, callback=_verbosity,
                         help="also print debug lines on stderr")(f)
        f = click.option("--quiet", is_flag=True, expose_value=False, callback=_verbosity,
                         help="no progress or info lines on stderr (warnings and errors only)")(f)
        return click.option("--json", "as_json", is_flag=True,
                            help=json_help or "print the result as JSON on stdout (nothing else goes there)")(f)
    return deco(f) if f is not None else deco


def _plain(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def echo_json(obj):
    """THE --json output: one document on stdout (numpy values as numbers, anything else as its str)."""
    import json

    click.echo(json.dumps(obj, indent=2, default=_plain))



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
