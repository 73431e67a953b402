/*
 * net_http.c - the plain HTTP routes on the WebSocket port:
 *   GET /         the original's health document (status "healthy")
 *   GET /health   liveness: status, version, uptime, connections
 *   GET /metrics  Prometheus text: requests, latencies, connections, the
 *                 read pool and the writer (group commit sizes)
 * Bodies are built at once into the pss and written on HTTP_WRITEABLE.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"
#include "lib/metrics.h"
#include "llm/llm.h"
#include "lib/workq.h"
#include "memory/memory.h"
#include "net/net_internal.h"
#include "persona/persona.h"
#include "store/store.h"

int net_http_reply(struct lws *wsi, net_pss *pss, unsigned status, const char *ctype,
                   const char *body, size_t len)
{
    return net_http_reply_h(wsi, pss, status, ctype, body, len, NULL, 0);
}

int net_http_reply_h(struct lws *wsi, net_pss *pss, unsigned status, const char *ctype,
                     const char *body, size_t len, const net_header *extra, int nextra)
{
    unsigned char hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr;
    if (lws_add_http_common_headers(wsi, status, ctype, (lws_filepos_t)len, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                     (const unsigned char *)"no-store", 8, &p, end))
        return -1;
    for (int i = 0; i < nextra; i++)
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)extra[i].name,
                                        (const unsigned char *)extra[i].value,
                                        (int)strlen(extra[i].value), &p, end))
            return -1;
    if (lws_finalize_write_http_header(wsi, start, &p, end)) return -1;
    if (len == 0) { /* headers only (202): the transaction ends now, so a request
                       the client pipelines behind it on the connection is read */
        free(pss->body);
        pss->body = NULL;
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    free(pss->body);
    pss->body = malloc(LWS_PRE + len + 1);
    if (!pss->body) abort();
    memcpy(pss->body + LWS_PRE, body, len);
    pss->body_len = len;
    lws_callback_on_writable(wsi);
    return 0;
}

int net_http_rpc_error(struct lws *wsi, net_pss *pss, unsigned status, int code, const char *msg)
{
    jw w;
    jw_init(&w, 0, 256);
    jw_obj_begin(&w);
    jw_kstr(&w, "jsonrpc", "2.0");
    jw_key(&w, "error");
    jw_obj_begin(&w);
    jw_kint(&w, "code", code);
    jw_kstr(&w, "message", msg);
    jw_obj_end(&w);
    jw_key(&w, "id");
    jw_null(&w);
    jw_obj_end(&w);
    net_header allow = {"allow:", "GET, POST, DELETE"};
    int rc = net_http_reply_h(wsi, pss, status, "application/json", jw_data(&w), jw_size(&w),
                              &allow, status == 405);
    jw_free(&w);
    return rc;
}

int net_http_writeable(struct lws *wsi, net_pss *pss)
{
    if (pss && !pss->body && pss->mcp) return net_mcp_http_writeable(wsi, pss);
    if (!pss || !pss->body) return 0;
    int n =
        lws_write(wsi, (unsigned char *)pss->body + LWS_PRE, pss->body_len, LWS_WRITE_HTTP_FINAL);
    free(pss->body);
    pss->body = NULL;
    if (n < 0) return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

void net_http_drop(net_pss *pss)
{
    if (!pss) return;
    free(pss->body);
    pss->body = NULL;
    net_mcp_http_closed(pss);
}

static int reply_jw(struct lws *wsi, net_pss *pss, unsigned status, const char *ctype, jw *w)
{
    int rc = net_http_reply(wsi, pss, status, ctype, jw_data(w), jw_size(w));
    jw_free(w);
    return rc;
}

static int reply_error(struct lws *wsi, net_pss *pss, unsigned status, const char *msg)
{
    jw w;
    jw_init(&w, 0, 128);
    jw_obj_begin(&w);
    jw_kstr(&w, "error", msg);
    jw_obj_end(&w);
    return reply_jw(wsi, pss, status, "application/json", &w);
}

static int health(app *a, struct lws *wsi, net_pss *pss, bool legacy)
{
    jw w;
    jw_init(&w, 0, 256);
    jw_obj_begin(&w);
    jw_kstr(&w, "status", legacy ? "healthy" : "ok");
    jw_kstr(&w, "server", legacy ? "Persona MCP Server" : "persona-mcp");
    jw_kstr(&w, "version", PMCP_VERSION);
    jw_kint(&w, "uptime_seconds", (int64_t)(app_now() - (double)a->started_at));
    jw_kint(&w, "connections", atomic_load(&a->connections));
    jw_kbool(&w, "stopping", atomic_load(&a->stopping));
    jw_obj_end(&w);
    return reply_jw(wsi, pss, 200, "application/json", &w);
}

static void gauge(jw *w, const char *name, const char *help, double v)
{
    char line[512];
    int n = snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help,
                     name, name, v);
    jw_append(w, line, (size_t)n);
}

static void counter(jw *w, const char *name, const char *help, uint64_t v)
{
    char line[512];
    int n = snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help,
                     name, name, (unsigned long long)v);
    jw_append(w, line, (size_t)n);
}

