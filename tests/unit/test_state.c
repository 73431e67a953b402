/*
 * test_state.c - state export/import (src/state/): the file format round
 * trip, verification before any change, atomic writes, path confinement
 * and the progress bar.
 *
 * Each test gets a temporary directory with two real stores, "a" and "b"
 * (store, persona registry, memory store), like the server's. "a" is
 * filled through the module APIs (personas, memories with client and
 * built-in embeddings) and through SQL (conversations, and two tables of
 * the test's own, created child-first so the export must order them by
 * their foreign key, one WITHOUT ROWID, holding values of every storage
 * class, including ones JSON cannot carry: infinite REAL, a BLOB, TEXT
 * that is not UTF-8). A round trip exports "a" and imports into "b", then
 * compares every exportable table cell by cell (storage class and bytes),
 * the FTS index, the persona registry and search results. Broken files
 * (tampered, truncated, wrong version, not a state file) must be refused
 * with -32602 and leave "b" untouched.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/json.h"
#include "lib/log.h"
#include "memory/memory.h"
#include "persona/persona.h"
#include "state/state.h"
#include "state/state_internal.h"
#include "store/store.h"

/* ---- fixture ------------------------------------------------------------- */

typedef struct side {
    char dir[128];
    char db[192];
    store *st;
    persona_reg *reg;
    mem_store *mem;
} side;

typedef struct fx {
    char root[64];
    side a, b;
} fx;

static int side_open(side *s, const char *root, const char *name)
{
    snprintf(s->dir, sizeof s->dir, "%s/%s", root, name);
    if (mkdir(s->dir, 0700) < 0) return -1;
    snprintf(s->db, sizeof s->db, "%s/personas.db", s->dir);
    store_opts o;
    store_opts_default(&o);
    o.path = s->db;
    char err[256];
    if (store_open(&s->st, &o, err, sizeof err) != 0) return -1;
    if (persona_reg_load(&s->reg, s->st) != 0) return -1;
    mem_config mc;
    mem_config_default(&mc);
    return mem_open(&s->mem, s->st, &mc, err, sizeof err);
}

static void side_close(side *s)
{
    mem_close(s->mem);
    store_close(s->st);
    persona_reg_free(s->reg);
}

static void rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", path, de->d_name);
            rm_rf(p);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static int fx_setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->root, sizeof f->root, "/tmp/pmcp-state-XXXXXX");
    if (!mkdtemp(f->root)) return -1;
    if (side_open(&f->a, f->root, "a") < 0 || side_open(&f->b, f->root, "b") < 0) return -1;
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    fx *f = *state;
    side_close(&f->a);
    side_close(&f->b);
    rm_rf(f->root);
    free(f);
    return 0;
}

/* ---- SQL through the writer (prepared statements, one script) ------------- */

static int script_fn(store_conn *c, void *ctx)
{
    const char *sql = ctx;
    sqlite3 *db = store_conn_db(c);
    while (sql && *sql) {
        sqlite3_stmt *q = NULL;
        const char *tail = NULL;
        int rc = sqlite3_prepare_v2(db, sql, -1, &q, &tail);
        if (rc != SQLITE_OK) return rc;
        if (q) {
            while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
            }
            sqlite3_finalize(q);
            if (rc != SQLITE_DONE) return rc;
        }
        sql = tail;
    }
    return SQLITE_OK;
}

static void run_sql(side *s, const char *sql)
{
    int rc = store_write(s->st, script_fn, (void *)sql);
    if (rc != SQLITE_OK) fail_msg("SQL failed (%d): %s", rc, sql);
}

/* The test's own tables: child created before its parent, parent WITHOUT ROWID. */
static const char EXTRA_TABLES[] =
    "CREATE TABLE aaa_child (id INTEGER PRIMARY KEY, k TEXT NOT NULL REFERENCES zzz_parent (k),"
    " note TEXT);"
    "CREATE TABLE zzz_parent (k TEXT PRIMARY KEY, v) WITHOUT ROWID;";

