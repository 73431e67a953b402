/*
 * mcp_core.c - MCP lifecycle and session state: initialize (version
 * negotiation, capabilities), notifications/initialized, ping,
 * logging/setLevel, notifications/cancelled; requests from the server to
 * the client (sampling, elicitation) with their answers routed back by id;
 * notifications to a session's standalone stream; and the change hook that
 * turns committed changes into list-changed and resource-updated
 * notifications for the sessions that asked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"
#include "lib/log.h"
#include "mcp/mcp_internal.h"

static const char *const g_versions[] = {"2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"};
static const char *const g_levels[] = {"debug", "info",     "notice", "warning",
                                       "error", "critical", "alert",  "emergency"};

struct mcp_pending {
    mcp_pending *next;
    int64_t id;
    mcp_reply_fn fn;
    void *ctx;
};

static struct {
    pthread_mutex_t mu;
    mcp_sess *live;
} L = {.mu = PTHREAD_MUTEX_INITIALIZER};

bool mcp_version_supported(const char *v)
{
    for (size_t i = 0; i < sizeof g_versions / sizeof *g_versions; i++)
        if (strcmp(v, g_versions[i]) == 0) return true;
    return false;
}

mcp_sess *mcp_sess_of(rpc_session *s)
{
    return s ? s->mcp : NULL;
}

/* ---- sessions ------------------------------------------------------------------- */

