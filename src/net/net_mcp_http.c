/*
 * net_mcp_http.c - MCP Streamable HTTP on /mcp, beside the WebSocket.
 *
 *   POST   one JSON-RPC message (or batch). A request is answered with
 *          application/json (Content-Length, the connection kept alive),
 *          unless it may send something before its response: a tools/call
 *          with a progressToken, or of chat or a conformance fixture, gets
 *          an SSE stream so progress, logging and sampling requests can
 *          ride before the result (mcp_request_may_stream); it is chunked,
 *          so that connection is kept as well. Notifications and responses
 *          only: 202.
 *   GET    the session's standalone SSE stream (server notifications).
 *   DELETE ends the session.
 *
 * Sessions: initialize creates one, named by a random 128-bit id sent as
 * Mcp-Session-Id; later requests must carry it (400 without, 404 when
 * unknown or ended). Status codes follow the research notes: 406 for a
 * missing Accept type, 415 for a non-JSON body, 413 over the size limit,
 * 400 for malformed JSON or an unsupported MCP-Protocol-Version, 405 for
 * other methods, 409 for a second GET stream. Origin, Host and the bearer
 * token are checked by net_guard first.
 *
 * Each request gets an mh_stream: an rpc_sink that worker, upstream and
 * service threads send frames to; the frames are written on the service
 * thread in HTTP_WRITEABLE. The stream outlives the connection while
 * others hold references. The body is parsed once: RAM-only methods run
 * right here on the service thread (their frames go straight onto the
 * stream), the rest go to a worker that takes the parsed message's arena.
 * Frames keep headroom, so a JSON response is one write of headers and
 * body, and an SSE event one write of prefix and data.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "lib/json.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/workq.h"
#include "mcp/mcp.h"
#include "net/net.h"
#include "net/net_internal.h"
#include "rpc/rpc.h"

#define SESSION_IDLE_SECS 3600
/* Frames keep this much room in front, so the HTTP headers or the SSE event
 * prefix go out in the same write as the JSON. */
#define FRAME_HEADROOM (LWS_PRE + 1024)

/* ---- sessions (service thread only) ---------------------------------------- */

typedef struct mh_session {
    struct mh_session *next;
    char id[33];
    rpc_session *s;
    double last_used;
    bool has_get;
} mh_session;

/* Sessions by id: a chained hash table, so a request's lookup does not
 * depend on how many sessions are open. */
#define SESSION_BUCKETS 1024
static mh_session *g_sessions[SESSION_BUCKETS];
static int g_nsessions;

static mh_session **bucket_of(const char *id)
{
    uint32_t h = 2166136261u; /* FNV-1a: the ids are random, but come from clients */
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) h = (h ^ *p) * 16777619u;
    return &g_sessions[h % SESSION_BUCKETS];
}

static void session_drop(mh_session **pp)
{
    mh_session *x = *pp;
    *pp = x->next;
    mcp_session_set_notify(x->s, NULL);
    rpc_session_unref(x->s);
    free(x);
    g_nsessions--;
}

/* At most once a second: a request must not walk every session. */
static void sessions_expire(void)
{
    static double last;
    double now = app_now();
    if (now - last < 1.0 || !g_nsessions) return;
    last = now;
    for (int i = 0; i < SESSION_BUCKETS; i++)
        for (mh_session **pp = &g_sessions[i]; *pp;) {
            if (now - (*pp)->last_used > SESSION_IDLE_SECS)
                session_drop(pp);
            else
                pp = &(*pp)->next;
        }
}

/* The link that points at session id (*result NULL when there is none). */
static mh_session **session_link(const char *id)
{
    mh_session **pp = bucket_of(id);
    while (*pp && strcmp((*pp)->id, id) != 0) pp = &(*pp)->next;
    return pp;
}

static mh_session *session_find(const char *id)
{
    mh_session *x = *session_link(id);
    if (x) x->last_used = app_now();
    return x;
}

static mh_session *session_new(app *a)
{
    mh_session *x = calloc(1, sizeof *x);
    if (!x) abort();
    unsigned char r[16];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) abort();
    for (int i = 0; i < 16; i++) snprintf(x->id + 2 * i, 3, "%02x", r[i]);
    x->s = rpc_session_new(net_next_session_id());
    mcp_session_setup(x->s, a);
    x->last_used = app_now();
    mh_session **head = bucket_of(x->id);
    x->next = *head;
    *head = x;
    g_nsessions++;
    return x;
}

