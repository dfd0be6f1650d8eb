"""The schema of what users write by hand: model recipes (models/*.yaml, the recipe inside a checkpoint's
model.json) and hardware profiles (slt_deploy/hardware/loihi2.yaml limits, slt_deploy/hardware/energy/*.yaml). Checked with pydantic in
strict mode: unknown keys, wrong types, unknown values and out-of-range numbers are ONE SltError line naming the key,
the value and what is allowed. Resource guards (`check_resources`) refuse a recipe whose estimated memory or time is
absurd before anything is allocated, with the estimate in the message.

Ranges are deliberately generous (they catch typos and hostile files, not unusual research settings); the guards
catch combinations (a 1e6-channel conv, T x batch too large)."""
from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from .errors import SltError

DATASETS = {"digits": ([1, 8, 8], 10, 1797), "fmnist": ([1, 28, 28], 10, 60000)}  # shape, classes, train size
MAX_T = 1024
MAX_WIDTH = 8192
MAX_EPOCHS = 100000
# resource guards (a CPU host; refused beyond these, the estimate is printed)
MAX_PARAMS = 200_000_000                 # ~3.2 GB with Adam state
MAX_TRAIN_MEMORY_BYTES = 16 << 30        # activations kept for backprop through T steps of one batch
MAX_TRAIN_SECONDS = 30 * 24 * 3600       # a month
ASSUMED_MACS_PER_S = 2e10  # measured: fmnist-vgg, 8 epochs in 11.2 min on 2 busy cores (README)

Pos = Annotated[int, Field(ge=1)]
Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]
Stride = Annotated[int, Field(ge=1, le=8)]
FinitePos = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class Strict(BaseModel):
    """Strict types, and unknown keys named with the allowed ones."""
    model_config = ConfigDict(strict=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data):
        if isinstance(data, dict):
            unknown = [k for k in data if k not in cls.model_fields]
            if unknown:
                raise PydanticCustomError("unknown_key", "unknown key '{key}' (allowed: {allowed})",
                                          {"key": unknown[0], "allowed": ", ".join(cls.model_fields)})
        return data


class Neuron(Strict):
    beta: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.5
    threshold: FinitePos = 1.0
    reset: Literal["zero", "subtract"] = "zero"
    slope: FinitePos = 2.0


class Conv(Strict):
    out: Width
    stride: Stride = 1
    k: Annotated[int, Field(ge=1, le=15)] = 3

    @model_validator(mode="after")
    def _odd(self):
        if self.k % 2 == 0:
            raise PydanticCustomError("odd_kernel", "kernel size k must be odd (same padding), got {k}", {"k": self.k})
        return self


class Vgg(Strict):
    type: Literal["vgg"]
    convs: Annotated[list[Conv], Field(min_length=1, max_length=64)]
    fc: Annotated[list[Width], Field(max_length=16)] = []


class Stage(Strict):
    out: Width
    blocks: Annotated[int, Field(ge=1, le=64)] = 1
    stride: Stride = 1


class ResNet(Strict):
    type: Literal["resnet"]
    stem: Width
    stem_stride: Stride = 1
    stages: Annotated[list[Stage], Field(min_length=1, max_length=16)]


class Spikformer(Strict):
    type: Literal["spikformer"]
    stem_channels: Annotated[list[Width], Field(max_length=8)]
    stem_strides: Annotated[list[Stride], Field(min_length=1, max_length=9)]
    dim: Width
    heads: Annotated[int, Field(ge=1, le=64)]
    depth: Annotated[int, Field(ge=1, le=64)]
    mlp_ratio: Annotated[float, Field(gt=0, le=16, allow_inf_nan=False)] = 2.0
    binary_pep: bool = False

    @model_validator(mode="after")
    def _shapes(self):
        if self.dim % self.heads:
            raise PydanticCustomError("heads", "dim {dim} is not divisible by heads {heads}",
                                      {"dim": self.dim, "heads": self.heads})
        if len(self.stem_strides) != len(self.stem_channels) + 1:
            raise PydanticCustomError("strides", "stem_strides needs one stride per stem conv, "
                                      "len(stem_channels) + 1 = {n}, got {m}",
                                      {"n": len(self.stem_channels) + 1, "m": len(self.stem_strides)})
        return self


