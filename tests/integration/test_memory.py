"""Vector memory over WebSocket: memory.store/store_batch/search/update/delete/stats,
cross-persona search, shared statistics, persona.memory, restart and crash durability.

Reference: spec §2.5 (memory.*), §2.2 (persona.memory, persona.status, persona.delete), §5.2,
§6.1, §11 items 5, 6, 8, 9 and §12 items 12a-17, 20, 25, 28; issue 3.

Every test starts its own server on a fresh data directory (conftest.server), so counts are
absolute. Memories are stored under arbitrary persona_id strings unless a test needs a
registered persona (automatic importance scoring, persona.status, persona.delete).
"""

import asyncio
import json
import math
import time
import uuid

import websockets

from conftest import Conn, assert_error, unique_name
from memhelpers import (INVALID_PARAMS, MEMORY_ERROR, NO_ACTIVE_PERSONA, epoch, expect_error,
                        ids, pipeline, results, search, seeded_ids, srun, stats, store,
                        wait_for, without_timing)

SEARCH_ITEM_KEYS = {"id", "content", "memory_type", "importance", "emotional_valence",
                    "related_personas", "visibility", "created_at", "accessed_count"}
CROSS_ITEM_KEYS = {"memory_id", "content", "similarity", "importance", "memory_type",
                   "created_at", "visibility", "source", "source_persona"}
STATS_KEYS = {"total_memories", "avg_importance", "memory_types", "high_importance_count",
              "created_today"}


def pid(prefix="mem"):
    return unique_name(prefix)


def approx(a, b, tol=1e-6):
    return abs(a - b) <= tol


def check_search_shape(res, query=None):
    assert set(res) >= {"memories", "query", "result_count"}, res
    assert isinstance(res["memories"], list)
    assert res["result_count"] == len(res["memories"]), res
    if "total_results" in res:
        assert res["total_results"] == len(res["memories"]), res
    if query is not None:
        assert res["query"] == query
    sims = []
    for m in res["memories"]:
        assert set(m) >= SEARCH_ITEM_KEYS, m
        assert 0.0 <= m["importance"] <= 1.0, m
        assert isinstance(m["accessed_count"], int) and m["accessed_count"] >= 0, m
        assert m["visibility"] in ("private", "shared", "public"), m
        epoch(m["created_at"])
        if "similarity" in m:
            assert 0.0 <= m["similarity"] <= 1.0, m
            sims.append(m["similarity"])
    assert sims == sorted(sims, reverse=True), f"results not ordered by similarity: {sims}"


# --- memory.store --------------------------------------------------------------------------


def test_store_defaults_and_returned_fields(server):
    async def body():
        async with Conn(server.url) as c:
            p = pid()
            t0 = time.time()
            r = await store(c, p, "The lighthouse keeper polished the great brass lens")
            t1 = time.time()
            assert r["stored"] is True and r["duplicate"] is False, r
            assert isinstance(r["memory_id"], str) and len(r["memory_id"]) == 36, r
            uuid.UUID(r["memory_id"])
            if "id" in r:
                assert r["id"] == r["memory_id"]
            res = await search(c, p, "lighthouse keeper lens")
            check_search_shape(res, "lighthouse keeper lens")
            assert res["result_count"] == 1
            m = res["memories"][0]
            assert m["id"] == r["memory_id"]
            assert m["content"] == "The lighthouse keeper polished the great brass lens"
            assert m["memory_type"] == "user_input"
            assert m["visibility"] == "private"
            assert m["emotional_valence"] == 0.0
            assert m["related_personas"] == []
            assert m.get("metadata", {}) == {}
            assert m["accessed_count"] == 0, "first search must show no earlier access"
            # importance absent -> scored automatically, and reported the same everywhere
            assert 0.1 <= m["importance"] <= 1.0
            if "importance" in r:
                assert approx(r["importance"], m["importance"])
            assert t0 - 1.0 <= epoch(m["created_at"]) <= t1 + 1.0

            # every optional field given explicitly comes back as given
            r2 = await store(c, p, "Kira lent me a book about comets", memory_type="manual",
                             importance=0.42, emotional_valence=-0.5,
                             related_personas=["kira", "someone else"], visibility="shared")
            res = await search(c, p, "book about comets", n_results=1)
            m = res["memories"][0]
            assert m["id"] == r2["memory_id"]
            assert (m["memory_type"], m["visibility"]) == ("manual", "shared")
            assert approx(m["importance"], 0.42) and approx(m["emotional_valence"], -0.5)
            assert m["related_personas"] == ["kira", "someone else"]
            assert (await stats(c, p))["total_memories"] == 2

    srun(server, body())


def test_store_any_persona_id_string_and_current_persona(server):
    async def body():
        async with Conn(server.url) as c:
            # §11 item 5: the upstream client stores under the literal "aria"
            r = await store(c, "aria", "I met a travelling juggler at the fair")
            assert r["stored"] is True
            st = await stats(c, "aria")
            assert st["total_memories"] == 1, st
            res = await search(c, "aria", "juggler at the fair")
            assert ids(res["memories"]) == [r["memory_id"]]
            # no persona_id and no current persona
            await expect_error(c, "memory.store", {"content": "orphan"}, NO_ACTIVE_PERSONA)
            await expect_error(c, "memory.search", {"query": "orphan"}, NO_ACTIVE_PERSONA)
            await expect_error(c, "memory.stats", {}, NO_ACTIVE_PERSONA)
            # after persona.switch the current persona is the default
            names = await seeded_ids(c)
            await c.result("persona.switch", {"persona_id": "Kira"})
            r = await c.result("memory.store", {"content": "The observatory dome creaks at night"})
            if "persona_id" in r:
                assert r["persona_id"] == names["Kira"], r
            assert (await c.result("memory.stats", {}))["total_memories"] == 1
            assert (await stats(c, names["Kira"]))["total_memories"] == 1
            res = await c.result("memory.search", {"query": "observatory dome"})
            assert ids(res["memories"]) == [r["memory_id"]]
            # the literal "aria" is its own memory space, not Aria's
            assert (await stats(c, names["Aria"])) == {"total_memories": 0}

    srun(server, body())


# §6.1 test vectors (HEAD formula; the user-chat context adds nothing to these texts).
SCORE_VECTORS = [
    ("User said: Hello!. I responded: Hi there, traveler!", 0.595, 0.55, 0.51),
    ("User said: I love reading about magical theories and ancient spells. "
     "I responded: How wonderful!", 0.675, 0.695, 0.605),
    ("The weather is nice today", 0.41, 0.39, 0.35),
    ("EMERGENCY! There's a dragon attacking!", 0.75, 0.73, 0.69),
]


