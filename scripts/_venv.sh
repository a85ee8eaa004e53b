#!/usr/bin/env bash
# Shared by scripts/run.sh and scripts/test.sh: make sure .venv exists with townlet installed.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TOWNLET_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "townlet: creating virtual environment in $VENV" >&2
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
fi
STAMP="$VENV/.townlet-installed"
WANT="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" | sha256sum | cut -d' ' -f1)-${TOWNLET_EXTRAS:-dev}"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "townlet: installing townlet[${TOWNLET_EXTRAS:-dev}] into $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet -e "$ROOT[${TOWNLET_EXTRAS:-dev}]" -c "$ROOT/constraints.txt" >&2
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
