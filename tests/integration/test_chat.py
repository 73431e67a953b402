"""Integration tests of user chat with an LLM backend (issue 4): persona.chat, persona.chat_stream
and persona.chat_cancel against the fake LLM (tests/fake_llm.py, docs/FAKE_LLM.md).

The fake runs once per module on an ephemeral loopback port and is reset before every test; each
test starts its own persona-mcp pointed at it (--llm-provider ollama|openai --llm-url
http://127.0.0.1:PORT --llm-model fake). Per-request behaviour (reply text, pacing, faults) rides
in a [[fake:{...}]] marker in the user message; what the backend really received and whether the
backend request was aborted are read back from /_fake/requests and /_fake/stats.

Event protocol under test (docs/PROTOCOL.md "Chat", spec §3): every persona.chat_stream frame is
{"jsonrpc","id","result"} with the request's id and the event in result.event_type:
stream_start, stream_chunk..., then one of stream_complete | stream_cancelled | stream_error.
Every wait is bounded.
"""

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import websockets

from conftest import Conn, assert_error, assert_success, run

FAKE = Path(__file__).resolve().parent.parent / "fake_llm.py"
HOST = "127.0.0.1"
DEFAULT_REPLY = ("Hello! I am a fake language model, and this reply is streamed to you "
                 "one token at a time.")
LLM_ERROR = -32003
NO_ACTIVE_PERSONA = -32001
INVALID_PARAMS = -32602
FALLBACK_TEXTS = {
    "I'm having trouble finding the right words right now.",
    "Let me think about that for a moment.",
    "That's an interesting point to consider.",
    "I appreciate you bringing that up.",
    "I really need to focus on urgent matters right now.",
    "I'm feeling a bit drained from all this conversation.",
}
TERMINAL = ("stream_complete", "stream_cancelled", "stream_error")
EVENT_TIMEOUT = 15.0  # spec §4: black-box clients wait at most 15 s between stream events
CHAT_PATHS = {"ollama": "/api/chat", "openai": "/v1/chat/completions"}


# --- the fake backend -------------------------------------------------------------------------


class Fake:
    """tests/fake_llm.py as a subprocess on an ephemeral loopback port."""

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        port_file = self.workdir / "fake.port"
        self.log_path = self.workdir / "fake.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(FAKE), "--port", "0", "--port-file", str(port_file)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.port = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"fake_llm exited {self.proc.returncode}:\n{self.log()}")
            try:
                text = port_file.read_text().strip()
                if text.isdigit():
                    self.port = int(text)
                    break
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        if self.port is None:
            self.stop()
            pytest.fail(f"fake_llm wrote no port file:\n{self.log()}")

    @property
    def url(self):
        return f"http://{HOST}:{self.port}"

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return "(no log)"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None

    def _req(self, method, path, obj=None):
        data = json.dumps(obj).encode() if obj is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def stats(self):
        return self._req("GET", "/_fake/stats")

    def records(self, path=None):
        return self._req("GET", "/_fake/requests" + (f"?path={path}" if path else ""))

    def reset(self):
        self._req("POST", "/_fake/reset", {})

    def wait_stats(self, pred, timeout=3.0, what="fake stats"):
        """Poll /_fake/stats until pred(stats); fails with the last stats on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.stats()
            if pred(s):
                return s
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}: {s}")
            time.sleep(0.02)


@pytest.fixture(scope="module")
def fake_proc(tmp_path_factory):
    f = Fake(tmp_path_factory.mktemp("fake"))
    yield f
    rc = f.stop()
    assert rc == 0, f"fake_llm did not exit 0 on SIGTERM (rc={rc}):\n{f.log()}"


@pytest.fixture
def fake(fake_proc):
    fake_proc.reset()
    return fake_proc


def llm_args(url, provider="ollama", extra=()):
    return ["--llm-provider", provider, "--llm-url", url, "--llm-model", "fake", *extra]


@pytest.fixture
def chat_server(server_factory, fake):
    """chat_server(provider="ollama", extra=[...]) -> a server pointed at the fake."""

    def make(provider="ollama", extra=()):
        return server_factory(args=llm_args(fake.url, provider, extra))

    return make


def closed_port():
    """A loopback port nothing listens on (bound, then closed)."""
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def mark(**kw):
    return " [[fake:" + json.dumps(kw) + "]]"


def tokens_of(text):
    """The fake's tokens: split on whitespace, every token but the first keeps its leading space."""
    return re.findall(r"\s*\S+", text)


def word_tokens(text):
    return int(len(text.split()) * 1.3)


# --- client helpers -------------------------------------------------------------------------------


def srun(srv, coro):
    """run() that adds the server's state and log tail when the connection or the server died."""
    try:
        return run(coro)
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        gone = srv.proc is not None and srv.proc.poll() is not None
        if not (gone or isinstance(e, (websockets.ConnectionClosed, ConnectionError))):
            raise
        state = f"exited with {srv.proc.returncode}" if gone else "still running"
        raise AssertionError(f"{type(e).__name__}: {e}\nserver {state}; log tail:\n"
                             f"{srv.log_tail(40)}") from e


async def switch(c, persona="Aria"):
    return await c.result("persona.switch", {"persona_id": persona})


async def send(c, method, params=None, rid=None):
    rid = c.new_id() if rid is None else rid
    req = {"jsonrpc": "2.0", "method": method, "id": rid}
    if params is not None:
        req["params"] = params
    await c.send_json(req)
    return rid


