/*
 * bench_mcp.c - MCP tool-call load generator for bench/mcp.sh (issue 5): Streamable
 * HTTP and stdio, for any MCP server (persona-mcp, or the official TypeScript SDK's
 * server in bench/mcp_peer_server.mjs), so both are driven by the same client.
 *
 *   bench_mcp http  --port P [--path /mcp] --tool NAME --args JSON [--conns C]
 *                   [--seconds S] [--warmup S] [--seed N] [--pid SERVER_PID]
 *   bench_mcp stdio --tool NAME --args JSON [--inflight P] [--seconds S] [--warmup S]
 *                   [--seed N] -- COMMAND ARGS...
 *
 * Design. One thread, one epoll set. HTTP: C connections, each its own MCP session
 * (initialize, notifications/initialized; the Mcp-Session-Id and the negotiated
 * MCP-Protocol-Version are sent on every later request), one tools/call in flight per
 * connection (HTTP/1.1 without pipelining). A response body is framed by
 * Content-Length, chunked encoding, or the end of the connection; an answer that
 * closes the connection (Connection: close, or close-delimited) makes the next call
 * open a new TCP connection, and that connect counts in the next call's latency, as
 * it would for a real client. Reconnects are counted. stdio: the server is a child
 * process (stdin/stdout pipes, stderr inherited), newline-delimited JSON-RPC, P calls
 * in flight, answers matched by id (they may come back in any order).
 *
 * Arguments: JSON text in which "{n}" is replaced by a per-call counter and
 * "{persona}" by the id of the first persona that the server's persona_list tool
 * returns (read once at start). --seed N first calls memory_store N times (persona
 * "bench", ~200-char texts), untimed.
 *
 * A call counts as good when its JSON-RPC response has the request's id and a result
 * without "isError":true. Latencies are raw samples; percentiles are exact. The last line is
 * "RESULT key=value ...", with the server's CPU time per call over the load (from
 * /proc/PID/stat: --pid for HTTP, the child for stdio). Exit 0 when no call failed, 1 otherwise, 2
 * on bad usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#define MAX_CONNS  1024
#define MAX_BODY   (16u << 20)
#define SLOTS      8192
#define PROTO_WANT "2025-11-25"

static struct {
    const char *mode, *path, *tool, *args;
    int port, conns, inflight, seed, pid;
    double seconds, warmup;
    char **command;
} opt = {.path = "/mcp", .conns = 1, .inflight = 1, .seconds = 5, .warmup = 1};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_mcp: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- buffers -------------------------------------------------------------------------- */

typedef struct buf {
    char *d;
    size_t len, cap, off;
} buf;

static void reserve(buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + extra + 1) cap *= 2;
    b->d = realloc(b->d, cap);
    if (!b->d) die("out of memory");
    b->cap = cap;
}

static void put(buf *b, const void *p, size_t n)
{
    reserve(b, n);
    memcpy(b->d + b->len, p, n);
    b->len += n;
    b->d[b->len] = 0;
}

static void putf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    reserve(b, (size_t)k);
    va_start(ap, fmt);
    vsnprintf(b->d + b->len, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)k;
}

/* ---- requests ------------------------------------------------------------------------- */

static char g_persona[128] = "";
static uint64_t g_next_id = 100;
static uint64_t g_counter;

/* Decimal digits of v at p; returns the length. */
static size_t put_u64(char *p, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) p[i] = tmp[n - 1 - i];
    return n;
}

static void put_num(buf *b, uint64_t v)
{
    reserve(b, 24);
    b->len += put_u64(b->d + b->len, v);
    b->d[b->len] = 0;
}

/* The call template, split once: the text before the id, the arguments in pieces
 * (literal text, the counter, the persona id) and the closing braces. Building a call
 * is then a few memcpy and two numbers, the same for every server. */
enum { SEG_TEXT, SEG_N, SEG_PERSONA };
static struct seg {
    int kind;
    const char *p;
    size_t n;
} g_segs[64];
static int g_nsegs;
static buf g_head; /* "...,"params":{"name":"TOOL","arguments": */

static void compile_call(const char *tool, const char *tmpl)
{
    g_head.len = 0;
    putf(&g_head, ",\"method\":\"tools/call\",\"params\":{\"name\":\"%s\",\"arguments\":", tool);
    g_nsegs = 0;
    for (const char *p = tmpl; *p;) {
        if (g_nsegs == (int)(sizeof g_segs / sizeof g_segs[0])) die("--args template too complex");
        if (!strncmp(p, "{n}", 3)) {
            g_segs[g_nsegs++] = (struct seg){SEG_N, NULL, 0};
            p += 3;
        } else if (!strncmp(p, "{persona}", 9)) {
            g_segs[g_nsegs++] = (struct seg){SEG_PERSONA, NULL, 0};
            p += 9;
        } else {
            size_t n = 0;
            while (p[n] && strncmp(p + n, "{n}", 3) && strncmp(p + n, "{persona}", 9)) n++;
            g_segs[g_nsegs++] = (struct seg){SEG_TEXT, p, n};
            p += n;
        }
    }
}

