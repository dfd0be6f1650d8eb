"""NIR graph -> Loihi 2 plan: partition (largest spiking prefix on the chip, the rest on the host; identity
residuals were folded before, by the target's pass passes/fold_identity_residuals.py), quantization to the integers netx/Loihi hold, and the hardware-limit check. Pure numpy: exporting
never needs Lava. The meaning of every number is in docs/targets/loihi.md.

Quantization of one chip layer (synapse W, b -> CUBA LIF with beta, threshold thr):
    k = m / thr with m = floor(127 * thr / max|W|) (capped so b*k fits the 13-bit bias mantissa and m the 17-bit
    threshold mantissa); w = rint(W * k) (8-bit signed mantissa, kept weights never round to 0: the mask stays
    exact, a binarized channel becomes +-one mantissa), bias = rint(b * k), vThMant = m (exact), vDecay =
    rint((1 - beta) * 4096), iDecay = 4096 (no current memory: v = beta v + I as in the float model).
Head (the Affine feeding the Output): a non-leaky integrator (vDecay 0, vThMant max, never spikes); its voltage
after T steps / (64 k) is the logits.
Input (direct encoding): the first synaptic layer runs on the host on the raw image, its current is scaled by k0,
rounded to 16-bit integers and delivered as graded spikes through a 1x1 identity synapse to the first LIF layer.
Rate encoding: the 0/1 input spikes enter the chip and the first synaptic layer runs on the chip.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from importlib.resources import files

import nir
import numpy as np
import yaml

from ...errors import SltError, brief
from ...ir import meta as K
from ...ir.graph import conv_attrs, gmeta, nmeta, op_of, preds, succs, topo_order
from ...passes.fold_identity_residuals import FOLDED

W_MANT = 127            # 8-bit signed weight mantissa (Loihi mixed-sign synapses)
BIAS_MANT = 4095        # 13-bit signed bias mantissa (netx uses bias exponent 6)
VTH_MANT = 131071       # 17-bit threshold mantissa
DECAY_SCALE = 4096      # decays are on the 12-bit scale
GRADED_MAX = 32767      # host current delivered as 16-bit graded spikes
GRADED_BITS = 16
STATE_MAX = (1 << 17) - 1   # |a| and |v| in weight units must stay below 2^23 / 2^6

ROOT = str(files("slt_deploy"))  # the package: hardware profiles are package data
DEFAULT_LIMITS = os.path.join(ROOT, "hardware", "loihi2.yaml")


# --- hardware limits ---------------------------------------------------------------------------------------------
def load_limits(path: str | None = None) -> dict:
    """The limits of a hardware profile yaml, checked by slt_deploy/schema.py (keys, types, positive values)."""
    from ...schema import check_loihi_limits

    p = path or DEFAULT_LIMITS
    if not os.path.isfile(p):
        raise SltError(f"hardware profile {p} does not exist", "pass a yaml like slt_deploy/hardware/loihi2.yaml")
    try:
        with open(p, "rb") as f:
            y = yaml.safe_load(f.read(1 << 20).decode("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise SltError(f"hardware profile {p} is unreadable ({brief(e, 100)})",
                       "pass a yaml like slt_deploy/hardware/loihi2.yaml") from None
    prof = check_loihi_limits(y, p)
    lim = {k: (int(v.value) if float(v.value).is_integer() else v.value) for k, v in prof.limits.items()}
    lim["_path"] = p
    return lim


# --- graph helpers -----------------------------------------------------------------------------------------------
def _shapes(g) -> dict:
    s = gmeta(g, "slt.shapes")
    if s:
        return {k: list(v) for k, v in json.loads(s).items()}
    from ...passes.check_shapes import check_shapes

    check_shapes(g)
    return {k: list(v) for k, v in json.loads(g.metadata["slt.shapes"]).items()}


def _is_syn(node):
    return isinstance(node, (nir.Conv2d, nir.Affine, nir.Linear))


def _lif(node):
    return isinstance(node, (nir.LIF, nir.IF))


def _label(g, n):
    node = g.nodes[n]
    return f"{nmeta(node, K.LAYER, n)} ({op_of(node)})"



# --- the plan ----------------------------------------------------------------------------------------------------
@dataclass
class Plan:
    layers: list = field(default_factory=list)      # chip program (netx.py layer dicts)
    info: list = field(default_factory=list)        # per chip layer: report entry (same index as layers)
    chip_nodes: list = field(default_factory=list)  # NIR nodes executed on the chip (or folded into it)
    input: dict = field(default_factory=dict)       # how the input reaches the chip
    readout: dict = field(default_factory=dict)     # voltage of the head, or the host part
    host_in: object = None                          # NIR graph: the first synaptic layer (direct encoding)
    host: object = None                             # NIR graph: what runs after the chip (partition)
    reasons: list = field(default_factory=list)     # why it cannot be exported (empty = ok)
    notes: list = field(default_factory=list)       # what the partition left to the host, and why
    cores: int = 0
    core_reason: str = ""                           # the chip-count reason (an option, chips=N, can lift it)
    meta: dict = field(default_factory=dict)


def _quant_weights(w: np.ndarray, k: float) -> np.ndarray:
    q = np.rint(w.astype(np.float64) * k)
    q = np.where((w != 0) & (q == 0), np.sign(w), q)          # kept weights stay kept
    return np.clip(q, -W_MANT, W_MANT).astype(np.int64)


def _fan_in(node, w_int, in_shape):
    """(synapses, max fan-in) counting only kept weights that land inside the input (conv padding excluded)."""
    if isinstance(node, nir.Conv2d):
        from .chip import conv_int

        st, pd = conv_attrs(node)
        ones = np.ones((1, *in_shape), np.int64)
        per = conv_int(ones, (w_int != 0).astype(np.int64), st, pd)[0]
        return int(per.sum()), int(per.max())
    nz = (w_int != 0).sum(axis=1)
    return int(nz.sum()), int(nz.max())


def _neuron_of(lif) -> tuple[float, float, str]:
    beta = nmeta(lif, K.BETA)
    thr = nmeta(lif, K.THRESHOLD)
    if beta is None or thr is None:  # a foreign NIR LIF: derive from tau/dt
        raise ValueError("LIF without slt.beta/slt.threshold")
    return float(beta), float(thr), nmeta(lif, K.RESET, "zero")


def _chip_ok(g, n, shapes) -> str | None:
    """Why node n cannot be a netx layer on its own terms (None = it can)."""
    node = g.nodes[n]
    op = op_of(node)
    if isinstance(node, nir.Conv2d):
        try:
            conv_attrs(node)
        except ValueError as e:
            return f"conv {e}"
        if int(node.groups) != 1 or any(int(d) != 1 for d in np.atleast_1d(node.dilation)):
            return "grouped/dilated convolution (netx conv here: groups 1, dilation 1)"
        return None
    if isinstance(node, (nir.Affine, nir.Linear)):
        if nmeta(node, K.TOKENS) is not None or len(shapes[n]) != 1:
            return "linear layer over tokens (netx dense layers take one flat vector)"
        return None
    if _lif(node):
        try:
            beta, thr, reset = _neuron_of(node)
        except ValueError as e:
            return str(e)
        if reset != "zero":
            return f"LIF reset {reset!r} (Loihi's CUBA neuron resets the voltage to 0)"
        if thr <= 0:
            return f"LIF threshold {thr} <= 0"
        return None
    if op == "Flatten":
        return None
    return {"add": "residual/junction add of several branches (netx layers form a chain)",
            "tokens": "patch tokens (spiking self-attention is not a netx layer)",
            "patch_select": "patch selection (not a netx layer)",
            "attention": "spiking self-attention (not a netx layer)",
            "token_sum": "token sum (not a netx layer)"}.get(op, f"{op} has no netx layer")


def _why_not_chain(g, n, shapes) -> list[str]:
    """Every reason node n cannot continue a netx chain."""
    r = []
    own = _chip_ok(g, n, shapes)
    if own:
        r.append(own)
    p = preds(g, n)
    if len(p) > 1 and op_of(g.nodes[n]) not in ("add", "attention"):
        r.append(f"sums {len(p)} inputs ({', '.join(p)}): a residual add netx cannot express")
    return r


def plan(graph, limits: dict | None = None, partition: str = "auto", sparse: str = "auto",
         scale: str = "max") -> Plan:
    """Map an slt NIR graph onto Loihi 2 (after the target's passes: passes/fold_identity_residuals.py has folded
    what it could). Collects EVERY reason it cannot in plan.reasons."""
    if partition not in ("auto", "off"):
        raise SltError(f"option partition={partition!r} unknown", "use partition=auto or partition=off")
    if sparse not in ("auto", "on", "off"):
        raise SltError(f"option sparse={sparse!r} unknown", "use sparse=auto, on or off")
    if scale not in SCALES:
        raise SltError(f"option scale={scale!r} unknown", "use scale=max or scale=mse")
    lim = limits or load_limits()
    g = graph
    folded = any(nmeta(n, FOLDED) for n in g.nodes.values())
    shapes = _shapes(g)
    P = Plan()
    T = int(gmeta(g, K.T, 1))
    enc = gmeta(g, K.ENCODING, "direct")
    input_max = float(gmeta(g, K.INPUT_MAX, 1.0))
    P.meta = {"T": T, "encoding": enc, "input_max": input_max, "folded_identity": folded, "scale": scale}
    # ---- the chain -----------------------------------------------------------------------------------------
    s0 = succs(g, "input")
    ok_start = (len(s0) == 1 and _is_syn(g.nodes[s0[0]]) and preds(g, s0[0]) == ["input"]
                and _chip_ok(g, s0[0], shapes) is None)
    l0 = succs(g, s0[0]) if ok_start else []
    ok_start = ok_start and len(l0) == 1 and _lif(g.nodes[l0[0]]) and preds(g, l0[0]) == [s0[0]] \
        and _chip_ok(g, l0[0], shapes) is None
    if not ok_start:
        why = []
        for n in s0:
            w = _why_not_chain(g, n, shapes) or ([] if _is_syn(g.nodes[n]) else ["not a conv/linear layer"])
            if w:
                why.append(f"{_label(g, n)}: {'; '.join(w)}")
            for m in succs(g, n):
                w = _why_not_chain(g, m, shapes) or ([] if _lif(g.nodes[m]) else ["not a LIF layer"])
                if w:
                    why.append(f"{_label(g, m)}: {'; '.join(w)}")
            if len(succs(g, n)) > 1:
                why.append(f"{_label(g, n)} fans out to {len(succs(g, n))} nodes")
        why = why or (["the input feeds nothing"] if not s0 else [f"the input fans out to {len(s0)} nodes"])
        P.reasons.append("no spiking prefix fits Loihi: the input must feed one conv/linear layer followed by one "
                         "LIF layer (" + "; ".join(why) + ")")
        return P
    chain = []          # (flatten_before: bool, synapse node, lif node or None for the head)
    syn0, lif0 = s0[0], l0[0]
    chain.append((False, syn0, lif0))
    cur = lif0
    head = None
    stop_reasons = []
    while True:
        nx = succs(g, cur)
        if len(nx) != 1:
            stop_reasons.append(f"{_label(g, cur)} fans out to {len(nx)} nodes ({', '.join(nx)}): "
                                "netx layers form a chain")
            break
        n = nx[0]
        flat = False
        if op_of(g.nodes[n]) == "Flatten" and preds(g, n) == [cur]:
            nn_ = succs(g, n)
            if len(nn_) != 1:
                stop_reasons.append(f"{_label(g, n)} fans out")
                break
            flat, prev, n = True, n, nn_[0]
        else:
            prev = cur
        node = g.nodes[n]
        why = _why_not_chain(g, n, shapes)
        if why or not _is_syn(node) or preds(g, n) != [prev]:
            stop_reasons.append(f"{_label(g, n)}: " + ("; ".join(why) or "not a conv/linear synapse"))
            break
        after = succs(g, n)
        if len(after) != 1:
            stop_reasons.append(f"{_label(g, n)} fans out")
            break
        m = after[0]
        mn = g.nodes[m]
        if isinstance(mn, nir.Output) and preds(g, m) == [n] and isinstance(node, (nir.Affine, nir.Linear)):
            head = (flat, n)
            break
        whym = _why_not_chain(g, m, shapes)
        if whym or not _lif(mn) or preds(g, m) != [n]:
            stop_reasons.append(f"{_label(g, m)}: " + ("; ".join(whym) or "not a LIF layer"))
            break
        chain.append((flat, n, m))
        cur = m
    # ---- partition ------------------------------------------------------------------------------------------
    on_chip = {"input", syn0, lif0}
    for flat, n, m in chain[1:]:
        on_chip |= {n, m}
        if flat:
            on_chip |= set(preds(g, n))
    if head:
        on_chip |= {head[1], "output"} | (set(preds(g, head[1])) if head[0] else set())
    rest = [n for n in topo_order(g) if n not in on_chip]
    if rest:
        all_why = []
        for n in topo_order(g):
            if isinstance(g.nodes[n], (nir.Input, nir.Output)):
                continue
            w = _why_not_chain(g, n, shapes) if n in rest else []
            fo = succs(g, n)
            if len(fo) > 1 and op_of(g.nodes[n]) != "attention":
                w.append(f"fans out to {len(fo)} nodes ({', '.join(fo)}): netx layers form a chain")
            if w:
                all_why.append(f"{_label(g, n)}: {'; '.join(w)}")
        if partition == "off":
            P.reasons.append(f"the graph does not fit netx whole ({len(rest)} node(s) after "
                             f"{_label(g, cur)} would run on the host); every node netx cannot express:\n    "
                             + "\n    ".join(all_why or stop_reasons)
                             + "\n    (export with --opt partition=auto to run the rest on the host)")
        P.notes.append(f"chip runs up to {_label(g, cur)}; host runs {len(rest)} node(s) because "
                       + "; ".join(stop_reasons))
    # ---- quantize -------------------------------------------------------------------------------------------
    _quantize(P, _Ctx(g, shapes, lim, T, enc, input_max, scale), chain, head, cur, rest, sparse)
    P.chip_nodes = sorted(on_chip - {"input", "output"})
    return P


def _host_graph(g, shapes, boundary, rest):
    nodes = {"input": nir.Input(input_type={"input": np.array(shapes[boundary])})}
    for n in rest:
        nodes[n] = g.nodes[n]
    edges = []
    for s, d in g.edges:
        if d in nodes and d != "input":
            if s == boundary:
                edges.append(("input", d))
            elif s in nodes:
                edges.append((s, d))
    md = dict(g.metadata or {})
    md["slt.loihi.host_of"] = boundary
    md[K.INPUT_SHAPE] = np.array(shapes[boundary], np.int64)
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=md, type_check=False)


@dataclass
class _Ctx:
    """What every quantization step reads: the graph, its shapes, the limits and the model's input."""
    g: object
    shapes: dict
    lim: dict
    T: int
    enc: str
    input_max: float
    scale: str = "max"