class Train(Strict):
    epochs: Annotated[int, Field(ge=0, le=MAX_EPOCHS)] = 1
    batch_size: Annotated[int, Field(ge=1, le=1 << 20)] = 64
    lr: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] = 1e-3
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    schedule: Literal["cosine", "constant", "none"] = "cosine"
    weight_decay: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    momentum: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = 0.9
    precision: Literal["fp32", "bf16"] = "fp32"  # of the training forward's synaptic products (nn/precision.py)


class Recipe(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    dataset: Literal["digits", "fmnist"]
    T: Annotated[int, Field(ge=1, le=MAX_T)]
    encoding: Literal["direct", "rate"] = "direct"
    neuron: Neuron = Neuron()
    arch: Annotated[Vgg | ResNet | Spikformer, Field(discriminator="type")]
    train: Train
    seed: Annotated[int, Field(ge=0, le=2 ** 32 - 1)] = 0
    binary: bool = False
    binary_layers: Annotated[list[str], Field(max_length=4096)] = []


# ------------------------------------------------------------------------------------ hardware profiles
class Sourced(Strict):
    value: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    status: str = "published"
    source: str = ""
    unit: str = ""


LOIHI_LIMITS = ("cores_per_chip", "neurons_per_core", "synapse_memory_bytes_per_core", "bits_per_synapse",
                "bits_per_sparse_synapse", "fan_in_per_neuron", "chips", "weight_mantissa_bits",
                "threshold_mantissa_bits", "decay_bits")


class LoihiLimits(Strict):
    format_version: Annotated[int, Field(ge=1, le=1)] = 1
    name: str = ""
    title: str = ""
    limits: dict[Literal[LOIHI_LIMITS], Sourced]

    @model_validator(mode="after")
    def _complete(self):
        missing = [k for k in LOIHI_LIMITS[:7] if k not in self.limits]
        if missing:
            raise PydanticCustomError("missing_limit", "limits lack {missing}", {"missing": ", ".join(missing)})
        return self


class EnergyConstant(Strict):
    value: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None
    unit: str
    status: str = "published"
    source: str


class EnergyProfile(Strict):
    format_version: Annotated[int, Field(ge=1, le=1)] = 1
    name: str = ""
    title: str = ""
    model: Literal["ops", "mcu", "board", "neuromorphic"]
    notes: str = ""
    constants: dict[str, EnergyConstant]


# ------------------------------------------------------------------------------------ messages
def _loc(loc) -> str:
    tags = {"vgg", "resnet", "spikformer"}
    parts = [str(p) for i, p in enumerate(loc) if not (i == 1 and loc[0] == "arch" and p in tags)]
    return ".".join(parts) or "(top level)"


def _short(v) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def explain(e: ValidationError, where: str, example: str) -> SltError:
    errs = e.errors(include_url=False)
    err = errs[0]
    loc, msg = _loc(err["loc"]), err["msg"]
    if err["type"] == "unknown_key":
        what = f"{where}: {loc + ': ' if err['loc'] else ''}{msg}"
    elif err["type"] == "literal_error":
        what = f"{where}: unknown {loc} {_short(err.get('input'))} (allowed: {err['ctx']['expected']})"
    elif err["type"] == "missing":
        what = f"{where}: {loc} is missing"
    else:
        msg = msg.replace("Input should be", "must be").replace("Value error, ", "")
        val = err.get("input")
        shown = "" if isinstance(val, dict) else f" = {_short(val)}"
        what = f"{where}: {loc}{shown}: {msg}"
    more = f" (and {len(errs) - 1} more problem{'s' if len(errs) > 2 else ''})" if len(errs) > 1 else ""
    return SltError(what.replace("\n", " ") + more, f"correct it; see {example}")


def check_recipe(r, where: str = "recipe") -> Recipe:
    """The recipe validated (SltError otherwise) and checked against the resource guards."""
    if not isinstance(r, dict):
        raise SltError(f"{where}: a recipe must be a yaml mapping, got {type(r).__name__}",
                       "see slt_deploy/recipes/digits-tiny.yaml")
    try:
        rec = Recipe.model_validate(r)
    except ValidationError as e:
        raise explain(e, where, "slt_deploy/recipes/digits-tiny.yaml") from None
    check_resources(rec, where)
    return rec


def check_loihi_limits(doc, where: str) -> LoihiLimits:
    try:
        return LoihiLimits.model_validate(doc)
    except ValidationError as e:
        raise explain(e, f"hardware profile {where}", "slt_deploy/hardware/loihi2.yaml") from None


def check_energy_profile(doc, where: str) -> EnergyProfile:
    try:
        return EnergyProfile.model_validate(doc)
    except ValidationError as e:
        raise explain(e, f"hardware profile {where}", "slt_deploy/hardware/energy/asic45nm.yaml") from None


# ------------------------------------------------------------------------------------ resource guards
def _out(n, s):
    return (n + s - 1) // s


def estimate(rec: Recipe) -> dict:
    """Parameters, neurons per time step (activations), and multiply-accumulates per time step of one sample,
    from the recipe alone (nothing is built)."""
    shape, ncls, n_train = DATASETS[rec.dataset]
    c, h, w = shape
    params = act = macs = 0

    def conv(cin, cout, k, s):
        nonlocal params, act, macs, h, w
        h, w = _out(h, s), _out(w, s)
        params += cin * cout * k * k
        act += cout * h * w
        macs += cin * cout * k * k * h * w
        return cout

    a = rec.arch
    if isinstance(a, Vgg):
        for cv in a.convs:
            c = conv(c, cv.out, cv.k, cv.stride)
        f = c * h * w
        for n in a.fc:
            params += f * n
            macs += f * n
            act += n
            f = n
        params += f * ncls
        macs += f * ncls
    elif isinstance(a, ResNet):
        c = conv(c, a.stem, 3, a.stem_stride)
        for st in a.stages:
            for i in range(st.blocks):
                cin = c
                c = conv(c, st.out, 3, st.stride if i == 0 else 1)
                c = conv(c, st.out, 3, 1)
                if cin != st.out:
                    params += cin * st.out
        params += c * h * w * ncls
        macs += c * h * w * ncls
    else:
        for co, st in zip(list(a.stem_channels) + [a.dim], a.stem_strides):
            c = conv(c, co, 3, st)
        conv(a.dim, a.dim, 3, 1)
        n, d, hid = h * w, a.dim, int(a.dim * a.mlp_ratio)
        per_block = 4 * d * d + 2 * d * hid
        params += a.depth * per_block + d * ncls
        macs += a.depth * (n * per_block + 2 * n * n * d)
        act += a.depth * n * (5 * d + hid + a.heads * n)
    return {"params": params, "neurons_per_step": act, "macs_per_step": macs, "train_samples": n_train}


def _si(x, unit=""):
    for p, s in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= p:
            return f"{x / p:.3g} {s}{unit}"
    return f"{x:.3g} {unit}"


def _dur(s):
    for d, u in ((365 * 86400, "years"), (86400, "days"), (3600, "h"), (60, "min")):
        if s >= d:
            return f"{s / d:.3g} {u}"
    return f"{s:.3g} s"


def check_resources(rec: Recipe, where: str = "recipe", epochs: int | None = None) -> dict:
    """Refuses (SltError) a recipe whose parameter count, training memory or training time is absurd on a CPU
    host; the message carries the estimate. Returns the estimate."""
    e = estimate(rec)
    ep = rec.train.epochs if epochs is None else epochs
    mem = 4 * 3 * e["neurons_per_step"] * rec.T * rec.train.batch_size  # spikes, membranes, grads kept over T
    secs = 3 * e["macs_per_step"] * rec.T * e["train_samples"] * ep / ASSUMED_MACS_PER_S
    e.update(train_memory_bytes=mem, train_seconds=secs)
    fix = "use smaller layers, T or batch_size (the shipped recipes need < 1 GB and minutes)"
    if e["params"] > MAX_PARAMS:
        raise SltError(f"{where}: the model would have {_si(e['params'])} parameters (~{_si(16 * e['params'], 'B')} "
                       f"to train with Adam), more than the {_si(MAX_PARAMS)} this tool allows", fix)
    if mem > MAX_TRAIN_MEMORY_BYTES:
        raise SltError(f"{where}: training would keep ~{_si(mem, 'B')} of activations (T={rec.T} x batch_size="
                       f"{rec.train.batch_size} x {_si(e['neurons_per_step'])} neurons), more than "
                       f"{_si(MAX_TRAIN_MEMORY_BYTES, 'B')}", fix)
    if secs > MAX_TRAIN_SECONDS and not math.isinf(MAX_TRAIN_SECONDS):
        raise SltError(f"{where}: training would take ~{_dur(secs)} on a CPU ({_si(e['macs_per_step'] * rec.T)} "
                       f"MACs per sample x {e['train_samples']} samples x {ep} epochs at ~"
                       f"{_si(ASSUMED_MACS_PER_S)} MAC/s)", "lower epochs, T or the layer sizes")
    return e
