# Two commands do all the set-up on a fresh machine (Python 3.10+ and network to PyPI needed):
#   make run   - environment + ComfyUI host + demo models, then ComfyUI with the pack on :8188
#   make test  - the same set-up, then the whole test suite (what CI runs)
PYTHON ?= python3
VENV_PYTHON = $(shell $(PYTHON) -c "import sys; sys.path.insert(0, 'tools'); import hostenv; print(hostenv.venv_python())")

.PHONY: setup run test unit bench docs clean-run

setup:
	$(PYTHON) tools/bootstrap.py

run: setup
	$(VENV_PYTHON) tools/run_host.py $(ARGS)

test: setup
	$(VENV_PYTHON) -m pytest $(PYTEST_ARGS)

unit: setup
	$(VENV_PYTHON) -m pytest tests/unit $(PYTEST_ARGS)

bench: setup
	for script in bench/bench_*.py; do echo "== $$script"; $(VENV_PYTHON) $$script $(ARGS) || exit 1; done

clean-run:
	rm -rf .run

docs: setup
	$(VENV_PYTHON) tools/node_reference.py