@dataclass
class ChipLayer:
    """One chip layer for the report (_entry): its synapse node n, its LIF node m (None for the head), its size
    and the quantization chosen for it (k, vThMant) with the float and integer weights (None: host-computed)."""
    idx: int
    n: str
    m: str | None
    kind: str
    shape: list
    neurons: int
    synapses: int
    k: float
    vth: int
    beta: float
    thr: float | None
    w: np.ndarray | None = None
    wi: np.ndarray | None = None
    fan: int = 1
    note: str = ""


SCALES = ("max", "mse")


def layer_scale(w: np.ndarray, b: np.ndarray, thr: float, mode: str = "max") -> tuple[int, float, list]:
    """(vThMant m, scale k = m / thr, problems) of a spiking chip layer with float weights w, bias b and
    threshold thr: m = floor(127 thr / max|w|), lowered so |b| k fits the 13-bit bias mantissa, capped at the
    17-bit threshold mantissa. mode "mse": m may grow up to 1.6x that (the largest weights then clip at 127) to
    the value with the least squared weight error sum((clip(rint(w k), 127) / k - w)^2): finer steps for the many
    small weights of a dense layer. The fine-tuning (qat.py) calls it too, so it simulates the scales written here."""
    amax = float(np.abs(w).max())
    problems = []
    if amax == 0:
        problems.append("every weight is pruned (fix: keep at least one weight per layer)")
        amax = 1.0
    mm = math.floor(W_MANT * thr / amax)
    bmax = float(np.abs(b).max()) if b.size else 0.0
    if bmax > 0:
        mm = min(mm, math.floor(BIAS_MANT * thr / bmax))
    mm = min(mm, VTH_MANT)
    if mm < 1:
        problems.append(f"threshold {thr:g} is below one step of its 8-bit weights (max |w| {amax:.3g}; "
                        "fix: retrain with a larger threshold)")
        mm = 1
    if mode == "mse" and not problems:
        def err(m):
            return float(((_quant_weights(w, m / thr) * thr / m - w) ** 2).sum())

        top = min(int(mm * 1.6), VTH_MANT, math.floor(BIAS_MANT * thr / bmax) if bmax > 0 else VTH_MANT)
        mm = min(range(mm, max(mm, top) + 1), key=lambda m: (err(m), m))
    return mm, mm / thr, problems


