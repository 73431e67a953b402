"""Shared machinery for the persona-mcp integration tests.

Every test drives the real binary (env PMCP_BIN, else PMCP_BUILD_DIR/persona-mcp) on an
ephemeral loopback port with its own data directory. The server reports its port through
--port-file; we poll for that file with a deadline. Teardown stops every server a test
started with SIGTERM and requires exit code 0 within 10 s: a hang or a crash on shutdown
is a test failure, not something to paper over with kill -9.

Clients:
  * Conn      -- asyncio + websockets (Debian python3-websockets 10.4) JSON-RPC client.
  * RawWs     -- blocking socket speaking just enough RFC 6455 to send what a polite
                 client never would (invalid UTF-8, odd headers) and to read close codes.
  * http_get  -- plain HTTP/1.1 GET over a socket.

Every wait is bounded: recv timeouts, connect timeouts, process waits.
Tests import helpers with `from conftest import ...` (pytest's default prepend import mode
puts this directory on sys.path).
"""

import asyncio
import base64
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import time
import uuid

import pytest
import websockets

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
STARTUP_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
RECV_TIMEOUT = 10.0

# Environment variables the server reads; cleared so a developer's shell cannot leak in.
SERVER_ENV_KEYS = (
    "SERVER_HOST",
    "SERVER_PORT",
    "DATABASE_PATH",
    "LOG_LEVEL",
    "MAX_CONNECTIONS",
    "WEBSOCKET_TIMEOUT",
)


def server_binary():
    path = os.environ.get("PMCP_BIN")
    if not path and os.environ.get("PMCP_BUILD_DIR"):
        path = os.path.join(os.environ["PMCP_BUILD_DIR"], "persona-mcp")
    if not path or not os.access(path, os.X_OK):
        pytest.fail(f"persona-mcp binary not found (PMCP_BIN={path!r}); set PMCP_BIN")
    return path


