"""JSON-RPC 2.0 envelope: error codes, ids, notifications, batches, ordering, framing.

The server under test must behave as a compliant JSON-RPC 2.0 endpoint (spec §1 with the
§12 item 8 fixes): result XOR error, ids echoed with their JSON type, no answer to
notifications, one array frame per batch, responses in request order.
"""

import asyncio
import json

from conftest import Conn, RawWs, assert_error, assert_success, run, unique_name

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
PERSONA_NOT_FOUND = -32000
NO_ACTIVE_PERSONA = -32001


async def _raw_exchange(url, text):
    """Send one raw text frame, return the decoded response frame."""
    async with Conn(url) as c:
        await c.send_raw(text)
        return await c.recv()


async def _still_serving(c):
    """The connection keeps working after whatever came before."""
    res = await c.result("persona.list")
    assert res["total_count"] >= 2


def test_parse_errors_have_null_id_and_keep_connection(server):
    bad_frames = [
        "{",
        '{"jsonrpc":"2.0","method":"persona.list","id":1',  # truncated
        '{"jsonrpc":"2.0","method":"persona.list","id":1,}',  # trailing comma
        '{"jsonrpc":"2.0","method":"persona.list","id":1} trailing',
        "not json at all",
        "",
        "   ",
        "{'jsonrpc':'2.0'}",  # single quotes
        '{"jsonrpc":"2.0","method":"persona.list","id":01}',  # leading zero
        '{"jsonrpc":"2.0","method":"persona.list","id":NaN}',
        '["unterminated',
        '{"a":"\\x41"}',  # invalid escape
        '{"a":"\\u12"}',  # short unicode escape
        '{"a":"tab\tinside"}',  # raw control character in a string
    ]

    async def go():
        async with Conn(server.url) as c:
            for text in bad_frames:
                await c.send_raw(text)
                resp = await c.recv()
                assert_error(resp, PARSE_ERROR, id=None)
            # A lone surrogate escape is grammatical but not a character: strict parsers
            # reject it (parse error); a lenient one sees an object without "jsonrpc".
            await c.send_raw('{"a":"\\ud800"}')
            err = assert_error(await c.recv(), id=None)
            assert err["code"] in (PARSE_ERROR, INVALID_REQUEST)
            await _still_serving(c)

    run(go())


def test_truncated_prefixes_of_a_valid_request(server):
    full = json.dumps({"jsonrpc": "2.0", "method": "persona.switch",
                       "params": {"persona_id": "Kira"}, "id": 77})

    async def go():
        async with Conn(server.url) as c:
            for cut in range(1, len(full)):
                await c.send_raw(full[:cut])
                resp = await c.recv()
                assert_error(resp, PARSE_ERROR, id=None)
            resp = await c.call("persona.switch", {"persona_id": "Kira"})
            assert_success(resp)

    run(go())


def test_deep_nesting_is_rejected_not_fatal(server):
    depth = 100000
    nested = '{"a":' * depth + "1" + "}" * depth
    text = '{"jsonrpc":"2.0","method":"persona.list","params":' + nested + ',"id":5}'
    arrays = "[" * depth + "]" * depth

    async def go():
        async with Conn(server.url) as c:
            for frame in (text, arrays):
                await c.send_raw(frame)
                resp = await c.recv()
                if isinstance(resp, list):
                    assert len(resp) == 1
                    resp = resp[0]
                err = assert_error(resp)
                assert err["code"] in (PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS), resp
            await _still_serving(c)

    run(go())


