"""Foreign NIR graphs (snntorch's export_to_nir, norse, spikingjelly, ...) -> our IR (docs/ir.md), so a model trained
elsewhere can be exported to every target and verified against the NIR interpreter running the foreign graph.

    slt-deploy import net.nir --T 8 --out net.slt.nir [--input-max 1] [--encoding direct] [--labels a,b,...]

What it takes: Input `[C, H, W]` (or `[N]`: a dense net, given the input shape `[N, 1, 1]` and a Flatten), Conv2d
(dilation 1, groups 1, integer padding, square kernel), Affine/Linear, LIF/IF with per-layer uniform parameters,
`v_leak = 0`, `v_reset = 0`, Flatten of a whole sample (either batch convention), Output; edges summed at a node as
NIR defines. Every node it cannot take is listed in ONE error.

The neuron parameters are read with NIR's Euler step, as our interpreter runs a foreign graph (`Interpreter`
without slt.* metadata): `beta = 1 - dt/tau`, input weight `w = r dt / tau` (float32). Our IR has no input weight:
`threshold = v_threshold / w` (the same spikes, v scaled by 1/w; exact when w == 1). So the imported graph and the
foreign one agree up to float rounding where w != 1 (snntorch writes r = tau/dt, w = 1.0000001 in float32);
`verify` states the measured agreement."""
from __future__ import annotations

import hashlib
import json

import nir
import numpy as np

from ..errors import SltError
from ..fsio import read_nir_graph
from . import meta as K
from .graph import preds, topo_order


def _uniform(node_name, what, a) -> float:
    u = np.unique(np.asarray(a, np.float32))
    if u.size != 1:
        raise ValueError(f"{what} differs between neurons ({u.size} values); per-layer values only")
    return float(u[0])


def _lif(name, node, dt, problems):
    try:
        if isinstance(node, nir.IF):
            beta = np.float32(1.0)
            w = _uniform(name, "r", np.asarray(node.r, np.float32) * np.float32(dt))
        else:
            tau = np.asarray(node.tau, np.float32)
            beta = _uniform(name, "tau", np.float32(1.0) - np.float32(dt) / tau)
            w = _uniform(name, "r", np.asarray(node.r, np.float32) * np.float32(dt) / tau)
            if np.any(np.asarray(node.v_leak) != 0):
                raise ValueError("v_leak != 0")
        if getattr(node, "v_reset", None) is not None and np.any(np.asarray(node.v_reset) != 0):
            raise ValueError("v_reset != 0 (our neurons reset to 0)")
        vth = _uniform(name, "v_threshold", node.v_threshold)
        if not (0.0 <= float(beta) <= 1.0) or not w > 0:
            raise ValueError(f"beta = {float(beta)} outside [0, 1] or input weight r*dt/tau = {w} <= 0")
    except ValueError as e:
        problems.append(f"{name} ({type(node).__name__}): {e}")
        return None
    shape = np.shape(node.v_threshold)
    thr = float(np.float32(vth) / np.float32(w))
    full = lambda v: np.full(shape, v, np.float32)  # noqa: E731
    b = float(beta)
    tau = dt / (1.0 - b) if b < 1.0 else 1e30
    return nir.LIF(tau=full(tau), r=full(tau / dt if b < 1.0 else 1.0 / dt), v_leak=full(0.0), v_threshold=full(thr),
                   v_reset=full(0.0), metadata={K.LAYER: name, K.BETA: b, K.THRESHOLD: thr, K.RESET: "zero"})


def _syn_meta(name, kind, w):
    return {K.LAYER: name, K.KIND: kind, K.BINARY: 0, K.IN_SCALE: 1.0, K.DENSITY: float((w != 0).sum() / w.size)}


