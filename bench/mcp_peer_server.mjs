#!/usr/bin/env node
// mcp_peer_server.mjs - the peer of bench/mcp.sh: a server on the official MCP TypeScript
// SDK (@modelcontextprotocol/sdk, McpServer) doing in memory what persona-mcp's
// persona_get and memory_search tools do, so the SDK's own per-call cost (transport,
// JSON-RPC, zod validation, result framing) is measured beside ours in the same run.
//
//   node mcp_peer_server.mjs --deps DIR --stdio
//   node mcp_peer_server.mjs --deps DIR --http --port-file FILE     (binds 127.0.0.1, port 0)
//
// Design. Data as persona-mcp holds it after bench/mcp.sh seeds it: two personas
// (profile, interaction state) and MEMORIES memories of persona "bench" with ~200-char
// texts and 384-dim embeddings from a built-in embedder like persona-mcp's (feature
// hashing of lower-cased words and character 3-grams into signed buckets, L2-normalised).
// Tools (the same names, arguments and result shapes as persona-mcp's; the JSON result is
// returned as text content and as structuredContent, as persona-mcp does):
//   persona_list   {personas: [...]}
//   persona_get    {persona, interaction_state, memory_stats}
//   memory_search  embeds the query, exact top-k by dot product over the persona's
//                  vectors, counts an access on each hit (in memory), returns the rows.
// HTTP: stateful Streamable HTTP (one StreamableHTTPServerTransport + McpServer per session,
// sessions keyed by Mcp-Session-Id), node:http on 127.0.0.1 only, the SDK's defaults (SSE
// answers). DELETE ends a session. Logs nothing to stdout in stdio mode.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';

const args = process.argv.slice(2);
const opt = { memories: 1000 };
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--deps') opt.deps = args[++i];
  else if (a === '--stdio') opt.stdio = true;
  else if (a === '--http') opt.http = true;
  else if (a === '--port-file') opt.portFile = args[++i];
  else if (a === '--memories') opt.memories = Number(args[++i]);
  else { process.stderr.write(`mcp_peer_server: unknown option ${a}\n`); process.exit(2); }
}
const deps = opt.deps || process.env.MCP_DEPS_DIR;
if (!deps || opt.stdio === opt.http) {
  process.stderr.write('usage: mcp_peer_server.mjs --deps DIR (--stdio | --http --port-file FILE)\n');
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(deps), 'package.json'));
const { McpServer } = require('@modelcontextprotocol/sdk/server/mcp.js');
const { StdioServerTransport } = require('@modelcontextprotocol/sdk/server/stdio.js');
const { StreamableHTTPServerTransport } = require('@modelcontextprotocol/sdk/server/streamableHttp.js');
const { isInitializeRequest } = require('@modelcontextprotocol/sdk/types.js');
const z = require('zod');

// ---- data -----------------------------------------------------------------------------------
const DIM = 384;
function fnv1a(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 0x01000193); }
  return h >>> 0;
}
function embed(text) {
  const v = new Float32Array(DIM);
  const t = text.toLowerCase();
  for (const w of t.split(/[^a-z0-9]+/)) {
    if (!w) continue;
    const h = fnv1a('w:' + w);
    v[h % DIM] += (h & 0x80000000) ? -1 : 1;
    const g = ` ${w} `;
    for (let i = 0; i + 3 <= g.length; i++) {
      const k = fnv1a(g.substr(i, 3));
      v[k % DIM] += (k & 0x80000000) ? -0.5 : 0.5;
    }
  }
  let s = 0;
  for (let i = 0; i < DIM; i++) s += v[i] * v[i];
  s = s > 0 ? 1 / Math.sqrt(s) : 0;
  for (let i = 0; i < DIM; i++) v[i] *= s;
  return v;
}
const WORDS = ['the', 'a', 'memory', 'persona', 'music', 'dragon', 'travel', 'story', 'ancient',
  'spell', 'market', 'friend', 'quiet', 'river', 'lantern', 'bard', 'scholar', 'library', 'night',
  'warm', 'bread', 'song', 'letter', 'mountain', 'ship', 'remember', 'laughed', 'about', 'with',
  'into', 'under', 'golden', 'curious', 'tavern', 'north', 'winter'];
let seed = 12345;
function rnd() { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed; }
function text(prefix) {
  let s = prefix;
  while (s.length < 200) s += ' ' + WORDS[rnd() % WORDS.length];
  return s;
}
const now = new Date().toISOString();
const personas = new Map();
function addPersona(name, description, traits, topics) {
  const id = randomUUID();
  personas.set(id, {
    persona: { id, name, description, personality_traits: traits, topic_preferences: topics,
      charisma: 18, intelligence: 14, social_rank: 'performer', created_at: now },
    interaction_state: { interest_level: 50, interaction_fatigue: 0, current_priority: 'social',
      available_time: 600, social_energy: 150, cooldown_until: 0.0, is_available: true },
  });
}
addPersona('Aria', 'A vibrant elven bard with sparkling eyes and an infectious laugh. She loves stories, music, and meeting new people.',
  { extroverted: 90, creative: 85, empathetic: 80, curious: 75, optimistic: 85 },
  { music: 95, stories: 90, travel: 85, gossip: 80, magic: 70, adventure: 85, art: 80, local_news: 75 });
