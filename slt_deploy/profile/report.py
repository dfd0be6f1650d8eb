"""Profile reports: terminal table, JSON, Markdown and PNG plots. Files are written atomically (temp + rename)."""
from __future__ import annotations

import json
import math
import os

from ..checkpoint import atomic_path, atomic_write


# ------------------------------------------------------------------------------------------------- formatting
def si(v, unit: str) -> str:
    """1.23e-9, 'J' -> '1.23 nJ'."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if v == 0:
        return f"0 {unit}"
    for f, p in ((1e3, "k"), (1, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p")):
        if abs(v) >= f:
            return f"{v / f:.3g} {p}{unit}"
    return f"{v:.3g} {unit}"


def count(v) -> str:
    if v is None:
        return "n/a"
    for f, p in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= f:
            return f"{v / f:.3g}{p}"
    return f"{v:.4g}"


def _grid(rows, header=True) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    out = []
    for k, r in enumerate(rows):
        out.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if header and k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _md(rows) -> str:
    out = ["| " + " | ".join(str(c) for c in rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows[1:]]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------- tables
def _vs(i, faster) -> str:
    """Column i's speed against the reference (column 0) the way people read it: "17.3x faster" (log.speed)."""
    from ..log import speed

    return "reference" if i == 0 else speed(faster)


def measured_rows(rep) -> list:
    rs = rep["measured"]["runners"]
    rows = [["measured on this host"] + [r["name"] for r in rs]]
    rows.append(["latency p50 / p99, batch 1 (ms)"] + [f"{r['latency']['p50_ms']:.3g} / {r['latency']['p99_ms']:.3g}"
                                                         for r in rs])
    rows.append(["latency p95 (ms)"] + [f"{r['latency']['p95_ms']:.3g}" for r in rs])
    rows.append(["p50 latency vs reference"] + [_vs(i, 1 / max(r["vs_reference"]["latency_p50"], 1e-300))
                                                for i, r in enumerate(rs)])
    b = rs[0]["throughput"]["batch"]
    rows.append([f"throughput, batch {b} (frames/s)"] + [f"{r['throughput']['frames_per_s']:.4g}" for r in rs])
    rows.append(["throughput vs reference"] + [_vs(i, r["vs_reference"]["throughput"]) for i, r in enumerate(rs)])
    if rep["settings"].get("isolated"):
        rows.append(["memory of the runner (MB, own process: peak - baseline)"]
                    + [f"{r['memory']['runner_mb']:.1f}" for r in rs])
        rows.append(["peak RSS of its process (MB)"] + [f"{r['memory']['peak_rss_mb']:.0f}" for r in rs])
    else:
        rows.append(["peak RSS (MB, whole process)"] + [f"{r['memory']['peak_rss_mb']:.0f}" for r in rs])
    rows.append(["artifact bytes (checkpoint: its folder)"] + [f"{r['bytes']:,}" if "bytes" in r else "" for r in rs])
    rows.append(["spikes / synaptic ops per frame (counted by the runner)"] + [
        f"{r['activity']['totals']['spikes_per_frame']:.4g} / {count(r['activity']['totals']['ops_per_frame'])}"
        if r.get("activity") else "not counted" for r in rs])
    rows.append(["accuracy on these frames (%)"] + [f"{r['accuracy']:.2f}" for r in rs])
    pc = rep["measured"]["power_counters"]
    if pc["available"]:
        rows.append(["energy per frame (host counters)"] + [
            ", ".join(f"{k} {si(v, 'J')}" for k, v in (r["latency"].get("energy_per_frame_j") or {}).items()) or "n/a"
            for r in rs])
    return rows


def activity_rows(rep) -> list:
    a = rep["activity"]
    if a is None:
        return [["activity", rep.get("activity_source", "not counted")]]
    rows = [["layer", "kind", "density", "input event rate", "ops/frame", "dense MACs/frame", "dense/ops"]]
    for name, v in a["layers"].items():
        rows.append([name, v["kind"], f"{v['density']:.3f}", f"{v['input_event_rate']:.3f}", count(v["ops_per_frame"]),
                     count(v["dense_macs_per_frame"]),
                     f"{v['dense_macs_per_frame'] / v['ops_per_frame']:.2f}x" if v["ops_per_frame"] else "inf"])
    t = a["totals"]
    rows.append(["total", "", f"{t['kept_weights'] / max(1, t['weights']):.3f}", "", count(t["ops_per_frame"]),
                 count(t["dense_macs_per_frame"]), f"{t['dense_over_ops']:.2f}x"])
    return rows


