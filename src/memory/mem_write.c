/*
 * mem_write.c - opening the memory store and every write: add (single and
 * batch, one transaction), update, delete.
 *
 * A write is prepared on the calling worker (validation, embedding,
 * importance score), executed as one job on the writer thread (duplicate
 * check, collection model check, INSERT), and applied to the RAM collection
 * only after the commit: the cache never holds what the database does not.
 * Exact duplicates (same persona, same content) are not stored twice: the
 * existing memory's id is returned with duplicate = true.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "lib/log.h"
#include "lib/util.h"
#include "memory/mem_embed.h"
#include "memory/mem_internal.h"

int mem_fail(mem_err *e, int code, const char *fmt, ...)
{
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

void mem_config_default(mem_config *c)
{
    memset(c, 0, sizeof *c);
    c->dim = MEM_DEFAULT_DIM;
    c->budget_bytes = (size_t)1 << 30;
    mem_weights_default(&c->weights);
    prune_config_default(&c->prune);
    decay_config_default(&c->decay);
    c->access_flush_ms = 1000;
}

int mem_open(mem_store **out, store *st, const mem_config *cfg, char *err, size_t errlen)
{
    if (cfg->dim < 1 || cfg->dim > MEM_MAX_DIM) {
        snprintf(err, errlen, "embedding dimension must be 1..%d", MEM_MAX_DIM);
        return -1;
    }
    mem_store *m = calloc(1, sizeof *m);
    if (!m) abort();
    m->st = st;
    m->cfg = *cfg;
    mem_embed_builtin_model(cfg->dim, m->model, sizeof m->model);
    pthread_mutex_init(&m->map_mu, NULL);
    pthread_mutex_init(&m->types_mu, NULL);
    pthread_mutex_init(&m->stats_mu, NULL);
    pthread_mutex_init(&m->decay_mu, NULL);
    pthread_cond_init(&m->decay_cv, NULL);
    m->rows = mem_rowcache_new();
    mem_rowcache_attach(m);
    mem_access_open(m, cfg->access_flush_ms);
    m->split = mem_split_start();
    atomic_init(&m->fts_pending,
                1); /* rows queued by an earlier run are indexed at the first tick */
    atomic_init(&m->fts_flushing, false);
    *out = m;
    if (cfg->decay_autostart) mem_decay_start(m);
    return 0;
}

void mem_close(mem_store *m)
{
    if (!m) return;
    mem_decay_stop(m);
    mem_access_close(m);
    mem_fts_close(m);
    mem_dedup_close(m);
    mem_rowcache_detach(m);
    mem_rowcache_free(m->rows);
    mem_split_stop(m->split);
    coll_free_all(m);
    mem_maint_free(m);
    pthread_mutex_destroy(&m->map_mu);
    pthread_mutex_destroy(&m->types_mu);
    pthread_mutex_destroy(&m->stats_mu);
    pthread_mutex_destroy(&m->decay_mu);
    pthread_cond_destroy(&m->decay_cv);
    free(m);
}

const char *mem_model(mem_store *m)
{
    return m->model;
}

const mem_config *mem_get_config(mem_store *m)
{
    return &m->cfg;
}

void mem_forget_persona(mem_store *m, const char *persona_id)
{
    coll_forget(m, coll_get(m, persona_id));
}

void mem_forget_all(mem_store *m)
{
    /* Collections live until mem_close, so the pointers stay valid after
     * map_mu is released; each is forgotten under its own lock only. */
    mem_access_discard(m); /* their rowids may now name other rows */
    mem_fts_added(m, 1);   /* the rows written under us were queued for indexing */
    pthread_mutex_lock(&m->map_mu);
    size_t n = 0;
    for (int b = 0; b < MEM_MAP_BUCKETS; b++)
        for (mem_coll *c = m->buckets[b]; c; c = c->next) n++;
    mem_coll **all = malloc((n ? n : 1) * sizeof *all);
    if (!all) abort();
    n = 0;
    for (int b = 0; b < MEM_MAP_BUCKETS; b++)
        for (mem_coll *c = m->buckets[b]; c; c = c->next) all[n++] = c;
    pthread_mutex_unlock(&m->map_mu);
    for (size_t i = 0; i < n; i++) coll_forget(m, all[i]);
    free(all);
}

void mem_set_embedder(mem_store *m, const char *model_id, mem_embed_fn fn, void *ctx)
{
    snprintf(m->model, sizeof m->model, "%s", model_id);
    m->remote = fn;
    m->remote_ctx = ctx;
}

