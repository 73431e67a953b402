/*
 * bench_fake_llm.c - the benchmarks' fake LLM: the Ollama streaming dialect of
 * tests/fake_llm.py, in C, so that a thousand paced streams cost the machine little.
 *
 * Why: bench/chat.sh runs the fake, the load client and persona-mcp on the same two
 * cores. The Python fake needs about half a core for 1,000 streams at 20 tokens/s, and
 * its own schedule lag then reaches several milliseconds, which is noise in a relay
 * measurement that targets 5 ms. This fake does the same work per token (one NDJSON
 * line in one HTTP chunk, one send) for a few microseconds of CPU.
 *
 * What it speaks (the subset the benchmarks and persona-mcp use; docs/FAKE_LLM.md):
 *   POST /api/chat          NDJSON stream (or one JSON object with "stream":false)
 *   GET  /api/tags, /api/version, GET|HEAD /
 *   GET  /_fake/requests    ?path= ?since= ?limit=, the recorded requests (time, body)
 *   GET  /_fake/stats       counters and the schedule lag percentiles
 *   POST /_fake/reset       clears the records, the counters and the lag samples
 * Behaviour options (command line defaults; a [[fake:{...}]] marker in the last user
 * message overrides them per request): tokens, delay_ms, first_token_ms, stamp, reply,
 * max_tokens. Any other marker key is refused with 400, so a benchmark never silently
 * gets a behaviour this fake does not have. Token i of a reply of words w is w[i mod n],
 * with a space before every token but the first; with "stamp" it is the Unix time at
 * which the token is written, to the microsecond (the same text as the Python fake's).
 *
 * Design: one thread, one epoll set, non-blocking sockets. A request is handled when
 * its head and Content-Length body are in (Expect: 100-continue is answered). A
 * stream is a connection in the streaming state with its next token's due time
 * (CLOCK_MONOTONIC ns) in a binary min-heap; the loop sleeps in epoll_pwait2 until the
 * heap's top is due (a nanosecond timeout: no timer descriptor to arm and read, so a
 * token costs one wakeup and one send), then writes every due token, each with one send() as
 * soon as it is formatted (its stamp and the clock reading for its lag are taken just
 * before). The schedule lag of a token is its write time minus its due time (start +
 * first_token + i * delay). A client that closes mid-stream ends the stream ("aborted").
 * Output that the socket does not take is kept and sent on EPOLLOUT.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/json.h"
#include "lib/jw.h"
#include "lib/util.h"

#define HEAD_MAX (64 * 1024)
#define BODY_MAX (16 * 1024 * 1024)
#define DEFAULT_REPLY                                                                              \
    "Hello! I am a fake language model, and this reply is streamed to you one token at a time."

/* ---- byte buffers ------------------------------------------------------------------- */

typedef struct buf {
    char *p;
    size_t len, off, cap; /* off: consumed (input) or sent (output) */
} buf;

static void buf_reserve(buf *b, size_t extra)
{
    if (b->off && b->off == b->len) b->off = b->len = 0;
    if (b->len + extra <= b->cap) return;
    if (b->off) { /* slide the unconsumed bytes to the front first */
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + extra <= b->cap) return;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    if (!(b->p = realloc(b->p, cap))) abort();
    b->cap = cap;
}

