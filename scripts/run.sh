#!/usr/bin/env bash
# The main job: the live town on the default configuration, served at http://127.0.0.1:8000/ (Ctrl+C stops).
# Creates .venv on first use. Any arguments are passed to `townlet serve` (e.g. --port 8080 --speed 10x).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
exec townlet serve "$@"
