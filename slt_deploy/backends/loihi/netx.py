"""The lava-dl netx HDF5 network file, written and read with h5py only (exporting never needs Lava).

A chip program is a list of layer dicts, the same structure the writer stores and the fixed-point reference runs:

    {"type": "input",   "shape": [C, H, W] | [N],            "neuron": N}
    {"type": "conv",    "shape": [O, H', W'], "weight": int [O, I, kH, kW], "bias": int [O] | None,
                        "stride": [sH, sW], "padding": [pH, pW], "neuron": N}
    {"type": "flatten", "shape": [C*H*W]}
    {"type": "dense",   "shape": [O], "weight": int [O, I], "bias": int [O] | None, "neuron": N}
    N = {"iDecay": int, "vDecay": int, "vThMant": int}   (CUBA; decays on the 4096 scale)

File layout (what lava.lib.dl.netx.hdf5.Network reads): /layer/<i>/{type, shape, weight, bias, stride, padding,
dilation, groups, neuron/{type, iDecay, vDecay, vThMant, refDelay, gradedSpike}}. Shapes and conv attributes are
stored in (C, H, W) / (H, W) order and conv weights in PyTorch's cross-correlation layout [O, I, kH, kW]; netx
reverses them to Lava's (x, y, z) order itself. `type` strings are fixed-width ASCII, as netx decodes them.
"""
from __future__ import annotations

import h5py
import numpy as np

from ...fsio import check_h5_sizes

LAYER_TYPES = ("input", "conv", "flatten", "dense")


def _s(x: str):
    return np.array([x.encode("ascii")], dtype="S10")


def write_netx(path: str, layers: list, attrs: dict | None = None):
    """Writes the chip program to `path` (a file opened fresh; callers make it atomic)."""
    with h5py.File(path, "w") as f:
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
        grp = f.create_group("layer")
        for i, L in enumerate(layers):
            t = L["type"]
            if t not in LAYER_TYPES:
                raise ValueError(f"netx layer type {t!r} is not one of {LAYER_TYPES}")
            g = grp.create_group(str(i))
            g.create_dataset("type", data=_s(t))
            g.create_dataset("shape", data=np.asarray(L["shape"], dtype=np.int64))
            if t == "conv":
                g.create_dataset("weight", data=np.asarray(L["weight"], dtype=np.int16))
                g.create_dataset("stride", data=np.asarray(L["stride"], dtype=np.int64))
                g.create_dataset("padding", data=np.asarray(L["padding"], dtype=np.int64))
                g.create_dataset("dilation", data=np.asarray([1, 1], dtype=np.int64))
                g.create_dataset("groups", data=np.int64(1))
            elif t == "dense":
                w = np.asarray(L["weight"], dtype=np.int16)
                g.create_dataset("weight", data=w)
                g.create_dataset("inFeatures", data=np.int64(w.shape[1]))
                g.create_dataset("outFeatures", data=np.int64(w.shape[0]))
            if t in ("conv", "dense") and L.get("bias") is not None:
                g.create_dataset("bias", data=np.asarray(L["bias"], dtype=np.int32))
            if "neuron" in L:
                n = L["neuron"]
                g.create_dataset("neuron/type", data=_s("CUBA"))
                g.create_dataset("neuron/iDecay", data=np.int64(n["iDecay"]))
                g.create_dataset("neuron/vDecay", data=np.int64(n["vDecay"]))
                g.create_dataset("neuron/vThMant", data=np.int64(n["vThMant"]))
                g.create_dataset("neuron/refDelay", data=np.int64(1))
                g.create_dataset("neuron/gradedSpike", data=np.bool_(False))


def _str(ds) -> str:
    v = ds[()]
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0]
    return v.decode("ascii") if isinstance(v, bytes) else str(v)


def read_netx(path: str) -> list:
    """The chip program stored in a netx file (inverse of write_netx)."""
    layers = []
    check_h5_sizes(path, "netx file")
    with h5py.File(path, "r") as f:
        grp = f["layer"]
        for i in range(len(grp)):
            g = grp[str(i)]
            L = {"type": _str(g["type"]), "shape": [int(x) for x in np.atleast_1d(g["shape"][()])]}
            if L["type"] == "conv":
                L.update(weight=g["weight"][()].astype(np.int64), stride=[int(x) for x in g["stride"][()]],
                         padding=[int(x) for x in g["padding"][()]])
            elif L["type"] == "dense":
                L["weight"] = g["weight"][()].astype(np.int64)
            if L["type"] in ("conv", "dense"):
                L["bias"] = g["bias"][()].astype(np.int64) if "bias" in g else None
            if "neuron" in g:
                L["neuron"] = {k: int(g["neuron"][k][()]) for k in ("iDecay", "vDecay", "vThMant")}
            layers.append(L)
    return layers
