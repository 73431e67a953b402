#!/usr/bin/env python3
"""fake_llm.py -- a fake LLM backend for persona-mcp tests, benchmarks and demos.

Speaks the two streaming dialects persona-mcp talks to, on 127.0.0.1 only:

  Ollama             POST /api/chat, POST /api/generate (NDJSON streams), GET /api/tags,
                     POST /api/embed, POST /api/embeddings, GET /api/version, GET /
  OpenAI-compatible  POST /v1/chat/completions (SSE streams), GET /v1/models,
                     POST /v1/embeddings
  Introspection      GET /_fake/requests, GET /_fake/stats, GET|POST /_fake/config,
                     POST /_fake/reset

Behaviour (reply text, token count, pacing, faults) comes from command-line defaults,
overridable at run time (POST /_fake/config) and per request: a JSON object in the
X-Fake-LLM header, or a marker "[[fake:{...}]]" in the last user message (the prompt for
/api/generate). See docs/FAKE_LLM.md.

Python 3 standard library only. The HTTP/1.1 server is written on asyncio.start_server:
keep-alive, chunked responses for streams, two small tasks per connection (the request
handler and a reader that notices a client's close at once). The tokens of streams
without injected faults are written from one shared timer per millisecond (TokenPacer),
which is what lets one process keep 1,000 streams of 20 tokens/s on schedule.

    python3 tests/fake_llm.py --port 0 --port-file /tmp/fake.port --verbose
    python3 tests/fake_llm.py bench --port PORT --streams 1000 --tokens 20 --delay-ms 50
"""

import argparse
import asyncio
import collections
import email.utils
import gc
import hashlib
import hmac
import http
import json
import math
import os
import re
import signal
import socket
import sys
import time
import urllib.parse

HOST = "127.0.0.1"
DEFAULT_PORT = 11435
DEFAULT_MODEL = "fake:latest"
DEFAULT_REPLY = ("Hello! I am a fake language model, and this reply is streamed to you "
                 "one token at a time.")
MARKER_PREFIX = "[[fake:"
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
HEAD_TIMEOUT_S = 30.0  # from the first byte of a request to the end of its body
HANG_LIMIT_S = 3600.0  # a hung request is dropped after this even if the client waits
LAG_SAMPLES = 100_000

# Per-request behaviour knobs: name -> validator. The same names are the command-line
# options (with '-' for '_'), the keys of X-Fake-LLM / [[fake:...]] / POST /_fake/config.


def _v_bool(v):
    if isinstance(v, bool):
        return v
    raise ValueError("expected true or false")


def _v_str(v):
    if isinstance(v, str):
        return v
    raise ValueError("expected a string")


def _v_int(lo, hi=None, nullable=True):
    def check(v):
        if v is None and nullable:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError("expected an integer" + (" or null" if nullable else ""))
        if v < lo or (hi is not None and v > hi):
            raise ValueError(f"expected {lo}..{hi if hi is not None else 'inf'}")
        return v
    return check


