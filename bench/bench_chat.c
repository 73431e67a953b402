/*
 * bench_chat.c - LLM streaming through persona-mcp (issue 4) against the fake LLM
 * (tests/fake_llm.py, Ollama dialect) measured directly in the same run.
 *
 * Every token the fake sends is stamped with the Unix time at which it wrote it (the
 * fake's "stamp" option, set per request with a [[fake:{...}]] marker), so a client on
 * this machine knows each token's relay latency (arrival - stamp) whatever the fake's
 * own lag. The direct peer is our own HTTP/1.1 client doing the same streaming request
 * (POST /api/chat, chunked NDJSON) on a keep-alive connection.
 *
 * Modes (bench/chat.sh runs them):
 *
 *   ttft   Alternates a persona.chat_stream over one WebSocket with the same request
 *          sent directly to the fake: the direct body is the very body persona-mcp sent
 *          for its first probe (read back from the fake's GET /_fake/requests), with
 *          only the probe's nonce changed. Fixed first-token delay (--first-token-ms).
 *          Per request: TTFT (send -> first token), request path (send -> the fake's
 *          record of the request, its "time"), first-token relay (arrival - stamp).
 *          Reported: TTFT p50/p99 of both and their difference ("e2e"), and the
 *          difference of request path + first-token relay ("added"; this removes the
 *          fake's own timer jitter, which is the same work for both). Per token: relay
 *          p50/p99 of both and the difference.
 *   cpu    Server CPU per relayed token: S streams of few tokens, then S streams of many
 *          tokens on one connection; (CPU_long - CPU_short) / (extra tokens).
 *   streams   N concurrent chat streams over C WebSocket connections, T tokens each at
 *          --delay-ms (20 tokens/s = 50 ms), starts staggered over --ramp-ms (so the
 *          streams do not tick in lock step). Per token relay p50/p99/max; completed
 *          streams and tokens; the fake's schedule lag and peak active streams; and the
 *          relay p99 of the "steady" tokens alone (stamped after every stream started and
 *          before the first one ends), i.e. without the bursts of chats being set up
 *          (memory search, prompt) and stored at the start and the end.
 *
 * BENCH_CHAT_DUMP=FILE writes "stamp relay_seconds" for every token received.
 *   fake-streams   The same N streams sent directly to the fake on N HTTP connections:
 *          whether the fake (and this client) sustain the load at all.
 *
 * Output: key=value lines. Exit status 0 when every stream completed with every token,
 * 1 otherwise, 2 on bad usage or set-up failure. Targets are judged by bench/chat.sh.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "lib/json.h"
#include "lib/jw.h"
#include "wsclient.h"

#define MAX_TOKENS 4096

static struct {
    const char *mode, *persona;
    int pmcp_port, fake_port, pid;
    int n, streams, conns, tokens, first_token_ms, delay_ms, ramp_ms, warmup;
} opt = {.n = 200,
         .streams = 1000,
         .conns = 50,
         .tokens = 100,
         .first_token_ms = 20,
         .delay_ms = 50,
         .ramp_ms = 1000,
         .warmup = 20};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_chat: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double server_cpu(void)
{
    if (opt.pid <= 0) return 0;
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", opt.pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* ---- samples -------------------------------------------------------------------------- */

typedef struct samples {
    double *v;
    size_t n, cap;
} samples;

static void add(samples *s, double x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v) die("out of memory");
    }
    s->v[s->n++] = x;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(samples *s, double q)
{
    if (!s->n) return -1;
    qsort(s->v, s->n, sizeof *s->v, cmp_double);
    return s->v[(size_t)(q * (double)(s->n - 1) + 0.5)];
}

/* ---- token stamps --------------------------------------------------------------------- */

/* A stamped token's text (" 1732537363.812345", perhaps JSON-escaped) -> seconds. */
static double stamp_of(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\\' || *p == 'n')) p++;
    char tmp[40];
    size_t n = 0;
    while (p < e && n + 1 < sizeof tmp && ((*p >= '0' && *p <= '9') || *p == '.')) tmp[n++] = *p++;
    tmp[n] = 0;
    return n ? strtod(tmp, NULL) : -1;
}

/* ---- one stream's bookkeeping --------------------------------------------------------- */

typedef struct stream {
    int index;
    uint64_t rpc_id;
    double t_send_wall;
    uint64_t t_send;
    uint64_t t_first; /* monotonic arrival of the first token */
    double stamp0, arrival0_wall;
    int tokens;
    bool started, done, failed;
    double req_time; /* the fake's record time of this request */
    char nonce[32];
} stream;

static samples g_relay; /* arrival - stamp of every token, seconds */
static FILE *g_dump;    /* BENCH_CHAT_DUMP: "stamp relay" per token */
/* streams mode: tokens stamped inside [g_steady_from, g_steady_to] (wall seconds), when
 * every stream has started and none has ended yet, are also kept apart: the relay while
 * no chat is being set up or stored */
static samples g_steady;
static double g_steady_from, g_steady_to;
static unsigned g_run_tag; /* makes this run's nonces unique among the fake's records */
static double g_run_start;
static int g_bad_stamps;

static void on_token(stream *s, double stamp, uint64_t t, double wall)
{
    if (stamp <= 0) {
        g_bad_stamps++;
        return;
    }
    if (s->tokens == 0) {
        s->t_first = t;
        s->stamp0 = stamp;
        s->arrival0_wall = wall;
    }
    s->tokens++;
    add(&g_relay, wall - stamp);
    if (stamp >= g_steady_from && stamp <= g_steady_to) add(&g_steady, wall - stamp);
    if (g_dump) fprintf(g_dump, "%.6f %.6f\n", stamp, wall - stamp);
}