def head_scale(w: np.ndarray, b: np.ndarray, T: int) -> float:
    """Scale k of the head (a non-leaky integrator that must never spike nor clip in T steps)."""
    amax = float(np.abs(w).max()) or 1.0
    k = W_MANT / amax
    if np.abs(b).max() > 0:
        k = min(k, BIAS_MANT / float(np.abs(b).max()))
    l1 = float((np.abs(w).sum(1) + np.abs(b)).max())
    return min(k, (VTH_MANT - 1) / (T * l1)) if l1 > 0 else k


def input_scale(w0: np.ndarray, b0: np.ndarray, thr: float, input_max: float) -> tuple[int, float, float]:
    """(vThMant m0, scale k0, current bound) of the first LIF fed by the host-computed first layer (direct
    encoding): the largest possible current maps to the 16-bit graded-spike range."""
    flat = w0.reshape(w0.shape[0], -1)
    bound = float(np.max(input_max * np.maximum(np.clip(flat, 0, None).sum(1), -np.clip(flat, None, 0).sum(1))
                         + np.abs(b0)))
    m0 = min(VTH_MANT, math.floor(GRADED_MAX * thr / bound)) if bound > 0 else VTH_MANT
    return m0, m0 / thr, bound


def _weights_of(node) -> tuple[np.ndarray, np.ndarray]:
    w = np.asarray(node.weight, np.float64)
    b = np.asarray(node.bias, np.float64) if getattr(node, "bias", None) is not None else np.zeros(w.shape[0])
    return w, b


