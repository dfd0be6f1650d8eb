"""The packed-bit file format (docs/packed-format.md, version 1): a strict writer and reader.

    data = encode(model)          PackedModel -> bytes
    model = decode(data)          bytes -> PackedModel (reader.py; raises SltError on ANY defect; never over-reads)
    model = lower.from_graph(graph)   slt NIR graph (docs/ir.md) -> PackedModel (lower.py)

A PackedModel holds per node: op, inputs (edge order), output shape and the op's parameters. Synaptic layers keep
the EFFECTIVE weight in NIR layout ([O, I, k, k] or [O, I]) plus, for binary layers, sign and per-channel scale.
Everything here is pure Python/numpy; the C reader (c/slt_reader.c) validates the same rules."""
from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from ...errors import SltError

MAGIC = b"SLTPACK\x00"
VERSION = 1
HEADER_SIZE = 80
RECORD_SIZE = 64
BYTE_ORDER = 0x01020304
MAX_NODES = 4096
MAX_INPUTS = 4
MAX_DIM = 1 << 26           # every shape dim (conv kernel/stride/padding: 8 bits each)
MAX_ELEMS = 1 << 26         # elements of one tensor (activation or weight matrix)
MAX_TOTAL_ELEMS = 1 << 28   # output elements summed over all nodes
MAX_DELTA_BITS = 16

OPS = ["input", "conv", "affine", "lif", "flatten", "add", "tokens", "patch_select", "attention", "token_sum",
       "output"]
OP_CODE = {n: i for i, n in enumerate(OPS)}
ENCODINGS = ["direct", "rate"]
F_BINARY = 1          # synapse: binary weights
F_SUBTRACT = 2        # lif: reset by subtraction (else to zero)
F_DEFINED = {"conv": F_BINARY, "affine": F_BINARY, "lif": F_SUBTRACT}
N_INPUTS = {"input": (0, 0), "attention": (3, 3)}   # others: 1..MAX_INPUTS
MASK_BITMAP, MASK_DELTA = 0, 1


class FormatError(SltError):
    """A .slt file that is not a valid packed model (what is wrong, where)."""

    def __init__(self, what: str):
        super().__init__(f"invalid packed model: {what}",
                         "re-export it with 'slt-deploy export --target packed' (the file is damaged or not ours)")


@dataclass
class Node:
    op: str
    inputs: list
    shape: tuple
    name: str = ""
    binary: bool = False
    weight: np.ndarray | None = None     # effective float32 weight, NIR layout
    bias: np.ndarray | None = None
    scale: np.ndarray | None = None      # binary: per output channel
    k: int = 1
    stride: int = 1
    pad: int = 0
    tokens: int = 0                      # affine on [N, D]: N (0 = plain vector)
    mask_enc: int | None = None          # chosen by the writer if None
    delta_bits: int = 0
    beta: float = 1.0
    threshold: float = 1.0
    reset: str = "zero"
    index: np.ndarray | None = None      # patch_select
    heads: int = 1
    attn_scale: float = 1.0


@dataclass
class PackedModel:
    nodes: list
    T: int
    dt: float
    input_max: float
    encoding: str
    name: str = ""
    labels: list = field(default_factory=list)

    @property
    def input_shape(self):
        return list(self.nodes[0].shape)

    @property
    def n_classes(self):
        return int(self.nodes[-1].shape[0])


def spike_keys(model: PackedModel) -> dict:
    """{node index: key} for every LIF: its name (slt.layer), made unique (names are free text in the file)."""
    out, used = {}, set()
    for i, n in enumerate(model.nodes):
        if n.op == "lif":
            k = n.name or f"node{i}"
            if k in used:
                k = f"{k}#{i}"
            used.add(k)
            out[i] = k
    return out


# ---------------------------------------------------------------------------------------------------------------
# bit streams (LSB-first within each byte; bit p of a stream is bit p & 7 of byte p >> 3)

def pack_bits(bits: np.ndarray) -> bytes:
    return np.packbits(np.asarray(bits, np.uint8), bitorder="little").tobytes()