def check_event_frame(frame, rid):
    assert frame.get("jsonrpc") == "2.0", frame
    assert frame.get("id") == rid and type(frame["id"]) is type(rid), (rid, frame)
    assert set(frame) == {"jsonrpc", "id", "result"}, f"event frame keys: {frame}"
    ev = frame["result"]
    assert isinstance(ev, dict) and "event_type" in ev, frame
    assert isinstance(ev.get("stream_id"), str) and ev["stream_id"], frame
    assert isinstance(ev.get("timestamp"), str) and ev["timestamp"], frame
    return ev


class Demux:
    """Reads frames of one connection and files them by id (streams interleave)."""

    def __init__(self, conn):
        self.c = conn
        self.frames = {}  # id -> [frame]
        self.order = []   # (id, event_type or None) in arrival order

    async def pump(self, timeout=EVENT_TIMEOUT):
        f = await self.c.recv(timeout)
        rid = f.get("id")
        self.frames.setdefault(json.dumps(rid), []).append(f)
        et = f.get("result", {}).get("event_type") if isinstance(f.get("result"), dict) else None
        self.order.append((rid, et))
        return f

    def of(self, rid):
        return self.frames.get(json.dumps(rid), [])

    def done(self, rid):
        fs = self.of(rid)
        return bool(fs) and (fs[-1].get("result") or {}).get("event_type") in TERMINAL

    async def until(self, pred, timeout=EVENT_TIMEOUT, what="frames"):
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {what}; got {self.order[-20:]}"
            await self.pump(min(left, EVENT_TIMEOUT))


async def stream(c, message, rid=None, timeout=30.0, **params):
    """One persona.chat_stream on c: returns (rid, [event results]) through the terminal event.
    Any other frame on the connection fails the test."""
    rid = await send(c, "persona.chat_stream", {"message": message, **params}, rid)
    events = []
    deadline = time.monotonic() + timeout
    while not events or events[-1]["event_type"] not in TERMINAL:
        left = deadline - time.monotonic()
        assert left > 0, f"stream {rid} did not end within {timeout}s: {events[-3:]}"
        events.append(check_event_frame(await c.recv(min(left, EVENT_TIMEOUT)), rid))
    return rid, events


def check_stream(events, rid_message=None, budget=500, persona_name="Aria"):
    """A well-formed start, chunk..., stream_complete sequence; returns (chunks, complete)."""
    types = [e["event_type"] for e in events]
    assert types[0] == "stream_start", types
    assert types[-1] == "stream_complete", (types, events[-1])
    assert types.count("stream_start") == 1 and types.count("stream_complete") == 1, types
    assert set(types[1:-1]) <= {"stream_chunk"}, types
    sid = events[0]["stream_id"]
    assert all(e["stream_id"] == sid for e in events), "stream_id differs between events"
    start = events[0]
    assert isinstance(start.get("persona_id"), str) and start["persona_id"], start
    d = start["data"]
    assert d["persona_id"] == start["persona_id"], start
    assert d["persona_name"] == persona_name, start
    if rid_message is not None:
        assert d["message"] == rid_message, start
    assert d["token_budget"] == budget, start
    chunks = events[1:-1]
    text = ""
    for n, ch in enumerate(chunks, 1):
        assert isinstance(ch["chunk"], str) and ch["chunk"], ch
        assert ch["data"]["chunk"] == ch["chunk"], ch
        assert ch["data"]["chunk_number"] == n, (n, ch)
        text += ch["chunk"]
        assert ch["data"]["total_length"] == len(text), \
            f"total_length should be the characters so far ({len(text)}): {ch}"
    comp = events[-1]
    assert comp["persona_id"] == start["persona_id"], comp
    assert comp["full_response"] == text, (text, comp)
    assert comp["tokens_used"] == word_tokens(text), comp
    assert isinstance(comp["processing_time"], (int, float)) and comp["processing_time"] >= 0, comp
    assert comp["fallback"] is False, comp
    cd = comp["data"]
    assert cd["full_response"] == text, comp
    assert cd["chunk_count"] == len(chunks), comp
    assert cd["response_length"] == len(text), comp
    assert cd["persona_name"] == persona_name, comp
    assert cd["tokens_used"] == comp["tokens_used"], comp
    return chunks, comp


def last_chat_body(fake, provider="ollama"):
    recs = fake.records(CHAT_PATHS[provider])
    assert recs, f"the fake received no {CHAT_PATHS[provider]} request"
    return recs[-1]["body"]


def metric(text, name):
    m = re.search(r"^" + re.escape(name) + r"(?:\{[^}]*\})? (\S+)$", text, re.M)
    assert m, f"{name} missing from /metrics"
    return float(m.group(1))


# --- persona.chat ----------------------------------------------------------------------------


def test_chat_result_fields(chat_server, fake):
    srv = chat_server()

    async def go():
        async with Conn(srv.url) as c:
            err = await c.error("persona.chat", {"message": "hi"}, NO_ACTIVE_PERSONA)
            assert "persona" in err["message"].lower(), err
            sw = await switch(c)
            await c.error("persona.chat", {}, INVALID_PARAMS)
            await c.error("persona.chat", {"message": "hi", "token_budget": 0}, INVALID_PARAMS)
            t0 = time.monotonic()
            res = await c.result("persona.chat", {"message": "Hello there, Aria."})
            return sw, res, time.monotonic() - t0

    sw, res, took = srun(srv, go())
    assert took < 10, took
    assert res["response"] == DEFAULT_REPLY, res
    assert res["response_type"] == "direct", res
    assert res["continue_score"] == 50.0, res
    assert res["tokens_used"] == word_tokens(DEFAULT_REPLY), res
    assert isinstance(res["processing_time"], (int, float)) and 0 <= res["processing_time"] < 10
    assert res["persona_id"] == sw["persona_id"], res
    assert res["fallback"] is False and "fallback_reason" not in res, res
    assert isinstance(res["memory_id"], str) and res["memory_id"], res
    assert set(res["persona_state"]) >= {"social_energy", "available_time",
                                         "interaction_fatigue"}, res
    body = last_chat_body(fake)
    assert body["model"] == "fake" and body["stream"] is True, body
    assert body["messages"][0]["role"] == "system", body
    assert "Aria" in body["messages"][0]["content"], body
    assert body["messages"][-1] == {"role": "user", "content": "Hello there, Aria."}, body


