/*
 * test_metrics.c - counters and latency histograms (src/lib/metrics.c) and
 * their Prometheus text rendering.
 *
 * A histogram is observed at and around its bucket bounds and the rendered
 * text is compared exactly: buckets are stored non-cumulative and must be
 * rendered cumulative, ending with +Inf == _count. The per-method request
 * metrics and the named counters are process-wide state, so each test uses
 * method indexes and counters no other test in this file touches, and
 * checks lines by exact substring. Rendered output is also checked to be
 * well-formed text: no NUL bytes, every non-comment line "name{labels} value".
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/jw.h"
#include "lib/metrics.h"

/* ---- helpers ------------------------------------------------------------- */

static char *render_hist(const char *name, const char *labels, const metrics_hist *h)
{
    jw w;
    jw_init(&w, 0, 256);
    metrics_hist_render(&w, name, labels, h);
    char *s = malloc(jw_size(&w) + 1);
    assert_non_null(s);
    memcpy(s, jw_data(&w), jw_size(&w));
    s[jw_size(&w)] = 0;
    jw_free(&w);
    return s;
}

/* Render into a writer the caller frees. */
static void render_requests(jw *w)
{
    jw_init(w, 0, 4096);
    metrics_render_requests(w);
}

static void expect_line(const char *text, size_t len, const char *line)
{
    /* `line` must appear as a whole line */
    size_t n = strlen(line);
    for (const char *p = text; p + n <= text + len; p++) {
        p = memmem(p, (size_t)(text + len - p), line, n);
        if (!p) break;
        bool starts = p == text || p[-1] == '\n';
        bool ends = p + n < text + len && p[n] == '\n';
        if (starts && ends) return;
    }
    fail_msg("line not found: %s", line);
}

static bool has_substring(const char *text, size_t len, const char *s)
{
    return memmem(text, len, s, strlen(s)) != NULL;
}

/* Every line: "# HELP ...", "# TYPE ...", or "name[{...}] value"; no NULs;
 * text ends with a newline. */