def pack_symbols(sym: np.ndarray, b: int) -> bytes:
    """Fixed-width b-bit unsigned symbols, LSB-first, concatenated."""
    sym = np.asarray(sym, np.uint32)
    bits = ((sym[:, None] >> np.arange(b, dtype=np.uint32)[None, :]) & 1).astype(np.uint8).reshape(-1)
    return pack_bits(bits)


def unpack_bits(buf: bytes, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(buf, np.uint8), count=n, bitorder="little")


def unpack_symbols(buf: bytes, n: int, b: int) -> np.ndarray:
    bits = unpack_bits(buf, n * b).reshape(n, b).astype(np.uint32)
    return (bits << np.arange(b, dtype=np.uint32)[None, :]).sum(1, dtype=np.uint32)


def pad4(n: int) -> int:
    return (n + 3) & ~3


def delta_symbols(pos: np.ndarray, b: int) -> np.ndarray:
    """Kept flat positions (ascending) -> b-bit symbols: gap g = p - next; E = 2^b-1 means 'skip E, no weight'."""
    e = (1 << b) - 1
    gaps = np.diff(np.concatenate([[-1], pos.astype(np.int64)])) - 1
    n_esc = gaps // e
    out = np.empty(int(n_esc.sum()) + len(gaps), np.uint32)
    starts = np.concatenate([[0], np.cumsum(n_esc + 1)[:-1]]).astype(np.int64)
    out[:] = e
    out[starts + n_esc] = gaps - n_esc * e
    return out


