"""Architectures built from yaml recipes (slt_deploy/recipes/): spiking VGG, spiking ResNet, Spikformer-style transformer.

A recipe (see slt_deploy/recipes/*.yaml) names the dataset, the architecture and its sizes, T, the encoding, the
neuron and the training schedule. `build_model(recipe)` returns a SpikingNet: `net(images)` encodes, runs T steps
and returns logits = the head's output summed over the T steps."""
from __future__ import annotations

import os
from importlib.resources import files

import torch
import yaml
from torch import nn

from .data import encode
from .errors import SltError, first_line
from .nn import LIF, ConvPEP, PatchSelect, ResBlock, SConv2d, SLinear, Tokens, TokenSum, TransformerBlock
from .nn.layers import weight_cache

MODELS_DIR = str(files("slt_deploy") / "recipes")  # package data (pip-installed too), see README "Install"
DATASET_SHAPES = {"digits": ([1, 8, 8], 10, 16.0), "fmnist": ([1, 28, 28], 10, 255.0)}
NEURON_DEFAULTS = {"beta": 0.5, "threshold": 1.0, "reset": "zero", "slope": 2.0}


class SpikingNet(nn.Module):
    """Runs `body` (a per-step module) for T steps and sums the head's output over time."""

    def __init__(self, body: nn.Module, recipe: dict):
        super().__init__()
        self.body = body
        self.recipe = recipe
        self.T = int(recipe["T"])
        self.encoding = recipe.get("encoding", "direct")
        self.input_max = float(DATASET_SHAPES[recipe["dataset"]][2])

    def reset_state(self):
        for m in self.modules():
            if isinstance(m, LIF):
                m.reset_state()

    def run(self, seq: torch.Tensor) -> torch.Tensor:
        """seq: encoded input [T, B, ...] -> logits [B, classes] (sum over T of the head output)."""
        self.reset_state()
        out = None
        with weight_cache(self.body):
            for t in range(seq.shape[0]):
                y = self.body(seq[t])
                out = y if out is None else out + y
        self.reset_state()
        return out

    def encode(self, images, generator=None):
        return encode(images, self.T, self.encoding, self.input_max, generator)

    def forward(self, images, generator=None):
        return self.run(self.encode(images, generator))


def _neuron(recipe):
    n = {**NEURON_DEFAULTS, **(recipe.get("neuron") or {})}
    return {k: n[k] for k in NEURON_DEFAULTS}


def _in_scale(recipe):
    return 1.0 / DATASET_SHAPES[recipe["dataset"]][2] if recipe.get("encoding", "direct") == "direct" else 1.0


