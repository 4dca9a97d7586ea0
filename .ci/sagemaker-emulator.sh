#!/usr/bin/env bash
# The moto server that the SageMaker provider's integration tests run against (S3 + SageMaker
# on one port). Used by .ci/run and by developers:
#
#   .ci/sagemaker-emulator.sh start    # install (once) into .venv-emu, start, wait until ready
#   .ci/sagemaker-emulator.sh stop     # stop the server this script started
#   .ci/sagemaker-emulator.sh status   # exit 0 when it answers
#   .ci/sagemaker-emulator.sh install  # only create the venv
#
# `start` prints `export MLCTL_MOTO_URL=...` (eval-able); the tests read that variable.
# Settings: MOTO_HOST (127.0.0.1), MOTO_PORT (5000), MOTO_VENV (<repo>/.venv-emu),
# MOTO_VERSION (pip requirement, default a 5.x release known to work here).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
host="${MOTO_HOST:-127.0.0.1}"
port="${MOTO_PORT:-5000}"
venv="${MOTO_VENV:-$repo/.venv-emu}"
version="${MOTO_VERSION:->=5.1,<6}"
url="http://$host:$port"
pidfile="$venv/moto-$port.pid"
logfile="$venv/moto-$port.log"

# shellcheck source=.ci/emulator-lib.sh
. "$repo/.ci/emulator-lib.sh"

log() { echo "sagemaker-emulator: $*" >&2; }

answers() {
  # moto's own API answers once the server is up; any HTTP status counts.
  python3 - "$url" <<'EOF' >/dev/null 2>&1
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1] + "/moto-api/data.json", timeout=2)
except urllib.error.HTTPError:
    pass
EOF
}

install() {
  if [ -x "$venv/bin/moto_server" ]; then
    return 0
  fi
  log "installing moto[server] into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]$version" boto3
}

start() {
  if answers; then
    log "a server already answers on $url; using it"
  else
    install
    log "starting moto_server on $url (log: $logfile)"
    emu_launch moto_server 100 "$venv/bin/moto_server" -H "$host" -p "$port"
  fi
  echo "export MLCTL_MOTO_URL=$url"
}

stop() {
  emu_stop moto_server "$port"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) if answers; then echo "up: $url"; else echo "down: $url"; exit 1; fi ;;
  *) echo "usage: $0 {start|stop|status|install}" >&2; exit 2 ;;
esac
