#!/usr/bin/env bash
# Benchmark: `mlctl plan` with nothing to change on a generated 1,000-resource project
# (250 x Dataset/TrainingJob/Model/Endpoint; Monitors are refused until mlctl evaluates them)
# on the mock target, and `mlctl --version`. The plan includes the honoured-or-refused check
# of every field and the path checks. Target (DESIGN.md): plan under 100 ms, --version under
# 5 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-250}
cargo build --release -q -p mlctl-cli --no-default-features
MLCTL="${CARGO_TARGET_DIR:-$PWD/target}/release/mlctl"
if ! command -v hyperfine >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq hyperfine) >/dev/null 2>&1 || true
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
mkdir -p ml data
cat > mlctl.yaml <<YAML
apiVersion: mlctl/v1
kind: Project
metadata: {name: bench}
spec:
  defaultTarget: test
  targets:
    test: {provider: mock}
YAML
for i in $(seq 1 "$N"); do
  printf 'x,y\n1,a\n2,b\n3,a\n4,b\n' > "data/d$i.csv"
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
---
apiVersion: mlctl/v1
kind: Model
metadata: {name: m$i}
spec:
  from: t$i
  stage: production
  gates: [{metric: accuracy, min: 0.5}]
---
apiVersion: mlctl/v1
kind: Endpoint
metadata: {name: e$i}
spec:
  model: m$i
YAML
done
printf '.mlctl/\n' > .gitignore
git init -q && git add . && git -c user.name=bench -c user.email=bench@example.com commit -qm bench
echo "project: $((N * 4)) resources in $N files"
t0=$(date +%s.%N)
"$MLCTL" reconcile --concurrency 16 >/dev/null 2>&1
t1=$(date +%s.%N)
echo "first apply on the mock target: $(echo "$t1 - $t0" | bc) s"
"$MLCTL" plan --detailed-exitcode >/dev/null  # exits 0: nothing to do
if command -v hyperfine >/dev/null; then
  hyperfine -N --warmup 3 --runs 20 "$MLCTL plan" "$MLCTL --version" 2>&1 | grep -E "Benchmark|Time|Range"
else
  for cmd in "plan" "--version"; do
    t0=$(date +%s%N); for _ in $(seq 10); do "$MLCTL" $cmd >/dev/null; done; t1=$(date +%s%N)
    echo "mlctl $cmd: $(( (t1 - t0) / 10000000 )) ms (mean of 10)"
  done
fi