@pytest.mark.parametrize("provider", ["ollama", "openai"])
def test_chat_token_budget(chat_server, fake, provider):
    srv = chat_server(provider)

    async def go():
        async with Conn(srv.url) as c:
            await switch(c)
            capped = await c.result("persona.chat", {"message": "budget", "token_budget": 7})
            default = await c.result("persona.chat", {"message": "default budget"})
            rid, events = await stream(c, "streamed budget", token_budget=5)
            return capped, default, events

    capped, default, events = srun(srv, go())
    bodies = [r["body"] for r in fake.records(CHAT_PATHS[provider])]
    assert len(bodies) == 3, bodies
    key = (lambda b: b["options"]["num_predict"]) if provider == "ollama" else \
        (lambda b: b.get("max_tokens", b.get("max_completion_tokens")))
    assert [key(b) for b in bodies] == [7, 500, 5], bodies
    assert capped["response"] == "".join(tokens_of(DEFAULT_REPLY)[:7]), capped
    assert default["response"] == DEFAULT_REPLY, default
    chunks, comp = check_stream(events, "streamed budget", budget=5)
    assert comp["full_response"] == "".join(tokens_of(DEFAULT_REPLY)[:5]), comp
    assert len(chunks) == 5


# --- persona.chat_stream --------------------------------------------------------------------


@pytest.mark.parametrize("provider,split", [("ollama", False), ("ollama", True),
                                            ("openai", False), ("openai", True)])
def test_stream_events(chat_server, fake, provider, split):
    srv = chat_server(provider)
    reply = "The quick brown fox jumps over the lazy dog, twice, and then once more."
    msg = "Tell me a story." + mark(reply=reply, delay_ms=5, split_lines=split, split_pause_ms=5)

    async def go():
        async with Conn(srv.url) as c:
            await switch(c)
            rid, events = await stream(c, msg, rid="stream-1")
            # the connection is still usable and quiet afterwards
            await c.expect_silence(0.2)
            await c.result("persona.list")
            return events

    events = srun(srv, go())
    chunks, comp = check_stream(events, msg)
    assert comp["full_response"] == reply, comp
    assert [ch["chunk"] for ch in chunks] == tokens_of(reply), chunks
    assert isinstance(comp.get("memory_id"), str) and comp["memory_id"], comp
    rec = fake.records(CHAT_PATHS[provider])[-1]
    assert rec["outcome"] == "completed" and rec["stream"] is True, rec
    assert rec["config"]["split_lines"] is split, rec


def test_stream_start_first_with_an_instant_backend(chat_server, fake):
    """stream_start leaves once the backend request has (it must not delay the request);
    with a backend that answers at once, the first chunk can be relayed before that point,
    and stream_start must still come first, exactly once, on every stream."""
    srv = chat_server()
    n = 30

    async def go():
        async with Conn(srv.url) as c:
            await switch(c)
            d = Demux(c)
            for i in range(n):
                await send(c, "persona.chat_stream",
                           {"message": f"quick {i}" + mark(reply=f"at once {i}")}, f"q{i}")
            await d.until(lambda: all(d.done(f"q{i}") for i in range(n)), timeout=30,
                          what="all streams")
            return d

    d = srun(srv, go())
    for i in range(n):
        events = [check_event_frame(f, f"q{i}") for f in d.of(f"q{i}")]
        chunks, comp = check_stream(events)
        assert comp["full_response"] == f"at once {i}", comp


def test_stream_start_while_backend_is_silent(chat_server, fake):
    """A backend that accepts the request and says nothing: stream_start still arrives (it
    does not wait for a token), and the stream can be cancelled."""
    srv = chat_server()

    async def go():
        async with Conn(srv.url) as c:
            await switch(c)
            d = Demux(c)
            await send(c, "persona.chat_stream", {"message": "wait" + mark(hang=True)}, "h")
            await d.until(lambda: d.of("h"), timeout=5, what="stream_start")
            first = d.of("h")[0]["result"]
            await send(c, "persona.chat_cancel", {"request_id": "h"}, "c")
            await d.until(lambda: d.done("h") and d.of("c"), timeout=5, what="cancel")
            return first, d

    first, d = srun(srv, go())
    assert first["event_type"] == "stream_start", first
    types = [check_event_frame(f, "h")["event_type"] for f in d.of("h")]
    assert types == ["stream_start", "stream_cancelled"], types


def test_stream_utf8_split_lines(chat_server, fake):
    """Multi-byte characters with every backend line split at its byte midpoint: the reply is
    reassembled exactly; total_length / response_length count characters (spec §3)."""
    srv = chat_server()
    reply = "Grüße aus Zürich — naïve café, 東京 と 大阪, emoji 🐱🐈 at the end ✓."
    msg = "unicode please" + mark(reply=reply, split_lines=True, split_pause_ms=5)

    async def go():
        async with Conn(srv.url) as c:
            await switch(c)
            return await stream(c, msg)

    _, events = srun(srv, go())
    text = "".join(e["chunk"] for e in events if e["event_type"] == "stream_chunk")
    assert text == reply
    assert events[-1]["full_response"] == reply, events[-1]
    check_stream(events, msg)


