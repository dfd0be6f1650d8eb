"""Target onnx: export -> onnx.checker -> onnxruntime (CPU) -> verify against the PyTorch reference, over the three
digits recipes and the ticket types (dense, magnitude-sparse, binarized, MultiSp-style transformer, rate encoding);
stateful form stepped T times == unrolled form; weight encodings; optimized-graph arithmetic; bad inputs."""
from __future__ import annotations

import copy
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from slt_deploy.checkpoint import load, save
from slt_deploy.data import load_dataset
from slt_deploy.errors import SltError
from slt_deploy.export import export
from slt_deploy.nn import ConvPEP, PatchSelect, synapses
from slt_deploy.runtime import load_runner
from slt_deploy.verify import verify

CASES = [("digits-tiny", "dense"), ("digits-tiny", "imp"), ("digits-tiny", "binary"), ("digits-tiny", "rate"),
         ("digits-resnet-tiny", "dense"), ("digits-resnet-tiny", "binary"),
         ("digits-spikformer-tiny", "dense"), ("digits-spikformer-tiny", "multisp"),
         ("digits-spikformer-tiny", "multisp-bin")]
EXACT = {"binary", "rate", "multisp-bin"}
LIMIT = 120


def _prune(layer, sparsity):
    w = layer.weight.detach().abs().flatten()
    k = int(sparsity * w.numel())
    if k:
        layer.mask.copy_((layer.weight.detach().abs() > w.kthvalue(k).values).float())
    layer.apply_mask_()


def _recipe_flags(model):
    r = copy.deepcopy(model.recipe)
    layers = synapses(model)
    names = [n for n, m in layers if m.binary]
    r["binary"] = len(names) == len(layers)
    if names and not r["binary"]:
        r["binary_layers"] = names
    model.recipe = r


def make_ticket(dense_dir, out, kind):
    """Tickets made here by hand (magnitude masks, binary flags, patch index; no fine-tuning): the ticket
    methods in slt_deploy/tickets/ produce checkpoints of exactly this form."""
    model, meta = load(dense_dir)
    if kind == "imp":
        for _, m in synapses(model):
            _prune(m, 0.8)
    elif kind == "binary":
        for _, m in synapses(model):
            _prune(m, 0.8)
            m.binary = True
    elif kind == "rate":
        for _, m in synapses(model):
            _prune(m, 0.5)
            m.binary = True
        model.recipe = {**model.recipe, "encoding": "rate"}
        _recipe_flags(model)
        from slt_deploy.zoo import build_model

        fresh = build_model(model.recipe)
        fresh.load_state_dict(model.state_dict())
        model = fresh
    elif kind.startswith("multisp"):
        ps = next(m for m in model.modules() if isinstance(m, PatchSelect))
        ps.set_index([1, 2, 5, 6, 7, 9, 10, 11, 13, 14])  # 10 of 16 patches (37.5% patch sparsity)
        pep = next(n for n, m in model.named_modules() if isinstance(m, ConvPEP))
        for n, m in synapses(model):
            if n.startswith(pep + ".") or kind == "multisp-bin":
                _prune(m, 0.7)
                m.binary = True
    _recipe_flags(model)
    save(model, out, labels=meta["labels"])
    return out


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One torch thread in this module: on a shared 2-core machine two threads per process only contend."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def ckpt(checkpoint, tmp_path_factory):
    """ckpt(recipe, kind): the suite's dense checkpoint (tests/conftest.py) or a ticket of it made by make_ticket."""
    root = tmp_path_factory.mktemp("onnx_ckpts")
    tickets = {}

    def get(recipe, kind):
        if kind == "dense":
            return checkpoint(recipe)
        if (recipe, kind) not in tickets:
            tickets[recipe, kind] = make_ticket(checkpoint(recipe), str(root / f"{recipe}-{kind}"), kind)
        return tickets[recipe, kind]

    return get


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def _seq(runner, digits, n=48):
    return runner.encode(digits.test.x[:n].numpy())


