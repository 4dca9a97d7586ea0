#!/usr/bin/env bash
# The venv of the fake Azure ML (ARM) server that the azureml provider's tests start per test
# (providers/azureml/fake/fake_arm.py). Used by .ci/run and by developers:
#
#   .ci/azureml-fake.sh install   # create the venv and install azure-ai-ml (cached when present)
#   .ci/azureml-fake.sh env       # install if needed, then print `export MLCTL_AZ_FAKE_PY=...`
#   .ci/azureml-fake.sh test      # run the fake's own Python tests (contract + server)
#
# The Rust tests (providers/azureml/tests/common/fake.rs) read MLCTL_AZ_FAKE_PY and start their
# own fake on a free 127.0.0.1 port; this script starts no server.
# Settings: AZ_FAKE_VENV (<repo>/.emu/azureml-venv).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${AZ_FAKE_VENV:-$repo/.emu/azureml-venv}"
fake="$repo/providers/azureml/fake"
requirements="$fake/requirements.txt"
stamp="$venv/.installed-requirements"

log() { echo "azureml-fake: $*" >&2; }

install() {
  # Cached: the venv is reused while requirements.txt is unchanged.
  if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$stamp" "$requirements"; then
    return 0
  fi
  log "installing $(grep -v '^#' "$requirements" | tr '\n' ' ')into $venv"
  local started=$SECONDS
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  "$venv/bin/python" -c 'import azure.ai.ml._restclient.arm_ml_service.models' \
    || { log "azure-ai-ml installed but its arm_ml_service models do not import"; exit 1; }
  cp "$requirements" "$stamp"
  log "installed in $((SECONDS - started)) s"
}

case "${1:-}" in
  install) install ;;
  env) install; echo "export MLCTL_AZ_FAKE_PY=$venv/bin/python" ;;
  test) install; cd "$fake" && "$venv/bin/python" -m unittest -v ;;
  *) echo "usage: $0 {install|env|test}" >&2; exit 2 ;;
esac