def test_auto_importance(server):
    async def body():
        async with Conn(server.url) as c:
            names = await seeded_ids(c)
            nobody = pid("nobody")
            bland = await store(c, nobody, "The table is made of wood")
            emo = await store(c, nobody, "I am furious and heartbroken!!! It was a betrayal, "
                                         "a crisis I will never forget")
            res = await search(c, nobody, "table wood furious", n_results=10)
            imp = {m["id"]: m["importance"] for m in res["memories"]}
            b, e = imp[bland["memory_id"]], imp[emo["memory_id"]]
            assert b < 0.5, f"bland text scored {b}"
            assert e >= b + 0.25, f"emotional text ({e}) must score well above bland ({b})"

            # Aria's topic interest (music 95) raises the score of the same text
            text = "We played music all night by the campfire"
            ra = await store(c, names["Aria"], text)
            rn = await store(c, nobody, text)
            ia = (await search(c, names["Aria"], text, n_results=1))["memories"][0]["importance"]
            inn = [m["importance"] for m in
                   (await search(c, nobody, text, n_results=10))["memories"]
                   if m["id"] == rn["memory_id"]][0]
            assert ra["memory_id"] != rn["memory_id"]
            assert ia >= inn + 0.05, f"Aria's interest in music must raise it: {ia} vs {inn}"

            # explicit importance is kept exactly, including the bounds; null = automatic
            for value in (0.0, 0.42, 1.0):
                r = await store(c, nobody, f"explicit importance {value} marker", importance=value)
                res = await search(c, nobody, f"explicit importance {value} marker", n_results=1)
                assert res["memories"][0]["id"] == r["memory_id"]
                assert approx(res["memories"][0]["importance"], value), res
            r = await store(c, nobody, "The chair is made of oak", importance=None)
            res = await search(c, nobody, "chair made of oak", n_results=1)
            assert approx(res["memories"][0]["importance"], b, 1e-3), res

            # §12 item 25: memory-type multipliers are applied (routine 0.6 < trauma 1.6)
            rr = await store(c, nobody, "The bridge collapsed under the wagon",
                             memory_type="routine")
            rt = await store(c, nobody, "The bridge collapsed under the cart", memory_type="trauma")
            got = {m["id"]: m["importance"] for m in
                   (await search(c, nobody, "bridge collapsed", n_results=20))["memories"]}
            assert got[rt["memory_id"]] > got[rr["memory_id"]], got

    srun(server, body())


def test_auto_importance_matches_spec_vectors(server):
    """§6.1 table: Aria, Kira and an unregistered persona id (no speaker interest)."""

    async def body():
        async with Conn(server.url) as c:
            names = await seeded_ids(c)
            nobody = pid("nobody")
            bad = []
            for text, aria, kira, none in SCORE_VECTORS:
                for who, want in ((names["Aria"], aria), (names["Kira"], kira), (nobody, none)):
                    await store(c, who, text, memory_type="conversation")
                    got = (await search(c, who, text, n_results=1))["memories"][0]
                    assert got["content"] == text
                    if abs(got["importance"] - want) > 0.0015:
                        bad.append(f"{text!r} as {who}: expected {want}, got {got['importance']}")
            assert not bad, "\n".join(bad)

    srun(server, body())


def test_store_validation(server):
    async def body():
        async with Conn(server.url) as c:
            p = pid()
            cases = [
                {"content": "x", "visibility": "secret"},
                {"content": "x", "visibility": 3},
                {"content": "x", "importance": 1.5},
                {"content": "x", "importance": -0.1},
                {"content": "x", "importance": "high"},
                {"content": "x", "emotional_valence": 2},
                {"content": "x", "related_personas": [1, 2]},
                {"content": "x", "related_personas": ["kira", None]},
                {"content": "x", "related_personas": "kira"},
                {"content": "x", "metadata": "not an object"},
                {"content": "x", "metadata": [1, 2]},
                {"content": ""},
                {"content": 42},
                {},
            ]
            for params in cases:
                resp = await c.call("memory.store", {"persona_id": p, **params})
                err = assert_error(resp, INVALID_PARAMS)
                assert err["message"], params
            assert (await stats(c, p)) == {"total_memories": 0}, "a rejected store left a row"

    srun(server, body())


def test_metadata_kept_apart_from_reserved_fields(server):
    async def body():
        async with Conn(server.url) as c:
            p = pid()
            meta = {"importance": 0.99, "visibility": "public", "memory_type": "hacked",
                    "id": "not-the-id", "source": "chat", "nested": {"a": [1, 2, {"b": None}]},
                    "flag": True, "count": 3}
            r = await store(c, p, "The bell tower rang thirteen times", importance=0.3,
                            metadata=meta)
            assert r["stored"] is True
            res = await search(c, p, "bell tower rang", n_results=1)
            m = res["memories"][0]
            assert m["id"] == r["memory_id"]
            assert approx(m["importance"], 0.3)
            assert m["visibility"] == "private"
            assert m["memory_type"] == "user_input"
            assert m["metadata"] == meta, "metadata must come back exactly as given"
            # the reserved fields really are the stored ones: filters agree
            pub = await search(c, p, "bell tower", visibility="public")
            assert pub["memories"] == []
            hi = await search(c, p, "bell tower", min_importance=0.9)
            assert hi["memories"] == []
            typed = await search(c, p, "bell tower", memory_type="hacked")
            assert typed["memories"] == []
            st = await stats(c, p)
            assert st["memory_types"] == {"user_input": 1}, st
            shared = await c.result("memory.shared_stats")
            assert shared["shared_memory_statistics"]["public_memories"] == 0

    srun(server, body())


def test_duplicates_not_stored_twice(server):
    async def body():
        async with Conn(server.url) as c:
            p, q = pid(), pid()
            text = "The old mill by the river burned down in winter"
            first = await store(c, p, text)
            assert first["duplicate"] is False
            before = await stats(c, p)
            again = await store(c, p, text, importance=0.9, visibility="public")
            assert again["duplicate"] is True, again
            assert again["memory_id"] == first["memory_id"]
            assert again["stored"] is True
            assert (await stats(c, p)) == before, "a duplicate changed the statistics"
            res = await search(c, p, text, n_results=10)
            assert ids(res["memories"]) == [first["memory_id"]]
            assert res["memories"][0]["visibility"] == "private", "the duplicate's fields leaked"
            # another persona may hold the same text as its own memory
            other = await store(c, q, text)
            assert other["duplicate"] is False and other["memory_id"] != first["memory_id"]
            # a near-duplicate (different text) is a new memory
            near = await store(c, p, text + "!")
            assert near["duplicate"] is False
            assert (await stats(c, p))["total_memories"] == 2

    srun(server, body())


# --- memory.store_batch -----------------------------------------------------------------------


TOPICS = ["harbor", "forest", "library", "market", "castle", "river", "mountain", "tavern",
          "garden", "bridge"]


def batch_items(n, tag):
    items = []
    for i in range(n):
        t = TOPICS[i % len(TOPICS)]
        items.append({"content": f"{tag} entry {i}: a story about the {t} and item{i}word",
                      "memory_type": ["fact", "story", "rumor"][i % 3],
                      "importance": round(0.05 + 0.9 * (i / max(1, n - 1)), 3),
                      "visibility": ["private", "shared", "public"][i % 3]})
    return items


def test_store_batch_100(server):
    async def body():
        async with Conn(server.url) as c:
            p = pid()
            items = batch_items(100, "batch")
            res = await c.result("memory.store_batch", {"persona_id": p, "memories": items})
            rows = res["results"]
            assert len(rows) == 100
            assert res["stored"] == 100 and res.get("duplicates", 0) == 0, res
            mids = [r["memory_id"] for r in rows]
            assert len(set(mids)) == 100
            assert all(r["duplicate"] is False for r in rows)
            st = await stats(c, p)
            assert st["total_memories"] == 100
            assert st["memory_types"] == {"fact": 34, "story": 33, "rumor": 33}, st
            assert st["high_importance_count"] == sum(1 for it in items if it["importance"] >= 0.7)
            # results are in input order: each id belongs to its item
            for i in (0, 37, 57, 99):
                found = await search(c, p, items[i]["content"], n_results=1)
                m = found["memories"][0]
                assert m["id"] == mids[i], (i, m)
                assert m["content"] == items[i]["content"]
                assert m["memory_type"] == items[i]["memory_type"]
                assert m["visibility"] == items[i]["visibility"]
                assert approx(m["importance"], items[i]["importance"])
            # duplicates inside a batch and against stored memories
            again = [items[5], {"content": "fresh one"}, {"content": "fresh one"}]
            res = await c.result("memory.store_batch", {"persona_id": p, "memories": again})
            r = res["results"]
            assert r[0]["duplicate"] is True and r[0]["memory_id"] == mids[5]
            assert r[1]["duplicate"] is False
            assert r[2]["duplicate"] is True and r[2]["memory_id"] == r[1]["memory_id"]
            assert res["stored"] == 1
            assert (await stats(c, p))["total_memories"] == 101

    srun(server, body())


