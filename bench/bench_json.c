/*
 * bench_json.c - JSON parse + serialize of the spec's persona.chat request.
 *
 * Three measures, each 7 runs of N iterations (N = argv[1], default
 * 1,000,000), median run reported:
 *   roundtrip  json_parse() into an arena (reset every iteration) and
 *              jw_value() of the tree back into a reused writer;
 *   parse      json_parse() + jarena_reset() only;
 *   serialize  jw_reset() + jw_value() of one tree parsed up front.
 * The request sits in a buffer with JSON_PADDING spare bytes, as the server's
 * receive buffers do, so simdjson reads it in place. bench/json_peer.py does
 * the same with Python's json and ujson; bench/json.sh compares them.
 *
 * Times are the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), which other
 * load on a shared machine disturbs less than wall time; ops_per_s is thus
 * per core. Output: one line per measure, key=value, e.g.
 *   bench=json impl=persona-mcp measure=roundtrip iters=1000000 runs=7
 *   clock=thread_cpu ns_per_op=215.3 ops_per_s=4644682 min_ns=... max_ns=...
 */
#include "lib/json.h"
#include "lib/jw.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RUNS 7

static const char k_request[] =
    "{\"jsonrpc\":\"2.0\",\"method\":\"persona.chat\",\"params\":{\"message\":\"Hello Aria! Tell "
    "me about the music of the elven kingdoms and your travels.\",\"token_budget\":500},"
    "\"id\":\"req-1732530000123\"}";

typedef struct ctx {
    char *buf; /* request + JSON_PADDING */
    size_t len;
    jarena arena;
    jw out;
    const jv *tree; /* for serialize-only */
    size_t sink;    /* keeps the work observable */
} ctx;

typedef void (*bench_fn)(ctx *c, long iters);

/* CPU time of this thread: on a shared machine, time spent descheduled would
 * otherwise land in the numbers (json_peer.py uses the same clock). */
static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static jv *parse_or_die(ctx *c)
{
    json_error err;
    jv *v = json_parse(&c->arena, c->buf, c->len, c->len + JSON_PADDING, 64, &err);
    if (!v) {
        fprintf(stderr, "bench_json: parse failed: %s\n", err.msg);
        exit(1);
    }
    return v;
}

static void run_roundtrip(ctx *c, long iters)
{
    for (long i = 0; i < iters; i++) {
        jarena_reset(&c->arena);
        jv *v = parse_or_die(c);
        jw_reset(&c->out);
        jw_value(&c->out, v);
        c->sink += jw_size(&c->out);
    }
}

static void run_parse(ctx *c, long iters)
{
    for (long i = 0; i < iters; i++) {
        jarena_reset(&c->arena);
        c->sink += parse_or_die(c)->len;
    }
}

static void run_serialize(ctx *c, long iters)
{
    for (long i = 0; i < iters; i++) {
        jw_reset(&c->out);
        jw_value(&c->out, c->tree);
        c->sink += jw_size(&c->out);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void measure(ctx *c, const char *name, bench_fn fn, long iters)
{
    double ns[RUNS];
    fn(c, iters / 10 + 1); /* warm-up: caches, arena block, writer capacity */
    for (int r = 0; r < RUNS; r++) {
        uint64_t t0 = now_ns();
        fn(c, iters);
        ns[r] = (double)(now_ns() - t0) / (double)iters;
    }
    qsort(ns, RUNS, sizeof(ns[0]), cmp_double);
    double med = ns[RUNS / 2];
    printf("bench=json impl=persona-mcp measure=%s iters=%ld runs=%d clock=thread_cpu "
           "ns_per_op=%.1f ops_per_s=%.0f min_ns=%.1f max_ns=%.1f\n",
           name, iters, RUNS, med, 1e9 / med, ns[0], ns[RUNS - 1]);
    fflush(stdout);
}

/* The writer must reproduce the (compact) request byte for byte. */
static void check_output(ctx *c)
{
    jw_reset(&c->out);
    jw_value(&c->out, c->tree);
    if (jw_size(&c->out) != c->len || memcmp(jw_data(&c->out), c->buf, c->len) != 0) {
        fprintf(stderr, "bench_json: output differs: %.*s\n", (int)jw_size(&c->out),
                jw_data(&c->out));
        exit(1);
    }
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 1000000;
    if (iters <= 0) iters = 1000000;
    ctx c = {.len = sizeof(k_request) - 1};
    c.buf = calloc(1, c.len + JSON_PADDING);
    memcpy(c.buf, k_request, c.len);
    jarena_init(&c.arena);
    jw_init(&c.out, 16, 1024);

    measure(&c, "roundtrip", run_roundtrip, iters);
    measure(&c, "parse", run_parse, iters);
    jarena_reset(&c.arena);
    c.tree = parse_or_die(&c);
    check_output(&c);
    measure(&c, "serialize", run_serialize, iters);

    if (c.sink == 0) puts("unreachable");
    jw_free(&c.out);
    jarena_free(&c.arena);
    free(c.buf);
    return 0;
}
