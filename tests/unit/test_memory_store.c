/*
 * test_memory_store.c - the memory module against a real store: search hits
 * counted in RAM and written in batches (src/memory/mem_access.c), and
 * collections kept in seq order when commits are applied out of order
 * (src/memory/mem_coll.c), and the scan of a large collection shared with
 * the helper thread (src/memory/mem_split.c) answering like the float32 scan,
 * full-text indexing deferred to bulk flushes (src/memory/mem_fts.c), and
 * duplicates found without a hash index (src/memory/mem_dedup.c).
 *
 * A real store on a temporary file and a real mem_store with a flush
 * interval of an hour, so nothing is written by the timer during a test:
 * every write seen here comes from an explicit flush, a flush before
 * pruning reads access data, or mem_close. The database is checked with a
 * separate SQLite connection.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/json.h"
#include "lib/util.h"
#include "memory/mem_embed.h"
#include "memory/mem_internal.h"
#include "memory/mem_scan.h"
#include "memory/memory.h"
#include "store/store.h"

typedef struct fx {
    char dir[64];
    char path[128];
    store *st;
    mem_store *m;
} fx;

static void open_mem(fx *f)
{
    mem_config c;
    mem_config_default(&c);
    c.access_flush_ms = 3600 * 1000;
    char err[256];
    assert_int_equal(mem_open(&f->m, f->st, &c, err, sizeof err), 0);
}

static int fx_setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/pmcp-access-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->path, sizeof f->path, "%s/personas.db", f->dir);
    store_opts o;
    store_opts_default(&o);
    o.path = f->path;
    char err[256];
    if (store_open(&f->st, &o, err, sizeof err) != 0) return -1;
    open_mem(f);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    fx *f = *state;
    mem_close(f->m);
    store_close(f->st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd) != 0) return -1;
    free(f);
    return 0;
}

/* A plain private memory of a persona. */
static mem_item item_for(const char *persona, const char *text)
{
    return (mem_item){.persona_id = persona,
                      .content = text,
                      .memory_type = "user_input",
                      .importance = 0.5,
                      .related_json = "[]",
                      .visibility = "private",
                      .metadata_json = "{}"};
}

/* Store text for a persona; returns whether it was a duplicate, its id. */
static bool add_for(fx *f, const char *persona, const char *text, char id[40])
{
    mem_item it = item_for(persona, text);
    mem_added out;
    mem_err e;
    assert_int_equal(mem_add(f->m, &it, 1, &out, &e), 0);
    snprintf(id, 40, "%s", out.id);
    return out.duplicate;
}

static void add(fx *f, const char *text, char id[40])
{
    add_for(f, "aria", text, id);
}

/* Run a query; returns the number of hits. */
static size_t run_query(fx *f, const mem_query *q)
{
    jarena a;
    jarena_init(&a);
    mem_row *rows;
    size_t n = 0;
    mem_err e;
    assert_int_equal(mem_search(f->m, q, &a, &rows, &n, &e), 0);
    jarena_free(&a);
    return n;
}

/* Search aria's memories for text; returns the number of hits. */
static size_t search(fx *f, const char *text, size_t k)
{
    mem_query q = {.persona_id = "aria", .text = text, .k = k, .record_access = true};
    return run_query(f, &q);
}

/* accessed_count of a memory as SQLite has it; last_accessed set? */
static long long db_count(fx *f, const char *id, int *has_last)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT accessed_count, last_accessed IS NOT NULL"
                                        " FROM memories WHERE id = ?",
                                        -1, &q, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    long long n = sqlite3_column_int64(q, 0);
    if (has_last) *has_last = sqlite3_column_int(q, 1);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return n;
}

