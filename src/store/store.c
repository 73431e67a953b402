/*
 * store.c - opening and closing the store; the glue between its two halves.
 *
 * store_open() does everything in a fixed order, each step undone if a later
 * one fails:
 *   1. open the writer connection (READWRITE|CREATE|NOMUTEX) and apply the
 *      pragmas (store_connect): journal_mode=WAL, synchronous=NORMAL,
 *      cache_size=-10240, temp_store=MEMORY, mmap_size=256 MiB and
 *      wal_autocheckpoint=4096 (writer only), foreign_keys=ON, plus
 *      sqlite3_busy_timeout();
 *      Where no file exists yet, it is first written from the schema image
 *      (store_image.c: every migration and the seed, built at build time),
 *      and step 2 is skipped;
 *   2. migrate: read PRAGMA user_version, refuse a file newer than this build
 *      (an older binary must never write a schema it does not know), then run
 *      the missing scripts in one BEGIN IMMEDIATE ... COMMIT together with
 *      the user_version bump, so a crash leaves the file at one exact version;
 *   3. open the reader pool (store_pool.c) - after the migrations, so readers
 *      never see a half-built schema; one reader now, none for a file just
 *      written from the image;
 *   4. start the writer thread (store_writer.c), which owns the writer
 *      connection from then on (and first syncs a file written from the
 *      image).
 * store_close() reverses it: drain and stop the writer, PRAGMA optimize on
 * the writer connection, close the readers, close the writer connection last
 * (the last connection to close checkpoints and removes the WAL).
 *
 * Cache size: the original ran cache_size=10000, i.e. 10000 pages (~40 MB
 * at 4 KiB pages) while its docs said "10 MB". We take the documented 10 MB
 * and say it in KiB (negative value) so it does not depend on page size: it
 * is per connection and up to 16 connections are open.
 *
 * All SQL here is constant text run through prepared statements; the one
 * composed statement is "PRAGMA user_version = N" where N is a loop counter
 * (PRAGMA takes no bound parameters).
 */
#include "store/store.h"
#include "store/store_image.h"

#include "lib/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct store {
    store_opts opts;
    store_conn *wconn;
    store_writer *writer;
    store_readers *readers;
};

void store_opts_default(store_opts *o)
{
    o->path = "data/personas.db";
    o->pool_size = 5;
    o->pool_overflow = 10;
    o->pool_idle_secs = 60;
    o->pool_wait_ms = 5000;
    o->busy_timeout_ms = 5000;
    o->max_batch = 256;
    o->commit_wait_us = 1000;
}

/* ---- running constant SQL ------------------------------------------------ */

/* Prepare and step every statement of `sql` in turn. If row1 is given, the
 * first column of the first row is copied there (for PRAGMA results). */
static int run_sql(sqlite3 *db, const char *sql, char *row1, size_t row1len)
{
    if (row1) row1[0] = '\0';
    while (sql && *sql) {
        sqlite3_stmt *st = NULL;
        const char *tail = NULL;
        int rc = sqlite3_prepare_v2(db, sql, -1, &st, &tail);
        if (rc != SQLITE_OK) return rc;
        sql = tail;
        if (!st) continue; /* whitespace or a comment */
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            const unsigned char *v = sqlite3_column_text(st, 0);
            if (row1 && !row1[0] && v) snprintf(row1, row1len, "%s", (const char *)v);
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) return rc;
    }
    return SQLITE_OK;
}

