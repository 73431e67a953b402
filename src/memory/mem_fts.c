/*
 * mem_fts.c - full-text indexing off the commit path.
 *
 * Since schema v5 an INSERT into memories queues the row's seq in
 * memories_fts_pending (a trigger, same transaction) instead of indexing it
 * with FTS5 there and then. FTS5 indexing one row per transaction costs
 * ~40 us of CPU (tokenising, plus a new level-0 segment and its merge work
 * per transaction); indexing a thousand rows in one statement costs ~6 us a
 * row. So the writer indexes the queue in bulk, as an ordinary write job:
 *
 *   - when MEM_FTS_BATCH rows were committed since the last flush,
 *   - on every tick of the access-flush timer when any were (so the index
 *     trails the table by at most about a second when idle),
 *   - synchronously before an FTS query, when the reader sees a queued row
 *     (a hybrid search therefore always sees every committed memory),
 *   - at close.
 *
 * Nothing lives outside SQLite: the queue is a table of the same database,
 * written in the same transaction as the row, so a killed server loses no
 * indexing work, and the first tick after start indexes what was queued.
 * The counter is only a hint of when to flush (a group rolled back and run
 * again may count twice); the table is the truth.
 *
 * Threads: mem_fts_added/tick are called from any thread (the async done
 * callbacks run on the writer thread: store_submit is allowed there);
 * mem_fts_sync blocks and must not run on the writer or service thread.
 */
#include <time.h>

#include "lib/log.h"
#include "memory/mem_internal.h"

static const char SQL_ANY[] = "SELECT 1 FROM memories_fts_pending LIMIT 1";

static int flush_fn(store_conn *c, void *ctx)
{
    mem_store *m = ctx;
    int rc = store_conn_exec(c, store_fts_index_pending);
    if (rc == SQLITE_OK) rc = store_conn_exec(c, store_fts_clear_pending);
    if (rc == SQLITE_OK) atomic_store(&m->fts_pending, 0);
    return rc;
}

static void flush_done(int rc, void *ctx)
{
    mem_store *m = ctx;
    if (rc != SQLITE_OK) log_warn("full-text indexing failed", "sqlite=\"%s\"", sqlite3_errstr(rc));
    atomic_store(&m->fts_flushing, false);
}

static void flush_async(mem_store *m)
{
    if (!atomic_exchange(&m->fts_flushing, true)) store_submit(m->st, flush_fn, flush_done, m);
}

void mem_fts_added(mem_store *m, size_t n)
{
    if (n && atomic_fetch_add(&m->fts_pending, n) + n >= MEM_FTS_BATCH) flush_async(m);
}

void mem_fts_tick(mem_store *m)
{
    if (atomic_load(&m->fts_pending)) flush_async(m);
}

int mem_fts_sync(mem_store *m, store_conn *sc)
{
    sqlite3_stmt *q = store_conn_stmt(sc, SQL_ANY);
    if (!q) return SQLITE_ERROR;
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    if (rc == SQLITE_DONE) return SQLITE_OK;
    if (rc != SQLITE_ROW) return rc;
    rc = store_write(m->st, flush_fn, m);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int mem_fts_flush(mem_store *m)
{
    store_conn *sc = store_pool_get(m->st);
    if (!sc) return -1;
    int rc = mem_fts_sync(m, sc);
    store_pool_put(m->st, sc);
    return rc == SQLITE_OK ? 0 : -1;
}

void mem_fts_close(mem_store *m)
{
    /* A queued flush's done callback touches m: let it finish first. */
    while (atomic_load(&m->fts_flushing)) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    if (!atomic_load(&m->fts_pending)) return;
    int rc = store_write(m->st, flush_fn, m);
    if (rc != SQLITE_OK && rc != SQLITE_DONE)
        log_warn("full-text indexing at close failed", "sqlite=\"%s\"", sqlite3_errstr(rc));
}