def import_graph(g: nir.NIRGraph, T: int, dt: float = 1e-4, input_max: float = 1.0, encoding: str = "direct",
                 labels: list | None = None, name: str = "imported", source: bytes = b"") -> nir.NIRGraph:
    """A foreign NIR graph -> our in-memory IR with slt.* metadata. SltError lists every node it cannot take."""
    if T < 1:
        raise SltError(f"T = {T} steps", "pass --T >= 1 (the foreign graph does not say how many steps it runs)")
    if encoding not in ("direct", "rate"):
        raise SltError(f"unknown encoding {encoding!r}", "use direct or rate")
    problems, nodes, edges = [], {}, list(g.edges)
    try:
        order = topo_order(g)
    except ValueError as e:
        raise SltError(f"the NIR graph cannot be imported: {e}", "recurrent graphs are not supported") from None
    shapes, inputs = {}, [n for n in order if isinstance(g.nodes[n], nir.Input)]
    outputs = [n for n in order if isinstance(g.nodes[n], nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise SltError(f"the graph has {len(inputs)} Input and {len(outputs)} Output nodes",
                       "import graphs with exactly one of each")
    for n in order:
        node, p = g.nodes[n], preds(g, n)
        ins = shapes.get(p[0]) if p else None
        if p and any(shapes.get(q) != ins for q in p):
            problems.append(f"{n}: its inputs have different shapes {[shapes.get(q) for q in p]}")
        if isinstance(node, nir.Input):
            shp = [int(v) for v in np.asarray(node.input_type["input"]).reshape(-1)]
            if len(shp) == 1:  # a dense net: input [N, 1, 1] + a Flatten in front of its first layer
                nodes["input"] = nir.Input(input_type={"input": np.array([shp[0], 1, 1])})
                nodes["input_flatten"] = nir.Flatten(input_type={"input": np.array([shp[0], 1, 1])}, start_dim=0,
                                                     end_dim=-1, metadata={K.LAYER: "input_flatten"})
                edges = [("input_flatten" if s == n else s, d) for s, d in edges] + [("input", "input_flatten")]
                shapes["input_flatten"] = shp
                shapes[n] = shp
                continue
            if len(shp) != 3:
                problems.append(f"{n} (Input): shape {shp}; only [C, H, W] images or [N] vectors")
            nodes[n] = nir.Input(input_type={"input": np.array(shp)})
            shapes[n] = shp
        elif isinstance(node, nir.Conv2d):
            w = np.asarray(node.weight, np.float32)
            st = [int(v) for v in np.broadcast_to(np.atleast_1d(node.stride), (2,))]
            pad = node.padding
            bad = []
            if isinstance(pad, str) or len(set(int(v) for v in np.atleast_1d(pad))) != 1:
                bad.append(f"padding {pad!r} (one integer for both dims)")
            if np.any(np.atleast_1d(node.dilation) != 1) or int(node.groups) != 1:
                bad.append("dilation/groups other than 1")
            if w.shape[2] != w.shape[3] or st[0] != st[1]:
                bad.append(f"kernel {w.shape[2:]} / stride {st} not square")
            if ins is None or len(ins) != 3 or ins[0] != w.shape[1]:
                bad.append(f"input shape {ins} does not match weight {list(w.shape)}")
            if bad:
                problems.append(f"{n} (Conv2d): " + "; ".join(bad))
                shapes[n] = ins
                continue
            pd = int(np.atleast_1d(pad)[0])
            bias = np.asarray(node.bias if node.bias is not None else np.zeros(w.shape[0]), np.float32)
            nodes[n] = nir.Conv2d(input_shape=(ins[1], ins[2]), weight=w, stride=(st[0], st[0]), padding=(pd, pd),
                                  dilation=(1, 1), groups=1, bias=bias, metadata=_syn_meta(n, "conv", w))
            k = w.shape[2]
            shapes[n] = [w.shape[0], (ins[1] + 2 * pd - k) // st[0] + 1, (ins[2] + 2 * pd - k) // st[0] + 1]
        elif isinstance(node, (nir.Affine, nir.Linear)):
            w = np.asarray(node.weight, np.float32)
            if w.ndim != 2 or ins is None or ins != [w.shape[1]]:
                problems.append(f"{n} ({type(node).__name__}): weight {list(w.shape)} on input {ins}")
                shapes[n] = ins
                continue
            b = np.asarray(getattr(node, "bias", None) if getattr(node, "bias", None) is not None
                           else np.zeros(w.shape[0]), np.float32)
            nodes[n] = nir.Affine(weight=w, bias=b, metadata=_syn_meta(n, "linear", w))
            shapes[n] = [w.shape[0]]
        elif isinstance(node, (nir.LIF, nir.IF)):
            lif = _lif(n, node, dt, problems)
            if lif is not None and list(np.shape(node.v_threshold)) != ins:
                problems.append(f"{n}: neuron shape {list(np.shape(node.v_threshold))} != input {ins}")
            nodes[n] = lif
            shapes[n] = ins
        elif isinstance(node, nir.Flatten):
            nodes[n] = nir.Flatten(input_type={"input": np.array(ins)}, start_dim=0, end_dim=-1,
                                   metadata={K.LAYER: n})
            shapes[n] = [int(np.prod(ins))] if ins else None
            full = node.start_dim in (0, -len(ins or [0]))
            batch_convention = node.start_dim == 1 and all(
                isinstance(g.nodes[d], (nir.Affine, nir.Linear)) and np.shape(g.nodes[d].weight)[-1] == shapes[n][0]
                for s, d in g.edges if s == n)
            if node.end_dim != -1 or not (full or batch_convention):
                problems.append(f"{n} (Flatten): start_dim={node.start_dim}, end_dim={node.end_dim} does not "
                                "flatten the whole sample")
        elif isinstance(node, nir.Output):
            if ins is None or len(ins) != 1:
                problems.append(f"{n} (Output): input shape {ins}; class scores [classes] expected")
            nodes[n] = nir.Output(output_type={"output": np.array(ins or [0])})
            shapes[n] = ins
        else:
            problems.append(f"{n} ({type(node).__name__}): no import for this node type")
            shapes[n] = ins
    if problems:
        raise SltError(f"{len(problems)} node(s) of the NIR graph cannot be imported:\n  "
                       + "\n  ".join(problems),
                       "supported: Input, Conv2d, Affine, Linear, LIF, IF, Flatten, Output (docs/interop.md)")
    in_shape = shapes[inputs[0]] if "input_flatten" not in nodes else [shapes[inputs[0]][0], 1, 1]
    n_cls = shapes[outputs[0]][0]
    labels = [str(i) for i in range(n_cls)] if labels is None else [str(v) for v in labels]
    if len(labels) != n_cls:
        raise SltError(f"{len(labels)} labels for {n_cls} classes", "pass one label per output")
    if "input_flatten" in nodes:
        nodes, edges = _dense_input_as_conv(nodes, edges)
    tmp = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    ordered = {k: nodes[k] for k in topo_order(tmp)}  # nodes stored in execution order
    gm = {K.FORMAT_VERSION: 1, K.T: int(T), K.DT: float(dt), K.ENCODING: encoding, K.INPUT_MAX: float(input_max),
          K.INPUT_SHAPE: np.array(in_shape, np.int64), K.LABELS: json.dumps(labels), K.READOUT: "sum",
          K.ARCH: "imported", K.NAME: name, K.SOURCE_SHA256: hashlib.sha256(source).hexdigest() if source else "",
          K.RECIPE: json.dumps({"name": name, "imported": True})}
    return nir.NIRGraph(nodes=ordered, edges=edges, metadata=gm, type_check=False)


def _dense_input_as_conv(nodes: dict, edges: list):
    """A dense net's input [N, 1, 1] -> Flatten -> Affine -> LIF becomes input -> Conv2d 1x1 -> LIF [O, 1, 1] ->
    Flatten (the same sums; a first layer that reads the input directly, as the Loihi plan wants). Left as it is
    when the first layers are not that simple chain."""
    firsts = [d for s, d in edges if s == "input_flatten"]
    lifs = {a: [d for s, d in edges if s == a] for a in firsts}
    ok = all(isinstance(nodes[a], nir.Affine) and lifs[a] and all(
        isinstance(nodes[lf], nir.LIF) and [s for s, d in edges if d == lf] == [a] for lf in lifs[a]) for a in firsts)
    if not ok:
        return nodes, edges
    nodes = dict(nodes)
    del nodes["input_flatten"]
    edges = [("input", d) if s == "input_flatten" else (s, d) for s, d in edges if (s, d) != ("input", "input_flatten")]
    for a in firsts:
        w = np.asarray(nodes[a].weight, np.float32)
        nodes[a] = nir.Conv2d(input_shape=(1, 1), weight=np.ascontiguousarray(w[:, :, None, None]), stride=(1, 1),
                              padding=(0, 0), dilation=(1, 1), groups=1, bias=np.asarray(nodes[a].bias, np.float32),
                              metadata={**nodes[a].metadata, K.KIND: "conv"})
        for lf in lifs[a]:
            old = nodes[lf]
            r3 = lambda v: np.asarray(v, np.float32).reshape(-1, 1, 1)  # noqa: E731
            nodes[lf] = nir.LIF(tau=r3(old.tau), r=r3(old.r), v_leak=r3(old.v_leak), v_threshold=r3(old.v_threshold),
                                v_reset=r3(old.v_reset), metadata=old.metadata)
            f = f"{lf}_flatten"
            nodes[f] = nir.Flatten(input_type={"input": np.array([w.shape[0], 1, 1])}, start_dim=0, end_dim=-1,
                                   metadata={K.LAYER: f})
            edges = [(f, d) if s == lf else (s, d) for s, d in edges] + [(lf, f)]
    return nodes, edges


def read_foreign(path: str, T: int, **kw) -> nir.NIRGraph:
    """A .nir file written by another tool -> our IR (import_graph); one-line SltError for unreadable files."""
    import os

    if not os.path.isfile(path):
        raise SltError(f"{path} does not exist", "pass a .nir file (e.g. from snntorch's export_to_nir + nir.write)")
    g = read_nir_graph(path, "check it was written by nir.write")
    if any(str(k).startswith("slt.") for k in (g.metadata or {})):
        raise SltError(f"{path} was written by slt-deploy already", "export or verify it directly")
    with open(path, "rb") as f:
        src = f.read()
    return import_graph(g, T, source=src, **kw), g


class GraphReference:
    """An NIR graph of ours (e.g. an imported one) in the role of verify's PyTorch reference: encode(images) and
    run(seq) -> logits through the NIR interpreter. It exposes no modules, so verify compares logits and
    predictions (spike rasters need the PyTorch model's LIF modules)."""

    def __init__(self, graph: nir.NIRGraph):
        from .graph import gmeta
        from .interpreter import Interpreter

        self.graph, self.interp = graph, Interpreter(graph)
        self.T, self.encoding = int(gmeta(graph, K.T, 1)), gmeta(graph, K.ENCODING, "direct")
        self.input_max = float(gmeta(graph, K.INPUT_MAX, 1.0))
        self.input_shape = [int(v) for v in gmeta(graph, K.INPUT_SHAPE, [])]

    def encode(self, images, generator=None):
        from ..data import encode

        images = images.reshape(len(images), *self.input_shape)  # e.g. [1, 8, 8] digits into a dense [64, 1, 1]
        return encode(images, self.T, self.encoding, self.input_max, generator)

    def run(self, seq):
        import torch

        return torch.as_tensor(self.interp.run(np.asarray(seq, np.float32))["logits"])

    def named_modules(self):
        return iter(())
