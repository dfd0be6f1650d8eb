# slt-deploy: every target sets up what it needs itself (venv, pip pins, Debian packages).
PY := .venv/bin/python
SETUP := scripts/setup_env.sh

.PHONY: setup demo test bench bench-train bench-tickets clean
setup:
	@bash $(SETUP)

demo: setup
	$(PY) -m slt_deploy.cli demo --out runs/demo

test: setup setup-interop
	$(PY) -m pytest tests

bench: bench-train bench-tickets

bench-train: setup
	$(PY) bench/train_fmnist.py

# lottery tickets on Fashion-MNIST (IMP, Early-Bird, binarized, random, multi-prize, MultiSp); <= 90 min on 2 cores.
# BENCH_TICKETS_ARGS=--quick for the reduced run (~10 min), --ship to copy the tickets to models/tickets/
bench-tickets: setup
	$(PY) bench/tickets_fmnist.py $(BENCH_TICKETS_ARGS)

clean:
	rm -rf runs out .pytest_cache
bench-ros2: setup ; $(PY) bench/ros2.py $(BENCH_ROS2_ARGS)  # ROS 2 node latency/FPS, reference vs artifacts (issue 9)

.PHONY: fuzz bench-packed bench-onnx bench-loihi bench-ros2
fuzz: setup
	FUZZ_SECONDS=$${FUZZ_SECONDS:-60} bash fuzz/run_fuzz.sh

bench-packed: setup
	$(PY) bench/packed.py
bench-onnx: setup ; $(PY) bench/onnx_target.py $(BENCH_ONNX_ARGS)  # ONNX target: eager vs ORT dense vs ours, b1/b64, sizes, exactness (issue 5)
bench-loihi: setup ; $(PY) bench/loihi.py $(BENCH_LOIHI_ARGS)  # Loihi target: export time, cores, agreement with float, Lava sim time (issue 7)
bench-mcu: setup ; $(PY) bench/mcu.py $(BENCH_MCU_ARGS)  # Cortex-M7 instructions per synaptic op on QEMU -icount (installs qemu-system-arm itself; docs/profile.md)

# NIR interop (issue 15, docs/interop.md): norse + spikingjelly in .venv-interop, sinabs in .venv-sinabs
.PHONY: setup-interop interop
setup-interop: ; bash scripts/setup_interop.sh
interop: setup setup-interop ; $(PY) -m slt_deploy.ir.interop models/tickets/* $(INTEROP_ARGS)  # importer x checkpoint matrix