/* ---- HTTP/1.1 streaming client for the fake ------------------------------------------- */

enum { H_CONNECTING, H_SENDING, H_HEAD, H_CHUNK_SIZE, H_CHUNK_DATA, H_CHUNK_CRLF, H_IDLE, H_DEAD };

typedef struct hconn {
    int fd, state;
    ws_buf out, in, line;
    size_t chunk_left;
    stream *cur;
    bool want_out;
} hconn;

static int g_ep = -1;

static void h_events(hconn *h, bool out)
{
    if (h->want_out == out) return;
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = h};
    epoll_ctl(g_ep, EPOLL_CTL_MOD, h->fd, &ev);
    h->want_out = out;
}

static bool h_connect(hconn *h, int port)
{
    memset(h, 0, sizeof *h);
    h->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (h->fd < 0) return false;
    int one = 1;
    setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(h->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        close(h->fd);
        return false;
    }
    h->state = H_CONNECTING;
    h->want_out = true;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = h};
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, h->fd, &ev) < 0) die("epoll_ctl");
    return true;
}

static void h_close(hconn *h)
{
    if (h->state == H_DEAD) return;
    epoll_ctl(g_ep, EPOLL_CTL_DEL, h->fd, NULL);
    close(h->fd);
    h->state = H_DEAD;
    if (h->cur && !h->cur->done) h->cur->failed = true;
    ws_buf_free(&h->out);
    ws_buf_free(&h->in);
    ws_buf_free(&h->line);
}

static bool h_flush(hconn *h)
{
    while (h->out.off < h->out.len) {
        ssize_t w = send(h->fd, h->out.data + h->out.off, h->out.len - h->out.off, MSG_NOSIGNAL);
        if (w > 0) {
            h->out.off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            h_events(h, true);
            return true;
        }
        return false;
    }
    h->out.len = h->out.off = 0;
    h_events(h, false);
    return true;
}

/* Queue POST /api/chat with body; s is the stream it feeds. */
static void h_request(hconn *h, stream *s, const char *body, size_t n)
{
    ws_buf_printf(&h->out,
                  "POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: "
                  "application/json\r\nAccept: application/x-ndjson\r\nContent-Length: %zu\r\n\r\n",
                  opt.fake_port, n);
    ws_buf_append(&h->out, body, n);
    h->cur = s;
    s->t_send = ws_now_ns();
    s->t_send_wall = wall_now();
    s->started = true;
    if (h->state == H_IDLE) h->state = H_SENDING;
}

static void h_line(hconn *h, const char *p, size_t n, uint64_t t, double wall)
{
    stream *s = h->cur;
    if (!s) return;
    if (memmem(p, n, "\"done\":true", 11)) {
        s->done = true;
        return;
    }
    if (memmem(p, n, "\"error\"", 7)) {
        s->failed = true;
        return;
    }
    const char *c = memmem(p, n, "\"content\":\"", 11);
    if (!c) return;
    on_token(s, stamp_of(c + 11, p + n), t, wall);
}

/* Parse what arrived. False when the connection must close. */
static bool h_parse(hconn *h, uint64_t t, double wall)
{
    for (int guard = 0; guard < 1000000; guard++) {
        char *p = h->in.data + h->in.off;
        size_t avail = h->in.len - h->in.off;
        if (h->state == H_HEAD) {
            char *e = memmem(p, avail, "\r\n\r\n", 4);
            if (!e) return avail < 65536;
            int status = 0;
            if (sscanf(p, "HTTP/1.1 %d", &status) != 1 || status != 200) return false;
            if (!memmem(p, (size_t)(e - p), "chunked", 7)) return false;
            h->in.off += (size_t)(e + 4 - p);
            h->state = H_CHUNK_SIZE;
        } else if (h->state == H_CHUNK_SIZE) {
            char *e = memmem(p, avail, "\r\n", 2);
            if (!e) return avail < 64;
            h->chunk_left = strtoul(p, NULL, 16);
            h->in.off += (size_t)(e + 2 - p);
            h->state = h->chunk_left ? H_CHUNK_DATA : H_CHUNK_CRLF;
            if (!h->chunk_left) h->chunk_left = (size_t)-1; /* last chunk: trailer CRLF */
        } else if (h->state == H_CHUNK_DATA) {
            if (!avail) break;
            size_t k = avail < h->chunk_left ? avail : h->chunk_left;
            for (size_t i = 0; i < k; i++) {
                if (p[i] == '\n') {
                    h_line(h, h->line.data ? h->line.data : "", h->line.len, t, wall);
                    h->line.len = 0;
                } else {
                    ws_buf_append(&h->line, p + i, 1);
                }
            }
            h->in.off += k;
            h->chunk_left -= k;
            if (!h->chunk_left) h->state = H_CHUNK_CRLF;
        } else if (h->state == H_CHUNK_CRLF) {
            if (avail < 2) break;
            h->in.off += 2;
            if (h->chunk_left == (size_t)-1) { /* end of body */
                if (h->cur && !h->cur->done) h->cur->failed = true;
                h->cur = NULL;
                h->state = H_IDLE;
            } else {
                h->state = H_CHUNK_SIZE;
            }
        } else {
            break;
        }
    }
    memmove(h->in.data, h->in.data + h->in.off, h->in.len - h->in.off);
    h->in.len -= h->in.off;
    h->in.off = 0;
    return true;
}

