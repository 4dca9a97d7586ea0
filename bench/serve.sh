#!/usr/bin/env bash
# Serving benchmark: `mlctl serve` against `mlflow models serve`, same machine, same data, same
# load, in one go.
#
# Both serve a logistic regression trained on examples/iris/data/iris.csv (scikit-learn +
# mlflow.sklearn.save_model for MLflow; mlctl's built-in logistic regression saved as a
# portable model for mlctl). wrk sends the same bodies to both:
#   - 1 row and 100 rows (`dataframe_split`, which both accept), 16 connections;
#   - 1 row, 1 connection (latency without queueing).
# mlctl runs with metrics (always on) and data capture at 100% (the heaviest setting);
# a second mlctl run without capture is printed for reference.
#
# Usage: bench/serve.sh            (DURATION=10s THREADS=2 VENV=/tmp/mlctl-bench-venv)
# Needs: cargo, python3 (the script installs wrk with apt-get and mlflow with pip into VENV).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION="${DURATION:-10s}"
THREADS="${THREADS:-2}"
VENV="${VENV:-/tmp/mlctl-bench-venv}"
WORK="$(mktemp -d /tmp/mlctl-bench-serve.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do
    # Each server runs in its own process group (setsid): stop the whole group.
    kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true
  done
  sleep 1
  for p in "${PIDS[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf '\n== %s\n' "$*" >&2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Milliseconds until GET $1/ping answers 200 (started at $2 = date +%s%N), or fail after $3 s.
wait_ready() {
  local url=$1 t0=$2 limit=${3:-120} deadline=$(( $(date +%s) + ${3:-120} ))
  until curl -sf -o /dev/null "$url/ping"; do
    if [ "$(date +%s)" -gt "$deadline" ]; then echo "server at $url not ready after ${limit}s" >&2; return 1; fi
    sleep 0.005
  done
  echo $(( ($(date +%s%N) - t0) / 1000000 ))
}

# --- tools --------------------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
  log "installing wrk"
  (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
fi
if [ ! -x "$VENV/bin/mlflow" ]; then
  log "installing mlflow + scikit-learn into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q mlflow scikit-learn pandas
fi
log "building mlctl (release)"
cargo build -q --release -p mlctl-cli
cargo build -q --release -p mlctl-serve --example portable_model
MLCTL="$ROOT/target/release/mlctl"

# --- models -------------------------------------------------------------------------------
log "training both models on examples/iris/data/iris.csv"
"$ROOT/target/release/examples/portable_model" examples/iris/data/iris.csv species "$WORK/mlctl-model" >/dev/null
"$VENV/bin/python" - "$WORK/mlflow-model" <<'EOF'
import sys, warnings
warnings.filterwarnings("ignore")
import pandas as pd, mlflow.sklearn
from sklearn.linear_model import LogisticRegression
df = pd.read_csv("examples/iris/data/iris.csv")
X, y = df.drop(columns=["species"]), df["species"]
model = LogisticRegression(max_iter=200).fit(X, y)
mlflow.sklearn.save_model(model, sys.argv[1])
EOF

# --- bodies -------------------------------------------------------------------------------
python3 - "$WORK" <<'EOF'
import csv, json, sys
rows = [[float(x) for x in r[:4]] for r in list(csv.reader(open("examples/iris/data/iris.csv")))[1:]]
cols = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
for n in (1, 100):
    body = json.dumps({"dataframe_split": {"columns": cols, "data": rows[:n]}})
    with open(f"{sys.argv[1]}/rows{n}.lua", "w") as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
        f.write("wrk.body = " + json.dumps(body) + "\n")
    with open(f"{sys.argv[1]}/rows{n}.json", "w") as f:
        f.write(body)
EOF

# --- servers ------------------------------------------------------------------------------
start_mlctl() { # $@ = extra args; sets URL and READY (ms)
  local port; port=$(free_port)
  local t0; t0=$(date +%s%N)
  setsid "$MLCTL" serve --model-dir "$WORK/mlctl-model" --port "$port" "$@" >"$WORK/mlctl-$port.log" 2>&1 &
  PIDS+=($!)
  URL="http://127.0.0.1:$port"
  READY=$(wait_ready "$URL" "$t0" 30)
}
stop_last() { local p=${PIDS[-1]}; kill -TERM -- "-$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; }

# Runs wrk; prints "req/s p50 p99 non2xx".
load() { # $1 url, $2 body (rows1|rows100), $3 connections
  local threads=$THREADS
  [ "$3" -lt "$threads" ] && threads=$3
  local out; out=$(wrk -t"$threads" -c"$3" -d"$DURATION" --latency -s "$WORK/$2.lua" "$1/invocations")
  echo "$out" >>"$WORK/wrk.log"
  local rps p50 p99 bad
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  bad=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  echo "$rps $p50 $p99 ${bad:-0}"
}

check_answer() { # $1 url: one request must predict setosa
  local a; a=$(curl -sf "$1/invocations" -H 'Content-Type: application/json' --data-binary @"$WORK/rows1.json")
  case "$a" in *setosa*) ;; *) echo "unexpected answer from $1: $a" >&2; exit 1 ;; esac
}

