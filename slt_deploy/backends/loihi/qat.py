"""The Loihi chip's fixed-point arithmetic simulated inside a SpikingNet's forward pass, for quantization-aware
fine-tuning (fit.py). The numbers come from the exporter's own plan (quant.py: layer_scale / head_scale /
input_scale on the same folded weights the frontend writes), recomputed from the current weights at every
sequence, so what is trained is what `export --target loihi` will write. Rounding uses straight-through
gradients.

Per chip layer (synapse -> CUBA LIF, scale k = vThMant / threshold, docs/targets/loihi.md):
    weights   w = clip(rint(W k), +-127) / k        (a kept weight never rounds to 0; masked stay 0)
    bias      rint(b k) / k
    current   a = rint(I k)                         (exact integer for the chip's integer synapses; for the first
                                                     layer of a direct-encoded model it is the 16-bit host current,
                                                     clipped to +-32767)
    voltage   v = trunc(v (4096 - vDecay) / 4096) + 64 a      (units of 1/64 of a weight step), clipped to
              +-(2^23 - 1); spike if v > 64 vThMant; v = 0 after a spike
    head      w, b as above with the head's scale; a non-leaky sum (the float model's sum over T is the same)
Host parts (the first synapse of a direct-encoded model, the partitioned rest) stay float. An identity residual the
exporter folds (ConvPEP's `rpe(S) + S`) is quantized as the one synapse W + I it becomes.
BN is frozen (running statistics, folded as in Synapse.folded) but its affine parameters train; masks and binary
signs are the model's own (Synapse.quantized), so a ticket stays a ticket. The 24-bit current wrap is not simulated:
the exporter's scales keep currents far inside it (docs/targets/loihi.md)."""
from __future__ import annotations

import types

import numpy as np
import torch
import torch.nn.functional as F

from ...nn import LIF
from ...nn.layers import Synapse
from .quant import DECAY_SCALE, GRADED_MAX, W_MANT, _quant_weights, head_scale, input_scale, layer_scale

V_LIM = (1 << 23) - 1


def round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def trunc_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.trunc(x) - x).detach()


def folded_weights(m: Synapse):
    """(W, b): the float weight and bias the frontend exports for synapse m (Synapse.folded), with gradients."""
    wq, s = m.quantized()
    n = wq.shape[0]
    scale = s.expand(n)
    bias = m.bias if m.bias is not None else torch.zeros(n, dtype=wq.dtype)
    if m.bn is not None:
        g = m.bn.weight / torch.sqrt(m.bn.running_var + m.bn.eps)
        bias = (bias - m.bn.running_mean) * g + m.bn.bias
        scale = scale * g
    return wq * scale.view(-1, *([1] * (wq.ndim - 1))), bias


def fake_quant(w: torch.Tensor, b: torch.Tensor, k: float):
    """8-bit weight mantissas and integer bias at scale k, back in float units (straight-through)."""
    q = round_ste(w * k)
    kept = (w.detach() != 0) & (q.detach() == 0)
    q = torch.where(kept, q + (torch.sign(w.detach()) - q).detach(), q)
    q = q + (q.detach().clamp(-W_MANT, W_MANT) - q.detach())
    return q / k, round_ste(b * k) / k


def _np(t):
    return t.detach().double().cpu().numpy()