/* The tool call with id (compile_call first); arguments from the template. */
static void build_call(buf *b, uint64_t id)
{
    static const char pre[] = "{\"jsonrpc\":\"2.0\",\"id\":";
    put(b, pre, sizeof pre - 1);
    put_num(b, id);
    put(b, g_head.d, g_head.len);
    uint64_t n = ++g_counter;
    for (int i = 0; i < g_nsegs; i++) {
        const struct seg *sg = &g_segs[i];
        if (sg->kind == SEG_TEXT)
            put(b, sg->p, sg->n);
        else if (sg->kind == SEG_N)
            put_num(b, n);
        else
            put(b, g_persona, strlen(g_persona));
    }
    put(b, "}}", 2);
}

/* The last byte of p[0, n) that is not white space, or NULL. */
static const char *last_nonspace(const char *p, size_t n)
{
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\n' || p[n - 1] == '\r' || p[n - 1] == '\t')) n--;
    return n ? p + n - 1 : NULL;
}

/* id of a JSON-RPC response (the top level "id" key). Fast path: a response that ends
 * with "id":N} (both servers write the id last); the "id" member right before the
 * closing brace of the whole text is necessarily a top-level one. Otherwise every
 * "id": with a number is looked at and the last one wins, since nested results may
 * contain "id" keys first. */
static bool response_id(const char *p, size_t n, uint64_t *id)
{
    const char *e = last_nonspace(p, n);
    if (e && *e == '}') {
        const char *d = e;
        while (d > p && d[-1] >= '0' && d[-1] <= '9') d--;
        if (d < e && d - p >= 5 && !memcmp(d - 5, "\"id\":", 5)) {
            *id = strtoull(d, NULL, 10);
            return true;
        }
    }
    const char *best = NULL;
    for (const char *q = p; q && q < p + n;) {
        const char *k = memmem(q, (size_t)(p + n - q), "\"id\":", 5);
        if (!k) break;
        const char *v = k + 5;
        if (*v >= '0' && *v <= '9') best = v;
        q = k + 5;
    }
    if (!best) return false;
    *id = strtoull(best, NULL, 10);
    return true;
}

/* The last "isError": in the final `window` bytes of p[0, n), or NULL. */
static const char *tail_is_error(const char *p, size_t n, size_t window)
{
    if (n < 10) return NULL;
    size_t from = n > window ? n - window : 0;
    for (size_t i = n - 10 + 1; i-- > from;)
        if (p[i] == '"' && !memcmp(p + i, "\"isError\":", 10)) return p + i;
    return NULL;
}

/* A result without "isError":true. Fast path: "result" among the first 64 bytes and
 * "isError" among the last 256 (where both servers write them: a tool result ends with
 * isError, and only the id and "jsonrpc" follow it); else a search of the whole text. */
static bool good_result(const char *p, size_t n)
{
    if (memmem(p, n < 64 ? n : 64, "\"result\":", 9)) {
        const char *ie = tail_is_error(p, n, 256);
        if (ie) {
            const char *v = ie + 10;
            return !(p + n - v >= 4 && !memcmp(v, "true", 4));
        }
    } else if (!memmem(p, n, "\"result\"", 8)) {
        return false;
    }
    return !memmem(p, n, "\"isError\":true", 14);
}

/* utime + stime of a process (all threads), seconds; -1 when unknown. */
static double proc_cpu(int pid)
{
    if (pid <= 0) return -1;
    char path[64], b[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(b, 1, sizeof b - 1, f);
    fclose(f);
    b[n] = 0;
    char *p = strrchr(b, ')');
    unsigned long long ut = 0, stt = 0;
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stt) != 2)
        return -1;
    return (double)(ut + stt) / (double)sysconf(_SC_CLK_TCK);
}

/* Our own utime + stime, seconds. */
static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* ---- statistics ----------------------------------------------------------------------- */

static struct {
    uint64_t *v;
    size_t n, cap;
    uint64_t calls, errors, reconnects, total, total_at_start;
    double cpu0, cpu1, self0, self1; /* server's and our own CPU seconds */
    uint64_t measure_start, measure_end;
    bool reported;
} st;

