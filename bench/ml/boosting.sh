#!/usr/bin/env bash
# Gradient boosting fit: mlctl's built-in against LightGBM and scikit-learn's
# HistGradientBoosting on the same generated data, in one run, at equal settings
# (ROUNDS rounds, depth DEPTH, learning rate 0.1, 2^DEPTH leaves, 255 bins, 2 threads).
# Cases: 3 classes, 2 classes and regression at ROWS rows, and 3 classes at BIG_ROWS rows.
# Each tool fits each case REPEATS times in turn (interleaved, so machine noise falls on all);
# the table shows the median fit time, the ratio to LightGBM's, the test score and the peak
# RSS of the whole process (reading the CSV included).
#
# Environment: BENCH_DIR (default /tmp/mlctl-bench), BENCH_VENV (venv with lightgbm,
# scikit-learn, pandas; created if missing), ROWS (100000), BIG_ROWS (1000000; 0 skips it),
# ROUNDS (100), DEPTH (3), REPEATS (3).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="${BENCH_DIR:-/tmp/mlctl-bench}"
venv="${BENCH_VENV:-$work/venv-boosting}"
rows="${ROWS:-100000}"
big_rows="${BIG_ROWS:-1000000}"
rounds="${ROUNDS:-100}"
depth="${DEPTH:-3}"
repeats="${REPEATS:-3}"
mkdir -p "$work"

say() { printf '\n== %s\n' "$*" >&2; }

say "building the mlctl-ml bench binary (release)"
bin="$(cd "$repo" && cargo bench -p mlctl-ml --bench ml --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "ml":
        print(m["executable"])' | tail -1)"
[ -x "$bin" ] || { echo "bench binary not found" >&2; exit 1; }

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import lightgbm, sklearn, pandas' 2>/dev/null; then
  say "creating the Python venv $venv (lightgbm, scikit-learn, pandas)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q lightgbm scikit-learn pandas
fi
py="$venv/bin/python"

cases=("multiclass:$rows:3" "binary:$rows:2" "regression:$rows:0")
[ "$big_rows" != 0 ] && cases+=("multiclass:$big_rows:3")

results="$work/boosting.tsv"
: > "$results"
for c in "${cases[@]}"; do
  IFS=: read -r name n classes <<< "$c"
  dir="$work/boost-$name-$n"
  if [ ! -f "$dir/train.csv" ]; then
    say "generating $name data, $n rows x 20 features"
    "$bin" gen-table "$dir" "$n" 20 "$classes" > /dev/null
  fi
  for r in $(seq "$repeats"); do
    say "$name $n rows, repeat $r"
    for tool in mlctl lightgbm hist; do
      if [ "$tool" = mlctl ]; then
        cmd=("$bin" fit gradient_boosting "$dir/train.csv" "$dir/test.csv" "$rounds" "{\"max_depth\": $depth}")
      else
        cmd=("$py" "$here/lgb_fit.py" "$tool" "$dir/train.csv" "$dir/test.csv" "$rounds" "$depth" 0.1)
      fi
      out="$(/usr/bin/time -f 'RSS %M' "${cmd[@]}" 2>"$work/time.txt" | tail -1)"
      rss="$(awk '/^RSS/ {print $2}' "$work/time.txt")"
      printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$n" "$tool" "$rss" "$out" >> "$results"
    done
  done
done

"$py" - "$results" <<'EOF'
import json, statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    name, n, tool, rss, out = line.rstrip("\n").split("\t", 4)
    runs[(name, int(n), tool)].append((json.loads(out), int(rss)))
print("| case | rows | tool | fit seconds (median) | vs LightGBM | test score | peak RSS |")
print("|---|---:|---|---:|---:|---:|---:|")
seen = []
for (name, n, _) in runs:
    if (name, n) not in seen:
        seen.append((name, n))
names = {"mlctl": "mlctl `gradient_boosting`", "lightgbm": "LightGBM", "hist": "scikit-learn HistGradientBoosting"}
for name, n in seen:
    lgb = statistics.median(o["fit_seconds"] for o, _ in runs[(name, n, "lightgbm")])
    for tool in ["mlctl", "lightgbm", "hist"]:
        rs = runs[(name, n, tool)]
        fit = statistics.median(o["fit_seconds"] for o, _ in rs)
        o = rs[0][0]
        score = f"accuracy {o['accuracy']:.4f}" if "accuracy" in o else f"R² {o['r2']:.4f}"
        rss = max(r for _, r in rs) / 1024
        print(f"| {name} | {n:,} | {names[tool]} | {fit:.2f} | {fit / lgb:.2f}x | {score} | {rss:.0f} MiB |")
EOF