static void expect_well_formed(const char *text, size_t len)
{
    const char *nul = memchr(text, 0, len);
    if (nul) {
        size_t at = (size_t)(nul - text), back = at > 60 ? 60 : at;
        fail_msg("NUL byte at offset %zu of %zu, after \"%.*s\"", at, len, (int)back, nul - back);
    }
    assert_true(len > 0);
    assert_int_equal(text[len - 1], '\n');
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        assert_non_null(nl);
        size_t n = (size_t)(nl - p);
        char line[600];
        assert_true(n < sizeof line);
        memcpy(line, p, n);
        line[n] = 0;
        if (line[0] == '#') {
            if (strncmp(line, "# HELP ", 7) && strncmp(line, "# TYPE ", 7))
                fail_msg("bad comment line: %s", line);
        } else {
            const char *sp = strrchr(line, ' ');
            if (!sp || sp == line) fail_msg("no value: %s", line);
            char *e;
            strtod(sp + 1, &e);
            if (*e || e == sp + 1) fail_msg("bad value: %s", line);
            for (const char *c = line; c < sp && *c != '{'; c++)
                if (!(*c == '_' || *c == ':' || (*c >= 'a' && *c <= 'z') ||
                      (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
                    fail_msg("bad metric name: %s", line);
        }
        p = nl + 1;
    }
}

/* ---- histograms ---------------------------------------------------------- */

static void test_hist_buckets_cumulative(void **state)
{
    (void)state;
    metrics_hist *h = calloc(1, sizeof *h);
    assert_non_null(h);
    metrics_hist_observe(h, 5000);           /* <= 10 us */
    metrics_hist_observe(h, 10000);          /* exactly 10 us: le is inclusive */
    metrics_hist_observe(h, 10001);          /* <= 50 us */
    metrics_hist_observe(h, 1000000);        /* exactly 1 ms */
    metrics_hist_observe(h, 3000000);        /* <= 5 ms */
    metrics_hist_observe(h, 10000000000ULL); /* exactly 10 s */
    metrics_hist_observe(h, 20000000000ULL); /* over 10 s: +Inf only */
    char *got = render_hist("t", "", h);
    const char *want = "t_bucket{le=\"1e-05\"} 2\n"
                       "t_bucket{le=\"5e-05\"} 3\n"
                       "t_bucket{le=\"0.0001\"} 3\n"
                       "t_bucket{le=\"0.00025\"} 3\n"
                       "t_bucket{le=\"0.0005\"} 3\n"
                       "t_bucket{le=\"0.001\"} 4\n"
                       "t_bucket{le=\"0.0025\"} 4\n"
                       "t_bucket{le=\"0.005\"} 5\n"
                       "t_bucket{le=\"0.01\"} 5\n"
                       "t_bucket{le=\"0.05\"} 5\n"
                       "t_bucket{le=\"0.1\"} 5\n"
                       "t_bucket{le=\"1\"} 5\n"
                       "t_bucket{le=\"10\"} 6\n"
                       "t_bucket{le=\"+Inf\"} 7\n"
                       "t_sum{} 30.004025001\n"
                       "t_count{} 7\n";
    assert_string_equal(got, want);
    free(got);
    /* stored non-cumulative */
    assert_int_equal(atomic_load(&h->le[0]), 2);
    assert_int_equal(atomic_load(&h->le[1]), 1);
    assert_int_equal(atomic_load(&h->le[METRICS_LAT_BUCKETS - 1]), 1);
    assert_int_equal(atomic_load(&h->count), 7);
    free(h);
}

static void test_hist_with_labels_and_empty(void **state)
{
    (void)state;
    metrics_hist *h = calloc(1, sizeof *h);
    assert_non_null(h);
    char *got = render_hist("x_seconds", "method=\"a.b\"", h);
    assert_non_null(strstr(got, "x_seconds_bucket{method=\"a.b\",le=\"1e-05\"} 0\n"));
    assert_non_null(strstr(got, "x_seconds_bucket{method=\"a.b\",le=\"+Inf\"} 0\n"));
    assert_non_null(strstr(got, "x_seconds_sum{method=\"a.b\"} 0.000000000\n"));
    assert_non_null(strstr(got, "x_seconds_count{method=\"a.b\"} 0\n"));
    expect_well_formed(got, strlen(got));
    free(got);

    metrics_hist_observe(h, 0);
    got = render_hist("x_seconds", "method=\"a.b\"", h);
    assert_non_null(strstr(got, "x_seconds_bucket{method=\"a.b\",le=\"1e-05\"} 1\n"));
    assert_non_null(strstr(got, "x_seconds_count{method=\"a.b\"} 1\n"));
    free(got);
    free(h);
}

static void test_hist_each_bound_lands_in_its_bucket(void **state)
{
    (void)state;
    static const uint64_t bounds[] = {10000,     50000,      100000,        250000,   500000,
                                      1000000,   2500000,    5000000,       10000000, 50000000,
                                      100000000, 1000000000, 10000000000ULL};
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++) {
        metrics_hist *h = calloc(1, sizeof *h);
        assert_non_null(h);
        metrics_hist_observe(h, bounds[i]);
        metrics_hist_observe(h, bounds[i] + 1);
        assert_int_equal(atomic_load(&h->le[i]), 1);
        assert_int_equal(atomic_load(&h->le[i + 1]), 1);
        free(h);
    }
}

typedef struct obs_ctx {
    metrics_hist *h;
    int n;
} obs_ctx;

static void *observer_main(void *arg)
{
    obs_ctx *c = arg;
    for (int i = 0; i < c->n; i++) metrics_hist_observe(c->h, (uint64_t)(i % 7) * 20000);
    return NULL;
}

static void test_hist_concurrent_observe(void **state)
{
    (void)state;
    enum { THREADS = 4, EACH = 100000 };
    metrics_hist *h = calloc(1, sizeof *h);
    assert_non_null(h);
    pthread_t th[THREADS];
    obs_ctx c = {h, EACH};
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, observer_main, &c), 0);
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&h->count), THREADS * EACH);
    uint64_t sum_buckets = 0, sum_ns = 0;
    for (int i = 0; i < METRICS_LAT_BUCKETS; i++) sum_buckets += atomic_load(&h->le[i]);
    for (int i = 0; i < EACH; i++) sum_ns += (uint64_t)(i % 7) * 20000;
    assert_int_equal(sum_buckets, THREADS * EACH);
    assert_int_equal(atomic_load(&h->sum_ns), THREADS * sum_ns);
    free(h);
}