def test_stream_concurrent_requests_answered(chat_server, fake):
    """While a stream runs, other requests on the same connection are answered between chunks."""
    srv = chat_server()
    msg = "slow one" + mark(tokens=10, delay_ms=150)

    async def go():
        async with Conn(srv.url) as c:
            await switch(c)
            d = Demux(c)
            await send(c, "persona.chat_stream", {"message": msg}, "s")
            await d.until(lambda: any(et == "stream_chunk" for _, et in d.order),
                          what="first chunk")
            t0 = time.monotonic()
            await send(c, "persona.list", None, "list")
            await send(c, "system.status", None, "status")
            await d.until(lambda: d.of("list") and d.of("status"), timeout=5,
                          what="persona.list and system.status answers")
            answered = time.monotonic() - t0
            status = d.of("status")[0]["result"]
            await d.until(lambda: d.done("s"), what="stream end")
            return d, answered, status

    d, answered, status = srun(srv, go())
    assert_success(d.of("list")[0])
    assert d.of("list")[0]["result"]["total_count"] >= 2
    assert status["chat"]["active_streams"] >= 1, status["chat"]
    # answered while the stream ran: chunks of the stream arrived after the answers
    pos = d.order.index(("list", None))
    after = [et for rid, et in d.order[pos:] if rid == "s"]
    assert after.count("stream_chunk") >= 3, d.order
    assert answered < 1.0, answered
    events = [check_event_frame(f, "s") for f in d.of("s")]
    chunks, comp = check_stream(events, msg)
    assert len(chunks) == 10


def test_stream_errors_before_start(chat_server, fake):
    """Errors before a stream starts are one stream_error event inside result (clients of the
    original read only frames with a result); no backend request is made."""
    srv = chat_server()

    async def go():
        out = []
        async with Conn(srv.url) as c:
            out.append(await c.call("persona.chat_stream", {"message": "nobody selected"}))
            await switch(c)
            out.append(await c.call("persona.chat_stream", {}))
            out.append(await c.call("persona.chat_stream", {"message": "x", "token_budget": 0}))
            await c.expect_silence(0.3)
        return out

    frames = srun(srv, go())
    for frame, code in zip(frames, (NO_ACTIVE_PERSONA, INVALID_PARAMS, INVALID_PARAMS)):
        ev = check_event_frame(frame, frame["id"])
        assert ev["event_type"] == "stream_error", frame
        assert ev["error"]["code"] == code, frame
        assert isinstance(ev["error"]["message"], str) and ev["error"]["message"], frame
    assert fake.stats()["requests"] == 0


# --- cancellation and disconnect ---------------------------------------------------------------


@pytest.mark.parametrize("by", ["stream_id", "request_id_str", "request_id_int"])
def test_cancel(chat_server, fake, by):
    srv = chat_server()
    msg = "a long story" + mark(tokens=50, delay_ms=200)
    rid = 4242 if by == "request_id_int" else "chat-to-cancel"

    async def go():
        async with Conn(srv.url) as c:
            await switch(c)
            d = Demux(c)
            await send(c, "persona.chat_stream", {"message": msg}, rid)
            await d.until(lambda: sum(1 for r, et in d.order if et == "stream_chunk") >= 3,
                          what="3 chunks")
            sid = d.of(rid)[0]["result"]["stream_id"]
            params = {"stream_id": sid} if by == "stream_id" else {"request_id": rid}
            t0 = time.monotonic()
            await send(c, "persona.chat_cancel", params, "cancel")
            await d.until(lambda: d.of("cancel") and d.done(rid), timeout=5,
                          what="cancel answer and stream_cancelled")
            took = time.monotonic() - t0
            # nothing more for the cancelled stream
            try:
                extra = await asyncio.wait_for(c.ws.recv(), 0.5)
            except asyncio.TimeoutError:
                extra = None
            again = await c.result("persona.chat_cancel", params)
            return d, sid, took, extra, again

    d, sid, took, extra, again = srun(srv, go())
    assert extra is None, f"frame after stream_cancelled: {extra}"
    cancel = d.of("cancel")[0]
    assert_success(cancel)
    assert cancel["result"]["cancelled"] is True and cancel["result"]["count"] == 1, cancel
    if by == "stream_id":
        assert cancel["result"]["stream_id"] == sid, cancel
    assert again["cancelled"] is False and again["count"] == 0, again
    events = [check_event_frame(f, rid) for f in d.of(rid)]
    types = [e["event_type"] for e in events]
    assert types[0] == "stream_start" and types[-1] == "stream_cancelled", types
    assert set(types[1:-1]) == {"stream_chunk"}, types
    assert all(e["stream_id"] == sid for e in events)
    last = events[-1]
    assert last["data"]["reason"] == "Client cancelled", last
    partial = "".join(e["chunk"] for e in events if e["event_type"] == "stream_chunk")
    assert last["data"]["partial_response"] == partial, last
    assert took < 2.0, f"stream_cancelled took {took:.2f}s"
    s = fake.wait_stats(lambda s: s["aborted_streams"] >= 1, timeout=3,
                        what="the backend stream to be aborted")
    assert s["aborted_streams"] == 1 and s["completed_streams"] == 0, s
    assert s["active_streams"] == 0, s
    rec = fake.records("/api/chat")[-1]
    assert rec["outcome"] == "aborted" and rec["tokens_sent"] < 50, rec


