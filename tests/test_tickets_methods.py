"""Methods that keep tickets accurate (issue 13), on sklearn digits: the optimizer state of pruned weights stays zero,
learning-rate rewinding replays the dense schedule, distillation is used exactly when asked, an IMP search killed
with SIGKILL and resumed gives the uninterrupted search's masks bit for bit, Early-Bird is not worse than random."""
import importlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from slt_deploy.checkpoint import load, save
from slt_deploy.cli import main
from slt_deploy.nn import synapses
from slt_deploy.tickets import TicketConfig, find_ticket
from slt_deploy.tickets.common import run_train, set_teacher
from slt_deploy.tickets.masks import magnitude_masks, prunable, set_masks
from slt_deploy.train import kd_loss, train
from slt_deploy.zoo import build_model, load_recipe

train_mod = importlib.import_module("slt_deploy.train")  # `import slt_deploy.train as m` binds the API function

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def dense(data, tmp_path_factory):
    r = load_recipe("digits-tiny")
    r["train"]["epochs"] = 4
    m = build_model(r)
    train(m, data, r["train"], progress=False, seed=0)
    d = str(tmp_path_factory.mktemp("dense"))
    save(m, d, metrics={}, labels=data.labels)
    return m, d


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_optimizer_state_of_pruned_weights_stays_zero(dense, data, opt):
    m = load(dense[1])[0]
    layers = prunable(m)
    set_masks(layers, magnitude_masks(layers, 0.8, "layer"))
    for _, layer in layers:  # binary layers keep their latent pruned weights: weight decay gives them gradients
        layer.binary = True
    keep = {}
    tc = {**m.recipe["train"], "optimizer": opt, "weight_decay": 1e-2}
    train(m, data, tc, epochs=1, progress=False, keep=keep)
    st = keep["optimizer"].state
    checked = 0
    for _, layer in layers:
        for k, v in st[layer.weight].items():
            if isinstance(v, torch.Tensor) and v.shape == layer.mask.shape:
                assert torch.all(v[layer.mask == 0] == 0), k
                assert v[layer.mask == 1].abs().sum() > 0, k
                checked += 1
    assert checked >= len(layers)


def _record_lrs(monkeypatch):
    """Patch make_schedule so every optimizer step records the learning rate it used."""
    lrs = []
    orig = train_mod.make_schedule

    def patched(opt, cfg, total):
        sched = orig(opt, cfg, total)
        step = opt.step

        def rec_step(*a, **k):
            lrs.append(opt.param_groups[0]["lr"])
            return step(*a, **k)

        opt.step = rec_step
        return sched

    monkeypatch.setattr(train_mod, "make_schedule", patched)
    return lrs


def _dense_schedule(dense, data, monkeypatch):
    """(recorder, the dense training's learning rates step by step, epochs E, steps per epoch)."""
    r = dense[0].recipe
    lrs = _record_lrs(monkeypatch)
    train(build_model(r), data, r["train"], progress=False)
    dense_lrs = list(lrs)
    lrs.clear()
    return lrs, dense_lrs, int(r["train"]["epochs"]), len(data.train.x) // int(r["train"]["batch_size"])


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_lr_rewinding_replays_the_dense_schedule(dense, data, tmp_path, monkeypatch):
    lrs, dense_lrs, E, spe = _dense_schedule(dense, data, monkeypatch)
    assert len(dense_lrs) == E * spe and dense_lrs[0] > dense_lrs[-1]
    find_ticket(dense[1], TicketConfig("imp", 0.75, prune_fraction=0.5, rewind="lr", epochs=2), str(tmp_path / "t"),
                data=data)
    assert len(lrs) == 2 * 2 * spe  # two rounds of the schedule's last 2 epochs
    assert lrs[:2 * spe] == dense_lrs[(E - 2) * spe:] and lrs[2 * spe:] == dense_lrs[(E - 2) * spe:]
    lrs.clear()
    find_ticket(dense[1], TicketConfig("imp", 0.5, rewind="lr", rewind_epoch=1, rounds=1), str(tmp_path / "k"),
                data=data)
    assert lrs == dense_lrs[spe:]  # without --epochs: from the rewind epoch k to the end


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_round_epochs_give_each_round_its_own_span_of_the_schedule(dense, data, tmp_path, monkeypatch, capsys):
    lrs, dense_lrs, E, spe = _dense_schedule(dense, data, monkeypatch)
    t = find_ticket(dense[1], TicketConfig("imp", 0.875, prune_fraction=0.5, rewind="lr", round_epochs=[1, 3]),
                    str(tmp_path / "t"), data=data)
    # round 1: the schedule's last epoch; rounds 2 and 3: its last 3 epochs (the list's last value repeats)
    assert lrs == dense_lrs[(E - 1) * spe:] + 2 * dense_lrs[(E - 3) * spe:]
    assert t["round_epochs"] == [1, 3, 3]
    for method, spec, says in (("random", "2", "for IMP searches"), ("imp", "2,x", "comma-separated")):
        with pytest.raises(SystemExit) as e:
            main(["ticket", dense[1], "--method", method, "--sparsity", "0.5", "--round-epochs", spec,
                  "--out", str(tmp_path / method)])
        assert e.value.code == 2 and says in capsys.readouterr().err
        assert not os.path.exists(tmp_path / method)


