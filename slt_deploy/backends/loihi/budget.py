"""Tickets inside the chip's limits: the Loihi 2 plan's cores, synapse memory and fan-in for a checkpoint
(`slt-deploy ticket` prints it for every ticket and writes OUT/loihi_budget.json), and `ticket --max-cores N`:
among the tickets a search produced (IMP's rounds, the final ticket) and the dense start, keep the most accurate
one whose plan needs at most N neuro cores. The numbers are the exporter's (quant.plan with slt_deploy/hardware/loihi2.yaml),
so `export --target loihi` of the chosen ticket needs exactly the cores reported."""
from __future__ import annotations

import glob
import json
import math
import os

from ...errors import SltError


def chip_budget(ckpt: str, limits: str | None = None) -> dict:
    """The Loihi plan of checkpoint `ckpt` (partition auto, default options): cores, chips, the largest fan-in and
    the synapse memory, each with its limit; `fits` = exportable to one chip as it is."""
    from ...checkpoint import load
    from .qat import plan_of

    model, meta = load(ckpt)
    p = plan_of(model, meta, **({"limits": limits} if limits else {}))
    from . import _limits

    lim = _limits(limits)
    sparse = p.meta.get("sparse_fc", False)
    layers, syn_bytes = [], 0
    host = ({"from_layer": p.readout.get("layer"), "nodes": int(p.readout.get("host_nodes", 0))}
            if p.readout.get("kind") == "host" else None)
    for e in p.info:
        if "cores" not in e:
            continue
        bits = lim["bits_per_sparse_synapse"] if (sparse and e["kind"] == "dense") else lim["bits_per_synapse"]
        b = math.ceil(e["synapses"] * bits / 8)
        syn_bytes += b
        layers.append({"layer": e["layer"], "kind": e["kind"], "neurons": e["neurons"], "synapses": e["synapses"],
                       "fan_in": e["fan_in"], "synapse_bytes": b, "cores": e["cores"],
                       "cores_bound_by": e["cores_bound_by"]})
    other = [r for r in p.reasons if r != p.core_reason]
    return {"checkpoint": ckpt, "cores": int(p.cores), "chips_needed": int(p.meta.get("chips_needed", 1)),
            "cores_per_chip": int(lim["cores_per_chip"]),
            "max_fan_in": max((e["fan_in"] for e in layers), default=0), "fan_in_limit": int(lim["fan_in_per_neuron"]),
            "synapse_bytes": int(syn_bytes),
            "synapse_bytes_per_core_limit": int(lim["synapse_memory_bytes_per_core"]),
            "partitioned": p.readout.get("kind") == "host", "host_part": host, "fits": not p.reasons,
            "reasons": other + (
                [p.core_reason] if p.core_reason else []), "layers": layers,
            "limits_file": os.path.relpath(lim["_path"], os.path.dirname(os.path.dirname(lim["_path"])))}


def describe(b: dict) -> str:
    h = b.get("host_part")
    part = (f", partitioned: {len(b['layers'])} synaptic layer(s) on chip, the rest from {h['from_layer']} "
            f"({h['nodes']} node(s)) on the host" if h else ", partitioned" if b["partitioned"] else "")
    s = (f"Loihi 2 plan: {b['cores']} neuro core(s) ({b['chips_needed']} chip(s) of {b['cores_per_chip']}), "
         f"largest fan-in {b['max_fan_in']} (limit {b['fan_in_limit']}), synapse memory "
         f"{b['synapse_bytes'] / 1024:.1f} KiB{part}")
    return s + ("" if b["fits"] else f"; does NOT fit: {'; '.join(b['reasons'])}")


def _acc(ckpt):
    with open(os.path.join(ckpt, "model.json")) as f:
        m = json.load(f)
    mt = m.get("metrics") or {}
    return mt.get("test_acc"), (m.get("ticket") or {}).get("measured_sparsity", mt.get("sparsity", 0.0))