static void buf_add(buf *b, const void *s, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    buf_reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* ---- configuration -------------------------------------------------------------------- */

typedef struct behaviour {
    int tokens; /* -1: the reply's own word count */
    double delay_ms, first_token_ms;
    bool stamp;
    int max_tokens; /* 0: none */
    char reply[1024];
} behaviour;

static struct {
    int port, max_records, backlog;
    const char *port_file;
    behaviour dflt;
} opt = {.port = 11435, .max_records = 10000, .backlog = 4096, .dflt = {.tokens = -1}};

/* ---- connections, streams and the schedule ------------------------------------------ */

enum { C_READ, C_STREAM, C_WHOLE };

typedef struct rec rec;

typedef struct conn {
    int fd, state;
    buf in, out;
    bool want_out, close_after, sent_continue;
    bool drain_close; /* Connection: close, and the answer is not all sent yet */
    /* the stream (C_STREAM, C_WHOLE) */
    rec *r;
    uint64_t rec_id; /* r is c's record while r->id is this (the ring reuses slots) */
    behaviour b;
    int n, i;
    uint64_t start_ns, gap_ns, due_ns, t0_ns;
    size_t heap_i;
    int prompt_tokens;
    char model[128];
    struct conn *prev, *next; /* open connections (freed at exit) */
} conn;

struct rec {
    uint64_t id;
    double time;
    char method[8], path[128];
    char *body; /* raw JSON text, or NULL */
    int status;
    bool stream;
    const char *outcome;
    int tokens_sent;
};

static struct {
    int ep, lfd;
    conn *conns;
    conn **heap;
    size_t nheap, heap_cap;
    rec *recs; /* ring of opt.max_records */
    size_t rec_head, nrecs;
    uint64_t next_id;
    float *lag; /* seconds */
    size_t nlag, lag_cap;
    double started;
    uint64_t requests, active_streams, max_active, completed, aborted, tokens_sent, open_conns,
        total_conns;
} G;

static volatile sig_atomic_t g_stop;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* n decimal digits of v at p, zero-padded; returns the end. By hand, as the time
 * (util_iso_time): the fake formats both for every token, and printf was a tenth
 * of its CPU, taken from the server it shares two cores with. */
static char *put_digits(char *p, unsigned long v, int n)
{
    for (int i = n - 1; i >= 0; i--, v /= 10) p[i] = (char)('0' + v % 10);
    return p + n;
}

static char *put_str(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

/* RFC 3339 UTC with microseconds. */
static void iso_at(char out[40], const struct timespec *ts)
{
    util_iso_time((double)ts->tv_sec + (double)(ts->tv_nsec / 1000) / 1e6, out, true);
}

static void iso_now(char out[40])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    iso_at(out, &ts);
}

static void heap_swap(size_t a, size_t b)
{
    conn *t = G.heap[a];
    G.heap[a] = G.heap[b];
    G.heap[b] = t;
    G.heap[a]->heap_i = a;
    G.heap[b]->heap_i = b;
}

static void heap_up(size_t i)
{
    while (i && G.heap[(i - 1) / 2]->due_ns > G.heap[i]->due_ns) {
        heap_swap(i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < G.nheap && G.heap[l]->due_ns < G.heap[m]->due_ns) m = l;
        if (r < G.nheap && G.heap[r]->due_ns < G.heap[m]->due_ns) m = r;
        if (m == i) return;
        heap_swap(i, m);
        i = m;
    }
}

static void heap_push(conn *c)
{
    if (G.nheap == G.heap_cap) {
        G.heap_cap = G.heap_cap ? G.heap_cap * 2 : 1024;
        if (!(G.heap = realloc(G.heap, G.heap_cap * sizeof *G.heap))) abort();
    }
    c->heap_i = G.nheap;
    G.heap[G.nheap++] = c;
    heap_up(c->heap_i);
}

static void heap_remove(conn *c)
{
    size_t i = c->heap_i;
    if (i >= G.nheap || G.heap[i] != c) return;
    heap_swap(i, --G.nheap);
    if (i < G.nheap) {
        heap_up(i);
        heap_down(i);
    }
    c->heap_i = (size_t)-1;
}

static void lag_add(double s)
{
    if (G.nlag == G.lag_cap) {
        G.lag_cap = G.lag_cap ? G.lag_cap * 2 : 65536;
        if (!(G.lag = realloc(G.lag, G.lag_cap * sizeof *G.lag))) abort();
    }
    G.lag[G.nlag++] = (float)(s > 0 ? s : 0);
}

/* ---- records -------------------------------------------------------------------------- */

static rec *rec_at(size_t k) /* k-th oldest */
{
    return &G.recs[(G.rec_head + k) % (size_t)opt.max_records];
}

static rec *rec_new(const char *method, const char *path, const char *body, size_t blen)
{
    rec *r;
    if (G.nrecs == (size_t)opt.max_records) { /* drop the oldest */
        r = rec_at(0);
        free(r->body);
        G.rec_head = (G.rec_head + 1) % (size_t)opt.max_records;
        G.nrecs--;
    }
    r = rec_at(G.nrecs++);
    memset(r, 0, sizeof *r);
    r->id = ++G.next_id;
    r->time = wall_now();
    snprintf(r->method, sizeof r->method, "%s", method);
    snprintf(r->path, sizeof r->path, "%s", path);
    if (body) {
        if (!(r->body = malloc(blen + 1))) abort();
        memcpy(r->body, body, blen);
        r->body[blen] = 0;
    }
    r->outcome = "pending";
    return r;
}

static void records_clear(void)
{
    for (size_t k = 0; k < G.nrecs; k++) free(rec_at(k)->body);
    G.nrecs = G.rec_head = 0;
}

/* ---- output ----------------------------------------------------------------------------- */

static void conn_close(conn *c);
static bool read_requests(conn *c);

static void set_out(conn *c, bool on)
{
    if (c->want_out == on) return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(G.ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = on;
}

/* Send what is queued; false when the connection failed. */
static bool flush_out(conn *c)
{
    while (c->out.off < c->out.len) {
        ssize_t w = send(c->fd, c->out.p + c->out.off, c->out.len - c->out.off, MSG_NOSIGNAL);
        if (w > 0) {
            c->out.off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_out(c, true);
            return true;
        }
        return false;
    }
    c->out.off = c->out.len = 0;
    set_out(c, false);
    return true;
}

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    default:
        return "Error";
    }
}

