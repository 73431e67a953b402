/*
 * net_stdio.c - MCP over stdio (persona-mcp --stdio): one JSON-RPC message
 * per line on stdin, one per line on stdout, logs on stderr only.
 *
 * The reader runs on the main thread. Inline methods are answered at once;
 * the rest go to the worker pool, and their answers are written whenever
 * they are ready (MCP matches answers by id, so they need not be in order).
 * Every write to stdout is one write(2) of a whole line under a mutex. A
 * line longer than --max-message-bytes is answered with an error and
 * skipped; a last line without a newline is still processed at end of
 * input. At EOF (or SIGTERM) the server waits for the work in flight, then
 * stops.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/json.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/workq.h"
#include "mcp/mcp.h"
#include "net/net.h"
#include "rpc/rpc.h"

typedef struct out_sink {
    rpc_sink sink;
    pthread_mutex_t mu;
    pthread_cond_t idle;
    int busy; /* jobs and deferred answers in flight */
    atomic_int refs;
} out_sink;

static out_sink g_out = {.mu = PTHREAD_MUTEX_INITIALIZER, .idle = PTHREAD_COND_INITIALIZER};
static volatile sig_atomic_t *g_stop;

static void write_all(const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(STDOUT_FILENO, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return; /* the client went away */
        p += w;
        n -= (size_t)w;
    }
}

static void out_send(rpc_sink *s, jw *frame)
{
    (void)s;
    jw_append(frame, "\n", 1);
    pthread_mutex_lock(&g_out.mu);
    write_all(jw_data(frame), jw_size(frame));
    pthread_mutex_unlock(&g_out.mu);
    jw_free(frame);
}

static void busy_add(int d)
{
    pthread_mutex_lock(&g_out.mu);
    g_out.busy += d;
    if (g_out.busy == 0) pthread_cond_broadcast(&g_out.idle);
    pthread_mutex_unlock(&g_out.mu);
}

static void out_finish(rpc_sink *s)
{
    (void)s;
    busy_add(-1); /* an ordered deferred answer is complete */
}

static void out_ref(rpc_sink *s)
{
    (void)s;
    atomic_fetch_add(&g_out.refs, 1);
}

static void out_unref(rpc_sink *s)
{
    (void)s;
    atomic_fetch_sub(&g_out.refs, 1);
}

static void out_watch(rpc_sink *s, rpc_deferred *d)
{
    (void)s, (void)d;
}

static const rpc_sink_ops g_ops = {out_send, out_finish, out_ref, out_unref, out_watch, out_watch};

/* ---- execution -------------------------------------------------------------- */

typedef struct st_job {
    app *a;
    rpc_session *s;
    char *raw;
    size_t len;
    uint64_t t0;
} st_job;

static void execute(app *a, rpc_session *s, const char *raw, size_t len, uint64_t t0)
{
    jarena ar;
    jarena_init(&ar);
    json_error err;
    jw out;
    jw_init(&out, 0, 512);
    jv *msg = json_parse(&ar, raw, len, len + JSON_PADDING, JSON_DEFAULT_MAX_DEPTH, &err);
    int r = RPC_EXEC_DONE;
    if (!msg)
        rpc_write_error(&out, NULL, RPC_PARSE_ERROR, "Parse error", err.msg);
    else
        r = rpc_execute(a, s, &g_out.sink, msg, &out, &ar, t0);
    if (r == RPC_EXEC_ORDERED) busy_add(1);
    if (jw_size(&out)) out_send(&g_out.sink, &out);
    jw_free(&out);
    jarena_free(&ar);
}

static void job_run(void *arg)
{
    st_job *j = arg;
    execute(j->a, j->s, j->raw, j->len, j->t0);
    rpc_session_unref(j->s);
    free(j->raw);
    free(j);
    busy_add(-1);
}

static void on_line(app *a, rpc_session *s, char *line, size_t len)
{
    while (len && (line[len - 1] == '\r' || line[len - 1] == ' ')) len--;
    if (!len) return;
    uint64_t t0 = metrics_now_ns();
    jarena ar;
    jarena_init(&ar);
    json_error err;
    jv *msg = json_parse(&ar, line, len, len + JSON_PADDING, JSON_DEFAULT_MAX_DEPTH, &err);
    bool inline_ok = !msg || rpc_message_where(a, s, msg) == RPC_INLINE;
    jarena_free(&ar);
    if (inline_ok) {
        execute(a, s, line, len, t0);
        return;
    }
    st_job *j = calloc(1, sizeof *j);
    if (!j || !(j->raw = malloc(len + JSON_PADDING))) abort();
    memcpy(j->raw, line, len);
    memset(j->raw + len, 0, JSON_PADDING);
    j->len = len;
    j->a = a;
    j->s = s;
    j->t0 = t0;
    rpc_session_ref(s);
    busy_add(1);
    workq_push(a->workers, job_run, j);
}

static void too_long(size_t limit)
{
    char msg[128];
    snprintf(msg, sizeof msg, "Invalid Request: message longer than %zu bytes", limit);
    jw out;
    jw_init(&out, 0, 256);
    rpc_write_error(&out, NULL, RPC_INVALID_REQUEST, msg, NULL);
    out_send(&g_out.sink, &out);
}

/* ---- the loop -------------------------------------------------------------------- */

static void read_loop(app *a, rpc_session *s)
{
    size_t limit = a->cfg.max_message_bytes, cap = 65536, len = 0;
    char *buf = malloc(cap + JSON_PADDING);
    bool skipping = false;
    if (!buf) abort();
    for (;;) {
        if (*g_stop) break;
        if (cap - len < 4096) {
            cap *= 2;
            if (!(buf = realloc(buf, cap + JSON_PADDING))) abort();
        }
        ssize_t n = read(STDIN_FILENO, buf + len, cap - len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        size_t start = 0, end = len + (size_t)n;
        for (size_t i = len; i < end; i++) {
            if (buf[i] != '\n') continue;
            if (!skipping && i - start > limit)
                too_long(limit); /* a long line that arrived whole in one read */
            else if (!skipping)
                on_line(a, s, buf + start, i - start);
            skipping = false;
            start = i + 1;
        }
        len = end - start;
        memmove(buf, buf + start, len);
        if (len > limit) { /* the rest of this line is dropped */
            if (!skipping) too_long(limit);
            skipping = true;
            len = 0;
        }
    }
    if (len && !skipping) on_line(a, s, buf, len); /* a last line without newline */
    free(buf);
}

int net_stdio_run(app *a, volatile sig_atomic_t *stop)
{
    g_stop = stop;
    g_out.sink.ops = &g_ops;
    g_out.sink.headroom = 0;
    rpc_session *s = rpc_session_new(net_next_session_id());
    mcp_session_setup(s, a);
    mcp_session_set_notify(s, &g_out.sink);
    log_info("serving MCP on stdio", NULL);
    read_loop(a, s);
    pthread_mutex_lock(&g_out.mu);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 30;
    while (g_out.busy > 0 && pthread_cond_timedwait(&g_out.idle, &g_out.mu, &ts) == 0) {
    }
    pthread_mutex_unlock(&g_out.mu);
    mcp_session_set_notify(s, NULL);
    rpc_session_unref(s);
    return 0;
}
