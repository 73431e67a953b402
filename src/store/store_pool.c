/*
 * store_pool.c - connections, their statement caches, and the reader pool.
 *
 * store_conn wraps one sqlite3 handle with a small statement cache: an array
 * of (SQL pointer, statement) pairs searched linearly - callers pass string
 * literals, so the pointer is the key and a lookup is a few compares. Entries
 * are prepared with SQLITE_PREPARE_PERSISTENT and handed out reset with their
 * bindings cleared. When the array is full, slots are reused round-robin
 * (a statement a caller still holds must not be followed by 64 new keys).
 *
 * The reader pool is a mutex, a condition variable and a LIFO stack of idle
 * connections (LIFO so the connection with the warmest page cache is reused
 * first, and so the bottom of the stack is always the longest idle).
 *   get: pop from the stack (hit). Empty and fewer than pool_size +
 *        pool_overflow open: reserve a slot under the mutex, open the new
 *        connection outside it (miss). Otherwise wait on the condition
 *        variable until pool_wait_ms has passed, then give up (NULL).
 *   put: validate outside the mutex (reset statements left mid-step; a
 *        connection still inside a transaction is rolled back; one whose last
 *        error says it is unusable is closed and counted), then push.
 * The original pool could deadlock: returning an overflow connection to its
 * full bounded queue blocked forever. Here the stack has room for every
 * connection that can exist, so put never waits; get waits with a deadline;
 * nothing slow (open, close) happens under the mutex.
 * Idle connections beyond pool_size that have sat unused pool_idle_secs are
 * closed from the bottom of the stack during get and put - no extra thread.
 * Connections are not tagged "base" or "overflow": the pool just never closes
 * below pool_size.
 * Opening: one reader at store_open for an existing database (it proves the
 * file readable); the rest of pool_size are opened on first demand, like
 * overflow ones, and then kept. A database just written from the schema
 * image (store_image.c) gets none at store_open: the file is known good,
 * and each open costs ~0.15-0.35 ms (the pragmas, the schema read), a third
 * of creating a new database (docs/BENCHMARKS.md, issue 2).
 */
#include "store/store.h"

#include "lib/log.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>

#define STMT_SLOTS 64 /* the writer connection caches every write statement of the app */

struct store_conn {
    sqlite3 *db;
    int n_stmts, evict_next;
    const char *keys[STMT_SLOTS];
    sqlite3_stmt *stmts[STMT_SLOTS];
    uint64_t idle_since_ns;
    store_conn *next; /* links connections being closed */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- store_conn ---------------------------------------------------------- */

store_conn *store_conn_wrap(sqlite3 *db)
{
    store_conn *c = calloc(1, sizeof *c);
    if (c) c->db = db;
    return c;
}

void store_conn_free(store_conn *c)
{
    if (!c) return;
    for (int i = 0; i < c->n_stmts; i++) sqlite3_finalize(c->stmts[i]);
    if (sqlite3_close(c->db) == SQLITE_BUSY) {
        log_warn("sqlite connection closed with unfinalized statements", NULL);
        sqlite3_close_v2(c->db);
    }
    free(c);
}

sqlite3 *store_conn_db(store_conn *c)
{
    return c->db;
}

static int cache_slot(store_conn *c)
{
    if (c->n_stmts < STMT_SLOTS) return c->n_stmts++;
    int i = c->evict_next;
    c->evict_next = (i + 1) % STMT_SLOTS;
    log_debug("statement cache full, evicting", "sql=\"%.60s\"", c->keys[i]);
    sqlite3_finalize(c->stmts[i]);
    return i;
}

static bool blank(const char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == ';') s++;
    return *s == '\0';
}

sqlite3_stmt *store_conn_stmt(store_conn *c, const char *sql)
{
    for (int i = 0; i < c->n_stmts; i++) {
        if (c->keys[i] != sql) continue;
        sqlite3_stmt *st = c->stmts[i];
        assert(strncmp(sqlite3_sql(st), sql, strlen(sqlite3_sql(st))) == 0); /* a reused key */
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        return st;
    }
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    int rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, &tail);
    const char *why = rc != SQLITE_OK ? sqlite3_errmsg(c->db)
                      : !st           ? "empty statement"
                      : !blank(tail)  ? "more than one statement"
                                      : NULL;
    if (why) {
        log_error("sqlite prepare failed", "error=\"%s\"", why);
        sqlite3_finalize(st);
        return NULL;
    }
    int i = cache_slot(c);
    c->keys[i] = sql;
    c->stmts[i] = st;
    return st;
}

