"""The strict reader of the packed format (docs/packed-format.md, version 1): bytes -> PackedModel.

    model = decode(data)      raises FormatError (an SltError) on ANY defect; never over-reads

One named step per part of the file: the header (`_header`), the node record common to every op (`_record`), then
one parser per op through the dispatch table PARSE (synaptic layers: geometry, then the mask -- bitmap or
index deltas -- then the kept values). The C reader (c/slt_reader.c, `parse_<op>`) checks the same rules in the
same order."""
from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from ...ir.graph import conv_out_hw
from .format import (
    BYTE_ORDER,
    ENCODINGS,
    F_BINARY,
    F_DEFINED,
    F_SUBTRACT,
    HEADER_SIZE,
    MAGIC,
    MASK_BITMAP,
    MASK_DELTA,
    MAX_DELTA_BITS,
    MAX_DIM,
    MAX_ELEMS,
    MAX_INPUTS,
    MAX_NODES,
    MAX_TOTAL_ELEMS,
    N_INPUTS,
    OPS,
    RECORD_SIZE,
    VERSION,
    FormatError,
    Node,
    PackedModel,
    from_packing,
    unpack_bits,
    unpack_symbols,
)

USED_WORDS = {"conv": 10, "affine": 10, "lif": 4, "patch_select": 2, "attention": 2}  # of the 10 parameter words


def _finite(x: float) -> bool:
    return math.isfinite(x)


@dataclass
class Header:
    n_nodes: int
    T: int
    dt: float
    input_max: float
    encoding: int
    name: tuple     # (offset, length) in the payload
    labels: tuple


def _header(buf: bytes, check_crc: bool) -> Header:
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
    if check_crc and zlib.crc32(buf[HEADER_SIZE:]) & 0xFFFFFFFF != pcrc:
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
    return Header(n_nodes, T, dt, input_max, in_enc, (name_off, name_len), (lab_off, lab_len))


class Payload:
    """The bytes after the header; sections are read only inside the data area after the node table."""

    def __init__(self, payload: bytes, n_nodes: int):
        self.data, self.size, self.table_end = payload, len(payload), n_nodes * RECORD_SIZE

    def region(self, off, size, what, align=True) -> bytes:
        """payload[off:off+size] after checking it lies in the data area (and 4-alignment)."""
        if size == 0:
            return b""
        if (align and off % 4) or off < self.table_end or off > self.size or size > self.size - off:
            raise FormatError(f"{what}: section [{off}, +{size}) outside the data area [{self.table_end}, "
                              f"{self.size})")
        return self.data[off:off + size]

    def text(self, off, ln, what) -> str:
        raw = self.region(off, ln, what, align=False)
        try:
            return raw.decode("utf-8")  # strict: RFC 3629, what the C reader's text_ok accepts (section 1)
        except UnicodeDecodeError as e:
            raise FormatError(f"{what}: not valid UTF-8 ({e.reason} at byte {e.start})") from None


@dataclass
class Record:
    """One node record after the checks every op shares."""
    where: str
    nd: Node
    flags: int
    rank: int
    shape: tuple
    x: tuple | None      # the (common) input shape
    p: tuple             # the 10 op parameter words

    def want(self, expect):
        if tuple(expect) != self.shape:
            raise FormatError(f"{self.where}: output shape {list(self.shape)} impossible for input {list(self.x)} "
                              f"(expected {list(expect)})")


def _record(payload: Payload, i: int, n_nodes: int) -> Record:
    w = struct.unpack_from("<16I", payload.data, i * RECORD_SIZE)
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
    return Record(where, Node(op=op, inputs=ins[:n_in], shape=shape), flags_n, rank, shape, None, w[6:16])


def _check_inputs(r: Record, nodes: list):
    in_shapes = [nodes[x].shape for x in r.nd.inputs]
    if r.nd.op != "attention" and any(s != in_shapes[0] for s in in_shapes):
        raise FormatError(f"{r.where}: summed inputs have different shapes {in_shapes}")
    r.x = in_shapes[0] if in_shapes else None
    if any(r.p[USED_WORDS.get(r.nd.op, 0):]):
        raise FormatError(f"{r.where}: unused record words are not zero")


