/*
 * api_memory.c - memory.* methods and persona.memory (spec §2.5 with the
 * §12 fixes): strict parameter checks, filters that combine, real
 * similarity, real access counts, pruning and decay that really change rows.
 *
 * Naming (§12 item 12a): every memory object carries "id" and, for clients
 * of the original's cross-persona results, the alias "memory_id"; every list
 * result carries "total_results" beside the original's count field.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "lib/jw.h"
#include "lib/util.h"
#include "memory/memory.h"
#include "persona/persona.h"

#define CONTENT_MAX_BYTES (256 * 1024)
#define BATCH_MAX         1000

/* ---- shared helpers ------------------------------------------------------- */

static int mem_error(rpc_call *c, const mem_err *e)
{
    return rpc_fail(c, e->code ? e->code : RPC_MEMORY_ERROR, "%s", e->msg);
}

static void write_time(jw *w, const char *key, double epoch)
{
    char iso[40];
    jw_key(w, key);
    if (epoch > 0) {
        util_iso_time(epoch, iso, false);
        jw_str(w, iso);
    } else {
        jw_null(w);
    }
}

static void write_row(jw *w, const mem_row *r, bool similarity)
{
    jw_obj_begin(w);
    jw_kstr(w, "id", r->id);
    jw_kstr(w, "memory_id", r->id);
    jw_kstr(w, "persona_id", r->persona_id);
    jw_kstr(w, "content", r->content);
    jw_kstr(w, "memory_type", r->memory_type);
    jw_kdouble(w, "importance", r->importance);
    jw_kdouble(w, "emotional_valence", r->emotional_valence);
    jw_key(w, "related_personas");
    jw_raw(w, r->related_json, strlen(r->related_json));
    jw_kstr(w, "visibility", r->visibility);
    jw_key(w, "metadata");
    jw_raw(w, r->metadata_json, strlen(r->metadata_json));
    write_time(w, "created_at", r->created_at);
    jw_kint(w, "accessed_count", r->accessed_count);
    write_time(w, "last_accessed", r->last_accessed);
    if (similarity) jw_kdouble(w, "similarity", round(r->similarity * 1e6) / 1e6);
    jw_obj_end(w);
}

/* An array parameter of numbers as floats (for client embeddings). */
static int param_vector(rpc_call *c, const char *key, float **out, int *dim)
{
    const jv *a;
    *out = NULL;
    *dim = 0;
    if (rpc_param_arr(c, key, &a) < 0) return -1;
    if (!a) return 0;
    if (a->len == 0 || a->len > 8192)
        return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: '%s' must hold 1..8192 numbers",
                        key);
    float *v = jarena_alloc(c->arena, sizeof(float) * a->len);
    for (uint32_t i = 0; i < a->len; i++) {
        if (!jv_is_num(&a->u.items[i]))
            return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: '%s[%u]' must be a number", key,
                            i);
        v[i] = (float)jv_num(&a->u.items[i]);
    }
    *out = v;
    *dim = (int)a->len;
    return 0;
}

/* persona_id param or the current persona; any string is accepted (§11). */
static int target_persona(rpc_call *c, char *out, size_t n)
{
    const char *given;
    if (rpc_param_str(c, "persona_id", false, &given) < 0) return -1;
    if (given && *given) {
        if (strlen(given) >= n)
            return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: 'persona_id' is too long");
        snprintf(out, n, "%s", given);
        return 0;
    }
    char cur[40];
    if (!rpc_session_current(c->sess, cur))
        return rpc_fail(c, RPC_NO_ACTIVE_PERSONA,
                        "No persona selected: pass persona_id or call persona.switch first");
    snprintf(out, n, "%s", cur);
    return 0;
}

static const char *json_text(rpc_call *c, const jv *v, const char *def)
{
    if (!v) return def;
    jw w;
    jw_init(&w, 0, 128);
    jw_value(&w, v);
    char *s = jarena_strndup(c->arena, jw_data(&w), jw_size(&w));
    jw_free(&w);
    return s;
}

