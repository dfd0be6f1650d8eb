"""slt-deploy profile on a real trained digits model: reference vs nir artifact, counts on real spikes, reports."""
import json
import os

import numpy as np
import pytest

from slt_deploy.cli import main
from slt_deploy.export import export, lower
from slt_deploy.profile import report
from slt_deploy.profile.run import demo_stage, profile


@pytest.fixture(scope="module")
def ckpt_and_nir(trained, tmp_path_factory):
    ckpt = trained("digits-tiny")
    art = str(tmp_path_factory.mktemp("art") / "model.nir")
    export(ckpt, "nir", art)
    return ckpt, art


@pytest.fixture(scope="module")
def rep(ckpt_and_nir):
    ckpt, art = ckpt_and_nir
    return profile(ckpt, [art], limit=64, frames=10, warmup=2, batch=32, repeats=1, threads=1)


def test_profile_measures_reference_and_artifact(rep):
    rs = rep["measured"]["runners"]
    assert [r["target"] for r in rs] == ["torch", "nir"]
    for r in rs:
        lat = r["latency"]
        assert lat["n"] == 10 and 0 < lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"] <= lat["max_ms"]
        assert r["throughput"]["frames_per_s"] > 0 and r["memory"]["peak_rss_mb"] > 0
    assert rs[0]["vs_reference"]["latency_p50"] == 1.0
    assert rs[0]["accuracy"] == rs[1]["accuracy"] > 50        # the nir target is bit-exact
    pc = rep["measured"]["power_counters"]
    assert pc["available"] or pc["why_absent"]


def test_activity_on_real_spikes(rep, ckpt_and_nir):
    t = rep["activity"]["totals"]
    assert t["frames"] == 64 and t["T"] == 4
    assert t["macs_per_frame"] > 0 and 0 < t["sops_per_frame"] < t["dense_macs_per_frame"]
    assert t["dense_over_ops"] > 1 and 0 < t["spike_rate"] < 1
    first = next(iter(rep["activity"]["layers"].values()))
    assert first["kind"] == "mac"                           # direct encoding: analog first layer
    # the same counts as the torch-model counter of the tickets package (two independent implementations)
    tickets_activity = pytest.importorskip("slt_deploy.tickets.activity")
    from slt_deploy.data import load_digits

    model, _, _ = lower(ckpt_and_nir[0])
    other = tickets_activity.synaptic_ops(model, load_digits().test.x[:64])
    for name, v in rep["activity"]["layers"].items():
        assert v["kind"] == other[name]["kind"]
        assert v["ops_per_frame"] == pytest.approx(other[name]["ops"], rel=1e-9)


def test_modelled_energy_is_labelled(rep):
    by = {m["name"]: m for m in rep["modelled"]}
    asic = by["asic45nm"]
    t = rep["activity"]["totals"]
    assert asic["energy_per_frame_j"] == pytest.approx((t["sops_per_frame"] * 0.9 + t["macs_per_frame"] * 4.6) * 1e-12)
    assert "Horowitz" in asic["label"]
    assert by["loihi2"]["label"].startswith("modelled (estimate)")
    m7 = by["cortex-m7"]  # cycles and latency from its sourced constants, the energy per cycle is not sourced
    assert m7["energy_per_frame_j"] is None and "energy not modelled" in m7["label"]
    assert m7["cycles_per_frame"] > 0 and m7["latency_per_frame_s"] == pytest.approx(m7["cycles_per_frame"] / 480e6)
    boards = rep["boards"]
    assert {b["runner"] for b in boards} == {"reference (torch)", "nir:model.nir"}


def test_report_files_written_and_readable(rep, tmp_path):
    jp, mp = str(tmp_path / "r.json"), str(tmp_path / "r.md")
    report.write_json(rep, jp)
    report.write_markdown(rep, mp)
    pngs = report.write_plots(rep, str(tmp_path / "plots"))
    back = json.load(open(jp))
    assert back["format"] == "slt-deploy-profile" and len(back["measured"]["runners"]) == 2
    md = open(mp).read()
    assert "## Measured on this host" in md and "| measured on this host | reference (torch) | nir:model.nir |" in md
    assert "Horowitz" in md and "not modelled" in md
    import matplotlib.image as mpimg

    assert sorted(os.path.basename(p) for p in pngs) == ["activity.png", "energy.png", "latency.png"]
    for p in pngs:
        assert mpimg.imread(p).shape[0] > 100
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    text = report.render_text(rep)
    assert "MODELLED, not measured" in text and "p50 latency vs reference" in text


def test_cli_json_and_unknown_artifact(ckpt_and_nir, capsys, tmp_path):
    ckpt, art = ckpt_and_nir
    main(["profile", ckpt, "--compare", art, "--limit", "16", "--frames", "3", "--warmup", "1", "--batch", "8",
          "--hardware", "asic45nm,loihi2", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in out["modelled"]] == ["asic45nm", "loihi2"]
    bogus = tmp_path / "model.bin"
    bogus.write_bytes(b"not an artifact")
    with pytest.raises(SystemExit) as e:
        main(["profile", ckpt, str(bogus), "--frames", "2"])
    assert e.value.code == 2
    assert str(bogus) in capsys.readouterr().err


def test_demo_stage_exports_nir_when_no_artifacts(ckpt_and_nir, tmp_path, capsys):
    ctx = {"out": str(tmp_path), "dense_dir": ckpt_and_nir[0]}
    demo_stage(ctx, frames=3, limit=16)
    out = capsys.readouterr().out
    assert "nir:model.nir" in out and "reference (torch)" in out
    assert os.path.exists(tmp_path / "profile" / "profile.md") and ctx["profile"]["measured"]["runners"]
    np.testing.assert_equal(len(ctx["profile"]["measured"]["runners"]), 2)


def test_board_energy_not_priced_on_a_simulated_chip(trained, tmp_path):
    """A board profile prices THIS host's latency of a runner that runs the model itself; the Loihi runner simulates
    its chip on the host, so its board row says 'not modelled' (and why) instead of a number."""
    ckpt = trained("digits-tiny")
    art = str(tmp_path / "m.loihi")
    export(ckpt, "loihi", art)
    rep = profile(ckpt, [art], limit=16, frames=3, warmup=1, batch=8, repeats=1, threads=1,
                  hardware=["jetson-orin-nx"])
    by = {b["runner"]: b for b in rep["boards"]}
    assert by["reference (torch)"]["energy_per_frame_j"] > 0
    sim = by["loihi:m.loihi"]
    assert sim["energy_per_frame_j"] is None and sim["label"].startswith("not modelled: the loihi runner simulates")
    rows = report.modelled_rows(rep)
    assert any("not modelled: the loihi runner" in r[-1] and "module power" not in r[-1] for r in rows)
