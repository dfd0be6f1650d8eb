#!/usr/bin/env bash
# Creates/refreshes the venvs of the NIR interop matrix (docs/interop.md, tests/test_interop.py):
#   .venv-interop  norse 1.1.0 + spikingjelly 2.0.0 beside OUR pins (numpy 2.4.6, torch 2.13.0 CPU, nir 1.0.8).
#                  They resolve beside the pins, but they pull torchvision 0.28.0 / torchaudio 2.11.1 from PyPI,
#                  whose compiled ops do not load with the CPU torch ("operator torchvision::nms does not exist");
#                  norse and spikingjelly import without them, the main .venv stays free of them.
#   .venv-sinabs   sinabs 3.1.3, which pins nir<=1.0.4 (and so nirtorch 2.0.2).
# snntorch 1.0.0 is in the main .venv already. The importers run as subprocesses (slt_deploy/ir/interop_run.py,
# npz in/out). torch==2.13.0 goes first and alone: the CPU build lies on disk, an unpinned torch is a CUDA build.
# Fast when nothing changed (stamp file per venv). Pins verified together on Python 3.11.7, CPU only (2026-12-05).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

INTEROP_PINS="norse==1.1.0 spikingjelly==2.0.0 nir==1.0.8 nirtorch==2.6 numpy==2.4.6 h5py==3.16.0
torchvision==0.28.0 torchaudio==2.11.1 loguru==0.7.3 matplotlib==3.11.2 scipy==1.17.1 tqdm==4.70.1
SciencePlots==2.2.2 tensorboard==2.21.0 tensorboard-data-server==0.7.2 requests==2.34.2 packaging==26.4
absl-py==2.5.1 grpcio==1.85.3 Markdown==3.11.3 protobuf==7.36.2 Werkzeug==3.1.9 MarkupSafe==3.0.4
certifi==2026.10.19.post1 charset-normalizer==3.5.3 idna==3.21 urllib3==2.8.0 contourpy==1.3.3 cycler==0.12.1
fonttools==4.68.0 kiwisolver==1.5.1 pillow==13.0.0 pyparsing==3.3.3 python-dateutil==4.0.0 tzdata==2026.6"
SINABS_PINS="sinabs==3.1.3 nir==1.0.4 nirtorch==2.0.2 numpy==2.4.6 h5py==3.16.0 samna==0.48.6 pbr==7.1.3
matplotlib==3.11.2 contourpy==1.3.3 cycler==0.12.1 fonttools==4.68.0 kiwisolver==1.5.1 packaging==26.4
pillow==13.0.0 pyparsing==3.3.3 python-dateutil==4.0.0 tzdata==2026.6"

make_venv() {  # make_venv DIR "PINS" "IMPORT CHECK"
  local venv=$1 pins=$2 check=$3
  local want stamp=$1/.stamp
  want=$(printf '%s\n%s\n' "$pins" "$(sha256sum scripts/setup_interop.sh)" | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  rm -f "$stamp"
  [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q torch==2.13.0
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pip install -q torch==2.13.0 $pins
  "$venv/bin/python" -c "$check"
  echo "$want" > "$stamp"
}

make_venv .venv-interop "$INTEROP_PINS" \
  "import norse.torch, spikingjelly.activation_based.nir_exchange, nir; assert nir.__version__ == '1.0.8' if hasattr(nir, '__version__') else True; print('setup_interop: norse 1.1.0 + spikingjelly 2.0.0 ready in .venv-interop')"
make_venv .venv-sinabs "$SINABS_PINS" \
  "import sinabs.nir, nir; print('setup_interop: sinabs 3.1.3 (nir 1.0.4) ready in .venv-sinabs')"
