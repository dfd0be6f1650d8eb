"""The built wheel is a working tool outside the checkout (issue 14).

Builds the wheel from a copy of the working tree, installs it into its own venv (torch==2.13.0 first and alone, from
the CPU build on disk, then the wheel with the dependencies pyproject.toml declares) and runs, from a temp folder
outside the checkout with no PYTHONPATH: train by name (a packaged recipe) -> ticket -> export to every registered
target -> verify each -> run (the packed C runtime compiled from the packaged source into an empty cache) ->
profile (modelled rows from the packaged hardware profiles) -> inspect.

Two ways to make the venv:
- default (cheap, offline, in `make test`): a NEW empty venv each run whose only extra path is this environment's
  site-packages (a .pth line: torch and the pinned dependencies already there; none of its .pth hooks run, so the
  checkout's editable slt_deploy stays invisible); the wheel goes in with --no-deps and `pip check` proves its
  declared pins are exactly what is installed.
- SLT_WHEEL_FRESH=1 (what a new user does; needs the package index): a venv with nothing in it, `pip install
  torch==2.13.0` first and alone, then the wheel, its dependencies resolved by pip. Cached under
  ~/.cache/slt-deploy/wheel-venv-<hash of pyproject.toml + requirements.txt> and reused (wheel reinstalled) while
  those files do not change.
SLT_SKIP_WHEEL=1 skips."""
from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from slt_deploy.backends.packed.c_runner import SOURCES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEP_FILES = ["pyproject.toml", "requirements.txt"]  # what the wheel's own dependencies come from
CACHE = os.environ.get("SLT_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                                    "slt-deploy")
EXT = {"nir": "m.nir", "onnx": "m.onnx", "packed": "m.slt", "loihi": "m.loihi"}

pytestmark = pytest.mark.skipif(os.environ.get("SLT_SKIP_WHEEL") == "1", reason="SLT_SKIP_WHEEL=1")


def _sh(args, cwd, env=None, timeout=900):
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, args))} -> {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(extra)
    return env


def _deps_key() -> str:
    h = hashlib.sha256()
    for f in DEP_FILES:
        p = os.path.join(ROOT, f)
        if os.path.exists(p):
            h.update(open(p, "rb").read())
    h.update(sys.version.encode())
    return h.hexdigest()[:12]


def _files_to_copy():
    """The working tree as git sees it (tracked + new, not ignored): what a clean clone would hold."""
    r = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True)
    if r.returncode != 0:
        pytest.skip("not a git checkout")
    return [f for f in r.stdout.decode().split("\0") if f and os.path.isfile(os.path.join(ROOT, f))]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    for f in _files_to_copy():
        os.makedirs(os.path.dirname(src / f), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, f), src / f)
    dist = tmp_path_factory.mktemp("dist")
    _sh([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), "."],
        cwd=src, env=_clean_env())
    (whl,) = glob.glob(str(dist / "slt_deploy-*.whl"))
    return whl


def _fresh_venv(wheel, env):
    d = os.path.join(CACHE, f"wheel-venv-{_deps_key()}")
    pip = [os.path.join(d, "bin", "python"), "-m", "pip", "-q"]
    if os.path.exists(os.path.join(d, ".ready")):
        _sh([*pip, "install", "--force-reinstall", "--no-deps", wheel], cwd=CACHE, env=env)
        return d, "fresh venv (cached)"
    shutil.rmtree(d, ignore_errors=True)  # a half-made one
    os.makedirs(CACHE, exist_ok=True)
    _sh([getattr(sys, "_base_executable", sys.executable), "-m", "venv", d], cwd=CACHE, env=env)
    _sh([*pip, "install", "torch==2.13.0"], cwd=CACHE, env=env, timeout=1800)  # first and alone
    _sh([*pip, "install", wheel], cwd=CACHE, env=env, timeout=1800)
    open(os.path.join(d, ".ready"), "w").close()
    for old in glob.glob(os.path.join(CACHE, "wheel-venv-*")):  # keep one (~1.4 GB), once the new one works
        if os.path.abspath(old) != os.path.abspath(d):
            shutil.rmtree(old, ignore_errors=True)
    return d, "fresh venv (new)"


