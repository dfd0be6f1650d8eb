"""Runs an slt-deploy .onnx file with onnxruntime (CPU provider by default; any provider list can be passed).

    r = OnnxRunner("m.onnx")                      # either form
    r.run(seq [T, B, C, H, W], record=True)       # -> {"logits", "spikes": {slt.layer: [T, B, ...]}}
    r.predict(images [B, C, H, W])                # raw units -> logits
    state = r.init_state(batch)                   # stateful form only: the streaming API
    logits, state = r.step(frame [B, C, H, W], state)   # one time step; logits = running sum over the steps

Providers: `providers=[...]`, else the comma-separated list in $SLT_ONNX_PROVIDERS (so `slt-deploy run/verify` can
use e.g. CUDAExecutionProvider,CPUExecutionProvider), else the CPU provider.

Spikes: the file names every LIF's spike tensor (metadata slt.spike_tensors); with record=True the runner loads a
second session of the same model whose graph additionally outputs those tensors (same nodes, same arithmetic).
"""
from __future__ import annotations

import json
import os

import numpy as np

from ...errors import SltError, brief, first_line
from ..base import Runner


def _ort():
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - installed by scripts/setup_env.sh
        raise SltError(f"onnxruntime is not importable ({e})", "pip install onnxruntime==1.32.*") from None
    ort.set_default_logger_severity(3)
    return ort


def read_model(path: str):
    import onnx

    if not os.path.isfile(path):
        raise SltError(f"{path} does not exist", "pass a .onnx file written by 'slt-deploy export --target onnx'")
    try:
        m = onnx.load(path)
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError and friends for corrupt files
        raise SltError(f"{path} is not a readable ONNX file ({brief(e, 120)})",
                       "re-export it with 'slt-deploy export --target onnx'") from None
    props = {p.key: p.value for p in m.metadata_props}
    if "slt.form" not in props:
        raise SltError(f"{path} is an ONNX model but not one written by slt-deploy (no slt.* metadata)",
                       "export the checkpoint with 'slt-deploy export --target onnx'")
    from ...fsio import check_onnx

    check_onnx(m, path)  # a flipped weight or edited metadata is an error, not a different answer
    return m, props


def runner_meta(props: dict) -> dict:
    return {"input_shape": json.loads(props["slt.input_shape"]), "input_max": float(props["slt.input_max"]),
            "T": int(props["slt.T"]), "encoding": props["slt.encoding"], "labels": json.loads(props["slt.labels"]),
            "dt": float(props["slt.dt"]), "name": props.get("slt.name", ""), "form": props["slt.form"],
            "all_binary": props.get("slt.all_binary") == "1", "input_name": props["slt.input_name"],
            "state_inputs": json.loads(props.get("slt.state_inputs", "[]")),
            "state_outputs": json.loads(props.get("slt.state_outputs", "[]")),
            "sparsity": float(props.get("slt.sparsity", 0.0))}