def _quantize(P, c: _Ctx, chain, head, boundary, rest, sparse):
    """Quantize the chain (and head) into P.layers / P.info, then size it against the limits."""
    start, prev_shape = _quantize_input(P, c, chain[0])
    dense_density = []
    for flat, n, m in chain[start:]:
        prev_shape = _quantize_chip_layer(P, c, flat, n, m, prev_shape, dense_density)
    if head:
        _quantize_head(P, c, head, prev_shape, dense_density)
    else:
        P.readout = {"kind": "host", "boundary": boundary,
                     "layer": nmeta(c.g.nodes[boundary], K.LAYER, boundary), "shape": c.shapes[boundary],
                     "file": "host.nir", "host_nodes": len(rest)}
        P.host = _host_graph(c.g, c.shapes, boundary, rest)
    _size_cores(P, c.lim, sparse, dense_density)


def _quantize_input(P, c: _Ctx, first) -> tuple[int, list]:
    """How the input reaches the chip. Direct encoding: the first synapse runs on the host and its current enters
    as 16-bit graded spikes through a 1x1 identity synapse. Returns (first chain index on the chip, shape fed to
    it)."""
    g, shapes = c.g, c.shapes
    _, syn0, lif0 = first
    in_shape = shapes["input"]
    if c.enc != "direct":
        P.layers.append({"type": "input", "shape": in_shape})
        P.input = {"kind": "spikes", "message_bits": 0, "shape": in_shape}
        P.info.append({"index": 0, "kind": "input", "shape": in_shape})
        return 0, in_shape
    n0 = g.nodes[syn0]
    w0, b0 = _weights_of(n0)
    beta, thr, _ = _neuron_of(g.nodes[lif0])
    m0, k0, bound = input_scale(w0, b0, thr, c.input_max)
    if m0 < 1:
        P.reasons.append(f"{_label(g, syn0)}: its current range {bound:.3g} is too large for its threshold "
                         f"{thr:g} (fix: retrain with a larger threshold or smaller first-layer weights)")
        m0, k0 = 1, 1 / thr
    sh0 = shapes[syn0]
    P.layers.append({"type": "input", "shape": sh0})
    ch = sh0[0]
    if len(sh0) == 3:
        ident = np.eye(ch, dtype=np.int64)[:, :, None, None]
        P.layers.append({"type": "conv", "shape": sh0, "weight": ident, "bias": None, "stride": [1, 1],
                         "padding": [0, 0], "neuron": _neuron(beta, m0)})
    else:
        P.layers.append({"type": "dense", "shape": sh0, "weight": np.eye(ch, dtype=np.int64), "bias": None,
                         "neuron": _neuron(beta, m0)})
    P.input = {"kind": "host_current", "node": syn0, "layer": nmeta(n0, K.LAYER, syn0), "scale": k0,
               "clip": GRADED_MAX, "message_bits": GRADED_BITS, "file": "host_in.nir", "shape": sh0,
               "bound": bound}
    P.host_in = _host_in_graph(g, shapes, syn0)
    P.info.append({"index": 0, "kind": "input", "shape": in_shape})
    size = int(np.prod(sh0))
    P.info.append(_entry(g, ChipLayer(1, syn0, lif0, "conv" if len(sh0) == 3 else "dense", sh0, size, size, k0, m0,
                                      beta, thr, note="synapse computed on the host (raw pixels); its current "
                                                      "enters as 16-bit graded spikes through a 1x1 identity "
                                                      "synapse")))
    return 1, shapes[lif0]