static bool h_on_events(hconn *h, uint32_t ev, uint64_t t, double wall)
{
    if (h->state == H_DEAD) return false;
    if (h->state == H_CONNECTING) {
        if (ev & (EPOLLERR | EPOLLHUP)) return false;
        if (!(ev & EPOLLOUT)) return true;
        h->state = h->out.len ? H_SENDING : H_IDLE;
    }
    if (h->state == H_SENDING || (ev & EPOLLOUT)) {
        if (!h_flush(h)) return false;
        if (h->state == H_SENDING && h->out.len == 0) h->state = H_HEAD;
    }
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (int rounds = 0; rounds < 64; rounds++) {
            ws_buf_reserve(&h->in, 65536);
            ssize_t r = recv(h->fd, h->in.data + h->in.len, h->in.cap - h->in.len, 0);
            if (r > 0) {
                h->in.len += (size_t)r;
                if (!h_parse(h, t, wall)) return false;
                continue;
            }
            if (r == 0) return false;
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            return false;
        }
    }
    return true;
}

/* Blocking GET on a fresh connection; the body (malloc'd, NUL-terminated) or NULL. */
static char *http_get(int port, const char *path, size_t *len_out)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {20, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return NULL;
    }
    char req[512];
    int n =
        snprintf(req, sizeof req,
                 "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", path, port);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return NULL;
    }
    ws_buf b = {0};
    for (int i = 0; i < 1000000; i++) {
        ws_buf_reserve(&b, 65536);
        ssize_t r = recv(fd, b.data + b.len, b.cap - b.len - 1, 0);
        if (r <= 0) break;
        b.len += (size_t)r;
    }
    close(fd);
    if (!b.data) return NULL;
    b.data[b.len] = 0;
    char *body = strstr(b.data, "\r\n\r\n");
    if (!body || !strstr(b.data, " 200 ")) {
        free(b.data);
        return NULL;
    }
    body += 4;
    size_t len = b.len - (size_t)(body - b.data);
    /* de-chunk when needed */
    if (strcasestr(b.data, "transfer-encoding: chunked")) {
        char *o = b.data, *p = body, *e = b.data + b.len;
        size_t k = 0;
        for (int g = 0; g < 1000000 && p < e; g++) {
            size_t sz = strtoul(p, NULL, 16);
            char *nl = strstr(p, "\r\n");
            if (!nl || !sz) break;
            p = nl + 2;
            if ((size_t)(e - p) < sz) break;
            memmove(o + k, p, sz);
            k += sz;
            p += sz + 2;
        }
        o[k] = 0;
        if (len_out) *len_out = k;
        return o;
    }
    memmove(b.data, body, len);
    b.data[len] = 0;
    if (len_out) *len_out = len;
    return b.data;
}

static double json_num_field(const char *json, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(json, k);
    return p ? strtod(p + strlen(k), NULL) : -1;
}

/* ---- WebSocket side ------------------------------------------------------------------- */

static ws_client g_cl;
static stream *g_streams;
static int g_nstreams;
static uint64_t g_id_base = 1000;
static int g_ws_errors;

static stream *stream_by_id(uint64_t id)
{
    if (id < g_id_base || id >= g_id_base + (uint64_t)g_nstreams) return NULL;
    return &g_streams[id - g_id_base];
}

static bool ws_on_message(ws_conn *c, char *p, size_t n, uint64_t t)
{
    (void)c;
    double wall = wall_now();
    uint64_t id = 0;
    bool has_result, has_error;
    if (!ws_scan_response(p, n, &id, &has_result, &has_error)) return true; /* notification */
    stream *s = stream_by_id(id);
    if (!s) return true;
    if (has_error || !has_result) {
        s->failed = true;
        s->done = true;
        g_ws_errors++;
        return true;
    }
    if (memmem(p, n, "\"event_type\":\"stream_chunk\"", 27)) {
        const char *k = memmem(p, n, "\"chunk\":\"", 9);
        if (k) on_token(s, stamp_of(k + 9, p + n), t, wall);
    } else if (memmem(p, n, "\"event_type\":\"stream_complete\"", 30)) {
        s->done = true;
    } else if (memmem(p, n, "\"event_type\":\"stream_error\"", 27) ||
               memmem(p, n, "\"event_type\":\"stream_cancelled\"", 31)) {
        s->done = true;
        s->failed = true;
        if (g_ws_errors++ == 0) fprintf(stderr, "bench_chat: stream failed: %.400s\n", p);
    }
    return true;
}

static ws_conn *ws_open(int n, const char *persona)
{
    ws_conn *cs = calloc((size_t)n, sizeof *cs);
    if (!cs) die("out of memory");
    if (ws_connect_all(&g_cl, cs, n, 64, 30) != n) die("WebSocket connections failed");
    char req[512];
    int k =
        snprintf(req, sizeof req,
                 "{\"jsonrpc\":\"2.0\",\"method\":\"persona.switch\",\"params\":{\"persona_id\":"
                 "\"%s\"},\"id\":1}",
                 persona);
    for (int i = 0; i < n; i++) {
        char *raw;
        if (ws_call(&cs[i], req, (size_t)k, 20, &raw, NULL) < 0) die("persona.switch: no answer");
        if (!strstr(raw, "\"result\"")) die("persona.switch failed: %.300s", raw);
        free(raw);
    }
    g_cl.on_message = ws_on_message;
    return cs;
}

