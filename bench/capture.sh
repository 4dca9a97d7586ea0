#!/usr/bin/env bash
# What data capture costs: `mlctl serve` with capture at 100% and without, and a bare axum
# server that only parses the JSON body (the ceiling; crates/serve/examples/bare_axum.rs),
# side by side in one run, with the same wrk load: 1 row and 100 rows (`dataframe_split`),
# 16 connections. Prints req/s and p99 of each, and the ratios the issue sets targets for:
# capture on / capture off (>= 0.95) and capture on / bare axum (>= 1.0).
#
# Usage: bench/capture.sh     (DURATION=10s THREADS=2 MLCTL_BIN=: an mlctl built beforehand)
# Needs: cargo, python3, wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10s}" THREADS="${THREADS:-2}"
WORK="$(mktemp -d /tmp/mlctl-capture.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
[ -n "${MLCTL_BIN:-}" ] || cargo build -q --release -p mlctl-cli
cargo build -q --release -p mlctl-serve --example portable_model --example bare_axum
TARGET=$(cargo metadata -q --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
MLCTL="${MLCTL_BIN:-$TARGET/release/mlctl}"
"$TARGET/release/examples/portable_model" examples/iris/data/iris.csv species "$WORK/model" >/dev/null
python3 - "$WORK" <<'PY'
import csv, json, sys
rows = [[float(x) for x in r[:4]] for r in list(csv.reader(open("examples/iris/data/iris.csv")))[1:]]
cols = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
for n in (1, 100):
    body = json.dumps({"dataframe_split": {"columns": cols, "data": (rows * 2)[:n]}})
    with open(f"{sys.argv[1]}/rows{n}.lua", "w") as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
        f.write("wrk.body = " + json.dumps(body) + "\n")
    with open(f"{sys.argv[1]}/rows{n}.json", "w") as f:
        f.write(body)
PY
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ready() { # url: waits until it answers a prediction
  for _ in $(seq 1 400); do
    curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary "@$WORK/rows1.json" "$1/invocations" && return
    sleep 0.05
  done
  echo "not ready: $1" >&2; exit 1
}
measure() { # url rows label
  wrk -t"$THREADS" -c16 -d2s -s "$WORK/rows$2.lua" "$1/invocations" >/dev/null
  local out; out=$(wrk -t"$THREADS" -c16 -d"$DURATION" --latency -s "$WORK/rows$2.lua" "$1/invocations")
  local rps p99; rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}'); p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  printf '%-26s %2s rows  %10.0f req/s  p99 %s\n' "$3" "$2" "$rps" "$p99"
  echo "$3 $2 $rps" >>"$WORK/results"
}
run_server() { # label, then the command
  local label=$1; shift
  local port; port=$(free_port)
  "$@" "$port" >"$WORK/$label.log" 2>&1 &
  PIDS+=($!)
  ready "http://127.0.0.1:$port"
  for n in 1 100; do measure "http://127.0.0.1:$port" "$n" "$label"; done
  # Records capture dropped under load (a capture that drops is cheaper than one that writes).
  local dropped; dropped=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^mlctl_capture_dropped_total/ {s += $2} END {print s + 0}')
  [ "$label" = "mlctl, capture 100%" ] && echo "$label: $dropped records dropped"
  kill -TERM "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
}
# `exec`, so the pid run_server keeps (and stops) is the server's own.
mlctl_with() { exec "$MLCTL" serve --model-dir "$WORK/model" --capture-dir "$WORK/capture" --capture-percent 100 --port "$1"; }
mlctl_without() { exec "$MLCTL" serve --model-dir "$WORK/model" --port "$1"; }
axum() { exec "$TARGET/release/examples/bare_axum" "$1"; }
echo "capture cost: $(nproc) cores, wrk -t$THREADS -c16 -d$DURATION, $(date -u +%Y-%m-%d)"
run_server "mlctl, capture 100%" mlctl_with
run_server "mlctl, no capture" mlctl_without
run_server "bare axum" axum
python3 - "$WORK/results" <<'PY'
import sys
r = {}
for line in open(sys.argv[1]):
    *label, rows, rps = line.split()
    r[(" ".join(label), rows)] = float(rps)
for rows in ("1", "100"):
    on, off, ax = r[("mlctl, capture 100%", rows)], r[("mlctl, no capture", rows)], r[("bare axum", rows)]
    print(f"{rows:>3} rows: capture on / off {on / off:.2f} (target >= 0.95), capture on / bare axum {on / ax:.2f} (target >= 1.0)")
PY
