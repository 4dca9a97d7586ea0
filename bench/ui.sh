#!/usr/bin/env bash
# Benchmark: the dashboard's server time (its `Server-Timing: render;dur=` header, which
# covers opening the project at HEAD, reading the target through the component traits and
# rendering) for a project of 200 resources and 10,000 runs on the local target. Target
# (issue 16): the overview under 200 ms.
#
# The project: 67 Datasets, 67 TrainingJobs and 66 Models (200 resources), applied for real
# on the local target (each job trains, each model is registered); then the runs table is
# filled to 10,000 runs with copies of the real runs (new ids), as a year of retraining
# would leave it. No endpoints: 50 serving processes would measure the machine, not the page.
#
# No competitor runs here: MLflow's UI renders in the browser from its REST API, so its server
# time for the same view is not one number (see bench/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
N_DATA=${N_DATA:-67}
RUNS=${RUNS:-10000}
REQUESTS=${REQUESTS:-30}
cargo build --release -q -p mlctl-cli --no-default-features
MLCTL="${CARGO_TARGET_DIR:-$PWD/target}/release/mlctl"
dir=$(mktemp -d)
ui_pid=""
cleanup() {
  [ -n "$ui_pid" ] && kill "$ui_pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
cd "$dir"
mkdir -p ml data
cat > mlctl.yaml <<YAML
apiVersion: mlctl/v1
kind: Project
metadata: {name: bench}
spec:
  defaultTarget: local
  targets:
    local: {provider: local}
YAML
for i in $(seq 1 "$N_DATA"); do
  printf 'x,z,y\n1,0.5,a\n2,0.1,b\n3,0.7,a\n4,0.2,b\n5,0.9,a\n6,0.3,b\n7,0.4,a\n8,0.8,b\n' > "data/d$i.csv"
  cat > "ml/r$i.yaml" <<YAML
apiVersion: mlctl/v1
kind: Dataset
metadata: {name: d$i}
spec:
  source: data/d$i.csv
  target: y
---
apiVersion: mlctl/v1
kind: TrainingJob
metadata: {name: t$i}
spec:
  dataset: d$i
  algorithm: logistic_regression
  hyperparameters: {C: 1.0}
YAML
  if [ "$i" -lt "$N_DATA" ]; then
    cat >> "ml/r$i.yaml" <<YAML
---
apiVersion: mlctl/v1
kind: Model
metadata: {name: m$i}
spec:
  from: t$i
  stage: production
YAML
  fi
done
printf '.mlctl/\n' > .gitignore
git init -q && git add . && git -c user.name=bench -c user.email=bench@example.com commit -qm bench
t0=$(date +%s.%N)
"$MLCTL" reconcile --concurrency 4 >/dev/null 2>&1
t1=$(date +%s.%N)
echo "project: $(ls ml | wc -l) files, $((N_DATA * 3 - 1)) resources; first apply on the local target: $(echo "$t1 - $t0" | bc) s"
python3 - "$RUNS" <<'PY'
import json, sqlite3, sys, uuid
want = int(sys.argv[1])
db = sqlite3.connect(".mlctl/local/state.db")
cols = [r[1] for r in db.execute("PRAGMA table_info(runs)") if r[1] != "seq"]
rows = db.execute(f"SELECT {','.join(cols)} FROM runs").fetchall()
have = len(rows)
i = 0
while have < want:
    row = dict(zip(cols, rows[i % len(rows)]))
    row["id"] = uuid.uuid4().hex[:16]
    row["parent"] = None
    params = json.loads(row["params"]); params["C"] = round(0.01 + (have % 100) / 10, 3)
    row["params"] = json.dumps(params)
    db.execute(f"INSERT INTO runs ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
               [row[c] for c in cols])
    have += 1; i += 1
db.commit()
print(f"runs: {db.execute('SELECT count(*) FROM runs').fetchone()[0]}")
PY
"$MLCTL" ui --port 0 > ui.out 2> ui.err &
ui_pid=$!
for _ in $(seq 100); do grep -q 'http://' ui.out 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://127.0.0.1:[0-9]*/' ui.out)
measure() {
  local path=$1
  local times=()
  for _ in $(seq "$REQUESTS"); do
    times+=("$(curl -s -D - -o /dev/null "$url$path" | tr -d '\r' | sed -n 's/^server-timing: render;dur=//p')")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v p="$path" '
    { v[NR] = $1; s += $1 }
    END { printf "| `%s` | %.1f | %.1f | %.1f |\n", p, v[int((NR + 1) / 2)], v[int(NR * 0.95 + 0.5)], s / NR }'
}
echo
echo "| page | median ms | p95 ms | mean ms |"
echo "|---|---:|---:|---:|"
measure "/"
measure "/graph"
measure "/runs"
measure "/runs?sort=metric:accuracy&dir=desc&page=50"
measure "/models/m1"
measure "/plan"
