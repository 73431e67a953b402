/*
 * net_server.c - the libwebsockets context, the WebSocket JSON-RPC
 * connection and the hand-off between the service thread and workers.
 *
 * The service thread runs a libev loop (epoll) of ours, and lws runs on it
 * through its libev plugin (net_start, net_run): lws's own loop poll()s every
 * socket at every wakeup, which does not scale to thousands of connections.
 *
 * Life of a request: fragments are appended to conn->rx until the final
 * fragment (closing with 1009 past --max-message-bytes); the message is
 * parsed into a scratch arena; an all-inline message is executed at once and
 * its response queued on conn->out; otherwise a job (owning a copy of the
 * bytes) goes to the worker queue, and its completion comes back through
 * net_post(). Responses leave in WRITEABLE callbacks, one lws_write each,
 * except two shortcuts that skip a poll round: an answer made inside its
 * connection's RECEIVE with nothing queued is written at once, and frames
 * queued by a batch of posts (relayed tokens) are written at the end of
 * that batch, each connection's in one pass, the socket corked meanwhile
 * so they leave in as few segments as possible. On a connection without
 * extensions (no permessage-deflate state to keep in step), several queued
 * messages are framed here and leave in one write.
 *
 * Order: a connection's answers leave in the order of its requests, and a
 * request starts only when the ones before it have finished (later ones wait
 * in conn->pending), with one exception: pipelined calls of `concurrent`
 * methods (independent stores) run side by side on the workers, up to
 * NET_FLY_MAX at once, so they share the writer's group commits. Those
 * "flights" sit in a FIFO in request order; an answer leaves only once every
 * flight before it has answered.
 *
 * A net_conn outlives its wsi while jobs reference it: the wsi side drops
 * its reference at close and marks the conn closed; a late completion then
 * just frees its response.
 */
#include <errno.h>
#include <ev.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/json.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/metrics.h"
#include "lib/workq.h"
#include "net/net.h"
#include "net/net_internal.h"
#include "rpc/rpc.h"

#define NET_FLY_MAX 32 /* concurrent calls of one connection on the workers */

typedef struct net_msg {
    struct net_msg *next;
    char *buf; /* LWS_PRE headroom + len bytes */
    size_t len;
} net_msg;

typedef struct job_frame {
    struct job_frame *next;
    struct net_job *job;
    jw frame;
} job_frame;

typedef struct net_job {
    rpc_sink sink; /* flights: a deferred answer lands in this job's turn */
    atomic_int refs;
    struct net_job *next;
    net_conn *conn;
    char *raw; /* the message, with JSON_PADDING spare bytes; NULL when answered */
    size_t len;
    uint64_t t0;
    bool ordered;     /* its handler deferred an ordered answer: the sink finishes it */
    bool flight;      /* a concurrent call: on conn's flight FIFO */
    bool worker_done; /* (flights) its handler returned */
    bool defer_done;  /* (flights) its deferred answer ended */
    bool finished;    /* (flights) answered, waiting for the flights before it */
    job_frame *frames, *frames_tail; /* (flights) deferred frames, in order */
    jw out; /* the answer (pre-answered rejections wait here for their turn) */
} net_job;

struct net_conn {
    rpc_sink sink; /* first member: a net_conn is its own sink */
    atomic_int refs;
    pthread_mutex_t defer_mu; /* open deferrals, touched from any thread */
    rpc_deferred **defers;
    size_t ndefers, defers_cap;
    struct lws *wsi; /* NULL once closed */
    app *app;
    rpc_session *sess;
    char *rx;
    size_t rx_len, rx_cap;
    net_job *pending_head, *pending_tail;
    int pending;
    bool busy;                    /* a job of this connection is on a worker */
    net_job *fly_head, *fly_tail; /* concurrent calls in request order */
    int flying;
    bool closing;                           /* a close was requested: ignore further input */
    bool throttled;                         /* reading paused until the pending queue drains */
    uint64_t last_active;                   /* monotonic ns of the last message in or out */
    struct net_conn *live_prev, *live_next; /* open connections (idle sweep) */
    net_msg *out_head, *out_tail;
    int out_n;          /* messages in out_head */
    bool plain;         /* no extension offered: we may frame messages ourselves */
    bool flush_pending; /* on S.flush: written when run_posts ends */
    struct net_conn *flush_next;
};

typedef struct post_item {
    struct post_item *next;
    net_post_fn fn;
    void *arg;
    bool owned; /* malloc'd by net_post (else inside arg, which fn frees) */
} post_item;

/* Service-thread state (one context per process). */
static struct {
    struct ev_loop *loop; /* ours; lws runs on it (its libev plugin): epoll, not poll() */
    struct lws_vhost *vhost;
    pthread_mutex_t post_mu;
    post_item *post_head, *post_tail;
    bool wake_pending; /* under post_mu: lws_cancel_service called, run_posts not yet run */
    volatile sig_atomic_t stop_requested;
    atomic_uint_fast64_t next_conn_id;
    int jobs_in_flight; /* dispatched to workers, not yet completed */
    int out_queued;     /* responses waiting for WRITEABLE */
    jarena scratch;
    lws_retry_bo_t retry;
    net_conn *live;      /* open WebSocket connections */
    net_conn *receiving; /* the connection whose RECEIVE is running */
    bool in_posts;       /* run_posts is running: queue, flush at its end */
    net_conn *flush;     /* connections to write at the end of run_posts (a ref each) */
    unsigned char *tx;   /* scratch for several frames in one write */
    size_t tx_cap;
    lws_sorted_usec_list_t sweep;
    app *app;
} S = {.post_mu = PTHREAD_MUTEX_INITIALIZER};