static void sample(uint64_t t_send, uint64_t t, bool ok, const char *msg, size_t n)
{
    st.total++;
    if (!ok) {
        st.errors++;
        if (!st.reported) {
            st.reported = true;
            fprintf(stderr, "bench_mcp: first bad answer: %.*s\n", (int)(n > 400 ? 400 : n), msg);
        }
        return;
    }
    if (t_send < st.measure_start || t > st.measure_end) return;
    st.calls++;
    if (st.n == st.cap) {
        st.cap = st.cap ? st.cap * 2 : 65536;
        st.v = realloc(st.v, st.cap * sizeof *st.v);
        if (!st.v) die("out of memory");
    }
    st.v[st.n++] = t - t_send;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static double pct_us(double q)
{
    if (!st.n) return 0;
    return (double)st.v[(size_t)(q * (double)(st.n - 1) + 0.5)] / 1000.0;
}

/* ---- HTTP ----------------------------------------------------------------------------- */

enum { HC_CLOSED, HC_CONNECTING, HC_SENDING, HC_HEAD, HC_BODY, HC_IDLE };
enum { FR_LENGTH, FR_CHUNKED, FR_CLOSE };

typedef struct hconn {
    int fd, state, framing, status;
    bool keep_alive, want_out;
    size_t body_left; /* FR_LENGTH: bytes; FR_CHUNKED: bytes left in this chunk */
    int chunk_phase;  /* 0 size line, 1 data, 2 CRLF after data, 3 final CRLF */
    buf out, in, body, pending;
    char session[128], proto[32];
    uint64_t t_send, id;
    bool busy, retried;
} hconn;

static int g_ep = -1;
static hconn g_hc[MAX_CONNS];
static bool stale_retry(hconn *h);

static void hc_events(hconn *h, bool out)
{
    if (h->want_out == out) return;
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = h};
    epoll_ctl(g_ep, EPOLL_CTL_MOD, h->fd, &ev);
    h->want_out = out;
}

static void hc_close(hconn *h)
{
    if (h->state == HC_CLOSED) return;
    epoll_ctl(g_ep, EPOLL_CTL_DEL, h->fd, NULL);
    close(h->fd);
    h->state = HC_CLOSED;
    h->in.len = h->in.off = 0;
}

static bool hc_open(hconn *h)
{
    h->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (h->fd < 0) return false;
    int one = 1;
    setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(h->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        close(h->fd);
        return false;
    }
    h->state = HC_CONNECTING;
    h->want_out = true;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = h};
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, h->fd, &ev) < 0) die("epoll_ctl");
    return true;
}

static bool hc_flush(hconn *h)
{
    while (h->out.off < h->out.len) {
        ssize_t w = send(h->fd, h->out.d + h->out.off, h->out.len - h->out.off, MSG_NOSIGNAL);
        if (w > 0) {
            h->out.off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            hc_events(h, true);
            return true;
        }
        return false;
    }
    h->out.len = h->out.off = 0;
    hc_events(h, false);
    return true;
}

/* Queue a POST with this JSON body; opens a connection when needed. */
static void hc_post(hconn *h, const char *json, size_t n, uint64_t id)
{
    h->pending.len = 0;
    putf(&h->pending,
         "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
         "Accept: application/json, text/event-stream\r\nContent-Length: %zu\r\n",
         opt.path, opt.port, n);
    if (h->session[0]) putf(&h->pending, "Mcp-Session-Id: %s\r\n", h->session);
    if (h->proto[0]) putf(&h->pending, "MCP-Protocol-Version: %s\r\n", h->proto);
    put(&h->pending, "\r\n", 2);
    put(&h->pending, json, n);
    h->id = id;
    h->busy = true;
    h->retried = false;
    h->t_send = now_ns();
    h->body.len = 0;
    if (h->state == HC_CLOSED) {
        if (!hc_open(h)) die("connect: %s", strerror(errno));
        st.reconnects++;
        return; /* sent once connected */
    }
    put(&h->out, h->pending.d, h->pending.len);
    h->state = HC_SENDING;
    if (!hc_flush(h)) {
        if (!stale_retry(h)) hc_close(h);
        return;
    }
    if (h->out.len == 0) h->state = HC_HEAD;
}

static const char *header(const char *head, size_t hlen, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    for (const char *p = head; p && p < head + hlen;) {
        const char *e = memmem(p, (size_t)(head + hlen - p), "\r\n", 2);
        if (!e) break;
        if ((size_t)(e - p) > nl + 1 && !strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (v < e && *v == ' ') v++;
            *vlen = (size_t)(e - v);
            return v;
        }
        p = e + 2;
    }
    return NULL;
}

typedef void (*hc_done_fn)(hconn *h, uint64_t t);
static hc_done_fn g_done;

/* The response is complete: hand it over, then keep or drop the connection. */
static void hc_complete(hconn *h, uint64_t t)
{
    bool keep = h->keep_alive && h->framing != FR_CLOSE;
    h->busy = false;
    h->state = HC_IDLE;
    g_done(h, t);
    if (!keep) hc_close(h);
}