static void test_hits_wait_in_ram_until_flushed(void **state)
{
    fx *f = *state;
    char a[40], b[40];
    add(f, "the lighthouse keeper sings at dawn", a);
    add(f, "a recipe for plum cake with cinnamon", b);
    assert_int_equal(search(f, "lighthouse", 2), 2);
    assert_int_equal(search(f, "plum cake", 2), 2);
    assert_int_equal(search(f, "dawn", 1), 1);
    int has_last = -1;
    assert_int_equal(db_count(f, a, &has_last), 0); /* nothing written per search */
    assert_int_equal(has_last, 0);
    mem_access_flush(f->m);
    long long ca = db_count(f, a, &has_last), cb = db_count(f, b, NULL);
    assert_int_equal(has_last, 1);
    assert_int_equal(ca + cb, 5); /* every hit counted once, summed per row */
    assert_true(ca >= 2 && cb >= 2);
    mem_access_flush(f->m); /* nothing waiting: no change */
    assert_int_equal(db_count(f, a, NULL), ca);
}

static void test_close_flushes(void **state)
{
    fx *f = *state;
    char a[40];
    add(f, "the lighthouse keeper sings at dawn", a);
    for (int i = 0; i < 7; i++) assert_int_equal(search(f, "lighthouse", 1), 1);
    assert_int_equal(db_count(f, a, NULL), 0);
    mem_close(f->m);
    assert_int_equal(db_count(f, a, NULL), 7);
    open_mem(f); /* for the teardown */
}

static void test_prune_sees_accesses(void **state)
{
    fx *f = *state;
    char a[40];
    add(f, "the lighthouse keeper sings at dawn", a);
    for (int i = 0; i < 3; i++) search(f, "lighthouse", 1);
    mem_prune_result r;
    mem_err e;
    assert_int_equal(mem_prune(f->m, "aria", true, true, &r, &e), 0); /* dry run */
    assert_int_equal(db_count(f, a, NULL), 3);
}

/* A rowid freed by a delete and taken by a newer row must not inherit the
 * deleted row's waiting hits. */
static void test_reused_rowid_does_not_inherit(void **state)
{
    fx *f = *state;
    char a[40], b[40];
    add(f, "the lighthouse keeper sings at dawn", a);
    assert_int_equal(search(f, "lighthouse", 1), 1);
    mem_err e;
    char pid[64];
    assert_int_equal(mem_delete(f->m, a, pid, sizeof pid, &e), 0);
    usleep(2000); /* created_at strictly after the access */
    add(f, "a recipe for plum cake with cinnamon", b);
    mem_access_flush(f->m);
    assert_int_equal(db_count(f, b, NULL), 0);
}

static void test_many_rows_grow_the_table(void **state)
{
    fx *f = *state;
    enum { N = 600 };
    char first[40];
    for (int i = 0; i < N; i++) {
        char text[64], id[40];
        snprintf(text, sizeof text, "memory number %d about topic %d", i, i % 17);
        add(f, text, i ? id : first);
    }
    assert_int_equal(search(f, "memory number topic", N), N);
    mem_access_flush(f->m);
    assert_int_equal(db_count(f, first, NULL), 1);
}

/* Stores committed in one group reach the collection in any order; each
 * row still lands at its seq's place, once. */
static void test_out_of_order_applies_keep_seq_order(void **state)
{
    fx *f = *state;
    char a[40];
    add(f, "the lighthouse keeper sings at dawn", a);
    assert_int_equal(search(f, "lighthouse", 1), 1); /* loads the collection */
    mem_coll *c = coll_get(f->m, "aria");
    float v[384];
    for (int i = 0; i < 384; i++) v[i] = i == 0 ? 1.0f : 0.0f;
    static const int64_t order[] = {40, 20, 30, 10, 30, 50, 20};
    for (size_t i = 0; i < sizeof order / sizeof *order; i++) {
        v[1] = (float)order[i];
        coll_apply_insert(f->m, c, order[i], v, 384, c->model, 0.5, "user_input", 0, 1.0);
    }
    mem_err e;
    assert_int_equal(coll_acquire(f->m, c, &e), 0);
    static const int64_t want[] = {1, 10, 20, 30, 40, 50};
    assert_int_equal(c->n, 6);
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(c->seq[i], want[i]);
        if (i) assert_true(c->vecs[i * 384 + 1] == (float)want[i]); /* its own vector */
    }
    assert_int_equal(c->max_seq, 50);
    coll_release(c);
}

