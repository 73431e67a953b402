"""relationship.*, emotional.*, persona.relationship and visual.update against the real server.

Reference: spec §2.2 (persona.relationship), §2.6, §2.7 (visual.update), §6.8, §6.9 and §12 items
18 and 21. Relationship values are on one scale, [0, 1], with 0.5 for a new pair (§6.8.2).
Error codes: -32602 bad parameters, -32000 unknown persona, -32001 no current persona.
"""

import datetime

import pytest

from conftest import Conn, assert_error, run, unique_name

PERSONA_NOT_FOUND = -32000
NO_ACTIVE_PERSONA = -32001
INVALID_PARAMS = -32602

REL_KEYS = {"persona1_id", "persona2_id", "affinity", "trust", "respect", "intimacy",
            "relationship_type", "interaction_count", "total_interaction_time",
            "compatibility_score", "relationship_strength", "last_interaction", "first_meeting"}
LIST_ITEM_KEYS = {"other_persona_id", "affinity", "trust", "respect", "intimacy",
                  "relationship_type", "interaction_count", "compatibility_score",
                  "relationship_strength", "last_interaction"}
FULL_KEYS = {"id", "persona1_id", "persona2_id", "affinity", "trust", "respect", "intimacy",
             "relationship_type", "interaction_count", "total_interaction_time",
             "last_interaction", "first_meeting", "shared_experiences", "memorable_moments",
             "conflict_history", "recent_interaction_quality", "compatibility_factors"}
EMO_KEYS = {"mood", "energy_level", "stress_level", "curiosity", "social_battery", "last_updated"}
EMO_DEFAULTS = {"mood": 0.5, "energy_level": 0.7, "stress_level": 0.3, "curiosity": 0.6,
                "social_battery": 0.8}
TYPES = {"stranger", "acquaintance", "friend", "close_friend", "rival", "enemy", "mentor",
         "student", "romantic", "family"}


def iso(s):
    assert isinstance(s, str) and s.endswith("+00:00"), s
    return datetime.datetime.fromisoformat(s)


def model_compat(r):
    s = 0.3 * abs(r["affinity"]) + 0.25 * abs(r["trust"]) + 0.25 * abs(r["respect"]) \
        + 0.2 * r["intimacy"]
    if r["affinity"] > 0 and r["trust"] > 0:
        s *= 1.2
    return min(1.0, s)


def model_strength(r):
    i = r["intimacy"] if r["affinity"] > 0 else -r["intimacy"]
    return 0.4 * r["affinity"] + 0.3 * r["trust"] + 0.2 * r["respect"] + 0.1 * i


async def seeded(c):
    ps = (await c.result("persona.list"))["personas"]
    return ps[0]["id"], ps[1]["id"]


async def update(c, a, b, q=0.0, minutes=5.0, context="conversation"):
    return await c.result("relationship.update", {"persona1_id": a, "persona2_id": b,
                                                  "interaction_quality": q,
                                                  "duration_minutes": minutes,
                                                  "context": context})


# --- relationship.get / update ----------------------------------------------------------


def test_get_none_then_created_on_first_update(server):
    async def go():
        async with Conn(server.url) as c:
            aria, kira = await seeded(c)
            r = await c.result("relationship.get", {"persona1_id": aria, "persona2_id": kira})
            assert r["exists"] is False and r["relationship"] is None, r
            assert r["message"] == f"No relationship found between {aria} and {kira}"
            assert (await c.result("relationship.stats"))["relationship_statistics"][
                "total_relationships"] == 0

            u = await update(c, aria, kira, 0.8, 5, "conversation")
            assert u["success"] is True and u["message"] == "Relationship updated successfully"
            assert u["interaction_processed"] == {"quality": 0.8, "duration_minutes": 5,
                                                  "context": "conversation"}
            ur = u["updated_relationship"]
            assert set(ur) >= {"affinity", "trust", "respect", "relationship_type",
                               "compatibility_score"}, ur
            # Spec §6.8.2 example.
            assert ur["affinity"] == pytest.approx(0.513333, abs=1e-6)
            assert ur["trust"] == pytest.approx(0.510667, abs=1e-6)
            assert ur["respect"] == pytest.approx(0.512, abs=1e-9)
            assert ur["intimacy"] == pytest.approx(0.509333, abs=1e-6)
            assert ur["relationship_type"] == "stranger"
            assert ur["compatibility_score"] == pytest.approx(model_compat(ur))

            for p1, p2 in ((aria, kira), (kira, aria)):
                g = await c.result("relationship.get", {"persona1_id": p1, "persona2_id": p2})
                assert g["exists"] is True, g
                rel = g["relationship"]
                assert set(rel) >= REL_KEYS, rel
                assert {rel["persona1_id"], rel["persona2_id"]} == {aria, kira}
                assert rel["persona1_id"] < rel["persona2_id"]  # canonical order
                assert rel["affinity"] == pytest.approx(ur["affinity"])
                assert rel["interaction_count"] == 1
                assert rel["total_interaction_time"] == pytest.approx(5)
                assert rel["compatibility_score"] == pytest.approx(model_compat(rel))
                assert rel["relationship_strength"] == pytest.approx(model_strength(rel))
                assert iso(rel["last_interaction"]) >= iso(rel["first_meeting"])
            # A second update continues from the stored row.
            u2 = await update(c, kira, aria, 0.8, 5)
            assert u2["updated_relationship"]["affinity"] == pytest.approx(0.5 + 2 * 0.08 / 6)
            g = await c.result("relationship.get", {"persona1_id": aria, "persona2_id": kira})
            assert g["relationship"]["interaction_count"] == 2
            assert g["relationship"]["total_interaction_time"] == pytest.approx(10)

    run(go())


