/*
 * bench_memory.c - vector memory through the server (issue 3), with its peers.
 *
 * Modes (bench/memory.sh runs them and prints the summary with ratios):
 *
 *   bench_memory ops --port P      against a running persona-mcp (fresh data dir):
 *     (a) the original's table: C = 10, 50, 100, 200 WebSocket connections, one
 *         operation in flight each (C concurrent operations); even connections store
 *         (memory.store, built-in embedder, ~200-char text, persona metadata) into
 *         persona "table-w", odd ones search (memory.search, top-10, text query) in
 *         persona "table-r" (1,000 memories, seeded first, so the searched collection
 *         does not grow during the table). ops/s, p50/p99.
 *     (b) one memory.store per request over one WebSocket: strict request/response
 *         (p50/p99, stores/s) and pipelined (P requests in flight on the connection;
 *         the server answers a connection in request order). Every answer must say
 *         stored and not duplicate. Also 8 connections with one store in flight each (the
 *         writer's group commit across connections).
 *     (c) memory.store_batch of 100 such memories: records/s, strict and pipelined.
 *     (d) exact top-10 search filtered by persona. 100,000 memories with client
 *         embeddings (384-dim random Gaussian, unit length; the `embedding` param) are
 *         stored first with memory.store_batch: persona knn-1k (1,000 rows),
 *         knn-10k-0..8 (9 x 10,000) and knn-fill (9,000), interleaved by batch. The
 *         bench keeps the vectors of knn-1k and knn-10k-0 exactly as the server sees
 *         them (the printed decimals parsed back to double, cast to float, normalised
 *         with the server's own mem_normalize) and computes each query's reference
 *         top-10 by brute force in double precision. Queries (client embeddings, 200
 *         distinct, cycled) run strict request/response on one connection: queries/s,
 *         p50/p99 and recall@10 of every timed answer against the reference. A row
 *         whose reference score is within 1e-5 of the reference 10th score counts as
 *         a hit (float ties); rows of another persona count as misses.
 *
 *   bench_memory sqlite-peer --dir D   the in-run peer for stores: SQLite itself
 *     inserting the same rows (same schema, created by the server's own migration
 *     scripts; same pragmas as the server's store: WAL, synchronous=NORMAL,
 *     wal_autocheckpoint=4096; time-ordered UUIDv7 ids and the queued rows indexed
 *     for full text every 1,024 rows, as the server does) with the embeddings
 *     computed beforehand: one transaction per row (autocommit), then 100 rows per
 *     transaction.
 *
 *   bench_memory startup --server BIN --dir D [--rows N]   start-up with N memories
 *     on disk (default 1,000,000): the server is started once on an empty data dir to
 *     create the schema and stopped; the bench then fills the database directly with
 *     SQLite (100 personas x N/100 rows, interleaved, random unit 384-dim embeddings,
 *     ~200-char text, FTS kept by the schema's triggers). Then, R times: exec the
 *     server, time exec -> port file (inotify on the directory, no polling) and exec
 *     -> first successful request (persona.list over WebSocket), then the first
 *     memory.search of a 10k-row persona (the lazy collection load), a second one
 *     (loaded), and the server's own pmcp_memory_collection_load_seconds_total from
 *     /metrics; stop with SIGTERM. The last run first drops the database's pages from
 *     the page cache (posix_fadvise DONTNEED) to show a cold start as well.
 *
 * Output: "key=value" lines (medians where repeated). Every phase is bounded in time;
 * exit status 0 when every request succeeded and recall was 1.0, 1 otherwise, 2 on
 * bad usage or set-up failure. Targets are judged by bench/memory.sh, not here.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "lib/json.h"
#include "lib/util.h"
#include "memory/mem_embed.h"
#include "store/store.h"
#include "wsclient.h"

#define DIM         384
#define TOPK        10
#define NQUERIES    200
#define TEXT_CHARS  200
#define KNN_BATCH   500
#define TABLE_SEED  1000
#define TIE_EPS     1e-5
#define MAX_PERSONA 64

static struct {
    const char *host, *mode, *server, *dir, *only;
    int port, repeat, pipeline, batch_inflight, pid;
    double seconds, warmup;
    long rows;
    char conc[128];
} opt = {.host = "127.0.0.1",
         .repeat = 3,
         .pipeline = 128,
         .batch_inflight = 4,
         .seconds = 3,
         .warmup = 0.5,
         .rows = 1000000,
         .conc = "10 50 100 200"};

static int g_failures; /* anything that makes the run invalid */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_memory: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

/* ---- random data ---------------------------------------------------------------------- */

static uint64_t g_rng = 0x9E3779B97F4A7C15ULL;

static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

static double gauss(void)
{
    double u = ((double)(rnd() >> 11) + 1.0) / 9007199254740993.0;
    double v = (double)(rnd() >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static const char *const k_words[] = {
    "the",   "a",      "memory", "persona", "music",  "dragon",   "travel", "story",    "ancient",
    "spell", "market", "friend", "quiet",   "river",  "lantern",  "bard",   "scholar",  "library",
    "night", "warm",   "bread",  "song",    "letter", "mountain", "ship",   "remember", "laughed",
    "about", "with",   "into",   "under",   "golden", "curious",  "tavern", "north",    "winter"};
#define NWORDS (sizeof k_words / sizeof k_words[0])

/* ~TEXT_CHARS characters: a unique prefix, then common words. */
static size_t make_text(char *out, size_t size, const char *prefix)
{
    size_t len = (size_t)snprintf(out, size, "%s", prefix);
    while (len + 12 < size && len < TEXT_CHARS) {
        const char *w = k_words[rnd() % NWORDS];
        len += (size_t)snprintf(out + len, size - len, " %s", w);
    }
    out[len] = 0;
    return len;
}

/* Random unit vectors as 5-decimal fixed point ("-0.01234" is -1234): the value the
 * server sees for "-0.01234" is exactly -1234 / 1e5 (an IEEE division is correctly
 * rounded, as a decimal parse is), so the bench knows every vector bit for bit. */
static void random_unit_fixed(int *out)
{
    double v[DIM], s = 0;
    for (int i = 0; i < DIM; i++) {
        v[i] = gauss();
        s += v[i] * v[i];
    }
    s = 1.0 / sqrt(s);
    for (int i = 0; i < DIM; i++) {
        long q = lround(v[i] * s * 1e5);
        out[i] = (int)(q > 99999 ? 99999 : q < -99999 ? -99999 : q);
    }
}

/* The float vector the server stores for the decimals in q: parse, cast, normalise. */
static void server_vector(const int *q, float *out)
{
    for (int i = 0; i < DIM; i++) out[i] = (float)((double)q[i] / 1e5);
    mem_normalize(out, DIM);
}

static void append_vector(ws_buf *b, const int *q)
{
    ws_buf_append(b, "[", 1);
    for (int i = 0; i < DIM; i++) {
        if (i) ws_buf_append(b, ",", 1);
        ws_buf_printf(b, "%s0.%05d", q[i] < 0 ? "-" : "", q[i] < 0 ? -q[i] : q[i]);
    }
    ws_buf_append(b, "]", 1);
}

/* ---- statistics ----------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    if (n <= 0) return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- connections ---------------------------------------------------------------------- */

static ws_client g_cl;

static ws_conn *open_conns(int n)
{
    ws_conn *cs = calloc((size_t)n, sizeof *cs);
    if (!cs) die("out of memory");
    int open = ws_connect_all(&g_cl, cs, n, 256, 20);
    if (open != n) die("%d of %d WebSocket connections failed", n - open, n);
    return cs;
}

static void close_conns(ws_conn *cs, int n)
{
    ws_close_all(&g_cl, cs, n);
    free(cs);
}

/* A blocking call that must succeed; returns the parsed response's "result". */
static const jv *call_ok(ws_conn *c, const char *req, size_t n, double timeout, jarena *a,
                         char **raw)
{
    size_t len;
    if (ws_call(c, req, n, timeout, raw, &len) < 0) die("no answer within %.0f s", timeout);
    json_error err;
    jv *doc = json_parse(a, *raw, len, len, 64, &err);
    const jv *res = doc ? jv_get(doc, "result") : NULL;
    if (!res) die("request failed: %.300s", *raw);
    return res;
}

/* utime + stime of the server process (all threads), seconds; 0 without --pid. */
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
    unsigned long long ut = 0, stt = 0;
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stt) != 2)
        return 0;
    return (double)(ut + stt) / (double)sysconf(_SC_CLK_TCK);
}

