"""The packed-bit file format (docs/packed-format.md, version 1): a strict writer and reader.

    data = encode(model)          PackedModel -> bytes
    model = decode(data)          bytes -> PackedModel (raises SltError on ANY defect; never over-reads)
    model = lower.from_graph(graph)   slt NIR graph (docs/ir.md) -> PackedModel (lower.py)

A PackedModel holds per node: op, inputs (edge order), output shape and the op's parameters. Synaptic layers keep
the EFFECTIVE weight in NIR layout ([O, I, k, k] or [O, I]) plus, for binary layers, sign and per-channel scale.
Everything here is pure Python/numpy; the C reader (c/slt_packed.c) validates the same rules."""
from __future__ import annotations

import json
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


def encode(model: PackedModel) -> bytes:
    """PackedModel -> file bytes (the writer). Raises SltError if the model cannot be represented."""
    nodes = model.nodes
    if not nodes or nodes[0].op != "input" or nodes[-1].op != "output":
        raise SltError("packed: node list must start with the input and end with the output")
    if len(nodes) > MAX_NODES:
        raise SltError(f"packed: {len(nodes)} nodes, at most {MAX_NODES}")
    table = bytearray(RECORD_SIZE * len(nodes))
    data = bytearray()
    base = len(table)

    def put(blob: bytes) -> int:
        off = base + len(data)
        data.extend(blob)
        data.extend(b"\x00" * (pad4(len(blob)) - len(blob)))
        return off

    def put_str(s: str):
        b = s.encode()
        return (put(b), len(b)) if b else (0, 0)

    for idx, nd in enumerate(nodes):
        w = [0] * 16
        flags = 0
        if len(nd.inputs) > MAX_INPUTS:
            raise SltError(f"packed: node {nd.name or idx} has {len(nd.inputs)} inputs, at most {MAX_INPUTS}")
        shape = [int(s) for s in nd.shape]
        if not 1 <= len(shape) <= 3:
            raise SltError(f"packed: node {nd.name or idx} has rank-{len(shape)} output")
        for j, s in enumerate(shape):
            w[3 + j] = s
        ins = list(nd.inputs) + [0] * (MAX_INPUTS - len(nd.inputs))
        w[1] = ins[0] | (ins[1] << 16)
        w[2] = ins[2] | (ins[3] << 16)
        if nd.op in ("conv", "affine"):
            flags |= F_BINARY if nd.binary else 0
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
                mask_off, n_sym = put(pack_bits(keep)), 0
            else:
                syms = delta_symbols(pos, b)
                mask_off, n_sym = put(pack_symbols(syms, b)), len(syms)
            if nd.binary:
                scale = np.abs(wt).reshape(o, -1).max(1).astype(np.float32)
                chan = (pos % l_)
                if not np.array_equal(np.abs(kept), scale[chan]):
                    raise SltError(f"packed: binary layer {nd.name} has kept weights that are not ±scale_c")
                vals_off = put(pack_bits(kept > 0))
                params_off = put(scale.tobytes() + np.asarray(nd.bias, np.float32).tobytes())
            else:
                vals_off = put(kept.astype("<f4").tobytes())
                params_off = put(np.asarray(nd.bias, np.float32).astype("<f4").tobytes())
            if nd.op == "conv":
                ci, k = wt.shape[1], wt.shape[2]
                ih, iw = nodes[nd.inputs[0]].shape[1:3]
                w[6:10] = [ci, ih, iw, k | (nd.stride << 8) | (nd.pad << 16)]
            else:
                w[6:10] = [wt.shape[1], nd.tokens, 0, 0]
            w[10:16] = [len(pos), enc | (b << 8), n_sym, mask_off, vals_off, params_off]
        elif nd.op == "lif":
            flags |= F_SUBTRACT if nd.reset == "subtract" else 0
            no, nl = put_str(nd.name)
            w[6:10] = [_f32(nd.beta), _f32(nd.threshold), no, nl]
        elif nd.op == "patch_select":
            idx_arr = np.asarray(nd.index, "<u4")
            w[6:8] = [len(idx_arr), put(idx_arr.tobytes())]
        elif nd.op == "attention":
            w[6:8] = [int(nd.heads), _f32(nd.attn_scale)]
        w[0] = OP_CODE[nd.op] | (len(nd.inputs) << 8) | (flags << 16) | (len(shape) << 24)
        struct.pack_into("<16I", table, RECORD_SIZE * idx, *w)

    name_off, name_len = put_str(model.name)
    for lab in model.labels:
        if "\n" in str(lab):
            raise SltError(f"packed: label {lab!r} contains a newline")
    if [str(x) for x in model.labels] == [""]:
        raise SltError("packed: a single empty label cannot be written (it reads back as no labels)",
                       "name the class, or pass no labels")
    lab_off, lab_len = put_str("\n".join(str(x) for x in model.labels))
    payload = bytes(table) + bytes(data)
    if len(payload) >= 1 << 31:
        raise SltError("packed: model larger than 2 GiB")
    hdr = bytearray(HEADER_SIZE)
    hdr[0:8] = MAGIC
    struct.pack_into("<IIIIIIIffIIIIIII", hdr, 8, VERSION, HEADER_SIZE, BYTE_ORDER, 0, len(payload), len(nodes),
                     int(model.T), float(model.dt), float(model.input_max), ENCODINGS.index(model.encoding),
                     name_off, name_len, lab_off, lab_len, 0, 0)
    struct.pack_into("<I", hdr, 72, zlib.crc32(payload) & 0xFFFFFFFF)
    struct.pack_into("<I", hdr, 76, zlib.crc32(bytes(hdr[:76])) & 0xFFFFFFFF)
    return bytes(hdr) + payload