/* Parse buffered input. Returns false on a protocol error. */
static bool hc_parse(hconn *h, uint64_t t)
{
    for (int guard = 0; guard < 100000; guard++) {
        char *p = h->in.d + h->in.off;
        size_t avail = h->in.len - h->in.off;
        if (h->state == HC_HEAD) {
            char *e = avail ? memmem(p, avail, "\r\n\r\n", 4) : NULL;
            if (!e) return avail < 65536;
            size_t hl = (size_t)(e - p) + 2;
            if (sscanf(p, "HTTP/1.%*d %d", &h->status) != 1) return false;
            size_t vl;
            const char *v;
            h->keep_alive = true;
            if ((v = header(p, hl, "connection", &vl)) && vl >= 5 && !strncasecmp(v, "close", 5))
                h->keep_alive = false;
            if ((v = header(p, hl, "mcp-session-id", &vl)) && vl < sizeof h->session) {
                memcpy(h->session, v, vl);
                h->session[vl] = 0;
            }
            h->framing = FR_CLOSE;
            if ((v = header(p, hl, "transfer-encoding", &vl)) && memmem(v, vl, "chunked", 7)) {
                h->framing = FR_CHUNKED;
                h->chunk_phase = 0;
            } else if ((v = header(p, hl, "content-length", &vl))) {
                h->framing = FR_LENGTH;
                h->body_left = strtoul(v, NULL, 10);
            } else if (h->status == 204 || h->status == 304) {
                h->framing = FR_LENGTH;
                h->body_left = 0;
            }
            h->in.off += (size_t)(e + 4 - p);
            h->state = HC_BODY;
            if (h->framing == FR_LENGTH && h->body_left == 0) {
                hc_complete(h, t);
                if (h->state == HC_CLOSED) return true;
            }
            continue;
        }
        if (h->state != HC_BODY) break;
        if (h->framing == FR_LENGTH) {
            size_t k = avail < h->body_left ? avail : h->body_left;
            put(&h->body, p, k);
            h->in.off += k;
            h->body_left -= k;
            if (h->body_left == 0) {
                hc_complete(h, t);
                if (h->state == HC_CLOSED) return true;
                continue;
            }
            break;
        }
        if (h->framing == FR_CLOSE) {
            put(&h->body, p, avail);
            h->in.off += avail;
            if (h->body.len > MAX_BODY) return false;
            break;
        }
        /* chunked */
        if (h->chunk_phase == 0) {
            char *e = avail ? memmem(p, avail, "\r\n", 2) : NULL;
            if (!e) return avail < 64;
            h->body_left = strtoul(p, NULL, 16);
            h->in.off += (size_t)(e + 2 - p);
            h->chunk_phase = h->body_left ? 1 : 3;
        } else if (h->chunk_phase == 1) {
            if (!avail) break;
            size_t k = avail < h->body_left ? avail : h->body_left;
            put(&h->body, p, k);
            h->in.off += k;
            h->body_left -= k;
            if (!h->body_left) h->chunk_phase = 2;
            if (h->body.len > MAX_BODY) return false;
        } else {
            if (avail < 2) break;
            h->in.off += 2;
            if (h->chunk_phase == 3) {
                hc_complete(h, t);
                if (h->state == HC_CLOSED) return true;
                continue;
            }
            h->chunk_phase = 0;
        }
    }
    memmove(h->in.d, h->in.d + h->in.off, h->in.len - h->in.off);
    h->in.len -= h->in.off;
    h->in.off = 0;
    return true;
}

/* A kept-alive connection the server had already closed (EOF or reset before any byte
 * of the answer): resend once on a new connection, as HTTP clients do; the call's clock
 * keeps running. True when retried. */
static bool stale_retry(hconn *h)
{
    if (!h->busy || h->retried || h->in.len != 0 || (h->state != HC_HEAD && h->state != HC_SENDING))
        return false;
    hc_close(h);
    if (!hc_open(h)) return false;
    st.reconnects++;
    h->retried = true;
    return true;
}

/* Handle events; false when the connection failed with a call outstanding. */
static bool hc_on_events(hconn *h, uint32_t ev, uint64_t t)
{
    if (h->state == HC_CONNECTING) {
        if (ev & (EPOLLERR | EPOLLHUP)) return false;
        if (!(ev & EPOLLOUT)) return true;
        put(&h->out, h->pending.d, h->pending.len);
        h->state = HC_SENDING;
    }
    if (ev & EPOLLOUT || h->out.len) {
        if (!hc_flush(h)) return stale_retry(h);
    }
    if (h->state == HC_SENDING && h->out.len == 0) h->state = HC_HEAD;
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (int rounds = 0; rounds < 64 && h->state != HC_CLOSED; rounds++) {
            reserve(&h->in, 65536);
            size_t room = h->in.cap - h->in.len - 1;
            ssize_t r = recv(h->fd, h->in.d + h->in.len, room, 0);
            if (r > 0) {
                h->in.len += (size_t)r;
                if (!hc_parse(h, t)) return false;
                if ((size_t)r < room) break; /* drained: epoll reports more (no EAGAIN read) */
                continue;
            }
            if (r == 0) {
                if (h->busy && h->state == HC_BODY && h->framing == FR_CLOSE) {
                    hc_complete(h, t);
                    hc_close(h);
                    return true;
                }
                if (stale_retry(h)) return true;
                bool was_busy = h->busy;
                hc_close(h);
                return !was_busy;
            }
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            return stale_retry(h);
        }
    }
    return true;
}