# --- synaptic layers: geometry -> (output columns, rows), mask positions, kept values ---------------------------

def _conv_geometry(r: Record):
    ci, ih, iw, kw = r.p[0], r.p[1], r.p[2], r.p[3]
    k, st, pd = kw & 0xFF, (kw >> 8) & 0xFF, (kw >> 16) & 0xFF
    x = r.x
    if kw >> 24 or not 1 <= k or not 1 <= st or pd >= k or len(x) != 3 or tuple(x) != (ci, ih, iw):
        raise FormatError(f"{r.where}: kernel {k}, stride {st}, padding {pd}, input {list(x)} vs "
                          f"declared [{ci}, {ih}, {iw}] is impossible")
    if ih + 2 * pd < k or iw + 2 * pd < k or r.rank != 3:
        raise FormatError(f"{r.where}: kernel {k} larger than the padded input {list(x)}")
    r.want((r.shape[0], *conv_out_hw((ih, iw), (k, k), (st, st), (pd, pd))))
    r.nd.k, r.nd.stride, r.nd.pad = k, st, pd
    return r.shape[0], ci * k * k


def _affine_geometry(r: Record):
    din, ntok = r.p[0], r.p[1]
    x = r.x
    if r.p[2] or r.p[3]:
        raise FormatError(f"{r.where}: unused record words are not zero")
    if ntok:
        if len(x) != 2 or tuple(x) != (ntok, din):
            raise FormatError(f"{r.where}: token affine on input {list(x)} declares [{ntok}, {din}]")
        r.want((ntok, r.shape[-1]))
    else:
        if len(x) != 1 or x[0] != din:
            raise FormatError(f"{r.where}: affine on input {list(x)} declares {din} features")
        if r.rank != 1:
            raise FormatError(f"{r.where}: affine output must be rank 1")
    r.nd.tokens = ntok
    return r.shape[-1], din


def _bitmap_positions(r: Record, pl: Payload, total, kept, b, n_sym, m_off):
    if b or n_sym:
        raise FormatError(f"{r.where}: bitmap layer with delta fields set")
    nbytes = (total + 7) // 8
    bits = unpack_bits(pl.region(m_off, nbytes, f"{r.where} mask"), nbytes * 8)
    if bits[total:].any():
        raise FormatError(f"{r.where}: mask padding bits are not zero")
    pos = np.flatnonzero(bits[:total])
    if len(pos) != kept:
        raise FormatError(f"{r.where}: bitmap has {len(pos)} ones, header says {kept} kept")
    return pos


def _delta_positions(r: Record, pl: Payload, total, kept, b, n_sym, m_off):
    if not 1 <= b <= MAX_DELTA_BITS:
        raise FormatError(f"{r.where}: delta width {b} not in 1..{MAX_DELTA_BITS}")
    if n_sym < kept or n_sym > MAX_ELEMS * 2:
        raise FormatError(f"{r.where}: {n_sym} symbols for {kept} kept weights")
    nbytes = (n_sym * b + 7) // 8
    raw = pl.region(m_off, nbytes, f"{r.where} index stream")
    if unpack_bits(raw, nbytes * 8)[n_sym * b:].any():
        raise FormatError(f"{r.where}: index stream padding bits are not zero")
    syms = unpack_symbols(raw, n_sym, b).astype(np.int64)
    e = (1 << b) - 1
    is_w = syms != e
    if int(is_w.sum()) != kept or (n_sym and not is_w[-1]):
        raise FormatError(f"{r.where}: index stream decodes to {int(is_w.sum())} weights (header: {kept})"
                          " or ends with an escape")
    # position after each symbol: cumulative (escape: +E; weight: +s+1); kept pos = that - 1
    pos = (np.cumsum(np.where(is_w, syms + 1, e)) - 1)[is_w]
    if kept and pos[-1] >= total:
        raise FormatError(f"{r.where}: kept index {int(pos[-1])} out of range (matrix has {total})")
    return pos


