#!/usr/bin/env bash
# Soak: one `mlctl serve` under mixed traffic for a while (issue 11, "Hostile clients").
#
# A Python asyncio driver (standard library only) runs, for DURATION seconds, at once:
#   - valid clients: keep-alive POST /invocations with a 1-row body, back to back;
#   - malformed clients: broken JSON, a wrong content type, GET /invocations, an unknown route,
#     a body over the limit (each must get a 4xx with the JSON error shape, never a 5xx);
#   - slowloris clients: a request head sent one byte per second (reopened when cut off);
#   - idle clients: one request, then silence on the keep-alive connection (reopened when cut);
#   - stalled bodies: a Content-Length promising more than is sent.
# It prints what each kind got (statuses, connections the server closed), the 5xx count, and
# the server's RSS and open file descriptors at the start, half way through (the connections
# the hostile clients hold then), at the end of the load and after the idle timeout (back to
# where it started: nothing leaked).
#
# Usage: bench/soak.sh      (DURATION=600 PROFILE=release HEADER=2s IDLE=5s BODY=2s MAXCONN=256
#                            VALID=8 MALFORMED=4 SLOW=50 IDLERS=100 STALLED=10)
# Needs: cargo, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-600}"
PROFILE="${PROFILE:-release}"
HEADER="${HEADER:-2s}" IDLE="${IDLE:-5s}" BODY="${BODY:-2s}" MAXCONN="${MAXCONN:-256}"
export VALID="${VALID:-8}" MALFORMED="${MALFORMED:-4}" SLOW="${SLOW:-50}" IDLERS="${IDLERS:-100}" STALLED="${STALLED:-10}"
WORK="$(mktemp -d /tmp/mlctl-soak.XXXXXX)"
PID=""
cleanup() {
  if [ -n "$PID" ]; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
log() { printf '== %s\n' "$*" >&2; }

flag=(); [ "$PROFILE" = release ] && flag=(--release)
log "building mlctl ($PROFILE)"
cargo build -q "${flag[@]}" -p mlctl-cli
cargo build -q "${flag[@]}" -p mlctl-serve --example portable_model
TARGET=$(cargo metadata -q --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
dir="$TARGET/$([ "$PROFILE" = release ] && echo release || echo debug)"
"$dir/examples/portable_model" examples/iris/data/iris.csv species "$WORK/model" >/dev/null

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$dir/mlctl" serve --model-dir "$WORK/model" --port "$PORT" --header-timeout "$HEADER" \
  --idle-timeout "$IDLE" --body-timeout "$BODY" --max-connections "$MAXCONN" >"$WORK/serve.log" 2>&1 &
PID=$!
for _ in $(seq 1 300); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/ping" && break; sleep 0.05; done

sample() { # $1 label: RSS and fds of the server
  local rss fds
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
  fds=$(ls "/proc/$PID/fd" | wc -l)
  printf '%-22s RSS %6d KiB   fds %5d\n' "$1" "$rss" "$fds"
}
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
sleep "$(python3 -c "print($DURATION / 2)")"
MID=$(sample "half way through")
wait "$DRIVER"
END=$(sample "end of load")
secs=$(python3 -c "import re,sys; v='$IDLE'; m=re.fullmatch(r'(\d+)(ms|s|m)',v); print(int(m[1])*{'ms':0.001,'s':1,'m':60}[m[2]]+2)")
sleep "$secs"
DRAINED=$(sample "after the idle timeout")
echo
cat "$WORK/driver.txt"
echo
echo "$START"; echo "$MID"; echo "$END"; echo "$DRAINED"
echo "server still answering: $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/ping")"
