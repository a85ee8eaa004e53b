#!/usr/bin/env bash
# The test command: creates .venv (and installs Chromium, tmux, docker-compose) on first use, then the quality gates
# (ruff, mypy, import-linter, docstring coverage; see CONTRIBUTING.md) and the default test suite.
# Extra arguments go to pytest, e.g. `scripts/test.sh -m slow` for the long-running tests.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
bash "$(dirname "${BASH_SOURCE[0]}")/_system.sh"  # Chromium and tmux for the browser and dashboard tests
cd "$ROOT"
echo "== ruff" >&2
ruff check src tests tools examples
ruff format --check src tests tools examples  # one style, kept by the formatter (pinned in pyproject's dev extra)
echo "== mypy (all of src/townlet, see [tool.mypy] in pyproject.toml)" >&2
mypy
echo "== import-linter (layers, no torch/servers in the core)" >&2
lint-imports --no-logo
echo "== docstring coverage" >&2
python tools/docstring_coverage.py --min 90
echo "== pytest" >&2
exec python -m pytest "$@"