def test_update_defaults(server):
    async def go():
        async with Conn(server.url) as c:
            aria, kira = await seeded(c)
            u = await c.result("relationship.update", {"persona1_id": aria, "persona2_id": kira})
            assert u["interaction_processed"] == {"quality": 0, "duration_minutes": 5,
                                                  "context": "conversation"}
            ur = u["updated_relationship"]
            assert (ur["affinity"], ur["trust"], ur["respect"]) == (0.5, 0.5, 0.5)

    run(go())


def test_update_context_modifiers_and_type(server):
    async def go():
        async with Conn(server.url) as c:
            aria, kira = await seeded(c)
            x = await c.result("persona.create", {"name": unique_name("X")})
            x = x["persona_id"]
            # conflict with q = 0: only the modifiers (trust -0.2, affinity -0.1)
            ur = (await update(c, aria, x, 0.0, 5, "conflict"))["updated_relationship"]
            assert ur["affinity"] == pytest.approx(0.4) and ur["trust"] == pytest.approx(0.3)
            assert ur["respect"] == pytest.approx(0.5)
            # collaboration, q = 1, 30 minutes, three times -> close_friend
            types = []
            for _ in range(3):
                ur = (await update(c, aria, kira, 1.0, 30, "collaboration"))[
                    "updated_relationship"]
                types.append(ur["relationship_type"])
            assert types == ["stranger", "stranger", "close_friend"]
            assert ur["affinity"] == pytest.approx(0.8)
            assert ur["trust"] == 1.0 and ur["respect"] == 1.0  # clamped to the [0, 1] scale
            assert ur["intimacy"] == pytest.approx(0.71)
            assert ur["interaction_count"] == 3
            # repeated conflicts floor at 0 and make an enemy
            for _ in range(10):
                ur = (await update(c, kira, x, -1.0, 30, "conflict"))["updated_relationship"]
            assert ur["affinity"] == 0 and ur["trust"] == 0
            assert ur["relationship_type"] == "enemy"
            assert ur["compatibility_score"] == pytest.approx(model_compat(ur))

    run(go())


def test_update_parameter_errors(server):
    async def go():
        async with Conn(server.url) as c:
            aria, kira = await seeded(c)
            base = {"persona1_id": aria, "persona2_id": kira}
            bad = [
                {},
                {"persona1_id": aria},
                {"persona2_id": kira},
                {"persona1_id": 1, "persona2_id": kira},
                {"persona1_id": aria, "persona2_id": ["x"]},
                {"persona1_id": aria, "persona2_id": aria},
                {**base, "interaction_quality": True},
                {**base, "interaction_quality": False},
                {**base, "interaction_quality": "0.5"},
                {**base, "interaction_quality": 1.5},
                {**base, "interaction_quality": -1.01},
                {**base, "interaction_quality": [0.5]},
                {**base, "duration_minutes": "5"},
                {**base, "duration_minutes": True},
                {**base, "duration_minutes": -1},
                {**base, "context": 5},
                {**base, "context": "x" * 65},
            ]
            for params in bad:
                await c.error("relationship.update", params, code=INVALID_PARAMS)
            e = await c.error("relationship.update", {**base, "interaction_quality": 2},
                              code=INVALID_PARAMS)
            assert "interaction_quality must be a number between -1.0 and 1.0" in e["message"]
            e = await c.error("relationship.update", {"persona1_id": aria}, code=INVALID_PARAMS)
            assert "Both persona1_id and persona2_id are required" in e["message"]
            # Unknown persona: a JSON-RPC error, not success:false.
            for params in ({"persona1_id": aria, "persona2_id": "no-such-persona"},
                           {"persona1_id": "no-such", "persona2_id": kira},
                           {"persona1_id": "x" * 100, "persona2_id": kira}):
                await c.error("relationship.update", params, code=PERSONA_NOT_FOUND)
            # Boundary values are accepted.
            await c.result("relationship.update", {**base, "interaction_quality": -1})
            await c.result("relationship.update", {**base, "interaction_quality": 1,
                                                   "duration_minutes": 0})
            stats = (await c.result("relationship.stats"))["relationship_statistics"]
            assert stats["total_relationships"] == 1 and stats["total_interactions"] == 2

    run(go())


