"""persona.* and system.* methods: result shapes, effects, persistence and seeding.

Reference: spec §2.2, §2.7, §5.0.2, §5.3 and §12 items 19 and 22 (stable order, seed once).
"""

import datetime
import uuid

from conftest import Conn, assert_error, assert_success, run, unique_name

PERSONA_NOT_FOUND = -32000
NO_ACTIVE_PERSONA = -32001
INVALID_PARAMS = -32602

ARIA = {
    "name": "Aria",
    "description": "A vibrant elven bard with sparkling eyes and an infectious laugh. "
                   "She loves stories, music, and meeting new people.",
    "personality_traits": {"extroverted": 90, "creative": 85, "empathetic": 80,
                           "curious": 75, "optimistic": 85},
    "topic_preferences": {"music": 95, "stories": 90, "travel": 85, "gossip": 80, "magic": 70,
                          "adventure": 85, "art": 80, "local_news": 75},
    "charisma": 18, "intelligence": 14, "social_rank": "performer",
    "state": {"current_priority": "social", "social_energy": 150, "available_time": 600,
              "interest_level": 50, "interaction_fatigue": 0},
}
KIRA = {
    "name": "Kira",
    "description": "A brilliant human scholar with keen analytical mind. "
                   "She prefers deep conversations about knowledge and discovery.",
    "personality_traits": {"introverted": 70, "analytical": 95, "focused": 90,
                           "methodical": 85, "reserved": 75},
    "topic_preferences": {"research": 95, "magic": 90, "history": 85, "philosophy": 80,
                          "books": 85, "discovery": 90, "gossip": 20, "small_talk": 25},
    "charisma": 12, "intelligence": 18, "social_rank": "scholar",
    "state": {"current_priority": "academic", "social_energy": 80, "available_time": 300,
              "interest_level": 50, "interaction_fatigue": 0},
}

LIST_ITEM_KEYS = {"id", "name", "description", "available", "social_energy", "current_priority",
                  "cooldown_remaining"}
SWITCH_KEYS = {"persona_id", "name", "description", "status", "social_energy", "available_time",
               "current_priority"}
STATUS_PERSONA_KEYS = {"id", "name", "description", "personality_traits", "topic_preferences",
                       "charisma", "intelligence", "social_rank"}
STATE_KEYS = {"interest_level", "interaction_fatigue", "current_priority", "available_time",
              "social_energy", "cooldown_until", "is_available"}
PRIORITIES = {"urgent", "important", "casual", "social", "academic", "business", "none"}


def is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check_list_shape(res):
    assert set(res) >= {"personas", "total_count", "available_count"}, res
    assert isinstance(res["personas"], list)
    assert res["total_count"] == len(res["personas"])
    assert res["available_count"] == sum(1 for p in res["personas"] if p["available"])
    ids = [p["id"] for p in res["personas"]]
    assert len(ids) == len(set(ids)), "duplicate ids in persona.list"
    for p in res["personas"]:
        assert set(p) >= LIST_ITEM_KEYS, p
        assert isinstance(p["id"], str) and p["id"]
        assert isinstance(p["name"], str)
        assert isinstance(p["description"], str)
        assert isinstance(p["available"], bool)
        assert type(p["social_energy"]) is int
        assert p["current_priority"] in PRIORITIES
        assert is_number(p["cooldown_remaining"]) and p["cooldown_remaining"] >= 0


def check_seed(res):
    check_list_shape(res)
    first, second = res["personas"][:2]
    for item, want in ((first, ARIA), (second, KIRA)):
        assert item["name"] == want["name"]
        assert item["description"] == want["description"]
        assert item["available"] is True
        assert item["social_energy"] == want["state"]["social_energy"]
        assert item["current_priority"] == want["state"]["current_priority"]
        assert item["cooldown_remaining"] == 0
        uuid.UUID(item["id"])


def test_list_on_fresh_database(server):
    res = server.result("persona.list")
    assert res["total_count"] == 2 and res["available_count"] == 2
    check_seed(res)


def test_seeded_personas_full_status(server):
    personas = server.result("persona.list")["personas"]

    async def go():
        async with Conn(server.url) as c:
            for item, want in zip(personas, (ARIA, KIRA)):
                st = await c.result("persona.status", {"persona_id": item["id"]})
                assert set(st) >= {"persona", "interaction_state", "memory_stats"}, st
                p = st["persona"]
                assert set(p) >= STATUS_PERSONA_KEYS, p
                assert p["id"] == item["id"]
                for k in ("name", "description", "personality_traits", "topic_preferences",
                          "charisma", "intelligence", "social_rank"):
                    assert p[k] == want[k], (k, p[k])
                s = st["interaction_state"]
                assert set(s) >= STATE_KEYS, s
                for k, v in want["state"].items():
                    assert s[k] == v, (k, s)
                assert s["cooldown_until"] == 0
                assert s["is_available"] is True
                assert isinstance(st["memory_stats"], dict)

    run(go())