def _v_ms(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError("expected a number of milliseconds")
    if v < 0 or v > 3_600_000:
        raise ValueError("expected 0..3600000")
    return float(v)


def _v_malformed(v):
    if v is None or isinstance(v, bool):
        return v
    return _v_int(0)(v)


def _v_fail_status(v):
    if v is None or v == 0:
        return None
    return _v_int(100, 599)(v)


VALIDATORS = {
    "reply": _v_str,
    "echo": _v_bool,
    "tokens": _v_int(0, 1_000_000),
    "delay_ms": _v_ms,
    "first_token_ms": _v_ms,
    "max_tokens": _v_int(0),
    "fail_status": _v_fail_status,
    "malformed": _v_malformed,
    "disconnect_after": _v_int(0),
    "error_after": _v_int(0),
    "split_lines": _v_bool,
    "split_pause_ms": _v_ms,
    "hang": _v_bool,
    "stamp": _v_bool,
    "embed_dim": _v_int(1, 65536, nullable=False),
}


def validate_overrides(obj, where):
    """Check an override object; returns a clean dict or raises ValueError with context."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object")
    out = {}
    for key, value in obj.items():
        name = key.replace("-", "_") if isinstance(key, str) else key
        if name not in VALIDATORS:
            raise ValueError(f"{where}: unknown option {key!r} (known: {', '.join(VALIDATORS)})")
        try:
            out[name] = VALIDATORS[name](value)
        except ValueError as e:
            raise ValueError(f"{where}: {key}: {e}") from None
    return out


def find_markers(text):
    """Return ([(start, end, obj)], error) for every [[fake:{json}]] in text."""
    found = []
    if not isinstance(text, str) or MARKER_PREFIX not in text:
        return found
    dec = json.JSONDecoder()
    pos = 0
    while True:
        i = text.find(MARKER_PREFIX, pos)
        if i < 0:
            return found
        j = i + len(MARKER_PREFIX)
        while j < len(text) and text[j].isspace():
            j += 1
        try:
            obj, k = dec.raw_decode(text, j)
        except json.JSONDecodeError as e:
            raise ValueError(f"[[fake:...]] marker at offset {i}: bad JSON: {e.msg}") from None
        while k < len(text) and text[k].isspace():
            k += 1
        if not text.startswith("]]", k):
            raise ValueError(f"[[fake:...]] marker at offset {i}: missing closing ]]")
        found.append((i, k + 2, obj))
        pos = k + 2


def strip_markers(text, markers):
    if not markers:
        return text
    parts, pos = [], 0
    for start, end, _ in markers:
        parts.append(text[pos:start])
        pos = end
    parts.append(text[pos:])
    return re.sub(r"[ \t]{2,}", " ", "".join(parts)).strip()


_TOKEN_RE = re.compile(r"\s*\S+")


def split_tokens(text):
    """Split on spaces; every token but the first keeps its leading whitespace, so the
    concatenation of the tokens is the text."""
    toks = _TOKEN_RE.findall(text)
    if not toks:
        return [text] if text else []
    tail = text[sum(len(t) for t in toks):]
    if tail:
        toks[-1] += tail
    return toks


def make_tokens(text, count):
    base = split_tokens(text)
    if count is None:
        return base
    if not base:
        base = split_tokens(DEFAULT_REPLY)
    out = []
    for i in range(count):
        tok = base[i % len(base)]
        if i > 0 and not tok[:1].isspace():
            tok = " " + tok
        out.append(tok)
    return out


def embed_text(text, dim):
    """Deterministic unit vector: hashed bag of lower-cased words (two signed buckets per
    word, blake2b so it is stable across processes and machines), L2-normalised."""
    vec = [0.0] * dim
    for word in re.findall(r"\w+", text.lower()):
        h = hashlib.blake2b(word.encode("utf-8"), digest_size=16).digest()
        for k in (0, 8):
            idx = int.from_bytes(h[k:k + 4], "little") % dim
            vec[idx] += 1.0 if h[k + 4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec))
    if norm == 0.0:
        vec[0] = 1.0
        return vec
    return [v / norm for v in vec]


_iso_cache = [-1, ""]
_date_cache = [-1, ""]


def now_iso():
    """RFC 3339 UTC with microseconds, as Ollama writes created_at (cached per second:
    this runs once per token)."""
    t = time.time()
    sec = int(t)
    if sec != _iso_cache[0]:
        _iso_cache[0] = sec
        _iso_cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return f"{_iso_cache[1]}.{int((t - sec) * 1e6):06d}Z"


def http_date():
    sec = int(time.time())
    if sec != _date_cache[0]:
        _date_cache[0] = sec
        _date_cache[1] = email.utils.formatdate(sec, usegmt=True)
    return _date_cache[1]


_encode_str = json.encoder.encode_basestring  # JSON string literal, non-ASCII kept


def jbytes(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def percentiles(values, ps):
    if not values:
        return {f"p{p}": None for p in ps} | {"max": None, "n": 0}
    s = sorted(values)
    out = {}
    for p in ps:
        idx = min(len(s) - 1, max(0, math.ceil(p / 100.0 * len(s)) - 1))
        out[f"p{p}"] = round(s[idx] * 1000.0, 3)
    out["max"] = round(s[-1] * 1000.0, 3)
    out["n"] = len(s)
    return out


def word_count(text):
    return len(text.split()) if isinstance(text, str) else 0


# --- HTTP plumbing ----------------------------------------------------------------------


class ClientGone(Exception):
    """The client closed its side (EOF, reset or a failed write)."""


class BadRequest(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Conn:
    """One client connection. A pump task reads everything the client sends into our own
    buffer, so EOF is noticed at once even while a stream is sleeping between tokens.
    Output is queued and flushed before every pause (and at the end of each request), so
    what is produced at one instant leaves in one send(): one syscall per token."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.transport = writer.transport
        self.loop = asyncio.get_running_loop()
        self.buf = bytearray()
        self.out = []
        self.eof = False
        self.eof_fut = self.loop.create_future()
        self.data_waiter = None  # future woken by the pump when bytes (or EOF) arrive
        self.space_waiter = None  # future woken when the request parser consumes bytes
        self.sleeper = None  # future a pause() is waiting on
        self.task = None
        self.keep_alive = True  # of the request being answered
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    async def pump(self):
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                self.buf += data
                _wake(self.data_waiter)
                while len(self.buf) > MAX_BODY_BYTES + MAX_HEAD_BYTES and not self.eof:
                    self.space_waiter = self.loop.create_future()
                    await self.space_waiter
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.mark_eof()

    def mark_eof(self):
        self.eof = True
        if not self.eof_fut.done():
            self.eof_fut.set_result(None)
        _wake(self.sleeper)
        _wake(self.data_waiter)

    def _take(self, n):
        out = bytes(self.buf[:n])
        del self.buf[:n]
        _wake(self.space_waiter)
        return out

    async def _wait_bytes(self, timeout):
        """Wait (without a task or wait_for) until the pump delivers bytes or EOF."""
        fut = self.loop.create_future()
        self.data_waiter = fut
        handle = self.loop.call_later(max(timeout, 0.0), _wake, fut)
        try:
            await fut
        finally:
            handle.cancel()
            self.data_waiter = None

    async def wait_data(self, timeout):
        """Wait until at least one byte is buffered; False on EOF or timeout."""
        deadline = self.loop.time() + timeout
        while not self.buf:
            if self.eof or self.loop.time() >= deadline:
                return False
            await self._wait_bytes(deadline - self.loop.time())
        return True

    async def read_until(self, sep, limit, deadline):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                return self._take(i + len(sep))
            if len(self.buf) > limit:
                raise BadRequest(431 if sep == b"\r\n\r\n" else 400, "request head too large")
            await self._wait_more(deadline)

    async def read_exact(self, n, deadline):
        while len(self.buf) < n:
            await self._wait_more(deadline)
        return self._take(n)

    async def _wait_more(self, deadline):
        if self.eof:
            raise ClientGone()
        remaining = deadline - self.loop.time()
        if remaining <= 0:
            raise BadRequest(408, "request timed out")
        have = len(self.buf)
        await self._wait_bytes(remaining)
        if len(self.buf) == have and not self.eof:
            raise BadRequest(408, "request timed out")

    def write(self, data):
        """Queue output; flush() sends it."""
        if self.eof:
            raise ClientGone()
        self.out.append(data)

    async def flush(self):
        """Send what is queued; wait for the kernel only when the client reads slower than
        we write. A write to a dead socket makes the transport close, which the pump
        reports as EOF, so the next flush or pause raises ClientGone."""
        if not self.out:
            return
        data = self.out[0] if len(self.out) == 1 else b"".join(self.out)
        self.out.clear()
        if self.eof or self.transport.is_closing():
            raise ClientGone()
        try:
            self.transport.write(data)
            if self.transport.get_write_buffer_size() > 65536:
                await self.writer.drain()
        except (ConnectionError, OSError, RuntimeError):
            raise ClientGone() from None

    async def pause(self, seconds):
        """Flush, then sleep; wake (and raise ClientGone) the moment the client goes away."""
        await self.flush()
        if self.eof:
            raise ClientGone()
        if seconds > 0:
            fut = self.loop.create_future()
            self.sleeper = fut
            handle = self.loop.call_later(seconds, _wake, fut)
            try:
                await fut
            finally:
                handle.cancel()
                self.sleeper = None
            if self.eof:
                raise ClientGone()

    async def close(self):
        """Flush what is queued, then close: the kernel still delivers it before the FIN."""
        try:
            await self.flush()
        except ClientGone:
            pass
        self.transport.close()

    def abort(self):
        self.out.clear()
        self.transport.abort()


def _wake(fut):
    if fut is not None and not fut.done():
        fut.set_result(None)


class Request:
    __slots__ = ("method", "target", "path", "query", "version", "headers", "body",
                 "keep_alive")


async def read_request(conn, idle_timeout):
    """Parse one HTTP/1.x request; None when the client closed or idled out between
    requests."""
    if not await conn.wait_data(idle_timeout):
        return None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HEAD_TIMEOUT_S
    while conn.buf[:2] == b"\r\n":  # tolerate stray CRLFs between requests
        conn._take(2)
        if not conn.buf and not await conn.wait_data(idle_timeout):
            return None
    head = await conn.read_until(b"\r\n\r\n", MAX_HEAD_BYTES, deadline)
    try:
        text = head.decode("iso-8859-1")
    except UnicodeDecodeError:
        raise BadRequest(400, "undecodable request head") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, f"bad request line {lines[0][:100]!r}")
    req = Request()
    req.method, req.target, req.version = parts
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, f"bad header line {line[:100]!r}")
        name = name.lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    req.headers = headers
    split = urllib.parse.urlsplit(req.target)
    req.path = split.path or "/"
    req.query = {k: v[-1] for k, v in urllib.parse.parse_qs(split.query).items()}
    conn_tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    if req.version == "HTTP/1.0":
        req.keep_alive = "keep-alive" in conn_tokens
    else:
        req.keep_alive = "close" not in conn_tokens

    te = headers.get("transfer-encoding", "").lower()
    length = headers.get("content-length")
    has_body = "chunked" in te or (length not in (None, "0"))
    if has_body and headers.get("expect", "").lower() == "100-continue":
        conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await conn.flush()
    if "chunked" in te:
        body = bytearray()
        while True:
            size_line = await conn.read_until(b"\r\n", 1024, deadline)
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                raise BadRequest(400, "bad chunk size") from None
            if size == 0:
                while (await conn.read_until(b"\r\n", MAX_HEAD_BYTES, deadline)) != b"\r\n":
                    pass  # trailers
                break
            if len(body) + size > MAX_BODY_BYTES:
                raise BadRequest(413, "request body too large")
            body += await conn.read_exact(size, deadline)
            if await conn.read_exact(2, deadline) != b"\r\n":
                raise BadRequest(400, "bad chunk terminator")
        req.body = bytes(body)
    elif length is not None:
        if not length.isdigit():
            raise BadRequest(400, "bad Content-Length")
        n = int(length)
        if n > MAX_BODY_BYTES:
            raise BadRequest(413, "request body too large")
        req.body = await conn.read_exact(n, deadline) if n else b""
    else:
        req.body = b""
    return req


