"""The .nir FILE form of our IR: the same graph written in the conventions every NIR importer reads the same way
(docs/ir.md "The .nir file", docs/interop.md). `to_file` is applied by the nir target's writer, `from_file` by its
reader; the in-memory IR that the other targets compile (onnx, packed, loihi) is untouched by both.

- LIF: `r = 1`, `tau = dt / (1 - beta)`, `v_threshold = (1 - beta) * threshold`. NIR's Euler step then keeps
  `v_file = (1 - beta) * v`, the same spikes as `v = beta v + I` with `threshold` — and norse and spikingjelly
  (which take r = 1), snntorch (which divides the threshold by r dt / tau) all compute that one model.
  beta = 1 (IF) is an `nir.IF` with `r = 1/dt` (NIR: v += dt r I = I). Exact parameters stay in slt.beta,
  slt.threshold, slt.reset, which our runtimes use.
- Flatten: `start_dim = -rank` of the per-sample shape: flattens the sample, batched or not, in every importer.
- Transformer (graph metadata `slt.token_layout = "DN"`): NIR has no transpose, so tokens are stored channel-major
  `[D, N]` and every node in NIR-typed form: tokens = Flatten, token-wise affine = Conv1d (kernel 1), token LIFs
  with `[D, N]` parameters, patch selection = a batched Affine with a 0/1 selection matrix, token sum = a batched
  Linear of ones + Flatten (node `<name>__flat`), attention and residual adds = `Scale` of ones `[D, N]` (their
  meaning is slt.op). The file passes `nir.read` with type checking; `from_file` restores the `[N, D]` IR exactly.
Node metadata `slt.file_form` names each rewritten node's file form."""
from __future__ import annotations

import nir
import numpy as np

from ..errors import SltError, first_line
from . import meta as K
from .graph import conv_attrs, gmeta, nmeta, op_of, preds, topo_order

FILE_FORM = "slt.file_form"
TOKEN_LAYOUT = "slt.token_layout"


def _md(node, **extra) -> dict:
    return {**dict(getattr(node, "metadata", None) or {}), **extra}


def _strip(md: dict) -> dict:
    return {k: v for k, v in md.items() if k != FILE_FORM}


def _f32(shape, v):
    return np.full(shape, v, dtype=np.float32)


def _lif_file(node, dt: float, transpose: bool):
    shape = np.shape(node.v_threshold)
    shape = shape[::-1] if transpose else shape
    beta, thr = float(nmeta(node, K.BETA)), float(nmeta(node, K.THRESHOLD))
    md = _md(node, **({FILE_FORM: "lif_tokens"} if transpose else {}))
    if beta >= 1.0:
        return nir.IF(r=_f32(shape, 1.0 / dt), v_threshold=_f32(shape, thr), v_reset=_f32(shape, 0.0), metadata=md)
    return nir.LIF(tau=_f32(shape, dt / (1.0 - beta)), r=_f32(shape, 1.0), v_leak=_f32(shape, 0.0),
                   v_threshold=_f32(shape, (1.0 - beta) * thr), v_reset=_f32(shape, 0.0), metadata=md)


def to_file(g: nir.NIRGraph) -> nir.NIRGraph:
    """In-memory IR (frontend.to_nir) -> the graph written to .nir files. SltError if the result would not pass
    NIR's own type checking."""
    dt = float(gmeta(g, K.DT, 1e-4))
    tokens = any(op_of(n) == "tokens" for n in g.nodes.values())
    shapes = _shapes(g)
    nodes, edges = {}, list(g.edges)
    for name, node in g.nodes.items():
        op = op_of(node)
        tok = tokens and len(shapes[name]) == 2  # a [N, D] token tensor leaves this node
        if isinstance(node, (nir.LIF, nir.IF)) and nmeta(node, K.BETA) is not None:
            nodes[name] = _lif_file(node, dt, tok)
        elif isinstance(node, nir.Flatten):
            ins = shapes[preds(g, name)[0]]
            nodes[name] = nir.Flatten(input_type={"input": np.array(ins)}, start_dim=-len(ins), end_dim=-1,
                                      metadata=_md(node))
        elif op == "tokens":
            ins = shapes[preds(g, name)[0]]
            nodes[name] = nir.Flatten(input_type={"input": np.array(ins)}, start_dim=-2, end_dim=-1,
                                      metadata=_md(node, **{FILE_FORM: "tokens"}))
        elif op == "patch_select":
            n_in, d = shapes[preds(g, name)[0]]
            idx = np.asarray(nmeta(node, K.PATCH_INDEX), np.int64)
            sel = np.zeros((len(idx), n_in), np.float32)
            sel[np.arange(len(idx)), idx] = 1.0
            nodes[name] = nir.Affine(weight=np.ascontiguousarray(np.broadcast_to(sel, (d, *sel.shape))),
                                     bias=np.zeros((d, len(idx)), np.float32),
                                     metadata=_md(node, **{FILE_FORM: "patch_select"}))
        elif op == "token_sum":
            n_in, d = shapes[preds(g, name)[0]]
            nodes[name] = nir.Linear(weight=np.ones((d, 1, n_in), np.float32),
                                     metadata=_md(node, **{FILE_FORM: "token_sum"}))
            flat = f"{name}__flat"
            nodes[flat] = nir.Flatten(input_type={"input": np.array([d, 1])}, start_dim=-2, end_dim=-1,
                                      metadata={FILE_FORM: "token_sum_flatten"})
            edges = [(flat, dst) if src == name else (src, dst) for src, dst in edges]
            edges.append((name, flat))
        elif tok and op in ("attention", "add"):
            nodes[name] = nir.Scale(scale=np.ones(shapes[name][::-1], np.float32),
                                    metadata=_md(node, **{FILE_FORM: "scale_tokens"}))
        elif tok and isinstance(node, nir.Affine):
            w = np.asarray(node.weight, np.float32)
            nodes[name] = nir.Conv1d(input_shape=int(shapes[name][0]), weight=np.ascontiguousarray(w[:, :, None]),
                                     stride=1, padding=0, dilation=1, groups=1, bias=np.asarray(node.bias, np.float32),
                                     metadata=_md(node, **{FILE_FORM: "affine_tokens"}))
        else:
            nodes[name] = node
    md = dict(g.metadata or {})
    if tokens:
        md[TOKEN_LAYOUT] = "DN"
    out = nir.NIRGraph(nodes=nodes, edges=edges, metadata=md, type_check=False)
    try:  # the file must pass NIR's own type checking (what nir.read does by default)
        nir.NIRGraph(nodes=dict(nodes), edges=list(edges), metadata=md, type_check=True)
    except (ValueError, AssertionError, NotImplementedError) as e:
        raise SltError(f"the graph would not pass NIR's type checking: {first_line(e, 200)}",
                       "report this: every graph slt-deploy makes is meant to type-check (docs/ir.md)") from None
    return out