@pytest.mark.parametrize("recipe,kind", CASES, ids=[f"{r}-{k}" for r, k in CASES])
def test_export_check_run_verify(ckpt, digits, tmp_path, recipe, kind):
    src = ckpt(recipe, kind)
    uf, sf = str(tmp_path / "u.onnx"), str(tmp_path / "s.onnx")
    export(src, "onnx", uf)
    export(src, "onnx", sf, form="stateful")
    for f in (uf, sf):
        onnx.checker.check_model(onnx.load(f), full_check=True)
    rep = verify(src, uf, limit=LIMIT)
    assert rep["ok"], rep
    assert rep["spike_layers_compared"] >= 2
    spikes = sum(d["ref_spikes"] for d in rep["layers"].values())
    total = sum(d["total"] for d in rep["layers"].values())
    assert 0 < spikes < total  # a live network, not a silent or saturated one
    if kind in EXACT:
        assert rep["tolerance"] == {"exact": True}
        assert rep["logits_bit_identical"] == 1.0 and rep["spike_agreement_min"] == 1.0
    else:
        assert rep["pred_agreement"] >= 0.99 and rep["spike_agreement_min"] >= 0.999
        assert rep["max_abs_logit_diff"] < 1e-3
    # the stateful form stepped T times equals the unrolled form, bit for bit (logits and every spike raster)
    u, s = load_runner(uf), load_runner(sf)
    seq = _seq(u, digits)
    ru, rs = u.run(seq, record=True), s.run(seq, record=True)
    assert np.array_equal(ru["logits"], rs["logits"])
    assert ru["spikes"].keys() == rs["spikes"].keys() and len(ru["spikes"]) == rep["spike_layers_compared"]
    for k in ru["spikes"]:
        assert np.array_equal(ru["spikes"][k], rs["spikes"][k]), k
    # recording spikes (extra graph outputs) does not change the logits of the production session
    assert np.array_equal(u.run(seq)["logits"], ru["logits"])


def test_weight_encodings_same_numbers_smaller_file(ckpt, digits, tmp_path):
    src = ckpt("digits-tiny", "binary")
    files = {}
    for mode in ("none", "coo", "bitmap", "delta", "auto"):
        files[mode] = str(tmp_path / f"{mode}.onnx")
        export(src, "onnx", files[mode], sparse=mode)
    r0 = load_runner(files["none"])
    seq = _seq(r0, digits)
    ref = r0.run(seq)["logits"]
    for mode, f in files.items():
        assert np.array_equal(load_runner(f).run(seq)["logits"], ref), mode
    m = onnx.load(files["coo"])
    assert any(n.op_type == "Constant" and n.attribute[0].name == "sparse_value" for n in m.graph.node)
    def weights(f):
        return sum(r["payload_bytes"] for r in json.loads(load_runner(f).props["slt.weights"]))
    assert weights(files["auto"]) * 8 < weights(files["none"])
    assert os.path.getsize(files["auto"]) < os.path.getsize(files["none"])
    # float sparse ticket: bitmap/coo also shrink the weights and keep the numbers
    fsrc = ckpt("digits-tiny", "imp")
    fa, fn = str(tmp_path / "fa.onnx"), str(tmp_path / "fn.onnx")
    export(fsrc, "onnx", fa)
    export(fsrc, "onnx", fn, sparse="none")
    assert weights(fa) < 0.5 * weights(fn)
    assert np.array_equal(load_runner(fa).run(seq)["logits"], load_runner(fn).run(seq)["logits"])


def test_optimized_graph_keeps_exact_arithmetic(ckpt, tmp_path):
    """After onnxruntime's full optimization the weight decoding is folded away and every binary layer still
    multiplies by its scale as a separate Mul (no Conv+Mul fusion that would change rounding)."""
    f = str(tmp_path / "m.onnx")
    export(ckpt("digits-resnet-tiny", "binary"), "onnx", f)
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(f, so, providers=["CPUExecutionProvider"])
    opt = onnx.load(str(tmp_path / "opt.onnx"))
    ops = [n.op_type for n in opt.graph.node]
    assert not {"BitShift", "CumSum", "Slice", "Concat", "Unsqueeze"} & set(ops)
    scale_muls = [n for n in opt.graph.node if n.op_type == "Mul" and any(i.endswith(".scale") for i in n.input)]
    syn = [n for n in opt.graph.node if n.op_type in ("Conv", "MatMul")]
    assert len(scale_muls) == len(syn) > 0


def test_same_numbers_at_every_optimization_level_and_thread_count(ckpt, digits, tmp_path):
    from slt_deploy.backends.onnx.runner import OnnxRunner

    f = str(tmp_path / "m.onnx")
    export(ckpt("digits-spikformer-tiny", "multisp-bin"), "onnx", f)
    ref = OnnxRunner(f)
    seq = _seq(ref, digits)
    want = ref.run(seq)["logits"]
    for opt in ("none", "basic", "extended"):
        assert np.array_equal(OnnxRunner(f, optimization=opt).run(seq)["logits"], want), opt
    assert np.array_equal(OnnxRunner(f, threads=2).run(seq)["logits"], want)
    # no busy-waiting pool threads (what the ROS 2 node asks for): same numbers, spinning off in the session
    quiet = OnnxRunner(f, threads=2, spinning=False)
    assert np.array_equal(quiet.run(seq)["logits"], want)
    so = quiet.session.get_session_options()
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with pytest.raises(RuntimeError, match="allow_spinning"):  # the default session leaves onnxruntime's default
        OnnxRunner(f).session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")