static void reply(conn *c, int status, const char *ctype, const char *body, size_t n, bool head)
{
    buf_printf(&c->out,
               "HTTP/1.1 %d %s\r\nServer: fake-llm-bench\r\nContent-Type: %s\r\nContent-Length: "
               "%zu\r\nConnection: %s\r\n\r\n",
               status, reason(status), ctype, n, c->close_after ? "close" : "keep-alive");
    if (!head) buf_add(&c->out, body, n);
}

static void reply_json(conn *c, int status, jw *w)
{
    reply(c, status, "application/json", jw_data(w), jw_size(w), false);
}

static void reply_error(conn *c, int status, const char *msg)
{
    jw w;
    jw_init(&w, 0, 128);
    jw_obj_begin(&w);
    jw_kstr(&w, "error", msg);
    jw_obj_end(&w);
    reply_json(c, status, &w);
    jw_free(&w);
}

/* One NDJSON line as one HTTP chunk. */
static void chunk(conn *c, const char *line, size_t n)
{
    char head[20];
    int k = 0;
    for (size_t v = n; k == 0 || v; v >>= 4) head[k++] = "0123456789abcdef"[v & 15];
    char rev[20];
    for (int i = 0; i < k; i++) rev[i] = head[k - 1 - i];
    rev[k] = '\r', rev[k + 1] = '\n';
    buf_add(&c->out, rev, (size_t)k + 2);
    buf_add(&c->out, line, n);
    buf_add(&c->out, "\r\n", 2);
}

/* ---- tokens ---------------------------------------------------------------------------- */

static int reply_words(const char *s)
{
    int n = 0;
    for (bool in = false; *s; s++) {
        bool sp = *s == ' ' || *s == '\t' || *s == '\n' || *s == '\r';
        n += !sp && !in;
        in = !sp;
    }
    return n;
}

/* Token i of the reply (raw text, a space before all but the first) into out. */
static size_t token_text(char *out, size_t cap, const char *s, int i)
{
    size_t len = 0;
    if (i) out[len++] = ' ';
    int n = reply_words(s);
    if (n) {
        int k = i % n;
        for (bool in = false;; s++) {
            bool sp = *s == ' ' || *s == '\t' || *s == '\n' || *s == '\r';
            if (!sp && !in && k-- == 0) break;
            in = !sp;
        }
        size_t w = strcspn(s, " \t\r\n");
        if (w > cap - 1 - len) w = cap - 1 - len;
        memcpy(out + len, s, w);
        len += w;
    }
    out[len] = 0;
    return len;
}

/* The live record of c's request (NULL once the ring dropped it). */
static rec *rec_of(conn *c)
{
    return c->r && c->r->id == c->rec_id ? c->r : NULL;
}

static void stream_end(conn *c, const char *outcome)
{
    heap_remove(c);
    if (rec_of(c)) c->r->outcome = outcome;
    c->r = NULL;
    G.active_streams--;
    if (!strcmp(outcome, "completed"))
        G.completed++;
    else
        G.aborted++;
    c->state = C_READ;
}

static void final_fields(jw *w, const conn *c, const char *finish, uint64_t dur)
{
    jw_kstr(w, "done_reason", finish);
    jw_kbool(w, "done", true);
    jw_kint(w, "total_duration", (int64_t)dur);
    jw_kint(w, "load_duration", 0);
    jw_kint(w, "prompt_eval_count", c->prompt_tokens);
    jw_kint(w, "prompt_eval_duration", 0);
    jw_kint(w, "eval_count", c->n);
    jw_kint(w, "eval_duration", (int64_t)dur);
}

static void emit_final(conn *c, uint64_t now)
{
    const char *finish = c->b.max_tokens > 0 && c->n == c->b.max_tokens ? "length" : "stop";
    char iso[40];
    iso_now(iso);
    jw w;
    jw_init(&w, 0, 512);
    jw_obj_begin(&w);
    jw_kstr(&w, "model", c->model);
    jw_kstr(&w, "created_at", iso);
    jw_key(&w, "message");
    jw_obj_begin(&w);
    jw_kstr(&w, "role", "assistant");
    jw_kstr(&w, "content", "");
    jw_obj_end(&w);
    final_fields(&w, c, finish, now - c->t0_ns);
    jw_obj_end(&w);
    jw_append(&w, "\n", 1);
    chunk(c, jw_data(&w), jw_size(&w));
    buf_add(&c->out, "0\r\n\r\n", 5);
    jw_free(&w);
}