def test_plain_chat_keeps_request_order(chat_server, fake):
    """persona.chat is an ordered deferral (docs/PROTOCOL.md: the exchange is answered before the
    connection's later requests): a persona.chat_cancel sent behind it is answered after the chat,
    finds nothing to cancel, and the chat completes."""
    srv = chat_server()
    msg = "slow answer" + mark(tokens=10, delay_ms=50)

    async def go():
        async with Conn(srv.url) as c:
            await switch(c)
            d = Demux(c)
            await send(c, "persona.chat", {"message": msg}, "slow")
            await send(c, "persona.chat_cancel", {"request_id": "slow"}, "cancel")
            await d.until(lambda: d.of("slow") and d.of("cancel"), timeout=10,
                          what="chat result and cancel answer")
            return d

    d = srun(srv, go())
    assert [rid for rid, _ in d.order] == ["slow", "cancel"], d.order
    assert_success(d.of("slow")[0])
    assert d.of("slow")[0]["result"]["response"] == "".join(
        (tokens_of(DEFAULT_REPLY) * 2)[:10]), d.of("slow")
    cancel = d.of("cancel")[0]
    assert_success(cancel)
    assert cancel["result"]["cancelled"] is False and cancel["result"]["count"] == 0, cancel
    assert fake.stats()["completed_streams"] == 1


def test_cancel_params(chat_server, fake):
    srv = chat_server()

    async def go():
        async with Conn(srv.url) as c:
            await c.error("persona.chat_cancel", {}, INVALID_PARAMS)
            await c.error("persona.chat_cancel", {"request_id": [1]}, INVALID_PARAMS)
            return await c.result("persona.chat_cancel", {"stream_id": "no-such-stream"})

    res = srun(srv, go())
    assert res["cancelled"] is False and res["count"] == 0, res


def test_cancel_other_connection_has_no_effect(chat_server, fake):
    """A stream belongs to its connection: another connection cannot cancel it."""
    srv = chat_server()
    msg = "mine" + mark(tokens=8, delay_ms=50)

    async def go():
        async with Conn(srv.url) as a, Conn(srv.url) as b:
            await switch(a)
            rid = await send(a, "persona.chat_stream", {"message": msg}, "x")
            first = check_event_frame(await a.recv(), rid)
            other = await b.result("persona.chat_cancel", {"stream_id": first["stream_id"]})
            events = [first]
            while events[-1]["event_type"] not in TERMINAL:
                events.append(check_event_frame(await a.recv(), rid))
            return other, events

    other, events = srun(srv, go())
    assert other["cancelled"] is False and other["count"] == 0, other
    check_stream(events, msg)


@pytest.mark.parametrize("method", ["persona.chat_stream", "persona.chat"])
def test_disconnect_mid_stream_aborts_backend(chat_server, fake, method):
    srv = chat_server()
    msg = "keep talking" + mark(tokens=50, delay_ms=200)

    async def go():
        c = Conn(srv.url)
        await c.__aenter__()
        await switch(c)
        rid = await send(c, method, {"message": msg})
        if method == "persona.chat_stream":
            n = 0
            while n < 2:
                ev = check_event_frame(await c.recv(), rid)
                n += ev["event_type"] == "stream_chunk"
        else:
            await asyncio.to_thread(fake.wait_stats, lambda s: s["tokens_sent"] >= 2, 5.0,
                                    "the backend to start streaming")
        c.ws.transport.abort()  # drop the TCP connection, no close handshake
        t0 = time.monotonic()
        s = await asyncio.to_thread(fake.wait_stats, lambda s: s["aborted_streams"] >= 1, 3.0,
                                    "the backend stream to be aborted on disconnect")
        took = time.monotonic() - t0
        async with Conn(srv.url) as c2:
            for _ in range(100):
                st = await c2.result("system.status")
                if st["chat"]["active_streams"] == 0:
                    break
                await asyncio.sleep(0.05)
        return s, took, st

    s, took, st = srun(srv, go())
    assert s["aborted_streams"] == 1 and s["completed_streams"] == 0, s
    assert took < 2.0, took
    assert st["chat"]["active_streams"] == 0, st["chat"]
    rec = fake.records("/api/chat")[-1]
    assert rec["outcome"] == "aborted" and rec["tokens_sent"] < 50, rec


# --- backend failures --------------------------------------------------------------------------


def test_backend_down_fallback(server_factory):
    srv = server_factory(args=llm_args(f"http://{HOST}:{closed_port()}", "ollama"))

    async def go():
        async with Conn(srv.url) as c:
            await switch(c)
            t0 = time.monotonic()
            res = await c.result("persona.chat", {"message": "anyone there?"})
            t_chat = time.monotonic() - t0
            t0 = time.monotonic()
            _, events = await stream(c, "anyone streaming?", timeout=10)
            t_stream = time.monotonic() - t0
            status = await c.result("system.status")
            return res, t_chat, events, t_stream, status

    res, t_chat, events, t_stream, status = srun(srv, go())
    assert t_chat < 3.0 and t_stream < 3.0, (t_chat, t_stream)
    assert res["fallback"] is True, res
    assert isinstance(res.get("fallback_reason"), str) and res["fallback_reason"], res
    assert res["response"] in FALLBACK_TEXTS, res
    assert res["response_type"] == "direct", res
    types = [e["event_type"] for e in events]
    assert types[0] == "stream_start" and types[-1] == "stream_complete", types
    assert set(types[1:-1]) <= {"stream_chunk"}, types
    comp = events[-1]
    assert comp["fallback"] is True, comp
    assert isinstance(comp.get("fallback_reason"), str) and comp["fallback_reason"], comp
    assert comp["full_response"] in FALLBACK_TEXTS, comp
    text = "".join(e["chunk"] for e in events if e["event_type"] == "stream_chunk")
    assert text == comp["full_response"], (text, comp)
    assert status["chat"]["fallbacks"] >= 2, status["chat"]
    assert status["llm_available"] is False, status