def test_get_parameter_errors(server):
    async def go():
        async with Conn(server.url) as c:
            aria, kira = await seeded(c)
            for params in (None, {}, {"persona1_id": aria}, {"persona1_id": aria,
                                                             "persona2_id": 3},
                           {"persona1_id": aria, "persona2_id": aria}):
                await c.error("relationship.get", params, code=INVALID_PARAMS)
            await c.error("relationship.get", {"persona1_id": aria, "persona2_id": "ghost"},
                          code=PERSONA_NOT_FOUND)

    run(go())


# --- relationship.list / stats ----------------------------------------------------------


def test_list(server):
    async def go():
        async with Conn(server.url) as c:
            aria, kira = await seeded(c)
            await c.error("relationship.list", code=NO_ACTIVE_PERSONA)
            await c.error("relationship.list", {"persona_id": "ghost"}, code=PERSONA_NOT_FOUND)
            await c.error("relationship.list", {"persona_id": 7}, code=INVALID_PARAMS)
            r = await c.result("relationship.list", {"persona_id": aria})
            assert r == {"persona_id": aria, "relationships": [], "total_relationships": 0}
            x = (await c.result("persona.create", {"name": unique_name("X")}))["persona_id"]
            await update(c, aria, kira, 0.5, 10, "casual")
            await update(c, x, aria, 0.2, 5)
            r = await c.result("relationship.list", {"persona_id": aria})
            assert r["total_relationships"] == 2 == len(r["relationships"])
            assert {i["other_persona_id"] for i in r["relationships"]} == {kira, x}
            for item in r["relationships"]:
                assert set(item) >= LIST_ITEM_KEYS, item
                assert item["relationship_type"] in TYPES
                assert item["compatibility_score"] == pytest.approx(model_compat(item))
                assert item["relationship_strength"] == pytest.approx(model_strength(item))
                iso(item["last_interaction"])
            # The current persona is the default.
            await c.result("persona.switch", {"persona_id": kira})
            r = await c.result("relationship.list")
            assert r["persona_id"] == kira
            assert [i["other_persona_id"] for i in r["relationships"]] == [aria]

    run(go())


def test_stats(server):
    async def go():
        async with Conn(server.url) as c:
            aria, kira = await seeded(c)
            s = await c.result("relationship.stats")
            assert s["relationship_statistics"] == {
                "total_relationships": 0, "relationship_types": {}, "average_compatibility": 0.0,
                "total_interactions": 0, "most_active_personas": []}
            iso(s["timestamp"])
            x = (await c.result("persona.create", {"name": unique_name("X")}))["persona_id"]
            for _ in range(3):
                await update(c, aria, kira, 1.0, 30, "collaboration")
            await update(c, x, aria, 0.0, 5)
            rels = [(await c.result("relationship.get", {"persona1_id": aria, "persona2_id": p}))
                    ["relationship"] for p in (kira, x)]
            s = (await c.result("relationship.stats"))["relationship_statistics"]
            assert s["total_relationships"] == 2
            assert s["relationship_types"] == {"close_friend": 1, "stranger": 1}
            avg = sum((r["affinity"] + r["trust"] + r["respect"] + r["intimacy"]) / 4
                      for r in rels) / 2
            assert s["average_compatibility"] == round(avg, 3)
            assert s["total_interactions"] == 4
            assert s["most_active_personas"] == [{"persona_id": aria, "interactions": 3},
                                                 {"persona_id": x, "interactions": 1}]

    run(go())


# --- relationship.compatibility -----------------------------------------------------------


