#!/usr/bin/env bash
# Creates/refreshes .venv-lava: Intel's Lava (lava-nc 0.10.0 + lava-dl 0.6.0) for verifying --target loihi in its
# bit-accurate Loihi 2 simulation. A separate venv because Lava pins numpy<2 (the main .venv stays modern); only
# slt_deploy/backends/loihi/lava_run.py runs in it, as a subprocess. Fast when nothing changed (stamp file).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-lava
STAMP=$VENV/.stamp
want=$(cat requirements-lava.txt scripts/setup_lava.sh | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then exit 0; fi

# Lava's last releases run on Python 3.11 with the fixes below (not on 3.12+).
PY=${PYTHON_LAVA:-}
if [ -z "$PY" ]; then
  for cand in python3.11 "$(pyenv prefix 3.11 2>/dev/null || true)/bin/python3.11" python3; do
    if command -v "$cand" >/dev/null 2>&1 && [ "$("$cand" -c 'import sys; print(sys.version_info[:2] == (3, 11))' 2>/dev/null)" = True ]; then
      PY=$cand; break
    fi
  done
fi
if [ -z "$PY" ]; then
  echo "setup_lava: Python 3.11 not found (Lava needs it); set PYTHON_LAVA=/path/to/python3.11" >&2
  exit 1
fi
rm -f "$STAMP"
[ -x $VENV/bin/python ] || "$PY" -m venv $VENV
P=$VENV/bin/python
$P -m pip install -q --upgrade pip
# torch first, pinned and alone: the CPU build lies on disk; lava-dl would ask for torch<2.4 (a CUDA download).
$P -m pip install -q torch==2.13.0
$P -m pip install -q -r requirements-lava.txt
$P -m pip install -q --no-deps --ignore-requires-python lava-nc==0.10.0 lava-dl==0.6.0

SITE=$($P -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# Python 3.11 rejects ByteEncoder's mutable dataclass default unless the class is hashable: one-line fix.
$P - "$SITE/lava/magma/compiler/var_model.py" <<'PYEOF'
import re, sys
p = sys.argv[1]
s = open(p).read()
fixed = re.sub(r"@dataclass\s*\n(class ByteEncoder\b)", r"@dataclass(unsafe_hash=True)\n\1", s)
if "@dataclass(unsafe_hash=True)\nclass ByteEncoder" not in fixed:
    sys.exit(f"setup_lava: could not apply the ByteEncoder fix to {p}")
if fixed != s:
    open(p, "w").write(fixed)
PYEOF
# lava-dl's slayer imports torchvision.ops/transforms at import time; PyPI's torchvision does not load beside the
# CPU torch 2.13. Nothing we run uses it, so an empty stub package stands in.
mkdir -p "$SITE/torchvision/ops" "$SITE/torchvision/transforms"
echo '"""Stub made by scripts/setup_lava.sh: lava-dl imports torchvision but netx never uses it."""' \
  > "$SITE/torchvision/__init__.py"
: > "$SITE/torchvision/ops/__init__.py"
: > "$SITE/torchvision/transforms/__init__.py"

# Prove it: import netx and run a 2-layer network in the fixed-point Loihi 2 simulation.
$P - <<'PYEOF'
import os, tempfile
import h5py, numpy as np
from lava.lib.dl.netx import hdf5
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc import io
d = tempfile.mkdtemp()
p = os.path.join(d, "t.h5")
with h5py.File(p, "w") as f:
    g = f.create_group("layer/0"); g["type"] = np.array([b"input"], "S10"); g["shape"] = np.array([3])
    g = f.create_group("layer/1"); g["type"] = np.array([b"dense"], "S10"); g["shape"] = np.array([2])
    g["weight"] = np.array([[100, 0, 0], [0, 50, 50]])
    for k, v in {"iDecay": 4096, "vDecay": 2048, "vThMant": 60}.items():
        g[f"neuron/{k}"] = v
    g["neuron/type"] = np.array([b"CUBA"], "S10")
net = hdf5.Network(net_config=p)
src = io.source.RingBuffer(data=np.ones((3, 4), np.int32))
sink = io.sink.RingBuffer(shape=net.out.shape, buffer=4)
src.s_out.connect(net.inp); net.out.connect(sink.a_in)
net.run(condition=RunSteps(num_steps=4), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
out = sink.data.get(); net.stop()
assert out[0].sum() >= 2 and out[1].sum() >= 1, out
print("setup_lava: lava-nc 0.10.0 + lava-dl 0.6.0 ready in .venv-lava")
PYEOF
echo "$want" > "$STAMP"
