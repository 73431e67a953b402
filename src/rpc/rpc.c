/*
 * rpc.c - JSON-RPC 2.0 envelope: validation, dispatch, response framing.
 *
 * The method table is small (tens of entries) and fixed at start-up, so it
 * is sorted once and searched with bsearch. Handler output is written
 * straight into the response buffer after the envelope prefix; on failure
 * the buffer is truncated back and an error object written instead, so no
 * handler ever builds a temporary tree.
 */
#include "rpc/rpc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/metrics.h"

/* ---- sessions ------------------------------------------------------------ */

rpc_session *rpc_session_new(uint64_t id)
{
    rpc_session *s = calloc(1, sizeof *s);
    if (!s) abort();
    pthread_mutex_init(&s->mu, NULL);
    atomic_init(&s->refs, 1);
    s->id = id;
    return s;
}

void rpc_session_ref(rpc_session *s)
{
    atomic_fetch_add(&s->refs, 1);
}

void rpc_session_unref(rpc_session *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1) {
        if (s->chat && s->chat_free) s->chat_free(s->chat);
        if (s->mcp && s->mcp_free) s->mcp_free(s->mcp);
        pthread_mutex_destroy(&s->mu);
        free(s);
    }
}

bool rpc_session_current(rpc_session *s, char out[40])
{
    pthread_mutex_lock(&s->mu);
    memcpy(out, s->current_persona, 40);
    pthread_mutex_unlock(&s->mu);
    return out[0] != 0;
}

void rpc_session_set_current(rpc_session *s, const char *id)
{
    pthread_mutex_lock(&s->mu);
    snprintf(s->current_persona, sizeof s->current_persona, "%s", id ? id : "");
    pthread_mutex_unlock(&s->mu);
}

void rpc_session_forget(rpc_session *s, const char *id)
{
    pthread_mutex_lock(&s->mu);
    if (strcmp(s->current_persona, id) == 0) s->current_persona[0] = 0;
    pthread_mutex_unlock(&s->mu);
}

/* ---- method tables ------------------------------------------------------- */

static rpc_table g_default;

static const rpc_method *g_sorting; /* qsort has no context argument */

static int cmp_index(const void *a, const void *b)
{
    return strcmp(g_sorting[*(const int *)a].name, g_sorting[*(const int *)b].name);
}

void rpc_table_init(rpc_table *t, const rpc_method *methods, int count, int metrics_base)
{
    free(t->sorted);
    t->methods = methods;
    t->count = count;
    t->metrics_base = metrics_base;
    t->sorted = malloc(sizeof(int) * (size_t)(count ? count : 1));
    if (!t->sorted) abort();
    for (int i = 0; i < count; i++) {
        t->sorted[i] = i;
        metrics_register_method(metrics_base + i, methods[i].name);
    }
    g_sorting = methods;
    qsort(t->sorted, (size_t)count, sizeof(int), cmp_index);
}

const rpc_method *rpc_table_lookup(const rpc_table *t, const char *name, int *index)
{
    int lo = 0, hi = t->count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(name, t->methods[t->sorted[mid]].name);
        if (c == 0) {
            if (index) *index = t->metrics_base + t->sorted[mid];
            return &t->methods[t->sorted[mid]];
        }
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    if (index) *index = -1;
    return NULL;
}

void rpc_set_methods(const rpc_method *methods, int count)
{
    rpc_table_init(&g_default, methods, count, 0);
}

const rpc_method *rpc_lookup(const char *name, int *index)
{
    return rpc_table_lookup(&g_default, name, index);
}

static const rpc_table *table_of(const rpc_session *s)
{
    return s && s->table ? s->table : &g_default;
}

