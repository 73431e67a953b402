/*
 * mem_maint.c - statistics, pruning and decay of memories.
 *
 * Everything here reads SQLite, not the RAM collections, so it covers every
 * memory whether its collection is loaded or not (spec §12 item 14). The
 * decisions are made by the pure functions of mem_policy.c; the outcome is
 * written in one transaction through the writer thread and then applied to
 * any loaded collection. Decay runs on a background thread when started
 * (memory.decay_start, or --decay at boot) every interval_hours.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/app.h"
#include "lib/jw.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/util.h"
#include "memory/mem_internal.h"

typedef struct mem_prune_mark {
    struct mem_prune_mark *next;
    char *persona_id;
    double last_pruned, last_decayed;
    bool running;
} mem_prune_mark;

/* Caller holds stats_mu. */
static mem_prune_mark *mark_get(mem_store *m, const char *pid)
{
    mem_prune_mark *k = m->prune_marks;
    while (k && strcmp(k->persona_id, pid) != 0) k = k->next;
    if (!k) {
        k = calloc(1, sizeof *k);
        if (!k || !(k->persona_id = strdup(pid))) abort();
        k->next = m->prune_marks;
        m->prune_marks = k;
    }
    return k;
}

void mem_maint_free(mem_store *m)
{
    while (m->prune_marks) {
        mem_prune_mark *k = m->prune_marks;
        m->prune_marks = k->next;
        free(k->persona_id);
        free(k);
    }
}

/* ---- facts ------------------------------------------------------------------- */

typedef struct facts {
    size_t n;
    int64_t *seq;
    mem_fact *f;
} facts;

static const char SQL_FACTS[] =
    "SELECT seq, importance, base_importance, accessed_count, created_at,"
    " coalesce(last_accessed, 0) FROM memories WHERE persona_id = ? ORDER BY seq";

static int load_facts(mem_store *m, const char *pid, facts *out, mem_err *e)
{
    memset(out, 0, sizeof *out);
    mem_access_flush(m); /* pruning and decay weigh accesses */
    store_conn *sc = store_pool_get(m->st);
    if (!sc) return mem_fail(e, -32002, "database busy: no read connection available");
    sqlite3_stmt *q = store_conn_stmt(sc, SQL_FACTS);
    size_t cap = 0;
    int rc = SQLITE_ERROR;
    if (q) {
        sqlite3_bind_text(q, 1, pid, -1, SQLITE_STATIC);
        while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
            if (out->n == cap) {
                cap = cap ? cap * 2 : 256;
                out->seq = realloc(out->seq, cap * sizeof *out->seq);
                out->f = realloc(out->f, cap * sizeof *out->f);
                if (!out->seq || !out->f) abort();
            }
            out->seq[out->n] = sqlite3_column_int64(q, 0);
            out->f[out->n] = (mem_fact){sqlite3_column_double(q, 1), sqlite3_column_double(q, 2),
                                        sqlite3_column_int64(q, 3), sqlite3_column_double(q, 4),
                                        sqlite3_column_double(q, 5)};
            out->n++;
        }
        sqlite3_reset(q);
    }
    store_pool_put(m->st, sc);
    if (rc != SQLITE_DONE) {
        free(out->seq);
        free(out->f);
        return mem_fail(e, -32002, "reading memories failed (SQLite error %d)", rc);
    }
    return 0;
}

static void facts_free(facts *f)
{
    free(f->seq);
    free(f->f);
}

/* ---- statistics ---------------------------------------------------------------- */

/* Write memory.stats from a collection's aggregates. Caller holds a lock
 * on a loaded collection whose today_count is current. */