/* The whole reply in one object ("stream": false), due after the last token's time. */
static void emit_whole(conn *c, uint64_t now)
{
    jw text, w;
    jw_init(&text, 0, 256);
    jw_init(&w, 0, 512);
    for (int i = 0; i < c->n; i++) {
        char t[1100];
        jw_append(&text, t, token_text(t, sizeof t, c->b.reply, i));
    }
    char iso[40];
    iso_now(iso);
    jw_reset(&w);
    jw_obj_begin(&w);
    jw_kstr(&w, "model", c->model);
    jw_kstr(&w, "created_at", iso);
    jw_key(&w, "message");
    jw_obj_begin(&w);
    jw_kstr(&w, "role", "assistant");
    jw_key(&w, "content");
    jw_strn(&w, jw_data(&text), jw_size(&text));
    jw_obj_end(&w);
    const char *finish = c->b.max_tokens > 0 && c->n == c->b.max_tokens ? "length" : "stop";
    final_fields(&w, c, finish, now - c->t0_ns);
    jw_obj_end(&w);
    reply_json(c, 200, &w);
    if (rec_of(c)) c->r->tokens_sent = c->n;
    G.tokens_sent += (uint64_t)c->n;
    jw_free(&w);
    jw_free(&text);
}

/* Connection: close: false (close now) once the answer is sent, else close on the
 * EPOLLOUT that sends the rest (a large answer does not fit the socket at once). */
static bool close_when_sent(conn *c)
{
    if (!c->out.len) return false;
    c->drain_close = true;
    return true;
}

/* After a stream: close if the client asked, else run a request that came meanwhile. */
static bool after_stream(conn *c)
{
    if (!flush_out(c)) return false;
    if (c->close_after) return close_when_sent(c);
    return read_requests(c) && flush_out(c);
}

/* A token whose content is the send time, "[ ]<seconds>.<microseconds>" (what
 * bench_chat reads), built by hand like iso_at. line holds 1,400 bytes. */
static int stamped_line(char *line, const char *model, const char *iso, bool space,
                        const struct timespec *ts)
{
    static const char a[] = "{\"model\":\"", b[] = "\",\"created_at\":\"",
                      c[] = "\",\"message\":{\"role\":\"assistant\",\"content\":\"",
                      d[] = "\"},\"done\":false}\n";
    char *p = put_str(line, a, sizeof a - 1);
    p = put_str(p, model, strnlen(model, 1000));
    p = put_str(p, b, sizeof b - 1);
    p = put_str(p, iso, strlen(iso));
    p = put_str(p, c, sizeof c - 1);
    if (space) *p++ = ' ';
    p = put_digits(p, (unsigned long)ts->tv_sec, 10); /* 10 digits until 2286 */
    *p++ = '.';
    p = put_digits(p, (unsigned long)ts->tv_nsec / 1000, 6);
    p = put_str(p, d, sizeof d - 1);
    return (int)(p - line);
}

/* Write c's due token (or its end). False when the connection must close. */
static bool tick(conn *c)
{
    uint64_t now = mono_ns();
    if (c->state == C_WHOLE) {
        emit_whole(c, now);
        stream_end(c, "completed");
        return after_stream(c);
    }
    if (c->i == c->n) {
        emit_final(c, now);
        stream_end(c, "completed");
        return after_stream(c);
    }
    lag_add((double)(now - c->due_ns) / 1e9);
    char iso[40], line[1400];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    iso_at(iso, &ts);
    int n;
    if (c->b.stamp) {
        n = stamped_line(line, c->model, iso, c->i > 0, &ts);
    } else {
        char t[1100];
        jw w;
        jw_init(&w, 0, 128);
        jw_strn(&w, t, token_text(t, sizeof t, c->b.reply, c->i));
        n = snprintf(line, sizeof line,
                     "{\"model\":\"%s\",\"created_at\":\"%s\",\"message\":{\"role\":\"assistant\","
                     "\"content\":%.*s},\"done\":false}\n",
                     c->model, iso, (int)jw_size(&w), jw_data(&w));
        jw_free(&w);
    }
    if (n >= (int)sizeof line) n = (int)sizeof line - 1;
    chunk(c, line, (size_t)n);
    if (rec_of(c)) c->r->tokens_sent++;
    G.tokens_sent++;
    c->i++;
    c->due_ns = c->i == c->n ? now : c->start_ns + (uint64_t)c->i * c->gap_ns;
    heap_down(c->heap_i); /* c is the heap's top */
    return flush_out(c);
}

static void run_due(void)
{
    while (G.nheap) {
        conn *c = G.heap[0];
        if (c->due_ns > mono_ns()) break;
        if (!tick(c)) conn_close(c);
    }
}

/* epoll_pwait2's timeout: until the next token is due (at most a second). */
static struct timespec wait_time(void)
{
    uint64_t now = mono_ns(), wait = 1000000000u;
    if (G.nheap) wait = G.heap[0]->due_ns > now ? G.heap[0]->due_ns - now : 0;
    if (wait > 1000000000u) wait = 1000000000u;
    return (struct timespec){(time_t)(wait / 1000000000u), (long)(wait % 1000000000u)};
}

/* ---- requests ---------------------------------------------------------------------------- */