/* ---- connection objects ---------------------------------------------------- */

static const rpc_sink_ops g_sink_ops, g_flight_ops;

/* ---- idle sweep ---------------------------------------------------------------
 * Once a second, close connections with no message in either direction for
 * --idle-timeout seconds and nothing in progress. (A per-message
 * lws_set_timeout would re-sort lws's timer list on every request, which
 * costs O(connections) each time.) */
static void live_add(net_conn *c)
{
    c->live_prev = NULL;
    c->live_next = S.live;
    if (S.live) S.live->live_prev = c;
    S.live = c;
}

static void live_remove(net_conn *c)
{
    if (c->live_prev)
        c->live_prev->live_next = c->live_next;
    else if (S.live == c)
        S.live = c->live_next;
    if (c->live_next) c->live_next->live_prev = c->live_prev;
    c->live_prev = c->live_next = NULL;
}

static void conn_close(net_conn *c, enum lws_close_status code, const char *why);

static bool conn_has_work(net_conn *c)
{
    pthread_mutex_lock(&c->defer_mu);
    bool streams = c->ndefers > 0;
    pthread_mutex_unlock(&c->defer_mu);
    return c->busy || c->flying || c->pending || c->out_head || streams;
}

static void sweep(lws_sorted_usec_list_t *sul)
{
    uint64_t now = metrics_now_ns();
    uint64_t limit = (uint64_t)S.app->cfg.idle_timeout_secs * 1000000000ull;
    for (net_conn *c = S.live; c; c = c->live_next)
        if (!c->closing && now - c->last_active > limit && !conn_has_work(c))
            conn_close(c, LWS_CLOSE_STATUS_GOINGAWAY, "idle timeout");
    lws_sul_schedule(S.app->lws, 0, sul, sweep, LWS_US_PER_SEC);
}

uint64_t net_next_session_id(void)
{
    return atomic_fetch_add(&S.next_conn_id, 1) + 1;
}

static net_conn *conn_new(app *a, struct lws *wsi)
{
    net_conn *c = calloc(1, sizeof *c);
    if (!c) abort();
    c->sink.ops = &g_sink_ops;
    c->sink.headroom = LWS_PRE;
    pthread_mutex_init(&c->defer_mu, NULL);
    atomic_init(&c->refs, 1);
    c->wsi = wsi;
    c->app = a;
    c->sess = rpc_session_new(net_next_session_id());
    return c;
}

static void conn_unref(net_conn *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1) return;
    rpc_session_unref(c->sess);
    pthread_mutex_destroy(&c->defer_mu);
    free(c->defers);
    free(c->rx);
    free(c);
}

static void job_free(net_job *j)
{
    while (j->frames) {
        job_frame *f = j->frames;
        j->frames = f->next;
        jw_free(&f->frame);
        free(f);
    }
    jw_free(&j->out);
    free(j->raw);
    conn_unref(j->conn);
    free(j);
}

static net_job *job_new(net_conn *c, const char *data, size_t len, uint64_t t0)
{
    net_job *j = calloc(1, sizeof *j);
    if (!j) abort();
    j->raw = malloc(len + JSON_PADDING);
    if (!j->raw) abort();
    memcpy(j->raw, data, len);
    memset(j->raw + len, 0, JSON_PADDING);
    j->len = len;
    j->t0 = t0;
    j->conn = c;
    jw_init(&j->out, LWS_PRE, 512);
    atomic_fetch_add(&c->refs, 1);
    j->sink.ops = &g_flight_ops;
    j->sink.headroom = LWS_PRE;
    atomic_init(&j->refs, 1);
    return j;
}

static void job_unref(net_job *j)
{
    if (atomic_fetch_sub(&j->refs, 1) == 1) job_free(j);
}

/* Queue a finished response (takes the jw's buffer). */
static void conn_queue_out(net_conn *c, jw *w)
{
    if (jw_size(w) == 0 || !c->wsi) {
        jw_free(w);
        return;
    }
    /* Answering inside the connection's own RECEIVE with nothing queued:
     * write now instead of waiting a poll round for WRITEABLE (one
     * syscall less per request); lws buffers what the socket cannot take. */
    if (S.receiving == c && !c->out_head && !c->closing && !lws_partial_buffered(c->wsi)) {
        size_t n = jw_size(w);
        int rc = lws_write(c->wsi, (unsigned char *)w->buf + LWS_PRE, n, LWS_WRITE_TEXT);
        metrics_inc(MC_WS_MESSAGES_OUT, 1);
        metrics_inc(MC_WS_BYTES_OUT, n);
        jw_free(w);
        if (rc < 0) conn_close(c, LWS_CLOSE_STATUS_ABNORMAL_CLOSE, "write failed");
        return;
    }
    net_msg *m = malloc(sizeof *m);
    if (!m) abort();
    m->len = jw_size(w);
    m->buf = jw_release(w);
    m->next = NULL;
    if (c->out_tail)
        c->out_tail->next = m;
    else
        c->out_head = m;
    c->out_tail = m;
    c->out_n++;
    S.out_queued++;
    if (!S.in_posts) {
        lws_callback_on_writable(c->wsi);
    } else if (!c->flush_pending) {
        c->flush_pending = true;
        atomic_fetch_add(&c->refs, 1);
        c->flush_next = S.flush;
        S.flush = c;
    }
}

static void conn_drop_queues(net_conn *c)
{
    while (c->out_head) {
        net_msg *m = c->out_head;
        c->out_head = m->next;
        free(m->buf);
        free(m);
        S.out_queued--;
    }
    c->out_tail = NULL;
    c->out_n = 0;
    while (c->pending_head) {
        net_job *j = c->pending_head;
        c->pending_head = j->next;
        job_free(j);
    }
    c->pending_tail = NULL;
    c->pending = 0;
}

