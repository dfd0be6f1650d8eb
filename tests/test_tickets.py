"""Ticket methods on sklearn digits: masks, exact sparsity, rewinding, Early-Bird stop, binarization, patch tickets,
synaptic-op counting, save/reload. Real data, tiny models, few epochs."""
import copy
import json
import os

import pytest
import torch

from slt_deploy.checkpoint import load, save
from slt_deploy.cli import main
from slt_deploy.nn import SConv2d, SLinear, TransformerBlock, synapses
from slt_deploy.tickets import TicketConfig, find_ticket
from slt_deploy.tickets.activity import layer_ops, synaptic_ops
from slt_deploy.tickets.common import recipe_for
from slt_deploy.tickets.early_bird import converged
from slt_deploy.tickets.imp import rewind, rewind_point
from slt_deploy.tickets.masks import (
    imp_schedule,
    lamp_scores,
    layer_stats,
    magnitude_masks,
    prunable,
    set_masks,
    sparsity,
)
from slt_deploy.train import train
from slt_deploy.zoo import build_model, load_recipe

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def dense(data, tmp_path_factory):
    """digits-tiny trained 4 epochs; also the state after epoch 1 (the rewind point) captured during training."""
    r = load_recipe("digits-tiny")
    r["train"]["epochs"] = 4
    m = build_model(r)
    snap = {}

    def grab(ep, model):
        if ep == 1:
            snap.update({k: v.detach().clone() for k, v in model.state_dict().items()})

    train(m, data, r["train"], progress=False, on_epoch=grab, seed=int(r.get("seed", 0)))
    d = str(tmp_path_factory.mktemp("dense"))
    save(m, d, metrics={}, labels=data.labels)
    return m, d, snap


@pytest.fixture(scope="module")
def dense_sf(data):
    r = load_recipe("digits-spikformer-tiny")
    r["train"]["epochs"] = 3
    m = build_model(r)
    train(m, data, r["train"], progress=False)
    return m


def test_imp_ladder_matches_kim_et_al():
    ladder = imp_schedule(0.98, 0.25)
    assert len(ladder) == 14 and ladder[-1] == 0.98
    assert [round(100 * s, 1) for s in ladder[:4]] == [25.0, 43.8, 57.8, 68.4]


@pytest.mark.parametrize("s", [0.333, 0.5, 0.9, 0.98])
def test_measured_sparsity_equals_target_within_one_weight(dense, s):
    m = copy.deepcopy(dense[0])
    layers = prunable(m)
    set_masks(layers, magnitude_masks(layers, s, "layer"))
    for row in layer_stats(m):
        assert abs(row["sparsity"] * row["total"] - s * row["total"]) <= 1.0, row
    m = copy.deepcopy(dense[0])
    layers = prunable(m)
    set_masks(layers, magnitude_masks(layers, s, "global"))
    total = sum(r["total"] for r in layer_stats(m))
    assert abs(sparsity(m) - s) * total <= 1.0


def test_layer_gain_moves_the_budget_and_keeps_the_total(dense):
    """--layer-gain conv=g: the same number of weights kept overall, more of them in the convolutions as g grows;
    g = 1 is the plain ranking; a module path's gain beats its kind's."""
    m = copy.deepcopy(dense[0])
    layers = prunable(m)

    def kept(gains):
        mk = magnitude_masks(layers, 0.9, "global-raw", gains)
        return {n: int(v.sum()) for n, v in mk.items()}

    kinds = {n: lay.kind for n, lay in layers}
    plain, one = kept(None), kept({"conv": 1.0})
    assert plain == one
    conv = [kept({"conv": g}) for g in (1.0, 1.5, 3.0)]
    assert len({sum(k.values()) for k in conv}) == 1
    in_conv = [sum(v for n, v in k.items() if kinds[n] == "conv") for k in conv]
    assert in_conv[0] < in_conv[1] < in_conv[2], in_conv
    first = layers[0][0]  # a module path beats the kind: only that layer moves
    by_path = kept({"conv": 1.0, first: 3.0})
    assert by_path[first] > plain[first]