def _overlay_venv(wheel, env, where):
    import sysconfig

    d = str(where / "venv")
    _sh([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", d], cwd=where, env=env)
    vpy = os.path.join(d, "bin", "python")
    site = _sh([vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], where, env).strip()
    with open(os.path.join(site, "_slt_base_env.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")  # a path line only: the base's .pth hooks do not run
    _sh([sys.executable, "-m", "pip", "-q", "--python", vpy, "install", "--no-deps", wheel], cwd=where, env=env)
    return d, "new venv over this environment's packages"


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory):
    """-> (python, slt-deploy script, how it was made, seconds)."""
    t0 = time.time()
    env = _clean_env()
    if os.environ.get("SLT_WHEEL_FRESH") == "1":
        d, how = _fresh_venv(wheel, env)
    else:
        d, how = _overlay_venv(wheel, env, tmp_path_factory.mktemp("overlay"))
    py = os.path.join(d, "bin", "python")
    _sh([sys.executable, "-m", "pip", "-q", "--python", py, "check"], cwd=d, env=env)  # every pinned dependency met
    return py, os.path.join(d, "bin", "slt-deploy"), how, time.time() - t0


def test_wheel_holds_the_package_data(wheel):
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    for f in ("slt_deploy/recipes/digits-tiny.yaml", "slt_deploy/recipes/fmnist-vgg.yaml",
              "slt_deploy/hardware/loihi2.yaml", "slt_deploy/hardware/energy/asic45nm.yaml",
              *(f"slt_deploy/backends/packed/c/{f}" for f in SOURCES)):
        assert f in names, f
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("/METADATA"))).decode()
    reqs = [ln.split(":", 1)[1].strip() for ln in meta.splitlines() if ln.startswith("Requires-Dist:")]
    core = [r for r in reqs if "extra ==" not in r]
    assert "torch==2.13.0" in core and all("==" in r for r in core), core  # every runtime dependency pinned
    assert any("extra == \"ros\"" in r for r in reqs) and any("extra == \"dev\"" in r for r in reqs)


def test_installed_wheel_runs_the_whole_pipeline_outside_the_checkout(venv, tmp_path):
    py, sd, how, setup_s = venv
    work = tmp_path / "work"
    work.mkdir()
    env = _clean_env(SLT_CACHE=str(tmp_path / "cache"))  # empty cache: the C runtime is built from package data
    where = _sh([py, "-c", "import slt_deploy, os; print(os.path.dirname(slt_deploy.__file__))"], work, env).strip()
    assert where.startswith(os.path.dirname(os.path.dirname(py))) and not where.startswith(ROOT), where
    t0 = time.time()
    steps = {}

    def run(*args):
        t = time.time()
        out = _sh([sd, *args], work, env)
        steps[args[0]] = steps.get(args[0], 0) + time.time() - t
        return out

    run("train", "digits-tiny", "--epochs", "1", "--out", "ck", "--quiet")  # by name: a packaged recipe
    run("ticket", "ck", "--method", "imp", "--sparsity", "0.5", "--prune-fraction", "0.5", "--epochs", "1",
        "--out", "tk", "--quiet")
    targets = [ln.split()[0] for ln in run("targets").splitlines() if ln and not ln[0].isspace()]
    assert set(EXT) <= set(targets), targets
    for t, out in EXT.items():
        run("export", "tk", "--target", t, "--out", out)
        assert os.path.exists(work / out), t
    for t, out in EXT.items():
        rep = json.loads(run("verify", "tk", out, "--data", "digits", "--limit", "64", "--json"))
        assert rep["ok"], (t, rep)
    acc = run("run", "m.slt", "--data", "digits", "--limit", "64", "--runtime", "c")
    assert "accuracy" in acc
    assert glob.glob(str(tmp_path / "cache" / "libslt_packed-*.so"))  # compiled from the wheel's C source
    prof = json.loads(run("profile", "tk", "m.onnx", "m.slt", "m.loihi", "--data", "digits", "--limit", "64",
                          "--frames", "5", "--warmup", "1", "--rounds", "1", "--json"))
    text = json.dumps(prof)
    for hw in ("asic45nm", "loihi2", "cortex-m7"):  # the packaged hardware profiles were found
        assert hw in text, hw
    assert "digits-tiny" in run("inspect", "m.onnx")
    print(f"\nwheel: {how} {setup_s:.1f} s; pipeline {time.time() - t0:.1f} s: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()))
