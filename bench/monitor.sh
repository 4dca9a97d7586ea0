#!/usr/bin/env bash
# `mlctl monitor run` end to end over a large captured window, against Evidently on the same
# window: the iris example applied on the local target with capture at 100 %, wrk sending
# the 150 iris rows one per request for DURATION (about a million requests on 2 cores), then
#   - mlctl: `mlctl monitor run iris-drift --window N` (drift and the quality checks, from
#     the endpoint's mlcap files);
#   - Evidently: the same N records as `mlctl capture export` writes them (JSON lines, read
#     with pandas and flattened to one row per request), and DataDriftPreset against the
#     iris rows. The export is not timed.
# Prints the seconds and the peak RSS of each. The endpoint is destroyed at the end.
#
# Usage: bench/monitor.sh     (DURATION=10s VENV=/tmp/drift-venv MLCTL_BIN=)
# Needs: cargo, git, wrk, python3 (the venv gets numpy, pandas and evidently from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
DURATION="${DURATION:-10s}" VENV="${VENV:-/tmp/drift-venv}"
WORK="$(mktemp -d /tmp/mlctl-monitor.XXXXXX)"
MLCTL=""
cleanup() {
  if [ -n "$MLCTL" ] && [ -d "$WORK/iris" ]; then
    (cd "$WORK/iris" && "$MLCTL" destroy --auto-approve >/dev/null 2>&1) || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
if ! "$VENV/bin/python" -c 'import evidently, pandas, numpy' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q numpy 'pandas<3' evidently
fi
if [ -n "${MLCTL_BIN:-}" ]; then
  MLCTL="$MLCTL_BIN"
else
  cargo build -q --release -p mlctl-cli
  TARGET=$(cargo metadata -q --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  MLCTL="$TARGET/release/mlctl"
fi
cp -r examples/iris "$WORK/iris"
cd "$WORK/iris"
sed -i 's/samplingPercent: [0-9.]*/samplingPercent: 100/' ml/endpoint.yaml
git init -q && git add -A && git -c user.email=bench@mlctl -c user.name=bench commit -qm bench
"$MLCTL" apply --auto-approve >"$WORK/apply.log" 2>&1 || { cat "$WORK/apply.log"; exit 1; }
URL=$(grep -o 'http://127.0.0.1:[0-9]*' "$WORK/apply.log" | head -1)
python3 - "$WORK/rows.lua" <<'PY'
import csv, json, sys
rows = [[float(x) for x in r[:4]] for r in list(csv.reader(open("data/iris.csv")))[1:]]
cols = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
bodies = [json.dumps({"dataframe_split": {"columns": cols, "data": [r]}}) for r in rows]
with open(sys.argv[1], "w") as f:
    f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
    f.write("bodies = {" + ",".join(json.dumps(b) for b in bodies) + "}\n")
    f.write("i = 0\nrequest = function()\n  i = i % #bodies + 1\n"
            "  return wrk.format(nil, nil, nil, bodies[i])\nend\n")
PY
echo "== traffic: wrk -t2 -c16 -d$DURATION to $URL" >&2
N=$(wrk -t2 -c16 -d"$DURATION" -s "$WORK/rows.lua" "$URL/invocations" | awk '/requests in/ {print $1}')
echo "== $N requests sent; judging the newest $N" >&2
# Let the capture writer flush its last batch.
sleep 1
/usr/bin/time -f '%e %M' -o "$WORK/mlctl.time" "$MLCTL" monitor run iris-drift --window "$N" >"$WORK/mlctl.out" 2>&1 || true
"$MLCTL" capture export iris --window "$N" --out "$WORK/window.jsonl"
cat >"$WORK/evidently_window.py" <<'PY'
import json, sys, time
import pandas as pd
from evidently.legacy.metric_preset import DataDriftPreset
from evidently.legacy.pipeline.column_mapping import ColumnMapping
from evidently.legacy.report import Report
t0 = time.perf_counter()
records = pd.read_json(sys.argv[1], lines=True)
cols = records["columns"].iloc[0]
cur = pd.DataFrame([row for rows in records["rows"] for row in rows], columns=cols)
ref = pd.read_csv(sys.argv[2])[cols]
read = time.perf_counter() - t0
t1 = time.perf_counter()
report = Report(metrics=[DataDriftPreset()])
report.run(reference_data=ref, current_data=cur,
           column_mapping=ColumnMapping(target=None, numerical_features=cols, categorical_features=[]))
result = next(m["result"] for m in report.as_dict()["metrics"] if "drift_by_columns" in m["result"])
print(json.dumps({"rows": len(cur), "read_seconds": read, "drift_seconds": time.perf_counter() - t1,
                  "drifted": sorted(c for c, r in result["drift_by_columns"].items() if r["drift_detected"])}))
PY
/usr/bin/time -f '%e %M' -o "$WORK/evidently.time" "$VENV/bin/python" "$WORK/evidently_window.py" "$WORK/window.jsonl" data/iris.csv >"$WORK/evidently.json"
head -1 "$WORK/mlctl.out"
python3 - "$WORK/mlctl.time" "$WORK/evidently.time" "$WORK/evidently.json" <<'PY'
import json, sys
ms, mr = open(sys.argv[1]).read().split()[-2:]
es, er = open(sys.argv[2]).read().split()[-2:]
e = json.load(open(sys.argv[3]))
print(f"{'':10} {'seconds':>8} {'peak RSS MiB':>13}")
print(f"{'mlctl':10} {float(ms):8.2f} {int(mr) / 1024:13.0f}   (monitor run: read, drift, quality, report)")
print(f"{'Evidently':10} {float(es):8.2f} {int(er) / 1024:13.0f}   (read {e['read_seconds']:.2f} s, drift {e['drift_seconds']:.2f} s, {e['rows']} rows; drifted: {', '.join(e['drifted']) or 'none'})")
print(f"mlctl monitor run: {float(es) / float(ms):.1f}x Evidently's time, {int(er) / int(mr):.1f}x less memory")
PY