/* Apply a [[fake:{...}]] marker's keys; false with a message for the client. */
static bool apply_marker(behaviour *b, const char *text, char *err, size_t errlen)
{
    const char *m = NULL;
    for (const char *p = text; (p = strstr(p, "[[fake:")); p++) m = p;
    if (!m) return true;
    m += 7;
    const char *e = strstr(m, "}]]");
    if (!e) {
        snprintf(err, errlen, "[[fake:...]] marker: missing closing ]]");
        return false;
    }
    jarena a;
    jarena_init(&a);
    json_error je;
    jv *o = json_parse(&a, m, (size_t)(e + 1 - m), 0, 8, &je);
    bool ok = o && o->type == JV_OBJECT;
    if (!ok) snprintf(err, errlen, "[[fake:...]] marker: bad JSON");
    for (uint32_t i = 0; ok && i < o->len; i++) {
        const char *k = o->u.members[i].key;
        const jv *v = &o->u.members[i].val;
        if (!strcmp(k, "tokens") && v->type == JV_INT && v->u.i >= 0)
            b->tokens = (int)v->u.i;
        else if (!strcmp(k, "delay_ms") && jv_is_num(v) && jv_num(v) >= 0)
            b->delay_ms = jv_num(v);
        else if (!strcmp(k, "first_token_ms") && jv_is_num(v) && jv_num(v) >= 0)
            b->first_token_ms = jv_num(v);
        else if (!strcmp(k, "stamp") && v->type == JV_BOOL)
            b->stamp = v->u.b;
        else if (!strcmp(k, "max_tokens") && (v->type == JV_NULL || v->type == JV_INT))
            b->max_tokens = v->type == JV_INT && v->u.i > 0 ? (int)v->u.i : 0;
        else if (!strcmp(k, "reply") && v->type == JV_STRING)
            snprintf(b->reply, sizeof b->reply, "%s", v->u.s);
        else {
            snprintf(err, errlen, "[[fake:...]] marker: '%s' is not supported by the bench fake",
                     k);
            ok = false;
        }
    }
    jarena_free(&a);
    return ok;
}

static const char *last_user(const jv *msgs)
{
    const char *s = "";
    if (!msgs || msgs->type != JV_ARRAY) return s;
    for (uint32_t i = 0; i < msgs->len; i++) {
        const jv *m = &msgs->u.items[i];
        const jv *role = jv_get(m, "role"), *content = jv_get(m, "content");
        if (jv_is_str(role) && !strcmp(role->u.s, "user") && jv_is_str(content)) s = content->u.s;
    }
    return s;
}

static int prompt_words(const jv *msgs)
{
    int n = 0;
    for (uint32_t i = 0; msgs && msgs->type == JV_ARRAY && i < msgs->len; i++) {
        const jv *content = jv_get(&msgs->u.items[i], "content");
        if (jv_is_str(content)) n += reply_words(content->u.s);
    }
    return n;
}

static void chat(conn *c, const char *body, size_t blen)
{
    G.requests++;
    rec *r = rec_new("POST", "/api/chat", NULL, 0);
    jarena a;
    jarena_init(&a);
    json_error je;
    jv *o = json_parse(&a, body, blen, 0, 64, &je);
    if (!o || o->type != JV_OBJECT) {
        r->status = 400;
        r->outcome = "rejected";
        reply_error(c, 400, "body is not a JSON object");
        jarena_free(&a);
        return;
    }
    if (!(r->body = malloc(blen + 1))) abort();
    memcpy(r->body, body, blen);
    r->body[blen] = 0;
    behaviour b = opt.dflt;
    char err[200];
    const jv *msgs = jv_get(o, "messages");
    if (!apply_marker(&b, last_user(msgs), err, sizeof err)) {
        r->status = 400;
        r->outcome = "rejected";
        reply_error(c, 400, err);
        jarena_free(&a);
        return;
    }
    const jv *opts = jv_get(o, "options"), *np = opts ? jv_get(opts, "num_predict") : NULL;
    if (np && np->type == JV_INT && np->u.i > 0 && (!b.max_tokens || np->u.i < b.max_tokens))
        b.max_tokens = (int)np->u.i;
    const jv *model = jv_get(o, "model"), *st = jv_get(o, "stream");
    snprintf(c->model, sizeof c->model, "%s",
             jv_is_str(model) && !strpbrk(model->u.s, "\"\\") ? model->u.s : "fake:latest");
    c->b = b;
    c->n = b.tokens >= 0 ? b.tokens : reply_words(b.reply);
    if (b.max_tokens > 0 && c->n > b.max_tokens) c->n = b.max_tokens;
    c->prompt_tokens = prompt_words(msgs);
    c->i = 0;
    c->t0_ns = mono_ns();
    c->start_ns = c->t0_ns + (uint64_t)(b.first_token_ms * 1e6);
    c->gap_ns = (uint64_t)(b.delay_ms * 1e6);
    c->r = r;
    c->rec_id = r->id;
    r->status = 200;
    r->stream = !(st && st->type == JV_BOOL && !st->u.b);
    jarena_free(&a);
    G.active_streams++;
    if (G.active_streams > G.max_active) G.max_active = G.active_streams;
    if (r->stream) {
        c->state = C_STREAM;
        c->due_ns = c->start_ns;
        buf_printf(&c->out,
                   "HTTP/1.1 200 OK\r\nServer: fake-llm-bench\r\nContent-Type: "
                   "application/x-ndjson\r\nTransfer-Encoding: chunked\r\nCache-Control: "
                   "no-cache\r\nConnection: %s\r\n\r\n",
                   c->close_after ? "close" : "keep-alive");
    } else {
        c->state = C_WHOLE;
        c->due_ns = c->start_ns + (c->n > 1 ? (uint64_t)(c->n - 1) * c->gap_ns : 0);
    }
    heap_push(c);
}

