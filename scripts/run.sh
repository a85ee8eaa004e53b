#!/usr/bin/env bash
# The main job: a town on the embedded default configuration. Creates .venv on first use.
# Any arguments are passed to `townlet run` (default: five in-sim days with progress and a KPI table).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
if [ "$#" -eq 0 ]; then set -- --ticks 5000; fi
exec townlet run "$@"
