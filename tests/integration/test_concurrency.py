"""Per-connection state under concurrency (spec §1.5, §12 item 7).

200 connections are open at the same time; each switches between its own persona and one of
the seeded ones and asks persona.status / system.status many times. Any answer naming
another connection's persona is cross-talk.
"""

import asyncio
import json
import random
import time

from conftest import Conn, RawWs, assert_success, run, unique_name

N_CONN = 200
ROUNDS = 6
STATUS_PER_ROUND = 5
ARGS = ["--max-connections", "1000", "--max-inflight", "64"]


async def create_personas(url, n, writers=4):
    names = [unique_name(f"conc{i:03d}") for i in range(n)]
    ids = [None] * n

    async def writer(k):
        async with Conn(url) as c:
            for i in range(k, n, writers):
                r = await c.result("persona.create", {"name": names[i],
                                                      "description": f"owned by {i}"})
                ids[i] = r["persona_id"]

    await asyncio.gather(*(writer(k) for k in range(writers)))
    return names, ids


def test_200_connections_no_cross_talk(server_factory):
    srv = server_factory(args=ARGS)

    async def go():
        names, ids = await create_personas(srv.url, N_CONN)
        async with Conn(srv.url) as c:
            listed = (await c.result("persona.list"))["personas"]
        seeded = {"Aria": listed[0]["id"], "Kira": listed[1]["id"]}
        conns = [Conn(srv.url) for _ in range(N_CONN)]
        # Open every connection before any work so they are all live at once.
        await asyncio.gather(*(c.__aenter__() for c in conns))
        rng = random.Random(1234)
        checks = [0] * N_CONN

        async def worker(i, c):
            for rnd in range(ROUNDS):
                if rnd % 2 == 0:
                    # Own persona, alternately by id and by (case-mangled) name.
                    key = ids[i] if rnd % 4 == 0 else names[i].upper()
                    want_id, want_name = ids[i], names[i]
                else:
                    seed_name = "Aria" if (i + rnd) % 2 else "Kira"
                    key, want_id, want_name = seed_name.lower(), seeded[seed_name], seed_name
                sw = await c.result("persona.switch", {"persona_id": key})
                assert sw["persona_id"] == want_id, (i, rnd, sw)
                for _ in range(STATUS_PER_ROUND):
                    if rng.random() < 0.3:
                        await asyncio.sleep(0)
                    st = await c.result("persona.status")
                    assert st["persona"]["id"] == want_id, \
                        f"conn {i} round {rnd}: got {st['persona']['name']}, want {want_name}"
                    assert st["persona"]["name"] == want_name
                    checks[i] += 1
                ss = await c.result("system.status")
                assert ss["current_persona"] == want_id, (i, rnd, ss["current_persona"])

        try:
            await asyncio.wait_for(
                asyncio.gather(*(worker(i, c) for i, c in enumerate(conns))), 300)
        finally:
            await asyncio.gather(*(c.__aexit__(None, None, None) for c in conns),
                                 return_exceptions=True)
        assert checks == [ROUNDS * STATUS_PER_ROUND] * N_CONN

    run(go())


def test_pipelined_switch_then_status_on_many_connections(server_factory):
    """Requests on one connection take effect in order even when pipelined."""
    srv = server_factory(args=ARGS)

    async def go():
        names, ids = await create_personas(srv.url, 50)
        conns = [Conn(srv.url) for _ in range(50)]
        await asyncio.gather(*(c.__aenter__() for c in conns))

        async def worker(i, c):
            order = [(ids[i], names[i]), (ids[(i + 1) % 50], names[(i + 1) % 50])] * 4
            frames = []
            for k, (pid, _) in enumerate(order):
                frames.append({"jsonrpc": "2.0", "method": "persona.switch",
                               "params": {"persona_id": pid}, "id": f"s{k}"})
                frames.append({"jsonrpc": "2.0", "method": "persona.status", "id": f"t{k}"})
            for f in frames:
                await c.send_raw(json.dumps(f))
            resps = [await c.recv() for _ in frames]
            assert [r["id"] for r in resps] == [f["id"] for f in frames]
            for r in resps:
                assert_success(r)
            for k, (pid, _) in enumerate(order):
                assert resps[2 * k + 1]["result"]["persona"]["id"] == pid, (i, k)

        try:
            await asyncio.wait_for(
                asyncio.gather(*(worker(i, c) for i, c in enumerate(conns))), 120)
        finally:
            await asyncio.gather(*(c.__aexit__(None, None, None) for c in conns),
                                 return_exceptions=True)

    run(go())