/* ---- cross-thread posting ------------------------------------------------- */

static _Thread_local bool t_service; /* set on the thread that runs the event loop (net_run) */

bool net_on_service_thread(void)
{
    return t_service;
}

/* net_post_hold/release: the wake owed by this thread's held posts. */
static _Thread_local int tl_hold;
static _Thread_local app *tl_owed;

static void wake_service(app *a)
{
    if (a->lws) lws_cancel_service(a->lws);
}

static void post_push(app *a, post_item *it)
{
    it->next = NULL;
    /* Only a post that finds no wakeup pending wakes the service thread:
     * run_posts takes the whole list (and clears the flag) under the mutex,
     * so the ones queued meanwhile ride along (one wakeup per burst, not
     * one per token). A thread in net_post_hold owes its wakeup until its
     * release; another thread's wakeup meanwhile takes its posts too. */
    pthread_mutex_lock(&S.post_mu);
    if (S.post_tail)
        S.post_tail->next = it;
    else
        S.post_head = it;
    S.post_tail = it;
    bool wake = !S.wake_pending && !tl_hold;
    if (wake) S.wake_pending = true;
    pthread_mutex_unlock(&S.post_mu);
    if (tl_hold) tl_owed = a;
    if (wake) wake_service(a);
}

void net_post(app *a, net_post_fn fn, void *arg)
{
    post_item *it = malloc(sizeof *it);
    if (!it) abort();
    *it = (post_item){.fn = fn, .arg = arg, .owned = true};
    post_push(a, it);
}

void net_post_hold(void)
{
    tl_hold++;
}

void net_post_release(void)
{
    if (--tl_hold > 0 || !tl_owed) return;
    app *a = tl_owed;
    tl_owed = NULL;
    pthread_mutex_lock(&S.post_mu);
    bool wake = S.post_head && !S.wake_pending; /* else run_posts took them already */
    if (wake) S.wake_pending = true;
    pthread_mutex_unlock(&S.post_mu);
    if (wake) wake_service(a);
}

static int conn_write_queue(net_conn *c, struct lws *wsi);

/* Write what the batch queued, one pass per connection. */
static void flush_posted(void)
{
    while (S.flush) {
        net_conn *c = S.flush;
        S.flush = c->flush_next;
        c->flush_pending = false;
        if (c->wsi && !c->closing && conn_write_queue(c, c->wsi) < 0)
            conn_close(c, LWS_CLOSE_STATUS_ABNORMAL_CLOSE, "write failed");
        else if (c->wsi && c->out_head)
            lws_callback_on_writable(c->wsi);
        conn_unref(c);
    }
}

#define POST_ROUNDS 8 /* lists taken per wakeup before lws gets the thread back */

/* Take the posted list; once it is empty, the next post must wake us. */
static post_item *take_posts(void)
{
    pthread_mutex_lock(&S.post_mu);
    post_item *it = S.post_head;
    S.post_head = S.post_tail = NULL;
    if (!it) S.wake_pending = false;
    pthread_mutex_unlock(&S.post_mu);
    return it;
}

/* Run what was posted, and what is posted meanwhile: wake_pending stays set
 * until the list is found empty, so a post that lands while we run costs
 * its poster no write to lws's wakeup pipe and us no poll round (they came
 * ~3,000 times a second under a thousand streams). Frames are flushed after
 * each list; after POST_ROUNDS lists lws gets the thread back (reads,
 * WRITEABLE), with a wakeup of our own if more is waiting. */
static void run_posts(app *a)
{
    for (int round = 0;; round++) {
        if (round == POST_ROUNDS) {
            pthread_mutex_lock(&S.post_mu);
            bool more = S.post_head != NULL;
            S.wake_pending = more;
            pthread_mutex_unlock(&S.post_mu);
            if (more) wake_service(a);
            return;
        }
        post_item *it = take_posts();
        if (!it) return;
        S.in_posts = a->lws != NULL; /* not from net_destroy */
        while (it) {
            post_item *next = it->next;
            bool owned = it->owned; /* else fn frees it */
            it->fn(a, it->arg);
            if (owned) free(it);
            it = next;
        }
        S.in_posts = false;
        flush_posted();
    }
}

/* Close with a code and reason. The close is started from the next
 * WRITEABLE (lws_close_reason, then -1: lws sends the close frame and waits
 * for the client's), not from inside RECEIVE: closing while the client is
 * still sending a large frame would reset the socket, and the client would
 * never see the close frame or its code. Input is discarded meanwhile. */
static void conn_close(net_conn *c, enum lws_close_status code, const char *why)
{
    if (c->closing || !c->wsi) return;
    c->closing = true;
    lws_close_reason(c->wsi, code, (unsigned char *)why, strlen(why));
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, 5);
    lws_callback_on_writable(c->wsi);
}

/* ---- request execution ---------------------------------------------------- */

static void conn_drain_pending(net_conn *c);

/* A request of c is complete: let the next one run. */
static void conn_unbusy(net_conn *c)
{
    S.jobs_in_flight--;
    c->busy = false;
    if (c->wsi) conn_drain_pending(c);
}

/* Nothing of c is running or waiting: a new request may start at once. */
static bool conn_idle(const net_conn *c)
{
    return !c->busy && !c->flying && !c->pending_head;
}

/* A flight is answered once its handler returned and, if it deferred, the
 * deferral ended. Then release the answers at the head of the FIFO that
 * are complete, and once none is flying let the waiting requests run. */
