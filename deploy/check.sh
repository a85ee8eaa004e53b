#!/usr/bin/env bash
# CI's check of the deployment without a Docker engine (.ci/run): compose.yaml parses, and the image's exact
# install and entrypoint commands (deploy/install.sh, as the Dockerfile runs them) work in a fresh virtual
# environment: build the wheel, install it, start the entrypoint on loopback and wait for GET /healthz = 200.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

echo "deploy: docker-compose -f compose.yaml config -q" >&2
docker-compose -f compose.yaml config -q

work="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "deploy: install.sh build + install into a fresh venv ($work/venv)" >&2
bash deploy/install.sh build "$ROOT" "$work/wheels"
bash deploy/install.sh install "$work/wheels" "$work/venv"

# The entrypoint as the image runs it, bound to loopback on a free port, data in the temp dir, no secrets.
port="$("$work/venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export TOWNLET_VENV="$work/venv" TOWNLET_DATA="$work/data" TOWNLET_SECRETS="$work/no-secrets" \
  TOWNLET_CONFIG="$ROOT/deploy/townlet.yaml" TOWNLET_HOST=127.0.0.1 TOWNLET_PORT="$port" TOWNLET_SPEED=10x \
  TOWNLET_AUTOSAVE_EVERY=0 TOWNLET_SET="snapshots.dir=$work/data/snapshots telemetry.transports=[]" \
  NUMBA_CACHE_DIR="$work/data/numba-cache"  # as the image sets it: a fresh cache, so the kernels compile here
echo "deploy: install.sh serve on 127.0.0.1:$port" >&2
bash deploy/install.sh serve >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 120); do
  if bash deploy/install.sh healthcheck 2>/dev/null; then
    echo "deploy: /healthz ok" >&2
    grep -q "the live town is at http://127.0.0.1:$port/" "$work/serve.log"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then break; fi
  sleep 0.5
done
echo "deploy: the entrypoint did not become healthy; its output:" >&2
cat "$work/serve.log" >&2
exit 1