def test_metadata_and_inspect(ckpt, tmp_path, capsys):
    src = ckpt("digits-tiny", "binary")
    f = str(tmp_path / "m.onnx")
    export(src, "onnx", f, form="stateful")
    props = {p.key: p.value for p in onnx.load(f).metadata_props}
    for k in ("slt.T", "slt.dt", "slt.encoding", "slt.input_shape", "slt.input_normalisation", "slt.labels",
              "slt.sparsity", "slt.form", "slt.source_sha256", "slt.deploy_version", "slt.opset",
              "slt.state_inputs", "slt.state_outputs"):
        assert props.get(k), k
    assert props["slt.form"] == "stateful" and props["slt.opset"] == "17"
    assert props["slt.source_sha256"] == json.load(open(os.path.join(src, "model.json")))["weights_sha256"]
    assert 0.7 < float(props["slt.sparsity"]) < 0.9
    ins = [i.name for i in onnx.load(f).graph.input]
    assert ins[:2] == ["x", "logits_in"] and set(ins[2:]) == set(json.loads(props["slt.state_inputs"]))
    code, out, _ = _cli(capsys, "inspect", f)
    assert code == 0 and "body.0" in out and "opset 17" in out


def test_streaming_step_api_and_bad_inputs(ckpt, digits, tmp_path):
    src = ckpt("digits-tiny", "binary")
    sf, uf = str(tmp_path / "s.onnx"), str(tmp_path / "u.onnx")
    export(src, "onnx", sf, form="stateful")
    export(src, "onnx", uf)
    s, u = load_runner(sf), load_runner(uf)
    x = digits.test.x[:3].numpy()
    st = s.init_state(3)
    for _ in range(s.meta["T"]):
        logits, st = s.step(x, st)
    assert np.array_equal(logits, u.predict(x))
    with pytest.raises(SltError, match="missing"):
        s.step(x, {k: v for k, v in s.init_state(3).items() if k != "logits_in"})
    with pytest.raises(SltError, match="does not match"):
        s.step(x[:, :, :4], s.init_state(3))
    with pytest.raises(SltError, match="expected float32"):
        s.step(x, s.init_state(2))
    with pytest.raises(SltError, match="dtype"):
        u.run(np.full((4, 1, 1, 8, 8), "a"))
    with pytest.raises(SltError, match="does not match"):
        u.run(np.zeros((4, 2, 1, 7, 8), np.float32))
    with pytest.raises(SltError, match="steps"):
        u.run(np.zeros((3, 2, 1, 8, 8), np.float32))
    with pytest.raises(SltError, match="no state"):
        u.init_state(1)
    with pytest.raises(SltError, match="does not match"):
        u.predict(np.zeros((2, 1, 28, 28), np.float32))


