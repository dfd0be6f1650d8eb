"""The full-scale ticket bench's scheduler (bench/tickets_full.py run_plan): steps start when what they read exists
(an IMP round inside a running search counts), never more than `workers` at once, and a failure starts nothing new.
The slt-deploy commands are replaced by stand-ins that write what the real ones write, with short sleeps."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture()
def plan():
    spec = importlib.util.spec_from_file_location("tickets_full", os.path.join(ROOT, "bench", "tickets_full.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _out(args):
    return args[args.index("--out") + 1]


class FakeCli:
    """Records start/end times and concurrency; a ticket writes ticket.json, a train model.json; an IMP search writes
    rounds/search.json after each of its rounds (as the real one does); `fail` names an --out folder that fails, at
    once (so the scheduler sees the failure at its next poll, long before the other running step ends: a failure at
    the same moment as another step's end left a window in which a loaded machine started a step before the
    scheduler could know of the failure, and the test failed once in `make test` beside two training jobs)."""

    def __init__(self, fail=None, rounds=8, dt=0.05):
        self.fail, self.rounds, self.dt = fail, rounds, dt
        self.lock, self.running, self.peak, self.log = threading.Lock(), 0, 0, []

    def __call__(self, args, log=None):
        out = _out(args)
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.log.append(("start", os.path.basename(out), time.monotonic()))
        try:
            os.makedirs(out, exist_ok=True)
            if os.path.basename(out) == self.fail:
                raise subprocess.CalledProcessError(2, ["slt-deploy"])
            if "--method" in args and args[args.index("--method") + 1] == "imp" and "--resume" in args:
                for r in range(1, self.rounds + 1):
                    time.sleep(self.dt)
                    os.makedirs(os.path.join(out, "rounds", f"round_{r:02d}"), exist_ok=True)
                    with open(os.path.join(out, "rounds", "search.json"), "w") as f:
                        json.dump({"finished_round": r}, f)
            else:
                time.sleep(self.dt)
            open(os.path.join(out, "ticket.json" if args[0] == "ticket" else "model.json"), "w").write("{}")
        finally:
            with self.lock:
                self.running -= 1
                self.log.append(("end", os.path.basename(out), time.monotonic()))


def _jobs(plan, out):
    dense = os.path.join(out, "dense")
    jobs = [j for j in plan.dense_steps(out, dense)]
    jobs += [(k, os.path.join(out, k), a) for k, _l, a, _r in plan.steps(out, dense)]
    jobs.sort(key=lambda j: plan.PRIORITY.index(j[0]))
    return jobs


def _t(log, what, name):
    return next(t for w, n, t in log if w == what and n == name)


def test_steps_wait_for_their_inputs_and_rounds(plan, tmp_path, monkeypatch):
    fake = FakeCli()
    monkeypatch.setattr(plan, "cli", fake)
    monkeypatch.setattr(plan, "POLL_SECONDS", 0.01)
    out = str(tmp_path)
    plan.run_plan(_jobs(plan, out), 2, os.path.join(out, "logs"))
    names = {n for _w, n, _t in fake.log}
    assert names == {"dense", "sf_dense", "sf_dense_same", *(k for k, *_ in plan.steps(out, "d"))}
    assert fake.peak == 2
    log = fake.log
    for reader, source in [("imp98", "dense"), ("eb90", "dense"), ("random98", "imp98"), ("random90", "eb90"),
                           ("random_bin95", "imp_bin95"), ("multisp", "sf_dense"), ("random_multisp", "sf_dense")]:
        assert _t(log, "start", reader) >= _t(log, "end", source), reader
    assert _t(log, "start", "imp_bin95") >= _t(log, "start", "imp98") + 5 * fake.dt * 0.9  # reads round 5


def test_a_round_inside_a_running_search_frees_its_reader(plan, tmp_path, monkeypatch):
    fake = FakeCli()
    monkeypatch.setattr(plan, "cli", fake)
    monkeypatch.setattr(plan, "POLL_SECONDS", 0.01)
    out = str(tmp_path)
    jobs = [j for j in _jobs(plan, out) if j[0] in ("imp98", "imp_bin95")]
    os.makedirs(tmp_path / "dense")  # the user's dense model: not a step of this plan
    plan.run_plan(jobs, 2, os.path.join(out, "logs"))
    assert _t(fake.log, "start", "imp_bin95") >= _t(fake.log, "start", "imp98") + 5 * fake.dt * 0.9
    assert _t(fake.log, "start", "imp_bin95") < _t(fake.log, "end", "imp98")


def test_a_failed_step_starts_nothing_new(plan, tmp_path, monkeypatch):
    fake = FakeCli(fail="sf_dense")
    monkeypatch.setattr(plan, "cli", fake)
    monkeypatch.setattr(plan, "POLL_SECONDS", 0.01)
    out = str(tmp_path)
    with pytest.raises(SystemExit, match="sf_dense"):
        plan.run_plan(_jobs(plan, out), 2, os.path.join(out, "logs"))
    failed_at = _t(fake.log, "end", "sf_dense")
    assert all(t <= failed_at for w, _n, t in fake.log if w == "start")
    running_then = {n for w, n, t in fake.log if w == "start" and t <= failed_at} - {"sf_dense"}
    assert all(any(w == "end" and n == r for w, n, _t in fake.log) for r in running_then)  # they finished


def test_inputs_outside_the_plan_are_the_users(plan, tmp_path):
    makers = {os.path.normpath(str(tmp_path / "imp98")): "imp98"}
    assert plan.available("/somewhere/else", makers, set())
    assert not plan.available(str(tmp_path / "imp98"), makers, set())
    assert plan.available(str(tmp_path / "imp98"), makers, {"imp98"})
    assert not plan.available(str(tmp_path / "imp98" / "rounds" / "round_04"), makers, set())
    os.makedirs(tmp_path / "imp98" / "rounds")
    (tmp_path / "imp98" / "rounds" / "search.json").write_text(json.dumps({"finished_round": 4}))
    assert plan.available(str(tmp_path / "imp98" / "rounds" / "round_04"), makers, set())
    assert not plan.available(str(tmp_path / "imp98" / "rounds" / "round_05"), makers, set())


def test_the_dense_model_defaults_to_bench_trains(plan, tmp_path):
    """Without --dense: the plan's own dense model once trained, else make bench-train's checkpoint, else train it."""
    out, bench = str(tmp_path / "out"), str(tmp_path / "bench" / "fmnist-vgg")
    own = os.path.join(out, "dense")
    assert plan.default_dense(out, bench) == own                 # nothing yet: the plan trains OUT/dense
    os.makedirs(bench)
    open(os.path.join(bench, "model.json"), "w").write("{}")
    assert plan.default_dense(out, bench) == bench               # bench-train's model
    os.makedirs(own)
    open(os.path.join(own, "model.json"), "w").write("{}")
    assert plan.default_dense(out, bench) == own                 # an earlier run's: its tickets were made from it


def test_bf16_picks_the_steps_trained_in_bfloat16(plan):
    """--bf16 names the ticket steps trained with --precision bf16; every other step gets fp32 explicitly."""
    def prec(bf16):
        return {k: a[a.index("--precision") + 1] for k, _l, a, _r in plan.steps("o", "d", bf16=bf16)}

    names = [k for k, *_ in plan.steps("o", "d")]
    assert set(prec(plan.bf16_steps("all")).values()) == {"bf16"} and len(names) == 8
    assert set(prec(plan.bf16_steps("none")).values()) == {"fp32"}
    picked = prec(plan.bf16_steps("imp98, multisp"))
    assert [k for k, v in picked.items() if v == "bf16"] == ["imp98", "multisp"]
    assert prec(plan.BF16) == {k: "bf16" if k in plan.BF16 else "fp32" for k in names}
    with pytest.raises(SystemExit, match="no step imp99"):
        plan.bf16_steps("imp98,imp99")


def test_bf16_auto_follows_the_cpu(plan):
    """--bf16 auto (the default): the BF16 steps on a CPU with native bfloat16 kernels, every step float32 on one
    that emulates them (there bf16 trains slower than float32); without `native`, this CPU's answer."""
    from slt_deploy.nn.precision import fast

    assert plan.bf16_steps("auto", native=True) == plan.BF16
    assert plan.bf16_steps("auto", native=False) == ()
    assert plan.bf16_steps("auto") == (plan.BF16 if fast("bf16") else ())