def _spatial(shape, stride):
    return [shape[0], (shape[1] + stride - 1) // stride, (shape[2] + stride - 1) // stride]


def build_vgg(r):
    shape, ncls, _ = DATASET_SHAPES[r["dataset"]]
    neuron, binary = _neuron(r), bool(r.get("binary", False))
    layers, c, hw, first = [], shape[0], shape, True
    for spec in r["arch"]["convs"]:
        out, st = int(spec["out"]), int(spec.get("stride", 1))
        layers += [SConv2d(c, out, int(spec.get("k", 3)), st, binary=binary,
                           in_scale=_in_scale(r) if first else 1.0), LIF(**neuron)]
        c, hw, first = out, _spatial([out, hw[1], hw[2]], st), False
    layers.append(nn.Flatten(1))
    f = c * hw[1] * hw[2]
    for h in r["arch"].get("fc", []):
        layers += [SLinear(f, int(h), bias=False, bn=True, binary=binary), LIF(**neuron)]
        f = int(h)
    layers.append(SLinear(f, ncls, bias=True, binary=binary))
    return nn.Sequential(*layers)


def build_resnet(r):
    shape, ncls, _ = DATASET_SHAPES[r["dataset"]]
    neuron, binary, a = _neuron(r), bool(r.get("binary", False)), r["arch"]
    stem = int(a["stem"])
    layers = [SConv2d(shape[0], stem, 3, int(a.get("stem_stride", 1)), binary=binary, in_scale=_in_scale(r)),
              LIF(**neuron)]
    c, hw = stem, _spatial(shape, int(a.get("stem_stride", 1)))
    for stage in a["stages"]:
        for i in range(int(stage.get("blocks", 1))):
            st = int(stage.get("stride", 1)) if i == 0 else 1
            layers.append(ResBlock(c, int(stage["out"]), st, neuron, binary=binary))
            c, hw = int(stage["out"]), _spatial([int(stage["out"]), hw[1], hw[2]], st)
    layers += [nn.Flatten(1), SLinear(c * hw[1] * hw[2], ncls, bias=True, binary=binary)]
    return nn.Sequential(*layers)


def build_spikformer(r):
    shape, ncls, _ = DATASET_SHAPES[r["dataset"]]
    neuron, binary, a = _neuron(r), bool(r.get("binary", False)), r["arch"]
    dim, strides = int(a["dim"]), [int(s) for s in a["stem_strides"]]
    pep = ConvPEP(shape[0], [int(c) for c in a["stem_channels"]], strides, dim, neuron, _in_scale(r),
                  binary=bool(a.get("binary_pep", binary)))
    hw = shape
    for st in strides:
        hw = _spatial(hw, st)
    n_patches = hw[1] * hw[2]
    blocks = [TransformerBlock(dim, int(a["heads"]), float(a.get("mlp_ratio", 2)), neuron, binary=binary)
              for _ in range(int(a["depth"]))]
    head = SLinear(dim, ncls, bias=True, binary=binary, in_scale=1.0 / n_patches)
    return nn.Sequential(pep, Tokens(), PatchSelect(n_patches), *blocks, TokenSum(), head)


BUILDERS = {"vgg": build_vgg, "resnet": build_resnet, "spikformer": build_spikformer}


def validate_recipe(r: dict, where: str = "recipe") -> dict:
    """`r` checked against the recipe schema (slt_deploy/schema.py: keys, types, ranges, resource guards); returned
    unchanged (defaults are applied where it is built, so a saved recipe stays what the user wrote)."""
    from .schema import check_recipe

    check_recipe(r, where)
    return r


def load_recipe(path_or_name: str) -> dict:
    p = path_or_name
    if not os.path.exists(p):
        cand = os.path.join(MODELS_DIR, p if p.endswith(".yaml") else p + ".yaml")
        if not os.path.exists(cand):
            names = sorted(f[:-5] for f in os.listdir(MODELS_DIR) if f.endswith(".yaml"))
            raise SltError(f"recipe {path_or_name!r} not found", f"pass a yaml path or one of: {', '.join(names)}")
        p = cand
    if not os.path.isfile(p):
        raise SltError(f"recipe {p} is not a file", "pass a .yaml recipe (e.g. slt_deploy/recipes/digits-tiny.yaml) or its name")
    try:
        with open(p, "rb") as f:
            r = yaml.safe_load(f.read(1 << 20).decode("utf-8"))
    except UnicodeDecodeError:
        raise SltError(f"{p}: not a text (UTF-8) yaml file", "pass a .yaml recipe such as slt_deploy/recipes/digits-tiny.yaml") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise SltError(f"{p}: not valid yaml{at} ({getattr(e, 'problem', None) or first_line(e)})",
                       "fix the yaml syntax (see slt_deploy/recipes/digits-tiny.yaml)") from None
    except OSError as e:
        raise SltError(f"cannot read recipe {p} ({e.strerror})", "check the path and its permissions") from None
    return validate_recipe(r, p)


def build_model(recipe: dict) -> SpikingNet:
    validate_recipe(recipe)
    torch.manual_seed(int(recipe.get("seed", 0)))
    net = SpikingNet(BUILDERS[recipe["arch"]["type"]](recipe), recipe)
    for name in recipe.get("binary_layers") or []:  # tickets that mix binary and float layers
        layer = dict(net.named_modules()).get(name)
        if not hasattr(layer, "binary"):
            raise SltError(f"recipe binary_layers: {name!r} is not a synaptic layer of {recipe['name']}",
                           "name layers as `slt-deploy inspect` of its checkpoint lists them, e.g. body.0")
        layer.binary = True
    return net
