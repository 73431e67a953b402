#!/usr/bin/python3
"""Peer for the WebSocket benchmarks: the original's stack at its leanest.

A minimal JSON-RPC server on Debian's python3-websockets (10.4) and the stdlib json module,
answering persona.status (and persona.list, to look up ids) from an in-memory dict with the
same result shape as persona-mcp (spec §2.2). No database, no validation layers, no
logging: this is the best case for a Python server, so ratios against it are conservative.

Usage: /usr/bin/python3 bench/peer_ws_server.py [--host 127.0.0.1] [--port 0]
                                                [--port-file FILE]
The bound port is written to --port-file (atomically) once the server listens. SIGTERM or
SIGINT stops it with exit code 0.
"""

import argparse
import asyncio
import http
import json
import os
import signal
import sys
import time
import uuid

import websockets

SEED = [
    ("Aria", "A vibrant elven bard with sparkling eyes and an infectious laugh. "
             "She loves stories, music, and meeting new people.",
     {"extroverted": 90, "creative": 85, "empathetic": 80, "curious": 75, "optimistic": 85},
     {"music": 95, "stories": 90, "travel": 85, "gossip": 80, "magic": 70, "adventure": 85,
      "art": 80, "local_news": 75}, 18, 14, "performer", "social", 150, 600),
    ("Kira", "A brilliant human scholar with keen analytical mind. "
             "She prefers deep conversations about knowledge and discovery.",
     {"introverted": 70, "analytical": 95, "focused": 90, "methodical": 85, "reserved": 75},
     {"research": 95, "magic": 90, "history": 85, "philosophy": 80, "books": 85,
      "discovery": 90, "gossip": 20, "small_talk": 25}, 12, 18, "scholar", "academic", 80, 300),
]


def make_personas():
    personas = {}
    for name, desc, traits, prefs, cha, intel, rank, prio, energy, avail in SEED:
        pid = str(uuid.uuid4())
        personas[pid] = {
            "persona": {"id": pid, "name": name, "description": desc,
                        "personality_traits": traits, "topic_preferences": prefs,
                        "charisma": cha, "intelligence": intel, "social_rank": rank},
            "interaction_state": {"interest_level": 50, "interaction_fatigue": 0,
                                  "current_priority": prio, "available_time": avail,
                                  "social_energy": energy, "cooldown_until": 0.0},
        }
    return personas


PERSONAS = make_personas()
DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def status_result(pid):
    p = PERSONAS[pid]
    state = dict(p["interaction_state"])
    state["is_available"] = (time.time() >= state["cooldown_until"]
                             and state["available_time"] > 30 and state["social_energy"] > 10)
    return {"persona": p["persona"], "interaction_state": state,
            "memory_stats": {"total_memories": 0, "avg_importance": 0.0, "memory_types": {},
                             "high_importance_count": 0, "created_today": 0}}


def list_result():
    items = [{"id": pid, "name": p["persona"]["name"],
              "description": p["persona"]["description"], "available": True,
              "social_energy": p["interaction_state"]["social_energy"],
              "current_priority": p["interaction_state"]["current_priority"],
              "cooldown_remaining": 0} for pid, p in PERSONAS.items()]
    return {"personas": items, "total_count": len(items), "available_count": len(items)}


def error(code, message, rid):
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": rid}


def handle(text, session):
    try:
        req = json.loads(text)
    except ValueError as exc:
        return error(-32700, f"Parse error: {exc}", None)
    if not isinstance(req, dict) or not isinstance(req.get("method"), str):
        return error(-32600, "Invalid Request", None)
    rid = req.get("id")
    params = req.get("params") or {}
    method = req["method"]
    if method == "persona.status":
        pid = params.get("persona_id") or session.get("current")
        if not pid:
            out = error(-32001, "No persona selected. Use persona.switch first", rid)
        elif pid not in PERSONAS:
            out = error(-32000, f"Persona not found: {pid}", rid)
        else:
            out = {"jsonrpc": "2.0", "result": status_result(pid), "id": rid}
    elif method == "persona.list":
        out = {"jsonrpc": "2.0", "result": list_result(), "id": rid}
    else:
        out = error(-32601, f"Method not found: {method}", rid)
    return out if "id" in req else None


async def serve_connection(ws, path):
    session = {}
    async for message in ws:
        if isinstance(message, bytes):
            continue
        out = handle(message, session)
        if out is not None:
            await ws.send(DUMPS(out))


async def only_mcp(path, headers):
    if path != "/mcp":
        return http.HTTPStatus.NOT_FOUND, [], b"not found\n"
    return None


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    args = ap.parse_args()

    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    # aiohttp's defaults in the original: 4 MiB messages, no heartbeat.
    async with websockets.serve(serve_connection, args.host, args.port, max_size=4 << 20,
                                ping_interval=None, process_request=only_mcp,
                                backlog=4096, close_timeout=2) as server:
        port = server.sockets[0].getsockname()[1]
        if args.port_file:
            tmp = args.port_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(f"{port}\n")
            os.rename(tmp, args.port_file)
        print(f"peer_ws_server: listening on {args.host}:{port}", file=sys.stderr)
        await stop


if __name__ == "__main__":
    asyncio.run(main())
