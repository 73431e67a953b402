#!/bin/sh
# npm_deps.sh DEST - make DEST/node_modules hold exactly what tests/mcp/package-lock.json
# pins (the MCP conformance suite, the official SDK and Node 22 from npm), with `npm ci`.
#
# Cached: when DEST already holds an install of the same package.json and lock (a
# checksum stamp) it does nothing, so CTest runs after the first take no network.
# Concurrent callers (ctest -j) serialise on a lock file. Exit 77 (CTest's skip code)
# when npm is not installed; 1 when the install fails.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dest=${1:?usage: npm_deps.sh DEST}

if ! command -v npm >/dev/null 2>&1; then
    echo "npm_deps.sh: npm not found; skipping the MCP tests" >&2
    exit 77
fi
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)

sum=$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -d' ' -f1)
up_to_date() {
    [ -f "$dest/.deps-stamp" ] && [ "$(cat "$dest/.deps-stamp")" = "$sum" ] &&
        [ -x "$dest/node_modules/.bin/conformance" ] && [ -x "$dest/node_modules/.bin/node" ] &&
        [ -f "$dest/node_modules/@modelcontextprotocol/sdk/package.json" ]
}

(
    if command -v flock >/dev/null 2>&1; then flock 9; fi
    if up_to_date; then exit 0; fi
    echo "npm_deps.sh: npm ci into $dest" >&2
    rm -f "$dest/.deps-stamp"
    cp "$here/package.json" "$here/package-lock.json" "$dest/"
    # npm prints EBADENGINE warnings on Node 20 (a dependency wants Node 22, which the
    # `node` package itself provides); they are harmless.
    if ! (cd "$dest" && npm ci --no-audit --no-fund --loglevel=error >"$dest/npm-ci.log" 2>&1); then
        echo "npm_deps.sh: npm ci failed; see $dest/npm-ci.log" >&2
        tail -20 "$dest/npm-ci.log" >&2
        exit 1
    fi
    echo "$sum" >"$dest/.deps-stamp"
) 9>"$dest/.deps-lock"
