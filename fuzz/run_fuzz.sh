#!/usr/bin/env bash
# `make fuzz`: seed corpus, then the C target (libFuzzer + ASan/UBSan) and the Python targets (atheris), each for
# FUZZ_SECONDS (default 60): the packed reader (fuzz_packed_py.py) and every other parser we own (parsers.py:
# checkpoint, recipe, nir, loihi). Prints how many inputs each ran; a crash stops with a non-zero exit and a repro
# file. Without atheris (no wheel for this Python) parsers.py falls back to its own random mutator.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${FUZZ_SECONDS:-60}
PY=.venv/bin/python
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p fuzz/work
[ -d fuzz/corpus ] && [ -n "$(ls fuzz/corpus 2>/dev/null)" ] || $PY fuzz/make_corpus.py fuzz/corpus
cp -n fuzz/corpus/* fuzz/work/ 2>/dev/null || true
if command -v clang >/dev/null || command -v clang-14 >/dev/null; then
  make -s -C slt_deploy/backends/packed/c fuzz
  slt_deploy/backends/packed/c/build/fuzz_packed_c fuzz/work -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=1024 \
    -artifact_prefix=fuzz/crash-c- 2>&1 | tee fuzz/last-c.log | grep -E "^#[0-9]+ +DONE|ERROR" || true
  grep -q "ERROR" fuzz/last-c.log && { echo "C fuzzer found a crash (fuzz/crash-c-*)"; exit 1; }
  echo "C reader: $(grep -oE '^#[0-9]+' fuzz/last-c.log | tail -1 | tr -d '#') inputs without a crash"
else
  echo "clang not found: skipping the C fuzzer (apt-get install clang libclang-rt-14-dev)"
fi
ATHERIS=1
$PY -m pip install -q -r requirements-fuzz.txt || ATHERIS=0
$PY -c "import atheris" 2>/dev/null || ATHERIS=0
if [ $ATHERIS = 1 ]; then
  mkdir -p fuzz/work-py && cp -n fuzz/corpus/* fuzz/work-py/ 2>/dev/null || true
  $PY fuzz/fuzz_packed_py.py fuzz/work-py -max_total_time="$SECS" -max_len=65536 -artifact_prefix=fuzz/crash-py- \
    2>&1 | tee fuzz/last-py.log | grep -E "DONE|Uncaught|ERROR" || true
  grep -qE "Uncaught|ERROR" fuzz/last-py.log && { echo "Python fuzzer found a crash (fuzz/crash-py-*)"; exit 1; }
  echo "Python reader: $(grep -oE '^#[0-9]+' fuzz/last-py.log | tail -1 | tr -d '#') inputs without a crash"
fi
[ -d fuzz/work-parsers/recipe ] || $PY fuzz/parsers.py seed fuzz/work-parsers
for t in checkpoint recipe nir loihi; do
  if [ $ATHERIS = 1 ]; then
    $PY fuzz/parsers.py $t fuzz/work-parsers/$t -max_total_time="$SECS" -max_len=262144 \
      -artifact_prefix=fuzz/crash-$t- 2>&1 | tee fuzz/last-$t.log | grep -E "DONE|Uncaught|ERROR" || true
    grep -qE "Uncaught|ERROR" fuzz/last-$t.log && { echo "$t parser: crash (fuzz/crash-$t-*)"; exit 1; }
    echo "$t parser: $(grep -oE '^#[0-9]+' fuzz/last-$t.log | tail -1 | tr -d '#') inputs without a crash"
  else
    $PY fuzz/parsers.py mutate $t fuzz/work-parsers/$t "$SECS" || { echo "$t parser: crash (fuzz/crash-$t-*)"; exit 1; }
  fi
done