static bool phase_on(const char *name)
{
    if (!opt.only) return true;
    size_t n = strlen(name);
    for (const char *p = strstr(opt.only, name); p; p = strstr(p + 1, name))
        if ((p == opt.only || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return true;
    return false;
}

/* ---- one measured cell ---------------------------------------------------------------- */

typedef struct cell {
    double rate, p50, p99, p999; /* rate: responses/s of the median run */
    double cpu_us;               /* server CPU per response, over every run (--pid) */
    uint64_t errors;
} cell;

typedef struct runspec {
    const char *key; /* output prefix */
    int conns, inflight;
    ws_build_fn build;
    ws_check_fn check;
    void *ud;
    double per_response; /* records per response (batch: 100) */
} runspec;

/* Runs spec opt.repeat times on fresh connections; prints each run and the median run. */
static cell run_cell(const runspec *s)
{
    int R = opt.repeat;
    cell runs[16] = {0};
    if (R > 16) R = 16;
    double cpu = 0;
    uint64_t responses = 0;
    for (int r = 0; r < R; r++) {
        ws_conn *cs = open_conns(s->conns);
        double cpu0 = server_cpu();
        ws_load_opts o = {.conns = s->conns,
                          .inflight = s->inflight,
                          .seconds = opt.seconds,
                          .warmup = opt.warmup,
                          .build = s->build,
                          .check = s->check,
                          .ud = s->ud};
        ws_load_result res;
        uint64_t perr = g_cl.protocol_errors;
        ws_load_run(&g_cl, cs, &o, &res);
        close_conns(cs, s->conns);
        cpu += server_cpu() - cpu0;
        responses += res.total_responses;
        runs[r] = (cell){.rate = res.seconds > 0 ? (double)res.measured / res.seconds : 0,
                         .p50 = ws_pct_us(&res, 0.5),
                         .p99 = ws_pct_us(&res, 0.99),
                         .p999 = ws_pct_us(&res, 0.999),
                         .errors = res.errors + (g_cl.protocol_errors - perr)};
        printf("run.%s.%d rate=%.1f p50_us=%.1f p99_us=%.1f errors=%llu\n", s->key, r + 1,
               runs[r].rate * s->per_response, runs[r].p50, runs[r].p99,
               (unsigned long long)runs[r].errors);
        fflush(stdout);
        if (runs[r].errors) g_failures++;
        free(res.samples);
    }
    /* the median-throughput run is reported whole */
    int order[16] = {0};
    for (int i = 0; i < R; i++) order[i] = i;
    for (int i = 1; i < R; i++)
        for (int j = i; j > 0 && runs[order[j]].rate < runs[order[j - 1]].rate; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    cell m = runs[order[(R - 1) / 2]];
    uint64_t errs = 0;
    for (int i = 0; i < R; i++) errs += runs[i].errors;
    m.errors = errs;
    m.cpu_us = responses ? cpu * 1e6 / (double)responses : 0;
    if (opt.pid > 0) printf("mem.%s.server_cpu_us_per_response=%.1f\n", s->key, m.cpu_us);
    return m;
}

/* ---- request builders ----------------------------------------------------------------- */

static uint64_t g_unique; /* content counter: every stored text is new */

typedef struct store_gen {
    const char *persona;
    const char *search_persona; /* mixed: odd connections search here */
    int batch;                  /* 0 = memory.store, else memory.store_batch of this size */
    bool mixed;
} store_gen;

static void append_item(ws_buf *out, const char *persona)
{
    char prefix[64], text[TEXT_CHARS + 64];
    unsigned long long n = (unsigned long long)++g_unique;
    snprintf(prefix, sizeof prefix, "note %llu:", n);
    make_text(text, sizeof text, prefix);
    ws_buf_printf(out,
                  "\"content\":\"%s\",\"memory_type\":\"observation\",\"metadata\":{\"persona\":"
                  "\"%s\",\"source\":\"bench\",\"n\":%llu}",
                  text, persona, n);
}

static void build_store(void *ud, int conn, uint64_t id, ws_buf *out)
{
    store_gen *g = ud;
    if (g->mixed && (conn & 1)) {
        char q[96];
        make_text(q, 48, "what about");
        ws_buf_printf(
            out,
            "{\"jsonrpc\":\"2.0\",\"method\":\"memory.search\",\"params\":{\"persona_id\":"
            "\"%s\",\"query\":\"%s\",\"n_results\":10},\"id\":%llu}",
            g->search_persona, q, (unsigned long long)id);
        return;
    }
    if (!g->batch) {
        ws_buf_printf(out,
                      "{\"jsonrpc\":\"2.0\",\"method\":\"memory.store\",\"params\":{\"persona_id\":"
                      "\"%s\",",
                      g->persona);
        append_item(out, g->persona);
        ws_buf_printf(out, "},\"id\":%llu}", (unsigned long long)id);
        return;
    }
    ws_buf_printf(
        out,
        "{\"jsonrpc\":\"2.0\",\"method\":\"memory.store_batch\",\"params\":{\"persona_id\":"
        "\"%s\",\"memories\":[",
        g->persona);
    for (int i = 0; i < g->batch; i++) {
        ws_buf_append(out, i ? ",{" : "{", i ? 2 : 1);
        append_item(out, g->persona);
        ws_buf_append(out, "}", 1);
    }
    ws_buf_printf(out, "]},\"id\":%llu}", (unsigned long long)id);
}

static bool check_store(void *ud, int conn, uint64_t id, const char *msg, size_t n)
{
    store_gen *g = ud;
    (void)id;
    if (g->mixed && (conn & 1)) return memmem(msg, n, "\"result_count\":10", 17) != NULL;
    if (!g->batch) return memmem(msg, n, "\"duplicate\":false", 17) != NULL;
    char want[48];
    int k = snprintf(want, sizeof want, "\"stored\":%d,", g->batch);
    return memmem(msg, n, want, (size_t)k) != NULL;
}

/* ---- (a) the original's table, (b) single stores, (c) batches ------------------------- */

static void seed_text_persona(ws_conn *c, const char *persona, int rows)
{
    store_gen g = {.persona = persona, .batch = 100};
    ws_buf b = {0};
    for (int done = 0; done < rows; done += 100) {
        b.len = 0;
        build_store(&g, 0, (uint64_t)done + 1, &b);
        jarena a;
        jarena_init(&a);
        char *raw;
        call_ok(c, b.data, b.len, 60, &a, &raw);
        free(raw);
        jarena_free(&a);
    }
    ws_buf_free(&b);
}

static const double k_original[] = {1224, 5304, 12543, 10076}; /* ops/s at 10/50/100/200 */

static void bench_table(void)
{
    ws_conn *c = open_conns(1);
    seed_text_persona(&c[0], "table-r", TABLE_SEED);
    close_conns(c, 1);
    store_gen g = {.persona = "table-w", .search_persona = "table-r", .mixed = true};
    char *save, buf[sizeof opt.conc];
    snprintf(buf, sizeof buf, "%s", opt.conc);
    for (char *tok = strtok_r(buf, " ,", &save); tok; tok = strtok_r(NULL, " ,", &save)) {
        int conc = atoi(tok);
        if (conc < 2 || conc > 2000) die("bad concurrency %s", tok);
        char key[64];
        snprintf(key, sizeof key, "table.c%d", conc);
        runspec s = {.key = key,
                     .conns = conc,
                     .inflight = 1,
                     .build = build_store,
                     .check = check_store,
                     .ud = &g,
                     .per_response = 1};
        cell m = run_cell(&s);
        printf("mem.table.c%d.ops_per_s=%.0f\n", conc, m.rate);
        printf("mem.table.c%d.p50_us=%.1f\nmem.table.c%d.p99_us=%.1f\n", conc, m.p50, conc, m.p99);
        printf("mem.table.c%d.errors=%llu\n", conc, (unsigned long long)m.errors);
        int idx = conc == 10 ? 0 : conc == 50 ? 1 : conc == 100 ? 2 : conc == 200 ? 3 : -1;
        if (idx >= 0) printf("mem.table.c%d.original_claim=%.0f\n", conc, k_original[idx]);
        fflush(stdout);
    }
}

static void bench_stores(void)
{
    store_gen g = {.persona = "single"};
    runspec s = {.key = "store1.strict",
                 .conns = 1,
                 .inflight = 1,
                 .build = build_store,
                 .check = check_store,
                 .ud = &g,
                 .per_response = 1};
    cell m = run_cell(&s);
    printf("mem.store1.strict.stores_per_s=%.0f\nmem.store1.strict.p50_us=%.1f\n"
           "mem.store1.strict.p99_us=%.1f\nmem.store1.strict.errors=%llu\n",
           m.rate, m.p50, m.p99, (unsigned long long)m.errors);
    s.key = "store1.pipelined";
    s.inflight = opt.pipeline;
    m = run_cell(&s);
    printf("mem.store1.pipelined.inflight=%d\nmem.store1.pipelined.stores_per_s=%.0f\n"
           "mem.store1.pipelined.p50_us=%.1f\nmem.store1.pipelined.p99_us=%.1f\n"
           "mem.store1.pipelined.errors=%llu\n",
           opt.pipeline, m.rate, m.p50, m.p99, (unsigned long long)m.errors);
    fflush(stdout);

    /* the same stores from 8 connections, one in flight each: what the writer's group
     * commit does when stores arrive concurrently (a connection's own requests run one
     * at a time) */
    s.key = "store1.c8";
    s.conns = 8;
    s.inflight = 1;
    m = run_cell(&s);
    printf("mem.store1.c8.stores_per_s=%.0f\nmem.store1.c8.p50_us=%.1f\nmem.store1.c8.p99_us=%.1f\n"
           "mem.store1.c8.errors=%llu\n",
           m.rate, m.p50, m.p99, (unsigned long long)m.errors);
    fflush(stdout);

    store_gen gb = {.persona = "batch", .batch = 100};
    runspec b = {.key = "batch100.strict",
                 .conns = 1,
                 .inflight = 1,
                 .build = build_store,
                 .check = check_store,
                 .ud = &gb,
                 .per_response = 100};
    m = run_cell(&b);
    printf("mem.batch100.strict.records_per_s=%.0f\nmem.batch100.strict.p50_us=%.1f\n"
           "mem.batch100.strict.p99_us=%.1f\nmem.batch100.strict.errors=%llu\n",
           m.rate * 100, m.p50, m.p99, (unsigned long long)m.errors);
    b.key = "batch100.pipelined";
    b.inflight = opt.batch_inflight;
    m = run_cell(&b);
    printf("mem.batch100.pipelined.inflight=%d\nmem.batch100.pipelined.records_per_s=%.0f\n"
           "mem.batch100.pipelined.p50_us=%.1f\nmem.batch100.pipelined.p99_us=%.1f\n"
           "mem.batch100.pipelined.errors=%llu\n",
           opt.batch_inflight, m.rate * 100, m.p50, m.p99, (unsigned long long)m.errors);
    fflush(stdout);
}

/* ---- (d) filtered top-10 with recall -------------------------------------------------- */

typedef struct knn_persona {
    const char *name;
    int rows;
    long base; /* global index of its first row */
    float *vecs;
    int ref[NQUERIES][TOPK];
    double ref10[NQUERIES]; /* reference score of the 10th hit */
} knn_persona;

typedef struct knn_state {
    knn_persona *p;
    int qfixed[NQUERIES][DIM];
    float qv[NQUERIES][DIM];
    ws_buf qjson[NQUERIES]; /* the "embedding":[...] text of each query */
    /* recall accounting */
    uint64_t answers, hits, strict_hits, wrong_persona, short_answers;
    double min_recall;
} knn_state;

static knn_state *g_knn;

static double dotd(const float *a, const float *b)
{
    double s = 0;
    for (int i = 0; i < DIM; i++) s += (double)a[i] * (double)b[i];
    return s;
}

static void reference(knn_persona *p, const float (*qv)[DIM])
{
    double *score = malloc(sizeof(double) * (size_t)p->rows);
    if (!score) die("out of memory");
    for (int q = 0; q < NQUERIES; q++) {
        for (int r = 0; r < p->rows; r++) score[r] = dotd(p->vecs + (size_t)r * DIM, qv[q]);
        /* selection of the 10 best (bounded: TOPK passes) */
        for (int k = 0; k < TOPK; k++) {
            int best = -1;
            for (int r = 0; r < p->rows; r++) {
                bool taken = false;
                for (int j = 0; j < k && !taken; j++) taken = p->ref[q][j] == r;
                if (!taken && (best < 0 || score[r] > score[best])) best = r;
            }
            p->ref[q][k] = best;
        }
        p->ref10[q] = score[p->ref[q][TOPK - 1]];
    }
    free(score);
}

static void build_search(void *ud, int conn, uint64_t id, ws_buf *out)
{
    knn_state *k = ud;
    (void)conn;
    int q = (int)(id % NQUERIES);
    ws_buf_printf(out,
                  "{\"jsonrpc\":\"2.0\",\"method\":\"memory.search\",\"params\":{\"persona_id\":"
                  "\"%s\",\"n_results\":10,\"embedding\":",
                  k->p->name);
    ws_buf_append(out, k->qjson[q].data, k->qjson[q].len);
    ws_buf_printf(out, "},\"id\":%llu}", (unsigned long long)id);
}

static bool check_search(void *ud, int conn, uint64_t id, const char *msg, size_t n)
{
    knn_state *k = ud;
    knn_persona *p = k->p;
    (void)conn;
    int q = (int)(id % NQUERIES);
    jarena a;
    jarena_init(&a);
    json_error err;
    jv *doc = json_parse(&a, msg, n, n, 64, &err);
    const jv *mems = doc ? jv_get(jv_get(doc, "result"), "memories") : NULL;
    bool ok = mems && mems->type == JV_ARRAY;
    int hits = 0, strict = 0, got = 0;
    for (uint32_t i = 0; ok && i < mems->len; i++) {
        const jv *content = jv_get(&mems->u.items[i], "content");
        long idx = -1;
        if (jv_is_str(content) && content->u.s[0] == 'v') idx = strtol(content->u.s + 1, NULL, 10);
        got++;
        long r = idx - p->base;
        if (r < 0 || r >= p->rows) {
            k->wrong_persona++;
            continue;
        }
        bool in = false;
        for (int j = 0; j < TOPK && !in; j++) in = p->ref[q][j] == r;
        strict += in;
        if (in || dotd(p->vecs + (size_t)r * DIM, k->qv[q]) >= p->ref10[q] - TIE_EPS) hits++;
    }
    jarena_free(&a);
    if (!ok) return false;
    if (got != TOPK) k->short_answers++;
    k->answers++;
    k->hits += (uint64_t)hits;
    k->strict_hits += (uint64_t)strict;
    double rec = (double)hits / TOPK;
    if (rec < k->min_recall) k->min_recall = rec;
    return true;
}

/* Store the 100k rows of (d); keeps the vectors of the two measured personas. */
static void seed_knn(knn_persona *ps, int np, double *secs_out, long *rows_out)
{
    ws_conn *c = open_conns(1);
    int cursor[MAX_PERSONA] = {0};
    ws_buf b = {0};
    int q[DIM];
    long total = 0;
    uint64_t t0 = ws_now_ns();
    for (int guard = 0; guard < 100000; guard++) {
        bool any = false;
        for (int pi = 0; pi < np; pi++) {
            knn_persona *p = &ps[pi];
            if (cursor[pi] >= p->rows) continue;
            any = true;
            int n = p->rows - cursor[pi] < KNN_BATCH ? p->rows - cursor[pi] : KNN_BATCH;
            b.len = 0;
            ws_buf_printf(&b,
                          "{\"jsonrpc\":\"2.0\",\"method\":\"memory.store_batch\",\"params\":{"
                          "\"persona_id\":\"%s\",\"memories\":[",
                          p->name);
            for (int i = 0; i < n; i++) {
                int r = cursor[pi] + i;
                char prefix[64], text[TEXT_CHARS + 64];
                snprintf(prefix, sizeof prefix, "v%06ld %s:", p->base + r, p->name);
                make_text(text, sizeof text, prefix);
                random_unit_fixed(q);
                if (p->vecs) server_vector(q, p->vecs + (size_t)r * DIM);
                ws_buf_printf(&b, "%s{\"content\":\"%s\",\"importance\":0.5,\"embedding\":",
                              i ? "," : "", text);
                append_vector(&b, q);
                ws_buf_append(&b, "}", 1);
            }
            ws_buf_printf(&b, "]},\"id\":%d}", guard + 1);
            jarena a;
            jarena_init(&a);
            char *raw;
            const jv *res = call_ok(&c[0], b.data, b.len, 120, &a, &raw);
            const jv *stored = jv_get(res, "stored");
            if (!stored || stored->type != JV_INT || stored->u.i != n)
                die("seed batch stored %s of %d: %.200s",
                    stored && stored->type == JV_INT ? "fewer" : "?", n, raw);
            free(raw);
            jarena_free(&a);
            cursor[pi] += n;
            total += n;
        }
        if (!any) break;
    }
    *secs_out = (double)(ws_now_ns() - t0) / 1e9;
    *rows_out = total;
    ws_buf_free(&b);
    close_conns(c, 1);
}

static void bench_knn(void)
{
    static knn_persona ps[11];
    int np = 0;
    long base = 0;
    ps[np++] = (knn_persona){.name = "knn-1k", .rows = 1000};
    static char names[9][16];
    for (int i = 0; i < 9; i++) {
        snprintf(names[i], sizeof names[i], "knn-10k-%d", i);
        ps[np++] = (knn_persona){.name = names[i], .rows = 10000};
    }
    ps[np++] = (knn_persona){.name = "knn-fill", .rows = 9000};
    for (int i = 0; i < np; i++) {
        ps[i].base = base;
        base += ps[i].rows;
    }
    for (int i = 0; i < 2; i++) {
        ps[i].vecs = malloc(sizeof(float) * DIM * (size_t)ps[i].rows);
        if (!ps[i].vecs) die("out of memory");
    }
    double secs;
    long rows;
    seed_knn(ps, np, &secs, &rows);
    printf("mem.knn.total_rows=%ld\nmem.knn.seed_seconds=%.2f\n", rows, secs);
    printf("mem.knn.seed_records_per_s=%.0f\n", rows / secs);
    fflush(stdout);

    knn_state *k = calloc(1, sizeof *k);
    if (!k) die("out of memory");
    g_knn = k;
    for (int q = 0; q < NQUERIES; q++) {
        random_unit_fixed(k->qfixed[q]);
        server_vector(k->qfixed[q], k->qv[q]);
        append_vector(&k->qjson[q], k->qfixed[q]);
    }
    uint64_t t0 = ws_now_ns();
    for (int i = 0; i < 2; i++) reference(&ps[i], (const float(*)[DIM])k->qv);
    printf("mem.knn.reference_seconds=%.2f\n", (double)(ws_now_ns() - t0) / 1e9);

    for (int i = 0; i < 2; i++) {
        knn_persona *p = &ps[i];
        const char *tag = p->rows == 1000 ? "n1k" : "n10k";
        k->p = p;
        k->answers = k->hits = k->strict_hits = k->wrong_persona = k->short_answers = 0;
        k->min_recall = 1.0;
        char key[64];
        snprintf(key, sizeof key, "search.%s", tag);
        runspec s = {.key = key,
                     .conns = 1,
                     .inflight = 1,
                     .build = build_search,
                     .check = check_search,
                     .ud = k,
                     .per_response = 1};
        cell m = run_cell(&s);
        double recall = k->answers ? (double)k->hits / (double)(k->answers * TOPK) : 0;
        double strict = k->answers ? (double)k->strict_hits / (double)(k->answers * TOPK) : 0;
        printf("mem.search.%s.rows=%d\nmem.search.%s.total_rows=%ld\n", tag, p->rows, tag, rows);
        printf("mem.search.%s.qps=%.0f\nmem.search.%s.p50_us=%.1f\nmem.search.%s.p99_us=%.1f\n",
               tag, m.rate, tag, m.p50, tag, m.p99);
        printf("mem.search.%s.recall=%.4f\nmem.search.%s.recall_strict=%.4f\n", tag, recall, tag,
               strict);
        printf("mem.search.%s.min_recall=%.2f\nmem.search.%s.answers_checked=%llu\n", tag,
               k->min_recall, tag, (unsigned long long)k->answers);
        printf("mem.search.%s.wrong_persona=%llu\nmem.search.%s.errors=%llu\n", tag,
               (unsigned long long)k->wrong_persona, tag, (unsigned long long)m.errors);
        if (k->answers == 0 || recall < 1.0 || k->wrong_persona || k->short_answers) g_failures++;
        /* throughput with 2 connections (both cores) */
        snprintf(key, sizeof key, "search.%s.c2", tag);
        runspec s2 = {.key = key,
                      .conns = 2,
                      .inflight = 1,
                      .build = build_search,
                      .check = check_search,
                      .ud = k,
                      .per_response = 1};
        m = run_cell(&s2);
        printf("mem.search.%s.c2.qps=%.0f\nmem.search.%s.c2.p50_us=%.1f\n", tag, m.rate, tag,
               m.p50);
        fflush(stdout);
    }
    for (int q = 0; q < NQUERIES; q++) ws_buf_free(&k->qjson[q]);
    for (int i = 0; i < 2; i++) free(ps[i].vecs);
    free(k);
}

static int mode_ops(void)
{
    if (ws_client_init(&g_cl, opt.host, opt.port, "/mcp") < 0) return 2;
    g_cl.user_agent = "bench_memory";
    printf("mem.seconds_per_run=%.1f\nmem.repeat=%d\n", opt.seconds, opt.repeat);
    if (phase_on("table")) bench_table();
    if (phase_on("stores")) bench_stores();
    if (phase_on("knn")) bench_knn();
    ws_client_free(&g_cl);
    printf("mem.failures=%d\n", g_failures);
    return g_failures ? 1 : 0;
}

/* ---- SQLite peer ---------------------------------------------------------------------- */

static const char SQL_INSERT[] =
    "INSERT INTO memories (id, persona_id, content, content_hash, memory_type, importance,"
    " base_importance, emotional_valence, related_personas, visibility, metadata, created_at,"
    " embedding) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)";

static void exec_sql(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) die("SQL %.60s: %s", sql, err);
}

static sqlite3 *peer_open(const char *path)
{
    sqlite3 *db;
    unlink(path);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
        die("cannot open %s", path);
    exec_sql(db, "PRAGMA journal_mode=WAL");
    exec_sql(db, "PRAGMA synchronous=NORMAL");
    exec_sql(db, "PRAGMA cache_size=-10240");
    exec_sql(db, "PRAGMA temp_store=MEMORY");
    exec_sql(db, "PRAGMA mmap_size=268435456");
    exec_sql(db, "PRAGMA wal_autocheckpoint=4096");
    for (int v = 0; v < store_schema_version; v++) {
        exec_sql(db, "BEGIN");
        exec_sql(db, store_migrations[v]);
        exec_sql(db, "COMMIT");
    }
    return db;
}

typedef struct peer_row {
    char id[40];
    char text[TEXT_CHARS + 64];
    char meta[96];
    float vec[DIM];
} peer_row;

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The server's full-text indexing (src/memory/mem_fts.c): the rows queued
 * by the insert trigger, indexed in one statement every MEM_FTS_BATCH rows. */
static void peer_fts_flush(sqlite3 *db)
{
    exec_sql(db, "BEGIN");
    exec_sql(db, store_fts_index_pending);
    exec_sql(db, store_fts_clear_pending);
    exec_sql(db, "COMMIT");
}

static double peer_insert(sqlite3 *db, peer_row *rows, int n, int per_tx, double max_secs,
                          int *done, double *cpu)
{
    double c0 = cpu_now();
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, SQL_INSERT, -1, &st, NULL) != SQLITE_OK) die("prepare insert");
    uint64_t t0 = ws_now_ns(), limit = t0 + (uint64_t)(max_secs * 1e9);
    int i = 0, queued = 0;
    while (i < n && ws_now_ns() < limit) {
        if (per_tx > 1) exec_sql(db, "BEGIN");
        for (int k = 0; k < per_tx && i < n; k++, i++) {
            peer_row *r = &rows[i];
            sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, "peer", -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, r->text, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 4, (sqlite3_int64)util_hash64(r->text, strlen(r->text)));
            sqlite3_bind_text(st, 5, "observation", -1, SQLITE_STATIC);
            sqlite3_bind_double(st, 6, 0.5);
            sqlite3_bind_double(st, 7, 0.5);
            sqlite3_bind_double(st, 8, 0);
            sqlite3_bind_text(st, 9, "[]", -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 10, "private", -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 11, r->meta, -1, SQLITE_STATIC);
            sqlite3_bind_double(st, 12, 1.7e9 + i);
            sqlite3_bind_blob(st, 13, r->vec, sizeof r->vec, SQLITE_STATIC);
            if (sqlite3_step(st) != SQLITE_DONE) die("insert: %s", sqlite3_errmsg(db));
            sqlite3_reset(st);
        }
        if (per_tx > 1) exec_sql(db, "COMMIT");
        queued += per_tx;
        if (queued >= 1024) {
            peer_fts_flush(db);
            queued = 0;
        }
    }
    peer_fts_flush(db);
    double secs = (double)(ws_now_ns() - t0) / 1e9;
    *cpu = cpu_now() - c0;
    sqlite3_finalize(st);
    *done = i;
    return secs;
}

