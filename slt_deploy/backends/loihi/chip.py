"""Our numpy model of the fixed-point CUBA dynamics that Lava's Loihi 2 simulation (`Loihi2SimCfg(select_tag=
'fixed_pt')`) executes for a netx network: the reference of the `loihi` target. It runs the chip program stored in
the netx file (backends/loihi/netx.py) and is meant to agree with Lava bit for bit, every spike of every
layer at every step (tests/test_loihi_lava.py checks it against the real simulator).

Per sample, per time step t, layer by layer (state u = v = 0 at the sample's first step: netx resets every layer
each T steps, staggered by its pipeline depth, so a layer sees step t of its predecessor at its own step t):

  synaptic input a (integer):
    input : no neurons: passes the integers it is given (0/1 spikes, or graded spikes) to the next layer
    conv  : a = conv(s_prev, W)                          (exact integers; then wrapped to signed 24 bit)
    dense : W' , e = netx's weight optimisation of W      (mantissa shifted left by -e, clipped/truncated to the
            a = (W' @ s_prev) >> -e                        8-bit synapse; lossless for |W| <= 127), arithmetic shift
  neuron (all in units of 2^-6 of a weight step; Loihi MSB-aligns activations, bias and threshold by 6 bits):
    u = sgn(u*(4096-iDecay)) * (|u*(4096-iDecay)| >> 12) + (a << 6)        wrapped as Lava wraps 24-bit currents
    v = sgn(v*(4096-vDecay)) * (|v*(4096-vDecay)| >> 12) + u + (bias << 6) clipped to +-(2^23 - 1)
    (Lava's int32 storage of a, u, v is reproduced too: only far outside the exporter's limits does it matter)
    s = v > (vThMant << 6);   v[s] = 0
"""
from __future__ import annotations

import numpy as np

UV_BITS = 24
MAX_UV = 1 << (UV_BITS - 1)
DECAY_SHIFT = 12
DECAY_UNITY = 1 << DECAY_SHIFT
ACT_SHIFT = 6       # activation (a << 6), bias (bias_exp = 6 in netx) and threshold (vth << 6)


# --- synapses ----------------------------------------------------------------------------------------------------
def dense_synapse(w: np.ndarray):
    """(W', e): what netx + Lava's bit-accurate Dense make of the integer weights in the file. netx picks a sign
    mode and an exponent so the mantissas fill 8 bits, shifts them, and Lava clips to the 8-bit synapse and
    truncates the low bits it does not keep; the accumulated sum is shifted back by e (arithmetic shift)."""
    w = np.asarray(w, dtype=np.int64)
    if w.size == 0 or not w.any():
        raise ValueError("a dense layer with no non-zero weight cannot be optimised by netx")
    mx, mn = int(w.max()), int(w.min())
    if mx > 254 and mn < 0:
        w = np.clip(w, -256, 254)
        mx = int(w.max())
    if mn < -256 and mx > 0:
        w = np.clip(w, -256, 254)
        mn = int(w.min())
    if mx < 0:
        signed = 0          # inhibitory only
        scale = -256 / mn
    elif mn >= 0:
        signed = 0          # excitatory only
        scale = 255 / mx
    else:
        signed = 1          # mixed signs
        scale = min(127 / mx if mx > 0 else np.inf, -128 / mn)
    sbits = int(np.floor(np.log2(scale))) + signed
    n = 8
    while n > 0 and np.any(w % (1 << n)):
        n -= 1
    n -= signed
    nbits = 8 - sbits - n
    exp = -sbits
    w = w << sbits
    # Lava: sign mode from the shifted weights, clip to 8 bits, truncate to nbits
    lmode = "exc" if w.min() >= 0 else ("inh" if w.max() <= 0 else "mixed")
    mixed = int(lmode == "mixed")
    if lmode == "inh":
        w = -w
    w = np.clip(w, -256 * mixed, 255)
    tb = 8 - nbits + mixed
    w = (w >> np.int64(tb)) << np.int64(tb)   # numpy shifts by a negative count give 0: Lava then zeroes the layer
    if lmode == "inh":
        w = -w
    return w, exp


def conv_int(s: np.ndarray, w: np.ndarray, stride, padding) -> np.ndarray:
    """Exact integer cross-correlation. s [B, I, H, W], w [O, I, kh, kw] -> [B, O, H', W'] int64."""
    B, Ci, H, W = s.shape
    Co, _, kh, kw = w.shape
    sh, sw = stride
    ph, pw = padding
    x = np.zeros((B, Ci, H + 2 * ph, W + 2 * pw), np.float64)
    x[:, :, ph:ph + H, pw:pw + W] = s
    Ho = (H + 2 * ph - kh) // sh + 1
    Wo = (W + 2 * pw - kw) // sw + 1
    cols = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw][:, :, :Ho, :Wo]
    # cols [B, Ci, Ho, Wo, kh, kw]; float64 sums of integers < 2^53 are exact in any order
    y = np.einsum("bihwkl,oikl->bohw", cols, w.astype(np.float64), optimize=True)
    return np.rint(y).astype(np.int64)