def test_invalid_requests(server):
    cases = [
        ({"jsonrpc": "1.0", "method": "persona.list", "id": 1}, 1),
        ({"method": "persona.list", "id": 2}, 2),
        ({"jsonrpc": 2.0, "method": "persona.list", "id": 3}, 3),
        ({"jsonrpc": "2.0", "method": 5, "id": 4}, 4),
        ({"jsonrpc": "2.0", "method": None, "id": 5}, 5),
        ({"jsonrpc": "2.0", "id": 6}, 6),
        ({"jsonrpc": "2.0", "method": "persona.list", "params": "x", "id": 7}, 7),
        ({"jsonrpc": "2.0", "method": "persona.list", "params": 5, "id": 8}, 8),
        ({"jsonrpc": "2.0", "method": "persona.list", "params": None, "id": 9}, 9),
        ({"jsonrpc": "2.0", "method": "persona.list", "params": True, "id": 10}, 10),
        ({"jsonrpc": "2.0", "method": "persona.list", "id": {"a": 1}}, None),
        ({"jsonrpc": "2.0", "method": "persona.list", "id": [1]}, None),
        ({"jsonrpc": "2.0", "method": "persona.list", "id": True}, None),
    ]
    scalars = ["5", '"a string"', "true", "null"]

    async def go():
        async with Conn(server.url) as c:
            for req, rid in cases:
                await c.send_json(req)
                resp = await c.recv()
                assert_error(resp, INVALID_REQUEST)
                # The id is echoed when it was a valid id, null otherwise.
                assert resp["id"] in (rid, None), (req, resp)
                if rid is None:
                    assert resp["id"] is None
            for text in scalars:
                await c.send_raw(text)
                resp = await c.recv()
                assert_error(resp, INVALID_REQUEST, id=None)
            await _still_serving(c)

    run(go())


def test_method_not_found(server):
    async def go():
        async with Conn(server.url) as c:
            for name in ("no.such.method", "persona.get", "conversation.send_message",
                         "PERSONA.LIST", "persona.list ", ""):
                resp = await c.call(name)
                err = assert_error(resp, METHOD_NOT_FOUND)
                assert err["message"] == f"Method not found: {name}", resp

    run(go())


def test_ids_echoed_with_type(server):
    ids = [0, 1, -5, 2**53 + 1, 123456789012, "1", "", "abc", "id with spaces",
           "unicode-\u00e9\u4e2d-\U0001F680", 'quote"back\\slash\nnl', "x" * 1000]

    async def go():
        async with Conn(server.url) as c:
            for rid in ids:
                resp = await c.call("system.models", id=rid)
                assert_success(resp)
                assert resp["id"] == rid and type(resp["id"]) is type(rid)
                # errors echo the id too
                resp = await c.call("no.such.method", id=rid)
                assert_error(resp, METHOD_NOT_FOUND, id=rid)
            # Large integers must survive as text: compare the raw frame.
            await c.send_raw('{"jsonrpc":"2.0","method":"system.models","id":9007199254740993}')
            raw = await asyncio.wait_for(c.ws.recv(), 10)
            assert json.loads(raw)["id"] == 9007199254740993
            # Repeated ids are fine (clients derive ids from the clock).
            for _ in range(3):
                assert_success(await c.call("persona.list", id="same"))

    run(go())


def test_null_id_is_a_request_not_a_notification(server):
    async def go():
        async with Conn(server.url) as c:
            await c.send_raw('{"jsonrpc":"2.0","method":"system.models","id":null}')
            resp = await c.recv()
            assert_success(resp)
            assert resp["id"] is None

    run(go())


def test_notifications_get_no_response(server):
    async def go():
        async with Conn(server.url) as c:
            await c.send_json({"jsonrpc": "2.0", "method": "persona.list"})
            await c.send_json({"jsonrpc": "2.0", "method": "no.such.method"})
            await c.send_json({"jsonrpc": "2.0", "method": "persona.switch",
                               "params": {"persona_id": "nobody-" + unique_name()}})
            await c.send_json({"jsonrpc": "2.0", "method": "persona.create", "params": {}})
            # The next frame must be the answer to this request, not to the notifications.
            resp = await c.call("system.models", id="after")
            assert_success(resp)
            await c.expect_silence(0.5)

    run(go())


def test_notification_has_effect(server):
    name = unique_name("notified")

    async def go():
        async with Conn(server.url) as c:
            await c.send_json({"jsonrpc": "2.0", "method": "persona.create",
                               "params": {"name": name}})
            await c.send_json({"jsonrpc": "2.0", "method": "persona.switch",
                               "params": {"persona_id": "Kira"}})
            # Notifications may still be running concurrently with later requests, so poll
            # (bounded) for their effects; every poll must get exactly its own answer.
            switched = created = False
            for _ in range(50):
                resp = await c.call("persona.status")
                switched = "result" in resp and resp["result"]["persona"]["name"] == "Kira"
                listed = await c.result("persona.list")
                created = name in [p["name"] for p in listed["personas"]]
                if switched and created:
                    break
                await asyncio.sleep(0.1)
            assert switched and created, (switched, created)
            await c.expect_silence(0.3)

    run(go())


