#!/usr/bin/env node
// client.mjs - a small scripted MCP client on the official TypeScript SDK, for
// persona-mcp's integration tests (tests/integration/test_mcp.py).
//
//   node client.mjs --deps DIR [options] --url http://127.0.0.1:PORT/mcp
//   node client.mjs --deps DIR [options] -- /path/to/persona-mcp --stdio ...
//
// DIR holds node_modules with @modelcontextprotocol/sdk (tests/mcp/npm_deps.sh
// installs it; env MCP_DEPS_DIR works too). The client connects (initialize and
// notifications/initialized, done by the SDK), runs the steps given with
// --steps JSON (an array), and prints one JSON document on stdout:
//
//   {ok, error?, protocolVersion, serverInfo, capabilities, instructions,
//    sessionId, steps: [{op, ok, ms, result?, error?: {code, message, status?},
//    progress?: [...]}], notifications: [...], serverRequests: [...],
//    stderr?}
//
// Steps ({"op": ...}):
//   list_tools                      every page of tools/list
//   request   method, params        any request; the raw result
//   call      name, arguments       tools/call; options: progress (bool: pass a
//             progressToken and record notifications/progress), cancel_after_progress
//             (N: abort after N progress notifications; the SDK then sends
//             notifications/cancelled), timeout_ms
//   notify    method, params        a notification
//   terminate                       HTTP: DELETE the session
//   sleep     ms
//   fetch     url                   GET a JSON document (e.g. the fake LLM's stats)
// "{{N:path.to.value}}" in a step's strings is replaced by that value of step N's
// record, e.g. "{{1:result.structuredContent.persona_id}}" (a whole-string reference
// keeps the value's JSON type; inside a longer string it is interpolated).
//
// Options: --sample TEXT (declare sampling and answer sampling/createMessage with
// TEXT), --sample-error TEXT (declare sampling and fail every sampling request with
// that message), --elicit JSON (declare elicitation and accept with JSON content),
// --header "K: V" (HTTP, repeatable), --session-id ID (HTTP: reuse a session
// without initializing, as the SDK does to reconnect), --timeout MS (per
// request, default 20000), --env K=V (stdio server, repeatable).
//
// Exit codes: 0 connected and ran the steps (step failures are in the JSON),
// 1 usage, 2 connect/initialize failed (still prints the JSON).

import { createRequire } from 'node:module';
import path from 'node:path';

function usage(msg) {
  process.stderr.write(`client.mjs: ${msg}\n`);
  process.exit(1);
}

const opts = { headers: {}, env: {}, steps: [], timeout: 20000 };
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--') {
      opts.command = argv.slice(i + 1);
      break;
    } else if (a === '--url') opts.url = next();
    else if (a === '--deps') opts.deps = next();
    else if (a === '--steps') opts.steps = JSON.parse(next());
    else if (a === '--sample') opts.sample = next();
    else if (a === '--sample-error') opts.sampleError = next();
    else if (a === '--elicit') opts.elicit = JSON.parse(next());
    else if (a === '--session-id') opts.sessionId = next();
    else if (a === '--timeout') opts.timeout = Number(next());
    else if (a === '--header') {
      const h = next();
      const c = h.indexOf(':');
      if (c < 1) usage(`bad header ${h}`);
      opts.headers[h.slice(0, c).trim()] = h.slice(c + 1).trim();
    } else if (a === '--env') {
      const kv = next();
      const e = kv.indexOf('=');
      if (e < 1) usage(`bad --env ${kv}`);
      opts.env[kv.slice(0, e)] = kv.slice(e + 1);
    } else usage(`unknown option ${a}`);
  }
  if (!opts.url === !opts.command) usage('give exactly one of --url URL or -- COMMAND');
  if (!Array.isArray(opts.steps)) usage('--steps must be a JSON array');
}

const deps = opts.deps || process.env.MCP_DEPS_DIR;
if (!deps) usage('--deps DIR (or env MCP_DEPS_DIR) is required');
const require = createRequire(path.join(path.resolve(deps), 'package.json'));
const { Client } = require('@modelcontextprotocol/sdk/client/index.js');
const { StdioClientTransport } = require('@modelcontextprotocol/sdk/client/stdio.js');
const { StreamableHTTPClientTransport } = require('@modelcontextprotocol/sdk/client/streamableHttp.js');
const types = require('@modelcontextprotocol/sdk/types.js');

const out = { ok: false, steps: [], notifications: [], serverRequests: [] };
let stderrText = '';

function errorInfo(e) {
  const info = { message: String(e && e.message ? e.message : e) };
  if (e && typeof e.code === 'number') info.code = e.code;
  if (e && e.data !== undefined) info.data = e.data;
  if (e && e.name) info.name = e.name;
  // StreamableHTTPError carries the HTTP status as its code.
  if (e && e.constructor && e.constructor.name === 'StreamableHTTPError') info.status = e.code;
  return info;
}

const capabilities = {};
if (opts.sample !== undefined || opts.sampleError !== undefined) capabilities.sampling = {};
if (opts.elicit !== undefined) capabilities.elicitation = {};
const client = new Client({ name: 'persona-mcp-tests', version: '1.0.0' }, { capabilities });

