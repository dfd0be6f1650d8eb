"""Packed target: round trip, both runtimes vs the PyTorch reference for every ticket type, strict readers."""
import os
import struct
import zlib

import numpy as np
import pytest
from conftest import DIGITS_RECIPES, VARIANTS

from slt_deploy.backends.packed import format as PF
from slt_deploy.backends.packed.lower import from_graph
from slt_deploy.backends.packed.numpy_runner import PackedInterpreter
from slt_deploy.data import load_dataset
from slt_deploy.errors import SltError
from slt_deploy.export import export, lower
from slt_deploy.verify import reference_run

RECIPES = DIGITS_RECIPES


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits")
    return ds.test.x[:48]


@pytest.fixture(scope="module")
def ckpts(checkpoint):
    """Untrained lively models (epochs=0): every layer spikes, no training time."""
    return {(rc, v): checkpoint(rc, v, epochs=0) for rc in RECIPES for v in VARIANTS}


def _pm(ck):
    model, _, g = lower(ck)
    return model, from_graph(g)


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_runtimes_vs_reference(ckpts, digits, recipe, variant):
    from slt_deploy.backends.packed.c_runner import CModel

    model, pm = _pm(ckpts[(recipe, variant)])
    data = PF.encode(pm)
    back = PF.decode(data)
    assert (back.T, back.encoding, back.input_max, back.name, back.labels) == \
        (pm.T, pm.encoding, pm.input_max, pm.name, pm.labels)
    assert np.float32(back.dt) == np.float32(pm.dt)
    for a, b in zip(pm.nodes, back.nodes):  # round trip: identical tensors
        assert (a.op, tuple(a.shape), list(a.inputs)) == (b.op, tuple(b.shape), list(b.inputs))
        if a.weight is not None:
            assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
        if a.op == "lif":
            assert (a.name, np.float32(a.beta), np.float32(a.threshold), a.reset) == \
                (b.name, np.float32(b.beta), np.float32(b.threshold), b.reset)
        if a.op == "patch_select":
            assert np.array_equal(a.index, b.index)
    seq = model.encode(digits).numpy()
    ref = reference_run(model, seq)
    got_np = PackedInterpreter(back).run(seq, record=True)
    cm = CModel(data)
    lg, sp = cm.run(seq, record=True)
    binary = VARIANTS[variant][0]
    assert np.array_equal(lg, got_np["logits"]), "C and numpy runtimes must agree bit for bit"
    off = 0
    for nd in back.nodes:
        if nd.op == "lif":
            n = int(np.prod(nd.shape))
            c_sp = sp[:, :, off:off + n].reshape(got_np["spikes"][nd.name].shape)
            assert np.array_equal(c_sp, got_np["spikes"][nd.name]), nd.name
            off += n
    if binary:
        assert np.array_equal(lg, ref["logits"])
        for k, s in got_np["spikes"].items():
            assert np.array_equal(s, ref["spikes"][k]), k
    else:
        assert np.allclose(lg, ref["logits"], rtol=1e-4, atol=1e-3)
        assert np.mean(lg.argmax(1) == ref["logits"].argmax(1)) >= 0.95
    assert all(s.sum() > 0 for s in ref["spikes"].values())  # every layer spiked: the test exercised them


def test_export_verify_cli_both_runtimes(ckpts, tmp_path, monkeypatch):
    from slt_deploy.verify import verify

    ck = ckpts[("digits-resnet-tiny", "sparse+binary")]
    out = str(tmp_path / "m.slt")
    export(ck, "packed", out)
    for rt in ("c", "numpy"):
        monkeypatch.setenv("SLT_PACKED_RUNTIME", rt)
        rep = verify(ck, out, limit=64)
        assert rep["ok"] and rep["logits_bit_identical"] == 1.0 and rep["spike_agreement_min"] == 1.0, rt


def test_encoding_choice_and_size(ckpts):
    _, pm = _pm(ckpts[("digits-tiny", "sparse+binary")])
    back = PF.decode(PF.encode(pm))
    syn = [n for n in back.nodes if n.op in ("conv", "affine")]
    assert all(n.mask_enc == PF.MASK_DELTA for n in syn)  # 10% density: deltas beat a bitmap
    _, pm = _pm(ckpts[("digits-tiny", "binary")])
    back = PF.decode(PF.encode(pm))
    assert all(n.mask_enc == PF.MASK_BITMAP for n in back.nodes if n.op in ("conv", "affine"))