static void write_stats_locked(mem_store *m, const mem_coll *c, jw *w, uint64_t t0)
{
    jw_obj_begin(w);
    jw_kint(w, "total_memories", (int64_t)c->n);
    if (c->n) {
        jw_kdouble(w, "avg_importance", round(c->sum_importance / (double)c->n * 1e4) / 1e4);
        jw_key(w, "memory_types");
        jw_obj_begin(w);
        pthread_mutex_lock(&m->types_mu);
        for (size_t t = 0; t < c->ntype_counts && t < m->ntypes; t++)
            if (c->type_counts[t]) jw_kint(w, m->types[t], c->type_counts[t]);
        pthread_mutex_unlock(&m->types_mu);
        jw_obj_end(w);
        jw_kint(w, "high_importance_count", (int64_t)c->high_count);
        jw_kint(w, "created_today", (int64_t)c->today_count);
        jw_kstr(w, "embedding_model", c->model);
        jw_kint(w, "embedding_dim", c->dim);
        jw_kdouble(w, "stats_calculation_time_ms",
                   round((double)(metrics_now_ns() - t0) / 1e3) / 1e3);
    }
    jw_obj_end(w);
}

int mem_write_stats(mem_store *m, const char *pid, jw *w, mem_err *e)
{
    uint64_t t0 = metrics_now_ns();
    mem_coll *c = coll_get(m, pid);
    if (coll_acquire(m, c, e) < 0) return -1;
    if (c->today != coll_day(app_now())) {
        coll_release(c);
        pthread_rwlock_wrlock(&c->lock);
        if (c->loaded) coll_refresh_today(c);
        pthread_rwlock_unlock(&c->lock);
        return mem_write_stats(m, pid, w, e);
    }
    write_stats_locked(m, c, w, t0);
    coll_release(c);
    return 0;
}

bool mem_stats_ready(mem_store *m, const char *pid)
{
    if (!pid || strlen(pid) > MEM_PERSONA_MAX) return false;
    mem_coll *c = coll_get(m, pid);
    return c->loaded && c->today == coll_day(app_now());
}

bool mem_search_ready(mem_store *m, const char *pid)
{
    if (m->remote || !pid || strlen(pid) > MEM_PERSONA_MAX) return false;
    return coll_get(m, pid)->loaded;
}

static const char SQL_SHARED[] =
    "SELECT persona_id, sum(visibility = 'shared'), sum(visibility = 'public'),"
    " sum(related_personas <> '[]') FROM memories GROUP BY persona_id ORDER BY persona_id";

int mem_write_shared_stats(mem_store *m, jw *w, mem_err *e)
{
    store_conn *sc = store_pool_get(m->st);
    if (!sc) return mem_fail(e, -32002, "database busy: no read connection available");
    sqlite3_stmt *q = store_conn_stmt(sc, SQL_SHARED);
    int64_t personas = 0, shared = 0, pub = 0, refs = 0;
    jw by;
    jw_init(&by, 0, 512);
    jw_obj_begin(&by);
    int rc = SQLITE_ERROR;
    while (q && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        int64_t s = sqlite3_column_int64(q, 1), p = sqlite3_column_int64(q, 2),
                r = sqlite3_column_int64(q, 3);
        personas++;
        shared += s;
        pub += p;
        refs += r;
        jw_keyn(&by, (const char *)sqlite3_column_text(q, 0), (size_t)sqlite3_column_bytes(q, 0));
        jw_obj_begin(&by);
        jw_kint(&by, "shared", s);
        jw_kint(&by, "public", p);
        jw_kint(&by, "cross_references", r);
        jw_obj_end(&by);
    }
    if (q) sqlite3_reset(q);
    store_pool_put(m->st, sc);
    jw_obj_end(&by);
    if (rc == SQLITE_DONE) {
        jw_obj_begin(w);
        jw_kint(w, "total_personas", personas);
        jw_kint(w, "shared_memories", shared);
        jw_kint(w, "public_memories", pub);
        jw_kint(w, "cross_references", refs);
        jw_key(w, "by_persona");
        jw_raw(w, jw_data(&by), jw_size(&by));
        jw_obj_end(w);
    }
    jw_free(&by);
    if (rc != SQLITE_DONE)
        return mem_fail(e, -32002, "shared statistics failed (SQLite error %d)", rc);
    return 0;
}

