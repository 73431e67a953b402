"""state.save / state.load over WebSocket (issue 6 item 4, spec §2.7, docs/STATE.md).

A server is filled (personas, memories with built-in and client embeddings, relationships,
emotional state), saved with state.save, the file copied into the data directory of a second
server on a fresh database, loaded there with state.load, and the two compared through the
protocol: persona.list, persona.status, memory.search (vector and hybrid), memory.stats,
relationship.get and emotional.get_state must be identical.

memory.search records accesses (asynchronously), which changes later results. So every
comparison query runs exactly once on each server, on a persona no earlier comparison query
touched: both servers are then in the same state when they answer it.

Client paths are confined to the data directory: traversal, absolute paths, symbolic links
out of it, FIFOs, directories and non-.jsonl names are refused with -32602 and create nothing
outside. A corrupt file is refused with -32602 and changes nothing.

test_state_100k_memories exports and re-imports 100,000 memories (size: PMCP_STATE_BIG_N).
"""

import asyncio
import os
import shutil
import time

from conftest import Conn, assert_error, run, unique_name
from memhelpers import without_timing
from memhelpers import INVALID_PARAMS, results

SAVE_TIMEOUT = 300.0


def client_vec(i, dim=16):
    return [((i * 7 + d * 13) % 17 - 8) / 8.0 + 0.001 * d for d in range(dim)]


async def fill(c, n_per_persona=60):
    """Three new personas, memories for them and for two client-embedding ids, social state."""
    pids = []
    for k in range(3):
        r = await c.result("persona.create", {
            "name": unique_name(f"st{k}"), "description": f"State test persona {k} \u00e9\u00fc",
            "personality_traits": {"curious": 50 + k}, "topic_preferences": {"magic": 10 * k},
            "charisma": 5 + k, "intelligence": 9 + k})
        pids.append(r["persona_id"])
    topics = ["dragons in the northern hills", "bread and slow fermentation",
              "the merchant guild's silk trade", "ancient books of magic",
              "storms over the mountains", "songs of travelling musicians"]
    calls = []
    for p in pids:
        mems = [{"content": f"{topics[i % len(topics)]} note {i} for {p[:8]}",
                 "importance": round(0.1 + 0.8 * i / n_per_persona, 3),
                 "memory_type": "observation" if i % 2 else "user_input",
                 "visibility": ("private", "shared", "public")[i % 3],
                 "emotional_valence": (i % 5 - 2) / 2.0,
                 "metadata": {"i": i, "tag": f"t{i % 4}"},
                 "related_personas": [pids[0]]}
                for i in range(n_per_persona)]
        calls.append(("memory.store_batch", {"persona_id": p, "memories": mems}))
    for cid in ("client-a", "client-b"):
        mems = [{"content": f"client vector memory {i} of {cid}", "importance": 0.5,
                 "embedding": client_vec(i)} for i in range(40)]
        calls.append(("memory.store_batch", {"persona_id": cid, "memories": mems}))
    await results(c, calls, timeout=60)
    await c.result("relationship.update", {"persona1_id": pids[0], "persona2_id": pids[1],
                                           "interaction_quality": 0.8, "duration_minutes": 12})
    await c.result("emotional.update_state", {"persona_id": pids[2], "mood": 0.4,
                                              "energy_level": 0.3})
    return pids


async def snapshot(c, pids):
    """Everything compared between the two servers. Each search runs once per persona."""
    out = {"list": await c.result("persona.list")}
    for p in pids:
        status = await c.result("persona.status", {"persona_id": p})
        status["memory_stats"] = without_timing(status["memory_stats"])
        out[f"status {p}"] = status
    out["rel"] = await c.result("relationship.get", {"persona1_id": pids[0],
                                                     "persona2_id": pids[1]})
    out["emo"] = await c.result("emotional.get_state", {"persona_id": pids[2]})
    out["search0"] = await c.result("memory.search", {"persona_id": pids[0],
                                                      "query": "dragons and magic books",
                                                      "n_results": 20})
    out["search1"] = await c.result("memory.search", {"persona_id": pids[1],
                                                      "query": "silk trade storms",
                                                      "n_results": 20, "hybrid": True})
    out["search2"] = await c.result("memory.search", {"persona_id": pids[2],
                                                      "query": "songs", "n_results": 10,
                                                      "min_importance": 0.5,
                                                      "visibility": "public"})
    out["searchc"] = await c.result("memory.search", {"persona_id": "client-a",
                                                      "embedding": client_vec(3),
                                                      "n_results": 15})
    out["stats"] = without_timing(await c.result("memory.stats", {"persona_id": "client-b"}))
    return out