# --- strict readers -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_file(ckpts):
    _, pm = _pm(ckpts[("digits-tiny", "sparse+binary")])
    return PF.encode(pm)


def _py_ok(b, crc=True):
    try:
        PF.decode(b, check_crc=crc)
        return True
    except SltError:
        return False


def test_every_byte_flip_and_truncation_rejected(small_file):
    from slt_deploy.backends.packed.c_runner import c_validate

    data = small_file
    assert len(data) < 4096 and _py_ok(data) and c_validate(data)[0] == 0
    arr = bytearray(data)
    for i in range(len(data)):
        arr[i] ^= 0xFF
        b = bytes(arr)
        assert not _py_ok(b), i
        assert c_validate(b)[0] != 0, i
        arr[i] ^= 0xFF
    for n in range(len(data)):
        assert not _py_ok(data[:n]) and c_validate(data[:n])[0] != 0, n


def test_readers_agree_without_crc(small_file):
    """With checksums off, both readers accept exactly the same mutated files (random bit flips)."""
    from slt_deploy.backends.packed.c_runner import c_validate

    rng = np.random.default_rng(0)
    data = small_file
    agree = accepted = 0
    for _ in range(600):
        arr = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(0, len(arr)))
            arr[i] ^= 1 << int(rng.integers(0, 8))
        b = bytes(arr)
        py, c = _py_ok(b, crc=False), c_validate(b, check_crc=False)[0] == 0
        assert py == c, (py, c)
        agree += 1
        accepted += py
    assert agree == 600


def _patch(data, off, fmt, val):
    b = bytearray(data)
    struct.pack_into(fmt, b, off, val)
    struct.pack_into("<I", b, 72, zlib.crc32(bytes(b[80:])) & 0xFFFFFFFF)
    struct.pack_into("<I", b, 76, zlib.crc32(bytes(b[:76])) & 0xFFFFFFFF)
    return bytes(b)


@pytest.mark.parametrize("off,fmt,val,msg", [
    (0, "<I", 0x12345678, "bad magic"),
    (8, "<I", 2, "unknown format version"),
    (16, "<I", 0x04030201, "byte-order"),
    (20, "<I", 1, "unknown header flags"),
    (24, "<I", 1 << 30, "truncated"),
    (28, "<I", 1 << 20, "node count"),
    (80 + 12, "<I", 1 << 16, "impossible"),            # first conv record: output channels (dims ok, shape wrong)
    (80 + 64 + 12, "<I", 0xFFFFFFFF, "out of range"),  # conv output dim overflow
    (80 + 64 + 4, "<I", 5, "earlier nodes"),
])
def test_clear_errors(small_file, off, fmt, val, msg):
    from slt_deploy.backends.packed.c_runner import c_validate

    b = _patch(small_file, off, fmt, val) if off >= 8 else bytes(b"XXXX") + small_file[4:]
    with pytest.raises(SltError, match=msg):
        PF.decode(b)
    assert c_validate(b)[0] != 0


def test_checksum_and_missing_file(small_file, tmp_path):
    b = bytearray(small_file)
    b[-1] ^= 1
    with pytest.raises(SltError, match="checksum"):
        PF.decode(bytes(b))
    from slt_deploy.backends.packed.fileio import read_file

    with pytest.raises(SltError, match="does not exist"):
        read_file(str(tmp_path / "nope.slt"))


def test_delta_symbols_roundtrip():
    rng = np.random.default_rng(1)
    for n, k in [(1, 1), (50, 0), (1000, 7), (4096, 4000), (100000, 30)]:
        pos = np.sort(rng.choice(n, k, replace=False)) if k else np.zeros(0, np.int64)
        for b in (1, 3, 8, 16):
            syms = PF.delta_symbols(pos, b)
            assert len(syms) * b == PF.delta_cost(pos, b)
            back = PF.unpack_symbols(PF.pack_symbols(syms, b), len(syms), b) if len(syms) else syms
            assert np.array_equal(back, syms)


