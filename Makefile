# slt-deploy: every target sets up what it needs itself (venv, pip pins, Debian packages).
# One style: a target, its prerequisites, then its recipe on the lines below; every target is .PHONY (none
# makes a file of its name). Bench options: BENCH_<NAME>_ARGS,
# e.g. make bench-tickets-small BENCH_TICKETS_SMALL_ARGS=--quick
PY := .venv/bin/python
SETUP := scripts/setup_env.sh
BENCHES := bench-train bench-tickets bench-onnx bench-packed bench-loihi bench-mcu bench-mcu-int8 bench-ros2 \
	bench-startup

.PHONY: setup setup-interop demo lint test bench $(BENCHES) bench-tickets-small bench-onnx-structured bench-sparse-speed \
	interop fuzz clean

setup:
	@bash $(SETUP)

demo: setup
	$(PY) -m slt_deploy.cli demo --out runs/demo

# ruff (pinned in requirements-dev.txt, configured in pyproject.toml [tool.ruff]) before the tests
lint: setup
	$(PY) -m ruff check .

test: setup lint setup-interop
	$(PY) -m pytest tests

# every benchmark, one after the other (hours on 2 cores: bench-train alone is ~45 min)
bench: $(BENCHES)

# the three Fashion-MNIST recipes trained to their goals (issue 2)
bench-train: setup
	$(PY) bench/train_fmnist.py $(BENCH_TRAIN_ARGS)

# issue 13's ticket bench: the full-scale plan on the real fmnist-vgg and fmnist-spikformer recipes
# (bench/tickets_full.py: IMP 98%, binarized 95%, Early-Bird 90%, MultiSp, random twins; <= 120 min on 2 cores when
# the dense models exist, e.g. BENCH_TICKETS_ARGS="--dense D --sf-dense S --sf-dense-same S18"; --ship copies the
# tickets to models/tickets/)
bench-tickets: setup
	$(PY) bench/tickets_full.py $(BENCH_TICKETS_ARGS)

# the small ticket bench on a 20k-weight VGG-small and a 1-block transformer (bench/tickets_fmnist.py: IMP, Early-Bird,
# binarized, random, multi-prize, MultiSp; ~66 min on 2 cores); BENCH_TICKETS_SMALL_ARGS=--quick for ~10 min
bench-tickets-small: setup
	$(PY) bench/tickets_fmnist.py $(BENCH_TICKETS_SMALL_ARGS)

# ONNX target: eager vs ORT dense vs ours, batch 1/64, sizes, exactness (issue 5)
bench-onnx: setup
	$(PY) bench/onnx_target.py $(BENCH_ONNX_ARGS)

# only the structured-vs-unstructured part of bench-onnx (structured ticket, channel compaction; ~10 min)
bench-onnx-structured: setup
	$(PY) bench/onnx_target.py --only-structured $(BENCH_ONNX_ARGS)

# issue 19: one ticket, batch 1, in rotation: snntorch/slt eager, onnxruntime on its dense export, our ONNX (step- and
# layer-major), packed C; verify of ours. BENCH_SPARSE_SPEED_ARGS="--ticket CKPT [--dense CKPT]" (--ticket required)
bench-sparse-speed: setup
	$(PY) bench/sparse_speed.py $(BENCH_SPARSE_SPEED_ARGS)

# packed target: bytes vs the information bound, exactness, latency, arena
bench-packed: setup
	$(PY) bench/packed.py $(BENCH_PACKED_ARGS)

# Loihi target: export time, cores, agreement with float, Lava simulation time (issue 7)
bench-loihi: setup
	$(PY) bench/loihi.py $(BENCH_LOIHI_ARGS)

# Cortex-M7 instructions per synaptic op on QEMU -icount (installs qemu-system-arm itself; docs/profile.md)
bench-mcu: setup
	$(PY) bench/mcu.py $(BENCH_MCU_ARGS)

# dense int8 (CMSIS-NN-style) baseline of the same model beside the packed ticket, Cortex-M7 under QEMU
bench-mcu-int8: setup
	$(PY) bench/mcu_int8.py $(BENCH_MCU_INT8_ARGS)

# ROS 2 node: per-frame breakdown, latency/FPS of node variants vs the reference (issues 9, 18);
# BENCH_ROS2_ARGS="--repeat 2 --overload 120"
bench-ros2: setup
	$(PY) bench/ros2.py $(BENCH_ROS2_ARGS)

# CLI start time: --help, import slt_deploy, inspect of .onnx/.slt, and whether torch is imported (issue 14)
bench-startup: setup
	$(PY) bench/startup.py $(BENCH_STARTUP_ARGS)

# fuzzing the packed readers (C libFuzzer + Python atheris); FUZZ_SECONDS per target
fuzz: setup
	FUZZ_SECONDS=$${FUZZ_SECONDS:-60} bash fuzz/run_fuzz.sh

clean:
	rm -rf runs out .pytest_cache

# NIR importers in their own venvs (issue 15, docs/interop.md): norse + spikingjelly in .venv-interop,
# sinabs in .venv-sinabs
setup-interop:
	bash scripts/setup_interop.sh

# the importer x checkpoint matrix of docs/interop.md
interop: setup setup-interop
	$(PY) -m slt_deploy.ir.interop models/tickets/* $(INTEROP_ARGS)
