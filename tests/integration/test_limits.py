"""Resource limits and handshake policy: each limit gives the offending client a clear
close code, HTTP status or JSON-RPC error, and the server keeps serving everyone else.
"""

import asyncio
import json
import os
import struct
import time
import zlib

import pytest
import websockets

from conftest import Conn, RawWs, assert_error, assert_success, run, unique_name

TOO_MANY_IN_FLIGHT = -32004


def padded_request(size, id=1):
    """A valid persona.list request whose UTF-8 encoding is exactly `size` bytes."""
    base = {"jsonrpc": "2.0", "method": "persona.list", "params": {"pad": ""}, "id": id}
    overhead = len(json.dumps(base, separators=(",", ":")))
    assert size >= overhead
    base["params"]["pad"] = "x" * (size - overhead)
    text = json.dumps(base, separators=(",", ":"))
    assert len(text.encode()) == size
    return text


async def send_expect_close(conn, text, code, timeout=10):
    """Send `text`, then the server must close `conn` with `code`.

    The server may close while the message is still being written; the close frame must
    still reach the client (a close that only shows up as a TCP reset is a failure)."""
    try:
        await asyncio.wait_for(conn.ws.send(text), timeout)
    except websockets.ConnectionClosed as exc:
        assert exc.rcvd is not None, f"no close frame from the server ({exc})"
        assert exc.rcvd.code == code, f"close code {exc.rcvd.code}, want {code}"
        return
    await expect_close(conn, code, timeout)


async def expect_close(conn, code, timeout=10):
    """The server closes `conn` with `code`; any frame before that is a failure."""
    try:
        frame = await asyncio.wait_for(conn.ws.recv(), timeout)
    except websockets.ConnectionClosed as exc:
        assert exc.rcvd is not None, f"no close frame from the server ({exc})"
        assert exc.rcvd.code == code, f"close code {exc.rcvd.code}, want {code}"
        return
    except asyncio.TimeoutError:
        pytest.fail(f"connection not closed within {timeout}s")
    pytest.fail(f"expected close {code}, got a frame: {str(frame)[:200]}")


async def bystander_ok(conn, name="Kira"):
    st = await conn.result("persona.status")
    assert st["persona"]["name"] == name


# --- message size -------------------------------------------------------------------------


def test_message_over_limit_closes_1009_and_others_keep_working(server_factory):
    limit = 65536
    srv = server_factory(args=["--max-message-bytes", str(limit)])

    async def go():
        async with Conn(srv.url) as bystander:
            await bystander.result("persona.switch", {"persona_id": "Kira"})
            # Exactly at the limit: accepted.
            async with Conn(srv.url) as c:
                await c.send_raw(padded_request(limit, id="at-limit"))
                resp = await c.recv()
                assert_success(resp)
                assert resp["id"] == "at-limit"
            # One byte over: 1009, for this connection only.
            async with Conn(srv.url) as c:
                await send_expect_close(c, padded_request(limit + 1, id="over"), 1009)
            await bystander_ok(bystander)
            # Far over, while the bystander is mid-conversation.
            async with Conn(srv.url) as c:
                await send_expect_close(c, padded_request(limit * 20), 1009)
            await bystander_ok(bystander)
            assert srv.running()

    run(go())


def test_oversized_frame_header_rejected_early(server_factory):
    """A frame announcing 2 GiB is refused as soon as its header and first bytes arrive,
    without waiting for (or buffering) the body.

    Only 100 bytes of the body are sent, so the server has nothing unread when it closes:
    its close frame cannot be lost to a TCP reset."""
    srv = server_factory(args=["--max-message-bytes", "65536"])
    raw = RawWs(srv.host, srv.port)
    try:
        assert raw.handshake() == 101
        key = os.urandom(4)
        start = b'{"jsonrpc":"2.0","method":"persona.list","params":{"pad":"'
        start += b"x" * (100 - len(start))
        body = bytes(b ^ key[i & 3] for i, b in enumerate(start))
        raw.sock.sendall(struct.pack("!BBQ", 0x81, 0x80 | 127, 2**31) + key + body)
        t0 = time.monotonic()
        code = raw.wait_close(timeout=10)
        assert code == 1009, code
        assert time.monotonic() - t0 < 5
    finally:
        raw.close()
    assert srv.result("persona.list")["total_count"] == 2


