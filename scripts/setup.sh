#!/usr/bin/env bash
# Create a virtual environment and install neurotrain with its test dependencies. Idempotent.
#
# Versions. By default every package is installed at the exact version the test suite last passed with:
# requirements/constraints.txt pins the whole dependency tree (transitive dependencies included), so a
# release upstream cannot break a fresh machine. `make lock` refreshes it (see the README).
#   NEUROTRAIN_LATEST=1   ignore the pins: install the newest versions pyproject.toml allows
#                         (what `make test-latest` does, in a separate venv).
#
# torch is the one dependency whose build depends on the hardware. If the venv already has torch, it is
# kept (and so are the versions its own requirements pin). Otherwise TORCH_SPEC is installed first,
# default "torch==2.13.0" (the tested version; on a CPU-only machine with a local CPU wheel this takes
# seconds instead of pulling a multi-GB CUDA build). GPU users: install the torch build for your CUDA first,
# or set e.g.  TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124" bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
LOCK=requirements/constraints.txt
LATEST=${NEUROTRAIN_LATEST:-0}
STAMP="$VENV/.neurotrain-installed"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  # shellcheck disable=SC2086
  $PIP install -q ${TORCH_SPEC:-torch==2.13.0}
fi
# What this install is for: the lock's content (or "latest") and pyproject.toml. Re-install when it changes.
want="latest"
[ "$LATEST" = 1 ] || want=$(cat "$LOCK")
want="$want
$(cat pyproject.toml)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$VENV/bin/python" -c "import neurotrain" >/dev/null 2>&1; then
  exit 0
fi
if [ "$LATEST" = 1 ]; then
  $PIP install -q --upgrade --upgrade-strategy eager -e ".[test]"
else
  # The pins, minus torch and whatever the installed torch itself pins (a GPU build may need other versions).
  eff="$VENV/constraints.effective.txt"
  "$VENV/bin/python" scripts/effective_constraints.py "$LOCK" > "$eff"
  $PIP install -q -c "$eff" -e ".[test]"
fi
printf '%s' "$want" > "$STAMP"
