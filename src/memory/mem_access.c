/*
 * mem_access.c - search hits counted in RAM, written to SQLite in batches.
 *
 * Every memory a search returns is an access (accessed_count + 1,
 * last_accessed = now), which pruning and decay read. Writing that with one
 * UPDATE transaction per search made every search a write: each commit also
 * invalidated the page cache of every read connection, so the next searches
 * paid for it (docs/BENCHMARKS.md, "Where the time goes"). Hits are instead
 * summed per row in a hash table here and flushed as one writer job:
 *
 *   - every `access_flush_ms` by a small timer thread (default 1000 ms),
 *   - at once when `MEM_ACCESS_FLUSH_ROWS` distinct rows are waiting,
 *   - synchronously before anything reads access data from SQLite (prune,
 *     decay, export) and at mem_close.
 *
 * Access counts are bookkeeping, not acknowledged writes: a killed server
 * may lose the last interval's counts, never a stored memory. A flush
 * updates a row only if it was created no later than the access, so a rowid
 * reused after a delete never inherits the accesses of the deleted row.
 *
 * Threads: mem_record_access() is called on workers and never blocks on
 * SQLite; at most one flush is queued or running at a time.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/app.h"
#include "lib/log.h"
#include "lib/util.h"
#include "memory/mem_internal.h"

#define MEM_ACCESS_FLUSH_ROWS 4096
#define MIN_CAP               256

typedef struct access_ent {
    int64_t seq; /* 0 = empty slot (rowids start at 1) */
    uint32_t count;
    double last;
} access_ent;

typedef struct access_tab {
    access_ent *e;
    size_t cap, n; /* cap is a power of two */
} access_tab;

struct mem_access {
    mem_store *m;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* flush finished / timer stop */
    access_tab tab;
    bool flushing; /* a flush is queued or running */
    int flush_ms;
    bool quit;
    bool timer_running;
    pthread_t timer;
};