/* Read one memory's fields from an object (params or a batch element). */
static int read_item(rpc_call *c, mem_item *it, const char *persona, float **vec)
{
    const jv *rel, *meta, *imp;
    if (rpc_param_str(c, "content", true, &it->content) < 0 ||
        rpc_param_str(c, "memory_type", false, &it->memory_type) < 0 ||
        rpc_param_str(c, "visibility", false, &it->visibility) < 0 ||
        rpc_param_num(c, "emotional_valence", -1, 1, 0, &it->emotional_valence) < 0 ||
        rpc_param_arr(c, "related_personas", &rel) < 0 || rpc_param_obj(c, "metadata", &meta) < 0 ||
        param_vector(c, "embedding", vec, &it->embedding_dim) < 0)
        return -1;
    if (strlen(it->content) > CONTENT_MAX_BYTES)
        return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: 'content' is longer than %d bytes",
                        CONTENT_MAX_BYTES);
    for (uint32_t i = 0; rel && i < rel->len; i++)
        if (rel->u.items[i].type != JV_STRING)
            return rpc_fail(c, RPC_INVALID_PARAMS,
                            "Invalid params: 'related_personas' must be an array of strings");
    imp = c->params ? jv_get(c->params, "importance") : NULL;
    it->auto_importance = !imp || imp->type == JV_NULL;
    if (!it->auto_importance && rpc_param_num(c, "importance", 0, 1, 0.5, &it->importance) < 0)
        return -1;
    it->persona_id = persona;
    it->memory_type = it->memory_type ? it->memory_type : "user_input";
    it->visibility = it->visibility ? it->visibility : "private";
    it->related_json = json_text(c, rel, "[]");
    it->metadata_json = json_text(c, meta, "{}");
    it->embedding = *vec;
    it->speaker =
        it->auto_importance ? persona_interest(c->app->personas, persona, c->arena) : NULL;
    return 0;
}

/* ---- store, update, delete -------------------------------------------------- */

static void write_stored(jw *w, const mem_added *out, const char *pid)
{
    jw_obj_begin(w);
    jw_kstr(w, "memory_id", out->id);
    jw_kstr(w, "id", out->id);
    jw_kstr(w, "persona_id", pid);
    jw_kbool(w, "stored", true);
    jw_kbool(w, "duplicate", out->duplicate);
    jw_kdouble(w, "importance", out->importance);
    jw_obj_end(w);
}

typedef struct store_answer {
    app *app;
    rpc_deferred *d;
    char pid[256];
} store_answer;

/* mem_add_async's done, on the writer thread: answer the deferred call. */
static void store_answered(int rc, const mem_added *out, size_t n, const mem_err *e, void *ctx)
{
    (void)n;
    store_answer *s = ctx;
    if (rc < 0) {
        rpc_deferred_error(s->d, e->code ? e->code : RPC_MEMORY_ERROR, e->msg, NULL);
    } else {
        if (!out->duplicate) app_changed(s->app, APP_CHANGED_MEMORIES, s->pid);
        jw w;
        jw_init(&w, 0, 256);
        write_stored(&w, out, s->pid);
        rpc_deferred_result(s->d, w.buf, jw_size(&w));
        jw_free(&w);
    }
    rpc_deferred_end(s->d, rc == 0);
    free(s);
}

/* Where the transport can take a deferred answer (a WebSocket connection),
 * the worker does not wait for the commit: it embeds and scores, hands the
 * row to the writer and is free; the writer's completion answers. Stores
 * pipelined on one connection then share group commits. */
int api_memory_store(rpc_call *c)
{
    char pid[256];
    mem_item it = {0};
    float *vec;
    if (target_persona(c, pid, sizeof pid) < 0 || read_item(c, &it, pid, &vec) < 0) return -1;
    mem_err e = {0};
    rpc_deferred *d = rpc_defer(c, true, c->req_id);
    if (d) {
        store_answer *s = malloc(sizeof *s);
        if (!s) abort();
        s->d = d;
        s->app = c->app;
        snprintf(s->pid, sizeof s->pid, "%s", pid);
        if (mem_add_async(c->app->memory, &it, 1, store_answered, s, &e) < 0) {
            rpc_deferred_error(s->d, e.code ? e.code : RPC_MEMORY_ERROR, e.msg, NULL);
            rpc_deferred_end(s->d, false);
            free(s);
        }
        return 0;
    }
    mem_added out;
    if (mem_add(c->app->memory, &it, 1, &out, &e) < 0) return mem_error(c, &e);
    if (!out.duplicate) app_changed(c->app, APP_CHANGED_MEMORIES, pid);
    write_stored(c->out, &out, pid);
    return 0;
}

