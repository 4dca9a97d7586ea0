#!/usr/bin/env bash
# Azurite (the Azure Blob Storage emulator) that the azureml provider's blob tests run against.
# Used by .ci/run and by developers:
#
#   .ci/azurite.sh start    # install (once) into .emu/azurite, start, wait until ready
#   .ci/azurite.sh stop     # stop the server this script started
#   .ci/azurite.sh status   # exit 0 when it answers
#   .ci/azurite.sh install  # only install
#
# `start` prints `export MLCTL_AZURITE_URL=http://HOST:PORT/devstoreaccount1` (eval-able); the
# tests read that variable. Settings: AZURITE_HOST (127.0.0.1), AZURITE_PORT (10000),
# AZURITE_DIR (<repo>/.emu/azurite), AZURITE_VERSION (npm spec, default azurite@3).
# The server keeps everything in memory and never phones home (--disableTelemetry).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
host="${AZURITE_HOST:-127.0.0.1}"
port="${AZURITE_PORT:-10000}"
dir="${AZURITE_DIR:-$repo/.emu/azurite}"
version="${AZURITE_VERSION:-azurite@3}"
url="http://$host:$port/devstoreaccount1"
bin="$dir/node_modules/.bin/azurite-blob"
pidfile="$dir/azurite-$port.pid"
logfile="$dir/azurite-$port.log"

# shellcheck source=.ci/emulator-lib.sh
. "$repo/.ci/emulator-lib.sh"

log() { echo "azurite: $*" >&2; }

answers() {
  # An unsigned request to the account answers (400/403) once the server is up; any HTTP
  # status counts.
  python3 - "$url" <<'PY' >/dev/null 2>&1
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1] + "?comp=list", timeout=2)
except urllib.error.HTTPError:
    pass
PY
}

install() {
  if [ -x "$bin" ]; then
    return 0
  fi
  command -v npm >/dev/null || { log "npm is not installed (Node 18+ is needed for Azurite)"; exit 1; }
  log "installing $version into $dir"
  mkdir -p "$dir"
  npm install --prefix "$dir" "$version" --no-audit --no-fund --loglevel=error >&2
}

start() {
  if answers; then
    log "a server already answers on $url; using it"
  else
    install
    log "starting azurite-blob on $host:$port (log: $logfile)"
    emu_launch azurite-blob 150 "$bin" --blobHost "$host" --blobPort "$port" --inMemoryPersistence --loose \
      --skipApiVersionCheck --disableTelemetry
  fi
  echo "export MLCTL_AZURITE_URL=$url"
}

stop() {
  emu_stop azurite-blob "$port"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) if answers; then echo "up: $url"; else echo "down: $url"; exit 1; fi ;;
  *) echo "usage: $0 {start|stop|status|install}" >&2; exit 2 ;;
esac
