"""Tests of the fake LLM backend (tests/fake_llm.py) that the chat tests and benchmarks use.

The fake runs as its own process on an ephemeral loopback port (reported through
--port-file). Clients are urllib for plain request/response and a raw socket for streams,
where we need to see what arrives in each recv(): split lines, early closes, broken lines.
Every wait is bounded. Teardown sends SIGTERM and requires exit code 0.
"""

import json
import math
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

FAKE = Path(__file__).resolve().parent.parent / "fake_llm.py"
PY = sys.executable
HOST = "127.0.0.1"
TIMEOUT = 10.0
DEFAULT_REPLY = ("Hello! I am a fake language model, and this reply is streamed to you "
                 "one token at a time.")


# --- process and clients --------------------------------------------------------------------


class Fake:
    def __init__(self, workdir, args=()):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        port_file = self.workdir / "fake.port"
        self.log_path = self.workdir / "fake.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [PY, str(FAKE), "--port", "0", "--port-file", str(port_file), "--verbose",
                 *args], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        self.port = None
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
            self.proc.kill()
            self.proc.wait(5)
            pytest.fail(f"fake_llm wrote no port file:\n{self.log()}")

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return "(no log)"

    def stop(self, timeout=10.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None

    def url(self, path):
        return f"http://{HOST}:{self.port}{path}"

    def request(self, method, path, obj=None, headers=None, timeout=TIMEOUT):
        """Returns (status, headers, body bytes); HTTP errors are returned, not raised."""
        data = json.dumps(obj).encode() if obj is not None else None
        req = urllib.request.Request(self.url(path), data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            body = e.read()
            e.close()
            return e.code, e.headers, body

    def get_json(self, path, **kw):
        status, _, body = self.request("GET", path, **kw)
        assert status == 200, (path, status, body)
        return json.loads(body)

    def post_json(self, path, obj, **kw):
        status, headers, body = self.request("POST", path, obj, **kw)
        return status, headers, json.loads(body) if body else None

    def stats(self):
        return self.get_json("/_fake/stats")

    def records(self):
        return self.get_json("/_fake/requests")

    def reset(self):
        assert self.request("POST", "/_fake/reset", {})[0] == 200

    def wait_stats(self, pred, timeout=3.0):
        deadline = time.monotonic() + timeout
        while True:
            s = self.stats()
            if pred(s) or time.monotonic() > deadline:
                return s
            time.sleep(0.01)


class RawResult:
    def __init__(self):
        self.status = None
        self.headers = {}
        self.body = b""           # de-chunked body
        self.snapshots = []       # len(body) after each recv() that delivered body bytes
        self.arrivals = []        # (time.monotonic(), len(body)) per recv
        self.complete = False     # saw the terminating 0-size chunk
        self.eof = False          # server closed the connection
        self.timed_out = False


def http_bytes(path, obj, headers=None, method="POST"):
    body = json.dumps(obj).encode() if obj is not None else b""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}", "Content-Type: application/json",
             f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def raw_read(sock, res, stop=None, timeout=TIMEOUT):
    """Read one response (chunked or Content-Length) from sock into res, recv by recv.
    stop(res) -> True ends reading early. Leaves bytes of a next response unread only if
    the server sent none (we never pipeline)."""
    deadline = time.monotonic() + timeout
    raw = b""
    head_done = False
    chunked = False
    length = None
    state, remaining = "size", 0
    while True:
        if stop is not None and stop(res):
            return res
        left = deadline - time.monotonic()
        if left <= 0:
            res.timed_out = True
            return res
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            res.timed_out = True
            return res
        except ConnectionResetError:
            data = b""
        if not data:
            res.eof = True
            return res
        raw += data
        before = len(res.body)
        if not head_done:
            if b"\r\n\r\n" not in raw:
                continue
            head, raw = raw.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            res.status = int(lines[0].split(" ")[1])
            for line in lines[1:]:
                k, _, v = line.partition(":")
                res.headers[k.strip().lower()] = v.strip()
            head_done = True
            chunked = res.headers.get("transfer-encoding", "").lower() == "chunked"
            if not chunked:
                length = int(res.headers.get("content-length", "0"))
        if not chunked:
            res.body += raw
            raw = b""
            if len(res.body) >= length:
                res.complete = True
        else:
            while True:
                if state == "size":
                    if b"\r\n" not in raw:
                        break
                    line, raw = raw.split(b"\r\n", 1)
                    remaining = int(line.split(b";")[0], 16)
                    state = "data" if remaining else "end"
                elif state == "data":
                    take = raw[:remaining]
                    res.body += take
                    raw = raw[len(take):]
                    remaining -= len(take)
                    if remaining:
                        break
                    state = "crlf"
                elif state == "crlf":
                    if len(raw) < 2:
                        break
                    assert raw[:2] == b"\r\n", raw[:20]
                    raw = raw[2:]
                    state = "size"
                else:  # "end": the final CRLF after the 0 chunk
                    if len(raw) < 2:
                        break
                    res.complete = True
                    break
        if len(res.body) > before:
            res.snapshots.append(len(res.body))
            res.arrivals.append((time.monotonic(), len(res.body)))
        if res.complete:
            return res


def raw_post(fake, path, obj, headers=None, stop=None, timeout=TIMEOUT):
    with socket.create_connection((HOST, fake.port), timeout=timeout) as sock:
        sock.sendall(http_bytes(path, obj, headers))
        return raw_read(sock, RawResult(), stop, timeout)


def chat(content, stream=True, **extra):
    body = {"model": "fake", "messages": [{"role": "system", "content": "be brief"},
                                          {"role": "user", "content": content}],
            "stream": stream}
    body.update(extra)
    return body


def marker(**opts):
    return "[[fake:" + json.dumps(opts) + "]]"


def ndjson(body):
    return [json.loads(line) for line in body.decode().splitlines() if line.strip()]


def sse_events(body):
    """data payloads of the SSE events, in order."""
    text = body.decode()
    assert text.endswith("\n\n"), text[-50:]
    out = []
    for event in text.split("\n\n"):
        if not event:
            continue
        assert event.startswith("data: "), event
        out.append(event[len("data: "):])
    return out


def ollama_text(lines):
    return "".join(o["message"]["content"] for o in lines if not o.get("done"))


def sse_text(events):
    parts = []
    for e in events:
        if e == "[DONE]":
            continue
        obj = json.loads(e)
        for ch in obj["choices"]:
            parts.append(ch["delta"].get("content") or "")
    return "".join(parts)


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_fake(tmp_path_factory):
    fake = Fake(tmp_path_factory.mktemp("fake"))
    yield fake
    rc = fake.stop()
    assert rc == 0, f"fake_llm did not exit 0 on SIGTERM (rc={rc}):\n{fake.log()}"


@pytest.fixture
def fake(shared_fake):
    shared_fake.reset()
    return shared_fake


@pytest.fixture
def fake_factory(tmp_path):
    fakes = []

    def make(*args):
        f = Fake(tmp_path / f"fake{len(fakes)}", args)
        fakes.append(f)
        return f

    yield make
    bad = [(f.stop(), f.log()) for f in fakes]
    bad = [b for b in bad if b[0] != 0]
    assert not bad, f"fake_llm did not exit 0 on SIGTERM: {bad}"


# --- listing endpoints ----------------------------------------------------------------------


def test_tags_models_version_and_root(fake):
    tags = fake.get_json("/api/tags")
    assert [m["name"] for m in tags["models"]] == ["fake:latest"]
    models = fake.get_json("/v1/models")
    assert models["object"] == "list" and models["data"][0]["id"] == "fake:latest"
    assert fake.get_json("/api/version")["version"]
    status, _, body = fake.request("GET", "/")
    assert status == 200 and body == b"Ollama is running"


def test_unknown_path_and_wrong_method(fake):
    status, _, body = fake.request("GET", "/api/nope")
    assert status == 404 and "error" in json.loads(body)
    status, _, body = fake.request("GET", "/api/chat")
    assert status == 405
    status, _, body = fake.request("GET", "/v1/chat/completions")
    assert status == 405 and "message" in json.loads(body)["error"]


def test_model_list_option(fake_factory):
    f = fake_factory("--model", "llama3.1:8b", "--model", "tiny:1b")
    assert [m["name"] for m in f.get_json("/api/tags")["models"]] == ["llama3.1:8b", "tiny:1b"]


# --- Ollama ---------------------------------------------------------------------------------


def test_ollama_chat_stream_ndjson(fake):
    res = raw_post(fake, "/api/chat", chat("hi"))
    assert res.status == 200 and res.complete
    assert res.headers["content-type"] == "application/x-ndjson"
    assert res.headers["transfer-encoding"] == "chunked"
    lines = ndjson(res.body)
    assert all(o["model"] == "fake" and o["created_at"].endswith("Z") for o in lines)
    assert [o["done"] for o in lines] == [False] * (len(lines) - 1) + [True]
    assert ollama_text(lines) == DEFAULT_REPLY
    tokens = [o["message"]["content"] for o in lines[:-1]]
    assert tokens[0] == "Hello!" and all(t.startswith(" ") for t in tokens[1:])
    final = lines[-1]
    assert final["done_reason"] == "stop" and final["eval_count"] == len(tokens)
    assert final["message"] == {"role": "assistant", "content": ""}
    s = fake.stats()
    assert s["completed_streams"] == 1 and s["active_streams"] == 0
    assert s["tokens_sent"] == len(tokens)


def test_ollama_chat_stream_default_is_true_and_urllib_lines(fake):
    body = chat("hi")
    del body["stream"]
    req = urllib.request.Request(fake.url("/api/chat"), data=json.dumps(body).encode(),
                                 method="POST")
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
        lines = [json.loads(line) for line in resp if line.strip()]
    assert ollama_text(lines) == DEFAULT_REPLY and lines[-1]["done"] is True


def test_ollama_chat_non_stream(fake):
    status, headers, obj = fake.post_json("/api/chat", chat("hi", stream=False))
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert obj["message"] == {"role": "assistant", "content": DEFAULT_REPLY}
    assert obj["done"] is True and obj["done_reason"] == "stop"
    assert obj["eval_count"] == len(DEFAULT_REPLY.split())


def test_ollama_generate_stream_and_non_stream(fake):
    res = raw_post(fake, "/api/generate", {"model": "m", "prompt": "Respond to: hi"})
    lines = ndjson(res.body)
    assert "".join(o["response"] for o in lines) == DEFAULT_REPLY
    assert lines[-1]["done"] is True and lines[-1]["response"] == ""
    status, _, obj = fake.post_json("/api/generate", {"model": "m", "prompt": "hi",
                                                      "stream": False})
    assert status == 200 and obj["response"] == DEFAULT_REPLY and obj["done"] is True


def test_generate_marker_last_one_wins_and_echo(fake):
    prompt = ("Memory: earlier the user said " + marker(reply="stale") +
              "\nRespond to: what now? " + marker(echo=True))
    status, _, obj = fake.post_json("/api/generate", {"model": "m", "prompt": prompt,
                                                      "stream": False})
    assert status == 200
    assert obj["response"].startswith("Echo: Memory: earlier the user said")
    assert "[[fake:" not in obj["response"] and obj["response"].endswith("what now?")


# --- OpenAI-compatible ---------------------------------------------------------------------


def test_openai_stream_sse(fake):
    res = raw_post(fake, "/v1/chat/completions", chat("hi"))
    assert res.status == 200 and res.complete
    assert res.headers["content-type"] == "text/event-stream"
    events = sse_events(res.body)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert sse_text(events) == DEFAULT_REPLY
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])


