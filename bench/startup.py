"""Start time of the CLI (issue 14: goal < 0.5 s for `slt-deploy --help`), and which heavy modules (torch, onnx,
nir) each case imports.

Each case is a fresh `python -m slt_deploy.cli ...` process (what the `slt-deploy` script runs), repeated --repeat
times; the median and the minimum wall time are printed beside `python -c pass` (the interpreter's own start).
The inspect cases read artifacts exported from a shipped ticket into a temp folder. --root points at another
checkout to measure it (e.g. the commit before lazy loading). Timings on a shared machine move with its load.

    .venv/bin/python bench/startup.py [--repeat 7] [--root DIR] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TICKET = os.path.join(os.path.dirname(HERE), "models", "tickets", "digits-tiny-imp75-binary")
PROBE = ("import sys, runpy; sys.argv = ['slt-deploy'] + sys.argv[1:]\n"
         "try:\n    runpy.run_module('slt_deploy.cli', run_name='__main__')\n"
         "except SystemExit:\n    pass\n"
         "sys.stderr.write('\\nHEAVY=%s\\n' % ','.join(m for m in HEAVY if m in sys.modules))\n")
HEAVY = ("torch", "onnx", "nir")


def _env(root):
    return {**os.environ, "PYTHONPATH": root}


def time_case(args, root, repeat, cwd) -> dict:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, *args], env=_env(root), capture_output=True, text=True, cwd=cwd)
        times.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed ({r.returncode}): {r.stderr[-500:]}")
    return {"median_s": statistics.median(times), "min_s": min(times), "runs": len(times)}


def heavy_imports(cli_args, root, cwd) -> list:
    r = subprocess.run([sys.executable, "-c", f"HEAVY = {HEAVY!r}\n" + PROBE, *cli_args], env=_env(root),
                       capture_output=True, text=True, cwd=cwd)
    line = next((x for x in r.stderr.splitlines() if x.startswith("HEAVY=")), "HEAVY=")
    return [m for m in line[len("HEAVY="):].split(",") if m]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--root", default=os.path.dirname(HERE), help="checkout whose slt_deploy is measured")
    ap.add_argument("--json", default=None, help="also write the results here")
    a = ap.parse_args(argv)
    root = os.path.abspath(a.root)
    with tempfile.TemporaryDirectory(prefix="slt-startup-") as d:
        arts = {"onnx": os.path.join(d, "m.onnx"), "packed": os.path.join(d, "m.slt")}
        for t, p in arts.items():  # exported with THIS checkout (the format is the same before and after)
            subprocess.run([sys.executable, "-m", "slt_deploy.cli", "export", TICKET, "--target", t, "--out", p],
                           env=_env(os.path.dirname(HERE)), check=True, capture_output=True)
        cases = {
            "python -c pass": (["-c", "pass"], None),
            "import slt_deploy": (["-c", "import slt_deploy"], None),
            "slt-deploy --help": (["-m", "slt_deploy.cli", "--help"], ["--help"]),
            "slt-deploy inspect m.onnx": (["-m", "slt_deploy.cli", "inspect", arts["onnx"]], ["inspect", arts["onnx"]]),
            "slt-deploy inspect m.slt": (["-m", "slt_deploy.cli", "inspect", arts["packed"]],
                                         ["inspect", arts["packed"]]),
            "slt-deploy targets": (["-m", "slt_deploy.cli", "targets"], ["targets"]),
        }
        res = {}
        for name, (args, cli_args) in cases.items():
            # cwd outside any checkout: `python -m`/`-c` put the cwd first on sys.path, before PYTHONPATH
            res[name] = time_case(args, root, a.repeat, d)
            res[name]["heavy_imports"] = heavy_imports(cli_args, root, d) if cli_args else None
            res[name]["imports_torch"] = None if cli_args is None else "torch" in res[name]["heavy_imports"]
    print(f"start time, {a.repeat} runs each, root {root} (load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores)")
    print(f"{'case':32s} {'median':>8s} {'min':>8s}  imports ({', '.join(HEAVY)})")
    for name, r in res.items():
        h = r["heavy_imports"]
        tor = "" if h is None else (", ".join(h) or "none of them")
        print(f"{name:32s} {r['median_s']:7.3f}s {r['min_s']:7.3f}s  {tor}")
    h = res["slt-deploy --help"]["median_s"]
    print(f"--help: {h:.3f} s median ({'meets' if h < 0.5 else 'misses'} the 0.5 s goal)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"root": root, "repeat": a.repeat, "results": res}, f, indent=2)
    return res


if __name__ == "__main__":
    main()