static int mode_sqlite_peer(void)
{
    if (!opt.dir) die("sqlite-peer needs --dir");
    int n = 200000;
    peer_row *rows = malloc(sizeof *rows * (size_t)n);
    if (!rows) die("out of memory");
    for (int i = 0; i < n; i++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "note %d:", i + 1);
        size_t len = make_text(rows[i].text, sizeof rows[i].text, prefix);
        util_uuid7(rows[i].id); /* as the server makes them: time-ordered */
        snprintf(rows[i].meta, sizeof rows[i].meta,
                 "{\"persona\":\"peer\",\"source\":\"bench\",\"n\":%d}", i + 1);
        mem_embed_builtin(rows[i].text, len, rows[i].vec, DIM);
    }
    /* The last two are diagnostics: the same without the FTS5 index (trigger dropped). */
    const int per_tx[4] = {1, 100, 1, 100};
    const char *name[4] = {"autocommit", "tx100", "autocommit_nofts", "tx100_nofts"};
    for (int m = 0; m < 4; m++) {
        double rates[16], cpus[16];
        int R = opt.repeat > 16 ? 16 : opt.repeat;
        for (int r = 0; r < R; r++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/peer-%d.db", opt.dir, m);
            sqlite3 *db = peer_open(path);
            if (m >= 2) exec_sql(db, "DROP TRIGGER memories_ai");
            int done;
            double cpu;
            double secs = peer_insert(db, rows, n, per_tx[m], opt.seconds, &done, &cpu);
            rates[r] = done / secs;
            cpus[r] = cpu * 1e6 / done;
            printf("run.sqlite.%s.%d rows=%d seconds=%.2f rate=%.0f cpu_us_per_row=%.1f\n", name[m],
                   r + 1, done, secs, rates[r], cpus[r]);
            sqlite3_close(db);
            char side[4200];
            unlink(path);
            snprintf(side, sizeof side, "%s-wal", path);
            unlink(side);
            snprintf(side, sizeof side, "%s-shm", path);
            unlink(side);
        }
        printf("sqlite.%s.rows_per_s=%.0f\n", name[m], median(rates, R));
        printf("sqlite.%s.cpu_us_per_row=%.1f\n", name[m], median(cpus, R));
        fflush(stdout);
    }
    free(rows);
    return 0;
}

