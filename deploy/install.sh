#!/usr/bin/env bash
# The image's install and entrypoint commands, in one place: the Dockerfile runs them, and so does CI
# (deploy/check.sh) in a fresh virtual environment, so what CI checks is what the image runs.
#
#   deploy/install.sh build SRC WHEELDIR     build the townlet wheel from the source tree SRC into WHEELDIR
#   deploy/install.sh install WHEELDIR VENV  fresh venv VENV with that wheel and its runtime dependencies
#   deploy/install.sh serve [ARGS...]        the entrypoint: `townlet serve` configured from TOWNLET_* variables
#   deploy/install.sh healthcheck            exit 0 when GET /healthz answers 200 (the compose health check)
#
# Environment of `serve` and `healthcheck` (every variable and secret: docs/ops/deployment.md):
#   TOWNLET_VENV (/opt/townlet/venv), TOWNLET_CONFIG (a YAML file; empty = the built-in default town),
#   TOWNLET_HOST (0.0.0.0), TOWNLET_PORT (8000), TOWNLET_SPEED, TOWNLET_SEED, TOWNLET_DATA (/var/lib/townlet),
#   TOWNLET_STATE_DIR ($TOWNLET_DATA/state), TOWNLET_SNAPSHOT_DIR ($TOWNLET_DATA/snapshots),
#   TOWNLET_AUTOSAVE_EVERY, TOWNLET_RESUME (1), TOWNLET_KEYS_FILE, TOWNLET_TLS_CERT, TOWNLET_TLS_KEY,
#   TOWNLET_SET (extra `--set key=value` overrides, whitespace-separated), TOWNLET_SECRETS (/run/secrets).
set -euo pipefail

VENV="${TOWNLET_VENV:-/opt/townlet/venv}"
SECRETS="${TOWNLET_SECRETS:-/run/secrets}"
DATA="${TOWNLET_DATA:-/var/lib/townlet}"

secret_or() {  # secret_or VALUE SECRET_NAME: VALUE if set, else the secret file if present, else empty
  if [ -n "$1" ]; then echo "$1"; elif [ -f "$SECRETS/$2" ]; then echo "$SECRETS/$2"; fi
}

cmd="${1:-serve}"
[ $# -gt 0 ] && shift
case "$cmd" in
  build)
    src="${1:?usage: install.sh build SRC WHEELDIR}"; out="${2:?usage: install.sh build SRC WHEELDIR}"
    mkdir -p "$out"
    python3 -m pip wheel --quiet --no-deps --wheel-dir "$out" "$src"
    ;;
  install)
    wheels="${1:?usage: install.sh install WHEELDIR VENV}"; VENV="${2:-$VENV}"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet "$wheels"/townlet-*.whl
    "$VENV/bin/townlet" --help >/dev/null
    ;;
  serve)
    state="${TOWNLET_STATE_DIR:-$DATA/state}"
    snapshots="${TOWNLET_SNAPSHOT_DIR:-$DATA/snapshots}"
    mkdir -p "$state" "$snapshots"
    args=()
    [ -n "${TOWNLET_CONFIG:-}" ] && args+=("$TOWNLET_CONFIG")
    args+=(--host "${TOWNLET_HOST:-0.0.0.0}" --port "${TOWNLET_PORT:-8000}" --state-dir "$state"
           --snapshot-dir "$snapshots")
    [ -n "${TOWNLET_SPEED:-}" ] && args+=(--speed "$TOWNLET_SPEED")
    [ -n "${TOWNLET_SEED:-}" ] && args+=(--seed "$TOWNLET_SEED")
    [ -n "${TOWNLET_AUTOSAVE_EVERY:-}" ] && args+=(--autosave-every "$TOWNLET_AUTOSAVE_EVERY")
    # Crash recovery: continue from the newest valid autosave when there is one.
    if [ "${TOWNLET_RESUME:-1}" = "1" ] && compgen -G "$snapshots/town-*.snap" >/dev/null; then
      args+=(--resume "$snapshots")
    fi
    cert="$(secret_or "${TOWNLET_TLS_CERT:-}" townlet_tls_cert)"
    key="$(secret_or "${TOWNLET_TLS_KEY:-}" townlet_tls_key)"
    [ -n "$cert" ] && [ -n "$key" ] && args+=(--tls-cert "$cert" --tls-key "$key")
    keys="$(secret_or "${TOWNLET_KEYS_FILE:-}" townlet_signing_keys)"
    [ -n "$keys" ] && args+=(--set "console.keys_file=$keys")
    for override in ${TOWNLET_SET:-}; do args+=(--set "$override"); done
    exec "$VENV/bin/townlet" serve "${args[@]}" "$@"
    ;;
  healthcheck)
    cert="$(secret_or "${TOWNLET_TLS_CERT:-}" townlet_tls_cert)"
    scheme=http; [ -n "$cert" ] && scheme=https
    exec "$VENV/bin/python" - "$scheme://127.0.0.1:${TOWNLET_PORT:-8000}/healthz" <<'PY'
import ssl, sys, urllib.request
context = ssl._create_unverified_context()  # loopback probe of our own certificate, which may be self-signed
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5, context=context) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:  # noqa: BLE001 - any failure is unhealthy
    print(f"unhealthy: {exc}", file=sys.stderr)
    sys.exit(1)
PY
    ;;
  *)
    echo "usage: install.sh build|install|serve|healthcheck" >&2
    exit 2
    ;;
esac
