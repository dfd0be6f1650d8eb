"""The parser fuzz targets (fuzz/parsers.py) keep their contract: every regression input found so far and a short
burst of fresh mutations either load or raise SltError (`make fuzz` runs them for minutes, with atheris)."""
import glob
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "fuzz"))
import parsers  # noqa: E402

# a crafted HDF5 file behind re-stamped digests can hang libhdf5 (fuzz/parsers.py RESTAMP_HDF5, fuzz/known-hangs/):
# this short burst checks the contract for damaged files, `make fuzz` keeps exploring the HDF5 parsers themselves
parsers.RESTAMP_HDF5 = False


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("fuzz-seeds"))
    parsers.seed(root)
    return root


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "fuzz", "regressions", "*.bin"))),
                         ids=os.path.basename)
def test_regression_inputs_are_clear_errors(path):
    target = os.path.basename(path).split("-", 1)[0]
    parsers.TARGETS[target](open(path, "rb").read())


@pytest.mark.parametrize("target", sorted(parsers.TARGETS))
def test_seed_loads_and_mutations_never_crash(corpus, target):
    seeds = os.listdir(os.path.join(corpus, target))
    for s in seeds:
        parsers.TARGETS[target](open(os.path.join(corpus, target, s), "rb").read())
    r = parsers.mutate(target, os.path.join(corpus, target), seconds=4, seed_value=1)
    assert r["execs"] > 0 and r["crashes"] == 0