static void flight_check(net_conn *c, net_job *j)
{
    if (!j->worker_done || (j->ordered && !j->defer_done) || j->finished) return;
    j->finished = true;
    while (c->fly_head && c->fly_head->finished) {
        net_job *h = c->fly_head;
        c->fly_head = h->next;
        if (!c->fly_head) c->fly_tail = NULL;
        conn_queue_out(c, &h->out); /* frees it if the conn is gone */
        for (job_frame *f = h->frames; f; f = f->next) conn_queue_out(c, &f->frame);
        c->flying--;
        S.jobs_in_flight--;
        job_unref(h); /* the FIFO's reference */
    }
    if (!c->flying && c->wsi) conn_drain_pending(c);
}

static void job_done(app *a, void *arg)
{
    (void)a;
    net_job *j = arg;
    net_conn *c = j->conn;
    if (j->flight) {
        j->worker_done = true;
        flight_check(c, j);
        job_unref(j); /* the worker's reference */
        return;
    }
    if (c->wsi) conn_queue_out(c, &j->out);
    if (!j->ordered) conn_unbusy(c); /* else the sink's finish does it */
    job_free(j);
}

static void job_run(void *arg)
{
    net_job *j = arg;
    net_conn *c = j->conn;
    jarena arena;
    jarena_init(&arena);
    json_error err;
    jv *msg =
        json_parse(&arena, j->raw, j->len, j->len + JSON_PADDING, JSON_DEFAULT_MAX_DEPTH, &err);
    rpc_sink *sink = j->flight ? &j->sink : &c->sink;
    if (msg)
        j->ordered =
            rpc_execute(c->app, c->sess, sink, msg, &j->out, &arena, j->t0) == RPC_EXEC_ORDERED;
    jarena_free(&arena);
    net_post(c->app, job_done, j);
}

static void respond_error(net_conn *c, const jv *id, int code, const char *msg, const char *data)
{
    jw w;
    jw_init(&w, LWS_PRE, 256);
    rpc_write_error(&w, id, code, msg, data);
    conn_queue_out(c, &w);
}

/* Parse into the scratch arena; on failure answer -32700 and return NULL. */
static jv *parse_or_reply(net_conn *c, const char *data, size_t len, size_t cap)
{
    json_error err;
    jarena_reset(&S.scratch);
    jv *msg = json_parse(&S.scratch, data, len, cap, JSON_DEFAULT_MAX_DEPTH, &err);
    if (!msg) {
        metrics_inc(MC_PARSE_ERRORS, 1);
        respond_error(c, NULL, RPC_PARSE_ERROR, "Parse error", err.msg);
    }
    return msg;
}

static void dispatch(net_conn *c, net_job *j)
{
    c->busy = true;
    S.jobs_in_flight++;
    workq_push(c->app->workers, job_run, j);
}

static void fly(net_conn *c, net_job *j)
{
    j->flight = true;
    j->next = NULL;
    if (c->fly_tail)
        c->fly_tail->next = j;
    else
        c->fly_head = j;
    c->fly_tail = j;
    atomic_fetch_add(&j->refs, 1); /* one for the FIFO, one for the worker */
    c->flying++;
    S.jobs_in_flight++;
    workq_push(c->app->workers, job_run, j);
}

/* May this message start now, beside the flights of c? (Parse errors and
 * anything else wait for their turn, so answers stay in order.) */
static bool is_concurrent(net_conn *c, const char *data, size_t len, size_t cap)
{
    json_error err;
    jarena_reset(&S.scratch);
    jv *msg = json_parse(&S.scratch, data, len, cap, JSON_DEFAULT_MAX_DEPTH, &err);
    return msg && rpc_message_concurrent(c->sess, msg);
}

static bool can_fly(net_conn *c, const char *data, size_t len, size_t cap)
{
    if (c->busy || c->pending_head || c->flying >= NET_FLY_MAX) return false;
    return is_concurrent(c, data, len, cap);
}

/* Execute now if every method in it is inline; else hand to a worker. The
 * job (if any) is consumed either way. */
static void execute(net_conn *c, const char *data, size_t len, size_t cap, uint64_t t0, net_job *j)
{
    jv *msg = parse_or_reply(c, data, len, cap);
    if (msg && rpc_message_where(c->app, c->sess, msg) == RPC_WORKER) {
        if (!j) j = job_new(c, data, len, t0);
        if (rpc_message_concurrent(c->sess, msg))
            fly(c, j);
        else
            dispatch(c, j);
        return;
    }
    if (msg) {
        jw w;
        jw_init(&w, LWS_PRE, 512);
        if (rpc_execute(c->app, c->sess, &c->sink, msg, &w, &S.scratch, t0) == RPC_EXEC_ORDERED) {
            c->busy = true; /* the sink's finish releases it */
            S.jobs_in_flight++;
        }
        conn_queue_out(c, &w);
    }
    if (j) job_free(j);
}

/* Backpressure: a client that keeps pipelining past the limit (its
 * rejections queue up in order) is not read from until the queue drains,
 * so its memory stays bounded while it still gets every answer. */
static void throttle(net_conn *c)
{
    if (!c->throttled && c->wsi && c->pending >= 2 * c->app->cfg.max_inflight + 64) {
        c->throttled = true;
        lws_rx_flow_control(c->wsi, 0);
    }
}

static void unthrottle(net_conn *c)
{
    if (c->throttled && c->wsi && c->pending < c->app->cfg.max_inflight) {
        c->throttled = false;
        lws_rx_flow_control(c->wsi, 1);
    }
}