int store_conn_exec(store_conn *c, const char *sql)
{
    sqlite3_stmt *st = store_conn_stmt(c, sql);
    if (!st) return SQLITE_ERROR;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) continue;
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int store_conn_reset_busy(store_conn *c)
{
    int first = SQLITE_OK;
    for (sqlite3_stmt *st = sqlite3_next_stmt(c->db, NULL); st; st = sqlite3_next_stmt(c->db, st)) {
        if (!sqlite3_stmt_busy(st)) continue;
        int rc = sqlite3_reset(st);
        if (first == SQLITE_OK) first = rc;
    }
    return first;
}

/* ---- validation ---------------------------------------------------------- */

/* Errors after which a connection is not worth keeping: a fresh one is cheap. */
static bool is_fatal(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_NOMEM:
    case SQLITE_PROTOCOL:
        return true;
    default:
        return false;
    }
}

/* Make a returned connection clean for its next user. False: close it. */
static bool conn_validate(store_conn *c)
{
    bool broken = is_fatal(sqlite3_extended_errcode(c->db));
    /* A statement left mid-step keeps a read transaction (and an old WAL
     * snapshot) open; reset every one, cached or not. */
    if (is_fatal(store_conn_reset_busy(c))) broken = true;
    if (!sqlite3_get_autocommit(c->db)) {
        if (store_conn_exec(c, "ROLLBACK") != SQLITE_OK || !sqlite3_get_autocommit(c->db))
            broken = true;
    }
    return !broken;
}

/* ---- the pool ------------------------------------------------------------ */

struct store_readers {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled when a connection is pushed or a slot frees */
    store_conn **idle; /* LIFO stack, room for max_open */
    int n_idle, n_open, base, max_open, waiters;
    int wait_ms, busy_ms;
    uint64_t idle_ns;
    char *path;
    /* statistics, under mu */
    uint64_t checkouts, hits, misses, waits, wait_timeouts, wait_ns, validations_failed,
        idle_closed;
};

static store_conn *reader_open(store_readers *r, char *err, size_t errlen)
{
    sqlite3 *db = store_connect(r->path, 1, r->busy_ms, err, errlen);
    if (!db) return NULL;
    store_conn *c = store_conn_wrap(db);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        sqlite3_close(db);
    }
    return c;
}

static void close_list(store_conn *c)
{
    while (c) {
        store_conn *next = c->next;
        store_conn_free(c);
        c = next;
    }
}

/* Take the longest-idle connections off the bottom of the stack while more
 * than pool_size are open. Returns them linked, to be closed unlocked. */
static store_conn *reap_locked(store_readers *r, uint64_t now)
{
    store_conn *victims = NULL;
    while (r->n_open > r->base && r->n_idle > 0 && now - r->idle[0]->idle_since_ns >= r->idle_ns) {
        store_conn *c = r->idle[0];
        r->n_idle--;
        memmove(r->idle, r->idle + 1, (size_t)r->n_idle * sizeof r->idle[0]);
        r->n_open--;
        r->idle_closed++;
        c->next = victims;
        victims = c;
    }
    return victims;
}

static int init_sync(store_readers *r)
{
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
#ifdef PTHREAD_MUTEX_ADAPTIVE_NP
    /* Critical sections are a few loads and stores: spin briefly first. */
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
#endif
    int rc = pthread_mutex_init(&r->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    if (rc != 0) return -1;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    rc = pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0) pthread_mutex_destroy(&r->mu);
    return rc == 0 ? 0 : -1;
}

static store_readers *readers_alloc(const store_opts *o)
{
    store_readers *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->base = o->pool_size;
    r->max_open = o->pool_size + o->pool_overflow;
    r->wait_ms = o->pool_wait_ms;
    r->busy_ms = o->busy_timeout_ms;
    r->idle_ns = (uint64_t)o->pool_idle_secs * 1000000000u;
    r->idle = calloc((size_t)r->max_open, sizeof r->idle[0]);
    r->path = strdup(o->path);
    if (r->idle && r->path && init_sync(r) == 0) return r;
    free(r->idle);
    free(r->path);
    free(r);
    return NULL;
}

static void readers_free(store_readers *r)
{
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r->idle);
    free(r->path);
    free(r);
}

store_readers *store_readers_open(const store_opts *o, bool open_one, char *err, size_t errlen)
{
    store_readers *r = readers_alloc(o);
    if (!r) {
        snprintf(err, errlen, "reader pool: out of memory");
        return NULL;
    }
    uint64_t now = now_ns();
    for (int i = 0; i < (open_one && r->base > 0 ? 1 : 0); i++) {
        store_conn *c = reader_open(r, err, errlen);
        if (!c) {
            store_readers_close(r);
            return NULL;
        }
        c->idle_since_ns = now;
        r->idle[r->n_idle++] = c;
        r->n_open++;
    }
    return r;
}