def test_lamp_scores_follow_the_definition_and_ignore_layer_scale(dense):
    """LAMP (Lee et al. 2021): score(u) = w_u^2 / sum of w_v^2 over kept v with |w_v| >= |w_u|, pruned weights 0;
    scaling one layer changes nothing in a LAMP ranking (it moves a global-raw one); the total stays exact."""
    w = torch.tensor([[0.5, -2.0], [1.0, 0.1]])
    kept_ = torch.tensor([[True, True], [True, False]])
    sc = lamp_scores(w, kept_)
    want = torch.tensor([[0.25 / (0.25 + 1 + 4), 1.0], [1.0 / (1 + 4), 0.0]])
    assert torch.allclose(sc, want)
    m = copy.deepcopy(dense[0])
    layers = prunable(m)
    lamp = magnitude_masks(layers, 0.9, "lamp")
    raw = magnitude_masks(layers, 0.9, "global-raw")
    with torch.no_grad():
        layers[0][1].weight.mul_(10.0)
    lamp10 = magnitude_masks(layers, 0.9, "lamp")
    raw10 = magnitude_masks(layers, 0.9, "global-raw")
    assert all(torch.equal(lamp[n], lamp10[n]) for n in lamp)
    assert any(not torch.equal(raw[n], raw10[n]) for n in raw)
    total = sum(v.numel() for v in lamp.values())
    assert abs(total - sum(int(v.sum()) for v in lamp.values()) - 0.9 * total) <= 1.0


def test_masks_hold_through_training(dense, data):
    m = copy.deepcopy(dense[0])
    layers = prunable(m)
    set_masks(layers, magnitude_masks(layers, 0.8, "global"))
    before = {n: layer.mask.clone() for n, layer in layers}
    train(m, data, m.recipe["train"], epochs=1, progress=False)
    for n, layer in layers:
        assert torch.equal(layer.mask, before[n])
        assert torch.all(layer.weight[layer.mask == 0] == 0), n
    assert abs(sparsity(m) - 0.8) * sum(layer.weight.numel() for _, layer in layers) <= 1.0


def test_rewinding_restores_exactly_the_saved_weights(dense, data):
    model, _, snap = dense
    state = rewind_point(model.recipe, data, 1)
    for k in snap:  # replaying the schedule to epoch 1 gives the state the dense run had at epoch 1
        assert torch.equal(state[k], snap[k]), k
    m = copy.deepcopy(model)
    layers = prunable(m)
    set_masks(layers, magnitude_masks(layers, 0.6, "layer"))
    rewind(m, state, layers)
    sd = m.state_dict()
    for n, layer in layers:
        keep = layer.mask.bool()
        assert torch.equal(layer.weight.detach()[keep], state[n + ".weight"][keep])
        assert torch.all(layer.weight.detach()[~keep] == 0)
    for k, v in state.items():
        if not (k.endswith(".weight") and k[:-7] in dict(layers)) and not k.endswith(".mask"):
            assert torch.equal(sd[k], v), k


def test_early_bird_stop_fires_only_on_a_converging_sequence():
    g = torch.Generator().manual_seed(0)
    base = (torch.rand(1000, generator=g) > 0.5).float()

    def flip(m, n):
        m = m.clone()
        idx = torch.randperm(1000, generator=g)[:n]
        m[idx] = 1 - m[idx]
        return {"w": m}

    conv = [flip(base, n) for n in (300, 200, 100, 50, 10, 5, 3, 2, 1)]  # distances to `base` shrink to 0.001
    fired = [converged(conv[:i + 1], q=5, tau=0.02) for i in range(len(conv))]
    assert not any(fired[:5]) and fired[-1]
    noisy = [flip(base, 100) for _ in range(12)]  # every mask ~0.2 away from the others
    assert not any(converged(noisy[:i + 1], q=5, tau=0.02) for i in range(len(noisy)))


def test_conv_synaptic_ops_exact_on_known_spikes():
    torch.manual_seed(0)
    layer = SConv2d(2, 3, k=3, stride=2, padding=1, bn=False)
    layer.mask.copy_((torch.rand_like(layer.mask) > 0.5).float())
    layer.apply_mask_()
    layer.eval()
    x = (torch.rand(2, 2, 5, 5) > 0.6).float()
    x[0, 1, 2, 2] = 3.0  # three spikes arriving at once (a residual sum)
    # brute force: every input spike travels along each kept weight that maps it onto a valid output position
    kept = layer.mask.bool()
    ho = wo = 3
    want = 0.0
    for b in range(2):
        for c in range(2):
            for y in range(5):
                for xx in range(5):
                    v = x[b, c, y, xx].item()
                    for o in range(3):
                        for ky in range(3):
                            for kx in range(3):
                                oy, rem_y = divmod(y + 1 - ky, 2)
                                ox, rem_x = divmod(xx + 1 - kx, 2)
                                if rem_y == 0 and rem_x == 0 and 0 <= oy < ho and 0 <= ox < wo and kept[o, c, ky, kx]:
                                    want += v
    ops, dense_ops, events = layer_ops(layer, x)
    assert ops == want
    assert events == x.sum().item() and dense_ops >= ops