def candidates(out: str, source: str | None = None) -> list[str]:
    """Checkpoints a ticket search left: the dense source, IMP's OUT/rounds/round_*, the final ticket OUT."""
    c = [source] if source and os.path.exists(os.path.join(source, "model.json")) else []
    c += sorted(glob.glob(os.path.join(out, "rounds", "round_*")))
    return c + [out]


def choose_within(out: str, max_cores: int, source: str | None = None, log=print, limits=None) -> dict:
    """Keep in `out` the most accurate candidate ticket that needs at most `max_cores` cores (ties: the
    sparser). Writes out/loihi_budget.json with every candidate and the choice; an error when none fits."""
    from ...checkpoint import atomic_write, load, save

    if max_cores < 1:
        raise SltError(f"--max-cores must be at least 1 (got {max_cores})")
    rows = []
    for ck in candidates(out, source):
        b = chip_budget(ck, limits)
        acc, sp = _acc(ck)
        fits = b["cores"] <= max_cores and all("neuro cores but" in r for r in b["reasons"])
        rows.append({"checkpoint": ck, "sparsity": sp, "test_acc": acc, "cores": b["cores"],
                     "max_fan_in": b["max_fan_in"], "synapse_bytes": b["synapse_bytes"], "fits": bool(fits)})
    ok = [r for r in rows if r["fits"]]
    res = {"max_cores": int(max_cores), "candidates": rows, "chosen": None}
    if ok:
        best = max(ok, key=lambda r: ((r["test_acc"] if r["test_acc"] is not None else -1), r["sparsity"] or 0))
        res["chosen"] = best
        if os.path.abspath(best["checkpoint"]) != os.path.abspath(out):
            model, meta = load(best["checkpoint"])
            extra = {k: v for k, v in meta.items() if k in ("ticket",)}
            extra["loihi_budget"] = {"max_cores": int(max_cores), "cores": best["cores"],
                                     "chosen_from": os.path.relpath(best["checkpoint"], out)}
            save(model, out, metrics=meta.get("metrics"), labels=meta.get("labels"), extra=extra)
    atomic_write(os.path.join(out, "loihi_budget.json"), json.dumps(res, indent=1, default=float))
    if not ok:
        least = min(rows, key=lambda r: r["cores"])
        raise SltError(f"no ticket of this search fits {max_cores} Loihi 2 neuro core(s): the smallest needs "
                       f"{least['cores']} (sparsity {100 * (least['sparsity'] or 0):.1f}%; every candidate in "
                       f"{os.path.join(out, 'loihi_budget.json')})",
                       "search a sparser ticket (--sparsity), or allow more cores")
    c = res["chosen"]
    which = "the final ticket" if c["checkpoint"] == out else os.path.relpath(c["checkpoint"], out)
    log(f"--max-cores {max_cores}: kept {which} (sparsity {100 * (c['sparsity'] or 0):.1f}%, "
        f"test {c['test_acc']:.2f}%, {c['cores']} cores) of "
        f"{len(rows)} candidate(s), {len(ok)} fitting -> {out}")
    return res


def ticket_budget(out: str, source: str | None = None, max_cores: int | None = None, log=print,
                  limits=None) -> dict:
    """What `slt-deploy ticket` runs after every search: with max_cores, choose_within; then the Loihi plan of the
    ticket kept in `out` is printed and written to out/loihi_budget.json ("plan")."""
    from ...checkpoint import atomic_write

    res = choose_within(out, max_cores, source, log=log, limits=limits) if max_cores is not None else {}
    try:
        b = chip_budget(out, limits)
    except SltError as e:   # e.g. a graph with no spiking prefix: the ticket is fine, Loihi cannot take it
        b = {"fits": False, "reasons": [str(e)]}
        log(f"Loihi 2 plan: none ({e})")
    else:
        log(describe(b))
    res["plan"] = b
    atomic_write(os.path.join(out, "loihi_budget.json"), json.dumps(res, indent=1, default=float))
    return res