int rpc_fail(rpc_call *c, int code, const char *fmt, ...)
{
    c->err_code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err_msg, sizeof c->err_msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- envelope ------------------------------------------------------------ */

static void write_id(jw *out, const jv *id)
{
    jw_key(out, "id");
    if (id)
        jw_value(out, id);
    else
        jw_null(out);
}

void rpc_write_error(jw *out, const jv *id, int code, const char *message, const char *data)
{
    jw_obj_begin(out);
    jw_kstr(out, "jsonrpc", "2.0");
    jw_key(out, "error");
    jw_obj_begin(out);
    jw_kint(out, "code", code);
    jw_kstr(out, "message", message);
    if (data) jw_kstr(out, "data", data);
    jw_obj_end(out);
    write_id(out, id);
    jw_obj_end(out);
}

/* Shape checks of spec §1.3 made strict. Returns NULL when valid, else the
 * -32600 message. Sets *id to the id to echo (NULL if unusable). */
static const char *check_request(const jv *msg, const jv **id, bool *notification)
{
    *id = NULL;
    *notification = false;
    if (msg->type != JV_OBJECT) return "Invalid Request: expected a JSON object";
    const jv *idv = jv_get(msg, "id");
    if (idv && idv->type != JV_STRING && idv->type != JV_INT && idv->type != JV_DOUBLE &&
        idv->type != JV_NULL)
        return "Invalid Request: id must be a string, a number or null";
    *id = idv;
    *notification = (idv == NULL);
    /* Every client of the original sends "jsonrpc":"2.0"; JSON-RPC 2.0
     * requires it, so it is checked (the original never did). */
    const jv *ver = jv_get(msg, "jsonrpc");
    if (!ver) return "Invalid Request: jsonrpc \"2.0\" is required";
    if (!(jv_is_str(ver) && strcmp(ver->u.s, "2.0") == 0))
        return "Invalid Request: jsonrpc must be \"2.0\"";
    const jv *m = jv_get(msg, "method");
    if (!m) return "Invalid Request: method is required";
    if (!jv_is_str(m)) return "Invalid Request: method must be a string";
    const jv *p = jv_get(msg, "params");
    if (p && p->type != JV_OBJECT && p->type != JV_ARRAY)
        return "Invalid Request: params must be an object or an array";
    return NULL;
}

static void run_handler(rpc_call *c, const rpc_method *m, const jv *id, bool notify)
{
    c->req_id = id;
    jw *out = c->out;
    size_t mark = jw_size(out);
    if (!notify) {
        jw_obj_begin(out);
        jw_kstr(out, "jsonrpc", "2.0");
        jw_key(out, "result");
    }
    size_t body = jw_size(out);
    int rc = m->fn(c);
    if (rc == 0 && c->deferred) {
        jw_truncate(out, mark); /* it answers later through its rpc_deferred */
        return;
    }
    if (rc == 0 && jw_size(out) == body) jw_null(out); /* a handler that wrote nothing */
    if (notify) {
        jw_truncate(out, mark);
        return;
    }
    if (rc != 0) {
        jw_truncate(out, mark);
        rpc_write_error(out, id, c->err_code ? c->err_code : RPC_INTERNAL_ERROR,
                        c->err_msg[0] ? c->err_msg : "Internal error", NULL);
        return;
    }
    write_id(out, id);
    jw_obj_end(out);
}

/* One request object. Returns true when it produced a response; sets
 * *ordered when its handler took an ordered deferral. */
static bool execute_one(app *a, rpc_session *s, rpc_sink *sink, bool can_defer, const jv *msg,
                        jw *out, jarena *scratch, uint64_t t0, bool *ordered)
{
    const jv *id;
    bool notify;
    if (msg->type == JV_OBJECT && !jv_get(msg, "method") && jv_get(msg, "id") &&
        (jv_get(msg, "result") || jv_get(msg, "error")) && s && s->on_response) {
        s->on_response(s, msg); /* a client's answer to one of our requests */
        return false;
    }
    const char *bad = check_request(msg, &id, &notify);
    if (bad) {
        rpc_write_error(out, id, RPC_INVALID_REQUEST, bad, NULL);
        metrics_request(-1, false, metrics_now_ns() - t0);
        return true;
    }
    const char *name = jv_get(msg, "method")->u.s;
    int idx;
    const rpc_method *m = rpc_table_lookup(table_of(s), name, &idx);
    if (!m) {
        if (!notify) {
            char text[300];
            snprintf(text, sizeof text, "Method not found: %s", name);
            rpc_write_error(out, id, RPC_METHOD_NOT_FOUND, text, NULL);
        }
        metrics_request(-1, false, metrics_now_ns() - t0);
        return !notify;
    }
    const jv *params = jv_get(msg, "params");
    rpc_call c = {.app = a,
                  .sess = s,
                  .method = name,
                  .params = params,
                  .out = out,
                  .arena = scratch,
                  .sink = sink,
                  .can_defer = can_defer && sink && !notify,
                  .method_index = idx,
                  .t0 = t0};
    if (params && params->type == JV_ARRAY) {
        if (!notify)
            rpc_write_error(out, id, RPC_INVALID_PARAMS,
                            "Invalid params: params must be an object of named parameters", NULL);
        metrics_request(idx, false, metrics_now_ns() - t0);
        return !notify;
    }
    run_handler(&c, m, id, notify);
    if (c.deferred) {
        *ordered = c.ordered;
        return false; /* metrics at rpc_deferred_end */
    }
    metrics_request(idx, c.err_code == 0, metrics_now_ns() - t0);
    return !notify;
}

int rpc_execute(app *a, rpc_session *s, rpc_sink *sink, const jv *msg, jw *out, jarena *scratch,
                uint64_t t0)
{
    bool ordered = false;
    if (msg->type != JV_ARRAY) {
        execute_one(a, s, sink, true, msg, out, scratch, t0, &ordered);
        return ordered ? RPC_EXEC_ORDERED : RPC_EXEC_DONE;
    }
    if (msg->len == 0) {
        rpc_write_error(out, NULL, RPC_INVALID_REQUEST, "Invalid Request: empty batch", NULL);
        return RPC_EXEC_DONE;
    }
    size_t mark = jw_size(out);
    jw_arr_begin(out);
    bool any = false;
    for (uint32_t i = 0; i < msg->len; i++)
        any |= execute_one(a, s, sink, false, &msg->u.items[i], out, scratch, t0, &ordered);
    if (any)
        jw_arr_end(out);
    else
        jw_truncate(out, mark); /* only notifications: no response at all */
    return RPC_EXEC_DONE;
}

bool rpc_message_concurrent(rpc_session *s, const jv *msg)
{
    if (msg->type != JV_OBJECT) return false;
    const jv *m = jv_get(msg, "method");
    if (!jv_is_str(m)) return false;
    const rpc_method *rm = rpc_table_lookup(table_of(s), m->u.s, NULL);
    return rm && rm->where == RPC_WORKER_CONCURRENT;
}

rpc_where rpc_message_where(app *a, rpc_session *s, const jv *msg)
{
    uint32_t n = msg->type == JV_ARRAY ? msg->len : 1;
    const jv *items = msg->type == JV_ARRAY ? msg->u.items : msg;
    for (uint32_t i = 0; i < n; i++) {
        const jv *m = jv_get(&items[i], "method");
        if (!jv_is_str(m)) continue;
        const rpc_method *rm = rpc_table_lookup(table_of(s), m->u.s, NULL);
        if (!rm || rm->where == RPC_INLINE) continue;
        const jv *p = jv_get(&items[i], "params");
        if (!rm->inline_if || !rm->inline_if(a, s, p && p->type == JV_OBJECT ? p : NULL))
            return RPC_WORKER;
    }
    return RPC_INLINE;
}

/* ---- parameters ---------------------------------------------------------- */

/* Strings, objects and arrays treat null as absent (persona_id: null falls
 * back to the current persona, as in the original). Numbers and booleans
 * do not: null is not a number (the original's model rejected it too). */
static const jv *param(rpc_call *c, const char *key)
{
    const jv *v = c->params ? jv_get(c->params, key) : NULL;
    return (v && v->type == JV_NULL) ? NULL : v;
}

static const jv *param_typed_scalar(rpc_call *c, const char *key)
{
    return c->params ? jv_get(c->params, key) : NULL;
}

int rpc_param_str(rpc_call *c, const char *key, bool required, const char **out)
{
    const jv *v = param(c, key);
    *out = NULL;
    if (!v) {
        if (required)
            return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: '%s' is required", key);
        return 0;
    }
    if (v->type != JV_STRING)
        return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: '%s' must be a string, got %s", key,
                        jv_type_name(v->type));
    if (required && v->len == 0)
        return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: '%s' must not be empty", key);
    *out = v->u.s;
    return 0;
}