void store_readers_close(store_readers *r)
{
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    if (r->n_idle != r->n_open)
        log_error("store closed with reader connections still checked out", "count=%d",
                  r->n_open - r->n_idle);
    for (int i = 0; i < r->n_idle; i++) store_conn_free(r->idle[i]);
    r->n_idle = 0;
    pthread_mutex_unlock(&r->mu);
    readers_free(r);
}

/* Pop the most recently used idle connection; unlocks r->mu. */
static store_conn *take_idle_unlock(store_readers *r)
{
    store_conn *c = r->idle[--r->n_idle];
    r->hits++;
    store_conn *victims = r->n_open > r->base ? reap_locked(r, now_ns()) : NULL;
    pthread_mutex_unlock(&r->mu);
    close_list(victims);
    return c;
}

/* A slot was reserved (n_open counted): open it outside the mutex. */
static store_conn *open_reserved(store_readers *r)
{
    char err[256];
    store_conn *c = reader_open(r, err, sizeof err);
    if (c) return c;
    log_error("cannot open a reader connection", "error=\"%s\"", err);
    pthread_mutex_lock(&r->mu);
    r->n_open--;
    if (r->waiters) pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static struct timespec deadline_ts(uint64_t deadline)
{
    struct timespec ts = {.tv_sec = (time_t)(deadline / 1000000000u),
                          .tv_nsec = (long)(deadline % 1000000000u)};
    return ts;
}

/* Nothing idle when get was called. Holds r->mu on entry, not on return. */
static store_conn *get_slow(store_readers *r)
{
    uint64_t t0 = 0, deadline = 0;
    for (;;) {
        if (r->n_idle > 0 || r->n_open < r->max_open) {
            if (t0) r->wait_ns += now_ns() - t0;
            if (r->n_idle > 0) return take_idle_unlock(r);
            r->n_open++;
            r->misses++;
            pthread_mutex_unlock(&r->mu);
            return open_reserved(r);
        }
        uint64_t now = now_ns();
        if (!t0) {
            t0 = now;
            deadline = now + (uint64_t)r->wait_ms * 1000000u;
            r->waits++;
        }
        if (now >= deadline) break;
        struct timespec ts = deadline_ts(deadline);
        r->waiters++;
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
        r->waiters--;
    }
    r->wait_timeouts++;
    r->wait_ns += now_ns() - t0;
    int open = r->n_open;
    pthread_mutex_unlock(&r->mu);
    log_warn("no reader connection free", "waited_ms=%d open=%d", r->wait_ms, open);
    return NULL;
}

store_conn *store_readers_get(store_readers *r)
{
    pthread_mutex_lock(&r->mu);
    r->checkouts++;
    if (r->n_idle > 0) return take_idle_unlock(r);
    return get_slow(r);
}

static void drop_broken(store_readers *r, store_conn *c)
{
    log_warn("reader connection failed validation, closing it", "error=\"%s\"",
             sqlite3_errmsg(c->db));
    store_conn_free(c);
    pthread_mutex_lock(&r->mu);
    r->n_open--;
    r->validations_failed++;
    if (r->waiters) pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void store_readers_put(store_readers *r, store_conn *c)
{
    if (!c) return;
    if (!conn_validate(c)) {
        drop_broken(r, c);
        return;
    }
    uint64_t now = now_ns();
    c->idle_since_ns = now;
    pthread_mutex_lock(&r->mu);
    r->idle[r->n_idle++] = c;
    store_conn *victims = r->n_open > r->base ? reap_locked(r, now) : NULL;
    if (r->waiters) pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    close_list(victims);
}

void store_readers_stats(store_readers *r, store_stats *out)
{
    pthread_mutex_lock(&r->mu);
    out->pool_size = r->base;
    out->pool_overflow = r->max_open - r->base;
    out->conns_open = r->n_open;
    out->conns_idle = r->n_idle;
    out->conns_in_use = r->n_open - r->n_idle;
    out->checkouts = r->checkouts;
    out->hits = r->hits;
    out->misses = r->misses;
    out->waits = r->waits;
    out->wait_timeouts = r->wait_timeouts;
    out->wait_ns_total = r->wait_ns;
    out->validations_failed = r->validations_failed;
    out->idle_closed = r->idle_closed;
    pthread_mutex_unlock(&r->mu);
}