void net_mcp_http_shutdown(void)
{
    for (int i = 0; i < SESSION_BUCKETS; i++)
        while (g_sessions[i]) session_drop(&g_sessions[i]);
}

/* ---- streams ------------------------------------------------------------------ */

typedef struct mh_frame {
    struct mh_frame *next;
    jw w;
} mh_frame;

typedef struct mh_stream {
    rpc_sink sink;
    atomic_int refs;
    app *app;
    struct lws *wsi; /* NULL once the client is gone */
    bool sse, headers_sent, complete, standalone;
    char session[33];
    mh_frame *head, *tail;
    mh_session *owner_get; /* standalone stream: the session it serves */
} mh_stream;

struct mh_req {
    char *body;
    size_t len, cap;
    bool too_large;
    mh_stream *stream;
    char session[33];
};

static void stream_unref(mh_stream *st)
{
    if (atomic_fetch_sub(&st->refs, 1) != 1) return;
    while (st->head) {
        mh_frame *f = st->head;
        st->head = f->next;
        jw_free(&f->w);
        free(f);
    }
    free(st);
}

typedef struct mh_post {
    mh_stream *st;
    jw w;
    bool finish;
} mh_post;

/* Queue a frame (takes w's buffer) or mark the end; service thread only. */
static void stream_apply(mh_stream *st, jw *w, bool finish)
{
    if (finish) {
        st->complete = true;
    } else if (st->wsi) {
        mh_frame *f = malloc(sizeof *f);
        if (!f) abort();
        f->w = *w;
        f->next = NULL;
        if (st->tail)
            st->tail->next = f;
        else
            st->head = f;
        st->tail = f;
        memset(w, 0, sizeof *w);
    }
    jw_free(w);
    if (st->wsi) lws_callback_on_writable(st->wsi);
}

static void post_run(app *a, void *arg)
{
    (void)a;
    mh_post *p = arg;
    stream_apply(p->st, &p->w, p->finish);
    stream_unref(p->st);
    free(p);
}

/* From the service thread (inline methods) the stream is changed at once;
 * from any other thread through net_post(). */
static void post(mh_stream *st, jw *w, bool finish)
{
    if (net_on_service_thread()) {
        jw none = {0};
        stream_apply(st, w ? w : &none, finish);
        return;
    }
    mh_post *p = calloc(1, sizeof *p);
    if (!p) abort();
    atomic_fetch_add(&st->refs, 1);
    p->st = st;
    p->finish = finish;
    if (w) {
        p->w = *w;
        memset(w, 0, sizeof *w);
    }
    net_post(st->app, post_run, p);
}

static void sk_send(rpc_sink *s, jw *frame)
{
    post((mh_stream *)s, frame, false);
}

static void sk_finish(rpc_sink *s)
{
    post((mh_stream *)s, NULL, true);
}

static void sk_ref(rpc_sink *s)
{
    atomic_fetch_add(&((mh_stream *)s)->refs, 1);
}

static void sk_unref(rpc_sink *s)
{
    stream_unref((mh_stream *)s);
}

static void sk_watch(rpc_sink *s, rpc_deferred *d)
{
    (void)s, (void)d; /* MCP: a dropped connection is not a cancellation */
}

static const rpc_sink_ops g_ops = {sk_send, sk_finish, sk_ref, sk_unref, sk_watch, sk_watch};

static mh_stream *stream_new(app *a, struct lws *wsi, const char *session, bool sse)
{
    mh_stream *st = calloc(1, sizeof *st);
    if (!st) abort();
    st->sink.ops = &g_ops;
    st->sink.headroom = FRAME_HEADROOM;
    atomic_init(&st->refs, 1); /* the connection's */
    st->app = a;
    st->wsi = wsi;
    st->sse = sse;
    snprintf(st->session, sizeof st->session, "%s", session);
    return st;
}

/* ---- writing ------------------------------------------------------------------- */

/* A POST's SSE response is sent with chunked transfer encoding, so its end
 * is the last chunk and the connection stays open; the standalone GET
 * stream ends only when the connection does. */
static bool chunked(const mh_stream *st)
{
    return st->sse && !st->standalone;
}

/* The status line and headers into [*p, end), finalized but not written.
 * len: the body's length (JSON), ignored for SSE. */