def test_store_batch_validation_is_all_or_nothing(server):
    async def body():
        async with Conn(server.url) as c:
            p = pid()
            base = batch_items(10, "atomic")
            for idx, bad in ((7, {"content": "x", "visibility": "secret"}),
                             (3, {"content": "x", "importance": "high"}),
                             (9, {"content": "x", "importance": 1.2}),
                             (0, {"content": ""}),
                             (4, {"content": "x", "related_personas": [7]}),
                             (6, "not an object")):
                items = list(base)
                items[idx] = bad
                err = await expect_error(c, "memory.store_batch",
                                         {"persona_id": p, "memories": items}, INVALID_PARAMS)
                assert f"memories[{idx}]" in err["message"], err
                assert (await stats(c, p)) == {"total_memories": 0}, f"partial batch ({idx})"
            for bad in ([], "x", {"content": "x"}, None):
                await expect_error(c, "memory.store_batch", {"persona_id": p, "memories": bad},
                                   INVALID_PARAMS)
            await expect_error(c, "memory.store_batch", {"persona_id": p}, INVALID_PARAMS)
            # a failure found only when writing (embedding model clash between items)
            mixed = [{"content": "built-in embedded"},
                     {"content": "client embedded", "embedding": [1.0, 0.0, 0.0]}]
            await expect_error(c, "memory.store_batch", {"persona_id": p, "memories": mixed},
                               MEMORY_ERROR)
            assert (await stats(c, p)) == {"total_memories": 0}, "partial batch after write error"
            # the failed batches left nothing behind: the whole batch stores now
            res = await c.result("memory.store_batch", {"persona_id": p, "memories": base})
            assert res["stored"] == 10
            assert (await stats(c, p))["total_memories"] == 10

    srun(server, body())


# --- memory.search ---------------------------------------------------------------------------


CORPUS = [
    "The blacksmith forged a silver sword for the young knight",
    "Aria sang a ballad about the northern lights at the tavern",
    "Kira studied ancient runes in the library until dawn",
    "The merchant sold spices and silk at the harbor market",
    "A storm flooded the village bridge last spring",
    "The gardener planted roses and tulips beside the fountain",
    "Pirates buried a chest of gold coins on the island",
    "The baker woke early to knead bread for the festival",
]
QUERIES = [
    ("silver sword forged by the blacksmith", 0),
    ("ancient runes library", 2),
    ("spices and silk at the harbor", 3),
    ("storm flooded the bridge", 4),
    ("roses tulips fountain", 5),
    ("gold coins pirates island", 6),
]


def test_search_ranks_word_overlap_first(server):
    async def body():
        async with Conn(server.url) as c:
            p = pid()
            mids = [(await store(c, p, t))["memory_id"] for t in CORPUS]
            for q, want in QUERIES:
                res = await search(c, p, q, n_results=8)
                check_search_shape(res, q)
                assert res["memories"][0]["id"] == mids[want], (q, res["memories"][0]["content"])
                sims = [m["similarity"] for m in res["memories"]]
                assert sims[0] > sims[1], f"{q!r}: the best match must stand out: {sims}"
            # a query sharing nothing ranks nothing with a high similarity
            res = await search(c, p, "zzqx vrwplk", n_results=8)
            assert all(m["similarity"] < 0.5 for m in res["memories"]), res

    srun(server, body())


def test_search_n_results_and_limit_alias(server):
    async def body():
        async with Conn(server.url) as c:
            p = pid()
            await c.result("memory.store_batch",
                           {"persona_id": p, "memories": batch_items(12, "count")})
            assert len((await search(c, p, "story"))["memories"]) == 5, "default n_results is 5"
            assert len((await search(c, p, "story", n_results=3))["memories"]) == 3
            assert len((await search(c, p, "story", n_results=50))["memories"]) == 12
            res = await search(c, p, "story", limit=4)
            assert len(res["memories"]) == 4 and res["result_count"] == 4, "limit is an alias"
            assert len((await search(c, p, "story", limit=1))["memories"]) == 1
            # persona with no memories: empty, not an error
            empty = await search(c, pid(), "story")
            assert empty["memories"] == [] and empty["result_count"] == 0

    srun(server, body())


def test_search_filters_combine(server):
    """§12 item 16: min_importance, memory_type and visibility all apply together."""

    async def body():
        async with Conn(server.url) as c:
            p = pid()
            rows = []
            for t in ("fact", "story"):
                for vis in ("private", "shared", "public"):
                    for imp in (0.2, 0.5, 0.8):
                        rows.append({"content": f"a {t} note kept {vis} at level {imp} "
                                                f"number {len(rows)}",
                                     "memory_type": t, "visibility": vis, "importance": imp})
            res = await c.result("memory.store_batch", {"persona_id": p, "memories": rows})
            for row, r in zip(rows, res["results"]):
                row["id"] = r["memory_id"]

            def expect(min_imp=0.0, mtype=None, vis=None):
                return {r["id"] for r in rows if r["importance"] >= min_imp
                        and (mtype is None or r["memory_type"] == mtype)
                        and (vis is None or r["visibility"] == vis)}

            cases = [
                {},
                {"min_importance": 0.5},
                {"memory_type": "fact"},
                {"visibility": "shared"},
                {"memory_type": "fact", "min_importance": 0.5},
                {"memory_type": "story", "visibility": "private"},
                {"min_importance": 0.8, "visibility": "public"},
                {"memory_type": "fact", "min_importance": 0.5, "visibility": "shared"},
                {"memory_type": "story", "min_importance": 0.8, "visibility": "public"},
                {"memory_type": "dream"},
                {"memory_type": "dream", "min_importance": 0.1},
            ]
            for f in cases:
                res = await search(c, p, "note kept at level", n_results=50, **f)
                check_search_shape(res)
                got = set(ids(res["memories"]))
                want = expect(f.get("min_importance", 0.0), f.get("memory_type"),
                              f.get("visibility"))
                assert got == want, f"filters {f}: got {len(got)}, expected {len(want)}"
                for m in res["memories"]:
                    assert m["importance"] >= f.get("min_importance", 0.0)
            # filtering happens before the top-k cut: k results even if the nearest are filtered
            res = await search(c, p, "a fact note kept private", n_results=3, memory_type="story",
                               min_importance=0.5)
            assert len(res["memories"]) == 3
            assert all(m["memory_type"] == "story" and m["importance"] >= 0.5
                       for m in res["memories"])

    srun(server, body())