static void marker(char *out, size_t n, int tokens, int first_ms, int delay_ms)
{
    snprintf(out, n,
             "[[fake:{\\\"stamp\\\":true,\\\"tokens\\\":%d,\\\"first_token_ms\\\":%d,"
             "\\\"delay_ms\\\":%d}]]",
             tokens, first_ms, delay_ms);
}

static void send_chat(ws_conn *c, stream *s, const char *text)
{
    char req[1024];
    int k = snprintf(req, sizeof req,
                     "{\"jsonrpc\":\"2.0\",\"method\":\"persona.chat_stream\",\"params\":{"
                     "\"message\":\"%s\",\"token_budget\":%d},\"id\":%llu}",
                     text, MAX_TOKENS, (unsigned long long)s->rpc_id);
    s->t_send = ws_now_ns();
    s->t_send_wall = wall_now();
    s->started = true;
    ws_queue_text(c, req, (size_t)k);
    if (!ws_conn_flush(c)) die("send failed");
}

/* Drive everything until pred() or the deadline. */
static bool wait_until(bool (*pred)(void *), void *arg, double timeout_s, hconn *hs, int nh)
{
    uint64_t deadline = ws_now_ns() + (uint64_t)(timeout_s * 1e9);
    struct epoll_event evs[512];
    for (int guard = 0; guard < 100000000; guard++) {
        if (pred(arg)) return true;
        uint64_t t = ws_now_ns();
        if (t >= deadline) return false;
        int ms = (int)((deadline - t) / 1000000) + 1;
        int ne = epoll_wait(g_ep, evs, 512, ms > 50 ? 50 : ms);
        t = ws_now_ns();
        double wall = wall_now();
        for (int i = 0; i < ne; i++) {
            void *ptr = evs[i].data.ptr;
            bool is_h = hs && ptr >= (void *)hs && ptr < (void *)(hs + nh);
            if (is_h) {
                if (!h_on_events(ptr, evs[i].events, t, wall)) h_close(ptr);
            } else {
                ws_conn *c = ptr;
                if (c->state != WS_CLOSED && !ws_conn_on_events(c, evs[i].events, t)) {
                    ws_conn_close(c);
                    g_ws_errors++;
                }
            }
        }
    }
    return false;
}

static bool stream_done(void *arg)
{
    stream *s = arg;
    return s->done || s->failed;
}

/* ---- ttft ----------------------------------------------------------------------------- */

/* Replace the first occurrence of `from` in the JSON text with `to` (same length). */
static void replace_nonce(char *text, const char *from, const char *to)
{
    char *p = strstr(text, from);
    if (p) memcpy(p, to, strlen(to));
}

static void fetch_record_times(stream *ss, int n)
{
    char path[128];
    snprintf(path, sizeof path, "/_fake/requests?path=/api/chat&limit=%d", 3 * n + 100);
    size_t len;
    char *body = http_get(opt.fake_port, path, &len);
    if (!body) die("cannot read /_fake/requests");
    jarena a;
    jarena_init(&a);
    json_error err;
    jv *doc = json_parse(&a, body, len, len, 64, &err);
    if (!doc || doc->type != JV_ARRAY) die("bad /_fake/requests: %s", err.msg);
    for (uint32_t i = 0; i < doc->len; i++) {
        const jv *rec = &doc->u.items[i];
        const jv *t = jv_get(rec, "time");
        const jv *msgs = jv_get(jv_get(rec, "body"), "messages");
        if (!jv_is_num(t) || jv_num(t) < g_run_start - 1 || !msgs || msgs->type != JV_ARRAY ||
            !msgs->len)
            continue;
        const jv *last = jv_get(&msgs->u.items[msgs->len - 1], "content");
        if (!jv_is_str(last)) continue;
        for (int k = 0; k < n; k++)
            if (strstr(last->u.s, ss[k].nonce)) ss[k].req_time = jv_num(t);
    }
    jarena_free(&a);
    free(body);
}

