"""Runner of a `--target loihi` folder: the host parts (first synaptic layer for direct encoding; the partitioned
rest) with slt_deploy's NIR interpreter, the chip part with our fixed-point reference (default) or with Lava's
Loihi 2 simulation (engine="lava", in the separate .venv-lava, see scripts/setup_lava.sh)."""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time

import numpy as np

from ...errors import SltError
from ..base import Runner
from .chip import ChipModel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # repo root
LAVA_RUN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lava_run.py")
MANIFEST, NETWORK = "manifest.json", "network.h5"
FORMAT = "slt-loihi"
FORMAT_VERSION = 1


def lava_python() -> str | None:
    """The Python of the Lava environment, or None when it is not installed."""
    p = os.environ.get("SLT_LAVA_PYTHON") or os.path.join(ROOT, ".venv-lava", "bin", "python")
    return p if os.path.exists(p) else None


def run_lava(net_path: str, inputs: np.ndarray, message_bits: int, sparse: bool, timeout: float = 1800) -> dict:
    """Runs the netx file in Lava (Loihi2SimCfg(select_tag='fixed_pt')) in a subprocess. Returns the same
    structure as ChipModel.run for the layers with neurons: {"spikes": {layer index: [T, B, ...]}, "v_last"}."""
    py = lava_python()
    if py is None:
        raise SltError("Lava is not installed (.venv-lava/bin/python is missing)",
                       "run 'bash scripts/setup_lava.sh' (or set SLT_LAVA_PYTHON to a Python with lava-dl 0.6)")
    with tempfile.TemporaryDirectory(prefix="slt-lava-") as d:
        fin, fout = os.path.join(d, "in.npz"), os.path.join(d, "out.npz")
        np.savez(fin, inputs=np.asarray(inputs, np.int32), message_bits=np.int64(message_bits),
                 sparse=np.int64(bool(sparse)))
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        t0 = time.time()
        r = subprocess.run([py, LAVA_RUN, os.path.abspath(net_path), fin, fout], capture_output=True, text=True,
                           timeout=timeout, env=env)
        if r.returncode != 0:
            tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-6:])
            raise SltError(f"Lava's simulation of {net_path} failed:\n{tail}",
                           "re-run 'bash scripts/setup_lava.sh'; if it persists, report the file")
        with np.load(fout, allow_pickle=False) as z:
            n = int(z["n_layers"])
            out = {"spikes": [z[f"spikes_{i}"] for i in range(n)], "v_last": z["v_last"],
                   "build_s": float(z["build_s"]), "run_s": float(z["run_s"]), "wall_s": time.time() - t0}
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
        out["netx"] = json.loads(lines[-1]) if lines else {}
    return out


def read_manifest(path: str) -> dict:
    mp = os.path.join(path, MANIFEST)
    if not os.path.isdir(path) or not os.path.exists(mp):
        raise SltError(f"{path} is not a Loihi export folder ({MANIFEST} missing)",
                       "pass a folder written by 'slt-deploy export --target loihi'")
    try:
        with open(mp) as f:
            m = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SltError(f"{mp} is not valid JSON ({e})", "re-export the model") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise SltError(f"{mp} is not an slt-loihi manifest", "re-export with --target loihi")
    if not isinstance(m.get("format_version"), int) or m["format_version"] > FORMAT_VERSION:
        raise SltError(f"{mp} has format_version {m.get('format_version')!r}; this slt-deploy reads "
                       f"1..{FORMAT_VERSION}", "upgrade slt-deploy or re-export the model")
    from ...fsio import check_folder

    check_folder(path, m, MANIFEST)  # every file's sha256 and the manifest's own digest, recorded at export
    return m