void mem_write_collection_metrics(mem_store *m, jw *w)
{
    size_t loaded = 0;
    pthread_mutex_lock(&m->map_mu);
    for (int b = 0; b < MEM_MAP_BUCKETS; b++)
        for (mem_coll *c = m->buckets[b]; c; c = c->next) loaded += c->loaded;
    pthread_mutex_unlock(&m->map_mu);
    char buf[2048];
    int n = snprintf(
        buf, sizeof buf,
        "# HELP pmcp_memory_collection_loads_total Collections loaded from SQLite\n"
        "# TYPE pmcp_memory_collection_loads_total counter\npmcp_memory_collection_loads_total "
        "%llu\n"
        "# HELP pmcp_memory_collection_evictions_total Collections evicted under the budget\n"
        "# TYPE pmcp_memory_collection_evictions_total counter\n"
        "pmcp_memory_collection_evictions_total %llu\n"
        "# HELP pmcp_memory_collection_load_seconds_total Time spent loading collections\n"
        "# TYPE pmcp_memory_collection_load_seconds_total counter\n"
        "pmcp_memory_collection_load_seconds_total %.6f\n"
        "# HELP pmcp_memory_resident_bytes Bytes of loaded collections\n"
        "# TYPE pmcp_memory_resident_bytes gauge\npmcp_memory_resident_bytes %llu\n"
        "# HELP pmcp_memory_collections_loaded Collections in RAM\n"
        "# TYPE pmcp_memory_collections_loaded gauge\npmcp_memory_collections_loaded %zu\n",
        (unsigned long long)atomic_load(&m->loads), (unsigned long long)atomic_load(&m->evictions),
        (double)atomic_load(&m->load_ns) / 1e9, (unsigned long long)atomic_load(&m->resident_bytes),
        loaded);
    if (n < 0 || n >= (int)sizeof buf) abort(); /* the text above outgrew buf */
    jw_append(w, buf, (size_t)n);
    uint64_t hits, misses;
    mem_rowcache_counts(m->rows, &hits, &misses);
    n = snprintf(buf, sizeof buf,
                 "# HELP pmcp_memory_row_cache_hits_total Memory rows read from the row cache\n"
                 "# TYPE pmcp_memory_row_cache_hits_total counter\n"
                 "pmcp_memory_row_cache_hits_total %llu\n"
                 "# HELP pmcp_memory_row_cache_misses_total Memory rows read from SQLite\n"
                 "# TYPE pmcp_memory_row_cache_misses_total counter\n"
                 "pmcp_memory_row_cache_misses_total %llu\n",
                 (unsigned long long)hits, (unsigned long long)misses);
    if (n < 0 || n >= (int)sizeof buf) abort();
    jw_append(w, buf, (size_t)n);
}

/* ---- pruning -------------------------------------------------------------------- */

typedef struct seq_job {
    const int64_t *seqs;
    const double *values; /* NULL: delete; else new importance */
    bool set_base;
    size_t n;
} seq_job;

static const char SQL_DEL_SEQ[] = "DELETE FROM memories WHERE seq = ?";
static const char SQL_SET_IMP[] = "UPDATE memories SET importance = ?2 WHERE seq = ?1";
static const char SQL_SET_BOTH[] =
    "UPDATE memories SET importance = ?2, base_importance = ?2 WHERE seq = ?1";

static int seq_fn(store_conn *c, void *ctx)
{
    seq_job *j = ctx;
    const char *sql = !j->values ? SQL_DEL_SEQ : (j->set_base ? SQL_SET_BOTH : SQL_SET_IMP);
    sqlite3_stmt *q = store_conn_stmt(c, sql);
    if (!q) return SQLITE_ERROR;
    for (size_t i = 0; i < j->n; i++) {
        sqlite3_bind_int64(q, 1, j->seqs[i]);
        if (j->values) sqlite3_bind_double(q, 2, j->values[i]);
        int rc = sqlite3_step(q);
        sqlite3_reset(q);
        if (rc != SQLITE_DONE) return rc;
    }
    return SQLITE_OK;
}