static int typed_fn(store_conn *c, void *ctx)
{
    (void)ctx;
    sqlite3 *db = store_conn_db(c);
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(db, "INSERT INTO zzz_parent (k, v) VALUES (?1, ?2)", -1, &q, NULL);
    if (rc != SQLITE_OK) return rc;
    static const unsigned char blob[] = {0, 1, 2, 0xff, 0xfe, '"', '\\', '\n'};
    static const char bad_utf8[] = {'a', (char)0xc3, 'b', 0, 'c'};
    for (int i = 0; i < 10 && rc == SQLITE_OK; i++) {
        char k[8];
        snprintf(k, sizeof k, "k%d", i);
        sqlite3_bind_text(q, 1, k, -1, SQLITE_TRANSIENT);
        switch (i) {
        case 0:
            sqlite3_bind_null(q, 2);
            break;
        case 1:
            sqlite3_bind_int64(q, 2, INT64_MIN);
            break;
        case 2:
            sqlite3_bind_double(q, 2, 1.0);
            break; /* integral REAL stays REAL */
        case 3:
            sqlite3_bind_double(q, 2, -0.0);
            break;
        case 4:
            sqlite3_bind_double(q, 2, INFINITY);
            break;
        case 5:
            sqlite3_bind_double(q, 2, 0.1 + 0.2);
            break;
        case 6:
            sqlite3_bind_blob(q, 2, blob, sizeof blob, SQLITE_STATIC);
            break;
        case 7:
            sqlite3_bind_zeroblob(q, 2, 0);
            break;
        case 8:
            sqlite3_bind_text(q, 2, bad_utf8, sizeof bad_utf8, SQLITE_STATIC);
            break;
        case 9:
            sqlite3_bind_text(q, 2, "ünïcødé \u2028 \"q\" \\ \t", -1, SQLITE_STATIC);
            break;
        }
        rc = sqlite3_step(q);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
        sqlite3_reset(q);
    }
    sqlite3_finalize(q);
    return rc;
}

/* ---- filling side a -------------------------------------------------------- */

static const char *const TEXTS[] = {
    "Quantum physics lecture about entangled particles",
    "The bard sang a ballad about the dragon of the northern hills",
    "Bread recipe: flour, water, salt and a long slow rise",
    "A merchant from the coast sold silk and spices at the market",
    "Kira found an ancient book about the history of magic",
    "Weather report: heavy rain expected over the mountains tonight",
    "Aria learned a new song from a travelling musician",
    "The library closes early on holidays",
};
#define NTEXTS (sizeof TEXTS / sizeof TEXTS[0])

static void add_memories(side *s, const char *persona, bool client, int n)
{
    for (int i = 0; i < n; i++) {
        float vec[8];
        for (int d = 0; d < 8; d++) vec[d] = (float)sin(i * 1.3 + d * 0.7) + 0.01f * (float)d;
        char content[256], meta[64];
        snprintf(content, sizeof content, "%s #%d", TEXTS[(size_t)i % NTEXTS], i);
        snprintf(meta, sizeof meta, "{\"i\":%d,\"tag\":\"t%d\"}", i, i % 3);
        mem_item it = {.persona_id = persona,
                       .content = content,
                       .memory_type = i % 2 ? "observation" : "user_input",
                       .importance = 0.05 + 0.9 * (double)i / n,
                       .emotional_valence = -0.5 + (double)(i % 5) / 4,
                       .related_json = "[\"kira\"]",
                       .visibility = i % 3 == 0 ? "shared" : (i % 3 == 1 ? "public" : "private"),
                       .metadata_json = meta,
                       .embedding = client ? vec : NULL,
                       .embedding_dim = client ? 8 : 0};
        mem_added out;
        mem_err e = {0};
        if (mem_add(s->mem, &it, 1, &out, &e) != 0) fail_msg("mem_add: %s", e.msg);
    }
}