def _flatten(P, prev_shape) -> list:
    flat = [int(np.prod(prev_shape))]
    P.layers.append({"type": "flatten", "shape": flat})
    P.info.append({"index": len(P.info), "kind": "flatten", "shape": flat})
    return flat


def _quantize_chip_layer(P, c: _Ctx, flat, n, m, prev_shape, dense_density) -> list:
    """One synapse n -> CUBA LIF m on the chip. Returns the shape it outputs."""
    g = c.g
    if flat:
        prev_shape = _flatten(P, prev_shape)
    node, lif = g.nodes[n], g.nodes[m]
    beta, thr, _ = _neuron_of(lif)
    w, b = _weights_of(node)
    mm, k, problems = layer_scale(w, b, thr, c.scale)
    P.reasons += [f"{_label(g, n)}: {p}" for p in problems]
    wi = _quant_weights(w, k)
    bi = np.rint(b * k).astype(np.int64)
    L = _layer(node, c.shapes[m], wi, bi if bi.any() else None, _neuron(beta, mm))
    P.layers.append(L)
    syn, fan = _fan_in(node, wi, prev_shape)
    _check_netx_lossless(P.reasons, g, n, L)
    if L["type"] == "dense":
        dense_density.append(float((wi != 0).mean()))
    shape = c.shapes[m]
    P.info.append(_entry(g, ChipLayer(len(P.info), n, m, L["type"], shape, int(np.prod(shape)), syn, k, mm, beta,
                                      thr, w, wi, fan=fan)))
    return shape