class Server:
    """One persona-mcp process; restartable on the same data directory."""

    def __init__(self, workdir, args=(), env=None, data_dir=None):
        self.workdir = str(workdir)
        self.args = list(args)
        self.env_extra = dict(env or {})
        self.data_dir = data_dir or os.path.join(self.workdir, "data")
        os.makedirs(self.data_dir, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = None
        self.proc = None
        self.generation = 0
        self.log_path = None
        self.exit_codes = []  # (generation, returncode) of every stop

    @property
    def url(self):
        return f"ws://{self.host}:{self.port}/mcp"

    def start(self, extra_args=()):
        self.generation += 1
        port_file = os.path.join(self.workdir, f"port.{self.generation}")
        self.log_path = os.path.join(self.workdir, f"server.{self.generation}.log")
        env = {k: v for k, v in os.environ.items() if k not in SERVER_ENV_KEYS}
        env.update(self.env_extra)
        cmd = [server_binary(), "--host", self.host, "--port", "0", "--port-file", port_file,
               "--data-dir", self.data_dir, *self.args, *extra_args]
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        finally:
            log.close()
        self.port = self._wait_port(port_file)
        return self

    def _wait_port(self, port_file):
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode} during startup:\n"
                            f"{self.log_tail()}")
            try:
                with open(port_file) as f:
                    text = f.read().strip()
                # A half-written file could name the wrong port: accept it once it is stable.
                if text.isdigit() and 0 < int(text) < 65536:
                    time.sleep(0.05)
                    with open(port_file) as f:
                        if f.read().strip() == text:
                            return int(text)
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        self.proc.kill()
        self.proc.wait(5)
        pytest.fail(f"server did not write {port_file} within {STARTUP_TIMEOUT}s:\n"
                    f"{self.log_tail()}")

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Signal the server and wait; returns the exit code, None if it had to be killed."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            rc = None
        self.exit_codes.append((self.generation, rc))
        self.proc = None
        return rc

    def wait_exit(self, timeout=STOP_TIMEOUT):
        """Wait for an exit already under way (no signal sent); None if it had to be killed."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            rc = None
        self.exit_codes.append((self.generation, rc))
        self.proc = None
        return rc

    def stop_clean(self, sig=signal.SIGTERM):
        rc = self.stop(sig)
        assert rc == 0, (f"server did not exit 0 on {signal.Signals(sig).name} within "
                         f"{STOP_TIMEOUT}s (rc={rc}):\n{self.log_tail()}")

    def kill9(self):
        self.proc.kill()
        rc = self.proc.wait(STOP_TIMEOUT)
        self.exit_codes.append((self.generation, rc))
        self.proc = None
        return rc

    def restart(self, extra_args=()):
        """Clean stop (exit 0 required) and start again on the same data directory."""
        if self.running():
            self.stop_clean()
        return self.start(extra_args)

    def log_tail(self, n=60):
        if not self.log_path or not os.path.exists(self.log_path):
            return "(no log)"
        with open(self.log_path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])

    # --- synchronous conveniences -------------------------------------------------------

    def http_get(self, path, headers=None, timeout=RECV_TIMEOUT):
        return http_get(self.host, self.port, path, headers, timeout)

    def rpc(self, method, params=None, timeout=RECV_TIMEOUT):
        """One request on a fresh connection; returns the whole response object."""

        async def go():
            async with Conn(self.url) as c:
                return await c.call(method, params, timeout=timeout)

        return asyncio.run(go())

    def result(self, method, params=None):
        resp = self.rpc(method, params)
        assert "error" not in resp, f"{method} failed: {resp}"
        return resp["result"]


def _finish(servers):
    failures = []
    for s in servers:
        if s.running():
            rc = s.stop(signal.SIGTERM)
            if rc != 0:
                failures.append(f"generation {s.generation}: rc={rc} "
                                f"(None = needed kill -9)\n{s.log_tail()}")
    if failures:
        pytest.fail("server did not exit 0 within 10 s of SIGTERM:\n" + "\n".join(failures))


@pytest.fixture
def server_factory(tmp_path):
    """Start servers with custom flags/env: server_factory(args=[...], env={...})."""
    servers = []

    def make(args=(), env=None):
        d = tmp_path / f"srv{len(servers)}"
        d.mkdir()
        s = Server(d, args, env)
        servers.append(s)
        return s.start()

    yield make
    _finish(servers)


@pytest.fixture
def server(server_factory):
    """A server with default settings on a fresh database."""
    return server_factory()


# --- WebSocket JSON-RPC client ----------------------------------------------------------


class Conn:
    """JSON-RPC over one websockets connection. Use as `async with Conn(url) as c`."""

    def __init__(self, url, **kwargs):
        self.url = url
        opts = dict(max_size=None, ping_interval=None, open_timeout=RECV_TIMEOUT,
                    close_timeout=3, compression=None)
        opts.update(kwargs)
        self.opts = opts
        self.ws = None
        self.next_id = 1

    async def __aenter__(self):
        self.ws = await websockets.connect(self.url, **self.opts)
        return self

    async def __aexit__(self, *exc):
        await self.ws.close()

    def new_id(self):
        i = self.next_id
        self.next_id += 1
        return i

    async def send_json(self, obj):
        await self.ws.send(json.dumps(obj))

    async def send_raw(self, data):
        await self.ws.send(data)

    async def recv(self, timeout=RECV_TIMEOUT):
        """Next frame decoded as JSON (fails the test on timeout)."""
        try:
            frame = await asyncio.wait_for(self.ws.recv(), timeout)
        except asyncio.TimeoutError:
            pytest.fail(f"no response frame within {timeout}s")
        assert isinstance(frame, str), f"expected a text frame, got {type(frame)}"
        return json.loads(frame)

    async def expect_silence(self, seconds=0.3):
        """Assert no frame arrives within `seconds`."""
        try:
            frame = await asyncio.wait_for(self.ws.recv(), seconds)
        except asyncio.TimeoutError:
            return
        pytest.fail(f"unexpected frame: {frame!r}")

    async def call(self, method, params=None, id=None, timeout=RECV_TIMEOUT):
        rid = self.new_id() if id is None else id
        req = {"jsonrpc": "2.0", "method": method, "id": rid}
        if params is not None:
            req["params"] = params
        await self.send_json(req)
        resp = await self.recv(timeout)
        assert resp.get("id") == rid and type(resp.get("id")) is type(rid), \
            f"response id mismatch: sent {rid!r}, got {resp!r}"
        return resp

    async def result(self, method, params=None):
        resp = await self.call(method, params)
        assert_success(resp)
        return resp["result"]

    async def error(self, method, params=None, code=None):
        resp = await self.call(method, params)
        assert_error(resp, code)
        return resp["error"]


def assert_success(resp):
    assert resp.get("jsonrpc") == "2.0", resp
    assert "error" not in resp, f"success response carries an error key: {resp}"
    assert "result" in resp, resp
    assert set(resp) == {"jsonrpc", "result", "id"}, f"unexpected keys: {resp}"


def assert_error(resp, code=None, id=...):
    assert resp.get("jsonrpc") == "2.0", resp
    assert "result" not in resp, f"error response carries a result key: {resp}"
    assert set(resp) == {"jsonrpc", "error", "id"}, f"unexpected keys: {resp}"
    err = resp["error"]
    assert isinstance(err, dict), resp
    assert type(err.get("code")) is int, resp
    assert isinstance(err.get("message"), str) and err["message"], resp
    assert set(err) <= {"code", "message", "data"}, resp
    if code is not None:
        assert err["code"] == code, f"expected code {code}, got {resp}"
    if id is not ...:
        assert resp["id"] == id and type(resp["id"]) is type(id), f"expected id {id!r}: {resp}"
    return err


def run(coro):
    """Run one coroutine to completion (tests are plain functions; no asyncio plugin)."""
    return asyncio.run(coro)


def unique_name(prefix="p"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --- raw RFC 6455 client ----------------------------------------------------------------


class RawWs:
    """A minimal blocking WebSocket client for protocol-level abuse and close codes."""

    def __init__(self, host, port, timeout=RECV_TIMEOUT, rcvbuf=None):
        if rcvbuf:  # set before connect, so the TCP window stays that small
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.host, self.port = host, port
        self.buf = b""
        self.status = None
        self.headers = {}

    def handshake(self, path="/mcp", headers=None, host_header=None):
        """Send an upgrade request; returns the HTTP status code (101 on success)."""
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1",
                 f"Host: {host_header or f'{self.host}:{self.port}'}",
                 "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = self._read_until(b"\r\n\r\n")
        status_line, *hdr_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        for line in hdr_lines:
            if ":" in line:
                k, v = line.split(":", 1)
                self.headers[k.strip().lower()] = v.strip()
        if self.status == 101:
            want = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            assert self.headers.get("sec-websocket-accept") == want, self.headers
        return self.status

    def _read_until(self, marker, limit=65536):
        while marker not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("EOF during handshake")
            self.buf += chunk
            if len(self.buf) > limit:
                raise ValueError("handshake response too large")
        head, self.buf = self.buf.split(marker, 1)
        return head

    def _read_exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("EOF")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send_frame(self, opcode, payload, fin=True, mask=True):
        b0 = (0x80 if fin else 0) | opcode
        n = len(payload)
        mbit = 0x80 if mask else 0
        if n < 126:
            head = struct.pack("!BB", b0, mbit | n)
        elif n < 65536:
            head = struct.pack("!BBH", b0, mbit | 126, n)
        else:
            head = struct.pack("!BBQ", b0, mbit | 127, n)
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
            head += key
        self.sock.sendall(head + payload)

    def send_text(self, text):
        self.send_frame(0x1, text.encode() if isinstance(text, str) else text)

    def recv_frame(self):
        """(opcode, payload) of the next frame; raises ConnectionError on EOF."""
        b0, b1 = self._read_exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read_exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read_exact(8))[0]
        key = self._read_exact(4) if b1 & 0x80 else None
        payload = self._read_exact(n)
        if key:
            payload = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
        return b0 & 0x0F, payload

    def recv_json(self):
        """Next data frame as JSON, answering pings on the way."""
        for _ in range(100):
            op, payload = self.recv_frame()
            if op == 0x9:
                self.send_frame(0xA, payload)
                continue
            if op == 0x1:
                return json.loads(payload)
            raise AssertionError(f"unexpected opcode {op} payload {payload[:100]!r}")
        raise AssertionError("too many control frames")

    def wait_close(self, timeout=RECV_TIMEOUT):
        """Read until a close frame or EOF; returns the close code (None if plain EOF)."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                op, payload = self.recv_frame()
            except (ConnectionError, OSError):
                return None
            if op == 0x8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            if op == 0x9:
                try:
                    self.send_frame(0xA, payload)
                except OSError:
                    return None
        raise AssertionError(f"connection not closed within {timeout}s")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# --- HTTP ---------------------------------------------------------------------------------


def http_get(host, port, path, headers=None, timeout=RECV_TIMEOUT):
    """GET over a fresh socket; returns (status, {lowercase header: value}, body bytes)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                head, body = data.split(b"\r\n\r\n", 1)
                hdrs = _parse_headers(head)
                if "content-length" in hdrs and len(body) >= int(hdrs["content-length"]):
                    break
                if hdrs.get("transfer-encoding", "").lower() == "chunked" and \
                        body.endswith(b"0\r\n\r\n"):
                    break
    assert b"\r\n\r\n" in data, f"incomplete HTTP response: {data[:200]!r}"
    head, body = data.split(b"\r\n\r\n", 1)
    hdrs = _parse_headers(head)
    if hdrs.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    elif "content-length" in hdrs:
        body = body[: int(hdrs["content-length"])]
    status = int(head.split(b"\r\n", 1)[0].split()[1])
    return status, hdrs, body


def _parse_headers(head):
    hdrs = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
    return hdrs


def _dechunk(body):
    out = b""
    for _ in range(100000):
        size_line, rest = body.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out += rest[:size]
        body = rest[size + 2:]
    raise AssertionError("too many chunks")
