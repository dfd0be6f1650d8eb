"""slt-deploy profile: synaptic-op counts against hand-computed ones, energy arithmetic from yaml, latency statistics
on a fake clock, yaml validation errors, and the real thing on sklearn digits (report files written and readable)."""

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from slt_deploy.errors import SltError
from slt_deploy.profile import latency as L
from slt_deploy.profile.activity import ActivityCounter, fanout, synaptic_ops
from slt_deploy.profile.energy import evaluate, load_hardware, load_profile


# ------------------------------------------------------------------------------------------- tiny hand-built graph
def _lif(shape, layer):
    def full(v):
        return np.full(shape, v, np.float32)
    return nir.LIF(tau=full(2e-4), r=full(2.0), v_leak=full(0.0), v_threshold=full(1.0), v_reset=full(0.0),
                   metadata={"slt.layer": layer, "slt.beta": 0.5, "slt.threshold": 1.0, "slt.reset": "zero"})


def tiny_graph(encoding="rate"):
    """input [1,2,2] -> conv 2x2 (kernel [[1,0],[2,3]]: 3 kept) -> lif1 [1,1,1] -> flatten -> fc [[1],[0]]
    -> lif2 [2]."""
    conv_w = np.array([[[[1, 0], [2, 3]]]], np.float32)
    fc_w = np.array([[1], [0]], np.float32)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1, 2, 2])}),
        "conv": nir.Conv2d(input_shape=(2, 2), weight=conv_w, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                           groups=1, bias=np.zeros(1, np.float32), metadata={"slt.layer": "conv"}),
        "lif1": _lif([1, 1, 1], "lif1"),
        "flat": nir.Flatten(input_type={"input": np.array([1, 1, 1])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=fc_w, bias=np.zeros(2, np.float32), metadata={"slt.layer": "fc"}),
        "lif2": _lif([2], "lif2"),
        "output": nir.Output(output_type={"output": np.array([2])}),
    }
    edges = [("input", "conv"), ("conv", "lif1"), ("lif1", "flat"), ("flat", "fc"), ("fc", "lif2"),
             ("lif2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False,
                        metadata={"slt.T": 2, "slt.encoding": encoding, "slt.input_max": 1.0})


def test_synaptic_ops_hand_computed():
    g = tiny_graph("rate")
    # T=2, B=1 input spikes. Kept fan-out of the conv input: (0,0)->1, (0,1)->0 (its weight is pruned), (1,0)->1,
    # (1,1)->1. Step 0 spikes at (0,0),(0,1),(1,1): 1+0+1 = 2 ops; step 1 at (0,1),(1,0): 0+1 = 1 op.
    seq = np.array([[[[[1, 1], [0, 1]]]], [[[[0, 1], [1, 0]]]]], np.float32)  # [T, B, C, H, W]
    spikes = {"lif1": np.array([[[[[1.0]]]], [[[[0.0]]]]]), "lif2": np.array([[[1.0, 0.0]], [[1.0, 1.0]]])}
    ops = synaptic_ops(g, spikes, seq)
    conv, fc = ops["conv"], ops["fc"]
    assert conv["kind"] == "sop" and conv["ops_per_step"] == [2.0, 1.0] and conv["ops_per_frame"] == 3.0
    assert conv["input_events_per_frame"] == 5.0
    assert conv["events_x_dense_fanout_per_frame"] == 5.0     # every input position has full fan-out 1
    assert conv["dense_macs_per_step"] == 4.0 and conv["dense_macs_per_frame"] == 8.0
    assert conv["kept"] == 3 and conv["weights"] == 4
    # fc: one spike (step 0) x kept column count 1 (weight [[1],[0]]); dense fan-out 2 per step
    assert fc["ops_per_step"] == [1.0, 0.0] and fc["dense_macs_per_frame"] == 4.0

    c = ActivityCounter(g)
    c.add(seq, spikes)
    res = c.result()
    t = res["totals"]
    assert t["sops_per_frame"] == 4.0 and t["macs_per_frame"] == 0.0 and t["dense_macs_per_frame"] == 12.0
    assert t["neuron_updates_per_frame"] == (1 + 2) * 2
    assert res["neurons"]["lif1"]["spikes_per_frame"] == 1.0 and res["neurons"]["lif2"]["rate"] == 3 / 4

    # a second, silent sample halves every per-frame count
    seq2 = np.concatenate([seq, np.zeros_like(seq)], axis=1)
    sp2 = {k: np.concatenate([v, np.zeros_like(v)], axis=1) for k, v in spikes.items()}
    assert synaptic_ops(g, sp2, seq2)["conv"]["ops_per_frame"] == 1.5


def test_first_layer_of_direct_encoding_counts_macs_of_nonzero_pixels():
    g = tiny_graph("direct")
    img = np.array([[[0.5, 2.0], [0.0, 3.0]]], np.float32)  # non-zero at (0,0) fan-out 1, (0,1) 0, (1,1) 1
    seq = np.broadcast_to(img, (2, 1, 1, 2, 2)).copy()
    spikes = {"lif1": np.zeros((2, 1, 1, 1, 1)), "lif2": np.zeros((2, 1, 2))}
    conv = synaptic_ops(g, spikes, seq)["conv"]
    assert conv["kind"] == "mac" and conv["ops_per_step"] == [2.0, 2.0]


def _brute_force_fanout(mask, in_shape, stride, pad):
    """Kept fan-out by direct enumeration of (output position, kept weight) pairs."""
    Co, Ci, k, _ = mask.shape
    _, H, W = in_shape
    Ho, Wo = (H + 2 * pad - k) // stride + 1, (W + 2 * pad - k) // stride + 1
    f = np.zeros(in_shape)
    for o in range(Co):
        for c in range(Ci):
            for oy in range(Ho):
                for ox in range(Wo):
                    for a in range(k):
                        for b in range(k):
                            y, x = oy * stride - pad + a, ox * stride - pad + b
                            if mask[o, c, a, b] and 0 <= y < H and 0 <= x < W:
                                f[c, y, x] += 1
    return f


@pytest.mark.parametrize("stride,pad,size", [(1, 1, 5), (2, 1, 5), (2, 0, 6), (3, 1, 7)])
def test_conv_fanout_exact_at_borders_and_strides(stride, pad, size):
    rng = np.random.default_rng(stride * 10 + pad)
    w = rng.normal(size=(3, 2, 3, 3)).astype(np.float32) * (rng.random((3, 2, 3, 3)) < 0.5)
    node = nir.Conv2d(input_shape=(size, size), weight=w, stride=(stride, stride), padding=(pad, pad),
                      dilation=(1, 1), groups=1, bias=np.zeros(3, np.float32))
    got = fanout(node, (2, size, size))
    np.testing.assert_array_equal(got, _brute_force_fanout(w != 0, (2, size, size), stride, pad))
    # and sum(events x fan-out) equals the layer's own conv applied to the kept mask
    x = (rng.random((4, 2, size, size)) < 0.3).astype(np.float64)
    ref = F.conv2d(torch.as_tensor(x), torch.as_tensor((w != 0).astype(np.float64)), None, stride, pad).sum()
    assert float((x.sum(0) * got).sum()) == float(ref)


# ------------------------------------------------------------------------------------------- energy from yaml
def _yaml(tmp_path, text, name="hw.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


ACT = {"totals": {"sops_per_frame": 1000.0, "macs_per_frame": 100.0, "neuron_updates_per_frame": 50, "T": 2,
                  "neurons": 25, "dense_macs_per_frame": 5000.0, "dense_macs_ann": 2500.0},
       "layers": {"a": {"kind": "mac", "ops_per_frame": 100.0, "ops_per_step": [50.0, 50.0]},
                  "b": {"kind": "sop", "ops_per_frame": 1000.0, "ops_per_step": [600.0, 400.0]}},
       "neurons": {}}


def C(v, unit, src="a public source"):
    return f"{{value: {v}, unit: {unit}, status: published, source: '{src}'}}"


def test_energy_arithmetic_ops_model(tmp_path):
    hw = load_profile(_yaml(tmp_path, f"name: t\nmodel: ops\nconstants:\n  e_sop_pj: {C(2, 'pJ', 'paper A')}\n"
                                      f"  e_mac_pj: {C(10, 'pJ', 'paper B')}\n"))
    r = evaluate(hw, ACT)
    assert r["energy_per_frame_j"] == pytest.approx((1000 * 2 + 100 * 10) * 1e-12)
    assert r["per_layer_j"] == {"a": pytest.approx(1e-9), "b": pytest.approx(2e-9)}
    assert r["dense_energy_per_frame_j"] == pytest.approx(5000 * 10e-12)
    assert r["label"].startswith("modelled (source:") and "paper A" in r["label"] and "paper B" in r["label"]


def test_energy_arithmetic_neuromorphic_mcu_board(tmp_path):
    neuro = load_profile(_yaml(tmp_path, "model: neuromorphic\nconstants:\n"
                                         f"  e_sop_pj: {C(20, 'pJ')}\n  e_neuron_update_pj: {C(80, 'pJ')}\n"
                                         f"  t_sop_ns: {C(4, 'ns')}\n  t_neuron_update_ns: {C(10, 'ns')}\n"
                                         f"  t_sync_ns: {C(300, 'ns')}\n"))
    r = evaluate(neuro, ACT)
    assert r["energy_per_frame_j"] == pytest.approx((1100 * 20 + 50 * 80) * 1e-12)
    # per step: sync + ops(t) x 4 ns + 25 neurons x 10 ns; steps have 650 and 450 ops
    assert r["latency_per_frame_s"] == pytest.approx((2 * 300 + 1100 * 4 + 2 * 25 * 10) * 1e-9)
    mcu = load_profile(_yaml(tmp_path, "model: mcu\nconstants:\n" + "".join(
        f"  {k}: {C(v, u)}\n" for k, v, u in [("cycles_per_sop", 3, "cycles"), ("cycles_per_mac", 5, "cycles"),
                                              ("cycles_per_neuron_update", 7, "cycles"),
                                              ("current_ua_per_mhz", 100, "uA/MHz"), ("supply_v", 3.3, "V"),
                                              ("clock_mhz", 100, "MHz")])))
    r = evaluate(mcu, ACT)
    cycles = 1000 * 3 + 100 * 5 + 50 * 7
    assert r["cycles_per_frame"] == cycles
    assert r["energy_per_frame_j"] == pytest.approx(cycles * 100 * 3.3e-12)   # 1 uA/MHz x 1 V = 1 pJ/cycle
    assert r["latency_per_frame_s"] == pytest.approx(cycles / 100e6)
    board = load_profile(_yaml(tmp_path, f"model: board\nconstants:\n  power_w: {C(10, 'W')}\n"
                                         f"  power_w_max: {C(25, 'W')}\n"))
    r = evaluate(board, ACT, measured_latency_s=0.002)
    assert r["energy_per_frame_j"] == pytest.approx(0.02) and r["energy_per_frame_j_max"] == pytest.approx(0.05)
    assert "not modelled" in evaluate(board, ACT)["label"]


def test_unsourced_constant_is_not_modelled(tmp_path):
    hw = load_profile(_yaml(tmp_path, "model: ops\nconstants:\n  e_sop_pj: {value: null, unit: pJ, status: "
                                      "unsourced, source: 'not found'}\n" f"  e_mac_pj: {C(4.6, 'pJ')}\n"))
    r = evaluate(hw, ACT)
    assert r["energy_per_frame_j"] is None and r["label"] == "not modelled: no sourced value for e_sop_pj"


@pytest.mark.parametrize("text,field", [
    ("constants: {}\n", "'model' is missing"),
    ("model: gpu\nconstants: {}\n", "'model' is 'gpu'"),
    ("model: ops\n", "'constants' is missing"),
    (f"model: ops\nconstants:\n  e_sop_pj: {C(1, 'pJ')}\n", "'constants.e_mac_pj' is missing"),
    (f"model: ops\nconstants:\n  e_sop_pj: {{value: 1, unit: pJ}}\n  e_mac_pj: {C(1, 'pJ')}\n",
     "'constants.e_sop_pj.source' is missing"),
    (f"model: ops\nconstants:\n  e_sop_pj: {{value: 1, unit: pJ, source: ''}}\n  e_mac_pj: {C(1, 'pJ')}\n",
     "'constants.e_sop_pj.source' must be a non-empty string"),
    (f"model: ops\nconstants:\n  e_sop_pj: {C('lots', 'pJ')}\n  e_mac_pj: {C(1, 'pJ')}\n",
     "'constants.e_sop_pj.value' must be a non-negative number"),
    (f"model: ops\nconstants:\n  e_sop_pj: {C(1, 'nJ')}\n  e_mac_pj: {C(1, 'pJ')}\n",
     "'constants.e_sop_pj.unit' is 'nJ', expected 'pJ'"),
    (f"model: ops\nconstants:\n  e_sop_pj: {{value: null, unit: pJ, source: x}}\n  e_mac_pj: {C(1, 'pJ')}\n",
     "'constants.e_sop_pj.status' must be 'unsourced' when value is null"),
    (f"model: ops\nconstants:\n  e_sop_pj: {C(1, 'pJ')}\n  e_mac_pj: {C(1, 'pJ')}\n  e_x: {C(1, 'pJ')}\n",
     "'constants.e_x' is not a constant of model 'ops'"),
])
def test_malformed_yaml_names_the_field(tmp_path, text, field):
    p = _yaml(tmp_path, text)
    with pytest.raises(SltError) as e:
        load_profile(p)
    assert field in str(e.value) and p in str(e.value)


def test_yaml_syntax_error_and_missing_file(tmp_path):
    p = _yaml(tmp_path, "model: ops\nconstants: [\n")
    with pytest.raises(SltError, match="not valid YAML at line"):
        load_profile(p)
    with pytest.raises(SltError, match="unknown hardware profile 'nope'"):
        load_hardware("nope")


def test_shipped_profiles_load_and_every_constant_has_a_source():
    hws = load_hardware()
    assert {"asic45nm", "loihi2", "cortex-m7", "jetson-orin-nx"} <= {h["name"] for h in hws}
    for h in hws:
        for k, c in h["constants"].items():
            assert len(c["source"]) > 10, (h["name"], k)
    asic = next(h for h in hws if h["name"] == "asic45nm")
    assert asic["constants"]["e_sop_pj"]["value"] == 0.9 and asic["constants"]["e_mac_pj"]["value"] == 4.6


# ------------------------------------------------------------------------------------------- latency statistics
class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_percentiles_and_summary():
    xs = list(range(1, 101))  # 1..100
    assert L.percentile(xs, 50) == 50.5 and L.percentile(xs, 99) == pytest.approx(99.01)
    assert L.percentile([3.0], 95) == 3.0
    np.testing.assert_allclose([L.percentile(xs, q) for q in (5, 50, 95, 99)], np.percentile(xs, [5, 50, 95, 99]))
    s = L.summarize([0.001, 0.002, 0.003, 0.004])
    assert s["n"] == 4 and s["p50_ms"] == pytest.approx(2.5) and s["mean_ms"] == pytest.approx(2.5)
    assert s["min_ms"] == pytest.approx(1) and s["max_ms"] == pytest.approx(4)


def test_latency_and_throughput_on_fake_clock():
    clock = FakeClock()
    calls = []

    class Runner:  # a runner whose frames take 1, 2, ..., 10 ms of fake time (cycling); warm-up frames 100 ms
        def predict(self, x):
            calls.append(len(x))
            clock.t += 0.1 if len(calls) <= 3 else (1 + (len(calls) - 4) % 10) * 1e-3
            return np.zeros((len(x), 10), np.float32)

    imgs = np.zeros((7, 1, 8, 8), np.float32)
    res = L.measure_latency(Runner(), imgs, frames=20, warmup=3, clock=clock)
    assert calls[:3] == [1, 1, 1] and len(calls) == 23          # warm-up excluded from the statistics
    assert res["n"] == 20 and res["max_ms"] == pytest.approx(10) and res["min_ms"] == pytest.approx(1)
    assert res["p50_ms"] == pytest.approx(5.5) and res["p99_ms"] == pytest.approx(10)
    assert res["p95_ms"] == pytest.approx(np.percentile(list(range(1, 11)) * 2, 95))

    class Batched:
        def predict(self, x):
            clock.t += 0.5
            return np.zeros((len(x), 10))

    thr = L.measure_throughput(Batched(), imgs, batch=16, repeats=4, warmup=1, clock=clock)
    assert thr["frames_per_s"] == pytest.approx(16 * 4 / 2.0) and thr["ms_per_batch_p50"] == pytest.approx(500)


def test_interleaved_rounds_on_fake_clock():
    clock = FakeClock()
    order = []

    class R:
        def __init__(self, name, ms):
            self.name, self.ms = name, ms

        def predict(self, x):
            order.append(self.name)
            clock.t += self.ms * 1e-3
            return np.zeros((len(x), 10))

    imgs = np.zeros((3, 1, 8, 8), np.float32)
    res = L.measure_latency_interleaved({"a": R("a", 2), "b": R("b", 5)}, imgs, frames=10, warmup=2, rounds=3,
                                        clock=clock)
    # warm-up per runner, then chunks of 4, 3, 3 frames alternating a, b
    assert order == ["a"] * 2 + ["b"] * 2 + ["a"] * 4 + ["b"] * 4 + ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3
    assert res["a"]["n"] == res["b"]["n"] == 10 and res["a"]["rounds"] == 3
    assert res["a"]["p50_ms"] == pytest.approx(2) and res["b"]["p99_ms"] == pytest.approx(5)


def test_power_counters_absent_says_why(tmp_path):
    c = L.EnergyCounters(powercap_root=str(tmp_path))
    d = c.describe()
    if not c.nvml:
        assert d["available"] is False and "RAPL" in d["why_absent"]


def test_rapl_counter_reading_and_wraparound(tmp_path):
    z = tmp_path / "intel-rapl:0"
    z.mkdir()
    (z / "name").write_text("package-0\n")
    (z / "energy_uj").write_text("999000000\n")
    (z / "max_energy_range_uj").write_text("1000000000\n")
    c = L.EnergyCounters(powercap_root=str(tmp_path))
    assert c.available and c.rapl
    a = c.read()
    (z / "energy_uj").write_text("2000000\n")  # wrapped: 1 J to the top + 2 J
    d = c.delta(a, c.read())
    assert list(d.values()) == [pytest.approx(3.0)]


def test_peak_memory_block():
    with L.PeakMemory() as m:
        big = np.ones(20_000_000)  # 160 MB
        del big
    r = m.result()
    assert r["peak_rss_mb"] >= r["baseline_rss_mb"] and r["method"]
    if "VmHWM" in r["method"]:
        assert r["delta_mb"] > 100
