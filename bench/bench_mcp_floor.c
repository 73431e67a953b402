/*
 * bench_mcp_floor.c - the least an MCP server can do per tools/call, to put the
 * throughput target of issue 5 (10x the official TypeScript SDK's server) against what
 * the client, the kernel and this machine allow.
 *
 * It answers every request with one canned answer: persona-mcp's persona_get result for
 * the seeded persona Aria, byte for byte (1,671 bytes), the request's id spliced in at the
 * end. No JSON parsing (the id is the last "id": number of the line), no method lookup,
 * no validation, no database: not a server, a floor. bench/mcp.sh runs it beside the two
 * servers through the same client (bench/bench_mcp.c) and reports its calls/s.
 *
 *   bench_mcp_floor --stdio                    newline-delimited JSON on stdin/stdout;
 *                                              one read(2), then one write(2) for every
 *                                              answer to the lines it held
 *   bench_mcp_floor --http --port-file FILE    Streamable HTTP on 127.0.0.1 (ephemeral
 *                                              port written to FILE), keep-alive, epoll;
 *                                              one recv(2) and one send(2) per request
 *
 * A notification (no id) gets nothing on stdio and 202 over HTTP, as the spec says.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static const char ANSWER_HEAD[] =
    "{\"jsonrpc\":\"2.0\",\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"{\\\"persona\\\":"
    "{\\\"id\\\":\\\"2e42eef9-bc65-438b-8e77-550d2b0d9127\\\",\\\"name\\\":\\\"Aria\\\","
    "\\\"description\\\":\\\"A vibrant elven bard with sparkling eyes and an infectious laugh. "
    "She loves stories, music, and meeting new people.\\\",\\\"personality_traits\\\":{"
    "\\\"extroverted\\\":90,\\\"creative\\\":85,\\\"empathetic\\\":80,\\\"curious\\\":75,"
    "\\\"optimistic\\\":85},\\\"topic_preferences\\\":{\\\"music\\\":95,\\\"stories\\\":90,"
    "\\\"travel\\\":85,\\\"gossip\\\":80,\\\"magic\\\":70,\\\"adventure\\\":85,\\\"art\\\":80,"
    "\\\"local_news\\\":75},\\\"charisma\\\":18,\\\"intelligence\\\":14,\\\"social_rank\\\":"
    "\\\"performer\\\",\\\"created_at\\\":\\\"2026-12-07T00:22:10.853061+00:00\\\"},"
    "\\\"interaction_state\\\":{\\\"interest_level\\\":50,\\\"interaction_fatigue\\\":0,"
    "\\\"current_priority\\\":\\\"social\\\",\\\"available_time\\\":600,\\\"social_energy\\\":150,"
    "\\\"cooldown_until\\\":0.0,\\\"is_available\\\":true},\\\"memory_stats\\\":{"
    "\\\"total_memories\\\":0}}\"}],\"structuredContent\":{\"persona\":{\"id\":"
    "\"2e42eef9-bc65-438b-8e77-550d2b0d9127\",\"name\":\"Aria\",\"description\":\"A vibrant "
    "elven bard with sparkling eyes and an infectious laugh. She loves stories, music, and "
    "meeting new people.\",\"personality_traits\":{\"extroverted\":90,\"creative\":85,"
    "\"empathetic\":80,\"curious\":75,\"optimistic\":85},\"topic_preferences\":{\"music\":95,"
    "\"stories\":90,\"travel\":85,\"gossip\":80,\"magic\":70,\"adventure\":85,\"art\":80,"
    "\"local_news\":75},\"charisma\":18,\"intelligence\":14,\"social_rank\":\"performer\","
    "\"created_at\":\"2026-12-07T00:22:10.853061+00:00\"},\"interaction_state\":{"
    "\"interest_level\":50,\"interaction_fatigue\":0,\"current_priority\":\"social\","
    "\"available_time\":600,\"social_energy\":150,\"cooldown_until\":0.0,\"is_available\":true},"
    "\"memory_stats\":{\"total_memories\":0}},\"isError\":false},\"id\":";

typedef struct buf {
    char *d;
    size_t len, cap;
} buf;

static void put(buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        if (!(b->d = realloc(b->d, b->cap))) abort();
    }
    memcpy(b->d + b->len, p, n);
    b->len += n;
}

/* The last "id": number of p[0, n) as text (start, length); false for none. */
static bool last_id(const char *p, size_t n, const char **id, size_t *idn)
{
    bool found = false;
    for (const char *q = p; (q = memmem(q, (size_t)(p + n - q), "\"id\":", 5)); q += 5) {
        const char *v = q + 5;
        size_t k = 0;
        while (v + k < p + n && v[k] >= '0' && v[k] <= '9') k++;
        if (k) {
            *id = v;
            *idn = k;
            found = true;
        }
    }
    return found;
}

