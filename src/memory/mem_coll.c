/*
 * mem_coll.c - per-persona vector collections in RAM (the search cache).
 *
 * A collection struct is created on first mention of a persona id and
 * stays in the hash map for the life of the process (it is small); its
 * arrays are what gets loaded and evicted. Loading happens under the
 * collection's write lock, so a commit that wants to append waits for the
 * load; a row the load already read is recognised by seq <= max_seq and not
 * appended twice (seq is the rowid, assigned in commit order by the single
 * writer). Updates and deletes are idempotent "set" operations, safe to
 * apply whether or not the load saw them.
 *
 * Eviction: after a load pushes resident bytes over the budget, the least
 * recently used loaded collections that nobody holds (trywrlock) are
 * unloaded until it fits.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/util.h"
#include "memory/mem_internal.h"
#include "memory/mem_scan.h"

static const char *const g_vis_names[] = {"private", "shared", "public"};

int mem_vis_code(const char *v)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(v, g_vis_names[i]) == 0) return i;
    return -1;
}

const char *mem_vis_name(int code)
{
    return (code >= 0 && code < 3) ? g_vis_names[code] : "private";
}

int mem_type_id(mem_store *m, const char *type, bool create)
{
    pthread_mutex_lock(&m->types_mu);
    int id = -1;
    for (size_t i = 0; i < m->ntypes && id < 0; i++)
        if (strcmp(m->types[i], type) == 0) id = (int)i;
    if (id < 0 && create && m->ntypes < 65535) {
        m->types = realloc(m->types, (m->ntypes + 1) * sizeof *m->types);
        if (!m->types || !(m->types[m->ntypes] = strdup(type))) abort();
        id = (int)m->ntypes++;
    }
    pthread_mutex_unlock(&m->types_mu);
    return id;
}

mem_coll *coll_get(mem_store *m, const char *persona_id)
{
    uint64_t h = util_hash64(persona_id, strlen(persona_id)) % MEM_MAP_BUCKETS;
    pthread_mutex_lock(&m->map_mu);
    mem_coll *c = m->buckets[h];
    while (c && strcmp(c->persona_id, persona_id) != 0) c = c->next;
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c || !(c->persona_id = strdup(persona_id))) abort();
        pthread_rwlock_init(&c->lock, NULL);
        c->next = m->buckets[h];
        m->buckets[h] = c;
    }
    pthread_mutex_unlock(&m->map_mu);
    return c;
}

static size_t coll_bytes(const mem_coll *c)
{
    size_t row = (size_t)c->dim * (sizeof(float) + sizeof(uint16_t)) + sizeof(int64_t) +
                 sizeof(float) + sizeof(uint16_t) + 1 + sizeof(double);
    return c->cap * row;
}

int64_t coll_day(double epoch)
{
    return (int64_t)(epoch / 86400.0);
}

static void agg_add(mem_coll *c, double imp, int type, double created, int sign)
{
    c->sum_importance += sign * imp;
    if (imp >= 0.7 - 1e-6) c->high_count += (size_t)(long)sign; /* stored as float */
    if ((size_t)type >= c->ntype_counts) {
        size_t n = (size_t)type + 8;
        c->type_counts = realloc(c->type_counts, n * sizeof *c->type_counts);
        if (!c->type_counts) abort();
        memset(c->type_counts + c->ntype_counts, 0, (n - c->ntype_counts) * sizeof(uint32_t));
        c->ntype_counts = n;
    }
    c->type_counts[type] += (uint32_t)sign;
    if (coll_day(created) == c->today) c->today_count += (size_t)(long)sign;
}

void coll_refresh_today(mem_coll *c)
{
    int64_t today = coll_day(app_now());
    if (today == c->today) return;
    c->today = today;
    c->today_count = 0;
    for (size_t r = 0; r < c->n; r++) c->today_count += coll_day(c->created[r]) == today;
}

static void coll_unload(mem_store *m, mem_coll *c)
{
    atomic_fetch_sub(&m->resident_bytes, coll_bytes(c));
    free(c->vecs);
    free(c->half);
    free(c->seq);
    free(c->importance);
    free(c->type_id);
    free(c->vis);
    free(c->created);
    free(c->type_counts);
    c->created = NULL;
    c->type_counts = NULL;
    c->ntype_counts = 0;
    c->sum_importance = 0;
    c->high_count = 0;
    c->today_count = 0;
    c->vecs = NULL;
    c->half = NULL;
    c->norm_max = 0;
    c->seq = NULL;
    c->importance = NULL;
    c->type_id = NULL;
    c->vis = NULL;
    c->n = c->cap = 0;
    c->loaded = false;
    free(c->tomb);
    c->tomb = NULL;
    c->ntomb = 0;
}