static void hc_loop_once(int timeout_ms)
{
    struct epoll_event evs[256];
    int n = epoll_wait(g_ep, evs, 256, timeout_ms);
    uint64_t t = now_ns();
    for (int i = 0; i < n; i++) {
        hconn *h = evs[i].data.ptr;
        if (h->state == HC_CLOSED) continue;
        if (!hc_on_events(h, evs[i].events, t)) {
            bool busy = h->busy;
            if (getenv("BENCH_MCP_DEBUG"))
                fprintf(stderr,
                        "bench_mcp: connection failed: state %d events %#x errno %s in %zu\n",
                        h->state, evs[i].events, strerror(errno), h->in.len);
            hc_close(h);
            if (busy) {
                h->busy = false;
                sample(h->t_send, t, false, "connection failed", 17);
                h->state = HC_IDLE;
                g_done(h, t); /* lets the driver send the next call */
                hc_close(h);
            }
        }
    }
}

/* Blocking exchange on connection h: POST json, wait for the complete response. */
static buf g_last_body;
static int g_last_status;
static void sync_done(hconn *h, uint64_t t)
{
    (void)t;
    g_last_body.len = 0;
    put(&g_last_body, h->body.d ? h->body.d : "", h->body.len);
    g_last_status = h->status;
}

static void hc_sync(hconn *h, const char *json, uint64_t id)
{
    hc_done_fn saved = g_done;
    g_done = sync_done;
    g_last_status = -1;
    hc_post(h, json, strlen(json), id);
    uint64_t deadline = now_ns() + 30000000000ULL;
    while (h->busy && now_ns() < deadline) hc_loop_once(100);
    g_done = saved;
    if (h->busy || g_last_status < 0) die("no answer to %.80s", json);
}

/* ---- stdio
 * ---------------------------------------------------------------------------------------- */

static int g_in = -1, g_out = -1;
static pid_t g_child;
static buf g_sin, g_sout;
static struct slot {
    uint64_t id, t;
    bool used;
} g_slots[SLOTS];
static int g_outstanding;

static void child_start(void)
{
    int a[2], b[2];
    if (pipe2(a, O_CLOEXEC) < 0 || pipe2(b, O_CLOEXEC) < 0) die("pipe");
    g_child = fork();
    if (g_child < 0) die("fork");
    if (g_child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        dup2(a[0], 0);
        dup2(b[1], 1);
        execvp(opt.command[0], opt.command);
        _exit(127);
    }
    close(a[0]);
    close(b[1]);
    g_in = a[1];
    g_out = b[0];
    fcntl(g_in, F_SETFL, O_NONBLOCK);
    fcntl(g_out, F_SETFL, O_NONBLOCK);
}

static void sio_send(const char *json, size_t n)
{
    put(&g_sin, json, n);
    put(&g_sin, "\n", 1);
}

static void sio_flush(void)
{
    while (g_sin.off < g_sin.len) {
        ssize_t w = write(g_in, g_sin.d + g_sin.off, g_sin.len - g_sin.off);
        if (w > 0) {
            g_sin.off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) break;
        die("write to the server: %s", strerror(errno));
    }
    if (g_sin.off == g_sin.len) g_sin.len = g_sin.off = 0;
}

typedef void (*line_fn)(const char *line, size_t n, uint64_t t);

/* Read what the server wrote; call fn per complete line. Waits at most timeout_ms.
 * Syscalls per wake-up: epoll_wait, one read per 64 KiB that arrived (a short read means
 * the pipe is drained: no read that ends in EAGAIN), and a write of the calls queued
 * meanwhile; EPOLLOUT is armed only while a write is held up. */