def test_create_full_and_defaults(server):
    full = {"name": unique_name("Full"), "description": "a tester",
            "personality_traits": {"brave": 70, "nested": {"ok": [1, 2.5, "x", None, True]}},
            "topic_preferences": {"chess": 100, "tea": 0, "rain": 55},
            "charisma": 20, "intelligence": 1, "social_rank": "noble",
            "full_name": "ignored", "background": "ignored", "interests": ["x"]}
    minimal = {"name": unique_name("Min")}

    async def go():
        async with Conn(server.url) as c:
            r1 = await c.result("persona.create", full)
            assert set(r1) >= {"persona_id", "name", "created"}, r1
            assert r1["created"] is True and r1["name"] == full["name"]
            uuid.UUID(r1["persona_id"])
            r2 = await c.result("persona.create", minimal)
            assert r2["persona_id"] != r1["persona_id"]

            st = await c.result("persona.status", {"persona_id": r1["persona_id"]})
            p = st["persona"]
            for k in ("name", "description", "personality_traits", "topic_preferences",
                      "charisma", "intelligence", "social_rank"):
                assert p[k] == full[k], (k, p[k])

            st = await c.result("persona.status", {"persona_id": r2["persona_id"]})
            p, s = st["persona"], st["interaction_state"]
            assert p["description"] == ""
            assert p["personality_traits"] == {} and p["topic_preferences"] == {}
            assert p["charisma"] == 10 and p["intelligence"] == 10
            assert p["social_rank"] == "commoner"
            assert s["interest_level"] == 50 and s["interaction_fatigue"] == 0
            assert s["current_priority"] == "none" and s["available_time"] == 300
            assert s["social_energy"] == 100 and s["cooldown_until"] == 0
            assert s["is_available"] is True

            listed = await c.result("persona.list")
            check_list_shape(listed)
            assert [p["id"] for p in listed["personas"][2:]] == [r1["persona_id"],
                                                                  r2["persona_id"]]
            assert listed["total_count"] == 4 and listed["available_count"] == 4
            # Names need not be unique.
            r3 = await c.result("persona.create", minimal)
            assert r3["persona_id"] not in (r1["persona_id"], r2["persona_id"])

    run(go())


def test_boundary_values_accepted(server):
    async def go():
        async with Conn(server.url) as c:
            for ch, it in ((1, 20), (20, 1)):
                r = await c.result("persona.create", {"name": unique_name(), "charisma": ch,
                                                      "intelligence": it,
                                                      "topic_preferences": {"a": 0, "b": 100}})
                st = await c.result("persona.status", {"persona_id": r["persona_id"]})
                assert st["persona"]["charisma"] == ch
                assert st["persona"]["intelligence"] == it

    run(go())


def test_switch_by_id_and_case_insensitive_name(server):
    personas = server.result("persona.list")["personas"]
    aria, kira = personas[0], personas[1]

    async def go():
        async with Conn(server.url) as c:
            for key, want in ((aria["id"], aria), ("aria", aria), ("ARIA", aria),
                              ("Aria", aria), ("kIrA", kira), ("Kira", kira),
                              (kira["id"], kira)):
                r = await c.result("persona.switch", {"persona_id": key})
                assert set(r) >= SWITCH_KEYS, r
                assert r["persona_id"] == want["id"] and r["name"] == want["name"]
                assert r["status"] == "active"
                assert r["description"] == want["description"]
                assert r["social_energy"] == want["social_energy"]
                assert r["current_priority"] == want["current_priority"]
                assert type(r["available_time"]) is int
                st = await c.result("persona.status")
                assert st["persona"]["id"] == want["id"]
            await c.error("persona.switch", {"persona_id": "Arya"}, code=PERSONA_NOT_FOUND)
            await c.error("persona.switch", {"persona_id": aria["id"].upper() + "x"},
                          code=PERSONA_NOT_FOUND)
            err = await c.error("persona.switch", {}, code=INVALID_PARAMS)
            assert "persona_id" in err["message"]
            # A failed switch keeps the previous current persona.
            st = await c.result("persona.status")
            assert st["persona"]["id"] == kira["id"]

    run(go())


def test_switch_to_created_persona_by_name(server):
    name = unique_name("MixedCase")

    async def go():
        async with Conn(server.url) as c:
            r = await c.result("persona.create", {"name": name})
            sw = await c.result("persona.switch", {"persona_id": name.upper()})
            assert sw["persona_id"] == r["persona_id"]
            sw = await c.result("persona.switch", {"persona_id": name.lower()})
            assert sw["persona_id"] == r["persona_id"]

    run(go())