client.fallbackNotificationHandler = async (n) => {
  out.notifications.push({ method: n.method, params: n.params });
};
if (opts.sample !== undefined) {
  client.setRequestHandler(types.CreateMessageRequestSchema, async (req) => {
    out.serverRequests.push({ method: req.method, params: req.params });
    return {
      role: 'assistant',
      content: { type: 'text', text: opts.sample },
      model: 'persona-mcp-test-client',
      stopReason: 'endTurn',
    };
  });
}
if (opts.sampleError !== undefined) {
  client.setRequestHandler(types.CreateMessageRequestSchema, async (req) => {
    out.serverRequests.push({ method: req.method, params: req.params });
    throw new types.McpError(types.ErrorCode.InternalError, opts.sampleError);
  });
}
if (opts.elicit !== undefined) {
  client.setRequestHandler(types.ElicitRequestSchema, async (req) => {
    out.serverRequests.push({ method: req.method, params: req.params });
    return { action: 'accept', content: opts.elicit };
  });
}

let transport;
if (opts.url) {
  const tOpts = { requestInit: { headers: opts.headers } };
  if (opts.sessionId) tOpts.sessionId = opts.sessionId;
  transport = new StreamableHTTPClientTransport(new URL(opts.url), tOpts);
} else {
  transport = new StdioClientTransport({
    command: opts.command[0],
    args: opts.command.slice(1),
    env: { ...process.env, ...opts.env },
    stderr: 'pipe',
  });
  transport.stderr?.on('data', (d) => {
    stderrText = (stderrText + d.toString()).slice(-16384);
  });
}

// Record the negotiated protocol version (the SDK hands it to HTTP transports;
// stdio has no such hook, so give it one).
{
  const set = transport.setProtocolVersion?.bind(transport);
  transport.setProtocolVersion = (v) => {
    out.protocolVersion = v;
    if (set) set(v);
  };
}

function lookup(n, keys, text) {
  let x = out.steps[Number(n)];
  for (const k of keys.split('.')) x = x == null ? undefined : x[k];
  if (x === undefined) throw new Error(`unresolved reference ${text}`);
  return x;
}

function resolveRefs(v) {
  if (typeof v === 'string') {
    const whole = /^\{\{(\d+):([^}]*)\}\}$/.exec(v);
    if (whole) return lookup(whole[1], whole[2], v);
    return v.replace(/\{\{(\d+):([^}]*)\}\}/g, (m, n, keys) => String(lookup(n, keys, m)));
  }
  if (Array.isArray(v)) return v.map(resolveRefs);
  if (v && typeof v === 'object') {
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = resolveRefs(x);
    return o;
  }
  return v;
}

async function runStep(rawStep) {
  const t0 = Date.now();
  const rec = await runStepInner(rawStep);
  rec.ms = Date.now() - t0;
  return rec;
}

async function runStepInner(rawStep) {
  const rec = { op: rawStep.op, ok: false };
  let step;
  try {
    step = resolveRefs(rawStep);
  } catch (e) {
    rec.error = errorInfo(e);
    return rec;
  }
  const reqOpts = { timeout: step.timeout_ms || opts.timeout };
  try {
    switch (step.op) {
      case 'list_tools': {
        const tools = [];
        let cursor;
        do {
          const page = await client.listTools(cursor ? { cursor } : {}, reqOpts);
          tools.push(...page.tools);
          cursor = page.nextCursor;
        } while (cursor);
        rec.result = { tools };
        break;
      }
      case 'request':
        rec.result = await client.request(
          { method: step.method, params: step.params || {} },
          types.ResultSchema,
          reqOpts,
        );
        break;
      case 'call': {
        const progress = [];
        const ac = new AbortController();
        if (step.progress || step.cancel_after_progress) {
          reqOpts.onprogress = (p) => {
            progress.push(p);
            if (step.cancel_after_progress && progress.length === step.cancel_after_progress)
              ac.abort('cancelled by the test');
          };
        }
        reqOpts.signal = ac.signal;
        rec.progress = progress;
        rec.result = await client.callTool(
          { name: step.name, arguments: step.arguments || {} },
          types.CallToolResultSchema,
          reqOpts,
        );
        break;
      }
      case 'notify':
        await client.notification({ method: step.method, params: step.params || {} });
        break;
      case 'terminate':
        rec.sessionId = transport.sessionId;
        await transport.terminateSession();
        break;
      case 'fetch': {
        // GET a JSON document (e.g. the fake LLM's /_fake/stats) between steps.
        const r = await fetch(step.url);
        rec.status = r.status;
        rec.result = await r.json();
        break;
      }
      case 'sleep':
        await new Promise((r) => setTimeout(r, step.ms || 0));
        break;
      default:
        throw new Error(`unknown step op ${step.op}`);
    }
    rec.ok = true;
  } catch (e) {
    rec.error = errorInfo(e);
  }
  return rec;
}

let exitCode = 0;
try {
  await client.connect(transport, { timeout: opts.timeout });
  out.protocolVersion ??= null;
  out.serverInfo = client.getServerVersion() ?? null;
  out.capabilities = client.getServerCapabilities() ?? null;
  out.instructions = client.getInstructions() ?? null;
  out.sessionId = opts.url ? transport.sessionId ?? null : null;
  for (const step of opts.steps) out.steps.push(await runStep(step));
  out.ok = true;
} catch (e) {
  out.error = errorInfo(e);
  exitCode = 2;
}
try {
  await client.close();
} catch {
  // the transport may already be gone
}
if (!opts.url) {
  // Give the server's last stderr lines a moment to arrive.
  await new Promise((r) => setTimeout(r, 50));
  out.stderr = stderrText;
}
process.stdout.write(JSON.stringify(out) + '\n');
process.exit(exitCode);