def _quantize_head(P, c: _Ctx, head, prev_shape, dense_density):
    """The Affine feeding the output: a non-leaky integrator read out as a voltage."""
    g = c.g
    flat, n = head
    node = g.nodes[n]
    if flat:
        _flatten(P, prev_shape)
    w, b = _weights_of(node)
    k = head_scale(w, b, c.T)
    wi = _quant_weights(w, k)
    bi = np.rint(b * k).astype(np.int64)
    P.layers.append({"type": "dense", "shape": [w.shape[0]], "weight": wi, "bias": bi if bi.any() else None,
                     "neuron": {"iDecay": DECAY_SCALE, "vDecay": 0, "vThMant": VTH_MANT}})
    dense_density.append(float((wi != 0).mean()))
    _check_netx_lossless(P.reasons, g, n, P.layers[-1])
    syn, fan = _fan_in(node, wi, None)
    P.info.append(_entry(g, ChipLayer(len(P.info), n, None, "dense", [w.shape[0]], w.shape[0], syn, k, VTH_MANT,
                                      1.0, None, w, wi, fan=fan,
                                      note="readout: non-leaky integrator, never spikes; logits = v / (64 k)")))
    P.readout = {"kind": "voltage", "node": n, "layer": nmeta(node, K.LAYER, n), "scale": k, "act_shift": 6}


