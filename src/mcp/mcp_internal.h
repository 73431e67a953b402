/*
 * mcp_internal.h - shared by the files of src/mcp/ only.
 */
#ifndef PMCP_MCP_INTERNAL_H
#define PMCP_MCP_INTERNAL_H

#include <pthread.h>

#include "lib/jw.h"
#include "mcp/mcp.h"

enum {
    MCP_LOG_DEBUG,
    MCP_LOG_INFO,
    MCP_LOG_NOTICE,
    MCP_LOG_WARNING,
    MCP_LOG_ERROR,
    MCP_LOG_CRITICAL,
    MCP_LOG_ALERT,
    MCP_LOG_EMERGENCY
};

typedef struct mcp_pending mcp_pending;
/* result or error is set (the other NULL); both NULL when the session
 * closed or the request timed out. Runs on the thread that delivered the
 * answer; must not block. */
typedef void (*mcp_reply_fn)(void *ctx, const jv *result, const jv *error);

typedef struct mcp_sess {
    pthread_mutex_t mu;
    app *app;
    bool initialized, ready;
    char version[16];
    bool cap_sampling, cap_elicitation;
    int log_level;
    rpc_sink *notify;
    char **subs; /* subscribed resource URIs */
    size_t nsubs;
    mcp_pending *pending;
    int64_t next_id;
    struct mcp_sess *next_live; /* in the list of live sessions */
    struct mcp_sess *prev_live;
} mcp_sess;

mcp_sess *mcp_sess_of(rpc_session *s);

/* Send a request to the client on sink (the current call's stream) and
 * call fn with its answer. Returns 0, or -1 when the client cannot take it. */
int mcp_client_request(mcp_sess *m, rpc_sink *sink, const char *method, const char *params_json,
                       mcp_reply_fn fn, void *ctx);
/* A notification on sink (NULL: the session's notify stream). */
void mcp_notify(mcp_sess *m, rpc_sink *sink, const char *method, const char *params_json);
/* notifications/message when level passes the session's threshold. */
void mcp_log(mcp_sess *m, rpc_sink *sink, int level, const char *logger, const char *text);

/* Tool results. */
void mcp_text_result(jw *w, const char *text, size_t len, bool is_error);

/* mcp_tools.c */
int mcp_tools_list(rpc_call *c);
int mcp_tools_call(rpc_call *c);
/* inline_if of tools/call: a method-backed tool whose method would run
 * inline (RAM only) with these arguments. */
bool mcp_tools_call_inline(app *a, rpc_session *s, const jv *params);
/* mcp_resources.c */
int mcp_resources_list(rpc_call *c);
int mcp_resources_templates(rpc_call *c);
int mcp_resources_read(rpc_call *c);
int mcp_resources_subscribe(rpc_call *c);
int mcp_resources_unsubscribe(rpc_call *c);
int mcp_prompts_list(rpc_call *c);
int mcp_prompts_get(rpc_call *c);
int mcp_complete(rpc_call *c);
/* mcp_fixtures.c: each returns 1 when it handled the call (fixtures on),
 * -1 when it handled it with rpc_fail() (the *_get/_read/complete hooks),
 * 0 to let the product handler run. A fixture tool may rpc_defer(). */
int mcp_fixture_tools_list(rpc_call *c, jw *w);
int mcp_fixture_tool_call(rpc_call *c, const char *name, const jv *args);
int mcp_fixture_resources_list(rpc_call *c, jw *w);
int mcp_fixture_templates_list(rpc_call *c, jw *w);
int mcp_fixture_resource_read(rpc_call *c, const char *uri);
int mcp_fixture_prompts_list(rpc_call *c, jw *w);
int mcp_fixture_prompt_get(rpc_call *c, const char *name, const jv *args);
int mcp_fixture_complete(rpc_call *c, const jv *ref, const jv *arg);

#endif