def copy_state(src, dst, name):
    shutil.copyfile(os.path.join(src.data_dir, name), os.path.join(dst.data_dir, name))


def test_save_load_round_trip(server_factory):
    a = server_factory()
    b = server_factory()

    async def go():
        async with Conn(a.url) as c:
            pids = await fill(c)
            saved = await c.result("state.save", {"path": "snap.jsonl"})
            want = await snapshot(c, pids)
        assert saved["state_saved"] is True and saved["path"] == "snap.jsonl"
        assert saved["rows"]["memories"] == 3 * 60 + 80
        assert saved["rows"]["personas"] == 5
        assert saved["rows"]["relationships"] == 1
        assert saved["total_rows"] == sum(saved["rows"].values())
        assert not any(t.startswith("memories_fts") for t in saved["rows"])
        assert saved["bytes"] == os.path.getsize(os.path.join(a.data_dir, "snap.jsonl"))
        assert isinstance(saved["timestamp"], str) and saved["timestamp"]

        copy_state(a, b, "snap.jsonl")
        async with Conn(b.url) as c:
            before = await c.result("persona.list")
            assert before["total_count"] == 2  # the seeded personas of a fresh database
            loaded = await c.result("state.load", {"path": "snap.jsonl"})
            assert loaded["state_loaded"] is True and loaded["path"] == "snap.jsonl"
            assert loaded["rows"] == saved["rows"]
            assert loaded["created_at"] == saved["timestamp"]
            got = await snapshot(c, pids)
        for key in want:
            assert got[key] == want[key], f"{key} differs after state.load"
        assert len(want["search0"]["memories"]) == 20
        assert len(want["searchc"]["memories"]) == 15

    run(go())
    # The data survives a restart of the loading server (it is in SQLite, not only RAM).
    b.restart()
    res = b.result("persona.list")
    assert res["total_count"] == 5


def test_default_path_and_reload_same_server(server):
    async def go():
        async with Conn(server.url) as c:
            pids = await fill(c, n_per_persona=10)
            saved = await c.result("state.save")
            name = saved["path"]
            assert name.startswith("state-") and name.endswith(".jsonl") and "/" not in name
            assert os.path.isfile(os.path.join(server.data_dir, name))
            # Change things, then load: the changes are gone, the removed persona is back.
            await c.result("persona.delete", {"persona_id": pids[0]})
            await c.result("persona.create", {"name": "Transient"})
            loaded = await c.result("state.load", {"path": name})
            assert loaded["rows"] == saved["rows"]
            lst = await c.result("persona.list")
            names = [p["name"] for p in lst["personas"]]
            assert "Transient" not in names
            assert pids[0] in [p["id"] for p in lst["personas"]]
            st = await c.result("memory.stats", {"persona_id": pids[0]})
            assert st["total_memories"] == 10

    run(go())


