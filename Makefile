# Two commands do all the set-up on a fresh machine (Python 3.10+ and network to PyPI needed):
#   make run   - environment + ComfyUI host + demo models, then ComfyUI with the pack on :8188 (--cpu);
#                HOST=0.33 runs ComfyUI 0.33.0 instead of 0.3.75 (where ../shared/vendor has its tarball)
#   make test  - the same set-up (both hosts), then the suite on each host (what CI runs):
#                the full suite on ComfyUI 0.33.0 and the compatibility tier on 0.3.75, side by side
#                (tools/run_tiers.py; COMFYUI_PATH=<your ComfyUI> runs the full suite on yours instead)
# Each set-up step prints a line with its size and time, or one line when it is cached.
#
# Two environments under ~/.cache/comfyui-distorch (tools/hostenv.py chooses, tools/bootstrap.py builds):
#   venv      torch as tools/requirements-host.txt pins it, from PyPI (CUDA on Linux, ~6.5 GB):
#             make test / unit / bench / docs, make run ARGS=--gpu, make run DISTORCH_TORCH=cuda
#   venv-cpu  the same pins with torch's CPU build (https://download.pytorch.org/whl/cpu, or
#             DISTORCH_TORCH_INDEX), ~2 GB: make run. Not built when venv exists (make run reuses it)
#             unless DISTORCH_TORCH=cpu; where the CPU index cannot be reached, make run says so and
#             takes venv instead.
PYTHON ?= python3
VENV_PYTHON = $(shell $(PYTHON) tools/hostenv.py python)
RUN_GPU = $(filter --gpu,$(ARGS))
# Expanded when run's recipe starts, after run-setup: the environment set-up really made ready.
RUN_PYTHON = $(shell DISTORCH_HOST=$(HOST) $(PYTHON) tools/hostenv.py python --run $(RUN_GPU))
# make run HOST=0.33: the host make run starts (default 0.3.75)
HOST ?=

.PHONY: setup run-setup run test check unit bench docs clean-run gpu-kit gpu-check

setup:
	$(PYTHON) tools/bootstrap.py --host all

run-setup:
	DISTORCH_HOST=$(HOST) $(PYTHON) tools/bootstrap.py --run $(RUN_GPU) $(if $(HOST),--host $(HOST))

run: run-setup
	DISTORCH_HOST=$(HOST) $(RUN_PYTHON) tools/run_host.py $(ARGS)

test: setup
	$(VENV_PYTHON) tools/run_tiers.py $(PYTEST_ARGS)

# The quick tier: pure logic, the layer contracts, and the patches, queue control and runtime on the
# real comfy.model_management / PromptQueue in-process (no server, no browser), on both hosts at once.
check: setup
	$(VENV_PYTHON) tools/run_tiers.py tests/unit $(PYTEST_ARGS)

unit: check

bench: setup
	for script in bench/bench_*.py; do echo "== $$script"; $(VENV_PYTHON) $$script $(ARGS) || exit 1; done

clean-run:
	rm -rf .run

docs: setup
	$(VENV_PYTHON) tools/node_reference.py

# GPU proof kit. Here: `make gpu-kit` builds .gpu-kit/ (ComfyUI 0.3.75 and 0.33.0 + the wheels
# the lent GPU machine lacks, < 60 MiB). There (or any CUDA machine), with the kit carried:
# `make gpu-check OUT=DIR` (or `python3 tools/gpu_check.py --out DIR`) runs the GPU tests and
# benchmark and writes DIR/gpu-check.{json,md,log}. GPU_CHECK_DRY_RUN=1 rehearses every step on
# the CPU; GPU_CHECK_ARGS passes more options (e.g. --kit DIR, --work DIR).
gpu-kit: setup
	$(VENV_PYTHON) tools/gpu_kit.py build

gpu-check:
	$(PYTHON) tools/gpu_check.py --out "$(OUT)" $(if $(filter 1,$(GPU_CHECK_DRY_RUN)),--dry-run) $(GPU_CHECK_ARGS)