/* ---- start-up with a large database --------------------------------------------------- */

static pid_t spawn_server(const char *data, const char *portfile, const char *log)
{
    unlink(portfile);
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        int nul = open("/dev/null", O_RDWR);
        if (nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1);
            close(nul);
        }
        execl(opt.server, opt.server, "--host", "127.0.0.1", "--port", "0", "--port-file", portfile,
              "--data-dir", data, "--log-level", "warn", (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* SIGTERM, wait up to 60 s (then SIGKILL); returns seconds it took. */
static double stop_server(pid_t pid)
{
    uint64_t t0 = ws_now_ns();
    kill(pid, SIGTERM);
    for (int i = 0; i < 6000; i++) {
        int st;
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) {
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                fprintf(stderr, "bench_memory: server exited with status %d\n", st);
                g_failures++;
            }
            return (double)(ws_now_ns() - t0) / 1e9;
        }
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    fprintf(stderr, "bench_memory: server ignored SIGTERM for 60 s; killed\n");
    g_failures++;
    return -1;
}

/* Wait for the port file (written by rename) with inotify; returns the port or -1. */
static int wait_port_file(int ino, const char *portfile, pid_t pid, double timeout_s)
{
    uint64_t deadline = ws_now_ns() + (uint64_t)(timeout_s * 1e9);
    for (;;) {
        FILE *f = fopen(portfile, "r");
        if (f) {
            int port = 0;
            int k = fscanf(f, "%d", &port);
            fclose(f);
            if (k == 1 && port > 0) return port;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) return -1;
        uint64_t t = ws_now_ns();
        if (t >= deadline) return -1;
        struct timeval tv = {0, 20000};
        fd_set rf;
        FD_ZERO(&rf);
        FD_SET(ino, &rf);
        if (select(ino + 1, &rf, NULL, NULL, &tv) > 0) {
            char ev[4096];
            (void)!read(ino, ev, sizeof ev);
        }
    }
}

static int http_get(int port, const char *path, char *out, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    char req[256];
    int n =
        snprintf(req, sizeof req,
                 "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", path, port);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return -1;
    }
    size_t len = 0;
    for (int i = 0; i < 10000 && len + 1 < cap; i++) {
        ssize_t r = recv(fd, out + len, cap - len - 1, 0);
        if (r <= 0) break;
        len += (size_t)r;
    }
    out[len] = 0;
    close(fd);
    return (int)len;
}

