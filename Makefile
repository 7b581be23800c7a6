# The two commands of the README. Both do all set-up (a .venv) on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench

setup:
	bash scripts/setup.sh

# A short training run on the built-in synthetic recording (no download).
demo: setup
	WANDB_MODE=offline $(PY) -m neurotrain train recipes/demo.yaml $(ARGS)

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: setup
	$(PY) bench/bench_loader.py
	$(PY) bench/bench_sampling.py
	$(PY) bench/bench_loop.py --quick
