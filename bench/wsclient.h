/*
 * wsclient.h - the benchmarks' WebSocket client and JSON-RPC load driver.
 *
 * Design. One thread, one epoll set (ws_client), any number of non-blocking
 * connections (ws_conn). A connection does an RFC 6455 client handshake (random
 * 16-byte key, Sec-WebSocket-Accept checked with our own SHA-1) and then exchanges
 * masked text frames (a fresh random mask per frame). Incoming frames are parsed fully
 * (7/16/64-bit lengths, continuation frames, control frames between fragments, masked
 * or not); pings are answered; each complete data message goes to the client's
 * on_message callback with the time it was read. Nothing here allocates per message
 * except buffer growth.
 *
 * Layers:
 *   - ws_conn_*: one connection driven by epoll events (ws_conn_on_events does connect
 *     completion, handshake, reads and flushes);
 *   - ws_connect_all / ws_poll / ws_close_all: many connections;
 *   - ws_call: blocking request/response on one open connection, for set-up steps;
 *   - ws_load_run: the load driver of bench_wsload, generalised: N connections with P
 *     requests in flight each, warmup/measure/drain phases, responses matched to the
 *     oldest outstanding request of their connection (a JSON-RPC server answers a
 *     connection in request order), exact latency percentiles from raw samples. The
 *     caller builds each request (ws_build_fn) and may check each answer (ws_check_fn).
 *
 * The JSON-RPC helper ws_scan_response reads only the top-level keys of a response
 * (id, result, error) without building a tree, so it costs little in the hot loop.
 * Everything is C17 plus POSIX/Linux (epoll, getrandom); no dependency on the server.
 */
#ifndef PMCP_BENCH_WSCLIENT_H
#define PMCP_BENCH_WSCLIENT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define WS_MAX_MESSAGE (64u << 20)

typedef struct ws_buf {
    char *data;
    size_t len, cap, off; /* off: bytes already consumed (read side) or written */
} ws_buf;

void ws_buf_reserve(ws_buf *b, size_t extra);
void ws_buf_append(ws_buf *b, const void *p, size_t n);
void ws_buf_printf(ws_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ws_buf_free(ws_buf *b);

enum ws_state { WS_CONNECTING, WS_HANDSHAKE, WS_OPEN, WS_CLOSED };

typedef struct ws_client ws_client;
typedef struct ws_conn ws_conn;

/* A complete data message (text, or binary - counted in bad_frames). The bytes may be
 * modified. Return false to make the connection fail. */
typedef bool (*ws_message_fn)(ws_conn *c, char *msg, size_t n, uint64_t t_ns);

struct ws_conn {
    ws_client *cl;
    int fd;
    int index; /* position in the caller's array, for its bookkeeping */
    enum ws_state state;
    char expect_accept[29];
    ws_buf in, out, msg;
    bool fragmented, want_out;
    void *user;
};

struct ws_client {
    const char *host, *path, *user_agent;
    int port;
    struct sockaddr_storage sa;
    socklen_t salen;
    int epfd;
    ws_message_fn on_message;
    uint64_t rng;
    /* counters */
    uint64_t bad_frames;       /* binary, unexpected, oversized or malformed frames */
    uint64_t protocol_errors;  /* ... of which made a connection fail */
    uint64_t closed_by_server; /* close frames received */
    int http_status_seen;      /* last non-101 handshake status */
};

uint64_t ws_now_ns(void);
uint64_t ws_rng(ws_client *cl);

/* Resolve host:port, create the epoll set, seed the RNG, self-test SHA-1.
 * Returns 0, or -1 with a message on stderr. */
int ws_client_init(ws_client *cl, const char *host, int port, const char *path);
void ws_client_free(ws_client *cl);

/* Non-blocking connect, registered with the client's epoll set. */
bool ws_conn_start(ws_client *cl, ws_conn *c);
/* Handle epoll events; false when the connection is finished (then ws_conn_close it). */
bool ws_conn_on_events(ws_conn *c, uint32_t events, uint64_t t);
void ws_queue_frame(ws_conn *c, unsigned opcode, const void *payload, size_t n);
static inline void ws_queue_text(ws_conn *c, const void *payload, size_t n)
{
    ws_queue_frame(c, 0x1, payload, n);
}
/* Write what the socket takes; false if the connection died. */
bool ws_conn_flush(ws_conn *c);
void ws_conn_close(ws_conn *c);

/* Connect n connections, at most max_pending handshakes at a time, within timeout_s.
 * Returns the number open; failures are closed (state WS_CLOSED). */
int ws_connect_all(ws_client *cl, ws_conn *cs, int n, int max_pending, double timeout_s);
/* One epoll round (at most timeout_ms): dispatch events, close connections that
 * failed. Returns the number of connections that failed in this round. */
int ws_poll(ws_client *cl, int timeout_ms);
/* Send close frames, wait up to 200 ms for the server, close every connection. */
void ws_close_all(ws_client *cl, ws_conn *cs, int n);

/* Blocking request/response on an open connection with nothing else in flight: send
 * req, wait for the next message (at most timeout_s); the reply (NUL-terminated) is
 * left in *reply (malloc'd; free it). Returns 0, or -1 on timeout or failure. */
int ws_call(ws_conn *c, const char *req, size_t n, double timeout_s, char **reply, size_t *len);

/* Top-level keys of a JSON-RPC response: integer id, presence of result and error. */
bool ws_scan_response(const char *p, size_t n, uint64_t *id, bool *has_result, bool *has_error);

/* ---- load driver ---------------------------------------------------------------------- */

typedef struct ws_load ws_load;
/* Append the request with this JSON-RPC id to out (one JSON text). */
typedef void (*ws_build_fn)(void *ud, int conn, uint64_t id, ws_buf *out);
/* Extra check of a response that already has the right id and a result; return false
 * to count it as an error. May be NULL. */
typedef bool (*ws_check_fn)(void *ud, int conn, uint64_t id, const char *msg, size_t n);

typedef struct ws_load_opts {
    int conns, inflight;
    double seconds, warmup;
    ws_build_fn build;
    ws_check_fn check;
    void *ud;
} ws_load_opts;

typedef struct ws_load_result {
    uint64_t measured, total_responses, errors, id_mismatch, error_responses, sent;
    double seconds;
    uint64_t *samples; /* latency of each measured request, ns, sorted */
    size_t nsamples;
} ws_load_result;

/* Run the load over the open connections of cs (n = o->conns). Returns 0 when nothing
 * failed and something was measured. Frees nothing of cs; free r->samples. */
int ws_load_run(ws_client *cl, ws_conn *cs, const ws_load_opts *o, ws_load_result *r);
/* Percentile q in [0, 1] of the sorted samples, microseconds. */
double ws_pct_us(const ws_load_result *r, double q);

/* Stop flag honoured by ws_load_run and ws_connect_all (set it from a signal handler). */
extern volatile sig_atomic_t ws_stop_requested;

#endif
