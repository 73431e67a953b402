/*
 * api_system.c - system.status and system.models (spec §2.7), extended with
 * the server's own health figures (uptime, connections, read pool, writer).
 */
#include "api/api.h"
#include "chat/chat.h"
#include "engine/engine.h"
#include "lib/jw.h"
#include "llm/llm.h"
#include "lib/workq.h"
#include "persona/persona.h"
#include "store/store.h"

static void write_store_stats(jw *w, store *st)
{
    store_stats s;
    store_get_stats(st, &s);
    jw_key(w, "pool");
    jw_obj_begin(w);
    jw_kint(w, "pool_size", s.pool_size);
    jw_kint(w, "max_overflow", s.pool_overflow);
    jw_kint(w, "total_connections", s.conns_open);
    jw_kint(w, "available_connections", s.conns_idle);
    jw_kint(w, "checked_out_connections", s.conns_in_use);
    jw_kint(w, "checkout_count", (int64_t)s.checkouts);
    jw_kint(w, "pool_hits", (int64_t)s.hits);
    jw_kint(w, "pool_misses", (int64_t)s.misses);
    jw_kdouble(w, "hit_ratio", s.checkouts ? (double)s.hits / (double)s.checkouts : 0.0);
    jw_kint(w, "waits", (int64_t)s.waits);
    jw_kdouble(w, "wait_seconds_total", (double)s.wait_ns_total / 1e9);
    jw_kint(w, "wait_timeouts", (int64_t)s.wait_timeouts);
    jw_obj_end(w);
    jw_key(w, "writer");
    jw_obj_begin(w);
    jw_kint(w, "writes", (int64_t)s.writes);
    jw_kint(w, "write_errors", (int64_t)s.write_errors);
    jw_kint(w, "commits", (int64_t)s.commits);
    jw_kdouble(w, "average_batch", s.commits ? (double)s.batch_sum / (double)s.commits : 0.0);
    jw_kint(w, "queue_depth", (int64_t)s.queue_depth);
    jw_obj_end(w);
}

int api_system_status(rpc_call *c)
{
    app *a = c->app;
    double now = app_now();
    size_t total = 0, available = 0;
    persona_reg_rdlock(a->personas);
    total = persona_reg_count(a->personas);
    for (size_t i = 0; i < total; i++)
        available += persona_available(persona_reg_at(a->personas, i), now);
    persona_reg_unlock(a->personas);
    char cur[40], ts[40];
    bool has_cur = rpc_session_current(c->sess, cur);
    app_iso_now(ts, false);
    jw *w = c->out;
    jw_obj_begin(w);
    jw_kstr(w, "system_status", atomic_load(&a->stopping) ? "stopping" : "operational");
    jw_kbool(w, "llm_available", llm_available(a->llm));
    jw_kint(w, "total_personas", (int64_t)total);
    jw_kint(w, "available_personas", (int64_t)available);
    jw_kint(w, "active_conversations", engine_active_count(a));
    jw_kstr(w, "current_persona", has_cur ? cur : NULL);
    jw_kstr(w, "current_conversation", NULL);
    jw_kstr(w, "timestamp", ts);
    jw_kstr(w, "version", PMCP_VERSION);
    jw_kint(w, "uptime_seconds", (int64_t)(now - (double)a->started_at));
    jw_kint(w, "connections", atomic_load(&a->connections));
    jw_kint(w, "worker_queue_depth", a->workers ? (int64_t)workq_depth(a->workers) : 0);
    write_store_stats(w, a->store);
    jw_key(w, "chat");
    chat_write_status(w);
    jw_obj_end(w);
    return 0;
}

int api_system_models(rpc_call *c)
{
    char **names = NULL, err[256] = "";
    int n = llm_models(c->app->llm, &names, err, sizeof err);
    const llm_config *l = llm_get_config(c->app->llm);
    jw *w = c->out;
    jw_obj_begin(w);
    jw_key(w, "available_models");
    jw_arr_begin(w);
    for (int i = 0; i < n; i++) jw_str(w, names[i]);
    jw_arr_end(w);
    jw_kstr(w, "current_model", l->model);
    jw_kstr(w, "provider", llm_provider_name(l->provider));
    jw_kbool(w, "llm_available", n >= 0 && l->provider != LLM_NONE);
    if (n < 0) jw_kstr(w, "error", err);
    jw_obj_end(w);
    if (n > 0) llm_free_models(names, n);
    return 0;
}