static bool prune_begin(mem_store *m, const char *pid, bool force, double now)
{
    pthread_mutex_lock(&m->stats_mu);
    mem_prune_mark *k = mark_get(m, pid);
    bool ok = !k->running && (force || k->last_pruned == 0 ||
                              now - k->last_pruned >= m->cfg.prune.min_interval_secs);
    if (ok) k->running = true;
    pthread_mutex_unlock(&m->stats_mu);
    return ok;
}

static void prune_end(mem_store *m, const char *pid, const mem_prune_result *r, bool counted)
{
    pthread_mutex_lock(&m->stats_mu);
    mem_prune_mark *k = mark_get(m, pid);
    k->running = false;
    if (counted) {
        k->last_pruned = app_now();
        m->maint.prune_ops++;
        m->maint.prune_removed += r->removed;
        m->maint.prune_seconds += r->seconds;
    }
    pthread_mutex_unlock(&m->stats_mu);
}

static void prune_summary(const facts *f, const size_t *sel, size_t ns, mem_prune_result *r)
{
    uint8_t *gone = calloc(f->n ? f->n : 1, 1);
    if (!gone) abort();
    double sp = 0, sk = 0;
    r->min_pruned = 1;
    r->max_pruned = 0;
    for (size_t i = 0; i < ns; i++) {
        double v = f->f[sel[i]].importance;
        gone[sel[i]] = 1;
        sp += v;
        r->min_pruned = fmin(r->min_pruned, v);
        r->max_pruned = fmax(r->max_pruned, v);
    }
    for (size_t i = 0; i < f->n; i++)
        if (!gone[i]) sk += f->f[i].importance;
    free(gone);
    r->before = (int64_t)f->n;
    r->removed = (int64_t)ns;
    r->after = r->before - r->removed;
    r->avg_importance_pruned = ns ? sp / (double)ns : 0;
    r->avg_importance_kept = r->after ? sk / (double)r->after : 0;
    if (!ns) r->min_pruned = r->max_pruned = 0;
}

int mem_prune(mem_store *m, const char *pid, bool force, bool dry_run, mem_prune_result *r,
              mem_err *e)
{
    memset(r, 0, sizeof *r);
    uint64_t t0 = metrics_now_ns();
    facts f;
    if (load_facts(m, pid, &f, e) < 0) return -1;
    double now = app_now();
    r->before = r->after = (int64_t)f.n;
    bool needed = (int)f.n >= m->cfg.prune.threshold;
    if ((!needed && !force) || (!dry_run && !prune_begin(m, pid, force, now))) {
        facts_free(&f);
        return 0;
    }
    size_t *sel = malloc(sizeof *sel * (f.n ? f.n : 1));
    if (!sel) abort();
    size_t ns = prune_select(f.f, f.n, now, &m->cfg.prune, sel);
    prune_summary(&f, sel, ns, r);
    r->pruned = true;
    int rc = 0;
    if (!dry_run) {
        int64_t *seqs = malloc(sizeof *seqs * (ns ? ns : 1));
        if (!seqs) abort();
        for (size_t i = 0; i < ns; i++) seqs[i] = f.seq[sel[i]];
        seq_job j = {.seqs = seqs, .n = ns};
        int src = ns ? store_write(m->st, seq_fn, &j) : SQLITE_OK;
        if (src != SQLITE_OK && src != SQLITE_DONE)
            rc = mem_fail(e, -32002, "pruning failed (SQLite error %d)", src);
        else
            coll_apply_delete(m, coll_get(m, pid), seqs, ns);
        free(seqs);
        r->seconds = (double)(metrics_now_ns() - t0) / 1e9;
        prune_end(m, pid, r, rc == 0);
        if (rc == 0 && ns) log_info("pruned memories", "persona=\"%s\" removed=%zu", pid, ns);
    }
    r->seconds = (double)(metrics_now_ns() - t0) / 1e9;
    free(sel);
    facts_free(&f);
    return rc;
}

static const char SQL_PERSONAS[] = "SELECT DISTINCT persona_id FROM memories ORDER BY persona_id";