MASK_READERS = {MASK_BITMAP: _bitmap_positions, MASK_DELTA: _delta_positions}


def _binary_values(r: Record, pl: Payload, mat, pos, kept, o, v_off, par_off):
    nb = (kept + 7) // 8
    sbits = unpack_bits(pl.region(v_off, nb, f"{r.where} sign bits"), nb * 8)
    if sbits[kept:].any():
        raise FormatError(f"{r.where}: sign padding bits are not zero")
    prm = np.frombuffer(pl.region(par_off, 8 * o, f"{r.where} scale/bias"), "<f4")
    scale, bias = prm[:o].astype(np.float32), prm[o:].astype(np.float32)
    if not (np.all(np.isfinite(prm)) and np.all(scale >= 0)):
        raise FormatError(f"{r.where}: scale/bias not finite, or a negative scale")
    mat[pos] = np.where(sbits[:kept] > 0, 1.0, -1.0).astype(np.float32) * scale[pos % o]
    r.nd.scale = scale
    if kept and np.any(scale[pos % o] == 0):
        raise FormatError(f"{r.where}: kept weight in a channel with scale 0")
    return bias


def _float_values(r: Record, pl: Payload, mat, pos, kept, o, v_off, par_off):
    vals = np.frombuffer(pl.region(v_off, 4 * kept, f"{r.where} weights"), "<f4").astype(np.float32)
    if not np.all(np.isfinite(vals)) or np.any(vals == 0):
        raise FormatError(f"{r.where}: kept weights must be finite and nonzero")
    mat[pos] = vals
    bias = np.frombuffer(pl.region(par_off, 4 * o, f"{r.where} bias"), "<f4").astype(np.float32)
    if not np.all(np.isfinite(bias)):
        raise FormatError(f"{r.where}: bias not finite")
    return bias


