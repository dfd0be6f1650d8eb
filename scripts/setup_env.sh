#!/usr/bin/env bash
# Creates/refreshes .venv with everything slt-deploy needs. Fast when nothing changed (stamp file).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.stamp
want=$(cat requirements*.txt pyproject.toml scripts/setup_env.sh | sha256sum | cut -d" " -f1)

# Debian packages: the full Fashion-MNIST set (no download is possible at run time).
if [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "note: Fashion-MNIST missing; install it with: sudo apt-get install dataset-fashion-mnist" >&2
  fi
fi

# Debian packages for the Cortex-M7 checks (tests/test_energy_mcu.py runs a ticket on QEMU, tests/test_mcu_int8.py
# and `make bench-mcu*` cross-compile): without them those tests skip, so install them where we can (~45 s once).
if ! command -v qemu-system-arm >/dev/null || ! command -v arm-none-eabi-gcc >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-arm gcc-arm-none-eabi >/dev/null \
      || echo "note: qemu-system-arm / gcc-arm-none-eabi not installed: the Cortex-M7 tests will skip" >&2
  else
    echo "note: install qemu-system-arm and gcc-arm-none-eabi to run the Cortex-M7 tests" >&2
  fi
fi

bash scripts/setup_lava.sh  # Lava in its own .venv-lava (numpy<2) for --target loihi (issue 7)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then exit 0; fi
[ -x $VENV/bin/python ] || $PY -m venv $VENV
$VENV/bin/pip install -q --upgrade pip
# torch first and pinned: the CPU build lies on disk; anything unpinned would fetch CUDA wheels.
$VENV/bin/pip install -q torch==2.13.0
# then the project through its pyproject dependencies (= requirements.txt) and extras: ros (ROS 2 wheels + OpenCV
# for examples/ros2, issue 9) and dev (pytest, ruff, setuptools for tests/test_wheel.py)
$VENV/bin/pip install -q -e '.[ros,dev]'
$VENV/bin/python -c "from slt_deploy.backends.packed.c_runner import build; build()" || echo "note: packed C runtime not built (needs a C compiler)" >&2
echo "$want" > "$STAMP"