static void fill_a(fx *f)
{
    char id[40];
    persona_new pn = {.name = "Zed",
                      .description = "A test persona with \"quotes\" and ünïcødé",
                      .social_rank = "scholar",
                      .traits_json = "{\"curious\":80}",
                      .topics_json = "{\"magic\":90}",
                      .charisma = 7,
                      .intelligence = 19};
    assert_int_equal(persona_create(f->a.reg, f->a.st, &pn, id), 0);
    persona_state_patch sp = {.interaction_fatigue = 3,
                              .available_time = 120,
                              .social_energy = 42,
                              .cooldown_until = 1.5e9};
    assert_int_equal(persona_set_state(f->a.reg, f->a.st, id, &sp), 0);
    add_memories(&f->a, id, false, 40);
    add_memories(&f->a, "client-p", true, 30);
    run_sql(&f->a, "INSERT INTO conversations (id, kind, participants, started_at, ended_at)"
                   " VALUES ('c1', 'user', '[\"x\",\"user\"]', 1700000000.25, NULL);"
                   "INSERT INTO conversation_turns (id, conversation_id, speaker_id, turn_number,"
                   " content, created_at) VALUES ('t1', 'c1', 'user', 1, 'hello', 1700000001.5),"
                   " ('t2', 'c1', 'x', 2, 'hi there', 1700000002.75);");
    run_sql(&f->a, EXTRA_TABLES);
    assert_int_equal(store_write(f->a.st, typed_fn, NULL), SQLITE_OK);
    run_sql(&f->a, "INSERT INTO aaa_child (k, note) VALUES ('k1', 'first'), ('k6', NULL);");
}

/* ---- comparing two databases --------------------------------------------- */

