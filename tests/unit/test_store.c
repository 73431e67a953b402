/*
 * test_store.c - the SQLite store: schema and migrations, the writer thread
 * (group commit, per-job savepoints, draining on close) and the reader pool
 * (hits, misses, overflow, waits, timeouts, idle close, validation).
 *
 * Every test gets its own database in a fresh temporary directory (fixture
 * setup/teardown). Tests that need several jobs in one group hold the writer
 * thread inside a "gate" job, queue the jobs behind it, then open the gate:
 * the queued jobs are then taken as one group, deterministically. Threads
 * other than the test's own never call cmocka assertions (they longjmp into
 * the test's stack); they record results that the test thread checks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "store/store.h"
#include "store/store_image.h"
#include "lib/log.h"

#include <pthread.h>
#include <dirent.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- fixture ------------------------------------------------------------- */

typedef struct fx {
    char dir[64];
    char path[128];
    char other[128]; /* a second database in the same directory */
    store *s;
} fx;

static int fx_setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/pmcp-store-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->path, sizeof f->path, "%s/test.db", f->dir);
    snprintf(f->other, sizeof f->other, "%s/other.db", f->dir);
    *state = f;
    return 0;
}

static void unlink_db(const char *path)
{
    char p[160];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

static int fx_teardown(void **state)
{
    fx *f = *state;
    char p[160];
    store_close(f->s);
    unlink_db(f->path);
    unlink_db(f->other);
    snprintf(p, sizeof p, "%s/garbage", f->dir);
    unlink(p);
    rmdir(f->dir);
    free(f);
    return 0;
}

static store_opts opts_for(fx *f)
{
    store_opts o;
    store_opts_default(&o);
    o.path = f->path;
    return o;
}

static store *open_with(fx *f, const store_opts *o)
{
    char err[256] = "";
    int rc = store_open(&f->s, o, err, sizeof err);
    if (rc != 0) fprintf(stderr, "store_open: %s\n", err);
    assert_int_equal(rc, 0);
    assert_non_null(f->s);
    return f->s;
}

static store *open_default(fx *f)
{
    store_opts o = opts_for(f);
    return open_with(f, &o);
}

static void reopen(fx *f)
{
    store_close(f->s);
    f->s = NULL;
    open_default(f);
}

/* ---- reading through the pool -------------------------------------------- */

static int64_t query_int(store *s, const char *sql)
{
    store_conn *c = store_pool_get(s);
    assert_non_null(c);
    sqlite3_stmt *st = store_conn_stmt(c, sql);
    assert_non_null(st);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    store_pool_put(s, c);
    return v;
}

static void query_text(store *s, const char *sql, char *out, size_t outlen)
{
    store_conn *c = store_pool_get(s);
    assert_non_null(c);
    sqlite3_stmt *st = store_conn_stmt(c, sql);
    assert_non_null(st);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    snprintf(out, outlen, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_reset(st);
    store_pool_put(s, c);
}

static int64_t meta_count(store *s, const char *key)
{
    store_conn *c = store_pool_get(s);
    assert_non_null(c);
    sqlite3_stmt *st = store_conn_stmt(c, "SELECT count(*) FROM meta WHERE key = ?1");
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    store_pool_put(s, c);
    return n;
}

/* ---- write jobs ---------------------------------------------------------- */

/* Inserts meta(key, 'v'), then optionally `dup` too (a duplicate key makes the
 * job fail after its first insert), then optionally runs `then` ("ROLLBACK",
 * "COMMIT") to misbehave. */
typedef struct meta_job {
    const char *key, *dup, *then;
    int rc;
    sem_t *sem;
} meta_job;

static int insert_meta(store_conn *c, const char *key)
{
    sqlite3_stmt *st = store_conn_stmt(c, "INSERT INTO meta (key, value) VALUES (?1, 'v')");
    if (!st) return SQLITE_ERROR;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    return sqlite3_step(st);
}

static int meta_fn(store_conn *c, void *ctx)
{
    meta_job *j = ctx;
    int rc = insert_meta(c, j->key);
    if (rc == SQLITE_DONE && j->dup) rc = insert_meta(c, j->dup);
    if (rc == SQLITE_DONE && j->then) store_conn_exec(c, j->then);
    return rc;
}

static void meta_done(int rc, void *ctx)
{
    meta_job *j = ctx;
    j->rc = rc;
    sem_post(j->sem);
}

/* Holds the writer thread until the test opens it. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool entered, open;
} gate;

static void gate_init(gate *g)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->entered = g->open = false;
}

static int gate_fn(store_conn *c, void *ctx)
{
    (void)c;
    gate *g = ctx;
    pthread_mutex_lock(&g->mu);
    g->entered = true;
    pthread_cond_broadcast(&g->cv);
    while (!g->open) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    return SQLITE_OK;
}

static void gate_close(store *s, gate *g)
{
    gate_init(g);
    store_submit(s, gate_fn, NULL, g);
    pthread_mutex_lock(&g->mu);
    while (!g->entered) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* Queue the jobs behind a closed gate, so they run as one group. */
static void run_as_group(store *s, meta_job *jobs, int n)
{
    gate g;
    sem_t sem;
    sem_init(&sem, 0, 0);
    gate_close(s, &g);
    for (int i = 0; i < n; i++) {
        jobs[i].sem = &sem;
        jobs[i].rc = -1;
        store_submit(s, meta_fn, meta_done, &jobs[i]);
    }
    gate_open(&g);
    for (int i = 0; i < n; i++) sem_wait(&sem);
    sem_destroy(&sem);
}

static int create_t_fn(store_conn *c, void *ctx)
{
    (void)ctx;
    return store_conn_exec(c, "CREATE TABLE t (k INTEGER, i INTEGER)");
}

static int insert_t_fn(store_conn *c, void *ctx)
{
    sqlite3_stmt *st = store_conn_stmt(c, "INSERT INTO t (k, i) VALUES (?1, ?2)");
    if (!st) return SQLITE_ERROR;
    sqlite3_bind_int64(st, 1, (int64_t)(intptr_t)ctx);
    sqlite3_bind_int(st, 2, 0);
    return sqlite3_step(st);
}

/* ---- schema and open ----------------------------------------------------- */

static void test_fresh_open(void **state)
{
    fx *f = *state;
    store *s = open_default(f);
    char txt[64];
    assert_int_equal(query_int(s, "PRAGMA user_version"), store_schema_version);
    query_text(s, "PRAGMA journal_mode", txt, sizeof txt);
    assert_string_equal(txt, "wal");
    assert_int_equal(query_int(s, "PRAGMA foreign_keys"), 1);
    assert_int_equal(query_int(s, "PRAGMA cache_size"), -10240);
    assert_int_equal(query_int(s, "SELECT count(*) FROM personas"), 2);
    query_text(s, "SELECT name FROM personas ORDER BY seq LIMIT 1", txt, sizeof txt);
    assert_string_equal(txt, "Aria");
    query_text(s, "SELECT name FROM personas ORDER BY seq LIMIT 1 OFFSET 1", txt, sizeof txt);
    assert_string_equal(txt, "Kira");
    assert_int_equal(query_int(s, "SELECT count(*) FROM persona_interaction_states"), 2);
    assert_int_equal(query_int(s, "SELECT social_energy FROM persona_interaction_states s JOIN "
                                  "personas p ON p.id = s.persona_id WHERE p.name = 'Aria'"),
                     150);
}

static int writer_fk_fn(store_conn *c, void *ctx)
{
    sqlite3_stmt *st = store_conn_stmt(c, "PRAGMA foreign_keys");
    if (!st || sqlite3_step(st) != SQLITE_ROW) return SQLITE_ERROR;
    *(int *)ctx = sqlite3_column_int(st, 0);
    sqlite3_reset(st);
    return SQLITE_OK;
}

static int writer_sync_fn(store_conn *c, void *ctx)
{
    sqlite3_stmt *st = store_conn_stmt(c, "PRAGMA synchronous");
    if (!st || sqlite3_step(st) != SQLITE_ROW) return SQLITE_ERROR;
    *(int *)ctx = sqlite3_column_int(st, 0);
    sqlite3_reset(st);
    return SQLITE_OK;
}

/* A new file is created without syncs, but writes are acknowledged at
 * synchronous=NORMAL (1) on a new and on an existing database alike. */
static void test_writer_pragmas(void **state)
{
    fx *f = *state;
    store *s = open_default(f);
    int fk = -1, sync = -1;
    assert_int_equal(store_write(s, writer_fk_fn, &fk), SQLITE_OK);
    assert_int_equal(fk, 1);
    assert_int_equal(store_write(s, writer_sync_fn, &sync), SQLITE_OK);
    assert_int_equal(sync, 1);
    reopen(f);
    sync = -1;
    assert_int_equal(store_write(f->s, writer_sync_fn, &sync), SQLITE_OK);
    assert_int_equal(sync, 1);
}

static void test_reopen_does_not_reseed(void **state)
{
    fx *f = *state;
    store *s = open_default(f);
    char seeded[64], again[64], aria[64], aria2[64];
    query_text(s, "SELECT value FROM meta WHERE key = 'seeded_at'", seeded, sizeof seeded);
    query_text(s, "SELECT id FROM personas WHERE name = 'Aria'", aria, sizeof aria);
    reopen(f);
    s = f->s;
    assert_int_equal(query_int(s, "SELECT count(*) FROM personas"), 2);
    query_text(s, "SELECT value FROM meta WHERE key = 'seeded_at'", again, sizeof again);
    query_text(s, "SELECT id FROM personas WHERE name = 'Aria'", aria2, sizeof aria2);
    assert_string_equal(seeded, again);
    assert_string_equal(aria, aria2);
}

static int delete_kira_fn(store_conn *c, void *ctx)
{
    (void)ctx;
    return store_conn_exec(c, "DELETE FROM personas WHERE name = 'Kira'");
}

static void test_deleted_default_stays_deleted(void **state)
{
    fx *f = *state;
    store *s = open_default(f);
    assert_int_equal(store_write(s, delete_kira_fn, NULL), SQLITE_OK);
    /* foreign_keys=ON: the state row goes with the persona */
    assert_int_equal(query_int(s, "SELECT count(*) FROM persona_interaction_states"), 1);
    reopen(f);
    assert_int_equal(query_int(f->s, "SELECT count(*) FROM personas"), 1);
}

static void set_user_version(const char *path, int v)
{
    sqlite3 *db = NULL;
    char sql[64];
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v); /* test-only */
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static int get_user_version(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void test_newer_schema_refused(void **state)
{
    fx *f = *state;
    set_user_version(f->path, store_schema_version + 1);
    store_opts o = opts_for(f);
    char err[256] = "";
    assert_int_equal(store_open(&f->s, &o, err, sizeof err), -1);
    assert_null(f->s);
    assert_non_null(strstr(err, "schema version"));
    assert_non_null(strstr(err, "refusing"));
    assert_int_equal(get_user_version(f->path), store_schema_version + 1);
}

/* A version-4 database (FTS5 kept by per-row triggers) is migrated: its
 * index stays valid, deletes keep it consistent, and new rows are queued
 * for bulk indexing (schema v5, src/memory/mem_fts.c). */
static int exec_fn(store_conn *c, void *ctx)
{
    return sqlite3_exec(store_conn_db(c), ctx, NULL, NULL, NULL);
}

static void test_v4_fts_triggers_migrate(void **state)
{
    fx *f = *state;
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    for (int v = 0; v < 4; v++)
        assert_int_equal(sqlite3_exec(db, store_migrations[v], NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "PRAGMA user_version = 4;"
                                  "INSERT INTO memories (id, persona_id, content, content_hash,"
                                  " memory_type, importance, base_importance, created_at,"
                                  " embedding) VALUES ('m1', 'p', 'the lighthouse keeper', 1,"
                                  " 't', 0.5, 0.5, 0, x'0000803f'),"
                                  " ('m2', 'p', 'plum cake', 2, 't', 0.5, 0.5, 0, x'0000803f')",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    store *s = open_default(f);
    assert_int_equal(query_int(s, "PRAGMA user_version"), store_schema_version);
    assert_int_equal(query_int(s, "SELECT count(*) FROM memories_fts_pending"), 0);
    assert_int_equal(query_int(s, "SELECT count(*) FROM memories_fts WHERE memories_fts"
                                  " MATCH 'lighthouse'"),
                     1);
    assert_int_equal(store_write(s, exec_fn, "DELETE FROM memories WHERE id = 'm1'"), SQLITE_OK);
    assert_int_equal(query_int(s, "SELECT count(*) FROM memories_fts WHERE memories_fts"
                                  " MATCH 'lighthouse'"),
                     0);
    assert_int_equal(store_write(s, exec_fn,
                                 "INSERT INTO memories (id, persona_id, content, content_hash,"
                                 " memory_type, importance, base_importance, created_at,"
                                 " embedding) VALUES ('m3', 'p', 'dragon song', 3, 't', 0.5,"
                                 " 0.5, 0, x'0000803f')"),
                     SQLITE_OK);
    assert_int_equal(query_int(s, "SELECT count(*) FROM memories_fts_pending"), 1);
    assert_int_equal(store_write(s, exec_fn,
                                 "INSERT INTO memories_fts (memories_fts, rank)"
                                 " VALUES ('integrity-check', 0)"),
                     SQLITE_OK);
}

static void test_bad_options_refused(void **state)
{
    fx *f = *state;
    char err[256] = "";
    store_opts o = opts_for(f);
    o.pool_size = -1;
    assert_int_equal(store_open(&f->s, &o, err, sizeof err), -1);
    o = opts_for(f);
    o.max_batch = 0;
    assert_int_equal(store_open(&f->s, &o, err, sizeof err), -1);
    assert_non_null(strstr(err, "max_batch"));
    assert_null(f->s);
}

static void test_now_iso(void **state)
{
    (void)state;
    char t[40];
    int y, mo, d, h, mi, sec, us;
    store_now_iso(t);
    assert_int_equal(strlen(t), 32);
    assert_int_equal(sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d.%6d", &y, &mo, &d, &h, &mi, &sec, &us), 7);
    assert_true(y >= 2024 && mo >= 1 && mo <= 12 && us >= 0 && us < 1000000);
    assert_string_equal(t + 26, "+00:00");
}

/* ---- the schema image ---------------------------------------------------- */

/* Every row of `sql` on the database at `path`, columns joined by '|'. */
static void dump(const char *path, const char *sql, char *out, size_t outlen)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    size_t n = 0;
    out[0] = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        for (int i = 0; i < sqlite3_column_count(st); i++) {
            const char *v = (const char *)sqlite3_column_text(st, i);
            n += (size_t)snprintf(out + n, outlen - n, "%s|", v ? v : "NULL");
            assert_true(n < outlen);
        }
        n += (size_t)snprintf(out + n, outlen - n, "\n");
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* What the migrations define, apart from per-database values (UUIDs,
 * times) and where a table's pages happen to be (rootpage). */
static const char *const same_sql[] = {
    "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name",
    "PRAGMA user_version",
    "PRAGMA journal_mode",
    "PRAGMA page_size",
    "PRAGMA auto_vacuum",
    "PRAGMA encoding",
    "PRAGMA application_id",
    "SELECT seq, name, description, personality_traits, topic_preferences, charisma,"
    " intelligence, social_rank, length(id), length(created_at) FROM personas ORDER BY seq",
    "SELECT p.seq, s.interest_level, s.interaction_fatigue, s.current_priority,"
    " s.available_time, s.social_energy, s.cooldown_until, length(s.last_updated)"
    " FROM persona_interaction_states s JOIN personas p ON p.id = s.persona_id ORDER BY p.seq",
    "SELECT key, length(value) FROM meta ORDER BY key",
    "SELECT * FROM memories_fts_config ORDER BY k",
};

static void create_empty_file(const char *path)
{
    FILE *e = fopen(path, "wb");
    assert_non_null(e);
    fclose(e);
}

/* A new database is written from the image (byte for byte, but for the
 * patched values) and leaves nothing else behind; an empty file already
 * there is migrated as before. */
static void test_image_creates_new_database(void **state)
{
    fx *f = *state;
    store *s = open_default(f);
    FILE *db = fopen(f->path, "rb");
    assert_non_null(db);
    unsigned char *bytes = malloc(store_image_size + 1);
    assert_non_null(bytes);
    assert_int_equal(fread(bytes, 1, store_image_size + 1, db), store_image_size);
    fclose(db);
    size_t at = 0, differ = 0;
    for (int i = 0; i <= store_image_npatches; i++) {
        size_t end = i < store_image_npatches ? store_image_patches[i].offset : store_image_size;
        assert_memory_equal(bytes + at, store_image + at, end - at);
        if (i == store_image_npatches) break;
        size_t len = store_image_patches[i].what == STORE_IMAGE_TIME ? 32 : 36;
        differ += memcmp(bytes + end, store_image + end, len) != 0;
        at = end + len;
    }
    assert_int_equal(differ, store_image_npatches); /* every placeholder filled in */
    free(bytes);
    DIR *d = opendir(f->dir);
    assert_non_null(d);
    int files = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        files++;
        assert_true(strncmp(e->d_name, "test.db", 7) == 0);
    }
    closedir(d);
    assert_true(files <= 3); /* test.db, -wal, -shm */
    assert_int_equal(query_int(s, "SELECT count(*) FROM personas"), 2);

    create_empty_file(f->other);
    store *m = NULL;
    store_opts o = opts_for(f);
    o.path = f->other;
    char err[256];
    assert_int_equal(store_open(&m, &o, err, sizeof err), 0);
    struct stat st;
    assert_int_equal(stat(f->other, &st), 0);
    assert_true((size_t)st.st_size < store_image_size); /* migrated: all in the WAL */
    store_close(m);
}

/* The image gives the same schema, pragmas and seed as the migrations. */
static void test_image_matches_migrations(void **state)
{
    fx *f = *state;
    open_default(f);
    store_close(f->s);
    f->s = NULL;
    create_empty_file(f->other);
    store *m = NULL;
    store_opts o = opts_for(f);
    o.path = f->other;
    char err[256];
    assert_int_equal(store_open(&m, &o, err, sizeof err), 0);
    store_close(m);
    static char a[32768], b[32768];
    for (size_t i = 0; i < sizeof same_sql / sizeof same_sql[0]; i++) {
        dump(f->path, same_sql[i], a, sizeof a);
        dump(f->other, same_sql[i], b, sizeof b);
        assert_true(strlen(a) > 2);
        assert_string_equal(a, b);
    }
    dump(f->path, "PRAGMA integrity_check", a, sizeof a);
    assert_string_equal(a, "ok|\n");
    dump(f->path, "PRAGMA foreign_key_check", a, sizeof a);
    assert_string_equal(a, "");
    /* Per-database values: version-4 UUIDs, one creation time everywhere. */
    dump(f->path,
         "SELECT count(*) FROM personas WHERE length(id) = 36 AND id GLOB"
         " '[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]-*-4*-[89ab]*-*'"
         " AND id NOT GLOB '*[^0-9a-f-]*'",
         a, sizeof a);
    assert_string_equal(a, "2|\n");
    dump(f->path,
         "SELECT count(DISTINCT t) FROM (SELECT created_at AS t FROM personas UNION ALL"
         " SELECT last_updated FROM persona_interaction_states UNION ALL"
         " SELECT value FROM meta WHERE key = 'seeded_at')",
         a, sizeof a);
    assert_string_equal(a, "1|\n");
    char t[64], now[40];
    int y, mo, d, h, mi, sec, us;
    dump(f->path, "SELECT value FROM meta WHERE key = 'seeded_at'", t, sizeof t);
    store_now_iso(now);
    assert_int_equal(sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d.%6d", &y, &mo, &d, &h, &mi, &sec, &us), 7);
    assert_memory_equal(t, now, 10); /* today (UTC) */
    assert_string_equal(t + 26, "+00:00|\n");
}

/* Each new database gets its own persona UUIDs. */
static void test_image_ids_differ(void **state)
{
    fx *f = *state;
    open_default(f);
    store *m = NULL;
    store_opts o = opts_for(f);
    o.path = f->other;
    char err[256];
    assert_int_equal(store_open(&m, &o, err, sizeof err), 0);
    store_close(m);
    char a[256], b[256];
    query_text(f->s, "SELECT group_concat(id) FROM personas", a, sizeof a);
    dump(f->other, "SELECT group_concat(id) FROM personas", b, sizeof b);
    assert_int_equal(strlen(a), 73);
    assert_null(strstr(b, a));
    assert_null(strstr(a, "00000000-0000-4000"));
}

static int memory_fn(store_conn *c, void *ctx)
{
    static const char sql[] = "INSERT INTO memories (id, persona_id, content, content_hash,"
                              " memory_type, importance, base_importance, created_at, embedding)"
                              " VALUES (?1, 'aria', ?2, 0, 'fact', 0.5, 0.5, 0, x'00')";
    const char *const *v = ctx;
    sqlite3_stmt *st = store_conn_stmt(c, sql);
    if (!st) return SQLITE_ERROR;
    sqlite3_bind_text(st, 1, v[0], -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, v[1], -1, SQLITE_STATIC);
    return sqlite3_step(st);
}

/* FTS5 (its shadow tables come from the image) follows inserts, updates
 * and deletes through the triggers and the queue of schema v5, and passes
 * its own integrity check. */
/* What src/memory/mem_fts.c runs: index the queued rows, empty the queue. */
static int fts_flush_fn(store_conn *c, void *ctx)
{
    (void)ctx;
    int rc = store_conn_exec(c, store_fts_index_pending);
    return rc == SQLITE_OK ? store_conn_exec(c, store_fts_clear_pending) : rc;
}

static void test_image_fts_works(void **state)
{
    fx *f = *state;
    store *s = open_default(f);
    const char *m1[] = {"m1", "the bard sang of dragons"};
    const char *m2[] = {"m2", "the scholar read about dragons"};
    assert_int_equal(store_write(s, memory_fn, m1), SQLITE_OK);
    assert_int_equal(store_write(s, memory_fn, m2), SQLITE_OK);
    assert_int_equal(query_int(s, "SELECT count(*) FROM memories_fts_pending"), 2);
    assert_int_equal(store_write(s, fts_flush_fn, NULL), SQLITE_OK);
    assert_int_equal(query_int(s, "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH "
                                  "'dragons'"),
                     2);
    assert_int_equal(store_write(s, exec_fn,
                                 "UPDATE memories SET content = 'a quiet song' WHERE id = 'm1';"
                                 "DELETE FROM memories WHERE id = 'm2'"),
                     SQLITE_OK);
    assert_int_equal(query_int(s, "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH "
                                  "'dragons'"),
                     0);
    assert_int_equal(store_write(s, fts_flush_fn, NULL), SQLITE_OK);
    assert_int_equal(query_int(s, "SELECT rowid FROM memories_fts WHERE memories_fts MATCH "
                                  "'quiet'"),
                     query_int(s, "SELECT seq FROM memories WHERE id = 'm1'"));
    assert_int_equal(store_write(s, exec_fn,
                                 "INSERT INTO memories_fts (memories_fts, rank) VALUES"
                                 " ('integrity-check', 1)"),
                     SQLITE_OK);
}

/* A creation killed at any moment leaves no file, or a whole database
 * that opens with its seed; never a partial one. */
static void test_image_killed_creation(void **state)
{
    fx *f = *state;
    srand(12345);
    for (int i = 0; i < 40; i++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            store *c = NULL;
            store_opts o = opts_for(f);
            char err[256];
            _exit(store_open(&c, &o, err, sizeof err) == 0 ? 0 : 1);
        }
        struct timespec ts = {0, (long)(rand() % 1500) * 1000};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        open_default(f);
        assert_int_equal(query_int(f->s, "SELECT count(*) FROM personas"), 2);
        assert_int_equal(query_int(f->s, "SELECT count(*) FROM sqlite_master WHERE name ="
                                         " 'memories_fts_data'"),
                         1);
        store_close(f->s);
        f->s = NULL;
        unlink_db(f->path);
    }
}

/* ---- writer -------------------------------------------------------------- */

static void test_write_commits(void **state)
{
    fx *f = *state;
    store *s = open_default(f);
    meta_job j = {.key = "k1"};
    assert_int_equal(store_write(s, meta_fn, &j), SQLITE_OK); /* job's DONE reported as OK */
    assert_int_equal(meta_count(s, "k1"), 1);
    store_stats st;
    store_get_stats(s, &st);
    assert_true(st.writes >= 1 && st.commits >= 1);
    assert_int_equal(st.write_errors, 0);
}

static void test_failing_job_rolls_back_alone(void **state)
{
    fx *f = *state;
    store *s = open_default(f);
    meta_job jobs[3] = {{.key = "a"}, {.key = "b1", .dup = "a"}, {.key = "c"}};
    run_as_group(s, jobs, 3);
    assert_int_equal(jobs[0].rc, SQLITE_OK);
    assert_int_equal(jobs[1].rc, SQLITE_CONSTRAINT);
    assert_int_equal(jobs[2].rc, SQLITE_OK);
    assert_int_equal(meta_count(s, "a"), 1);
    assert_int_equal(meta_count(s, "b1"), 0);
    assert_int_equal(meta_count(s, "c"), 1);
    store_stats st;
    store_get_stats(s, &st);
    assert_true(st.batch_le[1] < st.batch_le[2]); /* one group of 3 or 4 */
    assert_int_equal(st.write_errors, 1);
}

static void test_job_rolling_back_group(void **state)
{
    fx *f = *state;
    store *s = open_default(f);
    meta_job jobs[3] = {{.key = "ra"}, {.key = "rb", .then = "ROLLBACK"}, {.key = "rc"}};
    run_as_group(s, jobs, 3);
    assert_int_equal(jobs[0].rc, SQLITE_OK);
    assert_int_equal(jobs[1].rc, SQLITE_ABORT);
    assert_int_equal(jobs[2].rc, SQLITE_OK);
    assert_int_equal(meta_count(s, "ra"), 1); /* run again after the rollback */
    assert_int_equal(meta_count(s, "rb"), 0);
    assert_int_equal(meta_count(s, "rc"), 1);
}

static void test_job_committing_group(void **state)
{
    fx *f = *state;
    store *s = open_default(f);
    meta_job jobs[3] = {{.key = "ca"}, {.key = "cb", .then = "COMMIT"}, {.key = "cc"}};
    run_as_group(s, jobs, 3);
    /* "ca" must not be run twice (it would fail as a duplicate) */
    for (int i = 0; i < 3; i++) assert_int_equal(jobs[i].rc, SQLITE_OK);
    assert_int_equal(meta_count(s, "ca"), 1);
    assert_int_equal(meta_count(s, "cb"), 1);
    assert_int_equal(meta_count(s, "cc"), 1);
}

typedef struct writer_thread {
    store *s;
    int k, n, failures;
} writer_thread;

static void *writer_thread_main(void *arg)
{
    writer_thread *t = arg;
    for (int i = 0; i < t->n; i++) {
        if (store_write(t->s, insert_t_fn, (void *)(intptr_t)t->k) != SQLITE_OK) t->failures++;
    }
    return NULL;
}

static void test_concurrent_writes(void **state)
{
    fx *f = *state;
    store *s = open_default(f);
    assert_int_equal(store_write(s, create_t_fn, NULL), SQLITE_OK);
    enum { THREADS = 8, EACH = 500 };
    pthread_t th[THREADS];
    writer_thread wt[THREADS];
    for (int i = 0; i < THREADS; i++) {
        wt[i] = (writer_thread){.s = s, .k = i, .n = EACH};
        pthread_create(&th[i], NULL, writer_thread_main, &wt[i]);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < THREADS; i++) assert_int_equal(wt[i].failures, 0);
    assert_int_equal(query_int(s, "SELECT count(*) FROM t"), THREADS * EACH);
    assert_int_equal(query_int(s, "SELECT count(*) FROM t WHERE k = 7"), EACH);
    store_stats st;
    store_get_stats(s, &st);
    uint64_t groups = st.batch_le[STORE_BATCH_BUCKETS - 1];
    assert_true(st.writes >= THREADS * EACH);
    assert_true(groups - st.batch_le[0] > 0); /* some group had more than one job */
    assert_true(st.commits < st.writes);
    assert_int_equal(st.batch_sum, st.writes);
    assert_int_equal(st.queue_depth, 0);
}

typedef struct done_probe {
    const char *path;
    pthread_t test_thread;
    int visible, other_thread, nested_rc;
    store *s;
    sem_t sem;
} done_probe;

static int probe_insert_fn(store_conn *c, void *ctx)
{
    (void)ctx;
    return insert_meta(c, "probe");
}

/* Runs on the writer thread: the row must already be visible to a separate
 * connection, i.e. committed. */
static void probe_done(int rc, void *ctx)
{
    done_probe *p = ctx;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    p->other_thread = !pthread_equal(pthread_self(), p->test_thread);
    if (rc == SQLITE_OK && sqlite3_open_v2(p->path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT count(*) FROM meta WHERE key = 'probe'", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        p->visible = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    p->nested_rc = store_write(p->s, probe_insert_fn, NULL); /* would deadlock */
    sem_post(&p->sem);
}

static void test_submit_done_after_commit(void **state)
{
    fx *f = *state;
    store *s = open_default(f);
    done_probe p = {.path = f->path, .test_thread = pthread_self(), .s = s, .visible = -1};
    sem_init(&p.sem, 0, 0);
    store_submit(s, probe_insert_fn, probe_done, &p);
    sem_wait(&p.sem);
    sem_destroy(&p.sem);
    assert_int_equal(p.visible, 1);
    assert_true(p.other_thread);
    assert_int_equal(p.nested_rc, SQLITE_MISUSE);
}

static atomic_int g_done_count;

static void count_done(int rc, void *ctx)
{
    (void)ctx;
    if (rc == SQLITE_OK) atomic_fetch_add(&g_done_count, 1);
}

static void test_close_drains_queue(void **state)
{
    fx *f = *state;
    store *s = open_default(f);
    assert_int_equal(store_write(s, create_t_fn, NULL), SQLITE_OK);
    atomic_store(&g_done_count, 0);
    for (intptr_t i = 0; i < 1000; i++) store_submit(s, insert_t_fn, count_done, (void *)i);
    store_close(s);
    f->s = NULL;
    assert_int_equal(atomic_load(&g_done_count), 1000);
    open_default(f);
    assert_int_equal(query_int(f->s, "SELECT count(*) FROM t"), 1000);
    assert_int_equal(query_int(f->s, "SELECT count(DISTINCT k) FROM t"), 1000);
}

static uint64_t commits_of(store *s)
{
    store_stats st;
    store_get_stats(s, &st);
    return st.commits;
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Announced writes arriving one by one share a commit; a write nobody
 * announced does not wait for anything. */
static void test_announced_writes_share_a_commit(void **state)
{
    fx *f = *state;
    store_opts o = opts_for(f);
    o.commit_wait_us = 200000; /* generous: a slow CI machine still groups */
    store *s = open_with(f, &o);
    assert_int_equal(store_write(s, create_t_fn, NULL), SQLITE_OK);
    atomic_store(&g_done_count, 0);
    uint64_t before = commits_of(s);
    for (int i = 0; i < 3; i++) store_expect(s);
    for (intptr_t i = 0; i < 3; i++) {
        store_submit_expected(s, insert_t_fn, count_done, (void *)i);
        usleep(2000); /* the next one is still being "prepared" */
    }
    while (atomic_load(&g_done_count) < 3) usleep(200);
    assert_int_equal(commits_of(s) - before, 1);
    /* an abandoned announcement releases the writer too */
    store_expect(s);
    store_expect(s);
    uint64_t t0 = mono_us();
    store_submit_expected(s, insert_t_fn, count_done, (void *)3);
    store_unexpect(s);
    while (atomic_load(&g_done_count) < 4) usleep(200);
    assert_true(mono_us() - t0 < 150000);
    /* nothing announced: no wait */
    t0 = mono_us();
    assert_int_equal(store_write(s, insert_t_fn, (void *)4), SQLITE_OK);
    assert_true(mono_us() - t0 < 150000);
    assert_int_equal(query_int(s, "SELECT count(*) FROM t"), 5);
}

/* ---- pool ---------------------------------------------------------------- */

static void test_pool_hits(void **state)
{
    fx *f = *state;
    store *s = open_default(f);
    for (int i = 0; i < 10; i++) store_pool_put(s, store_pool_get(s));
    store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.pool_size, 5);
    assert_int_equal(st.pool_overflow, 10);
    assert_int_equal(st.checkouts, 10);
    assert_int_equal(st.hits, 9);
    assert_int_equal(st.misses, 1); /* a new database: none opened at start */
    assert_int_equal(st.waits, 0);
    assert_int_equal(st.conns_open, 1);
    assert_int_equal(st.conns_idle, 1);
    assert_int_equal(st.conns_in_use, 0);
    reopen(f); /* an existing database: one opened at start, the rest on demand */
    store_get_stats(f->s, &st);
    assert_int_equal(st.conns_open, 1);
    for (int i = 0; i < 10; i++) store_pool_put(f->s, store_pool_get(f->s));
    store_get_stats(f->s, &st);
    assert_int_equal(st.hits, 10);
    assert_int_equal(st.misses, 0);
    assert_int_equal(st.conns_open, 1);
}

/* Readers open on demand and are then kept (pool_size). */
static void test_pool_opens_on_demand_then_keeps(void **state)
{
    fx *f = *state;
    store *s = open_default(f);
    store_conn *c[5];
    for (int i = 0; i < 5; i++) assert_non_null(c[i] = store_pool_get(s));
    for (int i = 0; i < 5; i++) store_pool_put(s, c[i]);
    store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.hits, 0);
    assert_int_equal(st.misses, 5);
    assert_int_equal(st.conns_open, 5);
    for (int i = 0; i < 5; i++) assert_non_null(c[i] = store_pool_get(s));
    for (int i = 0; i < 5; i++) store_pool_put(s, c[i]);
    store_get_stats(s, &st);
    assert_int_equal(st.hits, 5);
    assert_int_equal(st.misses, 5);
    assert_int_equal(st.conns_open, 5);
}

typedef struct waiter {
    store *s;
    store_conn *got;
} waiter;

static void *waiter_main(void *arg)
{
    waiter *w = arg;
    w->got = store_pool_get(w->s);
    return NULL;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_pool_overflow_wait_timeout(void **state)
{
    fx *f = *state;
    store_opts o = opts_for(f);
    o.pool_wait_ms = 200;
    store *s = open_with(f, &o);
    store_conn *c[15];
    for (int i = 0; i < 15; i++) assert_non_null(c[i] = store_pool_get(s));
    store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.conns_open, 15);
    assert_int_equal(st.conns_in_use, 15);
    assert_int_equal(st.hits, 0);
    assert_int_equal(st.misses, 15);

    assert_null(store_pool_get(s)); /* the 16th */
    store_get_stats(s, &st);
    assert_int_equal(st.waits, 1);
    assert_int_equal(st.wait_timeouts, 1);
    assert_true(st.wait_ns_total >= 190000000u);

    /* a waiter is woken by a put (no deadlock returning an overflow conn) */
    waiter w = {.s = s};
    pthread_t th;
    pthread_create(&th, NULL, waiter_main, &w);
    sleep_ms(50);
    store_pool_put(s, c[14]);
    pthread_join(th, NULL);
    assert_ptr_equal(w.got, c[14]);
    c[14] = w.got;
    store_get_stats(s, &st);
    assert_int_equal(st.waits, 2);
    assert_int_equal(st.wait_timeouts, 1);
    for (int i = 0; i < 15; i++) store_pool_put(s, c[i]);
    store_get_stats(s, &st);
    assert_int_equal(st.conns_idle, 15);
}

static void test_pool_idle_overflow_closed(void **state)
{
    fx *f = *state;
    store_opts o = opts_for(f);
    o.pool_idle_secs = 1;
    store *s = open_with(f, &o);
    store_conn *c[8];
    for (int i = 0; i < 8; i++) c[i] = store_pool_get(s);
    for (int i = 0; i < 8; i++) store_pool_put(s, c[i]);
    store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.conns_open, 8);
    assert_int_equal(st.idle_closed, 0);
    sleep_ms(1100);
    store_pool_put(s, store_pool_get(s));
    store_get_stats(s, &st);
    assert_int_equal(st.conns_open, 5); /* never below pool_size */
    assert_int_equal(st.idle_closed, 3);
}

static void test_pool_rolls_back_open_transaction(void **state)
{
    fx *f = *state;
    store *s = open_default(f);
    store_conn *c = store_pool_get(s);
    sqlite3 *db = store_conn_db(c);
    assert_int_equal(store_conn_exec(c, "BEGIN"), SQLITE_OK);
    sqlite3_stmt *q = store_conn_stmt(c, "SELECT name FROM personas ORDER BY seq");
    assert_int_equal(sqlite3_step(q), SQLITE_ROW); /* left mid-step */
    assert_int_equal(sqlite3_get_autocommit(db), 0);
    store_pool_put(s, c);
    store_conn *again = store_pool_get(s);
    assert_ptr_equal(again, c); /* LIFO */
    assert_int_equal(sqlite3_get_autocommit(db), 1);
    assert_false(sqlite3_stmt_busy(q));
    store_pool_put(s, again);
    store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.validations_failed, 0);
    assert_int_equal(st.conns_open, 1);
}

static void test_pool_drops_broken_connection(void **state)
{
    fx *f = *state;
    store *s = open_default(f);
    char garbage[160];
    snprintf(garbage, sizeof garbage, "%s/garbage", f->dir);
    FILE *g = fopen(garbage, "wb");
    assert_non_null(g);
    for (int i = 0; i < 4096; i++) fputc(0x5a, g);
    fclose(g);

    store_conn *c = store_pool_get(s);
    sqlite3_stmt *at = NULL, *q = NULL;
    sqlite3 *db = store_conn_db(c);
    assert_int_equal(sqlite3_prepare_v2(db, "ATTACH ?1 AS g", -1, &at, NULL), SQLITE_OK);
    sqlite3_bind_text(at, 1, garbage, -1, SQLITE_STATIC);
    int rc = sqlite3_step(at);
    sqlite3_finalize(at);
    if (rc == SQLITE_DONE) {
        assert_int_equal(
            sqlite3_prepare_v2(db, "SELECT count(*) FROM g.sqlite_master", -1, &q, NULL),
            SQLITE_NOTADB);
        sqlite3_finalize(q);
    } else {
        assert_int_equal(rc & 0xff, SQLITE_NOTADB);
    }
    store_pool_put(s, c);
    store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.validations_failed, 1);
    assert_int_equal(st.conns_open, 0);
    /* the pool still serves (an idle one), and refills on demand */
    assert_int_equal(query_int(s, "SELECT count(*) FROM personas"), 2);
}

static void test_conn_stmt_cache(void **state)
{
    fx *f = *state;
    store *s = open_default(f);
    store_conn *c = store_pool_get(s);
    static const char q[] = "SELECT ?1";
    sqlite3_stmt *a = store_conn_stmt(c, q);
    assert_non_null(a);
    sqlite3_bind_int(a, 1, 7);
    assert_int_equal(sqlite3_step(a), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(a, 0), 7);
    sqlite3_stmt *b = store_conn_stmt(c, q);
    assert_ptr_equal(a, b);
    assert_false(sqlite3_stmt_busy(b));
    assert_int_equal(sqlite3_step(b), SQLITE_ROW);
    assert_int_equal(sqlite3_column_type(b, 0), SQLITE_NULL); /* bindings cleared */
    /* each of these logs its error */
    assert_null(store_conn_stmt(c, "SELEKT nonsense"));
    assert_null(store_conn_stmt(c, "SELECT 1; SELECT 2"));
    assert_null(store_conn_stmt(c, "  "));
    assert_non_null(store_conn_stmt(c, "SELECT 3;\n"));
    store_pool_put(s, c);
}

static void test_conn_stmt_cache_eviction(void **state)
{
    fx *f = *state;
    store *s = open_default(f);
    store_conn *c = store_pool_get(s);
    static char sql[80][32]; /* stable, distinct keys: more than the cache holds */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 80; i++) {
            snprintf(sql[i], sizeof sql[i], "SELECT %d", i);
            sqlite3_stmt *st = store_conn_stmt(c, sql[i]);
            assert_non_null(st);
            assert_int_equal(sqlite3_step(st), SQLITE_ROW);
            assert_int_equal(sqlite3_column_int(st, 0), i);
        }
    }
    store_pool_put(s, c);
}

typedef struct pool_thread {
    store *s;
    int n, nulls;
} pool_thread;

static void *pool_thread_main(void *arg)
{
    pool_thread *t = arg;
    for (int i = 0; i < t->n; i++) {
        store_conn *c = store_pool_get(t->s);
        if (!c) {
            t->nulls++;
            continue;
        }
        sqlite3_stmt *st = store_conn_stmt(c, "SELECT count(*) FROM personas");
        if (!st || sqlite3_step(st) != SQLITE_ROW || sqlite3_column_int(st, 0) < 2) t->nulls++;
        store_pool_put(t->s, c);
    }
    return NULL;
}

static void test_pool_contention(void **state)
{
    fx *f = *state;
    store_opts o = opts_for(f);
    o.pool_size = 2;
    o.pool_overflow = 1;
    o.pool_idle_secs = 0; /* overflow closed as soon as it is idle: churn */
    store *s = open_with(f, &o);
    enum { THREADS = 4, EACH = 2000 };
    pthread_t th[THREADS];
    pool_thread pt[THREADS];
    for (int i = 0; i < THREADS; i++) {
        pt[i] = (pool_thread){.s = s, .n = EACH};
        pthread_create(&th[i], NULL, pool_thread_main, &pt[i]);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < THREADS; i++) assert_int_equal(pt[i].nulls, 0);
    store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.checkouts, THREADS * EACH);
    assert_int_equal(st.hits + st.misses, THREADS * EACH);
    assert_int_equal(st.wait_timeouts, 0);
    assert_true(st.conns_open >= 2 && st.conns_open <= 3);
    assert_int_equal(st.conns_in_use, 0);
}

int main(void)
{
    log_set_level(LOG_ERROR);
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        T(test_fresh_open),
        T(test_writer_pragmas),
        T(test_reopen_does_not_reseed),
        T(test_deleted_default_stays_deleted),
        T(test_newer_schema_refused),
        T(test_v4_fts_triggers_migrate),
        T(test_bad_options_refused),
        T(test_now_iso),
        T(test_image_creates_new_database),
        T(test_image_matches_migrations),
        T(test_image_ids_differ),
        T(test_image_fts_works),
        T(test_image_killed_creation),
        T(test_write_commits),
        T(test_failing_job_rolls_back_alone),
        T(test_job_rolling_back_group),
        T(test_job_committing_group),
        T(test_concurrent_writes),
        T(test_submit_done_after_commit),
        T(test_close_drains_queue),
        T(test_announced_writes_share_a_commit),
        T(test_pool_opens_on_demand_then_keeps),
        T(test_pool_hits),
        T(test_pool_overflow_wait_timeout),
        T(test_pool_idle_overflow_closed),
        T(test_pool_rolls_back_open_transaction),
        T(test_pool_drops_broken_connection),
        T(test_conn_stmt_cache),
        T(test_conn_stmt_cache_eviction),
        T(test_pool_contention),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