static double metric_value(const char *text, const char *name)
{
    char key[160];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = strstr(text, key);
    return p ? strtod(p + strlen(key), NULL) : -1;
}

static void build_big_db(const char *db_path, long rows, int personas)
{
    sqlite3 *db;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        die("cannot open %s", db_path);
    /* Bulk load: no journal, FTS built once at the end ('rebuild') instead of row by
     * row; the trigger is re-created from its own stored SQL, so the schema stays the
     * server's. */
    exec_sql(db, "PRAGMA journal_mode=OFF");
    exec_sql(db, "PRAGMA synchronous=OFF");
    exec_sql(db, "PRAGMA cache_size=-262144");
    char *trigger = NULL;
    {
        sqlite3_stmt *q;
        if (sqlite3_prepare_v2(db,
                               "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = "
                               "'memories_ai'",
                               -1, &q, NULL) != SQLITE_OK ||
            sqlite3_step(q) != SQLITE_ROW)
            die("no memories_ai trigger in the schema");
        trigger = strdup((const char *)sqlite3_column_text(q, 0));
        sqlite3_finalize(q);
        exec_sql(db, "DROP TRIGGER memories_ai");
    }
    sqlite3_stmt *coll;
    if (sqlite3_prepare_v2(db,
                           "INSERT OR REPLACE INTO memory_collections (persona_id, model, dim) "
                           "VALUES (?, 'client/384', 384)",
                           -1, &coll, NULL) != SQLITE_OK)
        die("prepare: %s", sqlite3_errmsg(db));
    exec_sql(db, "BEGIN");
    for (int p = 0; p < personas; p++) {
        char name[32];
        snprintf(name, sizeof name, "big-%03d", p);
        sqlite3_bind_text(coll, 1, name, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(coll) != SQLITE_DONE) die("collections: %s", sqlite3_errmsg(db));
        sqlite3_reset(coll);
    }
    exec_sql(db, "COMMIT");
    sqlite3_finalize(coll);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, SQL_INSERT, -1, &st, NULL) != SQLITE_OK)
        die("prepare: %s", sqlite3_errmsg(db));
    double now = (double)time(NULL);
    uint64_t t0 = ws_now_ns();
    exec_sql(db, "BEGIN");
    for (long i = 0; i < rows; i++) {
        char name[32], id[40], prefix[64], text[TEXT_CHARS + 64];
        float v[DIM];
        int p = (int)(i % personas);
        snprintf(name, sizeof name, "big-%03d", p);
        snprintf(prefix, sizeof prefix, "v%07ld %s:", i, name);
        make_text(text, sizeof text, prefix);
        double s = 0;
        for (int d = 0; d < DIM; d++) { /* uniform, not Gaussian: cheap, and any unit
                                            vector does for a start-up test */
            v[d] = (float)((double)(rnd() >> 11) / 4503599627370496.0 - 1.0);
            s += (double)v[d] * v[d];
        }
        for (int d = 0; d < DIM; d++) v[d] = (float)(v[d] / sqrt(s));
        util_uuid4(id);
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, text, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)util_hash64(text, strlen(text)));
        sqlite3_bind_text(st, 5, "observation", -1, SQLITE_STATIC);
        double imp = 0.1 + 0.8 * (double)(rnd() % 1000) / 1000.0;
        sqlite3_bind_double(st, 6, imp);
        sqlite3_bind_double(st, 7, imp);
        sqlite3_bind_double(st, 8, 0);
        sqlite3_bind_text(st, 9, "[]", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 10, "private", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 11, "{\"source\":\"bench\"}", -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 12, now - (double)(rows - i));
        sqlite3_bind_blob(st, 13, v, sizeof v, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE) die("insert: %s", sqlite3_errmsg(db));
        sqlite3_reset(st);
        if ((i + 1) % 50000 == 0) {
            exec_sql(db, "COMMIT");
            exec_sql(db, "BEGIN");
        }
    }
    exec_sql(db, "COMMIT");
    sqlite3_finalize(st);
    printf("startup.build_rows_seconds=%.1f\n", (double)(ws_now_ns() - t0) / 1e9);
    exec_sql(db, "INSERT INTO memories_fts (memories_fts) VALUES ('rebuild')");
    exec_sql(db, trigger);
    free(trigger);
    exec_sql(db, "PRAGMA journal_mode=WAL");
    if (sqlite3_close(db) != SQLITE_OK) die("close");
    printf("startup.build_seconds=%.1f\n", (double)(ws_now_ns() - t0) / 1e9);
    fflush(stdout);
}