static void conn_drain_pending(net_conn *c)
{
    while (!c->busy && c->pending_head) {
        net_job *j = c->pending_head;
        if (c->flying && (!j->raw || c->flying >= NET_FLY_MAX ||
                          !is_concurrent(c, j->raw, j->len, j->len + JSON_PADDING)))
            break; /* it waits for the flights to land */
        c->pending_head = j->next;
        if (!c->pending_head) c->pending_tail = NULL;
        c->pending--;
        j->next = NULL;
        if (!j->raw) { /* answered already: a rejection waiting for its turn */
            conn_queue_out(c, &j->out);
            job_free(j);
            continue;
        }
        execute(c, j->raw, j->len, j->len + JSON_PADDING, j->t0, j);
    }
    unthrottle(c);
}

static void pending_push(net_conn *c, net_job *j)
{
    if (c->pending_tail)
        c->pending_tail->next = j;
    else
        c->pending_head = j;
    c->pending_tail = j;
    c->pending++;
}

/* Answer a request with an error without running it, in its turn: its id
 * is read, and the answer is queued behind the ones still pending. */
static void reject(net_conn *c, const char *data, size_t len, size_t cap, uint64_t t0, int code,
                   const char *text)
{
    json_error err;
    jarena_reset(&S.scratch);
    jv *msg = json_parse(&S.scratch, data, len, cap, JSON_DEFAULT_MAX_DEPTH, &err);
    const jv *id = msg && msg->type == JV_OBJECT ? jv_get(msg, "id") : NULL;
    if (msg && msg->type == JV_OBJECT && !id) return; /* a notification: no answer */
    net_job *j = calloc(1, sizeof *j);
    if (!j) abort();
    j->conn = c;
    j->t0 = t0;
    atomic_fetch_add(&c->refs, 1);
    jw_init(&j->out, LWS_PRE, 256);
    if (msg)
        rpc_write_error(&j->out, id, code, text, NULL);
    else
        rpc_write_error(&j->out, NULL, RPC_PARSE_ERROR, "Parse error", err.msg);
    if (conn_idle(c)) {
        conn_queue_out(c, &j->out);
        job_free(j);
        return;
    }
    pending_push(c, j);
}

static void on_message(net_conn *c, const char *data, size_t len, size_t cap)
{
    uint64_t t0 = metrics_now_ns();
    metrics_inc(MC_WS_MESSAGES_IN, 1);
    metrics_inc(MC_WS_BYTES_IN, len);
    if (S.stop_requested) {
        reject(c, data, len, cap, t0, RPC_SERVER_STOPPING, "Server is shutting down");
        return;
    }
    if (conn_idle(c)) {
        execute(c, data, len, cap, t0, NULL);
        return;
    }
    if (c->flying && can_fly(c, data, len, cap)) {
        fly(c, job_new(c, data, len, t0));
        return;
    }
    int limit = c->app->cfg.max_inflight;
    if (c->pending + c->flying + 1 >= limit) {
        metrics_inc(MC_INFLIGHT_REJECTED, 1);
        char text[128];
        snprintf(text, sizeof text, "Too many requests in flight on this connection (limit %d)",
                 limit);
        reject(c, data, len, cap, t0, RPC_TOO_MANY_INFLIGHT, text);
        throttle(c);
        return;
    }
    pending_push(c, job_new(c, data, len, t0));
    throttle(c);
}

/* ---- the connection as an rpc_sink ------------------------------------------ */

typedef struct sink_frame {
    post_item post; /* one allocation per relayed frame, not two */
    net_conn *conn;
    jw frame;
} sink_frame;

static void sink_frame_run(app *a, void *arg)
{
    (void)a;
    sink_frame *f = arg;
    conn_queue_out(f->conn, &f->frame); /* frees the frame if the conn is gone */
    conn_unref(f->conn);
    free(f);
}

static void sink_send(rpc_sink *s, jw *frame)
{
    net_conn *c = (net_conn *)s;
    sink_frame *f = malloc(sizeof *f);
    if (!f) abort();
    f->post = (post_item){.fn = sink_frame_run, .arg = f};
    f->conn = c;
    f->frame = *frame;
    memset(frame, 0, sizeof *frame);
    atomic_fetch_add(&c->refs, 1);
    post_push(c->app, &f->post);
}

static void sink_finish_run(app *a, void *arg)
{
    (void)a;
    net_conn *c = arg;
    conn_unbusy(c);
    conn_unref(c);
}

static void sink_finish(rpc_sink *s)
{
    net_conn *c = (net_conn *)s;
    atomic_fetch_add(&c->refs, 1);
    net_post(c->app, sink_finish_run, c);
}

static void sink_ref(rpc_sink *s)
{
    atomic_fetch_add(&((net_conn *)s)->refs, 1);
}

static void sink_unref(rpc_sink *s)
{
    conn_unref((net_conn *)s);
}

static void sink_watch(rpc_sink *s, rpc_deferred *d)
{
    net_conn *c = (net_conn *)s;
    pthread_mutex_lock(&c->defer_mu);
    if (c->ndefers == c->defers_cap) {
        c->defers_cap = c->defers_cap ? c->defers_cap * 2 : 4;
        c->defers = realloc(c->defers, c->defers_cap * sizeof *c->defers);
        if (!c->defers) abort();
    }
    c->defers[c->ndefers++] = d;
    bool gone = c->wsi == NULL;
    pthread_mutex_unlock(&c->defer_mu);
    if (gone) rpc_deferred_closed(d);
}

static void sink_unwatch(rpc_sink *s, rpc_deferred *d)
{
    net_conn *c = (net_conn *)s;
    pthread_mutex_lock(&c->defer_mu);
    for (size_t i = 0; i < c->ndefers; i++)
        if (c->defers[i] == d) {
            c->defers[i] = c->defers[--c->ndefers];
            break;
        }
    pthread_mutex_unlock(&c->defer_mu);
}

