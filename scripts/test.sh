#!/usr/bin/env bash
# The test command: creates .venv (and installs Chromium and tmux) on first use, then lint + the default test suite.
# Extra arguments go to pytest, e.g. `scripts/test.sh -m slow` for the long-running tests.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
bash "$(dirname "${BASH_SOURCE[0]}")/_system.sh"  # Chromium and tmux for the browser and dashboard tests
cd "$ROOT"
echo "== ruff" >&2
ruff check src tests tools
echo "== pytest" >&2
exec python -m pytest "$@"
