#!/usr/bin/env bash
# mlctl watch: commit to serving, and the agent at rest.
#   1. commit -> serving via the webhook: from `git push` into the watched bare repository until
#      the iris endpoint answers with the new model version (target: under 5 s);
#   2. the same with polling only (--interval 10s: at most interval plus apply time);
#   3. the agent idle for 30 s: RSS (VmRSS) and CPU (utime+stime from /proc/<pid>/stat).
# Run it on an otherwise idle machine, once.
#
# Usage: bench/watch.sh     (needs cargo, git, curl)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p mlctl-cli
TARGET=$(cargo metadata -q --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
MLCTL="$TARGET/release/mlctl"
WORK="$(mktemp -d /tmp/mlctl-watch.XXXXXX)"
AGENT_PID=""
cleanup() {
  [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null || true
  for f in "$WORK"/agent/.mlctl/local/endpoints/*/endpoint.json; do
    [ -f "$f" ] || continue
    for pid in $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(" ".join(str(p["pid"]) for p in r.get("processes",[])))' "$f"); do
      kill -9 -- "-$pid" 2>/dev/null || true
    done
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
LISTEN=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
git init -q --bare -b main "$WORK/remote.git"
cp -r examples/iris "$WORK/work"
cd "$WORK/work"
sed -i "s/  port: 8765/  port: $PORT/" ml/endpoint.yaml
python3 - <<'PY'
import re
p = "ml/endpoint.yaml"
s = open(p).read()
s = re.sub(r"  strategy:\n(    .*\n|\s*#.*\n)*", "  strategy: {type: all-at-once}\n", s)
open(p, "w").write(s)
PY
echo ".mlctl/" > .gitignore
git init -q -b main && git config user.email b@example.com && git config user.name bench
git remote add origin "$WORK/remote.git"
git add -A && git commit -qm initial && git push -q origin main
export MLCTL_BENCH_HOOK=bench-secret
start_agent() { # interval
  "$MLCTL" -C "$WORK/agent" watch --repo "$WORK/remote.git" --interval "$1" \
    --listen "127.0.0.1:$LISTEN" --webhook-secret '${env:MLCTL_BENCH_HOOK}' 2>"$WORK/agent.log" &
  AGENT_PID=$!
}
served() { curl -s "http://127.0.0.1:$PORT/health" | python3 -c 'import json,sys; v=json.load(sys.stdin)["variants"]; print(max(v,key=lambda x:x["weight"])["version"])' 2>/dev/null || true; }
wait_version_change() { # old version -> seconds until another serves
  local old="$1" t0; t0=$(date +%s.%N)
  while [ "$(served)" = "$old" ] || [ -z "$(served)" ]; do sleep 0.05; done
  python3 -c "import time; print(f'{time.time() - $t0:.2f}')"
}
start_agent 10s
until [ -n "$(served)" ]; do sleep 0.2; done
echo "== first sync done (version $(served))"

C=0.5
next_commit() { C=$(python3 -c "print(round($C * 0.9, 4))"); sed -i "s/    C: .*/    C: $C/" ml/train.yaml; git commit -qam "C $C"; }
OLD=$(served); next_commit; git push -q origin main
curl -s -o /dev/null -X POST "http://127.0.0.1:$LISTEN/hooks/git" -H 'X-Gitlab-Event: Push Hook' -H "X-Gitlab-Token: $MLCTL_BENCH_HOOK" -d '{"ref":"refs/heads/main"}'
echo "commit -> serving, webhook: $(wait_version_change "$OLD") s (target: under 5 s)"

OLD=$(served); next_commit; git push -q origin main
echo "commit -> serving, polling (interval 10s): $(wait_version_change "$OLD") s (at most 10 s + apply)"

sleep 12 # let the last cycle end
ticks() { awk '{print $14 + $15}' "/proc/$AGENT_PID/stat"; }
T0=$(ticks); sleep 30; T1=$(ticks)
HZ=$(getconf CLK_TCK)
RSS=$(awk '/VmRSS/ {print $2}' "/proc/$AGENT_PID/status")
echo "idle 30 s (cycles every 10 s): RSS ${RSS} KiB (target under 30 MB), CPU $(python3 -c "print(f'{($T1 - $T0) / $HZ / 30 * 100:.2f}')") % of one core (target under 1 %)"