static const rpc_sink_ops g_sink_ops = {sink_send,  sink_finish, sink_ref,
                                        sink_unref, sink_watch,  sink_unwatch};

/* ---- a flight as an rpc_sink ----------------------------------------------------
 * A flight's deferred answer (a store answered by the writer's commit) is
 * kept on its job and leaves in the flight's turn. Deferrals are still
 * watched by the connection, so a close reaches them. */
static void flight_frame_run(app *a, void *arg)
{
    (void)a;
    job_frame *f = arg;
    net_job *j = f->job;
    f->next = NULL;
    if (j->frames_tail)
        j->frames_tail->next = f;
    else
        j->frames = f;
    j->frames_tail = f;
    job_unref(j);
}

static void flight_send(rpc_sink *s, jw *frame)
{
    net_job *j = (net_job *)s;
    job_frame *f = malloc(sizeof *f);
    if (!f) abort();
    f->job = j;
    f->frame = *frame;
    memset(frame, 0, sizeof *frame);
    atomic_fetch_add(&j->refs, 1);
    net_post(j->conn->app, flight_frame_run, f);
}

static void flight_finish_run(app *a, void *arg)
{
    (void)a;
    net_job *j = arg;
    j->defer_done = true;
    flight_check(j->conn, j);
    job_unref(j);
}

static void flight_finish(rpc_sink *s)
{
    net_job *j = (net_job *)s;
    atomic_fetch_add(&j->refs, 1);
    net_post(j->conn->app, flight_finish_run, j);
}

static void flight_ref(rpc_sink *s)
{
    atomic_fetch_add(&((net_job *)s)->refs, 1);
}

static void flight_unref(rpc_sink *s)
{
    job_unref((net_job *)s);
}

static void flight_watch(rpc_sink *s, rpc_deferred *d)
{
    sink_watch(&((net_job *)s)->conn->sink, d);
}

static void flight_unwatch(rpc_sink *s, rpc_deferred *d)
{
    sink_unwatch(&((net_job *)s)->conn->sink, d);
}

static const rpc_sink_ops g_flight_ops = {flight_send,  flight_finish, flight_ref,
                                          flight_unref, flight_watch,  flight_unwatch};

/* The client went away: tell every open deferral (their hooks cancel
 * backend requests; they must not end the deferral synchronously). */
static void conn_close_defers(net_conn *c)
{
    pthread_mutex_lock(&c->defer_mu);
    c->wsi = NULL;
    for (size_t i = 0; i < c->ndefers; i++) rpc_deferred_closed(c->defers[i]);
    pthread_mutex_unlock(&c->defer_mu);
}

/* ---- WebSocket callbacks ---------------------------------------------------- */

static int ws_receive(net_conn *c, struct lws *wsi, const char *in, size_t len)
{
    app *a = c->app;
    if (c->closing) return 0; /* discarded until the client's close arrives */
    if (lws_frame_is_binary(wsi)) {
        if (lws_is_final_fragment(wsi))
            respond_error(c, NULL, RPC_INVALID_REQUEST,
                          "Invalid Request: binary frames are not supported, send JSON text", NULL);
        return 0;
    }
    if (lws_is_first_fragment(wsi)) c->rx_len = 0;
    /* The frame header announces the rest of this frame: refuse a message
     * that cannot fit before reading it (and after inflation, as it grows). */
    if (c->rx_len + len + lws_remaining_packet_payload(wsi) > a->cfg.max_message_bytes) {
        metrics_inc(MC_OVERSIZE_CLOSED, 1);
        log_warn("message over limit, closing", "conn=%llu limit=%zu",
                 (unsigned long long)c->sess->id, a->cfg.max_message_bytes);
        conn_close(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message too large");
        return 0;
    }
    bool final = lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi);
    if (final && c->rx_len == 0) {
        /* Whole message in one callback: parse in place, with a copy only if
         * lws's buffer lacks padding (json_parse decides). */
        on_message(c, in, len, len);
        return 0;
    }
    if (c->rx_len + len + JSON_PADDING > c->rx_cap) {
        size_t cap = c->rx_cap ? c->rx_cap : 4096;
        while (cap < c->rx_len + len + JSON_PADDING) cap *= 2;
        c->rx = realloc(c->rx, cap);
        if (!c->rx) abort();
        c->rx_cap = cap;
    }
    memcpy(c->rx + c->rx_len, in, len);
    c->rx_len += len;
    if (final) {
        on_message(c, c->rx, c->rx_len, c->rx_cap);
        c->rx_len = 0;
    }
    return 0;
}

static void set_cork(struct lws *wsi, int on)
{
    int fd = (int)lws_get_socket_fd(wsi);
    if (fd >= 0) setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on);
}

/* lws_issue_raw sends at most tx_packet_size + LWS_PRE + 4 bytes per call;
 * lws keeps the rest for later POLLOUTs (at 4 KiB, the default of
 * rx_buffer_size, a 2 MB answer took 500 rounds of poll). Batches of small
 * frames stay well within one send. */
#define TX_PACKET_SIZE 65536
#define TX_BATCH_MAX   4096