def _size_cores(P, lim, sparse, dense_density):
    """Cores per layer (neurons or synapse memory, whichever binds), the fan-in limit and the chip budget."""
    use_sparse = (sparse == "on") or (sparse == "auto" and dense_density and min(dense_density) < 0.5)
    P.meta["sparse_fc"] = bool(use_sparse)
    info, reasons = P.info, P.reasons
    total = 0
    for e in info:
        if "neurons" not in e:
            continue
        bits = lim["bits_per_sparse_synapse"] if (use_sparse and e["kind"] == "dense") else lim["bits_per_synapse"]
        by_n = math.ceil(e["neurons"] / lim["neurons_per_core"])
        by_mem = math.ceil(e["synapses"] * bits / (8 * lim["synapse_memory_bytes_per_core"]))
        e["cores"] = max(1, by_n, by_mem)
        e["cores_bound_by"] = "neurons" if by_n >= by_mem else "synapse memory"
        total += e["cores"]
        if e.get("fan_in", 0) > lim["fan_in_per_neuron"]:
            reasons.append(f"layer {e['layer']}: fan-in {e['fan_in']} inputs per neuron exceeds the limit "
                           f"{lim['fan_in_per_neuron']} of {os.path.basename(lim['_path'])} (fix: a smaller "
                           "layer, more sparsity (a sparser ticket), or split the layer)")
    P.cores = total
    cap = lim["cores_per_chip"] * lim["chips"]
    P.meta["chips_needed"] = math.ceil(total / lim["cores_per_chip"])
    if total > cap:
        worst = sorted((e for e in info if "cores" in e), key=lambda e: -e["cores"])[:3]
        P.core_reason = (f"the network needs {total} neuro cores but {lim['chips']} chip(s) have {cap} "
                         f"({os.path.basename(lim['_path'])}); largest: "
                         + ", ".join(f"{e['layer']} {e['cores']} cores ({e['cores_bound_by']})" for e in worst)
                         + " (fix: smaller layers, more sparsity, split the network over more chips "
                         "(--opt chips=N) or partition it)")
        reasons.append(P.core_reason)


