"""The benchmarks' C fake LLM (bench/bench_fake_llm.c, docs/FAKE_LLM.md "The bench fake"):
the Ollama NDJSON dialect of tests/fake_llm.py, with stamped tokens, the request records and
the counters bench/bench_chat.c reads, and persona-mcp streaming through it.

The binary is built with the benchmarks (PMCP_BUILD_DIR/bench/bench_fake_llm); the tests are
skipped when it is not there."""
import http.client
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Conn
from test_chat import check_stream, srun, stream, switch, tokens_of

HOST = "127.0.0.1"
DEFAULT_REPLY = ("Hello! I am a fake language model, and this reply is streamed to you "
                 "one token at a time.")


def fake_bin():
    build = os.environ.get("PMCP_BUILD_DIR")
    if not build:
        pmcp = os.environ.get("PMCP_BIN")
        build = str(Path(pmcp).parent) if pmcp else ""
    path = Path(build) / "bench" / "bench_fake_llm"
    if not build or not path.exists():
        pytest.skip(f"bench_fake_llm not built ({path})")
    return path


class BenchFake:
    def __init__(self, workdir, *args):
        port_file = Path(workdir) / "bench_fake.port"
        self.log_path = Path(workdir) / "bench_fake.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(fake_bin()), "--port", "0", "--port-file", str(port_file), *args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        self.port = None
        while time.monotonic() < deadline and self.port is None:
            assert self.proc.poll() is None, self.log_path.read_text()
            if port_file.exists() and port_file.read_text().strip().isdigit():
                self.port = int(port_file.read_text())
            time.sleep(0.01)
        assert self.port, "no port file"

    @property
    def url(self):
        return f"http://{HOST}:{self.port}"

    def request(self, method, path, body=None):
        """(status, headers, raw body bytes) on a fresh connection."""
        c = http.client.HTTPConnection(HOST, self.port, timeout=10)
        data = json.dumps(body).encode() if body is not None else None
        c.request(method, path, body=data,
                  headers={"Content-Type": "application/json"} if data else {})
        r = c.getresponse()
        out = (r.status, dict(r.getheaders()), r.read())
        c.close()
        return out

    def json(self, method, path, body=None):
        status, _, raw = self.request(method, path, body)
        return status, json.loads(raw)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(10)


@pytest.fixture
def bfake(tmp_path):
    f = BenchFake(tmp_path)
    yield f
    assert f.stop() == 0, "bench_fake_llm did not exit 0 on SIGTERM"


def chat_body(content, **extra):
    return {"model": "fake:latest", "messages": [{"role": "user", "content": content}], **extra}


def mark(**kw):
    return " [[fake:" + json.dumps(kw) + "]]"


def ndjson(raw):
    return [json.loads(line) for line in raw.decode().splitlines() if line]


def test_stream_default_reply(bfake):
    status, headers, raw = bfake.request("POST", "/api/chat", chat_body("hi there"))
    assert status == 200
    assert headers["Content-Type"] == "application/x-ndjson"
    assert headers["Transfer-Encoding"] == "chunked"
    lines = ndjson(raw)
    tokens = [o["message"]["content"] for o in lines[:-1]]
    assert tokens == tokens_of(DEFAULT_REPLY)
    assert all(o["done"] is False and o["message"]["role"] == "assistant" for o in lines[:-1])
    end = lines[-1]
    assert end["done"] is True and end["done_reason"] == "stop", end
    assert end["message"]["content"] == "" and end["eval_count"] == len(tokens), end
    assert end["model"] == "fake:latest" and end["created_at"].endswith("Z"), end


def test_stamped_paced_tokens(bfake):
    t0 = time.time()
    status, _, raw = bfake.request(
        "POST", "/api/chat",
        chat_body("go" + mark(stamp=True, tokens=5, delay_ms=20, first_token_ms=30)))
    t1 = time.time()
    assert status == 200
    lines = ndjson(raw)
    toks = [o["message"]["content"] for o in lines[:-1]]
    assert len(toks) == 5
    assert not toks[0].startswith(" ") and all(t.startswith(" ") for t in toks[1:]), toks
    stamps = [float(t) for t in toks]
    assert all(len(t.strip().split(".")[1]) == 6 for t in toks), toks  # microseconds
    assert t0 + 0.025 <= stamps[0] <= t1, (t0, stamps)
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert all(0.015 <= g <= 0.2 for g in gaps), gaps
    assert lines[-1]["eval_count"] == 5


def test_token_budget_and_cycling(bfake):
    body = chat_body("x" + mark(reply="one two", tokens=5), options={"num_predict": 3})
    _, _, raw = bfake.request("POST", "/api/chat", body)
    lines = ndjson(raw)
    assert [o["message"]["content"] for o in lines[:-1]] == ["one", " two", " one"]
    assert lines[-1]["done_reason"] == "length"