def test_batch_mixed(server):
    batch = [
        {"jsonrpc": "2.0", "method": "persona.list", "id": 1},
        {"jsonrpc": "2.0", "method": "system.models"},  # notification: omitted
        {"jsonrpc": "2.0", "method": "no.such.method", "id": "two"},
        {"jsonrpc": "2.0", "method": "persona.create", "params": {"name": 5}, "id": 3},
        {"jsonrpc": "1.0", "method": "persona.list", "id": 4},
        {"jsonrpc": "2.0", "method": "persona.switch", "params": {"persona_id": "zz-none"},
         "id": 5},
        {"jsonrpc": "2.0", "method": "system.models", "id": 6},
    ]

    async def go():
        async with Conn(server.url) as c:
            await c.send_json(batch)
            resp = await c.recv()
            assert isinstance(resp, list), resp
            assert len(resp) == 6, resp
            # The element with "jsonrpc":"1.0" may be answered with its id or with null.
            by_id = {(4 if r["id"] is None else r["id"]): r for r in resp}
            assert set(by_id) == {1, "two", 3, 4, 5, 6}, resp
            assert_success(by_id[1])
            assert by_id[1]["result"]["total_count"] == 2
            assert_error(by_id["two"], METHOD_NOT_FOUND)
            err = assert_error(by_id[3], INVALID_PARAMS)
            assert "name" in err["message"]
            assert_error(by_id[4], INVALID_REQUEST)
            assert_error(by_id[5], PERSONA_NOT_FOUND)
            assert_success(by_id[6])
            assert by_id[6]["result"]["available_models"] == []
            await c.expect_silence(0.3)
            await _still_serving(c)

    run(go())


def test_batch_edge_cases(server):
    async def go():
        async with Conn(server.url) as c:
            # Empty batch: a single error object, not an array.
            await c.send_raw("[]")
            resp = await c.recv()
            assert isinstance(resp, dict), resp
            assert_error(resp, INVALID_REQUEST, id=None)

            # Batch of non-objects: one error per element.
            await c.send_raw('[1, "x", null]')
            resp = await c.recv()
            assert isinstance(resp, list) and len(resp) == 3, resp
            for r in resp:
                assert_error(r, INVALID_REQUEST, id=None)

            # All notifications: no frame at all.
            await c.send_json([{"jsonrpc": "2.0", "method": "persona.list"},
                               {"jsonrpc": "2.0", "method": "system.models"}])
            resp = await c.call("system.models", id="probe")
            assert_success(resp)

            # A batch that does not parse is one parse error.
            await c.send_raw('[{"jsonrpc":"2.0","method":"persona.list","id":1},')
            resp = await c.recv()
            assert_error(resp, PARSE_ERROR, id=None)

            # A batch of one is still answered with an array.
            await c.send_json([{"jsonrpc": "2.0", "method": "system.models", "id": 9}])
            resp = await c.recv()
            assert isinstance(resp, list) and len(resp) == 1 and resp[0]["id"] == 9, resp
            assert_success(resp[0])

            # A large batch: every id answered exactly once.
            big = [{"jsonrpc": "2.0", "method": "persona.list", "id": i} for i in range(200)]
            await c.send_json(big)
            resp = await c.recv()
            assert isinstance(resp, list) and sorted(r["id"] for r in resp) == list(range(200))
            for r in resp:
                assert_success(r)

    run(go())