def _check_netx_lossless(reasons, g, n, L):
    """netx re-derives a dense layer's weight exponent and Lava truncates to it; for a few sign patterns (all
    weights <= 0 with a zero among odd mantissas) that zeroes the layer. Refuse instead of exporting garbage."""
    if L["type"] != "dense":
        return
    from .chip import dense_synapse

    w = np.asarray(L["weight"], np.int64)
    wq, e = dense_synapse(w)
    back = (wq >> -e) if e <= 0 else (wq << e)
    if not np.array_equal(back, w):
        reasons.append(f"{_label(g, n)}: netx/Lava would not keep its 8-bit weights exactly "
                       f"({int((back != w).sum())} of {w.size} change; sign pattern max {int(w.max())}, "
                       f"min {int(w.min())}) (fix: retrain or prune so the layer has a positive weight)")


def _neuron(beta, vth):
    return {"iDecay": DECAY_SCALE, "vDecay": int(np.rint((1.0 - beta) * DECAY_SCALE)), "vThMant": int(vth)}


def _layer(node, out_shape, wi, bi, neuron):
    if isinstance(node, nir.Conv2d):
        st, pd = conv_attrs(node)
        return {"type": "conv", "shape": list(out_shape), "weight": wi, "bias": bi, "stride": st, "padding": pd,
                "neuron": neuron}
    return {"type": "dense", "shape": list(out_shape), "weight": wi, "bias": bi, "neuron": neuron}


def _entry(g, L: ChipLayer) -> dict:
    """The report/manifest entry of one chip layer."""
    node = g.nodes[L.n]
    m, w, wi = L.m, L.w, L.wi
    e = {"index": L.idx, "kind": L.kind, "node": L.n, "lif": m, "layer": nmeta(node, K.LAYER, L.n),
         "spike_layer": nmeta(g.nodes[m], K.LAYER, m) if m else None, "shape": list(L.shape),
         "neurons": int(L.neurons), "synapses": int(L.synapses), "fan_in": int(L.fan), "weight_scale": float(L.k),
         "vThMant": int(L.vth), "vDecay": int(np.rint((1.0 - L.beta) * DECAY_SCALE)) if m else 0,
         "iDecay": DECAY_SCALE, "beta": L.beta, "threshold": L.thr, "binary": int(nmeta(node, K.BINARY, 0) or 0),
         "note": L.note}
    if wi is not None:
        nz = w != 0
        e["density"] = float(nz.mean())
        e["mantissa_max"] = int(np.abs(wi).max())
        e["distinct_mantissas"] = int(len(np.unique(np.abs(wi[wi != 0])))) if (wi != 0).any() else 0
        rel = np.abs(wi / L.k - w)[nz] / float(np.abs(w).max())
        e["max_weight_error"] = float(rel.max()) if rel.size else 0.0
        if nmeta(node, FOLDED):
            src = nmeta(node, FOLDED)
            e["note"] = (L.note + "; " if L.note else "") + f"identity residual from {src} folded in"
    return e


def _host_in_graph(g, shapes, syn0):
    nodes = {"input": g.nodes["input"], syn0: g.nodes[syn0],
             "output": nir.Output(output_type={"output": np.array(shapes[syn0])})}
    return nir.NIRGraph(nodes=nodes, edges=[("input", syn0), (syn0, "output")],
                        metadata={k: v for k, v in (g.metadata or {}).items() if k != "slt.shapes"},
                        type_check=False)