def test_openai_stream_usage_chunk(fake):
    res = raw_post(fake, "/v1/chat/completions",
                   chat("hi", stream_options={"include_usage": True}))
    events = sse_events(res.body)
    usage = json.loads(events[-2])
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 19


def test_openai_non_stream(fake):
    body = chat("hi")
    del body["stream"]  # OpenAI default: not streamed
    status, _, obj = fake.post_json("/v1/chat/completions", body)
    assert status == 200 and obj["object"] == "chat.completion"
    choice = obj["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": DEFAULT_REPLY}
    assert choice["finish_reason"] == "stop" and obj["usage"]["completion_tokens"] == 19


def test_openai_content_parts(fake):
    body = {"model": "m", "stream": False, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "parts " + marker(echo=True)}]}]}
    _, _, obj = fake.post_json("/v1/chat/completions", body)
    assert obj["choices"][0]["message"]["content"] == "Echo: parts"


# --- behaviour knobs ------------------------------------------------------------------------


def test_echo_marker_is_stripped_and_only_last_user_message_counts(fake):
    body = {"model": "m", "stream": False, "messages": [
        {"role": "system", "content": "memories: " + marker(fail_status=500)},
        {"role": "user", "content": "old " + marker(reply="old")},
        {"role": "assistant", "content": "old reply"},
        {"role": "user", "content": "Tell me  " + marker(echo=True) + "  about cats"}]}
    status, _, obj = fake.post_json("/api/chat", body)
    assert status == 200
    assert obj["message"]["content"] == "Echo: Tell me about cats"