def test_a_random_twin_trains_in_its_tickets_precision(plan):
    """The default precisions: a random ticket is trained like the ticket whose per-layer sparsity it copies (--like),
    and the random MultiSp twin like MultiSp, so each row's margin over random is not a precision difference."""
    st = {k: a for k, _l, a, _r in plan.steps("o", "d")}
    prec = {k: a[a.index("--precision") + 1] for k, a in st.items()}
    twins = {k: os.path.basename(a[a.index("--like") + 1]) for k, a in st.items() if "--like" in a}
    twins["random_multisp"] = "multisp"
    assert set(twins) == {"random98", "random90", "random_bin95", "random_multisp"}
    for twin, ticket in twins.items():
        assert prec[twin] == prec[ticket], (twin, ticket)


def _recipe(target: str) -> str:
    lines = open(os.path.join(ROOT, "Makefile")).read().splitlines()
    return lines[lines.index(f"{target}: setup") + 1].strip()


def test_make_bench_tickets_is_the_full_scale_plan():
    assert _recipe("bench-tickets").startswith("$(PY) bench/tickets_full.py")
    assert _recipe("bench-tickets-small").startswith("$(PY) bench/tickets_fmnist.py")


def test_the_small_plan_points_full_scale_options_to_their_bench():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "tickets_fmnist.py"),
                        "--full-scale", "--dense", "x"], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "bench/tickets_full.py" in r.stderr and "Traceback" not in r.stderr