/* ---- a large collection: the scan shared with the helper thread -------------- */

enum { BIG_N = 6000, BIG_DIM = 384, BIG_K = 10 };

static uint64_t g_rnd = 0x9e3779b97f4a7c15ull;

static float rnd_gauss(void)
{
    g_rnd ^= g_rnd << 13, g_rnd ^= g_rnd >> 7, g_rnd ^= g_rnd << 17;
    double u = ((double)(g_rnd >> 11) + 0.5) / 9007199254740992.0;
    g_rnd ^= g_rnd << 13, g_rnd ^= g_rnd >> 7, g_rnd ^= g_rnd << 17;
    double v = ((double)(g_rnd >> 11) + 0.5) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

typedef struct big_query {
    fx *f;
    float q[BIG_DIM];
    int64_t got[BIG_K], want[BIG_K];
    size_t ngot;
} big_query;

static void *big_search(void *arg)
{
    big_query *b = arg;
    mem_query q = {.persona_id = "aria",
                   .embedding = b->q,
                   .embedding_dim = BIG_DIM,
                   .k = BIG_K,
                   .record_access = false};
    jarena a;
    jarena_init(&a);
    mem_row *rows;
    mem_err e;
    if (mem_search(b->f->m, &q, &a, &rows, &b->ngot, &e) == 0)
        for (size_t i = 0; i < b->ngot; i++) b->got[i] = rows[i].seq;
    jarena_free(&a);
    return NULL;
}

/* The answer of the float32 scan over the collection's own rows. */
static void big_expect(fx *f, big_query *b)
{
    mem_coll *c = coll_get(f->m, "aria");
    mem_err e;
    assert_int_equal(coll_acquire(f->m, c, &e), 0);
    float qn[BIG_DIM];
    memcpy(qn, b->q, sizeof qn);
    mem_normalize(qn, BIG_DIM);
    mem_hit hits[BIG_K];
    size_t h = mem_topk(c->vecs, c->n, c->dim, qn, NULL, BIG_K, hits);
    assert_int_equal(h, BIG_K);
    for (size_t i = 0; i < h; i++) b->want[i] = c->seq[hits[i].row];
    coll_release(c);
}

/* Searches of a collection large enough to share its scan, two at a time
 * (one gets the helper, the other scans alone), answer exactly as the
 * float32 scan does. */
static void test_large_scan_shared_with_helper(void **state)
{
    fx *f = *state;
    mem_item *items = calloc(BIG_N, sizeof *items);
    float *vecs = malloc(sizeof(float) * BIG_N * BIG_DIM);
    char(*texts)[32] = malloc(32 * (size_t)BIG_N);
    for (int i = 0; i < BIG_N; i++) {
        for (int d = 0; d < BIG_DIM; d++) vecs[(size_t)i * BIG_DIM + d] = rnd_gauss();
        snprintf(texts[i], 32, "large collection row %d", i);
        items[i] = (mem_item){.persona_id = "aria",
                              .content = texts[i],
                              .memory_type = "user_input",
                              .importance = 0.5,
                              .related_json = "[]",
                              .visibility = "private",
                              .metadata_json = "{}",
                              .embedding = vecs + (size_t)i * BIG_DIM,
                              .embedding_dim = BIG_DIM};
    }
    mem_added *out = calloc(BIG_N, sizeof *out);
    mem_err e;
    assert_int_equal(mem_add(f->m, items, BIG_N, out, &e), 0);
    for (int round = 0; round < 10; round++) {
        big_query b[2] = {{.f = f}, {.f = f}};
        for (int t = 0; t < 2; t++)
            for (int d = 0; d < BIG_DIM; d++) b[t].q[d] = rnd_gauss();
        pthread_t th;
        pthread_create(&th, NULL, big_search, &b[1]);
        big_search(&b[0]);
        pthread_join(th, NULL);
        for (int t = 0; t < 2; t++) {
            big_expect(f, &b[t]);
            assert_int_equal(b[t].ngot, BIG_K);
            for (int i = 0; i < BIG_K; i++) assert_int_equal(b[t].got[i], b[t].want[i]);
        }
    }
    free(items), free(vecs), free(texts), free(out);
}

/* ---- deferred full-text indexing (src/memory/mem_fts.c, schema v5) -------- */

/* One integer from a query on a separate connection. */
static long long db_int(fx *f, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    long long v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

static long long pending(fx *f)
{
    return db_int(f, "SELECT count(*) FROM memories_fts_pending");
}

static long long matches(fx *f, const char *word)
{
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH '%s'",
             word);
    return db_int(f, sql);
}

/* FTS5's own check of the index against the memories table. */
static void assert_fts_consistent(fx *f)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    int rc = sqlite3_exec(db,
                          "INSERT INTO memories_fts (memories_fts, rank)"
                          " VALUES ('integrity-check', 1)",
                          NULL, NULL, NULL);
    if (rc != SQLITE_OK) fail_msg("FTS integrity-check: %s", sqlite3_errmsg(db));
    sqlite3_close(db);
}