static void sess_free(void *p)
{
    mcp_sess *m = p;
    pthread_mutex_lock(&L.mu);
    if (m->prev_live)
        m->prev_live->next_live = m->next_live;
    else if (L.live == m)
        L.live = m->next_live;
    if (m->next_live) m->next_live->prev_live = m->prev_live;
    pthread_mutex_unlock(&L.mu);
    while (m->pending) { /* nobody will answer now */
        mcp_pending *p2 = m->pending;
        m->pending = p2->next;
        p2->fn(p2->ctx, NULL, NULL);
        free(p2);
    }
    if (m->notify) m->notify->ops->unref(m->notify);
    for (size_t i = 0; i < m->nsubs; i++) free(m->subs[i]);
    free(m->subs);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static void on_response(rpc_session *s, const jv *msg)
{
    mcp_sess *m = mcp_sess_of(s);
    const jv *id = jv_get(msg, "id");
    if (!m || !id || id->type != JV_INT) return;
    pthread_mutex_lock(&m->mu);
    mcp_pending **pp = &m->pending, *hit = NULL;
    while (*pp && (*pp)->id != id->u.i) pp = &(*pp)->next;
    if (*pp) {
        hit = *pp;
        *pp = hit->next;
    }
    pthread_mutex_unlock(&m->mu);
    if (!hit) return;
    hit->fn(hit->ctx, jv_get(msg, "result"), jv_get(msg, "error"));
    free(hit);
}

void mcp_session_setup(rpc_session *s, app *a)
{
    mcp_sess *m = calloc(1, sizeof *m);
    if (!m) abort();
    pthread_mutex_init(&m->mu, NULL);
    m->app = a;
    m->log_level = MCP_LOG_INFO;
    m->next_id = 1;
    s->table = mcp_table();
    s->mcp = m;
    s->mcp_free = sess_free;
    s->on_response = on_response;
    pthread_mutex_lock(&L.mu);
    m->next_live = L.live;
    if (L.live) L.live->prev_live = m;
    L.live = m;
    pthread_mutex_unlock(&L.mu);
}

void mcp_session_set_notify(rpc_session *s, rpc_sink *sink)
{
    mcp_sess *m = mcp_sess_of(s);
    if (!m) return;
    if (sink) sink->ops->ref(sink);
    pthread_mutex_lock(&m->mu);
    rpc_sink *old = m->notify;
    m->notify = sink;
    pthread_mutex_unlock(&m->mu);
    if (old) old->ops->unref(old);
}

bool mcp_session_has_notify(rpc_session *s)
{
    mcp_sess *m = mcp_sess_of(s);
    if (!m) return false;
    pthread_mutex_lock(&m->mu);
    bool has = m->notify != NULL;
    pthread_mutex_unlock(&m->mu);
    return has;
}

bool mcp_session_initialized(rpc_session *s)
{
    mcp_sess *m = mcp_sess_of(s);
    return m && m->initialized;
}

void mcp_shutdown(void)
{
    pthread_mutex_lock(&L.mu);
    for (mcp_sess *m = L.live; m; m = m->next_live) {
        pthread_mutex_lock(&m->mu);
        rpc_sink *old = m->notify;
        m->notify = NULL;
        pthread_mutex_unlock(&m->mu);
        if (old) old->ops->unref(old);
    }
    pthread_mutex_unlock(&L.mu);
}

/* ---- sending ------------------------------------------------------------------- */

static void send_text(rpc_sink *sink, const char *text, size_t len)
{
    jw w;
    jw_init(&w, sink->headroom, len + 8);
    jw_append(&w, text, len);
    sink->ops->send(sink, &w);
}

void mcp_notify(mcp_sess *m, rpc_sink *sink, const char *method, const char *params_json)
{
    rpc_sink *target = sink;
    if (!target) {
        pthread_mutex_lock(&m->mu);
        if ((target = m->notify)) target->ops->ref(target);
        pthread_mutex_unlock(&m->mu);
        if (!target) return; /* nowhere to send it: the client has no stream open */
    }
    jw w;
    jw_init(&w, 0, 256);
    jw_obj_begin(&w);
    jw_kstr(&w, "jsonrpc", "2.0");
    jw_kstr(&w, "method", method);
    if (params_json) {
        jw_key(&w, "params");
        jw_raw(&w, params_json, strlen(params_json));
    }
    jw_obj_end(&w);
    send_text(target, jw_data(&w), jw_size(&w));
    jw_free(&w);
    if (!sink) target->ops->unref(target);
}

void mcp_log(mcp_sess *m, rpc_sink *sink, int level, const char *logger, const char *text)
{
    if (!m || level < m->log_level) return;
    jw w;
    jw_init(&w, 0, 256);
    jw_obj_begin(&w);
    jw_kstr(&w, "level", g_levels[level]);
    jw_kstr(&w, "logger", logger);
    jw_kstr(&w, "data", text);
    jw_obj_end(&w);
    jw_append(&w, "", 1);
    mcp_notify(m, sink, "notifications/message", jw_data(&w));
    jw_free(&w);
}

int mcp_client_request(mcp_sess *m, rpc_sink *sink, const char *method, const char *params_json,
                       mcp_reply_fn fn, void *ctx)
{
    if (!sink) return -1;
    mcp_pending *p = calloc(1, sizeof *p);
    if (!p) abort();
    p->fn = fn;
    p->ctx = ctx;
    pthread_mutex_lock(&m->mu);
    p->id = m->next_id++;
    p->next = m->pending;
    m->pending = p;
    pthread_mutex_unlock(&m->mu);
    jw w;
    jw_init(&w, 0, 512);
    jw_obj_begin(&w);
    jw_kstr(&w, "jsonrpc", "2.0");
    jw_kint(&w, "id", p->id);
    jw_kstr(&w, "method", method);
    jw_key(&w, "params");
    jw_raw(&w, params_json, strlen(params_json));
    jw_obj_end(&w);
    send_text(sink, jw_data(&w), jw_size(&w));
    jw_free(&w);
    return 0;
}

void mcp_text_result(jw *w, const char *text, size_t len, bool is_error)
{
    jw_obj_begin(w);
    jw_key(w, "content");
    jw_arr_begin(w);
    jw_obj_begin(w);
    jw_kstr(w, "type", "text");
    jw_key(w, "text");
    jw_strn(w, text, len);
    jw_obj_end(w);
    jw_arr_end(w);
    jw_kbool(w, "isError", is_error);
    jw_obj_end(w);
}

/* ---- lifecycle methods ------------------------------------------------------------ */

static int m_initialize(rpc_call *c)
{
    mcp_sess *m = mcp_sess_of(c->sess);
    const char *want;
    const jv *caps;
    if (rpc_param_str(c, "protocolVersion", true, &want) < 0 ||
        rpc_param_obj(c, "capabilities", &caps) < 0)
        return -1;
    pthread_mutex_lock(&m->mu);
    bool again = m->initialized;
    if (!again) {
        m->initialized = true;
        snprintf(m->version, sizeof m->version, "%s",
                 mcp_version_supported(want) ? want : g_versions[0]);
        m->cap_sampling = jv_get(caps, "sampling") != NULL;
        m->cap_elicitation = jv_get(caps, "elicitation") != NULL;
    }
    pthread_mutex_unlock(&m->mu);
    if (again)
        return rpc_fail(c, RPC_INVALID_REQUEST, "Invalid Request: session already initialized");
    jw *w = c->out;
    jw_obj_begin(w);
    jw_kstr(w, "protocolVersion", m->version);
    jw_key(w, "capabilities");
    jw_raw(w,
           "{\"tools\":{\"listChanged\":true},\"resources\":{\"subscribe\":true,"
           "\"listChanged\":true},\"prompts\":{\"listChanged\":true},\"logging\":{},"
           "\"completions\":{}}",
           strlen("{\"tools\":{\"listChanged\":true},\"resources\":{\"subscribe\":true,"
                  "\"listChanged\":true},\"prompts\":{\"listChanged\":true},\"logging\":{},"
                  "\"completions\":{}}"));
    jw_key(w, "serverInfo");
    jw_obj_begin(w);
    jw_kstr(w, "name", "persona-mcp");
    jw_kstr(w, "title", "Persona MCP");
    jw_kstr(w, "version", PMCP_VERSION);
    jw_obj_end(w);
    jw_kstr(w, "instructions",
            "Personas with persistent state and long-term semantic memory. List personas with "
            "persona_list, store and search their memories with memory_store and "
            "memory_search, and talk to one with chat. Each persona is also a resource "
            "(persona://{id}) and the roleplay prompt lets your own model play one.");
    jw_obj_end(w);
    return 0;
}

static int m_initialized(rpc_call *c)
{
    mcp_sess *m = mcp_sess_of(c->sess);
    m->ready = true;
    return 0;
}

static int m_ping(rpc_call *c)
{
    jw_obj_begin(c->out);
    jw_obj_end(c->out);
    return 0;
}

static int m_set_level(rpc_call *c)
{
    const char *level;
    if (rpc_param_str(c, "level", true, &level) < 0) return -1;
    for (int i = 0; i < 8; i++)
        if (strcmp(level, g_levels[i]) == 0) {
            mcp_sess_of(c->sess)->log_level = i;
            return m_ping(c);
        }
    return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: unknown log level '%s'", level);
}

static int m_cancelled(rpc_call *c)
{
    const jv *rid = c->params ? jv_get(c->params, "requestId") : NULL;
    if (!rid) return 0;
    jw t;
    jw_init(&t, 0, 64);
    jw_value(&t, rid);
    jw_append(&t, "", 1);
    int n = chat_cancel_matching(c->sess->id, NULL, jw_data(&t));
    jw_free(&t);
    if (n)
        log_info("mcp request cancelled by the client", "session=%llu",
                 (unsigned long long)c->sess->id);
    return 0;
}

static int m_ignore(rpc_call *c)
{
    (void)c;
    return 0;
}

/* Every MCP method but initialize and ping needs an initialized session. */
static int guard(rpc_call *c, int (*fn)(rpc_call *))
{
    if (!mcp_session_initialized(c->sess))
        return rpc_fail(c, RPC_INVALID_REQUEST, "Invalid Request: send initialize first");
    return fn(c);
}

#define GUARDED(fn)                                                                                \
    static int g_##fn(rpc_call *c)                                                                 \
    {                                                                                              \
        return guard(c, fn);                                                                       \
    }
GUARDED(m_set_level)
GUARDED(mcp_tools_list)
GUARDED(mcp_tools_call)
GUARDED(mcp_resources_list)
GUARDED(mcp_resources_templates)
GUARDED(mcp_resources_read)
GUARDED(mcp_resources_subscribe)
GUARDED(mcp_resources_unsubscribe)
GUARDED(mcp_prompts_list)
GUARDED(mcp_prompts_get)
GUARDED(mcp_complete)

static const rpc_method g_methods[] = {
    {"initialize", m_initialize, RPC_INLINE, NULL},
    {"notifications/initialized", m_initialized, RPC_INLINE, NULL},
    {"notifications/cancelled", m_cancelled, RPC_INLINE, NULL},
    {"notifications/roots/list_changed", m_ignore, RPC_INLINE, NULL},
    {"ping", m_ping, RPC_INLINE, NULL},
    {"logging/setLevel", g_m_set_level, RPC_INLINE, NULL},
    {"tools/list", g_mcp_tools_list, RPC_INLINE, NULL},
    {"tools/call", g_mcp_tools_call, RPC_WORKER, mcp_tools_call_inline},
    {"resources/list", g_mcp_resources_list, RPC_WORKER, NULL},
    {"resources/templates/list", g_mcp_resources_templates, RPC_INLINE, NULL},
    {"resources/read", g_mcp_resources_read, RPC_WORKER, NULL},
    {"resources/subscribe", g_mcp_resources_subscribe, RPC_INLINE, NULL},
    {"resources/unsubscribe", g_mcp_resources_unsubscribe, RPC_INLINE, NULL},
    {"prompts/list", g_mcp_prompts_list, RPC_INLINE, NULL},
    {"prompts/get", g_mcp_prompts_get, RPC_WORKER, NULL},
    {"completion/complete", g_mcp_complete, RPC_INLINE, NULL},
};

static rpc_table g_table;

const rpc_table *mcp_table(void)
{
    return &g_table;
}

/* ---- change notifications ------------------------------------------------------ */

static bool subscribed(mcp_sess *m, const char *uri)
{
    for (size_t i = 0; i < m->nsubs; i++)
        if (strcmp(m->subs[i], uri) == 0) return true;
    return false;
}

static void on_change(app *a, int what, const char *persona_id)
{
    (void)a;
    char uri[300];
    snprintf(uri, sizeof uri, "persona://%s%s", persona_id ? persona_id : "",
             what == APP_CHANGED_MEMORIES ? "/memories" : "");
    jw pj;
    jw_init(&pj, 0, 128);
    jw_obj_begin(&pj);
    jw_kstr(&pj, "uri", uri);
    jw_obj_end(&pj);
    jw_append(&pj, "", 1);
    const char *params = jw_data(&pj);
    pthread_mutex_lock(&L.mu);
    for (mcp_sess *m = L.live; m; m = m->next_live) {
        if (!m->ready) continue;
        if (what == APP_CHANGED_PERSONAS)
            mcp_notify(m, NULL, "notifications/resources/list_changed", NULL);
        pthread_mutex_lock(&m->mu);
        bool sub = persona_id && subscribed(m, uri);
        pthread_mutex_unlock(&m->mu);
        if (sub) mcp_notify(m, NULL, "notifications/resources/updated", params);
    }
    pthread_mutex_unlock(&L.mu);
    jw_free(&pj);
}

void mcp_init(app *a)
{
    rpc_table_init(&g_table, g_methods, (int)(sizeof g_methods / sizeof g_methods[0]), 64);
    a->on_change = on_change;
}
