"""The standard MCP face, driven by the official TypeScript SDK client and by raw requests.

* tests/mcp/client.mjs is a small scripted client on @modelcontextprotocol/sdk (pinned in
  tests/mcp/package.json). tests/mcp/npm_deps.sh installs it with `npm ci` into the build
  directory (cached), together with Node 22 from npm, which runs it.
* Every SDK test runs over both transports: stdio (the client spawns `persona-mcp --stdio`
  on a data directory of the test; each client run is a new process on the same data) and
  Streamable HTTP (a server started by conftest's server_factory; each client run is a new
  session).
* The LLM is tests/fake_llm.py (docs/FAKE_LLM.md), or a closed port for the sampling
  fallback.
* Bad input is sent raw, below the SDK: http.client for HTTP, pipes for stdio.

Skips: without npm the module is skipped; under CTest (PMCP_SKIP_EXIT_CODE set) the run
exits with that code so CTest reports the test as skipped rather than passed.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import server_binary

ROOT = Path(__file__).resolve().parent.parent.parent
MCP_DIR = ROOT / "tests" / "mcp"
CLIENT = MCP_DIR / "client.mjs"
NPM_DEPS = MCP_DIR / "npm_deps.sh"
FAKE = ROOT / "tests" / "fake_llm.py"
CLIENT_TIMEOUT = 90.0
RAW_TIMEOUT = 10.0
FAKE_REPLY = ("Hello! I am a fake language model, and this reply is streamed to you "
              "one token at a time.")

PRODUCT_TOOLS = {
    "persona_list", "persona_get", "persona_create", "persona_delete", "memory_store",
    "memory_search", "memory_update", "memory_delete", "memory_stats", "memory_prune",
    "memory_search_cross_persona", "chat",
}



@pytest.fixture(scope="session", autouse=True)
def _need_npm():
    if shutil.which("npm") is None:
        reason = "npm not found: the MCP SDK tests install the official SDK with npm"
        if os.environ.get("PMCP_SKIP_EXIT_CODE"):  # CTest: report "skipped", not "passed"
            pytest.exit(reason, returncode=int(os.environ["PMCP_SKIP_EXIT_CODE"]))
        pytest.skip(reason)


# --- the SDK client ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def deps(_need_npm, tmp_path_factory):
    """Directory whose node_modules holds the pinned SDK and Node 22 (npm ci, cached)."""
    dest = os.environ.get("PMCP_MCP_DEPS")
    if not dest:
        build = os.environ.get("PMCP_BUILD_DIR")
        dest = (os.path.join(build, "mcp", "deps") if build
                else str(tmp_path_factory.mktemp("mcp-deps")))
    p = subprocess.run(["sh", str(NPM_DEPS), dest], capture_output=True, text=True,
                       timeout=900)
    if p.returncode == 77:
        pytest.skip(p.stderr.strip())
    assert p.returncode == 0, f"npm_deps.sh failed:\n{p.stderr}"
    node = os.path.join(dest, "node_modules", ".bin", "node")
    assert os.access(node, os.X_OK), f"no Node 22 in {dest}"
    return dest


def run_client(deps, target, steps=(), sample=None, elicit=None, headers=None,
               session_id=None, expect_connect=True, timeout=CLIENT_TIMEOUT, sample_error=None):
    """Run tests/mcp/client.mjs; returns its JSON document."""
    node = os.path.join(deps, "node_modules", ".bin", "node")
    cmd = [node, str(CLIENT), "--deps", deps, "--steps", json.dumps(list(steps))]
    if sample is not None:
        cmd += ["--sample", sample]
    if sample_error is not None:
        cmd += ["--sample-error", sample_error]
    if elicit is not None:
        cmd += ["--elicit", json.dumps(elicit)]
    for k, v in (headers or {}).items():
        cmd += ["--header", f"{k}: {v}"]
    if session_id:
        cmd += ["--session-id", session_id]
    if target["kind"] == "http":
        cmd += ["--url", target["url"]]
    else:
        cmd += ["--", *target["command"]]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    try:
        doc = json.loads(p.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"client printed no JSON (rc={p.returncode}):\n{p.stdout}\n{p.stderr}")
    if expect_connect:
        assert p.returncode == 0 and doc["ok"], f"client failed: {doc.get('error')}\n{p.stderr}"
    if target["kind"] == "stdio":
        err = doc.get("stderr", "")
        assert "AddressSanitizer" not in err and "runtime error" not in err, err
    return doc


def step_ok(doc, i):
    s = doc["steps"][i]
    assert s["ok"], f"step {i} ({s['op']}) failed: {s.get('error')}"
    return s["result"] if "result" in s else None


def tool_ok(doc, i):
    """The structuredContent (or parsed text) of a successful tool call step."""
    r = step_ok(doc, i)
    assert r.get("isError") is not True, f"step {i} returned a tool error: {r}"
    if "structuredContent" in r:
        return r["structuredContent"]
    text = r["content"][0]["text"]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def call(name, arguments=None, **kw):
    return {"op": "call", "name": name, "arguments": arguments or {}, **kw}


def req(method, params=None):
    return {"op": "request", "method": method, "params": params or {}}


def ref(step, path):
    return f"{{{{{step}:{path}}}}}"


# --- the two faces ---------------------------------------------------------------------------


class Face:
    """How a test reaches persona-mcp: 'stdio' (the client spawns the server) or 'http'."""

    def __init__(self, kind, server_factory, tmp_path):
        self.kind = kind
        self.server_factory = server_factory
        self.tmp_path = tmp_path
        self.server = None
        self.target = None

    def start(self, args=()):
        if self.kind == "http":
            self.server = self.server_factory(args=list(args))
            self.target = {"kind": "http",
                           "url": f"http://127.0.0.1:{self.server.port}/mcp"}
        else:
            data = self.tmp_path / "stdio-data"
            data.mkdir(exist_ok=True)
            self.target = {"kind": "stdio",
                           "command": [server_binary(), "--stdio", "--data-dir", str(data),
                                       *args]}
        return self


@pytest.fixture(params=["stdio", "http"])
def face(request, server_factory, tmp_path):
    return Face(request.param, server_factory, tmp_path)


# --- the fake LLM ------------------------------------------------------------------------------


class FakeLLM:
    def __init__(self, workdir):
        workdir.mkdir(parents=True, exist_ok=True)
        port_file = workdir / "fake.port"
        self.log_path = workdir / "fake.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, str(FAKE), "--port", "0",
                                          "--port-file", str(port_file)],
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)
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
                pass
            time.sleep(0.02)
        if self.port is None:
            self.proc.kill()
            self.proc.wait(5)
            pytest.fail("fake_llm wrote no port file")
        self.url = f"http://127.0.0.1:{self.port}"

    def stats(self):
        with urllib.request.urlopen(self.url + "/_fake/stats", timeout=RAW_TIMEOUT) as r:
            return json.loads(r.read())

    def wait_stats(self, pred, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            s = self.stats()
            if pred(s) or time.monotonic() > deadline:
                return s
            time.sleep(0.02)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    f = FakeLLM(tmp_path_factory.mktemp("fake-llm"))
    yield f
    assert f.stop() == 0, "fake_llm did not exit 0 on SIGTERM"


def llm_args(fake):
    return ["--llm-provider", "ollama", "--llm-url", fake.url, "--llm-model", "fake"]


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def uniq(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- SDK tests over both transports --------------------------------------------------------------


def test_initialize_and_lists(face, deps):
    face.start()
    doc = run_client(deps, face.target, [
        {"op": "list_tools"},
        req("ping"),
        req("logging/setLevel", {"level": "debug"}),
        req("resources/templates/list"),
        req("prompts/list"),
        req("resources/list"),
        call("test_simple_text"),  # a conformance fixture: absent without the flag
    ])
    assert doc["protocolVersion"] == "2025-11-25"
    assert doc["serverInfo"]["name"] == "persona-mcp"
    caps = doc["capabilities"]
    for key in ("tools", "resources", "prompts", "logging", "completions"):
        assert key in caps, caps
    assert caps["resources"].get("subscribe") is True
    assert doc["instructions"]
    if face.kind == "http":
        sid = doc["sessionId"]
        assert sid and len(sid) >= 32 and all(0x21 <= ord(ch) <= 0x7E for ch in sid)

    tools = step_ok(doc, 0)["tools"]
    names = {t["name"] for t in tools}
    assert PRODUCT_TOOLS <= names, PRODUCT_TOOLS - names
    assert not [n for n in names if n.startswith("test_") or n == "json_schema_2020_12_tool"]
    for t in tools:
        assert t["description"] and t["inputSchema"]["type"] == "object", t
    assert step_ok(doc, 1) == {}
    assert step_ok(doc, 2) == {}
    templates = {t["uriTemplate"] for t in step_ok(doc, 3)["resourceTemplates"]}
    assert {"persona://{id}", "persona://{id}/memories"} <= templates
    assert not [t for t in templates if t.startswith("test://")]
    prompts = {p["name"]: p for p in step_ok(doc, 4)["prompts"]}
    assert "roleplay" in prompts and not [n for n in prompts if n.startswith("test_")]
    assert [a["name"] for a in prompts["roleplay"]["arguments"]][:1] == ["persona"]
    resources = step_ok(doc, 5)["resources"]
    assert resources and all(r["uri"].startswith("persona://") for r in resources)
    assert doc["steps"][6]["error"]["code"] == -32602


def test_every_product_tool(face, deps, fake):
    face.start(llm_args(fake))
    names = {t["name"] for t in step_ok(run_client(deps, face.target, [{"op": "list_tools"}]),
                                         0)["tools"]}
    a, b = uniq("Ada"), uniq("Bo")
    pa, pb = ref(0, "result.structuredContent.persona_id"), ref(1, "result.structuredContent.persona_id")
    mem = ref(4, "result.structuredContent.memory_id")
    steps = [
        call("persona_create", {"name": a, "description": "A sailor who loves the sea"}),  # 0
        call("persona_create", {"name": b, "description": "A librarian"}),  # 1
        call("persona_list"),  # 2
        call("persona_get", {"persona_id": pa}),  # 3
        call("memory_store", {"persona_id": pa, "content": "I sailed around Cape Horn in 1999",
                              "importance": 0.9, "visibility": "shared"}),  # 4
        call("memory_search", {"persona_id": pa, "query": "Cape Horn sailing", "hybrid": True}),
        call("memory_update", {"memory_id": mem, "importance": 0.8}),  # 6
        call("memory_stats", {"persona_id": pa}),  # 7
        call("memory_search_cross_persona", {"persona_id": pb, "query": "Cape Horn"}),  # 8
        call("memory_prune", {"persona_id": pa, "dry_run": True}),  # 9
        call("chat", {"persona_id": pa, "message": "Tell me about the sea"}),  # 10
        call("memory_delete", {"memory_id": mem}),  # 11
    ]
    extra = {}
    if "relationship_update" in names:
        extra["relationship_update"] = len(steps)
        steps.append(call("relationship_update", {"persona1_id": pa, "persona2_id": pb,
                                                  "interaction_quality": 0.8,
                                                  "duration_minutes": 10}))
    if "relationship_get" in names:
        extra["relationship_get"] = len(steps)
        steps.append(call("relationship_get", {"persona1_id": pa, "persona2_id": pb}))
    if "emotional_state_update" in names:
        extra["emotional_state_update"] = len(steps)
        steps.append(call("emotional_state_update", {"persona_id": pa, "mood": 0.5}))
    if "emotional_state_get" in names:
        extra["emotional_state_get"] = len(steps)
        steps.append(call("emotional_state_get", {"persona_id": pa}))
    n_delete = len(steps)
    steps += [call("persona_delete", {"persona_id": pb}), call("persona_list")]
    doc = run_client(deps, face.target, steps)

    ida = tool_ok(doc, 0)["persona_id"]
    idb = tool_ok(doc, 1)["persona_id"]
    listed = {p["name"]: p["id"] for p in tool_ok(doc, 2)["personas"]}
    assert listed.get(a) == ida and listed.get(b) == idb
    got = tool_ok(doc, 3)
    assert ida in json.dumps(got) and a in json.dumps(got)
    stored = tool_ok(doc, 4)
    assert stored["stored"] is True and stored["memory_id"]
    hits = tool_ok(doc, 5)["memories"]
    assert hits and hits[0]["content"] == "I sailed around Cape Horn in 1999"
    tool_ok(doc, 6)
    assert "1" in json.dumps(tool_ok(doc, 7))  # one memory counted
    cross = json.dumps(tool_ok(doc, 8))
    assert "Cape Horn" in cross, cross
    prune = tool_ok(doc, 9)
    assert prune.get("status") and prune.get("persona_id") == ida, prune
    chat = step_ok(doc, 10)
    assert chat.get("isError") is False, chat
    assert chat["content"][0]["text"] == FAKE_REPLY
    assert chat["structuredContent"]["fallback"] is False
    tool_ok(doc, 11)
    for name, i in extra.items():
        tool_ok(doc, i)
    tool_ok(doc, n_delete)
    after = {p["id"] for p in tool_ok(doc, n_delete + 1)["personas"]}
    assert ida in after and idb not in after

    # Errors the model should see are tool errors, not protocol errors.
    doc = run_client(deps, face.target, [
        call("persona_get", {"persona_id": "no-such-persona"}),
        call("memory_store", {"persona_id": ida}),  # content missing
        call("no_such_tool"),
    ])
    for i in (0, 1):
        r = step_ok(doc, i)
        assert r["isError"] is True and r["content"][0]["text"], r
    assert doc["steps"][2]["error"]["code"] == -32602


def test_resources_prompt_completion(face, deps, fake):
    face.start(llm_args(fake))
    name = uniq("Cora")
    pid = ref(0, "result.structuredContent.persona_id")
    doc = run_client(deps, face.target, [
        call("persona_create", {"name": name, "description": "A lighthouse keeper"}),  # 0
        call("memory_store", {"persona_id": pid, "content": "The lighthouse lamp broke during "
                              "the storm of 2010", "importance": 0.9}),  # 1
        req("resources/list"),  # 2
        {"op": "request", "method": "resources/read", "params": {"uri": "persona://" + pid}},
        {"op": "request", "method": "resources/read",
         "params": {"uri": "persona://" + pid + "/memories"}},  # 4
        req("resources/read", {"uri": "persona://no-such-persona"}),  # 5
        req("prompts/get", {"name": "roleplay",
                            "arguments": {"persona": name, "topic": "lighthouse storm"}}),  # 6
        req("completion/complete", {"ref": {"type": "ref/prompt", "name": "roleplay"},
                                    "argument": {"name": "persona", "value": name[:6]}}),  # 7
        req("resources/subscribe", {"uri": "persona://" + pid + "/memories"}),  # 8
        call("memory_store", {"persona_id": pid, "content": "A ship passed at dawn"}),  # 9
        {"op": "sleep", "ms": 300},  # 10
        req("resources/unsubscribe", {"uri": "persona://" + pid + "/memories"}),  # 11
        req("prompts/get", {"name": "no_such_prompt"}),  # 12
    ])
    ident = tool_ok(doc, 0)["persona_id"]
    uris = {r["uri"] for r in step_ok(doc, 2)["resources"]}
    assert f"persona://{ident}" in uris and f"persona://{ident}/memories" in uris
    c = step_ok(doc, 3)["contents"][0]
    assert c["uri"] == f"persona://{ident}" and c["mimeType"] == "application/json"
    assert name in c["text"]
    json.loads(c["text"])
    c = step_ok(doc, 4)["contents"][0]
    assert "lighthouse lamp broke" in c["text"]
    json.loads(c["text"])
    assert doc["steps"][5]["error"]["code"] == -32002
    msgs = step_ok(doc, 6)["messages"]
    text = msgs[0]["content"]["text"]
    assert name in text and "lighthouse lamp broke" in text
    assert name in step_ok(doc, 7)["completion"]["values"]
    assert step_ok(doc, 8) == {}
    updated = [n for n in doc["notifications"] if n["method"] == "notifications/resources/updated"]
    assert {"uri": f"persona://{ident}/memories"} in [n["params"] for n in updated], \
        doc["notifications"]
    assert step_ok(doc, 11) == {}
    assert doc["steps"][12]["error"]["code"] == -32602


def test_chat_progress(face, deps, fake):
    face.start(llm_args(fake))
    doc = run_client(deps, face.target, [
        # Tokens 20 ms apart: the SDK handles notifications a tick after they arrive, so
        # progress that arrives in the same read as the response would be dropped.
        call("chat", {"persona_id": "Aria",
                      "message": 'Hello, who are you? [[fake:{"delay_ms": 20}]]'},
             progress=True),
    ])
    r = step_ok(doc, 0)
    assert r["isError"] is False and r["content"][0]["text"] == FAKE_REPLY
    prog = doc["steps"][0]["progress"]
    # One notification per token (the last may be dropped by the SDK, see above).
    assert len(prog) >= 15, prog
    values = [p["progress"] for p in prog]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert FAKE_REPLY.startswith("".join(p["message"] for p in prog))


def test_chat_cancel(face, deps, fake):
    face.start(llm_args(fake))
    before = fake.stats()["aborted_streams"]
    marker = '[[fake:{"delay_ms": 150, "tokens": 60}]]'
    doc = run_client(deps, face.target, [
        call("chat", {"persona_id": "Aria", "message": "Tell me a long story " + marker},
             cancel_after_progress=2),
        {"op": "sleep", "ms": 400},
        {"op": "fetch", "url": fake.url + "/_fake/stats"},
        req("ping"),
    ])
    s = doc["steps"][0]
    assert not s["ok"] and "cancel" in s["error"]["message"].lower(), s
    assert len(s["progress"]) >= 2
    # notifications/cancelled aborted the LLM request while the session was still open.
    assert step_ok(doc, 2)["aborted_streams"] > before
    assert step_ok(doc, 3) == {}


def test_sampling_when_llm_unreachable(face, deps):
    face.start(["--llm-provider", "ollama", "--llm-url", f"http://127.0.0.1:{closed_port()}",
                "--llm-model", "fake", "--llm-connect-timeout-ms", "500"])
    doc = run_client(deps, face.target, [
        call("chat", {"persona_id": "Kira", "message": "What is entropy?"}),
    ], sample="Entropy measures disorder, said the client's model.")
    r = step_ok(doc, 0)
    assert r["isError"] is False, r
    assert r["content"][0]["text"] == "Entropy measures disorder, said the client's model."
    assert r["structuredContent"]["source"] == "sampling"
    reqs = [q for q in doc["serverRequests"] if q["method"] == "sampling/createMessage"]
    assert len(reqs) == 1
    assert "What is entropy?" in json.dumps(reqs[0]["params"]["messages"])
    assert "Kira" in reqs[0]["params"].get("systemPrompt", "")

    # Without the sampling capability the chat falls back to a canned reply.
    doc = run_client(deps, face.target, [
        call("chat", {"persona_id": "Kira", "message": "What is entropy?"}),
    ])
    r = step_ok(doc, 0)
    assert r["structuredContent"]["fallback"] is True and r["content"][0]["text"]
    assert doc["serverRequests"] == []


def test_sampling_error_of_any_length(face, deps):
    """A client whose model fails: the chat tool reports it as a tool error, quoting the
    client's message cut to a bounded size (it is the client's text, of any length)."""
    face.start(["--llm-provider", "ollama", "--llm-url", f"http://127.0.0.1:{closed_port()}",
                "--llm-model", "fake", "--llm-connect-timeout-ms", "500"])
    long_msg = "the client's model is out of tokens " + "x" * 5000
    doc = run_client(deps, face.target, [
        call("chat", {"persona_id": "Kira", "message": "What is entropy?"}),
        req("ping"),
    ], sample_error=long_msg)
    r = step_ok(doc, 0)
    assert r["isError"] is True, r
    text = r["content"][0]["text"]
    assert text.startswith("No LLM backend is reachable and sampling failed: "), text[:120]
    assert "the client's model is out of tokens xxx" in text, text[:120]
    assert 100 < len(text) < 400, len(text)
    assert step_ok(doc, 1) == {}


def test_fixtures_need_the_flag_and_talk_back(face, deps):
    """The conformance fixtures over both transports (the suite itself is HTTP-only)."""
    face.start(["--conformance-fixtures", "--llm-provider", "none"])
    doc = run_client(deps, face.target, [
        {"op": "list_tools"},
        call("test_sampling", {"prompt": "Say hi"}),
        call("test_elicitation", {"message": "Who are you?"}),
        call("test_tool_with_logging"),
        call("test_tool_with_progress", progress=True),
        call("test_error_handling"),
        req("resources/read", {"uri": "test://template/42/data"}),
        req("prompts/get", {"name": "test_prompt_with_arguments",
                            "arguments": {"arg1": "x"}}),
    ], sample="hi there", elicit={"username": "ann", "email": "ann@example.com"})
    names = {t["name"] for t in step_ok(doc, 0)["tools"]}
    assert {"test_simple_text", "test_sampling", "test_elicitation"} <= names
    assert PRODUCT_TOOLS <= names
    assert step_ok(doc, 1)["content"][0]["text"] == "LLM response: hi there"
    assert "ann@example.com" in step_ok(doc, 2)["content"][0]["text"]
    methods = [q["method"] for q in doc["serverRequests"]]
    assert methods == ["sampling/createMessage", "elicitation/create"]
    logs = [n for n in doc["notifications"] if n["method"] == "notifications/message"]
    assert len(logs) >= 3 and all(n["params"]["level"] == "info" for n in logs)
    prog = [p["progress"] for p in doc["steps"][4]["progress"]]
    assert len(prog) >= 2 and prog == sorted(prog) and set(prog) <= {0, 50, 100}
    assert step_ok(doc, 5)["isError"] is True
    assert json.loads(step_ok(doc, 6)["contents"][0]["text"])["id"] == "42"
    assert doc["steps"][7]["error"]["code"] == -32602  # arg2 missing

    # Without the client capability, sampling is a tool error, not a hang.
    doc = run_client(deps, face.target, [call("test_sampling", {"prompt": "Say hi"})])
    assert step_ok(doc, 0)["isError"] is True


# --- HTTP only -------------------------------------------------------------------------------------


class Http:
    """Raw Streamable HTTP requests on one server (http.client, one connection each)."""

    ACCEPT = "application/json, text/event-stream"

    def __init__(self, port):
        self.port = port
        self.session = None

    def request(self, method, body=None, headers=None, host=None, raw=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=RAW_TIMEOUT)
        try:
            conn.putrequest(method, "/mcp", skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", host or f"127.0.0.1:{self.port}")
            h = {"Accept": self.ACCEPT, "Content-Type": "application/json",
                 "MCP-Protocol-Version": "2025-11-25"}
            if self.session:
                h["Mcp-Session-Id"] = self.session
            h.update(headers or {})
            data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                                else b"")
            for k, v in h.items():
                if v is not None:
                    conn.putheader(k, v)
            if method in ("POST", "PUT") or data:
                conn.putheader("Content-Length", str(len(data)))
            conn.endheaders(data if data else None)
            resp = conn.getresponse()
            payload = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload
        finally:
            conn.close()

    @staticmethod
    def messages(headers, payload):
        """The JSON-RPC messages of a JSON or SSE response body."""
        if headers.get("content-type", "").startswith("text/event-stream"):
            out = []
            for event in payload.decode().split("\n\n"):
                data = [ln[5:].lstrip() for ln in event.split("\n") if ln.startswith("data:")]
                if data and "".join(data).strip():
                    out.append(json.loads("\n".join(data)))
            return out
        return [json.loads(payload)] if payload else []

    def initialize(self):
        self.session = None
        status, headers, payload = self.request("POST", {
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "raw", "version": "1"}}})
        assert status == 200, payload
        self.session = headers["mcp-session-id"]
        status, _, payload = self.request(
            "POST", {"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert status == 202 and payload == b""
        return self.session


def rpc_error(payload):
    doc = json.loads(payload)
    assert doc["jsonrpc"] == "2.0" and "result" not in doc, doc
    return doc["error"]


class KeepAlive:
    """Raw Streamable HTTP requests on one kept-alive connection (http.client)."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=RAW_TIMEOUT)
        self.conn.connect()
        self.sock = self.conn.sock
        self.session = None
        self.next_id = 1

    def post(self, body):
        h = {"Accept": Http.ACCEPT, "Content-Type": "application/json",
             "MCP-Protocol-Version": "2025-11-25"}
        if self.session:
            h["Mcp-Session-Id"] = self.session
        self.conn.request("POST", "/mcp", json.dumps(body).encode(), h)
        resp = self.conn.getresponse()
        payload = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        # http.client drops the socket when the server announced a close.
        assert self.conn.sock is not None, headers
        return resp.status, headers, payload

    def call(self, name, args, meta=None):
        self.next_id += 1
        params = {"name": name, "arguments": args}
        if meta:
            params["_meta"] = meta
        return self.post({"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call",
                          "params": params})

    def initialize(self):
        status, headers, _ = self.post({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "raw", "version": "1"}}})
        assert status == 200
        self.session = headers["mcp-session-id"]
        status, _, payload = self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert status == 202 and payload == b""

    def same_connection(self):
        return self.conn.sock is self.sock