/* A server-to-client text frame header (RFC 6455 5.2: FIN, no mask). */
static size_t frame_header(unsigned char *h, size_t len)
{
    h[0] = 0x81;
    if (len < 126) {
        h[1] = (unsigned char)len;
        return 2;
    }
    if (len < 65536) {
        h[1] = 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++) h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

static void msg_done(net_conn *c, net_msg *m)
{
    c->out_head = m->next;
    if (!c->out_head) c->out_tail = NULL;
    c->out_n--;
    S.out_queued--;
    metrics_inc(MC_WS_MESSAGES_OUT, 1);
    metrics_inc(MC_WS_BYTES_OUT, m->len);
    free(m->buf);
    free(m);
}

/* Frame queued messages (up to TX_BATCH_MAX bytes, at least one) into one
 * buffer and write it at once; lws keeps what the socket did not take and
 * sends it before anything else. Only for plain connections. */
static int write_framed(net_conn *c, struct lws *wsi)
{
    size_t total = 0;
    for (net_msg *m = c->out_head; m; m = m->next) {
        if (total && total + m->len + 10 > TX_BATCH_MAX) break;
        total += m->len + 10;
    }
    if (total > S.tx_cap) {
        free(S.tx);
        if (!(S.tx = malloc(total))) abort();
        S.tx_cap = total;
    }
    size_t n = 0, room = total;
    while (c->out_head && c->out_head->len + 10 <= room) {
        net_msg *m = c->out_head;
        size_t h = frame_header(S.tx + n, m->len);
        memcpy(S.tx + n + h, m->buf + LWS_PRE, m->len);
        n += h + m->len;
        room -= m->len + 10;
        msg_done(c, m);
    }
    return lws_write(wsi, S.tx, n, LWS_WRITE_HTTP) < 0 ? -1 : 0;
}

/* Up to 32 batches; stops early when the socket is full (lws kept part of a write:
 * checked without lws_send_pipe_choked, which polls the socket, a syscall a token). */
static int conn_write_framed(net_conn *c, struct lws *wsi)
{
    c->last_active = metrics_now_ns();
    for (int n = 0; c->out_head && n < 32; n++) {
        if (write_framed(c, wsi) < 0) return -1;
        if (c->out_head && lws_partial_buffered(wsi)) break; /* the socket is full */
    }
    return 0;
}

/* Write up to 32 queued messages (fewer if the socket fills up); with
 * several, the socket is corked until the last, so they share segments.
 * -1 when a write failed. */
static int conn_write_queue(net_conn *c, struct lws *wsi)
{
    /* Bytes lws still holds go first. A text write now would be appended
     * behind them, but lws 4.1 then leaves its frame "open" (ws->inside_frame)
     * and sends the next text frame without a header. WRITEABLE comes once
     * lws has drained them. */
    if (lws_partial_buffered(wsi)) return 0;
    if (c->plain && c->out_n > 1) return conn_write_framed(c, wsi);
    bool cork = c->out_n > 2;
    if (cork) set_cork(wsi, 1);
    int rc = 0;
    for (int n = 0; c->out_head && n < 32; n++) {
        net_msg *m = c->out_head;
        int w = lws_write(wsi, (unsigned char *)m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT);
        msg_done(c, m);
        if (w < 0) {
            rc = -1;
            break;
        }
        if (c->out_head && lws_partial_buffered(wsi)) break; /* the socket is full */
    }
    if (cork) set_cork(wsi, 0); /* sends what the cork held */
    c->last_active = metrics_now_ns();
    return rc;
}

static int ws_writeable(net_conn *c, struct lws *wsi)
{
    if (c->closing) return -1; /* sends the close frame set by conn_close */
    if (conn_write_queue(c, wsi) < 0) return -1;
    if (c->out_head) lws_callback_on_writable(wsi);
    return 0;
}

static int ws_confirm_upgrade(app *a, struct lws *wsi)
{
    char uri[64] = "";
    lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI);
    const char *why = NULL;
    int status = 0;
    if (strcmp(uri, "/mcp") != 0) {
        status = 404;
        why = "WebSocket endpoint is /mcp";
    } else if ((status = net_guard_check(a, wsi, true, &why)) != 0) {
    } else if (S.stop_requested) {
        status = 503;
        why = "server is shutting down";
    } else if (atomic_load(&a->connections) >= a->cfg.max_connections) {
        status = 503;
        why = "too many connections";
    }
    if (!status) return 0;
    metrics_inc(MC_CONNECTIONS_REFUSED, 1);
    log_warn("websocket upgrade refused", "status=%d reason=\"%s\"", status, why);
    lws_return_http_status(wsi, (unsigned)status, why);
    return 1;
}

static int ws_established(app *a, struct lws *wsi, net_pss *pss)
{
    pss->conn = conn_new(a, wsi);
    pss->conn->plain = lws_hdr_total_length(wsi, WSI_TOKEN_EXTENSIONS) <= 0;
    atomic_fetch_add(&a->connections, 1);
    pss->conn->last_active = metrics_now_ns();
    live_add(pss->conn);
    log_debug("connection open", "conn=%llu", (unsigned long long)pss->conn->sess->id);
    return 0;
}