def test_fragmented_message_over_limit(server_factory):
    """Small fragments adding up to more than the limit are one oversized message."""
    srv = server_factory(args=["--max-message-bytes", "65536"])
    raw = RawWs(srv.host, srv.port)
    try:
        assert raw.handshake() == 101
        text = padded_request(65536 + 4096).encode()
        chunks = [text[i:i + 8192] for i in range(0, len(text), 8192)]
        code = None
        try:
            for i, ch in enumerate(chunks):
                raw.send_frame(0x1 if i == 0 else 0x0, ch, fin=(i == len(chunks) - 1))
        except OSError:
            pass  # the server may already have closed
        code = raw.wait_close(timeout=10)
        assert code == 1009, code
    finally:
        raw.close()
    assert srv.result("persona.list")["total_count"] == 2


def test_default_limit_is_4_mib(server):
    async def go():
        async with Conn(server.url) as c:
            await c.send_raw(padded_request(3 * 1024 * 1024, id="3mib"))
            resp = await c.recv()
            assert_success(resp)
        async with Conn(server.url) as c:
            await send_expect_close(c, padded_request(4 * 1024 * 1024 + 1), 1009)

    run(go())


def test_compressed_message_limit_applies_to_inflated_size(server_factory):
    """permessage-deflate must not let a small wire frame inflate past the limit."""
    srv = server_factory(args=["--max-message-bytes", "65536"])

    async def go():
        async with Conn(srv.url, compression="deflate") as c:
            if not c.ws.extensions:
                pytest.skip("server did not negotiate permessage-deflate")
            # ~1 MiB of one character compresses to about a kilobyte.
            await send_expect_close(c, padded_request(1024 * 1024), 1009)
        async with Conn(srv.url, compression="deflate") as c:
            await c.send_raw(padded_request(60000, id="z"))
            resp = await c.recv()
            assert_success(resp)

    run(go())
    assert len(zlib.compress(b"x" * 1024 * 1024)) < 4096  # the premise of the test


# --- UTF-8 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [
    b"\xff",
    b"\xc0\xaf",  # overlong "/"
    b"\xed\xa0\x80",  # UTF-16 surrogate
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xe2\x82",  # truncated at the end of the message
])
def test_invalid_utf8_closes_1007(server, bad):
    prefix = b'{"jsonrpc":"2.0","method":"persona.list","id":1,"x":"'
    payload = prefix + bad if bad == b"\xe2\x82" else prefix + bad + b'"}'
    raw = RawWs(server.host, server.port)
    try:
        assert raw.handshake() == 101
        raw.send_frame(0x1, payload)
        assert raw.wait_close(timeout=10) == 1007
    finally:
        raw.close()
    assert server.result("persona.list")["total_count"] == 2


def test_utf8_split_across_fragments_is_valid(server):
    text = json.dumps({"jsonrpc": "2.0", "method": "persona.create",
                       "params": {"name": "split-\u00e9\u4e2d\U0001F680"}, "id": "u"},
                      ensure_ascii=False).encode()
    cut = text.index("\u4e2d".encode()) + 1  # in the middle of a 3-byte sequence
    raw = RawWs(server.host, server.port)
    try:
        assert raw.handshake() == 101
        raw.send_frame(0x1, text[:cut], fin=False)
        raw.send_frame(0x0, text[cut:], fin=True)
        resp = raw.recv_json()
        assert_success(resp)
        assert resp["result"]["name"] == "split-\u00e9\u4e2d\U0001F680"
    finally:
        raw.close()