static size_t slot_of(int64_t seq, size_t cap)
{
    return (size_t)(((uint64_t)seq * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

static void tab_put(access_tab *t, int64_t seq, uint32_t count, double when)
{
    size_t i = slot_of(seq, t->cap);
    while (t->e[i].seq && t->e[i].seq != seq) i = (i + 1) & (t->cap - 1);
    if (!t->e[i].seq) {
        t->e[i] = (access_ent){seq, 0, 0};
        t->n++;
    }
    t->e[i].count += count;
    if (when > t->e[i].last) t->e[i].last = when;
}

static void tab_init(access_tab *t, size_t cap)
{
    t->e = calloc(cap, sizeof *t->e);
    if (!t->e) abort();
    t->cap = cap;
    t->n = 0;
}

static void tab_grow(access_tab *t)
{
    access_tab big;
    tab_init(&big, t->cap * 2);
    for (size_t i = 0; i < t->cap; i++)
        if (t->e[i].seq) tab_put(&big, t->e[i].seq, t->e[i].count, t->e[i].last);
    free(t->e);
    *t = big;
}

/* ---- the flush job --------------------------------------------------------- */

typedef struct flush_job {
    mem_access *x;
    access_tab tab;
} flush_job;

static const char SQL_FLUSH[] =
    "UPDATE memories SET accessed_count = accessed_count + ?1,"
    " last_accessed = max(coalesce(last_accessed, 0), ?2) WHERE seq = ?3 AND created_at <= ?2";

static int flush_job_fn(store_conn *c, void *ctx)
{
    const access_tab *t = &((const flush_job *)ctx)->tab;
    sqlite3_stmt *q = store_conn_stmt(c, SQL_FLUSH);
    if (!q) return SQLITE_ERROR;
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->e[i].seq) continue;
        sqlite3_bind_int64(q, 1, t->e[i].count);
        sqlite3_bind_double(q, 2, t->e[i].last);
        sqlite3_bind_int64(q, 3, t->e[i].seq);
        int rc = sqlite3_step(q);
        sqlite3_reset(q);
        if (rc != SQLITE_DONE) return rc;
    }
    return SQLITE_OK;
}

static void flush_done(int rc, void *ctx)
{
    flush_job *j = ctx;
    mem_access *x = j->x;
    if (rc != SQLITE_OK && rc != SQLITE_DONE)
        log_warn("access counts not recorded", "rows=%zu sqlite=%d", j->tab.n, rc);
    free(j->tab.e);
    free(j);
    pthread_mutex_lock(&x->mu);
    x->flushing = false;
    pthread_cond_broadcast(&x->cv);
    pthread_mutex_unlock(&x->mu);
}

/* Caller holds mu, nothing is flushing and the table is not empty: hand
 * the table over to a new job and start an empty one. */
static flush_job *take_locked(mem_access *x)
{
    flush_job *j = malloc(sizeof *j);
    if (!j) abort();
    j->x = x;
    j->tab = x->tab;
    tab_init(&x->tab, j->tab.cap);
    x->flushing = true;
    return j;
}

static void flush_async(mem_access *x)
{
    pthread_mutex_lock(&x->mu);
    flush_job *j = (!x->flushing && x->tab.n) ? take_locked(x) : NULL;
    pthread_mutex_unlock(&x->mu);
    if (j) store_submit(x->m->st, flush_job_fn, flush_done, j);
}

void mem_access_flush(mem_store *m)
{
    mem_access *x = m->access;
    if (!x) return;
    pthread_mutex_lock(&x->mu);
    while (x->flushing) pthread_cond_wait(&x->cv, &x->mu);
    flush_job *j = x->tab.n ? take_locked(x) : NULL;
    pthread_mutex_unlock(&x->mu);
    if (!j) return;
    int rc = store_write(m->st, flush_job_fn, j);
    flush_done(rc, j);
}

void mem_record_access(mem_store *m, const mem_row *rows, size_t n)
{
    mem_access *x = m->access;
    if (!x || !n) return;
    double when = app_now();
    pthread_mutex_lock(&x->mu);
    for (size_t i = 0; i < n; i++) {
        if ((x->tab.n + 1) * 4 > x->tab.cap * 3) tab_grow(&x->tab);
        tab_put(&x->tab, rows[i].seq, 1, when);
    }
    bool full = x->tab.n >= MEM_ACCESS_FLUSH_ROWS && !x->flushing;
    pthread_mutex_unlock(&x->mu);
    if (full) flush_async(x);
}

void mem_access_discard(mem_store *m)
{
    mem_access *x = m->access;
    if (!x) return;
    pthread_mutex_lock(&x->mu);
    while (x->flushing) pthread_cond_wait(&x->cv, &x->mu);
    memset(x->tab.e, 0, x->tab.cap * sizeof *x->tab.e);
    x->tab.n = 0;
    pthread_mutex_unlock(&x->mu);
}

/* ---- the timer ------------------------------------------------------------- */

static void *timer_main(void *arg)
{
    mem_access *x = arg;
    pthread_mutex_lock(&x->mu);
    while (!x->quit) {
        struct timespec ts = util_realtime_in((uint64_t)x->flush_ms * 1000u);
        while (!x->quit && pthread_cond_timedwait(&x->cv, &x->mu, &ts) == 0) {
        }
        if (x->quit) break;
        pthread_mutex_unlock(&x->mu);
        flush_async(x);
        mem_fts_tick(x->m); /* the same timer keeps the full-text index current */
        pthread_mutex_lock(&x->mu);
    }
    pthread_mutex_unlock(&x->mu);
    return NULL;
}

void mem_access_open(mem_store *m, int flush_ms)
{
    mem_access *x = calloc(1, sizeof *x);
    if (!x) abort();
    x->m = m;
    x->flush_ms = flush_ms > 0 ? flush_ms : 1000;
    pthread_mutex_init(&x->mu, NULL);
    pthread_cond_init(&x->cv, NULL);
    tab_init(&x->tab, MIN_CAP);
    x->timer_running = pthread_create(&x->timer, NULL, timer_main, x) == 0;
    if (!x->timer_running) log_warn("access flush timer not started", "flush_ms=%d", x->flush_ms);
    m->access = x;
}

void mem_access_close(mem_store *m)
{
    mem_access *x = m->access;
    if (!x) return;
    pthread_mutex_lock(&x->mu);
    x->quit = true;
    pthread_cond_broadcast(&x->cv);
    pthread_mutex_unlock(&x->mu);
    if (x->timer_running) pthread_join(x->timer, NULL);
    mem_access_flush(m);
    m->access = NULL;
    pthread_mutex_destroy(&x->mu);
    pthread_cond_destroy(&x->cv);
    free(x->tab.e);
    free(x);
}