def test_reply_header_and_marker_precedence(fake):
    hdr = {"X-Fake-LLM": json.dumps({"reply": "From the header.", "delay_ms": 1})}
    _, _, obj = fake.post_json("/api/chat", chat("plain", stream=False), headers=hdr)
    assert obj["message"]["content"] == "From the header."
    _, _, obj = fake.post_json("/api/chat", chat(marker(reply="From the marker."),
                                                 stream=False), headers=hdr)
    assert obj["message"]["content"] == "From the marker."


def test_tokens_n_repeats_with_leading_spaces(fake):
    res = raw_post(fake, "/api/chat", chat(marker(tokens=25, reply="one two three")))
    lines = ndjson(res.body)
    toks = [o["message"]["content"] for o in lines[:-1]]
    assert len(toks) == 25 and lines[-1]["eval_count"] == 25
    assert toks[:4] == ["one", " two", " three", " one"]
    assert all(t.startswith(" ") for t in toks[1:])


def test_zero_tokens(fake):
    res = raw_post(fake, "/v1/chat/completions", chat(marker(tokens=0)))
    events = sse_events(res.body)
    assert sse_text(events) == "" and events[-1] == "[DONE]"


def test_first_token_and_delay_timing(fake):
    """Token i is due at t0 + first_token_ms + i * delay_ms: never earlier (a firm bound),
    and on an idle machine within a few ms (a loose bound, so a loaded machine passes)."""
    opts = marker(tokens=4, first_token_ms=300, delay_ms=100)
    with socket.create_connection((HOST, fake.port), timeout=TIMEOUT) as sock:
        t0 = time.monotonic()
        sock.sendall(http_bytes("/api/chat", chat(opts)))
        res = raw_read(sock, RawResult())
    lines = ndjson(res.body)
    assert len(lines) == 5
    # time of each token line = first recv whose body length covers it
    ends, pos = [], 0
    for line in res.body.split(b"\n")[:4]:
        pos += len(line) + 1
        ends.append(next(t for t, n in res.arrivals if n >= pos) - t0)
    for i, t in enumerate(ends):
        assert 0.3 + 0.1 * i - 0.002 <= t <= 0.3 + 0.1 * i + 0.7, (i, ends)