def plain_result(status, headers, payload):
    """The result of a tools/call answered with plain JSON on a kept-alive connection."""
    assert status == 200, payload
    assert headers["content-type"] == "application/json", headers
    assert int(headers["content-length"]) == len(payload)
    assert headers.get("connection", "").lower() != "close", headers
    doc = json.loads(payload)
    assert "error" not in doc, doc
    return doc["result"]


def test_http_tool_calls_plain_json_keep_alive(server_factory):
    """tools/call that cannot stream gets application/json, and the connection stays open
    for the next request, whether the tool ran on the service thread (RAM only) or on a
    worker; with a progressToken the answer is an SSE stream."""
    srv = server_factory(args=["--llm-provider", "none"])
    c = KeepAlive(srv.port)
    c.initialize()
    assert c.same_connection()  # the 202 kept it open too
    listed = plain_result(*c.call("persona_list", {}))["structuredContent"]["personas"]
    aria = next(p for p in listed if p["name"] == "Aria")
    # persona_get: the first call loads the memory statistics on a worker, later ones are
    # answered from RAM on the service thread. Both must give the same, correct answer.
    answers = [plain_result(*c.call("persona_get", {"persona_id": aria["id"]}))
               for _ in range(5)]
    for r in answers:
        assert r["isError"] is False
        assert r["structuredContent"]["persona"]["id"] == aria["id"]
        assert r["structuredContent"]["persona"]["name"] == "Aria"
        assert json.loads(r["content"][0]["text"]) == r["structuredContent"]
    assert all(r == answers[1] for r in answers[2:])
    # Worker tools, and a tool error, are plain JSON as well.
    stored = plain_result(*c.call("memory_store", {"persona_id": aria["id"],
                                                   "content": "The dragon sleeps at noon."}))
    assert stored["isError"] is False
    found = plain_result(*c.call("memory_search", {"persona_id": aria["id"],
                                                   "query": "dragon", "n_results": 3}))
    assert found["structuredContent"]["memories"][0]["content"] == "The dragon sleeps at noon."
    missing = plain_result(*c.call("persona_get", {"persona_id": "no-such-persona"}))
    assert missing["isError"] is True
    # A batch of plain calls: one JSON array.
    status, headers, payload = c.post([
        {"jsonrpc": "2.0", "id": 90, "method": "tools/call",
         "params": {"name": "persona_get", "arguments": {"persona_id": aria["id"]}}},
        {"jsonrpc": "2.0", "id": 91, "method": "ping"}])
    assert status == 200 and headers["content-type"] == "application/json"
    assert sorted(m["id"] for m in json.loads(payload)) == [90, 91]
    assert c.same_connection()
    # With a progressToken: SSE (the server may send progress before the result), chunked,
    # so the connection still stays open.
    for token in ("t1", 7):
        status, headers, payload = c.call("persona_get", {"persona_id": aria["id"]},
                                          meta={"progressToken": token})
        assert status == 200 and headers["content-type"].startswith("text/event-stream")
        assert headers.get("transfer-encoding") == "chunked"
        msgs = Http.messages(headers, payload)
        assert msgs[-1]["result"]["structuredContent"]["persona"]["id"] == aria["id"]
    plain_result(*c.call("persona_get", {"persona_id": aria["id"]}))
    assert c.same_connection()


