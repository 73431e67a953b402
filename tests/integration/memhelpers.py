"""Small additions to conftest.py for the memory tests (test_memory*.py).

conftest.Conn.call() sends one request and reads one frame; the memory tests also need to
pipeline many requests on one connection (batches of stores and searches) and to poll for
effects that are recorded asynchronously (access counts). Everything here is bounded.
"""

import asyncio
import datetime
import time

import websockets

from conftest import RECV_TIMEOUT, assert_error, assert_success, run

INVALID_PARAMS = -32602
NO_ACTIVE_PERSONA = -32001
MEMORY_ERROR = -32002

# The server refuses more than --max-inflight (default 256) queued requests per connection.
WINDOW = 64


async def pipeline(conn, calls, timeout=RECV_TIMEOUT, window=WINDOW):
    """Send [(method, params), ...] on one connection, at most `window` in flight.

    Responses are matched by id (they may arrive in any order) and returned in call order.
    """
    out = [None] * len(calls)
    by_id = {}
    sent = 0
    done = 0
    deadline = time.monotonic() + timeout + len(calls) * 0.05
    while done < len(calls):
        while sent < len(calls) and sent - done < window:
            method, params = calls[sent]
            rid = conn.new_id()
            by_id[rid] = sent
            req = {"jsonrpc": "2.0", "method": method, "id": rid}
            if params is not None:
                req["params"] = params
            await conn.send_json(req)
            sent += 1
        left = deadline - time.monotonic()
        assert left > 0, f"pipeline: {len(calls) - done} responses missing after deadline"
        resp = await conn.recv(min(left, timeout))
        assert resp.get("id") in by_id, f"unexpected response id: {resp}"
        i = by_id.pop(resp["id"])
        out[i] = resp
        done += 1
    return out


async def results(conn, calls, timeout=RECV_TIMEOUT):
    """pipeline() requiring every response to be a success; returns the results."""
    resps = await pipeline(conn, calls, timeout)
    for (method, params), r in zip(calls, resps):
        assert "error" not in r, f"{method} {params!r} failed: {r}"
        assert_success(r)
    return [r["result"] for r in resps]


async def expect_error(conn, method, params, code, contains=None):
    """Call and require an error with `code`; optionally a substring of the message."""
    resp = await conn.call(method, params)
    err = assert_error(resp, code)
    if contains is not None:
        assert contains.lower() in err["message"].lower(), (method, params, err)
    return err


async def wait_for(check, timeout=5.0, interval=0.05, what="condition"):
    """Await `check()` (a coroutine function) until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last={last!r})")
        await asyncio.sleep(interval)


async def seeded_ids(conn):
    """{'Aria': id, 'Kira': id} of the seeded personas."""
    res = await conn.result("persona.list")
    names = {p["name"]: p["id"] for p in res["personas"]}
    assert "Aria" in names and "Kira" in names, res
    return names


async def store(conn, persona_id, content, **fields):
    params = {"persona_id": persona_id, "content": content, **fields}
    return await conn.result("memory.store", params)


async def search(conn, persona_id, query, **fields):
    params = {"persona_id": persona_id, "query": query, **fields}
    return await conn.result("memory.search", params)


def without_timing(st):
    """memory.stats minus stats_calculation_time_ms, which differs on every call."""
    return {k: v for k, v in st.items() if k != "stats_calculation_time_ms"}


async def stats(conn, persona_id):
    return without_timing(await conn.result("memory.stats", {"persona_id": persona_id}))


def ids(memories, key="id"):
    return [m[key] for m in memories]


def parse_iso(text):
    """ISO-8601 with offset (or 'Z') -> aware datetime."""
    assert isinstance(text, str) and text, text
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    dt = datetime.datetime.fromisoformat(text)
    assert dt.tzinfo is not None, f"timestamp without zone: {text}"
    return dt


def epoch(text):
    return parse_iso(text).timestamp()


def srun(srv, coro):
    """conftest.run() for a test driving `srv`: when the connection drops or the server is
    gone, the failure carries the server's exit status and log tail (a crash or an ASan report
    would otherwise show only as a closed connection)."""
    try:
        return run(coro)
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        dropped = isinstance(e, (websockets.ConnectionClosed, ConnectionError, EOFError))
        gone = srv.proc is not None and srv.proc.poll() is not None
        if not (dropped or gone):
            raise
        state = f"exited with {srv.proc.returncode}" if gone else "still running"
        raise AssertionError(f"{type(e).__name__}: {e}\nserver {state}; log tail:\n"
                             f"{srv.log_tail(40)}") from e