int api_memory_store_batch(rpc_call *c)
{
    char pid[256];
    const jv *list;
    if (target_persona(c, pid, sizeof pid) < 0 || rpc_param_arr(c, "memories", &list) < 0)
        return -1;
    if (!list || list->len == 0 || list->len > BATCH_MAX)
        return rpc_fail(c, RPC_INVALID_PARAMS,
                        "Invalid params: 'memories' must be an array of 1..%d objects", BATCH_MAX);
    mem_item *items = jarena_alloc(c->arena, sizeof *items * list->len);
    mem_added *out = jarena_alloc(c->arena, sizeof *out * list->len);
    const jv *saved = c->params;
    for (uint32_t i = 0; i < list->len; i++) {
        float *vec;
        memset(&items[i], 0, sizeof items[i]);
        c->params = &list->u.items[i];
        if (c->params->type != JV_OBJECT || read_item(c, &items[i], pid, &vec) < 0) {
            c->params = saved;
            if (!c->err_code)
                rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: 'memories[%u]' must be an object",
                         i);
            char inner[sizeof c->err_msg];
            snprintf(inner, sizeof inner, "%s", c->err_msg);
            return rpc_fail(c, RPC_INVALID_PARAMS, "memories[%u]: %s", i, inner);
        }
    }
    c->params = saved;
    mem_err e = {0};
    if (mem_add(c->app->memory, items, list->len, out, &e) < 0) return mem_error(c, &e);
    app_changed(c->app, APP_CHANGED_MEMORIES, pid);
    jw *w = c->out;
    int dups = 0;
    jw_obj_begin(w);
    jw_kstr(w, "persona_id", pid);
    jw_key(w, "results");
    jw_arr_begin(w);
    for (uint32_t i = 0; i < list->len; i++) {
        dups += out[i].duplicate;
        jw_obj_begin(w);
        jw_kstr(w, "memory_id", out[i].id);
        jw_kbool(w, "duplicate", out[i].duplicate);
        jw_kdouble(w, "importance", out[i].importance);
        jw_obj_end(w);
    }
    jw_arr_end(w);
    jw_kint(w, "stored", (int64_t)list->len - dups);
    jw_kint(w, "duplicates", dups);
    jw_kint(w, "total_results", list->len);
    jw_obj_end(w);
    return 0;
}

static int memory_id_param(rpc_call *c, const char **id)
{
    if (rpc_param_str(c, "memory_id", false, id) < 0) return -1;
    if (!*id && rpc_param_str(c, "id", false, id) < 0) return -1;
    if (!*id || !**id)
        return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: 'memory_id' is required");
    return 0;
}

int api_memory_update(rpc_call *c)
{
    const char *id;
    mem_patch p = {0};
    const jv *meta, *imp, *val;
    if (memory_id_param(c, &id) < 0 || rpc_param_str(c, "content", false, &p.content) < 0 ||
        rpc_param_str(c, "memory_type", false, &p.memory_type) < 0 ||
        rpc_param_str(c, "visibility", false, &p.visibility) < 0 ||
        rpc_param_obj(c, "metadata", &meta) < 0)
        return -1;
    imp = jv_get(c->params, "importance");
    val = jv_get(c->params, "emotional_valence");
    p.set_importance = imp && imp->type != JV_NULL;
    p.set_valence = val && val->type != JV_NULL;
    if ((p.set_importance && rpc_param_num(c, "importance", 0, 1, 0, &p.importance) < 0) ||
        (p.set_valence &&
         rpc_param_num(c, "emotional_valence", -1, 1, 0, &p.emotional_valence) < 0))
        return -1;
    p.metadata_json = meta ? json_text(c, meta, "{}") : NULL;
    mem_err e = {0};
    char owner[256];
    int rc = mem_update(c->app->memory, id, &p, owner, sizeof owner, &e);
    if (rc < 0) return mem_error(c, &e);
    if (rc == 1) return rpc_fail(c, RPC_MEMORY_ERROR, "Memory not found: %s", id);
    app_changed(c->app, APP_CHANGED_MEMORIES, owner);
    jw_obj_begin(c->out);
    jw_kstr(c->out, "memory_id", id);
    jw_kbool(c->out, "updated", true);
    jw_obj_end(c->out);
    return 0;
}

