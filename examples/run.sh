#!/usr/bin/env bash
# Build mlctl and run an example project end to end on the local target:
#   bash examples/run.sh [iris|housing]
# The project is scaffolded into a new directory (MLCTL_EXAMPLE_DIR, default a temp dir),
# committed to a fresh git repository, and applied: data registered and validated, the model
# trained, evaluated, gated and registered, and (iris) served on http://127.0.0.1:8765.
set -euo pipefail
example="${1:-iris}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The local and mock targets only: the cloud providers' SDKs are most of a full build (build
# them with `cargo build --release -p mlctl-cli`, whose default features include sagemaker).
cargo build --release -p mlctl-cli --no-default-features --manifest-path "$repo/Cargo.toml"
mlctl="${CARGO_TARGET_DIR:-$repo/target}/release/mlctl"
dir="${MLCTL_EXAMPLE_DIR:-$(mktemp -d)/$example}"
"$mlctl" init --example "$example" "$dir"
cd "$dir"
git init -q
git add -A
git -c user.name=mlctl -c user.email=mlctl@localhost commit -qm "$example example"
"$mlctl" apply --auto-approve
echo
"$mlctl" status
if [ "$example" = iris ]; then
  echo
  echo "The iris endpoint answers on 127.0.0.1:8765:"
  echo "  curl -s -X POST http://127.0.0.1:8765/invocations -H 'Content-Type: application/json' -d '{\"instances\": [[5.1, 3.5, 1.4, 0.2]]}'"
  curl -s -X POST http://127.0.0.1:8765/invocations -H 'Content-Type: application/json' -d '{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}'
  echo
fi
echo
echo "Project: $dir"
echo "Change a hyperparameter in $dir/ml/train.yaml, commit, and run \`$mlctl plan\` to see what retrains."
echo "Stop everything with: (cd $dir && $mlctl destroy --auto-approve)"