def from_file(g: nir.NIRGraph) -> nir.NIRGraph:
    """A graph read from a .nir file -> the in-memory IR. Graphs without file-form nodes (older files, foreign
    graphs) come back unchanged."""
    if not any(nmeta(n, FILE_FORM) for n in g.nodes.values()):
        return g
    nodes, edges = {}, list(g.edges)
    for name, node in g.nodes.items():
        form = nmeta(node, FILE_FORM)
        md = _strip(_md(node))
        if form == "token_sum_flatten":
            src = preds(g, name)[0]
            edges = [(s, d) for s, d in edges if (s, d) != (src, name)]
            edges = [(src, d) if s == name else (s, d) for s, d in edges]
            continue
        if form == "lif_tokens":
            t = lambda a: np.ascontiguousarray(np.asarray(a).T)  # noqa: E731
            nodes[name] = nir.LIF(tau=t(node.tau), r=t(node.r), v_leak=t(node.v_leak), v_threshold=t(node.v_threshold),
                                  v_reset=t(node.v_reset), metadata=md)
        elif form == "tokens":
            d, h, w = (int(v) for v in node.input_type["input"])
            nodes[name] = nir.Scale(scale=np.ones((h * w, d), np.float32), metadata=md)
        elif form == "patch_select":
            d, count = np.shape(node.bias)
            nodes[name] = nir.Scale(scale=np.ones((count, d), np.float32), metadata=md)
        elif form == "token_sum":
            nodes[name] = nir.Scale(scale=np.ones(np.shape(node.weight)[0], np.float32), metadata=md)
        elif form == "scale_tokens":
            nodes[name] = nir.Scale(scale=np.ones(np.shape(node.scale)[::-1], np.float32), metadata=md)
        elif form == "affine_tokens":
            nodes[name] = nir.Affine(weight=np.ascontiguousarray(np.asarray(node.weight)[:, :, 0]),
                                     bias=np.asarray(node.bias), metadata=md)
        else:
            nodes[name] = node
    gm = {k: v for k, v in (g.metadata or {}).items() if k != TOKEN_LAYOUT}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=gm, type_check=False)


def _shapes(g: nir.NIRGraph) -> dict:
    """Per-sample output shape of every node of the in-memory IR."""
    out = {}
    for n in topo_order(g):
        node = g.nodes[n]
        p = preds(g, n)
        if isinstance(node, nir.Input):
            out[n] = [int(v) for v in node.input_type["input"]]
        elif isinstance(node, nir.Scale):
            out[n] = list(np.shape(node.scale))
        elif isinstance(node, nir.Conv2d):
            ci, h, w = out[p[0]]
            k = np.shape(node.weight)
            st, pd = conv_attrs(node)
            out[n] = [k[0], (h + 2 * pd[0] - k[2]) // st[0] + 1, (w + 2 * pd[1] - k[3]) // st[1] + 1]
        elif isinstance(node, nir.Affine):
            out[n] = [*out[p[0]][:-1], int(np.shape(node.weight)[0])]
        elif isinstance(node, nir.Flatten):
            out[n] = [int(np.prod(out[p[0]]))]
        else:  # LIF, IF, Output: elementwise
            out[n] = list(out[p[0]])
    return out