static void ws_closed(app *a, net_pss *pss)
{
    net_conn *c = pss->conn;
    if (!c) return;
    pss->conn = NULL;
    atomic_fetch_sub(&a->connections, 1);
    log_debug("connection closed", "conn=%llu", (unsigned long long)c->sess->id);
    live_remove(c);
    conn_close_defers(c); /* also clears c->wsi */
    conn_drop_queues(c);
    conn_unref(c);
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    app *a = ctx ? lws_context_user(ctx) : NULL;
    net_pss *pss = user;
    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (a) run_posts(a);
        return 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return ws_confirm_upgrade(a, wsi);
    case LWS_CALLBACK_ESTABLISHED:
        return ws_established(a, wsi, pss);
    case LWS_CALLBACK_RECEIVE:
        if (!pss->conn) return -1;
        pss->conn->last_active = metrics_now_ns();
        S.receiving = pss->conn;
        int rc = ws_receive(pss->conn, wsi, in, len);
        S.receiving = NULL;
        return rc;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return pss->conn ? ws_writeable(pss->conn, wsi) : 0;
    case LWS_CALLBACK_CLOSED:
        ws_closed(a, pss);
        return 0;
    case LWS_CALLBACK_HTTP:
        return net_http_request(a, wsi, pss, in);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return net_http_writeable(wsi, pss);
    case LWS_CALLBACK_HTTP_BODY:
        return net_mcp_http_body(a, wsi, pss, in, len);
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return net_mcp_http_body_done(a, wsi, pss);
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_CLOSED_HTTP:
        net_http_drop(pss);
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* ---- context ---------------------------------------------------------------- */

static const struct lws_extension g_exts[] = {
    {"permessage-deflate", lws_extension_callback_pm_deflate,
     "permessage-deflate; client_no_context_takeover; client_max_window_bits"},
    {NULL, NULL, NULL},
};

static struct lws_protocols g_protocols[] = {
    {"persona-jsonrpc", callback, sizeof(net_pss), 4096, 0, NULL, TX_PACKET_SIZE},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void lws_log_emit(int level, const char *line)
{
    /* lws 4.1 logs this for every HTTP/1 SSE stream; it is harmless. */
    if (strstr(line, "not h2 substream")) return;
    char text[512];
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
    snprintf(text, sizeof text, "%.*s", (int)n, line);
    for (char *p = text; *p; p++)
        if (*p == '"') *p = '\'';
    log_write(level == LLL_ERR ? LOG_ERROR : LOG_WARN, "libwebsockets", "detail=\"%s\"", text);
}

static int write_port_file(const char *path, int port)
{
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return -1;
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0) return -1;
    return rename(tmp, path);
}

int net_start(app *a)
{
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
    jarena_init(&S.scratch);
    S.retry.secs_since_valid_ping = (uint16_t)a->cfg.ping_interval_secs;
    S.retry.secs_since_valid_hangup =
        (uint16_t)(a->cfg.ping_interval_secs ? a->cfg.ping_interval_secs * 2 + 10 : 0);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    const char *host = a->cfg.host;
    if (strcmp(host, "localhost") == 0) host = "127.0.0.1";
    info.iface = host;
    info.port = a->cfg.port;
    info.protocols = g_protocols;
    info.extensions = g_exts;
    info.user = a;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 |
                   LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE;
    if (!strchr(host, ':')) info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    info.server_string = "persona-mcp";
    info.timeout_secs = 30;
    if (a->cfg.ping_interval_secs) info.retry_and_idle_policy = &S.retry;
    info.pt_serv_buf_size = 32768;
    /* The event loop is libev's epoll backend, run by net_run: lws's own loop calls
     * poll() on every socket at every wakeup, which cost 9.8 ms per request with
     * 10,000 idle connections open and half the service thread's CPU while
     * relaying 1,000 streams over 50 (docs/ARCHITECTURE.md "The event loop"). */
    S.loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOSIGMASK);
    if (!S.loop) {
        log_error("cannot create the event loop", "backend=epoll");
        return -1;
    }
    void *loops[1] = {S.loop};
    info.foreign_loops = loops;
    info.options |= LWS_SERVER_OPTION_LIBEV;
    a->lws = lws_create_context(&info);
    if (!a->lws) {
        log_error("cannot listen", "host=%s port=%d hint=\"%s\"", a->cfg.host, a->cfg.port,
                  "address in use, or lws's libev plugin missing (libwebsockets-evlib-ev)");
        return -1;
    }
    S.vhost = lws_get_vhost_by_name(a->lws, "default");
    S.app = a;
    lws_sul_schedule(a->lws, 0, &S.sweep, sweep, LWS_US_PER_SEC);
    int port = S.vhost ? lws_get_vhost_listen_port(S.vhost) : a->cfg.port;
    if (a->cfg.port_file[0] && write_port_file(a->cfg.port_file, port) < 0) {
        log_error("cannot write port file", "path=%s", a->cfg.port_file);
        return -1;
    }
    log_info("listening", "host=%s port=%d ws=ws://%s:%d/mcp", a->cfg.host, port, a->cfg.host,
             port);
    return 0;
}

void net_request_stop(app *a)
{
    S.stop_requested = 1;
    atomic_store(&a->stopping, true);
    if (a->lws) lws_cancel_service(a->lws);
}

void net_run(app *a)
{
    uint64_t deadline = 0;
    t_service = true;
    /* a short slice: woken by a post or a socket, this thread is scheduled before
     * a thread that has run longer (measured: docs/BENCHMARKS.md, 2026-12-07) */
    if (util_set_slice_us(a->cfg.io_slice_us) < 0)
        log_debug("service: the kernel keeps its own time slice", "errno=%d", errno);
    while (a->lws) {
        ev_run(S.loop, EVRUN_ONCE); /* lws's sockets, timers and wakeup pipe */
        if (!S.stop_requested) continue;
        uint64_t now = metrics_now_ns();
        if (!deadline) {
            deadline = now + 10ull * 1000000000ull;
            log_info("stopping: finishing in-flight requests", "jobs=%d", S.jobs_in_flight);
        }
        if ((S.jobs_in_flight == 0 && S.out_queued == 0) || now > deadline) break;
    }
}

void net_destroy(app *a)
{
    if (a->lws) lws_sul_cancel(&S.sweep);
    if (a->lws) lws_context_destroy(a->lws);
    a->lws = NULL;
    if (S.loop) {
        ev_run(S.loop, EVRUN_NOWAIT); /* what the destroy left to the loop */
        ev_loop_destroy(S.loop);
        S.loop = NULL;
    }
    net_mcp_http_shutdown();
    run_posts(a); /* completions that raced the shutdown: free them */
    jarena_free(&S.scratch);
    free(S.tx);
    S.tx = NULL;
    S.tx_cap = 0;
}