static void compare_table(side *x, side *y, const state_table *t)
{
    char sql[1024];
    snprintf(sql, sizeof sql, "SELECT * FROM \"%s\"%s", t->name,
             t->without_rowid ? "" : " ORDER BY rowid");
    store_conn *cx = store_pool_get(x->st), *cy = store_pool_get(y->st);
    sqlite3_stmt *qx = NULL, *qy = NULL;
    assert_int_equal(sqlite3_prepare_v2(store_conn_db(cx), sql, -1, &qx, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(store_conn_db(cy), sql, -1, &qy, NULL), SQLITE_OK);
    int rx, ry;
    long row = 0;
    while ((rx = sqlite3_step(qx)) == SQLITE_ROW) {
        ry = sqlite3_step(qy);
        if (ry != SQLITE_ROW) fail_msg("%s: b has fewer rows (%ld)", t->name, row);
        int n = sqlite3_column_count(qx);
        assert_int_equal(n, sqlite3_column_count(qy));
        for (int i = 0; i < n; i++) {
            int tx = sqlite3_column_type(qx, i), ty = sqlite3_column_type(qy, i);
            if (tx != ty)
                fail_msg("%s row %ld col %s: storage class %d != %d", t->name, row,
                         sqlite3_column_name(qx, i), tx, ty);
            if (tx == SQLITE_FLOAT) {
                double a = sqlite3_column_double(qx, i), b = sqlite3_column_double(qy, i);
                if (memcmp(&a, &b, sizeof a) != 0)
                    fail_msg("%s row %ld: %.17g != %.17g", t->name, row, a, b);
            } else if (tx == SQLITE_INTEGER) {
                assert_true(sqlite3_column_int64(qx, i) == sqlite3_column_int64(qy, i));
            } else if (tx != SQLITE_NULL) {
                const void *a = tx == SQLITE_BLOB ? sqlite3_column_blob(qx, i)
                                                  : (const void *)sqlite3_column_text(qx, i);
                const void *b = tx == SQLITE_BLOB ? sqlite3_column_blob(qy, i)
                                                  : (const void *)sqlite3_column_text(qy, i);
                int na = sqlite3_column_bytes(qx, i), nb = sqlite3_column_bytes(qy, i);
                if (na != nb || (na && memcmp(a, b, (size_t)na) != 0))
                    fail_msg("%s row %ld col %s differs", t->name, row, sqlite3_column_name(qx, i));
            }
        }
        row++;
    }
    assert_int_equal(rx, SQLITE_DONE);
    assert_int_equal(sqlite3_step(qy), SQLITE_DONE);
    sqlite3_finalize(qx);
    sqlite3_finalize(qy);
    store_pool_put(x->st, cx);
    store_pool_put(y->st, cy);
}

static void compare_all(side *x, side *y, int *ntables)
{
    store_conn *c = store_pool_get(x->st);
    state_schema s;
    state_err e;
    assert_int_equal(state_schema_read(c, &s, &e), 0);
    store_pool_put(x->st, c);
    for (int i = 0; i < s.n; i++) compare_table(x, y, &s.t[i]);
    *ntables = s.n;
    state_schema_free(&s);
}

static int64_t fts_hits(side *s, const char *match)
{
    assert_int_equal(mem_fts_flush(s->mem), 0); /* rows are indexed in bulk after commit */
    store_conn *c = store_pool_get(s->st);
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(store_conn_db(c),
                                        "SELECT count(*), total(rowid) FROM memories_fts"
                                        " WHERE memories_fts MATCH ?1",
                                        -1, &q, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(q, 1, match, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(q, 0) * 1000000 + (int64_t)sqlite3_column_double(q, 1);
    sqlite3_finalize(q);
    store_pool_put(s->st, c);
    return v;
}

static void compare_search(side *x, side *y, const mem_query *q)
{
    jarena a;
    jarena_init(&a);
    mem_row *rx, *ry;
    size_t nx, ny;
    mem_err e = {0};
    if (mem_search(x->mem, q, &a, &rx, &nx, &e) != 0) fail_msg("search a: %s", e.msg);
    if (mem_search(y->mem, q, &a, &ry, &ny, &e) != 0) fail_msg("search b: %s", e.msg);
    assert_int_equal(nx, ny);
    assert_true(nx > 0);
    for (size_t i = 0; i < nx; i++) {
        assert_string_equal(rx[i].id, ry[i].id);
        assert_string_equal(rx[i].content, ry[i].content);
        assert_true(rx[i].similarity == ry[i].similarity);
        assert_true(rx[i].importance == ry[i].importance);
        assert_string_equal(rx[i].metadata_json, ry[i].metadata_json);
    }
    jarena_free(&a);
}

static void compare_registries(side *x, side *y)
{
    persona_reg_rdlock(x->reg);
    persona_reg_rdlock(y->reg);
    assert_int_equal(persona_reg_count(x->reg), persona_reg_count(y->reg));
    for (size_t i = 0; i < persona_reg_count(x->reg); i++) {
        const persona *p = persona_reg_at(x->reg, i), *q = persona_reg_at(y->reg, i);
        assert_string_equal(p->id, q->id);
        assert_string_equal(p->name, q->name);
        assert_string_equal(p->description, q->description);
        assert_string_equal(p->created_at, q->created_at);
        assert_int_equal(p->social_energy, q->social_energy);
        assert_true(p->cooldown_until == q->cooldown_until);
    }
    persona_reg_unlock(y->reg);
    persona_reg_unlock(x->reg);
}

static size_t reg_count(side *s)
{
    persona_reg_rdlock(s->reg);
    size_t n = persona_reg_count(s->reg);
    persona_reg_unlock(s->reg);
    return n;
}

static void path_in(char *out, size_t n, side *s, const char *name)
{
    snprintf(out, n, "%s/%s", s->dir, name);
}

static bool has_temp_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    bool found = false;
    while (d && (de = readdir(d)))
        if (strncmp(de->d_name, ".state-tmp", 10) == 0) found = true;
    if (d) closedir(d);
    return found;
}

typedef struct prog {
    char phase[16];
    uint64_t done, total;
    int calls;
    bool went_backwards;
} prog;

static void on_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
    prog *p = ctx;
    if (strcmp(p->phase, phase) == 0 && done < p->done) p->went_backwards = true;
    snprintf(p->phase, sizeof p->phase, "%s", phase);
    p->done = done;
    p->total = total;
    p->calls++;
}

static uint64_t table_rows(const state_result *r, const char *name)
{
    for (size_t i = 0; i < r->ntables; i++)
        if (!strcmp(r->tables[i].name, name)) return r->tables[i].rows;
    fail_msg("table %s not in the result", name);
    return 0;
}

static void prepare_b_for_extra(fx *f)
{
    run_sql(&f->b, EXTRA_TABLES);
}

/* Export a into <a>/name (CLI style, no confinement). */
static void export_a(fx *f, const char *name, char *path, size_t n, state_result *r)
{
    path_in(path, n, &f->a, name);
    state_err e = {0};
    if (state_export(f->a.st, path, NULL, r, &e) != 0) fail_msg("export: %s", e.msg);
}

static void expect_import_error(fx *f, const char *path, const char *needle, bool file_bad)
{
    size_t before = reg_count(&f->b);
    state_result r;
    state_err e = {0};
    assert_int_equal(state_import(f->b.st, f->b.reg, f->b.mem, path, NULL, &r, &e), -1);
    assert_int_equal(e.code, STATE_EINVAL);
    if (!strstr(e.msg, needle)) fail_msg("expected \"%s\" in: %s", needle, e.msg);
    assert_int_equal(reg_count(&f->b), before);
    if (file_bad) assert_int_equal(state_verify(path, NULL, &r, &e), -1);
}

/* ---- tests ----------------------------------------------------------------- */

static void test_round_trip(void **state)
{
    fx *f = *state;
    fill_a(f);
    prepare_b_for_extra(f);
    /* b has its own persona and a loaded collection: both must be replaced. */
    char junk[40];
    persona_new pn = {.name = "Junk",
                      .description = "",
                      .social_rank = "x",
                      .traits_json = "{}",
                      .topics_json = "{}",
                      .charisma = 1,
                      .intelligence = 1};
    assert_int_equal(persona_create(f->b.reg, f->b.st, &pn, junk), 0);
    add_memories(&f->b, "client-p", true, 3);
    mem_query warm = {.persona_id = "client-p", .text = "x", .k = 3};
    float v8[8] = {1, 0, 0, 0, 0, 0, 0, 0};
    warm.text = NULL;
    warm.embedding = v8;
    warm.embedding_dim = 8;
    jarena ar;
    jarena_init(&ar);
    mem_row *rows;
    size_t n;
    mem_err me = {0};
    assert_int_equal(mem_search(f->b.mem, &warm, &ar, &rows, &n, &me), 0);
    jarena_free(&ar);

    char path[256];
    state_result r;
    prog pe = {0};
    state_opts o = {.progress = on_progress, .progress_ctx = &pe};
    state_err e = {0};
    path_in(path, sizeof path, &f->a, "snap.jsonl");
    if (state_export(f->a.st, path, &o, &r, &e) != 0) fail_msg("export: %s", e.msg);
    assert_string_equal(pe.phase, "export");
    assert_true(pe.done == r.rows && pe.total == r.rows && !pe.went_backwards);
    assert_int_equal(table_rows(&r, "memories"), 70);
    assert_int_equal(table_rows(&r, "personas"), 3);
    assert_int_equal(table_rows(&r, "zzz_parent"), 10);
    assert_int_equal(table_rows(&r, "conversation_turns"), 2);
    for (size_t i = 0; i < r.ntables; i++) {
        assert_null(strstr(r.tables[i].name, "memories_fts"));
        assert_true(strncmp(r.tables[i].name, "sqlite_", 7) != 0);
    }
    /* Parents first: zzz_parent before aaa_child, personas before the states. */
    int ip = -1, ic = -1;
    for (size_t i = 0; i < r.ntables; i++) {
        if (!strcmp(r.tables[i].name, "zzz_parent")) ip = (int)i;
        if (!strcmp(r.tables[i].name, "aaa_child")) ic = (int)i;
    }
    assert_true(ip >= 0 && ic > ip);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((uint64_t)st.st_size, r.bytes);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_false(has_temp_files(f->a.dir));

    state_result ri;
    prog pi = {0};
    o.progress_ctx = &pi;
    if (state_import(f->b.st, f->b.reg, f->b.mem, path, &o, &ri, &e) != 0)
        fail_msg("import: %s", e.msg);
    assert_string_equal(pi.phase, "import");
    assert_true(pi.done == r.rows && pi.total == r.rows);
    assert_int_equal(ri.rows, r.rows);
    assert_int_equal(ri.ntables, r.ntables);
    assert_string_equal(ri.created_at, r.created_at);

    int ntables;
    compare_all(&f->a, &f->b, &ntables);
    assert_int_equal((size_t)ntables, r.ntables);
    compare_registries(&f->a, &f->b);
    assert_int_equal(fts_hits(&f->a, "ballad"), fts_hits(&f->b, "ballad"));
    assert_true(fts_hits(&f->b, "ballad") > 0);

    persona_reg_rdlock(f->a.reg);
    char zed[40];
    snprintf(zed, sizeof zed, "%s", persona_reg_at(f->a.reg, 2)->id);
    persona_reg_unlock(f->a.reg);
    mem_query q1 = {.persona_id = zed, .text = "a song about a dragon", .k = 10};
    compare_search(&f->a, &f->b, &q1);
    q1.hybrid = true;
    compare_search(&f->a, &f->b, &q1);
    mem_query q2 = {.persona_id = "client-p", .embedding = v8, .embedding_dim = 8, .k = 10};
    compare_search(&f->a, &f->b, &q2);
    q2.min_importance = 0.5;
    q2.vis_mask = MEM_VIS_PUBLIC;
    compare_search(&f->a, &f->b, &q2);
    /* The junk persona is gone from b's registry, and its rows from SQLite. */
    persona_reg_rdlock(f->b.reg);
    assert_null(persona_reg_find(f->b.reg, junk));
    persona_reg_unlock(f->b.reg);

    /* Export b again: the same content. */
    char path2[256];
    state_result r2;
    path_in(path2, sizeof path2, &f->b, "again.jsonl");
    assert_int_equal(state_export(f->b.st, path2, NULL, &r2, &e), 0);
    assert_int_equal(r2.rows, r.rows);
    assert_int_equal(r2.bytes, r.bytes);
}

static void test_overwrite_is_atomic_and_db_protected(void **state)
{
    fx *f = *state;
    char path[256];
    state_result r;
    export_a(f, "x.jsonl", path, sizeof path, &r);
    fill_a(f);
    state_result r2;
    export_a(f, "x.jsonl", path, sizeof path, &r2); /* replaces the old file */
    assert_true(r2.rows > r.rows);
    state_err e = {0};
    assert_int_equal(state_verify(path, NULL, &r, &e), 0);
    assert_int_equal(r.rows, r2.rows);
    assert_false(has_temp_files(f->a.dir));
    /* The CLI may take any path, but never the database itself. */
    assert_int_equal(state_export(f->a.st, f->a.db, NULL, &r, &e), -1);
    assert_int_equal(e.code, STATE_EINVAL);
    assert_non_null(strstr(e.msg, "database"));
    char wal[256];
    snprintf(wal, sizeof wal, "%s-wal", f->a.db);
    assert_int_equal(state_export(f->a.st, wal, NULL, &r, &e), -1);
    assert_false(has_temp_files(f->a.dir));
    /* A directory that does not exist. */
    path_in(path, sizeof path, &f->a, "nowhere/x.jsonl");
    assert_int_equal(state_export(f->a.st, path, NULL, &r, &e), -1);
    assert_int_equal(e.code, STATE_EINVAL);
}

static char *slurp(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    assert_int_equal(fread(buf, 1, (size_t)len, fp), (size_t)len);
    buf[len] = 0;
    fclose(fp);
    *n = (size_t)len;
    return buf;
}

static void spit(const char *path, const char *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, n, fp), n);
    fclose(fp);
}