def test_compatibility_aria_kira(server):
    async def go():
        async with Conn(server.url) as c:
            aria, kira = await seeded(c)
            r = await c.result("relationship.compatibility",
                               {"persona1_id": aria, "persona2_id": kira})
            assert r["persona1"] == {"id": aria, "name": "Aria"}
            assert r["persona2"] == {"id": kira, "name": "Kira"}
            a = r["compatibility_analysis"]
            assert a == {"overall": 0.667, "personality": 0.5, "social": 0.82,
                         "interests": 0.85, "history": 0.5, "prediction": "very_good"}, a
            assert r["interaction_suggestions"] == {
                "interaction_style": "friendly_engaging", "recommended_topics": ["magic"],
                "potential_challenges": [], "relationship_potential": "good_friends",
                "interaction_frequency": "regular"}
            assert r["existing_relationship"] is False
            # An existing relationship feeds the history score: (strength + 1) / 2.
            await update(c, aria, kira, 1.0, 30, "casual")
            rel = (await c.result("relationship.get", {"persona1_id": aria,
                                                       "persona2_id": kira}))["relationship"]
            r = await c.result("relationship.compatibility",
                               {"persona1_id": kira, "persona2_id": aria})
            assert r["existing_relationship"] is True
            assert r["persona1"]["name"] == "Kira"
            hist = (rel["relationship_strength"] + 1) / 2
            assert r["compatibility_analysis"]["history"] == pytest.approx(round(hist, 3))

    run(go())


def test_compatibility_big_five_and_errors(server):
    async def go():
        async with Conn(server.url) as c:
            aria, _ = await seeded(c)
            mk = {"personality_traits": {"openness": 0.9, "extraversion": 0.95,
                                         "neuroticism": 0.8},
                  "topic_preferences": {"chess": 90}}
            a = (await c.result("persona.create", {"name": unique_name("A"), **mk}))["persona_id"]
            b = (await c.result("persona.create", {
                "name": unique_name("B"),
                "personality_traits": {"openness": 0.1, "extraversion": 0.1},
                "topic_preferences": {"dance": 80}}))["persona_id"]
            r = await c.result("relationship.compatibility", {"persona1_id": a, "persona2_id": b})
            an = r["compatibility_analysis"]
            # openness 1 - 0.8 = 0.2 (w 0.2), extraversion 1 - 0.85 = 0.15 (w 0.25)
            assert an["personality"] == round((0.2 * 0.2 + 0.25 * 0.15) / 0.45, 3)
            assert an["interests"] == 0.3  # no common topic
            # 0.3 is not < 0.3: no few_shared_interests
            assert r["interaction_suggestions"]["potential_challenges"] == [
                "personality_clash", "high_stress_potential", "energy_level_mismatch"]
            for params in ({}, {"persona1_id": a}, {"persona1_id": a, "persona2_id": None},
                           {"persona1_id": a, "persona2_id": 1},
                           {"persona1_id": a, "persona2_id": a}):
                await c.error("relationship.compatibility", params, code=INVALID_PARAMS)
            e = await c.error("relationship.compatibility",
                              {"persona1_id": aria, "persona2_id": "ghost"},
                              code=PERSONA_NOT_FOUND)
            assert "One or both personas not found" in e["message"]

    run(go())


# --- persona.relationship (legacy) ---------------------------------------------------------


def test_persona_relationship_legacy(server):
    async def go():
        async with Conn(server.url) as c:
            aria, kira = await seeded(c)
            await c.error("persona.relationship", code=NO_ACTIVE_PERSONA)
            await c.error("persona.relationship", {"target_persona": kira},
                          code=NO_ACTIVE_PERSONA)
            await c.result("persona.switch", {"persona_id": "aria"})
            r = await c.result("persona.relationship")
            assert r == {"current_persona": aria, "relationships": []}
            r = await c.result("persona.relationship", {"target_persona": kira})
            assert r == {"current_persona": aria, "target_persona": kira, "relationship": None}
            await c.error("persona.relationship", {"target_persona": "ghost"},
                          code=PERSONA_NOT_FOUND)
            await c.error("persona.relationship", {"target_persona": 5}, code=INVALID_PARAMS)

            await update(c, kira, aria, 0.9, 12, "deep_conversation")
            await update(c, aria, kira, 0.1, 3, "casual")
            r = await c.result("persona.relationship", {"target_persona": kira})
            rel = r["relationship"]
            assert set(rel) >= FULL_KEYS, rel
            assert {rel["persona1_id"], rel["persona2_id"]} == {aria, kira}
            assert rel["interaction_count"] == 2
            assert rel["total_interaction_time"] == pytest.approx(15)
            assert rel["recent_interaction_quality"] == pytest.approx(0.1)
            assert rel["shared_experiences"] == [] and rel["conflict_history"] == []
            assert rel["compatibility_factors"] == {}
            moments = rel["memorable_moments"]
            assert len(moments) == 1, moments  # only |q| > 0.7
            assert moments[0]["quality"] == pytest.approx(0.9)
            assert moments[0]["context"] == "deep_conversation"
            assert moments[0]["duration"] == pytest.approx(12)
            iso(moments[0]["timestamp"])
            r = await c.result("persona.relationship")
            assert r["current_persona"] == aria and len(r["relationships"]) == 1
            assert set(r["relationships"][0]) >= FULL_KEYS

    run(go())