def test_status_current_and_explicit(server):
    personas = server.result("persona.list")["personas"]

    async def go():
        async with Conn(server.url) as c:
            await c.error("persona.status", code=NO_ACTIVE_PERSONA)
            await c.error("persona.status", {"persona_id": ""}, code=NO_ACTIVE_PERSONA)
            await c.result("persona.switch", {"persona_id": "Aria"})
            st = await c.result("persona.status")
            assert st["persona"]["id"] == personas[0]["id"]
            # Asking about another persona does not change the current one.
            st = await c.result("persona.status", {"persona_id": personas[1]["id"]})
            assert st["persona"]["name"] == "Kira"
            st = await c.result("persona.status")
            assert st["persona"]["name"] == "Aria"
            await c.error("persona.status", {"persona_id": str(uuid.uuid4())},
                          code=PERSONA_NOT_FOUND)

    run(go())


def test_current_persona_is_per_connection(server):
    async def go():
        async with Conn(server.url) as a, Conn(server.url) as b:
            await a.result("persona.switch", {"persona_id": "Aria"})
            await b.error("persona.status", code=NO_ACTIVE_PERSONA)
            await b.result("persona.switch", {"persona_id": "Kira"})
            assert (await a.result("persona.status"))["persona"]["name"] == "Aria"
            assert (await b.result("persona.status"))["persona"]["name"] == "Kira"
            sa = await a.result("system.status")
            sb = await b.result("system.status")
            assert sa["current_persona"] != sb["current_persona"]
        # A new connection starts with no persona.
        async with Conn(server.url) as c:
            await c.error("persona.status", code=NO_ACTIVE_PERSONA)

    run(go())


def test_delete(server):
    async def go():
        async with Conn(server.url) as c, Conn(server.url) as other:
            name = unique_name("Doomed")
            pid = (await c.result("persona.create", {"name": name}))["persona_id"]
            await c.result("persona.switch", {"persona_id": pid})
            await other.result("persona.switch", {"persona_id": pid})
            r = await c.result("persona.delete", {"persona_id": pid})
            assert set(r) >= {"persona_id", "name", "deleted", "message"}, r
            assert r["persona_id"] == pid and r["name"] == name and r["deleted"] is True
            assert r["message"] == f"Persona '{name}' and all associated data deleted successfully"
            # Deleting this connection's current persona clears it.
            await c.error("persona.status", code=NO_ACTIVE_PERSONA)
            # Another connection whose current persona vanished gets a domain error.
            resp = await other.call("persona.status")
            assert_error(resp)
            assert resp["error"]["code"] in (PERSONA_NOT_FOUND, NO_ACTIVE_PERSONA), resp
            await c.error("persona.status", {"persona_id": pid}, code=PERSONA_NOT_FOUND)
            await c.error("persona.switch", {"persona_id": pid}, code=PERSONA_NOT_FOUND)
            await c.error("persona.switch", {"persona_id": name}, code=PERSONA_NOT_FOUND)
            await c.error("persona.delete", {"persona_id": pid}, code=PERSONA_NOT_FOUND)
            listed = await c.result("persona.list")
            assert pid not in [p["id"] for p in listed["personas"]]
            assert listed["total_count"] == 2
            # Delete takes ids only, not names.
            await c.error("persona.delete", {"persona_id": "Aria"}, code=PERSONA_NOT_FOUND)
            assert (await c.result("persona.list"))["total_count"] == 2

    run(go())


def test_system_status(server):
    personas = server.result("persona.list")["personas"]

    async def go():
        async with Conn(server.url) as c:
            s = await c.result("system.status")
            need = {"system_status", "llm_available", "total_personas", "available_personas",
                    "active_conversations", "current_persona", "current_conversation",
                    "timestamp"}
            assert set(s) >= need, s
            assert s["system_status"] == "operational"
            assert isinstance(s["llm_available"], bool)
            assert s["total_personas"] == 2 and s["available_personas"] == 2
            assert type(s["active_conversations"]) is int and s["active_conversations"] >= 0
            assert s["current_persona"] is None
            assert s["current_conversation"] is None
            ts = datetime.datetime.fromisoformat(s["timestamp"].replace("Z", "+00:00"))
            now = datetime.datetime.now(datetime.timezone.utc)
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=datetime.timezone.utc)
            assert abs((now - ts).total_seconds()) < 60
            assert any("pool" in k for k in s), f"no pool statistics in system.status: {s}"

            await c.result("persona.switch", {"persona_id": "kira"})
            await c.result("persona.create", {"name": unique_name()})
            s = await c.result("system.status")
            assert s["current_persona"] == personas[1]["id"]
            assert s["current_conversation"] is None or isinstance(s["current_conversation"], str)
            assert s["total_personas"] == 3 and s["available_personas"] == 3

    run(go())