static void test_tamper_detected(void **state)
{
    fx *f = *state;
    fill_a(f);
    prepare_b_for_extra(f);
    char path[256];
    state_result r;
    export_a(f, "t.jsonl", path, sizeof path, &r);
    size_t n;
    char *buf = slurp(path, &n);
    char *hit = strstr(buf, "Quantum physics");
    assert_non_null(hit);
    hit[0] = 'X'; /* still valid JSON, same length */
    spit(path, buf, n);
    expect_import_error(f, path, "checksum mismatch", true);
    hit[0] = 'Q';
    /* A changed count in the trailer. */
    char *tr = strstr(buf, "\"total_rows\":");
    assert_non_null(tr);
    tr[13] = tr[13] == '9' ? '8' : (char)(tr[13] + 1);
    spit(path, buf, n);
    expect_import_error(f, path, "do not match", true);
    free(buf);
}

static void test_truncated_detected(void **state)
{
    fx *f = *state;
    fill_a(f);
    prepare_b_for_extra(f);
    char path[256];
    state_result r;
    export_a(f, "t.jsonl", path, sizeof path, &r);
    size_t n;
    char *buf = slurp(path, &n);
    spit(path, buf, n / 2); /* mid-line */
    expect_import_error(f, path, "truncated", true);
    char *last = buf + n - 2;
    while (*last != '\n') last--;
    spit(path, buf, (size_t)(last - buf) + 1); /* whole lines, trailer missing */
    expect_import_error(f, path, "no trailer", true);
    spit(path, buf, 0);
    expect_import_error(f, path, "empty", true);
    spit(path, "hello\nworld\n", 12);
    expect_import_error(f, path, "not a persona-mcp state file", true);
    spit(path, buf, n); /* intact again: loads */
    state_err e = {0};
    assert_int_equal(state_import(f->b.st, f->b.reg, f->b.mem, path, NULL, &r, &e), 0);
    /* Data after the trailer. */
    char *more = malloc(n + 8);
    memcpy(more, buf, n);
    memcpy(more + n, "{}\n", 3);
    spit(path, more, n + 3);
    expect_import_error(f, path, "after the trailer", true);
    free(more);
    free(buf);
}

