#!/usr/bin/env bash
# The images' install and entrypoint commands, in one place: the Dockerfile runs them, and so does CI
# (deploy/check.sh) in fresh virtual environments, so what CI checks is what the images run.
#
#   deploy/install.sh build SRC WHEELDIR           build the townlet wheel from the source tree SRC into WHEELDIR
#   deploy/install.sh install WHEELDIR VENV        runtime image: a fresh venv with the wheel and its runtime deps
#   deploy/install.sh install-train WHEELDIR VENV  training image: the same plus torch (pinned by the wheel's
#                                                  `train` extra, from TORCH_INDEX_URL when set) and the extra
#   deploy/install.sh serve [ARGS...]              runtime entrypoint: `townlet serve` from TOWNLET_* variables
#   deploy/install.sh healthcheck                  exit 0 when GET /healthz answers 200 (the compose health check)
#   deploy/install.sh collect [ARGS...]            telemetry sink: `townlet telemetry collect` into the data volume
#   deploy/install.sh train|evaluate|capture [ARGS...]  training entrypoints (run directory in the data volume)
#   deploy/install.sh townlet ARGS...              any other townlet command (bc, anneal, promote, snapshot, ...)
#
# Environment (every variable and secret: docs/ops/deployment.md):
#   TOWNLET_VENV (/opt/townlet/venv), TOWNLET_CONFIG (a YAML file; empty = the built-in default town),
#   TOWNLET_HOST (0.0.0.0), TOWNLET_PORT (8000), TOWNLET_SPEED, TOWNLET_SEED, TOWNLET_DATA (/var/lib/townlet),
#   TOWNLET_STATE_DIR ($TOWNLET_DATA/state), TOWNLET_SNAPSHOT_DIR ($TOWNLET_DATA/snapshots),
#   TOWNLET_AUTOSAVE_EVERY, TOWNLET_RESUME (1), TOWNLET_KEYS_FILE, TOWNLET_TLS_CERT, TOWNLET_TLS_KEY,
#   TOWNLET_SET (extra `--set key=value` overrides, whitespace-separated), TOWNLET_SECRETS (/run/secrets);
#   training: TOWNLET_RUN_DIR ($TOWNLET_DATA/runs/ppo), TOWNLET_TRAIN_STEPS (1000000), TOWNLET_CHECKPOINT,
#   TOWNLET_CAPTURE_DIR ($TOWNLET_DATA/capture), TORCH_INDEX_URL (install-train only);
#   sink: TOWNLET_SINK_LISTEN (0.0.0.0:7010), TOWNLET_SINK_DIR ($TOWNLET_DATA/telemetry), TOWNLET_SINK_CERT,
#   TOWNLET_SINK_KEY, TOWNLET_SINK_CLIENT_CA, TOWNLET_SINK_PLAINTEXT (0), TOWNLET_SINK_MAX_BYTES, TOWNLET_SINK_KEEP.
set -euo pipefail

VENV="${TOWNLET_VENV:-/opt/townlet/venv}"
SECRETS="${TOWNLET_SECRETS:-/run/secrets}"
DATA="${TOWNLET_DATA:-/var/lib/townlet}"
RUN_DIR="${TOWNLET_RUN_DIR:-$DATA/runs/ppo}"

secret_or() {  # secret_or VALUE SECRET_NAME: VALUE if set, else the secret file if present, else empty
  if [ -n "$1" ]; then echo "$1"; elif [ -f "$SECRETS/$2" ]; then echo "$SECRETS/$2"; fi
}

new_venv() {  # new_venv WHEELDIR VENV: a fresh venv with an up-to-date pip; prints the wheel's path
  python3 -m venv "$2"
  "$2/bin/python" -m pip install --quiet --upgrade pip >&2
  local wheels=("$1"/townlet-*.whl)
  [ -f "${wheels[0]}" ] || { echo "install.sh: no townlet wheel in $1" >&2; exit 2; }
  echo "${wheels[0]}"
}

common_args() {  # the config file and TOWNLET_SET overrides every townlet command takes
  [ -n "${TOWNLET_CONFIG:-}" ] && args+=("$TOWNLET_CONFIG")
  for override in ${TOWNLET_SET:-}; do args+=(--set "$override"); done
  return 0
}

has_flag() {  # has_flag FLAG ARGS...: whether FLAG (or FLAG=...) is among ARGS
  local flag="$1"; shift
  for arg in "$@"; do [ "$arg" = "$flag" ] || [ "${arg%%=*}" = "$flag" ] && return 0; done
  return 1
}