static int mode_ttft(void)
{
    if (ws_client_init(&g_cl, "127.0.0.1", opt.pmcp_port, "/mcp") < 0) return 2;
    g_ep = g_cl.epfd;
    int N = opt.n, W = opt.warmup;
    int total = 2 * (N + W);
    g_run_tag = (unsigned)(ws_now_ns() ^ (uint64_t)getpid() << 8) & 0xfffff;
    g_run_start = wall_now();
    g_nstreams = total;
    g_streams = calloc((size_t)total, sizeof *g_streams);
    if (!g_streams) die("out of memory");
    for (int i = 0; i < total; i++) {
        g_streams[i].index = i;
        g_streams[i].rpc_id = g_id_base + (uint64_t)i;
        snprintf(g_streams[i].nonce, sizeof g_streams[i].nonce, "probe%05x%06d", g_run_tag, i);
    }
    ws_conn *c = ws_open(1, opt.persona);
    char mk[256];
    marker(mk, sizeof mk, opt.tokens, opt.first_token_ms, opt.delay_ms);
    hconn h;
    if (!h_connect(&h, opt.fake_port)) die("cannot connect to the fake");
    char *tmpl = NULL;
    const char *tmpl_nonce = NULL;
    int bad = 0;
    /* Even streams go through persona-mcp, odd ones straight to the fake. The first 2W
     * are warmup: persona-mcp's first W (its prompt grows with the connection's history
     * and memories), then the direct template is taken from its latest request. */
    for (int i = 0; i < total; i++) {
        stream *s = &g_streams[i];
        bool direct = i & 1;
        if (i < 2 * W) direct = i >= W; /* W through persona-mcp, then W direct */
        if (!direct) {
            char text[512];
            snprintf(text, sizeof text, "%s tell me a story %s", s->nonce, mk);
            send_chat(c, s, text);
        } else {
            if (!tmpl) {
                size_t len;
                char *recs =
                    http_get(opt.fake_port, "/_fake/requests?path=/api/chat&limit=1", &len);
                jarena a;
                jarena_init(&a);
                json_error err;
                jv *doc = recs ? json_parse(&a, recs, len, len, 64, &err) : NULL;
                const jv *body = doc && doc->type == JV_ARRAY && doc->len
                                     ? jv_get(&doc->u.items[0], "body")
                                     : NULL;
                if (!body) die("cannot read persona-mcp's request from the fake");
                jw w;
                jw_init(&w, 0, 4096);
                jw_value(&w, body);
                jw_append(&w, "", 1);
                tmpl = strdup(jw_data(&w));
                jw_free(&w);
                jarena_free(&a);
                free(recs);
                tmpl_nonce = g_streams[i - 1].nonce;
                if (!tmpl || !strstr(tmpl, tmpl_nonce))
                    die("persona-mcp's request to the fake does not carry the message");
                printf("chat.ttft.request_body_bytes=%zu\n", strlen(tmpl));
            }
            char *body = strdup(tmpl);
            replace_nonce(body, tmpl_nonce, s->nonce);
            if (h.state == H_DEAD && !h_connect(&h, opt.fake_port)) die("reconnect to the fake");
            h_request(&h, s, body, strlen(body));
            free(body);
            if (h.state == H_SENDING) {
                if (!h_flush(&h)) h_close(&h);
                if (h.out.len == 0 && h.state == H_SENDING) h.state = H_HEAD;
            }
        }
        if (!wait_until(stream_done, s, 30, &h, 1)) {
            fprintf(stderr, "bench_chat: probe %d timed out\n", i);
            s->failed = true;
        }
        if (s->failed || s->tokens != opt.tokens) bad++;
    }
    fetch_record_times(g_streams, total);
    samples ttft[2] = {0}, reqp[2] = {0}, first[2] = {0}, over[2] = {0};
    for (int i = 2 * W; i < total; i++) {
        stream *s = &g_streams[i];
        int k = i & 1;
        if (s->failed || !s->tokens) continue;
        add(&ttft[k], (double)(s->t_first - s->t_send) / 1e6);
        add(&first[k], (s->arrival0_wall - s->stamp0) * 1e3);
        if (s->req_time > 0) {
            add(&reqp[k], (s->req_time - s->t_send_wall) * 1e3);
            add(&over[k], (s->req_time - s->t_send_wall + s->arrival0_wall - s->stamp0) * 1e3);
        }
    }
    const char *nm[2] = {"pmcp", "direct"};
    for (int k = 0; k < 2; k++) {
        printf("chat.ttft.%s.n=%zu\n", nm[k], ttft[k].n);
        printf("chat.ttft.%s.p50_ms=%.3f\nchat.ttft.%s.p99_ms=%.3f\n", nm[k], pct(&ttft[k], .5),
               nm[k], pct(&ttft[k], .99));
        printf("chat.ttft.%s.request_path_p50_ms=%.3f\nchat.ttft.%s.request_path_p99_ms=%.3f\n",
               nm[k], pct(&reqp[k], .5), nm[k], pct(&reqp[k], .99));
        printf("chat.ttft.%s.first_relay_p50_ms=%.3f\nchat.ttft.%s.first_relay_p99_ms=%.3f\n",
               nm[k], pct(&first[k], .5), nm[k], pct(&first[k], .99));
        printf("chat.ttft.%s.overhead_p50_ms=%.3f\nchat.ttft.%s.overhead_p99_ms=%.3f\n", nm[k],
               pct(&over[k], .5), nm[k], pct(&over[k], .99));
    }
    printf("chat.ttft.added_e2e_p50_ms=%.3f\nchat.ttft.added_e2e_p99_ms=%.3f\n",
           pct(&ttft[0], .5) - pct(&ttft[1], .5), pct(&ttft[0], .99) - pct(&ttft[1], .99));
    printf("chat.ttft.added_p50_ms=%.3f\nchat.ttft.added_p99_ms=%.3f\n",
           pct(&over[0], .5) - pct(&over[1], .5), pct(&over[0], .99) - pct(&over[1], .99));
    printf("chat.ttft.first_token_ms=%d\nchat.ttft.tokens=%d\nchat.ttft.failed=%d\n",
           opt.first_token_ms, opt.tokens, bad);
    printf("chat.ttft.bad_stamps=%d\n", g_bad_stamps);
    ws_close_all(&g_cl, c, 1);
    h_close(&h);
    free(c);
    free(tmpl);
    return bad ? 1 : 0;
}

/* ---- relay per token, and server CPU per token ---------------------------------------- */

typedef struct batch_arg {
    stream *s;
    int n;
} batch_arg;

static bool all_done(void *arg)
{
    batch_arg *b = arg;
    for (int i = 0; i < b->n; i++)
        if (!b->s[i].done && !b->s[i].failed) return false;
    return true;
}

