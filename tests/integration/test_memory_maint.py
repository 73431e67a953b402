"""Memory maintenance over WebSocket: pruning and decay.

Reference: spec §2.5 (memory.prune, prune_all, prune_recommendations, prune_stats, decay_start,
decay_stop, decay_stats, decay_force), §6.2, §6.3 and §12 items 23-24; issue 3.

Pruning uses a server started with a small target and threshold (--prune-target 20
--prune-threshold 30) so 40 memories are enough. Pruning protects (§6.2.3) importance >= 0.7,
accessed_count >= 5 and never-accessed memories younger than 30 days; every memory here is
seconds old, so the tests make memories prunable by having searches return them (each hit is
an access, recorded asynchronously) and wait for memory.prune_recommendations (a dry run that
records nothing) to see the accesses.
"""

import time

from conftest import Conn, assert_error, unique_name
from memhelpers import (INVALID_PARAMS, NO_ACTIVE_PERSONA, epoch, expect_error, ids, pipeline,
                        search, seeded_ids, srun, stats, wait_for)

PRUNE_ARGS = ["--prune-target", "20", "--prune-threshold", "30"]
PRUNED_KEYS = {"status", "persona_id", "memories_before", "memories_after", "memories_pruned",
               "processing_time", "average_importance_pruned", "average_importance_kept"}


def pid(prefix="maint"):
    return unique_name(prefix)


def approx(a, b, tol=1e-6):
    return abs(a - b) <= tol


async def store_set(c, persona, rows):
    """rows: [(importance, memory_type)] -> [(memory_id, importance, memory_type)]."""
    items = [{"content": f"{persona} memory number {i} of type {t} weighing {imp}",
              "importance": imp, "memory_type": t} for i, (imp, t) in enumerate(rows)]
    res = await c.result("memory.store_batch", {"persona_id": persona, "memories": items})
    assert res["stored"] == len(rows)
    return [(r["memory_id"], imp, t) for r, (imp, t) in zip(res["results"], rows)]


async def access(c, persona, times=1, **filters):
    """Have `times` searches return every memory of `persona` matching the filters."""
    for _ in range(times):
        await search(c, persona, "memory number of type weighing", n_results=100, **filters)


async def recommendations(c, persona):
    res = await c.result("memory.prune_recommendations", {"persona_id": persona})
    assert res["persona_id"] == persona
    return res["recommendations"]


async def wait_would_prune(c, persona, n):
    async def check():
        r = await recommendations(c, persona)
        return r if r.get("would_prune") == n else None

    return await wait_for(check, timeout=8, interval=0.1,
                          what=f"prune_recommendations would_prune == {n} for {persona}")


async def all_ids(c, persona):
    res = await search(c, persona, "memory number of type weighing", n_results=1000)
    return set(ids(res["memories"]))