def test_backend_slow_past_idle_timeout(chat_server, fake):
    """--llm-idle-timeout-ms 500: a backend silent before its first token, or between tokens,
    ends the chat with -32003 / stream_error (reason timeout) well within a few seconds."""
    srv = chat_server(extra=["--llm-idle-timeout-ms", "500"])
    before_first = "think hard" + mark(first_token_ms=20000)
    between = "pause midway" + mark(tokens=3, delay_ms=20000)
    bound = 3.0  # 500 ms idle timeout, generous slack for ASan and a loaded machine

    async def go():
        async with Conn(srv.url) as c:
            await switch(c)
            t0 = time.monotonic()
            resp = await c.call("persona.chat", {"message": before_first}, timeout=15)
            t_chat = time.monotonic() - t0
            t0 = time.monotonic()
            _, ev1 = await stream(c, before_first, timeout=15)
            t_stream1 = time.monotonic() - t0
            t0 = time.monotonic()
            _, ev2 = await stream(c, between, timeout=15)
            t_stream2 = time.monotonic() - t0
            return resp, t_chat, ev1, t_stream1, ev2, t_stream2

    resp, t_chat, ev1, t_stream1, ev2, t_stream2 = srun(srv, go())
    err = assert_error(resp, LLM_ERROR)
    assert "time" in err["message"].lower(), err
    assert [e["event_type"] for e in ev1] == ["stream_start", "stream_error"], ev1
    assert [e["event_type"] for e in ev2] == ["stream_start", "stream_chunk", "stream_error"], ev2
    for ev, partial in ((ev1, ""), (ev2, tokens_of(DEFAULT_REPLY)[0])):
        e = ev[-1]
        assert e["error"]["code"] == LLM_ERROR and e["error"]["reason"] == "timeout", e
        assert e["data"]["partial_response"] == partial, e
    # the backend requests were given up (closed by persona-mcp), not left hanging
    s = fake.wait_stats(lambda s: s["aborted_streams"] >= 3, timeout=3,
                        what="the timed-out backend streams to be closed")
    assert s["active_streams"] == 0, s
    times = {"persona.chat": round(t_chat, 2), "stream before first token": round(t_stream1, 2),
             "stream between tokens": round(t_stream2, 2)}
    assert max(times.values()) < bound, f"idle timeout of 500 ms took {times} (bound {bound}s)"


@pytest.mark.parametrize("provider", ["ollama", "openai"])
def test_backend_http_error(chat_server, fake, provider):
    srv = chat_server(provider)
    msg = "fail please" + mark(fail_status=503)

    async def go():
        async with Conn(srv.url) as c:
            await switch(c)
            resp = await c.call("persona.chat", {"message": msg})
            _, events = await stream(c, msg)
            return resp, events

    resp, events = srun(srv, go())
    err = assert_error(resp, LLM_ERROR)
    assert "503" in err["message"], err
    types = [e["event_type"] for e in events]
    assert types == ["stream_start", "stream_error"], types
    e = events[-1]
    assert e["error"]["code"] == LLM_ERROR and "503" in e["error"]["message"], e
    assert e["error"]["reason"] == "http_error", e
    assert "503" in e["data"]["error"] and e["data"]["partial_response"] == "", e
    assert fake.stats()["injected_failures"] == 2


@pytest.mark.parametrize("provider", ["ollama", "openai"])
def test_backend_malformed_line(chat_server, fake, provider):
    srv = chat_server(provider)
    msg = "break it" + mark(malformed=3, delay_ms=5)

    async def go():
        async with Conn(srv.url) as c:
            await switch(c)
            resp = await c.call("persona.chat", {"message": msg})
            _, events = await stream(c, msg)
            return resp, events

    resp, events = srun(srv, go())
    err = assert_error(resp, LLM_ERROR)
    assert "malformed" in err["message"].lower(), err
    types = [e["event_type"] for e in events]
    assert types[0] == "stream_start" and types[-1] == "stream_error", types
    e = events[-1]
    assert e["error"]["code"] == LLM_ERROR and e["error"]["reason"] == "malformed", e
    assert "malformed" in e["error"]["message"].lower(), e
    partial = "".join(x["chunk"] for x in events if x["event_type"] == "stream_chunk")
    assert partial == "".join(tokens_of(DEFAULT_REPLY)[:3]), partial
    assert e["data"]["partial_response"] == partial, e


@pytest.mark.parametrize("provider", ["ollama", "openai"])
def test_backend_dies_mid_stream(chat_server, fake, provider):
    srv = chat_server(provider)
    msg = "die halfway" + mark(disconnect_after=4, delay_ms=5)

    async def go():
        async with Conn(srv.url) as c:
            await switch(c)
            resp = await c.call("persona.chat", {"message": msg})
            _, events = await stream(c, msg)
            return resp, events

    resp, events = srun(srv, go())
    assert_error(resp, LLM_ERROR)
    types = [e["event_type"] for e in events]
    assert types == ["stream_start"] + ["stream_chunk"] * 4 + ["stream_error"], types
    e = events[-1]
    assert e["error"]["code"] == LLM_ERROR and e["error"]["reason"] == "cut_short", e
    partial = "".join(tokens_of(DEFAULT_REPLY)[:4])
    assert e["data"]["partial_response"] == partial, e
    assert "".join(x["chunk"] for x in events[1:-1]) == partial
    assert fake.stats()["disconnected_streams"] == 2