def test_stamp_tokens_carry_their_write_time(fake):
    t0 = time.time()
    res = raw_post(fake, "/api/chat", chat(marker(stamp=True, tokens=3, delay_ms=50)))
    t1 = time.time()
    toks = [o["message"]["content"] for o in ndjson(res.body)[:-1]]
    assert len(toks) == 3 and not toks[0].startswith(" ") and toks[1].startswith(" ")
    stamps = [float(t) for t in toks]
    assert stamps == sorted(stamps) and stamps[-1] <= t1
    for i, st in enumerate(stamps):
        assert st >= t0 + 0.05 * i - 0.002, (i, st - t0)


def test_non_stream_waits_for_the_whole_generation(fake):
    t0 = time.monotonic()
    fake.post_json("/api/chat", chat(marker(tokens=3, first_token_ms=100, delay_ms=100),
                                     stream=False))
    assert 0.28 <= time.monotonic() - t0 <= 2.0


def test_max_tokens_from_request_and_override(fake):
    res = raw_post(fake, "/api/chat", chat("hi", options={"num_predict": 3}))
    lines = ndjson(res.body)
    assert ollama_text(lines) == "Hello! I am"
    assert lines[-1]["done_reason"] == "length" and lines[-1]["eval_count"] == 3
    # a budget larger than the reply is no cut
    lines = ndjson(raw_post(fake, "/api/chat", chat("hi", options={"num_predict": 500})).body)
    assert lines[-1]["done_reason"] == "stop"
    # OpenAI max_tokens
    res = raw_post(fake, "/v1/chat/completions", chat("hi", max_tokens=2))
    events = sse_events(res.body)
    assert sse_text(events) == "Hello! I"
    assert json.loads(events[-2])["choices"][0]["finish_reason"] == "length"
    _, _, obj = fake.post_json("/v1/chat/completions", chat("hi", stream=False,
                                                            max_completion_tokens=4))
    assert obj["choices"][0]["finish_reason"] == "length"
    assert obj["usage"]["completion_tokens"] == 4
    # fake-side cap (header), the smaller of the two caps wins
    hdr = {"X-Fake-LLM": '{"max_tokens": 5}'}
    _, _, obj = fake.post_json("/api/chat", chat("hi", stream=False,
                                                 options={"num_predict": 7}), headers=hdr)
    assert obj["eval_count"] == 5 and obj["done_reason"] == "length"


def test_max_tokens_command_line(fake_factory):
    f = fake_factory("--max-tokens", "2", "--reply", "a b c d")
    _, _, obj = f.post_json("/api/generate", {"model": "m", "prompt": "x", "stream": False})
    assert obj["response"] == "a b" and obj["done_reason"] == "length"