static int build_headers(struct lws *wsi, mh_stream *st, size_t len, unsigned char **p,
                         unsigned char *end)
{
    if (chunked(st)) { /* no length and no close: the connection is kept */
        if (lws_add_http_header_status(wsi, 200, p, end) ||
            lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
                                         (const unsigned char *)"text/event-stream", 17, p, end) ||
            lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING,
                                         (const unsigned char *)"chunked", 7, p, end))
            return -1;
    } else if (lws_add_http_common_headers(
                   wsi, 200, st->sse ? "text/event-stream" : "application/json",
                   st->sse ? LWS_ILLEGAL_HTTP_CONTENT_LEN : (lws_filepos_t)len, p, end)) {
        return -1;
    }
    if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                     (const unsigned char *)"no-cache, no-transform", 22, p, end))
        return -1;
    if (st->session[0] &&
        lws_add_http_header_by_name(wsi, (const unsigned char *)"mcp-session-id:",
                                    (const unsigned char *)st->session, 32, p, end))
        return -1;
    return lws_finalize_http_header(wsi, p, end) ? -1 : 0;
}

/* One lws_write of pre + the frame's JSON + post. The frame's headroom takes
 * pre when it is large enough (it is for frames built for this sink). */
static int write_framed(struct lws *wsi, jw *w, const void *pre, size_t npre, const char *post,
                        size_t npost, enum lws_write_protocol wp)
{
    size_t n = jw_size(w);
    jw_append(w, post, npost);
    char *data = w->buf + w->headroom, *tmp = NULL, *start;
    if (w->headroom >= LWS_PRE + npre) {
        start = data - npre;
    } else {
        if (!(tmp = malloc(LWS_PRE + npre + n + npost))) abort();
        start = tmp + LWS_PRE;
        memcpy(start + npre, data, n + npost);
    }
    memcpy(start, pre, npre);
    int rc = lws_write(wsi, (unsigned char *)start, npre + n + npost, wp);
    free(tmp);
    return rc < 0 ? -1 : 0;
}

/* The whole application/json response (headers and body) in one write; the
 * connection then stays open for the client's next request. */
static int write_json(struct lws *wsi, mh_stream *st)
{
    jw empty;
    jw_init(&empty, 0, 0);
    jw *body = st->head ? &st->head->w : &empty;
    unsigned char hdr[1024], *p = hdr;
    int rc = build_headers(wsi, st, jw_size(body), &p, hdr + sizeof hdr);
    if (rc == 0) rc = write_framed(wsi, body, hdr, (size_t)(p - hdr), "", 0, LWS_WRITE_HTTP_FINAL);
    jw_free(&empty);
    st->headers_sent = true;
    if (rc < 0) return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

#define SSE_PREFIX "event: message\ndata: "

#define LAST_CHUNK "0\r\n\r\n"

/* One SSE event (a chunk of its own when chunked; the last one followed by
 * the last chunk); the first event carries the response headers. */
static int write_sse(struct lws *wsi, mh_stream *st, mh_frame *f, bool last)
{
    unsigned char pre[1024 + 32 + sizeof SSE_PREFIX], *p = pre;
    if (!st->headers_sent && build_headers(wsi, st, 0, &p, pre + 1024) < 0) return -1;
    if (chunked(st)) p += sprintf((char *)p, "%zx\r\n", sizeof SSE_PREFIX - 1 + jw_size(&f->w) + 2);
    memcpy(p, SSE_PREFIX, sizeof SSE_PREFIX - 1);
    p += sizeof SSE_PREFIX - 1;
    const char *post = !chunked(st) ? "\n\n" : last ? "\n\n\r\n" LAST_CHUNK : "\n\n\r\n";
    int rc = write_framed(wsi, &f->w, pre, (size_t)(p - pre), post, strlen(post),
                          last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP);
    if (!st->headers_sent) lws_http_mark_sse(wsi);
    st->headers_sent = true;
    return rc;
}

/* SSE headers before any event (a stream that has nothing to send yet). */
static int write_sse_headers(struct lws *wsi, mh_stream *st)
{
    unsigned char hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *p = start;
    if (build_headers(wsi, st, 0, &p, hdr + sizeof hdr) < 0 ||
        lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_HEADERS) < 0)
        return -1;
    lws_http_mark_sse(wsi);
    st->headers_sent = true;
    return 0;
}

