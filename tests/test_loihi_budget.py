"""Tickets inside Loihi 2's limits (backends/loihi/budget.py, `ticket --max-cores`) on digits."""
import json
import os
import shutil

import pytest
import yaml
from click.testing import CliRunner

from slt_deploy.backends.loihi.budget import chip_budget, choose_within, ticket_budget
from slt_deploy.backends.loihi.quant import DEFAULT_LIMITS
from slt_deploy.cli import cli
from slt_deploy.errors import SltError
from slt_deploy.export import export

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKETS = os.path.join(ROOT, "models", "tickets")


def test_budget_is_the_exporters_plan(tmp_path):
    ck = os.path.join(TICKETS, "digits-tiny-imp90")
    b = chip_budget(ck)
    export(ck, "loihi", str(tmp_path / "m.loihi"))
    man = json.load(open(tmp_path / "m.loihi" / "manifest.json"))
    assert b["cores"] == man["cores"] and b["fits"]
    assert b["max_fan_in"] == max(e["fan_in"] for e in man["layers"] if "fan_in" in e)
    def wide(e):
        return 2 if man["sparse_fc"] and e["kind"] == "dense" else 1
    assert b["synapse_bytes"] == sum(e["synapses"] * wide(e) for e in man["layers"] if "cores" in e)


def _small_memory(tmp_path, nbytes):
    y = yaml.safe_load(open(DEFAULT_LIMITS))
    y["limits"]["synapse_memory_bytes_per_core"]["value"] = nbytes
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(y))
    return str(p)


def test_max_cores_keeps_the_most_accurate_ticket_that_fits(trained, tmp_path):
    lim = _small_memory(tmp_path, 64)          # 64 B of synapses per core: cores now grow with kept weights
    dense = trained("digits-tiny", 2)
    out = tmp_path / "ticket"
    shutil.copytree(os.path.join(TICKETS, "digits-tiny-imp75-binary"), out)
    shutil.copytree(os.path.join(TICKETS, "digits-tiny-imp90"), out / "rounds" / "round_01")
    cores = {k: chip_budget(p, lim)["cores"] for k, p in
             (("dense", dense), ("r1", str(out / "rounds" / "round_01")), ("final", str(out)))}
    assert cores["dense"] > max(cores["r1"], cores["final"])
    budget = max(cores["r1"], cores["final"])
    res = choose_within(str(out), budget, dense, log=lambda s: None, limits=lim)
    fitting = [r for r in res["candidates"] if r["fits"]]
    assert {r["checkpoint"] for r in fitting} == {str(out / "rounds" / "round_01"), str(out)}
    assert res["chosen"]["test_acc"] == max(r["test_acc"] for r in fitting)
    assert chip_budget(str(out), lim)["cores"] <= budget         # what stays in OUT fits
    assert json.load(open(out / "loihi_budget.json"))["chosen"] == res["chosen"]
    assert min(cores.values()) > 1
    with pytest.raises(SltError, match="no ticket of this search fits"):
        choose_within(str(out), min(cores.values()) - 1, dense, log=lambda s: None, limits=lim)


def test_ticket_cli_reports_the_plan_and_respects_max_cores(trained, tmp_path):
    dense = trained("digits-tiny", 2)
    out = str(tmp_path / "imp")
    r = CliRunner().invoke(cli, ["ticket", dense, "--method", "imp", "--sparsity", "0.5", "--rounds", "1",
                                 "--epochs", "1", "--out", out, "--max-cores", "3", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "Loihi 2 plan: 3 neuro core(s)" in r.output and "--max-cores 3: kept" in r.output
    j = json.load(open(os.path.join(out, "loihi_budget.json")))
    assert j["plan"]["cores"] <= 3 and j["chosen"] and len(j["candidates"]) == 3   # dense, round 1, final
    r = CliRunner().invoke(cli, ["ticket", dense, "--method", "imp", "--out", out, "--max-cores", "0"])
    assert r.exit_code != 0


def test_ticket_budget_without_max_cores(tmp_path):
    out = tmp_path / "t"
    shutil.copytree(os.path.join(TICKETS, "digits-spikformer-tiny-multisp"), out)
    lines = []
    res = ticket_budget(str(out), log=lines.append)
    assert res["plan"]["partitioned"] and "partitioned" in lines[0]
    # the message says how much of the model is on chip, not only that it is split
    h = res["plan"]["host_part"]
    assert h["nodes"] > 0 and f"{len(res['plan']['layers'])} synaptic layer(s) on chip, the rest from " \
        f"{h['from_layer']} ({h['nodes']} node(s)) on the host" in lines[0]
    assert json.load(open(out / "loihi_budget.json"))["plan"]["cores"] == res["plan"]["cores"]