def reason(status):
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Status"


def response_head(status, ctype, length=None, keep_alive=True, extra=()):
    lines = [f"HTTP/1.1 {status} {reason(status)}",
             f"Date: {http_date()}",
             "Server: fake-llm"]
    if ctype:
        lines.append(f"Content-Type: {ctype}")
    if length is None:
        lines.append("Transfer-Encoding: chunked")
    else:
        lines.append(f"Content-Length: {length}")
    lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    lines.extend(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# --- wire formats -------------------------------------------------------------------------


class OllamaChat:
    content_type = "application/x-ndjson"

    def __init__(self, model, seq):
        self.model = model
        # token lines are assembled from pre-encoded pieces: this runs 20,000 times a second
        # in the 1,000-stream benchmark
        self._pre = ('{"model":' + _encode_str(model) + ',"created_at":"').encode("utf-8")
        self._mid = b'","message":{"role":"assistant","content":'
        self._post = b'},"done":false}\n'

    def start(self):
        return None

    def token(self, tok):
        return b"".join((self._pre, now_iso().encode(), self._mid,
                         _encode_str(tok).encode("utf-8"), self._post))

    def _stats(self, finish, n, prompt_tokens, dur_ns):
        return {"done_reason": finish, "done": True, "total_duration": dur_ns,
                "load_duration": 0, "prompt_eval_count": prompt_tokens,
                "prompt_eval_duration": 0, "eval_count": n, "eval_duration": dur_ns}

    def final(self, finish, n, prompt_tokens, dur_ns, usage):
        obj = {"model": self.model, "created_at": now_iso(),
               "message": {"role": "assistant", "content": ""}}
        obj.update(self._stats(finish, n, prompt_tokens, dur_ns))
        return [jbytes(obj) + b"\n"]

    def whole(self, text, finish, n, prompt_tokens, dur_ns):
        obj = {"model": self.model, "created_at": now_iso(),
               "message": {"role": "assistant", "content": text}}
        obj.update(self._stats(finish, n, prompt_tokens, dur_ns))
        return obj

    def malformed(self):
        return (b'{"model":"' + self.model.encode() + b'","created_at":"' + now_iso().encode()
                + b'","message":{"role":"assistant","content":"this line is brok\n')

    def error(self, msg):
        return [jbytes({"error": msg}) + b"\n"]

    @staticmethod
    def error_body(status, msg):
        return {"error": msg}


class OllamaGenerate(OllamaChat):
    def __init__(self, model, seq):
        super().__init__(model, seq)
        self._mid = b'","response":'
        self._post = b',"done":false}\n'

    def final(self, finish, n, prompt_tokens, dur_ns, usage):
        obj = {"model": self.model, "created_at": now_iso(), "response": ""}
        obj.update(self._stats(finish, n, prompt_tokens, dur_ns))
        return [jbytes(obj) + b"\n"]

    def whole(self, text, finish, n, prompt_tokens, dur_ns):
        obj = {"model": self.model, "created_at": now_iso(), "response": text}
        obj.update(self._stats(finish, n, prompt_tokens, dur_ns))
        return obj

    def malformed(self):
        return (b'{"model":"' + self.model.encode() + b'","created_at":"' + now_iso().encode()
                + b'","response":"this line is brok\n')


class OpenAIChat:
    content_type = "text/event-stream"

    def __init__(self, model, seq):
        self.model = model
        self.id = f"chatcmpl-fake-{seq}"
        self.created = int(time.time())
        self._pre = ('data: {"id":"' + self.id + '","object":"chat.completion.chunk",'
                     f'"created":{self.created},"model":' + _encode_str(model)
                     + ',"system_fingerprint":"fake","choices":[{"index":0,'
                     '"delta":{"content":').encode("utf-8")
        self._post = b'},"logprobs":null,"finish_reason":null}]}\n\n'

    def _chunk(self, delta, finish):
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "system_fingerprint": "fake",
                "choices": [{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": finish}]}

    @staticmethod
    def sse(obj):
        return b"data: " + jbytes(obj) + b"\n\n"

    def start(self):
        return self.sse(self._chunk({"role": "assistant", "content": ""}, None))

    def token(self, tok):
        return b"".join((self._pre, _encode_str(tok).encode("utf-8"), self._post))

    def final(self, finish, n, prompt_tokens, dur_ns, usage):
        out = [self.sse(self._chunk({}, finish))]
        if usage:
            out.append(self.sse({"id": self.id, "object": "chat.completion.chunk",
                                 "created": self.created, "model": self.model, "choices": [],
                                 "usage": {"prompt_tokens": prompt_tokens,
                                           "completion_tokens": n,
                                           "total_tokens": prompt_tokens + n}}))
        out.append(b"data: [DONE]\n\n")
        return out

    def whole(self, text, finish, n, prompt_tokens, dur_ns):
        return {"id": self.id, "object": "chat.completion", "created": self.created,
                "model": self.model, "system_fingerprint": "fake",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "logprobs": None, "finish_reason": finish}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n,
                          "total_tokens": prompt_tokens + n}}

    def malformed(self):
        return (b'data: {"id":"' + self.id.encode()
                + b'","object":"chat.completion.chunk","choices":[{"index":0,'
                + b'"delta":{"content":"this line is brok\n\n')

    def error(self, msg):
        return [self.sse({"error": {"message": msg, "type": "server_error", "code": 500}})]

    @staticmethod
    def error_body(status, msg):
        kind = ("invalid_request_error" if 400 <= status < 500 else "server_error")
        return {"error": {"message": msg, "type": kind, "param": None, "code": status}}


# --- the server ---------------------------------------------------------------------------

HEADER_SUBSET = ("content-type", "content-length", "transfer-encoding", "accept",
                 "authorization", "user-agent", "connection", "expect", "x-fake-llm")


class TokenPacer:
    """One timer per millisecond for all plain streams, instead of a timer, a future and
    a task wake-up per token: the hot path of 1,000 concurrent streams. Items are due at
    `when` rounded up to the next millisecond (never early, at most 1 ms late)."""

    def __init__(self, loop):
        self.loop = loop
        self.buckets = {}

    def schedule(self, when, item):
        key = math.ceil(when * 1000.0)
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = []
            self.loop.call_at(key / 1000.0, self._fire, key)
        bucket.append(item)

    def _fire(self, key):
        for item in self.buckets.pop(key, ()):
            item.tick()


class PlainStream:
    """The tokens of a stream without faults, written straight from the pacer's timer
    callbacks. The stream's coroutine waits on `done`, which the last token, a write
    error or the client's EOF (through Conn.sleeper) completes."""

    def __init__(self, app, conn, rec, fmt, tokens, start, gap, stamp):
        self.app, self.conn, self.rec, self.fmt = app, conn, rec, fmt
        self.tokens, self.start, self.gap, self.stamp = tokens, start, gap, stamp
        self.i = 0
        self.failed = False
        self.done = conn.loop.create_future()

    async def run(self):
        conn = self.conn
        conn.sleeper = self.done  # Conn.mark_eof wakes it
        try:
            self.app.pacer.schedule(self.start, self)
            await self.done
        finally:
            conn.sleeper = None
        if self.failed or conn.eof:
            raise ClientGone()

    def tick(self):
        if self.done.done():
            return
        conn, app = self.conn, self.app
        transport = conn.transport
        if conn.eof or transport.is_closing():
            self.failed = True
            self.done.set_result(None)
            return
        now = conn.loop.time()
        if transport.get_write_buffer_size() > 65536:  # the client reads slowly: wait
            app.pacer.schedule(now + 0.01, self)
            return
        i = self.i
        app.lag.append(max(0.0, now - (self.start + i * self.gap)))
        tok = f"{' ' if i else ''}{time.time():.6f}" if self.stamp else self.tokens[i]
        payload = self.fmt.token(tok)
        try:
            transport.write(b"%x\r\n%s\r\n" % (len(payload), payload))
        except (ConnectionError, OSError, RuntimeError):
            self.failed = True
            self.done.set_result(None)
            return
        self.rec["tokens_sent"] += 1
        app.stats["tokens_sent"] += 1
        self.i = i = i + 1
        if i == len(self.tokens):
            self.done.set_result(None)
        else:
            app.pacer.schedule(self.start + i * self.gap, self)


API_ROUTES = {
    ("POST", "/api/chat"): ("gen", OllamaChat),
    ("POST", "/api/generate"): ("gen", OllamaGenerate),
    ("POST", "/v1/chat/completions"): ("gen", OpenAIChat),
    ("POST", "/api/embed"): ("embed", "ollama"),
    ("POST", "/api/embeddings"): ("embed", "ollama-legacy"),
    ("POST", "/v1/embeddings"): ("embed", "openai"),
    ("GET", "/api/tags"): ("tags", None),
    ("GET", "/api/version"): ("version", None),
    ("GET", "/v1/models"): ("models", None),
    ("GET", "/"): ("root", None),
    ("HEAD", "/"): ("root", None),
}


def new_stats():
    return {"requests": 0, "active_streams": 0, "max_active_streams": 0,
            "completed_streams": 0, "aborted_streams": 0, "disconnected_streams": 0,
            "errored_streams": 0, "active_requests": 0, "aborted_requests": 0,
            "hung_requests": 0, "unauthorized": 0, "injected_failures": 0,
            "tokens_sent": 0, "open_connections": 0, "total_connections": 0}


class FakeLLM:
    def __init__(self, args):
        self.args = args
        self.base_config = {
            "reply": args.reply, "echo": args.echo, "tokens": args.tokens,
            "delay_ms": args.delay_ms, "first_token_ms": args.first_token_ms,
            "max_tokens": args.max_tokens, "fail_status": args.fail_status,
            "malformed": args.malformed, "disconnect_after": args.disconnect_after,
            "error_after": args.error_after, "split_lines": args.split_lines,
            "split_pause_ms": args.split_pause_ms, "hang": args.hang,
            "stamp": args.stamp, "embed_dim": args.embed_dim,
        }
        self.base_config = validate_overrides(self.base_config, "command line")
        self.config = dict(self.base_config)
        self.records = collections.deque(maxlen=args.max_records)
        self.next_id = 0
        self.seq = 0
        self.stats = new_stats()
        self.lag = collections.deque(maxlen=LAG_SAMPLES)
        self.conns = set()
        self.closing = False
        self.started = time.time()
        self.pacer = None  # TokenPacer, made in the running loop

    def log(self, msg):
        if self.args.verbose:
            print(f"fake_llm {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)

    # -- connections --

    async def handle_conn(self, reader, writer):
        if self.pacer is None:
            self.pacer = TokenPacer(asyncio.get_running_loop())
        conn = Conn(reader, writer)
        conn.task = asyncio.current_task()
        self.conns.add(conn)
        self.stats["open_connections"] += 1
        self.stats["total_connections"] += 1
        pump = asyncio.create_task(conn.pump())
        try:
            while not self.closing:
                try:
                    req = await read_request(conn, self.args.idle_timeout)
                except BadRequest as e:
                    await self.send_json(conn, e.status, {"error": str(e)}, keep_alive=False)
                    break
                if req is None:
                    break
                conn.keep_alive = req.keep_alive
                keep = await self.dispatch(conn, req)
                await conn.flush()
                if not keep or not req.keep_alive:
                    break
        except (ClientGone, ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception as e:  # a bug here must not kill the server
            self.log(f"internal error: {e!r}")
        finally:
            pump.cancel()
            self.conns.discard(conn)
            self.stats["open_connections"] -= 1
            try:
                await conn.close()
            except (asyncio.CancelledError, Exception):
                writer.transport.abort()

    async def send(self, conn, status, body, ctype, keep_alive=None, extra=()):
        if keep_alive is None:
            keep_alive = conn.keep_alive
        conn.write(response_head(status, ctype, len(body), keep_alive, extra) + body)

    async def send_json(self, conn, status, obj, keep_alive=None, extra=()):
        try:
            await self.send(conn, status, jbytes(obj), "application/json", keep_alive, extra)
        except ClientGone:
            pass

    # -- routing --

    async def dispatch(self, conn, req):
        path, method = req.path.rstrip("/") or "/", req.method
        if path.startswith("/_fake"):
            return await self.introspect(conn, req, path)

        route = API_ROUTES.get((method, path))
        openai = path.startswith("/v1")
        err_fmt = OpenAIChat.error_body if openai else OllamaChat.error_body
        self.stats["requests"] += 1
        body, body_err = None, None
        if req.body:
            try:
                body = json.loads(req.body)
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                body_err = f"invalid JSON body: {e}"
        rec = self.record(req, body)
        t_start = time.monotonic()
        keep = True
        try:
            if route is None:
                known = any(p == path for (_, p) in API_ROUTES)
                status = 405 if known else 404
                rec["status"] = status
                await self.send_json(conn, status, err_fmt(status, f"{method} {path}: "
                                     + ("method not allowed" if known else "not found")))
                return True

            # per-request overrides: header, then marker (the marker wins)
            if method == "POST" and body is None and body_err is None:
                body_err = "empty request body"
            if body is not None and not isinstance(body, dict):
                body_err = "request body must be a JSON object"
            try:
                cfg, user_text = self.effective_config(req, body if not body_err else None,
                                                       route)
            except ValueError as e:
                rec["status"] = 400
                rec["outcome"] = "bad_override"
                await self.send_json(conn, 400, err_fmt(400, str(e)))
                return True
            rec["config"] = cfg

            generating = route[0] == "gen"
            stream = False
            if generating and body is not None and isinstance(body, dict):
                stream = body.get("stream", route[1] is not OpenAIChat)
                stream = bool(stream)
            rec["stream"] = stream

            if cfg["hang"]:
                return await self.hang(conn, rec, stream)

            if self.args.api_key is not None:
                got = req.headers.get("authorization", "")
                if not hmac.compare_digest(got.encode(), f"Bearer {self.args.api_key}".encode()):
                    self.stats["unauthorized"] += 1
                    rec["status"] = 401
                    rec["outcome"] = "unauthorized"
                    await self.send_json(conn, 401, err_fmt(401, "invalid or missing API key"),
                                         extra=('WWW-Authenticate: Bearer realm="fake-llm"',))
                    return True
            if body_err:
                rec["status"] = 400
                rec["outcome"] = "bad_request"
                await self.send_json(conn, 400, err_fmt(400, body_err))
                return True
            if cfg["fail_status"]:
                status = cfg["fail_status"]
                self.stats["injected_failures"] += 1
                rec["status"] = status
                rec["outcome"] = "failed"
                await conn.pause(cfg["first_token_ms"] / 1000.0)
                await self.send_json(conn, status,
                                     err_fmt(status, f"fake_llm: injected HTTP {status}"))
                return True

            kind, arg = route
            if kind == "gen":
                keep = await self.generate(conn, req, rec, cfg, arg, body, stream, user_text)
                return keep
            if kind == "embed":
                return await self.embeddings(conn, rec, cfg, arg, body)
            rec["status"] = 200
            if kind == "tags":
                models = [{"name": m, "model": m, "modified_at": "2024-01-01T00:00:00Z",
                           "size": 0, "digest": hashlib.sha256(m.encode()).hexdigest(),
                           "details": {"format": "gguf", "family": "fake",
                                       "parameter_size": "0B", "quantization_level": "none"}}
                          for m in self.args.models]
                await self.send_json(conn, 200, {"models": models})
            elif kind == "version":
                await self.send_json(conn, 200, {"version": "0.0.0-fake"})
            elif kind == "models":
                await self.send_json(conn, 200, {"object": "list", "data": [
                    {"id": m, "object": "model", "created": int(self.started),
                     "owned_by": "fake-llm"} for m in self.args.models]})
            else:
                body = b"" if method == "HEAD" else b"Ollama is running"
                conn.write(response_head(200, "text/plain; charset=utf-8", 17,
                                                 conn.keep_alive) + body)
            return True
        except ClientGone:
            if rec.get("outcome") in (None, "pending"):
                rec["outcome"] = "aborted"
            return False
        finally:
            if rec.get("outcome") in (None, "pending"):
                rec["outcome"] = "completed" if keep else "closed"
            if rec["ended_at"] is None and rec["outcome"] != "hung":
                rec["ended_at"] = time.time()
            rec["duration_ms"] = round((time.monotonic() - t_start) * 1000.0, 3)
            self.log(f"{method} {req.target} -> {rec.get('status')} {rec['outcome']} "
                     f"({rec['duration_ms']} ms)")

    def record(self, req, body):
        self.next_id += 1
        if body is None and req.body:
            body = {"_raw": req.body[:4096].decode("utf-8", "replace")}
        rec = {"id": self.next_id, "time": time.time(), "method": req.method,
               "path": req.path, "query": req.query,
               "headers": {k: req.headers[k] for k in HEADER_SUBSET if k in req.headers},
               "body": body, "status": None, "stream": False, "outcome": "pending",
               "tokens_sent": 0, "ended_at": None}
        self.records.append(rec)
        return rec

    def effective_config(self, req, body, route):
        """Defaults < X-Fake-LLM header < [[fake:...]] marker. Returns (config, user_text
        with markers removed)."""
        cfg = dict(self.config)
        hdr = req.headers.get("x-fake-llm")
        if hdr:
            try:
                obj = json.loads(hdr)
            except json.JSONDecodeError as e:
                raise ValueError(f"X-Fake-LLM header: bad JSON: {e.msg}") from None
            cfg.update(validate_overrides(obj, "X-Fake-LLM header"))
        user_text = ""
        if route and route[0] == "gen" and isinstance(body, dict):
            if route[1] is OllamaGenerate:
                user_text = body.get("prompt") if isinstance(body.get("prompt"), str) else ""
            else:
                user_text = last_user_message(body.get("messages"))
            markers = find_markers(user_text)
            if markers:
                cfg.update(validate_overrides(markers[-1][2], "[[fake:...]] marker"))
                user_text = strip_markers(user_text, markers)
        return cfg, user_text

    # -- behaviours --

    def stream_begin(self):
        self.stats["active_streams"] += 1
        if self.stats["active_streams"] > self.stats["max_active_streams"]:
            self.stats["max_active_streams"] = self.stats["active_streams"]

    def finish(self, rec, stream, outcome, status=None):
        rec["outcome"] = outcome
        rec["ended_at"] = time.time()
        if status is not None:
            rec["status"] = status
        if outcome == "aborted":
            self.stats["aborted_requests"] += 1
        if stream:
            self.stats["active_streams"] -= 1
            key = {"completed": "completed_streams", "aborted": "aborted_streams",
                   "disconnected": "disconnected_streams",
                   "error": "errored_streams"}.get(outcome)
            if key:
                self.stats[key] += 1

    async def hang(self, conn, rec, stream):
        """Accept and never answer; return when the client gives up (or at shutdown)."""
        rec["outcome"] = "hung"
        self.stats["hung_requests"] += 1
        self.stats["active_requests"] += 1
        if stream:
            self.stream_begin()
        outcome = "aborted"
        try:
            await asyncio.wait((conn.eof_fut,), timeout=HANG_LIMIT_S)
            if not conn.eof:
                outcome = "closed"
        finally:
            self.stats["hung_requests"] -= 1
            self.stats["active_requests"] -= 1
            self.finish(rec, stream, outcome)
        return False

    async def generate(self, conn, req, rec, cfg, fmt_cls, body, stream, user_text):
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        model = body.get("model") if isinstance(body.get("model"), str) else DEFAULT_MODEL
        self.seq += 1
        fmt = fmt_cls(model, self.seq)
        text = (f"Echo: {user_text}" if user_text else "Echo: (nothing)") if cfg["echo"] \
            else cfg["reply"]
        tokens = make_tokens(text, cfg["tokens"])
        caps = [c for c in (cfg["max_tokens"], request_token_limit(body, fmt_cls)) if c]
        finish = "stop"
        if caps and len(tokens) > min(caps):
            tokens = tokens[:min(caps)]
            finish = "length"
        prompt_tokens = prompt_word_count(body, fmt_cls)
        first = cfg["first_token_ms"] / 1000.0
        gap = cfg["delay_ms"] / 1000.0
        self.stats["active_requests"] += 1
        if stream:
            self.stream_begin()
        outcome, status = "aborted", None
        try:
            if stream:
                outcome = await self.stream_tokens(conn, rec, cfg, fmt, tokens, finish,
                                                   prompt_tokens, t0, first, gap, body)
            else:
                outcome = await self.answer_whole(conn, rec, cfg, fmt, tokens, finish,
                                                  prompt_tokens, t0, first, gap)
            status = 200 if outcome != "error" or stream else 500
        except ClientGone:
            outcome = "aborted"
        finally:
            self.stats["active_requests"] -= 1
            self.finish(rec, stream, outcome, status)
        return outcome in ("completed", "error")

    async def emit(self, conn, cfg, payload):
        """One HTTP chunk per line; with split_lines the chunk goes out in two writes
        (split mid-line, possibly mid-UTF-8 sequence) with a pause between them."""
        head = b"%x\r\n" % len(payload)
        if cfg["split_lines"] and len(payload) >= 2:
            mid = len(payload) // 2
            conn.write(head + payload[:mid])
            await conn.pause(cfg["split_pause_ms"] / 1000.0)
            conn.write(payload[mid:] + b"\r\n")
        else:
            conn.write(head + payload + b"\r\n")

    async def stream_tokens(self, conn, rec, cfg, fmt, tokens, finish, prompt_tokens, t0,
                            first, gap, body):
        loop = asyncio.get_running_loop()
        n = len(tokens)
        conn.write(response_head(200, fmt.content_type, None, conn.keep_alive,
                                       ("Cache-Control: no-cache",)))
        rec["status"] = 200
        opening = fmt.start()
        if opening:
            await self.emit(conn, cfg, opening)
        mal = cfg["malformed"]
        mal_at = None if mal is None or mal is False else (
            (n // 2 if n > 1 else 0) if mal is True else min(mal, n))
        disc = None if cfg["disconnect_after"] is None else min(cfg["disconnect_after"], n)
        stamp = cfg["stamp"]
        err = None if cfg["error_after"] is None else min(cfg["error_after"], n)
        plain = n and mal_at is None and disc is None and err is None \
            and not cfg["split_lines"]
        if plain:  # no fault to inject: the fast path (see TokenPacer)
            await conn.flush()
            await PlainStream(self, conn, rec, fmt, tokens, t0 + first, gap, stamp).run()
        for i in range(0 if plain else n + 1):
            if disc == i:
                await conn.close()
                return "disconnected"
            if err == i:
                for line in fmt.error("fake_llm: injected mid-stream error"):
                    await self.emit(conn, cfg, line)
                conn.write(b"0\r\n\r\n")
                return "error"
            if mal_at == i:
                await self.emit(conn, cfg, fmt.malformed())
            if i == n:
                break
            due = t0 + first + i * gap
            await conn.pause(due - loop.time())
            self.lag.append(max(0.0, loop.time() - due))
            tok = tokens[i]
            if stamp:
                tok = f"{' ' if i else ''}{time.time():.6f}"
            await self.emit(conn, cfg, fmt.token(tok))
            rec["tokens_sent"] += 1
            self.stats["tokens_sent"] += 1
        if n == 0:
            await conn.pause(t0 + first - loop.time())
        usage = isinstance(body.get("stream_options"), dict) and \
            bool(body["stream_options"].get("include_usage"))
        dur_ns = int((loop.time() - t0) * 1e9)
        for line in fmt.final(finish, n, prompt_tokens, dur_ns, usage):
            await self.emit(conn, cfg, line)
        conn.write(b"0\r\n\r\n")
        return "completed"

    async def answer_whole(self, conn, rec, cfg, fmt, tokens, finish, prompt_tokens, t0,
                           first, gap):
        loop = asyncio.get_running_loop()
        n = len(tokens)
        await conn.pause(t0 + first + max(n - 1, 0) * gap - loop.time())
        if cfg["error_after"] is not None:
            rec["status"] = 500
            await self.send_json(conn, 500, fmt.error_body(
                500, "fake_llm: injected generation error"))
            return "error"
        obj = fmt.whole("".join(tokens), finish, n, prompt_tokens,
                        int((loop.time() - t0) * 1e9))
        payload = jbytes(obj)
        if cfg["malformed"] not in (None, False):
            payload = payload[:len(payload) // 2]
        head = response_head(200, "application/json", len(payload), conn.keep_alive)
        rec["status"] = 200
        if cfg["disconnect_after"] is not None:
            conn.write(head + payload[:len(payload) // 2])
            await conn.close()
            return "disconnected"
        if cfg["split_lines"]:
            mid = len(payload) // 2
            conn.write(head + payload[:mid])
            await conn.pause(cfg["split_pause_ms"] / 1000.0)
            conn.write(payload[mid:])
        else:
            conn.write(head + payload)
        rec["tokens_sent"] = n
        self.stats["tokens_sent"] += n
        return "completed"

    async def embeddings(self, conn, rec, cfg, kind, body):
        err_fmt = OpenAIChat.error_body if kind == "openai" else OllamaChat.error_body
        key = "prompt" if kind == "ollama-legacy" else "input"
        raw = body.get(key)
        if raw is None:
            inputs = []
        elif isinstance(raw, str):
            inputs = [raw]
        elif isinstance(raw, list) and all(isinstance(x, str) for x in raw):
            inputs = raw
        elif isinstance(raw, list) and all(isinstance(x, int) for x in raw):
            inputs = [" ".join(map(str, raw))]  # OpenAI token-id input
        elif isinstance(raw, list) and all(isinstance(x, list) for x in raw):
            inputs = [" ".join(map(str, x)) for x in raw]
        else:
            rec["status"] = 400
            await self.send_json(conn, 400, err_fmt(400, f"'{key}' must be a string or a "
                                                         "list of strings"))
            return True
        if kind == "openai" and not inputs:
            rec["status"] = 400
            await self.send_json(conn, 400, err_fmt(400, "'input' is required"))
            return True
        dim = cfg["embed_dim"]
        if isinstance(body.get("dimensions"), int) and not isinstance(body["dimensions"], bool) \
                and 0 < body["dimensions"] <= 65536:
            dim = body["dimensions"]
        model = body.get("model") if isinstance(body.get("model"), str) else DEFAULT_MODEL
        # a [[fake:...]] marker in an input is stripped, never applied, so a message embeds
        # the same with or without it
        cleaned = []
        for text in inputs:
            try:
                cleaned.append(strip_markers(text, find_markers(text)))
            except ValueError:
                cleaned.append(text)
        vectors = [embed_text(t, dim) for t in cleaned]
        await conn.pause(cfg["first_token_ms"] / 1000.0)
        ntok = sum(word_count(t) for t in cleaned)
        if kind == "openai":
            out = {"object": "list", "model": model,
                   "data": [{"object": "embedding", "index": i, "embedding": v}
                            for i, v in enumerate(vectors)],
                   "usage": {"prompt_tokens": ntok, "total_tokens": ntok}}
        elif kind == "ollama":
            out = {"model": model, "embeddings": vectors, "total_duration": 0,
                   "load_duration": 0, "prompt_eval_count": ntok}
        else:
            out = {"embedding": vectors[0] if vectors else []}
        rec["status"] = 200
        await self.send_json(conn, 200, out)
        return True

    # -- introspection --

    async def introspect(self, conn, req, path):
        method = req.method
        if path == "/_fake/requests" and method == "GET":
            items = list(self.records)
            if "since" in req.query and req.query["since"].isdigit():
                since = int(req.query["since"])
                items = [r for r in items if r["id"] > since]
            if "path" in req.query:
                items = [r for r in items if r["path"] == req.query["path"]]
            if "limit" in req.query and req.query["limit"].isdigit():
                items = items[-int(req.query["limit"]):] if int(req.query["limit"]) else []
            await self.send_json(conn, 200, items)
        elif path == "/_fake/stats" and method == "GET":
            out = dict(self.stats)
            out["schedule_lag_ms"] = percentiles(list(self.lag), (50, 99))
            out["uptime_s"] = round(time.time() - self.started, 3)
            await self.send_json(conn, 200, out)
        elif path == "/_fake/reset" and method == "POST":
            self.records.clear()
            self.lag.clear()
            keep = {k: self.stats[k] for k in ("active_streams", "active_requests",
                                                "hung_requests", "open_connections")}
            self.stats = new_stats()
            self.stats.update(keep)
            self.stats["max_active_streams"] = keep["active_streams"]
            self.config = dict(self.base_config)
            await self.send_json(conn, 200, {"ok": True})
        elif path == "/_fake/config" and method == "GET":
            await self.send_json(conn, 200, self.config)
        elif path == "/_fake/config" and method == "POST":
            try:
                obj = json.loads(req.body or b"{}")
                self.config.update(validate_overrides(obj, "POST /_fake/config"))
            except (ValueError, UnicodeDecodeError) as e:
                await self.send_json(conn, 400, {"error": str(e)})
                return True
            await self.send_json(conn, 200, self.config)
        else:
            await self.send_json(conn, 404, {"error": f"{method} {path}: not found"})
        return True

    async def shutdown(self):
        self.closing = True
        tasks = []
        for conn in list(self.conns):
            conn.abort()
            if conn.task is not None:
                conn.task.cancel()
                tasks.append(conn.task)
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)


def last_user_message(messages):
    if not isinstance(messages, list):
        return ""
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            return message_text(msg.get("content"))
    return ""


def message_text(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(p.get("text", "") for p in content
                       if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def request_token_limit(body, fmt_cls):
    if fmt_cls is OpenAIChat:
        vals = [body.get("max_completion_tokens"), body.get("max_tokens")]
    else:
        opts = body.get("options")
        vals = [opts.get("num_predict") if isinstance(opts, dict) else None]
    for v in vals:
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def prompt_word_count(body, fmt_cls):
    if fmt_cls is OllamaGenerate:
        return word_count(body.get("prompt")) + word_count(body.get("system"))
    msgs = body.get("messages")
    if not isinstance(msgs, list):
        return 0
    return sum(word_count(message_text(m.get("content"))) for m in msgs if isinstance(m, dict))


# --- entry points -------------------------------------------------------------------------


def write_port_file(path, port):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


async def serve(args):
    app = FakeLLM(args)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(app.handle_conn, HOST, args.port,
                                        backlog=args.backlog, reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    if args.port_file:
        write_port_file(args.port_file, port)
    # fewer, cheaper collections: a full GC pass over 10,000 recorded requests would stall
    # every stream for tens of milliseconds
    gc.freeze()
    gc.set_threshold(20000, 20, 20)
    app.log(f"listening on http://{HOST}:{port} (Ollama /api/*, OpenAI /v1/*)")
    await stop.wait()
    app.log("shutting down")
    server.close()
    await app.shutdown()
    return 0


def non_negative_ms(text):
    v = float(text)
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return v


def serve_parser():
    p = argparse.ArgumentParser(
        prog="fake_llm.py",
        description="Fake Ollama / OpenAI-compatible LLM server on 127.0.0.1 for tests. "
                    "Per-request overrides: header X-Fake-LLM: {json} or "
                    "[[fake:{json}]] in the last user message. Client benchmark: "
                    "fake_llm.py bench --help.")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"TCP port on 127.0.0.1, 0 = ephemeral (default {DEFAULT_PORT})")
    p.add_argument("--port-file", help="write the bound port to this file (atomically)")
    p.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /api and /v1")
    p.add_argument("--model", dest="models", action="append", default=None, metavar="NAME",
                   help=f"model name listed by /api/tags and /v1/models (repeatable; "
                        f"default {DEFAULT_MODEL}); any name is accepted in requests")
    p.add_argument("--reply", default=DEFAULT_REPLY, help="reply text")
    p.add_argument("--echo", action="store_true",
                   help="reply 'Echo: <last user message>' instead of --reply")
    p.add_argument("--tokens", type=int, default=None,
                   help="emit exactly N tokens, repeating the reply's words")
    p.add_argument("--delay-ms", type=non_negative_ms, default=0.0,
                   help="spacing between tokens (default 0)")
    p.add_argument("--first-token-ms", type=non_negative_ms, default=0.0,
                   help="delay before the first token (and before non-stream answers)")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="cap on tokens (the request's num_predict / max_tokens also caps); "
                        "a capped reply ends with done_reason/finish_reason 'length'")
    p.add_argument("--fail-status", type=int, default=None,
                   help="answer every API request with this HTTP status and a JSON error")
    p.add_argument("--malformed", type=int, nargs="?", const=True, default=None,
                   metavar="N", help="emit one broken JSON / SSE line mid-stream "
                                     "(after N tokens; default the middle)")
    p.add_argument("--disconnect-after", type=int, default=None, metavar="N",
                   help="close the socket after N tokens, without the final chunk")
    p.add_argument("--error-after", type=int, default=None, metavar="N",
                   help="after N tokens send an in-stream error object and end the stream")
    p.add_argument("--split-lines", action="store_true",
                   help="send each NDJSON/SSE line in two TCP writes with a pause")
    p.add_argument("--split-pause-ms", type=non_negative_ms, default=20.0,
                   help="pause between the two halves of a split line (default 20)")
    p.add_argument("--hang", action="store_true", help="read requests and never answer")
    p.add_argument("--stamp", action="store_true",
                   help="streams: each token is the Unix time (us) at which it was written, "
                        "so a client can measure relay latency")
    p.add_argument("--embed-dim", type=int, default=384, help="embedding dimension (384)")
    p.add_argument("--idle-timeout", type=float, default=120.0,
                   help="close keep-alive connections idle this long (s, default 120)")
    p.add_argument("--backlog", type=int, default=4096, help="listen backlog (4096)")
    p.add_argument("--max-records", type=int, default=10000,
                   help="requests kept for /_fake/requests (default 10000)")
    p.add_argument("--verbose", action="store_true", help="log to stderr")
    return p


# --- bench: a small asyncio client measuring concurrent streams -----------------------------


async def _bench_http(host, port, method, path, obj=None):
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
    try:
        body = jbytes(obj) if obj is not None else b""
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
                     f"application/json\r\nContent-Length: {len(body)}\r\nConnection: close"
                     f"\r\n\r\n".encode() + body)
        data = await asyncio.wait_for(reader.read(), 30)
        return json.loads(data.split(b"\r\n\r\n", 1)[1])
    finally:
        writer.close()


async def _bench_stream(args, host, port, start_ev, results, headers, ready):
    rec = {"ok": False, "tokens": 0, "times": [], "delivery": [], "error": None,
           "t_send": None}
    results.append(rec)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 30)
    except (OSError, asyncio.TimeoutError) as e:
        rec["error"] = f"connect: {e!r}"
        return
    finally:
        ready[0] += 1
    try:
        await start_ev.wait()
        await asyncio.wait_for(_bench_read(args, host, reader, writer, headers, rec),
                               args.timeout)
        rec["tokens"] = len(rec["times"])
        rec["ok"] = rec["tokens"] == args.tokens
        if not rec["ok"]:
            rec["error"] = f"got {rec['tokens']} tokens"
    except (OSError, asyncio.TimeoutError, ValueError, KeyError) as e:
        rec["error"] = repr(e)
    finally:
        writer.close()


async def _bench_read(args, host, reader, writer, headers, rec):
    """Send one streaming request and time every token line. Reads in big blocks and
    de-chunks by hand: per-read timeouts (a task each) would make the client, not the
    server, the bottleneck at 20,000 tokens/s."""
    loop = asyncio.get_running_loop()
    openai = args.api == "openai"
    path = "/v1/chat/completions" if openai else "/api/chat"
    raw = jbytes({"model": "fake", "stream": True,
                  "messages": [{"role": "user", "content": "bench"}]})
    rec["t_send"] = loop.time()
    writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json"
                 f"\r\nContent-Length: {len(raw)}\r\nX-Fake-LLM: {headers}\r\n\r\n"
                 .encode() + raw)
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = await reader.read(65536)
        if not data:
            raise ValueError("EOF in response head")
        buf += data
    head, buf = buf.split(b"\r\n\r\n", 1)
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise ValueError(head.split(b"\r\n", 1)[0].decode())
    sep = b"\n\n" if openai else b"\n"
    body = b""
    now, wall = loop.time(), time.time()
    done = False
    while True:
        # de-chunk everything complete in buf
        while not done:
            i = buf.find(b"\r\n")
            if i < 0:
                break
            size = int(buf[:i], 16)
            if size == 0:
                done = True
                break
            if len(buf) < i + 2 + size + 2:
                break
            body += buf[i + 2:i + 2 + size]
            buf = buf[i + 2 + size + 2:]
        while sep in body:
            line, body = body.split(sep, 1)
            if openai:
                if line == b"data: [DONE]":
                    continue
                obj = json.loads(line[6:])
                content = obj["choices"][0]["delta"].get("content") if obj["choices"] else None
            else:
                obj = json.loads(line)
                content = None if obj.get("done") else obj["message"]["content"]
            if content:
                rec["times"].append(now)
                rec["delivery"].append(wall - float(content))
        if done:
            return
        data = await reader.read(65536)
        if not data:
            raise ValueError("EOF before the end of the stream")
        now, wall = loop.time(), time.time()
        buf += data


async def bench(args):
    host, port = HOST, args.port
    if args.port_file:
        with open(args.port_file) as f:
            port = int(f.read().strip())
    if not args.no_reset:
        await _bench_http(host, port, "POST", "/_fake/reset")
    headers = json.dumps({"tokens": args.tokens, "delay_ms": args.delay_ms,
                          "first_token_ms": args.first_token_ms, "stamp": True},
                         separators=(",", ":"))
    loop = asyncio.get_running_loop()
    start_ev = asyncio.Event()
    results = []
    ready = [0]  # connections opened or failed
    t_conn = loop.time()
    tasks = [asyncio.create_task(_bench_stream(args, host, port, start_ev, results, headers,
                                               ready))
             for _ in range(args.streams)]
    # every connection is opened first, then all requests are fired at once
    bound = loop.time() + 40
    while ready[0] < args.streams and loop.time() < bound:
        await asyncio.sleep(0.01)
    t_conn = loop.time() - t_conn
    t0 = loop.time()
    start_ev.set()
    await asyncio.wait(tasks, timeout=args.timeout + 30)
    wall = loop.time() - t0
    stats = await _bench_http(host, port, "GET", "/_fake/stats")
    first, delay = args.first_token_ms / 1000.0, args.delay_ms / 1000.0
    lateness, ttft, gaps = [], [], []
    delivery = [d for r in results for d in r["delivery"]]
    for r in results:
        if not r["times"]:
            continue
        ttft.append(r["times"][0] - r["t_send"])
        for i, t in enumerate(r["times"]):
            lateness.append(max(0.0, t - (r["t_send"] + first + i * delay)))
            if i:
                gaps.append(t - r["times"][i - 1])
    ok = sum(1 for r in results if r["ok"])
    errors = collections.Counter(r["error"] for r in results if r["error"])
    report = {
        "api": args.api, "streams": args.streams, "tokens_per_stream": args.tokens,
        "delay_ms": args.delay_ms, "first_token_ms": args.first_token_ms,
        "ok_streams": ok, "failed_streams": args.streams - ok,
        "errors": dict(errors.most_common(5)),
        "tokens_received": sum(r["tokens"] for r in results),
        "connect_s": round(t_conn, 3), "wall_s": round(wall, 3),
        "ideal_s": round(first + max(args.tokens - 1, 0) * delay, 3),
        "client_ttft_ms": percentiles(ttft, (50, 99)),
        "client_token_lateness_ms": percentiles(lateness, (50, 95, 99)),
        "client_gap_ms": percentiles(gaps, (1, 50, 99)),
        "client_delivery_ms": percentiles(delivery, (50, 99)),
        "server_max_active_streams": stats["max_active_streams"],
        "server_completed_streams": stats["completed_streams"],
        "server_schedule_lag_ms": stats["schedule_lag_ms"],
    }
    print(json.dumps(report, indent=2))
    return 0 if ok == args.streams else 1


def bench_parser():
    p = argparse.ArgumentParser(
        prog="fake_llm.py bench",
        description="Open N streams at once against a running fake_llm and report timing.")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--port-file", help="read the port from this file")
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--tokens", type=int, default=20)
    p.add_argument("--delay-ms", type=non_negative_ms, default=50.0)
    p.add_argument("--first-token-ms", type=non_negative_ms, default=0.0)
    p.add_argument("--api", choices=("ollama", "openai"), default="ollama")
    p.add_argument("--timeout", type=float, default=120.0, help="per-stream bound (s)")
    p.add_argument("--no-reset", action="store_true", help="do not POST /_fake/reset first")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "bench":
        args = bench_parser().parse_args(argv[1:])
        return asyncio.run(bench(args))
    parser = serve_parser()
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be 0..65535")
    args.models = args.models or [DEFAULT_MODEL]
    try:
        FakeLLM(args)  # validate the behaviour options before binding
    except ValueError as e:
        parser.error(str(e))
    try:
        return asyncio.run(serve(args))
    except OSError as e:
        print(f"fake_llm: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