static void replace_once(char *buf, size_t *n, const char *from, const char *to)
{
    char *p = strstr(buf, from);
    assert_non_null(p);
    size_t lf = strlen(from), lt = strlen(to);
    memmove(p + lt, p + lf, *n - (size_t)(p - buf) - lf + 1);
    memcpy(p, to, lt);
    *n = *n - lf + lt;
}

static void test_version_refused(void **state)
{
    fx *f = *state;
    char path[256];
    state_result r;
    export_a(f, "v.jsonl", path, sizeof path, &r);
    size_t n;
    char *orig = slurp(path, &n);
    char *buf = malloc(n + 64);
    memcpy(buf, orig, n + 1);
    size_t m = n;
    replace_once(buf, &m, "\"version\":1,", "\"version\":2,");
    spit(path, buf, m);
    expect_import_error(f, path, "unsupported state file version 2", true);
    memcpy(buf, orig, n + 1);
    m = n;
    char sv[64];
    snprintf(sv, sizeof sv, "\"schema_version\":%d,", store_schema_version);
    replace_once(buf, &m, sv, "\"schema_version\":99,");
    spit(path, buf, m);
    expect_import_error(f, path, "newer than this build", true);
    memcpy(buf, orig, n + 1);
    m = n;
    replace_once(buf, &m, "persona-mcp-state", "something-else");
    spit(path, buf, m);
    expect_import_error(f, path, "not a persona-mcp state file", true);
    free(buf);
    free(orig);
}