def delta_cost(pos: np.ndarray, b: int) -> int:
    e = (1 << b) - 1
    gaps = np.diff(np.concatenate([[-1], pos.astype(np.int64)])) - 1
    return int((gaps // e).sum() + len(gaps)) * b


# ---------------------------------------------------------------------------------------------------------------
# synapse helpers: packing layout = rows (input side) x columns (output channels)

def syn_rows_cols(node: Node):
    """(R, L): conv rows (ci, ky, kx), columns co; affine rows = input feature, columns = output feature."""
    w = node.weight
    if node.op == "conv":
        return w.shape[1] * w.shape[2] * w.shape[3], w.shape[0]
    return w.shape[1], w.shape[0]


def to_packing(w: np.ndarray) -> np.ndarray:
    """Effective weight (NIR layout) -> [R, L] matrix in packing layout."""
    if w.ndim == 4:
        return np.ascontiguousarray(w.transpose(1, 2, 3, 0).reshape(-1, w.shape[0]))
    return np.ascontiguousarray(w.T)


def from_packing(m: np.ndarray, op: str, o: int, i: int, k: int) -> np.ndarray:
    if op == "conv":
        return np.ascontiguousarray(m.reshape(i, k, k, o).transpose(3, 0, 1, 2))
    return np.ascontiguousarray(m.T)


def choose_mask_encoding(pos: np.ndarray, n: int):
    """(enc, bits, cost_bits): the smaller of a bitmap (n bits) and the best fixed-width index-delta stream."""
    best = (MASK_BITMAP, 0, n)
    for b in range(1, MAX_DELTA_BITS + 1):
        c = delta_cost(pos, b)
        if c < best[2]:
            best = (MASK_DELTA, b, c)
    return best


# ---------------------------------------------------------------------------------------------------------------
# writer

def _f32(x) -> int:
    return struct.unpack("<I", struct.pack("<f", float(x)))[0]


class _Sections:
    """The data area after the node table: each section 4-aligned, written in the order the records ask for it."""

    def __init__(self, base: int):
        self.base, self.data = base, bytearray()

    def put(self, blob: bytes) -> int:
        off = self.base + len(self.data)
        self.data.extend(blob)
        self.data.extend(b"\x00" * (pad4(len(blob)) - len(blob)))
        return off

    def put_str(self, s: str):
        b = s.encode()
        return (self.put(b), len(b)) if b else (0, 0)


def _write_synapse(nd: Node, nodes: list, sec: _Sections, w: list) -> int:
    """conv / affine: mask (bitmap or index deltas), kept values (sign bits or float32), scale/bias; -> flags."""
    wt = np.asarray(nd.weight, np.float32)
    o = wt.shape[0]
    mat = to_packing(wt)
    r, l_ = mat.shape
    keep = (mat != 0).reshape(-1)
    pos = np.flatnonzero(keep)
    kept = mat.reshape(-1)[pos]
    if nd.mask_enc is None:
        enc, b, _ = choose_mask_encoding(pos, r * l_)
    else:
        enc, b = nd.mask_enc, nd.delta_bits
    if enc == MASK_BITMAP:
        mask_off, n_sym = sec.put(pack_bits(keep)), 0
    else:
        syms = delta_symbols(pos, b)
        mask_off, n_sym = sec.put(pack_symbols(syms, b)), len(syms)
    if nd.binary:
        scale = np.abs(wt).reshape(o, -1).max(1).astype(np.float32)
        if not np.array_equal(np.abs(kept), scale[pos % l_]):
            raise SltError(f"packed: binary layer {nd.name} has kept weights that are not ±scale_c")
        vals_off = sec.put(pack_bits(kept > 0))
        params_off = sec.put(scale.tobytes() + np.asarray(nd.bias, np.float32).tobytes())
    else:
        vals_off = sec.put(kept.astype("<f4").tobytes())
        params_off = sec.put(np.asarray(nd.bias, np.float32).astype("<f4").tobytes())
    if nd.op == "conv":
        ci, k = wt.shape[1], wt.shape[2]
        ih, iw = nodes[nd.inputs[0]].shape[1:3]
        w[6:10] = [ci, ih, iw, k | (nd.stride << 8) | (nd.pad << 16)]
    else:
        w[6:10] = [wt.shape[1], nd.tokens, 0, 0]
    w[10:16] = [len(pos), enc | (b << 8), n_sym, mask_off, vals_off, params_off]
    return F_BINARY if nd.binary else 0


def _write_lif(nd: Node, nodes: list, sec: _Sections, w: list) -> int:
    no, nl = sec.put_str(nd.name)
    w[6:10] = [_f32(nd.beta), _f32(nd.threshold), no, nl]
    return F_SUBTRACT if nd.reset == "subtract" else 0


def _write_patch_select(nd: Node, nodes: list, sec: _Sections, w: list) -> int:
    idx_arr = np.asarray(nd.index, "<u4")
    w[6:8] = [len(idx_arr), sec.put(idx_arr.tobytes())]
    return 0


def _write_attention(nd: Node, nodes: list, sec: _Sections, w: list) -> int:
    w[6:8] = [int(nd.heads), _f32(nd.attn_scale)]
    return 0


# op -> writer of its parameter words (w[6:16]) and sections; ops absent here have none
WRITE = {"conv": _write_synapse, "affine": _write_synapse, "lif": _write_lif, "patch_select": _write_patch_select,
         "attention": _write_attention}


def _record(idx: int, nd: Node, nodes: list, sec: _Sections) -> list:
    """The 16 words of node `idx`'s record (its sections appended to `sec`)."""
    if len(nd.inputs) > MAX_INPUTS:
        raise SltError(f"packed: node {nd.name or idx} has {len(nd.inputs)} inputs, at most {MAX_INPUTS}")
    shape = [int(s) for s in nd.shape]
    if not 1 <= len(shape) <= 3:
        raise SltError(f"packed: node {nd.name or idx} has rank-{len(shape)} output")
    w = [0] * 16
    for j, s in enumerate(shape):
        w[3 + j] = s
    ins = list(nd.inputs) + [0] * (MAX_INPUTS - len(nd.inputs))
    w[1] = ins[0] | (ins[1] << 16)
    w[2] = ins[2] | (ins[3] << 16)
    flags = WRITE[nd.op](nd, nodes, sec, w) if nd.op in WRITE else 0
    w[0] = OP_CODE[nd.op] | (len(nd.inputs) << 8) | (flags << 16) | (len(shape) << 24)
    return w


def _header(model: PackedModel, payload: bytes, name: tuple, labels: tuple) -> bytes:
    hdr = bytearray(HEADER_SIZE)
    hdr[0:8] = MAGIC
    struct.pack_into("<IIIIIIIffIIIIIII", hdr, 8, VERSION, HEADER_SIZE, BYTE_ORDER, 0, len(payload),
                     len(model.nodes), int(model.T), float(model.dt), float(model.input_max),
                     ENCODINGS.index(model.encoding), *name, *labels, 0, 0)
    struct.pack_into("<I", hdr, 72, zlib.crc32(payload) & 0xFFFFFFFF)
    struct.pack_into("<I", hdr, 76, zlib.crc32(bytes(hdr[:76])) & 0xFFFFFFFF)
    return bytes(hdr)


def encode(model: PackedModel) -> bytes:
    """PackedModel -> file bytes (the writer): node records, their sections, name, labels, header. Raises
    SltError if the model cannot be represented."""
    nodes = model.nodes
    if not nodes or nodes[0].op != "input" or nodes[-1].op != "output":
        raise SltError("packed: node list must start with the input and end with the output")
    if len(nodes) > MAX_NODES:
        raise SltError(f"packed: {len(nodes)} nodes, at most {MAX_NODES}")
    table = bytearray(RECORD_SIZE * len(nodes))
    sec = _Sections(len(table))
    for idx, nd in enumerate(nodes):
        struct.pack_into("<16I", table, RECORD_SIZE * idx, *_record(idx, nd, nodes, sec))
    name = sec.put_str(model.name)
    for lab in model.labels:
        if "\n" in str(lab):
            raise SltError(f"packed: label {lab!r} contains a newline")
    if [str(x) for x in model.labels] == [""]:
        raise SltError("packed: a single empty label cannot be written (it reads back as no labels)",
                       "name the class, or pass no labels")
    labels = sec.put_str("\n".join(str(x) for x in model.labels))
    payload = bytes(table) + bytes(sec.data)
    if len(payload) >= 1 << 31:
        raise SltError("packed: model larger than 2 GiB")
    return _header(model, payload, name, labels) + payload


# ---------------------------------------------------------------------------------------------------------------
# reader: reader.py (one step per part of the file, one parser per op)

def decode(buf: bytes, check_crc: bool = True) -> PackedModel:
    """Strictly validate and parse a packed file (reader.decode). Any defect -> FormatError; never over-reads."""
    from .reader import decode as read

    return read(buf, check_crc)


# ---------------------------------------------------------------------------------------------------------------
# size accounting (bench/packed.py, demo)

def log2_binom(n: int, k: int) -> float:
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2)


def size_report(model: PackedModel, data: bytes | None = None) -> dict:
    """File bytes vs fp32 dense vs the information bound. Bound = sum over synaptic layers of log2 C(n, k) bits
    (which weights are kept) + k bits (binary: one sign each) or 32 k bits (float values), + the header: every
    byte of the file that is not a weight stream (header, node table, scale/bias, names, labels, patch index)."""
    data = encode(model) if data is None else data
    weight_bits = stream_bytes = dense = 0.0
    per_layer = []
    for idx, nd in enumerate(model.nodes):
        if nd.op not in ("conv", "affine"):
            continue
        mat = to_packing(np.asarray(nd.weight, np.float32))
        n, k = mat.size, int((mat != 0).sum())
        enc, b, cost = choose_mask_encoding(np.flatnonzero(mat.reshape(-1) != 0), n) if nd.mask_enc is None else \
            (nd.mask_enc, nd.delta_bits, None)
        bound = log2_binom(n, k) + k * (1 if nd.binary else 32)
        vals_bytes = pad4((k + 7) // 8) if nd.binary else 4 * k
        if cost is None:
            cost = n if enc == MASK_BITMAP else delta_cost(np.flatnonzero(mat.reshape(-1) != 0), b)
        mask_bytes = pad4((int(cost) + 7) // 8)
        weight_bits += bound
        stream_bytes += mask_bytes + vals_bytes
        dense += 4 * (n + mat.shape[1])
        per_layer.append({"name": nd.name or f"node{idx}:{nd.op}", "n": n, "kept": k, "binary": nd.binary,
                          "mask": "bitmap" if enc == MASK_BITMAP else f"delta{b}", "stream_bytes": mask_bytes + vals_bytes,
                          "bound_bytes": bound / 8})
    header = len(data) - stream_bytes
    bound_bytes = weight_bits / 8 + header
    return {"file_bytes": len(data), "fp32_dense_bytes": int(dense), "bound_bytes": bound_bytes,
            "header_bytes": int(header), "ratio_to_bound": len(data) / bound_bytes,
            "weights_ratio_to_bound": stream_bytes / max(1e-9, weight_bits / 8), "layers": per_layer}