def test_hybrid_search_returns_keyword_match(server):
    async def body():
        async with Conn(server.url) as c:
            p = pid()
            filler = [{"content": f"The caravan travelled through the desert town of "
                                  f"{TOPICS[i % 10]} on day {i}, selling lamps and rugs"}
                      for i in range(40)]
            await c.result("memory.store_batch", {"persona_id": p, "memories": filler})
            target = await store(c, p, "In the desert caravan one merchant whispered the word "
                                       "quixotrel, the name of a forgotten lamp")
            # the rare keyword alone: the one memory holding it comes first
            res = await search(c, p, "quixotrel", n_results=3, hybrid=True)
            check_search_shape(res)
            assert res.get("hybrid", True) is True
            assert res["memories"][0]["id"] == target["memory_id"], res["memories"][0]

            # keyword plus common words: the vector ranking alone buries the keyword match
            # under the filler that shares the common words; fusing in BM25 lifts it.
            def rank(res):
                got = ids(res["memories"])
                return got.index(target["memory_id"]) if target["memory_id"] in got else 99

            q = "quixotrel desert caravan lamps"
            vec = await search(c, p, q, n_results=41)
            hyb = await search(c, p, q, n_results=41, hybrid=True)
            check_search_shape(vec)
            assert len(hyb["memories"]) == 41
            assert set(ids(hyb["memories"])) == set(ids(vec["memories"]))
            assert rank(hyb) < rank(vec), (rank(hyb), rank(vec))
            assert rank(hyb) < 15, f"hybrid ranked the keyword match at {rank(hyb)}"
            top = await search(c, p, q, n_results=15, hybrid=True)
            assert target["memory_id"] in ids(top["memories"])
            # filters apply to hybrid results too
            res = await search(c, p, "quixotrel", n_results=3, hybrid=True, visibility="public")
            assert res["memories"] == []

    srun(server, body())


def test_client_supplied_embeddings(server):
    async def body():
        async with Conn(server.url) as c:
            p = pid("emb")
            vecs = {"north": [1, 0, 0, 0], "east": [0, 1, 0, 0], "up": [0, 0, 1, 0],
                    "mix": [0.6, 0.8, 0, 0]}
            mid = {}
            for name, v in vecs.items():
                mid[name] = (await store(c, p, f"vector {name}", embedding=v))["memory_id"]
            res = await c.result("memory.search", {"persona_id": p, "embedding": [0.9, 0.1, 0, 0],
                                                   "n_results": 4})
            check_search_shape(res)
            got = ids(res["memories"])
            assert got[0] == mid["north"], res
            assert got[-1] == mid["up"]
            sim = res["memories"][0]["similarity"]
            assert approx(sim, 0.9 / math.sqrt(0.82), 1e-3), sim
            # dimension mismatch: clear memory error on store and on search
            err = await expect_error(c, "memory.store", {"persona_id": p, "content": "three dims",
                                                          "embedding": [1, 2, 3]}, MEMORY_ERROR)
            assert "mismatch" in err["message"].lower() or "dimension" in err["message"].lower()
            err = await expect_error(c, "memory.search", {"persona_id": p, "embedding": [1, 2, 3]},
                                     MEMORY_ERROR)
            assert "mismatch" in err["message"].lower() or "dimension" in err["message"].lower()
            # text (built-in embedder) against a client-embedding collection
            err = await expect_error(c, "memory.search", {"persona_id": p, "query": "vector"},
                                     MEMORY_ERROR)
            assert "mismatch" in err["message"].lower() or "model" in err["message"].lower()
            await expect_error(c, "memory.store", {"persona_id": p, "content": "plain text"},
                               MEMORY_ERROR)
            assert (await stats(c, p))["total_memories"] == 4
            # and the reverse: client vectors against a built-in collection
            q = pid("txt")
            await store(c, q, "plain text memory")
            await expect_error(c, "memory.search", {"persona_id": q, "embedding": [1, 0, 0, 0]},
                               MEMORY_ERROR)
            # malformed vectors are parameter errors
            for bad in ([], ["a", 1], "1,2,3", [0, 0, 0, 0]):
                await expect_error(c, "memory.search", {"persona_id": p, "embedding": bad},
                                   INVALID_PARAMS)
                await expect_error(c, "memory.store", {"persona_id": p, "content": "bad vec",
                                                       "embedding": bad}, INVALID_PARAMS)

    srun(server, body())


def test_accessed_count_recorded(server):
    async def body():
        async with Conn(server.url) as c:
            p = pid()
            a = await store(c, p, "An apple pie recipe with cinnamon and cloves",
                            visibility="shared")
            b = await store(c, p, "Notes on a rocket engine design", visibility="private")
            first = await search(c, p, "apple pie", visibility="shared")
            assert ids(first["memories"]) == [a["memory_id"]]
            assert first["memories"][0]["accessed_count"] == 0
            assert first["memories"][0].get("last_accessed") is None

            async def counted():
                res = await search(c, p, "apple pie", visibility="shared")
                m = res["memories"][0]
                return m if m["accessed_count"] >= 1 else None

            m = await wait_for(counted, timeout=5, what="accessed_count >= 1")
            assert m.get("last_accessed") is not None, m
            assert epoch(m["last_accessed"]) >= epoch(m["created_at"])
            seen = m["accessed_count"]

            async def grew():
                res = await search(c, p, "apple pie", visibility="shared")
                return res["memories"][0]["accessed_count"] > seen

            await wait_for(grew, timeout=5, what="accessed_count to keep growing")
            # the memory never returned was never accessed
            res = await search(c, p, "rocket engine", visibility="private")
            assert ids(res["memories"]) == [b["memory_id"]]
            assert res["memories"][0]["accessed_count"] == 0

    srun(server, body())


def test_created_at_is_store_time(server):
    async def body():
        async with Conn(server.url) as c:
            p = pid()
            t0 = time.time()
            await store(c, p, "The comet appeared above the eastern hills")
            t1 = time.time()
            await asyncio.sleep(1.3)
            res1 = await search(c, p, "comet eastern hills")
            t2 = time.time()
            created = epoch(res1["memories"][0]["created_at"])
            assert t0 - 0.5 <= created <= t1 + 0.5, (t0, created, t1)
            assert t2 - created >= 1.0, "created_at is the search time, not the store time"
            await asyncio.sleep(0.2)
            res2 = await search(c, p, "comet eastern hills")
            assert res2["memories"][0]["created_at"] == res1["memories"][0]["created_at"]

    srun(server, body())


# --- memory.update / memory.delete --------------------------------------------------------------