/* S concurrent streams of T tokens on one connection (or on the fake directly). */
static int run_batch(ws_conn *c, hconn *hs, int S, int T, int delay, const char *tag, double *cpu,
                     samples *relay)
{
    static int seq;
    int base = g_nstreams;
    g_nstreams += S;
    g_streams = realloc(g_streams, sizeof *g_streams * (size_t)g_nstreams);
    if (!g_streams) die("out of memory");
    stream *ss = g_streams + base;
    memset(ss, 0, sizeof *ss * (size_t)S);
    char mk[256];
    marker(mk, sizeof mk, T, opt.first_token_ms, delay);
    g_relay.n = 0;
    double cpu0 = server_cpu();
    for (int i = 0; i < S; i++) {
        stream *s = &ss[i];
        s->rpc_id = g_id_base + (uint64_t)(base + i);
        snprintf(s->nonce, sizeof s->nonce, "%s%d-%d", tag, seq, i);
        char text[512];
        snprintf(text, sizeof text, "%s relay %s", s->nonce, mk);
        if (c) {
            send_chat(c, s, text);
        } else {
            char body[1024];
            int k = snprintf(body, sizeof body,
                             "{\"model\":\"fake:latest\",\"stream\":true,\"messages\":[{\"role\":"
                             "\"user\",\"content\":\"%s\"}]}",
                             text);
            h_request(&hs[i], s, body, (size_t)k);
            if (hs[i].state != H_CONNECTING) {
                if (!h_flush(&hs[i])) h_close(&hs[i]);
                if (hs[i].out.len == 0 && hs[i].state == H_SENDING) hs[i].state = H_HEAD;
            }
        }
    }
    seq++;
    batch_arg b = {ss, S};
    double timeout = 30 + (double)T * delay / 1000.0 * 2;
    wait_until(all_done, &b, timeout, hs, hs ? S : 0);
    *cpu = server_cpu() - cpu0;
    int bad = 0;
    long tokens = 0;
    for (int i = 0; i < S; i++) {
        bad += ss[i].failed || ss[i].tokens != T;
        tokens += ss[i].tokens;
    }
    for (size_t i = 0; i < g_relay.n; i++) add(relay, g_relay.v[i]);
    return bad;
}

static int mode_cpu(void)
{
    if (ws_client_init(&g_cl, "127.0.0.1", opt.pmcp_port, "/mcp") < 0) return 2;
    g_ep = g_cl.epfd;
    ws_conn *c = ws_open(1, opt.persona);
    int S = opt.streams, T = opt.tokens;
    samples rp = {0}, rd = {0};
    double cs, cl, dummy;
    int bad = run_batch(c, NULL, S, 2, 1, "cs", &cs, &rp);
    rp.n = 0;
    bad += run_batch(c, NULL, S, T + 2, opt.delay_ms, "cl", &cl, &rp);
    /* the same long streams straight from the fake, S connections */
    hconn *hs = calloc((size_t)S, sizeof *hs);
    if (!hs) die("out of memory");
    for (int i = 0; i < S; i++)
        if (!h_connect(&hs[i], opt.fake_port)) die("connect to the fake");
    bad += run_batch(NULL, hs, S, T + 2, opt.delay_ms, "cd", &dummy, &rd);
    for (int i = 0; i < S; i++) h_close(&hs[i]);
    free(hs);
    double per_tok = (cl - cs) * 1e6 / ((double)S * T);
    printf("chat.cpu.streams=%d\nchat.cpu.extra_tokens=%d\n", S, S * T);
    printf("chat.cpu.server_cpu_short_s=%.3f\nchat.cpu.server_cpu_long_s=%.3f\n", cs, cl);
    printf("chat.cpu.server_cpu_us_per_token=%.1f\n", per_tok);
    printf("chat.cpu.server_cpu_ms_per_chat=%.2f\n", cs * 1e3 / S);
    printf("chat.relay.tokens=%zu\n", rp.n);
    printf("chat.relay.pmcp_p50_us=%.1f\nchat.relay.pmcp_p99_us=%.1f\n", pct(&rp, .5) * 1e6,
           pct(&rp, .99) * 1e6);
    printf("chat.relay.direct_p50_us=%.1f\nchat.relay.direct_p99_us=%.1f\n", pct(&rd, .5) * 1e6,
           pct(&rd, .99) * 1e6);
    printf("chat.relay.added_p50_us=%.1f\nchat.relay.added_p99_us=%.1f\n",
           (pct(&rp, .5) - pct(&rd, .5)) * 1e6, (pct(&rp, .99) - pct(&rd, .99)) * 1e6);
    printf("chat.cpu.failed=%d\n", bad);
    ws_close_all(&g_cl, c, 1);
    free(c);
    return bad ? 1 : 0;
}

/* ---- many concurrent streams ---------------------------------------------------------- */

static void fake_stats(const char *prefix)
{
    size_t len;
    char *s = http_get(opt.fake_port, "/_fake/stats", &len);
    if (!s) {
        printf("%s.fake_stats=unavailable\n", prefix);
        return;
    }
    const char *lag = strstr(s, "\"schedule_lag_ms\"");
    printf("%s.fake_max_active_streams=%.0f\n", prefix, json_num_field(s, "max_active_streams"));
    printf("%s.fake_tokens_sent=%.0f\n", prefix, json_num_field(s, "tokens_sent"));
    if (lag) {
        printf("%s.fake_schedule_lag_p50_ms=%.2f\n", prefix, json_num_field(lag, "p50"));
        printf("%s.fake_schedule_lag_p99_ms=%.2f\n", prefix, json_num_field(lag, "p99"));
        printf("%s.fake_schedule_lag_max_ms=%.2f\n", prefix, json_num_field(lag, "max"));
    }
    free(s);
}