def test_linear_synaptic_ops_exact_and_model_totals(dense, data):
    layer = SLinear(4, 3, bn=False)
    with torch.no_grad():
        layer.mask.copy_(torch.tensor([[1, 0, 1, 0], [0, 0, 1, 1], [1, 0, 0, 0.]]))
    layer.apply_mask_()
    layer.eval()
    x = torch.tensor([[1.0, 1.0, 0.0, 2.0]])  # kept fan-out per input column: 2, 0, 2, 1
    assert layer_ops(layer, x)[0] == 1 * 2 + 1 * 0 + 0 * 2 + 2 * 1
    ops = synaptic_ops(dense[0], data.test.x[:32])
    names = [n for n, _ in synapses(dense[0])]
    assert list(ops) == names and ops[names[0]]["kind"] == "mac"
    assert all(v["kind"] == "sop" and v["ops"] <= v["dense_fanout_ops"] for k, v in ops.items() if k != names[0])


def _check_binary(model):
    for n, layer in synapses(model):
        if not layer.binary:
            continue
        wq, _ = layer.quantized()
        a = layer.alpha().item()
        vals = set((wq * layer.alpha()).detach().unique().tolist())
        assert vals <= {-a, 0.0, a}, (n, vals)
        assert set(layer.folded()[0].unique().tolist()) <= {-1.0, 0.0, 1.0}


def test_every_ticket_saves_reloads_bit_exact(dense, data, tmp_path):
    model, ddir, _ = dense
    cases = [TicketConfig("imp", 0.75, prune_fraction=0.5, epochs=1, binarize=True, binarize_epochs=1),
             TicketConfig("early-bird", 0.7, epochs=3, q=2, tau=0.5),
             TicketConfig("multiprize", 0.5, epochs=1),
             TicketConfig("random", 0.75, epochs=1, scope="layer")]
    for cfg in cases:
        out = str(tmp_path / cfg.method)
        s = find_ticket(ddir if cfg.method == "imp" else model, cfg, out, data=data)
        assert s["reload_bit_exact"]
        loaded, meta = load(out)
        t = meta["ticket"]
        assert t["method"] == cfg.method and t["target_sparsity"] == cfg.sparsity
        assert t["measured_sparsity"] == pytest.approx(sparsity(loaded))
        total = sum(r["total"] for r in layer_stats(loaded))
        assert abs(t["measured_sparsity"] - cfg.sparsity) * total <= len(t["layers"])
        assert meta["recipe"]["binary"] == all(layer.binary for _, layer in synapses(loaded))
        assert s["sop_ratio"] < 1.0 and 0 < s["spike_rate"] < 1
        _check_binary(loaded)
    src, _ = load(str(tmp_path / "random"))
    s = find_ticket(str(tmp_path / "random"), TicketConfig("binarize", None, epochs=1), str(tmp_path / "bin"),
                    data=data)
    loaded, meta = load(str(tmp_path / "bin"))
    assert s["reload_bit_exact"] and meta["recipe"]["binary"] is True
    assert s["measured_sparsity"] == pytest.approx(sparsity(src))
    for (_, a), (_, b) in zip(synapses(src), synapses(loaded)):
        assert torch.equal(a.mask, b.mask)
    _check_binary(loaded)
    assert os.path.exists(tmp_path / "imp" / "summary.csv")
    assert json.load(open(tmp_path / "early-bird" / "ticket.json"))["ticket"]["converged"]


def test_mixed_binary_float_ticket_rebuilds(dense, data, tmp_path):
    m = copy.deepcopy(dense[0])
    synapses(m)[1][1].binary = True
    m.recipe = recipe_for(m)
    assert m.recipe["binary_layers"] == [synapses(m)[1][0]]
    save(m, str(tmp_path))
    loaded, _ = load(str(tmp_path))
    assert [layer.binary for _, layer in synapses(loaded)] == [layer.binary for _, layer in synapses(m)]
    m.eval()
    assert torch.equal(m(data.test.x[:16]), loaded(data.test.x[:16]))


@pytest.mark.parametrize("kind, expect", [("all", [1, 1, 1]), ("conv", [1, 1, 0]), ("spikes", [0, 1, 1]),
                                          ("hidden", [0, 1, 0])])
