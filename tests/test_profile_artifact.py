"""`slt-deploy profile` from the artifact alone: every runner measured in its own process, activity counted by the
runner itself, energy modelled from it, artifact bytes and Cortex-M7 cycles in the report (digits tickets)."""
import json
import os

import pytest

from slt_deploy.cli import main
from slt_deploy.export import export, lower
from slt_deploy.profile.activity import profile_activity
from slt_deploy.profile.run import artifact_bytes, profile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKET = os.path.join(ROOT, "models", "tickets", "digits-tiny-imp90")


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    d = tmp_path_factory.mktemp("arts")
    out = {t: str(d / f"m.{t}") for t in ("loihi", "onnx")}
    for t, p in out.items():
        export(TICKET, t, p)
    return out


def test_profile_artifact_alone(arts):
    rep = profile(arts["loihi"], [arts["onnx"]], limit=48, frames=4, warmup=1, batch=16, repeats=1, threads=1)
    rs = rep["measured"]["runners"]
    assert [r["target"] for r in rs] == ["loihi", "onnx"] and rep["model"]["ckpt"] is None
    assert rep["data"]["dataset"] == "digits" and rep["settings"]["isolated"]
    pids = {r["pid"] for r in rs}
    assert len(pids) == 2 and os.getpid() not in pids                 # one process per runner
    for r in rs:
        m = r["memory"]
        assert 0 < m["runner_mb"] < m["peak_rss_mb"] and m["baseline_rss_mb"] > 0
        assert r["bytes"] == artifact_bytes(r["path"]) > 0
        assert r["latency"]["p50_ms"] > 0 and r["accuracy"] > 50
    # the Loihi runner counted its own activity; it equals the reference graph's up to the chip's spike flips
    own = rs[0]["activity"]["totals"]
    _, _, g = lower(TICKET)
    from slt_deploy.data import load_dataset

    ref = profile_activity(g, load_dataset("digits").test.x[:48].numpy(), batch=16)["totals"]
    assert own["macs_per_frame"] == pytest.approx(ref["macs_per_frame"])
    assert own["sops_per_frame"] == pytest.approx(ref["sops_per_frame"], rel=0.02)
    assert own["neuron_updates_per_frame"] == ref["neuron_updates_per_frame"]
    assert rs[1]["activity"] is None and "not counted" in rs[1]["activity_source"]
    assert rep["activity"] is rs[0]["activity"] or rep["activity"] == rs[0]["activity"]
    m7 = next(m for m in rep["modelled"] if m["name"] == "cortex-m7")
    assert m7["cycles_per_frame"] > 0 and m7["latency_per_frame_s"] > 0 and m7["energy_per_frame_j"] is None


def test_profile_cli_artifact_alone_and_errors(arts, capsys, tmp_path):
    main(["profile", arts["onnx"], "--frames", "3", "--warmup", "1", "--limit", "16", "--batch", "8",
          "--json-out", str(tmp_path / "p.json")])
    text = capsys.readouterr().out
    assert "artifact bytes" in text and "memory of the runner" in text and "no energy modelled" in text
    assert json.load(open(tmp_path / "p.json"))["activity"] is None
    with pytest.raises(SystemExit) as e:
        main(["profile", str(tmp_path / "missing.onnx")])
    assert e.value.code == 2
    assert "does not exist" in capsys.readouterr().err
