/*
 * wsclient.c - see wsclient.h. The WebSocket client and JSON-RPC load driver shared
 * by bench_wsload, bench_memory and bench_chat (factored out of bench_wsload.c).
 *
 * Design notes. A connection's buffers grow by doubling and are compacted after each
 * parse, so steady state does no allocation. Frames are parsed in place: a masked
 * payload is unmasked in the input buffer and handed to the callback without a copy
 * unless it was fragmented. Every loop is bounded (read rounds per event, keys per
 * object, events per epoll round, a deadline on every wait).
 */
#include "wsclient.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK     65536
#define MAX_EVENTS     1024
#define HANDSHAKE_MAX  8192
#define MAX_SAMPLES    (256u << 20)
#define DRAIN_NS       (2 * 1000000000ULL)
#define WS_ACCEPT_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

volatile sig_atomic_t ws_stop_requested;

/* ---- small utilities ------------------------------------------------------------------ */

uint64_t ws_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "wsclient: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) die("out of memory");
    return q;
}

uint64_t ws_rng(ws_client *cl)
{
    /* xorshift64*: fast, good enough for masks; seeded from getrandom(). */
    cl->rng ^= cl->rng >> 12;
    cl->rng ^= cl->rng << 25;
    cl->rng ^= cl->rng >> 27;
    return cl->rng * 0x2545F4914F6CDD1DULL;
}

