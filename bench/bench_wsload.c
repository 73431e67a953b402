/*
 * bench_wsload: a WebSocket JSON-RPC load generator and idle-connection holder.
 *
 * Design. One thread, one epoll set, N non-blocking TCP connections to one server. Each
 * connection does an RFC 6455 client handshake (random 16-byte key, Sec-WebSocket-Accept
 * verified with our own SHA-1) and then, in load mode, keeps P persona.status requests in
 * flight: every response that comes back is matched against the oldest outstanding request
 * on that connection (JSON-RPC responses on a connection arrive in request order), its
 * latency is recorded, and the next request is sent at once. P = 1 is strict
 * request/response. Requests are masked text frames with a fresh random mask per frame.
 *
 * Time is split into connect, warmup (answers counted but not measured), measure (latency
 * samples and throughput) and drain (outstanding answers collected for at most 2 s; nothing
 * new is sent). Latencies are kept as raw nanosecond samples and sorted at the end, so the
 * percentiles are exact. The final line, "RESULT key=value ...", is for scripts; it also
 * gives total_responses (every answer, warmup and drain included) so a caller can divide
 * the server's CPU time by the work it really did.
 *
 * Idle mode (--idle) opens N connections, answers pings, reports READY (and writes
 * --ready-file) once all handshakes finished, then holds them until --seconds elapse or
 * SIGTERM/SIGINT arrives, and reports how many the server closed meanwhile.
 *
 * A response is an error if it is not a JSON object, carries "error" or lacks "result", or
 * has an id other than the one expected. Frames are parsed fully (16/64-bit lengths,
 * continuation frames, control frames between fragments, masked or not).
 * Exit status: 0 clean run, 1 errors or nothing completed, 2 bad usage or setup failure.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DRAIN_NS       (2 * 1000000000ULL)
#define MAX_MESSAGE    (64u << 20)
#define READ_CHUNK     65536
#define MAX_EVENTS     1024
#define HANDSHAKE_MAX  8192
#define MAX_SAMPLES    (256u << 20)
#define WS_ACCEPT_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum conn_state { C_CONNECTING, C_HANDSHAKE, C_OPEN, C_CLOSED };

struct buf {
    char *data;
    size_t len, cap, off; /* off: bytes already consumed (read side) or written */
};

struct conn {
    int fd;
    enum conn_state state;
    char expect_accept[29];
    struct buf in;        /* raw bytes from the socket */
    struct buf out;       /* frames waiting to be written */
    struct buf msg;       /* reassembled fragmented message */
    bool fragmented;      /* inside a fragmented data message */
    bool want_out;        /* EPOLLOUT registered */
    uint64_t *sent_ns;    /* ring of send times, capacity = inflight */
    uint64_t *sent_id;    /* ring of request ids */
    unsigned head, count; /* ring head index and number outstanding */
};

struct options {
    const char *host, *path, *persona, *ready_file;
    int port, conns, inflight, max_pending;
    double seconds, warmup, connect_timeout;
    bool idle;
};

struct stats {
    uint64_t measured, total_responses, errors, id_mismatch, error_responses, bad_frames;
    uint64_t connect_failures, closed_by_server, sent;
    uint64_t *samples;
    size_t nsamples, cap_samples;
    int http_status_seen; /* last non-101 handshake status */
};

static struct options opt = {
    .host = "127.0.0.1",
    .path = "/mcp",
    .conns = 1,
    .inflight = 1,
    .seconds = 5,
    .warmup = 1,
    .connect_timeout = 10,
    .max_pending = 512,
};
static struct stats st;
static int epfd = -1;
static uint64_t next_request_id = 1;
static uint64_t rng_state;
static volatile sig_atomic_t stop_requested;
static char *req_prefix; /* {"jsonrpc":...,"persona_id":"<id>"},"id": */
static size_t req_prefix_len;

