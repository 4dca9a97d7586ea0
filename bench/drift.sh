#!/usr/bin/env bash
# Drift of 1,000,000 captured rows x 20 features against a 100,000-row baseline: mlctl's
# drift code (what `mlctl monitor run` calls) and Evidently's DataDriftPreset, side by side,
# each with Evidently's default method per column, on the same data. Prints the time of each
# (reading the CSVs apart), the peak RSS of each process, and whether the per-column verdicts
# agree.
#
# Usage: bench/drift.sh     (BASELINE=100000 CURRENT=1000000 VENV=/tmp/drift-venv)
# Needs: cargo, python3 (the venv gets numpy, pandas and evidently from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
BASELINE="${BASELINE:-100000}" CURRENT="${CURRENT:-1000000}" VENV="${VENV:-/tmp/drift-venv}"
WORK="$(mktemp -d /tmp/mlctl-drift.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
if ! "$VENV/bin/python" -c 'import evidently, pandas, numpy' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q numpy 'pandas<3' evidently
fi
echo "== data: $BASELINE baseline rows, $CURRENT current rows, 20 features" >&2
"$VENV/bin/python" bench/drift/gen.py "$WORK" "$BASELINE" "$CURRENT"
cargo build -q --release -p mlctl-ml --example drift_bench
TARGET=$(cargo metadata -q --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
peak() { # command...: its JSON on stdout, its peak RSS (KiB) in $WORK/rss
  /usr/bin/time -f %M -o "$WORK/rss" "$@"
}
peak "$TARGET/release/examples/drift_bench" "$WORK" >"$WORK/mlctl.json"
MLCTL_RSS=$(cat "$WORK/rss")
peak "$VENV/bin/python" bench/drift/evidently_drift.py "$WORK" >"$WORK/evidently.json"
EVIDENTLY_RSS=$(cat "$WORK/rss")
python3 - "$WORK/mlctl.json" "$WORK/evidently.json" "$MLCTL_RSS" "$EVIDENTLY_RSS" <<'PY'
import json, sys
m, e = (json.load(open(p)) for p in sys.argv[1:3])
mr, er = int(sys.argv[3]) / 1024, int(sys.argv[4]) / 1024
print(f"{'':10} {'read s':>8} {'drift s':>8} {'peak RSS MiB':>13}")
print(f"{'mlctl':10} {m['read_seconds']:8.2f} {m['drift_seconds']:8.3f} {mr:13.0f}")
print(f"{'Evidently':10} {e['read_seconds']:8.2f} {e['drift_seconds']:8.3f} {er:13.0f}")
print(f"drift: mlctl {e['drift_seconds'] / m['drift_seconds']:.1f}x faster than Evidently")
# Evidently's stattest names, in mlctl's words.
NAMES = {"Wasserstein distance (normed)": "wasserstein", "Jensen-Shannon distance": "jensen_shannon",
         "K-S p_value": "ks", "chi-square p_value": "chi_squared", "Z-test p_value": "z_test",
         "PSI": "psi", "L-infinity distance (normed)": "l_infinity"}
same = [c for c in e["columns"] if m["columns"][c]["drifted"] == e["columns"][c]["drifted"]
        and m["columns"][c]["method"] == NAMES.get(e["columns"][c]["method"], e["columns"][c]["method"])]
print(f"per-column methods and verdicts equal: {len(same)} of {len(e['columns'])}; drifted: "
      + ", ".join(c for c in e["columns"] if e["columns"][c]["drifted"]))
for c in e["columns"]:
    if c not in same:
        print(f"  {c}: mlctl {m['columns'][c]} / Evidently {e['columns'][c]}")
print(f"dataset drift: mlctl {m['dataset_drift']}, Evidently {e['dataset_drift']}")
PY