static int fail(char *err, size_t errlen, const char *what, sqlite3 *db)
{
    snprintf(err, errlen, "%s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
    return -1;
}

/* ---- connections --------------------------------------------------------- */

static const char *const conn_pragmas[] = {
    "PRAGMA cache_size=-10240",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA foreign_keys=ON",
};

/* synchronous only matters to a connection that writes, and it goes first:
 * switching a new file to WAL is itself a rollback-journal transaction.
 * A database created just now holds nothing anyone was promised yet, so it
 * is set up (WAL switch, migrations) with synchronous=OFF - no fdatasync at
 * all, where NORMAL cost five, most of the time of creating one - and
 * switched to NORMAL before the first write is acknowledged; the first
 * checkpoint then syncs the WAL, migrations included, before copying it.
 * A process killed meanwhile loses nothing (the OS has the pages); only a
 * power cut within those milliseconds could leave the new file unreadable,
 * with no data in it. */
static int apply_pragmas(sqlite3 *db, int readonly, bool fresh, char *err, size_t errlen)
{
    if (!readonly) {
        char mode[16];
        const char *sync = fresh ? "PRAGMA synchronous=OFF" : "PRAGMA synchronous=NORMAL";
        if (run_sql(db, sync, NULL, 0) != SQLITE_OK) return fail(err, errlen, sync, db);
        if (run_sql(db, "PRAGMA journal_mode=WAL", mode, sizeof mode) != SQLITE_OK)
            return fail(err, errlen, "PRAGMA journal_mode=WAL", db);
        if (strcmp(mode, "wal") != 0) {
            snprintf(err, errlen, "journal_mode=WAL not available (got '%s')", mode);
            return -1;
        }
    }
    for (size_t i = 0; i < sizeof conn_pragmas / sizeof conn_pragmas[0]; i++) {
        if (run_sql(db, conn_pragmas[i], NULL, 0) != SQLITE_OK)
            return fail(err, errlen, conn_pragmas[i], db);
    }
    /* Checkpoint every 4,096 WAL pages (16 MiB at 4 KiB pages) instead of
     * SQLite's 1,000: an index page changed by many commits in between is
     * copied into the database once, and the checkpoint's fsync comes a
     * quarter as often. Measured with the memory inserts: ~5% less CPU and
     * ~20% less time per row. The cost: a WAL of up to 16 MiB to read back
     * after a crash (a clean close checkpoints and removes it). */
    if (!readonly && run_sql(db, "PRAGMA wal_autocheckpoint=4096", NULL, 0) != SQLITE_OK)
        return fail(err, errlen, "PRAGMA wal_autocheckpoint", db);
    /* The original's 256 MiB mmap, on the writer only. Measured (docs/BENCHMARKS.md):
     * a reader's map is dropped and refaulted after every commit, which made a
     * top-10 search at 10k rows 2.8 ms instead of 0.85 ms; readers use pread. */
    const char *mmap = readonly ? "PRAGMA mmap_size=0" : "PRAGMA mmap_size=268435456";
    if (run_sql(db, mmap, NULL, 0) != SQLITE_OK) return fail(err, errlen, mmap, db);
    return 0;
}

sqlite3 *store_connect(const char *path, int readonly, int busy_timeout_ms, char *err,
                       size_t errlen)
{
    return store_connect_ex(path, readonly, false, busy_timeout_ms, err, errlen);
}

sqlite3 *store_connect_ex(const char *path, int readonly, bool fresh, int busy_timeout_ms,
                          char *err, size_t errlen)
{
    int flags = SQLITE_OPEN_NOMUTEX |
                (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, flags, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", path,
                 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return NULL;
    }
    /* Before the pragmas: journal_mode=WAL itself may wait for a lock. */
    sqlite3_busy_timeout(db, busy_timeout_ms);
    if (apply_pragmas(db, readonly, fresh, err, errlen) != 0) {
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

/* ---- migrations ---------------------------------------------------------- */

static int read_user_version(sqlite3 *db, int *out)
{
    char v[32];
    int rc = run_sql(db, "PRAGMA user_version", v, sizeof v);
    *out = atoi(v);
    return rc;
}

/* Migration scripts from version v up to `to` and the user_version bump,
 * all or nothing (one transaction: a new database gets every version in
 * one commit). */
static int migrate_range(sqlite3 *db, int v, int to, char *err, size_t errlen)
{
    char bump[48];
    snprintf(bump, sizeof bump, "PRAGMA user_version = %d", to);
    if (run_sql(db, "BEGIN IMMEDIATE", NULL, 0) != SQLITE_OK)
        return fail(err, errlen, "migration: BEGIN IMMEDIATE", db);
    int at = v;
    while (at < to && run_sql(db, store_migrations[at], NULL, 0) == SQLITE_OK) at++;
    if (at < to || run_sql(db, bump, NULL, 0) != SQLITE_OK ||
        run_sql(db, "COMMIT", NULL, 0) != SQLITE_OK) {
        snprintf(err, errlen, "migration to schema version %d failed: %s", at + 1,
                 sqlite3_errmsg(db));
        if (!sqlite3_get_autocommit(db)) run_sql(db, "ROLLBACK", NULL, 0);
        return -1;
    }
    log_info("store schema migrated", "from=%d version=%d", v, to);
    return 0;
}

static int migrate(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    int v = 0;
    if (read_user_version(db, &v) != SQLITE_OK) return fail(err, errlen, "PRAGMA user_version", db);
    if (v > store_schema_version) {
        snprintf(err, errlen,
                 "%s has schema version %d but this build knows only up to %d; refusing to"
                 " open it (use a newer persona-mcp or another database file)",
                 path, v, store_schema_version);
        return -1;
    }
    if (v < 0) {
        snprintf(err, errlen, "%s has an invalid schema version %d", path, v);
        return -1;
    }
    return v < store_schema_version ? migrate_range(db, v, store_schema_version, err, errlen) : 0;
}

/* ---- open / close -------------------------------------------------------- */

static int check_opts(const store_opts *o, char *err, size_t errlen)
{
    const char *bad = NULL;
    if (!o->path || !o->path[0])
        bad = "path is empty";
    else if (o->pool_size < 0 || o->pool_overflow < 0)
        bad = "pool sizes must be >= 0";
    else if (o->pool_size + o->pool_overflow < 1)
        bad = "pool_size + pool_overflow must be >= 1";
    else if (o->pool_idle_secs < 0 || o->pool_wait_ms < 0 || o->busy_timeout_ms < 0)
        bad = "timeouts must be >= 0";
    else if (o->max_batch < 1)
        bad = "max_batch must be >= 1";
    if (!bad) return 0;
    snprintf(err, errlen, "store options: %s", bad);
    return -1;
}

/* No file, or an empty one: SQLite will create the database. */
static bool is_fresh(const char *path)
{
    struct stat st;
    return stat(path, &st) != 0 ? errno == ENOENT : st.st_size == 0;
}

/* A new database is written from the schema image (store_image.c) when it
 * can be; *sync_fd then holds the new file for the writer thread to sync.
 * Otherwise (an existing file, or no O_TMPFILE) the migrations run. */
static int open_writer_conn(store *s, int *sync_fd, char *err, size_t errlen)
{
    const store_opts *o = &s->opts;
    err[0] = 0;
    bool fresh = is_fresh(o->path);
    *sync_fd = fresh ? store_image_create(o->path) : -1;
    bool migrating = *sync_fd < 0;
    sqlite3 *db = store_connect_ex(o->path, 0, fresh && migrating, o->busy_timeout_ms, err, errlen);
    if (!db) return -1;
    if (migrating && (migrate(db, o->path, err, errlen) != 0 ||
                      (fresh && run_sql(db, "PRAGMA synchronous=NORMAL", NULL, 0) != SQLITE_OK))) {
        if (!err[0]) fail(err, errlen, "PRAGMA synchronous=NORMAL", db);
        sqlite3_close(db);
        return -1;
    }
    if (!migrating)
        log_info("store created from the schema image", "version=%d", store_image_version);
    s->wconn = store_conn_wrap(db);
    if (!s->wconn) {
        sqlite3_close(db);
        return fail(err, errlen, "store_open", NULL);
    }
    return 0;
}

/* Before SQLite's first use in the process: no memory statistics, whose
 * global mutex every allocation of every connection took (~2.5% of CPU
 * under load, measured). Too late once SQLite is initialised: then it is
 * simply refused. */
static void sqlite_setup(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int store_open(store **out, const store_opts *o, char *err, size_t errlen)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, sqlite_setup);
    *out = NULL;
    if (check_opts(o, err, errlen) != 0) return -1;
    store *s = calloc(1, sizeof *s);
    if (!s) return fail(err, errlen, "store_open", NULL);
    s->opts = *o;
    int sync_fd = -1;
    if (open_writer_conn(s, &sync_fd, err, errlen) != 0) goto undo;
    s->readers = store_readers_open(o, sync_fd < 0, err, errlen);
    if (!s->readers) goto undo;
    s->writer = store_writer_start(s->wconn, o->max_batch, o->commit_wait_us, sync_fd, err, errlen);
    sync_fd = -1; /* the writer's now, even if it failed to start */
    if (!s->writer) goto undo;
    *out = s;
    return 0;
undo:
    if (sync_fd >= 0) close(sync_fd);
    if (s->readers) store_readers_close(s->readers);
    if (s->wconn) store_conn_free(s->wconn);
    free(s);
    return -1;
}

void store_close(store *s)
{
    if (!s) return;
    store_writer_stop(s->writer);
    /* Lets SQLite ANALYZE what the queries of this run showed to need it. */
    int rc = store_conn_exec(s->wconn, "PRAGMA optimize");
    if (rc != SQLITE_OK) log_warn("PRAGMA optimize failed", "error=\"%s\"", sqlite3_errstr(rc));
    store_readers_close(s->readers);
    store_conn_free(s->wconn);
    free(s);
}

/* ---- thin forwards ------------------------------------------------------- */

int store_write(store *s, store_write_fn fn, void *ctx)
{
    return store_writer_write(s->writer, fn, ctx);
}

void store_submit(store *s, store_write_fn fn, store_done_fn done, void *ctx)
{
    store_writer_submit(s->writer, fn, done, ctx, false);
}

void store_set_hooks(store *s, store_row_fn row, store_commit_fn after, void *ctx)
{
    store_writer_hooks(s->writer, row, after, ctx);
}

void store_expect(store *s)
{
    store_writer_expect(s->writer, 1);
}

void store_unexpect(store *s)
{
    store_writer_expect(s->writer, -1);
}

void store_submit_expected(store *s, store_write_fn fn, store_done_fn done, void *ctx)
{
    store_writer_submit(s->writer, fn, done, ctx, true);
}

store_conn *store_pool_get(store *s)
{
    return store_readers_get(s->readers);
}

void store_pool_put(store *s, store_conn *c)
{
    store_readers_put(s->readers, c);
}

void store_get_stats(store *s, store_stats *out)
{
    memset(out, 0, sizeof *out);
    store_readers_stats(s->readers, out);
    store_writer_stats(s->writer, out);
}

/* ---- time ---------------------------------------------------------------- */

void store_now_iso(char out[40])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 40 - n, ".%06ld+00:00", (long)(ts.tv_nsec / 1000) % 1000000);
}
