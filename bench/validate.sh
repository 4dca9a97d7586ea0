#!/usr/bin/env bash
# Benchmark: `mlctl validate` on big manifests (DESIGN.md targets: a mapping of 100,000 keys
# under 1 s; a 50 MB manifest under 2 s and 300 MB peak memory).
#   bash bench/validate.sh
# Cases, each a project whose one TrainingJob (or many Datasets) makes the manifest big:
#   keys:  a script-mode job with 100,000 hyperparameters (one mapping of 100,000 keys)
#   docs:  50 MB of Dataset documents (about 26,000 of them, 1.1 million values)
#   list:  one category column whose 50 MB list holds half a million categories
# Wall time and peak RSS from /usr/bin/time (GNU time, installed with apt when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p mlctl-cli --no-default-features
MLCTL="${CARGO_TARGET_DIR:-$PWD/target}/release/mlctl"
if [ ! -x /usr/bin/time ]; then
  (apt-get update -qq && apt-get install -y -qq time) >/dev/null 2>&1 || true
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

project() {
  rm -rf "$dir/p" && mkdir -p "$dir/p/ml" "$dir/p/data" "$dir/p/src"
  printf 'x,y\n1,a\n' > "$dir/p/data/d.csv"
  printf 'apiVersion: mlctl/v1\nkind: Project\nmetadata: {name: bench}\nspec:\n  targets:\n    local: {provider: local}\n' > "$dir/p/mlctl.yaml"
}

run() {
  local what=$1
  local size
  size=$(du -sh "$dir/p/ml" | cut -f1)
  local rc=0
  /usr/bin/time -f "%e s wall, %M KB peak RSS" "$MLCTL" validate --project "$dir/p" >/dev/null 2>"$dir/err" || rc=$?
  echo "$what ($size): $(tail -n 1 "$dir/err")"
  # A time is only worth something if the project validated.
  if [ "$rc" -ne 0 ]; then
    echo "validate failed (exit $rc):"
    grep -m 3 '^error' "$dir/err" || true
    exit 1
  fi
}

project
python3 - "$dir/p/ml/train.yaml" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("apiVersion: mlctl/v1\nkind: TrainingJob\nmetadata: {name: t}\nspec:\n  dataset: d\n  command: python3 train.py\n  code: src/\n  hyperparameters:\n")
    for i in range(100_000):
        f.write(f"    h{i}: {i}\n")
    f.write("---\napiVersion: mlctl/v1\nkind: Dataset\nmetadata: {name: d}\nspec:\n  source: data/d.csv\n  target: y\n")
PY
run "one mapping of 100,000 keys"

project
python3 - "$dir/p/ml/data.yaml" <<'PY'
import sys
note = "x" * 1800
with open(sys.argv[1], "w") as f:
    i = 0
    while f.tell() < 50 * 1024 * 1024:
        f.write(f"---\napiVersion: mlctl/v1\nkind: Dataset\nmetadata:\n  name: d{i}\n  annotations: {{note: {note}}}\nspec:\n  source: data/d.csv\n  target: y\n  schema:\n    columns:\n      - {{name: x, type: int, min: 0, max: 10}}\n      - {{name: y, type: category, categories: [a, b]}}\n")
        i += 1
PY
run "50 MB of Dataset documents"

project
python3 - "$dir/p/ml/data.yaml" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("apiVersion: mlctl/v1\nkind: Dataset\nmetadata: {name: d}\nspec:\n  source: data/d.csv\n  target: y\n  schema:\n    columns:\n      - {name: x, type: int}\n      - name: y\n        type: category\n        categories:\n")
    i = 0
    while f.tell() < 50 * 1024 * 1024:
        f.write(f"          - category-{i:09d}-with-a-long-name-so-that-fifty-megabytes-is-half-a-million-items\n")
        i += 1
PY
run "one list of 50 MB (half a million categories)"