# --- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
def test_split_lines_arrive_in_two_reads(fake, path):
    reply = "héllo wörld ✓ ünïcode splits everywhere ok"
    res = raw_post(fake, path, chat(marker(split_lines=True, reply=reply)))
    assert res.complete
    text = (ollama_text(ndjson(res.body)) if path == "/api/chat"
            else sse_text(sse_events(res.body)))
    assert text == reply
    # after how many reads did the client hold an incomplete line?
    body = res.body
    partial = [n for n in res.snapshots if not body[:n].endswith(b"\n")]
    nlines = body.count(b"\n") if path == "/api/chat" else body.count(b"\n\n")
    assert len(partial) >= nlines // 2, (len(partial), nlines, res.snapshots)


def test_unsplit_lines_arrive_whole(fake):
    res = raw_post(fake, "/api/chat", chat(marker(delay_ms=5)))
    assert all(res.body[:n].endswith(b"\n") for n in res.snapshots)


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
def test_disconnect_after_closes_early(fake, path):
    res = raw_post(fake, path, chat(marker(disconnect_after=3, delay_ms=5)))
    assert res.status == 200 and res.eof and not res.complete
    if path == "/api/chat":
        lines = ndjson(res.body)
        assert len(lines) == 3 and not any(o["done"] for o in lines)
        assert ollama_text(lines) == "Hello! I am"
    else:
        events = sse_events(res.body)
        assert "[DONE]" not in events and sse_text(events) == "Hello! I am"
        assert all(json.loads(e)["choices"][0]["finish_reason"] is None for e in events)
    s = fake.wait_stats(lambda s: s["disconnected_streams"] == 1)
    assert s["disconnected_streams"] == 1 and s["active_streams"] == 0
    assert s["aborted_streams"] == 0 and s["completed_streams"] == 0


def test_disconnect_after_zero_and_non_stream(fake):
    res = raw_post(fake, "/api/chat", chat(marker(disconnect_after=0)))
    assert res.status == 200 and res.body == b"" and res.eof and not res.complete
    res = raw_post(fake, "/api/chat", chat(marker(disconnect_after=0), stream=False))
    assert res.status == 200 and res.eof and not res.complete
    assert 0 < len(res.body) < int(res.headers["content-length"])


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate", "/v1/chat/completions"])
def test_malformed_line_present(fake, path):
    opts = marker(malformed=2)
    body = {"model": "m", "prompt": opts} if path == "/api/generate" else chat(opts)
    res = raw_post(fake, path, body)
    assert res.complete
    if path == "/v1/chat/completions":
        items = [e for e in sse_events(res.body) if e != "[DONE]"]
    else:
        items = [line for line in res.body.decode().split("\n") if line]
    good, bad = [], []
    for i, item in enumerate(items):
        try:
            good.append(json.loads(item))
        except json.JSONDecodeError:
            bad.append(i)
    assert len(bad) == 1
    if path == "/api/chat":
        assert bad == [2]
        assert ollama_text(good) == DEFAULT_REPLY
    elif path == "/api/generate":
        assert "".join(o["response"] for o in good) == DEFAULT_REPLY
    else:
        assert bad == [3]  # after the role chunk and two tokens
        assert "".join(o["choices"][0]["delta"].get("content", "") for o in good) \
            == DEFAULT_REPLY
    assert fake.stats()["completed_streams"] == 1


def test_malformed_non_stream_body(fake):
    status, _, body = fake.request("POST", "/api/chat",
                                   chat(marker(malformed=True), stream=False))
    assert status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


def test_error_after_sends_error_object(fake):
    res = raw_post(fake, "/api/chat", chat(marker(error_after=2)))
    lines = ndjson(res.body)
    assert res.complete and len(lines) == 3 and "error" in lines[-1]
    res = raw_post(fake, "/v1/chat/completions", chat(marker(error_after=1)))
    events = sse_events(res.body)
    assert "error" in json.loads(events[-1]) and "[DONE]" not in events
    assert fake.stats()["errored_streams"] == 2


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate", "/v1/chat/completions"])
def test_fail_status_per_request(fake, path):
    opts = marker(fail_status=503)
    body = {"model": "m", "prompt": opts} if path == "/api/generate" else chat(opts)
    status, headers, obj = fake.post_json(path, body)
    assert status == 503 and headers["Content-Type"] == "application/json"
    if path.startswith("/v1"):
        assert obj["error"]["code"] == 503 and obj["error"]["message"]
    else:
        assert "503" in obj["error"]


