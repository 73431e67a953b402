"""Durability of acknowledged writes across shutdown and crash.

A write is answered only after its transaction committed (DESIGN.md, durability rule).
So: whatever persona.create the server acknowledged must be there after a restart, whether
the server was stopped with SIGTERM in the middle of a write burst or killed with SIGKILL.
Unacknowledged creates may or may not exist; they must not exist twice.
"""

import asyncio
import json
import os
import signal

import websockets

from conftest import Conn, run, unique_name

ARGS = ["--max-inflight", "64"]
CONNS = 6
WINDOW = 8  # creates kept in flight per connection


async def write_burst(srv, sig, after_seconds=0.8):
    """Pipelined creates from several connections; `sig` hits the server mid-burst.

    Returns (acked {persona_id: name}, sent names, creates in flight when the signal hit).
    """
    acked = {}
    sent = []
    pendings = []
    in_flight_at_signal = [0]
    loop = asyncio.get_running_loop()

    def fire():
        in_flight_at_signal[0] = sum(len(p) for p in pendings)
        os.kill(srv.proc.pid, sig)

    loop.call_later(after_seconds, fire)

    async def one(k):
        try:
            c = Conn(srv.url)
            await c.__aenter__()
        except (OSError, websockets.WebSocketException):
            return
        pending = {}  # request id -> name; matched by id, ordering is tested elsewhere
        pendings.append(pending)
        room = asyncio.Semaphore(WINDOW)
        done = asyncio.Event()

        async def sender():
            n = 0
            while not done.is_set() and n < 100000:
                await room.acquire()
                if done.is_set():
                    return
                name = f"dur-{k}-{n}-{unique_name()}"
                pending[n] = name
                sent.append(name)
                try:
                    await c.ws.send(json.dumps({"jsonrpc": "2.0", "method": "persona.create",
                                                "params": {"name": name}, "id": n}))
                except websockets.ConnectionClosed:
                    return
                n += 1

        async def receiver():
            try:
                while True:
                    frame = await asyncio.wait_for(c.ws.recv(), 15)
                    resp = json.loads(frame)
                    if resp.get("id") is None and "error" in resp:
                        # A shutdown rejection that did not name its request: not an ack.
                        # (test_requests_after_sigterm_keep_their_ids checks the id echo.)
                        room.release()
                        continue
                    assert resp.get("id") in pending, f"response to no pending request: {resp}"
                    name = pending.pop(resp["id"])
                    if "result" in resp:
                        assert resp["result"]["name"] == name, (resp, name)
                        acked[resp["result"]["persona_id"]] = name
                    room.release()
            except (websockets.ConnectionClosed, asyncio.TimeoutError, OSError):
                pass
            finally:
                done.set()
                room.release()

        s = asyncio.create_task(sender())
        await receiver()
        s.cancel()
        await asyncio.gather(s, return_exceptions=True)
        await asyncio.gather(c.__aexit__(None, None, None), return_exceptions=True)

    await asyncio.wait_for(asyncio.gather(*(one(k) for k in range(CONNS))), 60)
    return acked, sent, in_flight_at_signal[0]


def check_after_restart(srv, acked, sent):
    listed = srv.result("persona.list")["personas"]
    by_id = {p["id"]: p["name"] for p in listed}
    missing = [(pid, name) for pid, name in acked.items() if by_id.get(pid) != name]
    assert not missing, f"{len(missing)} acknowledged creates lost, e.g. {missing[:5]}"
    names = [p["name"] for p in listed]
    assert len(names) == len(set(names)), "a create was applied twice"
    sent_set = set(sent)
    unexpected = [n for n in names if n.startswith("dur-") and n not in sent_set]
    assert not unexpected, unexpected
    assert [p["name"] for p in listed[:2]] == ["Aria", "Kira"]


def test_sigterm_during_write_burst_keeps_acknowledged_writes(server_factory):
    srv = server_factory(args=ARGS)
    acked, sent, in_flight = run(write_burst(srv, signal.SIGTERM))
    rc = srv.wait_exit()  # already signalled; a second SIGTERM could mean "force"
    assert rc == 0, f"exit code {rc} after SIGTERM:\n{srv.log_tail()}"
    assert len(acked) >= 20, f"only {len(acked)} creates acknowledged before SIGTERM"
    assert in_flight > 0, "nothing in flight at the signal; the test proved nothing"
    srv.start()
    check_after_restart(srv, acked, sent)


def test_sigkill_during_write_burst_keeps_acknowledged_writes(server_factory):
    srv = server_factory(args=ARGS)
    acked, sent, in_flight = run(write_burst(srv, signal.SIGKILL))
    rc = srv.wait_exit()
    assert rc == -signal.SIGKILL, rc
    assert len(acked) >= 20 and in_flight > 0, (len(acked), in_flight)
    srv.start()
    check_after_restart(srv, acked, sent)
    # And the database is fully usable after crash recovery.
    r = srv.result("persona.create", {"name": "after-crash"})
    srv.restart()
    ids = [p["id"] for p in srv.result("persona.list")["personas"]]
    assert r["persona_id"] in ids


def test_repeated_crash_restart_cycles(server_factory):
    srv = server_factory(args=ARGS)
    all_acked = {}
    all_sent = []
    for cycle in range(3):
        acked, sent, _ = run(write_burst(srv, signal.SIGKILL, after_seconds=0.4))
        assert srv.wait_exit() == -signal.SIGKILL
        all_acked.update(acked)
        all_sent += sent
        srv.start()
        check_after_restart(srv, all_acked, all_sent)


def test_sigterm_with_idle_connections_exits_promptly(server):
    async def hold_and_stop():
        conns = [Conn(server.url) for _ in range(20)]
        await asyncio.gather(*(c.__aenter__() for c in conns))
        await conns[0].result("persona.switch", {"persona_id": "Aria"})
        os.kill(server.proc.pid, signal.SIGTERM)
        # The server closes the connections itself; clients notice within the bound.
        for c in conns:
            try:
                await asyncio.wait_for(c.ws.wait_closed(), 10)
            except asyncio.TimeoutError:
                raise AssertionError("connection still open 10 s after SIGTERM")
        return [c.ws.close_code for c in conns]

    codes = run(hold_and_stop())
    assert all(code in (1001, 1000, 1006, 1012) for code in codes), codes
    assert server.wait_exit() == 0, server.log_tail()


def test_sigint_exits_zero(server):
    assert server.result("persona.list")["total_count"] == 2
    server.stop_clean(signal.SIGINT)
    server.start()
    assert server.result("persona.list")["total_count"] == 2


def test_requests_after_sigterm_keep_their_ids(server):
    """Requests racing with shutdown are answered with their own id (result or error) or
    not at all (connection closed); never with an id-less error for a well-formed request."""

    async def go():
        async with Conn(server.url) as c:
            await c.result("persona.list")
            os.kill(server.proc.pid, signal.SIGTERM)
            sent = set()
            frames = []
            try:
                for i in range(50):
                    await c.send_json({"jsonrpc": "2.0", "method": "persona.create",
                                       "params": {"name": unique_name("late")}, "id": i})
                    sent.add(i)
                for _ in range(50):
                    frames.append(json.loads(await asyncio.wait_for(c.ws.recv(), 10)))
            except (websockets.ConnectionClosed, asyncio.TimeoutError):
                pass
            for f in frames:
                assert f.get("id") in sent, f"response without its request's id: {f}"
            return frames

    run(go())
    assert server.wait_exit() == 0, server.log_tail()