def test_path_traversal_refused(server, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    data = server.data_dir
    os.symlink(str(outside), os.path.join(data, "escape"))
    os.symlink(str(outside / "target.jsonl"), os.path.join(data, "link.jsonl"))
    os.mkfifo(os.path.join(data, "fifo.jsonl"))
    os.mkdir(os.path.join(data, "dir.jsonl"))
    bad = ["../x.jsonl", "../../x.jsonl", "..", "/etc/passwd", str(outside / "abs.jsonl"),
           "a/../../x.jsonl", "./../x.jsonl", "escape/x.jsonl", "link.jsonl", "fifo.jsonl",
           "dir.jsonl", "personas.db", "personas.db-wal", "x.txt", ".hidden.jsonl", "",
           "x\u0000.jsonl", "nested/missing/x.jsonl", "x\n.jsonl"]

    async def go():
        async with Conn(server.url) as c:
            await c.result("state.save", {"path": "good.jsonl"})
            shutil.copyfile(os.path.join(data, "good.jsonl"), str(outside / "target.jsonl"))
            before = await c.result("persona.list")
            for p in bad:
                for method in ("state.save", "state.load"):
                    resp = await c.call(method, {"path": p})
                    err = assert_error(resp, INVALID_PARAMS)
                    assert len(err["message"]) > 10, (method, p, err)
            for params in ({"path": 5}, {"path": ["a.jsonl"]}, {}):
                for method in ("state.save", "state.load"):
                    if method == "state.save" and params == {}:
                        continue
                    assert_error(await c.call(method, params), INVALID_PARAMS)
            resp = await c.call("state.load", {"path": "does-not-exist.jsonl"})
            assert "not found" in assert_error(resp, INVALID_PARAMS)["message"]
            assert await c.result("persona.list") == before

    run(go())
    # Nothing was written outside the data directory or over the database.
    assert sorted(os.listdir(outside)) == ["target.jsonl"]
    assert not os.path.exists(os.path.join(os.path.dirname(data), "x.jsonl"))
    assert not [n for n in os.listdir(data) if n.startswith(".state-tmp")]
    with open(os.path.join(data, "personas.db"), "rb") as f:
        assert f.read(16) == b"SQLite format 3\x00"


def test_corrupt_file_refused_and_nothing_changes(server):
    data = server.data_dir

    async def go():
        async with Conn(server.url) as c:
            await fill(c, n_per_persona=5)
            await c.result("state.save", {"path": "s.jsonl"})
            with open(os.path.join(data, "s.jsonl"), "rb") as f:
                good = f.read()
            await c.result("persona.create", {"name": "AfterSave"})
            before = await c.result("persona.list")
            cases = {
                "tampered.jsonl": (good.replace(b"note 3 ", b"note X ", 1), "checksum"),
                "truncated.jsonl": (good[: len(good) // 2], "truncated"),
                "notrailer.jsonl": (good[: good.rstrip(b"\n").rfind(b"\n") + 1], "truncated"),
                "version.jsonl": (good.replace(b'"version":1,', b'"version":7,', 1), "version 7"),
                "other.jsonl": (b'{"hello":"world"}\n', "not a persona-mcp state file"),
            }
            for name, (content, needle) in cases.items():
                with open(os.path.join(data, name), "wb") as f:
                    f.write(content)
                err = assert_error(await c.call("state.load", {"path": name}), INVALID_PARAMS)
                assert needle in err["message"], (name, err)
            assert await c.result("persona.list") == before

    run(go())


def test_state_100k_memories(server_factory):
    """100k memories (10 personas x 10k, built-in 384-dim embeddings) saved, loaded into a
    fresh data directory; search results identical."""
    n = int(os.environ.get("PMCP_STATE_BIG_N", "100000"))
    personas = 10
    per = n // personas
    a = server_factory()
    b = server_factory()
    words = ["amber", "basalt", "cedar", "dune", "ember", "fjord", "glacier", "harbor", "island",
             "juniper", "kelp", "lagoon", "meadow", "nebula", "orchard", "prairie", "quartz",
             "reef", "savanna", "tundra"]

    def text(p, i):
        return (f"{words[i % 20]} {words[(i // 20) % 20]} {words[(i // 400) % 20]} "
                f"memory {i} of persona {p}")

    async def go():
        t0 = time.monotonic()
        async with Conn(a.url) as c:
            calls = []
            for p in range(personas):
                for start in range(0, per, 1000):
                    mems = [{"content": text(p, i), "importance": ((i * 37) % 100) / 100.0}
                            for i in range(start, min(per, start + 1000))]
                    calls.append(("memory.store_batch", {"persona_id": f"big-{p}",
                                                         "memories": mems}))
            for i in range(0, len(calls), 4):
                await results(c, calls[i:i + 4], timeout=300)
            t_fill = time.monotonic() - t0
            saved = await c.call("state.save", {"path": "big.jsonl"}, timeout=SAVE_TIMEOUT)
            assert "result" in saved, saved
            assert saved["result"]["rows"]["memories"] == per * personas
            want = []
            for p in range(personas):
                want.append(await c.result("memory.search", {
                    "persona_id": f"big-{p}", "query": f"{words[p]} {words[p + 3]} meadow",
                    "n_results": 25, "hybrid": p % 2 == 1}))
            want.append(without_timing(await c.result("memory.stats", {"persona_id": "big-0"})))
        copy_state(a, b, "big.jsonl")
        t1 = time.monotonic()
        async with Conn(b.url) as c:
            loaded = await c.call("state.load", {"path": "big.jsonl"}, timeout=SAVE_TIMEOUT)
            assert "result" in loaded, loaded
            assert loaded["result"]["rows"]["memories"] == per * personas
            t_load = time.monotonic() - t1
            got = []
            for p in range(personas):
                got.append(await c.result("memory.search", {
                    "persona_id": f"big-{p}", "query": f"{words[p]} {words[p + 3]} meadow",
                    "n_results": 25, "hybrid": p % 2 == 1}))
            got.append(without_timing(await c.result("memory.stats", {"persona_id": "big-0"})))
        for i, (w, g) in enumerate(zip(want, got)):
            assert w == g, f"result {i} differs after the 100k round trip"
        assert all(len(w["memories"]) == 25 for w in want[:-1])
        print(f"fill={t_fill:.1f}s load={t_load:.1f}s bytes={saved['result']['bytes']}")

    run(go())
