# Shared by the emulator scripts (.ci/sagemaker-emulator.sh, .ci/azurite.sh): start a server
# detached and wait until it answers, stop it by the pid it was started with (never by name).
# The caller defines `log` and `answers` (exit 0 once the server answers) and sets `pidfile`
# and `logfile`.

# emu_launch NAME TRIES CMD...: starts CMD under setsid (it outlives the script), then polls
# `answers` every 0.2 s up to TRIES times; exits 1 with the log's tail when it dies or stays
# silent.
emu_launch() {
  local name="$1" tries="$2"
  shift 2
  setsid "$@" >"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
  for _ in $(seq 1 "$tries"); do
    if answers; then return 0; fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      log "$name exited; last lines of its log:"
      tail -n 20 "$logfile" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
  if ! answers; then
    log "$name did not answer within $((tries / 5)) s"
    exit 1
  fi
}

# emu_stop NAME PORT: stops the server whose pid is in $pidfile (TERM, then KILL after 5 s).
emu_stop() {
  local name="$1" port="$2"
  if [ -f "$pidfile" ]; then
    local pid
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
      log "stopping $name (pid $pid)"
      kill "$pid" || true
      for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  else
    log "no server started by this script on port $port"
  fi
}