def test_fail_status_command_line(fake_factory):
    f = fake_factory("--fail-status", "500")
    for method, path, body in (("GET", "/api/tags", None), ("GET", "/v1/models", None),
                               ("POST", "/api/chat", chat("hi")),
                               ("POST", "/api/embed", {"input": "x"})):
        status, _, raw = f.request(method, path, body)
        assert status == 500 and "error" in json.loads(raw), path
    # introspection is never failed; a header can turn the fault off for one request
    assert f.stats()["injected_failures"] == 4
    status, _, _ = f.request("GET", "/api/tags", headers={"X-Fake-LLM": '{"fail_status":0}'})
    assert status == 200


def test_hang_then_client_gives_up(fake):
    with socket.create_connection((HOST, fake.port), timeout=TIMEOUT) as sock:
        sock.sendall(http_bytes("/api/chat", chat(marker(hang=True))))
        sock.settimeout(0.7)
        with pytest.raises(socket.timeout):
            sock.recv(100)
        s = fake.stats()
        assert s["hung_requests"] == 1 and s["active_streams"] == 1
    s = fake.wait_stats(lambda s: s["aborted_streams"] == 1)
    assert s["aborted_streams"] == 1 and s["hung_requests"] == 0 and s["active_streams"] == 0


def test_hang_command_line(fake_factory):
    f = fake_factory("--hang")
    with pytest.raises((socket.timeout, urllib.error.URLError)):
        urllib.request.urlopen(f.url("/api/tags"), timeout=0.5)
    assert f.wait_stats(lambda s: s["hung_requests"] == 0)["hung_requests"] == 0


def test_aborted_stream_counted_promptly(fake):
    opts = marker(tokens=50, delay_ms=200)
    with socket.create_connection((HOST, fake.port), timeout=TIMEOUT) as sock:
        sock.sendall(http_bytes("/api/chat", chat(opts)))
        res = raw_read(sock, RawResult(), stop=lambda r: r.body.count(b"\n") >= 2)
        assert res.body.count(b"\n") >= 2 and not res.complete
        assert fake.stats()["active_streams"] == 1
        t_close = time.time()
    s = fake.wait_stats(lambda s: s["aborted_streams"] == 1)
    assert s["aborted_streams"] == 1 and s["active_streams"] == 0
    assert s["completed_streams"] == 0
    rec = [r for r in fake.records() if r["path"] == "/api/chat"][-1]
    assert rec["outcome"] == "aborted" and rec["tokens_sent"] < 50
    # the fake noticed the close within 100 ms although its next token was up to 200 ms away
    assert rec["ended_at"] - t_close < 0.1, rec["ended_at"] - t_close


def test_aborted_non_stream_request(fake):
    with socket.create_connection((HOST, fake.port), timeout=TIMEOUT) as sock:
        sock.sendall(http_bytes("/api/chat", chat(marker(first_token_ms=5000), stream=False)))
        time.sleep(0.2)
    s = fake.wait_stats(lambda s: s["aborted_requests"] == 1)
    assert s["aborted_requests"] == 1 and s["active_requests"] == 0
    assert s["aborted_streams"] == 0


def test_bad_overrides_are_400(fake):
    status, _, obj = fake.post_json("/api/chat", chat(marker(delay_msec=5)))
    assert status == 400 and "delay_msec" in obj["error"]
    status, _, obj = fake.post_json("/api/chat", chat("[[fake:{not json}]]"))
    assert status == 400 and "marker" in obj["error"]
    status, _, obj = fake.post_json("/v1/chat/completions", chat("x"),
                                    headers={"X-Fake-LLM": '{"tokens": -1}'})
    assert status == 400 and "tokens" in obj["error"]["message"]
    status, _, _ = fake.request("POST", "/api/chat", None)
    assert status == 400


# --- embeddings --------------------------------------------------------------------------------


def norm(v):
    return math.sqrt(sum(x * x for x in v))


def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / (norm(a) * norm(b))


