/*
 * api_chat.c - persona.chat, persona.chat_stream and persona.chat_cancel
 * over the chat domain function (chat/chat.c).
 *
 * persona.chat answers once, after the reply was stored; it defers its
 * answer in order, so the worker is free while the LLM generates and the
 * connection's later requests still get their answers after it.
 * persona.chat_stream sends the event frames of spec §3 (stream_start,
 * stream_chunk..., stream_complete | stream_cancelled | stream_error), all
 * with the request's id and the event inside "result" (§11 item 4); it
 * does not hold the connection, so other requests - persona.chat_cancel
 * among them - are answered while it runs. stream_start is built at once
 * but leaves only when the backend request has been handed over (on_sent),
 * so that its frame does not compete with the request for the CPU; it is
 * still the first event (a chunk or the end that comes sooner sends it). A client that disconnects
 * cancels its chats, which aborts the backend request.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "chat/chat.h"
#include "lib/jw.h"
#include "lib/util.h"
#include "lib/workq.h"
#include "persona/persona.h"

#define MESSAGE_MAX_BYTES (32 * 1024)

typedef struct wire {
    rpc_deferred *d;
    bool stream;
    /* stream_start is built before the chat begins and sent once the backend request
     * has left (on_sent), or before the first chunk or the end if they come first:
     * whichever thread gets here first sends it, under mu. */
    pthread_mutex_t mu;
    atomic_bool started;
    jw start;
    char stream_id[40];
    char persona_id[40];
    app *a;
    int budget;
} wire;

static int word_tokens(const char *s, size_t len)
{
    int words = 0;
    bool in = false;
    for (size_t i = 0; i < len; i++) {
        bool sp = s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r';
        if (!sp && !in) words++;
        in = !sp;
    }
    return (int)(words * 1.3);
}

/* An event is written straight into its JSON-RPC frame (one buffer, no copy). */
static jw event_begin(wire *w, const char *type)
{
    jw j = rpc_deferred_result_begin(w->d);
    char ts[40];
    app_iso_now(ts, true);
    jw_obj_begin(&j);
    jw_kstr(&j, "event_type", type);
    jw_kstr(&j, "stream_id", w->stream_id);
    jw_kstr(&j, "timestamp", ts);
    return j;
}

static void event_send(wire *w, jw *j)
{
    jw_obj_end(j);
    rpc_deferred_result_end(w->d, j);
}

static void send_start(wire *w)
{
    if (atomic_load(&w->started)) return;
    pthread_mutex_lock(&w->mu);
    if (!atomic_load(&w->started)) {
        event_send(w, &w->start);
        atomic_store(&w->started, true);
    }
    pthread_mutex_unlock(&w->mu);
}

static void on_sent(void *ctx)
{
    send_start(ctx);
}

