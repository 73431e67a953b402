"""HTTP endpoints on the WebSocket port (/health, /, /metrics, unknown paths) and the
process surface around them (--help, --version, flags over environment).
"""

import json
import math
import os
import re
import subprocess

from conftest import Conn, RawWs, run, server_binary

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,\s*|$)')


def parse_prometheus(text):
    """Strict-enough parser of the text exposition format: [(name, {labels}, value)], types."""
    samples, types = [], {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] == "TYPE":
                assert parts[3] in ("counter", "gauge", "histogram", "summary", "untyped"), line
                types[parts[2]] = parts[3]
            continue
        m = SAMPLE_RE.match(line)
        assert m, f"bad sample line: {line!r}"
        labels = {}
        if m.group(3):
            body = m.group(3)
            pos = 0
            while pos < len(body):
                lm = LABEL_RE.match(body, pos)
                assert lm, f"bad labels in {line!r}"
                labels[lm.group(1)] = lm.group(2)
                pos = lm.end()
        value = float(m.group(4))  # accepts +Inf, NaN
        samples.append((m.group(1), labels, value))
    return samples, types


def get_json(server, path):
    status, hdrs, body = server.http_get(path)
    assert status == 200, (path, status, body[:200])
    assert "json" in hdrs.get("content-type", ""), hdrs
    return json.loads(body)


def test_health(server):
    h = get_json(server, "/health")
    assert h["status"] == "ok"
    assert isinstance(h["version"], str) and h["version"]
    assert isinstance(h["uptime_seconds"], (int, float)) and h["uptime_seconds"] >= 0
    assert type(h["connections"]) is int and h["connections"] >= 0

    async def with_open_connections():
        async with Conn(server.url) as a, Conn(server.url) as b:
            await a.result("system.models")
            await b.result("system.models")
            return get_json(server, "/health")["connections"]

    assert run(with_open_connections()) >= 2


def test_root(server):
    r = get_json(server, "/")
    assert "status" in r and isinstance(r["status"], str)


def test_unknown_paths_404(server):
    for path in ("/nope", "/health/extra", "/metrics2", "/mcpx", "/api/personas"):
        status, _, _ = server.http_get(path)
        assert status == 404, (path, status)
    # Still healthy afterwards.
    assert get_json(server, "/health")["status"] == "ok"


def test_upgrade_on_other_path_refused(server):
    r = RawWs(server.host, server.port)
    try:
        status = r.handshake(path="/not-mcp")
    finally:
        r.close()
    assert status in (400, 403, 404), status


def test_metrics(server):
    async def traffic():
        async with Conn(server.url) as c:
            for _ in range(5):
                await c.result("persona.list")
            await c.result("persona.switch", {"persona_id": "Aria"})
            await c.error("persona.switch", {"persona_id": "nobody-here"}, code=-32000)
            await c.result("persona.create", {"name": "metrics-probe"})
            status, hdrs, body = server.http_get("/metrics")
            return status, hdrs, body

    status, hdrs, body = run(traffic())
    assert status == 200
    assert hdrs.get("content-type", "").startswith("text/plain"), hdrs
    samples, types = parse_prometheus(body.decode())

    def series(name):
        return [(lab, v) for n, lab, v in samples if n == name]

    # Requests by method and outcome.
    req = series("pmcp_requests_total")
    assert req, "no pmcp_requests_total"
    assert types.get("pmcp_requests_total") == "counter"
    for lab, v in req:
        assert "method" in lab and "outcome" in lab, lab
        assert v >= 0 and v == int(v)
    lists = sum(v for lab, v in req if lab["method"] == "persona.list")
    assert lists >= 5, req
    switch_outcomes = {lab["outcome"] for lab, v in req
                       if lab["method"] == "persona.switch" and v > 0}
    assert len(switch_outcomes) >= 2, f"success and failure not distinguished: {req}"

    # Latency histogram: cumulative buckets, +Inf == count, sum present.
    assert types.get("pmcp_request_duration_seconds") == "histogram"
    buckets = series("pmcp_request_duration_seconds_bucket")
    counts = series("pmcp_request_duration_seconds_count")
    sums = series("pmcp_request_duration_seconds_sum")
    assert buckets and counts and sums
    groups = {}
    for lab, v in buckets:
        key = tuple(sorted((k, x) for k, x in lab.items() if k != "le"))
        groups.setdefault(key, []).append((float(lab["le"]), v))
    count_by_key = {tuple(sorted(lab.items())): v for lab, v in counts}
    total = 0
    for key, bs in groups.items():
        bs.sort()
        assert math.isinf(bs[-1][0]), f"no +Inf bucket for {key}"
        assert all(a[1] <= b[1] for a, b in zip(bs, bs[1:])), f"non-cumulative {key}: {bs}"
        assert count_by_key.get(key) == bs[-1][1], (key, bs[-1], count_by_key)
        total += bs[-1][1]
    assert total >= 8
    assert all(v >= 0 for _, v in sums)

    # Connections gauge (the request above was made while a connection was open).
    conn = series("pmcp_connections")
    assert conn and conn[0][1] >= 1, conn
    # Pool and database series.
    names = {n for n, _, _ in samples}
    assert any(n.startswith("pmcp_pool_") for n in names), sorted(names)
    assert any(n.startswith("pmcp_db_") for n in names), sorted(names)


def test_metrics_counters_increase(server):
    def lists_total():
        status, _, body = server.http_get("/metrics")
        assert status == 200
        samples, _ = parse_prometheus(body.decode())
        return sum(v for n, lab, v in samples
                   if n == "pmcp_requests_total" and lab.get("method") == "persona.list")

    before = lists_total()
    for _ in range(3):
        server.result("persona.list")
    assert lists_total() == before + 3


# --- process surface ------------------------------------------------------------------------


def test_help_and_version():
    binary = server_binary()
    r = subprocess.run([binary, "--help"], capture_output=True, timeout=10)
    assert r.returncode == 0
    text = (r.stdout + r.stderr).decode()
    for flag in ("--host", "--port", "--data-dir", "--log-level", "--max-message-bytes",
                 "--max-connections", "--max-inflight", "--idle-timeout"):
        assert flag in text, flag
    r = subprocess.run([binary, "--version"], capture_output=True, timeout=10)
    assert r.returncode == 0
    assert re.search(r"\d+\.\d+\.\d+", (r.stdout + r.stderr).decode())
    r = subprocess.run([binary, "--no-such-flag"], capture_output=True, timeout=10)
    assert r.returncode != 0


def test_version_matches_health(server):
    r = subprocess.run([server_binary(), "--version"], capture_output=True, timeout=10)
    assert get_json(server, "/health")["version"] in (r.stdout + r.stderr).decode()


def test_flags_win_over_environment(server_factory, tmp_path):
    other_db = tmp_path / "elsewhere" / "env.db"
    srv = server_factory(env={"SERVER_PORT": "1", "SERVER_HOST": "203.0.113.1",
                              "DATABASE_PATH": str(other_db)})
    # --port 0, --host 127.0.0.1 and --data-dir from the fixture won.
    assert srv.port != 1
    assert srv.result("persona.list")["total_count"] == 2
    assert os.path.exists(os.path.join(srv.data_dir, "personas.db"))
    assert not other_db.exists()