# ---------------------------------------------------------------------------------------------------------------
# reader

def _finite(x: float) -> bool:
    return math.isfinite(x)


def decode(buf: bytes, check_crc: bool = True) -> PackedModel:
    """Strictly validate and parse a packed file. Any defect -> FormatError (an SltError); never over-reads."""
    buf = bytes(buf)
    n = len(buf)
    if n < HEADER_SIZE:
        raise FormatError(f"truncated: {n} bytes, the header alone is {HEADER_SIZE}")
    if buf[:8] != MAGIC:
        raise FormatError("bad magic (not a packed slt-deploy model)")
    (version, hsize, bom, flags, psize, n_nodes, T, dt, input_max, in_enc, name_off, name_len, lab_off, lab_len,
     res0, res1, pcrc, hcrc) = struct.unpack_from("<IIIIIIIffIIIIIIIII", buf, 8)
    if version != VERSION:
        raise FormatError(f"unknown format version {version} (this reader knows {VERSION})")
    if hsize != HEADER_SIZE:
        raise FormatError(f"header size {hsize} != {HEADER_SIZE}")
    if bom != BYTE_ORDER:
        raise FormatError(f"byte-order mark {bom:#010x}: only little-endian files exist in version 1")
    if check_crc and zlib.crc32(buf[:76]) & 0xFFFFFFFF != hcrc:
        raise FormatError("header checksum mismatch")
    if flags != 0:
        raise FormatError(f"unknown header flags {flags:#x}")
    if res0 or res1:
        raise FormatError("reserved header fields are not zero")
    if psize != n - HEADER_SIZE:
        raise FormatError(f"payload size {psize} in the header, {n - HEADER_SIZE} bytes in the file"
                          + (" (truncated)" if psize > n - HEADER_SIZE else " (trailing bytes)"))
    payload = buf[HEADER_SIZE:]
    if check_crc and zlib.crc32(payload) & 0xFFFFFFFF != pcrc:
        raise FormatError("payload checksum mismatch")
    if not 2 <= n_nodes <= MAX_NODES:
        raise FormatError(f"node count {n_nodes} out of range [2, {MAX_NODES}]")
    if n_nodes * RECORD_SIZE > psize:
        raise FormatError(f"node table ({n_nodes} records) longer than the payload")
    if not 1 <= T <= 1 << 20:
        raise FormatError(f"T = {T} out of range [1, 2^20]")
    if not (_finite(dt) and dt > 0 and _finite(input_max) and input_max > 0):
        raise FormatError("dt and input_max must be finite and > 0")
    if in_enc >= len(ENCODINGS):
        raise FormatError(f"unknown input encoding {in_enc}")
    table_end = n_nodes * RECORD_SIZE

    def region(off, size, what, align=True):
        """payload[off:off+size] after checking it lies in the data area (and 4-alignment)."""
        if size == 0:
            return b""
        if (align and off % 4) or off < table_end or off > psize or size > psize - off:
            raise FormatError(f"{what}: section [{off}, +{size}) outside the data area [{table_end}, {psize})")
        return payload[off:off + size]

    def text(off, ln, what):
        raw = region(off, ln, what, align=False)
        try:
            return raw.decode("utf-8")  # strict: RFC 3629, what the C reader's text_ok accepts (section 1)
        except UnicodeDecodeError as e:
            raise FormatError(f"{what}: not valid UTF-8 ({e.reason} at byte {e.start})") from None

    nodes: list[Node] = []
    all_elems = 0
    for i in range(n_nodes):
        w = struct.unpack_from("<16I", payload, i * RECORD_SIZE)
        code, n_in, flags_n, rank = w[0] & 0xFF, (w[0] >> 8) & 0xFF, (w[0] >> 16) & 0xFF, w[0] >> 24
        where = f"node {i}"
        if code >= len(OPS):
            raise FormatError(f"{where}: unknown op code {code}")
        op = OPS[code]
        where = f"node {i} ({op})"
        if flags_n & ~F_DEFINED.get(op, 0):
            raise FormatError(f"{where}: unknown flags {flags_n:#x}")
        lo, hi = N_INPUTS.get(op, (1, MAX_INPUTS))
        if not lo <= n_in <= hi:
            raise FormatError(f"{where}: {n_in} inputs, expected {lo}..{hi}")
        ins = [w[1] & 0xFFFF, w[1] >> 16, w[2] & 0xFFFF, w[2] >> 16]
        if any(x >= i for x in ins[:n_in]) or any(ins[n_in:]):
            raise FormatError(f"{where}: input indices {ins[:n_in]} must refer to earlier nodes (unused = 0)")
        if (op == "input") != (i == 0) or (op == "output") != (i == n_nodes - 1):
            raise FormatError(f"{where}: the input must be node 0 and the output the last node (and only there)")
        if not 1 <= rank <= 3:
            raise FormatError(f"{where}: output rank {rank} not in 1..3")
        dims = list(w[3:6])
        if any(not 1 <= d <= MAX_DIM for d in dims[:rank]) or any(dims[rank:]):
            raise FormatError(f"{where}: output shape {dims[:rank]} out of range (unused dims must be 0)")
        shape = tuple(dims[:rank])
        if math.prod(shape) > MAX_ELEMS:
            raise FormatError(f"{where}: output of {math.prod(shape)} elements exceeds {MAX_ELEMS}")
        all_elems += math.prod(shape)
        if all_elems > MAX_TOTAL_ELEMS:
            raise FormatError(f"{where}: the nodes' outputs exceed {MAX_TOTAL_ELEMS} elements in total")
        in_shapes = [nodes[x].shape for x in ins[:n_in]]
        if op != "attention" and any(s != in_shapes[0] for s in in_shapes):
            raise FormatError(f"{where}: summed inputs have different shapes {in_shapes}")
        x = in_shapes[0] if in_shapes else None
        nd = Node(op=op, inputs=ins[:n_in], shape=shape)
        p = w[6:16]
        used = {"conv": 10, "affine": 10, "lif": 4, "patch_select": 2, "attention": 2}.get(op, 0)
        if any(p[used:]):
            raise FormatError(f"{where}: unused record words are not zero")

        def want(expect):
            if tuple(expect) != shape:
                raise FormatError(f"{where}: output shape {list(shape)} impossible for input {list(x)} "
                                  f"(expected {list(expect)})")

        if op in ("conv", "affine"):
            nd.binary = bool(flags_n & F_BINARY)
            if op == "conv":
                ci, ih, iw, kw = p[0], p[1], p[2], p[3]
                k, st, pd = kw & 0xFF, (kw >> 8) & 0xFF, (kw >> 16) & 0xFF
                if kw >> 24 or not 1 <= k or not 1 <= st or pd >= k or len(x) != 3 or tuple(x) != (ci, ih, iw):
                    raise FormatError(f"{where}: kernel {k}, stride {st}, padding {pd}, input {list(x)} vs "
                                      f"declared [{ci}, {ih}, {iw}] is impossible")
                if ih + 2 * pd < k or iw + 2 * pd < k or rank != 3:
                    raise FormatError(f"{where}: kernel {k} larger than the padded input {list(x)}")
                want((shape[0], (ih + 2 * pd - k) // st + 1, (iw + 2 * pd - k) // st + 1))
                o, rows = shape[0], ci * k * k
                nd.k, nd.stride, nd.pad = k, st, pd
            else:
                din, ntok = p[0], p[1]
                if p[2] or p[3]:
                    raise FormatError(f"{where}: unused record words are not zero")
                if ntok:
                    if len(x) != 2 or tuple(x) != (ntok, din):
                        raise FormatError(f"{where}: token affine on input {list(x)} declares [{ntok}, {din}]")
                    want((ntok, shape[-1]))
                else:
                    if len(x) != 1 or x[0] != din:
                        raise FormatError(f"{where}: affine on input {list(x)} declares {din} features")
                    if rank != 1:
                        raise FormatError(f"{where}: affine output must be rank 1")
                o, rows = shape[-1], din
                nd.tokens = ntok
            if rows > MAX_ELEMS or rows * o > MAX_ELEMS:
                raise FormatError(f"{where}: weight matrix {rows} x {o} exceeds {MAX_ELEMS} elements")
            total = rows * o
            kept, encw, n_sym, m_off, v_off, par_off = p[4:10]
            enc, b = encw & 0xFF, (encw >> 8) & 0xFF
            if encw >> 16 or enc > MASK_DELTA:
                raise FormatError(f"{where}: unknown mask encoding {encw:#x}")
            if kept > total:
                raise FormatError(f"{where}: {kept} kept weights out of {total}")
            if enc == MASK_BITMAP:
                if b or n_sym:
                    raise FormatError(f"{where}: bitmap layer with delta fields set")
                nbytes = (total + 7) // 8
                bits = unpack_bits(region(m_off, nbytes, f"{where} mask"), nbytes * 8)
                if bits[total:].any():
                    raise FormatError(f"{where}: mask padding bits are not zero")
                pos = np.flatnonzero(bits[:total])
                if len(pos) != kept:
                    raise FormatError(f"{where}: bitmap has {len(pos)} ones, header says {kept} kept")
            else:
                if not 1 <= b <= MAX_DELTA_BITS:
                    raise FormatError(f"{where}: delta width {b} not in 1..{MAX_DELTA_BITS}")
                if n_sym < kept or n_sym > MAX_ELEMS * 2:
                    raise FormatError(f"{where}: {n_sym} symbols for {kept} kept weights")
                nbytes = (n_sym * b + 7) // 8
                raw = region(m_off, nbytes, f"{where} index stream")
                allbits = unpack_bits(raw, nbytes * 8)
                if allbits[n_sym * b:].any():
                    raise FormatError(f"{where}: index stream padding bits are not zero")
                syms = unpack_symbols(raw, n_sym, b).astype(np.int64)
                e = (1 << b) - 1
                is_w = syms != e
                if int(is_w.sum()) != kept or (n_sym and not is_w[-1]):
                    raise FormatError(f"{where}: index stream decodes to {int(is_w.sum())} weights (header: {kept})"
                                      " or ends with an escape")
                # position after each symbol: cumulative (escape: +E; weight: +s+1); kept pos = that - 1
                adv = np.where(is_w, syms + 1, e)
                pos = (np.cumsum(adv) - 1)[is_w]
                if kept and pos[-1] >= total:
                    raise FormatError(f"{where}: kept index {int(pos[-1])} out of range (matrix has {total})")
            if enc == MASK_BITMAP and b:
                raise FormatError(f"{where}: bitmap with a delta width")
            mat = np.zeros(total, np.float32)
            if nd.binary:
                nb = (kept + 7) // 8
                sbits = unpack_bits(region(v_off, nb, f"{where} sign bits"), nb * 8)
                if sbits[kept:].any():
                    raise FormatError(f"{where}: sign padding bits are not zero")
                prm = np.frombuffer(region(par_off, 8 * o, f"{where} scale/bias"), "<f4")
                scale, bias = prm[:o].astype(np.float32), prm[o:].astype(np.float32)
                if not (np.all(np.isfinite(prm)) and np.all(scale >= 0)):
                    raise FormatError(f"{where}: scale/bias not finite, or a negative scale")
                sgn = np.where(sbits[:kept] > 0, 1.0, -1.0).astype(np.float32)
                mat[pos] = sgn * scale[pos % o]
                nd.scale = scale
                if kept and np.any(scale[pos % o] == 0):
                    raise FormatError(f"{where}: kept weight in a channel with scale 0")
            else:
                vals = np.frombuffer(region(v_off, 4 * kept, f"{where} weights"), "<f4").astype(np.float32)
                if not np.all(np.isfinite(vals)) or np.any(vals == 0):
                    raise FormatError(f"{where}: kept weights must be finite and nonzero")
                mat[pos] = vals
                bias = np.frombuffer(region(par_off, 4 * o, f"{where} bias"), "<f4").astype(np.float32)
                if not np.all(np.isfinite(bias)):
                    raise FormatError(f"{where}: bias not finite")
            nd.bias = bias
            nd.weight = from_packing(mat.reshape(rows, o), op, o, rows // (nd.k * nd.k), nd.k)
            nd.mask_enc, nd.delta_bits = enc, b
        elif op == "lif":
            want(x)
            beta, thr = struct.unpack("<ff", struct.pack("<II", p[0], p[1]))
            if not (_finite(beta) and 0.0 <= beta <= 1.0 and _finite(thr)):
                raise FormatError(f"{where}: beta {beta} not in [0, 1] or threshold {thr} not finite")
            nd.beta, nd.threshold = float(np.float32(beta)), float(np.float32(thr))
            nd.reset = "subtract" if flags_n & F_SUBTRACT else "zero"
            nd.name = text(p[2], p[3], f"{where} name")
        elif op == "flatten":
            if rank != 1 or shape[0] != math.prod(x):
                raise FormatError(f"{where}: flatten of {list(x)} cannot give {list(shape)}")
        elif op in ("add", "output"):
            want(x)
            if op == "output" and rank != 1:
                raise FormatError(f"{where}: the output must be a vector of class scores")
        elif op == "input":
            if rank != 3:
                raise FormatError(f"{where}: input must be [C, H, W]")
        elif op == "tokens":
            if len(x) != 3:
                raise FormatError(f"{where}: tokens needs a [D, H, W] input, got {list(x)}")
            want((x[1] * x[2], x[0]))
        elif op == "patch_select":
            cnt, off = p[0], p[1]
            if len(x) != 2 or not 1 <= cnt <= x[0]:
                raise FormatError(f"{where}: selecting {cnt} patches of input {list(x)}")
            idx = np.frombuffer(region(off, 4 * cnt, f"{where} index"), "<u4").astype(np.int64)
            if np.any(np.diff(idx) <= 0) or idx[-1] >= x[0]:
                raise FormatError(f"{where}: patch index must be strictly increasing and < {x[0]}")
            want((cnt, x[1]))
            nd.index = idx
        elif op == "attention":
            heads = p[0]
            (sc,) = struct.unpack("<f", struct.pack("<I", p[1]))
            srcs = [nodes[j] for j in ins[:3]]
            if any(s.op != "lif" for s in srcs) or any(s.shape != srcs[0].shape for s in srcs) or len(x) != 2:
                raise FormatError(f"{where}: inputs must be three LIF nodes of one [N, D] shape")
            if not 1 <= heads <= x[1] or x[1] % heads or not _finite(sc):
                raise FormatError(f"{where}: {heads} heads do not divide D = {x[1]} or scale not finite")
            want(x)
            nd.heads, nd.attn_scale = heads, float(sc)
        elif op == "token_sum":
            if len(x) != 2:
                raise FormatError(f"{where}: token_sum needs [N, D], got {list(x)}")
            want((x[1],))
        nodes.append(nd)
    name = text(name_off, name_len, "model name")
    labels = text(lab_off, lab_len, "labels")
    if labels.endswith("\n"):
        raise FormatError("labels: the section ends with a newline (labels are separated by \\n, none follows the last)")
    return PackedModel(nodes=nodes, T=T, dt=float(dt), input_max=float(input_max), encoding=ENCODINGS[in_enc],
                       name=name, labels=labels.split("\n") if labels else [])


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