def test_prune_to_target_protecting_high_importance(server_factory):
    srv = server_factory(args=PRUNE_ARGS)

    async def body():
        async with Conn(srv.url) as c:
            p = pid()
            low = [(round(0.10 + 0.02 * i, 2), "low") for i in range(28)]  # 0.10 .. 0.64
            high = [(round(0.70 + 0.02 * i, 2), "high") for i in range(12)]  # 0.70 .. 0.92
            mems = await store_set(c, p, low + high)
            assert (await stats(c, p))["total_memories"] == 40
            await access(c, p)
            rec = await wait_would_prune(c, p, 20)
            lows = sorted(imp for _, imp, _ in mems if imp < 0.7)
            doomed = lows[:20]
            assert rec["needs_pruning"] is True
            assert (rec["current_count"], rec["target_count"]) == (40, 20), rec
            assert approx(rec["average_importance_to_prune"], sum(doomed) / 20, 1e-3), rec
            assert [round(x, 3) for x in rec["importance_range_to_prune"]] == \
                [doomed[0], doomed[-1]], rec
            assert rec["recommendation"] == \
                f"Would prune 20 memories with average importance {sum(doomed) / 20:.3f}"

            # dry run: reports, changes nothing
            dry = await c.result("memory.prune", {"persona_id": p, "dry_run": True})
            assert dry["status"] != "pruning_completed", dry
            assert dry.get("would_prune", dry.get("memories_pruned")) == 20, dry
            assert (await stats(c, p))["total_memories"] == 40
            assert len(await all_ids(c, p)) == 40
            ps = (await c.result("memory.prune_stats"))["pruning_statistics"]
            assert ps == {"message": "No pruning operations performed yet"}, ps

            before = await stats(c, p)
            res = await c.result("memory.prune", {"persona_id": p})
            assert set(res) >= PRUNED_KEYS, res
            assert res["status"] == "pruning_completed" and res["persona_id"] == p
            assert (res["memories_before"], res["memories_after"], res["memories_pruned"]) == \
                (40, 20, 20), res
            assert approx(res["average_importance_pruned"], sum(doomed) / 20, 1e-3), res
            kept_imps = lows[20:] + [imp for imp, _ in high]
            assert approx(res["average_importance_kept"], sum(kept_imps) / 20, 1e-3), res
            assert res["processing_time"] >= 0
            st = await stats(c, p)
            assert st["total_memories"] == res["memories_after"] == 20
            assert st["high_importance_count"] == before["high_importance_count"], \
                "a high-importance memory was pruned"
            remaining = await all_ids(c, p)
            want = {m for m, imp, _ in mems if imp >= 0.7 or imp in lows[20:]}
            assert remaining == want, "pruned the wrong memories"
            ps = (await c.result("memory.prune_stats"))["pruning_statistics"]
            assert ps["total_pruning_operations"] == 1, ps
            assert ps["total_memories_pruned"] == 20
            assert ps["last_global_prune"] is None
            assert p in ps["personas_last_pruned"]
            assert abs(epoch(ps["personas_last_pruned"][p]) - time.time()) < 60
            assert ps["average_processing_time"] >= 0

            # now within limits
            again = await c.result("memory.prune", {"persona_id": p})
            assert again == {"status": "no_pruning_needed", "persona_id": p,
                             "current_memory_count": 20,
                             "message": "Memory collection is within acceptable limits"}, again
            rec = await recommendations(c, p)
            assert rec["needs_pruning"] is False and rec["current_count"] == 20, rec
            assert rec["recommendation"] == "No pruning needed"
            forced = await c.result("memory.prune", {"persona_id": p, "force": True})
            assert forced["status"] == "pruning_completed" and forced["memories_pruned"] == 0
            assert (await stats(c, p))["total_memories"] == 20

    srun(srv, body())


def test_prune_protections_limit_the_count(server_factory):
    """memories_pruned = (count - target) minus what protection keeps."""
    srv = server_factory(args=PRUNE_ARGS)

    async def body():
        async with Conn(srv.url) as c:
            # 25 of importance >= 0.7: only 15 can go
            q = pid("highs")
            rows = [(0.7 + 0.01 * i, "high") for i in range(25)] + \
                [(0.1 + 0.02 * i, "low") for i in range(15)]
            mq = await store_set(c, q, rows)
            # 10 never accessed (young): protected, 30 accessed: 20 go
            r = pid("unseen")
            mr = await store_set(c, r, [(0.15 + 0.01 * i, "unseen") for i in range(10)] +
                                 [(0.3 + 0.01 * i, "seen") for i in range(30)])
            # 25 accessed >= 5 times: protected, 15 go
            s = pid("hot")
            ms = await store_set(c, s, [(0.1 + 0.01 * i, "hot") for i in range(25)] +
                                 [(0.4 + 0.01 * i, "cold") for i in range(15)])
            await access(c, q)
            await access(c, r, memory_type="seen")
            await access(c, s)
            await access(c, s, times=5, memory_type="hot")
            await wait_would_prune(c, q, 15)
            await wait_would_prune(c, r, 20)
            await wait_would_prune(c, s, 15)

            res = await c.result("memory.prune", {"persona_id": q})
            assert (res["memories_before"], res["memories_pruned"], res["memories_after"]) == \
                (40, 15, 25), res
            left = await all_ids(c, q)
            assert left == {m for m, imp, _ in mq if imp >= 0.7 - 1e-9}

            res = await c.result("memory.prune", {"persona_id": r})
            assert (res["memories_pruned"], res["memories_after"]) == (20, 20), res
            left = await all_ids(c, r)
            assert {m for m, _, t in mr if t == "unseen"} <= left, "never-accessed young pruned"
            seen = sorted((imp, m) for m, imp, t in mr if t == "seen")
            assert left == {m for m, _, t in mr if t == "unseen"} | {m for _, m in seen[20:]}

            res = await c.result("memory.prune", {"persona_id": s})
            assert (res["memories_pruned"], res["memories_after"]) == (15, 25), res
            left = await all_ids(c, s)
            assert left == {m for m, _, t in ms if t == "hot"}, "often-accessed memory pruned"

            for who, n in ((q, 25), (r, 20), (s, 25)):
                assert (await stats(c, who))["total_memories"] == n
            ps = (await c.result("memory.prune_stats"))["pruning_statistics"]
            assert ps["total_pruning_operations"] == 3
            assert ps["total_memories_pruned"] == 50
            assert set(ps["personas_last_pruned"]) >= {q, r, s}

    srun(srv, body())


