/*
 * metrics.c - see metrics.h. Bucket bounds are fixed (10 us .. 10 s) so a
 * histogram is a small array and observing is a linear scan of 14 bounds.
 */
#include "lib/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const uint64_t g_bounds_ns[METRICS_LAT_BUCKETS - 1] = {
    10000,   50000,    100000,   250000,    500000,     1000000,       2500000,
    5000000, 10000000, 50000000, 100000000, 1000000000, 10000000000ULL};
static const char *const g_bounds_txt[METRICS_LAT_BUCKETS] = {
    "1e-05", "5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025",
    "0.005", "0.01",  "0.05",   "0.1",     "1",      "10",    "+Inf"};

typedef struct method_metrics {
    const char *name;
    atomic_uint_fast64_t ok, err;
    metrics_hist lat;
} method_metrics;

static method_metrics g_methods[METRICS_MAX_METHODS + 1]; /* last slot: unknown */
static atomic_uint_fast64_t g_counters[MC_COUNT];

static const struct {
    const char *name, *help;
} g_counter_info[MC_COUNT] = {
    {"pmcp_ws_messages_received_total", "WebSocket text messages received"},
    {"pmcp_ws_received_bytes_total", "WebSocket payload bytes received"},
    {"pmcp_ws_messages_sent_total", "WebSocket messages sent"},
    {"pmcp_ws_sent_bytes_total", "WebSocket payload bytes sent"},
    {"pmcp_parse_errors_total", "Messages that were not valid JSON"},
    {"pmcp_inflight_rejected_total",
     "Requests refused because a connection had too many in flight"},
    {"pmcp_oversize_closed_total", "Connections closed for a message over the size limit"},
    {"pmcp_connections_refused_total", "WebSocket upgrades refused (limit, origin, host, auth)"},
    {"pmcp_http_requests_total", "Plain HTTP requests served"},
};

uint64_t metrics_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void metrics_hist_observe(metrics_hist *h, uint64_t ns)
{
    int i = 0;
    while (i < METRICS_LAT_BUCKETS - 1 && ns > g_bounds_ns[i]) i++;
    atomic_fetch_add_explicit(&h->le[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}

static void appendf(jw *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void appendf(jw *out, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0) jw_append(out, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

void metrics_hist_render(jw *out, const char *name, const char *labels, const metrics_hist *h)
{
    uint64_t cum = 0;
    const char *sep = labels[0] ? "," : "";
    for (int i = 0; i < METRICS_LAT_BUCKETS; i++) {
        cum += atomic_load_explicit(&h->le[i], memory_order_relaxed);
        appendf(out, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels, sep, g_bounds_txt[i],
                (unsigned long long)cum);
    }
    double sum = (double)atomic_load_explicit(&h->sum_ns, memory_order_relaxed) / 1e9;
    appendf(out, "%s_sum{%s} %.9f\n", name, labels, sum);
    appendf(out, "%s_count{%s} %llu\n", name, labels,
            (unsigned long long)atomic_load_explicit(&h->count, memory_order_relaxed));
}

void metrics_register_method(int idx, const char *name)
{
    if (idx >= 0 && idx < METRICS_MAX_METHODS) g_methods[idx].name = name;
}

void metrics_request(int idx, bool ok, uint64_t ns)
{
    method_metrics *m =
        &g_methods[(idx >= 0 && idx < METRICS_MAX_METHODS) ? idx : METRICS_MAX_METHODS];
    atomic_fetch_add_explicit(ok ? &m->ok : &m->err, 1, memory_order_relaxed);
    metrics_hist_observe(&m->lat, ns);
}

void metrics_render_requests(jw *out)
{
    g_methods[METRICS_MAX_METHODS].name = "(unknown)";
    jw_puts(out, "# HELP pmcp_requests_total JSON-RPC requests by method and outcome\n");
    jw_puts(out, "# TYPE pmcp_requests_total counter\n");
    for (int i = 0; i <= METRICS_MAX_METHODS; i++) {
        method_metrics *m = &g_methods[i];
        if (!m->name) continue;
        appendf(out, "pmcp_requests_total{method=\"%s\",outcome=\"ok\"} %llu\n", m->name,
                (unsigned long long)atomic_load(&m->ok));
        appendf(out, "pmcp_requests_total{method=\"%s\",outcome=\"error\"} %llu\n", m->name,
                (unsigned long long)atomic_load(&m->err));
    }
    jw_puts(out, "# HELP pmcp_request_duration_seconds Time from receipt to response\n");
    jw_puts(out, "# TYPE pmcp_request_duration_seconds histogram\n");
    for (int i = 0; i <= METRICS_MAX_METHODS; i++) {
        method_metrics *m = &g_methods[i];
        if (!m->name || !atomic_load(&m->lat.count)) continue;
        char labels[160];
        snprintf(labels, sizeof labels, "method=\"%s\"", m->name);
        metrics_hist_render(out, "pmcp_request_duration_seconds", labels, &m->lat);
    }
}

void metrics_inc(metrics_counter c, uint64_t by)
{
    atomic_fetch_add_explicit(&g_counters[c], by, memory_order_relaxed);
}

uint64_t metrics_get(metrics_counter c)
{
    return atomic_load_explicit(&g_counters[c], memory_order_relaxed);
}

void metrics_render_counters(jw *out)
{
    for (int i = 0; i < MC_COUNT; i++) {
        appendf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", g_counter_info[i].name,
                g_counter_info[i].help, g_counter_info[i].name, g_counter_info[i].name,
                (unsigned long long)metrics_get((metrics_counter)i));
    }
}