def test_update_changes_ranking_and_fields(server):
    async def body():
        async with Conn(server.url) as c:
            p, other = pid(), pid("viewer")
            x = (await store(c, p, "The lighthouse keeper polished the lens", importance=0.3))
            y = (await store(c, p, "A red fox crossed the frozen river", importance=0.4))
            z = (await store(c, p, "Camels rested at the oasis well", importance=0.4))
            q = "desert caravan of camels crossing the dunes"
            before = await search(c, p, q, n_results=3)
            assert before["memories"][0]["id"] == z["memory_id"]
            y_before = [m["similarity"] for m in before["memories"] if m["id"] == y["memory_id"]][0]

            r = await c.result("memory.update", {"memory_id": y["memory_id"],
                                                 "content": "A desert caravan of camels crossing "
                                                            "the dunes at dusk"})
            assert r.get("updated") is True and r["memory_id"] == y["memory_id"], r
            after = await search(c, p, q, n_results=3)
            assert after["memories"][0]["id"] == y["memory_id"], "content change must re-rank"
            assert after["memories"][0]["content"].startswith("A desert caravan")
            assert after["memories"][0]["similarity"] > y_before
            old = await search(c, p, "red fox frozen river", n_results=3)
            assert old["memories"][0]["id"] != y["memory_id"] or \
                old["memories"][0]["similarity"] < 0.5, "old content must no longer match"

            await c.result("memory.update", {"memory_id": x["memory_id"], "importance": 0.9})
            res = await search(c, p, "lighthouse keeper", min_importance=0.85)
            assert ids(res["memories"]) == [x["memory_id"]]
            assert approx(res["memories"][0]["importance"], 0.9)
            assert (await stats(c, p))["high_importance_count"] == 1

            await c.result("memory.update", {"memory_id": x["memory_id"], "visibility": "public",
                                             "memory_type": "landmark",
                                             "metadata": {"town": "Saltmere"}})
            res = await search(c, p, "lighthouse", visibility="public", memory_type="landmark")
            assert ids(res["memories"]) == [x["memory_id"]]
            assert res["memories"][0]["metadata"] == {"town": "Saltmere"}
            cross = await c.result("memory.search_cross_persona",
                                   {"persona_id": other, "query": "lighthouse keeper lens"})
            assert x["memory_id"] in ids(cross["memories"], "memory_id")
            st = await stats(c, p)
            assert st["total_memories"] == 3
            assert st["memory_types"] == {"user_input": 2, "landmark": 1}, st

            # errors
            await expect_error(c, "memory.update", {"memory_id": str(uuid.uuid4()),
                                                    "importance": 0.5}, MEMORY_ERROR,
                               "Memory not found")
            for bad in ({"importance": 2}, {"visibility": "secret"}, {"content": ""},
                        {"importance": "x"}, {"metadata": "x"}, {"content": 7}):
                await expect_error(c, "memory.update", {"memory_id": x["memory_id"], **bad},
                                   INVALID_PARAMS)
            await expect_error(c, "memory.update", {"importance": 0.5}, INVALID_PARAMS)
            res = await search(c, p, "lighthouse", n_results=1)
            assert approx(res["memories"][0]["importance"], 0.9), "a rejected update applied"
            assert res["memories"][0]["visibility"] == "public"

    srun(server, body())


def test_delete(server):
    async def body():
        async with Conn(server.url) as c:
            p = pid()
            keep = await store(c, p, "The harbor bell rings at noon")
            gone = await store(c, p, "The harbor bell cracked in the frost", visibility="shared")
            r = await c.result("memory.delete", {"memory_id": gone["memory_id"]})
            assert r["deleted"] is True and r["memory_id"] == gone["memory_id"], r
            if "persona_id" in r:
                assert r["persona_id"] == p
            res = await search(c, p, "harbor bell cracked frost", n_results=5)
            assert ids(res["memories"]) == [keep["memory_id"]]
            assert (await stats(c, p))["total_memories"] == 1
            cross = await c.result("memory.search_cross_persona",
                                   {"persona_id": pid(), "query": "harbor bell cracked",
                                    "min_importance": 0.0})
            assert gone["memory_id"] not in ids(cross["memories"], "memory_id")
            await expect_error(c, "memory.delete", {"memory_id": gone["memory_id"]},
                               MEMORY_ERROR, "Memory not found")
            await expect_error(c, "memory.update", {"memory_id": gone["memory_id"],
                                                    "importance": 0.2},
                               MEMORY_ERROR, "Memory not found")
            # storing the same text again is a new memory, not a resurrected duplicate
            back = await store(c, p, "The harbor bell cracked in the frost")
            assert back["duplicate"] is False and back["memory_id"] != gone["memory_id"]

    srun(server, body())


# --- statistics ------------------------------------------------------------------------------


def test_stats_fields_and_values(server):
    async def body():
        async with Conn(server.url) as c:
            names = await seeded_ids(c)
            aria = names["Aria"]
            for text, t, imp in (("first", "a", 0.2), ("second", "a", 0.5),
                                 ("third", "b", 0.75), ("fourth", "c", 0.9)):
                await store(c, aria, f"the {text} memory of the day", memory_type=t,
                            importance=imp)
            st = await stats(c, aria)
            assert set(st) >= STATS_KEYS, st
            assert st["total_memories"] == 4
            assert approx(st["avg_importance"], 0.5875, 1e-3), st
            assert st["memory_types"] == {"a": 2, "b": 1, "c": 1}
            assert st["high_importance_count"] == 2
            assert st["created_today"] == 4
            # unknown or empty personas: exactly {"total_memories": 0}
            assert (await stats(c, "no-such-persona")) == {"total_memories": 0}
            assert (await stats(c, names["Kira"])) == {"total_memories": 0}
            # persona.status carries the same statistics object
            status = await c.result("persona.status", {"persona_id": aria})
            assert without_timing(status["memory_stats"]) == st, (status["memory_stats"], st)
            kst = await c.result("persona.status", {"persona_id": names["Kira"]})
            assert kst["memory_stats"] == {"total_memories": 0}
            await c.result("persona.switch", {"persona_id": "Aria"})
            assert without_timing((await c.result("persona.status", {}))["memory_stats"]) == st
            assert without_timing(await c.result("memory.stats", {})) == st

    srun(server, body())


def test_stats_high_importance_threshold_is_inclusive(server):
    """§2.5: high_importance_count = importance >= 0.7, so exactly 0.7 counts."""

    async def body():
        async with Conn(server.url) as c:
            p = pid()
            await store(c, p, "exactly at the threshold", importance=0.7)
            await store(c, p, "just below the threshold", importance=0.69)
            await store(c, p, "well above the threshold", importance=0.95)
            hi = await search(c, p, "threshold", min_importance=0.7, n_results=5)
            assert len(hi["memories"]) == 2, "min_importance 0.7 keeps the 0.7 memory"
            st = await stats(c, p)
            assert st["high_importance_count"] == 2, st

    srun(server, body())


def test_stats_reports_calculation_time(server):
    """§2.5: memory.stats of a persona with memories carries stats_calculation_time_ms."""

    async def body():
        async with Conn(server.url) as c:
            p = pid()
            await store(c, p, "a memory to count")
            st = await c.result("memory.stats", {"persona_id": p})
            assert "stats_calculation_time_ms" in st, st
            assert isinstance(st["stats_calculation_time_ms"], (int, float))
            assert st["stats_calculation_time_ms"] >= 0

    srun(server, body())


def test_persona_memory_legacy(server):
    async def body():
        async with Conn(server.url) as c:
            await expect_error(c, "persona.memory", {}, NO_ACTIVE_PERSONA)
            await expect_error(c, "persona.memory", {"query": "x"}, NO_ACTIVE_PERSONA)
            names = await seeded_ids(c)
            await c.result("persona.switch", {"persona_id": "aria"})
            empty = await c.result("persona.memory", {})
            assert empty["memories"] == [] and empty["total_found"] == 0
            texts = [f"Aria remembers song number {i} about the {TOPICS[i]}" for i in range(7)]
            mids = [(await store(c, names["Aria"], t))["memory_id"] for t in texts]
            res = await c.result("persona.memory", {})
            assert set(res) >= {"memories", "query", "total_found"}, res
            assert res["query"] == "" and res["total_found"] == len(res["memories"]) == 5
            for m in res["memories"]:
                assert set(m) >= {"content", "importance", "memory_type", "created_at"}, m
            res = await c.result("persona.memory", {"query": "song about the castle", "limit": 2})
            assert res["query"] == "song about the castle"
            assert len(res["memories"]) == 2 and res["total_found"] == 2
            assert res["memories"][0]["content"] == texts[4]
            if "id" in res["memories"][0]:
                assert res["memories"][0]["id"] == mids[4]
            res = await c.result("persona.memory", {"limit": 50})
            assert res["total_found"] == 7
            # another connection without a current persona still gets -32001
            async with Conn(server.url) as c2:
                await expect_error(c2, "persona.memory", {"query": "song"}, NO_ACTIVE_PERSONA)

    srun(server, body())


