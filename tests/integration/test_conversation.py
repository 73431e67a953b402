"""Integration tests of the persona-to-persona conversation engine over JSON-RPC:
conversation.start, conversation.status, conversation.turn and conversation.end.

Each test runs the real server against the fake LLM (tests/fake_llm.py, Ollama dialect) on an
ephemeral loopback port, passing --llm-url http://127.0.0.1:PORT --llm-model fake, and checks
what the fake received through its /_fake/requests introspection. Fields, error codes and
messages, routing (full_llm, constrained, template: forced with personas built to score in
each band), cooldowns (persona.list and persona.switch after an end), the fallback reply when
the backend is down, and persistence across a restart (ended conversations are read back from
the database by conversation.status; one left active is closed by the restart and can no
longer be advanced). Every wait is bounded.
"""

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import Conn, assert_error, run, unique_name

FAKE = Path(__file__).resolve().parent.parent / "fake_llm.py"
REPLY = "The moon sings softly over the old harbour tonight my friend"

TEMPLATE_NEUTRAL = {"I see.", "That's good to know.", "Hmm, interesting."}
FALLBACKS = {"I'm having trouble finding the right words right now.",
             "Let me think about that for a moment.",
             "That's an interesting point to consider.",
             "I appreciate you bringing that up."}


class Fake:
    """tests/fake_llm.py as a subprocess on an ephemeral port."""

    def __init__(self, workdir, args=()):
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        port_file = workdir / "fake.port"
        self.log_path = workdir / "fake.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(FAKE), "--port", "0", "--port-file", str(port_file),
                 *args], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        self.port = None
        while time.monotonic() < deadline and self.port is None:
            if self.proc.poll() is not None:
                pytest.fail(f"fake_llm exited {self.proc.returncode}")
            try:
                text = port_file.read_text().strip()
                if text.isdigit():
                    self.port = int(text)
            except FileNotFoundError:
                time.sleep(0.02)
        if self.port is None:
            self.proc.kill()
            pytest.fail("fake_llm wrote no port file")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def chat_requests(self):
        with urllib.request.urlopen(self.url + "/_fake/requests?path=/api/chat", timeout=10) as r:
            return json.loads(r.read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def fake(tmp_path):
    f = Fake(tmp_path / "fake", ["--reply", REPLY])
    yield f
    f.stop()


@pytest.fixture
def srv(server_factory, fake):
    return server_factory(args=["--llm-url", fake.url, "--llm-model", "fake"])


def personas(server):
    ps = server.result("persona.list")["personas"]
    return {p["name"]: p for p in ps}


def ids(server):
    p = personas(server)
    return p["Aria"]["id"], p["Kira"]["id"]


def create(server, name, **kw):
    params = {"name": name, "description": f"{name} is a test persona."}
    params.update(kw)
    return server.result("persona.create", params)["persona_id"]


def full_tokens(text, m):
    return int(len(text.split()) * 1.3 * m)


# --- the happy path ------------------------------------------------------------------------


def test_start_status_turn_end(srv, fake):
    aria, kira = ids(srv)

    async def go():
        async with Conn(srv.url) as c:
            st = await c.result("conversation.start",
                                {"persona1_id": aria, "persona2_id": kira, "topic": "music"})
            assert st["started"] is True
            assert st["participants"] == [aria, kira]
            assert st["topic"] == "music"
            assert st["token_budget"] == 1000
            assert st["continue_score"] == 62  # spec §6.4 example
            cid = st["conversation_id"]
            assert len(cid) == 36

            s = await c.result("conversation.status", {"conversation_id": cid})
            assert s["id"] == cid and s["participants"] == [aria, kira]
            assert s["topic"] == "music"
            assert s["turn_count"] == 0 and s["duration"] == 0
            assert s["continue_score"] == 62 and s["tokens_remaining"] == 1000
            assert s["should_continue"] is True and s["active"] is True
            assert s["next_speaker"] == aria and s["tokens_used"] == 0

            t1 = await c.result("conversation.turn", {"conversation_id": cid})
            assert t1["turn_number"] == 1
            assert t1["speaker_id"] == aria and t1["speaker_name"] == "Aria"
            assert t1["listener_id"] == kira and t1["listener_name"] == "Kira"
            assert t1["response"] == REPLY
            assert t1["response_type"] == "full_llm"
            assert t1["continue_score"] == 62
            assert t1["fallback"] is False and t1["ended"] is False
            assert t1["tokens_used"] == full_tokens(REPLY, 1.5)
            conv = t1["conversation"]
            assert conv["turn_count"] == 1 and conv["duration"] == 30
            assert conv["tokens_remaining"] == 1000 - t1["tokens_used"]
            assert conv["next_speaker"] == kira

            t2 = await c.result("conversation.turn",
                                {"conversation_id": cid, "message": "What are you reading?"})
            assert t2["turn_number"] == 2 and t2["speaker_id"] == kira
            assert t2["response_type"] in ("full_llm", "constrained")

            end = await c.result("conversation.end", {"conversation_id": cid})
            assert end["conversation_id"] == cid and end["ended"] is True
            assert end["reason"] == "user_request"
            fs = end["final_stats"]
            assert fs["turns"] == 2 and fs["duration"] == 60
            assert fs["tokens_used"] == t1["tokens_used"] + t2["tokens_used"]

            s = await c.result("conversation.status", {"conversation_id": cid})
            assert s["active"] is False and s["should_continue"] is False
            assert s["exit_reason"] == "user_request" and s["turn_count"] == 2
            assert "ended_at" in s

            mem = await c.result("memory.search", {"persona_id": kira,
                                                   "query": "Aria said to me moon harbour"})
            assert any(m["content"].startswith("Aria said to me: ") for m in mem["memories"])
            return cid

    run(go())
    reqs = fake.chat_requests()
    assert len(reqs) == 2
    first = reqs[0]["body"]["messages"]
    assert first[0]["role"] == "system"
    assert first[0]["content"].startswith("You are Aria. ")
    assert "Current topic: music" in first[0]["content"]
    assert "Keep response under 100 words" in first[0]["content"]
    assert reqs[0]["body"]["options"]["num_predict"] == 130
    second = reqs[1]["body"]["messages"]
    assert second[0]["content"].startswith("You are Kira. ")
    assert "This is turn 2 in the conversation." in second[0]["content"]
    assert second[-1] == {"role": "user", "content": "What are you reading?"}
    # Aria's earlier line is in Kira's context
    assert {"role": "user", "content": REPLY} in second


def test_turn_answers_the_other_by_default(srv, fake):
    aria, kira = ids(srv)
    st = srv.result("conversation.start", {"persona1_id": aria, "persona2_id": kira,
                                           "topic": "stories", "token_budget": 5000})
    cid = st["conversation_id"]
    srv.result("conversation.turn", {"conversation_id": cid})
    srv.result("conversation.turn", {"conversation_id": cid})
    reqs = fake.chat_requests()
    # first turn: an opening line from Kira; second: Aria's reply as the user message
    assert "Kira" in reqs[0]["body"]["messages"][-1]["content"]
    assert reqs[1]["body"]["messages"][-1] == {"role": "user", "content": REPLY}
    srv.result("conversation.end", {"conversation_id": cid, "reason": "test_over"})
    s = srv.result("conversation.status", {"conversation_id": cid})
    assert s["exit_reason"] == "test_over"


# --- routing bands ----------------------------------------------------------------------------


def test_template_route_ends_naturally_without_llm(srv, fake):
    # score = 30 + 0 + (0.8*1 + 2)/2 - 0 - 2.5 + 10 = 38.9 -> 38: template, natural end
    p = create(srv, unique_name("royal"), charisma=1, social_rank="royalty",
               topic_preferences={"weather": 0})
    q = create(srv, unique_name("peasant"), charisma=1, social_rank="peasant",
               topic_preferences={"weather": 0})
    st = srv.result("conversation.start", {"persona1_id": p, "persona2_id": q,
                                           "topic": "weather"})
    assert st["continue_score"] == 38
    t = srv.result("conversation.turn", {"conversation_id": st["conversation_id"]})
    assert t["response_type"] == "template"
    assert t["response"] in TEMPLATE_NEUTRAL
    assert t["tokens_used"] == full_tokens(t["response"], 0.1)
    assert t["ended"] is True and t["exit_reason"] == "natural_conclusion"
    assert t["conversation"]["active"] is False
    assert fake.chat_requests() == []
    listed = personas(srv)
    by_id = {v["id"]: v for v in listed.values()}
    # 38 is neither > 70 nor < 30: 300 s x (1 + fatigue 1 / 100) = 303 s
    assert by_id[p]["available"] is False and 290 < by_id[p]["cooldown_remaining"] <= 303


def test_constrained_route(srv, fake):
    # score = 30 + 0 + (0.8 + 8)/2 - 2.5 + 10 = 41.9 -> 41: constrained
    p = create(srv, unique_name("c1"), charisma=1, topic_preferences={"weather": 0})
    q = create(srv, unique_name("c2"), charisma=1, topic_preferences={"weather": 0})
    st = srv.result("conversation.start", {"persona1_id": p, "persona2_id": q,
                                           "topic": "weather"})
    assert st["continue_score"] == 41
    t = srv.result("conversation.turn", {"conversation_id": st["conversation_id"]})
    assert t["response_type"] == "constrained"
    assert t["tokens_used"] == full_tokens(REPLY, 1.0)
    req = fake.chat_requests()[-1]["body"]
    assert req["options"]["num_predict"] == 50
    sysmsg = req["messages"][0]["content"]
    assert "- Keep response under 50 words" in sysmsg
    assert "- Style: concise" in sysmsg
    assert "- Prepare to end the conversation politely" in sysmsg


def test_natural_end_on_budget(srv, fake):
    aria, kira = ids(srv)
    st = srv.result("conversation.start", {"persona1_id": aria, "persona2_id": kira,
                                           "topic": "music", "token_budget": 60})
    t = srv.result("conversation.turn", {"conversation_id": st["conversation_id"]})
    assert t["tokens_used"] >= 10
    assert t["ended"] is True and t["exit_reason"] == "natural_conclusion"
    assert t["conversation"]["tokens_remaining"] == max(0, 60 - t["tokens_used"])


# --- cooldown -------------------------------------------------------------------------------


def test_cooldown_after_end(srv):
    aria, kira = ids(srv)
    cid = srv.result("conversation.start",
                     {"persona1_id": aria, "persona2_id": kira})["conversation_id"]
    before = personas(srv)
    assert before["Aria"]["available"] is True
    srv.result("conversation.end", {"conversation_id": cid})
    after = personas(srv)
    for name in ("Aria", "Kira"):
        assert after[name]["available"] is False
        # score 62 (not > 70, not < 30), Aria's fatigue 0: 300 s
        assert 290 < after[name]["cooldown_remaining"] <= 300
    resp = srv.rpc("persona.switch", {"persona_id": "Aria"})
    assert_error(resp, -32006)
    resp = srv.rpc("conversation.start", {"persona1_id": aria, "persona2_id": kira})
    err = assert_error(resp, -32006)
    assert err["message"].startswith("Failed to start conversation")
    assert "cooling down" in err["message"]


# --- errors ---------------------------------------------------------------------------------


def test_errors(srv):
    aria, kira = ids(srv)

    async def go():
        async with Conn(srv.url) as c:
            msg = "Both persona1_id and persona2_id are required"
            assert (await c.error("conversation.start", None, -32602))["message"] == msg
            assert (await c.error("conversation.start", {"persona1_id": aria},
                                  -32602))["message"] == msg
            assert (await c.error("conversation.start", {"persona1_id": "", "persona2_id": kira},
                                  -32602))["message"] == msg
            await c.error("conversation.start", {"persona1_id": 5, "persona2_id": kira}, -32602)
            err = await c.error("conversation.start", {"persona1_id": aria, "persona2_id": "nope"},
                                -32000)
            assert err["message"] == "One or both personas not found"
            await c.error("conversation.start", {"persona1_id": aria, "persona2_id": aria},
                          -32602)
            await c.error("conversation.start", {"persona1_id": aria, "persona2_id": kira,
                                                 "token_budget": "many"}, -32602)
            await c.error("conversation.start", {"persona1_id": aria, "persona2_id": kira,
                                                 "token_budget": 0}, -32602)
            await c.error("conversation.start", {"persona1_id": aria, "persona2_id": kira,
                                                 "topic": 7}, -32602)
            for m in ("conversation.end", "conversation.status", "conversation.turn"):
                err = await c.error(m, {}, -32602)
                assert "conversation_id" in err["message"]
                err = await c.error(m, {"conversation_id": "nope"}, -32602)
                assert err["message"] == "Conversation not found: nope"
            cid = (await c.result("conversation.start",
                                  {"persona1_id": aria, "persona2_id": kira}))["conversation_id"]
            # already talking: refused
            err = await c.error("conversation.start", {"persona1_id": kira, "persona2_id": aria},
                                -32006)
            assert "already in a conversation" in err["message"]
            await c.error("conversation.turn", {"conversation_id": cid, "message": 3}, -32602)
            await c.error("conversation.end", {"conversation_id": cid, "reason": ["x"]}, -32602)
            await c.result("conversation.end", {"conversation_id": cid})
            # ended: turn and end no longer find it
            await c.error("conversation.end", {"conversation_id": cid}, -32602)
            await c.error("conversation.turn", {"conversation_id": cid}, -32602)

    run(go())


def test_backend_down_gives_fallback(server_factory):
    # a port nothing listens on: connection refused -> the §4.4 fallback line
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    srv = server_factory(args=["--llm-url", f"http://127.0.0.1:{port}", "--llm-model", "fake"])
    aria, kira = ids(srv)
    cid = srv.result("conversation.start", {"persona1_id": aria, "persona2_id": kira,
                                            "topic": "music"})["conversation_id"]
    t = srv.result("conversation.turn", {"conversation_id": cid})
    assert t["fallback"] is True and t["fallback_reason"]
    assert t["response"] in FALLBACKS
    assert t["response_type"] == "full_llm"


def test_stop_during_a_turn_is_prompt(tmp_path, server_factory):
    """A turn waiting on a backend that never answers does not hold up SIGTERM: the wait notices
    the stopping server, cancels the request and the process exits 0 at once."""
    hang = Fake(tmp_path / "hang", ["--hang"])
    try:
        srv = server_factory(args=["--llm-url", hang.url, "--llm-model", "fake"])
        aria, kira = ids(srv)
        cid = srv.result("conversation.start",
                         {"persona1_id": aria, "persona2_id": kira})["conversation_id"]

        async def go():
            async with Conn(srv.url) as c:
                await c.send_json({"jsonrpc": "2.0", "method": "conversation.turn",
                                   "params": {"conversation_id": cid}, "id": 1})
                await asyncio.sleep(0.5)
                t0 = time.monotonic()
                rc = await asyncio.get_running_loop().run_in_executor(None, srv.stop)
                return rc, time.monotonic() - t0

        rc, seconds = run(go())
        assert rc == 0, srv.log_tail()
        assert seconds < 5, seconds
    finally:
        hang.stop()


# --- persistence ----------------------------------------------------------------------------


def test_persistence_across_restart(srv, fake):
    aria, kira = ids(srv)
    p = create(srv, unique_name("p"))
    q = create(srv, unique_name("q"))
    ended = srv.result("conversation.start", {"persona1_id": aria, "persona2_id": kira,
                                              "topic": "magic"})["conversation_id"]
    t = srv.result("conversation.turn", {"conversation_id": ended})
    srv.result("conversation.end", {"conversation_id": ended, "reason": "done_here"})
    left = srv.result("conversation.start", {"persona1_id": p, "persona2_id": q,
                                             "topic": "travel"})["conversation_id"]
    srv.result("conversation.turn", {"conversation_id": left})
    srv.restart()

    s = srv.result("conversation.status", {"conversation_id": ended})
    assert s["active"] is False and s["exit_reason"] == "done_here"
    assert s["participants"] == [aria, kira] and s["topic"] == "magic"
    assert s["turn_count"] == 1 and s["tokens_used"] == t["tokens_used"]
    assert s["duration"] == 30

    # the one left active did not survive the restart as an active conversation
    s = srv.result("conversation.status", {"conversation_id": left})
    assert s["active"] is False
    assert s["exit_reason"] in ("server_restart", "server_shutdown")
    assert s["turn_count"] == 1
    assert_error(srv.rpc("conversation.turn", {"conversation_id": left}), -32602)
    assert_error(srv.rpc("conversation.end", {"conversation_id": left}), -32602)
    # its participants are free again (a shutdown applies no cooldown)
    st = srv.result("conversation.start", {"persona1_id": p, "persona2_id": q})
    assert st["started"] is True
    # the cooldown of the ended one survived the restart
    assert personas(srv)["Aria"]["cooldown_remaining"] > 0


def test_deleted_participant(srv, fake):
    p = create(srv, unique_name("p"))
    q = create(srv, unique_name("q"))
    cid = srv.result("conversation.start", {"persona1_id": p, "persona2_id": q})["conversation_id"]
    srv.result("persona.delete", {"persona_id": q})
    assert_error(srv.rpc("conversation.turn", {"conversation_id": cid}), -32000)
    assert_error(srv.rpc("conversation.turn", {"conversation_id": cid}), -32602)
    # the participant's deletion removed the conversation's row too (cascade)
    assert_error(srv.rpc("conversation.status", {"conversation_id": cid}), -32602)


# --- the chatroom (spec §6.10) ------------------------------------------------------------------


def test_simulate_flag(tmp_path, fake):
    """`persona-mcp --simulate MINUTES` prints a transcript and statistics (skipped until main.c
    has the flag)."""
    from conftest import server_binary
    binary = server_binary()
    helptext = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10)
    if "--simulate" not in helptext.stdout + helptext.stderr:
        pytest.skip("this build has no --simulate flag")
    data = tmp_path / "simdata"
    data.mkdir()
    proc = subprocess.run([binary, "--host", "127.0.0.1", "--port", "0", "--data-dir", str(data),
                           "--llm-url", fake.url, "--llm-model", "fake", "--simulate", "0.05"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "=== statistics ===" in out, out[-3000:]
    assert "started: Aria & Kira on " in out, out[-3000:]
    assert "Aria -> Kira (" in out, out[-3000:]
    assert "turns: " in out and "tokens: " in out
