"""Remote embedders and re-embedding (issue 3 item 4).

The fake LLM (tests/fake_llm.py) answers Ollama's /api/embed and OpenAI's /v1/embeddings with
deterministic vectors. A persona's collection records the model that built it: switching the
embedder makes searches fail clearly until `persona-mcp reembed` rebuilds the vectors.
"""
import json
import os
import subprocess
import urllib.request

from conftest import Server, assert_error
from test_conversation import Fake

MEMORY_ERROR = -32002


def new_server(tmp_path, name, args, data_dir=None):
    d = tmp_path / name
    d.mkdir()
    return Server(d, args, data_dir=data_dir).start()


def embed_requests(fake, path):
    with urllib.request.urlopen(f"{fake.url}/_fake/requests?path={path}", timeout=10) as r:
        return json.loads(r.read())


def store_and_search(srv):
    for text in ("the lighthouse keeper lost his lantern", "we baked bread in the old oven",
                 "a storm wrecked the fishing boats"):
        assert srv.result("memory.store", {"persona_id": "mira", "content": text})["stored"]
    hits = srv.result("memory.search", {"persona_id": "mira", "query": "bread oven",
                                        "n_results": 3})["memories"]
    return [h["content"] for h in hits]


def test_ollama_embedder_then_reembed_to_builtin(tmp_path):
    fake = Fake(tmp_path / "fake", ["--embed-dim", "64"])
    try:
        srv = new_server(tmp_path, "a", ["--embedder", "ollama", "--embed-url", fake.url,
                                         "--embed-model", "fake-embed"])
        top = store_and_search(srv)
        assert top[0] == "we baked bread in the old oven"
        st = srv.result("memory.stats", {"persona_id": "mira"})
        assert st["embedding_model"] == "ollama:fake-embed" and st["embedding_dim"] == 64
        reqs = embed_requests(fake, "/api/embed")
        assert reqs and reqs[0]["body"]["model"] == "fake-embed"
        srv.stop_clean()

        # Same data, built-in embedder: a clear mismatch error, no silent nonsense.
        b = new_server(tmp_path, "b", [], data_dir=srv.data_dir)
        resp = b.rpc("memory.search", {"persona_id": "mira", "query": "bread"})
        assert_error(resp, MEMORY_ERROR)
        assert "ollama:fake-embed" in resp["error"]["message"]
        assert "reembed" in resp["error"]["message"]
        b.stop_clean()

        out = subprocess.run([os.environ["PMCP_BIN"], "reembed", "--data-dir", srv.data_dir],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "re-embedded 3 memories" in out.stderr
        assert "100%" in out.stderr  # the progress bar reached the end

        c = new_server(tmp_path, "c", [], data_dir=srv.data_dir)
        hits = c.result("memory.search", {"persona_id": "mira", "query": "bread oven"})
        assert hits["memories"][0]["content"] == "we baked bread in the old oven"
        st = c.result("memory.stats", {"persona_id": "mira"})
        assert st["embedding_model"] == "builtin-hash-v1/384" and st["total_memories"] == 3
        c.stop_clean()
    finally:
        fake.stop()


def test_openai_embedder(tmp_path):
    fake = Fake(tmp_path / "fake", ["--embed-dim", "32"])
    try:
        srv = new_server(tmp_path, "a", ["--embedder", "openai", "--embed-url", fake.url,
                                         "--embed-model", "text-embed-fake"])
        top = store_and_search(srv)
        assert top[0] == "we baked bread in the old oven"
        assert embed_requests(fake, "/v1/embeddings")
        srv.stop_clean()
    finally:
        fake.stop()


def test_unreachable_embedder_is_a_clear_error(tmp_path):
    srv = new_server(tmp_path, "a", ["--embedder", "ollama", "--embed-url", "http://127.0.0.1:9"])
    resp = srv.rpc("memory.store", {"persona_id": "mira", "content": "anything"})
    assert_error(resp, MEMORY_ERROR)
    assert "embedding failed" in resp["error"]["message"]
    srv.stop_clean()