#define MAX_TOMBS 4096

/* Remember a deleted seq the collection has not seen (caller: write lock). */
static void tomb_add(mem_coll *c, int64_t seq)
{
    if (c->ntomb == MAX_TOMBS) { /* inserts never applied: forget the oldest */
        memmove(c->tomb, c->tomb + 1, (MAX_TOMBS - 1) * sizeof *c->tomb);
        c->ntomb--;
    }
    if (!c->tomb) c->tomb = malloc(MAX_TOMBS * sizeof *c->tomb);
    if (!c->tomb) abort();
    c->tomb[c->ntomb++] = seq;
}

/* Was seq deleted before its insert came? Consumes the tombstone. */
static bool tomb_take(mem_coll *c, int64_t seq)
{
    for (size_t i = 0; i < c->ntomb; i++) {
        if (c->tomb[i] != seq) continue;
        c->tomb[i] = c->tomb[--c->ntomb];
        return true;
    }
    return false;
}

static void coll_reserve(mem_store *m, mem_coll *c, size_t want)
{
    if (want <= c->cap) return;
    size_t before = coll_bytes(c);
    size_t cap = c->cap ? c->cap : 64;
    while (cap < want) cap *= 2;
    c->vecs = realloc(c->vecs, cap * (size_t)(c->dim ? c->dim : 1) * sizeof(float));
    c->half = realloc(c->half, cap * (size_t)(c->dim ? c->dim : 1) * sizeof(uint16_t));
    c->seq = realloc(c->seq, cap * sizeof *c->seq);
    c->importance = realloc(c->importance, cap * sizeof *c->importance);
    c->type_id = realloc(c->type_id, cap * sizeof *c->type_id);
    c->vis = realloc(c->vis, cap);
    c->created = realloc(c->created, cap * sizeof *c->created);
    if (!c->vecs || !c->half || !c->seq || !c->importance || !c->type_id || !c->vis || !c->created)
        abort();
    c->cap = cap;
    atomic_fetch_add(&m->resident_bytes, coll_bytes(c) - before);
}

/* Row r's vector in float32 and half precision; keeps norm_max an upper bound. */
static void set_vec(mem_coll *c, size_t r, const float *vec)
{
    size_t d = (size_t)c->dim;
    memcpy(c->vecs + r * d, vec, d * sizeof(float));
    mem_to_half(vec, c->half + r * d, d);
    double ss = 0;
    for (size_t i = 0; i < d; i++) ss += (double)vec[i] * (double)vec[i];
    float norm = (float)(sqrt(ss) * (1.0 + 1e-6));
    if (!(norm <= c->norm_max)) c->norm_max = isfinite(norm) ? norm : INFINITY;
}

static const char SQL_META[] = "SELECT model, dim FROM memory_collections WHERE persona_id = ?";
static const char SQL_ROWS[] =
    "SELECT seq, importance, memory_type, visibility, created_at, embedding FROM memories"
    " WHERE persona_id = ? ORDER BY seq";