# --- cross-persona ------------------------------------------------------------------------------


def test_search_cross_persona_visibility_and_ranking(server):
    async def body():
        async with Conn(server.url) as c:
            req, oth = pid("req"), pid("oth")
            mine = {
                "shared": await store(c, req, "Recipe for honey cakes with almonds",
                                      visibility="shared", importance=0.8),
                "public": await store(c, req, "The town fair opens on the first of May",
                                      visibility="public", importance=0.8),
                "private": await store(c, req, "Harbor lighthouse keeper lamp dusk private",
                                       visibility="private", importance=0.9),
            }
            theirs = {
                "shared": await store(c, oth, "The old harbor lighthouse keeper lights the lamp "
                                              "at dusk", visibility="shared", importance=0.8),
                "public": await store(c, oth, "Snow closed the mountain pass for a week",
                                      visibility="public", importance=0.8),
                "private": await store(c, oth, "Harbor lighthouse keeper lamp dusk secret",
                                       visibility="private", importance=0.9,
                                       related_personas=[req]),
                "low": await store(c, oth, "Harbor lighthouse lamp of little importance",
                                   visibility="shared", importance=0.5),
            }
            q = "harbor lighthouse keeper lamp dusk"
            res = await c.result("memory.search_cross_persona", {"persona_id": req, "query": q})
            assert set(res) >= {"requesting_persona", "query", "memories", "total_results",
                                "search_params"}, res
            assert res["requesting_persona"] == req and res["query"] == q
            assert res["search_params"] == {"min_importance": 0.6, "include_shared": True,
                                            "include_public": True}, res["search_params"]
            items = res["memories"]
            assert res["total_results"] == len(items)
            for m in items:
                assert set(m) >= CROSS_ITEM_KEYS, m
                assert 0.0 <= m["similarity"] <= 1.0
            got = {m["memory_id"]: m for m in items}
            want = {mine["shared"]["memory_id"], mine["public"]["memory_id"],
                    theirs["shared"]["memory_id"], theirs["public"]["memory_id"]}
            assert set(got) == want, [m["content"] for m in items]
            for k in ("shared", "public"):
                m = got[mine[k]["memory_id"]]
                assert (m["source"], m["source_persona"], m["visibility"]) == ("own", req, k)
                m = got[theirs[k]["memory_id"]]
                assert (m["source"], m["source_persona"], m["visibility"]) == \
                    ("cross_persona", oth, k)
            # §11 item 8 / §12 item 28: own memories ranked by real similarity, not pinned at 1.0
            sims = [m["similarity"] for m in items]
            assert sims == sorted(sims, reverse=True)
            assert items[0]["memory_id"] == theirs["shared"]["memory_id"], items[0]
            assert got[mine["shared"]["memory_id"]]["similarity"] < 0.9
            assert got[mine["public"]["memory_id"]]["similarity"] < 0.9

            async def cross(**kw):
                r = await c.result("memory.search_cross_persona",
                                   {"persona_id": req, "query": q, **kw})
                return {m["memory_id"]: m for m in r["memories"]}, r

            only_pub, r = await cross(include_shared=False)
            assert {m["visibility"] for m in only_pub.values()} == {"public"}
            assert set(only_pub) == {mine["public"]["memory_id"], theirs["public"]["memory_id"]}
            assert r["search_params"]["include_shared"] is False
            only_shared, _ = await cross(include_public=False)
            assert set(only_shared) == {mine["shared"]["memory_id"], theirs["shared"]["memory_id"]}
            none, r = await cross(include_shared=False, include_public=False)
            assert none == {} and r["total_results"] == 0
            low, _ = await cross(min_importance=0.4)
            assert theirs["low"]["memory_id"] in low
            assert theirs["private"]["memory_id"] not in low and \
                mine["private"]["memory_id"] not in low
            # the other side sees our shared/public memories, never our private ones
            seen = await c.result("memory.search_cross_persona",
                                  {"persona_id": oth, "query": q, "min_importance": 0.0,
                                   "n_results": 50})
            seen_ids = ids(seen["memories"], "memory_id")
            assert mine["private"]["memory_id"] not in seen_ids
            assert theirs["private"]["memory_id"] not in seen_ids
            assert mine["shared"]["memory_id"] in seen_ids

    srun(server, body())


def test_search_cross_persona_cap_and_errors(server):
    async def body():
        async with Conn(server.url) as c:
            owners = [pid("sharer") for _ in range(3)]
            for o in owners:
                await c.result("memory.store_batch", {"persona_id": o, "memories": [
                    {"content": f"{o} shared tale {i} of the wandering minstrel",
                     "visibility": "shared" if i % 2 else "public", "importance": 0.9}
                    for i in range(22)]})
            req = pid("req")
            res = await c.result("memory.search_cross_persona",
                                 {"persona_id": req, "query": "wandering minstrel tale",
                                  "n_results": 100})
            assert len(res["memories"]) == 50, "n_results is capped at 50"
            assert res["total_results"] == 50
            assert all(m["source"] == "cross_persona" for m in res["memories"])
            res = await c.result("memory.search_cross_persona",
                                 {"persona_id": req, "query": "wandering minstrel tale"})
            assert len(res["memories"]) == 10, "default n_results is 10"
            res = await c.result("memory.search_cross_persona",
                                 {"persona_id": req, "query": "minstrel", "n_results": 3})
            assert len(res["memories"]) == 3
            err = await expect_error(c, "memory.search_cross_persona", {"query": "minstrel"},
                                     NO_ACTIVE_PERSONA)
            assert err["message"] == "No active persona. Please switch to a persona first."
            await expect_error(c, "memory.search_cross_persona", {"persona_id": req},
                               INVALID_PARAMS)
            # with a current persona the requester defaults to it
            names = await seeded_ids(c)
            await c.result("persona.switch", {"persona_id": "Kira"})
            res = await c.result("memory.search_cross_persona", {"query": "minstrel"})
            assert res["requesting_persona"] == names["Kira"]
            assert len(res["memories"]) == 10

    srun(server, body())


def test_shared_stats(server):
    async def body():
        async with Conn(server.url) as c:
            empty = await c.result("memory.shared_stats")
            s = empty["shared_memory_statistics"]
            assert (s["shared_memories"], s["public_memories"], s["cross_references"]) == (0, 0, 0)
            epoch(empty["timestamp"])
            p1, p2 = pid("p1"), pid("p2")
            await store(c, p1, "shared one", visibility="shared")
            await store(c, p1, "shared two", visibility="shared", related_personas=[p2])
            await store(c, p1, "public one", visibility="public")
            await store(c, p1, "private one", related_personas=[p2])
            await store(c, p2, "public two", visibility="public", related_personas=[p1])
            await store(c, p2, "private two")
            res = await c.result("memory.shared_stats")
            assert set(res) >= {"shared_memory_statistics", "timestamp"}
            s = res["shared_memory_statistics"]
            assert s["total_personas"] == 2
            assert s["shared_memories"] == 2 and s["public_memories"] == 2
            assert s["cross_references"] == 3
            assert s["by_persona"][p1] == {"shared": 2, "public": 1, "cross_references": 2}
            assert s["by_persona"][p2] == {"shared": 0, "public": 1, "cross_references": 1}

    srun(server, body())


