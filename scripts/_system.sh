#!/usr/bin/env bash
# System packages the tests need: Debian's Chromium (driven by Playwright's Python package; never
# `playwright install`) and tmux for the browser and terminal-dashboard tests, and docker-compose (v1) to check
# that compose.yaml parses (deploy/check.sh; no Docker engine is needed). Idempotent: installs only what is
# missing, as root.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium chromium-driver)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "townlet: the tests need: ${missing[*]} (run as root: apt-get install -y ${missing[*]})" >&2
    exit 1
  fi
  echo "townlet: installing ${missing[*]}" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
