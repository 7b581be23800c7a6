# The two commands of the README. Both do all set-up (a .venv) on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast test-latest lock bench bench-scale gpu-suite

# Installs the exact tested versions (requirements/constraints.txt); see scripts/setup.sh.
setup:
	VENV=$(VENV) bash scripts/setup.sh

# A short training run on the built-in synthetic recording (no download).
demo: setup
	WANDB_MODE=offline $(PY) -m neurotrain train recipes/demo.yaml $(ARGS)

test: setup
	$(PY) -m pytest -q --durations=15 $(PYTEST_ARGS)

# The inner loop: everything but end-to-end training runs and real-data tests.
test-fast: setup
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# The newest versions pyproject.toml allows, in a separate venv (.venv-latest), through the whole suite:
# drift upstream shows here before it breaks a fresh install.
test-latest:
	rm -rf .venv-latest
	VENV=.venv-latest NEUROTRAIN_LATEST=1 bash scripts/setup.sh
	.venv-latest/bin/python -m pip list --format=freeze | grep -iE '^(torch|accelerate|datasets|safetensors|wandb|numpy)=='
	.venv-latest/bin/python -m pytest -q $(PYTEST_ARGS)

# Refresh requirements/constraints.txt from .venv-latest, only after test-latest passed.
lock: test-latest
	VENV=.venv-latest bash scripts/lock.sh

bench: setup
	$(PY) bench/bench_loader.py
	$(PY) bench/bench_sampling.py
	$(PY) bench/bench_loop.py --quick

# 200 sessions, 100M samples (writes about 2 GB of session folders to /tmp once).
bench-scale: setup
	$(PY) bench/bench_scale.py

# On a machine with a CUDA GPU (ARGS=--dry-run checks the commands on the CPU).
gpu-suite: setup
	PYTHON=$(PY) bash bench/gpu_suite.sh $(ARGS)
