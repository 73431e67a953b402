#!/bin/sh
# json.sh - persona-mcp's JSON (simdjson adapter + jw writer) against Python's
# json and ujson on the persona.chat request. Builds nothing.
#
#   bench/json.sh [build-dir]        (default build-release)
#
# Runs <build-dir>/bench/bench_json and bench/json_peer.py (Debian's
# /usr/bin/python3, which has python3-ujson), echoes their key=value lines,
# then prints a table of the medians and the round-trip ratios
# "persona-mcp vs json: Nx" and "vs ujson: Nx" (target: >= 5x ujson).
# Iterations: JSON_ITERS (C, default 1000000), JSON_PY_ITERS (default 200000).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${1:-build-release}
[ -d "$build" ] || build="$root/$build"
bin="$build/bench/bench_json"
py=/usr/bin/python3

if [ ! -x "$bin" ]; then
    echo "json.sh: $bin not found (build the bench_json target first)" >&2
    exit 1
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$bin" "${JSON_ITERS:-1000000}" | tee "$out"
"$py" "$here/json_peer.py" "${JSON_PY_ITERS:-200000}" | tee -a "$out"
echo

awk '
function field(line, key,    i, n, kv) {
    n = split(line, kv, " ")
    for (i = 1; i <= n; i++)
        if (index(kv[i], key "=") == 1) return substr(kv[i], length(key) + 2)
    return ""
}
/^bench=json / {
    impl = field($0, "impl"); m = field($0, "measure"); ns = field($0, "ns_per_op")
    if (m != "" && ns != "") t[impl, m] = ns + 0
}
function cell(impl, m) { return ((impl, m) in t) ? sprintf("%10.1f", t[impl, m]) : sprintf("%10s", "-") }
function ratio(m, peer) {
    if (!((peer, m) in t) || !(("persona-mcp", m) in t)) return sprintf("%9s", "-")
    return sprintf("%8.1fx", t[peer, m] / t["persona-mcp", m])
}
END {
    printf "%-10s %10s %10s %10s %9s %9s   (ns/op, median of 7 runs)\n", \
        "measure", "pmcp", "json", "ujson", "vs json", "vs ujson"
    split("roundtrip parse serialize", ms, " ")
    for (i = 1; i <= 3; i++) {
        m = ms[i]
        printf "%-10s %s %s %s %s %s\n", m, cell("persona-mcp", m), cell("python-json", m), \
            cell("ujson", m), ratio(m, "python-json"), ratio(m, "ujson")
    }
    print ""
    if (("persona-mcp", "roundtrip") in t) {
        if (("python-json", "roundtrip") in t)
            printf "persona-mcp vs json: %.1fx\n", t["python-json", "roundtrip"] / t["persona-mcp", "roundtrip"]
        if (("ujson", "roundtrip") in t) {
            r = t["ujson", "roundtrip"] / t["persona-mcp", "roundtrip"]
            printf "vs ujson: %.1fx (target >= 5x: %s)\n", r, (r >= 5 ? "met" : "NOT met")
        }
    }
}' "$out"
