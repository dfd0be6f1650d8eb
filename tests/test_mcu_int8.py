"""bench/mcu_int8.py: the dense int8 MCU baseline. Its numpy twin keeps the model's accuracy, and the C kernel
(bench/mcu/int8_bench.c, host build with the portable SMLAD) computes the numpy twin's logits bit for bit."""
from __future__ import annotations

import importlib.util
import os
import shutil

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bench():
    spec = importlib.util.spec_from_file_location("mcu_int8", os.path.join(ROOT, "bench", "mcu_int8.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="no host C compiler")
@pytest.mark.parametrize("variant", ["binary", "dense"])
def test_int8_baseline_keeps_accuracy_and_c_equals_numpy(checkpoint, tmp_path, variant):
    res = _bench().main(["--ckpt", checkpoint("digits-tiny", variant), "--host", "--no-packed", "--frames", "5",
                         "--out", str(tmp_path)])
    assert res["host_exact"]
    # binary weights are exact in int8 (+-127); float weights lose a little
    assert abs(res["acc_int8"] - res["acc_ref"]) <= (1.0 if variant == "binary" else 3.0)
    assert res["acc_ref"] > 50.0


def test_quantized_weights_and_layout(checkpoint):
    from slt_deploy.export import lower

    m = _bench()
    _, _, graph = lower(checkpoint("digits-tiny", "binary"))
    layers = m.quantize(graph)
    assert [L["lif"] for L in layers] == [True, True, False]
    for L in layers:
        assert np.abs(L["wq"]).max() == 127 and set(np.unique(np.abs(L["wq"]))) <= {0, 127}  # binary: exact
        assert (L["mult"] < 2 ** 31).all() and (L["shift"] >= 1).all()
    head = layers[-1]
    assert head["wq"].shape == (10, 16 * 4 * 4)   # HWC column order of the flattened 16x4x4 spikes
