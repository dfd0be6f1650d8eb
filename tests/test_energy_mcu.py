"""The Cortex-M7 hardware profile (slt_deploy/hardware/energy/cortex-m7.yaml) and its bench (bench/mcu.py).

Cycles per op are modelled from QEMU instruction counts (status estimate, CPI assumed); the energy per cycle is not
sourced yet, so the profile row stays "not modelled" until current_ua_per_mhz and supply_v are filled. The bench
test runs only where qemu-system-arm and arm-none-eabi-gcc are installed (`make bench-mcu` installs them)."""
import importlib.util
import os
import shutil

import pytest
import yaml

from slt_deploy.profile.energy import ENERGY_DIR, evaluate, load_hardware, load_profile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CYCLES = ("cycles_per_sop", "cycles_per_mac", "cycles_per_neuron_update")

# per-frame counts in the shape profile.activity returns (only what evaluate() reads)
ACT = {"totals": {"sops_per_frame": 20000.0, "macs_per_frame": 7000.0, "neuron_updates_per_frame": 18816.0, "T": 4},
       "layers": {"body.0": {"kind": "mac", "ops_per_frame": 7000.0, "ops_per_step": [1750.0] * 4},
                  "body.2": {"kind": "sop", "ops_per_frame": 20000.0, "ops_per_step": [5000.0] * 4}},
       "neurons": {}}


def _m7():
    return load_hardware("cortex-m7")[0]


def test_cortex_m7_yaml_has_modelled_cycle_constants():
    hw = _m7()
    assert hw["model"] == "mcu"
    c = hw["constants"]
    for k in CYCLES:
        assert c[k]["value"] is not None and c[k]["value"] > 0, k
        assert c[k]["unit"] == "cycles"
        # an instruction count under an assumed CPI is an estimate, never a measurement
        assert c[k]["status"] == "estimate", k
        assert c[k]["source"].startswith("modelled (QEMU instruction count)"), k
        assert "CPI" in c[k]["source"] and "bench/mcu.py" in c[k]["source"], k
    # a neuron update (membrane, reset, epilogue, zero test per step) costs more than one synaptic op; the MAC
    # constant is per counted MAC (counted every step, computed once per frame when the input repeats)
    assert max(c["cycles_per_sop"]["value"], c["cycles_per_mac"]["value"]) < c["cycles_per_neuron_update"]["value"]
    assert "COUNTED" in c["cycles_per_mac"]["source"]
    assert c["clock_mhz"]["value"] == 480 and c["clock_mhz"]["status"] == "published"
    assert "measured" not in {c[k]["status"] for k in c}
    assert "CPI" in hw["notes"] and "instructions" in hw["notes"]


def test_cortex_m7_energy_per_cycle_unsourced_says_why():
    c = _m7()["constants"]
    for k in ("current_ua_per_mhz", "supply_v"):
        assert c[k]["value"] is None and c[k]["status"] == "unsourced", k
    assert "DS12110" in c["current_ua_per_mhz"]["source"]


def test_cortex_m7_cycles_and_latency_modelled_energy_not_until_the_current_is_sourced():
    hw = _m7()
    r = evaluate(hw, ACT)
    k = {n: hw["constants"][n]["value"] for n in CYCLES}
    cycles = 20000 * k["cycles_per_sop"] + 7000 * k["cycles_per_mac"] + 18816 * k["cycles_per_neuron_update"]
    assert r["cycles_per_frame"] == pytest.approx(cycles)
    assert r["latency_per_frame_s"] == pytest.approx(cycles / (hw["constants"]["clock_mhz"]["value"] * 1e6))
    assert r["energy_per_frame_j"] is None and r["terms_j"] == {}
    assert r["missing"] == ["current_ua_per_mhz", "supply_v"]
    assert r["label"].startswith("modelled (estimate) (source: ")
    assert r["label"].endswith("; energy not modelled: no sourced value for current_ua_per_mhz, supply_v")