static void patch_content(fx *f, const char *id, const char *text)
{
    mem_patch p = {.content = text};
    mem_err e;
    char pid[64];
    assert_int_equal(mem_update(f->m, id, &p, pid, sizeof pid, &e), 0);
}

static void test_fts_rows_queued_then_indexed(void **state)
{
    fx *f = *state;
    char a[40], b[40], c[40], d[40];
    add(f, "the lighthouse keeper sings at dawn", a);
    add(f, "a recipe for plum cake with cinnamon", b);
    add(f, "an old dragon song", c);
    assert_int_equal(pending(f), 3); /* committed, queued, not yet indexed */
    assert_int_equal(matches(f, "lighthouse"), 0);
    mem_err e;
    char pid[64];
    assert_int_equal(mem_delete(f->m, b, pid, sizeof pid, &e), 0); /* a queued row */
    assert_int_equal(pending(f), 2);
    assert_int_equal(mem_fts_flush(f->m), 0);
    assert_int_equal(pending(f), 0);
    assert_int_equal(matches(f, "lighthouse"), 1);
    assert_int_equal(matches(f, "plum"), 0);
    assert_fts_consistent(f);
    /* An indexed row: its old words leave the index at once, its new ones
     * are queued. */
    patch_content(f, a, "a quiet harbour at night");
    assert_int_equal(matches(f, "lighthouse"), 0);
    assert_int_equal(pending(f), 1);
    assert_int_equal(mem_delete(f->m, c, pid, sizeof pid, &e), 0); /* an indexed row */
    assert_int_equal(matches(f, "dragon"), 0);
    /* A queued row changed before it was indexed. */
    add(f, "practice the violin daily", d);
    patch_content(f, d, "practice the cello daily");
    assert_int_equal(mem_fts_flush(f->m), 0);
    assert_int_equal(matches(f, "harbour"), 1);
    assert_int_equal(matches(f, "violin"), 0);
    assert_int_equal(matches(f, "cello"), 1);
    assert_fts_consistent(f);
}

static void test_fts_hybrid_search_indexes_first(void **state)
{
    fx *f = *state;
    char a[40];
    add(f, "the lighthouse keeper sings at dawn", a);
    assert_int_equal(pending(f), 1);
    mem_query q = {.persona_id = "aria", .text = "lighthouse", .k = 5, .hybrid = true};
    assert_int_equal(run_query(f, &q), 1);
    assert_int_equal(pending(f), 0); /* BM25 saw the row */
    assert_int_equal(matches(f, "lighthouse"), 1);
}

static void test_fts_batch_indexes_itself(void **state)
{
    fx *f = *state;
    enum { N = MEM_FTS_BATCH };
    mem_item *items = calloc(N, sizeof *items);
    char(*texts)[64] = calloc(N, sizeof *texts);
    mem_added *out = calloc(N, sizeof *out);
    assert_non_null(items);
    assert_non_null(texts);
    assert_non_null(out);
    for (int i = 0; i < N; i++) {
        snprintf(texts[i], sizeof texts[i], "batch memory %d about kestrels", i);
        items[i] = item_for("aria", texts[i]);
    }
    mem_err e;
    assert_int_equal(mem_add(f->m, items, N, out, &e), 0);
    for (int i = 0; i < 500 && pending(f) > 0; i++) usleep(10000);
    assert_int_equal(pending(f), 0); /* no query, no timer: the count did it */
    assert_int_equal(matches(f, "kestrels"), N);
    free(items);
    free(texts);
    free(out);
}