# --- emotional.* -----------------------------------------------------------------------------


def test_emotional_get_state(server):
    async def go():
        async with Conn(server.url) as c:
            aria, kira = await seeded(c)
            await c.error("emotional.get_state", code=NO_ACTIVE_PERSONA)
            await c.error("emotional.get_state", {"persona_id": "ghost"}, code=PERSONA_NOT_FOUND)
            await c.error("emotional.get_state", {"persona_id": 12}, code=INVALID_PARAMS)
            # still unknown: nothing was created for it
            await c.error("emotional.get_state", {"persona_id": "ghost"}, code=PERSONA_NOT_FOUND)
            r = await c.result("emotional.get_state", {"persona_id": aria})
            assert r["persona_id"] == aria
            st = r["emotional_state"]
            assert set(st) == EMO_KEYS, st
            assert {k: st[k] for k in EMO_DEFAULTS} == EMO_DEFAULTS
            iso(st["last_updated"])
            again = await c.result("emotional.get_state", {"persona_id": aria})
            assert again["emotional_state"] == st  # stored once, then read
            await c.result("persona.switch", {"persona_id": kira})
            r = await c.result("emotional.get_state")
            assert r["persona_id"] == kira

    run(go())


def test_emotional_update_state(server):
    async def go():
        async with Conn(server.url) as c:
            aria, kira = await seeded(c)
            r = await c.result("emotional.update_state", {"persona_id": aria, "mood": 5,
                                                          "energy_level": -3,
                                                          "social_battery": 0.25})
            assert r["success"] is True
            assert r["message"] == "Emotional state updated successfully"
            u = r["updated_state"]
            assert set(u) >= EMO_KEYS, u
            assert (u["mood"], u["energy_level"], u["social_battery"]) == (1, 0, 0.25)
            assert (u["stress_level"], u["curiosity"]) == (0.3, 0.6)  # defaults kept
            r = await c.result("emotional.update_state", {"persona_id": aria, "mood": -7.5,
                                                          "stress_level": 2, "curiosity": 0.45})
            u = r["updated_state"]
            assert (u["mood"], u["stress_level"], u["curiosity"]) == (-1, 1, 0.45)
            assert u["energy_level"] == 0 and u["social_battery"] == 0.25
            g = (await c.result("emotional.get_state", {"persona_id": aria}))["emotional_state"]
            assert g == u
            for bad in ({"mood": "happy"}, {"mood": True}, {"energy_level": [1]},
                        {"curiosity": {}}, {"social_battery": "0.5"}, {"stress_level": False}):
                await c.error("emotional.update_state", {"persona_id": aria, **bad},
                              code=INVALID_PARAMS)
            assert (await c.result("emotional.get_state", {"persona_id": aria}))[
                "emotional_state"] == g  # rejected calls changed nothing
            await c.error("emotional.update_state", {"persona_id": "ghost", "mood": 0.1},
                          code=PERSONA_NOT_FOUND)
            await c.error("emotional.get_state", {"persona_id": "ghost"}, code=PERSONA_NOT_FOUND)
            await c.error("emotional.update_state", {"mood": 0.1}, code=NO_ACTIVE_PERSONA)
            await c.result("persona.switch", {"persona_id": kira})
            r = await c.result("emotional.update_state", {"curiosity": 0.9})
            assert r["updated_state"]["curiosity"] == 0.9
            assert r["updated_state"]["mood"] == 0.5

    run(go())


# --- visual.update ---------------------------------------------------------------------------