cmd="${1:-serve}"
[ $# -gt 0 ] && shift
args=()
case "$cmd" in
  build)
    src="${1:?usage: install.sh build SRC WHEELDIR}"; out="${2:?usage: install.sh build SRC WHEELDIR}"
    mkdir -p "$out"
    python3 -m pip wheel --quiet --no-deps --wheel-dir "$out" "$src"
    ;;
  install)
    wheels="${1:?usage: install.sh install WHEELDIR VENV}"; VENV="${2:-$VENV}"
    wheel="$(new_venv "$wheels" "$VENV")"
    "$VENV/bin/python" -m pip install --quiet "$wheel"
    "$VENV/bin/townlet" --help >/dev/null
    ;;
  install-train)
    wheels="${1:?usage: install.sh install-train WHEELDIR VENV}"; VENV="${2:-$VENV}"
    wheel="$(new_venv "$wheels" "$VENV")"
    # torch's requirement as the wheel's `train` extra pins it (one home for the version: pyproject.toml)
    torch_req=$("$VENV/bin/python" -c '
import re, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    meta = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    text = wheel.read(meta).decode()
pins = re.findall(r"^Requires-Dist: (torch *== *[^; ]+) *;.*extra == .train.", text, re.MULTILINE)
if not pins:
    sys.exit("install.sh: the wheel train extra pins no torch version")
print(pins[0].replace(" ", ""))
' "$wheel")
    index=()
    [ -n "${TORCH_INDEX_URL:-}" ] && index=(--index-url "$TORCH_INDEX_URL")
    echo "install.sh: $torch_req from ${TORCH_INDEX_URL:-the configured index of pip}" >&2
    "$VENV/bin/python" -m pip install --quiet "${index[@]}" "$torch_req"
    "$VENV/bin/python" -m pip install --quiet "$wheel[train]"
    "$VENV/bin/python" - "$torch_req" <<'PY'
import sys, torch
want = sys.argv[1].split("==", 1)[1]
got = torch.__version__.split("+", 1)[0]
if got != want:
    sys.exit(f"install.sh: torch {torch.__version__} installed, {want} pinned")
print(f"install.sh: torch {torch.__version__} (cuda {torch.version.cuda or 'none'})", file=sys.stderr)
PY
    "$VENV/bin/townlet" train --help >/dev/null
    ;;
  serve)
    state="${TOWNLET_STATE_DIR:-$DATA/state}"
    snapshots="${TOWNLET_SNAPSHOT_DIR:-$DATA/snapshots}"
    mkdir -p "$state" "$snapshots"
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
  collect)
    args+=(--listen "${TOWNLET_SINK_LISTEN:-0.0.0.0:7010}" --out "${TOWNLET_SINK_DIR:-$DATA/telemetry}")
    cert="$(secret_or "${TOWNLET_SINK_CERT:-}" townlet_sink_cert)"
    key="$(secret_or "${TOWNLET_SINK_KEY:-}" townlet_sink_key)"
    [ -n "$cert" ] && [ -n "$key" ] && args+=(--tls-cert "$cert" --tls-key "$key")
    client_ca="$(secret_or "${TOWNLET_SINK_CLIENT_CA:-}" townlet_sink_client_ca)"
    [ -n "$client_ca" ] && args+=(--client-ca "$client_ca")
    [ "${TOWNLET_SINK_PLAINTEXT:-0}" = "1" ] && args+=(--allow-plaintext)
    [ -n "${TOWNLET_SINK_MAX_BYTES:-}" ] && args+=(--max-bytes "$TOWNLET_SINK_MAX_BYTES")
    [ -n "${TOWNLET_SINK_KEEP:-}" ] && args+=(--keep "$TOWNLET_SINK_KEEP")
    exec "$VENV/bin/townlet" telemetry collect "${args[@]}" "$@"
    ;;
  train)
    # A restarted trainer continues its run: --resume when the run directory has a latest.pt.
    common_args
    if [ "${TOWNLET_RESUME:-1}" = "1" ] && [ -f "$RUN_DIR/latest.pt" ]; then
      args+=(--resume "$RUN_DIR")
    else
      args+=(--out "$RUN_DIR")
    fi
    has_flag --steps "$@" || args+=(--steps "${TOWNLET_TRAIN_STEPS:-1000000}")
    exec "$VENV/bin/townlet" train "${args[@]}" "$@"
    ;;
  evaluate)
    # Scores the run's newest checkpoint (or TOWNLET_CHECKPOINT) and keeps the scorecard beside it.
    common_args
    if ! has_flag --checkpoint "$@" && ! has_flag --policy "$@"; then
      checkpoint="${TOWNLET_CHECKPOINT:-}"
      if [ -z "$checkpoint" ]; then
        checkpoint="$RUN_DIR/final.pt"; [ -f "$checkpoint" ] || checkpoint="$RUN_DIR/latest.pt"
      fi
      [ -f "$checkpoint" ] || { echo "install.sh: no checkpoint: $checkpoint (train first, or set TOWNLET_CHECKPOINT)" >&2; exit 2; }
      args+=(--checkpoint "$checkpoint")
    fi
    mkdir -p "$RUN_DIR"
    "$VENV/bin/townlet" evaluate "${args[@]}" --json "$@" | tee "$RUN_DIR/evaluation.json"
    ;;
  capture)
    common_args
    has_flag --out "$@" || args+=(--out "${TOWNLET_CAPTURE_DIR:-$DATA/capture}")
    exec "$VENV/bin/townlet" capture "${args[@]}" "$@"
    ;;
  townlet)
    exec "$VENV/bin/townlet" "$@"
    ;;
  *)
    echo "usage: install.sh build|install|install-train|serve|healthcheck|collect|train|evaluate|capture|townlet" >&2
    exit 2
    ;;
esac
