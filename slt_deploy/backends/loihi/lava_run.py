"""Runs an exported netx file in Lava's bit-accurate Loihi 2 simulation. Executed as a SCRIPT with the separate
Lava environment (.venv-lava/bin/python, numpy<2): it must not import slt_deploy (or torch) itself.

    .venv-lava/bin/python lava_run.py NET.h5 IN.npz OUT.npz

IN.npz:   inputs  int32 [B, T, *input_shape(C,H,W) or [N]]  what enters the network's input port every step
          message_bits  int  0 = binary spikes, > 0 = graded spikes of that many bits (netx input_message_bits)
          sparse  int (0/1)  build fully-connected layers with Lava's Sparse synapses
OUT.npz:  spikes_<i>  int8  [T, B, *shape(C,H,W) or [N]]  spikes of netx layer i, per sample-local step
          v_last  int64 [B, N]   the last layer's voltage at each sample's last step (the readout)
          n_layers, steps, build_s, run_s

Samples are streamed back to back: every layer is a CUBA LIF with reset_interval = T, and netx staggers each
layer's reset by one step (one synaptic delay per layer). The input enters at global step 1 and reaches layer 0's
neurons one synaptic delay later, so layer i sees sample b's local step t at global step b*T + t + i + 2 (1-based)
and resets right then (reset_offset = 1). The run is B*T + L + 1 steps long; the other steps are pipeline fill.
"""
import json
import os
import sys
import time

import numpy as np


def main(net_path, in_path, out_path):
    t0 = time.time()
    from lava.lib.dl.netx import hdf5
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io
    from lava.proc.monitor.process import Monitor

    with np.load(in_path, allow_pickle=False) as z:
        inputs = z["inputs"].astype(np.int32)
        sparse = bool(int(z["sparse"])) if "sparse" in z else False
        mbits = int(z["message_bits"]) if "message_bits" in z else 0
    B, T = inputs.shape[:2]
    net = hdf5.Network(net_config=net_path, reset_interval=T, reset_offset=1, sparse_fc_layer=sparse,
                       input_message_bits=mbits)
    L = len(net.layers)
    steps = B * T + L + 1
    # netx shapes are (x, y, z) = (W, H, C); ours are (C, H, W)
    data = np.zeros(tuple(net.inp.shape) + (steps,), np.int32)
    seq = inputs.reshape(B * T, *inputs.shape[2:])
    if seq.ndim == 4:
        seq = seq.transpose(0, 3, 2, 1)
    data[..., :B * T] = np.moveaxis(seq, 0, -1)
    src = io.source.RingBuffer(data=data)
    src.s_out.connect(net.inp)
    sinks = []
    for layer in net.layers:
        sk = io.sink.RingBuffer(shape=layer.out.shape, buffer=steps)
        layer.out.connect(sk.a_in)
        sinks.append(sk)
    mon = Monitor()
    last = net.layers[-1].neuron
    mon.probe(last.v, steps)
    t1 = time.time()
    net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    t2 = time.time()
    out = {}
    try:
        for i, sk in enumerate(sinks):
            raw = sk.data.get()  # [*shape(WHC), steps]
            idx = np.arange(B * T) + i + 1
            s = np.moveaxis(raw[..., idx], -1, 0).reshape(B, T, *raw.shape[:-1])
            if s.ndim == 5:
                s = s.transpose(0, 1, 4, 3, 2)
            out[f"spikes_{i}"] = np.ascontiguousarray(s.transpose(1, 0, *range(2, s.ndim))).astype(np.int8)
        vd = mon.get_data()
        v = np.asarray(next(iter(next(iter(vd.values())).values())))  # [steps, N]
        v = v.reshape(steps, *last.v.shape)
        if v.ndim == 4:                       # (x, y, z) = (W, H, C) -> (C, H, W), our order
            v = v.transpose(0, 3, 2, 1)
        v = v.reshape(steps, -1)
        last_idx = np.arange(B) * T + (T - 1) + (L - 1) + 1
        out["v_last"] = v[last_idx].astype(np.int64)
    finally:
        net.stop()
    out.update(n_layers=np.int64(L), steps=np.int64(steps), build_s=np.float64(t1 - t0),
               run_s=np.float64(t2 - t1))
    tmp = out_path + ".tmp.npz"
    np.savez(tmp, **out)
    os.replace(tmp, out_path)
    print(json.dumps({"layers": L, "steps": int(steps), "build_s": round(t1 - t0, 3), "run_s": round(t2 - t1, 3),
                      "blocks": [type(b).__name__ for b in net.layers], "table": str(net)}))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: lava_run.py NET.h5 IN.npz OUT.npz")
    main(*sys.argv[1:])