def test_backend_in_stream_error(chat_server, fake):
    srv = chat_server("openai")
    msg = "error halfway" + mark(error_after=2)

    async def go():
        async with Conn(srv.url) as c:
            await switch(c)
            return await stream(c, msg)

    _, events = srun(srv, go())
    e = events[-1]
    assert e["event_type"] == "stream_error", events
    assert e["error"]["code"] == LLM_ERROR, e
    assert e["data"]["partial_response"] == "".join(tokens_of(DEFAULT_REPLY)[:2]), e


# --- many streams ---------------------------------------------------------------------------------


def test_100_streams_on_10_connections(chat_server, fake):
    srv = chat_server()
    n_conn, per_conn = 10, 10

    def reply(i, j):
        return f"Conn {i} stream {j} says alpha beta gamma delta epsilon {i * 100 + j}."

    async def one_conn(i):
        async with Conn(srv.url) as c:
            await switch(c)
            d = Demux(c)
            for j in range(per_conn):
                msg = f"go {i}/{j}" + mark(reply=reply(i, j), delay_ms=30)
                await send(c, "persona.chat_stream", {"message": msg}, f"{i}-{j}")
            await d.until(lambda: all(d.done(f"{i}-{j}") for j in range(per_conn)),
                          timeout=60, what=f"all streams of connection {i}")
            return d

    async def go():
        t0 = time.monotonic()
        ds = await asyncio.gather(*(one_conn(i) for i in range(n_conn)))
        return ds, time.monotonic() - t0

    ds, took = srun(srv, go())
    sids = set()
    for i, d in enumerate(ds):
        for j in range(per_conn):
            rid = f"{i}-{j}"
            events = [check_event_frame(f, rid) for f in d.of(rid)]
            chunks, comp = check_stream(events)
            assert comp["full_response"] == reply(i, j), (rid, comp)
            sids.add(events[0]["stream_id"])
    assert len(sids) == n_conn * per_conn
    s = fake.stats()
    assert s["completed_streams"] == n_conn * per_conn, s
    assert s["max_active_streams"] > 1, s  # they really ran concurrently
    assert took < 60, took


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_streams_share_a_connection_intact(chat_server, fake, compression):
    """20 fast streams on one connection: their frames are written several at a time (framed
    by the server itself on a plain connection, through permessage-deflate otherwise); every
    frame arrives whole and each stream's chunks in order."""
    srv = chat_server()
    n = 20

    def reply(j):
        return " ".join(f"s{j}t{k}" + "x" * (k % 7) for k in range(30))

    async def go():
        async with Conn(srv.url, compression=compression) as c:
            await switch(c)
            d = Demux(c)
            for j in range(n):
                msg = f"fast {j}" + mark(reply=reply(j), delay_ms=2)
                await send(c, "persona.chat_stream", {"message": msg}, f"f-{j}")
            await d.until(lambda: all(d.done(f"f-{j}") for j in range(n)), timeout=60,
                          what="all streams")
            return d

    d = srun(srv, go())
    for j in range(n):
        events = [check_event_frame(f, f"f-{j}") for f in d.of(f"f-{j}")]
        chunks, comp = check_stream(events)
        assert comp["full_response"] == reply(j), comp
        assert len(chunks) == 30, len(chunks)


def test_timeout_and_cancel_among_busy_streams(chat_server, fake):
    """The upstream thread's timers while other transfers keep it busy: among 30 streams that
    receive a token every 50 ms, a silent stream still hits its 500 ms idle timeout on time and
    a cancelled one aborts its backend request at once; the busy ones all complete intact."""
    srv = chat_server(extra=["--llm-idle-timeout-ms", "500"])
    n_busy = 30

    def reply(j):
        return " ".join(f"w{j}x{k}" for k in range(40))

    async def go():
        async with Conn(srv.url) as c:
            await switch(c)
            d = Demux(c)
            for j in range(n_busy):
                msg = f"busy {j}" + mark(reply=reply(j), delay_ms=50)
                await send(c, "persona.chat_stream", {"message": msg}, f"busy-{j}")
            await send(c, "persona.chat_stream", {"message": "long" + mark(tokens=50,
                                                                            delay_ms=200)}, "long")
            t_silent = time.monotonic()
            await send(c, "persona.chat_stream",
                       {"message": "silent" + mark(first_token_ms=20000)}, "silent")
            await d.until(lambda: any(r == "long" and et == "stream_chunk" for r, et in d.order),
                          what="a chunk of the stream to cancel")
            t_cancel = time.monotonic()
            await send(c, "persona.chat_cancel", {"request_id": "long"}, "cancel")
            await d.until(lambda: d.done("long"), timeout=5, what="stream_cancelled")
            took_cancel = time.monotonic() - t_cancel
            await d.until(lambda: d.done("silent"), timeout=5, what="the idle timeout")
            took_silent = time.monotonic() - t_silent
            await d.until(lambda: all(d.done(f"busy-{j}") for j in range(n_busy)), timeout=60,
                          what="the busy streams")
            return d, took_cancel, took_silent

    d, took_cancel, took_silent = srun(srv, go())
    assert d.of("long")[-1]["result"]["event_type"] == "stream_cancelled", d.of("long")[-1]
    assert took_cancel < 2.0, f"stream_cancelled took {took_cancel:.2f}s"
    err = d.of("silent")[-1]["result"]
    assert err["event_type"] == "stream_error" and err["error"]["reason"] == "timeout", err
    assert 0.4 < took_silent < 3.0, f"idle timeout of 500 ms took {took_silent:.2f}s"
    for j in range(n_busy):
        events = [check_event_frame(f, f"busy-{j}") for f in d.of(f"busy-{j}")]
        _, comp = check_stream(events)
        assert comp["full_response"] == reply(j), comp
    s = fake.wait_stats(lambda s: s["aborted_streams"] >= 2 and s["active_streams"] == 0,
                        timeout=3, what="the cancelled and the silent backend streams closed")
    assert s["completed_streams"] == n_busy and s["aborted_streams"] == 2, s


