#!/usr/bin/env bash
# Refresh requirements/constraints.txt, the exact versions `make setup` / `make test` install.
#
# Run as `make lock`: it first runs `make test-latest` (the newest versions pyproject.toml allows, in
# .venv-latest, the whole test suite), and only when that passes writes the versions of .venv-latest here.
# Commit the new lock with the change that needed it. torch is not in the lock (scripts/setup.sh installs
# it first; TORCH_SPEC chooses the build).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-latest}
LOCK=requirements/constraints.txt
py=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
{
  echo "# Exact versions the test suite last passed with (Python $py, $(uname -s) $(uname -m))."
  echo "# Written by \`make lock\` (scripts/lock.sh) from .venv-latest after \`make test-latest\` passed; do not edit."
  echo "# scripts/setup.sh installs neurotrain with these as pip constraints (torch is installed first, separately)."
  "$VENV/bin/python" -m pip freeze --exclude-editable --all \
    | grep -viE '^(torch|pip|setuptools|wheel)==' | LC_ALL=C sort -f
} > "$LOCK.tmp"
mv "$LOCK.tmp" "$LOCK"
echo "wrote $LOCK ($(grep -vc '^#' "$LOCK") packages)"