/* ---- counters ------------------------------------------------------------ */

static void test_counters(void **state)
{
    (void)state;
    uint64_t before = metrics_get(MC_PARSE_ERRORS);
    metrics_inc(MC_PARSE_ERRORS, 3);
    metrics_inc(MC_PARSE_ERRORS, 1);
    assert_int_equal(metrics_get(MC_PARSE_ERRORS), before + 4);
    metrics_inc(MC_WS_BYTES_IN, 1000000000000ULL);
    assert_true(metrics_get(MC_WS_BYTES_IN) >= 1000000000000ULL);

    jw w;
    jw_init(&w, 0, 1024);
    metrics_render_counters(&w);
    const char *t = jw_data(&w);
    size_t n = jw_size(&w);
    expect_well_formed(t, n);
    char line[128];
    snprintf(line, sizeof line, "pmcp_parse_errors_total %llu", (unsigned long long)(before + 4));
    expect_line(t, n, line);
    expect_line(t, n, "# TYPE pmcp_parse_errors_total counter");
    expect_line(t, n, "# HELP pmcp_parse_errors_total Messages that were not valid JSON");
    static const char *const names[] = {
        "pmcp_ws_messages_received_total", "pmcp_ws_received_bytes_total",
        "pmcp_ws_messages_sent_total",     "pmcp_ws_sent_bytes_total",
        "pmcp_parse_errors_total",         "pmcp_inflight_rejected_total",
        "pmcp_oversize_closed_total",      "pmcp_connections_refused_total",
        "pmcp_http_requests_total",
    };
    assert_int_equal(sizeof names / sizeof names[0], MC_COUNT);
    for (size_t i = 0; i < MC_COUNT; i++) {
        char type[128];
        snprintf(type, sizeof type, "# TYPE %s counter", names[i]);
        expect_line(t, n, type);
        snprintf(line, sizeof line, "%s %llu", names[i],
                 (unsigned long long)metrics_get((metrics_counter)i));
        expect_line(t, n, line);
    }
    jw_free(&w);
}

typedef struct inc_ctx {
    int n;
} inc_ctx;

static void *inc_main(void *arg)
{
    inc_ctx *c = arg;
    for (int i = 0; i < c->n; i++) metrics_inc(MC_HTTP_REQUESTS, 1);
    return NULL;
}

static void test_counter_concurrent(void **state)
{
    (void)state;
    enum { THREADS = 4, EACH = 50000 };
    uint64_t before = metrics_get(MC_HTTP_REQUESTS);
    pthread_t th[THREADS];
    inc_ctx c = {EACH};
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, inc_main, &c), 0);
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    assert_int_equal(metrics_get(MC_HTTP_REQUESTS), before + THREADS * EACH);
}

/* ---- request metrics ----------------------------------------------------- */

