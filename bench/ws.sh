#!/usr/bin/env bash
# WebSocket JSON-RPC benchmark: persona-mcp against a minimal Python websockets server (the
# original's stack, bench/peer_ws_server.py) measured in the same run with the same load
# generator (bench/bench_wsload.c): persona.status, strict request/response, 1, 16 and 256
# connections. Server CPU per request comes from /proc/PID/stat (utime+stime, all threads)
# sampled around each run and divided by every response the load generator received.
#
# usage: bench/ws.sh [BUILD_DIR]        (default build-release, relative to the repo root)
# env:   BENCH_SECONDS=5 BENCH_WARMUP=1 BENCH_CONNS="1 16 256" BENCH_INFLIGHT=1
#        BENCH_REPEAT=1  runs per cell; the median-throughput run is reported
#        PEER_ONLY=1   measure only the Python peer (to validate the tooling)
# exit:  0 all targets met, 1 a target missed or a run failed, 2 setup failure.
# Targets (issue 2): >= 50,000 req/s at 16 connections; >= 2x the peer's throughput and
# <= 1/8 of its CPU per request at every connection count.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-build-release}
[[ $BUILD = /* ]] || BUILD="$ROOT/$BUILD"
SECS=${BENCH_SECONDS:-5}
WARMUP=${BENCH_WARMUP:-1}
CONNS_LIST=${BENCH_CONNS:-"1 16 256"}
INFLIGHT=${BENCH_INFLIGHT:-1}
REPEAT=${BENCH_REPEAT:-1}
PEER_ONLY=${PEER_ONLY:-0}
PY=/usr/bin/python3
HZ=$(getconf CLK_TCK)

TMP=$(mktemp -d /tmp/pmcp-ws.XXXXXX)
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

fail() { echo "ws.sh: $*" >&2; exit 2; }

# --- tools -------------------------------------------------------------------------------
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
PMCP="$BUILD/persona-mcp"
if [[ $PEER_ONLY != 1 && ! -x $PMCP ]]; then
    fail "$PMCP not found (build it: cmake -B $BUILD -DCMAKE_BUILD_TYPE=Release && cmake --build $BUILD), or PEER_ONLY=1"
fi
"$PY" -c 'import websockets' 2>/dev/null || fail "python3-websockets missing for $PY"

# --- helpers --------------------------------------------------------------------------------
wait_port() { # file pid -> prints port
    local f=$1 pid=$2
    for _ in $(seq 300); do
        if [[ -s $f ]]; then cat "$f"; return 0; fi
        kill -0 "$pid" 2>/dev/null || fail "server $pid exited during startup (log: $(tail -5 "$TMP"/*.log))"
        sleep 0.05
    done
    fail "no port file $f after 15 s"
}

cpu_ticks() { # pid -> utime+stime of the whole process (all threads)
    local stat
    stat=$(cat "/proc/$1/stat") || fail "process $1 gone"
    stat=${stat##*) } # fields after "(comm) "; utime and stime are fields 14 and 15
    local -a f
    read -r -a f <<<"$stat"
    echo $(( f[11] + f[12] ))
}

first_persona_id() { # port -> id of the first persona.list entry
    timeout 20 "$PY" - "$1" <<'EOF'
import asyncio, json, sys
import websockets
async def main(port):
    async with websockets.connect(f"ws://127.0.0.1:{port}/mcp", open_timeout=10) as ws:
        await ws.send(json.dumps({"jsonrpc": "2.0", "method": "persona.list", "id": 1}))
        resp = json.loads(await asyncio.wait_for(ws.recv(), 10))
        print(resp["result"]["personas"][0]["id"])
asyncio.run(main(int(sys.argv[1])))
EOF
}

field() { # "RESULT k=v ..." key -> value
    local kv
    for kv in $1; do [[ $kv == "$2="* ]] && { echo "${kv#*=}"; return; }; done
    echo 0
}

stop_pid() { # pid name -> exit status (kill -9 after 10 s counts as failure)
    local pid=$1 rc=0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid"; echo "ws.sh: $2 ignored SIGTERM for 10 s; killed" >&2; rc=1
    fi
    wait "$pid" 2>/dev/null || rc=$?
    return $rc
}

# --- servers -------------------------------------------------------------------------------
declare -A PID PORT PERSONA
NAMES=()
if [[ $PEER_ONLY != 1 ]]; then
    "$PMCP" --host 127.0.0.1 --port 0 --port-file "$TMP/pmcp.port" --data-dir "$TMP/data" \
        2>"$TMP/pmcp.log" &
    PID[persona-mcp]=$!; PIDS+=("$!"); NAMES+=(persona-mcp)
    PORT[persona-mcp]=$(wait_port "$TMP/pmcp.port" "${PID[persona-mcp]}")
fi
"$PY" "$ROOT/bench/peer_ws_server.py" --port-file "$TMP/peer.port" 2>"$TMP/peer.log" &
PID[python]=$!; PIDS+=("$!"); NAMES+=(python)
PORT[python]=$(wait_port "$TMP/peer.port" "${PID[python]}")
for s in "${NAMES[@]}"; do
    PERSONA[$s]=$(first_persona_id "${PORT[$s]}") || fail "persona.list failed on $s"
done

echo "# ws.sh $(date -u +%FT%TZ) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg); ${SECS}s per run + ${WARMUP}s warmup, $INFLIGHT in flight per connection, $REPEAT run(s) per cell"
if awk '{exit !($1 > 0.5)}' /proc/loadavg; then
    echo "# WARNING: machine not idle (load average > 0.5); numbers will be noisy"
fi

# --- runs ----------------------------------------------------------------------------------
# Each (connections, server) cell is run BENCH_REPEAT times, alternating servers, and the run
# with the median throughput is reported; CPU per request is pooled over all repeats.
declare -A RPS CPU P50 P99 P999 ERR
status=0
median_line() { # lines "rps RESULT..." -> the line with the median rps
    sort -n | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'
}
printf '%-12s %6s %12s %10s %10s %10s %8s %14s\n' server conns "req/s" "p50 us" "p99 us" \
    "p99.9 us" errors "cpu us/req"
for c in $CONNS_LIST; do
    declare -A LINES=() TICKS=() TOTAL=() ERRS=()
    for ((r = 0; r < REPEAT; r++)); do
        for s in "${NAMES[@]}"; do
            before=$(cpu_ticks "${PID[$s]}")
            out=$("$LOADGEN" --host 127.0.0.1 --port "${PORT[$s]}" --path /mcp --conns "$c" \
                --inflight "$INFLIGHT" --seconds "$SECS" --warmup "$WARMUP" \
                --persona "${PERSONA[$s]}" 2>"$TMP/loadgen.err") || status=1
            after=$(cpu_ticks "${PID[$s]}")
            line=$(grep '^RESULT' <<<"$out" || true)
            [[ -n $line ]] || { cat "$TMP/loadgen.err" >&2; fail "load generator failed on $s"; }
            LINES[$s]+="$(field "$line" rps) $line"$'\n'
            TICKS[$s]=$(( ${TICKS[$s]:-0} + after - before ))
            TOTAL[$s]=$(( ${TOTAL[$s]:-0} + $(field "$line" total_responses) ))
            ERRS[$s]=$(( ${ERRS[$s]:-0} + $(field "$line" errors) ))
            if [[ $(field "$line" errors) != 0 ]]; then
                status=1; sed 's/^/  loadgen: /' "$TMP/loadgen.err" >&2
            fi
        done
    done
    for s in "${NAMES[@]}"; do
        k="$s/$c"
        line=$(printf '%s' "${LINES[$s]}" | median_line)
        RPS[$k]=$(field "$line" rps)
        P50[$k]=$(field "$line" p50_us); P99[$k]=$(field "$line" p99_us)
        P999[$k]=$(field "$line" p999_us); ERR[$k]=${ERRS[$s]}
        CPU[$k]=$(awk -v d="${TICKS[$s]}" -v hz="$HZ" -v n="${TOTAL[$s]}" \
            'BEGIN { printf "%.2f", (n > 0 ? d / hz * 1e6 / n : 0) }')
        printf '%-12s %6d %12s %10s %10s %10s %8s %14s\n' "$s" "$c" "${RPS[$k]}" "${P50[$k]}" \
            "${P99[$k]}" "${P999[$k]}" "${ERR[$k]}" "${CPU[$k]}"
    done
    unset LINES TICKS TOTAL ERRS
done

# --- ratios and targets ---------------------------------------------------------------------
if [[ $PEER_ONLY != 1 ]]; then
    echo
    printf '%6s %18s %22s\n' conns "throughput ratio" "cpu/req ratio (ours)"
    for c in $CONNS_LIST; do
        tr=$(awk -v a="${RPS[persona-mcp/$c]}" -v b="${RPS[python/$c]}" \
            'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
        cr=$(awk -v a="${CPU[persona-mcp/$c]}" -v b="${CPU[python/$c]}" \
            'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')
        printf '%6d %17sx %21s\n' "$c" "$tr" "$cr (1/$(awk -v r="$cr" 'BEGIN { printf "%.1f", (r > 0 ? 1 / r : 0) }'))"
        if awk -v r="$tr" 'BEGIN { exit !(r < 2) }'; then
            echo "FAIL: throughput ratio at $c connections $tr < 2"; status=1
        fi
        if awk -v r="$cr" 'BEGIN { exit !(r > 0.125 || r <= 0) }'; then
            echo "FAIL: CPU per request ratio at $c connections $cr > 1/8"; status=1
        fi
    done
    if [[ " $CONNS_LIST " == *" 16 "* ]]; then
        if awk -v r="${RPS[persona-mcp/16]}" 'BEGIN { exit !(r < 50000) }'; then
            echo "FAIL: ${RPS[persona-mcp/16]} req/s at 16 connections < 50000"; status=1
        else
            echo "PASS: ${RPS[persona-mcp/16]} req/s at 16 connections >= 50000"
        fi
    fi
    [[ $status == 0 ]] && echo "PASS: all targets met"
fi

for s in "${NAMES[@]}"; do
    stop_pid "${PID[$s]}" "$s" || { echo "ws.sh: $s exited with status $?" >&2; status=1; }
done
PIDS=()
exit $status
