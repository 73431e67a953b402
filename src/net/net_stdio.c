/*
 * net_stdio.c - MCP over stdio (persona-mcp --stdio): one JSON-RPC message
 * per line on stdin, one per line on stdout, logs on stderr only.
 *
 * The reader runs on the main thread and parses each line once. Inline
 * methods (and tools/call of RAM-only tools) are answered at once; the rest
 * go to the worker pool with the parsed message, and their answers are
 * written whenever they are ready (MCP matches answers by id, so they need
 * not be in order). Answers are appended to one output buffer; one thread
 * at a time writes it, so answers that are ready together (the lines of one
 * read, or workers finishing while a write is under way) leave in a single
 * write(2), and no line is ever split between writers. A
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

/* Output not yet written, guarded by g_out.mu. One thread at a time writes
 * (writing); the others append and return, so answers that are ready
 * together leave in one write(2). Past OUT_HIGH bytes appenders wait. */
#define OUT_HIGH (4u << 20)
typedef struct out_buf {
    char *d;
    size_t len, cap;
} out_buf;
static struct {
    out_buf pending, spare;
    bool writing;
    pthread_cond_t drained;
} g_ob = {.drained = PTHREAD_COND_INITIALIZER};
/* The reader sets this while it answers the lines of one read(2): their
 * answers are written together when the chunk is done. */
static _Thread_local bool t_batching;

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

static void ob_append(out_buf *b, const char *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + n) cap *= 2;
        if (!(b->d = realloc(b->d, cap))) abort();
        b->cap = cap;
    }
    memcpy(b->d + b->len, p, n);
    b->len += n;
}

/* Write everything pending; called and returns with g_out.mu held, drops it
 * around each write(2). */
static void flush_locked(void)
{
    g_ob.writing = true;
    while (g_ob.pending.len) {
        out_buf b = g_ob.pending;
        g_ob.pending = g_ob.spare;
        g_ob.pending.len = 0;
        pthread_mutex_unlock(&g_out.mu);
        write_all(b.d, b.len);
        pthread_mutex_lock(&g_out.mu);
        b.len = 0;
        g_ob.spare = b;
        pthread_cond_broadcast(&g_ob.drained);
    }
    g_ob.writing = false;
    pthread_cond_broadcast(&g_ob.drained);
}

static void out_send(rpc_sink *s, jw *frame)
{
    (void)s;
    pthread_mutex_lock(&g_out.mu);
    while (g_ob.writing && g_ob.pending.len > OUT_HIGH) /* a client that does not read */
        pthread_cond_wait(&g_ob.drained, &g_out.mu);
    ob_append(&g_ob.pending, jw_data(frame), jw_size(frame));
    ob_append(&g_ob.pending, "\n", 1);
    if ((!t_batching || g_ob.pending.len > OUT_HIGH) && !g_ob.writing) flush_locked();
    pthread_mutex_unlock(&g_out.mu);
    jw_free(frame);
}

/* The reader's chunk is answered: write what it left pending. */
static void out_flush(void)
{
    pthread_mutex_lock(&g_out.mu);
    if (!g_ob.writing) flush_locked();
    pthread_mutex_unlock(&g_out.mu);
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

/* A message on its way to a worker; it owns the arena of the parsed message. */
typedef struct st_job {
    app *a;
    rpc_session *s;
    jarena ar;
    const jv *msg;
    uint64_t t0;
} st_job;

static void execute(app *a, rpc_session *s, const jv *msg, jarena *ar, uint64_t t0)
{
    jw out;
    jw_init(&out, 0, 2048);
    int r = rpc_execute(a, s, &g_out.sink, msg, &out, ar, t0);
    if (r == RPC_EXEC_ORDERED) busy_add(1);
    if (jw_size(&out)) out_send(&g_out.sink, &out);
    jw_free(&out);
}

static void job_run(void *arg)
{
    st_job *j = arg;
    execute(j->a, j->s, j->msg, &j->ar, j->t0);
    rpc_session_unref(j->s);
    jarena_free(&j->ar);
    free(j);
    busy_add(-1);
}

static void parse_error(const json_error *err)
{
    jw out;
    jw_init(&out, 0, 256);
    rpc_write_error(&out, NULL, RPC_PARSE_ERROR, "Parse error", err->msg);
    out_send(&g_out.sink, &out);
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
    if (!msg) {
        parse_error(&err);
    } else if (rpc_message_where(a, s, msg) == RPC_INLINE) {
        execute(a, s, msg, &ar, t0);
    } else {
        st_job *j = calloc(1, sizeof *j);
        if (!j) abort();
        j->ar = ar;
        jarena_init(&ar);
        j->msg = msg;
        j->a = a;
        j->s = s;
        j->t0 = t0;
        rpc_session_ref(s);
        busy_add(1);
        workq_push(a->workers, job_run, j);
    }
    jarena_free(&ar);
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
        t_batching = true;
        for (size_t i = len; i < end; i++) {
            if (buf[i] != '\n') continue;
            if (!skipping && i - start > limit)
                too_long(limit); /* a long line that arrived whole in one read */
            else if (!skipping)
                on_line(a, s, buf + start, i - start);
            skipping = false;
            start = i + 1;
        }
        t_batching = false;
        out_flush();
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
    /* The last answers may still be in a writer's hands: see them out. */
    while (g_ob.writing && pthread_cond_timedwait(&g_ob.drained, &g_out.mu, &ts) == 0) {
    }
    if (!g_ob.writing) flush_locked();
    pthread_mutex_unlock(&g_out.mu);
    mcp_session_set_notify(s, NULL);
    rpc_session_unref(s);
    return 0;
}