def test_visual_update(server):
    async def go():
        async with Conn(server.url) as c:
            r = await c.result("visual.update")
            assert set(r) == {"visual_updated", "update_type", "timestamp"}
            assert r["visual_updated"] is True and r["update_type"] == "general"
            iso(r["timestamp"])
            for data in ({"scene": "tavern", "lights": [1, 2]}, [1, "x"], "text", 3, None, True):
                r = await c.result("visual.update", {"type": "scene", "data": data})
                assert r["update_type"] == "scene"
            for bad in (5, True, ["scene"], {"a": 1}):
                await c.error("visual.update", {"type": bad}, code=INVALID_PARAMS)

    run(go())


# --- cascade and persistence ------------------------------------------------------------------


def test_persona_delete_cascades(server):
    async def go():
        async with Conn(server.url) as c:
            aria, kira = await seeded(c)
            x = (await c.result("persona.create", {"name": unique_name("Doomed")}))["persona_id"]
            await update(c, x, aria, 0.9, 10)
            await update(c, kira, x, 0.3, 10)
            await update(c, x, kira, 0.3, 10)
            await update(c, aria, kira, 0.5, 10)
            await c.result("emotional.update_state", {"persona_id": x, "mood": -0.5})
            await c.result("emotional.update_state", {"persona_id": aria, "mood": 0.9})
            s = (await c.result("relationship.stats"))["relationship_statistics"]
            assert (s["total_relationships"], s["total_interactions"]) == (3, 4)

            await c.result("persona.delete", {"persona_id": x})

            s = (await c.result("relationship.stats"))["relationship_statistics"]
            assert (s["total_relationships"], s["total_interactions"]) == (1, 1)
            assert s["most_active_personas"] == [{"persona_id": aria, "interactions": 1}]
            for p, other in ((aria, kira), (kira, aria)):
                r = await c.result("relationship.list", {"persona_id": p})
                assert [i["other_persona_id"] for i in r["relationships"]] == [other]
            await c.error("relationship.list", {"persona_id": x}, code=PERSONA_NOT_FOUND)
            await c.error("relationship.get", {"persona1_id": x, "persona2_id": aria},
                          code=PERSONA_NOT_FOUND)
            await c.error("emotional.get_state", {"persona_id": x}, code=PERSONA_NOT_FOUND)
            await c.error("relationship.update", {"persona1_id": x, "persona2_id": aria},
                          code=PERSONA_NOT_FOUND)
            # the survivors' data is intact
            g = (await c.result("emotional.get_state", {"persona_id": aria}))["emotional_state"]
            assert g["mood"] == 0.9
            await c.result("persona.switch", {"persona_id": aria})
            r = await c.result("persona.relationship", {"target_persona": kira})
            assert r["relationship"]["interaction_count"] == 1
            assert r["relationship"]["memorable_moments"] == []

    run(go())


def test_restart_keeps_relationships_and_emotions(server):
    async def before():
        async with Conn(server.url) as c:
            aria, kira = await seeded(c)
            await update(c, aria, kira, 0.75, 20, "professional")
            await update(c, kira, aria, -0.2, 3, "conflict")
            await c.result("emotional.update_state", {"persona_id": kira, "mood": -0.3,
                                                      "curiosity": 1})
            rel = await c.result("relationship.get", {"persona1_id": aria, "persona2_id": kira})
            emo = await c.result("emotional.get_state", {"persona_id": kira})
            stats = (await c.result("relationship.stats"))["relationship_statistics"]
            return aria, kira, rel, emo, stats

    aria, kira, rel, emo, stats = run(before())
    server.restart()

    async def after():
        async with Conn(server.url) as c:
            assert await c.result("relationship.get",
                                  {"persona1_id": kira, "persona2_id": aria}) == rel
            assert await c.result("emotional.get_state", {"persona_id": kira}) == emo
            assert (await c.result("relationship.stats"))["relationship_statistics"] == stats
            ur = (await update(c, aria, kira, 0.0, 0))["updated_relationship"]
            assert ur["interaction_count"] == 3

    run(after())


def test_methods_listed_errors_are_well_formed(server):
    """Every new method answers a non-object params with -32602 or -32600, never a crash."""
    async def go():
        async with Conn(server.url) as c:
            for m in ("relationship.get", "relationship.list", "relationship.compatibility",
                      "relationship.stats", "relationship.update", "persona.relationship",
                      "emotional.get_state", "emotional.update_state", "visual.update"):
                resp = await c.call(m, [1, 2])
                err = assert_error(resp)
                assert err["code"] in (INVALID_PARAMS, -32600), resp

    run(go())