def parse_synapse(r: Record, pl: Payload, nodes: list):
    nd = r.nd
    nd.binary = bool(r.flags & F_BINARY)
    o, rows = (_conv_geometry if nd.op == "conv" else _affine_geometry)(r)
    if rows > MAX_ELEMS or rows * o > MAX_ELEMS:
        raise FormatError(f"{r.where}: weight matrix {rows} x {o} exceeds {MAX_ELEMS} elements")
    total = rows * o
    kept, encw, n_sym, m_off, v_off, par_off = r.p[4:10]
    enc, b = encw & 0xFF, (encw >> 8) & 0xFF
    if encw >> 16 or enc > MASK_DELTA:
        raise FormatError(f"{r.where}: unknown mask encoding {encw:#x}")
    if kept > total:
        raise FormatError(f"{r.where}: {kept} kept weights out of {total}")
    pos = MASK_READERS[enc](r, pl, total, kept, b, n_sym, m_off)
    mat = np.zeros(total, np.float32)
    nd.bias = (_binary_values if nd.binary else _float_values)(r, pl, mat, pos, kept, o, v_off, par_off)
    nd.weight = from_packing(mat.reshape(rows, o), nd.op, o, rows // (nd.k * nd.k), nd.k)
    nd.mask_enc, nd.delta_bits = enc, b


# --- the other ops ------------------------------------------------------------------------------------------------

def parse_lif(r: Record, pl: Payload, nodes: list):
    r.want(r.x)
    beta, thr = struct.unpack("<ff", struct.pack("<II", r.p[0], r.p[1]))
    if not (_finite(beta) and 0.0 <= beta <= 1.0 and _finite(thr)):
        raise FormatError(f"{r.where}: beta {beta} not in [0, 1] or threshold {thr} not finite")
    r.nd.beta, r.nd.threshold = float(np.float32(beta)), float(np.float32(thr))
    r.nd.reset = "subtract" if r.flags & F_SUBTRACT else "zero"
    r.nd.name = pl.text(r.p[2], r.p[3], f"{r.where} name")


def parse_flatten(r: Record, pl: Payload, nodes: list):
    if r.rank != 1 or r.shape[0] != math.prod(r.x):
        raise FormatError(f"{r.where}: flatten of {list(r.x)} cannot give {list(r.shape)}")


def parse_add(r: Record, pl: Payload, nodes: list):
    r.want(r.x)


def parse_output(r: Record, pl: Payload, nodes: list):
    r.want(r.x)
    if r.rank != 1:
        raise FormatError(f"{r.where}: the output must be a vector of class scores")


def parse_input(r: Record, pl: Payload, nodes: list):
    if r.rank != 3:
        raise FormatError(f"{r.where}: input must be [C, H, W]")


def parse_tokens(r: Record, pl: Payload, nodes: list):
    if len(r.x) != 3:
        raise FormatError(f"{r.where}: tokens needs a [D, H, W] input, got {list(r.x)}")
    r.want((r.x[1] * r.x[2], r.x[0]))


def parse_patch_select(r: Record, pl: Payload, nodes: list):
    cnt, off = r.p[0], r.p[1]
    x = r.x
    if len(x) != 2 or not 1 <= cnt <= x[0]:
        raise FormatError(f"{r.where}: selecting {cnt} patches of input {list(x)}")
    idx = np.frombuffer(pl.region(off, 4 * cnt, f"{r.where} index"), "<u4").astype(np.int64)
    if np.any(np.diff(idx) <= 0) or idx[-1] >= x[0]:
        raise FormatError(f"{r.where}: patch index must be strictly increasing and < {x[0]}")
    r.want((cnt, x[1]))
    r.nd.index = idx


def parse_attention(r: Record, pl: Payload, nodes: list):
    heads = r.p[0]
    (sc,) = struct.unpack("<f", struct.pack("<I", r.p[1]))
    srcs = [nodes[j] for j in r.nd.inputs[:3]]
    x = r.x
    if any(s.op != "lif" for s in srcs) or any(s.shape != srcs[0].shape for s in srcs) or len(x) != 2:
        raise FormatError(f"{r.where}: inputs must be three LIF nodes of one [N, D] shape")
    if not 1 <= heads <= x[1] or x[1] % heads or not _finite(sc):
        raise FormatError(f"{r.where}: {heads} heads do not divide D = {x[1]} or scale not finite")
    r.want(x)
    r.nd.heads, r.nd.attn_scale = heads, float(sc)


def parse_token_sum(r: Record, pl: Payload, nodes: list):
    if len(r.x) != 2:
        raise FormatError(f"{r.where}: token_sum needs [N, D], got {list(r.x)}")
    r.want((r.x[1],))


PARSE = {"input": parse_input, "conv": parse_synapse, "affine": parse_synapse, "lif": parse_lif,
         "flatten": parse_flatten, "add": parse_add, "tokens": parse_tokens, "patch_select": parse_patch_select,
         "attention": parse_attention, "token_sum": parse_token_sum, "output": parse_output}
assert set(PARSE) == set(OPS), "every op of the format has a parser"


def decode(buf: bytes, check_crc: bool = True) -> PackedModel:
    """Strictly validate and parse a packed file. Any defect -> FormatError (an SltError); never over-reads."""
    buf = bytes(buf)
    h = _header(buf, check_crc)
    pl = Payload(buf[HEADER_SIZE:], h.n_nodes)
    nodes: list[Node] = []
    all_elems = 0
    for i in range(h.n_nodes):
        r = _record(pl, i, h.n_nodes)
        all_elems += math.prod(r.shape)
        if all_elems > MAX_TOTAL_ELEMS:
            raise FormatError(f"{r.where}: the nodes' outputs exceed {MAX_TOTAL_ELEMS} elements in total")
        _check_inputs(r, nodes)
        PARSE[r.nd.op](r, pl, nodes)
        nodes.append(r.nd)
    name = pl.text(*h.name, "model name")
    labels = pl.text(*h.labels, "labels")
    if labels.endswith("\n"):
        raise FormatError("labels: the section ends with a newline (labels are separated by \\n, none follows the last)")
    return PackedModel(nodes=nodes, T=h.T, dt=float(h.dt), input_max=float(h.input_max),
                       encoding=ENCODINGS[h.encoding], name=name, labels=labels.split("\n") if labels else [])