class OnnxRunner(Runner):
    def __init__(self, path: str, providers=None, threads: int | None = None, optimization: str = "all",
                 session_options=None, spinning: bool = True):
        """threads: onnxruntime intra-op threads (None: its default, one per core). spinning=False stops idle pool
        threads from busy-waiting for the next call (onnxruntime's default spins): what a streaming loop wants, where
        the spinning threads would take a core from the camera, DDS and everything else between two frames."""
        self.path = path
        self._spinning = spinning
        self.model, self.props = read_model(path)
        self.meta = runner_meta(self.props)
        self.spike_tensors = json.loads(self.props.get("slt.spike_tensors", "{}"))
        self.spike_shapes = json.loads(self.props.get("slt.spike_layers", "{}"))
        self.spike_expand = json.loads(self.props.get("slt.spike_expand", "{}"))  # compacted layers (compact.py)
        env = os.environ.get("SLT_ONNX_PROVIDERS", "")
        self.providers = list(providers or [p.strip() for p in env.split(",") if p.strip()] or ["CPUExecutionProvider"])
        self._threads, self._opt, self._so = threads, optimization, session_options
        self.session = self._session(self.model)
        self._rec = None
        self.input_names = [i.name for i in self.session.get_inputs()]

    def _session(self, model):
        ort = _ort()
        so = self._so
        if so is None:
            so = ort.SessionOptions()
            levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                      "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                      "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                      "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
            so.graph_optimization_level = levels[self._opt]
            if self._threads:
                so.intra_op_num_threads = int(self._threads)
                so.inter_op_num_threads = 1
            if not self._spinning:
                so.add_session_config_entry("session.intra_op.allow_spinning", "0")
                so.add_session_config_entry("session.inter_op.allow_spinning", "0")
            so.log_severity_level = 3
        names = [p if isinstance(p, str) else p[0] for p in self.providers]
        missing = [p for p in names if p not in ort.get_available_providers()]
        if missing:
            raise SltError(f"onnxruntime provider(s) {missing} are not available in this onnxruntime build",
                           f"available: {', '.join(ort.get_available_providers())} (install onnxruntime-gpu for CUDA)")
        try:
            return ort.InferenceSession(model.SerializeToString(), so, providers=self.providers)
        except Exception as e:  # noqa: BLE001 - reported as one line with onnxruntime's own message
            raise SltError(f"onnxruntime cannot load {self.path} ({first_line(e, 200)})",
                           f"providers {self.providers}; available: {ort.get_available_providers()}") from None

    def _record_session(self):
        if self._rec is None:
            from onnx import TensorProto, helper

            m = type(self.model)()
            m.CopyFrom(self.model)
            have = {o.name for o in m.graph.output}
            for names in self.spike_tensors.values():
                for n in names:
                    if n not in have:
                        m.graph.output.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, None))
            self._rec = self._session(m)
        return self._rec

    # --- input checks --------------------------------------------------------------------------------------------
    def _check_array(self, x, lead: list, what: str, fix: str) -> np.ndarray:
        """`x` numeric with shape [*lead, *input_shape] (lead names the leading axes), else one SltError line."""
        a = np.asarray(x)
        want = list(self.meta["input_shape"])
        if a.dtype.kind not in "fiub":
            raise SltError(f"{what} dtype {a.dtype} is not numeric", "pass float32 (or uint8) arrays")
        if a.ndim != len(want) + len(lead) or list(a.shape[len(lead):]) != want:
            raise SltError(f"{what} shape {list(a.shape)} does not match [{', '.join(lead + list(map(str, want)))}]",
                           fix)
        return a

    def check_seq(self, seq) -> np.ndarray:
        a = self._check_array(seq, ["T", "B"], "input", f"pass the encoded sequence (T = {self.meta['T']}); "
                              "Runner.predict takes images")
        if a.shape[0] != self.meta["T"] and self.meta["form"] == "unrolled":
            raise SltError(f"sequence has {a.shape[0]} steps, the unrolled graph runs T = {self.meta['T']}",
                           "encode with the model's T, or export --opt form=stateful to choose the steps yourself")
        return np.ascontiguousarray(a, np.float32)

    def check_frame(self, x) -> np.ndarray:
        a = self._check_array(x, ["B"], "frame", "pass one encoded time step for a batch")
        return np.ascontiguousarray(a, np.float32)

    # --- stateful API ----------------------------------------------------------------------------------------------
    def _need_stateful(self):
        if self.meta["form"] != "stateful":
            raise SltError(f"{self.path} is the unrolled form (one call per sample), it has no state",
                           "export with --opt form=stateful for per-step calls, or use run()/predict()")

    def init_state(self, batch: int) -> dict:
        self._need_stateful()
        st = {i.name: np.zeros([batch] + [int(d) for d in i.shape[1:]], np.float32)
              for i in self.session.get_inputs() if i.name.startswith("v_in.")}
        st["logits_in"] = np.zeros((batch, len(self.meta["labels"]) or self.session.get_outputs()[0].shape[1]),
                                   np.float32)
        return st

    def step(self, x, state: dict, record: bool = False):
        """One time step: -> (logits so far [B, classes], next state[, spikes {layer: [B, ...]}])."""
        self._need_stateful()
        x = self.check_frame(x)
        if not isinstance(state, dict):
            raise SltError(f"state must be a dict of arrays, got {type(state).__name__}", "start from init_state(B)")
        names = [n for n in self.input_names if n != "x"]
        missing = [n for n in names if n not in state]
        if missing:
            raise SltError(f"state is missing {len(missing)} tensor(s): {', '.join(missing[:4])}"
                           f"{'...' if len(missing) > 4 else ''}", "start from init_state(batch) and feed back "
                           "every output of the previous step")
        feed = {"x": x}
        for n in names:
            a = np.asarray(state[n])
            want = [x.shape[0]] + [int(d) for d in self._in_shape(n)[1:]]
            if list(a.shape) != want or a.dtype.kind != "f":
                raise SltError(f"state {n} is {a.dtype}{list(a.shape)}, expected float32{want}",
                               "start from init_state(batch) with the frame's batch size")
            feed[n] = np.ascontiguousarray(a, np.float32)
        sess = self._record_session() if record else self.session
        outs = sess.get_outputs()
        res = dict(zip([o.name for o in outs], sess.run(None, feed)))
        nxt = {"logits_in": res["logits"]}
        for i, o in zip(self.meta["state_inputs"], self.meta["state_outputs"]):
            nxt[i] = res[o]
        if record:
            return res["logits"], nxt, {layer: self._full(layer, res[ns[0]], 1)
                                        for layer, ns in self.spike_tensors.items()}
        return res["logits"], nxt

    def _full(self, layer, a, axis):
        e = self.spike_expand.get(layer)
        if e is None:
            return a
        from .compact import expand

        return expand(a, e["kept"], e["total"], axis)

    def _in_shape(self, name):
        for i in self.session.get_inputs():
            if i.name == name:
                return i.shape
        raise KeyError(name)

    # --- Runner API ------------------------------------------------------------------------------------------------
    def run(self, seq, record: bool = False) -> dict:
        seq = self.check_seq(seq)
        if self.meta["form"] == "stateful":
            state = self.init_state(seq.shape[1])
            spikes = {}
            logits = state["logits_in"]
            for t in range(seq.shape[0]):
                r = self.step(seq[t], state, record=record)
                logits, state = r[0], r[1]
                if record:
                    for k, v in r[2].items():
                        spikes.setdefault(k, []).append(v)
            res = {"logits": logits}
            if record:
                res["spikes"] = {k: np.stack(v) for k, v in spikes.items()}
            return res
        if self.meta["encoding"] == "direct":
            if any(not np.array_equal(seq[t], seq[0]) for t in range(1, seq.shape[0])):
                raise SltError("under direct encoding every step of the sequence must be the same image",
                               "pass the image repeated T times (Runner.encode does this), or use predict()")
            feed = {self.meta["input_name"]: seq[0]}
        else:
            feed = {self.meta["input_name"]: seq}
        sess = self._record_session() if record else self.session
        names = [o.name for o in sess.get_outputs()]
        res = dict(zip(names, sess.run(None, feed)))
        out = {"logits": res["logits"]}
        if record:
            # step-major: one [B, ...] tensor per step; layer-major (slt.schedule=layer): one [T, B, ...] tensor
            out["spikes"] = {layer: self._full(layer, res[ns[0]] if self.props.get("slt.schedule") == "layer"
                                               else np.stack([res[n] for n in ns]), 2)
                             for layer, ns in self.spike_tensors.items()}
        return out

    def predict(self, images) -> np.ndarray:
        x = self.check_images(images)
        if self.meta["form"] == "unrolled" and self.meta["encoding"] == "direct":
            return self.session.run(["logits"], {self.meta["input_name"]: x})[0]
        return self.run(self.encode(x))["logits"]