def test_prune_not_needed_and_errors(server):
    """Default configuration (threshold 900, target 800)."""

    async def body():
        async with Conn(server.url) as c:
            p = pid()
            await store_set(c, p, [(0.1 + 0.01 * i, "low") for i in range(40)])
            await access(c, p)
            res = await c.result("memory.prune", {"persona_id": p})
            assert res == {"status": "no_pruning_needed", "persona_id": p,
                           "current_memory_count": 40,
                           "message": "Memory collection is within acceptable limits"}, res
            rec = await recommendations(c, p)
            assert rec == {"needs_pruning": False, "current_count": 40, "target_count": 800,
                           "recommendation": "No pruning needed"}, rec
            unknown = await c.result("memory.prune", {"persona_id": pid("unknown")})
            assert unknown["status"] == "no_pruning_needed"
            assert unknown["current_memory_count"] == 0
            # forced below the target: runs, removes nothing
            forced = await c.result("memory.prune", {"persona_id": p, "force": True})
            assert forced["status"] == "pruning_completed" and forced["memories_pruned"] == 0
            assert (forced["memories_before"], forced["memories_after"]) == (40, 40)
            assert (await stats(c, p))["total_memories"] == 40
            # no persona
            for method in ("memory.prune", "memory.prune_recommendations"):
                err = await expect_error(c, method, {}, NO_ACTIVE_PERSONA)
                assert err["message"] == "No persona specified and no current persona selected"
            # the current persona is the default
            names = await seeded_ids(c)
            await c.result("persona.switch", {"persona_id": "Kira"})
            res = await c.result("memory.prune", {})
            assert res["status"] == "no_pruning_needed" and res["persona_id"] == names["Kira"]
            res = await c.result("memory.prune_recommendations", {})
            assert res["persona_id"] == names["Kira"]

    srun(server, body())


def test_prune_all(server_factory):
    srv = server_factory(args=PRUNE_ARGS)

    async def body():
        async with Conn(srv.url) as c:
            a, b, small = pid("a"), pid("b"), pid("small")
            await store_set(c, a, [(0.1 + 0.01 * i, "x") for i in range(40)])
            await store_set(c, b, [(0.2 + 0.01 * i, "x") for i in range(40)])
            await store_set(c, small, [(0.1 + 0.01 * i, "x") for i in range(10)])
            for who in (a, b, small):
                await access(c, who)
            await wait_would_prune(c, a, 20)
            await wait_would_prune(c, b, 20)
            res = await c.result("memory.prune_all")
            assert set(res) >= {"status", "personas_processed", "total_memories_before",
                                "total_memories_after", "total_memories_pruned",
                                "processing_time", "errors_encountered"}, res
            assert res["status"] == "global_pruning_completed"
            assert res["personas_processed"] == 2, res
            assert res["total_memories_pruned"] == 40, res
            assert res["total_memories_before"] - res["total_memories_after"] == 40
            assert res["errors_encountered"] == 0
            assert [(await stats(c, w))["total_memories"] for w in (a, b, small)] == [20, 20, 10]
            ps = (await c.result("memory.prune_stats"))["pruning_statistics"]
            assert ps["last_global_prune"] is not None
            assert abs(epoch(ps["last_global_prune"]) - time.time()) < 60
            assert ps["total_memories_pruned"] == 40
            assert set(ps["personas_last_pruned"]) >= {a, b}
            again = await c.result("memory.prune_all")
            assert again["personas_processed"] == 0 and again["total_memories_pruned"] == 0

    srun(srv, body())


# --- decay ------------------------------------------------------------------------------------