# --- bad parameters ------------------------------------------------------------------------------


def test_bad_params_every_memory_method(server):
    async def body():
        async with Conn(server.url) as c:
            p = pid()
            real = (await store(c, p, "a real memory for update checks"))["memory_id"]
            cases = [
                ("memory.store", ["content"]),
                ("memory.store", {"persona_id": p, "content": 5}),
                ("memory.store", {"persona_id": 5, "content": "x"}),
                ("memory.store", {"persona_id": p, "content": "x", "memory_type": 5}),
                ("memory.store", {"persona_id": p, "content": "x", "importance": True}),
                ("memory.store", {"persona_id": p, "content": "x", "emotional_valence": "sad"}),
                ("memory.store", {"persona_id": p, "content": "x", "related_personas": {}}),
                ("memory.store", {"persona_id": p, "content": "x", "metadata": 1}),
                ("memory.store", {"persona_id": p, "content": "x", "embedding": {"a": 1}}),
                ("memory.store_batch", {"persona_id": p, "memories": {"content": "x"}}),
                ("memory.store_batch", {"persona_id": 5, "memories": [{"content": "x"}]}),
                ("memory.store_batch", [{"content": "x"}]),
                ("memory.store_batch", {"persona_id": p,
                                        "memories": [{"content": f"c{i}"} for i in range(1001)]}),
                ("memory.search", {"persona_id": p}),
                ("memory.search", {"persona_id": p, "query": ""}),
                ("memory.search", {"persona_id": p, "query": 5}),
                ("memory.search", {"persona_id": 5, "query": "x"}),
                ("memory.search", {"persona_id": p, "query": "x", "n_results": "3"}),
                ("memory.search", {"persona_id": p, "query": "x", "n_results": 0}),
                ("memory.search", {"persona_id": p, "query": "x", "n_results": -1}),
                ("memory.search", {"persona_id": p, "query": "x", "n_results": 2.5}),
                ("memory.search", {"persona_id": p, "query": "x", "limit": "all"}),
                ("memory.search", {"persona_id": p, "query": "x", "limit": 0}),
                ("memory.search", {"persona_id": p, "query": "x", "min_importance": "x"}),
                ("memory.search", {"persona_id": p, "query": "x", "min_importance": 1.5}),
                ("memory.search", {"persona_id": p, "query": "x", "memory_type": 3}),
                ("memory.search", {"persona_id": p, "query": "x", "visibility": "secret"}),
                ("memory.search", {"persona_id": p, "query": "x", "visibility": 1}),
                ("memory.search", {"persona_id": p, "query": "x", "hybrid": "yes"}),
                ("memory.search", ["x"]),
                ("memory.search_cross_persona", {"persona_id": p}),
                ("memory.search_cross_persona", {"persona_id": p, "query": 5}),
                ("memory.search_cross_persona", {"persona_id": 5, "query": "x"}),
                ("memory.search_cross_persona", {"persona_id": p, "query": "x", "n_results": "x"}),
                ("memory.search_cross_persona", {"persona_id": p, "query": "x", "n_results": 0}),
                ("memory.search_cross_persona", {"persona_id": p, "query": "x",
                                                 "min_importance": "x"}),
                ("memory.search_cross_persona", {"persona_id": p, "query": "x",
                                                 "min_importance": 2}),
                ("memory.search_cross_persona", {"persona_id": p, "query": "x",
                                                 "include_shared": 1}),
                ("memory.search_cross_persona", {"persona_id": p, "query": "x",
                                                 "include_public": "no"}),
                ("memory.update", {}),
                ("memory.update", {"memory_id": 5}),
                ("memory.update", {"memory_id": real, "importance": "x"}),
                ("memory.update", {"memory_id": real, "emotional_valence": 3}),
                ("memory.update", {"memory_id": real, "visibility": 1}),
                ("memory.update", {"memory_id": real, "memory_type": []}),
                ("memory.update", {"memory_id": real, "metadata": []}),
                ("memory.update", [real]),
                ("memory.delete", {}),
                ("memory.delete", {"memory_id": 5}),
                ("memory.delete", {"memory_id": ""}),
                ("memory.delete", [real]),
                ("memory.stats", {"persona_id": 5}),
                ("memory.stats", {"persona_id": ["x"]}),
                ("memory.stats", ["x"]),
            ]
            resps = await pipeline(c, cases)
            wrong = [f"{m} {json.dumps(prm)[:80]} -> {r}" for (m, prm), r in zip(cases, resps)
                     if r.get("error", {}).get("code") != INVALID_PARAMS]
            for r in resps:
                if "error" in r:
                    assert_error(r)
            await c.result("persona.switch", {"persona_id": "Aria"})
            for prm in ({"query": 5}, {"limit": "x"}, {"limit": 0}, ["q"]):
                r = await c.call("persona.memory", prm)
                if r.get("error", {}).get("code") != INVALID_PARAMS:
                    wrong.append(f"persona.memory {prm} -> {r}")
            assert not wrong, "expected -32602:\n" + "\n".join(wrong)
            st = await stats(c, p)
            assert st["total_memories"] == 1, "a rejected request changed the memories"
            res = await search(c, p, "real memory", n_results=1)
            assert res["memories"][0]["id"] == real
            assert res["memories"][0]["visibility"] == "private"

    srun(server, body())


# --- restart, crash, persona deletion ----------------------------------------------------------


def test_restart_every_memory_searchable_at_once(server):
    async def body_before():
        async with Conn(server.url) as c:
            names = await seeded_ids(c)
            big = pid("big")
            items = batch_items(100, "restart")
            res = await c.result("memory.store_batch", {"persona_id": big, "memories": items})
            big_ids = [r["memory_id"] for r in res["results"]]
            aria = [(await store(c, names["Aria"], t))["memory_id"] for t in CORPUS[:4]]
            lit = (await store(c, "aria", "The literal aria id keeps this memory",
                               visibility="public", importance=0.8))["memory_id"]
            before = {k: await stats(c, k) for k in (big, names["Aria"], "aria")}
            shared = (await c.result("memory.shared_stats"))["shared_memory_statistics"]
            return names, big, items, big_ids, aria, lit, before, shared

    names, big, items, big_ids, aria, lit, before, shared = srun(server, body_before())
    server.restart()

    async def body_after():
        async with Conn(server.url) as c:
            # the very first request after the restart already finds the memory
            res = await search(c, big, items[42]["content"], n_results=1)
            assert ids(res["memories"]) == [big_ids[42]], "first search after restart"
            res = await search(c, names["Aria"], QUERIES[1][0], n_results=1)
            assert ids(res["memories"]) == [aria[2]]
            res = await c.result("memory.search_cross_persona",
                                 {"persona_id": pid("fresh"), "query": "literal aria id"})
            assert ids(res["memories"], "memory_id")[0] == lit
            after = {k: await stats(c, k) for k in before}
            assert after == before, (after, before)
            s2 = (await c.result("memory.shared_stats"))["shared_memory_statistics"]
            assert s2 == shared
            # every one of the 100 is there and searchable
            got = await search(c, big, "a story about the", n_results=100)
            assert set(ids(got["memories"])) == set(big_ids)
            await c.result("persona.switch", {"persona_id": "Aria"})
            pm = await c.result("persona.memory", {"limit": 10})
            assert pm["total_found"] == 4

    srun(server, body_after())