def test_pipelined_responses_in_request_order(server_factory):
    """Mix slow (writes) and fast (reads) requests; answers must come back in order."""
    n = 300

    def request(i):
        kind = i % 6
        if kind == 0:
            return {"jsonrpc": "2.0", "method": "persona.create",
                    "params": {"name": f"pipe-{i}"}, "id": i}
        if kind == 1:
            return {"jsonrpc": "2.0", "method": "persona.list", "id": str(i)}
        if kind == 2:
            return {"jsonrpc": "2.0", "method": "persona.status",
                    "params": {"persona_id": "missing-id"}, "id": i}
        if kind == 3:
            return {"jsonrpc": "2.0", "method": "system.status", "id": i}
        if kind == 4:
            return {"jsonrpc": "2.0", "method": "no.such", "id": i}
        return {"jsonrpc": "2.0", "method": "persona.switch",
                "params": {"persona_id": "Aria" if i % 12 else "Kira"}, "id": i}

    reqs = [request(i) for i in range(n)]
    server = server_factory(args=["--max-inflight", str(2 * n)])

    async def go():
        async with Conn(server.url) as c:
            for r in reqs:
                await c.send_json(r)
            got = [await c.recv() for _ in range(n)]
        assert [r["id"] for r in got] == [q["id"] for q in reqs]
        for q, r in zip(reqs, got):
            if q["method"] in ("persona.create", "persona.list", "system.status",
                               "persona.switch"):
                assert_success(r)
            elif q["method"] == "persona.status":
                assert_error(r, PERSONA_NOT_FOUND)
            else:
                assert_error(r, METHOD_NOT_FOUND)
        creates = [(q, r) for q, r in zip(reqs, got) if q["method"] == "persona.create"]
        assert [r["result"]["name"] for _, r in creates] == \
            [q["params"]["name"] for q, _ in creates]

    run(go())


def test_params_shapes(server):
    async def go():
        async with Conn(server.url) as c:
            # Omitted and empty-object params are fine for persona.list.
            for params in (None, {}):
                resp = await c.call("persona.list", params)
                assert_success(resp)
            # An array is a valid envelope (by-position params); a by-name method may
            # accept an empty one or refuse it with -32602, never -32600.
            resp = await c.call("persona.list", [])
            if "error" in resp:
                assert_error(resp, INVALID_PARAMS)
            else:
                assert resp["result"]["total_count"] == 2
            # Unknown extra params are ignored.
            assert_success(await c.call("persona.list", {"unexpected": 1}))
            # By-position params to a by-name method: either understood or -32602.
            resp = await c.call("persona.switch", ["Kira"])
            if "error" in resp:
                assert_error(resp, INVALID_PARAMS)
            else:
                assert resp["result"]["name"] == "Kira"

    run(go())


def test_wrong_parameter_types(server):
    cases = [
        ("persona.create", {}, "name"),
        ("persona.create", {"name": ""}, "name"),
        ("persona.create", {"name": 5}, "name"),
        ("persona.create", {"name": None}, "name"),
        ("persona.create", {"name": ["a"]}, "name"),
        ("persona.create", {"name": "ok", "description": 5}, "description"),
        ("persona.create", {"name": "ok", "personality_traits": "brave"}, "personality_traits"),
        ("persona.create", {"name": "ok", "personality_traits": [1, 2]}, "personality_traits"),
        ("persona.create", {"name": "ok", "topic_preferences": []}, "topic_preferences"),
        ("persona.create", {"name": "ok", "topic_preferences": {"a": "x"}}, "topic_preferences"),
        ("persona.create", {"name": "ok", "topic_preferences": {"a": 50.5}}, "topic_preferences"),
        ("persona.create", {"name": "ok", "topic_preferences": {"a": 101}}, "topic_preferences"),
        ("persona.create", {"name": "ok", "topic_preferences": {"a": -1}}, "topic_preferences"),
        ("persona.create", {"name": "ok", "topic_preferences": {"a": True}}, "topic_preferences"),
        ("persona.create", {"name": "ok", "charisma": 0}, "charisma"),
        ("persona.create", {"name": "ok", "charisma": 21}, "charisma"),
        ("persona.create", {"name": "ok", "charisma": "10"}, "charisma"),
        ("persona.create", {"name": "ok", "charisma": 10.5}, "charisma"),
        ("persona.create", {"name": "ok", "charisma": True}, "charisma"),
        ("persona.create", {"name": "ok", "charisma": None}, "charisma"),
        ("persona.create", {"name": "ok", "intelligence": -3}, "intelligence"),
        ("persona.create", {"name": "ok", "intelligence": 2**63}, "intelligence"),
        ("persona.create", {"name": "ok", "intelligence": []}, "intelligence"),
        ("persona.create", {"name": "ok", "social_rank": 5}, "social_rank"),
        ("persona.create", {"name": "ok", "social_rank": {}}, "social_rank"),
        ("persona.switch", {}, "persona_id"),
        ("persona.switch", {"persona_id": 5}, "persona_id"),
        ("persona.switch", {"persona_id": None}, "persona_id"),
        ("persona.switch", {"persona_id": ""}, "persona_id"),
        ("persona.status", {"persona_id": 5}, "persona_id"),
        ("persona.status", {"persona_id": ["x"]}, "persona_id"),
        ("persona.delete", {}, "persona_id"),
        ("persona.delete", {"persona_id": 5}, "persona_id"),
        ("persona.delete", {"persona_id": ""}, "persona_id"),
    ]

    async def go():
        async with Conn(server.url) as c:
            for method, params, field in cases:
                resp = await c.call(method, params)
                err = assert_error(resp, INVALID_PARAMS)
                assert field in err["message"], (method, params, resp)
            # None of the rejected creates left a persona behind.
            listed = await c.result("persona.list")
            assert listed["total_count"] == 2, listed

    run(go())