static void test_request_metrics_by_method(void **state)
{
    (void)state;
    metrics_register_method(0, "persona.list");
    metrics_register_method(1, "system.status");
    metrics_register_method(2, "never.called");
    metrics_register_method(METRICS_MAX_METHODS, "out.of.range"); /* ignored */
    metrics_register_method(-1, "negative");                      /* ignored */
    metrics_request(0, true, 5000);
    metrics_request(0, true, 20000);
    metrics_request(0, false, 2000000);
    metrics_request(1, true, 2000000000ULL);
    metrics_request(-1, false, 100);                     /* unknown method */
    metrics_request(METRICS_MAX_METHODS + 5, true, 100); /* out of range: unknown too */

    jw w;
    render_requests(&w);
    const char *t = jw_data(&w);
    size_t n = jw_size(&w);
    expect_line(t, n, "# TYPE pmcp_requests_total counter");
    expect_line(t, n, "pmcp_requests_total{method=\"persona.list\",outcome=\"ok\"} 2");
    expect_line(t, n, "pmcp_requests_total{method=\"persona.list\",outcome=\"error\"} 1");
    expect_line(t, n, "pmcp_requests_total{method=\"system.status\",outcome=\"ok\"} 1");
    expect_line(t, n, "pmcp_requests_total{method=\"system.status\",outcome=\"error\"} 0");
    expect_line(t, n, "pmcp_requests_total{method=\"never.called\",outcome=\"ok\"} 0");
    expect_line(t, n, "pmcp_requests_total{method=\"(unknown)\",outcome=\"ok\"} 1");
    expect_line(t, n, "pmcp_requests_total{method=\"(unknown)\",outcome=\"error\"} 1");
    assert_false(has_substring(t, n, "out.of.range"));
    assert_false(has_substring(t, n, "negative"));

    assert_true(has_substring(t, n, "# TYPE pmcp_request_duration_seconds histogram\n"));
    expect_line(t, n,
                "pmcp_request_duration_seconds_bucket{method=\"persona.list\",le=\"1e-05\"} 1");
    expect_line(t, n,
                "pmcp_request_duration_seconds_bucket{method=\"persona.list\",le=\"5e-05\"} 2");
    expect_line(t, n,
                "pmcp_request_duration_seconds_bucket{method=\"persona.list\",le=\"0.0025\"} 3");
    expect_line(t, n,
                "pmcp_request_duration_seconds_bucket{method=\"persona.list\",le=\"+Inf\"} 3");
    expect_line(t, n, "pmcp_request_duration_seconds_sum{method=\"persona.list\"} 0.002025000");
    expect_line(t, n, "pmcp_request_duration_seconds_count{method=\"persona.list\"} 3");
    expect_line(t, n, "pmcp_request_duration_seconds_bucket{method=\"system.status\",le=\"1\"} 0");
    expect_line(t, n, "pmcp_request_duration_seconds_bucket{method=\"system.status\",le=\"10\"} 1");
    expect_line(t, n, "pmcp_request_duration_seconds_count{method=\"(unknown)\"} 2");
    /* a method with no requests gets counters but no histogram */
    assert_false(
        has_substring(t, n, "pmcp_request_duration_seconds_bucket{method=\"never.called\""));
    jw_free(&w);
}

static char *g_text;

static int free_text(void **state)
{
    (void)state;
    free(g_text);
    g_text = NULL;
    return 0;
}

/* BUG (src/lib/metrics.c, metrics_render_requests): the HELP line of
 * pmcp_request_duration_seconds is 67 bytes but is appended with length 68,
 * so the string's NUL terminator lands in the /metrics body right after
 * "...to response\n". Expected to fail until the length is fixed. */
static void test_request_render_is_clean_text(void **state)
{
    (void)state;
    metrics_register_method(3, "clean.check");
    metrics_request(3, true, 1000);
    jw w;
    render_requests(&w);
    /* the teardown frees the text, so a failing check leaks nothing */
    size_t n = jw_size(&w);
    char *t = g_text = malloc(n + 1);
    assert_non_null(t);
    memcpy(t, jw_data(&w), n);
    jw_free(&w);
    expect_line(t, n, "# HELP pmcp_requests_total JSON-RPC requests by method and outcome");
    expect_line(t, n, "# HELP pmcp_request_duration_seconds Time from receipt to response");
    expect_well_formed(t, n);
}

static void test_register_replaces_name(void **state)
{
    (void)state;
    metrics_register_method(4, "old.name");
    metrics_request(4, true, 1);
    metrics_register_method(4, "new.name");
    jw w;
    render_requests(&w);
    expect_line(jw_data(&w), jw_size(&w),
                "pmcp_requests_total{method=\"new.name\",outcome=\"ok\"} 1");
    assert_false(has_substring(jw_data(&w), jw_size(&w), "old.name"));
    jw_free(&w);
}

static void test_now_monotonic(void **state)
{
    (void)state;
    uint64_t a = metrics_now_ns();
    for (int i = 0; i < 1000; i++) {
        uint64_t b = metrics_now_ns();
        assert_true(b >= a);
        a = b;
    }
    assert_true(a > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_buckets_cumulative),
        cmocka_unit_test(test_hist_with_labels_and_empty),
        cmocka_unit_test(test_hist_each_bound_lands_in_its_bucket),
        cmocka_unit_test(test_hist_concurrent_observe),
        cmocka_unit_test(test_counters),
        cmocka_unit_test(test_counter_concurrent),
        cmocka_unit_test(test_request_metrics_by_method),
        cmocka_unit_test_teardown(test_request_render_is_clean_text, free_text),
        cmocka_unit_test(test_register_replaces_name),
        cmocka_unit_test(test_now_monotonic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