/* Every persona id that has memories (caller frees each and the array). */
static char **list_personas(mem_store *m, size_t *n)
{
    *n = 0;
    store_conn *sc = store_pool_get(m->st);
    if (!sc) return NULL;
    sqlite3_stmt *q = store_conn_stmt(sc, SQL_PERSONAS);
    char **out = NULL;
    size_t cap = 0;
    while (q && sqlite3_step(q) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            out = realloc(out, cap * sizeof *out);
            if (!out) abort();
        }
        if (!(out[(*n)++] = strdup((const char *)sqlite3_column_text(q, 0)))) abort();
    }
    if (q) sqlite3_reset(q);
    store_pool_put(m->st, sc);
    return out;
}

static void free_list(char **l, size_t n)
{
    for (size_t i = 0; i < n; i++) free(l[i]);
    free(l);
}

int mem_prune_all(mem_store *m, int64_t *before, int64_t *after, int *errors, double *secs)
{
    uint64_t t0 = metrics_now_ns();
    size_t n;
    char **pids = list_personas(m, &n);
    int processed = 0;
    *before = *after = 0;
    *errors = 0;
    for (size_t i = 0; i < n; i++) {
        mem_prune_result r;
        mem_err e;
        if (mem_prune(m, pids[i], false, false, &r, &e) < 0) {
            (*errors)++;
            continue;
        }
        processed += r.pruned;
        *before += r.before;
        *after += r.after;
    }
    free_list(pids, n);
    *secs = (double)(metrics_now_ns() - t0) / 1e9;
    pthread_mutex_lock(&m->stats_mu);
    m->maint.last_global_prune = app_now();
    m->maint.prune_personas += processed;
    pthread_mutex_unlock(&m->stats_mu);
    return processed;
}

void mem_write_prune_stats(mem_store *m, jw *w)
{
    pthread_mutex_lock(&m->stats_mu);
    jw_obj_begin(w);
    if (!m->maint.prune_ops && !m->maint.last_global_prune) {
        jw_kstr(w, "message", "No pruning operations performed yet");
    } else {
        jw_kint(w, "total_pruning_operations", m->maint.prune_ops);
        jw_kint(w, "total_memories_pruned", m->maint.prune_removed);
        jw_kint(w, "total_personas_processed", m->maint.prune_personas + m->maint.prune_ops);
        jw_kdouble(w, "average_processing_time",
                   m->maint.prune_ops ? m->maint.prune_seconds / (double)m->maint.prune_ops : 0);
        char iso[40];
        util_iso_time(m->maint.last_global_prune, iso, false);
        jw_kstr(w, "last_global_prune", m->maint.last_global_prune ? iso : NULL);
        jw_key(w, "personas_last_pruned");
        jw_obj_begin(w);
        for (mem_prune_mark *k = m->prune_marks; k; k = k->next) {
            if (!k->last_pruned) continue;
            util_iso_time(k->last_pruned, iso, false);
            jw_kstr(w, k->persona_id, iso);
        }
        jw_obj_end(w);
    }
    jw_obj_end(w);
    pthread_mutex_unlock(&m->stats_mu);
}

/* ---- decay -------------------------------------------------------------------- */

static int write_values(mem_store *m, const char *pid, int64_t *seqs, double *vals, size_t n,
                        bool set_base, mem_err *e)
{
    if (!n) return 0;
    seq_job j = {.seqs = seqs, .values = vals, .set_base = set_base, .n = n};
    int rc = store_write(m->st, seq_fn, &j);
    if (rc != SQLITE_OK && rc != SQLITE_DONE)
        return mem_fail(e, -32002, "decay update failed (SQLite error %d)", rc);
    mem_coll *c = coll_get(m, pid);
    for (size_t i = 0; i < n; i++) coll_apply_update(m, c, seqs[i], vals[i], NULL, -1, NULL);
    return 0;
}

