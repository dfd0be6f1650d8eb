"""torch model -> NIR graph (docs/ir.md). Dispatch on module type through LOWER; one small function per type.
Every module the frontend cannot lower is collected and reported in ONE error; nothing is dropped silently."""
from __future__ import annotations

import json

import nir
import numpy as np
from torch import nn

from ..errors import SltError
from ..nn import LIF, MLP, SSA, ConvPEP, PatchSelect, ResBlock, SConv2d, SLinear, Tokens, TokenSum, TransformerBlock
from . import meta as K
from .graph import conv_out_shape


class Builder:
    def __init__(self):
        self.nodes: dict = {}
        self.edges: list = []
        self.unsupported: list = []

    def add(self, path: str, node, inputs: list[str]) -> str:
        name = path.replace(".", "_") or "root"
        assert name not in self.nodes, name
        self.nodes[name] = node
        self.edges += [(i, name) for i in inputs]
        return name


def _np(t):
    return t.detach().cpu().numpy().astype(np.float32)


def _synapse_weight(m):
    wq, scale, bias = m.folded()
    w = wq * scale.view(-1, *([1] * (wq.ndim - 1)))
    return _np(w), _np(bias)


def _synapse_meta(m, path, w):
    return {K.LAYER: path, K.KIND: m.kind, K.BINARY: int(m.binary), K.IN_SCALE: float(m.in_scale),
            K.DENSITY: float((w != 0).sum() / w.size)}


def lower_conv(m: SConv2d, path, x, shape, b):
    w, bias = _synapse_weight(m)
    node = nir.Conv2d(input_shape=(shape[1], shape[2]), weight=w, stride=(m.stride, m.stride),
                      padding=(m.padding, m.padding), dilation=(1, 1), groups=1, bias=bias,
                      metadata=_synapse_meta(m, path, w))
    return b.add(path, node, x), conv_out_shape(node, shape)


def lower_linear(m: SLinear, path, x, shape, b):
    w, bias = _synapse_weight(m)
    md = _synapse_meta(m, path, w)
    if len(shape) == 2:
        md[K.TOKENS] = int(shape[0])
    return b.add(path, nir.Affine(weight=w, bias=bias, metadata=md), x), [*shape[:-1], w.shape[0]]


def lower_lif(m: LIF, path, x, shape, b, dt):
    beta, thr = m.beta, m.threshold
    tau = dt / (1.0 - beta) if beta < 1.0 else 1e30
    def full(v):
        return np.full(shape, v, dtype=np.float32)
    node = nir.LIF(tau=full(tau), r=full(tau / dt if beta < 1.0 else 1.0 / dt), v_leak=full(0.0),
                   v_threshold=full(thr), v_reset=full(0.0),
                   metadata={K.LAYER: path, K.BETA: float(beta), K.THRESHOLD: float(thr), K.RESET: m.reset})
    return b.add(path, node, x), shape


def lower_flatten(m: nn.Flatten, path, x, shape, b):
    if m.start_dim != 1 or m.end_dim != -1:
        b.unsupported.append((path, "Flatten", f"start_dim={m.start_dim}, end_dim={m.end_dim}",
                              "flatten everything but the batch (nn.Flatten(1))"))
    n = int(np.prod(shape))
    return b.add(path, nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1,
                                   metadata={K.LAYER: path}), x), [n]


def slt_op(b, path, op, x, out_shape, **md):
    """An slt-only op: nir.Scale(ones(out_shape)) whose meaning is metadata slt.op (docs/ir.md)."""
    node = nir.Scale(scale=np.ones(out_shape, np.float32), metadata={K.OP: op, K.LAYER: path, **md})
    return b.add(path, node, x)


def lower_seq(m, path, x, shape, b, dt):
    out = x
    for name, child in m.named_children():
        o, shape = lower_module(child, f"{path}.{name}" if path else name, out, shape, b, dt)
        out = [o]
    return out[0], shape


def lower_resblock(m: ResBlock, path, x, shape, b, dt):
    c1, s1 = lower_conv(m.conv1, f"{path}.conv1", x, shape, b)
    l1, _ = lower_lif(m.lif1, f"{path}.lif1", [c1], s1, b, dt)
    c2, s2 = lower_conv(m.conv2, f"{path}.conv2", [l1], s1, b)
    sc = x if m.shortcut is None else [lower_conv(m.shortcut, f"{path}.shortcut", x, shape, b)[0]]
    return lower_lif(m.lif2, f"{path}.lif2", [c2] + sc, s2, b, dt)


def lower_convpep(m: ConvPEP, path, x, shape, b, dt):
    s, shp = lower_seq(m.stem, f"{path}.stem", x, shape, b, dt)
    r, _ = lower_conv(m.rpe, f"{path}.rpe", [s], shp, b)
    return lower_lif(m.rpe_lif, f"{path}.rpe_lif", [r, s], shp, b, dt)


def lower_tokens(m, path, x, shape, b, dt):
    out = [shape[1] * shape[2], shape[0]]
    return slt_op(b, path, "tokens", x, out), out


