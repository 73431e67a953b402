/*
 * store.h - SQLite, the one store of record.
 *
 * One writer thread owns the only read-write connection. Callers hand it
 * write jobs; it runs every job that is waiting in one transaction (group
 * commit: each job inside its own SAVEPOINT so one failing job does not undo
 * the others), commits, and only then reports completion. A write is
 * therefore acknowledged only after it is durable in the WAL.
 *
 * Reads go through a pool of read-only connections (WAL lets them run beside
 * the writer): `pool_size` kept open once opened (one at store_open unless
 * the database was just created, the others on first demand), up to `pool_overflow` more opened on
 * demand and closed again after `pool_idle_secs` idle. Checkouts, hits
 * (an idle connection was reused), misses (one had to be opened), waits and
 * wait time are counted for /metrics and system.status.
 *
 * Every connection (writer and readers) gets the pragmas of the original
 * (WAL, synchronous=NORMAL, cache 10 MB, temp_store=MEMORY, mmap 256 MB) plus
 * foreign_keys=ON and busy_timeout. The schema is versioned with
 * PRAGMA user_version; store_schema.c holds the forward migrations.
 *
 * Threads: store_write() blocks and must not be called on the service
 * thread; store_submit() never blocks and calls `done` on the writer thread.
 * Ownership: store owns every store_conn; a checked-out conn belongs to the
 * caller until store_pool_put(). Statements from store_conn_stmt() belong to
 * the connection (cached, already reset and unbound when returned).
 */
#ifndef PMCP_STORE_H
#define PMCP_STORE_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

typedef struct store store;
typedef struct store_conn store_conn;

typedef struct store_opts {
    const char *path;    /* database file; its directory must exist */
    int pool_size;       /* default 5 */
    int pool_overflow;   /* default 10 */
    int pool_idle_secs;  /* overflow connections idle this long are closed; default 60 */
    int pool_wait_ms;    /* max wait for a connection before giving up; default 5000 */
    int busy_timeout_ms; /* PRAGMA busy_timeout; default 5000 */
    int max_batch;       /* max jobs per group commit; default 256 */
    int commit_wait_us;  /* wait for announced writes (store_expect); default 1000 */
} store_opts;

void store_opts_default(store_opts *o);

/* Open (creating if needed), apply pragmas and migrations, start the writer
 * thread and the pool. Returns 0, or -1 with a message in err. */
int store_open(store **out, const store_opts *o, char *err, size_t errlen);
/* Finish every queued write (commit), stop the writer, close all
 * connections (PRAGMA optimize first). Checked-out connections must have
 * been returned. */
void store_close(store *s);

/* ---- writes ---------------------------------------------------------------
 * A job runs on the writer thread inside the group's transaction. It returns
 * SQLITE_OK (or SQLITE_DONE) on success; anything else rolls back just that
 * job's savepoint and is reported to the caller. */
typedef int (*store_write_fn)(store_conn *c, void *ctx);
typedef void (*store_done_fn)(int rc, void *ctx);

/* Blocking: returns the job's rc once its transaction committed (or the
 * commit's error). */
int store_write(store *s, store_write_fn fn, void *ctx);
/* Non-blocking: `done(rc, ctx)` runs on the writer thread after commit.
 * `done` may be NULL. It may call store_submit() but not store_write() (that
 * returns SQLITE_MISUSE on the writer thread instead of deadlocking). If the
 * job cannot even be queued (out of memory, store closing), `done` is called
 * at once on the caller's thread with SQLITE_NOMEM or SQLITE_MISUSE.
 * In both calls a job's SQLITE_DONE is reported as SQLITE_OK. */
void store_submit(store *s, store_write_fn fn, store_done_fn done, void *ctx);

/* Group commit across a pipeline: store_expect() announces a write that is
 * being prepared (e.g. embedded) and will be handed over soon with
 * store_submit_expected() (or abandoned with store_unexpect()). While
 * announced writes are on their way, the writer holds a group open for up
 * to commit_wait_us so they share its commit; a lone write never waits. */
void store_expect(store *s);
void store_unexpect(store *s);
void store_submit_expected(store *s, store_write_fn fn, store_done_fn done, void *ctx);

/* Hooks of the writer connection, both run on the writer thread with ctx:
 * row(ctx, op, table, rowid) for every row a write job changes (SQLite's
 * update hook: changes by triggers too, not the rows an INSERT OR REPLACE
 * deletes; op is SQLITE_INSERT, _UPDATE or _DELETE); after(ctx) once a group
 * committed, before its jobs are reported done (a store_write() caller
 * returns after it, a reader that begins after it sees the commit). They
 * take effect from the next group on; NULLs remove them (a group already
 * running may still call the old ones: follow with a store_write()). */