BURST_CONNS = 6
BURST_WINDOW = 16


async def store_burst(srv, kill_after):
    """Pipelined memory.store from several connections; SIGKILL hits the server mid-burst.

    Returns ({memory_id: (persona, content)} acknowledged, {persona: stores sent},
    stores in flight when the signal hit).
    """
    acked = {}
    sent = {}
    in_flight = {}
    at_kill = [0]
    loop = asyncio.get_running_loop()

    def fire():
        at_kill[0] = sum(len(v) for v in in_flight.values())
        srv.proc.kill()

    loop.call_later(kill_after, fire)

    async def one(k):
        persona = f"burst-{k}-{uuid.uuid4().hex[:6]}"
        sent[persona] = 0
        try:
            c = Conn(srv.url)
            await c.__aenter__()
        except (OSError, websockets.WebSocketException):
            return
        pending = in_flight[k] = {}
        room = asyncio.Semaphore(BURST_WINDOW)

        async def sender():
            for n in range(200000):
                await room.acquire()
                content = f"burst memory {k} {n} {TOPICS[n % 10]} marker{k}x{n}"
                rid = n + 1
                pending[rid] = content
                try:
                    await c.ws.send(json.dumps({"jsonrpc": "2.0", "method": "memory.store",
                                                "params": {"persona_id": persona,
                                                           "content": content,
                                                           "importance": 0.5},
                                                "id": rid}))
                except websockets.ConnectionClosed:
                    return
                sent[persona] += 1

        async def receiver():
            try:
                while True:
                    resp = json.loads(await asyncio.wait_for(c.ws.recv(), 15))
                    content = pending.pop(resp["id"])
                    if "result" in resp:
                        assert resp["result"]["duplicate"] is False, resp
                        acked[resp["result"]["memory_id"]] = (persona, content)
                    room.release()
            except (websockets.ConnectionClosed, asyncio.TimeoutError, OSError):
                pass

        s = asyncio.ensure_future(sender())
        await receiver()
        s.cancel()
        try:
            await s
        except (asyncio.CancelledError, websockets.ConnectionClosed):
            pass

    await asyncio.wait_for(asyncio.gather(*(one(k) for k in range(BURST_CONNS))), 30)
    return acked, sent, at_kill[0]


def test_kill9_during_store_burst_loses_no_acknowledged_memory(server):
    acked, sent, in_flight = srun(server, store_burst(server, kill_after=1.0))
    server.wait_exit()
    assert acked, "no store was acknowledged before the kill"
    assert in_flight > 0, "the kill did not land mid-burst"
    server.start()

    by_persona = {}
    for mid, (persona, content) in acked.items():
        by_persona.setdefault(persona, {})[mid] = content

    async def verify():
        async with Conn(server.url) as c:
            for persona, mems in by_persona.items():
                st = await stats(c, persona)
                assert len(mems) <= st["total_memories"] <= sent[persona], \
                    (persona, len(mems), st, sent[persona])
            # every acknowledged memory: searching its text finds it first
            calls, want = [], []
            for persona, mems in by_persona.items():
                for mid, content in mems.items():
                    calls.append(("memory.search", {"persona_id": persona, "query": content,
                                                    "n_results": 1}))
                    want.append(mid)
            got = await results(c, calls, timeout=30)
            missing = [w for w, r in zip(want, got) if ids(r["memories"]) != [w]]
            assert not missing, f"{len(missing)} of {len(want)} acknowledged memories " \
                                f"not found after kill -9, e.g. {missing[:3]}"

    srun(server, verify())


def test_persona_delete_removes_its_memories(server):
    async def body():
        async with Conn(server.url) as c:
            names = await seeded_ids(c)
            g = (await c.result("persona.create", {"name": unique_name("Ghost")}))["persona_id"]
            mids = []
            for i in range(3):
                mids.append((await store(c, g, f"The ghost of the mill hums tune {i} at midnight",
                                         visibility="shared" if i else "public",
                                         importance=0.9))["memory_id"])
            cross = await c.result("memory.search_cross_persona",
                                   {"persona_id": names["Kira"], "query": "ghost mill tune"})
            assert set(mids) <= set(ids(cross["memories"], "memory_id"))
            assert {m["source_persona"] for m in cross["memories"]} == {g}
            assert (await stats(c, g))["total_memories"] == 3
            r = await c.result("persona.delete", {"persona_id": g})
            assert r["deleted"] is True
            assert (await stats(c, g)) == {"total_memories": 0}
            assert (await search(c, g, "ghost mill tune"))["memories"] == []
            cross = await c.result("memory.search_cross_persona",
                                   {"persona_id": names["Kira"], "query": "ghost mill tune"})
            assert not set(mids) & set(ids(cross["memories"], "memory_id"))
            sh = (await c.result("memory.shared_stats"))["shared_memory_statistics"]
            assert g not in sh["by_persona"] and sh["public_memories"] == 0
            await expect_error(c, "memory.delete", {"memory_id": mids[0]}, MEMORY_ERROR)

    srun(server, body())
    server.restart()

    async def after():
        async with Conn(server.url) as c:
            sh = (await c.result("memory.shared_stats"))["shared_memory_statistics"]
            assert sh["shared_memories"] == 0 and sh["public_memories"] == 0
            assert sh["by_persona"] == {}

    srun(server, after())


def test_repeated_search_rows_come_from_ram_and_stay_current(server):
    """Rows of search results are kept in RAM (the row cache, docs/ARCHITECTURE.md): a repeated
    search reads them from there (/metrics counts it), and every later change is seen at once:
    an update, and a state.load that puts back older rows under the same ids."""
    def row_cache():
        status, _, body = server.http_get("/metrics")
        assert status == 200
        vals = {}
        for line in body.decode().splitlines():
            if line.startswith("pmcp_memory_row_cache_"):
                name, v = line.split()
                vals[name] = float(v)
        return vals["pmcp_memory_row_cache_hits_total"], vals["pmcp_memory_row_cache_misses_total"]

    async def body():
        async with Conn(server.url) as c:
            p = pid("rowcache")
            m = await store(c, p, "The lighthouse keeper polished the brass lens")
            await search(c, p, "lighthouse keeper lens", n_results=1)
            hits0, _ = row_cache()
            for _ in range(3):
                res = await search(c, p, "lighthouse keeper lens", n_results=1)
                assert res["memories"][0]["content"].startswith("The lighthouse keeper")
            hits1, _ = row_cache()
            assert hits1 >= hits0 + 3, (hits0, hits1)

            await c.result("state.save", {"path": "rowcache.jsonl"})
            await c.result("memory.update", {"memory_id": m["memory_id"],
                                             "content": "The lighthouse keeper sold the lens"})
            res = await search(c, p, "lighthouse keeper lens", n_results=1)
            assert res["memories"][0]["content"] == "The lighthouse keeper sold the lens"
            await c.result("state.load", {"path": "rowcache.jsonl"})
            res = await search(c, p, "lighthouse keeper lens", n_results=1)
            assert res["memories"][0]["id"] == m["memory_id"]
            assert res["memories"][0]["content"] == "The lighthouse keeper polished the brass lens"

    srun(server, body())