def test_decay_force_persona(server):
    async def body():
        async with Conn(server.url) as c:
            p = pid()
            start = [0.9, 0.5, 0.2, 0.11, 0.1, 0.05]
            mems = await store_set(c, p, [(v, "note") for v in start])
            res = await c.result("memory.decay_force", {"persona_id": p, "decay_factor": 0.5})
            assert res == {"status": "persona_decay_completed", "persona_id": p,
                           "decay_factor": 0.5, "memories_processed": 6,
                           "memories_decayed": 4}, res
            want = {m: max(0.1, v * 0.5) if v > 0.1 else v for m, v, _ in mems}
            got = await search(c, p, "memory number of type weighing", n_results=10)
            imp = {m["id"]: m["importance"] for m in got["memories"]}
            assert set(imp) == set(want)
            for m, v in want.items():
                assert approx(imp[m], v), (imp[m], v)
            # the RAM collection follows: filters and statistics see the new values
            hi = await search(c, p, "memory number", n_results=10, min_importance=0.3)
            assert ids(hi["memories"]) == [mems[0][0]]
            st = await stats(c, p)
            assert approx(st["avg_importance"], sum(want.values()) / 6, 1e-3), st
            assert st["high_importance_count"] == 0

            # default factor 0.1, persona = the current one; others untouched
            names = await seeded_ids(c)
            aria = await store_set(c, names["Aria"], [(0.8, "song"), (0.4, "song")])
            await c.result("persona.switch", {"persona_id": "Aria"})
            res = await c.result("memory.decay_force", {})
            assert res["status"] == "persona_decay_completed"
            assert res["persona_id"] == names["Aria"]
            assert approx(res["decay_factor"], 0.1)
            assert res["memories_decayed"] == 2
            got = await search(c, names["Aria"], "memory number", n_results=5)
            imp = {m["id"]: m["importance"] for m in got["memories"]}
            assert approx(imp[aria[0][0]], 0.72) and approx(imp[aria[1][0]], 0.36), imp
            got = await search(c, p, "memory number of type weighing", n_results=10)
            for m in got["memories"]:
                assert approx(m["importance"], want[m["id"]]), "another persona was decayed"
            return p, want

    p, want = srun(server, body())
    server.restart()

    async def after():
        async with Conn(server.url) as c:
            # the decayed values were written to SQLite, not only to RAM
            got = await search(c, p, "memory number of type weighing", n_results=10)
            assert len(got["memories"]) == 6
            for m in got["memories"]:
                assert approx(m["importance"], want[m["id"]]), (m, want[m["id"]])

    srun(server, after())


def test_decay_force_without_persona_runs_a_global_cycle(server):
    async def body():
        async with Conn(server.url) as c:
            p, q = pid(), pid()
            mp = await store_set(c, p, [(0.6, "x"), (0.3, "x")])
            mq = await store_set(c, q, [(0.5, "y")])
            res = await c.result("memory.decay_force", {})
            assert set(res) >= {"status", "personas_processed", "memories_decayed",
                                "auto_prunes_triggered", "processing_time"}, res
            assert res["status"] == "global_decay_cycle_completed"
            assert res["personas_processed"] == 2
            # memories stored seconds ago are 0 days old: nothing decays
            assert res["memories_decayed"] == 0 and res["auto_prunes_triggered"] == 0
            for who, mems in ((p, mp), (q, mq)):
                got = await search(c, who, "memory number", n_results=5)
                assert {m["id"]: m["importance"] for m in got["memories"]} == \
                    {m: v for m, v, _ in mems}
            ds = (await c.result("memory.decay_stats"))["decay_statistics"]
            assert ds["background_running"] is False
            assert ds["total_decay_cycles"] == 1
            assert ds["total_memories_decayed"] == 0
            assert ds["total_auto_prunes_triggered"] == 0
            assert abs(epoch(ds["last_run"]) - time.time()) < 60
            assert set(ds["recent_cycle"]) >= {"personas_processed", "memories_decayed",
                                               "average_decay", "processing_time"}
            assert ds["recent_cycle"]["personas_processed"] == 2
            assert ds["config"] == {"mode": "access_based", "interval_hours": 6,
                                    "max_decay_days": 90, "auto_pruning": True,
                                    "auto_prune_threshold": 1000}, ds["config"]
            await c.result("memory.decay_force", {})
            ds = (await c.result("memory.decay_stats"))["decay_statistics"]
            assert ds["total_decay_cycles"] == 2

    srun(server, body())