class LoihiRunner(Runner):
    def __init__(self, path: str, engine: str = "reference"):
        from .netx import read_netx

        if engine not in ("reference", "lava"):
            raise SltError(f"engine {engine!r} unknown", "use engine='reference' or engine='lava'")
        self.path, self.engine = path, engine
        self.manifest = m = read_manifest(path)
        self.net_path = os.path.join(path, m["network"])
        try:
            self.layers = read_netx(self.net_path)
        except SltError:
            raise
        except Exception as e:  # noqa: BLE001 - h5py raises RuntimeError/KeyError/... for damaged files
            raise SltError(f"{self.net_path} is not a readable netx file ({type(e).__name__}: {str(e)[:100]})",
                           "re-export the model") from None
        try:
            self.chip = ChipModel(self.layers)
            self.meta = {k: m[k] for k in ("input_shape", "input_max", "T", "encoding", "labels", "dt", "name")}
            self.host_in = self._interp(m["input"].get("file")) if m["input"]["kind"] == "host_current" else None
            self.host = self._interp(m["readout"].get("file")) if m["readout"]["kind"] == "host" else None
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as e:
            raise SltError(f"{path}: the manifest or network is incomplete ({type(e).__name__}: {str(e)[:80]})",
                           "re-export the model") from None
        self.neuron_layers = [i for i, L in enumerate(self.layers) if "neuron" in L]
        self.last = {}

    def _interp(self, fname):
        from ...ir.interpreter import Interpreter
        from ..nir.fileio import read_nir

        return Interpreter(read_nir(os.path.join(self.path, fname)))

    def chip_inputs(self, seq: np.ndarray) -> np.ndarray:
        """Encoded input [T, B, ...] -> what enters the chip, int32 [B, T, *shape]."""
        seq = np.asarray(seq, np.float32)
        inp = self.manifest["input"]
        if inp["kind"] == "spikes":
            return np.ascontiguousarray(np.rint(seq).astype(np.int32).swapaxes(0, 1))
        k, clip = float(inp["scale"]), int(inp["clip"])
        cur, out = None, []
        for t in range(seq.shape[0]):
            if cur is None or not np.array_equal(seq[t], seq[t - 1]):
                i0 = self.host_in.run(seq[t:t + 1])["logits"].astype(np.float64)
                cur = np.clip(np.rint(i0 * k), -clip, clip).astype(np.int32)
            out.append(cur)
        return np.ascontiguousarray(np.stack(out, 1))

    def run_chip(self, inputs: np.ndarray, engine: str | None = None) -> dict:
        engine = engine or self.engine
        if engine == "lava":
            r = run_lava(self.net_path, inputs, int(self.manifest["input"]["message_bits"]),
                         bool(self.manifest.get("sparse_fc", False)))
            spikes = [None] * len(self.layers)
            for j, i in enumerate(self.neuron_layers):
                spikes[i] = r["spikes"][j]
            return {"spikes": spikes, "v_last": r["v_last"], "netx": r["netx"],
                    "timing": {k: r[k] for k in ("build_s", "run_s", "wall_s")}}
        return self.chip.run(inputs)

    def activity_graph(self):
        """An NIR graph with the artifact's OWN synapses (the host first layer, the chip's integer weight
        mantissas, the host part) and one LIF node per recorded spike layer: what profile.activity needs to count
        this runner's synaptic ops from the spikes it records (`run(seq, record=True)`). The 1x1 identity synapse
        that carries the host current onto the chip is not a synapse of the model and is left out."""
        import nir

        from ...ir import meta as K

        m = self.manifest
        md = {K.T: np.int64(m["T"]), K.ENCODING: m["encoding"], K.INPUT_MAX: np.float64(m["input_max"]),
              K.INPUT_SHAPE: np.array(m["input_shape"], np.int64)}
        nodes = {"input": nir.Input(input_type={"input": np.array(m["input_shape"])})}
        edges, prev = [], "input"

        def lif(layer, shape):
            one = np.ones(shape, np.float32)
            return nir.LIF(tau=one, r=one, v_leak=0 * one, v_threshold=one, v_reset=0 * one, metadata={K.LAYER: layer})

        def add(name, node):
            nonlocal prev
            nodes[name] = node
            edges.append((prev, name))
            prev = name

        infos = {e["index"]: e for e in m["layers"]}
        for i, L in enumerate(self.layers):
            e = infos.get(i, {})
            if L["type"] == "input":
                continue
            if L["type"] == "flatten":
                add(f"flatten_{i}", nir.Flatten(input_type={"input": np.array(self.layers[i - 1]["shape"])},
                                                start_dim=0, end_dim=-1))
                continue
            if i == 1 and m["input"]["kind"] == "host_current":
                g = self.host_in.g
                syn = next(n for n in g.nodes if n not in ("input", "output"))
                add(syn, g.nodes[syn])
            else:
                w = np.asarray(L["weight"], np.float32)
                meta = {K.LAYER: e.get("layer", f"layer_{i}")}
                if L["type"] == "conv":
                    node = nir.Conv2d(input_shape=None, weight=w, stride=tuple(L["stride"]),
                                      padding=tuple(L["padding"]), dilation=(1, 1), groups=1, bias=np.zeros(w.shape[0], np.float32), metadata=meta)
                else:
                    node = nir.Affine(weight=w, bias=np.zeros(w.shape[0], np.float32), metadata=meta)
                add(f"syn_{i}", node)
            if e.get("spike_layer"):
                add(f"lif_{i}", lif(e["spike_layer"], L["shape"]))
        if m["readout"]["kind"] == "host":
            hg = self.host.g
            def ren(n):
                return prev if n == "input" else n  # attention names its inputs
            for n, node in hg.nodes.items():
                if n != "input":
                    nodes[ren(n)] = node
            edges += [(ren(a), ren(b)) for a, b in hg.edges]
        else:
            nodes["output"] = nir.Output(output_type={"output": np.array(self.layers[-1]["shape"])})
            edges.append((prev, "output"))
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=md, type_check=False)

    def run(self, seq, record: bool = False, engine: str | None = None) -> dict:
        seq = np.asarray(seq, np.float32)
        inputs = self.chip_inputs(seq)
        chip = self.run_chip(inputs, engine)
        self.last = {**chip, "inputs": inputs}
        m = self.manifest
        out = {"spikes": {}} if record else {}
        if record:
            for e in m["layers"]:
                if e.get("spike_layer") and chip["spikes"][e["index"]] is not None:
                    out["spikes"][e["spike_layer"]] = chip["spikes"][e["index"]].astype(np.float32)
        ro = m["readout"]
        if ro["kind"] == "voltage":
            out["logits"] = (chip["v_last"].astype(np.float64) / ((1 << int(ro["act_shift"])) * float(ro["scale"]))
                             ).astype(np.float32)
        else:
            b = chip["spikes"][len(self.layers) - 1].astype(np.float32)
            h = self.host.run(b, record=record)
            out["logits"] = h["logits"]
            if record:
                out["spikes"].update(h.get("spikes", {}))
        return out