def wrap_signed(x: np.ndarray, bits: int) -> np.ndarray:
    base = 1 << bits
    return (x + base // 2) % base - base // 2


# --- neurons -----------------------------------------------------------------------------------------------------
def _decay(x: np.ndarray, d: int) -> np.ndarray:
    p = x * (DECAY_UNITY - d)
    return np.sign(p) * (np.abs(p) >> DECAY_SHIFT)


class Cuba:
    """Fixed-point CUBA LIF state of one layer (u, v in units of 2^-6 of a weight step)."""

    def __init__(self, shape, neuron: dict, bias=None):
        self.i_decay = int(neuron["iDecay"])
        self.v_decay = int(neuron["vDecay"])
        self.vth = int(neuron["vThMant"]) << ACT_SHIFT
        self.shape = tuple(shape)
        self.bias = None if bias is None else (wrap_signed(np.asarray(bias, np.int64), 16) << ACT_SHIFT)
        self.u = self.v = None
        self.stats = {"u_wrapped": 0, "v_clipped": 0}

    def reset(self, batch: int):
        self.u = np.zeros((batch,) + self.shape, np.int64)
        self.v = np.zeros((batch,) + self.shape, np.int64)

    def step(self, a: np.ndarray) -> np.ndarray:
        # Lava holds a_in, u, v and the bias in int32: the activation arrives wrapped to 32 bits and its << 6 and
        # the sums below wrap there too (they never do within the limits the exporter enforces).
        act = wrap_signed(wrap_signed(a.astype(np.int64), 32) << ACT_SHIFT, 32)
        cur = wrap_signed(_decay(self.u, self.i_decay) + act, 32)
        over = cur > MAX_UV
        w1 = np.where(over, cur - 2 * MAX_UV, cur)
        under = w1 <= -MAX_UV
        self.u = np.where(under, cur + 2 * MAX_UV, w1)   # Lava's 24-bit wrap, reproduced as it is
        self.stats["u_wrapped"] += int(over.sum() + under.sum())
        v = _decay(self.v, self.v_decay) + self.u
        if self.bias is not None:
            b = self.bias.reshape((1, -1) + (1,) * (len(self.shape) - 1)) if len(self.shape) > 1 else self.bias
            v = v + b
        v = wrap_signed(v, 32)
        lim = MAX_UV - 1
        self.stats["v_clipped"] += int((np.abs(v) > lim).sum())
        v = np.clip(v, -lim, lim)
        s = v > self.vth
        v[s] = 0
        self.v = v
        return s


# --- a whole chip program ----------------------------------------------------------------------------------------
class ChipModel:
    """Runs a chip program (list of layer dicts from netx.py) on integer inputs."""

    def __init__(self, layers: list):
        self.layers = layers
        self.syn = []
        for L in layers:
            if L["type"] == "dense":
                self.syn.append(dense_synapse(L["weight"]))
            else:
                self.syn.append(None)

    def run(self, inputs: np.ndarray, record: bool = True):
        """inputs int [B, T, *shape0] -> dict(spikes=[per layer int8 [T, B, *shape]] (flatten layers: None),
        v_last=int64 [B, N] last layer's voltage after the last step, stats=[per layer])."""
        inputs = np.asarray(inputs)
        B, T = inputs.shape[:2]
        cubas = []
        for L in self.layers:
            if "neuron" in L:
                c = Cuba(L["shape"], L["neuron"], L.get("bias"))
                c.reset(B)
                cubas.append(c)
            else:
                cubas.append(None)
        rec = [np.zeros((T, B, *L["shape"]), np.int8) if (record and c is not None) else None
               for L, c in zip(self.layers, cubas)]
        for t in range(T):
            x, graded = None, False
            for i, L in enumerate(self.layers):
                typ = L["type"]
                if typ == "input":
                    x = inputs[:, t].astype(np.int64)
                    graded = True
                    if cubas[i] is None:
                        continue
                    a = x
                elif typ == "flatten":
                    x = x.reshape(B, -1)
                    continue
                elif typ == "conv":
                    a = wrap_signed(conv_int(x, L["weight"], L["stride"], L["padding"]), 24)
                elif typ == "dense":
                    wq, e = self.syn[i]
                    acc = x.reshape(B, -1).astype(np.float64) @ wq.T.astype(np.float64)
                    acc = np.rint(acc).astype(np.int64)
                    if graded:      # Lava: an int32 dot product for graded input (wraps), an int64 sum for spikes
                        acc = wrap_signed(acc, 32)
                    a = (acc << e) if e > 0 else (acc >> -e)
                else:
                    raise ValueError(f"unknown layer type {typ!r}")
                s = cubas[i].step(a)
                if rec[i] is not None:
                    rec[i][t] = s
                x = s.astype(np.int64)
                graded = False
        last = cubas[-1]
        return {"spikes": rec, "v_last": last.v.reshape(B, -1).copy(),
                "stats": [None if c is None else dict(c.stats) for c in cubas]}