/* ---- small utilities --------------------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_wsload: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) die("out of memory");
    return q;
}

static uint64_t rng_next(void)
{
    /* xorshift64*: fast, good enough for masks; seeded from getrandom(). */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static void buf_reserve(struct buf *b, size_t extra)
{
    if (b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 512;
    while (cap < b->len + extra) cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

static void buf_append(struct buf *b, const void *p, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void buf_compact(struct buf *b)
{
    if (b->off == 0) return;
    memmove(b->data, b->data + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
}

static void buf_free(struct buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

/* ---- SHA-1 (FIPS 180-4) and base64, only for Sec-WebSocket-Accept ------------------- */

static uint32_t rol32(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_block(uint32_t h[5], const unsigned char *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDC;
        } else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6;
        }
        uint32_t t = rol32(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol32(b, 30);
        b = a;
        a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

static void sha1(const void *data, size_t len, unsigned char out[20])
{
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    const unsigned char *p = data;
    size_t left = len;
    for (; left >= 64; left -= 64, p += 64) sha1_block(h, p);
    unsigned char tail[128] = {0};
    memcpy(tail, p, left);
    tail[left] = 0x80;
    size_t tlen = left + 1 + 8 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) tail[tlen - 1 - i] = (unsigned char)(bits >> (8 * i));
    sha1_block(h, tail);
    if (tlen == 128) sha1_block(h, tail + 64);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (unsigned char)(h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(h[i] >> 8);
        out[4 * i + 3] = (unsigned char)h[i];
    }
}

static void base64(const unsigned char *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n) v |= in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = '\0';
}

static bool self_test_sha1(void)
{
    /* RFC 6455 section 1.3 example. */
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==" WS_ACCEPT_GUID;
    unsigned char d[20];
    char b64[29];
    sha1(key, strlen(key), d);
    base64(d, 20, b64);
    return strcmp(b64, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0;
}

/* ---- request construction -------------------------------------------------------------- */

static void build_request_prefix(const char *persona)
{
    struct buf b = {0};
    const char *head = "{\"jsonrpc\":\"2.0\",\"method\":\"persona.status\","
                       "\"params\":{\"persona_id\":\"";
    buf_append(&b, head, strlen(head));
    for (const unsigned char *p = (const unsigned char *)persona; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            buf_append(&b, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", *p);
            buf_append(&b, esc, 6);
        } else {
            buf_append(&b, p, 1);
        }
    }
    const char *tail = "\"},\"id\":";
    buf_append(&b, tail, strlen(tail));
    req_prefix = b.data;
    req_prefix_len = b.len;
}

/* Append one masked client frame carrying `payload` to c->out. */
static void queue_frame(struct conn *c, unsigned opcode, const char *payload, size_t n)
{
    unsigned char head[14];
    size_t h = 0;
    head[h++] = (unsigned char)(0x80 | opcode);
    if (n < 126) {
        head[h++] = (unsigned char)(0x80 | n);
    } else if (n < 65536) {
        head[h++] = 0x80 | 126;
        head[h++] = (unsigned char)(n >> 8);
        head[h++] = (unsigned char)n;
    } else {
        head[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) head[h++] = (unsigned char)((uint64_t)n >> (8 * i));
    }
    uint32_t m32 = (uint32_t)rng_next();
    unsigned char mask[4];
    memcpy(mask, &m32, 4);
    memcpy(head + h, mask, 4);
    h += 4;
    buf_reserve(&c->out, h + n);
    memcpy(c->out.data + c->out.len, head, h);
    unsigned char *dst = (unsigned char *)c->out.data + c->out.len + h;
    for (size_t i = 0; i < n; i++) dst[i] = (unsigned char)payload[i] ^ mask[i & 3];
    c->out.len += h + n;
}

static void queue_request(struct conn *c, uint64_t t)
{
    char tmp[512];
    char *msg = tmp;
    size_t need = req_prefix_len + 24;
    if (need > sizeof(tmp)) msg = xrealloc(NULL, need);
    memcpy(msg, req_prefix, req_prefix_len);
    uint64_t id = next_request_id++;
    int k = snprintf(msg + req_prefix_len, 24, "%llu}", (unsigned long long)id);
    queue_frame(c, 0x1, msg, req_prefix_len + (size_t)k);
    if (msg != tmp) free(msg);
    unsigned slot = (c->head + c->count) % (unsigned)opt.inflight;
    c->sent_ns[slot] = t;
    c->sent_id[slot] = id;
    c->count++;
    st.sent++;
}

/* ---- socket plumbing --------------------------------------------------------------------- */

static void set_events(struct conn *c, bool want_out)
{
    if (c->want_out == want_out) return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
    c->want_out = want_out;
}

static void conn_close(struct conn *c)
{
    if (c->state == C_CLOSED) return;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->state = C_CLOSED;
    c->count = 0;
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->msg);
}

/* Write as much of c->out as the socket takes; returns false if the connection died. */
static bool conn_flush(struct conn *c)
{
    while (c->out.off < c->out.len) {
        ssize_t w = send(c->fd, c->out.data + c->out.off, c->out.len - c->out.off, MSG_NOSIGNAL);
        if (w > 0) {
            c->out.off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_events(c, true);
            return true;
        }
        return false;
    }
    c->out.len = c->out.off = 0;
    set_events(c, false);
    return true;
}

static int resolve(struct sockaddr_storage *sa, socklen_t *salen)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    char port[16];
    snprintf(port, sizeof(port), "%d", opt.port);
    int rc = getaddrinfo(opt.host, port, &hints, &res);
    if (rc != 0 || !res) {
        fprintf(stderr, "bench_wsload: cannot resolve %s: %s\n", opt.host, gai_strerror(rc));
        return -1;
    }
    memcpy(sa, res->ai_addr, res->ai_addrlen);
    *salen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static bool conn_start(struct conn *c, const struct sockaddr_storage *sa, socklen_t salen)
{
    c->fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        fprintf(stderr, "bench_wsload: socket: %s\n", strerror(errno));
        return false;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (const struct sockaddr *)sa, salen) < 0 && errno != EINPROGRESS) {
        close(c->fd);
        return false;
    }
    c->state = C_CONNECTING;
    c->want_out = true;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl add");
    return true;
}

static void send_handshake(struct conn *c)
{
    unsigned char key[16], digest[20];
    char key64[25], req[1024];
    for (int i = 0; i < 16; i += 8) {
        uint64_t r = rng_next();
        memcpy(key + i, &r, 8);
    }
    base64(key, 16, key64);
    char cat[64];
    snprintf(cat, sizeof(cat), "%s%s", key64, WS_ACCEPT_GUID);
    sha1(cat, strlen(cat), digest);
    base64(digest, 20, c->expect_accept);
    const char *host = opt.host;
    bool v6 = strchr(host, ':') != NULL;
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s%s%s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\nUser-Agent: bench_wsload\r\n\r\n",
                     opt.path, v6 ? "[" : "", host, v6 ? "]" : "", opt.port, key64);
    buf_append(&c->out, req, (size_t)n);
    c->state = C_HANDSHAKE;
}

/* ---- response handling ------------------------------------------------------------------- */

static const char *skip_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

static const char *skip_string(const char *p, const char *e)
{
    /* p at the opening quote; returns one past the closing quote or NULL. */
    for (p++; p < e; p++) {
        if (*p == '\\') {
            p++;
            continue;
        }
        if (*p == '"') return p + 1;
    }
    return NULL;
}

static const char *skip_value(const char *p, const char *e)
{
    int depth = 0;
    for (int guard = 0; p < e && guard < (1 << 30); guard++) {
        char ch = *p;
        if (ch == '"') {
            p = skip_string(p, e);
            if (!p) return NULL;
            if (depth == 0) return p;
            continue;
        }
        if (ch == '{' || ch == '[') depth++;
        if (ch == '}' || ch == ']') {
            if (depth == 0) return p;
            if (--depth == 0) return p + 1;
        }
        if (depth == 0 && (ch == ',' || ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t'))
            return p;
        p++;
    }
    return depth == 0 ? p : NULL;
}

/* Top-level keys of a JSON-RPC response: integer id, presence of result and error. */
static bool scan_response(const char *p, size_t n, uint64_t *id, bool *has_result, bool *has_error)
{
    const char *e = p + n;
    bool id_ok = false;
    *has_result = *has_error = false;
    p = skip_ws(p, e);
    if (p >= e || *p != '{') return false;
    p++;
    for (int keys = 0; keys < 64; keys++) {
        p = skip_ws(p, e);
        if (p < e && *p == '}') return id_ok;
        if (p >= e || *p != '"') return false;
        const char *k = p + 1;
        const char *ke = skip_string(p, e);
        if (!ke) return false;
        size_t klen = (size_t)(ke - 1 - k);
        p = skip_ws(ke, e);
        if (p >= e || *p != ':') return false;
        p = skip_ws(p + 1, e);
        const char *v = p;
        p = skip_value(p, e);
        if (!p) return false;
        if (klen == 2 && memcmp(k, "id", 2) == 0) {
            char *end;
            errno = 0;
            unsigned long long x = strtoull(v, &end, 10);
            id_ok = end == p && errno == 0 && v[0] != '-';
            *id = x;
        } else if (klen == 6 && memcmp(k, "result", 6) == 0) {
            *has_result = true;
        } else if (klen == 5 && memcmp(k, "error", 5) == 0) {
            *has_error = true;
        }
        p = skip_ws(p, e);
        if (p < e && *p == ',') p++;
    }
    return false;
}

static void record_sample(uint64_t ns)
{
    if (st.nsamples == st.cap_samples) {
        if (st.cap_samples >= MAX_SAMPLES) return;
        st.cap_samples = st.cap_samples ? st.cap_samples * 2 : 1 << 16;
        st.samples = xrealloc(st.samples, st.cap_samples * sizeof(uint64_t));
    }
    st.samples[st.nsamples++] = ns;
}

struct phase {
    uint64_t measure_start, measure_end, drain_end;
};
static struct phase ph;

static void on_message(struct conn *c, const char *p, size_t n, uint64_t t)
{
    if (opt.idle) return; /* nothing is expected while idling */
    if (c->count == 0) {
        st.errors++;
        st.bad_frames++;
        return;
    }
    uint64_t sent_at = c->sent_ns[c->head], want = c->sent_id[c->head];
    c->head = (c->head + 1) % (unsigned)opt.inflight;
    c->count--;
    st.total_responses++;
    uint64_t id = 0;
    bool has_result, has_error;
    bool ok = scan_response(p, n, &id, &has_result, &has_error);
    if (!ok || id != want) {
        st.errors++;
        st.id_mismatch++;
    } else if (has_error || !has_result) {
        st.errors++;
        st.error_responses++;
    } else if (sent_at >= ph.measure_start && t <= ph.measure_end) {
        st.measured++;
        record_sample(t - sent_at);
    }
    static bool reported;
    if (!reported && (!ok || id != want || has_error || !has_result)) {
        reported = true;
        fprintf(stderr, "bench_wsload: first bad response (want id %llu): %.*s\n",
                (unsigned long long)want, (int)(n > 300 ? 300 : n), p);
    }
    if (t < ph.measure_end && !stop_requested) queue_request(c, t);
}

/* Parse every complete frame in c->in. Returns false if the connection must close. */
static bool process_frames(struct conn *c, uint64_t t)
{
    for (;;) {
        const unsigned char *p = (const unsigned char *)c->in.data + c->in.off;
        size_t avail = c->in.len - c->in.off;
        if (avail < 2) break;
        unsigned fin = p[0] & 0x80, op = p[0] & 0x0F;
        bool masked = p[1] & 0x80;
        uint64_t len = p[1] & 0x7F;
        size_t h = 2;
        if (len == 126) {
            if (avail < 4) break;
            len = (uint64_t)p[2] << 8 | p[3];
            h = 4;
        } else if (len == 127) {
            if (avail < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = len << 8 | p[2 + i];
            h = 10;
        }
        if (len > MAX_MESSAGE) {
            st.errors++;
            st.bad_frames++;
            return false;
        }
        size_t mh = masked ? 4 : 0;
        if (avail < h + mh + len) break;
        char *payload = (char *)p + h + mh;
        if (masked)
            for (uint64_t i = 0; i < len; i++) payload[i] ^= (char)p[h + (i & 3)];
        c->in.off += h + mh + (size_t)len;
        if (op == 0x8) {
            st.closed_by_server++;
            return false;
        } else if (op == 0x9) {
            queue_frame(c, 0xA, payload, (size_t)len);
        } else if (op == 0xA) {
            /* unsolicited pong: ignore */
        } else if (op == 0x1 || op == 0x2 || op == 0x0) {
            if (op == 0x2) st.bad_frames++;
            if (op != 0x0 && c->fragmented) {
                st.errors++;
                st.bad_frames++;
                return false;
            }
            if (fin && !c->fragmented) {
                on_message(c, payload, (size_t)len, t);
            } else {
                buf_append(&c->msg, payload, (size_t)len);
                c->fragmented = !fin;
                if (c->msg.len > MAX_MESSAGE) return false;
                if (fin) {
                    on_message(c, c->msg.data, c->msg.len, t);
                    c->msg.len = 0;
                }
            }
        } else {
            st.errors++;
            st.bad_frames++;
            return false;
        }
    }
    buf_compact(&c->in);
    return true;
}

static bool process_handshake(struct conn *c, uint64_t t)
{
    c->in.data[c->in.len] = '\0'; /* buf_reserve below always leaves room */
    char *end = strstr(c->in.data, "\r\n\r\n");
    if (!end) return c->in.len < HANDSHAKE_MAX;
    int status = 0;
    if (sscanf(c->in.data, "HTTP/1.%*d %d", &status) != 1 || status != 101) {
        st.http_status_seen = status;
        return false;
    }
    bool accept_ok = false;
    for (char *line = strstr(c->in.data, "\r\n"); line && line < end;
         line = strstr(line + 2, "\r\n")) {
        char *l = line + 2;
        if (strncasecmp(l, "Sec-WebSocket-Accept:", 21) == 0) {
            char *v = l + 21;
            while (*v == ' ') v++;
            accept_ok = strncmp(v, c->expect_accept, 28) == 0;
        }
    }
    if (!accept_ok) {
        fprintf(stderr, "bench_wsload: bad Sec-WebSocket-Accept\n");
        return false;
    }
    c->in.off = (size_t)(end + 4 - c->in.data);
    buf_compact(&c->in);
    c->state = C_OPEN;
    return process_frames(c, t);
}

/* Read everything available. Returns false when the connection is finished. */
static bool conn_read(struct conn *c, uint64_t t)
{
    for (int rounds = 0; rounds < 64; rounds++) {
        buf_reserve(&c->in, READ_CHUNK + 1);
        ssize_t r = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len - 1, 0);
        if (r > 0) {
            c->in.len += (size_t)r;
            bool ok = c->state == C_HANDSHAKE ? process_handshake(c, t) : process_frames(c, t);
            if (!ok) return false;
            if ((size_t)r < READ_CHUNK) return true;
            continue;
        }
        if (r == 0) return false;
        if (errno == EINTR) continue;
        return errno == EAGAIN || errno == EWOULDBLOCK;
    }
    return true;
}

/* ---- main loop ------------------------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(double q)
{
    if (st.nsamples == 0) return 0;
    size_t i = (size_t)(q * (double)(st.nsamples - 1) + 0.5);
    return (double)st.samples[i] / 1000.0;
}

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_wsload --port N [--host H] [--path /mcp] [--conns N] [--inflight P]\n"
               "                    [--seconds S] [--warmup S] --persona ID\n"
               "       bench_wsload --idle --port N --conns N --seconds HOLD [--ready-file F]\n"
               "options: --connect-timeout S (10), --max-pending N concurrent handshakes "
               "(512)\n");
}

static void parse_args(int argc, char **argv)
{
    static const struct option longs[] = {{"host", required_argument, 0, 'h'},
                                          {"port", required_argument, 0, 'p'},
                                          {"conns", required_argument, 0, 'c'},
                                          {"inflight", required_argument, 0, 'i'},
                                          {"seconds", required_argument, 0, 's'},
                                          {"warmup", required_argument, 0, 'w'},
                                          {"persona", required_argument, 0, 'P'},
                                          {"path", required_argument, 0, 'u'},
                                          {"idle", no_argument, 0, 'I'},
                                          {"ready-file", required_argument, 0, 'r'},
                                          {"connect-timeout", required_argument, 0, 't'},
                                          {"max-pending", required_argument, 0, 'm'},
                                          {"help", no_argument, 0, 'H'},
                                          {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (ch) {
        case 'h':
            opt.host = optarg;
            break;
        case 'p':
            opt.port = atoi(optarg);
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
        case 'P':
            opt.persona = optarg;
            break;
        case 'u':
            opt.path = optarg;
            break;
        case 'I':
            opt.idle = true;
            break;
        case 'r':
            opt.ready_file = optarg;
            break;
        case 't':
            opt.connect_timeout = atof(optarg);
            break;
        case 'm':
            opt.max_pending = atoi(optarg);
            break;
        case 'H':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
    }
    bool bad = opt.port <= 0 || opt.port > 65535 || opt.conns <= 0 || opt.conns > 1000000 ||
               opt.inflight <= 0 || opt.inflight > 65536 || !(opt.seconds > 0) ||
               opt.seconds > 86400 || opt.warmup < 0 || opt.warmup > 3600 || opt.max_pending <= 0 ||
               opt.path[0] != '/' || (!opt.idle && (!opt.persona || !*opt.persona));
    if (bad || optind != argc) {
        usage(stderr);
        exit(2);
    }
}

/* Connect phase: keep at most max_pending handshakes under way. Returns open count. */
static int connect_all(struct conn *cs, const struct sockaddr_storage *sa, socklen_t salen)
{
    struct epoll_event evs[MAX_EVENTS];
    int started = 0, pending = 0, open = 0, failed = 0;
    uint64_t deadline = now_ns() + (uint64_t)(opt.connect_timeout * 1e9);
    while (open + failed < opt.conns && !stop_requested) {
        while (started < opt.conns && pending < opt.max_pending) {
            struct conn *c = &cs[started++];
            if (conn_start(c, sa, salen)) {
                pending++;
            } else {
                c->state = C_CLOSED;
                failed++;
            }
        }
        uint64_t t = now_ns();
        if (t >= deadline) break;
        int n = epoll_wait(epfd, evs, MAX_EVENTS, (int)((deadline - t) / 1000000) + 1);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            enum conn_state before = c->state;
            bool alive = true;
            if (evs[i].events & (EPOLLERR | EPOLLHUP) && before != C_OPEN) alive = false;
            if (alive && before == C_CONNECTING && (evs[i].events & EPOLLOUT)) {
                int err = 0;
                socklen_t len = sizeof(err);
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err)
                    alive = false;
                else
                    send_handshake(c);
            }
            if (alive && (evs[i].events & EPOLLOUT)) alive = conn_flush(c);
            if (alive && (evs[i].events & EPOLLIN)) alive = conn_read(c, now_ns());
            if (alive && c->out.len > c->out.off) alive = conn_flush(c);
            if (!alive) {
                if (before == C_OPEN) {
                    open--;
                    st.errors++;
                } else {
                    pending--;
                }
                failed++;
                conn_close(c);
            } else if (before != C_OPEN && c->state == C_OPEN) {
                pending--;
                open++;
            }
        }
    }
    for (int i = 0; i < opt.conns; i++)
        if (cs[i].state == C_CONNECTING || cs[i].state == C_HANDSHAKE) {
            conn_close(&cs[i]);
            failed++;
        }
    st.connect_failures = (uint64_t)failed;
    return open;
}

/* Drive open connections until `until`; stops early when nothing is outstanding
 * (drain phase) or a signal arrives. */
static void run_loop(struct conn *cs, uint64_t until, bool draining)
{
    struct epoll_event evs[MAX_EVENTS];
    while (!stop_requested) {
        uint64_t t = now_ns();
        if (t >= until) break;
        if (draining) {
            bool any = false;
            for (int i = 0; i < opt.conns && !any; i++)
                any = cs[i].state == C_OPEN && cs[i].count > 0;
            if (!any) break;
        }
        int ms = (int)((until - t) / 1000000) + 1;
        int n = epoll_wait(epfd, evs, MAX_EVENTS, ms > 100 ? 100 : ms);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        t = now_ns();
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->state != C_OPEN) continue;
            bool alive = true;
            if (evs[i].events & EPOLLOUT) alive = conn_flush(c);
            if (alive && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) alive = conn_read(c, t);
            if (alive && c->out.len > c->out.off) alive = conn_flush(c);
            if (!alive) {
                if (!opt.idle) st.errors += c->count + 1;
                conn_close(c);
            }
        }
    }
}