def test_binarize_kind_picks_its_layers(dense, data, kind, expect):
    from slt_deploy.tickets.common import binarize
    m = copy.deepcopy(dense[0])
    kinds = [layer.kind for _, layer in synapses(m)]
    assert kinds == ["conv", "conv", "linear"]  # digits-tiny: the expectations above assume this shape
    binarize(m, data, TicketConfig("binarize", 0.5, binarize_kind=kind, binarize_epochs=0))
    assert [int(layer.binary) for _, layer in synapses(m)] == expect


def test_patch_ticket_runs_on_fewer_tokens(dense_sf, data, tmp_path):
    out = str(tmp_path / "multisp")
    s = find_ticket(dense_sf, TicketConfig("multisp", 0.55, patch_sparsity=0.376, epochs=1), out, data=data)
    assert s["patch_sparsity"] >= 0.376 and s["pep_connection_sparsity"] >= 0.55
    assert s["pep_binary_activations"] and s["reload_bit_exact"]
    loaded, meta = load(out)
    assert meta["recipe"]["arch"]["binary_pep"] is True
    _check_binary(loaded)
    seen = []
    blk = [m for m in loaded.modules() if isinstance(m, TransformerBlock)][0]
    h = blk.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].shape[1]))
    logits = loaded(data.test.x[:8])
    h.remove()
    assert logits.shape == (8, 10) and set(seen) == {16 - 7}


def test_multisp_random_baseline_has_the_same_sizes(dense_sf, data, tmp_path):
    """--pep-method random (the baseline of the bench): as many patches and ConvPEP weights per layer as the searched
    ticket, chosen at random, binarized and fine-tuned the same way."""
    def run(method):
        out = str(tmp_path / method)
        s = find_ticket(dense_sf, TicketConfig("multisp", 0.55, patch_sparsity=0.376, epochs=1, pep_method=method),
                        out, data=data)
        _, meta = load(out)
        t = meta["ticket"]
        return s, t, {r["layer"]: r["kept"] for r in t["layers"] if "pep" in r["layer"] or ".stem." in r["layer"]
                      or r["layer"].endswith(".rpe")}
    s_m, t_m, kept_m = run("magnitude")
    s_r, t_r, kept_r = run("random")
    assert s_r["patch_sparsity"] == s_m["patch_sparsity"] and kept_r == kept_m and kept_m
    assert sorted(t_r["kept_patches"]) != sorted(t_m["kept_patches"])   # not the importance ranking's set
    assert s_r["pep_binary_activations"] and s_r["reload_bit_exact"]


@pytest.mark.parametrize("args,needle", [
    (["--method", "nope", "--sparsity", "0.5"], "unknown"),
    (["--method", "imp", "--sparsity", "1.2"], "outside"),
    (["--method", "imp", "--sparsity", "-0.1"], "outside"),
    (["--method", "imp", "--sparsity", "0.5", "--layer-gain", "conv=0"], "positive number"),
    (["--method", "imp", "--sparsity", "0.5", "--layer-gain", "conv"], "KEY=G"),
    (["--method", "imp", "--sparsity", "0.5", "--layer-gain", "attention=2", "--rounds", "1", "--epochs", "0"],
     "no prunable layer"),
    (["--method", "imp", "--sparsity", "0.5", "--scope", "layer", "--layer-gain", "conv=2"], "no effect"),
    (["--method", "multiprize", "--sparsity", "0.5", "--layer-gain", "conv=2"], "no effect"),
])
def test_cli_user_errors_exit_2(dense, tmp_path, capsys, args, needle):
    with pytest.raises(SystemExit) as e:
        main(["ticket", dense[1], *args, "--out", str(tmp_path / "t")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and needle in err and len(err.splitlines()) == 1


def test_cli_missing_checkpoint(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["ticket", str(tmp_path / "none"), "--method", "imp", "--sparsity", "0.5", "--out", str(tmp_path / "t")])
    assert e.value.code == 2 and "does not exist" in capsys.readouterr().err


def test_cli_imp_writes_rounds_summary_and_plot(dense, tmp_path, capsys):
    out = tmp_path / "imp"
    main(["ticket", dense[1], "--method", "imp", "--sparsity", "0.5", "--rounds", "2", "--epochs", "1", "--quiet",
          "--out", str(out)])
    assert "imp ticket: sparsity 50.0" in capsys.readouterr().out
    assert sorted(os.listdir(out / "rounds")) == ["round_01", "round_02", "search.json"]
    rows = json.load(open(out / "summary.json"))
    assert [r["round"] for r in rows] == [0, 1, 2] and all("seconds" in r and "test_acc" in r for r in rows)
    assert (out / "summary.csv").read_text().startswith("round,")
    assert (out / "sparsity_accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert load(str(out / "rounds" / "round_01"))[1]["ticket"]["round"] == 1