int mem_embed_text(mem_store *m, const char *text, float **out, int *dim, jarena *a, mem_err *e)
{
    if (!m->remote) {
        *dim = m->cfg.dim;
        *out = jarena_alloc(a, sizeof(float) * (size_t)m->cfg.dim);
        mem_embed_builtin(text, strlen(text), *out, m->cfg.dim);
        return 0;
    }
    float *v = jarena_alloc(a, sizeof(float) * MEM_MAX_DIM);
    char err[200];
    if (m->remote(m->remote_ctx, &text, 1, v, MEM_MAX_DIM, dim, err, sizeof err) < 0)
        return mem_fail(e, -32002, "embedding failed: %s", err);
    mem_normalize(v, *dim);
    *out = v;
    return 0;
}

int mem_check_model(mem_coll *c, const char *model, mem_err *e)
{
    pthread_rwlock_rdlock(&c->lock);
    bool clash = c->model[0] && strcmp(c->model, model) != 0;
    char have[MEM_MODEL_LEN];
    snprintf(have, sizeof have, "%s", c->model);
    pthread_rwlock_unlock(&c->lock);
    if (clash)
        return mem_fail(e, -32002,
                        "Embedding model mismatch for persona %s: its memories use %s, this "
                        "request uses %s (pass embeddings of that model, or run persona-mcp "
                        "reembed)",
                        c->persona_id, have, model);
    return 0;
}

/* The vector for a text or a client-supplied embedding, and the model id
 * it belongs to; fails when the persona's collection uses another model. */
int mem_embed_for(mem_store *m, mem_coll *c, const char *text, const float *given, int given_dim,
                  float **out, int *dim, char model[MEM_MODEL_LEN], jarena *a, mem_err *e)
{
    if (given) {
        if (given_dim < 1 || given_dim > MEM_MAX_DIM)
            return mem_fail(e, -32602, "Invalid params: 'embedding' must have 1..%d numbers",
                            MEM_MAX_DIM);
        snprintf(model, MEM_MODEL_LEN, "client/%d", given_dim);
        *dim = given_dim;
        *out = jarena_alloc(a, sizeof(float) * (size_t)given_dim);
        memcpy(*out, given, sizeof(float) * (size_t)given_dim);
        if (mem_normalize(*out, given_dim) == 0.0f)
            return mem_fail(e, -32602, "Invalid params: 'embedding' must not be all zeros");
    } else {
        snprintf(model, MEM_MODEL_LEN, "%s", m->model);
        if (mem_check_model(c, model, e) < 0) return -1; /* before a remote call */
        if (mem_embed_text(m, text, out, dim, a, e) < 0) return -1;
    }
    return mem_check_model(c, model, e);
}

/* ---- add ------------------------------------------------------------------- */

typedef struct add_plan {
    const mem_item *it;
    mem_coll *coll;
    float *vec;
    int dim;
    char model[MEM_MODEL_LEN];
    char id[40];
    uint64_t hash;
    double importance, created;
    int64_t seq; /* 0 = duplicate (not inserted) */
} add_plan;

typedef struct add_job {
    mem_store *m;
    add_plan *plans;
    size_t n;
    mem_added *out;
    mem_err *e;
} add_job;

static const char SQL_COLL_GET[] = "SELECT model, dim FROM memory_collections WHERE persona_id = ?";
static const char SQL_COLL_PUT[] =
    "INSERT INTO memory_collections (persona_id, model, dim) VALUES (?, ?, ?)";
static const char SQL_INSERT[] =
    "INSERT INTO memories (id, persona_id, content, content_hash, memory_type, importance,"
    " base_importance, emotional_valence, related_personas, visibility, metadata, created_at,"
    " embedding, seq) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
static const char SQL_MAX_SEQ[] = "SELECT coalesce(max(seq), 0) FROM memories";

/* The seq for a new row. SQLite would take max(seq) + 1, which reuses the
 * seq of a deleted newest row; a collection may then see that seq's delete
 * and the new row's insert in either order (workers apply commits as they
 * wake). Counting up from the largest seq seen since start never reuses
 * one while the process runs (a restart starts with empty collections).
 * Gaps (rolled-back inserts) are harmless. */