def test_cortex_m7_arithmetic_with_the_shipped_cycle_constants(tmp_path):
    """energy = (SOPs x cycles/SOP + MACs x cycles/MAC + updates x cycles/update) x pJ/cycle, with the shipped cycle
    constants and a current/voltage given HERE as test inputs (not datasheet values)."""
    with open(os.path.join(ENERGY_DIR, "cortex-m7.yaml")) as f:
        doc = yaml.safe_load(f)
    doc["constants"]["current_ua_per_mhz"] = {"value": 100, "unit": "uA/MHz", "status": "estimate",
                                              "source": "test input for the arithmetic, not a datasheet value"}
    doc["constants"]["supply_v"] = {"value": 3.3, "unit": "V", "status": "estimate",
                                    "source": "test input for the arithmetic, not a datasheet value"}
    p = tmp_path / "m7.yaml"
    p.write_text(yaml.safe_dump(doc))
    hw = load_profile(str(p))
    k = {n: hw["constants"][n]["value"] for n in CYCLES}
    r = evaluate(hw, ACT)
    cycles = 20000 * k["cycles_per_sop"] + 7000 * k["cycles_per_mac"] + 18816 * k["cycles_per_neuron_update"]
    pj_per_cycle = 100 * 3.3  # 1 uA/MHz x 1 V = 1 pJ per cycle
    assert r["cycles_per_frame"] == pytest.approx(cycles)
    assert r["energy_per_frame_j"] == pytest.approx(cycles * pj_per_cycle * 1e-12)
    assert r["latency_per_frame_s"] == pytest.approx(cycles / 480e6)
    assert r["terms_j"]["synaptic"] == pytest.approx((20000 * k["cycles_per_sop"] + 7000 * k["cycles_per_mac"])
                                                     * pj_per_cycle * 1e-12)
    assert r["per_layer_j"]["body.0"] == pytest.approx(7000 * k["cycles_per_mac"] * pj_per_cycle * 1e-12)
    assert r["per_layer_j"]["body.2"] == pytest.approx(20000 * k["cycles_per_sop"] * pj_per_cycle * 1e-12)
    assert r["label"].startswith("modelled (estimate) (source: ") and "QEMU instruction count" in r["label"]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_mcu", os.path.join(ROOT, "bench", "mcu.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_fit_recovers_known_coefficients():
    mcu = _bench()
    true = {"sops": 12.0, "macs": 30.0, "neuron_updates": 100.0}
    rows = [{"model": f"m{i}", "sops": s, "macs": m, "neuron_updates": n,
             "instructions": 12.0 * s + 30.0 * m + 100.0 * n}
            for i, (s, m, n) in enumerate([(1e3, 2e3, 3e3), (5e4, 1e4, 3e3), (2e5, 5e4, 2e4), (7e3, 0, 2e4)])]
    f = mcu.fit(rows)
    assert f["coef"] == pytest.approx(true) and f["max_abs_rel_err"] < 1e-9
    assert mcu.predict(f, rows[1]) == pytest.approx(rows[1]["instructions"])


@pytest.mark.skipif(not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")),
                    reason="needs qemu-system-arm and arm-none-eabi-gcc (make bench-mcu installs them)")
def test_bench_mcu_on_qemu_one_ticket(tmp_path):
    """One shipped ticket, 1 test frame (+ blank + half), on QEMU: exact instruction counting (calibration loop),
    guest == host C runtime bit for bit, and the yaml's constants (instructions x CPI 1.0) within 50 % of the count
    (a wider miss means the C runtime changed since the yaml was fitted: rerun `make bench-mcu`)."""
    mcu = _bench()
    rep = mcu.main(["--models", os.path.join(ROOT, "models", "tickets", "digits-tiny-imp75-binary"),
                    "--no-dense-twins", "--frames", "1", "--out", str(tmp_path)])
    (m,) = rep["models"]
    assert m["guest_equals_host"]
    assert all(c["counted"] == pytest.approx(c["instructions"], abs=8) for c in m["calib"])
    assert all(r["guest_events"] == r["host_events"] == r["sops"] + r["macs"] for r in m["rows"])
    k = {n: v["value"] for n, v in _m7()["constants"].items()}
    for r in m["rows"]:
        modelled = r["sops"] * k["cycles_per_sop"] + r["macs"] * k["cycles_per_mac"] \
            + r["neuron_updates"] * k["cycles_per_neuron_update"]
        assert modelled == pytest.approx(r["instructions"], rel=0.5), \
            "slt_deploy/hardware/energy/cortex-m7.yaml is stale for this runtime: rerun make bench-mcu and update it"
    assert os.path.exists(tmp_path / "results.json")