static void test_fts_timer_and_close_index(void **state)
{
    fx *f = *state;
    mem_close(f->m);
    mem_config c;
    mem_config_default(&c);
    c.access_flush_ms = 50;
    char err[256], a[40], b[40];
    assert_int_equal(mem_open(&f->m, f->st, &c, err, sizeof err), 0);
    add(f, "the lighthouse keeper sings at dawn", a);
    for (int i = 0; i < 300 && pending(f) > 0; i++) usleep(10000);
    assert_int_equal(pending(f), 0); /* the timer indexed it */
    mem_close(f->m);
    open_mem(f); /* the hour-long timer again */
    add(f, "a recipe for plum cake with cinnamon", b);
    assert_int_equal(pending(f), 1);
    mem_close(f->m);
    assert_int_equal(pending(f), 0); /* close indexed it */
    assert_int_equal(matches(f, "plum"), 1);
    open_mem(f); /* for the teardown */
}

/* ---- duplicates without a hash index (src/memory/mem_dedup.c) ------------- */

static void test_dedup_follows_deletes_updates_and_restarts(void **state)
{
    fx *f = *state;
    char a[40], b[40], c[40], x[40];
    assert_false(add_for(f, "aria", "the lighthouse keeper", a));
    assert_true(add_for(f, "aria", "the lighthouse keeper", x));
    assert_string_equal(x, a);
    assert_false(add_for(f, "kira", "the lighthouse keeper", x)); /* per persona */
    /* A deleted row's entry is stale: confirmed against the table, ignored. */
    mem_err e;
    char pid[64];
    assert_int_equal(mem_delete(f->m, a, pid, sizeof pid, &e), 0);
    assert_false(add_for(f, "aria", "the lighthouse keeper", b));
    assert_string_not_equal(b, a);
    assert_true(add_for(f, "aria", "the lighthouse keeper", x));
    assert_string_equal(x, b);
    /* New content of an updated row is found; its old content is free. */
    assert_false(add_for(f, "aria", "plum cake", c));
    patch_content(f, c, "cinnamon bun");
    assert_true(add_for(f, "aria", "cinnamon bun", x));
    assert_string_equal(x, c);
    assert_false(add_for(f, "aria", "plum cake", x));
    /* A new mem_store loads the tables from SQLite. */
    mem_close(f->m);
    open_mem(f);
    assert_true(add_for(f, "aria", "the lighthouse keeper", x));
    assert_string_equal(x, b);
    assert_true(add_for(f, "aria", "cinnamon bun", x));
    assert_string_equal(x, c);
    /* One batch holding the same text twice stores it once. */
    mem_item two[2] = {item_for("aria", "twice in one batch"),
                       item_for("aria", "twice in one batch")};
    mem_added out[2];
    assert_int_equal(mem_add(f->m, two, 2, out, &e), 0);
    assert_false(out[0].duplicate);
    assert_true(out[1].duplicate);
    assert_string_equal(out[1].id, out[0].id);
}

/* A row written behind mem_add (as a state import does) is found once the
 * writing job resets the tables. */
typedef struct raw_insert {
    mem_store *m;
    const char *text;
} raw_insert;

static int raw_insert_fn(store_conn *c, void *ctx)
{
    raw_insert *r = ctx;
    mem_dedup_reset(r->m);
    sqlite3_stmt *q;
    int rc = sqlite3_prepare_v2(store_conn_db(c),
                                "INSERT INTO memories (id, persona_id, content, content_hash,"
                                " memory_type, importance, base_importance, created_at,"
                                " embedding) VALUES ('raw-1', 'aria', ?1, ?2, 't', 0.5, 0.5, 0,"
                                " zeroblob(1536))",
                                -1, &q, NULL);
    if (rc != SQLITE_OK) return rc;
    sqlite3_bind_text(q, 1, r->text, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)util_hash64(r->text, strlen(r->text)));
    rc = sqlite3_step(q);
    sqlite3_finalize(q);
    return rc;
}