class ChipArithmetic:
    """Context manager: while active, `model`'s forward computes what the Loihi export of it computes (quantize=
    True) or the float eval arithmetic with gradients (quantize=False, flip `.quantize` between passes). Needs the
    plan's roles: chip_roles(plan) below."""

    def __init__(self, model, roles: dict, T: int, input_max: float):
        self.model, self.roles, self.T, self.input_max = model, roles, int(T), float(input_max)
        self.quantize = True
        self.k = {}             # LIF path -> (k, vThMant, vDecay, clip) of the sequence being run
        self._saved = []

    # --- installation --------------------------------------------------------------------------------------
    def __enter__(self):
        self.model.eval()       # frozen BN statistics; the folded weights below carry the gradients
        for path, m in self.model.named_modules():
            if isinstance(m, Synapse):
                self._patch(m, self._synapse_forward(path, m))
            elif isinstance(m, LIF) and path in self.roles["lifs"]:
                self._patch(m, self._lif_forward(path, m))
        return self

    def __exit__(self, *exc):
        for m, old in self._saved:
            if old is None:
                del m.forward
            else:
                m.forward = old
        self._saved = []
        return False

    def _patch(self, m, fn):
        self._saved.append((m, m.__dict__.get("forward")))
        m.forward = types.MethodType(fn, m)

    # --- synapses ------------------------------------------------------------------------------------------
    def _weights(self, path, m):
        """(W, b) of this sequence: cached in the model's weight_cache so it is computed once per sequence."""
        key = ("chip", self.quantize)
        cache = m._run_cache
        if cache is not None and key in cache:
            return cache[key]
        w, b = folded_weights(m)
        role = self.roles["synapses"].get(path)
        if self.quantize and role is not None:
            kind, lif = role["kind"], role.get("lif")
            wd, bd = _np(w), _np(b)
            if kind == "input":         # host-computed first layer: float weights, the LIF rounds its current
                m0, k0, _ = input_scale(wd, bd, role["threshold"], self.input_max)
                self.k[lif] = (k0, max(m0, 1), role["vDecay"], GRADED_MAX)
            elif kind == "head":
                k = head_scale(wd, bd, self.T)
                w, b = fake_quant(w, b, k)
            else:
                ident = None
                if role.get("folded"):  # the exporter quantizes W + I as one synapse
                    ident = torch.zeros_like(w)
                    c = torch.arange(w.shape[0])
                    if w.ndim == 4:
                        ident[c, c, w.shape[2] // 2, w.shape[3] // 2] = 1.0
                    else:
                        ident[c, c] = 1.0
                    w = w + ident
                    wd = _np(w)
                mm, k, _ = layer_scale(wd, bd, role["threshold"], self.roles.get("scale", "max"))
                w, b = fake_quant(w, b, k)
                if ident is not None:
                    w = w - ident
                self.k[lif] = (k, mm, role["vDecay"], None)
        if cache is not None:
            cache[key] = (w, b)
        return w, b

    def _synapse_forward(self, path, m):
        arith = self

        def forward(mod, x):
            w, b = arith._weights(path, mod)
            y = mod._op(x, w)
            return y + mod._chan(b, y.ndim)
        return forward

    # --- neurons -------------------------------------------------------------------------------------------
    def _lif_forward(self, path, m):
        arith = self

        def forward(mod, current):
            if not arith.quantize:
                return LIF.forward(mod, current)
            k, vth, vdecay, clip = arith.k[path]
            a = round_ste(current * k)
            if clip is not None:
                a = a + (a.detach().clamp(-clip, clip) - a.detach())
            u = a * 64.0
            if mod.v is None:
                v = u
            else:
                v = trunc_ste(mod.v * ((DECAY_SCALE - vdecay) / DECAY_SCALE)) + u
            v = v + (v.detach().clamp(-V_LIM, V_LIM) - v.detach())
            s = mod.spike_fn((v - 64.0 * vth) / (64.0 * k))
            mod.v = v * (1.0 - s.detach())
            return s
        return forward


SNAP_SHRINK = 1e-6    # snapped weights sit this fraction inside their mantissa (see snap_to_chip)
TIE_MARGIN = 0.25     # snapped biases sit lower by this fraction of a voltage step (1/64 weight step), over T steps


def _snap_target(w, b, role, T, input_max, scale_mode):
    """(float64 target weight, bias) of one chip/head synapse: the export's integers / k, shrunk by SNAP_SHRINK;
    None for the host-computed input layer and for a layer no scale near the exporter's reproduces itself."""
    wd, bd = _np(w), _np(b)
    kind = role["kind"]
    if kind == "input":
        return None
    ident = None
    if kind == "head":
        k = head_scale(wd, bd, T)
    else:
        if role.get("folded"):
            ident = np.zeros_like(wd)
            c = np.arange(wd.shape[0])
            if wd.ndim == 4:
                ident[c, c, wd.shape[2] // 2, wd.shape[3] // 2] = 1.0
            else:
                ident[c, c] = 1.0
            wd = wd + ident
        thr = role["threshold"]
        beta = 1.0 - role["vDecay"] / DECAY_SCALE
        margin = TIE_MARGIN / sum(beta ** j for j in range(max(1, T)))   # the offsets of T steps add up to TIE_MARGIN
        m0, _, _ = layer_scale(wd, bd, thr, scale_mode)
        # The exporter recomputes the scale from the snapped weights: floor(127 thr / max|W|) finds the same m only
        # if the largest weight's mantissa is (about) 127. So try m0 and its neighbours and take the nearest m whose
        # snapped weights export to exactly themselves (same m, same mantissas); none: the layer is left alone.
        for m in sorted(range(max(1, m0 - 3), m0 + 4), key=lambda c: (abs(c - m0), c)):
            k = m / thr
            q, qb = _quant_weights(wd, k), np.rint(bd * k)
            # bias: also TIE_MARGIN of a voltage step (1/64 of a weight step) lower: a float voltage that the chip
            # holds exactly at threshold (no spike) stays below it despite float32 rounding of the sums
            tw, tb = q / k * (1 - SNAP_SHRINK), qb / k * (1 - SNAP_SHRINK) - margin / (64 * k)
            m2, k2, bad = layer_scale(tw, tb, thr, scale_mode)
            if not bad and m2 == m and np.array_equal(_quant_weights(tw, k2), q) and np.array_equal(
                    np.rint(tb * k2), qb):
                break
        else:
            return None
    if kind == "head":
        q, qb = _quant_weights(wd, k), np.rint(bd * k)
        tw, tb = q / k * (1 - SNAP_SHRINK), qb / k * (1 - SNAP_SHRINK)
    if ident is not None:
        tw = tw - ident
    return tw, tb


@torch.no_grad()
def snap_to_chip(model, roles: dict, T: int, input_max: float) -> list[str]:
    """Write the export's integer weights back into the float model: every chip synapse and the head get the
    weights `rint(W k) / k` and bias `rint(b k) / k` the exporter writes (through the parameters the model already
    has: a binary channel keeps its signs and gets the per-channel scale of its mantissa through the frozen BN's
    gamma; a masked weight stays 0), so the float model computes what the chip computes (up to float32 rounding).
    All targets are shrunk by SNAP_SHRINK (1e-6): the exporter's `floor(127 thr / max|W|)` then finds the same
    scale again and a mantissa still rounds to itself. The biases of spiking layers are also a little lower (summed
    over T steps of decay: TIE_MARGIN = 1/4 of the chip's voltage step, 1/64 of a weight step), so that a voltage
    the chip holds exactly at threshold (no spike: the chip compares v > thr) stays below it in float32 too, while
    one step above it still spikes. Returns the names of the synapses snapped."""
    done = []
    scale_mode = roles.get("scale", "max")
    for path, m in model.named_modules():
        role = roles["synapses"].get(path)
        if not isinstance(m, Synapse) or role is None:
            continue
        w, b = folded_weights(m)
        tgt = _snap_target(w, b, role, T, input_max, scale_mode)
        if tgt is None:
            continue
        tw, tb = (torch.from_numpy(t) for t in tgt)
        n = tw.shape[0]
        shape = (-1, *([1] * (tw.ndim - 1)))
        g = torch.ones(n, dtype=torch.float64)
        if m.bn is not None:
            g = (m.bn.weight / torch.sqrt(m.bn.running_var + m.bn.eps)).double()
        wq, s = m.quantized()
        if m.binary:
            # per channel: the (signed) scale of the kept weights: target / sign, averaged over the channel
            sg = wq.double()
            cnt = (sg != 0).reshape(n, -1).sum(1).clamp_min(1)
            scale_c = (tw * sg).reshape(n, -1).sum(1) / cnt
            if m.bn is not None:
                gn = scale_c / float(s)
                m.bn.weight.copy_((gn * torch.sqrt(m.bn.running_var.double() + m.bn.eps)).float())
                g = gn
            else:   # one scale for the layer: rescale the weights so that alpha * in_scale is it
                m.weight.mul_(float(scale_c.mean()) / float(s))
        else:
            m.weight.copy_(torch.where(wq != 0, tw / (float(s) * g.view(shape)), torch.zeros_like(tw)).float())
        bias = m.bias.double() if m.bias is not None else torch.zeros(n, dtype=torch.float64)
        if m.bn is not None:
            m.bn.bias.copy_((tb - (bias - m.bn.running_mean.double()) * g).float())
        elif m.bias is not None:
            m.bias.copy_(tb.float())
        done.append(path)
    for _, m in model.named_modules():
        if isinstance(m, Synapse):
            m._run_cache = None
    return done


def chip_roles(plan) -> dict:
    """From an exporter Plan: {"synapses": {module path: role}, "lifs": {LIF module paths on the chip}}. Roles:
    input (host-computed first layer of direct encoding), chip (a spiking chip layer), head (the readout)."""
    syn, lifs = {}, set()
    for e in plan.info:
        if "neurons" not in e:
            continue
        kind = "input" if e["index"] == 1 and plan.input.get("kind") == "host_current" else (
            "head" if e.get("lif") is None else "chip")
        r = {"kind": kind, "threshold": e["threshold"], "vDecay": e["vDecay"], "lif": e.get("spike_layer"),
             "folded": "folded in" in (e.get("note") or "")}
        syn[e["layer"]] = r
        if e.get("spike_layer"):
            lifs.add(e["spike_layer"])
    return {"synapses": syn, "lifs": lifs, "scale": plan.meta.get("scale", "max")}


def loss_of(logits_q, logits_f, y, T, agree_weight: float):
    """Cross-entropy of the chip's logits, plus (agree_weight > 0) the float model's cross-entropy and the KL
    divergence pulling the chip's prediction onto the float one (both paths train: the exported network is
    compared with the fine-tuned float model)."""
    loss = F.cross_entropy(logits_q / T, y)
    if logits_f is not None and agree_weight > 0:
        loss = loss + F.cross_entropy(logits_f / T, y) + agree_weight * F.kl_div(
            F.log_softmax(logits_q / T, 1), F.log_softmax(logits_f / T, 1), log_target=True, reduction="batchmean")
    return loss


def plan_of(model, meta, **options):
    """The exporter's plan of `model` (same frontend, passes and quantization as `export --target loihi`)."""
    from ...ir.frontend import to_nir
    from ...passes import run_pipeline
    from ...passes.check_shapes import check_shapes
    from . import BACKEND, _limits
    from .quant import plan

    graph, _ = check_shapes(to_nir(model, meta))
    graph, _ = run_pipeline(graph, BACKEND.passes, options)
    lim = _limits(options.get("limits"), options.get("chips"))
    return plan(graph, lim, partition=options.get("partition", "auto"), sparse=options.get("sparse", "auto"),
                scale=options.get("scale", "max"))


__all__ = ["ChipArithmetic", "chip_roles", "fake_quant", "folded_weights", "loss_of", "plan_of", "snap_to_chip"]
