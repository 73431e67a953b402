/*
 * rpc_defer.c - deferred responses (see rpc.h): a handler hands its answer
 * to another thread (the upstream thread streaming an LLM reply, a worker
 * storing the exchange), which sends frames through the connection's sink.
 *
 * The deferral copies what it needs from the request (the id as JSON text,
 * the session id) because the request's memory is gone once the handler
 * returns. It holds a reference on the sink until rpc_deferred_end(); the
 * sink tracks open deferrals so that a client that disconnects triggers
 * their on-close hooks (which cancel backend requests) at once.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lib/metrics.h"
#include "rpc/rpc.h"

struct rpc_deferred {
    rpc_sink *sink;
    bool ordered;
    char *id; /* JSON text */
    uint64_t session;
    int method_index;
    uint64_t t0;
    pthread_mutex_t mu;
    void (*on_close)(void *ctx);
    void *close_ctx;
    bool closed;
};

rpc_deferred *rpc_defer(rpc_call *c, bool ordered, const jv *id)
{
    if (!c->can_defer || !c->sink) return NULL;
    rpc_deferred *d = calloc(1, sizeof *d);
    if (!d) abort();
    jw w;
    jw_init(&w, 0, 64);
    if (id)
        jw_value(&w, id);
    else
        jw_null(&w);
    jw_append(&w, "", 1);
    d->id = jw_release(&w);
    d->sink = c->sink;
    d->ordered = ordered;
    d->session = c->sess ? c->sess->id : 0;
    d->method_index = c->method_index;
    d->t0 = c->t0;
    pthread_mutex_init(&d->mu, NULL);
    d->sink->ops->ref(d->sink);
    d->sink->ops->watch(d->sink, d);
    c->deferred = true;
    c->ordered = ordered;
    c->def = d;
    return d;
}

const char *rpc_deferred_id(rpc_deferred *d)
{
    return d->id;
}

uint64_t rpc_deferred_session(rpc_deferred *d)
{
    return d->session;
}

static jw frame_begin(rpc_deferred *d)
{
    jw w;
    jw_init(&w, d->sink->headroom, 256);
    jw_append(&w, "{\"jsonrpc\":\"2.0\",", 17);
    return w;
}

static void frame_send(rpc_deferred *d, jw *w)
{
    jw_append(w, ",\"id\":", 6);
    jw_append(w, d->id, strlen(d->id));
    jw_append(w, "}", 1);
    d->sink->ops->send(d->sink, w);
}

jw rpc_deferred_result_begin(rpc_deferred *d)
{
    jw w = frame_begin(d);
    jw_append(&w, "\"result\":", 9);
    return w;
}

void rpc_deferred_result_end(rpc_deferred *d, jw *w)
{
    frame_send(d, w);
}

void rpc_deferred_result(rpc_deferred *d, const char *result, size_t len)
{
    jw w = rpc_deferred_result_begin(d);
    jw_append(&w, result, len);
    frame_send(d, &w);
}

void rpc_deferred_error(rpc_deferred *d, int code, const char *msg, const char *data)
{
    jw w = frame_begin(d);
    jw_append(&w, "\"error\":", 8);
    jw_obj_begin(&w);
    jw_kint(&w, "code", code);
    jw_kstr(&w, "message", msg);
    if (data) {
        jw_key(&w, "data");
        jw_raw(&w, data, strlen(data));
    }
    jw_obj_end(&w);
    frame_send(d, &w);
}

void rpc_deferred_on_close(rpc_deferred *d, void (*fn)(void *ctx), void *ctx)
{
    pthread_mutex_lock(&d->mu);
    bool already = d->closed;
    d->on_close = fn;
    d->close_ctx = ctx;
    pthread_mutex_unlock(&d->mu);
    if (already && fn) fn(ctx);
}

void rpc_deferred_closed(rpc_deferred *d)
{
    pthread_mutex_lock(&d->mu);
    d->closed = true;
    void (*fn)(void *) = d->on_close;
    void *ctx = d->close_ctx;
    pthread_mutex_unlock(&d->mu);
    if (fn) fn(ctx);
}

void rpc_deferred_end(rpc_deferred *d, bool ok)
{
    if (!d) return;
    metrics_request(d->method_index, ok, metrics_now_ns() - d->t0);
    d->sink->ops->unwatch(d->sink, d);
    if (d->ordered) d->sink->ops->finish(d->sink);
    d->sink->ops->unref(d->sink);
    pthread_mutex_destroy(&d->mu);
    free(d->id);
    free(d);
}

static void send_raw(rpc_sink *s, const char *json, size_t len)
{
    jw w;
    jw_init(&w, s->headroom, len + 16);
    jw_append(&w, json, len);
    s->ops->send(s, &w);
}

void rpc_deferred_send_raw(rpc_deferred *d, const char *json, size_t len)
{
    send_raw(d->sink, json, len);
}

void rpc_send_raw(rpc_call *c, const char *json, size_t len)
{
    if (c->sink) send_raw(c->sink, json, len);
}

rpc_sink *rpc_deferred_sink(rpc_deferred *d)
{
    return d->sink;
}