static void test_dedup_reset_sees_rows_written_behind(void **state)
{
    fx *f = *state;
    char x[40];
    assert_false(add_for(f, "aria", "loaded first", x)); /* aria's table is loaded */
    raw_insert r = {f->m, "imported behind mem_add"};
    assert_int_equal(store_write(f->st, raw_insert_fn, &r), SQLITE_OK);
    assert_true(add_for(f, "aria", "imported behind mem_add", x));
    assert_string_equal(x, "raw-1");
}

/* ---- memory ids: UUID version 7, in creation order ------------------------ */

static void test_memory_ids_are_time_ordered_uuid7(void **state)
{
    fx *f = *state;
    enum { N = 200 };
    char ids[N][40];
    for (int i = 0; i < N; i++) {
        char text[64];
        snprintf(text, sizeof text, "memory %d", i);
        add_for(f, "aria", text, ids[i]);
        const char *s = ids[i];
        assert_int_equal(strlen(s), 36);
        assert_true(s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-');
        assert_int_equal(s[14], '7');
        assert_non_null(strchr("89ab", s[19]));
        if (i) assert_true(strcmp(ids[i - 1], s) < 0); /* later id sorts later */
    }
    /* The first 48 bits are the Unix time in ms. */
    char hex[13];
    memcpy(hex, ids[N - 1], 8);
    memcpy(hex + 8, ids[N - 1] + 9, 4);
    hex[12] = 0;
    unsigned long long ms = strtoull(hex, NULL, 16);
    double now_ms = (double)time(NULL) * 1000.0;
    assert_true(fabs((double)ms - now_ms) < 5000.0);
    /* Ids from one thread's pool never repeat. */
    char(*many)[40] = calloc(20000, sizeof *many);
    assert_non_null(many);
    for (int i = 0; i < 20000; i++) util_uuid7(many[i]);
    qsort(many, 20000, sizeof *many, (int (*)(const void *, const void *))strcmp);
    for (int i = 1; i < 20000; i++) assert_true(strcmp(many[i - 1], many[i]) < 0);
    free(many);
}

/* A delete applied before its row's insert (two workers, commits applied in
 * any order) must not leave the deleted row in the collection. */
static void test_delete_applied_before_insert(void **state)
{
    fx *f = *state;
    char a[40];
    add(f, "the lighthouse keeper sings at dawn", a);
    assert_int_equal(search(f, "lighthouse", 1), 1); /* loads the collection */
    mem_coll *c = coll_get(f->m, "aria");
    float v[384] = {1.0f};
    int64_t late = 70;
    coll_apply_delete(f->m, c, &late, 1); /* the delete of row 70 comes first */
    coll_apply_insert(f->m, c, 80, v, 384, c->model, 0.5, "user_input", 0, 1.0);
    coll_apply_insert(f->m, c, 70, v, 384, c->model, 0.5, "user_input", 0, 1.0);
    mem_err e;
    assert_int_equal(coll_acquire(f->m, c, &e), 0);
    assert_int_equal(c->n, 2);
    assert_int_equal(coll_find(c, 70), -1);
    assert_true(coll_find(c, 80) >= 0);
    assert_int_equal(c->ntomb, 0); /* consumed */
    coll_release(c);
}

/* The seq of a deleted newest memory is not given to the next one. */
static long long seq_of(fx *f, const char *id)
{
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT seq FROM memories WHERE id = '%s'", id);
    return db_int(f, sql);
}

static void test_seqs_never_reused(void **state)
{
    fx *f = *state;
    char a[40], b[40], c[40];
    add(f, "first", a);
    add(f, "second", b);
    long long sb = seq_of(f, b);
    mem_err e;
    char pid[64];
    assert_int_equal(mem_delete(f->m, b, pid, sizeof pid, &e), 0);
    add(f, "third", c);
    assert_true(seq_of(f, c) > sb);
    /* A new mem_store continues from the table's largest seq. */
    mem_close(f->m);
    open_mem(f);
    char d[40];
    add(f, "fourth", d);
    assert_int_equal(seq_of(f, d), seq_of(f, c) + 1);
}

/* ---- the row cache (mem_rowcache.c) ---------------------------------------- */

/* The first hit of a search for text: its content, importance and access
 * count (copied into out, at most n bytes). false when nothing is found. */
static bool first_hit(fx *f, const char *text, char *out, size_t n, double *imp, int64_t *count)
{
    mem_query q = {.persona_id = "aria", .text = text, .k = 1, .record_access = true};
    jarena a;
    jarena_init(&a);
    mem_row *rows;
    size_t got = 0;
    mem_err e;
    assert_int_equal(mem_search(f->m, &q, &a, &rows, &got, &e), 0);
    if (got) {
        snprintf(out, n, "%s", rows[0].content);
        if (imp) *imp = rows[0].importance;
        if (count) *count = rows[0].accessed_count;
    }
    jarena_free(&a);
    return got > 0;
}

static uint64_t cache_hits(fx *f)
{
    uint64_t h, m;
    mem_rowcache_counts(f->m->rows, &h, &m);
    return h;
}

static void test_row_cache_serves_repeats_and_sees_every_change(void **state)
{
    fx *f = *state;
    char a[40], b[40], text[256];
    double imp;
    int64_t count;
    add(f, "the lighthouse keeper sings at dawn", a);
    add(f, "a recipe for plum cake", b);
    assert_true(first_hit(f, "lighthouse keeper", text, sizeof text, NULL, NULL));
    uint64_t h0 = cache_hits(f);
    assert_true(first_hit(f, "lighthouse keeper", text, sizeof text, NULL, NULL));
    assert_int_equal(cache_hits(f), h0 + 1); /* the second read came from RAM */
    assert_string_equal(text, "the lighthouse keeper sings at dawn");
    /* An insert keeps it (seqs are never reused)... */
    char c[40];
    add(f, "an old dragon song", c);
    assert_true(first_hit(f, "lighthouse keeper", text, sizeof text, NULL, NULL));
    assert_int_equal(cache_hits(f), h0 + 2);
    /* ...an update is seen at once, */
    patch_content(f, a, "the lighthouse keeper hums at dusk");
    assert_true(first_hit(f, "lighthouse keeper", text, sizeof text, NULL, NULL));
    assert_string_equal(text, "the lighthouse keeper hums at dusk");
    mem_patch p = {.set_importance = true, .importance = 0.9};
    mem_err e;
    char pid[64];
    assert_int_equal(mem_update(f->m, a, &p, pid, sizeof pid, &e), 0);
    assert_true(first_hit(f, "lighthouse keeper", text, sizeof text, &imp, NULL));
    assert_true(fabs(imp - 0.9) < 1e-9);
    /* so are decay, */
    mem_decay_result dr;
    assert_int_equal(mem_decay_force(f->m, "aria", 0.5, &dr, &e), 0);
    assert_true(first_hit(f, "lighthouse keeper", text, sizeof text, &imp, NULL));
    assert_true(imp < 0.9);
    /* flushed access counts, */
    assert_true(first_hit(f, "lighthouse keeper", text, sizeof text, NULL, &count));
    int64_t before = count;
    mem_access_flush(f->m);
    assert_true(first_hit(f, "lighthouse keeper", text, sizeof text, NULL, &count));
    assert_true(count > before);
    /* and a delete. */
    assert_int_equal(mem_delete(f->m, a, pid, sizeof pid, &e), 0);
    assert_true(first_hit(f, "lighthouse keeper", text, sizeof text, NULL, NULL));
    assert_string_not_equal(text, "the lighthouse keeper hums at dusk");
}

static int raw_update_fn(store_conn *c, void *ctx)
{
    (void)ctx;
    return sqlite3_exec(store_conn_db(c),
                        "UPDATE memories SET content = 'changed behind the memory layer'"
                        " WHERE content LIKE 'the lighthouse%'",
                        NULL, NULL, NULL);
}

static void test_row_cache_cleared_by_any_writer_update(void **state)
{
    fx *f = *state;
    char a[40], text[256];
    add(f, "the lighthouse keeper sings at dawn", a);
    assert_true(first_hit(f, "lighthouse keeper", text, sizeof text, NULL, NULL));
    uint64_t h0 = cache_hits(f);
    assert_true(first_hit(f, "lighthouse keeper", text, sizeof text, NULL, NULL));
    assert_int_equal(cache_hits(f), h0 + 1); /* cached */
    /* SQL no mem_* function ran: SQLite's update hook still tells. */
    assert_int_equal(store_write(f->st, raw_update_fn, NULL), SQLITE_OK);
    assert_true(first_hit(f, "lighthouse keeper", text, sizeof text, NULL, NULL));
    assert_string_equal(text, "changed behind the memory layer");
}

static void test_row_cache_refuses_rows_read_before_a_clear(void **state)
{
    (void)state;
    mem_rowcache *rc = mem_rowcache_new();
    mem_row r = {.seq = 7,
                 .id = "id-7",
                 .persona_id = "aria",
                 .content = "old text",
                 .memory_type = "t",
                 .related_json = "[]",
                 .visibility = "private",
                 .metadata_json = "{}",
                 .importance = 0.5};
    jarena a;
    jarena_init(&a);
    mem_row got;
    uint64_t gen = mem_rowcache_gen(rc); /* a reader begins... */
    mem_rowcache_clear(rc);              /* ...a commit changes the row... */
    mem_rowcache_put(rc, gen, &r);       /* ...the reader's old copy is refused */
    assert_false(mem_rowcache_get(rc, 7, &a, &got));
    mem_rowcache_put(rc, mem_rowcache_gen(rc), &r);
    assert_true(mem_rowcache_get(rc, 7, &a, &got));
    assert_string_equal(got.content, "old text");
    assert_string_equal(got.id, "id-7");
    assert_ptr_not_equal(got.content, r.content); /* copied into the arena */
    /* A row too large is not kept; the cache never exceeds its bounds. */
    size_t big = 64 * 1024;
    char *huge = malloc(big);
    assert_non_null(huge);
    memset(huge, 'x', big - 1);
    huge[big - 1] = 0;
    mem_row h = r;
    h.seq = 8;
    h.content = huge;
    mem_rowcache_put(rc, mem_rowcache_gen(rc), &h);
    assert_false(mem_rowcache_get(rc, 8, &a, &got));
    free(huge);
    for (int64_t s = 100; s < 5000; s++) {
        mem_row x = r;
        x.seq = s;
        mem_rowcache_put(rc, mem_rowcache_gen(rc), &x);
    }
    int kept = 0;
    for (int64_t s = 100; s < 5000; s++) kept += mem_rowcache_get(rc, s, &a, &got);
    assert_true(kept > 0 && kept <= 1024);
    jarena_free(&a);
    mem_rowcache_free(rc);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        T(test_hits_wait_in_ram_until_flushed),
        T(test_close_flushes),
        T(test_prune_sees_accesses),
        T(test_reused_rowid_does_not_inherit),
        T(test_many_rows_grow_the_table),
        T(test_out_of_order_applies_keep_seq_order),
        T(test_large_scan_shared_with_helper),
        T(test_fts_rows_queued_then_indexed),
        T(test_fts_hybrid_search_indexes_first),
        T(test_fts_batch_indexes_itself),
        T(test_fts_timer_and_close_index),
        T(test_dedup_follows_deletes_updates_and_restarts),
        T(test_dedup_reset_sees_rows_written_behind),
        T(test_memory_ids_are_time_ordered_uuid7),
        T(test_delete_applied_before_insert),
        T(test_seqs_never_reused),
        T(test_row_cache_serves_repeats_and_sees_every_change),
        T(test_row_cache_cleared_by_any_writer_update),
        T(test_row_cache_refuses_rows_read_before_a_clear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