static void test_incompatible_tables_refused(void **state)
{
    fx *f = *state;
    fill_a(f); /* a has aaa_child and zzz_parent; b does not */
    char path[256];
    state_result r;
    export_a(f, "i.jsonl", path, sizeof path, &r);
    expect_import_error(f, path, "does not exist in this database", false);
}

static void test_path_confinement(void **state)
{
    fx *f = *state;
    state_opts o = {.confine_dir = f->a.dir};
    state_result r;
    state_err e;
    struct {
        const char *path, *needle;
    } bad[] = {
        {"../x.jsonl", "'..'"},
        {"/tmp/x.jsonl", "absolute"},
        {"sub/../../x.jsonl", "'..'"},
        {"..", "'..'"},
        {"", "empty"},
        {"x.txt", ".jsonl"},
        {"personas.db", ".jsonl"},
        {".hidden.jsonl", "start with"},
        {"dir/", "directory"},
        {"out/x.jsonl", "symbolic link"},
        {"link.jsonl", "symbolic link"},
        {"fifo.jsonl", "not a regular file"},
        {"dir.jsonl", "not a regular file"},
        {"missing/x.jsonl", "not found"},
        {"a\nb.jsonl", "control character"},
    };
    char p[512], outside[256];
    /* outside: a valid state file in the parent directory */
    snprintf(outside, sizeof outside, "%s/outside.jsonl", f->root);
    assert_int_equal(state_export(f->b.st, outside, NULL, &r, &e), 0);
    snprintf(p, sizeof p, "%s/out", f->a.dir);
    assert_int_equal(symlink(f->root, p), 0);
    snprintf(p, sizeof p, "%s/link.jsonl", f->a.dir);
    assert_int_equal(symlink(outside, p), 0);
    snprintf(p, sizeof p, "%s/fifo.jsonl", f->a.dir);
    assert_int_equal(mkfifo(p, 0600), 0);
    snprintf(p, sizeof p, "%s/dir.jsonl", f->a.dir);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/sub", f->a.dir);
    assert_int_equal(mkdir(p, 0700), 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (int load = 0; load < 2; load++) {
            memset(&e, 0, sizeof e);
            int rc = load ? state_import(f->a.st, f->a.reg, f->a.mem, bad[i].path, &o, &r, &e)
                          : state_export(f->a.st, bad[i].path, &o, &r, &e);
            if (rc != -1 || e.code != STATE_EINVAL || !strstr(e.msg, bad[i].needle)) {
                /* fifo/dir/link refusals differ between save and load only in wording */
                bool exist_case = !load && (strstr(bad[i].needle, "regular") != NULL);
                if (!(exist_case && rc == -1 && e.code == STATE_EINVAL))
                    fail_msg("%s \"%s\": rc=%d code=%d msg=%s", load ? "load" : "save", bad[i].path,
                             rc, e.code, e.msg);
            }
        }
    }
    /* Nothing was written outside, and no temporary file stayed behind. */
    snprintf(p, sizeof p, "%s/x.jsonl", f->root);
    assert_int_equal(access(p, F_OK), -1);
    assert_false(has_temp_files(f->a.dir));
    /* The linked file outside is still intact. */
    assert_int_equal(state_verify(outside, NULL, &r, &e), 0);
    /* Good paths. */
    const char *good[] = {"ok.jsonl", "sub/ok2.jsonl", "./ok3.jsonl", "sub//ok4.jsonl"};
    const char *shown[] = {"ok.jsonl", "sub/ok2.jsonl", "ok3.jsonl", "sub/ok4.jsonl"};
    for (size_t i = 0; i < 4; i++) {
        memset(&e, 0, sizeof e);
        if (state_export(f->a.st, good[i], &o, &r, &e) != 0) fail_msg("%s: %s", good[i], e.msg);
        assert_string_equal(r.path, shown[i]);
        if (state_import(f->a.st, f->a.reg, f->a.mem, good[i], &o, &r, &e) != 0)
            fail_msg("load %s: %s", good[i], e.msg);
    }
    snprintf(p, sizeof p, "%s/sub/ok2.jsonl", f->a.dir);
    assert_int_equal(access(p, F_OK), 0);
    assert_int_equal(state_import(f->a.st, f->a.reg, f->a.mem, "nope.jsonl", &o, &r, &e), -1);
    assert_non_null(strstr(e.msg, "not found"));
}