def test_ollama_embed_deterministic_unit_vectors(fake, fake_factory):
    texts = ["The cat sat on the mat", "the cat sat on a mat", "Quarterly tax filing deadline"]
    _, _, a = fake.post_json("/api/embed", {"model": "m", "input": texts})
    _, _, b = fake.post_json("/api/embed", {"model": "m", "input": texts})
    assert a["model"] == "m" and len(a["embeddings"]) == 3
    assert a["embeddings"] == b["embeddings"]
    for v in a["embeddings"]:
        assert len(v) == 384 and abs(norm(v) - 1.0) < 1e-9
    e = a["embeddings"]
    assert cos(e[0], e[1]) > 0.6 > cos(e[0], e[2])
    _, _, single = fake.post_json("/api/embed", {"model": "m", "input": texts[0]})
    assert single["embeddings"] == [e[0]]
    # same vector from another process: stable hashing, not Python's salted hash()
    other = fake_factory()
    _, _, c = other.post_json("/api/embed", {"model": "m", "input": texts})
    assert c["embeddings"] == e
    # a [[fake:...]] marker inside an input is stripped, not embedded
    _, _, d = fake.post_json("/api/embed", {"input": texts[0] + " " + marker(delay_ms=1)})
    assert d["embeddings"] == [e[0]]


def test_embed_dim_option_and_legacy_endpoint(fake_factory):
    f = fake_factory("--embed-dim", "64")
    _, _, a = f.post_json("/api/embed", {"model": "m", "input": "hello world"})
    assert len(a["embeddings"][0]) == 64
    _, _, legacy = f.post_json("/api/embeddings", {"model": "m", "prompt": "hello world"})
    assert legacy["embedding"] == a["embeddings"][0]
    _, _, h = f.post_json("/api/embed", {"input": ""}, headers={"X-Fake-LLM": '{"embed_dim":8}'})
    assert h["embeddings"][0] == [1.0] + [0.0] * 7  # empty text: a fixed unit vector


def test_openai_embeddings(fake):
    status, _, obj = fake.post_json("/v1/embeddings", {"model": "m", "input": ["a b", "c"]})
    assert status == 200 and obj["object"] == "list"
    assert [d["index"] for d in obj["data"]] == [0, 1]
    assert all(len(d["embedding"]) == 384 and abs(norm(d["embedding"]) - 1) < 1e-9
               for d in obj["data"])
    _, _, one = fake.post_json("/v1/embeddings", {"model": "m", "input": "a b",
                                                  "dimensions": 32})
    assert len(one["data"][0]["embedding"]) == 32
    status, _, _ = fake.post_json("/v1/embeddings", {"model": "m", "input": {"x": 1}})
    assert status == 400


# --- API key --------------------------------------------------------------------------------------


def test_api_key_enforced(fake_factory):
    f = fake_factory("--api-key", "sekrit")
    status, headers, body = f.request("GET", "/v1/models")
    assert status == 401 and "error" in json.loads(body)
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert f.request("GET", "/v1/models", headers={"Authorization": "Bearer nope"})[0] == 401
    assert f.request("POST", "/v1/chat/completions", chat("hi"))[0] == 401
    auth = {"Authorization": "Bearer sekrit"}
    assert f.request("GET", "/v1/models", headers=auth)[0] == 200
    status, _, obj = f.post_json("/v1/chat/completions", chat("hi", stream=False),
                                 headers=auth)
    assert status == 200 and obj["choices"][0]["message"]["content"] == DEFAULT_REPLY
    res = raw_post(f, "/api/chat", chat("hi"), headers=auth)
    assert res.status == 200 and ollama_text(ndjson(res.body)) == DEFAULT_REPLY
    assert f.request("GET", "/api/tags")[0] == 401
    # introspection needs no key
    assert f.stats()["unauthorized"] == 4


# --- HTTP details, introspection, concurrency, shutdown ---------------------------------------------


def test_keep_alive_serves_many_requests_on_one_connection(fake):
    with socket.create_connection((HOST, fake.port), timeout=TIMEOUT) as sock:
        for body, path in ((chat("a", stream=False), "/api/chat"), (chat("b"), "/api/chat"),
                           (chat("c"), "/v1/chat/completions"), (None, "/api/tags")):
            method = "GET" if body is None else "POST"
            sock.sendall(http_bytes(path, body, method=method))
            res = raw_read(sock, RawResult())
            assert res.status == 200 and res.complete and not res.eof, path
            assert res.headers["connection"] == "keep-alive"
    assert fake.stats()["total_connections"] <= 2  # ours + the stats request


