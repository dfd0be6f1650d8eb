"""Issue 15, format contracts (docs/packed-format.md, docs/ir.md): strings are strict UTF-8 and labels end without
a newline in BOTH packed readers (Python and C, the same accept set); the zero reset is v * (1 - s) in every
runtime, also where a value overflows to inf; per-step outputs sum to the logits."""
import json
import struct
import zlib

import nir
import numpy as np
import pytest

from slt_deploy.backends.packed.c_runner import CPackedRunner, c_validate, compiler_available
from slt_deploy.backends.packed.format import FormatError, decode, encode
from slt_deploy.backends.packed.lower import from_graph
from slt_deploy.backends.packed.numpy_runner import NumpyPackedRunner
from slt_deploy.errors import SltError
from slt_deploy.ir import meta as K
from slt_deploy.ir.interpreter import Interpreter

needs_cc = pytest.mark.skipif(not compiler_available(), reason="no C compiler")


def tiny_graph(weight=1.0, reset="zero", labels=("yes", "no")):
    """input [1,1,1] -> flatten -> affine [[weight], [1]] -> LIF(beta 0.5, thr 1) -> affine I -> output [2]."""
    lif_md = {K.LAYER: "lif", K.BETA: 0.5, K.THRESHOLD: 1.0, K.RESET: reset}
    syn = lambda layer, w: {K.LAYER: layer, K.KIND: "linear", K.BINARY: 0, K.IN_SCALE: 1.0,  # noqa: E731
                            K.DENSITY: float(np.mean(w != 0))}
    w1 = np.array([[weight], [1.0]], np.float32)
    w2 = np.eye(2, dtype=np.float32)
    nodes = {"input": nir.Input(input_type={"input": np.array([1, 1, 1])}),
             "flat": nir.Flatten(input_type={"input": np.array([1, 1, 1])}, start_dim=0, end_dim=-1),
             "fc1": nir.Affine(weight=w1, bias=np.zeros(2, np.float32), metadata=syn("fc1", w1)),
             "lif": nir.LIF(tau=np.full(2, 2e-4, np.float32), r=np.full(2, 2.0, np.float32),
                            v_leak=np.zeros(2, np.float32), v_threshold=np.ones(2, np.float32),
                            v_reset=np.zeros(2, np.float32), metadata=lif_md),
             "fc2": nir.Affine(weight=w2, bias=np.zeros(2, np.float32), metadata=syn("fc2", w2)),
             "output": nir.Output(output_type={"output": np.array([2])})}
    edges = [("input", "flat"), ("flat", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "output")]
    gm = {K.FORMAT_VERSION: 1, K.T: 4, K.DT: 1e-4, K.ENCODING: "direct", K.INPUT_MAX: 255.0,
          K.INPUT_SHAPE: np.array([1, 1, 1]), K.LABELS: json.dumps(list(labels)), K.READOUT: "sum", K.NAME: "tiny"}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=gm, type_check=False)


def with_section(data: bytes, field_off: int, content: bytes) -> bytes:
    """The file with the string section named at header offset field_off (48 name, 56 labels) replaced by
    `content` (appended to the payload, 4-aligned) and both checksums recomputed."""
    hdr, payload = bytearray(data[:80]), bytearray(data[80:])
    off = len(payload)
    payload += content + b"\0" * (-len(content) % 4)
    struct.pack_into("<II", hdr, field_off, off, len(content))
    struct.pack_into("<I", hdr, 24, len(payload))
    struct.pack_into("<I", hdr, 72, zlib.crc32(bytes(payload)) & 0xFFFFFFFF)
    struct.pack_into("<I", hdr, 76, zlib.crc32(bytes(hdr[:76])) & 0xFFFFFFFF)
    return bytes(hdr + payload)


VALID = [b"", b"plain", "caf\u00e9".encode(), "\u20ac".encode(), "\U0001D11E".encode(), b"\xf4\x8f\xbf\xbf",
         b"nul\x00ok", b"\xed\x9f\xbf"]
INVALID = [b"\xff", b"\x80", b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
           b"\xf5\x80\x80\x80", b"\xe2\x82", b"ok\xe2", b"\xf0\x9d\x84", b"a\xc3"]


@needs_cc
@pytest.mark.parametrize("field", [48, 56])
def test_both_readers_accept_exactly_strict_utf8(field):
    base = encode(from_graph(tiny_graph()))
    for s in VALID + INVALID:
        f = with_section(base, field, s)
        try:
            decode(f)
            py_ok = True
        except FormatError:
            py_ok = False
        c_ok = c_validate(f)[0] == 0
        want = s in VALID
        assert py_ok == c_ok == want, (field, s, py_ok, c_ok)
        if not c_ok:
            assert c_validate(f)[0] == 12  # SLT_E_TEXT


@needs_cc
def test_labels_with_a_trailing_newline_are_rejected_by_both_readers():
    base = encode(from_graph(tiny_graph()))
    for s, ok in [(b"yes\nno", True), (b"yes\n\nno", True), (b"yes\nno\n", False), (b"\n", False)]:
        f = with_section(base, 56, s)
        c_ok = c_validate(f)[0] == 0
        try:
            m = decode(f)
            py_ok = True
        except FormatError as e:
            py_ok = False
            assert "newline" in str(e)
        assert py_ok == c_ok == ok, (s, py_ok, c_ok)
        if ok:
            assert m.labels == s.decode().split("\n")


def test_the_writer_refuses_labels_it_could_not_read_back():
    m = from_graph(tiny_graph(labels=("",)))
    with pytest.raises(SltError, match="single empty label"):
        encode(m)
    m.labels = ["a\nb"]
    with pytest.raises(SltError, match="newline"):
        encode(m)


@needs_cc
@pytest.mark.parametrize("reset, spikes_of_0", [("zero", [1, 0, 0, 0]), ("subtract", [1, 1, 1, 1])])
def test_overflow_follows_the_one_reset_rule_in_every_runtime(reset, spikes_of_0):
    """fc1 makes neuron 0's input 200 * 3e38 = +inf: it spikes at t=0; zero reset v*(1-s) = inf*0 = NaN silences
    it for the rest of the sample (a select 'v = 0 if s' would spike every step); subtract keeps inf."""
    g = tiny_graph(weight=3e38, reset=reset)
    data = encode(from_graph(g))
    seq = np.full((4, 1, 1, 1, 1), 200.0, np.float32)
    want = np.array([[sum(spikes_of_0), 4.0]], np.float32)  # neuron 1: input 200 > 1 every step
    c = CPackedRunner(data=data).run(seq, record=True)
    py = NumpyPackedRunner(data=data).run(seq, record=True)
    ref = Interpreter(g).run(seq, record=True)
    for got in (c, py, ref):
        assert np.array_equal(got["logits"], want), got["logits"]
        assert list(got["spikes"]["lif"][:, 0, 0]) == spikes_of_0
    assert np.array_equal(py["logits_steps"].sum(0), py["logits"])


def test_the_pytorch_reference_lif_overflows_the_same_way():
    import torch

    from slt_deploy.nn import LIF

    lif = LIF(beta=0.5, threshold=1.0, reset="zero")
    x = torch.tensor([float("inf"), 200.0])
    out = [lif(x).tolist() for _ in range(4)]
    assert [o[0] for o in out] == [1.0, 0.0, 0.0, 0.0] and [o[1] for o in out] == [1.0] * 4
