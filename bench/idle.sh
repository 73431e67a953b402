#!/usr/bin/env bash
# Idle-connection benchmark: hold 10,000 idle WebSocket connections to persona-mcp, report
# the server's resident memory (target: under 300 MB) and check that a request on a new
# connection still succeeds meanwhile. The holder is bench_wsload --idle (one epoll thread,
# answers pings, counts connections the server closes).
#
# usage: bench/idle.sh [BUILD_DIR]        (default build-release, relative to the repo root)
# env:   IDLE_CONNS=10000 IDLE_HOLD=600 (upper bound on the hold, seconds)
#        PEER=1  run against the Python peer (bench/peer_ws_server.py) instead
# exit:  0 target met, 1 target missed or a check failed, 2 setup failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-build-release}
[[ $BUILD = /* ]] || BUILD="$ROOT/$BUILD"
N=${IDLE_CONNS:-10000}
HOLD=${IDLE_HOLD:-600}
PEER=${PEER:-0}
RSS_LIMIT_KB=$((300 * 1024))
PY=/usr/bin/python3

TMP=$(mktemp -d /tmp/pmcp-idle.XXXXXX)
PIDS=()
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
fail() { echo "idle.sh: $*" >&2; exit 2; }

# Both the server and the holder need one descriptor per connection plus slack.
need=$((N + 256))
hard=$(ulimit -Hn)
[[ $hard == unlimited || $hard -ge $need ]] || fail "hard fd limit $hard < $need"
ulimit -n "$need"

LOADGEN="$BUILD/bench/bench_wsload"
if [[ ! -x $LOADGEN ]]; then
    LOADGEN="$ROOT/.bench/bench_wsload"
    mkdir -p "$ROOT/.bench"
    if [[ ! -x $LOADGEN || $ROOT/bench/bench_wsload.c -nt $LOADGEN ||
          $ROOT/bench/wsclient.c -nt $LOADGEN || $ROOT/bench/wsclient.h -nt $LOADGEN ]]; then
        cc -std=c17 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE "$ROOT/bench/bench_wsload.c" \
            "$ROOT/bench/wsclient.c" -o "$LOADGEN" || fail "cannot build bench_wsload"
    fi
fi

if [[ $PEER == 1 ]]; then
    NAME="python peer"
    "$PY" "$ROOT/bench/peer_ws_server.py" --port-file "$TMP/port" 2>"$TMP/server.log" &
else
    NAME=persona-mcp
    [[ -x $BUILD/persona-mcp ]] || fail "$BUILD/persona-mcp not found (or PEER=1)"
    "$BUILD/persona-mcp" --host 127.0.0.1 --port 0 --port-file "$TMP/port" \
        --data-dir "$TMP/data" --max-connections $((N + 64)) --idle-timeout $((HOLD + 3600)) \
        2>"$TMP/server.log" &
fi
SPID=$!
PIDS+=("$SPID")
for _ in $(seq 300); do
    [[ -s $TMP/port ]] && break
    kill -0 "$SPID" 2>/dev/null || fail "server exited during startup: $(tail -5 "$TMP/server.log")"
    sleep 0.05
done
[[ -s $TMP/port ]] || fail "server did not write its port within 15 s"
PORT=$(cat "$TMP/port")

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$SPID/status"; }
persona_id() {
    timeout 30 "$PY" - "$PORT" <<'EOF'
import asyncio, json, sys
import websockets
async def main(port):
    async with websockets.connect(f"ws://127.0.0.1:{port}/mcp", open_timeout=20) as ws:
        await ws.send(json.dumps({"jsonrpc": "2.0", "method": "persona.list", "id": 1}))
        print(json.loads(await asyncio.wait_for(ws.recv(), 20))["result"]["personas"][0]["id"])
asyncio.run(main(int(sys.argv[1])))
EOF
}
PERSONA=$(persona_id) || fail "persona.list failed"
base_kb=$(rss_kb)

echo "# idle.sh $(date -u +%FT%TZ): $N idle connections to $NAME on 127.0.0.1:$PORT"
t0=$(date +%s.%N)
"$LOADGEN" --idle --host 127.0.0.1 --port "$PORT" --conns "$N" --seconds "$HOLD" \
    --connect-timeout 300 --ready-file "$TMP/ready" >"$TMP/holder.out" 2>"$TMP/holder.err" &
HPID=$!
PIDS+=("$HPID")
for _ in $(seq 3000); do # up to 300 s for all handshakes
    [[ -s $TMP/ready ]] && break
    kill -0 "$HPID" 2>/dev/null || break
    sleep 0.1
done
[[ -s $TMP/ready ]] || { cat "$TMP/holder.out" "$TMP/holder.err" >&2; fail "holder never got ready"; }
opened=$(cat "$TMP/ready")
t1=$(date +%s.%N)
sleep 2 # let the server settle (buffers allocated lazily show up now)
held_kb=$(rss_kb)

probe_ok=1
"$LOADGEN" --host 127.0.0.1 --port "$PORT" --conns 1 --seconds 1 --warmup 0 \
    --persona "$PERSONA" >"$TMP/probe.out" 2>&1 || probe_ok=0
after_kb=$(rss_kb)

kill -TERM "$HPID"
holder_rc=0
wait "$HPID" || holder_rc=$?
still=$(awk '/^RESULT/ { for (i = 1; i <= NF; i++) if ($i ~ /^still_open=/) print substr($i, 12) }' \
    "$TMP/holder.out")

awk -v n="$N" -v o="$opened" -v b="$base_kb" -v h="$held_kb" -v a="$after_kb" \
    -v t="$(awk -v x="$t0" -v y="$t1" 'BEGIN { print y - x }')" 'BEGIN {
    printf "connections opened     %d of %d in %.1f s\n", o, n, t
    printf "server VmRSS baseline  %8.1f MB\n", b / 1024
    printf "server VmRSS holding   %8.1f MB  (%.1f KB per connection)\n", h / 1024, (h - b) / (o > 0 ? o : 1)
    printf "server VmRSS after probe %6.1f MB\n", a / 1024
}'
probe=$(grep '^RESULT' "$TMP/probe.out" || true)
probe_field() { awk -v k="$1" '{ for (i = 1; i <= NF; i++) if (index($i, k "=") == 1) print substr($i, length(k) + 2) }' <<<"$probe"; }
echo "probe on a new connection: $([[ $probe_ok == 1 ]] && echo ok || echo FAILED)" \
    "($(probe_field rps) req/s, p50 $(probe_field p50_us) us, p99 $(probe_field p99_us) us" \
    "while holding $opened idle connections)"
if [[ -n $probe ]] && awk -v p="$(probe_field p50_us)" 'BEGIN { exit !(p > 5000) }'; then
    echo "WARN: one request takes > 5 ms while idle connections are held (per-event work" \
        "growing with the connection count?)"
fi
echo "connections still open when released: ${still:-?} of $opened"

status=0
[[ $opened == "$N" ]] || { echo "FAIL: only $opened of $N connections opened"; status=1; }
[[ $probe_ok == 1 ]] || { echo "FAIL: request on a new connection failed"; status=1; }
[[ ${still:-0} == "$opened" && $holder_rc == 0 ]] ||
    { echo "FAIL: the server closed idle connections while held"; status=1; }
if (( held_kb < RSS_LIMIT_KB )); then
    echo "PASS: VmRSS $((held_kb / 1024)) MB < 300 MB with $opened idle connections"
else
    echo "FAIL: VmRSS $((held_kb / 1024)) MB >= 300 MB with $opened idle connections"
    status=1
fi

kill -TERM "$SPID"
for _ in $(seq 100); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$SPID" 2>/dev/null; then
    kill -KILL "$SPID"; echo "FAIL: $NAME ignored SIGTERM for 10 s"; status=1
fi
src=0
wait "$SPID" || src=$?
[[ $src == 0 ]] || { echo "FAIL: $NAME exited with status $src"; status=1; }
PIDS=()
exit $status
