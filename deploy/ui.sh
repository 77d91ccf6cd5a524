#!/usr/bin/env bash
# `make ui` / `make ui-stop`: a local Prefect server (SQLite, loopback), the work pools, every
# deployment in prefect.yaml and one process worker per pool. Stops exactly what it started:
# every process is started in its own session and its pid is kept in .ui/.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
state="$repo/.ui"
bin="$repo/.venv/bin"
host=127.0.0.1
port="${PHARMALANE_UI_PORT:-4200}"
export PREFECT_HOME="${PREFECT_HOME:-$repo/.prefect}" DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false
export PHARMALANE_REPO="$repo" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

start_bg() {  # name, command...: run in a new session, log to .ui/name.log, pid to .ui/name.pid
  local name=$1; shift
  setsid "$@" >"$state/$name.log" 2>&1 < /dev/null &
  echo $! >"$state/$name.pid"
}

start() {
  mkdir -p "$state"
  if [ -f "$state/server.pid" ] && kill -0 "$(cat "$state/server.pid")" 2>/dev/null; then
    echo "already running: http://$host:$port (make ui-stop first)"; exit 0
  fi
  start_bg server "$bin/prefect" server start --host "$host" --port "$port"
  export PREFECT_API_URL="http://$host:$port/api"
  for _ in $(seq 1 120); do
    curl -fsS "$PREFECT_API_URL/health" >/dev/null 2>&1 && break
    sleep 1
  done
  curl -fsS "$PREFECT_API_URL/health" >/dev/null || { echo "server did not start; see $state/server.log"; exit 1; }
  for pool in batch stream; do
    "$bin/prefect" work-pool create "$pool" --type process --overwrite >/dev/null
  done
  # every global concurrency limit a lane acquires (the triage lane's, held strictly, and the
  # model-call rate limits of configs/budgets.yaml), made by the lanes' own code; idempotent
  limits=$(cd "$repo" && "$bin/python" deploy/concurrency_limits.py) \
    || { echo "could not create the concurrency limits"; exit 1; }
  (cd "$repo" && "$bin/prefect" --no-prompt deploy --all) >"$state/deploy.log" 2>&1 \
    || { echo "deploy failed; see $state/deploy.log"; exit 1; }
  for pool in batch stream; do
    start_bg "worker-$pool" "$bin/prefect" worker start --pool "$pool"
  done
  echo "Prefect UI: http://$host:$port  (deployments: $(grep -c '^  - name:' "$repo/prefect.yaml"); logs in .ui/)"
  echo "concurrency limits: $(echo $limits)"
}

stop_one() {  # a worker wants two SIGINTs to stop; then make sure its whole session is gone
  local pidfile=$1 pid
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -INT -- "-$pid" 2>/dev/null || true; sleep 1
    kill -INT -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -TERM -- "-$pid" 2>/dev/null || true; sleep 1
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

stop() {
  [ -d "$state" ] || { echo "nothing to stop"; return; }
  for pidfile in "$state"/worker-*.pid "$state"/server.pid; do
    [ -f "$pidfile" ] && stop_one "$pidfile"
  done
  echo "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop"; exit 2 ;;
esac