/* A query parameter's value (undecoded) into out; false when absent. */
static bool query_param(const char *q, const char *key, char *out, size_t n)
{
    size_t k = strlen(key);
    for (const char *p = q; p && *p; p = strchr(p, '&'), p = p ? p + 1 : NULL) {
        if (strncmp(p, key, k) || p[k] != '=') continue;
        size_t len = strcspn(p + k + 1, "&");
        snprintf(out, n, "%.*s", (int)len, p + k + 1);
        return true;
    }
    return false;
}

static void get_requests(conn *c, const char *query)
{
    char path[128] = "", v[32];
    bool by_path = query_param(query, "path", path, sizeof path);
    uint64_t since = query_param(query, "since", v, sizeof v) ? strtoull(v, NULL, 10) : 0;
    long limit = query_param(query, "limit", v, sizeof v) ? strtol(v, NULL, 10) : -1;
    size_t first = 0, count = 0;
    for (size_t k = G.nrecs; k-- > 0;) { /* newest first, to apply the limit */
        rec *r = rec_at(k);
        if (r->id <= since || (by_path && strcmp(r->path, path))) continue;
        if (limit >= 0 && (long)count == limit) break;
        count++;
        first = k;
    }
    jw w;
    jw_init(&w, 0, 4096);
    jw_arr_begin(&w);
    for (size_t k = first; count && k < G.nrecs; k++) {
        rec *r = rec_at(k);
        if (r->id <= since || (by_path && strcmp(r->path, path))) continue;
        jw_obj_begin(&w);
        jw_kint(&w, "id", (int64_t)r->id);
        jw_key(&w, "time");
        char t[40];
        int n = snprintf(t, sizeof t, "%.6f", r->time);
        jw_raw(&w, t, (size_t)n);
        jw_kstr(&w, "method", r->method);
        jw_kstr(&w, "path", r->path);
        jw_key(&w, "body");
        if (r->body)
            jw_raw(&w, r->body, strlen(r->body));
        else
            jw_null(&w);
        jw_kint(&w, "status", r->status);
        jw_kbool(&w, "stream", r->stream);
        jw_kstr(&w, "outcome", r->outcome);
        jw_kint(&w, "tokens_sent", r->tokens_sent);
        jw_obj_end(&w);
    }
    jw_arr_end(&w);
    reply_json(c, 200, &w);
    jw_free(&w);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void get_stats(conn *c)
{
    jw w;
    jw_init(&w, 0, 1024);
    jw_obj_begin(&w);
    jw_kint(&w, "requests", (int64_t)G.requests);
    jw_kint(&w, "active_streams", (int64_t)G.active_streams);
    jw_kint(&w, "max_active_streams", (int64_t)G.max_active);
    jw_kint(&w, "completed_streams", (int64_t)G.completed);
    jw_kint(&w, "aborted_streams", (int64_t)G.aborted);
    jw_kint(&w, "tokens_sent", (int64_t)G.tokens_sent);
    jw_kint(&w, "open_connections", (int64_t)G.open_conns);
    jw_kint(&w, "total_connections", (int64_t)G.total_conns);
    jw_key(&w, "schedule_lag_ms");
    jw_obj_begin(&w);
    qsort(G.lag, G.nlag, sizeof *G.lag, cmp_float);
    static const int ps[] = {50, 99};
    for (int i = 0; i < 2; i++) {
        char k[8];
        snprintf(k, sizeof k, "p%d", ps[i]);
        jw_key(&w, k);
        if (!G.nlag) {
            jw_null(&w);
            continue;
        }
        double idx = ceil(ps[i] / 100.0 * (double)G.nlag) - 1;
        size_t j = idx < 0 ? 0 : (size_t)idx >= G.nlag ? G.nlag - 1 : (size_t)idx;
        jw_double(&w, round((double)G.lag[j] * 1e6) / 1e3);
    }
    jw_key(&w, "max");
    if (G.nlag)
        jw_double(&w, round((double)G.lag[G.nlag - 1] * 1e6) / 1e3);
    else
        jw_null(&w);
    jw_kint(&w, "n", (int64_t)G.nlag);
    jw_obj_end(&w);
    jw_kdouble(&w, "uptime_s", round((wall_now() - G.started) * 1000) / 1000);
    jw_obj_end(&w);
    reply_json(c, 200, &w);
    jw_free(&w);
}

static void reset(conn *c)
{
    records_clear();
    G.nlag = 0;
    G.requests = G.completed = G.aborted = G.tokens_sent = G.total_conns = 0;
    G.max_active = G.active_streams;
    jw w;
    jw_init(&w, 0, 32);
    jw_puts(&w, "{\"ok\":true}");
    reply_json(c, 200, &w);
    jw_free(&w);
}

static void get_tags(conn *c)
{
    static const char tags[] =
        "{\"models\":[{\"name\":\"fake:latest\",\"model\":\"fake:latest\",\"modified_at\":"
        "\"2024-01-01T00:00:00Z\",\"size\":0,\"digest\":\"0\",\"details\":{\"format\":\"gguf\","
        "\"family\":\"fake\"}}]}";
    reply(c, 200, "application/json", tags, sizeof tags - 1, false);
}

/* Route one complete request. */
static void handle(conn *c, const char *method, char *target, const char *body, size_t blen)
{
    char *query = strchr(target, '?');
    if (query) *query++ = 0;
    bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (!strcmp(target, "/api/chat") && post) return chat(c, body, blen);
    G.requests += strncmp(target, "/_fake/", 7) != 0;
    if (!strncmp(target, "/_fake/", 7) || !strcmp(target, "/api/tags")) {
        if (strncmp(target, "/_fake/", 7)) rec_new(method, target, NULL, 0)->outcome = "completed";
        if (!strcmp(target, "/_fake/requests") && get) return get_requests(c, query ? query : "");
        if (!strcmp(target, "/_fake/stats") && get) return get_stats(c);
        if (!strcmp(target, "/_fake/reset") && post) return reset(c);
        if (!strcmp(target, "/api/tags") && get) return get_tags(c);
    } else if (!strcmp(target, "/api/version") && get) {
        static const char v[] = "{\"version\":\"0.0.0-fake-bench\"}";
        return reply(c, 200, "application/json", v, sizeof v - 1, false);
    } else if (!strcmp(target, "/") && (get || !strcmp(method, "HEAD"))) {
        return reply(c, 200, "text/plain", "Ollama is running", 17, !get);
    }
    char msg[300];
    snprintf(msg, sizeof msg, "%s %s: not supported by the bench fake", method, target);
    reply_error(c, 404, msg);
}

/* Parse and run the complete requests in c->in (one at a time: a stream holds the
 * connection until it ends). False when the connection must close. */
static bool read_requests(conn *c)
{
    while (c->state == C_READ && c->in.len > c->in.off) {
        char *p = c->in.p + c->in.off;
        size_t avail = c->in.len - c->in.off;
        char *e = memmem(p, avail, "\r\n\r\n", 4);
        if (!e) return avail < HEAD_MAX;
        char method[8], target[1024];
        if (sscanf(p, "%7s %1023s HTTP/1.", method, target) != 2) return false;
        size_t head = (size_t)(e + 4 - p), clen = 0;
        bool expect = false;
        c->close_after = false;
        for (char *l = strstr(p, "\r\n") + 2; l < e; l = strstr(l, "\r\n") + 2) {
            if (!strncasecmp(l, "content-length:", 15)) clen = strtoul(l + 15, NULL, 10);
            if (!strncasecmp(l, "expect:", 7)) expect = true;
            if (!strncasecmp(l, "transfer-encoding:", 18)) return false; /* not supported */
            if (!strncasecmp(l, "connection:", 11) &&
                !strncasecmp(l + 11 + strspn(l + 11, " "), "close", 5))
                c->close_after = true;
        }
        if (clen > BODY_MAX) return false;
        if (avail < head + clen) {
            if (expect && !c->sent_continue) {
                buf_add(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
                c->sent_continue = true;
            }
            return true;
        }
        c->sent_continue = false;
        /* the body gets JSON_PADDING readable bytes after it for the parser */
        char *body = malloc(clen + JSON_PADDING);
        if (!body) abort();
        memcpy(body, p + head, clen);
        memset(body + clen, 0, JSON_PADDING);
        c->in.off += head + clen;
        handle(c, method, target, body, clen);
        free(body);
        if (c->close_after && c->state == C_READ) return flush_out(c) && close_when_sent(c);
    }
    return true;
}

/* ---- the loop ---------------------------------------------------------------------------- */

static void conn_close(conn *c)
{
    if (c->state != C_READ) stream_end(c, "aborted");
    epoll_ctl(G.ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    G.open_conns--;
    if (c->prev)
        c->prev->next = c->next;
    else
        G.conns = c->next;
    if (c->next) c->next->prev = c->prev;
    free(c->in.p);
    free(c->out.p);
    free(c);
}

static void accept_all(void)
{
    for (;;) {
        int fd = accept4(G.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn *c = calloc(1, sizeof *c);
        if (!c) abort();
        c->fd = fd;
        c->heap_i = (size_t)-1;
        c->next = G.conns;
        if (G.conns) G.conns->prev = c;
        G.conns = c;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        epoll_ctl(G.ep, EPOLL_CTL_ADD, fd, &ev);
        G.open_conns++;
        G.total_conns++;
    }
}

static void on_conn(conn *c, uint32_t ev)
{
    if ((ev & EPOLLOUT) && !flush_out(c)) return conn_close(c);
    if (c->drain_close) {
        if (!c->out.len || (ev & (EPOLLHUP | EPOLLERR))) conn_close(c);
        return;
    }
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        for (;;) {
            buf_reserve(&c->in, 16384);
            ssize_t r = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len, 0);
            if (r > 0) {
                c->in.len += (size_t)r;
                continue;
            }
            if (r < 0 && errno == EINTR) continue;
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            return conn_close(c); /* EOF or error: a stream in progress is aborted */
        }
        if (!read_requests(c)) return conn_close(c);
        if (!flush_out(c)) return conn_close(c);
    }
}

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static int write_port_file(const char *path, int port)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return -1;
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0) return -1;
    return rename(tmp, path);
}

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, opt.backlog) < 0) return -1;
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    opt.port = ntohs(sa.sin_port);
    return fd;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_fake_llm [--port 11435] [--port-file F] [--max-records 10000]\n"
               "                      [--backlog 4096] [--tokens N] [--delay-ms MS]\n"
               "                      [--first-token-ms MS] [--stamp] [--reply TEXT]\n"
               "                      [--max-tokens N]\n");
}