int api_memory_delete(rpc_call *c)
{
    const char *id;
    if (memory_id_param(c, &id) < 0) return -1;
    char owner[256];
    mem_err e = {0};
    int rc = mem_delete(c->app->memory, id, owner, sizeof owner, &e);
    if (rc < 0) return mem_error(c, &e);
    if (rc == 1) return rpc_fail(c, RPC_MEMORY_ERROR, "Memory not found: %s", id);
    app_changed(c->app, APP_CHANGED_MEMORIES, owner);
    jw_obj_begin(c->out);
    jw_kstr(c->out, "memory_id", id);
    jw_kstr(c->out, "persona_id", owner);
    jw_kbool(c->out, "deleted", true);
    jw_obj_end(c->out);
    return 0;
}

/* ---- search ------------------------------------------------------------------ */

static int vis_filter(rpc_call *c, unsigned *mask)
{
    const char *v;
    *mask = 0;
    if (rpc_param_str(c, "visibility", false, &v) < 0) return -1;
    if (!v) return 0;
    if (!strcmp(v, "private"))
        *mask = MEM_VIS_PRIVATE;
    else if (!strcmp(v, "shared"))
        *mask = MEM_VIS_SHARED;
    else if (!strcmp(v, "public"))
        *mask = MEM_VIS_PUBLIC;
    else
        return rpc_fail(c, RPC_INVALID_PARAMS,
                        "Invalid params: 'visibility' must be private, shared or public");
    return 0;
}

int api_memory_search(rpc_call *c)
{
    char pid[256];
    mem_query q = {.record_access = true};
    int64_t k, lim;
    float *vec;
    if (target_persona(c, pid, sizeof pid) < 0 || rpc_param_str(c, "query", false, &q.text) < 0 ||
        rpc_param_int(c, "limit", 1, 1000, 5, &lim) < 0 ||
        rpc_param_int(c, "n_results", 1, 1000, lim, &k) < 0 ||
        rpc_param_num(c, "min_importance", 0, 1, 0, &q.min_importance) < 0 ||
        rpc_param_str(c, "memory_type", false, &q.memory_type) < 0 ||
        vis_filter(c, &q.vis_mask) < 0 || rpc_param_bool(c, "hybrid", false, &q.hybrid) < 0 ||
        param_vector(c, "embedding", &vec, &q.embedding_dim) < 0)
        return -1;
    if (!vec && (!q.text || !*q.text))
        return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: 'query' is required");
    q.persona_id = pid;
    q.k = (size_t)k;
    q.embedding = vec;
    mem_row *rows;
    size_t n;
    mem_err e = {0};
    if (mem_search(c->app->memory, &q, c->arena, &rows, &n, &e) < 0) return mem_error(c, &e);
    jw *w = c->out;
    jw_obj_begin(w);
    jw_key(w, "memories");
    jw_arr_begin(w);
    for (size_t i = 0; i < n; i++) write_row(w, &rows[i], true);
    jw_arr_end(w);
    jw_kstr(w, "query", q.text ? q.text : "");
    jw_kstr(w, "persona_id", pid);
    jw_kint(w, "result_count", (int64_t)n);
    jw_kint(w, "total_results", (int64_t)n);
    jw_kbool(w, "hybrid", q.hybrid);
    jw_obj_end(w);
    return 0;
}