/* The answer to the request p[0, n) appended to out; false for a notification. */
static bool answer(const char *p, size_t n, buf *out)
{
    const char *id;
    size_t idn;
    if (!last_id(p, n, &id, &idn)) return false;
    put(out, ANSWER_HEAD, sizeof ANSWER_HEAD - 1);
    put(out, id, idn);
    put(out, "}", 1);
    return true;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int run_stdio(void)
{
    buf in = {0}, out = {0};
    for (;;) {
        if (in.cap - in.len < 65536) {
            in.cap = in.cap * 2 + 65536;
            if (!(in.d = realloc(in.d, in.cap))) abort();
        }
        ssize_t r = read(0, in.d + in.len, in.cap - in.len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return 0;
        in.len += (size_t)r;
        size_t off = 0;
        char *nl;
        out.len = 0;
        while ((nl = memchr(in.d + off, '\n', in.len - off))) {
            if (answer(in.d + off, (size_t)(nl - in.d - off), &out)) put(&out, "\n", 1);
            off = (size_t)(nl - in.d) + 1;
        }
        memmove(in.d, in.d + off, in.len - off);
        in.len -= off;
        if (out.len && write_all(1, out.d, out.len) < 0) return 1;
    }
}

typedef struct hconn {
    int fd;
    buf in;
} hconn;

/* Answer every complete request in c->in with one send; -1 closes. */
static int http_serve(hconn *c, buf *out)
{
    size_t off = 0;
    out->len = 0;
    for (;;) {
        char *p = c->in.d + off, *end = memmem(p, c->in.len - off, "\r\n\r\n", 4);
        if (!end) break;
        size_t head = (size_t)(end + 4 - p), clen = 0;
        const char *cl = memmem(p, head, "ontent-Length:", 14);
        if (!cl) cl = memmem(p, head, "ontent-length:", 14);
        if (cl) clen = strtoul(cl + 14, NULL, 10);
        if (c->in.len - off < head + clen) break;
        buf body = {0};
        char hdr[256];
        int hn;
        if (answer(p + head, clen, &body)) {
            hn = snprintf(hdr, sizeof hdr,
                          "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          "Mcp-Session-Id: 0123456789abcdef0123456789abcdef\r\n"
                          "Content-Length: %zu\r\n\r\n",
                          body.len);
        } else {
            hn = snprintf(hdr, sizeof hdr,
                          "HTTP/1.1 202 Accepted\r\nMcp-Session-Id: "
                          "0123456789abcdef0123456789abcdef\r\nContent-Length: 0\r\n\r\n");
        }
        put(out, hdr, (size_t)hn);
        if (body.len) put(out, body.d, body.len);
        free(body.d);
        off += head + clen;
    }
    memmove(c->in.d, c->in.d + off, c->in.len - off);
    c->in.len -= off;
    if (out->len && send(c->fd, out->d, out->len, MSG_NOSIGNAL) != (ssize_t)out->len) return -1;
    return 0;
}

static int run_http(const char *port_file)
{
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 128) < 0 ||
        getsockname(ls, (struct sockaddr *)&sa, &sl) < 0) {
        perror("listen");
        return 1;
    }
    FILE *f = fopen(port_file, "w");
    if (!f) return 1;
    fprintf(f, "%d\n", ntohs(sa.sin_port));
    fclose(f);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    buf out = {0};
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            hconn *c = evs[i].data.ptr;
            if (!c) {
                int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0) continue;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                c = calloc(1, sizeof *c);
                if (!c) abort();
                c->fd = fd;
                struct epoll_event ce = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
                continue;
            }
            if (c->in.cap - c->in.len < 16384) {
                c->in.cap = c->in.cap * 2 + 16384;
                if (!(c->in.d = realloc(c->in.d, c->in.cap))) abort();
            }
            ssize_t r = recv(c->fd, c->in.d + c->in.len, c->in.cap - c->in.len, 0);
            if (r > 0) c->in.len += (size_t)r;
            if (r <= 0 || http_serve(c, &out) < 0) {
                close(c->fd); /* also leaves the epoll set */
                free(c->in.d);
                free(c);
            }
        }
    }
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--stdio")) return run_stdio();
    if (argc == 4 && !strcmp(argv[1], "--http") && !strcmp(argv[2], "--port-file"))
        return run_http(argv[3]);
    fprintf(stderr, "usage: bench_mcp_floor --stdio | --http --port-file FILE\n");
    return 2;
}