def test_readers_agree_on_structured_mutations(ckpts):
    """Rewrite random record/header words with boundary values (0, 1, 2^16, 2^26, inf, ...): with checksums off,
    the C and Python readers accept exactly the same files, across all three architectures."""
    from slt_deploy.backends.packed.c_runner import c_validate

    files = [PF.encode(_pm(ckpts[(rc, "sparse+binary")])[1]) for rc in RECIPES]
    files += [PF.encode(_pm(ckpts[("digits-spikformer-tiny", "sparse")])[1])]
    vals = [0, 1, 2, 3, 4, 8, 15, 16, 255, 256, 65535, 65536, 65537, 1 << 26, (1 << 26) + 1, 0xFFFFFFFF,
            0x7F800000, 0xFF800000, 0x3F800000]
    rng = np.random.default_rng(3)
    accepted = 0
    for i in range(1500):
        d = bytearray(files[i % len(files)])
        nn = struct.unpack_from("<I", d, 28)[0]
        off = 80 + 64 * int(rng.integers(nn)) + 4 * int(rng.integers(16)) if rng.random() < 0.85 else \
            4 * int(rng.integers(len(d) // 4))
        old = struct.unpack_from("<I", d, off)[0]
        v = int(rng.choice(vals)) if rng.random() < 0.5 else (old + int(rng.integers(-3, 4))) & 0xFFFFFFFF
        struct.pack_into("<I", d, off, v)
        b = bytes(d)
        py, c = _py_ok(b, crc=False), c_validate(b, check_crc=False)[0] == 0
        assert py == c, (i, off, old, v)
        accepted += py
    assert 0 < accepted < 1500


def test_fuzz_regressions():
    """Inputs the fuzzers once found (fuzz/regressions): they must be handled cleanly by both runtimes."""
    import glob

    from slt_deploy.backends.packed.c_runner import CModel

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz", "regressions")
    files = sorted(glob.glob(os.path.join(root, "*")))
    assert files
    for f in files:
        data = open(f, "rb").read()
        try:
            m = PF.decode(data, check_crc=False)
        except SltError:
            continue
        seq = np.ones((m.T, 2, *m.nodes[0].shape), np.float32)
        got = PackedInterpreter(m).run(seq, record=True)
        lg, _ = CModel(data, check_crc=False).run(seq, record=True)
        assert np.array_equal(lg, got["logits"]) or np.allclose(lg, got["logits"], equal_nan=True)


def test_cli_run_inspect_and_errors(ckpts, tmp_path, monkeypatch, capsys):
    from slt_deploy.cli import main

    ck = ckpts[("digits-tiny", "sparse+binary")]
    out = str(tmp_path / "m.slt")
    main(["export", ck, "--target", "packed", "--out", out])
    for rt in ("c", "numpy"):
        monkeypatch.setenv("SLT_PACKED_RUNTIME", rt)
        main(["run", out, "--data", "digits", "--limit", "32"])
        assert "32 samples: accuracy" in capsys.readouterr().out
    main(["inspect", out])
    o = capsys.readouterr().out
    assert "packed" in o and "information bound" in o and "arena" in o
    monkeypatch.setenv("SLT_PACKED_RUNTIME", "fpga")
    with pytest.raises(SystemExit):
        main(["run", out, "--data", "digits"])
    assert "unknown packed runtime" in capsys.readouterr().err
    monkeypatch.delenv("SLT_PACKED_RUNTIME")
    bad = tmp_path / "bad.slt"
    bad.write_bytes(open(out, "rb").read()[:-3])
    with pytest.raises(SystemExit):
        main(["run", str(bad), "--data", "digits"])
    assert "truncated" in capsys.readouterr().err


def test_total_size_limit_same_in_both_readers():
    """Five 2^26-element flatten nodes pass the per-tensor limit but exceed the 2^28 total: both readers reject."""
    from slt_deploy.backends.packed.c_runner import c_validate

    nodes = [PF.Node("input", [], (1, 1 << 13, 1 << 13))]
    nodes += [PF.Node("flatten", [i], (1 << 26,)) for i in range(5)]
    nodes += [PF.Node("output", [5], (1 << 26,))]
    data = PF.encode(PF.PackedModel(nodes, T=1, dt=1e-4, input_max=1.0, encoding="direct"))
    with pytest.raises(SltError, match="in total"):
        PF.decode(data)
    assert c_validate(data)[0] != 0
    ok = PF.encode(PF.PackedModel(nodes[:2] + [PF.Node("output", [1], (1 << 26,))], T=1, dt=1e-4, input_max=1.0,
                                  encoding="direct"))
    assert PF.decode(ok) and c_validate(ok)[0] == 0


@pytest.mark.parametrize("recipe", ["digits-tiny", "digits-spikformer-tiny"])
def test_first_layer_reuse_exact(ckpts, digits, recipe):
    """The C runtime reuses the previous step's output of a layer that reads only the model input when the step's
    input equals (==) the previous one (direct encoding): logits, spikes and slt_events must be those of computing
    every step, also when only some steps or single pixels change, and for -0 pixels (== +0, both skipped)."""
    from slt_deploy.backends.packed.c_runner import CModel
    from slt_deploy.ir.interpreter import Interpreter
    from slt_deploy.profile.activity import ActivityCounter

    for variant in ("sparse+binary", "dense"):
        ck = ckpts[(recipe, variant)]
        model, pm = _pm(ck)
        data = PF.encode(pm)
        seq = model.encode(digits[:8]).numpy()
        assert (seq == seq[:1]).all()  # direct encoding: the same frame every step
        alt = seq.copy()
        alt[2, 0] += 1.0                  # sample 0: a different frame at step 2 only
        alt[1, 1].flat[5] += 3.0          # sample 1: one pixel at step 1
        alt[3, 2] = 0.0                   # sample 2: blank last step
        z = alt[2, 3]
        z[z == 0] = -0.0                  # sample 3: -0 instead of +0 at step 2 (reused: == the previous step)
        back = PF.decode(data)
        for s in (seq, alt):
            cm = CModel(data)
            lg, sp = cm.run(s, record=True)
            got = PackedInterpreter(back).run(s, record=True)
            assert np.array_equal(lg.view(np.uint32), np.asarray(got["logits"], np.float32).view(np.uint32))
            off = 0
            for nd in back.nodes:
                if nd.op == "lif":
                    n = int(np.prod(nd.shape))
                    assert np.array_equal(sp[:, :, off:off + n].reshape(got["spikes"][nd.name].shape),
                                          got["spikes"][nd.name]), nd.name
                    off += n
            one = CModel(data)  # batch of 1 (other step layout of slt_run_batch): same logits
            for b in range(s.shape[1]):
                assert np.array_equal(one.run(s[:, b:b + 1])[0], lg[b:b + 1])
            if variant == "sparse+binary" and recipe == "digits-tiny":
                # events = counted synaptic ops of every step (profile/activity.py on the reference's spikes)
                _, _, graph = lower(ck)
                c = ActivityCounter(graph)
                c.add(s, Interpreter(graph).run(s, record=True)["spikes"])
                assert cm.events() == round(c.result()["totals"]["ops_per_frame"] * s.shape[1])


def test_c_binding_repeated_shape(ckpts, digits):
    """CModel.run keeps an input and a logits buffer per input shape it has seen (the streaming case): later calls
    of that shape give the logits of their own input (float64 and strided inputs too, converted as before), never
    an alias of the buffer a later call overwrites; a shape it has not seen or a bad one still goes the long way."""
    from slt_deploy.backends.packed.c_runner import CModel

    model, pm = _pm(ckpts[("digits-tiny", "sparse+binary")])
    seq = model.encode(digits[:6]).numpy()
    fresh = [CModel(PF.encode(pm)).run(seq[:, b:b + 1])[0] for b in range(6)]   # each on a new model: one call
    cm = CModel(PF.encode(pm))
    got = [cm.run(seq[:, b:b + 1].astype(np.float64) if b % 2 else seq[:, b:b + 1])[0] for b in range(6)]
    assert len(cm._io) == 1 and any(not np.array_equal(fresh[0], f) for f in fresh[1:])
    for f, g in zip(fresh, got):
        assert np.array_equal(f.view(np.uint32), g.view(np.uint32))
    with pytest.raises(SltError, match="does not fit"):
        cm.run(seq[:, :1, :, :4])


def test_c_conv_shapes_vs_numpy():
    """Random conv geometries (k 1-4, stride 1-3, any pad < k, 1-3 channels, odd sizes), float and binary, dense
    and sparse, a first conv reading the input twice, LIF after it (own buffer: reused layer), a second conv with an
    in-place LIF (fused epilogue, zero or subtract reset; both resets in the first LIF too, whose T steps SIMD builds
    compute at once for a sample whose input is the same at every step): C == numpy interpreter bit for bit, logits
    and spikes.
    The host (SIMD) build runs single-input convs through staged phase planes (8 lanes with AVX, 4 in the SSE-only
    build); the scalar (Cortex-M) build through the row kernels (one kept weight, 2-8 held in registers, more): all
    give the same bits and count the same synaptic events."""
    from slt_deploy.backends.packed.c_runner import SCALAR, CModel, host_flags

    SSE_ONLY = ("-mno-avx",) if host_flags() else ()   # the 4-lane path of an x86 without AVX

    rng = np.random.default_rng(0)
    ran = 0
    while ran < 60:
        C, H, W = (int(v) for v in rng.integers(1, [4, 9, 9]))
        k, st = int(rng.integers(1, 5)), int(rng.integers(1, 4))
        pd = int(rng.integers(0, k))
        Ho, Wo = (H + 2 * pd - k) // st + 1, (W + 2 * pd - k) // st + 1
        if min(H, W) + 2 * pd < k or min(Ho, Wo) + 2 * pd < k:
            continue
        Ho2, Wo2 = (Ho + 2 * pd - k) // st + 1, (Wo + 2 * pd - k) // st + 1
        O1, O2 = (int(v) for v in rng.integers(1, 11, 2))   # rows of 1-10 kept weights: every scalar kernel

        def syn(op, inp, shape, wshape, k=k, st=st, pd=pd):
            w = rng.normal(size=wshape).astype(np.float32) * (rng.random(wshape) < rng.choice([0.05, 0.3, 1.0]))
            bias = rng.normal(size=wshape[0]).astype(np.float32)
            if rng.random() < 0.5:
                sc = rng.uniform(0.1, 1.0, size=wshape[0]).astype(np.float32)
                w = (np.sign(w) * sc.reshape(-1, *([1] * (len(wshape) - 1)))).astype(np.float32)
                return PF.Node(op, inp, shape, binary=True, weight=w, scale=sc, bias=bias, k=k, stride=st, pad=pd)
            return PF.Node(op, inp, shape, weight=w, bias=bias, k=k, stride=st, pad=pd)

        nodes = [PF.Node("input", [], (C, H, W)),
                 syn("conv", [0, 0] if rng.random() < 0.3 else [0], (O1, Ho, Wo), (O1, C, k, k)),
                 PF.Node("lif", [1], (O1, Ho, Wo), name="l1", beta=0.5, threshold=float(rng.uniform(-0.5, 1.5)),
                         reset="subtract" if rng.random() < 0.5 else "zero"),
                 syn("conv", [2], (O2, Ho2, Wo2), (O2, O1, k, k)),
                 PF.Node("lif", [3], (O2, Ho2, Wo2), name="l2", beta=0.9, threshold=0.5,
                         reset="subtract" if rng.random() < 0.5 else "zero"),
                 PF.Node("flatten", [4], (O2 * Ho2 * Wo2,))]
        nodes += [syn("affine", [5], (4,), (4, O2 * Ho2 * Wo2)), PF.Node("output", [6], (4,))]
        data = PF.encode(PF.PackedModel(nodes, T=3, dt=1e-3, input_max=4.0, encoding="direct"))
        x = (rng.integers(0, 5, size=(5, C, H, W)) * (rng.random((5, C, H, W)) < 0.6)).astype(np.float32)
        seq = np.repeat(x[None], 3, 0)
        seq[2, 1, 0, 0, 0] += 1.0
        cm, cs, c4 = CModel(data), CModel(data, extra=SCALAR), CModel(data, extra=SSE_ONLY)
        lg, sp = cm.run(seq, record=True)
        lg_s, sp_s = cs.run(seq, record=True)
        lg_4, sp_4 = c4.run(seq, record=True)
        assert np.array_equal(lg.view(np.uint32), lg_s.view(np.uint32)) and np.array_equal(sp, sp_s)
        assert np.array_equal(lg.view(np.uint32), lg_4.view(np.uint32)) and np.array_equal(sp, sp_4)
        assert cm.events() == cs.events() == c4.events() > 0, (C, H, W, k, st, pd)
        got = PackedInterpreter(PF.decode(data)).run(seq, record=True)
        want = np.asarray(got["logits"], np.float32)
        assert np.array_equal(lg.view(np.uint32), want.view(np.uint32)), (C, H, W, k, st, pd)
        n1 = O1 * Ho * Wo
        assert np.array_equal(sp[:, :, :n1].reshape(got["spikes"]["l1"].shape), got["spikes"]["l1"])
        assert np.array_equal(sp[:, :, n1:].reshape(got["spikes"]["l2"].shape), got["spikes"]["l2"])
        ran += 1