static void store_metrics(jw *w, store *st)
{
    store_stats s;
    store_get_stats(st, &s);
    gauge(w, "pmcp_pool_size", "Read connections kept open", s.pool_size);
    gauge(w, "pmcp_pool_max_overflow", "Extra read connections allowed", s.pool_overflow);
    gauge(w, "pmcp_pool_connections_open", "Read connections open", s.conns_open);
    gauge(w, "pmcp_pool_connections_in_use", "Read connections checked out", s.conns_in_use);
    counter(w, "pmcp_pool_checkouts_total", "Read connection checkouts", s.checkouts);
    counter(w, "pmcp_pool_hits_total", "Checkouts served by an idle connection", s.hits);
    counter(w, "pmcp_pool_misses_total", "Checkouts that opened a connection", s.misses);
    counter(w, "pmcp_pool_waits_total", "Checkouts that had to wait", s.waits);
    counter(w, "pmcp_pool_wait_timeouts_total", "Checkouts that gave up", s.wait_timeouts);
    char line[256];
    int n = snprintf(line, sizeof line,
                     "# HELP pmcp_pool_wait_seconds_total Time spent waiting for a connection\n"
                     "# TYPE pmcp_pool_wait_seconds_total counter\npmcp_pool_wait_seconds_total "
                     "%.9f\n",
                     (double)s.wait_ns_total / 1e9);
    jw_append(w, line, (size_t)n);
    counter(w, "pmcp_db_writes_total", "Write jobs committed", s.writes);
    counter(w, "pmcp_db_write_errors_total", "Write jobs that failed", s.write_errors);
    counter(w, "pmcp_db_commits_total", "Group commits", s.commits);
    gauge(w, "pmcp_db_write_queue_depth", "Write jobs waiting", (double)s.queue_depth);
    static const char *const le[STORE_BATCH_BUCKETS] = {"1",  "2",  "4",  "8",
                                                        "16", "32", "64", "+Inf"};
    jw_puts(w, "# HELP pmcp_db_commit_batch_size Write jobs per group commit\n");
    jw_puts(w, "# TYPE pmcp_db_commit_batch_size histogram\n");
    for (int i = 0; i < STORE_BATCH_BUCKETS; i++) {
        n = snprintf(line, sizeof line, "pmcp_db_commit_batch_size_bucket{le=\"%s\"} %llu\n", le[i],
                     (unsigned long long)s.batch_le[i]);
        jw_append(w, line, (size_t)n);
    }
    n = snprintf(line, sizeof line,
                 "pmcp_db_commit_batch_size_sum %llu\npmcp_db_commit_batch_size_count %llu\n",
                 (unsigned long long)s.batch_sum, (unsigned long long)s.commits);
    jw_append(w, line, (size_t)n);
}

static int metrics(app *a, struct lws *wsi, net_pss *pss)
{
    jw w;
    jw_init(&w, 0, 16384);
    gauge(&w, "pmcp_connections", "Open WebSocket connections", atomic_load(&a->connections));
    gauge(&w, "pmcp_uptime_seconds", "Seconds since start", app_now() - (double)a->started_at);
    gauge(&w, "pmcp_worker_queue_depth", "Jobs waiting for a worker",
          (double)workq_depth(a->workers));
    persona_reg_rdlock(a->personas);
    gauge(&w, "pmcp_personas", "Personas in the registry", (double)persona_reg_count(a->personas));
    persona_reg_unlock(a->personas);
    metrics_render_requests(&w);
    metrics_render_counters(&w);
    store_metrics(&w, a->store);
    mem_write_collection_metrics(a->memory, &w);
    chat_write_metrics(&w);
    llm_stats ls;
    llm_get_stats(a->llm, &ls);
    counter(&w, "pmcp_llm_requests_total", "Requests sent to the LLM backend", ls.requests);
    counter(&w, "pmcp_llm_errors_total", "LLM requests that failed", ls.errors);
    counter(&w, "pmcp_llm_cancelled_total", "LLM requests aborted", ls.cancelled);
    gauge(&w, "pmcp_llm_active_requests", "LLM requests in progress", ls.active);
    return reply_jw(wsi, pss, 200, "text/plain; version=0.0.4; charset=utf-8", &w);
}

int net_http_request(app *a, struct lws *wsi, net_pss *pss, const char *uri)
{
    metrics_inc(MC_HTTP_REQUESTS, 1);
    bool is_get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
    const char *why = NULL;
    bool public_route = strcmp(uri, "/health") == 0;
    int status = net_guard_check(a, wsi, !public_route, &why);
    if (status && strcmp(uri, "/mcp") == 0) /* MCP clients expect a JSON-RPC error body */
        return net_http_rpc_error(wsi, pss, (unsigned)status, -32000, why);
    if (status) return reply_error(wsi, pss, (unsigned)status, why);
    if (strcmp(uri, "/") == 0 || strcmp(uri, "/health") == 0 || strcmp(uri, "/metrics") == 0) {
        if (!is_get) return reply_error(wsi, pss, 405, "method not allowed");
        if (strcmp(uri, "/metrics") == 0) return metrics(a, wsi, pss);
        return health(a, wsi, pss, strcmp(uri, "/") == 0);
    }
    if (strcmp(uri, "/mcp") == 0) return net_mcp_http_request(a, wsi, pss);
    return reply_error(wsi, pss, 404, "not found");
}