static void test_default_name(void **state)
{
    (void)state;
    char name[64];
    state_default_name(1760524200.123, name); /* 2025-10-15 10:30:00.123 UTC */
    assert_string_equal(name, "state-20251015T103000.123Z.jsonl");
}

static void test_progress_bar(void **state)
{
    (void)state;
    char buf[200];
    state_bar_format(buf, sizeof buf, "", 52000, 100000, 10);
    assert_string_equal(buf, "[#####.....] 52% 52000/100000 rows");
    state_bar_format(buf, sizeof buf, "import", 0, 0, 4);
    assert_string_equal(buf, "import [####] 100% 0/0 rows");
    state_bar_format(buf, sizeof buf, "verify", 2500000, 10000000, 4);
    assert_string_equal(buf, "verify [#...] 25% 2.5/10.0 MB");
    state_bar_format(buf, sizeof buf, "verify", 6513, 6513, 4);
    assert_string_equal(buf, "verify [####] 100% 6.5/6.5 kB");
    /* Not a terminal: one line per 10 %. */
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    state_bar b;
    state_bar_init(&b, mem);
    b.width = 10;
    for (uint64_t i = 0; i <= 1000; i++) state_bar_progress(&b, "export", i, 1000);
    state_bar_finish(&b);
    fclose(mem);
    int lines = 0;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    assert_int_equal(lines, 11);
    assert_non_null(strstr(text, "export [##########] 100% 1000/1000 rows\n"));
    free(text);
}

static void test_base64(void **state)
{
    (void)state;
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char enc[16] = {0};
        state_b64_encode((const unsigned char *)in[i], strlen(in[i]), enc);
        assert_string_equal(enc, out[i]);
        unsigned char dec[16] = {0};
        assert_int_equal(state_b64_decode(out[i], strlen(out[i]), dec), (long)strlen(in[i]));
        assert_memory_equal(dec, in[i], strlen(in[i]));
    }
    unsigned char d[16];
    assert_int_equal(state_b64_decode("Zm9", 3, d), -1);
    assert_int_equal(state_b64_decode("Zm=v", 4, d), -1);
    assert_int_equal(state_b64_decode("Z!9v", 4, d), -1);
}

int main(void)
{
    log_set_level(LOG_ERROR);
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        T(test_round_trip),
        T(test_overwrite_is_atomic_and_db_protected),
        T(test_tamper_detected),
        T(test_truncated_detected),
        T(test_version_refused),
        T(test_incompatible_tables_refused),
        T(test_path_confinement),
        cmocka_unit_test(test_default_name),
        cmocka_unit_test(test_progress_bar),
        cmocka_unit_test(test_base64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