static void fake_reset(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.fake_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        char req[256];
        int n = snprintf(req, sizeof req,
                         "POST /_fake/reset HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: "
                         "0\r\nConnection: close\r\n\r\n",
                         opt.fake_port);
        if (send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
            char sink[4096];
            for (int i = 0; i < 100 && recv(fd, sink, sizeof sink, 0) > 0; i++) {
            }
        }
    }
    close(fd);
}

static int mode_streams(bool direct)
{
    int N = opt.streams, C = direct ? N : opt.conns;
    const char *prefix = direct ? "chat.fake" : "chat.streams";
    g_nstreams = N;
    g_streams = calloc((size_t)N, sizeof *g_streams);
    if (!g_streams) die("out of memory");
    ws_conn *cs = NULL;
    hconn *hs = NULL;
    if (direct) {
        g_ep = epoll_create1(EPOLL_CLOEXEC);
        hs = calloc((size_t)N, sizeof *hs);
        if (!hs) die("out of memory");
        for (int i = 0; i < N; i++)
            if (!h_connect(&hs[i], opt.fake_port)) die("connect to the fake");
    } else {
        if (ws_client_init(&g_cl, "127.0.0.1", opt.pmcp_port, "/mcp") < 0) return 2;
        g_ep = g_cl.epfd;
        cs = ws_open(C, opt.persona);
    }
    fake_reset();
    char mk[256];
    marker(mk, sizeof mk, opt.tokens, opt.first_token_ms, opt.delay_ms);
    g_relay.n = 0;
    double cpu0 = server_cpu();
    uint64_t t0 = ws_now_ns();
    g_steady.n = 0;
    g_steady_from = wall_now() + (opt.ramp_ms + opt.first_token_ms + 2 * opt.delay_ms) / 1000.0;
    g_steady_to = wall_now() + (opt.first_token_ms + (opt.tokens - 2) * opt.delay_ms) / 1000.0;
    int started = 0;
    double duration = opt.ramp_ms / 1000.0 + opt.first_token_ms / 1000.0 +
                      (double)opt.tokens * opt.delay_ms / 1000.0;
    uint64_t deadline = t0 + (uint64_t)((duration * 2 + 30) * 1e9);
    struct epoll_event evs[1024];
    int peak_active = 0;
    for (int guard = 0; guard < 100000000; guard++) {
        uint64_t t = ws_now_ns();
        /* start the streams that are due */
        while (started < N &&
               t >= t0 + (uint64_t)((double)opt.ramp_ms * 1e6 * started / (double)N)) {
            stream *s = &g_streams[started];
            s->index = started;
            s->rpc_id = g_id_base + (uint64_t)started;
            snprintf(s->nonce, sizeof s->nonce, "s%06d", started);
            char text[512];
            snprintf(text, sizeof text, "%s go %s", s->nonce, mk);
            if (direct) {
                char body[1024];
                int k = snprintf(body, sizeof body,
                                 "{\"model\":\"fake:latest\",\"stream\":true,\"messages\":[{"
                                 "\"role\":\"user\",\"content\":\"%s\"}]}",
                                 text);
                hconn *h = &hs[started];
                h_request(h, s, body, (size_t)k);
                if (h->state == H_SENDING) {
                    if (!h_flush(h)) h_close(h);
                    if (h->out.len == 0 && h->state == H_SENDING) h->state = H_HEAD;
                }
            } else {
                send_chat(&cs[started % C], s, text);
            }
            started++;
        }
        int done = 0, active = 0;
        for (int i = 0; i < started; i++) {
            bool d = g_streams[i].done || g_streams[i].failed;
            done += d;
            active += !d;
        }
        if (active > peak_active) peak_active = active;
        if (started == N && done == N) break;
        if (t >= deadline) break;
        int ms = 5;
        int ne = epoll_wait(g_ep, evs, 1024, started < N ? 1 : ms);
        t = ws_now_ns();
        double wall = wall_now();
        for (int i = 0; i < ne; i++) {
            if (direct) {
                hconn *h = evs[i].data.ptr;
                if (!h_on_events(h, evs[i].events, t, wall)) h_close(h);
            } else {
                ws_conn *c = evs[i].data.ptr;
                if (c->state != WS_CLOSED && !ws_conn_on_events(c, evs[i].events, t)) {
                    ws_conn_close(c);
                    g_ws_errors++;
                }
            }
        }
    }
    double secs = (double)(ws_now_ns() - t0) / 1e9;
    double cpu = server_cpu() - cpu0;
    int ok = 0, failed = 0;
    long tokens = 0;
    samples ttft = {0};
    for (int i = 0; i < N; i++) {
        stream *s = &g_streams[i];
        tokens += s->tokens;
        if (!s->failed && s->done && s->tokens == opt.tokens)
            ok++;
        else
            failed++;
        if (s->tokens) add(&ttft, (double)(s->t_first - s->t_send) / 1e6);
    }
    printf("%s.streams=%d\n%s.connections=%d\n%s.tokens_per_stream=%d\n%s.delay_ms=%d\n", prefix, N,
           prefix, C, prefix, opt.tokens, prefix, opt.delay_ms);
    printf("%s.ramp_ms=%d\n%s.seconds=%.2f\n", prefix, opt.ramp_ms, prefix, secs);
    printf("%s.completed=%d\n%s.failed=%d\n%s.tokens=%ld\n%s.expected_tokens=%ld\n", prefix, ok,
           prefix, failed, prefix, tokens, prefix, (long)N * opt.tokens);
    printf("%s.peak_active=%d\n", prefix, peak_active);
    printf("%s.tokens_per_s=%.0f\n", prefix, (double)tokens / secs);
    printf(
        "%s.relay_p50_ms=%.3f\n%s.relay_p99_ms=%.3f\n%s.relay_p999_ms=%.3f\n%s.relay_max_ms=%.3f\n",
        prefix, pct(&g_relay, .5) * 1e3, prefix, pct(&g_relay, .99) * 1e3, prefix,
        pct(&g_relay, .999) * 1e3, prefix, pct(&g_relay, 1) * 1e3);
    printf("%s.ttft_p50_ms=%.2f\n%s.ttft_p99_ms=%.2f\n", prefix, pct(&ttft, .5), prefix,
           pct(&ttft, .99));
    /* the steady phase exists when the streams outlast the ramp */
    printf("%s.steady_tokens=%zu\n%s.steady_relay_p99_ms=%.3f\n", prefix, g_steady.n, prefix,
           g_steady.n ? pct(&g_steady, .99) * 1e3 : -1);
    if (!direct && opt.pid > 0)
        printf("%s.server_cpu_s=%.2f\n%s.server_cpu_us_per_token=%.1f\n", prefix, cpu, prefix,
               tokens ? cpu * 1e6 / (double)tokens : 0);
    printf("%s.bad_stamps=%d\n%s.ws_errors=%d\n", prefix, g_bad_stamps, prefix, g_ws_errors);
    fake_stats(prefix);
    if (direct) {
        for (int i = 0; i < N; i++) h_close(&hs[i]);
        free(hs);
        close(g_ep);
    } else {
        ws_close_all(&g_cl, cs, C);
        free(cs);
        ws_client_free(&g_cl);
    }
    return failed ? 1 : 0;
}