int api_memory_search_cross(rpc_call *c)
{
    char pid[256];
    mem_cross_query q = {0};
    int64_t k;
    if (target_persona(c, pid, sizeof pid) < 0) {
        if (c->err_code == RPC_NO_ACTIVE_PERSONA)
            return rpc_fail(c, RPC_NO_ACTIVE_PERSONA,
                            "No active persona. Please switch to a persona first.");
        return -1;
    }
    if (rpc_param_str(c, "query", true, &q.text) < 0 ||
        rpc_param_int(c, "n_results", 1, 1000000, 10, &k) < 0 ||
        rpc_param_num(c, "min_importance", 0, 1, 0.6, &q.min_importance) < 0 ||
        rpc_param_bool(c, "include_shared", true, &q.include_shared) < 0 ||
        rpc_param_bool(c, "include_public", true, &q.include_public) < 0)
        return -1;
    q.requester = pid;
    q.k = (size_t)(k > 50 ? 50 : k);
    mem_row *rows;
    size_t n;
    mem_err e = {0};
    if (mem_search_cross(c->app->memory, &q, c->arena, &rows, &n, &e) < 0) return mem_error(c, &e);
    jw *w = c->out;
    jw_obj_begin(w);
    jw_kstr(w, "requesting_persona", pid);
    jw_kstr(w, "query", q.text);
    jw_key(w, "memories");
    jw_arr_begin(w);
    for (size_t i = 0; i < n; i++) {
        const mem_row *r = &rows[i];
        bool own = strcmp(r->persona_id, pid) == 0;
        jw_obj_begin(w);
        jw_kstr(w, "memory_id", r->id);
        jw_kstr(w, "id", r->id);
        jw_kstr(w, "content", r->content);
        jw_kdouble(w, "similarity", round(r->similarity * 1e6) / 1e6);
        jw_kdouble(w, "importance", r->importance);
        jw_kstr(w, "memory_type", r->memory_type);
        write_time(w, "created_at", r->created_at);
        jw_kstr(w, "visibility", r->visibility);
        jw_kstr(w, "source", own ? "own" : "cross_persona");
        jw_kstr(w, "source_persona", r->persona_id);
        jw_obj_end(w);
    }
    jw_arr_end(w);
    jw_kint(w, "total_results", (int64_t)n);
    jw_key(w, "search_params");
    jw_obj_begin(w);
    jw_kdouble(w, "min_importance", q.min_importance);
    jw_kbool(w, "include_shared", q.include_shared);
    jw_kbool(w, "include_public", q.include_public);
    jw_obj_end(w);
    jw_obj_end(w);
    return 0;
}

int api_persona_memory(rpc_call *c)
{
    char pid[40];
    const char *query;
    int64_t lim;
    if (!rpc_session_current(c->sess, pid))
        return rpc_fail(c, RPC_NO_ACTIVE_PERSONA, "No persona selected. Use persona.switch first");
    if (rpc_param_str(c, "query", false, &query) < 0 ||
        rpc_param_int(c, "limit", 1, 1000, 5, &lim) < 0)
        return -1;
    mem_row *rows;
    size_t n;
    mem_err e = {0};
    int rc;
    if (query && *query) {
        mem_query q = {.persona_id = pid, .text = query, .k = (size_t)lim, .record_access = true};
        rc = mem_search(c->app->memory, &q, c->arena, &rows, &n, &e);
    } else {
        rc = mem_list(c->app->memory, pid, 0, (size_t)lim, c->arena, &rows, &n, &e);
    }
    if (rc < 0) return mem_error(c, &e);
    jw *w = c->out;
    jw_obj_begin(w);
    jw_key(w, "memories");
    jw_arr_begin(w);
    for (size_t i = 0; i < n; i++) {
        jw_obj_begin(w);
        jw_kstr(w, "id", rows[i].id);
        jw_kstr(w, "content", rows[i].content);
        jw_kdouble(w, "importance", rows[i].importance);
        jw_kstr(w, "memory_type", rows[i].memory_type);
        write_time(w, "created_at", rows[i].created_at);
        jw_obj_end(w);
    }
    jw_arr_end(w);
    jw_kstr(w, "query", query ? query : "");
    jw_kint(w, "total_found", (int64_t)n);
    jw_kint(w, "total_results", (int64_t)n);
    jw_obj_end(w);
    return 0;
}

/* ---- statistics ----------------------------------------------------------------- */

int api_memory_stats(rpc_call *c)
{
    char pid[256];
    if (target_persona(c, pid, sizeof pid) < 0) return -1;
    mem_err e = {0};
    return mem_write_stats(c->app->memory, pid, c->out, &e) < 0 ? mem_error(c, &e) : 0;
}

bool api_stats_inline(app *a, rpc_session *s, const jv *params)
{
    const jv *p = jv_get(params, "persona_id");
    char cur[40];
    const char *pid = NULL;
    if (jv_is_str(p) && p->len)
        pid = p->u.s;
    else if (rpc_session_current(s, cur))
        pid = cur;
    return pid && mem_stats_ready(a->memory, pid);
}

int api_memory_shared_stats(rpc_call *c)
{
    jw *w = c->out;
    size_t mark = jw_size(w);
    jw_obj_begin(w);
    jw_key(w, "shared_memory_statistics");
    mem_err e = {0};
    if (mem_write_shared_stats(c->app->memory, w, &e) < 0) {
        jw_truncate(w, mark);
        return mem_error(c, &e);
    }
    char ts[40];
    app_iso_now(ts, false);
    jw_kstr(w, "timestamp", ts);
    jw_obj_end(w);
    return 0;
}