def lower_patch_select(m: PatchSelect, path, x, shape, b, dt):
    idx = m.index.cpu().numpy().astype(np.int64)
    b.graph_meta[K.N_PATCHES] = int(m.n_patches)
    b.graph_meta[K.PATCH_INDEX] = idx
    if len(idx) == m.n_patches:
        return x[0], shape
    out = [len(idx), shape[1]]
    return slt_op(b, path, "patch_select", x, out, **{K.PATCH_INDEX: idx}), out


def lower_ssa(m: SSA, path, x, shape, b, dt):
    qkv = []
    for n in ("q", "k", "v"):
        lin, s = lower_linear(getattr(m, n), f"{path}.{n}", x, shape, b)
        qkv.append(lower_lif(getattr(m, n + "_lif"), f"{path}.{n}_lif", [lin], s, b, dt)[0])
    a = slt_op(b, f"{path}.attention", "attention", qkv, shape, **{K.QKV: json.dumps(qkv), K.HEADS: m.heads,
                                                                    K.ATTN_SCALE: m.scale})
    al, _ = lower_lif(m.attn_lif, f"{path}.attn_lif", [a], shape, b, dt)
    p, _ = lower_linear(m.proj, f"{path}.proj", [al], shape, b)
    return lower_lif(m.proj_lif, f"{path}.proj_lif", [p], shape, b, dt)


def lower_mlp(m: MLP, path, x, shape, b, dt):
    f1, s1 = lower_linear(m.fc1, f"{path}.fc1", x, shape, b)
    l1, _ = lower_lif(m.lif1, f"{path}.lif1", [f1], s1, b, dt)
    f2, s2 = lower_linear(m.fc2, f"{path}.fc2", [l1], s1, b)
    return lower_lif(m.lif2, f"{path}.lif2", [f2], s2, b, dt)


def lower_block(m: TransformerBlock, path, x, shape, b, dt):
    a, _ = lower_ssa(m.attn, f"{path}.attn", x, shape, b, dt)
    add1 = slt_op(b, f"{path}.add1", "add", x + [a], shape)
    f, _ = lower_mlp(m.mlp, f"{path}.mlp", [add1], shape, b, dt)
    return slt_op(b, f"{path}.add2", "add", [add1, f], shape), shape


def lower_token_sum(m, path, x, shape, b, dt):
    return slt_op(b, path, "token_sum", x, [shape[1]]), [shape[1]]


LOWER = {
    SConv2d: lambda m, p, x, s, b, dt: lower_conv(m, p, x, s, b),
    SLinear: lambda m, p, x, s, b, dt: lower_linear(m, p, x, s, b),
    LIF: lower_lif,
    nn.Flatten: lambda m, p, x, s, b, dt: lower_flatten(m, p, x, s, b),
    nn.Sequential: lower_seq,
    ResBlock: lower_resblock,
    ConvPEP: lower_convpep,
    Tokens: lower_tokens,
    PatchSelect: lower_patch_select,
    SSA: lower_ssa,
    MLP: lower_mlp,
    TransformerBlock: lower_block,
    TokenSum: lower_token_sum,
}


def lower_module(m, path, x, shape, b, dt):
    fn = LOWER.get(type(m))
    if fn is None:
        b.unsupported.append((path, type(m).__name__, "no NIR lowering for this module type",
                              f"use a block from slt_deploy.nn or add a lowering to LOWER in {__name__}"))
        return (x[0] if x else "input"), shape
    return fn(m, path, x, shape, b, dt)


def to_nir(model, meta: dict) -> nir.NIRGraph:
    """Lower a SpikingNet (eval arithmetic, BN folded) to an NIR graph with slt.* metadata."""
    model.eval()
    b = Builder()
    b.graph_meta = {}
    shape = list(meta["input"]["shape"])
    dt = float(meta.get("dt", 1e-4))
    b.nodes["input"] = nir.Input(input_type={"input": np.array(shape)})
    last, out_shape = lower_module(model.body, "body", ["input"], shape, b, dt)
    if b.unsupported:
        lines = [f"  {p or '<root>'} ({t}): {why}; {fix}" for p, t, why, fix in b.unsupported]
        raise SltError(f"{len(lines)} module(s) cannot be lowered to NIR:\n" + "\n".join(lines))
    b.nodes["output"] = nir.Output(output_type={"output": np.array(out_shape)})
    b.edges.append((last, "output"))
    r = meta["recipe"]
    gm = {K.FORMAT_VERSION: 1, K.T: int(meta["T"]), K.DT: dt, K.ENCODING: meta["encoding"],
          K.INPUT_MAX: float(meta["input"]["range"][1]), K.INPUT_SHAPE: np.array(shape, np.int64),
          K.LABELS: json.dumps(meta["labels"]), K.READOUT: "sum", K.ARCH: r["arch"]["type"], K.NAME: r["name"],
          K.SOURCE_SHA256: meta.get("weights_sha256", ""), K.RECIPE: json.dumps(r), **b.graph_meta}
    if "ticket" in meta:
        gm[K.TICKET] = json.dumps(meta["ticket"])
    return nir.NIRGraph(nodes=b.nodes, edges=b.edges, metadata=gm, type_check=False)


def load_graph(ckpt_dir: str) -> nir.NIRGraph:
    from ..checkpoint import load

    model, meta = load(ckpt_dir)
    return to_nir(model, meta)