/* factor < 0: scheduled decay by the configured mode; else forced. */
static int decay_one(mem_store *m, const char *pid, double factor, mem_decay_result *r, mem_err *e)
{
    facts f;
    if (load_facts(m, pid, &f, e) < 0) return -1;
    int64_t *seqs = malloc(sizeof *seqs * (f.n ? f.n : 1));
    double *vals = malloc(sizeof *vals * (f.n ? f.n : 1));
    if (!seqs || !vals) abort();
    double now = app_now(), floor_v = m->cfg.decay.floor, lost = 0;
    size_t k = 0;
    for (size_t i = 0; i < f.n; i++) {
        double cur = f.f[i].importance, nv;
        if (factor >= 0)
            nv = cur > floor_v ? fmax(floor_v, cur * (1 - factor)) : cur;
        else
            nv = decay_importance(&f.f[i], now, &m->cfg.decay);
        if (fabs(nv - cur) < 1e-12) continue;
        seqs[k] = f.seq[i];
        vals[k++] = nv;
        lost += cur - nv;
    }
    int rc = write_values(m, pid, seqs, vals, k, factor >= 0, e);
    r->processed += (int64_t)f.n;
    r->decayed += (int64_t)k;
    r->avg_decay =
        r->decayed ? (r->avg_decay * (double)(r->decayed - (int64_t)k) + lost) / (double)r->decayed
                   : 0;
    free(seqs);
    free(vals);
    facts_free(&f);
    pthread_mutex_lock(&m->stats_mu);
    mark_get(m, pid)->last_decayed = now;
    pthread_mutex_unlock(&m->stats_mu);
    return rc;
}

int mem_decay_persona(mem_store *m, const char *pid, mem_decay_result *r, mem_err *e)
{
    memset(r, 0, sizeof *r);
    r->personas = 1;
    return decay_one(m, pid, -1, r, e);
}

int mem_decay_force(mem_store *m, const char *pid, double factor, mem_decay_result *r, mem_err *e)
{
    memset(r, 0, sizeof *r);
    if (!(factor >= 0 && factor <= 1))
        return mem_fail(e, -32602, "Invalid params: 'decay_factor' must be between 0 and 1");
    r->personas = 1;
    return decay_one(m, pid, factor, r, e);
}

static const char SQL_LOW[] =
    "SELECT count(*), sum(importance <= ?) FROM memories WHERE persona_id = ?";

static bool wants_auto_prune(mem_store *m, const char *pid)
{
    const decay_config *d = &m->cfg.decay;
    if (!d->auto_pruning) return false;
    store_conn *sc = store_pool_get(m->st);
    if (!sc) return false;
    sqlite3_stmt *q = store_conn_stmt(sc, SQL_LOW);
    bool yes = false;
    if (q) {
        sqlite3_bind_double(q, 1, d->auto_prune_importance);
        sqlite3_bind_text(q, 2, pid, -1, SQLITE_STATIC);
        if (sqlite3_step(q) == SQLITE_ROW)
            yes = sqlite3_column_int64(q, 0) >= d->auto_prune_threshold &&
                  sqlite3_column_int64(q, 1) > d->auto_prune_min_low;
        sqlite3_reset(q);
    }
    store_pool_put(m->st, sc);
    return yes;
}

int mem_decay_cycle(mem_store *m, mem_decay_result *r, mem_err *e)
{
    memset(r, 0, sizeof *r);
    uint64_t t0 = metrics_now_ns();
    size_t n;
    char **pids = list_personas(m, &n);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (decay_one(m, pids[i], -1, r, e) < 0) {
            rc = -1;
            continue;
        }
        r->personas++;
        mem_prune_result pr;
        mem_err pe;
        if (wants_auto_prune(m, pids[i]) && mem_prune(m, pids[i], true, false, &pr, &pe) == 0)
            r->auto_prunes++;
    }
    free_list(pids, n);
    r->seconds = (double)(metrics_now_ns() - t0) / 1e9;
    pthread_mutex_lock(&m->stats_mu);
    m->maint.decay_cycles++;
    m->maint.decay_decayed += r->decayed;
    m->maint.decay_auto_prunes += r->auto_prunes;
    m->maint.decay_last_run = app_now();
    m->maint.recent = *r;
    pthread_mutex_unlock(&m->stats_mu);
    log_info("decay cycle", "personas=%d decayed=%lld seconds=%.3f", r->personas,
             (long long)r->decayed, r->seconds);
    return rc;
}

