#!/usr/bin/env bash
# Create .venv and install neurotrain with its test dependencies. Idempotent; safe to re-run.
#
# torch: if the environment already has torch, it is kept. Otherwise TORCH_SPEC is installed first
# (default "torch==2.13.0", which on a CPU-only machine with a local CPU wheel installs in seconds).
# GPU users: install the torch build for your CUDA first, or set e.g.
#   TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124" bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  # shellcheck disable=SC2086
  $PIP install -q ${TORCH_SPEC:-torch==2.13.0}
fi
if ! "$VENV/bin/python" -c "import neurotrain, accelerate, datasets, safetensors, wandb, pytest, PIL, matplotlib" >/dev/null 2>&1; then
  $PIP install -q -e ".[test]"
fi
