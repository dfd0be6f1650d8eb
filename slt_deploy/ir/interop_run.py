"""Runs one NIR file through one foreign importer (snntorch, norse, spikingjelly, sinabs) on an encoded batch.

Standalone on purpose: it runs inside the importer's own venv (.venv, .venv-interop, .venv-sinabs; see
scripts/setup_interop.sh) as `python interop_run.py IMPORTER FILE.nir IN.npz OUT.npz` and imports nothing from
slt_deploy. IN.npz holds `seq` [T, B, ...] float32 (the encoded input in raw units) and `dt`; OUT.npz holds
`batched` and `unbatched` logits [B, C] (the importer's output summed over the T steps; absent when that mode
failed) and `report`, a JSON string: {read, read_error, import_error, batched_error, unbatched_error, warnings}.
npz in and out, no pickle: the arrays are loaded with allow_pickle=False on both sides."""
from __future__ import annotations

import io
import json
import logging
import sys
import traceback
import warnings
from contextlib import redirect_stdout


def _first_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0][:300] if msg else ''}"


def _read(nir, path, rep):
    try:
        g = nir.read(path)  # the importer's user does this: nir's default type checking
        rep["read"] = "ok"
        return g
    except Exception as e:  # noqa: BLE001 -- every failure is a matrix entry
        rep["read_error"] = _first_line(e)
    try:
        g = nir.read(path, type_check=False)
        rep["read"] = "type_check=False only"
        return g
    except Exception as e:  # noqa: BLE001 -- nir 1.0.4's read has no type_check: TypeError
        rep["read"] = "failed"
        rep["read_error"] = rep.get("read_error") or _first_line(e)
        return None


def _stepper(importer, graph, dt, T, B):
    """-> (net, run(seq [T, B, ...]) -> logits [B, C]) for one importer, its documented way of running a graph."""

    if importer == "sinabs":
        import sinabs

        net = sinabs.from_nir(graph, batch_size=B, num_timesteps=T)

        def run(seq):  # Squeeze layers take (batch * time, ...) in one call, batch-major
            for m in net.modules():
                if hasattr(m, "reset_states"):
                    m.reset_states()
            x = seq.transpose(0, 1).reshape(B * T, *seq.shape[2:])
            y = net(x)
            y = y[0] if isinstance(y, tuple) else y
            return y.reshape(B, T, -1).sum(1)
        return run

    if importer == "snntorch":
        from snntorch import utils
        from snntorch.import_nir import import_from_nir

        net = import_from_nir(graph)

        def step(x, state):
            y = net(x)
            return (y[0] if isinstance(y, tuple) else y), None

        def reset():
            utils.reset(net)
    elif importer == "norse":
        from norse.torch import from_nir

        net = from_nir(graph, dt=dt)

        def step(x, state):
            return net(x, state)

        def reset():
            pass
    elif importer == "spikingjelly":
        from spikingjelly.activation_based.nir_exchange import import_from_nir

        net = import_from_nir(graph, dt=dt)

        def step(x, state):
            return net(x, state)

        def reset():
            pass
    else:
        raise SystemExit(f"unknown importer {importer!r}")

    def run(seq):
        reset()
        state, out = None, None
        for t in range(seq.shape[0]):
            y, state = step(seq[t], state)
            y = y[0] if isinstance(y, tuple) else y
            out = y if out is None else out + y
        return out
    return run


def main(importer, path, inp, out):
    import numpy as np
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    rep = {"importer": importer}
    logs = io.StringIO()
    handler = logging.StreamHandler(logs)
    logging.getLogger().addHandler(handler)
    res = {}
    with np.load(inp, allow_pickle=False) as f:
        seq = torch.as_tensor(f["seq"])
        dt = float(f["dt"])
    T, B = seq.shape[0], seq.shape[1]
    stdout = io.StringIO()
    with torch.no_grad(), redirect_stdout(stdout):
        import nir

        graph = _read(nir, path, rep)
        if graph is not None:
            try:
                run_b = _stepper(importer, graph, dt, T, B)
            except Exception as e:  # noqa: BLE001
                rep["import_error"] = _first_line(e)
                rep["import_trace"] = traceback.format_exc()[-1500:]
                run_b = None
            if run_b is not None:
                try:
                    res["batched"] = run_b(seq).numpy().astype(np.float32)
                except Exception as e:  # noqa: BLE001
                    rep["batched_error"] = _first_line(e)
                try:
                    if importer == "sinabs":  # batch size is built into the module: a batch-1 module
                        graph1 = _read(nir, path, {})
                        run_1 = _stepper(importer, graph1, dt, T, 1)
                        one = [run_1(seq[:, b:b + 1])[0] for b in range(B)]
                    else:  # one image at a time, the per-sample shapes of the NIR graph
                        one = [run_b(seq[:, b]) for b in range(B)]
                    res["unbatched"] = torch.stack([o.reshape(-1) for o in one]).numpy().astype(np.float32)
                except Exception as e:  # noqa: BLE001
                    rep["unbatched_error"] = _first_line(e)
    text = (logs.getvalue() + stdout.getvalue()).strip()
    rep["warnings"] = sorted({ln.strip() for ln in text.splitlines() if "warn" in ln.lower()})[:5]
    np.savez(out, report=np.array(json.dumps(rep)), **res)


if __name__ == "__main__":
    if len(sys.argv) != 5:
        raise SystemExit("usage: interop_run.py snntorch|norse|spikingjelly|sinabs FILE.nir IN.npz OUT.npz")
    main(*sys.argv[1:])