def test_connection_close_and_expect_continue(fake):
    with socket.create_connection((HOST, fake.port), timeout=TIMEOUT) as sock:
        body = json.dumps(chat("x", stream=False)).encode()
        sock.sendall((f"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                      f"Expect: 100-continue\r\nConnection: close\r\n\r\n").encode())
        sock.settimeout(TIMEOUT)
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        res = raw_read(sock, RawResult())
        assert res.status == 200 and res.headers["connection"] == "close"
        assert json.loads(res.body)["message"]["content"] == DEFAULT_REPLY
        sock.settimeout(2)
        assert sock.recv(10) == b""


def test_chunked_request_body(fake):
    body = json.dumps(chat("x", stream=False)).encode()
    half = len(body) // 2
    with socket.create_connection((HOST, fake.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + b"%x\r\n" % half + body[:half] + b"\r\n"
                     + b"%x\r\n" % (len(body) - half) + body[half:] + b"\r\n0\r\n\r\n")
        res = raw_read(sock, RawResult())
    assert res.status == 200 and json.loads(res.body)["done"] is True


def test_requests_recorded_and_reset(fake):
    hdr = {"X-Fake-LLM": '{"delay_ms": 1}', "User-Agent": "pytest"}
    fake.post_json("/api/chat", chat("remember the blue door", stream=False), headers=hdr)
    raw_post(fake, "/v1/chat/completions", chat("second"))
    recs = fake.records()
    assert [r["path"] for r in recs] == ["/api/chat", "/v1/chat/completions"]
    first = recs[0]
    assert first["method"] == "POST" and first["status"] == 200
    assert first["body"]["messages"][-1]["content"] == "remember the blue door"
    assert first["headers"]["x-fake-llm"] == '{"delay_ms": 1}'
    assert first["headers"]["user-agent"] == "pytest"
    assert first["stream"] is False and first["outcome"] == "completed"
    assert recs[1]["stream"] is True and recs[1]["tokens_sent"] == 19
    assert recs[1]["ended_at"] >= recs[1]["time"] > 0
    only = fake.get_json(f"/_fake/requests?since={first['id']}")
    assert [r["id"] for r in only] == [recs[1]["id"]]
    assert fake.get_json("/_fake/requests?path=/api/chat")[0]["id"] == first["id"]
    s = fake.stats()
    assert s["requests"] == 2 and s["completed_streams"] == 1
    fake.reset()
    assert fake.records() == []
    s = fake.stats()
    assert s["requests"] == 0 and s["completed_streams"] == 0 and s["tokens_sent"] == 0


def test_runtime_config(fake):
    status, _, cfg = fake.post_json("/_fake/config", {"reply": "Configured.", "delay_ms": 2})
    assert status == 200 and cfg["reply"] == "Configured." and cfg["delay_ms"] == 2
    _, _, obj = fake.post_json("/api/chat", chat("x", stream=False))
    assert obj["message"]["content"] == "Configured."
    assert fake.post_json("/_fake/config", {"nope": 1})[0] == 400
    fake.reset()  # back to the command-line defaults
    assert fake.get_json("/_fake/config")["reply"] == DEFAULT_REPLY


def test_1000_concurrent_streams(fake_factory):
    """1,000 streams of 20 tokens at 50 ms, all open at once. Asserts completeness only:
    timing figures depend on the machine (docs/FAKE_LLM.md has measured ones). The first
    token comes after 1 s so every stream is still open when the last request is parsed,
    even on a loaded machine."""
    f = fake_factory()
    out = subprocess.run([PY, str(FAKE), "bench", "--port", str(f.port), "--streams", "1000",
                          "--tokens", "20", "--delay-ms", "50", "--first-token-ms", "1000",
                          "--timeout", "60"],
                         capture_output=True, text=True, timeout=120)
    report = json.loads(out.stdout)
    assert out.returncode == 0, (report, out.stderr)
    assert report["ok_streams"] == 1000 and report["tokens_received"] == 20000
    assert report["server_max_active_streams"] == 1000
    assert report["server_completed_streams"] == 1000
    s = f.stats()
    assert s["active_streams"] == 0 and s["aborted_streams"] == 0


def test_sigterm_exits_cleanly_mid_stream(fake_factory):
    f = fake_factory()
    socks = []
    try:
        for body in (chat(marker(tokens=100, delay_ms=100)), chat(marker(hang=True))):
            s = socket.create_connection((HOST, f.port), timeout=TIMEOUT)
            s.sendall(http_bytes("/api/chat", body))
            socks.append(s)
        f.wait_stats(lambda s: s["active_streams"] == 2)
        t0 = time.monotonic()
        assert f.stop() == 0
        assert time.monotonic() - t0 < 5.0
    finally:
        for s in socks:
            s.close()


def test_bad_command_line_fails_fast(tmp_path):
    out = subprocess.run([PY, str(FAKE), "--port", "0", "--fail-status", "42"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 2 and "fail_status" in out.stderr