def test_invalid_utf8_in_binary_frame_is_not_a_1007(server):
    """Binary frames carry bytes; they are not UTF-8 checked (they may be ignored or 1003)."""
    raw = RawWs(server.host, server.port)
    try:
        assert raw.handshake() == 101
        raw.send_frame(0x2, b"\xff\xfe\x00")
        raw.send_text('{"jsonrpc":"2.0","method":"system.models","id":"after"}')
        for _ in range(5):
            op, payload = raw.recv_frame()
            if op == 0x9:
                raw.send_frame(0xA, payload)
                continue
            if op == 0x8:
                assert struct.unpack("!H", payload[:2])[0] == 1003
                return
            resp = json.loads(payload)
            if resp.get("id") is None:
                assert_error(resp)
                continue
            assert resp["id"] == "after"
            assert_success(resp)
            return
        raise AssertionError("no answer after binary frame")
    finally:
        raw.close()


# --- connection count -----------------------------------------------------------------------


def _open_until_refused(srv, n):
    """Open n upgrades (must all succeed), then one more (must be 503)."""
    held = []
    for _ in range(n):
        r = RawWs(srv.host, srv.port)
        held.append(r)
        assert r.handshake() == 101
    extra = RawWs(srv.host, srv.port)
    status = extra.handshake()
    extra.close()
    return held, status


def test_max_connections_refuses_with_503(server_factory):
    srv = server_factory(args=["--max-connections", "4"])
    held, status = _open_until_refused(srv, 4)
    try:
        assert status == 503
        # Existing connections still work while the server is full.
        held[0].send_text('{"jsonrpc":"2.0","method":"system.models","id":1}')
        assert_success(held[0].recv_json())
        # Freeing a slot lets a new client in (bounded wait for the close to register).
        held.pop().close()
        deadline = time.monotonic() + 5
        while True:
            r = RawWs(srv.host, srv.port)
            st = r.handshake()
            r.close() if st != 101 else held.append(r)
            if st == 101:
                break
            assert st == 503, st
            assert time.monotonic() < deadline, "slot not freed within 5 s"
            time.sleep(0.05)
    finally:
        for r in held:
            r.close()


def test_max_connections_from_env_and_flag_wins(server_factory):
    srv = server_factory(env={"MAX_CONNECTIONS": "2"})
    held, status = _open_until_refused(srv, 2)
    for r in held:
        r.close()
    assert status == 503
    srv2 = server_factory(args=["--max-connections", "3"], env={"MAX_CONNECTIONS": "2"})
    held, status = _open_until_refused(srv2, 3)
    for r in held:
        r.close()
    assert status == 503


# --- idle timeout ----------------------------------------------------------------------------


def _silent_wait_close(raw, timeout):
    """Read frames without ever answering (a dead peer); returns (close code|None, seconds)."""
    t0 = time.monotonic()
    raw.sock.settimeout(timeout)
    while time.monotonic() - t0 < timeout:
        try:
            op, payload = raw.recv_frame()
        except (ConnectionError, OSError):
            return None, time.monotonic() - t0
        if op == 0x8:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            return code, time.monotonic() - t0
    raise AssertionError(f"silent connection still open after {timeout}s")


def test_idle_connection_closed_while_active_one_kept(server_factory):
    idle_secs = 2
    srv = server_factory(args=["--idle-timeout", str(idle_secs)])
    idle = RawWs(srv.host, srv.port)
    assert idle.handshake() == 101

    async def active():
        # A client that keeps sending requests stays connected well past the timeout.
        async with Conn(srv.url) as c:
            t_end = time.monotonic() + 3 * idle_secs
            n = 0
            while time.monotonic() < t_end and n < 100:
                assert_success(await c.call("system.models"))
                n += 1
                await asyncio.sleep(0.4)
            assert n >= 10

    try:
        run(active())
        # The silent, never-ponging client has been (or is about to be) dropped.
        code, _ = _silent_wait_close(idle, timeout=15)
        assert code in (None, 1000, 1001, 1006, 1008, 1011), code
    finally:
        idle.close()


def test_idle_timeout_counts_requests_not_pongs(server_factory):
    """A client that answers keep-alive pings but never sends a request is still idle."""
    srv = server_factory(args=["--idle-timeout", "2"])
    raw = RawWs(srv.host, srv.port)
    try:
        assert raw.handshake() == 101
        t0 = time.monotonic()
        raw.wait_close(timeout=20)  # answers every ping while waiting
        assert time.monotonic() - t0 < 20
    finally:
        raw.close()


