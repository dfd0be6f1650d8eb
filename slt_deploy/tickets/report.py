"""Summary tables (CSV + JSON) and the sparsity-vs-accuracy plot, all written atomically."""
from __future__ import annotations

import csv
import io
import json
import os

from ..checkpoint import atomic_path, atomic_write


def write_table(rows: list, prefix: str, columns: list | None = None):
    """rows (list of dicts) -> PREFIX.csv and PREFIX.json."""
    cols = columns or list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items() if k in cols})
    atomic_write(prefix + ".csv", buf.getvalue())
    atomic_write(prefix + ".json", json.dumps(rows, indent=2, default=float))


def plot_sparsity_accuracy(series: dict, path: str, dense_acc: float | None = None, title: str = ""):
    """series: {label: [(sparsity 0..1, accuracy %), ...]} -> PNG (x axis: remaining weights, log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for label, pts in series.items():
        pts = sorted(pts)
        if not pts:
            continue
        xs = [100.0 * (1 - s) for s, _ in pts]
        ax.plot(xs, [a for _, a in pts], marker="o", ms=3, label=label)
    if dense_acc is not None:
        ax.axhline(dense_acc, color="k", ls="--", lw=1, label=f"dense {dense_acc:.2f}%")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or "sparsity vs accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = atomic_path(path)
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
