#!/usr/bin/env bash
# Soak: a local endpoint under mixed traffic for a while, with model swaps (issue 11).
#
# The iris example is applied on the local target (all-at-once rollouts; the endpoint's
# `server:` timeouts and connection cap set from HEADER, IDLE, BODY and MAXCONN). Then, for
# DURATION seconds, a Python asyncio driver (standard library only) runs at once:
#   - valid clients: keep-alive POST /invocations with a 1-row body, back to back;
#   - malformed clients: broken JSON, a wrong content type, GET /invocations, an unknown route,
#     a body over the limit (each must get a 4xx with the JSON error shape, never a 5xx);
#   - slowloris clients: a request head sent one byte per second (reopened when cut off);
#   - idle clients: one request, then silence on the keep-alive connection (reopened when cut);
#   - stalled bodies: a Content-Length promising more than is sent;
# while SWAPS model swaps run, evenly spaced: each commits a new hyperparameter and runs
# `mlctl apply`, which trains, registers and rolls out a new model version to the endpoint
# under load.
# It prints what each kind got (statuses, connections the server closed; a valid request that
# got no answer counts as an error), the 5xx count, the swaps that applied, and the server's
# RSS and open file descriptors at the start, after the warm-up (WARMUP seconds), half way
# through, at the end of the load and after the idle timeout (back to where it started:
# nothing leaked), with the RSS at the end against the warm-up's.
#
# Usage: bench/soak.sh      (DURATION=600 SWAPS=30 WARMUP=60 PROFILE=release MLCTL_BIN= HEADER=2s
#                            IDLE=5s BODY=2s MAXCONN=256 CAPTURE=1 VALID=8 MALFORMED=4
#                            SLOW=50 IDLERS=100 STALLED=10)
# Needs: cargo, git, python3, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
DURATION="${DURATION:-600}" SWAPS="${SWAPS:-30}" WARMUP="${WARMUP:-60}"
PROFILE="${PROFILE:-release}"
HEADER="${HEADER:-2s}" IDLE="${IDLE:-5s}" BODY="${BODY:-2s}" MAXCONN="${MAXCONN:-256}"
CAPTURE="${CAPTURE:-1}"
export VALID="${VALID:-8}" MALFORMED="${MALFORMED:-4}" SLOW="${SLOW:-50}" IDLERS="${IDLERS:-100}" STALLED="${STALLED:-10}"
WORK="$(mktemp -d /tmp/mlctl-soak.XXXXXX)"
P="$WORK/project"
MLCTL=""
cleanup() {
  if [ -n "$MLCTL" ] && [ -d "$P/.mlctl" ]; then
    (cd "$P" && "$MLCTL" destroy --auto-approve >/dev/null 2>&1) || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
log() { printf '== %s\n' "$*" >&2; }

if [ -n "${MLCTL_BIN:-}" ]; then
  MLCTL="$MLCTL_BIN" # an mlctl built beforehand (say, of another commit)
else
  flag=(); [ "$PROFILE" = release ] && flag=(--release)
  log "building mlctl ($PROFILE)"
  cargo build -q "${flag[@]}" -p mlctl-cli
  TARGET=$(cargo metadata -q --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  MLCTL="$TARGET/$([ "$PROFILE" = release ] && echo release || echo debug)/mlctl"
fi

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cp -r "$REPO/examples/iris" "$P"
# The endpoint: this port, all-at-once swaps, the server limits under test.
python3 -c '
import sys
path, port, header, idle, body, cap, capture = sys.argv[1:]
spec = open(path).read().replace("port: 8765", "port: " + port)
spec = spec[:spec.index("  strategy:")] + (
    "  strategy: {type: all-at-once}\n"
    "  server: {headerTimeout: %s, idleTimeout: %s, bodyTimeout: %s, maxConnections: %s}\n"
    "  capture:\n    samplingPercent: %s\n" % (header, idle, body, cap, capture))
open(path, "w").write(spec)
' "$P/ml/endpoint.yaml" "$PORT" "$HEADER" "$IDLE" "$BODY" "$MAXCONN" "$CAPTURE"
cd "$P"
printf '.mlctl/\n' >.gitignore
git init -q -b main
git add -A
git -c user.email=soak@example.com -c user.name=soak commit -qm soak
log "applying the iris example on port $PORT"
"$MLCTL" apply --auto-approve >"$WORK/apply-0.log" 2>&1 || { cat "$WORK/apply-0.log"; exit 1; }
for _ in $(seq 1 300); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/ping" && break; sleep 0.05; done
PID=$(head -1 .mlctl/local/endpoints/iris/serve.pid)

sample() { # $1 label: RSS and fds of the server
  local rss fds
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
  fds=$(ls "/proc/$PID/fd" | wc -l)
  printf '%-22s RSS %6d KiB   fds %5d   pid %s\n' "$1" "$rss" "$fds" "$PID"
}
rss() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }
START=$(sample "start")
log "soaking for ${DURATION}s on port $PORT"
python3 - "$PORT" "$DURATION" >"$WORK/driver.txt" <<'EOF' &
import asyncio, collections, os, sys, time
port, duration = int(sys.argv[1]), float(sys.argv[2])
n = {k: int(os.environ[k]) for k in ("VALID", "MALFORMED", "SLOW", "IDLERS", "STALLED")}
stats = collections.defaultdict(collections.Counter)
held = collections.defaultdict(float)  # longest a connection of each kind stayed open
end = time.monotonic() + duration
ROW = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'

def post(body, ct=b"application/json", path=b"/invocations", method=b"POST"):
    return (method + b" " + path + b" HTTP/1.1\r\nhost: soak\r\ncontent-type: " + ct +
            b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

async def answer(r):
    head = await r.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    body = await r.readexactly(length)
    return status, body

async def conn():
    return await asyncio.open_connection("127.0.0.1", port)

async def valid():
    r = w = None
    while time.monotonic() < end:
        try:
            if w is None:
                r, w = await conn()
            w.write(post(ROW)); await w.drain()
            status, _ = await answer(r)
            stats["valid"][status] += 1
        except Exception as e:
            stats["valid"]["error: " + type(e).__name__] += 1
            w = None

BAD = [post(b'{"instances": [[5.1, 3.5'), post(ROW, ct=b"text/plain"),
       post(b"", path=b"/invocations", method=b"GET"), post(b"", path=b"/nowhere", method=b"GET"),
       b"POST /invocations HTTP/1.1\r\nhost: soak\r\ncontent-type: application/json\r\ncontent-length: 999999999\r\n\r\n"]

async def malformed(i):
    k = i
    while time.monotonic() < end:
        try:
            r, w = await conn()
            w.write(BAD[k % len(BAD)]); await w.drain(); k += 1
            status, body = await answer(r)
            shape = "json" if body.startswith(b'{"error_code"') else "other"
            stats["malformed"][f"{status} {shape}"] += 1
            w.close()
        except Exception as e:
            stats["malformed"]["error: " + type(e).__name__] += 1

async def until_closed(r, t0, kind):
    try:
        while await r.read(1024):
            pass
    except Exception:
        pass
    stats[kind]["closed by server"] += 1
    held[kind] = max(held[kind], time.monotonic() - t0)

async def slowloris():
    head = b"GET /ping HTTP/1.1\r\nhost: soak\r\nx-slow: " + b"z" * 200 + b"\r\n\r\n"
    while time.monotonic() < end:
        try:
            r, w = await conn()
            t0 = time.monotonic()
            closed = asyncio.ensure_future(until_closed(r, t0, "slowloris"))
            for b in head:
                if closed.done() or time.monotonic() > end:
                    break
                w.write(bytes([b])); await w.drain()
                await asyncio.sleep(1)
            await asyncio.wait_for(closed, max(0.1, end - time.monotonic() + 0.1))
        except Exception:
            await asyncio.sleep(0.1)

async def idler():
    while time.monotonic() < end:
        try:
            r, w = await conn()
            w.write(post(ROW)); await w.drain()
            await answer(r)
            await asyncio.wait_for(until_closed(r, time.monotonic(), "idle"), max(0.1, end - time.monotonic()))
        except Exception:
            await asyncio.sleep(0.1)

async def stalled():
    while time.monotonic() < end:
        try:
            r, w = await conn()
            w.write(b"POST /invocations HTTP/1.1\r\nhost: soak\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"inst")
            await w.drain()
            status, _ = await asyncio.wait_for(answer(r), max(0.1, end - time.monotonic()))
            stats["stalled"][status] += 1
        except Exception:
            await asyncio.sleep(0.1)

async def main():
    tasks = ([valid() for _ in range(n["VALID"])] + [malformed(i) for i in range(n["MALFORMED"])]
             + [slowloris() for _ in range(n["SLOW"])] + [idler() for _ in range(n["IDLERS"])]
             + [stalled() for _ in range(n["STALLED"])])
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), duration + 30)

asyncio.run(main())
five = sum(c for k in stats.values() for s, c in k.items() if str(s)[:1] == "5")
for kind in ("valid", "malformed", "slowloris", "idle", "stalled"):
    longest = f" (longest held {held[kind]:.1f} s)" if kind in held else ""
    print(f"{kind:10} " + ", ".join(f"{s}: {c}" for s, c in sorted(stats[kind].items(), key=str)) + longest)
print(f"5xx answers: {five}")
EOF
DRIVER=$!
# Model swaps, evenly spaced over the load: a new C, a commit, an apply.
(
  gap=$(python3 -c "print($DURATION / ($SWAPS + 1))")
  for i in $(seq 1 "$SWAPS"); do
    sleep "$gap"
    sed -i "s/^    C: .*/    C: $(python3 -c "print(1 + $i / 100)")/" ml/train.yaml
    git -c user.email=soak@example.com -c user.name=soak commit -qam "swap $i"
    if "$MLCTL" apply --auto-approve >"$WORK/apply-$i.log" 2>&1; then echo ok; else echo "failed: apply-$i"; fi
  done >"$WORK/swaps.txt"
) &
SWAPPER=$!
sleep "$WARMUP"
WARM=$(sample "after warm-up")
WARM_RSS=$(rss)
sleep "$(python3 -c "print(max(0, $DURATION / 2 - $WARMUP))")"
MID=$(sample "half way through")
wait "$DRIVER"
END=$(sample "end of load")
END_RSS=$(rss)
wait "$SWAPPER"
secs=$(python3 -c "import re,sys; v='$IDLE'; m=re.fullmatch(r'(\d+)(ms|s|m)',v); print(int(m[1])*{'ms':0.001,'s':1,'m':60}[m[2]]+2)")
sleep "$secs"
DRAINED=$(sample "after the idle timeout")
echo
cat "$WORK/driver.txt"
echo "model swaps: $(grep -c '^ok' "$WORK/swaps.txt" || true) of $SWAPS applied"
for f in $(grep '^failed' "$WORK/swaps.txt" | sed 's/failed: //'); do echo "$f:"; tail -5 "$WORK/$f.log"; done
echo "model versions registered: $("$MLCTL" models show iris -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["versions"]))')"
echo
echo "$START"; echo "$WARM"; echo "$MID"; echo "$END"; echo "$DRAINED"
python3 -c "w, e = $WARM_RSS, $END_RSS; print(f'RSS at the end vs after warm-up: {e / 1024:.1f} / {w / 1024:.1f} MiB ({(e - w) / w * 100:+.1f}%)')"
echo "server still answering: $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/ping")"
