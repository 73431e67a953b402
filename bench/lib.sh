# bench/lib.sh - helpers shared by the benchmark drivers (chat.sh, mcp.sh, memory.sh).
# Sourced after the caller defines ROOT, BUILD and fail().

# Where the build came from: the repo's HEAD (and whether src/ differs from it), or the
# source directory the build was configured from when that is not this repo.
build_source() {
    local src
    src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$BUILD/CMakeCache.txt" 2>/dev/null)
    if [[ -z $src || $src == "$ROOT" ]]; then
        echo "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ' (src/ modified)')"
    else
        echo "source $src$([[ -f $src/.commit ]] && echo " (commit $(cat "$src/.commit"))")"
    fi
}

wait_port() { # file pid -> prints port (30 s at most)
    local f=$1 pid=$2
    for _ in $(seq 600); do
        if [[ -s $f ]]; then cat "$f"; return 0; fi
        kill -0 "$pid" 2>/dev/null || fail "process $pid exited during startup"
        sleep 0.05
    done
    fail "no port file $f after 30 s"
}

stop_pid() { # pid [name] -> status (kill -9 after 10 s counts as failure)
    local pid=$1 rc=0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid"
        echo "${0##*/}: ${2:-server} ignored SIGTERM for 10 s; killed" >&2
        rc=1
    fi
    wait "$pid" 2>/dev/null || rc=$?
    return $rc
}