/* The stream is over: a chunked response ends its transaction (the
 * connection is kept), any other ends with the connection. */
static int sse_done(struct lws *wsi, mh_stream *st)
{
    if (!chunked(st)) return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int writeable_sse(struct lws *wsi, mh_stream *st)
{
    mh_frame *f = st->head;
    if (!f) {
        if (!st->headers_sent) return write_sse_headers(wsi, st);
        if (!st->complete) return 0;
        unsigned char end[LWS_PRE + sizeof LAST_CHUNK];
        size_t n = chunked(st) ? sizeof LAST_CHUNK - 1 : 0;
        memcpy(end + LWS_PRE, LAST_CHUNK, n);
        if (lws_write(wsi, end + LWS_PRE, n, LWS_WRITE_HTTP_FINAL) < 0) return -1;
        return sse_done(wsi, st);
    }
    st->head = f->next;
    if (!st->head) st->tail = NULL;
    bool last = st->complete && !st->head;
    int rc = write_sse(wsi, st, f, last);
    jw_free(&f->w);
    free(f);
    if (rc < 0) return -1;
    if (last) return sse_done(wsi, st);
    if (st->head || st->complete) lws_callback_on_writable(wsi);
    return 0;
}

int net_mcp_http_writeable(struct lws *wsi, net_pss *pss)
{
    mh_stream *st = pss->mcp ? pss->mcp->stream : NULL;
    if (!st) return 0;
    if (st->sse) return writeable_sse(wsi, st);
    if (!st->complete || st->headers_sent) return 0; /* the response is not ready yet */
    return write_json(wsi, st);
}

void net_mcp_http_closed(net_pss *pss)
{
    mh_req *r = pss ? pss->mcp : NULL;
    if (!r) return;
    pss->mcp = NULL;
    if (r->stream) {
        mh_stream *st = r->stream;
        st->wsi = NULL;
        if (st->standalone) {
            mh_session *x = session_find(st->session);
            if (x && x->has_get) {
                x->has_get = false;
                mcp_session_set_notify(x->s, NULL);
            }
        }
        stream_unref(st);
    }
    free(r->body);
    free(r);
}

/* ---- request checks ---------------------------------------------------------- */

static int hdr(struct lws *wsi, const char *name, char *buf, int len)
{
    int n = lws_hdr_custom_copy(wsi, buf, len, name, (int)strlen(name));
    if (n < 0) buf[0] = 0;
    return n;
}

static bool accepts(const char *accept, const char *type)
{
    return strstr(accept, type) || strstr(accept, "*/*");
}

static int check_version(struct lws *wsi, net_pss *pss)
{
    char v[64];
    if (hdr(wsi, "mcp-protocol-version:", v, sizeof v) > 0 && !mcp_version_supported(v)) {
        char msg[160];
        snprintf(msg, sizeof msg, "Bad Request: Unsupported protocol version: %.40s", v);
        return net_http_rpc_error(wsi, pss, 400, -32000, msg) < 0 ? -1 : 1;
    }
    return 0;
}

static mh_session *require_known(struct lws *wsi, net_pss *pss, const char *id, int *rc)
{
    mh_session *x = session_find(id);
    if (!x) *rc = net_http_rpc_error(wsi, pss, 404, -32001, "Session not found");
    return x;
}

/* The session named by the request, or an error reply (returns NULL). */
static mh_session *require_session(struct lws *wsi, net_pss *pss, int *rc)
{
    char id[80];
    if (pss->mcp && pss->mcp->session[0]) /* a POST read it already */
        return require_known(wsi, pss, pss->mcp->session, rc);
    if (hdr(wsi, "mcp-session-id:", id, sizeof id) <= 0) {
        *rc = net_http_rpc_error(wsi, pss, 400, -32000,
                                 "Bad Request: Mcp-Session-Id header is required");
        return NULL;
    }
    return require_known(wsi, pss, id, rc);
}

static int open_get(app *a, struct lws *wsi, net_pss *pss)
{
    char accept[256];
    int rc = 0;
    lws_hdr_copy(wsi, accept, sizeof accept, WSI_TOKEN_HTTP_ACCEPT);
    if (!accepts(accept, "text/event-stream"))
        return net_http_rpc_error(wsi, pss, 406, -32000,
                                  "Not Acceptable: Accept text/event-stream");
    mh_session *x = require_session(wsi, pss, &rc);
    if (!x) return rc;
    if (x->has_get)
        return net_http_rpc_error(wsi, pss, 409, -32000, "Conflict: a GET stream is already open");
    mh_req *r = calloc(1, sizeof *r);
    if (!r) abort();
    pss->mcp = r;
    r->stream = stream_new(a, wsi, x->id, true);
    r->stream->standalone = true;
    x->has_get = true;
    mcp_session_set_notify(x->s, &r->stream->sink);
    lws_callback_on_writable(wsi);
    return 0;
}

int net_mcp_http_request(app *a, struct lws *wsi, net_pss *pss)
{
    sessions_expire();
    char *uri;
    int ulen, rc = 0;
    int method = lws_http_get_uri_and_method(wsi, &uri, &ulen);
    int v = check_version(wsi, pss);
    if (v) return v < 0 ? -1 : 0;
    if (method == LWSHUMETH_GET) return open_get(a, wsi, pss);
    if (method == LWSHUMETH_DELETE) {
        mh_session *x = require_session(wsi, pss, &rc);
        if (!x) return rc;
        session_drop(session_link(x->id));
        return net_http_reply(wsi, pss, 200, "application/json", "{}", 2);
    }
    if (method != LWSHUMETH_POST)
        return net_http_rpc_error(wsi, pss, 405, -32000, "Method Not Allowed");
    char accept[256], ctype[128];
    lws_hdr_copy(wsi, accept, sizeof accept, WSI_TOKEN_HTTP_ACCEPT);
    lws_hdr_copy(wsi, ctype, sizeof ctype, WSI_TOKEN_HTTP_CONTENT_TYPE);
    if (!accepts(accept, "application/json") || !accepts(accept, "text/event-stream"))
        return net_http_rpc_error(wsi, pss, 406, -32000,
                                  "Not Acceptable: Accept must list application/json and "
                                  "text/event-stream");
    if (strncasecmp(ctype, "application/json", 16) != 0)
        return net_http_rpc_error(wsi, pss, 415, -32000,
                                  "Unsupported Media Type: Content-Type must be application/json");
    char clen[32];
    if (lws_hdr_copy(wsi, clen, sizeof clen, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 &&
        strtoull(clen, NULL, 10) > a->cfg.max_message_bytes)
        return net_http_rpc_error(wsi, pss, 413, -32000, "Payload Too Large");
    mh_req *r = calloc(1, sizeof *r);
    if (!r) abort();
    pss->mcp = r;
    hdr(wsi, "mcp-session-id:", r->session, sizeof r->session);
    return 0; /* now the body arrives */
}

int net_mcp_http_body(app *a, struct lws *wsi, net_pss *pss, const void *in, size_t len)
{
    (void)wsi;
    mh_req *r = pss ? pss->mcp : NULL;
    if (!r || r->too_large) return 0;
    if (r->len + len > a->cfg.max_message_bytes) {
        r->too_large = true;
        return 0;
    }
    if (r->len + len + JSON_PADDING > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + len + JSON_PADDING) cap *= 2;
        if (!(r->body = realloc(r->body, cap))) abort();
        r->cap = cap;
    }
    memcpy(r->body + r->len, in, len);
    r->len += len;
    return 0;
}

/* ---- executing a POSTed message ------------------------------------------------ */

/* A message on its way to a worker: it owns the arena holding the parsed
 * message, so the worker neither copies nor parses it again. */
typedef struct mh_job {
    app *a;
    rpc_session *s;
    mh_stream *st;
    jarena ar;
    const jv *msg;
    uint64_t t0;
} mh_job;

static void run_message(app *a, rpc_session *s, mh_stream *st, const jv *msg, jarena *ar,
                        uint64_t t0)
{
    jw out;
    jw_init(&out, st->sink.headroom, st->sink.headroom + 2048);
    int r = rpc_execute(a, s, &st->sink, msg, &out, ar, t0);
    if (jw_size(&out)) st->sink.ops->send(&st->sink, &out);
    jw_free(&out);
    if (r != RPC_EXEC_ORDERED) st->sink.ops->finish(&st->sink);
}

static void job_run(void *arg)
{
    mh_job *j = arg;
    run_message(j->a, j->s, j->st, j->msg, &j->ar, j->t0);
    rpc_session_unref(j->s);
    stream_unref(j->st);
    jarena_free(&j->ar);
    free(j);
}

/* Does the message hold at least one request (a method and an id)? */
static bool has_request(const jv *msg, bool *is_init, bool *wants_sse)
{
    uint32_t n = msg->type == JV_ARRAY ? msg->len : 1;
    const jv *items = msg->type == JV_ARRAY ? msg->u.items : msg;
    bool any = false;
    for (uint32_t i = 0; i < n; i++) {
        const jv *m = jv_get(&items[i], "method");
        if (!jv_is_str(m) || !jv_get(&items[i], "id")) continue;
        any = true;
        if (strcmp(m->u.s, "initialize") == 0) *is_init = true;
        if (mcp_request_may_stream(&items[i])) *wants_sse = true;
    }
    return any;
}

/* Run the message here (RAM-only methods) or on a worker; the worker takes
 * the arena (*ar is left empty). */
static int dispatch(app *a, struct lws *wsi, net_pss *pss, mh_session *x, const jv *msg, jarena *ar,
                    bool sse)
{
    mh_req *r = pss->mcp;
    mh_stream *st = stream_new(a, wsi, x->id, sse);
    r->stream = st;
    uint64_t t0 = metrics_now_ns();
    if (rpc_message_where(a, x->s, msg) == RPC_INLINE) {
        run_message(a, x->s, st, msg, ar, t0);
        return 0;
    }
    mh_job *j = calloc(1, sizeof *j);
    if (!j) abort();
    j->ar = *ar;
    jarena_init(ar);
    j->msg = msg;
    j->a = a;
    j->s = x->s;
    rpc_session_ref(x->s);
    j->st = st;
    atomic_fetch_add(&st->refs, 1);
    j->t0 = t0;
    workq_push(a->workers, job_run, j);
    if (sse) lws_callback_on_writable(wsi);
    return 0;
}

/* The session a POST belongs to (a new one for initialize), or an error
 * reply already sent (NULL, *rc set). */
static mh_session *post_session(app *a, struct lws *wsi, net_pss *pss, bool is_init, int *rc)
{
    mh_req *r = pss->mcp;
    mh_session *x;
    if (is_init && !r->session[0]) {
        if (g_nsessions >= a->cfg.max_connections) {
            *rc = net_http_rpc_error(wsi, pss, 503, -32000, "Too many sessions");
            return NULL;
        }
        return session_new(a);
    }
    if (!(x = require_session(wsi, pss, rc))) return NULL;
    if (is_init && mcp_session_initialized(x->s)) {
        *rc = net_http_rpc_error(wsi, pss, 400, RPC_INVALID_REQUEST,
                                 "Invalid Request: session already initialized");
        return NULL;
    }
    return x;
}

static int handle_message(app *a, struct lws *wsi, net_pss *pss, const jv *msg, jarena *ar)
{
    bool is_init = false, sse = false;
    bool request = has_request(msg, &is_init, &sse);
    int rc = 0;
    mh_session *x = post_session(a, wsi, pss, is_init, &rc);
    if (!x) return rc;
    if (!request) { /* notifications and responses: run them, answer 202 */
        jw out;
        jw_init(&out, 0, 256);
        rpc_execute(a, x->s, NULL, msg, &out, ar, metrics_now_ns());
        jw_free(&out);
        return net_http_reply(wsi, pss, 202, "application/json", "", 0);
    }
    return dispatch(a, wsi, pss, x, msg, ar, sse);
}

int net_mcp_http_body_done(app *a, struct lws *wsi, net_pss *pss)
{
    mh_req *r = pss ? pss->mcp : NULL;
    if (!r) return 0;
    if (r->too_large) return net_http_rpc_error(wsi, pss, 413, -32000, "Payload Too Large");
    jarena ar;
    jarena_init(&ar);
    json_error err;
    jv *msg = json_parse(&ar, r->body ? r->body : "", r->len, r->cap, JSON_DEFAULT_MAX_DEPTH, &err);
    int rc;
    if (!msg) {
        char text[200];
        snprintf(text, sizeof text, "Parse error: %s", err.msg);
        rc = net_http_rpc_error(wsi, pss, 400, RPC_PARSE_ERROR, text);
    } else {
        rc = handle_message(a, wsi, pss, msg, &ar);
    }
    jarena_free(&ar);
    return rc;
}