def test_domain_error_codes(server):
    async def go():
        async with Conn(server.url) as c:
            err = await c.error("persona.status", code=NO_ACTIVE_PERSONA)
            assert err["message"]
            err = await c.error("persona.switch", {"persona_id": "no-such-persona"},
                                code=PERSONA_NOT_FOUND)
            assert "no-such-persona" in err["message"]
            await c.error("persona.status", {"persona_id": "no-such-id"}, code=PERSONA_NOT_FOUND)
            await c.error("persona.delete", {"persona_id": "no-such-id"}, code=PERSONA_NOT_FOUND)

    run(go())


def test_binary_frames_ignored_or_rejected_clearly(server):
    """A binary frame must not be answered as if it were a request, nor crash anything.

    Accepted behaviours: ignored (the next frame answers the next text request), a JSON-RPC
    error with id null, or a close with 1003 (unsupported data)."""
    raw = RawWs(server.host, server.port)
    try:
        assert raw.handshake() == 101
        raw.send_frame(0x2, json.dumps({"jsonrpc": "2.0", "method": "persona.list",
                                        "id": "bin"}).encode())
        raw.send_text(json.dumps({"jsonrpc": "2.0", "method": "system.models", "id": "txt"}))
        for _ in range(10):
            try:
                op, payload = raw.recv_frame()
            except ConnectionError:
                raise AssertionError("connection dropped without a close frame")
            if op != 0x9:
                break
            raw.send_frame(0xA, payload)
        if op == 0x8:
            code = int.from_bytes(payload[:2], "big")
            assert code == 1003, f"binary frame closed with {code}"
        else:
            assert op == 0x1, op
            first = json.loads(payload)
            assert first.get("id") != "bin", f"binary frame processed as a request: {first}"
            if first["id"] is None:
                assert_error(first)
                first = raw.recv_json()
            assert first["id"] == "txt"
            assert_success(first)
    finally:
        raw.close()
    # Other clients are unaffected.
    assert server.result("persona.list")["total_count"] == 2


def test_fragmented_text_message(server):
    """A request split over continuation frames is one message."""
    text = json.dumps({"jsonrpc": "2.0", "method": "persona.switch",
                       "params": {"persona_id": "kira"}, "id": "frag"}).encode()
    raw = RawWs(server.host, server.port)
    try:
        assert raw.handshake() == 101
        raw.send_frame(0x1, text[:10], fin=False)
        raw.send_frame(0x9, b"ping-in-between")  # control frames may interleave
        raw.send_frame(0x0, text[10:30], fin=False)
        raw.send_frame(0x0, text[30:], fin=True)
        for _ in range(5):
            op, payload = raw.recv_frame()
            if op == 0xA:
                assert payload == b"ping-in-between"
                continue
            assert op == 0x1
            resp = json.loads(payload)
            assert_success(resp)
            assert resp["id"] == "frag" and resp["result"]["name"] == "Kira"
            break
        else:
            raise AssertionError("no response to the fragmented request")
    finally:
        raw.close()


def test_unicode_round_trip(server):
    name = 'Zo\u00eb "the" \\ \U0001F680 \u4e2d\u6587\n\t\u0001 end'

    async def go():
        async with Conn(server.url) as c:
            created = await c.result("persona.create", {"name": name,
                                                        "description": "\u00e9" * 50})
            assert created["name"] == name
            status = await c.result("persona.status", {"persona_id": created["persona_id"]})
            assert status["persona"]["name"] == name
            assert status["persona"]["description"] == "\u00e9" * 50

    run(go())
