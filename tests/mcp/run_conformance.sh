#!/bin/bash
# run_conformance.sh BIN WORKDIR [conformance options...]
#
# Runs the official MCP conformance suite (@modelcontextprotocol/conformance, pinned in
# tests/mcp/package.json) against persona-mcp over Streamable HTTP:
#   1. npm ci into WORKDIR/deps (cached; see npm_deps.sh);
#   2. start BIN --conformance-fixtures on an ephemeral loopback port (--port 0
#      --port-file) with a fresh data directory;
#   3. run `conformance server --url http://127.0.0.1:PORT/mcp` (the whole active suite,
#      no expected-failures list; extra options such as `--suite all` are passed on);
#   4. stop the server by its PID (SIGTERM) and exit with the suite's exit code.
# If the suite passes but the server does not exit 0 within 10 s of SIGTERM, exit 1.
# Exit 77 (CTest's skip code) when npm is not installed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:?usage: run_conformance.sh BIN WORKDIR [conformance options...]}
work=${2:?usage: run_conformance.sh BIN WORKDIR [conformance options...]}
shift 2

sh "$here/npm_deps.sh" "$work/deps" || exit $?
deps=$(cd "$work/deps" && pwd)

run=$(mktemp -d "${TMPDIR:-/tmp}/pmcp-conformance.XXXXXX")
server_pid=
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null
    fi
    rm -rf "$run"
}
trap cleanup EXIT

"$bin" --host 127.0.0.1 --port 0 --port-file "$run/port" --data-dir "$run/data" \
    --conformance-fixtures --llm-provider none >"$run/server.log" 2>&1 &
server_pid=$!

port=
for _ in $(seq 150); do
    if [ -s "$run/port" ]; then
        port=$(cat "$run/port")
        break
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
    sleep 0.1
done
if [ -z "$port" ]; then
    echo "run_conformance.sh: persona-mcp did not start" >&2
    cat "$run/server.log" >&2
    exit 1
fi
url="http://127.0.0.1:$port/mcp"
echo "run_conformance.sh: persona-mcp pid $server_pid at $url"

# The suite needs Node 22; the `node` package puts it first in node_modules/.bin.
(cd "$deps" && PATH="$deps/node_modules/.bin:$PATH" conformance server --url "$url" "$@")
suite_rc=$?

kill -TERM "$server_pid"
server_rc=
for _ in $(seq 100); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        wait "$server_pid"
        server_rc=$?
        break
    fi
    sleep 0.1
done
server_pid_was=$server_pid
if [ -z "$server_rc" ]; then
    echo "run_conformance.sh: persona-mcp (pid $server_pid_was) did not stop within 10 s" >&2
else
    server_pid=
fi
echo "run_conformance.sh: suite exit code $suite_rc, server exit code ${server_rc:-none}"
if [ "$suite_rc" -eq 0 ] && [ "${server_rc:-1}" -ne 0 ]; then
    echo "--- server log ---" >&2
    tail -40 "$run/server.log" >&2
    exit 1
fi
exit "$suite_rc"