# --- memory ---------------------------------------------------------------------------------------


def test_memory_of_earlier_exchange_in_later_prompt(chat_server, fake):
    srv = chat_server()

    async def go():
        async with Conn(srv.url) as c:
            await switch(c)
            await c.result("persona.chat", {"message": "My cat is called Whiskers"})
            await c.result("persona.chat", {"message": "What is my cat called?"})
        # a new connection has no recent turns: only memory can bring the name back
        async with Conn(srv.url) as c:
            await switch(c)
            _, events = await stream(c, "Do you remember the name of my cat?")
            return events

    events = srun(srv, go())
    assert events[-1]["event_type"] == "stream_complete", events[-1]
    bodies = [r["body"] for r in fake.records("/api/chat")]
    assert len(bodies) == 3, bodies
    second, third = bodies[1]["messages"], bodies[2]["messages"]
    # same connection: the memory section of the system prompt and the recent turns
    assert second[0]["role"] == "system", second
    assert "Whiskers" in second[0]["content"], second[0]["content"]
    assert {"role": "user", "content": "My cat is called Whiskers"} in second[1:-1], second
    assert {"role": "assistant", "content": DEFAULT_REPLY} in second[1:-1], second
    assert second[-1] == {"role": "user", "content": "What is my cat called?"}, second
    # new connection: memory only
    assert [m["role"] for m in third] == ["system", "user"], third
    assert "Whiskers" in third[0]["content"], third[0]["content"]


def test_exchange_stored_as_memory(chat_server, fake):
    srv = chat_server()

    async def go():
        async with Conn(srv.url) as c:
            sw = await switch(c)
            res = await c.result("persona.chat", {"message": "I drink green tea every morning"})
            _, events = await stream(c, "I collect antique pocket watches")
            found1 = await c.result("memory.search", {"query": "green tea every morning"})
            found2 = await c.result("memory.search", {"query": "antique pocket watches"})
            return sw, res, events, found1, found2

    sw, res, events, found1, found2 = srun(srv, go())
    comp = events[-1]
    for found, message, mem_id in ((found1, "I drink green tea every morning", res["memory_id"]),
                                   (found2, "I collect antique pocket watches",
                                    comp.get("memory_id"))):
        hits = [m for m in found["memories"] if m["content"].startswith(f"User said: {message}")]
        assert hits, f"no 'User said: {message}' memory in {found}"
        assert DEFAULT_REPLY in hits[0]["content"], hits[0]
        assert mem_id and hits[0]["id"] == mem_id, (mem_id, hits[0])
        assert found["persona_id"] == sw["persona_id"], found


# --- metrics ---------------------------------------------------------------------------------------


def test_chat_metrics(chat_server, fake):
    srv = chat_server()

    async def go():
        async with Conn(srv.url) as c:
            await switch(c)
            await c.result("persona.chat", {"message": "count me"})
            await stream(c, "and me")
            return await c.result("system.status")

    status = srun(srv, go())
    chat = status["chat"]
    assert chat["total_chats"] >= 2, chat
    assert chat["tokens_relayed"] >= 2 * len(tokens_of(DEFAULT_REPLY)), chat
    assert chat["active_streams"] == 0, chat
    assert chat["average_ttft_seconds"] > 0, chat
    code, _, body = srv.http_get("/metrics")
    assert code == 200
    text = body.decode()
    assert metric(text, "pmcp_chat_ttft_seconds_count") >= 2, text
    assert metric(text, "pmcp_chat_total") >= 2
    assert metric(text, "pmcp_chat_tokens_total") >= 2 * len(tokens_of(DEFAULT_REPLY))
    assert metric(text, "pmcp_chat_active_streams") == 0
    # The second chat found the server idle and Aria's memories in RAM: it started on the
    # service thread (docs/ARCHITECTURE.md, "A chat's start").
    assert metric(text, "pmcp_chat_inline_starts_total") >= 1


def test_chat_on_workers_flag(chat_server, fake):
    """--chat-on-workers: every chat starts on a worker; the answers are the same."""
    srv = chat_server(extra=["--chat-on-workers"])

    async def go():
        async with Conn(srv.url) as c:
            await switch(c)
            first = await c.result("persona.chat", {"message": "count me"})
            _, events = await stream(c, "and me")
            return first, events

    first, events = srun(srv, go())
    assert first["response"] == DEFAULT_REPLY, first
    chunks, complete = check_stream(events)
    assert complete["full_response"] == DEFAULT_REPLY, complete
    code, _, body = srv.http_get("/metrics")
    assert code == 200
    assert metric(body.decode(), "pmcp_chat_inline_starts_total") == 0
