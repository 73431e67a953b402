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
 *
 * The WebSocket client, the frame parser and the load loop live in wsclient.c (shared
 * with bench_memory and bench_chat); this file is the persona.status request, the
 * options and the report.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsclient.h"

struct options {
    const char *host, *path, *persona, *ready_file;
    int port, conns, inflight, max_pending;
    double seconds, warmup, connect_timeout;
    bool idle;
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
static ws_buf req_prefix; /* {"jsonrpc":...,"persona_id":"<id>"},"id": */

static void die(const char *what)
{
    fprintf(stderr, "bench_wsload: %s\n", what);
    exit(2);
}

/* ---- request construction ------------------------------------------------------------- */

static void build_request_prefix(const char *persona)
{
    ws_buf *b = &req_prefix;
    const char *head = "{\"jsonrpc\":\"2.0\",\"method\":\"persona.status\","
                       "\"params\":{\"persona_id\":\"";
    ws_buf_append(b, head, strlen(head));
    for (const unsigned char *p = (const unsigned char *)persona; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            ws_buf_append(b, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", *p);
            ws_buf_append(b, esc, 6);
        } else {
            ws_buf_append(b, p, 1);
        }
    }
    const char *tail = "\"},\"id\":";
    ws_buf_append(b, tail, strlen(tail));
}

static void build_status(void *ud, int conn, uint64_t id, ws_buf *out)
{
    (void)ud, (void)conn;
    ws_buf_append(out, req_prefix.data, req_prefix.len);
    ws_buf_printf(out, "%llu}", (unsigned long long)id);
}

/* ---- main ----------------------------------------------------------------------------- */

static void on_signal(int sig)
{
    (void)sig;
    ws_stop_requested = 1;
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

static int count_open(ws_conn *cs)
{
    int n = 0;
    for (int i = 0; i < opt.conns; i++) n += cs[i].state == WS_OPEN;
    return n;
}

static int run_idle(ws_client *cl, ws_conn *cs, int open, int failed)
{
    printf("READY open=%d failed=%d\n", open, failed);
    fflush(stdout);
    if (opt.ready_file) {
        char tmp[4096];
        snprintf(tmp, sizeof(tmp), "%s.tmp", opt.ready_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%d\n", open) < 0 || fclose(f) != 0 || rename(tmp, opt.ready_file))
            die("cannot write the ready file");
    }
    uint64_t until = ws_now_ns() + (uint64_t)(opt.seconds * 1e9);
    while (!ws_stop_requested) {
        uint64_t t = ws_now_ns();
        if (t >= until) break;
        int ms = (int)((until - t) / 1000000) + 1;
        ws_poll(cl, ms > 100 ? 100 : ms);
    }
    int still = count_open(cs);
    printf("HELD open=%d closed_by_server=%d\n", still, open - still);
    printf("RESULT mode=idle conns=%d open=%d failed=%d still_open=%d\n", opt.conns, open, failed,
           still);
    ws_close_all(cl, cs, opt.conns);
    return (open == opt.conns && still == open) ? 0 : 1;
}

static int run_load(ws_client *cl, ws_conn *cs, int open, int failed)
{
    ws_load_opts o = {.conns = opt.conns,
                      .inflight = opt.inflight,
                      .seconds = opt.seconds,
                      .warmup = opt.warmup,
                      .build = build_status};
    ws_load_result r;
    ws_load_run(cl, cs, &o, &r);
    ws_close_all(cl, cs, opt.conns);
    uint64_t errors = r.errors + cl->protocol_errors;
    double secs = r.seconds;
    double rps = secs > 0 ? (double)r.measured / secs : 0;
    printf("bench_wsload: %d/%d conns x %d in flight, %.1f s (+%.1f s warmup), "
           "ws://%s:%d%s persona.status\n",
           open, opt.conns, opt.inflight, secs, opt.warmup, opt.host, opt.port, opt.path);
    printf("requests %llu  rps %.1f  errors %llu (error responses %llu, id mismatches %llu, "
           "bad frames %llu, connect failures %d)\n",
           (unsigned long long)r.measured, rps, (unsigned long long)errors,
           (unsigned long long)r.error_responses, (unsigned long long)r.id_mismatch,
           (unsigned long long)cl->bad_frames, failed);
    double mx = r.nsamples ? (double)r.samples[r.nsamples - 1] / 1000.0 : 0;
    printf("latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", ws_pct_us(&r, 0.50),
           ws_pct_us(&r, 0.90), ws_pct_us(&r, 0.99), ws_pct_us(&r, 0.999), mx);
    printf("RESULT mode=load conns=%d open=%d inflight=%d seconds=%.3f requests=%llu rps=%.1f "
           "p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f errors=%llu "
           "total_responses=%llu connect_failures=%d\n",
           opt.conns, open, opt.inflight, secs, (unsigned long long)r.measured, rps,
           ws_pct_us(&r, 0.50), ws_pct_us(&r, 0.90), ws_pct_us(&r, 0.99), ws_pct_us(&r, 0.999), mx,
           (unsigned long long)(errors + (uint64_t)failed), (unsigned long long)r.total_responses,
           failed);
    int rc = (errors == 0 && failed == 0 && r.measured > 0) ? 0 : 1;
    free(r.samples);
    return rc;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    if (!opt.idle) build_request_prefix(opt.persona);
    struct sigaction sa_sig = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa_sig, NULL);
    sigaction(SIGTERM, &sa_sig, NULL);
    signal(SIGPIPE, SIG_IGN);

    ws_client cl;
    if (ws_client_init(&cl, opt.host, opt.port, opt.path) < 0) return 2;
    cl.user_agent = "bench_wsload";
    ws_conn *cs = calloc((size_t)opt.conns, sizeof(*cs));
    if (!cs) die("out of memory");
    int open = ws_connect_all(&cl, cs, opt.conns, opt.max_pending, opt.connect_timeout);
    int failed = opt.conns - open;
    if (open < opt.conns)
        fprintf(stderr, "bench_wsload: %d of %d connections failed%s%d\n", failed, opt.conns,
                cl.http_status_seen ? "; last HTTP status " : "", cl.http_status_seen);
    int rc = open == 0  ? 1
             : opt.idle ? run_idle(&cl, cs, open, failed)
                        : run_load(&cl, cs, open, failed);
    if (open == 0)
        printf("RESULT mode=%s conns=%d open=0 errors=%d\n", opt.idle ? "idle" : "load", opt.conns,
               opt.conns);
    free(cs);
    ws_buf_free(&req_prefix);
    ws_client_free(&cl);
    return rc;
}