def spike_rows(rep) -> list:
    rows = [["LIF layer", "neurons", "spikes/frame", "rate"]]
    for name, v in (rep["activity"] or {"neurons": {}})["neurons"].items():
        rows.append([name, v["neurons"], f"{v['spikes_per_frame']:.1f}", f"{v['rate']:.3f}"])
    return rows


def modelled_rows(rep) -> list:
    rows = [["modelled hardware", "energy/frame", "latency/frame", "vs dense", "label"]]
    for m in rep["modelled"]:
        e = m["energy_per_frame_j"]
        dense = m.get("dense_energy_per_frame_j")
        rows.append([m["name"], si(e, "J"), si(m.get("latency_per_frame_s"), "s"),
                     f"dense {si(dense, 'J')} ({dense / e:.1f}x)" if dense and e else "",
                     m["label"].split(" (source")[0] + (f"; {m['cycles_per_frame']:.3g} cycles" if
                                                         m.get("cycles_per_frame") else "")
                     + ("; energy not modelled" if e is None and m.get("cycles_per_frame") else "")])
    for m in rep["boards"]:
        e, e2 = m["energy_per_frame_j"], m.get("energy_per_frame_j_max")
        rows.append([f"{m['name']} [{m['runner']}]", si(e, "J") + (f" .. {si(e2, 'J')}" if e2 else ""),
                     si(m.get("latency_per_frame_s"), "s"), "", m["label"].split(" (source")[0]
                     + (" (host-measured latency x module power)" if e is not None else "")])
    return rows


def sources(rep) -> list:
    out, seen = [], set()
    for m in rep["modelled"] + rep["boards"]:
        if m["name"] in seen:
            continue
        seen.add(m["name"])
        for k, c in m["constants"].items():
            v = "null" if c["value"] is None else f"{c['value']:g}"
            out.append(f"{m['name']}.{k} = {v} {c['unit']} [{c['status']}]: {c['source']}")
    return out


def summary_lines(rep) -> list:
    if rep["activity"] is None:
        return [f"activity {rep.get('activity_source', 'not counted')}: no energy modelled"]
    t = rep["activity"]["totals"]
    return [f"synaptic ops per frame: {count(t['sops_per_frame'])} SOPs + {count(t['macs_per_frame'])} MACs "
            f"(first, analog-input layer) vs {count(t['dense_macs_per_frame'])} dense MACs for the same T={t['T']} "
            f"steps ({count(t['dense_macs_ann'])} for one ANN pass): {t['dense_over_ops']:.2f}x fewer operations",
            f"spikes per frame {t['spikes_per_frame']:.1f} over {t['neurons']} LIF neurons x T={t['T']}: "
            f"rate {t['spike_rate']:.3f}; neuron updates per frame {count(t['neuron_updates_per_frame'])}"]


def header(rep) -> str:
    m, h = rep["model"], rep["host"]
    la = "/".join(f"{v:.1f}" for v in h["load_average"]) if h.get("load_average") else "n/a"
    return (f"profile of {m['name']} ({m['arch']}, T={m['T']}, {m['encoding']} encoding) on {rep['data']['frames']} "
            f"{rep['data']['dataset']} test frames; host {h['cpu']} ({h['cores']} cores, torch threads "
            f"{h['torch_threads']}, load average {la}); {rep['settings']['frames']} timed frames after "
            f"{rep['settings']['warmup']} warm-up")


def render_text(rep) -> str:
    pc = rep["measured"]["power_counters"]
    parts = [header(rep), "", _grid(measured_rows(rep))]
    if not pc["available"]:
        parts.append(f"energy: not measured on this host ({pc['why_absent']})")
    src = rep.get("activity_source", "reference NIR graph")
    parts += ["", f"counted per frame (real spikes on real data; {src}):", _grid(activity_rows(rep)),
              *summary_lines(rep), "", _grid(spike_rows(rep)), "",
              "MODELLED, not measured (ops x constants from slt_deploy/hardware/energy/*.yaml):",
              _grid(modelled_rows(rep)),
              "sources:", *("  " + s for s in sources(rep))]
    return "\n".join(parts)