void ws_buf_reserve(ws_buf *b, size_t extra)
{
    if (b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 512;
    while (cap < b->len + extra) cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

void ws_buf_append(ws_buf *b, const void *p, size_t n)
{
    ws_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void ws_buf_printf(ws_buf *b, const char *fmt, ...)
{
    for (int tries = 0; tries < 2; tries++) {
        size_t room = b->cap - b->len;
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->data ? b->data + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (k < 0) return;
        if ((size_t)k < room) {
            b->len += (size_t)k;
            return;
        }
        ws_buf_reserve(b, (size_t)k + 1);
    }
}

static void buf_compact(ws_buf *b)
{
    if (b->off == 0) return;
    memmove(b->data, b->data + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
}

void ws_buf_free(ws_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

/* ---- SHA-1 (FIPS 180-4) and base64, only for Sec-WebSocket-Accept --------------------- */

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

/* ---- client --------------------------------------------------------------------------- */

int ws_client_init(ws_client *cl, const char *host, int port, const char *path)
{
    memset(cl, 0, sizeof *cl);
    cl->host = host;
    cl->port = port;
    cl->path = path;
    cl->user_agent = "pmcp-bench";
    cl->epfd = -1;
    if (!self_test_sha1()) {
        fprintf(stderr, "wsclient: SHA-1 self test failed\n");
        return -1;
    }
    if (getrandom(&cl->rng, sizeof(cl->rng), 0) != sizeof(cl->rng)) die("getrandom");
    cl->rng |= 1;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0 || !res) {
        fprintf(stderr, "wsclient: cannot resolve %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    memcpy(&cl->sa, res->ai_addr, res->ai_addrlen);
    cl->salen = res->ai_addrlen;
    freeaddrinfo(res);
    cl->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (cl->epfd < 0) die("epoll_create1");
    return 0;
}

void ws_client_free(ws_client *cl)
{
    if (cl->epfd >= 0) close(cl->epfd);
    cl->epfd = -1;
}

/* ---- connections ---------------------------------------------------------------------- */

void ws_queue_frame(ws_conn *c, unsigned opcode, const void *payload, size_t n)
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
    uint32_t m32 = (uint32_t)ws_rng(c->cl);
    unsigned char mask[4];
    memcpy(mask, &m32, 4);
    memcpy(head + h, mask, 4);
    h += 4;
    ws_buf_reserve(&c->out, h + n);
    memcpy(c->out.data + c->out.len, head, h);
    unsigned char *dst = (unsigned char *)c->out.data + c->out.len + h;
    const unsigned char *src = payload;
    for (size_t i = 0; i < n; i++) dst[i] = src[i] ^ mask[i & 3];
    c->out.len += h + n;
}

static void set_events(ws_conn *c, bool want_out)
{
    if (c->want_out == want_out) return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(c->cl->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
    c->want_out = want_out;
}

void ws_conn_close(ws_conn *c)
{
    if (c->state == WS_CLOSED) return;
    if (c->fd >= 0) {
        epoll_ctl(c->cl->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = WS_CLOSED;
    ws_buf_free(&c->in);
    ws_buf_free(&c->out);
    ws_buf_free(&c->msg);
    c->fragmented = false;
}

bool ws_conn_flush(ws_conn *c)
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

bool ws_conn_start(ws_client *cl, ws_conn *c)
{
    c->cl = cl;
    c->fd = socket(cl->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        fprintf(stderr, "wsclient: socket: %s\n", strerror(errno));
        c->state = WS_CLOSED;
        return false;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (const struct sockaddr *)&cl->sa, cl->salen) < 0 && errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        c->state = WS_CLOSED;
        return false;
    }
    c->state = WS_CONNECTING;
    c->want_out = true;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(cl->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl add");
    return true;
}

static void send_handshake(ws_conn *c)
{
    ws_client *cl = c->cl;
    unsigned char key[16], digest[20];
    char key64[25], req[1024];
    for (int i = 0; i < 16; i += 8) {
        uint64_t r = ws_rng(cl);
        memcpy(key + i, &r, 8);
    }
    base64(key, 16, key64);
    char cat[64];
    snprintf(cat, sizeof(cat), "%s%s", key64, WS_ACCEPT_GUID);
    sha1(cat, strlen(cat), digest);
    base64(digest, 20, c->expect_accept);
    bool v6 = strchr(cl->host, ':') != NULL;
    int n =
        snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: %s%s%s:%d\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\nUser-Agent: %s\r\n\r\n",
                 cl->path, v6 ? "[" : "", cl->host, v6 ? "]" : "", cl->port, key64, cl->user_agent);
    ws_buf_append(&c->out, req, (size_t)n);
    c->state = WS_HANDSHAKE;
}

static bool deliver(ws_conn *c, char *p, size_t n, uint64_t t)
{
    return c->cl->on_message ? c->cl->on_message(c, p, n, t) : true;
}

/* Parse every complete frame in c->in. Returns false if the connection must close. */
static bool process_frames(ws_conn *c, uint64_t t)
{
    ws_client *cl = c->cl;
    for (;;) {
        if (c->state != WS_OPEN) return false; /* a callback closed it */
        unsigned char *p = (unsigned char *)c->in.data + c->in.off;
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
        if (len > WS_MAX_MESSAGE) {
            cl->bad_frames++;
            cl->protocol_errors++;
            return false;
        }
        size_t mh = masked ? 4 : 0;
        if (avail < h + mh + len) break;
        char *payload = (char *)p + h + mh;
        if (masked)
            for (uint64_t i = 0; i < len; i++) payload[i] ^= (char)p[h + (i & 3)];
        c->in.off += h + mh + (size_t)len;
        if (op == 0x8) {
            cl->closed_by_server++;
            return false;
        } else if (op == 0x9) {
            ws_queue_frame(c, 0xA, payload, (size_t)len);
        } else if (op == 0xA) {
            /* unsolicited pong: ignore */
        } else if (op == 0x1 || op == 0x2 || op == 0x0) {
            if (op == 0x2) cl->bad_frames++;
            if (op != 0x0 && c->fragmented) {
                cl->bad_frames++;
                cl->protocol_errors++;
                return false;
            }
            if (fin && !c->fragmented) {
                if (!deliver(c, payload, (size_t)len, t)) return false;
            } else {
                ws_buf_append(&c->msg, payload, (size_t)len);
                c->fragmented = !fin;
                if (c->msg.len > WS_MAX_MESSAGE) return false;
                if (fin) {
                    bool ok = deliver(c, c->msg.data, c->msg.len, t);
                    c->msg.len = 0;
                    if (!ok) return false;
                }
            }
        } else {
            cl->bad_frames++;
            cl->protocol_errors++;
            return false;
        }
    }
    buf_compact(&c->in);
    return true;
}

static bool process_handshake(ws_conn *c, uint64_t t)
{
    c->in.data[c->in.len] = '\0'; /* conn_read always leaves room */
    char *end = strstr(c->in.data, "\r\n\r\n");
    if (!end) return c->in.len < HANDSHAKE_MAX;
    int status = 0;
    if (sscanf(c->in.data, "HTTP/1.%*d %d", &status) != 1 || status != 101) {
        c->cl->http_status_seen = status;
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
        fprintf(stderr, "wsclient: bad Sec-WebSocket-Accept\n");
        return false;
    }
    c->in.off = (size_t)(end + 4 - c->in.data);
    buf_compact(&c->in);
    c->state = WS_OPEN;
    return process_frames(c, t);
}

/* Read everything available. Returns false when the connection is finished. */
static bool conn_read(ws_conn *c, uint64_t t)
{
    for (int rounds = 0; rounds < 64; rounds++) {
        ws_buf_reserve(&c->in, READ_CHUNK + 1);
        ssize_t r = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len - 1, 0);
        if (r > 0) {
            c->in.len += (size_t)r;
            bool ok = c->state == WS_HANDSHAKE ? process_handshake(c, t) : process_frames(c, t);
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

bool ws_conn_on_events(ws_conn *c, uint32_t events, uint64_t t)
{
    if (c->state == WS_CLOSED) return false;
    if ((events & (EPOLLERR | EPOLLHUP)) && c->state != WS_OPEN) return false;
    if (c->state == WS_CONNECTING) {
        if (!(events & EPOLLOUT)) return true;
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) return false;
        send_handshake(c);
    }
    if ((events & EPOLLOUT) && !ws_conn_flush(c)) return false;
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !conn_read(c, t)) return false;
    if (c->state != WS_CLOSED && c->out.len > c->out.off && !ws_conn_flush(c)) return false;
    return c->state != WS_CLOSED;
}

int ws_connect_all(ws_client *cl, ws_conn *cs, int n, int max_pending, double timeout_s)
{
    struct epoll_event evs[MAX_EVENTS];
    int started = 0, pending = 0, open = 0, failed = 0;
    uint64_t deadline = ws_now_ns() + (uint64_t)(timeout_s * 1e9);
    for (int i = 0; i < n; i++) {
        cs[i].cl = cl;
        cs[i].fd = -1;
        cs[i].index = i;
        cs[i].state = WS_CLOSED;
    }
    while (open + failed < n && !ws_stop_requested) {
        while (started < n && pending < max_pending) {
            ws_conn *c = &cs[started++];
            if (ws_conn_start(cl, c))
                pending++;
            else
                failed++;
        }
        uint64_t t = ws_now_ns();
        if (t >= deadline) break;
        int ne = epoll_wait(cl->epfd, evs, MAX_EVENTS, (int)((deadline - t) / 1000000) + 1);
        if (ne < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < ne; i++) {
            ws_conn *c = evs[i].data.ptr;
            enum ws_state before = c->state;
            if (before == WS_CLOSED) continue;
            bool alive = ws_conn_on_events(c, evs[i].events, ws_now_ns());
            if (!alive) {
                if (before == WS_OPEN)
                    open--;
                else
                    pending--;
                failed++;
                ws_conn_close(c);
            } else if (before != WS_OPEN && c->state == WS_OPEN) {
                pending--;
                open++;
            }
        }
    }
    for (int i = 0; i < n; i++)
        if (cs[i].state == WS_CONNECTING || cs[i].state == WS_HANDSHAKE) ws_conn_close(&cs[i]);
    return open;
}

int ws_poll(ws_client *cl, int timeout_ms)
{
    struct epoll_event evs[MAX_EVENTS];
    int n = epoll_wait(cl->epfd, evs, MAX_EVENTS, timeout_ms);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    int dead = 0;
    uint64_t t = ws_now_ns();
    for (int i = 0; i < n; i++) {
        ws_conn *c = evs[i].data.ptr;
        if (c->state == WS_CLOSED) continue;
        if (!ws_conn_on_events(c, evs[i].events, t)) {
            ws_conn_close(c);
            dead++;
        }
    }
    return dead;
}

void ws_close_all(ws_client *cl, ws_conn *cs, int n)
{
    static const char code[2] = {0x03, (char)0xE8}; /* 1000 */
    ws_message_fn saved = cl->on_message;
    cl->on_message = NULL;
    for (int i = 0; i < n; i++) {
        ws_conn *c = &cs[i];
        if (c->state != WS_OPEN) continue;
        ws_queue_frame(c, 0x8, code, 2);
        (void)ws_conn_flush(c);
        shutdown(c->fd, SHUT_WR);
    }
    /* Give the server a moment to see the close frames before the sockets go away. */
    uint64_t until = ws_now_ns() + 200000000ULL;
    while (ws_now_ns() < until) {
        struct epoll_event evs[MAX_EVENTS];
        int ne = epoll_wait(cl->epfd, evs, MAX_EVENTS, 20);
        if (ne <= 0) break;
        for (int i = 0; i < ne; i++) {
            ws_conn *c = evs[i].data.ptr;
            char sink[4096];
            if (c->state == WS_CLOSED || recv(c->fd, sink, sizeof(sink), 0) <= 0) ws_conn_close(c);
        }
    }
    for (int i = 0; i < n; i++) ws_conn_close(&cs[i]);
    cl->on_message = saved;
}

/* ---- blocking call -------------------------------------------------------------------- */

typedef struct call_state {
    char *reply;
    size_t len;
    bool got;
} call_state;

static bool call_on_message(ws_conn *c, char *msg, size_t n, uint64_t t)
{
    (void)t;
    call_state *cs = c->user;
    if (!cs || cs->got) return true;
    cs->reply = malloc(n + 1);
    if (!cs->reply) die("out of memory");
    memcpy(cs->reply, msg, n);
    cs->reply[n] = 0;
    cs->len = n;
    cs->got = true;
    return true;
}

int ws_call(ws_conn *c, const char *req, size_t n, double timeout_s, char **reply, size_t *len)
{
    ws_client *cl = c->cl;
    call_state st = {0};
    ws_message_fn saved_fn = cl->on_message;
    void *saved_user = c->user;
    cl->on_message = call_on_message;
    c->user = &st;
    *reply = NULL;
    if (len) *len = 0;
    int rc = -1;
    if (c->state == WS_OPEN) {
        ws_queue_text(c, req, n);
        if (!ws_conn_flush(c)) {
            ws_conn_close(c);
        } else {
            uint64_t deadline = ws_now_ns() + (uint64_t)(timeout_s * 1e9);
            while (!st.got && c->state == WS_OPEN && !ws_stop_requested) {
                uint64_t t = ws_now_ns();
                if (t >= deadline) break;
                int ms = (int)((deadline - t) / 1000000) + 1;
                ws_poll(cl, ms > 100 ? 100 : ms);
            }
        }
    }
    cl->on_message = saved_fn;
    c->user = saved_user;
    if (st.got) {
        *reply = st.reply;
        if (len) *len = st.len;
        rc = 0;
    }
    return rc;
}

/* ---- JSON-RPC response scan ----------------------------------------------------------- */

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

bool ws_scan_response(const char *p, size_t n, uint64_t *id, bool *has_result, bool *has_error)
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

/* ---- load driver ---------------------------------------------------------------------- */

typedef struct load_conn {
    uint64_t *sent_ns; /* ring of send times, capacity = inflight */
    uint64_t *sent_id; /* ring of request ids */
    unsigned head, count;
} load_conn;

struct ws_load {
    const ws_load_opts *o;
    ws_load_result *r;
    load_conn *lc;
    uint64_t next_id;
    uint64_t measure_start, measure_end;
    size_t cap_samples;
    ws_buf scratch;
    bool reported;
};

static ws_load *g_load; /* the run in progress (one at a time) */

static void record_sample(ws_load *L, uint64_t ns)
{
    ws_load_result *r = L->r;
    if (r->nsamples == L->cap_samples) {
        if (L->cap_samples >= MAX_SAMPLES) return;
        L->cap_samples = L->cap_samples ? L->cap_samples * 2 : 1 << 16;
        r->samples = xrealloc(r->samples, L->cap_samples * sizeof(uint64_t));
    }
    r->samples[r->nsamples++] = ns;
}

static void load_send(ws_load *L, ws_conn *c, uint64_t t)
{
    load_conn *lc = &L->lc[c->index];
    uint64_t id = L->next_id++;
    L->scratch.len = 0;
    L->o->build(L->o->ud, c->index, id, &L->scratch);
    ws_queue_text(c, L->scratch.data, L->scratch.len);
    unsigned slot = (lc->head + lc->count) % (unsigned)L->o->inflight;
    lc->sent_ns[slot] = t;
    lc->sent_id[slot] = id;
    lc->count++;
    L->r->sent++;
}

static bool load_on_message(ws_conn *c, char *p, size_t n, uint64_t t)
{
    ws_load *L = g_load;
    ws_load_result *r = L->r;
    load_conn *lc = &L->lc[c->index];
    if (lc->count == 0) {
        r->errors++;
        c->cl->bad_frames++;
        return true;
    }
    uint64_t sent_at = lc->sent_ns[lc->head], want = lc->sent_id[lc->head];
    lc->head = (lc->head + 1) % (unsigned)L->o->inflight;
    lc->count--;
    r->total_responses++;
    uint64_t id = 0;
    bool has_result, has_error;
    bool ok = ws_scan_response(p, n, &id, &has_result, &has_error);
    bool good = false;
    if (!ok || id != want) {
        r->errors++;
        r->id_mismatch++;
    } else if (has_error || !has_result) {
        r->errors++;
        r->error_responses++;
    } else if (L->o->check && !L->o->check(L->o->ud, c->index, id, p, n)) {
        r->errors++;
        r->error_responses++;
    } else {
        good = true;
        if (sent_at >= L->measure_start && t <= L->measure_end) {
            r->measured++;
            record_sample(L, t - sent_at);
        }
    }
    if (!good && !L->reported) {
        L->reported = true;
        fprintf(stderr, "wsclient: first bad response (want id %llu): %.*s\n",
                (unsigned long long)want, (int)(n > 300 ? 300 : n), p);
    }
    if (t < L->measure_end && !ws_stop_requested) load_send(L, c, t);
    return true;
}

/* Drive open connections until `until`; stops early when nothing is outstanding
 * (drain phase) or a signal arrives. */
static void load_loop(ws_load *L, ws_client *cl, ws_conn *cs, uint64_t until, bool draining)
{
    int n = L->o->conns;
    while (!ws_stop_requested) {
        uint64_t t = ws_now_ns();
        if (t >= until) break;
        if (draining) {
            bool any = false;
            for (int i = 0; i < n && !any; i++) any = cs[i].state == WS_OPEN && L->lc[i].count > 0;
            if (!any) break;
        }
        int ms = (int)((until - t) / 1000000) + 1;
        struct epoll_event evs[MAX_EVENTS];
        int ne = epoll_wait(cl->epfd, evs, MAX_EVENTS, ms > 100 ? 100 : ms);
        if (ne < 0 && errno != EINTR) die("epoll_wait");
        t = ws_now_ns();
        for (int i = 0; i < ne; i++) {
            ws_conn *c = evs[i].data.ptr;
            if (c->state != WS_OPEN) continue;
            if (!ws_conn_on_events(c, evs[i].events, t)) {
                L->r->errors += L->lc[c->index].count + 1;
                L->lc[c->index].count = 0;
                ws_conn_close(c);
            }
        }
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int ws_load_run(ws_client *cl, ws_conn *cs, const ws_load_opts *o, ws_load_result *r)
{
    memset(r, 0, sizeof *r);
    ws_load L = {.o = o, .r = r, .next_id = 1};
    L.lc = calloc((size_t)o->conns, sizeof *L.lc);
    uint64_t *rings = calloc((size_t)o->conns * (size_t)o->inflight * 2, sizeof(uint64_t));
    if (!L.lc || !rings) die("calloc");
    for (int i = 0; i < o->conns; i++) {
        L.lc[i].sent_ns = rings + (size_t)i * (size_t)o->inflight * 2;
        L.lc[i].sent_id = L.lc[i].sent_ns + o->inflight;
        cs[i].index = i;
    }
    g_load = &L;
    ws_message_fn saved = cl->on_message;
    cl->on_message = load_on_message;
    uint64_t t0 = ws_now_ns();
    L.measure_start = t0 + (uint64_t)(o->warmup * 1e9);
    L.measure_end = L.measure_start + (uint64_t)(o->seconds * 1e9);
    for (int i = 0; i < o->conns; i++) {
        ws_conn *c = &cs[i];
        if (c->state != WS_OPEN) continue;
        for (int k = 0; k < o->inflight; k++) load_send(&L, c, t0);
        if (!ws_conn_flush(c)) {
            r->errors++;
            L.lc[i].count = 0;
            ws_conn_close(c);
        }
    }
    load_loop(&L, cl, cs, L.measure_end, false);
    uint64_t measured_ns = (ws_stop_requested ? ws_now_ns() : L.measure_end) - L.measure_start;
    load_loop(&L, cl, cs, ws_now_ns() + DRAIN_NS, true);
    for (int i = 0; i < o->conns; i++)
        if (cs[i].state == WS_OPEN && L.lc[i].count) {
            r->errors += L.lc[i].count; /* unanswered */
            /* Late answers must not be taken for the next run's: drop the connection. */
            ws_conn_close(&cs[i]);
        }
    cl->on_message = saved;
    g_load = NULL;
    if (r->nsamples) qsort(r->samples, r->nsamples, sizeof(uint64_t), cmp_u64);
    free(rings);
    free(L.lc);
    ws_buf_free(&L.scratch);
    r->seconds = (double)measured_ns / 1e9;
    return (r->errors == 0 && r->measured > 0) ? 0 : 1;
}

double ws_pct_us(const ws_load_result *r, double q)
{
    if (r->nsamples == 0) return 0;
    size_t i = (size_t)(q * (double)(r->nsamples - 1) + 0.5);
    return (double)r->samples[i] / 1000.0;
}