addPersona('Kira', 'A brilliant human scholar with keen analytical mind. She prefers deep conversations about knowledge and discovery.',
  { introverted: 70, analytical: 95, focused: 90, methodical: 85, reserved: 75 },
  { research: 95, magic: 90, history: 85, philosophy: 80, books: 85, discovery: 90, gossip: 20, small_talk: 25 });
const memories = new Map(); // persona_id -> rows
{
  const rows = [];
  for (let i = 0; i < opt.memories; i++) {
    const content = text(`note ${i + 1}:`);
    rows.push({ id: randomUUID(), persona_id: 'bench', content, memory_type: 'observation',
      importance: 0.5, emotional_valence: 0, related_personas: [], visibility: 'private',
      metadata: { persona: 'bench', source: 'bench', n: i + 1 }, created_at: now,
      accessed_count: 0, last_accessed: null, vec: embed(content) });
  }
  memories.set('bench', rows);
}

function result(obj) {
  return { content: [{ type: 'text', text: JSON.stringify(obj) }], structuredContent: obj, isError: false };
}
function fail(msg) {
  return { content: [{ type: 'text', text: msg }], isError: true };
}

function buildServer() {
  const server = new McpServer({ name: 'mcp-peer', version: '1.0.0' });
  server.registerTool('persona_list', { title: 'List personas', description: 'All personas.', inputSchema: {} },
    async () => result({ personas: [...personas.values()].map((p) => ({ id: p.persona.id, name: p.persona.name,
      description: p.persona.description, available: true, social_energy: 150, current_priority: 'social',
      cooldown_remaining: 0.0 })) }));
  server.registerTool('persona_get', {
    title: 'Get a persona', description: "A persona's profile, interaction state and memory statistics.",
    inputSchema: { persona_id: z.string() },
  }, async ({ persona_id }) => {
    const p = personas.get(persona_id);
    if (!p) return fail(`Persona not found: ${persona_id}`);
    return result({ ...p, memory_stats: { total_memories: (memories.get(persona_id) || []).length } });
  });
  server.registerTool('memory_search', {
    title: 'Search memories', description: "Semantic search of a persona's memories.",
    inputSchema: { persona_id: z.string(), query: z.string(), n_results: z.number().int().min(1).max(1000).optional(),
      min_importance: z.number().optional(), memory_type: z.string().optional(),
      visibility: z.string().optional(), hybrid: z.boolean().optional() },
  }, async ({ persona_id, query, n_results }) => {
    const rows = memories.get(persona_id) || [];
    const k = Math.min(n_results || 5, rows.length);
    const q = embed(query);
    const top = []; // [score, row] kept sorted, best first
    for (const r of rows) {
      const v = r.vec;
      let s = 0;
      for (let i = 0; i < DIM; i++) s += v[i] * q[i];
      if (top.length < k || s > top[top.length - 1][0]) {
        let j = top.length < k ? top.length : k - 1;
        top[j] = [s, r];
        while (j > 0 && top[j - 1][0] < s) { const t = top[j - 1]; top[j - 1] = top[j]; top[j] = t; j--; }
      }
    }
    const when = new Date().toISOString();
    const out = top.map(([s, r]) => {
      r.accessed_count++;
      r.last_accessed = when;
      const { vec, ...row } = r;
      return { ...row, memory_id: r.id, similarity: Math.round(Math.max(0, Math.min(1, s)) * 1e6) / 1e6 };
    });
    return result({ memories: out, query, persona_id, result_count: out.length, total_results: out.length, hybrid: false });
  });
  return server;
}

if (opt.stdio) {
  const server = buildServer();
  await server.connect(new StdioServerTransport());
} else {
  const transports = new Map();
  const httpServer = http.createServer(async (req, res) => {
    try {
      if (new URL(req.url, 'http://x').pathname !== '/mcp') { res.writeHead(404).end(); return; }
      const sid = req.headers['mcp-session-id'];
      if (req.method === 'POST') {
        const chunks = [];
        for await (const c of req) chunks.push(c);
        let body;
        try { body = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch {
          res.writeHead(400).end(); return;
        }
        let t = sid ? transports.get(sid) : undefined;
        if (!t) {
          if (sid || !isInitializeRequest(body)) { res.writeHead(sid ? 404 : 400).end(); return; }
          t = new StreamableHTTPServerTransport({
            sessionIdGenerator: () => randomUUID(),
            onsessioninitialized: (id) => { transports.set(id, t); },
          });
          t.onclose = () => { if (t.sessionId) transports.delete(t.sessionId); };
          await buildServer().connect(t);
        }
        await t.handleRequest(req, res, body);
      } else if (req.method === 'GET' || req.method === 'DELETE') {
        const t = sid ? transports.get(sid) : undefined;
        if (!t) { res.writeHead(sid ? 404 : 400).end(); return; }
        await t.handleRequest(req, res);
      } else {
        res.writeHead(405).end();
      }
    } catch (e) {
      process.stderr.write(`mcp_peer_server: ${e && e.stack || e}\n`);
      if (!res.headersSent) res.writeHead(500).end();
    }
  });
  httpServer.keepAliveTimeout = 60000;
  httpServer.listen(0, '127.0.0.1', () => {
    const port = httpServer.address().port;
    fs.writeFileSync(opt.portFile + '.tmp', `${port}\n`);
    fs.renameSync(opt.portFile + '.tmp', opt.portFile);
  });
  const stop = () => { httpServer.close(); for (const t of transports.values()) t.close(); process.exit(0); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
