/*
 * metrics.h - lock-free counters and latency histograms, rendered in the
 * Prometheus text format.
 *
 * Every number is a relaxed atomic: writers on any thread pay one atomic add;
 * /metrics reads a slightly torn but monotonic view, which is what
 * Prometheus expects. Request metrics are kept per JSON-RPC method index
 * (the method table registers names at start-up; index -1 = unknown method).
 */
#ifndef PMCP_METRICS_H
#define PMCP_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/jw.h"

#define METRICS_LAT_BUCKETS 14
#define METRICS_MAX_METHODS 128

typedef struct metrics_hist {
    atomic_uint_fast64_t le[METRICS_LAT_BUCKETS]; /* non-cumulative; rendered cumulative */
    atomic_uint_fast64_t count;
    atomic_uint_fast64_t sum_ns;
} metrics_hist;

void metrics_hist_observe(metrics_hist *h, uint64_t ns);
/* Writes name_bucket{labels,le=..}, name_sum, name_count. labels may be "". */
void metrics_hist_render(jw *out, const char *name, const char *labels, const metrics_hist *h);

void metrics_register_method(int idx, const char *name);
void metrics_request(int idx, bool ok, uint64_t ns);
void metrics_render_requests(jw *out);

/* Named process-wide counters. */
typedef enum {
    MC_WS_MESSAGES_IN,
    MC_WS_BYTES_IN,
    MC_WS_MESSAGES_OUT,
    MC_WS_BYTES_OUT,
    MC_PARSE_ERRORS,
    MC_INFLIGHT_REJECTED,
    MC_OVERSIZE_CLOSED,
    MC_CONNECTIONS_REFUSED,
    MC_HTTP_REQUESTS,
    MC_COUNT
} metrics_counter;

void metrics_inc(metrics_counter c, uint64_t by);
uint64_t metrics_get(metrics_counter c);
void metrics_render_counters(jw *out);

uint64_t metrics_now_ns(void); /* CLOCK_MONOTONIC */

#endif