static double resident_fraction(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat sb;
    double frac = -1;
    if (fstat(fd, &sb) == 0 && sb.st_size > 0) {
        void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (m != MAP_FAILED) {
            long pg = sysconf(_SC_PAGESIZE);
            size_t np = ((size_t)sb.st_size + (size_t)pg - 1) / (size_t)pg;
            unsigned char *vec = malloc(np);
            if (vec && mincore(m, (size_t)sb.st_size, vec) == 0) {
                size_t in = 0;
                for (size_t i = 0; i < np; i++) in += vec[i] & 1;
                frac = (double)in / (double)np;
            }
            free(vec);
            munmap(m, (size_t)sb.st_size);
        }
    }
    close(fd);
    return frac;
}

static void drop_cache(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

static double ms_since(uint64_t t0)
{
    return (double)(ws_now_ns() - t0) / 1e6;
}

static int mode_startup(void)
{
    if (!opt.server || !opt.dir) die("startup needs --server and --dir");
    char data[4096], db_path[4200], portfile[4096], log[4096];
    snprintf(data, sizeof data, "%s/data", opt.dir);
    snprintf(db_path, sizeof db_path, "%s/personas.db", data);
    snprintf(portfile, sizeof portfile, "%s/port", opt.dir);
    snprintf(log, sizeof log, "%s/server.log", opt.dir);
    int personas = opt.rows >= 10000 ? (int)(opt.rows / 10000) : 1;
    if (personas > 1000) personas = 1000;
    long per = opt.rows / personas;

    /* 1. schema by the server itself */
    pid_t pid = spawn_server(data, portfile, log);
    int ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (ino < 0 || inotify_add_watch(ino, opt.dir, IN_MOVED_TO | IN_CLOSE_WRITE | IN_CREATE) < 0)
        die("inotify: %s", strerror(errno));
    if (wait_port_file(ino, portfile, pid, 30) < 0) die("server did not start (see %s)", log);
    stop_server(pid);
    printf("startup.rows=%ld\nstartup.personas=%d\nstartup.rows_per_persona=%ld\n", opt.rows,
           personas, per);
    build_big_db(db_path, opt.rows, personas);
    struct stat sb;
    if (stat(db_path, &sb) == 0) printf("startup.db_mb=%.0f\n", (double)sb.st_size / 1048576.0);

    int R = opt.repeat < 1 ? 1 : opt.repeat > 16 ? 16 : opt.repeat;
    double port_ms[16], ready_ms[16], first_ms[16], second_ms[16], load_ms[16], stop_s[16];
    int warm = 0;
    ws_buf req = {0};
    for (int r = 0; r <= R; r++) {
        bool cold = r == R; /* the last run: page cache dropped */
        if (cold) {
            char side[4300];
            drop_cache(db_path);
            snprintf(side, sizeof side, "%s-wal", db_path);
            drop_cache(side);
            printf("startup.cold.resident_fraction_before=%.3f\n", resident_fraction(db_path));
        }
        uint64_t t0 = ws_now_ns();
        pid = spawn_server(data, portfile, log);
        int port = wait_port_file(ino, portfile, pid, 60);
        double t_port = ms_since(t0);
        if (port < 0) die("server did not start (see %s)", log);
        /* first successful request: connect and persona.list, retried until it works */
        double t_ready = -1;
        ws_conn c = {0};
        for (int attempt = 0; attempt < 2000 && t_ready < 0; attempt++) {
            if (ws_client_init(&g_cl, opt.host, port, "/mcp") < 0) die("client");
            if (ws_connect_all(&g_cl, &c, 1, 1, 5) == 1) {
                char *raw;
                const char *list = "{\"jsonrpc\":\"2.0\",\"method\":\"persona.list\",\"id\":1}";
                if (ws_call(&c, list, strlen(list), 10, &raw, NULL) == 0) {
                    if (strstr(raw, "\"result\"")) t_ready = ms_since(t0);
                    free(raw);
                }
            }
            if (t_ready < 0) {
                ws_conn_close(&c);
                ws_client_free(&g_cl);
                usleep(1000);
            }
        }
        if (t_ready < 0) die("no successful request");
        /* the lazy load: first and second query of one 10k-row persona */
        int q[DIM];
        random_unit_fixed(q);
        char persona[32];
        snprintf(persona, sizeof persona, "big-%03d", (r * 7 + 3) % personas);
        req.len = 0;
        ws_buf_printf(
            &req,
            "{\"jsonrpc\":\"2.0\",\"method\":\"memory.search\",\"params\":{\"persona_id\":"
            "\"%s\",\"n_results\":10,\"embedding\":",
            persona);
        append_vector(&req, q);
        ws_buf_append(&req, "},\"id\":2}", 9);
        double tq[2];
        for (int k = 0; k < 2; k++) {
            char *raw;
            uint64_t t1 = ws_now_ns();
            if (ws_call(&c, req.data, req.len, 60, &raw, NULL) < 0) die("search timed out");
            tq[k] = ms_since(t1);
            if (!strstr(raw, "\"result_count\":10")) die("search failed: %.300s", raw);
            free(raw);
        }
        char metrics[65536];
        double load_s = -1;
        if (http_get(port, "/metrics", metrics, sizeof metrics) > 0)
            load_s = metric_value(metrics, "pmcp_memory_collection_load_seconds_total");
        ws_close_all(&g_cl, &c, 1);
        ws_client_free(&g_cl);
        double stop = stop_server(pid);
        const char *kind = cold ? "cold" : "warm";
        printf("run.startup.%s.%d port_ms=%.1f ready_ms=%.1f first_query_ms=%.2f "
               "second_query_ms=%.2f load_metric_ms=%.2f stop_s=%.2f persona=%s\n",
               kind, r + 1, t_port, t_ready, tq[0], tq[1], load_s * 1e3, stop, persona);
        fflush(stdout);
        if (cold) {
            printf("startup.cold.port_ms=%.1f\nstartup.cold.ready_ms=%.1f\n", t_port, t_ready);
            printf("startup.cold.first_query_ms=%.2f\nstartup.cold.second_query_ms=%.2f\n", tq[0],
                   tq[1]);
            printf("startup.cold.load_metric_ms=%.2f\n", load_s * 1e3);
        } else {
            port_ms[warm] = t_port;
            ready_ms[warm] = t_ready;
            first_ms[warm] = tq[0];
            second_ms[warm] = tq[1];
            load_ms[warm] = load_s * 1e3;
            stop_s[warm] = stop;
            warm++;
        }
    }
    ws_buf_free(&req);
    close(ino);
    printf("startup.port_ms=%.1f\nstartup.ready_ms=%.1f\n", median(port_ms, warm),
           median(ready_ms, warm));
    printf("startup.first_query_ms=%.2f\nstartup.second_query_ms=%.2f\n", median(first_ms, warm),
           median(second_ms, warm));
    printf("startup.load_metric_ms=%.2f\nstartup.stop_s=%.2f\n", median(load_ms, warm),
           median(stop_s, warm));
    printf("startup.runs=%d\nstartup.failures=%d\n", warm, g_failures);
    return g_failures ? 1 : 0;
}

/* ---- main ----------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_memory ops --port N [--seconds S] [--warmup S] [--repeat R]\n"
            "                        [--conc \"10 50 100 200\"] [--pipeline P] [--pid SERVER_PID]\n"
            "                        [--only table,stores,knn]\n"
            "       bench_memory sqlite-peer --dir DIR [--seconds S] [--repeat R]\n"
            "       bench_memory startup --server BIN --dir DIR [--rows N] [--repeat R]\n");
}

static void on_signal(int sig)
{
    (void)sig;
    ws_stop_requested = 1;
}

int main(int argc, char **argv)
{
    static const struct option longs[] = {{"port", required_argument, 0, 'p'},
                                          {"host", required_argument, 0, 'h'},
                                          {"seconds", required_argument, 0, 's'},
                                          {"warmup", required_argument, 0, 'w'},
                                          {"repeat", required_argument, 0, 'r'},
                                          {"conc", required_argument, 0, 'c'},
                                          {"pipeline", required_argument, 0, 'P'},
                                          {"batch-inflight", required_argument, 0, 'B'},
                                          {"server", required_argument, 0, 'S'},
                                          {"dir", required_argument, 0, 'd'},
                                          {"rows", required_argument, 0, 'n'},
                                          {"pid", required_argument, 0, 'i'},
                                          {"only", required_argument, 0, 'o'},
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
            opt.port = atoi(optarg);
            break;
        case 'h':
            opt.host = optarg;
            break;
        case 's':
            opt.seconds = atof(optarg);
            break;
        case 'w':
            opt.warmup = atof(optarg);
            break;
        case 'r':
            opt.repeat = atoi(optarg);
            break;
        case 'c':
            snprintf(opt.conc, sizeof opt.conc, "%s", optarg);
            break;
        case 'P':
            opt.pipeline = atoi(optarg);
            break;
        case 'B':
            opt.batch_inflight = atoi(optarg);
            break;
        case 'S':
            opt.server = optarg;
            break;
        case 'd':
            opt.dir = optarg;
            break;
        case 'n':
            opt.rows = atol(optarg);
            break;
        case 'i':
            opt.pid = atoi(optarg);
            break;
        case 'o':
            opt.only = optarg;
            break;
        case 'H':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (opt.repeat < 1 || opt.repeat > 16 || !(opt.seconds > 0) || opt.seconds > 600 ||
        opt.pipeline < 1 || opt.pipeline > 4096 || opt.batch_inflight < 1 ||
        opt.batch_inflight > 64 || opt.rows < 1000 || opt.rows > 10000000 || optind != argc) {
        usage(stderr);
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (!strcmp(opt.mode, "ops")) {
        if (opt.port <= 0 || opt.port > 65535) {
            usage(stderr);
            return 2;
        }
        return mode_ops();
    }
    if (!strcmp(opt.mode, "sqlite-peer")) return mode_sqlite_peer();
    if (!strcmp(opt.mode, "startup")) return mode_startup();
    usage(stderr);
    return 2;
}
