#!/usr/bin/env bash
# An MLflow tracking server for the tests of `tracking: {provider: mlflow}` (tests/e2e/mlflow.rs),
# and the Python packages the MLflow and Kubeflow tests read mlctl's output with (mlflow,
# scikit-learn, kfp, kfp-pipeline-spec). Used by .ci/run and by developers:
#
#   .ci/mlflow.sh start    # install (once) into .venv-mlflow, start the server, wait until ready
#   .ci/mlflow.sh stop     # stop the server this script started
#   .ci/mlflow.sh env      # print the exports without starting anything
#   .ci/mlflow.sh install  # only create the venv
#
# `start` prints `export MLCTL_MLFLOW_URL=... MLCTL_MLFLOW_PY=... MLCTL_MLFLOW_BIN=...`
# (eval-able). The server keeps its runs in SQLite (the model registry needs a database) and
# proxies artifacts (`--artifacts-destination`), both under the venv.
# Settings: MLFLOW_HOST (127.0.0.1), MLFLOW_PORT (5001), MLFLOW_VENV (<repo>/.venv-mlflow).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
host="${MLFLOW_HOST:-127.0.0.1}"
port="${MLFLOW_PORT:-5001}"
venv="${MLFLOW_VENV:-$repo/.venv-mlflow}"
url="http://$host:$port"
pidfile="$venv/mlflow-$port.pid"
logfile="$venv/mlflow-$port.log"
data="$venv/server-$port"

# shellcheck source=.ci/emulator-lib.sh
. "$repo/.ci/emulator-lib.sh"

log() { echo "mlflow: $*" >&2; }

answers() {
  python3 - "$url" <<'PY' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/health", timeout=2)
PY
}

install() {
  if [ -x "$venv/bin/mlflow" ] && "$venv/bin/python" -c "import kfp, sklearn" 2>/dev/null; then
    return 0
  fi
  log "installing mlflow, scikit-learn, kfp and kfp-pipeline-spec into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "mlflow==3.17.2" "scikit-learn>=1.5" "kfp==2.17.3" "kfp-pipeline-spec==2.17.3"
}

env_lines() {
  echo "export MLCTL_MLFLOW_URL=$url MLCTL_MLFLOW_PY=$venv/bin/python MLCTL_MLFLOW_BIN=$venv/bin/mlflow"
}

start() {
  install
  if answers; then
    log "a server already answers on $url; using it"
  else
    mkdir -p "$data/artifacts"
    log "starting mlflow server on $url (log: $logfile)"
    # 300 tries of 0.2 s: a first start creates the SQLite schema (alembic migrations).
    emu_launch "mlflow server" 300 "$venv/bin/mlflow" server --host "$host" --port "$port" \
      --workers 1 --backend-store-uri "sqlite:///$data/mlflow.db" \
      --artifacts-destination "$data/artifacts"
  fi
  env_lines
}

# `mlflow server` runs uvicorn as a child: the whole process group (setsid made the server its
# leader) is stopped, TERM then KILL after 5 s.
stop() {
  if [ ! -f "$pidfile" ]; then
    log "no server started by this script on port $port"
    return 0
  fi
  local pid
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping mlflow server (process group $pid)"
    kill -- "-$pid" 2>/dev/null || kill "$pid" || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  env) env_lines ;;
  status) if answers; then echo "up: $url"; else echo "down: $url"; exit 1; fi ;;
  *) echo "usage: $0 {start|stop|env|status|install}" >&2; exit 2 ;;
esac