def test_idle_timeout_not_premature(server_factory):
    srv = server_factory(args=["--idle-timeout", "3"])
    raw = RawWs(srv.host, srv.port)
    try:
        assert raw.handshake() == 101
        time.sleep(1.0)
        raw.send_text('{"jsonrpc":"2.0","method":"system.models","id":1}')
        assert_success(raw.recv_json())
        t0 = time.monotonic()
        raw.wait_close(timeout=25)
        assert time.monotonic() - t0 >= 1.5, "closed well before the idle timeout"
    finally:
        raw.close()


# --- in-flight limit --------------------------------------------------------------------------


def test_inflight_limit_rejects_excess_and_keeps_serving(server_factory):
    srv = server_factory(args=["--max-inflight", "2"])
    names = [unique_name("inflight") for _ in range(300)]

    async def go():
        async with Conn(srv.url) as c, Conn(srv.url) as other:
            await other.result("persona.switch", {"persona_id": "Kira"})
            # One write burst: all frames leave in one go, the server reads them together.
            frames = [json.dumps({"jsonrpc": "2.0", "method": "persona.create",
                                  "params": {"name": n}, "id": i}) for i, n in enumerate(names)]
            for f in frames:
                await c.send_raw(f)
            resps = [await c.recv() for _ in frames]
            got = [r["id"] for r in resps]
            assert sorted(got) == list(range(len(frames))), "not one response per request"
            assert got == list(range(len(frames))), \
                f"responses out of request order (rejections sent early?): {got[:20]}..."
            rejected = [r for r in resps if "error" in r]
            accepted = [r for r in resps if "result" in r]
            for r in rejected:
                assert_error(r, TOO_MANY_IN_FLIGHT)
            for r in accepted:
                assert_success(r)
            assert rejected, "pipelining 300 writes past --max-inflight 2 produced no -32004"
            assert accepted, "nothing was accepted"
            # Rejected requests had no effect; accepted ones did.
            listed = {p["name"] for p in (await c.result("persona.list"))["personas"]}
            for r in accepted:
                assert names[r["id"]] in listed
            for r in rejected:
                assert names[r["id"]] not in listed
            # Same connection, strict request/response: never limited.
            for _ in range(30):
                assert_success(await c.call("persona.create", {"name": unique_name()}))
            await bystander_ok(other)

    run(go())


# --- Origin and Host --------------------------------------------------------------------------


def _upgrade_status(srv, headers=None, host_header=None):
    r = RawWs(srv.host, srv.port)
    try:
        return r.handshake(headers=headers, host_header=host_header)
    finally:
        r.close()


def test_origin_policy(server):
    p = server.port
    good = [None, "http://localhost", f"http://localhost:{p}", "https://localhost:8443",
            f"http://127.0.0.1:{p}", "https://127.0.0.1", f"http://[::1]:{p}", "http://[::1]"]
    bad = ["http://evil.example", f"http://evil.example:{p}", "http://localhost.evil.example",
           "http://127.0.0.1.evil.example", f"http://localhost:{p}@evil.example",
           "http://127.0.0.2", "ftp://localhost", "file://", "null", "localhost",
           "http://localhost:notaport"]
    for origin in good:
        hdrs = {"Origin": origin} if origin else None
        assert _upgrade_status(server, hdrs) == 101, origin
    for origin in bad:
        assert _upgrade_status(server, {"Origin": origin}) == 403, origin
    assert server.result("persona.list")["total_count"] == 2


def test_host_header_policy(server):
    p = server.port
    for host in (f"127.0.0.1:{p}", "127.0.0.1", f"localhost:{p}", "localhost",
                 f"[::1]:{p}"):
        assert _upgrade_status(server, host_header=host) == 101, host
    for host in ("evil.example", f"evil.example:{p}", f"attacker.test:{p}",
                 "127.0.0.1.evil.example", f"localhost.evil.example:{p}"):
        assert _upgrade_status(server, host_header=host) == 403, host
    assert server.result("persona.list")["total_count"] == 2