def test_http_progress_is_streamed(server_factory):
    """A tool that reports progress, given a progressToken, answers with SSE: the
    notifications/progress events, then the result; the connection stays open."""
    srv = server_factory(args=["--conformance-fixtures"])
    c = KeepAlive(srv.port)
    c.initialize()
    status, headers, payload = c.call("test_tool_with_progress", {},
                                      meta={"progressToken": "p7"})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    msgs = Http.messages(headers, payload)
    progress = [m["params"] for m in msgs if m.get("method") == "notifications/progress"]
    assert [p["progress"] for p in progress] == [0, 50, 100], msgs
    assert all(p["progressToken"] == "p7" for p in progress)
    assert "result" in msgs[-1]
    assert c.same_connection()
    # A tool that logs streams even without a progressToken.
    c2 = KeepAlive(srv.port)
    c2.initialize()
    status, headers, payload = c2.call("test_tool_with_logging", {})
    assert headers["content-type"].startswith("text/event-stream")
    msgs = Http.messages(headers, payload)
    assert [m["method"] for m in msgs[:-1]] == ["notifications/message"] * 3, msgs
    assert "result" in msgs[-1]


def test_http_session_deleted_then_404(server, deps):
    target = {"kind": "http", "url": f"http://127.0.0.1:{server.port}/mcp"}
    doc = run_client(deps, target, [req("ping"), {"op": "terminate"}])
    assert step_ok(doc, 0) == {}
    assert doc["steps"][1]["ok"], doc["steps"][1]
    sid = doc["steps"][1]["sessionId"]
    assert sid == doc["sessionId"]
    # The SDK reconnecting with the ended session is refused with 404.
    doc = run_client(deps, target, [req("ping")], session_id=sid)
    err = doc["steps"][0]["error"]
    assert err.get("status") == 404, err
    # So is a raw request.
    h = Http(server.port)
    h.session = sid
    status, _, payload = h.request("POST", {"jsonrpc": "2.0", "id": 2, "method": "ping"})
    assert status == 404 and rpc_error(payload)["code"] == -32001
    status, _, _ = h.request("DELETE")
    assert status == 404