static void wire_free(wire *w)
{
    jw_free(&w->start);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

static void on_close(void *ctx)
{
    wire *w = ctx;
    chat_cancel_matching(rpc_deferred_session(w->d), w->stream_id, NULL);
}

/* ---- stream events ---------------------------------------------------------- */

static void stream_token(void *ctx, const char *tok, size_t len, int n, size_t total)
{
    wire *w = ctx;
    send_start(w);
    jw j = event_begin(w, "stream_chunk");
    jw_key(&j, "chunk");
    jw_strn(&j, tok, len);
    jw_key(&j, "data");
    jw_obj_begin(&j);
    jw_key(&j, "chunk");
    jw_strn(&j, tok, len);
    jw_kint(&j, "chunk_number", n);
    jw_kint(&j, "total_length", (int64_t)total);
    jw_obj_end(&j);
    event_send(w, &j);
}

static void complete_fields(jw *j, const chat_result *r, bool top)
{
    int tokens = word_tokens(r->text, r->len);
    double secs = round(r->seconds * 1000) / 1000;
    jw_key(j, "full_response");
    jw_strn(j, r->text, r->len);
    jw_kint(j, "tokens_used", tokens);
    jw_kdouble(j, "processing_time", secs);
    if (!top) {
        jw_kint(j, "chunk_count", r->chunks);
        jw_kint(j, "response_length", (int64_t)r->chars);
        jw_kstr(j, "persona_name", r->persona_name);
    }
    jw_kbool(j, "fallback", r->fallback);
    if (r->fallback) jw_kstr(j, "fallback_reason", r->fallback_reason);
    if (r->memory_id && *r->memory_id) jw_kstr(j, "memory_id", r->memory_id);
}

static void stream_end(void *ctx, const chat_result *r)
{
    wire *w = ctx;
    jw j;
    bool ok = r->status == LLM_OK || r->fallback;
    send_start(w);
    if (ok) {
        if (r->fallback && r->len) stream_token(w, r->text, r->len, 1, r->chars);
        j = event_begin(w, "stream_complete");
        jw_kstr(&j, "persona_id", r->persona_id);
        complete_fields(&j, r, true);
        jw_key(&j, "data");
        jw_obj_begin(&j);
        complete_fields(&j, r, false);
        jw_obj_end(&j);
    } else if (r->status == LLM_CANCELLED) {
        j = event_begin(w, "stream_cancelled");
        jw_key(&j, "data");
        jw_obj_begin(&j);
        jw_kstr(&j, "reason", "Client cancelled");
        jw_key(&j, "partial_response");
        jw_strn(&j, r->text, r->len);
        jw_obj_end(&j);
    } else {
        j = event_begin(w, "stream_error");
        jw_key(&j, "error");
        jw_obj_begin(&j);
        jw_kint(&j, "code", RPC_LLM_ERROR);
        jw_kstr(&j, "message", r->detail);
        jw_kstr(&j, "reason", llm_status_name(r->status));
        jw_obj_end(&j);
        jw_key(&j, "data");
        jw_obj_begin(&j);
        jw_kstr(&j, "error", r->detail);
        jw_key(&j, "partial_response");
        jw_strn(&j, r->text, r->len);
        jw_obj_end(&j);
    }
    event_send(w, &j);
    rpc_deferred_end(w->d, ok);
    wire_free(w);
}

/* ---- persona.chat result ------------------------------------------------------- */

static void chat_end(void *ctx, const chat_result *r)
{
    wire *w = ctx;
    bool ok = r->status == LLM_OK || r->fallback;
    if (!ok) {
        const char *msg = r->status == LLM_CANCELLED ? "Chat cancelled" : r->detail;
        rpc_deferred_error(w->d, RPC_LLM_ERROR, msg, NULL);
        rpc_deferred_end(w->d, false);
        wire_free(w);
        return;
    }
    jw j;
    jw_init(&j, 0, 512);
    jw_obj_begin(&j);
    jw_key(&j, "response");
    jw_strn(&j, r->text, r->len);
    jw_kstr(&j, "response_type", "direct");
    jw_kdouble(&j, "continue_score", 50.0);
    jw_kint(&j, "tokens_used", word_tokens(r->text, r->len));
    jw_kdouble(&j, "processing_time", round(r->seconds * 1000) / 1000);
    jw_kstr(&j, "persona_id", r->persona_id);
    jw_kbool(&j, "fallback", r->fallback);
    if (r->fallback) jw_kstr(&j, "fallback_reason", r->fallback_reason);
    if (r->memory_id && *r->memory_id) jw_kstr(&j, "memory_id", r->memory_id);
    persona_reg *reg = w->a->personas;
    persona_reg_rdlock(reg);
    const persona *p = persona_reg_find(reg, w->persona_id);
    jw_key(&j, "persona_state");
    jw_obj_begin(&j);
    if (p) {
        jw_kint(&j, "social_energy", p->social_energy);
        jw_kint(&j, "available_time", p->available_time);
        jw_kint(&j, "interaction_fatigue", p->interaction_fatigue);
    }
    jw_obj_end(&j);
    persona_reg_unlock(reg);
    jw_obj_end(&j);
    rpc_deferred_result(w->d, jw_data(&j), jw_size(&j));
    jw_free(&j);
    rpc_deferred_end(w->d, true);
    wire_free(w);
}

static void nostream_token(void *ctx, const char *tok, size_t len, int n, size_t total)
{
    (void)ctx, (void)tok, (void)len, (void)n, (void)total;
}

/* ---- handlers --------------------------------------------------------------------- */

typedef struct chat_params {
    const char *message;
    int64_t budget;
    char persona[40];
} chat_params;

static int read_params(rpc_call *c, chat_params *p)
{
    if (rpc_param_str(c, "message", true, &p->message) < 0 ||
        rpc_param_int(c, "token_budget", 1, 32768, 500, &p->budget) < 0)
        return -1;
    if (strlen(p->message) > MESSAGE_MAX_BYTES)
        return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: 'message' is longer than %d bytes",
                        MESSAGE_MAX_BYTES);
    if (!rpc_session_current(c->sess, p->persona))
        return rpc_fail(c, RPC_NO_ACTIVE_PERSONA, "No persona selected. Use persona.switch first");
    return 0;
}