/* ---- main ----------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_chat ttft --pmcp-port P --fake-port F --persona ID [--n 200]\n"
            "                  [--first-token-ms 20] [--tokens 5] [--delay-ms 2] [--warmup 20]\n"
            "       bench_chat cpu --pmcp-port P --fake-port F --persona ID --pid PID\n"
            "                  [--streams 20] [--tokens 200] [--delay-ms 5]\n"
            "       bench_chat streams --pmcp-port P --fake-port F --persona ID [--streams 1000]\n"
            "                  [--conns 50] [--tokens 100] [--delay-ms 50] [--ramp-ms 1000]\n"
            "       bench_chat fake-streams --fake-port F [--streams 1000] [--tokens 100] ...\n");
}

int main(int argc, char **argv)
{
    static const struct option longs[] = {{"pmcp-port", required_argument, 0, 'p'},
                                          {"fake-port", required_argument, 0, 'f'},
                                          {"persona", required_argument, 0, 'P'},
                                          {"pid", required_argument, 0, 'i'},
                                          {"n", required_argument, 0, 'n'},
                                          {"streams", required_argument, 0, 's'},
                                          {"conns", required_argument, 0, 'c'},
                                          {"tokens", required_argument, 0, 't'},
                                          {"first-token-ms", required_argument, 0, 'F'},
                                          {"delay-ms", required_argument, 0, 'd'},
                                          {"ramp-ms", required_argument, 0, 'r'},
                                          {"warmup", required_argument, 0, 'w'},
                                          {"help", no_argument, 0, 'H'},
                                          {0, 0, 0, 0}};
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    opt.mode = argv[1];
    optind = 2;
    int ch;
    while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (ch) {
        case 'p':
            opt.pmcp_port = atoi(optarg);
            break;
        case 'f':
            opt.fake_port = atoi(optarg);
            break;
        case 'P':
            opt.persona = optarg;
            break;
        case 'i':
            opt.pid = atoi(optarg);
            break;
        case 'n':
            opt.n = atoi(optarg);
            break;
        case 's':
            opt.streams = atoi(optarg);
            break;
        case 'c':
            opt.conns = atoi(optarg);
            break;
        case 't':
            opt.tokens = atoi(optarg);
            break;
        case 'F':
            opt.first_token_ms = atoi(optarg);
            break;
        case 'd':
            opt.delay_ms = atoi(optarg);
            break;
        case 'r':
            opt.ramp_ms = atoi(optarg);
            break;
        case 'w':
            opt.warmup = atoi(optarg);
            break;
        case 'H':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    bool need_pmcp = strcmp(opt.mode, "fake-streams") != 0;
    if (opt.fake_port <= 0 || (need_pmcp && (opt.pmcp_port <= 0 || !opt.persona)) || opt.n < 1 ||
        opt.n > 100000 || opt.streams < 1 || opt.streams > 20000 || opt.conns < 1 ||
        (!strcmp(opt.mode, "streams") && opt.conns > opt.streams) || opt.tokens < 1 ||
        opt.tokens > MAX_TOKENS - 8 || opt.delay_ms < 0 || opt.delay_ms > 10000 ||
        opt.first_token_ms < 0 || opt.first_token_ms > 10000 || opt.ramp_ms < 0 ||
        opt.ramp_ms > 600000 || opt.warmup < 0 || optind != argc) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    const char *dump = getenv("BENCH_CHAT_DUMP"); /* every token's stamp and relay latency */
    if (dump && *dump && !(g_dump = fopen(dump, "w"))) die("cannot write %s", dump);
    if (!strcmp(opt.mode, "ttft")) return mode_ttft();
    if (!strcmp(opt.mode, "cpu")) return mode_cpu();
    if (!strcmp(opt.mode, "streams")) return mode_streams(false);
    if (!strcmp(opt.mode, "fake-streams")) return mode_streams(true);
    usage(stderr);
    return 2;
}