def test_disconnects_do_not_clear_other_connections(server_factory):
    """Upstream's conn_<count> ids collided after disconnects (spec §12 item 7)."""
    srv = server_factory(args=ARGS)

    async def go():
        async with Conn(srv.url) as keeper:
            await keeper.result("persona.switch", {"persona_id": "Aria"})
            for _ in range(20):
                async with Conn(srv.url) as c:
                    await c.result("persona.switch", {"persona_id": "Kira"})
            st = await keeper.result("persona.status")
            assert st["persona"]["name"] == "Aria"

    run(go())


def test_pipelined_stores_run_side_by_side_answers_in_order(server_factory):
    """memory.store calls pipelined on one connection run concurrently ("flights") but answer in
    request order; a request of another kind waits for them, so it sees every store before it;
    identical contents racing each other are still stored once; persona.switch applies exactly
    to the requests after it."""
    srv = server_factory(args=["--max-inflight", "256"])

    async def go():
        async with Conn(srv.url) as c:
            listed = (await c.result("persona.list"))["personas"]
            aria, kira = listed[0]["id"], listed[1]["id"]
            frames = [{"method": "persona.switch", "params": {"persona_id": aria}}]
            for i in range(60):
                text = "the same racing memory" if i % 10 == 3 else f"pipelined memory {i}"
                frames.append({"method": "memory.store", "params": {"content": text}})
            frames.append({"method": "memory.stats", "params": {}})
            frames.append({"method": "memory.search",
                           "params": {"query": "pipelined memory 59", "n_results": 1}})
            frames.append({"method": "persona.switch", "params": {"persona_id": kira}})
            for i in range(20):
                frames.append({"method": "memory.store", "params": {"content": f"kira {i}"}})
            frames.append({"method": "memory.stats", "params": {"persona_id": kira}})
            for k, f in enumerate(frames):
                f.update({"jsonrpc": "2.0", "id": k})
            for f in frames:
                await c.send_raw(json.dumps(f))
            resps = [await c.recv() for _ in frames]
            assert [r["id"] for r in resps] == list(range(len(frames))), "answers out of order"
            for r in resps:
                assert_success(r)
            stores = [r["result"] for r in resps[1:61]]
            racing = [s for i, s in enumerate(stores) if i % 10 == 3]
            assert len({s["memory_id"] for s in racing}) == 1, racing
            assert sum(1 for s in racing if not s["duplicate"]) == 1, racing
            assert resps[61]["result"]["total_memories"] == 55, resps[61]
            found = resps[62]["result"]["memories"]
            assert found and found[0]["content"] == "pipelined memory 59", found
            assert resps[-1]["result"]["total_memories"] == 20, resps[-1]
            kira_ids = {r["result"]["memory_id"] for r in resps[64:84]}
            assert len(kira_ids) == 20

    run(go())




def test_answers_queue_behind_bytes_lws_still_holds(server_factory):
    """An answer that does not fit the socket stays buffered in libwebsockets until POLLOUT.
    Answers posted by the worker threads meanwhile must wait behind it: lws 4.1 leaves a frame
    "open" when a text write only drains that buffer, and the next text frame then went out
    without its header (the client saw a protocol error). Here a client that reads nothing
    for a while gets a search answer of ~2.5 MB that fills the socket, then small answers one
    by one behind it; every frame must then parse, in order."""
    srv = server_factory()
    ws = RawWs(srv.host, srv.port, rcvbuf=4096)
    try:
        assert ws.handshake() == 101
        call_id = iter(range(1, 10**6))

        def call(method, params):
            ws.send_text(json.dumps({"jsonrpc": "2.0", "id": next(call_id), "method": method,
                                     "params": params}))

        call("persona.list", {})
        aria = ws.recv_json()["result"]["personas"][0]["id"]
        call("persona.switch", {"persona_id": aria})
        assert_success(ws.recv_json())
        for b in range(3):
            mems = [{"content": f"long memory {b} {i} " + "lorem ipsum " * 680}
                    for i in range(100)]
            call("memory.store_batch", {"memories": mems})
            assert ws.recv_json()["result"]["stored"] == 100
        first = next(call_id)
        ws.send_text(json.dumps({"jsonrpc": "2.0", "id": first, "method": "memory.search",
                                 "params": {"query": "lorem", "n_results": 300}}))
        for k in range(6):
            time.sleep(0.15)  # one answer per post batch, while the big one is still held
            call("memory.search", {"query": f"long memory {k}", "n_results": 1})
        resps = [ws.recv_json() for _ in range(7)]
        assert [r["id"] for r in resps] == list(range(first, first + 7))
        for r in resps:
            assert_success(r)
        assert len(resps[0]["result"]["memories"]) == 300
        assert all(len(r["result"]["memories"]) == 1 for r in resps[1:])
    finally:
        ws.close()