static bool parse_args(int argc, char **argv)
{
    static const struct option longs[] = {{"port", required_argument, 0, 'p'},
                                          {"port-file", required_argument, 0, 'f'},
                                          {"max-records", required_argument, 0, 'm'},
                                          {"backlog", required_argument, 0, 'b'},
                                          {"tokens", required_argument, 0, 't'},
                                          {"delay-ms", required_argument, 0, 'd'},
                                          {"first-token-ms", required_argument, 0, 'F'},
                                          {"stamp", no_argument, 0, 's'},
                                          {"reply", required_argument, 0, 'r'},
                                          {"max-tokens", required_argument, 0, 'M'},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    snprintf(opt.dflt.reply, sizeof opt.dflt.reply, "%s", DEFAULT_REPLY);
    int ch;
    while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (ch) {
        case 'p':
            opt.port = atoi(optarg);
            break;
        case 'f':
            opt.port_file = optarg;
            break;
        case 'm':
            opt.max_records = atoi(optarg);
            break;
        case 'b':
            opt.backlog = atoi(optarg);
            break;
        case 't':
            opt.dflt.tokens = atoi(optarg);
            break;
        case 'd':
            opt.dflt.delay_ms = atof(optarg);
            break;
        case 'F':
            opt.dflt.first_token_ms = atof(optarg);
            break;
        case 's':
            opt.dflt.stamp = true;
            break;
        case 'r':
            snprintf(opt.dflt.reply, sizeof opt.dflt.reply, "%s", optarg);
            break;
        case 'M':
            opt.dflt.max_tokens = atoi(optarg);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return false;
        }
    }
    return optind == argc && opt.port >= 0 && opt.port < 65536 && opt.max_records > 0 &&
           opt.backlog > 0 && opt.dflt.delay_ms >= 0 && opt.dflt.first_token_ms >= 0;
}