def test_sparsity_steps_set_each_round(dense, tmp_path, capsys):
    """--sparsity-steps: one IMP round per listed sparsity (here from the dense model), recorded in the result;
    a list that does not increase, or a --sparsity that is not its last step, is a one-line error."""
    out = tmp_path / "steps"
    main(["ticket", dense[1], "--method", "imp", "--sparsity-steps", "0.3,0.6,0.65", "--epochs", "1", "--quiet",
          "--json", "--out", str(out)])
    res = json.loads(capsys.readouterr().out)
    assert res["steps"] == [0.3, 0.6, 0.65] and res["rounds"] == 3
    hist = json.load(open(out / "rounds" / "search.json"))["history"]
    assert [round(h["sparsity"], 2) for h in hist[1:]] == [0.3, 0.6, 0.65]
    for extra, says in ((["--sparsity-steps", "0.6,0.5"], "larger than the one before"),
                        (["--sparsity-steps", "0.5,0.6", "--sparsity", "0.7"], "not the last of")):
        with pytest.raises(SystemExit) as e:
            main(["ticket", dense[1], "--method", "imp", "--out", str(tmp_path / "bad")] + extra)
        err = capsys.readouterr().err
        assert e.value.code == 2 and says in err and "Traceback" not in err
        assert not os.path.exists(tmp_path / "bad")