static int next_seq(mem_store *m, store_conn *c, int64_t *out)
{
    if (!m->next_seq) {
        sqlite3_stmt *q = store_conn_stmt(c, SQL_MAX_SEQ);
        if (!q) return SQLITE_ERROR;
        int rc = sqlite3_step(q);
        if (rc == SQLITE_ROW) m->next_seq = sqlite3_column_int64(q, 0) + 1;
        sqlite3_reset(q);
        if (rc != SQLITE_ROW) return rc;
    }
    *out = m->next_seq++;
    return SQLITE_OK;
}

static int check_collection(store_conn *c, add_plan *p, mem_err *e)
{
    sqlite3_stmt *q = store_conn_stmt(c, SQL_COLL_GET);
    if (!q) return SQLITE_ERROR;
    sqlite3_bind_text(q, 1, p->it->persona_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        const char *model = (const char *)sqlite3_column_text(q, 0);
        bool same = strcmp(model, p->model) == 0 && sqlite3_column_int(q, 1) == p->dim;
        if (!same)
            mem_fail(e, -32002, "Embedding model mismatch for persona %s: its memories use %s",
                     p->it->persona_id, model);
        sqlite3_reset(q);
        return same ? SQLITE_OK : SQLITE_CONSTRAINT;
    }
    sqlite3_reset(q);
    if (rc != SQLITE_DONE) return rc;
    q = store_conn_stmt(c, SQL_COLL_PUT);
    if (!q) return SQLITE_ERROR;
    sqlite3_bind_text(q, 1, p->it->persona_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, p->model, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 3, p->dim);
    rc = sqlite3_step(q);
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int insert_one(mem_store *m, store_conn *c, add_plan *p)
{
    const mem_item *it = p->it;
    int64_t seq = 0;
    int rc = next_seq(m, c, &seq);
    if (rc != SQLITE_OK) return rc;
    sqlite3_stmt *q = store_conn_stmt(c, SQL_INSERT);
    if (!q) return SQLITE_ERROR;
    sqlite3_bind_text(q, 1, p->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, it->persona_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, it->content, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 4, (sqlite3_int64)p->hash);
    sqlite3_bind_text(q, 5, it->memory_type, -1, SQLITE_STATIC);
    sqlite3_bind_double(q, 6, p->importance);
    sqlite3_bind_double(q, 7, p->importance);
    sqlite3_bind_double(q, 8, it->emotional_valence);
    sqlite3_bind_text(q, 9, it->related_json, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 10, it->visibility, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 11, it->metadata_json, -1, SQLITE_STATIC);
    sqlite3_bind_double(q, 12, p->created);
    sqlite3_bind_blob(q, 13, p->vec, (int)(sizeof(float) * (size_t)p->dim), SQLITE_STATIC);
    sqlite3_bind_int64(q, 14, seq);
    rc = sqlite3_step(q);
    sqlite3_reset(q);
    if (rc != SQLITE_DONE) return rc;
    p->seq = seq;
    return SQLITE_OK;
}

/* The collection check reads one row per persona: a batch (all one persona,
 * as a rule) checks it once; same model and dimension -> same answer. */
static bool same_collection(const add_plan *a, const add_plan *b)
{
    return b && a->dim == b->dim && strcmp(a->model, b->model) == 0 &&
           strcmp(a->it->persona_id, b->it->persona_id) == 0;
}

static int add_fn(store_conn *c, void *ctx)
{
    add_job *j = ctx;
    const add_plan *checked = NULL;
    for (size_t i = 0; i < j->n; i++) {
        add_plan *p = &j->plans[i];
        mem_added *o = &j->out[i];
        memset(o, 0, sizeof *o);
        o->importance = p->importance;
        int rc = mem_dedup_find(j->m, c, p->it->persona_id, p->hash, p->it->content, o);
        if (rc == SQLITE_OK && !o->duplicate && !same_collection(p, checked)) {
            rc = check_collection(c, p, j->e);
            checked = p;
        }
        if (rc == SQLITE_OK && !o->duplicate) {
            rc = insert_one(j->m, c, p);
            memcpy(o->id, p->id, sizeof o->id);
            if (rc == SQLITE_OK) mem_dedup_note(j->m, p->it->persona_id, p->hash, p->seq);
        }
        if (rc != SQLITE_OK) return rc;
    }
    return SQLITE_OK;
}

static int validate_item(const mem_item *it, mem_err *e)
{
    if (!it->persona_id || !*it->persona_id)
        return mem_fail(e, -32602, "Invalid params: 'persona_id' is required");
    if (strlen(it->persona_id) > MEM_PERSONA_MAX)
        return mem_fail(e, -32602, "Invalid params: 'persona_id' is longer than %d bytes",
                        MEM_PERSONA_MAX);
    if (!it->content || !*it->content)
        return mem_fail(e, -32602, "Invalid params: 'content' is required");
    if (mem_vis_code(it->visibility) < 0)
        return mem_fail(e, -32602,
                        "Invalid params: 'visibility' must be private, shared or public");
    if (!it->auto_importance && !(it->importance >= 0 && it->importance <= 1))
        return mem_fail(e, -32602, "Invalid params: 'importance' must be between 0 and 1");
    if (!(it->emotional_valence >= -1 && it->emotional_valence <= 1))
        return mem_fail(e, -32602, "Invalid params: 'emotional_valence' must be between -1 and 1");
    return 0;
}

static int plan_item(mem_store *m, const mem_item *it, add_plan *p, double now, jarena *a,
                     mem_err *e)
{
    if (validate_item(it, e) < 0) return -1;
    p->it = it;
    p->coll = coll_get(m, it->persona_id);
    if (mem_embed_for(m, p->coll, it->content, it->embedding, it->embedding_dim, &p->vec, &p->dim,
                      p->model, a, e) < 0)
        return -1;
    util_uuid7(p->id); /* time-ordered: the id index grows at its end */
    p->hash = util_hash64(it->content, strlen(it->content));
    p->created = now;
    if (it->auto_importance) {
        mem_score_ctx ctx = {.speaker = it->speaker, .memory_type = it->memory_type};
        if (it->user_chat) {
            ctx.has_context = true;
            ctx.continue_score = 50;
            ctx.topic = "user_conversation";
        }
        p->importance = mem_importance(it->content, &ctx, &m->cfg.weights);
    } else {
        p->importance = it->importance;
    }
    p->importance = round(p->importance * 1e6) / 1e6;
    return 0;
}

/* Embed and score every item (vectors in a); -1 with e naming the item. */
static int plan_all(mem_store *m, const mem_item *items, size_t n, add_plan **out, jarena *a,
                    mem_err *e)
{
    add_plan *plans = jarena_alloc(a, sizeof *plans * (n ? n : 1));
    memset(plans, 0, sizeof *plans * (n ? n : 1));
    *out = plans;
    double now = app_now();
    for (size_t i = 0; i < n; i++) {
        if (plan_item(m, &items[i], &plans[i], now, a, e) == 0) continue;
        if (n > 1) {
            char inner[sizeof e->msg];
            snprintf(inner, sizeof inner, "%s", e->msg);
            mem_fail(e, e->code, "memories[%zu]: %s", i, inner);
        }
        return -1;
    }
    e->code = 0;
    return 0;
}

/* After the commit: the writer's rc to 0/-1, new rows into the collections. */
static int add_finish(mem_store *m, int src, const add_plan *plans, size_t n, const mem_added *out,
                      mem_err *e)
{
    if (src != SQLITE_OK && src != SQLITE_DONE) {
        if (!e->code) mem_fail(e, -32002, "storing memory failed (SQLite error %d)", src);
        return -1;
    }
    size_t added = 0;
    for (size_t i = 0; i < n; i++) {
        const add_plan *p = &plans[i];
        if (out[i].duplicate) continue;
        coll_apply_insert(m, p->coll, p->seq, p->vec, p->dim, p->model, p->importance,
                          p->it->memory_type, mem_vis_code(p->it->visibility), p->created);
        added++;
    }
    mem_fts_added(m, added);
    return 0;
}

int mem_add(mem_store *m, const mem_item *items, size_t n, mem_added *out, mem_err *e)
{
    jarena a;
    jarena_init(&a);
    add_plan *plans;
    int rc = plan_all(m, items, n, &plans, &a, e);
    if (rc == 0) {
        add_job j = {.m = m, .plans = plans, .n = n, .out = out, .e = e};
        rc = add_finish(m, store_write(m->st, add_fn, &j), plans, n, out, e);
    }
    jarena_free(&a);
    return rc;
}

/* ---- the same without waiting for the commit ------------------------------ */

typedef struct add_async {
    mem_store *m;
    jarena a; /* item copies, plans, vectors */
    add_job job;
    mem_item *items;
    mem_added *out;
    mem_err e;
    mem_add_done done;
    void *ctx;
} add_async;

static const char *dup_or_null(jarena *a, const char *s)
{
    return s ? jarena_strndup(a, s, strlen(s)) : NULL;
}

/* The request's memory is gone once its handler returns: keep copies. */
static mem_item *copy_items(jarena *a, const mem_item *src, size_t n)
{
    mem_item *it = jarena_alloc(a, sizeof *it * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        it[i] = src[i];
        it[i].persona_id = dup_or_null(a, src[i].persona_id);
        it[i].content = dup_or_null(a, src[i].content);
        it[i].memory_type = dup_or_null(a, src[i].memory_type);
        it[i].related_json = dup_or_null(a, src[i].related_json);
        it[i].visibility = dup_or_null(a, src[i].visibility);
        it[i].metadata_json = dup_or_null(a, src[i].metadata_json);
    }
    return it;
}

static void add_async_free(add_async *x)
{
    jarena_free(&x->a);
    free(x);
}

static int add_async_fn(store_conn *c, void *ctx)
{
    return add_fn(c, &((add_async *)ctx)->job);
}

static void add_async_done(int src, void *ctx)
{
    add_async *x = ctx;
    int rc = add_finish(x->m, src, x->job.plans, x->job.n, x->out, &x->e);
    x->done(rc, x->out, x->job.n, &x->e, x->ctx);
    add_async_free(x);
}

int mem_add_async(mem_store *m, const mem_item *items, size_t n, mem_add_done done, void *ctx,
                  mem_err *e)
{
    add_async *x = calloc(1, sizeof *x);
    if (!x) abort();
    jarena_init(&x->a);
    x->m = m;
    store_expect(m->st); /* a write is on its way: the writer may wait for it */
    x->items = copy_items(&x->a, items, n);
    add_plan *plans;
    if (plan_all(m, x->items, n, &plans, &x->a, e) < 0) {
        store_unexpect(m->st);
        add_async_free(x);
        return -1;
    }
    x->out = jarena_alloc(&x->a, sizeof *x->out * (n ? n : 1));
    x->job = (add_job){.m = m, .plans = plans, .n = n, .out = x->out, .e = &x->e};
    x->done = done;
    x->ctx = ctx;
    store_submit_expected(m->st, add_async_fn, add_async_done, x);
    return 0;
}

/* ---- update and delete ----------------------------------------------------- */

typedef struct upd_job {
    mem_store *m;
    const char *id;
    const mem_patch *p;
    const float *vec; /* new embedding when content changed */
    int dim;
    int64_t seq;
    char persona[MEM_PERSONA_MAX + 1];
    double importance;
    char type[128];
    int vis;
    bool found;
} upd_job;

static const char SQL_FIND[] =
    "SELECT seq, persona_id, importance, memory_type, visibility FROM memories WHERE id = ?";
static const char SQL_UPDATE[] =
    "UPDATE memories SET content = coalesce(?2, content),"
    " content_hash = coalesce(?3, content_hash), memory_type = coalesce(?4, memory_type),"
    " importance = coalesce(?5, importance), base_importance = coalesce(?5, base_importance),"
    " visibility = coalesce(?6, visibility), metadata = coalesce(?7, metadata),"
    " emotional_valence = coalesce(?8, emotional_valence), embedding = coalesce(?9, embedding)"
    " WHERE seq = ?1";

static int find_row(store_conn *c, upd_job *j)
{
    sqlite3_stmt *q = store_conn_stmt(c, SQL_FIND);
    if (!q) return SQLITE_ERROR;
    sqlite3_bind_text(q, 1, j->id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        j->found = true;
        j->seq = sqlite3_column_int64(q, 0);
        snprintf(j->persona, sizeof j->persona, "%s", (const char *)sqlite3_column_text(q, 1));
        j->importance = sqlite3_column_double(q, 2);
        snprintf(j->type, sizeof j->type, "%s", (const char *)sqlite3_column_text(q, 3));
        j->vis = mem_vis_code((const char *)sqlite3_column_text(q, 4));
    }
    sqlite3_reset(q);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static void bind_text_or_null(sqlite3_stmt *q, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(q, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(q, i);
}

static int update_fn(store_conn *c, void *ctx)
{
    upd_job *j = ctx;
    int rc = find_row(c, j);
    if (rc != SQLITE_OK || !j->found) return rc;
    const mem_patch *p = j->p;
    sqlite3_stmt *q = store_conn_stmt(c, SQL_UPDATE);
    if (!q) return SQLITE_ERROR;
    sqlite3_bind_int64(q, 1, j->seq);
    bind_text_or_null(q, 2, p->content);
    uint64_t hash = p->content ? util_hash64(p->content, strlen(p->content)) : 0;
    if (p->content) sqlite3_bind_int64(q, 3, (sqlite3_int64)hash);
    bind_text_or_null(q, 4, p->memory_type);
    if (p->set_importance) sqlite3_bind_double(q, 5, p->importance);
    bind_text_or_null(q, 6, p->visibility);
    bind_text_or_null(q, 7, p->metadata_json);
    if (p->set_valence) sqlite3_bind_double(q, 8, p->emotional_valence);
    if (j->vec)
        sqlite3_bind_blob(q, 9, j->vec, (int)(sizeof(float) * (size_t)j->dim), SQLITE_STATIC);
    rc = sqlite3_step(q);
    sqlite3_reset(q);
    if (rc == SQLITE_DONE && p->content) mem_dedup_note(j->m, j->persona, hash, j->seq);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int check_patch(const mem_patch *p, mem_err *e)
{
    if (p->content && !*p->content)
        return mem_fail(e, -32602, "Invalid params: 'content' must not be empty");
    if (p->visibility && mem_vis_code(p->visibility) < 0)
        return mem_fail(e, -32602,
                        "Invalid params: 'visibility' must be private, shared or public");
    if (p->set_importance && !(p->importance >= 0 && p->importance <= 1))
        return mem_fail(e, -32602, "Invalid params: 'importance' must be between 0 and 1");
    if (p->set_valence && !(p->emotional_valence >= -1 && p->emotional_valence <= 1))
        return mem_fail(e, -32602, "Invalid params: 'emotional_valence' must be between -1 and 1");
    return 0;
}

int mem_update(mem_store *m, const char *id, const mem_patch *p, char *persona_out, size_t n,
               mem_err *e)
{
    if (check_patch(p, e) < 0) return -1;
    upd_job j = {.m = m, .id = id, .p = p, .vis = -1};
    jarena a;
    jarena_init(&a);
    float *vec = NULL;
    if (p->content) {
        /* Only built-in vectors can be recomputed from text; a collection of
         * client embeddings rejects a content change in mem_embed_for. */
        upd_job probe = j;
        store_conn *sc = store_pool_get(m->st);
        int frc = sc ? find_row(sc, &probe) : SQLITE_BUSY;
        if (sc) store_pool_put(m->st, sc);
        if (frc == SQLITE_OK && probe.found) {
            char model[MEM_MODEL_LEN];
            if (mem_embed_for(m, coll_get(m, probe.persona), p->content, NULL, 0, &vec, &j.dim,
                              model, &a, e) < 0) {
                jarena_free(&a);
                return -1;
            }
            j.vec = vec;
        }
    }
    int rc = store_write(m->st, update_fn, &j);
    int result = 0;
    if (rc != SQLITE_OK && rc != SQLITE_DONE)
        result = mem_fail(e, -32002, "updating memory failed (SQLite error %d)", rc);
    else if (!j.found)
        result = 1;
    else {
        snprintf(persona_out, n, "%s", j.persona);
        coll_apply_update(m, coll_get(m, j.persona), j.seq,
                          p->set_importance ? p->importance : j.importance, p->memory_type,
                          p->visibility ? mem_vis_code(p->visibility) : -1, j.vec);
        mem_fts_added(m, p->content ? 1 : 0); /* new content is queued for indexing */
    }
    jarena_free(&a);
    return result;
}

static const char SQL_DELETE[] = "DELETE FROM memories WHERE seq = ?";

static int delete_fn(store_conn *c, void *ctx)
{
    upd_job *j = ctx;
    int rc = find_row(c, j);
    if (rc != SQLITE_OK || !j->found) return rc;
    sqlite3_stmt *q = store_conn_stmt(c, SQL_DELETE);
    if (!q) return SQLITE_ERROR;
    sqlite3_bind_int64(q, 1, j->seq);
    rc = sqlite3_step(q);
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int mem_delete(mem_store *m, const char *id, char *persona_out, size_t n, mem_err *e)
{
    upd_job j = {.id = id};
    int rc = store_write(m->st, delete_fn, &j);
    if (rc != SQLITE_OK && rc != SQLITE_DONE)
        return mem_fail(e, -32002, "deleting memory failed (SQLite error %d)", rc);
    if (!j.found) return 1;
    snprintf(persona_out, n, "%s", j.persona);
    coll_apply_delete(m, coll_get(m, j.persona), &j.seq, 1);
    return 0;
}