typedef void (*store_row_fn)(void *ctx, int op, const char *table, int64_t rowid);
typedef void (*store_commit_fn)(void *ctx);
void store_set_hooks(store *s, store_row_fn row, store_commit_fn after, void *ctx);

/* ---- reads ---------------------------------------------------------------- */
store_conn *store_pool_get(store *s); /* NULL after pool_wait_ms */
void store_pool_put(store *s, store_conn *c);

sqlite3 *store_conn_db(store_conn *c);
/* Cached prepared statement for a SQL text (keyed by the pointer: pass
 * string literals). Returns NULL and logs on prepare error. */
sqlite3_stmt *store_conn_stmt(store_conn *c, const char *sql);
/* Step the cached statement for `sql` to completion and reset it. Returns
 * SQLITE_OK or the error. For constant statements (BEGIN, PRAGMA x=1...). */
int store_conn_exec(store_conn *c, const char *sql);

/* ---- statistics ----------------------------------------------------------- */
#define STORE_BATCH_BUCKETS 8 /* group sizes: 1, 2, 4, 8, 16, 32, 64, +Inf */

typedef struct store_stats {
    /* pool */
    int pool_size, pool_overflow;
    int conns_open, conns_idle, conns_in_use;
    uint64_t checkouts, hits, misses, waits, wait_timeouts;
    uint64_t wait_ns_total;
    uint64_t validations_failed, idle_closed;
    /* writer */
    uint64_t writes, write_errors, commits, commit_errors;
    uint64_t batch_le[STORE_BATCH_BUCKETS]; /* cumulative: groups with size <= 1,2,4.. */
    uint64_t batch_sum;                     /* total jobs in all groups */
    uint64_t queue_depth;                   /* jobs waiting now */
} store_stats;

void store_get_stats(store *s, store_stats *out);

/* Migrations (store_schema.c). */
extern const char *const store_migrations[];
extern const int store_schema_version;
/* Schema v5's deferred full-text indexing: index the queued rows, then
 * empty the queue (one write transaction; src/memory/mem_fts.c). */
extern const char store_fts_index_pending[];
extern const char store_fts_clear_pending[];
/* Migration 1 in two halves (store_migrations[0] is the two joined): its
 * tables, which the schema image holds, and its seed (the default personas),
 * run when a database is created from the image. */
extern const char store_schema_v1_tables[];
extern const char store_seed_sql[];

/* ---- internal to src/store (store.c, store_writer.c, store_pool.c) --------
 * The parts store.c assembles; other modules use only the API above. */
typedef struct store_writer store_writer;
typedef struct store_readers store_readers;

/* store.c: open one connection and apply every per-connection pragma
 * (readonly: SQLITE_OPEN_READONLY, else READWRITE|CREATE; always NOMUTEX). */
sqlite3 *store_connect(const char *path, int readonly, int busy_timeout_ms, char *err,
                       size_t errlen);
/* The same; fresh: the file is being created (set up without syncs). */
sqlite3 *store_connect_ex(const char *path, int readonly, bool fresh, int busy_timeout_ms,
                          char *err, size_t errlen);

/* store_pool.c: the connection wrapper. wrap takes ownership of db (NULL on
 * out of memory, db then still the caller's); free finalizes the cached
 * statements and closes db. reset_busy resets every statement left mid-step
 * and returns the first error that reports. */
store_conn *store_conn_wrap(sqlite3 *db);
void store_conn_free(store_conn *c);
int store_conn_reset_busy(store_conn *c);

/* open_one: open one connection now (else all on first demand). */
store_readers *store_readers_open(const store_opts *o, bool open_one, char *err, size_t errlen);
void store_readers_close(store_readers *r);
store_conn *store_readers_get(store_readers *r);
void store_readers_put(store_readers *r, store_conn *c);
void store_readers_stats(store_readers *r, store_stats *out);

/* store_writer.c: the writer thread on connection c (not owned). sync_fd:
 * -1, or a file the thread fdatasyncs and closes before its first job (the
 * new database written from the schema image); owned by the writer from
 * this call on, even when it fails. stop runs every queued job, then joins
 * the thread. */
store_writer *store_writer_start(store_conn *c, int max_batch, int wait_us, int sync_fd, char *err,
                                 size_t errlen);
void store_writer_expect(store_writer *w, int delta);
void store_writer_stop(store_writer *w);
int store_writer_write(store_writer *w, store_write_fn fn, void *ctx);
/* expected: the job was announced with store_writer_expect(+1). */
void store_writer_submit(store_writer *w, store_write_fn fn, store_done_fn done, void *ctx,
                         bool expected);
void store_writer_stats(store_writer *w, store_stats *out);
void store_writer_hooks(store_writer *w, store_row_fn row, store_commit_fn after, void *ctx);

/* Current UTC time as the original's ISO text: 2025-10-15T10:30:00.123456+00:00 */
void store_now_iso(char out[40]);

#endif