static int start(rpc_call *c, bool stream)
{
    chat_params p = {0};
    if (read_params(c, &p) < 0) return -1;
    wire *w = calloc(1, sizeof *w);
    if (!w) abort();
    pthread_mutex_init(&w->mu, NULL);
    atomic_init(&w->started, !stream); /* persona.chat has no stream_start */
    w->stream = stream;
    w->a = c->app;
    w->budget = (int)p.budget;
    memcpy(w->persona_id, p.persona, sizeof w->persona_id);
    util_uuid4(w->stream_id);
    if (!(w->d = rpc_defer(c, !stream, c->req_id))) {
        wire_free(w);
        return rpc_fail(c, RPC_INVALID_REQUEST, "Invalid Request: %s cannot be part of a batch",
                        c->method);
    }
    rpc_deferred_on_close(w->d, on_close, w);
    if (stream) {
        jw j = event_begin(w, "stream_start");
        jw_kstr(&j, "persona_id", p.persona);
        jw_key(&j, "data");
        jw_obj_begin(&j);
        jw_kstr(&j, "persona_id", p.persona);
        persona_reg_rdlock(c->app->personas);
        const persona *pp = persona_reg_find(c->app->personas, p.persona);
        jw_kstr(&j, "persona_name", pp ? pp->name : "");
        persona_reg_unlock(c->app->personas);
        jw_kstr(&j, "message", p.message);
        jw_kint(&j, "token_budget", p.budget);
        jw_obj_end(&j);
        w->start = j; /* sent by send_start */
    }
    chat_req req = {.persona_id = p.persona,
                    .sess = c->sess,
                    .message = p.message,
                    .max_tokens = (int)p.budget,
                    .stream_id = w->stream_id,
                    .request_id = rpc_deferred_id(w->d),
                    .t0 = c->t0};
    chat_events ev = {stream ? stream_token : nostream_token, stream ? stream_end : chat_end,
                      stream ? on_sent : NULL};
    int code;
    char err[256];
    if (chat_begin(c->app, &req, &ev, w, &code, err, sizeof err) == 0) return 0;
    chat_result r = {.status = LLM_HTTP_ERROR, .detail = err, .text = "", .persona_id = p.persona};
    if (stream) {
        stream_end(w, &r);
    } else {
        rpc_deferred_error(w->d, code, err, NULL);
        rpc_deferred_end(w->d, false);
        wire_free(w);
    }
    return 0;
}

/* A chat starts with a memory search, the prompt and the backend request:
 * ~0.2-0.3 ms of work that a worker would first have to be woken for (~0.1
 * ms on an idle vCPU, the largest single step left in the time to first
 * token). When the server is idle - no chat waiting for or receiving tokens,
 * no job waiting for a worker, the persona's collection in RAM and the
 * built-in embedder - the service thread does it itself: nobody else is
 * waiting for it then, and a connection that sends meanwhile waits at most
 * that long. Otherwise a worker does, as for any blocking method. */
bool api_chat_inline_if(app *a, rpc_session *s, const jv *params)
{
    (void)params;
    if (!a->cfg.chat_inline || chat_active() || workq_depth(a->workers)) return false;
    char pid[40];
    if (!rpc_session_current(s, pid) || !mem_search_ready(a->memory, pid)) return false;
    chat_count_inline_start();
    return true;
}

int api_persona_chat(rpc_call *c)
{
    return start(c, false);
}

/* Errors before the stream starts are stream_error events too: clients of
 * the original read only frames with a "result" (spec §11 item 4). */
int api_persona_chat_stream(rpc_call *c)
{
    if (start(c, true) == 0) return 0;
    if (!c->sink || !c->can_defer) return -1;
    wire w = {.stream = true};
    util_uuid4(w.stream_id);
    int code = c->err_code;
    char msg[sizeof c->err_msg];
    snprintf(msg, sizeof msg, "%s", c->err_msg);
    c->err_code = 0;
    if (!(w.d = rpc_defer(c, false, c->req_id))) return rpc_fail(c, code, "%s", msg);
    jw j = event_begin(&w, "stream_error");
    jw_key(&j, "error");
    jw_obj_begin(&j);
    jw_kint(&j, "code", code);
    jw_kstr(&j, "message", msg);
    jw_obj_end(&j);
    jw_key(&j, "data");
    jw_obj_begin(&j);
    jw_kstr(&j, "error", msg);
    jw_kstr(&j, "method", "persona.chat_stream");
    jw_obj_end(&j);
    event_send(&w, &j);
    rpc_deferred_end(w.d, false);
    return 0;
}

int api_persona_chat_cancel(rpc_call *c)
{
    const char *sid;
    const jv *rid = c->params ? jv_get(c->params, "request_id") : NULL;
    if (rpc_param_str(c, "stream_id", false, &sid) < 0) return -1;
    if (rid && rid->type != JV_STRING && rid->type != JV_INT && rid->type != JV_DOUBLE)
        return rpc_fail(c, RPC_INVALID_PARAMS,
                        "Invalid params: 'request_id' must be a string or a number");
    if (!sid && !rid)
        return rpc_fail(c, RPC_INVALID_PARAMS,
                        "Invalid params: 'stream_id' or 'request_id' is required");
    char *rid_text = NULL;
    jw t;
    jw_init(&t, 0, 64);
    if (rid) {
        jw_value(&t, rid);
        jw_append(&t, "", 1);
        rid_text = (char *)jw_data(&t);
    }
    int n = chat_cancel_matching(c->sess->id, sid, rid_text);
    jw_free(&t);
    jw_obj_begin(c->out);
    jw_kbool(c->out, "cancelled", n > 0);
    jw_kint(c->out, "count", n);
    if (sid) jw_kstr(c->out, "stream_id", sid);
    jw_obj_end(c->out);
    return 0;
}