int main(int argc, char **argv)
{
    if (!parse_args(argc, argv)) {
        usage(stderr);
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max; /* a thousand streams need a thousand sockets */
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    prctl(PR_SET_TIMERSLACK, 1UL); /* timed wakeups on time, not up to 50 us late */
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (!(G.recs = calloc((size_t)opt.max_records, sizeof *G.recs))) abort();
    G.started = wall_now();
    G.ep = epoll_create1(EPOLL_CLOEXEC);
    if ((G.lfd = listen_on(opt.port)) < 0) {
        fprintf(stderr, "bench_fake_llm: cannot listen on 127.0.0.1:%d: %s\n", opt.port,
                strerror(errno));
        return 2;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &G.lfd};
    epoll_ctl(G.ep, EPOLL_CTL_ADD, G.lfd, &ev);
    if (opt.port_file && write_port_file(opt.port_file, opt.port) < 0) {
        fprintf(stderr, "bench_fake_llm: cannot write %s\n", opt.port_file);
        return 2;
    }
    struct epoll_event evs[512];
    while (!g_stop) {
        struct timespec ts = wait_time();
        int n = epoll_pwait2(G.ep, evs, 512, &ts, NULL);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &G.lfd)
                accept_all();
            else
                on_conn(evs[i].data.ptr, evs[i].events);
        }
        run_due();
    }
    while (G.conns) conn_close(G.conns);
    records_clear();
    free(G.recs);
    free(G.heap);
    free(G.lag);
    close(G.lfd);
    close(G.ep);
    return 0;
}