static bool g_in_armed;
static void sio_poll(int timeout_ms, line_fn fn)
{
    struct epoll_event evs[4];
    sio_flush();
    if (g_in_armed != (g_sin.len != 0)) {
        g_in_armed = g_sin.len != 0;
        struct epoll_event ev = {.events = g_in_armed ? EPOLLOUT : 0, .data.fd = g_in};
        epoll_ctl(g_ep, EPOLL_CTL_MOD, g_in, &ev);
    }
    int n = epoll_wait(g_ep, evs, 4, timeout_ms);
    uint64_t t = now_ns();
    for (int i = 0; i < n; i++) {
        if (evs[i].data.fd == g_in) {
            sio_flush();
            continue;
        }
        for (int rounds = 0; rounds < 64; rounds++) {
            reserve(&g_sout, 65536);
            size_t room = g_sout.cap - g_sout.len - 1;
            ssize_t r = read(g_out, g_sout.d + g_sout.len, room);
            if (r > 0) {
                g_sout.len += (size_t)r;
                if ((size_t)r < room) break;
                continue;
            }
            if (r == 0) die("the server closed its stdout");
            if (errno == EINTR) continue;
            break;
        }
    }
    size_t start = 0;
    if (!g_sout.len) return;
    for (const char *nl; (nl = memchr(g_sout.d + start, '\n', g_sout.len - start));) {
        size_t i = (size_t)(nl - g_sout.d);
        fn(g_sout.d + start, i - start, t);
        start = i + 1;
    }
    memmove(g_sout.d, g_sout.d + start, g_sout.len - start);
    g_sout.len -= start;
}

static buf g_sync_line;
static uint64_t g_sync_id;
static bool g_sync_got;
static void sync_line(const char *line, size_t n, uint64_t t)
{
    (void)t;
    uint64_t id;
    if (!response_id(line, n, &id) || id != g_sync_id) return; /* notifications, others */
    g_sync_line.len = 0;
    put(&g_sync_line, line, n);
    g_sync_got = true;
}

static void sio_sync(const char *json, uint64_t id)
{
    g_sync_id = id;
    g_sync_got = false;
    sio_send(json, strlen(json));
    uint64_t deadline = now_ns() + 30000000000ULL;
    while (!g_sync_got && now_ns() < deadline) sio_poll(100, sync_line);
    if (!g_sync_got) die("no answer to %.80s", json);
}

/* ---- shared set-up -------------------------------------------------------------------- */

static const char *INIT = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
                          "\"protocolVersion\":\"" PROTO_WANT "\",\"capabilities\":{},"
                          "\"clientInfo\":{\"name\":\"bench_mcp\",\"version\":\"1.0.0\"}}}";
static const char *INITIALIZED = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}";

/* exchange: send json (id), return the response text (body of HTTP or the stdio line) */
typedef const char *(*exchange_fn)(const char *json, uint64_t id, void *ctx);

static const char *http_exchange(const char *json, uint64_t id, void *ctx)
{
    hc_sync(ctx, json, id);
    return g_last_body.d ? g_last_body.d : "";
}

static const char *stdio_exchange(const char *json, uint64_t id, void *ctx)
{
    (void)ctx;
    sio_sync(json, id);
    return g_sync_line.d;
}

static void read_persona(exchange_fn ex, void *ctx)
{
    buf b = {0};
    put(&b,
        "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":"
        "\"persona_list\",\"arguments\":{}}}",
        strlen("{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":"
               "\"persona_list\",\"arguments\":{}}}"));
    const char *r = ex(b.d, 2, ctx);
    const char *p = strstr(r, "\\\"id\\\":\\\""); /* inside the text content */
    size_t skip = 9;
    if (!p) {
        p = strstr(r, "\"id\":\"");
        skip = 6;
    }
    if (!p) die("persona_list gave no id (HTTP %d): %.300s", g_last_status, r);
    p += skip;
    size_t n = 0;
    while (p[n] && p[n] != '"' && p[n] != '\\' && n + 1 < sizeof g_persona) n++;
    memcpy(g_persona, p, n);
    g_persona[n] = 0;
    free(b.d);
}

static void seed(exchange_fn ex, void *ctx)
{
    static const char *const words[] = {
        "the",     "a",       "memory", "persona", "music", "dragon", "travel",  "story",
        "ancient", "spell",   "market", "friend",  "quiet", "river",  "lantern", "bard",
        "scholar", "library", "night",  "warm",    "bread", "song",   "letter",  "mountain"};
    uint64_t r = 88172645463325252ULL;
    buf b = {0};
    for (int i = 0; i < opt.seed; i++) {
        b.len = 0;
        uint64_t id = g_next_id++;
        putf(&b,
             "{\"jsonrpc\":\"2.0\",\"id\":%llu,\"method\":\"tools/call\",\"params\":{\"name\":"
             "\"memory_store\",\"arguments\":{\"persona_id\":\"bench\",\"memory_type\":"
             "\"observation\",\"importance\":0.5,\"content\":\"note %d:",
             (unsigned long long)id, i + 1);
        for (int len = 10; len < 200;) {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            const char *w = words[r % (sizeof words / sizeof words[0])];
            putf(&b, " %s", w);
            len += (int)strlen(w) + 1;
        }
        put(&b, "\"}}}", 4);
        const char *resp = ex(b.d, id, ctx);
        if (!good_result(resp, strlen(resp))) die("memory_store failed: %.300s", resp);
    }
    free(b.d);
}