def test_system_models(server):
    m = server.result("system.models")
    assert m["available_models"] == []
    assert isinstance(m["current_model"], str)
    assert isinstance(m["provider"], str)


def test_restart_keeps_every_persona_in_order(server):
    created = []

    async def create_all():
        async with Conn(server.url) as c:
            for i in range(25):
                params = {"name": f"keep-{i:02d}-{unique_name()}", "description": f"d{i}",
                          "personality_traits": {"t": i}, "topic_preferences": {"x": i * 4},
                          "charisma": 1 + i % 20, "intelligence": 20 - i % 20,
                          "social_rank": f"rank{i}"}
                r = await c.result("persona.create", params)
                created.append((r["persona_id"], params))
            # Delete a couple in the middle: order of the rest must be unchanged.
            for pid, _ in created[5:7]:
                await c.result("persona.delete", {"persona_id": pid})
            return await c.result("persona.list")

    before = run(create_all())
    kept = created[:5] + created[7:]
    assert [p["id"] for p in before["personas"][2:]] == [pid for pid, _ in kept]

    for _ in range(2):
        server.restart()
        after = server.result("persona.list")
        assert [(p["id"], p["name"], p["description"]) for p in after["personas"]] == \
            [(p["id"], p["name"], p["description"]) for p in before["personas"]]
        check_seed(after)

    async def check_all():
        async with Conn(server.url) as c:
            for pid, params in kept:
                p = (await c.result("persona.status", {"persona_id": pid}))["persona"]
                for k in ("name", "description", "personality_traits", "topic_preferences",
                          "charisma", "intelligence", "social_rank"):
                    assert p[k] == params[k], (pid, k, p[k])
            for pid, _ in created[5:7]:
                await c.error("persona.status", {"persona_id": pid}, code=PERSONA_NOT_FOUND)

    run(check_all())


def test_seeded_once_across_restarts(server):
    first = server.result("persona.list")
    for _ in range(3):
        server.restart()
        again = server.result("persona.list")
        key = [(p["id"], p["name"], p["description"]) for p in again["personas"]]
        assert key == [(p["id"], p["name"], p["description"]) for p in first["personas"]]
        assert again["total_count"] == 2
        check_seed(again)


def test_not_reseeded_after_delete(server):
    personas = server.result("persona.list")["personas"]

    async def go():
        async with Conn(server.url) as c:
            # With one seeded persona left, the server must not seed again (upstream did).
            await c.result("persona.delete", {"persona_id": personas[0]["id"]})

    run(go())
    server.restart()
    listed = server.result("persona.list")
    assert [p["name"] for p in listed["personas"]] == ["Kira"], listed

    server.result("persona.delete", {"persona_id": personas[1]["id"]})
    server.restart()
    listed = server.result("persona.list")
    assert listed["personas"] == [] and listed["total_count"] == 0, listed
    # An empty store still answers the other methods sensibly.
    s = server.result("system.status")
    assert s["total_personas"] == 0 and s["available_personas"] == 0
    resp = server.rpc("persona.switch", {"persona_id": "Aria"})
    assert_error(resp, PERSONA_NOT_FOUND)


def test_concurrent_creates_on_one_connection_all_listed(server):
    names = [unique_name("burst") for _ in range(100)]

    async def go():
        async with Conn(server.url) as c:
            for i, n in enumerate(names):
                await c.send_json({"jsonrpc": "2.0", "method": "persona.create",
                                   "params": {"name": n}, "id": i})
            resps = [await c.recv() for _ in names]
            ok = [names[r["id"]] for r in resps if "result" in r]
            for r in resps:
                if "error" in r:
                    assert r["error"]["code"] == -32004, r  # only the in-flight limit
                else:
                    assert_success(r)
            assert len(ok) >= 1
            listed = await c.result("persona.list")
            listed_names = [p["name"] for p in listed["personas"]]
            # Every acknowledged create is listed exactly once; rejected ones are absent.
            assert sorted(n for n in listed_names if n in set(names)) == sorted(ok)

    run(go())


def test_rpc_helper_sanity(server):
    # Guard against a helper bug silently passing tests: a failing call must be visible.
    resp = server.rpc("persona.switch", {"persona_id": "nobody"})
    assert "error" in resp and "result" not in resp
    resp = server.rpc("persona.list")
    assert_success(resp)