static int load_meta(mem_coll *c, store_conn *sc)
{
    sqlite3_stmt *q = store_conn_stmt(sc, SQL_META);
    if (!q) return SQLITE_ERROR;
    sqlite3_bind_text(q, 1, c->persona_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        snprintf(c->model, sizeof c->model, "%s", (const char *)sqlite3_column_text(q, 0));
        c->dim = sqlite3_column_int(q, 1);
        rc = SQLITE_DONE;
    } else if (rc == SQLITE_DONE) {
        c->model[0] = 0;
        c->dim = 0;
    }
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Open a gap at row r (rows r.. move up by one); room is reserved. */
static void open_gap(mem_coll *c, size_t r)
{
    size_t k = c->n - r, d = (size_t)c->dim;
    memmove(c->vecs + (r + 1) * d, c->vecs + r * d, k * d * sizeof *c->vecs);
    memmove(c->half + (r + 1) * d, c->half + r * d, k * d * sizeof *c->half);
    memmove(c->seq + r + 1, c->seq + r, k * sizeof *c->seq);
    memmove(c->importance + r + 1, c->importance + r, k * sizeof *c->importance);
    memmove(c->type_id + r + 1, c->type_id + r, k * sizeof *c->type_id);
    memmove(c->vis + r + 1, c->vis + r, k * sizeof *c->vis);
    memmove(c->created + r + 1, c->created + r, k * sizeof *c->created);
}

/* Put a row at index r (c->n to append), keeping rows in seq order. */
static void place_row(mem_store *m, mem_coll *c, size_t r, int64_t seq, const float *vec,
                      double imp, int type, int vis, double created)
{
    coll_reserve(m, c, c->n + 1);
    if (r < c->n) open_gap(c, r);
    set_vec(c, r, vec);
    c->seq[r] = seq;
    c->importance[r] = (float)imp;
    c->type_id[r] = (uint16_t)(type < 0 ? 0 : type);
    c->vis[r] = (uint8_t)(vis < 0 ? 0 : vis);
    c->created[r] = created;
    agg_add(c, (float)imp, c->type_id[r], created, 1);
    c->n++;
    if (seq > c->max_seq) c->max_seq = seq;
}

static void append_row(mem_store *m, mem_coll *c, int64_t seq, const float *vec, double imp,
                       int type, int vis, double created)
{
    place_row(m, c, c->n, seq, vec, imp, type, vis, created);
}

/* Index at which seq belongs (first row with a seq >= it). */
static size_t seq_slot(const mem_coll *c, int64_t seq)
{
    size_t lo = 0, hi = c->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c->seq[mid] < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int load_rows(mem_store *m, mem_coll *c, store_conn *sc)
{
    sqlite3_stmt *q = store_conn_stmt(sc, SQL_ROWS);
    if (!q) return SQLITE_ERROR;
    sqlite3_bind_text(q, 1, c->persona_id, -1, SQLITE_STATIC);
    int rc;
    size_t want = (size_t)c->dim * sizeof(float);
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if ((size_t)sqlite3_column_bytes(q, 5) != want) continue; /* reembed pending */
        append_row(m, c, sqlite3_column_int64(q, 0), sqlite3_column_blob(q, 5),
                   sqlite3_column_double(q, 1),
                   mem_type_id(m, (const char *)sqlite3_column_text(q, 2), true),
                   mem_vis_code((const char *)sqlite3_column_text(q, 3)),
                   sqlite3_column_double(q, 4));
    }
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static void evict_over_budget(mem_store *m, mem_coll *keep)
{
    while (atomic_load(&m->resident_bytes) > m->cfg.budget_bytes) {
        mem_coll *victim = NULL;
        uint64_t oldest = UINT64_MAX;
        pthread_mutex_lock(&m->map_mu);
        for (int b = 0; b < MEM_MAP_BUCKETS; b++)
            for (mem_coll *c = m->buckets[b]; c; c = c->next)
                if (c != keep && c->loaded && c->n && atomic_load(&c->last_used_ns) < oldest) {
                    oldest = atomic_load(&c->last_used_ns);
                    victim = c;
                }
        pthread_mutex_unlock(&m->map_mu);
        if (!victim || pthread_rwlock_trywrlock(&victim->lock) != 0) return;
        coll_unload(m, victim);
        pthread_rwlock_unlock(&victim->lock);
        atomic_fetch_add(&m->evictions, 1);
        log_debug("collection evicted", "persona=\"%s\"", victim->persona_id);
    }
}

static int coll_load(mem_store *m, mem_coll *c, mem_err *e)
{
    uint64_t t0 = metrics_now_ns();
    store_conn *sc = store_pool_get(m->st);
    if (!sc) return mem_fail(e, -32002, "database busy: no read connection available");
    int rc = load_meta(c, sc);
    c->n = 0;
    c->max_seq = 0;
    c->today = coll_day(app_now());
    if (rc == SQLITE_OK && c->dim > 0) rc = load_rows(m, c, sc);
    store_pool_put(m->st, sc);
    if (rc != SQLITE_OK) {
        coll_unload(m, c);
        return mem_fail(e, -32002, "loading memories of %s failed (SQLite error %d)", c->persona_id,
                        rc);
    }
    c->loaded = true;
    uint64_t ns = metrics_now_ns() - t0;
    atomic_fetch_add(&m->loads, 1);
    atomic_fetch_add(&m->load_ns, ns);
    log_debug("collection loaded", "persona=\"%s\" rows=%zu ms=%.3f", c->persona_id, c->n,
              (double)ns / 1e6);
    return 0;
}

int coll_acquire(mem_store *m, mem_coll *c, mem_err *e)
{
    atomic_store(&c->last_used_ns, metrics_now_ns());
    pthread_rwlock_rdlock(&c->lock);
    if (c->loaded) return 0;
    pthread_rwlock_unlock(&c->lock);
    pthread_rwlock_wrlock(&c->lock);
    int rc = c->loaded ? 0 : coll_load(m, c, e);
    pthread_rwlock_unlock(&c->lock);
    if (rc < 0) return rc;
    evict_over_budget(m, c);
    return coll_acquire(m, c, e); /* loaded now unless evicted in between: retry */
}

void coll_release(mem_coll *c)
{
    pthread_rwlock_unlock(&c->lock);
}

long coll_find(const mem_coll *c, int64_t seq)
{
    size_t lo = seq_slot(c, seq);
    return (lo < c->n && c->seq[lo] == seq) ? (long)lo : -1;
}

void coll_apply_insert(mem_store *m, mem_coll *c, int64_t seq, const float *vec, int dim,
                       const char *model, double importance, const char *type, int vis,
                       double created)
{
    pthread_rwlock_wrlock(&c->lock);
    if (!c->model[0]) {
        snprintf(c->model, sizeof c->model, "%s", model);
        if (c->loaded && c->n == 0) c->dim = dim;
    }
    /* Stores committed in one group may be applied here in any order: a
     * row below max_seq goes to its place unless the load already read it. */
    if (c->loaded && dim == c->dim && !tomb_take(c, seq)) {
        size_t r = seq > c->max_seq ? c->n : seq_slot(c, seq);
        if (r == c->n || c->seq[r] != seq)
            place_row(m, c, r, seq, vec, importance, mem_type_id(m, type, true), vis, created);
    }
    pthread_rwlock_unlock(&c->lock);
}

void coll_apply_delete(mem_store *m, mem_coll *c, const int64_t *seqs, size_t n)
{
    (void)m;
    pthread_rwlock_wrlock(&c->lock);
    if (c->loaded) {
        uint8_t *gone = calloc(c->n ? c->n : 1, 1);
        if (!gone) abort();
        for (size_t i = 0; i < n; i++) {
            long r = coll_find(c, seqs[i]);
            if (r >= 0)
                gone[r] = 1;
            else
                tomb_add(c, seqs[i]); /* its insert is still on its way here */
        }
        size_t w = 0, d = (size_t)c->dim;
        for (size_t r = 0; r < c->n; r++) {
            if (gone[r]) {
                agg_add(c, c->importance[r], c->type_id[r], c->created[r], -1);
                continue;
            }
            if (w != r) {
                memcpy(c->vecs + w * d, c->vecs + r * d, d * sizeof(float));
                memcpy(c->half + w * d, c->half + r * d, d * sizeof(uint16_t));
                c->seq[w] = c->seq[r];
                c->importance[w] = c->importance[r];
                c->type_id[w] = c->type_id[r];
                c->vis[w] = c->vis[r];
                c->created[w] = c->created[r];
            }
            w++;
        }
        c->n = w;
        free(gone);
    }
    pthread_rwlock_unlock(&c->lock);
}

void coll_apply_update(mem_store *m, mem_coll *c, int64_t seq, double importance, const char *type,
                       int vis, const float *vec)
{
    pthread_rwlock_wrlock(&c->lock);
    long r = c->loaded ? coll_find(c, seq) : -1;
    if (r >= 0) {
        agg_add(c, c->importance[r], c->type_id[r], c->created[r], -1);
        c->importance[r] = (float)importance;
        if (type) c->type_id[r] = (uint16_t)mem_type_id(m, type, true);
        agg_add(c, c->importance[r], c->type_id[r], c->created[r], 1);
        if (vis >= 0) c->vis[r] = (uint8_t)vis;
        if (vec) set_vec(c, (size_t)r, vec);
    }
    pthread_rwlock_unlock(&c->lock);
}

void coll_forget(mem_store *m, mem_coll *c)
{
    pthread_rwlock_wrlock(&c->lock);
    coll_unload(m, c);
    c->model[0] = 0;
    c->dim = 0;
    c->max_seq = 0;
    pthread_rwlock_unlock(&c->lock);
}

void coll_free_all(mem_store *m)
{
    for (int b = 0; b < MEM_MAP_BUCKETS; b++) {
        mem_coll *c = m->buckets[b];
        while (c) {
            mem_coll *next = c->next;
            coll_unload(m, c);
            pthread_rwlock_destroy(&c->lock);
            free(c->persona_id);
            free(c);
            c = next;
        }
        m->buckets[b] = NULL;
    }
    for (size_t i = 0; i < m->ntypes; i++) free(m->types[i]);
    free(m->types);
}