def test_distillation_used_only_when_asked(dense, data, monkeypatch):
    calls = []
    orig = train_mod.kd_loss
    monkeypatch.setattr(train_mod, "kd_loss", lambda *a: calls.append(1) or orig(*a))
    m0, _ = load(dense[1])
    layers0 = prunable(m0)
    set_masks(layers0, magnitude_masks(layers0, 0.7, "layer"))
    runs = {}
    for name, distill in (("plain", None), ("off", False), ("on", True)):
        m = build_model(m0.recipe)
        m.load_state_dict(m0.state_dict())
        if distill is None:  # the plain training loop, no ticket machinery
            train(m, data, m.recipe["train"], epochs=2, progress=False)
        else:
            cfg = set_teacher(TicketConfig("imp", 0.7, distill=distill, kd_alpha=0.7, kd_temp=3.0), dense[0], data)
            run_train(m, data, cfg, 2)
        runs[name] = m.state_dict()
    n_steps = 2 * (len(data.train.x) // int(m0.recipe["train"]["batch_size"]))
    assert len(calls) == n_steps  # only the distilling run called the KD loss, at every step
    assert all(torch.equal(runs["plain"][k], runs["off"][k]) for k in runs["plain"])
    assert any(not torch.equal(runs["plain"][k], runs["on"][k]) for k in runs["plain"])
    # the loss itself: alpha = 0 is cross-entropy; a student equal to its teacher has zero KL
    z, y = torch.randn(8, 10), torch.randint(0, 10, (8,))
    assert torch.equal(kd_loss(z, z + 1.0, y, 0.0, 4.0), torch.nn.functional.cross_entropy(z, y))
    assert kd_loss(z, z, y, 1.0, 4.0).abs() < 1e-6


def _masks(d):
    m, _ = load(d)
    return {n: layer.mask.clone() for n, layer in synapses(m)}


def test_resume_after_sigkill_gives_bit_identical_masks(dense, data, tmp_path):
    args = ["ticket", dense[1], "--method", "imp", "--sparsity", "0.95", "--prune-fraction", "0.5", "--rounds", "5",
            "--epochs", "2", "--quiet"]
    full = tmp_path / "full"
    main(args + ["--out", str(full)])
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.Popen([sys.executable, "-m", "slt_deploy.cli"] + args + ["--out", str(out)], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = out / "rounds" / "search.json"
    t0 = time.time()
    try:
        while time.time() - t0 < 240:
            if state.exists() and json.loads(state.read_text())["finished_round"] >= 2:
                break
            assert p.poll() is None, p.stderr.read().decode()
            time.sleep(0.02)
        p.send_signal(signal.SIGKILL)
    finally:
        p.wait()
    killed_after = json.loads(state.read_text())["finished_round"]
    assert 2 <= killed_after < 5 and not (out / "model.json").exists()
    main(args + ["--out", str(out), "--resume"])
    meta = json.loads((out / "model.json").read_text())["ticket"]
    assert meta["resumed_after_round"] == killed_after
    a, b = _masks(str(full)), _masks(str(out))
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    for r in range(1, 6):  # every round, not only the last
        ra, rb = _masks(str(full / "rounds" / f"round_{r:02d}")), _masks(str(out / "rounds" / f"round_{r:02d}"))
        assert all(torch.equal(ra[n], rb[n]) for n in ra), r


def test_resume_with_other_settings_is_a_clear_error(dense, tmp_path, capsys):
    out = tmp_path / "t"
    main(["ticket", dense[1], "--method", "imp", "--sparsity", "0.5", "--rounds", "1", "--epochs", "1", "--quiet",
          "--out", str(out)])
    with pytest.raises(SystemExit) as e:
        main(["ticket", dense[1], "--method", "imp", "--sparsity", "0.5", "--rounds", "1", "--epochs", "2",
              "--quiet", "--out", str(out), "--resume"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "epochs" in err and err.startswith("error:") and "Traceback" not in err


def test_early_bird_not_worse_than_random(dense, data, tmp_path):
    cfg = {"epochs": 8, "seed": 0}
    eb = find_ticket(dense[1], TicketConfig("early-bird", 0.9, **cfg), str(tmp_path / "eb"), data=data)
    rnd = find_ticket(dense[1], TicketConfig("random", 0.9, like=str(tmp_path / "eb"), **cfg), str(tmp_path / "rnd"),
                      data=data)
    assert [r["sparsity"] for r in eb["layers"]] == [r["sparsity"] for r in rnd["layers"]]
    assert eb["distance"] == "relative" and eb["search_epochs"] >= 5  # not before the window is full
    assert eb["test_acc"] >= rnd["test_acc"], (eb["test_acc"], rnd["test_acc"])


def test_early_bird_sub_epoch_masks_stop_inside_the_first_epoch(dense, data, tmp_path, monkeypatch):
    """--eb-checks N: a mask every 1/N epoch; with a loose tau the search stops once the window of q masks is full,
    mid-epoch (q/N epochs), and training stops there: no further optimizer step."""
    steps = []
    real = train_mod.train

    def counting(*a, **k):
        on_step = k.get("on_step")
        if on_step is not None:
            def wrapped(ep, s, n, m):
                steps.append((ep, s))
                return on_step(ep, s, n, m)
            k["on_step"] = wrapped
        return real(*a, **k)

    monkeypatch.setattr("slt_deploy.tickets.common.train", counting)
    cfg = TicketConfig("early-bird", 0.8, epochs=1, q=2, tau=0.99, eb_checks=4, seed=0)
    res = find_ticket(dense[1], cfg, str(tmp_path / "eb"), data=data)
    per_epoch = len(data.train.x) // int(load_recipe("digits-tiny")["train"]["batch_size"])
    assert res["converged"] and res["checks_per_epoch"] == 4
    assert res["stop_epoch"] == res["search_epochs"] == round(round(per_epoch / 2) / per_epoch, 4)  # 2nd mask
    assert steps[-1] == (0, round(per_epoch / 2))  # the search's training ended at that step
    with pytest.raises(Exception, match="checks per epoch"):
        TicketConfig("early-bird", 0.8, eb_checks=0).validate()