static int count_open(struct conn *cs)
{
    int n = 0;
    for (int i = 0; i < opt.conns; i++) n += cs[i].state == C_OPEN;
    return n;
}

static void close_all(struct conn *cs)
{
    static const char code[2] = {0x03, (char)0xE8}; /* 1000 */
    for (int i = 0; i < opt.conns; i++) {
        struct conn *c = &cs[i];
        if (c->state != C_OPEN) continue;
        queue_frame(c, 0x8, code, 2);
        (void)conn_flush(c);
        shutdown(c->fd, SHUT_WR);
    }
    /* Give servers a moment to see the close frames before the sockets go away. */
    uint64_t until = now_ns() + 200000000ULL;
    while (now_ns() < until) {
        struct epoll_event evs[MAX_EVENTS];
        int n = epoll_wait(epfd, evs, MAX_EVENTS, 20);
        if (n <= 0) break;
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            char sink[4096];
            if (recv(c->fd, sink, sizeof(sink), 0) <= 0) conn_close(c);
        }
    }
    for (int i = 0; i < opt.conns; i++) conn_close(&cs[i]);
}

static int run_idle(struct conn *cs, int open)
{
    printf("READY open=%d failed=%llu\n", open, (unsigned long long)st.connect_failures);
    fflush(stdout);
    if (opt.ready_file) {
        char tmp[4096];
        snprintf(tmp, sizeof(tmp), "%s.tmp", opt.ready_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%d\n", open) < 0 || fclose(f) != 0 || rename(tmp, opt.ready_file))
            die("ready file");
    }
    run_loop(cs, now_ns() + (uint64_t)(opt.seconds * 1e9), false);
    int still = count_open(cs);
    printf("HELD open=%d closed_by_server=%d\n", still, open - still);
    printf("RESULT mode=idle conns=%d open=%d failed=%llu still_open=%d\n", opt.conns, open,
           (unsigned long long)st.connect_failures, still);
    close_all(cs);
    return (open == opt.conns && still == open) ? 0 : 1;
}

static int run_load(struct conn *cs, int open)
{
    uint64_t t0 = now_ns();
    ph.measure_start = t0 + (uint64_t)(opt.warmup * 1e9);
    ph.measure_end = ph.measure_start + (uint64_t)(opt.seconds * 1e9);
    for (int i = 0; i < opt.conns; i++) {
        struct conn *c = &cs[i];
        if (c->state != C_OPEN) continue;
        for (int k = 0; k < opt.inflight; k++) queue_request(c, t0);
        if (!conn_flush(c)) {
            st.errors++;
            conn_close(c);
        }
    }
    run_loop(cs, ph.measure_end, false);
    uint64_t measured_ns = (stop_requested ? now_ns() : ph.measure_end) - ph.measure_start;
    run_loop(cs, now_ns() + DRAIN_NS, true);
    for (int i = 0; i < opt.conns; i++)
        if (cs[i].state == C_OPEN && cs[i].count) st.errors += cs[i].count; /* unanswered */
    close_all(cs);

    qsort(st.samples, st.nsamples, sizeof(uint64_t), cmp_u64);
    double secs = (double)measured_ns / 1e9;
    double rps = secs > 0 ? (double)st.measured / secs : 0;
    printf("bench_wsload: %d/%d conns x %d in flight, %.1f s (+%.1f s warmup), "
           "ws://%s:%d%s persona.status\n",
           open, opt.conns, opt.inflight, secs, opt.warmup, opt.host, opt.port, opt.path);
    printf("requests %llu  rps %.1f  errors %llu (error responses %llu, id mismatches %llu, "
           "bad frames %llu, connect failures %llu)\n",
           (unsigned long long)st.measured, rps, (unsigned long long)st.errors,
           (unsigned long long)st.error_responses, (unsigned long long)st.id_mismatch,
           (unsigned long long)st.bad_frames, (unsigned long long)st.connect_failures);
    double mx = st.nsamples ? (double)st.samples[st.nsamples - 1] / 1000.0 : 0;
    printf("latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", pct_us(0.50),
           pct_us(0.90), pct_us(0.99), pct_us(0.999), mx);
    printf("RESULT mode=load conns=%d open=%d inflight=%d seconds=%.3f requests=%llu rps=%.1f "
           "p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f errors=%llu "
           "total_responses=%llu connect_failures=%llu\n",
           opt.conns, open, opt.inflight, secs, (unsigned long long)st.measured, rps, pct_us(0.50),
           pct_us(0.90), pct_us(0.99), pct_us(0.999), mx,
           (unsigned long long)(st.errors + st.connect_failures),
           (unsigned long long)st.total_responses, (unsigned long long)st.connect_failures);
    return (st.errors == 0 && st.connect_failures == 0 && st.measured > 0) ? 0 : 1;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    if (!self_test_sha1()) {
        fprintf(stderr, "bench_wsload: SHA-1 self test failed\n");
        return 2;
    }
    if (getrandom(&rng_state, sizeof(rng_state), 0) != sizeof(rng_state)) die("getrandom");
    rng_state |= 1;
    if (!opt.idle) build_request_prefix(opt.persona);
    struct sigaction sa_sig = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa_sig, NULL);
    sigaction(SIGTERM, &sa_sig, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct sockaddr_storage sa;
    socklen_t salen;
    if (resolve(&sa, &salen) < 0) return 2;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    struct conn *cs = calloc((size_t)opt.conns, sizeof(*cs));
    uint64_t *rings = calloc((size_t)opt.conns * (size_t)opt.inflight * 2, sizeof(uint64_t));
    if (!cs || !rings) die("calloc");
    for (int i = 0; i < opt.conns; i++) {
        cs[i].fd = -1;
        cs[i].state = C_CLOSED;
        cs[i].sent_ns = rings + (size_t)i * (size_t)opt.inflight * 2;
        cs[i].sent_id = cs[i].sent_ns + opt.inflight;
    }
    int open = connect_all(cs, &sa, salen);
    if (open < opt.conns)
        fprintf(stderr, "bench_wsload: %d of %d connections failed%s%d\n", opt.conns - open,
                opt.conns, st.http_status_seen ? "; last HTTP status " : "", st.http_status_seen);
    int rc = open == 0 ? 1 : opt.idle ? run_idle(cs, open) : run_load(cs, open);
    if (open == 0)
        printf("RESULT mode=%s conns=%d open=0 errors=%d\n", opt.idle ? "idle" : "load", opt.conns,
               opt.conns);
    free(rings);
    free(cs);
    free(st.samples);
    free(req_prefix);
    close(epfd);
    return rc;
}