def _cli(capsys, *args):
    """The real CLI entry point (slt_deploy.cli.main), in-process: (exit code, stdout, stderr)."""
    from slt_deploy.cli import main

    code = 0
    try:
        main(list(args))
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_export_run_verify_and_errors(ckpt, tmp_path, capsys):
    src = ckpt("digits-tiny", "binary")
    f = str(tmp_path / "m.onnx")
    code, out, err = _cli(capsys, "export", src, "--target", "onnx", "--out", f, "--opt", "form=stateful")
    assert code == 0, err
    code, out, err = _cli(capsys, "run", f, "--data", "digits", "--limit", "40")
    assert code == 0 and "40 samples: accuracy" in out, err
    from PIL import Image

    png = str(tmp_path / "d.png")
    Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype(np.uint8)).save(png)
    code, out, err = _cli(capsys, "run", f, "--input", png)
    assert code == 0 and out.startswith("class "), err
    code, out, err = _cli(capsys, "verify", src, f, "--limit", "30")
    assert code == 0 and "PASS (exact)" in out, out + err
    for args, msg in [(("run", f, "--data", "fmnist", "--limit", "5"), "the model wants"),
                      (("export", src, "--target", "onnx", "--out", f, "--opt", "form=loop"), "form=loop"),
                      (("export", src, "--target", "onnx", "--out", f, "--opt", "fast=1"), "no option")]:
        code, out, err = _cli(capsys, *args)
        if "fmnist" in args and code == 2 and "the model wants" not in err:
            continue  # no Fashion-MNIST files on this machine: a different (also one-line) error
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, err
    os.environ["SLT_ONNX_PROVIDERS"] = "CUDAExecutionProvider,CPUExecutionProvider"
    try:
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            code, out, err = _cli(capsys, "run", f, "--data", "digits", "--limit", "5")
            assert code == 2 and "not available" in err and len(err.strip().splitlines()) == 1, err
    finally:
        del os.environ["SLT_ONNX_PROVIDERS"]
    plain = str(tmp_path / "model_without_suffix")   # ours under any name: recognised by its content
    code, out, err = _cli(capsys, "export", src, "--target", "onnx", "--out", plain)
    assert code == 0, err
    code, out, err = _cli(capsys, "verify", src, plain, "--limit", "30")
    assert code == 0 and "PASS (exact)" in out, out + err
    other = str(tmp_path / "other")
    open(other, "wb").write(open(plain, "rb").read().replace(b"slt-deploy", b"slt-deplox", 1))
    code, out, err = _cli(capsys, "run", other, "--data", "digits")
    assert code == 2 and "not an artifact of any registered target" in err, err
    bad = str(tmp_path / "bad.onnx")
    open(bad, "wb").write(b"not a model")
    code, out, err = _cli(capsys, "run", bad, "--data", "digits")
    assert code == 2 and "not a readable ONNX file" in err and len(err.strip().splitlines()) == 1, err


def test_gather_compute_and_spike_outputs(ckpt, digits, tmp_path):
    """compute=gather (kept input columns only) keeps binary layers exact; spikes=all outputs the rasters."""
    model, meta = load(ckpt("digits-tiny", "binary"))
    fc = synapses(model)[-1][1]
    with torch.no_grad():
        fc.mask[:, ::3] = 1.0 * (fc.mask[:, ::3] > 0)
        fc.mask[:, 1::3] = 0.0
        fc.mask[:, 2::3] = 0.0  # two of every three input columns fully pruned
    src = str(tmp_path / "ck")
    save(model, src, labels=meta["labels"])
    g, d = str(tmp_path / "g.onnx"), str(tmp_path / "d.onnx")
    export(src, "onnx", g, compute="gather", spikes="all")
    export(src, "onnx", d)
    m = onnx.load(g)
    assert any(n.op_type == "Gather" and n.input[1].endswith(".columns") for n in m.graph.node)
    outs = [o.name for o in m.graph.output]
    assert "logits" in outs and any(o.startswith("spikes.") for o in outs)
    rep = verify(src, g, limit=LIMIT)
    assert rep["ok"] and rep["logits_bit_identical"] == 1.0
    rg, rd = load_runner(g), load_runner(d)
    seq = _seq(rg, digits)
    assert np.array_equal(rg.run(seq)["logits"], rd.run(seq)["logits"])
    res = dict(zip([o.name for o in rg.session.get_outputs()],
                   rg.session.run(None, {"image": seq[0]})))
    rec = rg.run(seq, record=True)["spikes"]
    for layer, s in rec.items():
        assert np.array_equal(res[f"spikes.{layer}"], s)


@pytest.mark.parametrize("binary", [False, True])
def test_every_weight_encoding_decodes_exactly(binary):
    """Each encoding, decoded by onnxruntime, is exactly the tensor (incl. gaps > 255 between kept weights)."""
    from onnx import TensorProto, helper

    from slt_deploy.backends.onnx.lower import GraphBuilder
    from slt_deploy.backends.onnx.weights import ENCODINGS, WeightSink, gap_code

    rng = np.random.default_rng(0)
    w = np.zeros(3000, np.float32)
    keep = [0, 5, 700, 701, 1500, 2999]
    w[keep] = rng.standard_normal(len(keep)).astype(np.float32)
    w = w.reshape(30, 100)
    if binary:
        w = np.sign(w)
    assert gap_code(w)[1].sum() >= 4  # the 695- and 799-position gaps need fillers
    for kind in ENCODINGS:
        if "bits" in kind and not binary:
            continue
        b = GraphBuilder()
        out = getattr(WeightSink(b), "_" + kind.replace("-", "_"))("w", w, binary)
        b.op("Identity", [out], "y")
        g = helper.make_graph(b.nodes, "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [30, 100])],
                              b.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        onnx.checker.check_model(m, full_check=True)
        got = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {})[0]
        assert np.array_equal(got, w), kind