def test_http_origin_and_host(server, deps):
    target = {"kind": "http", "url": f"http://127.0.0.1:{server.port}/mcp"}
    doc = run_client(deps, target, [], headers={"Origin": "http://evil.example.com"},
                     expect_connect=False)
    assert not doc["ok"] and doc["error"].get("status") == 403, doc["error"]
    # A loopback Origin is fine.
    doc = run_client(deps, target, [req("ping")],
                     headers={"Origin": f"http://localhost:{server.port}"})
    assert step_ok(doc, 0) == {}

    h = Http(server.port)
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "raw", "version": "1"}}}
    status, _, payload = h.request("POST", init, headers={"Origin": "http://evil.example.com"})
    assert status == 403
    err = json.loads(payload)
    assert err["id"] is None and err["error"]["code"] == -32000
    status, _, _ = h.request("POST", init, host="evil.example.com")
    assert status == 403
    status, _, _ = h.request("POST", init, host=f"evil.example.com:{server.port}",
                             headers={"Origin": f"http://evil.example.com:{server.port}"})
    assert status == 403
    for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}"):
        status, headers, _ = h.request("POST", init, host=host)
        assert status == 200 and headers.get("mcp-session-id")


def test_http_bad_input(server_factory):
    srv = server_factory(args=["--max-message-bytes", "65536"])
    h = Http(srv.port)
    sid = h.initialize()

    # Malformed JSON: 400 with -32700.
    status, _, payload = h.request("POST", raw=b'{"jsonrpc":"2.0","id":2,"method":')
    assert status == 400 and rpc_error(payload)["code"] == -32700
    # Unknown method: a JSON-RPC error in a 200 response.
    status, headers, payload = h.request("POST", {"jsonrpc": "2.0", "id": 3, "method": "nope"})
    assert status == 200
    [m] = Http.messages(headers, payload)
    assert m["id"] == 3 and m["error"]["code"] == -32601
    # Wrong parameter types: -32602 for the protocol's own params ...
    status, headers, payload = h.request("POST", {"jsonrpc": "2.0", "id": 4,
                                                  "method": "tools/call",
                                                  "params": {"name": 5}})
    [m] = Http.messages(headers, payload)
    assert status == 200 and m["error"]["code"] == -32602
    status, headers, payload = h.request("POST", {"jsonrpc": "2.0", "id": 5,
                                                  "method": "resources/read",
                                                  "params": {"uri": ["x"]}})
    [m] = Http.messages(headers, payload)
    assert m["error"]["code"] == -32602
    # ... and a tool error for a tool's arguments.
    status, headers, payload = h.request("POST", {"jsonrpc": "2.0", "id": 6,
                                                  "method": "tools/call",
                                                  "params": {"name": "persona_get",
                                                             "arguments": {"persona_id": 5}}})
    [m] = [x for x in Http.messages(headers, payload) if x.get("id") == 6]
    assert m["result"]["isError"] is True
    # Oversized body: 413.
    big = {"jsonrpc": "2.0", "id": 7, "method": "ping", "params": {"pad": "x" * 70000}}
    status, _, payload = h.request("POST", big)
    assert status == 413
    # The session still works.
    status, headers, payload = h.request("POST", {"jsonrpc": "2.0", "id": 8, "method": "ping"})
    assert status == 200 and Http.messages(headers, payload)[0]["result"] == {}
    # Missing Accept types: 406.
    for accept in (None, "application/json", "text/event-stream"):
        status, _, payload = h.request("POST", {"jsonrpc": "2.0", "id": 9, "method": "ping"},
                                       headers={"Accept": accept})
        assert status == 406, accept
    # Wrong Content-Type: 415.
    status, _, _ = h.request("POST", {"jsonrpc": "2.0", "id": 10, "method": "ping"},
                             headers={"Content-Type": "text/plain"})
    assert status == 415
    # Missing session id: 400; unknown session id: 404.
    status, _, payload = h.request("POST", {"jsonrpc": "2.0", "id": 11, "method": "ping"},
                                   headers={"Mcp-Session-Id": None})
    assert status == 400 and rpc_error(payload)["code"] == -32000
    status, _, _ = h.request("POST", {"jsonrpc": "2.0", "id": 12, "method": "ping"},
                             headers={"Mcp-Session-Id": "0" * 32})
    assert status == 404
    # Unsupported protocol version: 400; every supported one is accepted.
    status, _, payload = h.request("POST", {"jsonrpc": "2.0", "id": 13, "method": "ping"},
                                   headers={"MCP-Protocol-Version": "1999-01-01"})
    assert status == 400 and "1999-01-01" in rpc_error(payload)["message"]
    for v in ("2025-11-25", "2025-06-18", "2025-03-26"):
        status, _, _ = h.request("POST", {"jsonrpc": "2.0", "id": 14, "method": "ping"},
                                 headers={"MCP-Protocol-Version": v})
        assert status == 200, v
    # Notifications and responses only: 202 with no body.
    status, _, payload = h.request("POST", {"jsonrpc": "2.0", "method": "notifications/cancelled",
                                            "params": {"requestId": 99}})
    assert status == 202 and payload == b""
    # Other methods: 405 with Allow.
    status, headers, _ = h.request("PUT", {"jsonrpc": "2.0", "id": 15, "method": "ping"})
    assert status == 405 and "POST" in headers.get("allow", "")
    # GET needs Accept: text/event-stream (406) and a session (400).
    status, _, _ = h.request("GET", headers={"Accept": "application/json",
                                             "Content-Type": None})
    assert status == 406
    status, _, _ = h.request("GET", headers={"Accept": "text/event-stream", "Content-Type": None,
                                             "Mcp-Session-Id": None})
    assert status == 400
    status, _, _ = h.request("GET", headers={"Accept": "text/event-stream", "Content-Type": None,
                                             "Mcp-Session-Id": "f" * 32})
    assert status == 404
    # Version negotiation: an unknown revision gets the server's latest.
    other = Http(srv.port)
    status, headers, payload = other.request("POST", {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2099-01-01", "capabilities": {},
                   "clientInfo": {"name": "raw", "version": "1"}}})
    assert status == 200
    assert Http.messages(headers, payload)[0]["result"]["protocolVersion"] == "2025-11-25"
    # A second initialize on a live session is refused.
    status, headers, payload = h.request("POST", {
        "jsonrpc": "2.0", "id": 16, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "raw", "version": "1"}}})
    assert status == 400 and rpc_error(payload)["code"] == -32600
    # DELETE ends the session.
    status, _, _ = h.request("DELETE", headers={"Content-Type": None})
    assert status == 200
    status, _, _ = h.request("POST", {"jsonrpc": "2.0", "id": 17, "method": "ping"})
    assert status == 404
    assert sid