/* ---- drivers -------------------------------------------------------------------------- */

static buf g_call;

static void http_next(hconn *h, uint64_t t)
{
    if (t >= st.measure_end) return;
    g_call.len = 0;
    uint64_t id = g_next_id++;
    build_call(&g_call, id);
    hc_post(h, g_call.d, g_call.len, id);
}

static void load_done(hconn *h, uint64_t t)
{
    uint64_t id = 0;
    const char *body = h->body.d ? h->body.d : "";
    bool ok = h->status == 200 && response_id(body, h->body.len, &id) && id == h->id &&
              good_result(body, h->body.len);
    sample(h->t_send, t, ok, body, h->body.len);
}

static int run_http(void)
{
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    int C = opt.conns;
    g_done = sync_done;
    for (int i = 0; i < C; i++) {
        hconn *h = &g_hc[i];
        h->state = HC_CLOSED;
        const char *r = http_exchange(INIT, 1, h);
        if (g_last_status != 200 || !h->session[0]) die("initialize failed: %.300s", r);
        const char *pv = strstr(r, "\"protocolVersion\":\"");
        if (pv) {
            pv += 19;
            size_t n = 0;
            while (pv[n] && pv[n] != '"' && n + 1 < sizeof h->proto) n++;
            memcpy(h->proto, pv, n);
            h->proto[n] = 0;
        }
        http_exchange(INITIALIZED, 0, h);
        if (g_last_status != 202) die("notifications/initialized: HTTP %d", g_last_status);
        if (i == 0) {
            read_persona(http_exchange, h);
            if (opt.seed) seed(http_exchange, h);
        }
        if (g_persona[0] == 0) die("no persona");
    }
    st.reconnects = 0;
    g_done = load_done;
    st.total_at_start = st.total;
    st.cpu0 = proc_cpu(opt.pid);
    st.self0 = self_cpu();
    uint64_t t0 = now_ns();
    st.measure_start = t0 + (uint64_t)(opt.warmup * 1e9);
    st.measure_end = st.measure_start + (uint64_t)(opt.seconds * 1e9);
    for (int i = 0; i < C; i++) http_next(&g_hc[i], t0);
    uint64_t hard_end = st.measure_end + 5000000000ULL;
    for (;;) {
        uint64_t t = now_ns();
        bool any = false;
        for (int i = 0; i < C; i++) {
            hconn *h = &g_hc[i];
            if (!h->busy && t < st.measure_end) http_next(h, t);
            any |= h->busy;
        }
        if (!any || t >= hard_end) break;
        hc_loop_once(10);
    }
    st.cpu1 = proc_cpu(opt.pid);
    st.self1 = self_cpu();
    for (int i = 0; i < C; i++)
        if (g_hc[i].busy) st.errors++;
    return 0;
}

static void load_line(const char *line, size_t n, uint64_t t)
{
    uint64_t id;
    if (!response_id(line, n, &id)) return; /* a notification */
    struct slot *s = &g_slots[id % SLOTS];
    for (int probe = 0; probe < SLOTS && (!s->used || s->id != id); probe++)
        s = &g_slots[(id + (uint64_t)probe + 1) % SLOTS];
    if (!s->used || s->id != id) return;
    s->used = false;
    g_outstanding--;
    sample(s->t, t, good_result(line, n), line, n);
}

static void stdio_next(uint64_t t)
{
    uint64_t id = g_next_id++;
    g_call.len = 0;
    build_call(&g_call, id);
    struct slot *s = &g_slots[id % SLOTS];
    for (int probe = 0; probe < SLOTS && s->used; probe++)
        s = &g_slots[(id + (uint64_t)probe + 1) % SLOTS];
    if (s->used) die("too many calls in flight");
    *s = (struct slot){.id = id, .t = t, .used = true};
    g_outstanding++;
    sio_send(g_call.d, g_call.len);
}