def test_decay_start_stop_stats(server_factory):
    srv = server_factory()

    async def body():
        async with Conn(srv.url) as c:
            ds = (await c.result("memory.decay_stats"))["decay_statistics"]
            assert ds == {"message": "No decay cycles have run yet", "background_running": False,
                          "config": {"mode": "access_based", "interval_hours": 6,
                                     "auto_pruning": True}}, ds
            res = await c.result("memory.decay_start")
            assert res["status"] == "background_decay_started"
            assert (res["interval_hours"], res["mode"], res["auto_pruning"]) == \
                (6, "access_based", True), res
            ds = (await c.result("memory.decay_stats"))["decay_statistics"]
            assert ds["background_running"] is True
            again = await c.result("memory.decay_start")
            assert again["status"] == "background_decay_started"
            assert again.get("already_running", True) is True
            assert (await c.result("memory.decay_stats"))["decay_statistics"][
                "background_running"] is True
            res = await c.result("memory.decay_stop")
            assert res["status"] == "background_decay_stopped"
            assert res.get("was_running", True) is True
            ds = (await c.result("memory.decay_stats"))["decay_statistics"]
            assert ds["background_running"] is False
            res = await c.result("memory.decay_stop")
            assert res["status"] == "background_decay_stopped"
            assert res.get("was_running", False) is False
            # left running: the server must still shut down cleanly (checked at teardown)
            await c.result("memory.decay_start")

    srun(srv, body())

    # --decay starts the loop at boot; mode and interval come from the command line
    srv2 = server_factory(args=["--decay", "--decay-mode", "linear",
                                "--decay-interval-hours", "2"])

    async def boot():
        async with Conn(srv2.url) as c:
            ds = (await c.result("memory.decay_stats"))["decay_statistics"]
            assert ds["background_running"] is True, ds
            assert ds["config"]["mode"] == "linear" and ds["config"]["interval_hours"] == 2
            res = await c.result("memory.decay_start")
            assert res["mode"] == "linear" and res["interval_hours"] == 2
            assert res.get("already_running", True) is True

    srun(srv2, boot())


def test_maint_bad_params(server):
    async def body():
        async with Conn(server.url) as c:
            p = pid()
            mems = await store_set(c, p, [(0.8, "x"), (0.4, "x")])
            cases = [
                ("memory.prune", {"persona_id": 5}),
                ("memory.prune", {"persona_id": p, "force": "yes"}),
                ("memory.prune", {"persona_id": p, "force": 1}),
                ("memory.prune", {"persona_id": p, "dry_run": "no"}),
                ("memory.prune", [p]),
                ("memory.prune_recommendations", {"persona_id": 5}),
                ("memory.prune_recommendations", {"persona_id": [p]}),
                ("memory.prune_recommendations", [p]),
                ("memory.decay_force", {"persona_id": p, "decay_factor": "x"}),
                ("memory.decay_force", {"persona_id": p, "decay_factor": -0.1}),
                ("memory.decay_force", {"persona_id": p, "decay_factor": 1.5}),
                ("memory.decay_force", {"persona_id": p, "decay_factor": True}),
                ("memory.decay_force", {"persona_id": 5}),
                ("memory.decay_force", {"persona_id": {}}),
                ("memory.decay_force", [p, 0.5]),
            ]
            resps = await pipeline(c, cases)
            wrong = [f"{m} {prm} -> {r}" for (m, prm), r in zip(cases, resps)
                     if r.get("error", {}).get("code") != INVALID_PARAMS]
            for r in resps:
                if "error" in r:
                    assert_error(r)
            assert not wrong, "expected -32602:\n" + "\n".join(wrong)
            # nothing was decayed, pruned or counted by the rejected calls
            got = await search(c, p, "memory number", n_results=5)
            assert {m["id"]: m["importance"] for m in got["memories"]} == \
                {m: v for m, v, _ in mems}
            ps = (await c.result("memory.prune_stats"))["pruning_statistics"]
            assert ps == {"message": "No pruning operations performed yet"}
            ds = (await c.result("memory.decay_stats"))["decay_statistics"]
            assert "total_decay_cycles" not in ds

    srun(server, body())