# --- stdio only ------------------------------------------------------------------------------------


def test_stdio_bad_input(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    proc = subprocess.Popen([server_binary(), "--stdio", "--data-dir", str(data),
                             "--max-message-bytes", "65536", "--llm-provider", "none"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    lines = [
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                    "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                               "clientInfo": {"name": "raw", "version": "1"}}}),
        json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        '{"jsonrpc":"2.0","id":2,"method":',  # malformed
        json.dumps({"jsonrpc": "2.0", "id": 3, "method": "nope/nope"}),
        json.dumps({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": 5}}),
        json.dumps({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                    "params": {"name": "persona_get", "arguments": {"persona_id": 5}}}),
        json.dumps({"jsonrpc": "2.0", "id": 6, "method": "ping",
                    "params": {"pad": "x" * 100000}}),  # over --max-message-bytes
        json.dumps({"jsonrpc": "2.0", "id": 7, "method": "ping"}) + "\r",  # CRLF tolerated
    ]
    last = json.dumps({"jsonrpc": "2.0", "id": 8, "method": "ping"})  # no newline at EOF
    stdin = ("\n".join(lines) + "\n" + last).encode()
    try:
        out, err = proc.communicate(stdin, timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"persona-mcp --stdio did not exit at EOF:\n{err.decode()[-2000:]}")
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"AddressSanitizer" not in err
    msgs = []
    for raw in out.decode().split("\n"):
        if raw:
            msgs.append(json.loads(raw))  # stdout carries only JSON-RPC messages
    by_id = {}
    anonymous = []
    for m in msgs:
        if m.get("id") is None:
            anonymous.append(m)
        else:
            by_id[m["id"]] = m
    assert by_id[1]["result"]["protocolVersion"] == "2025-06-18"
    assert by_id[3]["error"]["code"] == -32601
    assert by_id[4]["error"]["code"] == -32602
    assert by_id[5]["result"]["isError"] is True
    assert 6 not in by_id
    codes = sorted(m["error"]["code"] for m in anonymous)
    assert codes == [-32700, -32600], anonymous  # malformed; oversized
    assert by_id[7]["result"] == {}
    assert by_id[8]["result"] == {}
    assert b"serving MCP on stdio" in err  # logs go to stderr


def test_stdio_many_calls_at_once(tmp_path):
    """Lines that arrive together (RAM-only tools answered on the reading thread, the
    rest on workers) each get exactly one whole, correct answer line."""
    data = tmp_path / "data"
    data.mkdir()
    proc = subprocess.Popen([server_binary(), "--stdio", "--data-dir", str(data),
                             "--llm-provider", "none"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)

    def send(*msgs):
        proc.stdin.write("".join(json.dumps(m) + "\n" for m in msgs).encode())
        proc.stdin.flush()

    def read(n):
        out = {}
        for _ in range(n):
            line = proc.stdout.readline()
            assert line.endswith(b"\n"), line
            m = json.loads(line)
            out[m["id"]] = m
        return out

    try:
        send({"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                         "clientInfo": {"name": "raw", "version": "1"}}},
             {"jsonrpc": "2.0", "method": "notifications/initialized"},
             {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
              "params": {"name": "persona_list", "arguments": {}}})
        got = read(2)
        personas = got[2]["result"]["structuredContent"]["personas"]
        ids = {p["id"]: p["name"] for p in personas}
        calls = []
        for i in range(60):
            pid = list(ids)[i % len(ids)]
            name = "persona_get" if i % 3 else "memory_search"
            args = {"persona_id": pid} if i % 3 else {"persona_id": pid, "query": "x"}
            calls.append({"jsonrpc": "2.0", "id": 100 + i, "method": "tools/call",
                          "params": {"name": name, "arguments": args}})
        send(*calls)
        got = read(len(calls))
        assert sorted(got) == [c["id"] for c in calls]
        for c in calls:
            r = got[c["id"]]["result"]
            assert r["isError"] is False, r
            pid = c["params"]["arguments"]["persona_id"]
            if c["params"]["name"] == "persona_get":
                assert r["structuredContent"]["persona"]["id"] == pid
                assert r["structuredContent"]["persona"]["name"] == ids[pid]
            else:
                assert r["structuredContent"]["memories"] == []
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
        assert proc.stdout.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert b"AddressSanitizer" not in proc.stderr.read()