static int run_stdio(void)
{
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    child_start();
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = g_out};
    epoll_ctl(g_ep, EPOLL_CTL_ADD, g_out, &ev);
    ev.data.fd = g_in;
    ev.events = 0;
    epoll_ctl(g_ep, EPOLL_CTL_ADD, g_in, &ev);
    const char *r = stdio_exchange(INIT, 1, NULL);
    if (!strstr(r, "\"result\"")) die("initialize failed: %.300s", r);
    sio_send(INITIALIZED, strlen(INITIALIZED));
    read_persona(stdio_exchange, NULL);
    if (opt.seed) seed(stdio_exchange, NULL);
    opt.pid = (int)g_child;
    st.total_at_start = st.total;
    st.cpu0 = proc_cpu(opt.pid);
    st.self0 = self_cpu();
    uint64_t t0 = now_ns();
    st.measure_start = t0 + (uint64_t)(opt.warmup * 1e9);
    st.measure_end = st.measure_start + (uint64_t)(opt.seconds * 1e9);
    for (int i = 0; i < opt.inflight; i++) stdio_next(t0);
    uint64_t hard_end = st.measure_end + 5000000000ULL;
    for (;;) {
        uint64_t t = now_ns();
        while (t < st.measure_end && g_outstanding < opt.inflight) stdio_next(t);
        if ((t >= st.measure_end && g_outstanding == 0) || t >= hard_end) break;
        sio_poll(10, load_line);
    }
    st.cpu1 = proc_cpu(opt.pid);
    st.self1 = self_cpu();
    st.errors += (uint64_t)g_outstanding;
    close(g_in);
    int status = 0;
    for (int i = 0; i < 1000; i++) {
        if (waitpid(g_child, &status, WNOHANG) == g_child) return 0;
        usleep(10000);
    }
    kill(g_child, SIGTERM);
    waitpid(g_child, &status, 0);
    return 0;
}

/* ---- main ----------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_mcp http --port P [--path /mcp] --tool NAME --args JSON [--conns C]\n"
               "                 [--seconds S] [--warmup S] [--seed N] [--pid SERVER_PID]\n"
               "       bench_mcp stdio --tool NAME --args JSON [--inflight P] [--seconds S]\n"
               "                 [--warmup S] [--seed N] -- COMMAND ARGS...\n");
}

int main(int argc, char **argv)
{
    static const struct option longs[] = {
        {"port", required_argument, 0, 'p'},    {"path", required_argument, 0, 'u'},
        {"tool", required_argument, 0, 't'},    {"args", required_argument, 0, 'a'},
        {"conns", required_argument, 0, 'c'},   {"inflight", required_argument, 0, 'i'},
        {"seconds", required_argument, 0, 's'}, {"warmup", required_argument, 0, 'w'},
        {"seed", required_argument, 0, 'S'},    {"pid", required_argument, 0, 'P'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    opt.mode = argv[1];
    optind = 2;
    int ch;
    while ((ch = getopt_long(argc, argv, "+", longs, NULL)) != -1) {
        switch (ch) {
        case 'p':
            opt.port = atoi(optarg);
            break;
        case 'u':
            opt.path = optarg;
            break;
        case 't':
            opt.tool = optarg;
            break;
        case 'a':
            opt.args = optarg;
            break;
        case 'c':
            opt.conns = atoi(optarg);
            break;
        case 'i':
            opt.inflight = atoi(optarg);
            break;
        case 's':
            opt.seconds = atof(optarg);
            break;
        case 'w':
            opt.warmup = atof(optarg);
            break;
        case 'S':
            opt.seed = atoi(optarg);
            break;
        case 'P':
            opt.pid = atoi(optarg);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    bool http = !strcmp(opt.mode, "http"), sio = !strcmp(opt.mode, "stdio");
    if (sio) opt.command = argv + optind;
    if ((!http && !sio) || !opt.tool || !opt.args || opt.conns < 1 || opt.conns > MAX_CONNS ||
        opt.inflight < 1 || opt.inflight > SLOTS / 2 || !(opt.seconds > 0) || opt.seconds > 3600 ||
        opt.warmup < 0 || opt.seed < 0 || opt.seed > 1000000 ||
        (http && (opt.port <= 0 || opt.port > 65535 || optind != argc)) ||
        (sio && !opt.command[0])) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    compile_call(opt.tool, opt.args);
    int rc = http ? run_http() : run_stdio();
    if (st.n) qsort(st.v, st.n, sizeof *st.v, cmp_u64);
    double rps = (double)st.calls / opt.seconds;
    uint64_t done = st.total - st.total_at_start;
    double cpu_us =
        st.cpu0 >= 0 && st.cpu1 >= 0 && done ? (st.cpu1 - st.cpu0) * 1e6 / (double)done : -1;
    double self_us = done ? (st.self1 - st.self0) * 1e6 / (double)done : -1;
    printf("RESULT mode=%s tool=%s conns=%d inflight=%d seconds=%.1f calls=%llu rps=%.1f "
           "p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f errors=%llu "
           "reconnects=%llu total=%llu server_cpu_us_per_call=%.1f "
           "client_cpu_us_per_call=%.1f\n",
           opt.mode, opt.tool, http ? opt.conns : 1, http ? 1 : opt.inflight, opt.seconds,
           (unsigned long long)st.calls, rps, pct_us(0.5), pct_us(0.9), pct_us(0.99), pct_us(0.999),
           st.n ? (double)st.v[st.n - 1] / 1000.0 : 0, (unsigned long long)st.errors,
           (unsigned long long)st.reconnects, (unsigned long long)st.total, cpu_us, self_us);
    return rc || st.errors || !st.calls ? 1 : 0;
}