int rpc_param_int(rpc_call *c, const char *key, int64_t lo, int64_t hi, int64_t def, int64_t *out)
{
    const jv *v = param_typed_scalar(c, key);
    *out = def;
    if (!v) return 0;
    int64_t x;
    if (v->type == JV_INT)
        x = v->u.i;
    else if (v->type == JV_DOUBLE && v->u.d >= -9.2e18 && v->u.d <= 9.2e18 &&
             v->u.d == (double)(int64_t)v->u.d)
        x = (int64_t)v->u.d; /* 10.0 is an integer; 10.5 is not */
    else
        return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: '%s' must be an integer, got %s",
                        key, jv_type_name(v->type));
    if (x < lo || x > hi)
        return rpc_fail(c, RPC_INVALID_PARAMS,
                        "Invalid params: '%s' must be between %lld and %lld, got %lld", key,
                        (long long)lo, (long long)hi, (long long)x);
    *out = x;
    return 0;
}

int rpc_param_num(rpc_call *c, const char *key, double lo, double hi, double def, double *out)
{
    const jv *v = param_typed_scalar(c, key);
    *out = def;
    if (!v) return 0;
    if (!jv_is_num(v))
        return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: '%s' must be a number, got %s", key,
                        jv_type_name(v->type));
    double x = jv_num(v);
    if (x < lo || x > hi)
        return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: '%s' must be between %g and %g",
                        key, lo, hi);
    *out = x;
    return 0;
}

int rpc_param_bool(rpc_call *c, const char *key, bool def, bool *out)
{
    const jv *v = param_typed_scalar(c, key);
    *out = def;
    if (!v) return 0;
    if (v->type != JV_BOOL)
        return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: '%s' must be a boolean, got %s",
                        key, jv_type_name(v->type));
    *out = v->u.b;
    return 0;
}

static int param_typed(rpc_call *c, const char *key, jv_type t, const char *what, const jv **out)
{
    const jv *v = param(c, key);
    *out = NULL;
    if (!v) return 0;
    if (v->type != t)
        return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: '%s' must be %s, got %s", key, what,
                        jv_type_name(v->type));
    *out = v;
    return 0;
}

int rpc_param_obj(rpc_call *c, const char *key, const jv **out)
{
    return param_typed(c, key, JV_OBJECT, "an object", out);
}

int rpc_param_arr(rpc_call *c, const char *key, const jv **out)
{
    return param_typed(c, key, JV_ARRAY, "an array", out);
}