declare -A R
run_suite() { # $1 name, $2 url
  check_answer "$2"
  # Warm-up, not counted.
  wrk -t1 -c4 -d2s -s "$WORK/rows1.lua" "$2/invocations" >/dev/null
  R[$1,1x16]=$(load "$2" rows1 16)
  R[$1,100x16]=$(load "$2" rows100 16)
  R[$1,1x1]=$(load "$2" rows1 1)
}

log "mlctl serve (metrics + capture 100%)"
start_mlctl --capture-dir "$WORK/capture" --capture-percent 100
READY_MLCTL=$READY
run_suite mlctl "$URL"
METRICS=$(curl -sf "$URL/metrics")
SERVED=$(echo "$METRICS" | awk '/^mlctl_requests_total/ {n += $2} END {print n}')
DROPPED=$(echo "$METRICS" | awk '/^mlctl_capture_dropped_total/ {print $2}')
stop_last
CAPTURED=$("$MLCTL" capture export --dir "$WORK/capture" 2>/dev/null | wc -l)

log "mlctl serve (metrics, no capture)"
start_mlctl
run_suite mlctl_nocap "$URL"
stop_last

log "mlflow models serve --env-manager local"
PORT=$(free_port)
T0=$(date +%s%N)
PATH="$VENV/bin:$PATH" setsid "$VENV/bin/mlflow" models serve -m "$WORK/mlflow-model" --env-manager local --host 127.0.0.1 -p "$PORT" >"$WORK/mlflow.log" 2>&1 &
PIDS+=($!)
READY_MLFLOW=$(wait_ready "http://127.0.0.1:$PORT" "$T0" 300)
run_suite mlflow "http://127.0.0.1:$PORT"
stop_last

# --- report -------------------------------------------------------------------------------
field() { echo "${R[$1,$2]}" | awk -v i="$3" '{print $i}'; }
ratio() { python3 -c "print(f'{float(\"$1\")/float(\"$2\"):.0f}x')"; }
echo
echo "Serving benchmark: $(nproc) cores, wrk -t$THREADS -d$DURATION, $(date -u +%Y-%m-%d)"
echo "mlflow $("$VENV/bin/python" -c 'import mlflow; print(mlflow.__version__)'), scikit-learn $("$VENV/bin/python" -c 'import sklearn; print(sklearn.__version__)'), $("$MLCTL" --version)"
echo
printf '%-34s %12s %10s %10s %8s\n' "server / load" "req/s" "p50" "p99" "non-2xx"
for s in mlctl mlctl_nocap mlflow; do
  for l in 1x16 100x16 1x1; do
    case $l in 1x16) d="1 row, 16 conns" ;; 100x16) d="100 rows, 16 conns" ;; 1x1) d="1 row, 1 conn" ;; esac
    printf '%-34s %12s %10s %10s %8s\n' "$s: $d" "$(field $s $l 1)" "$(field $s $l 2)" "$(field $s $l 3)" "$(field $s $l 4)"
  done
done
echo
for l in 1x16 100x16 1x1; do
  echo "req/s ratio mlctl (capture on) / mlflow, $l: $(ratio "$(field mlctl $l 1)" "$(field mlflow $l 1)")"
done
echo "ready: mlctl ${READY_MLCTL} ms, mlflow ${READY_MLFLOW} ms (spawn to first 200 on /ping, incl. curl polling)"
echo "capture (mlctl, 100%): $SERVED requests, $DROPPED records dropped (writer behind); $CAPTURED newest lines kept by rotation (8 files of 64 MiB + the current one)"
