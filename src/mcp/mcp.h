/*
 * mcp.h - the standard MCP face (protocol revision 2025-11-25, also
 * 2025-06-18 and 2025-03-26) over the same domain as the persona protocol.
 *
 * The MCP methods (initialize, tools, resources, prompts, logging,
 * completion, ping, notifications) form their own rpc_table; a transport
 * (Streamable HTTP on /mcp, or --stdio) makes a session speak it with
 * mcp_session_setup(). Tools call the persona protocol's handlers - the
 * same code path as the WebSocket methods - and wrap their results as MCP
 * tool results; nothing is implemented twice.
 *
 * Files: mcp_core.c (lifecycle, sessions, server-to-client requests,
 * notifications), mcp_tools.c (tools), mcp_resources.c (resources and
 * prompts), mcp_fixtures.c (the conformance suite's test_* fixtures, only
 * with --conformance-fixtures).
 */
#ifndef PMCP_MCP_H
#define PMCP_MCP_H

#include "app/app.h"
#include "rpc/rpc.h"

void mcp_init(app *a);
const rpc_table *mcp_table(void);

/* Make s an MCP session (table, state, response routing). */
void mcp_session_setup(rpc_session *s, app *a);
/* Where server-initiated notifications of this session go (the HTTP GET
 * stream, or stdout); NULL detaches. Takes a sink reference. */
void mcp_session_set_notify(rpc_session *s, rpc_sink *sink);
bool mcp_session_has_notify(rpc_session *s);
bool mcp_session_initialized(rpc_session *s);
/* May this request (one message object) send anything before its response:
 * progress, log messages, sampling or elicitation requests? True for
 * tools/call with a _meta.progressToken, and for the tools that talk back
 * by themselves (chat, the conformance fixtures). When false, a transport
 * may answer with a plain response (HTTP: application/json, keep-alive). */
bool mcp_request_may_stream(const jv *req);
/* Protocol versions this server speaks. */
bool mcp_version_supported(const char *v);
/* Forget every session's listeners (shutdown). */
void mcp_shutdown(void);

#endif