def render_markdown(rep) -> str:
    pc = rep["measured"]["power_counters"]
    parts = [f"# Profile: {rep['model']['name']}", "", header(rep) + ".", "",
             "## Measured on this host", "", _md(measured_rows(rep)), ""]
    parts.append(f"Energy counters: {', '.join(pc['domains'])}" if pc["available"]
                 else f"Energy: not measured on this host ({pc['why_absent']}).")
    src = rep.get("activity_source", "reference NIR graph")
    parts += ["", f"## Activity (per frame; {src})", "", _md(activity_rows(rep)), "",
              *("- " + s for s in summary_lines(rep)), "", _md(spike_rows(rep)), "",
              "## Modelled (not measured)", "", _md(modelled_rows(rep)), "", "### Constants and sources", "",
              *("- " + s for s in sources(rep)), ""]
    return "\n".join(parts)


def to_json(rep) -> str:
    def default(o):
        if hasattr(o, "tolist"):
            return o.tolist()
        return float(o)

    return json.dumps(rep, indent=2, default=default)


def write_json(rep, path):
    atomic_write(path, to_json(rep))


def write_markdown(rep, path):
    atomic_write(path, render_markdown(rep))


# ------------------------------------------------------------------------------------------------- plots
def _save(fig, path):
    tmp = atomic_path(path)
    try:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_plots(rep, out_dir) -> list:
    """activity.png (per-layer ops vs dense MACs), energy.png (per-layer modelled energy), latency.png
    (batch-1 latency histograms). -> paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    written = []
    layers = (rep["activity"] or {"layers": {}})["layers"]
    names = list(layers)
    xs = range(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(names) + 2), 4))
    w = 0.4
    ax.bar([i - w / 2 for i in xs], [layers[n]["ops_per_frame"] for n in names], w,
           label="synaptic ops (kept fan-out x events)")
    ax.bar([i + w / 2 for i in xs], [layers[n]["dense_macs_per_frame"] for n in names], w, label="dense MACs (same T)")
    ax.set_xticks(list(xs), names, rotation=45, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("operations per frame")
    ax.set_title(f"{rep['model']['name']}: per-layer operations (counted)")
    ax.legend()
    p = os.path.join(out_dir, "activity.png")
    _save(fig, p)
    plt.close(fig)
    written.append(p)

    models = [m for m in rep["modelled"] if m["energy_per_frame_j"] is not None and m["per_layer_j"]]
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(names) + 2), 4))
    w = 0.8 / max(1, len(models))
    for k, m in enumerate(models):
        ax.bar([i - 0.4 + w * (k + 0.5) for i in xs], [m["per_layer_j"].get(n, 0) * 1e9 for n in names], w,
               label=f"{m['name']} (modelled)")
    ax.set_xticks(list(xs), names, rotation=45, ha="right")
    ax.set_ylabel("nJ per frame (synaptic terms)")
    ax.set_yscale("log")
    ax.set_title("modelled energy per layer (slt_deploy/hardware/energy/*.yaml)")
    if models:
        ax.legend()
    p = os.path.join(out_dir, "energy.png")
    _save(fig, p)
    plt.close(fig)
    written.append(p)

    fig, ax = plt.subplots(figsize=(7, 4))
    allv = [v for r in rep["measured"]["runners"] for v in r["latency"]["samples_ms"] if v > 0]
    lo, hi = (min(allv), max(allv)) if allv else (1e-3, 1.0)
    bins = [lo * (hi / lo) ** (i / 40) for i in range(41)] if hi > lo else 10
    for r in rep["measured"]["runners"]:
        ax.hist(r["latency"]["samples_ms"], bins=bins, histtype="step", linewidth=1.5,
                label=f"{r['name']} (p50 {r['latency']['p50_ms']:.3g}, p99 {r['latency']['p99_ms']:.3g} ms)")
    if hi > lo:
        ax.set_xscale("log")
    ax.set_xlabel("latency per frame, batch 1 (ms, log scale)")
    ax.set_ylabel("frames")
    ax.set_title(f"measured latency on this host ({rep['host']['cpu'][:40]})")
    ax.legend()
    p = os.path.join(out_dir, "latency.png")
    _save(fig, p)
    plt.close(fig)
    written.append(p)
    return written
