#!/usr/bin/env bash
# mlctl-ml against its competitors, on the same generated data, in one run:
#   digest: mlctl (no cache, cold cache, warm cache) vs b3sum vs `dvc add` (1 GiB file, 10,000 small files)
#   training: built-in logistic regression / random forest vs scikit-learn (100k x 20, 3 classes)
# Prints a Markdown table with times and ratios (competitor time / mlctl time).
#
# Environment: BENCH_DIR (work dir, default /tmp/mlctl-bench), BENCH_VENV (Python venv with dvc,
# scikit-learn, pandas; created if missing), N_ESTIMATORS (default 100), FILE_MIB (default 1024),
# SMALL_FILES (default 10000), ROWS (default 100000).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="${BENCH_DIR:-/tmp/mlctl-bench}"
venv="${BENCH_VENV:-$work/venv}"
n_estimators="${N_ESTIMATORS:-100}"
file_mib="${FILE_MIB:-1024}"
small_files="${SMALL_FILES:-10000}"
rows="${ROWS:-100000}"
mkdir -p "$work"
results="$work/results.tsv"
: > "$results"

say() { printf '\n== %s\n' "$*" >&2; }

say "building the mlctl-ml bench binary (release)"
bin="$(cd "$repo" && cargo bench -p mlctl-ml --bench ml --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "ml":
        print(m["executable"])' | tail -1)"
[ -x "$bin" ] || { echo "bench binary not found" >&2; exit 1; }

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sklearn, pandas, dvc' 2>/dev/null; then
  say "creating the Python venv $venv (dvc, scikit-learn, pandas)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q dvc scikit-learn pandas
fi
py="$venv/bin/python"

if command -v b3sum >/dev/null; then
  b3sum="$(command -v b3sum)"
else
  b3sum="$work/b3sum-root/bin/b3sum"
  if [ ! -x "$b3sum" ]; then
    say "installing b3sum into $work/b3sum-root"
    cargo install -q b3sum --root "$work/b3sum-root"
  fi
fi

# seconds COMMAND...: wall time of a command, output discarded.
seconds() {
  "$py" - "$@" <<'EOF'
import subprocess, sys, time
t = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(f"{time.perf_counter() - t:.4f}")
EOF
}
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$results"; }  # group tool seconds note

say "generating data in $work"
repo_dvc="$work/dvcrepo"
rm -rf "$repo_dvc" "$work/table" "$work/cache"*.json
mkdir -p "$repo_dvc"
"$bin" gen-file "$repo_dvc/big.bin" "$file_mib"
"$bin" gen-dir "$repo_dvc/small" "$small_files"
"$bin" gen-table "$work/table" "$rows" 20 3
sync

say "digest: ${file_mib} MiB file"
record file "mlctl (no cache)" "$(seconds "$bin" digest "$repo_dvc/big.bin")" ""
record file "mlctl (cold cache)" "$(seconds "$bin" digest "$repo_dvc/big.bin" "$work/cache-file.json")" ""
record file "mlctl (warm cache, unchanged)" "$(seconds "$bin" digest "$repo_dvc/big.bin" "$work/cache-file.json")" ""
record file "b3sum" "$(seconds "$b3sum" "$repo_dvc/big.bin")" ""

say "digest: $small_files small files"
record dir "mlctl (no cache)" "$(seconds "$bin" digest "$repo_dvc/small")" ""
record dir "mlctl (cold cache)" "$(seconds "$bin" digest "$repo_dvc/small" "$work/cache-dir.json")" ""
record dir "mlctl (warm cache, unchanged)" "$(seconds "$bin" digest "$repo_dvc/small" "$work/cache-dir.json")" ""
record dir "b3sum (find | xargs)" "$(seconds bash -c "find '$repo_dvc/small' -type f -print0 | xargs -0 '$b3sum'")" ""

say "dvc add (this moves the data into dvc's cache: done last)"
(
  cd "$repo_dvc"
  export DVC_NO_ANALYTICS=1
  "$venv/bin/dvc" init --no-scm -q
  "$venv/bin/dvc" config core.analytics false
  "$venv/bin/dvc" config core.check_update false
)
record file "dvc add" "$(seconds bash -c "cd '$repo_dvc' && DVC_NO_ANALYTICS=1 '$venv/bin/dvc' add -q big.bin")" ""
record file "dvc add (again, unchanged)" "$(seconds bash -c "cd '$repo_dvc' && DVC_NO_ANALYTICS=1 '$venv/bin/dvc' add -q big.bin")" ""
record dir "dvc add" "$(seconds bash -c "cd '$repo_dvc' && DVC_NO_ANALYTICS=1 '$venv/bin/dvc' add -q small")" ""
record dir "dvc add (again, unchanged)" "$(seconds bash -c "cd '$repo_dvc' && DVC_NO_ANALYTICS=1 '$venv/bin/dvc' add -q small")" ""

say "training on $rows x 20 (3 classes), test on $((rows / 4)) rows"
for algo in logistic_regression random_forest; do
  m="$("$bin" fit "$algo" "$work/table/train.csv" "$work/table/test.csv" "$n_estimators")"
  s="$("$py" "$here/sk_fit.py" "$algo" "$work/table/train.csv" "$work/table/test.csv" "$n_estimators")"
  for pair in "mlctl:$m" "scikit-learn:$s"; do
    tool="${pair%%:*}"; json="${pair#*:}"
    fit="$("$py" -c 'import json,sys; print(json.loads(sys.argv[1])["fit_seconds"])' "$json")"
    acc="$("$py" -c 'import json,sys; print(json.loads(sys.argv[1])["accuracy"])' "$json")"
    record "$algo" "$tool" "$fit" "accuracy $acc"
  done
done

say "results"
"$py" - "$results" "$n_estimators" <<'EOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
groups = {}
for g, tool, secs, note in rows:
    groups.setdefault(g, []).append((tool, float(secs), note))
title = {"file": "Digest of a 1 GiB file", "dir": "Digest of 10,000 small files",
         "logistic_regression": "Logistic regression fit (100k x 20, 3 classes)",
         "random_forest": f"Random forest fit ({sys.argv[2]} trees, 100k x 20, 3 classes)"}
for g, items in groups.items():
    base = items[0][1]
    if g in ("logistic_regression", "random_forest"):
        base = [s for t, s, _ in items if t == "mlctl"][0]
    print(f"\n{title.get(g, g)}\n")
    print("| tool | seconds | vs mlctl | note |\n|---|---:|---:|---|")
    for tool, secs, note in items:
        ratio = secs / base if base > 0 else float("nan")
        print(f"| {tool} | {secs:.3f} | {ratio:.2f}x | {note} |")
EOF