static void *decay_main(void *arg)
{
    mem_store *m = arg;
    pthread_mutex_lock(&m->decay_mu);
    while (!m->decay_quit) {
        struct timespec ts =
            util_realtime_in((uint64_t)(m->cfg.decay.interval_hours * 3600.0 * 1e6));
        while (!m->decay_quit && pthread_cond_timedwait(&m->decay_cv, &m->decay_mu, &ts) == 0) {
        }
        if (m->decay_quit) break;
        pthread_mutex_unlock(&m->decay_mu);
        mem_decay_result r;
        mem_err e;
        if (mem_decay_cycle(m, &r, &e) < 0) log_warn("decay cycle failed", "error=\"%s\"", e.msg);
        pthread_mutex_lock(&m->decay_mu);
    }
    pthread_mutex_unlock(&m->decay_mu);
    return NULL;
}

bool mem_decay_start(mem_store *m)
{
    pthread_mutex_lock(&m->decay_mu);
    bool started = !m->decay_running;
    if (started) {
        m->decay_quit = false;
        m->decay_running = pthread_create(&m->decay_thread, NULL, decay_main, m) == 0;
        started = m->decay_running;
    }
    pthread_mutex_unlock(&m->decay_mu);
    return started;
}

bool mem_decay_stop(mem_store *m)
{
    pthread_mutex_lock(&m->decay_mu);
    bool was = m->decay_running;
    m->decay_quit = true;
    pthread_cond_broadcast(&m->decay_cv);
    pthread_mutex_unlock(&m->decay_mu);
    if (was) pthread_join(m->decay_thread, NULL);
    pthread_mutex_lock(&m->decay_mu);
    m->decay_running = false;
    pthread_mutex_unlock(&m->decay_mu);
    return was;
}

static void write_decay_config(mem_store *m, jw *w, bool full)
{
    const decay_config *d = &m->cfg.decay;
    jw_key(w, "config");
    jw_obj_begin(w);
    jw_kstr(w, "mode", decay_mode_name(d->mode));
    jw_kdouble(w, "interval_hours", d->interval_hours);
    if (full) jw_kint(w, "max_decay_days", d->max_decay_days);
    jw_kbool(w, "auto_pruning", d->auto_pruning);
    if (full) jw_kint(w, "auto_prune_threshold", d->auto_prune_threshold);
    jw_obj_end(w);
}

void mem_write_decay_stats(mem_store *m, jw *w)
{
    pthread_mutex_lock(&m->decay_mu);
    bool running = m->decay_running;
    pthread_mutex_unlock(&m->decay_mu);
    pthread_mutex_lock(&m->stats_mu);
    mem_maint_stats s = m->maint;
    pthread_mutex_unlock(&m->stats_mu);
    jw_obj_begin(w);
    if (!s.decay_cycles) {
        jw_kstr(w, "message", "No decay cycles have run yet");
        jw_kbool(w, "background_running", running);
        write_decay_config(m, w, false);
    } else {
        char iso[40];
        util_iso_time(s.decay_last_run, iso, false);
        jw_kbool(w, "background_running", running);
        jw_kstr(w, "last_run", iso);
        jw_kint(w, "total_decay_cycles", s.decay_cycles);
        jw_kint(w, "total_memories_decayed", s.decay_decayed);
        jw_kint(w, "total_auto_prunes_triggered", s.decay_auto_prunes);
        jw_key(w, "recent_cycle");
        jw_obj_begin(w);
        jw_kint(w, "personas_processed", s.recent.personas);
        jw_kint(w, "memories_decayed", s.recent.decayed);
        jw_kdouble(w, "average_decay", round(s.recent.avg_decay * 1e4) / 1e4);
        jw_kdouble(w, "processing_time", round(s.recent.seconds * 1e4) / 1e4);
        jw_obj_end(w);
        write_decay_config(m, w, true);
    }
    jw_obj_end(w);
}