def test_not_streamed(bfake):
    status, obj = bfake.json("POST", "/api/chat",
                             chat_body("x" + mark(reply="a b c"), stream=False))
    assert status == 200
    assert obj["message"]["content"] == "a b c" and obj["done"] is True, obj


def test_records_stats_and_reset(bfake):
    bfake.request("POST", "/api/chat", chat_body("first"))
    bfake.request("POST", "/api/chat", chat_body("second" + mark(tokens=2)))
    assert bfake.request("GET", "/api/tags")[0] == 200
    _, recs = bfake.json("GET", "/_fake/requests?path=/api/chat")
    assert [r["body"]["messages"][0]["content"] for r in recs][0] == "first"
    assert len(recs) == 2 and all(r["path"] == "/api/chat" for r in recs)
    assert recs[1]["outcome"] == "completed" and recs[1]["tokens_sent"] == 2, recs[1]
    assert recs[0]["time"] <= recs[1]["time"] <= time.time()
    _, last = bfake.json("GET", "/_fake/requests?path=/api/chat&limit=1")
    assert len(last) == 1 and last[0]["id"] == recs[1]["id"]
    _, newer = bfake.json("GET", f"/_fake/requests?since={recs[0]['id']}")
    assert [r["id"] for r in newer][0] == recs[1]["id"]
    _, st = bfake.json("GET", "/_fake/stats")
    assert st["completed_streams"] == 2 and st["active_streams"] == 0, st
    assert st["tokens_sent"] == len(tokens_of(DEFAULT_REPLY)) + 2, st
    lag = st["schedule_lag_ms"]
    assert lag["n"] == st["tokens_sent"] and 0 <= lag["p50"] <= lag["p99"] <= lag["max"], lag
    assert bfake.json("POST", "/_fake/reset")[1] == {"ok": True}
    _, st = bfake.json("GET", "/_fake/stats")
    assert st["tokens_sent"] == 0 and st["schedule_lag_ms"]["p50"] is None, st
    assert bfake.json("GET", "/_fake/requests")[1] == []


def test_unsupported_marker_and_bad_body(bfake):
    status, obj = bfake.json("POST", "/api/chat", chat_body("x" + mark(hang=True)))
    assert status == 400 and "hang" in obj["error"], obj
    status, _, _ = bfake.request("POST", "/api/chat", ["not", "an", "object"])
    assert status == 400
    status, obj = bfake.json("POST", "/v1/chat/completions", chat_body("x"))
    assert status == 404 and "bench fake" in obj["error"], obj


def test_client_gone_mid_stream(bfake):
    body = json.dumps(chat_body("x" + mark(tokens=50, delay_ms=20))).encode()
    s = socket.create_connection((HOST, bfake.port))
    s.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert b"200 OK" in s.recv(4096)
    s.close()
    deadline = time.monotonic() + 5
    while True:
        _, st = bfake.json("GET", "/_fake/stats")
        if st["aborted_streams"] == 1:
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.02)
    assert st["active_streams"] == 0 and st["tokens_sent"] < 50, st
    _, recs = bfake.json("GET", "/_fake/requests?path=/api/chat")
    assert recs[-1]["outcome"] == "aborted", recs[-1]


def test_expect_100_continue(bfake):
    body = json.dumps(chat_body("x" + mark(tokens=1))).encode()
    s = socket.create_connection((HOST, bfake.port))
    s.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body))
    assert s.recv(4096).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    s.sendall(body)
    got = b""
    while not got.endswith(b"0\r\n\r\n"):
        chunk = s.recv(4096)
        assert chunk, got
        got += chunk
    s.close()
    assert b"HTTP/1.1 200 OK" in got and b'"done":true' in got


def test_persona_mcp_streams_through_it(server_factory, bfake):
    srv = server_factory(args=["--llm-provider", "ollama", "--llm-url", bfake.url,
                               "--llm-model", "fake:latest"])
    msg = "hello" + mark(stamp=True, tokens=8, delay_ms=5)

    async def go():
        async with Conn(srv.url) as c:
            await switch(c)
            return await stream(c, msg, rid="s1")

    t0 = time.time()
    _, events = srun(srv, go())
    chunks, comp = check_stream(events, msg)
    stamps = [float(ch["chunk"]) for ch in chunks]
    assert len(stamps) == 8 and t0 < stamps[0] <= stamps[-1] <= time.time(), stamps
    _, recs = bfake.json("GET", "/_fake/requests?path=/api/chat")
    assert recs[-1]["body"]["messages"][-1]["content"] == msg
    assert recs[-1]["outcome"] == "completed"
