/*
 * state.c - the state file format: export, verification, import (state.h,
 * docs/STATE.md).
 *
 * Export: one read transaction on a pool connection is the snapshot. The
 * table list comes from state_schema.c; rows are read with one dynamic
 * SELECT per table (identifiers come from the schema and are quoted) in
 * rowid order, serialised into a jw buffer and flushed to the temporary
 * file every MiB while FNV-1a 64 runs over every byte. Values keep their
 * SQLite storage class exactly: INTEGER as a JSON integer, REAL as a JSON
 * number that always reads back as a double (jw_double round-trips and
 * keeps ".0"), TEXT as a string, NULL as null; what JSON cannot hold is a
 * one-key object: BLOB {"b64":...}, TEXT that is not valid UTF-8
 * {"text_b64":...}, infinite REAL {"real":"inf"|"-inf"}.
 *
 * Import is two passes over the same descriptor:
 *   1. verify (calling thread, nothing changes): header (format, version,
 *      schema version not newer than ours, table and column lists), every
 *      line parses and every row names a declared table, has exactly its
 *      columns and only supported values (base64 decoded), the trailer's
 *      per-table and total counts, byte count and checksum match; then the
 *      file's tables and columns are checked against the database
 *      (unknown ones, or a required column the file lacks, are refused).
 *   2. apply (one job on the writer thread = one transaction): delete every
 *      row of every exportable table of the database, children first, then
 *      insert the file's rows in file order (parents first) with cached
 *      INSERT OR REPLACE statements (OR REPLACE: a row an insert trigger of
 *      a parent table created by default gives way to the file's row). The
 *      checksum is computed again while reading; if it differs from pass 1
 *      (the file changed in between) the job fails and rolls back.
 * After the commit the persona registry is reloaded and every memory
 * collection forgotten, so the RAM caches match the database.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/json.h"
#include "lib/jw.h"
#include "memory/memory.h"
#include "persona/persona.h"
#include "state/state_internal.h"

#define FLUSH_BYTES    (1u << 20)
#define PROGRESS_ROWS  1024u
#define PROGRESS_BYTES (4u << 20)

static const char SQL_BEGIN[] = "BEGIN";
static const char SQL_END[] = "COMMIT";
static const char SQL_USER_VERSION[] = "PRAGMA user_version";

static void progress(const state_opts *o, const char *phase, uint64_t done, uint64_t total)
{
    if (o && o->progress) o->progress(o->progress_ctx, phase, done, total);
}

void state_default_name(double epoch, char out[64])
{
    time_t s = (time_t)epoch;
    struct tm tm;
    gmtime_r(&s, &tm);
    long ms = lround((epoch - (double)s) * 1000.0);
    snprintf(out, 64, "state-%04d%02d%02dT%02d%02d%02d.%03ldZ.jsonl", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             ms < 0 ? 0 : (ms > 999 ? 999 : ms));
}

static void now_iso(char out[40])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, 40, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000);
}

/* ==== export ======================================================================= */

typedef struct ex_ctx {
    store_conn *c;
    const state_opts *o;
    state_err *e;
    state_schema sch;
    uint64_t counts[STATE_MAX_TABLES];
    uint64_t total, done;
    state_out out;
    jw w;
    char *b64;
    size_t b64cap;
} ex_ctx;

static int flush(ex_ctx *x)
{
    int rc = state_out_write(&x->out, jw_data(&x->w), jw_size(&x->w), true, x->e);
    jw_reset(&x->w);
    return rc;
}

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql, state_err *e)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &q, NULL) != SQLITE_OK) {
        state_fail(e, STATE_EIO, "preparing \"%.200s\" failed: %s", sql, sqlite3_errmsg(db));
        sqlite3_finalize(q);
        return NULL;
    }
    return q;
}

static int count_rows(ex_ctx *x, const state_table *t, uint64_t *out)
{
    char sql[512];
    size_t n = 0;
    if (!state_sql_add(sql, sizeof sql, &n, "SELECT count(*) FROM ") ||
        !state_sql_ident(sql, sizeof sql, &n, t->name))
        return state_fail(x->e, STATE_EIO, "table name too long: %s", t->name);
    sqlite3_stmt *q = prepare(store_conn_db(x->c), sql, x->e);
    if (!q) return -1;
    int rc = sqlite3_step(q);
    *out = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(q, 0) : 0;
    sqlite3_finalize(q);
    if (rc != SQLITE_ROW)
        return state_fail(x->e, STATE_EIO, "counting rows of %s failed: %s", t->name,
                          sqlite3_errstr(rc));
    return 0;
}

static void typed(ex_ctx *x, const char *kind, const void *data, size_t n)
{
    size_t need = state_b64_len(n);
    if (need > x->b64cap || !x->b64) {
        x->b64cap = need * 2 + 64;
        x->b64 = realloc(x->b64, x->b64cap);
        if (!x->b64) abort();
    }
    state_b64_encode(data, n, x->b64);
    jw_obj_begin(&x->w);
    jw_key(&x->w, kind);
    jw_strn(&x->w, x->b64, need);
    jw_obj_end(&x->w);
}

static void write_value(ex_ctx *x, sqlite3_stmt *q, int i)
{
    jw *w = &x->w;
    switch (sqlite3_column_type(q, i)) {
    case SQLITE_INTEGER:
        jw_int(w, sqlite3_column_int64(q, i));
        break;
    case SQLITE_FLOAT: {
        double d = sqlite3_column_double(q, i);
        if (isfinite(d)) {
            jw_double(w, d);
        } else {
            jw_obj_begin(w);
            jw_kstr(w, "real", d > 0 ? "inf" : "-inf");
            jw_obj_end(w);
        }
        break;
    }
    case SQLITE_TEXT: {
        const char *s = (const char *)sqlite3_column_text(q, i);
        size_t n = (size_t)sqlite3_column_bytes(q, i);
        if (jw_utf8_prefix(s, n) == n)
            jw_strn(w, s, n);
        else
            typed(x, "text_b64", s, n);
        break;
    }
    case SQLITE_BLOB: {
        const void *b = sqlite3_column_blob(q, i);
        size_t n = (size_t)sqlite3_column_bytes(q, i);
        typed(x, "b64", b ? b : "", n);
        break;
    }
    default:
        jw_null(w);
    }
}

static int export_table(ex_ctx *x, int ti)
{
    const state_table *t = &x->sch.t[ti];
    char sql[16384];
    size_t n = 0;
    bool ok = state_sql_add(sql, sizeof sql, &n, "SELECT ");
    for (int i = 0; ok && i < t->ncols; i++)
        ok = (i == 0 || state_sql_add(sql, sizeof sql, &n, ", ")) &&
             state_sql_ident(sql, sizeof sql, &n, t->cols[i].name);
    ok = ok && state_sql_add(sql, sizeof sql, &n, " FROM ") &&
         state_sql_ident(sql, sizeof sql, &n, t->name) &&
         (t->without_rowid || state_sql_add(sql, sizeof sql, &n, " ORDER BY rowid"));
    if (!ok) return state_fail(x->e, STATE_EIO, "table %s has too many columns", t->name);
    sqlite3_stmt *q = prepare(store_conn_db(x->c), sql, x->e);
    if (!q) return -1;
    jw prefix;
    jw_init(&prefix, 0, 256);
    jw_obj_begin(&prefix);
    jw_key(&prefix, "t");
    jw_str(&prefix, t->name);
    jw_key(&prefix, "r");
    jw_obj_begin(&prefix);
    int rc, out = 0;
    uint64_t rows = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        jw_append(&x->w, jw_data(&prefix), jw_size(&prefix));
        for (int i = 0; i < t->ncols; i++) {
            jw_keyn(&x->w, t->cols[i].name, strlen(t->cols[i].name));
            write_value(x, q, i);
        }
        jw_append(&x->w, "}}\n", 3);
        rows++;
        if (jw_size(&x->w) >= FLUSH_BYTES && (out = flush(x)) < 0) break;
        if (++x->done % PROGRESS_ROWS == 0) progress(x->o, "export", x->done, x->total);
    }
    if (out == 0 && rc != SQLITE_DONE)
        out = state_fail(x->e, STATE_EIO, "reading table %s failed: %s", t->name,
                         sqlite3_errmsg(store_conn_db(x->c)));
    sqlite3_finalize(q);
    jw_free(&prefix);
    x->counts[ti] = rows; /* the snapshot's count; equal to count(*) */
    return out;
}

static void write_header(ex_ctx *x, int schema_version, const char *created_at)
{
    jw *w = &x->w;
    jw_obj_begin(w);
    jw_kstr(w, "format", STATE_FORMAT_NAME);
    jw_kint(w, "version", STATE_FORMAT_VERSION);
    jw_kint(w, "schema_version", schema_version);
    jw_kstr(w, "created_at", created_at);
    jw_kstr(w, "generator", "persona-mcp " PMCP_VERSION);
    jw_key(w, "tables");
    jw_arr_begin(w);
    for (int i = 0; i < x->sch.n; i++) {
        const state_table *t = &x->sch.t[i];
        jw_obj_begin(w);
        jw_kstr(w, "name", t->name);
        jw_key(w, "columns");
        jw_arr_begin(w);
        for (int k = 0; k < t->ncols; k++) jw_str(w, t->cols[k].name);
        jw_arr_end(w);
        jw_obj_end(w);
    }
    jw_arr_end(w);
    jw_obj_end(w);
    jw_append(w, "\n", 1);
}

static int write_trailer(ex_ctx *x)
{
    if (flush(x) < 0) return -1;
    char hex[24];
    snprintf(hex, sizeof hex, "%016" PRIx64, x->out.fnv);
    jw *w = &x->w;
    jw_obj_begin(w);
    jw_kstr(w, "end", STATE_FORMAT_NAME);
    jw_key(w, "rows");
    jw_obj_begin(w);
    uint64_t total = 0;
    for (int i = 0; i < x->sch.n; i++) {
        jw_keyn(w, x->sch.t[i].name, strlen(x->sch.t[i].name));
        jw_int(w, (int64_t)x->counts[i]);
        total += x->counts[i];
    }
    jw_obj_end(w);
    jw_kint(w, "total_rows", (int64_t)total);
    jw_kint(w, "bytes", (int64_t)x->out.bytes);
    jw_kstr(w, "fnv1a64", hex);
    jw_obj_end(w);
    jw_append(w, "\n", 1);
    int rc = state_out_write(&x->out, jw_data(w), jw_size(w), false, x->e);
    jw_reset(w);
    return rc;
}

/* Refuse to replace the database (or its WAL, shared memory, journal). */
static int check_not_database(ex_ctx *x, state_target *t)
{
    struct stat ts, ds;
    if (fstatat(t->dirfd, t->base, &ts, 0) < 0) return 0; /* does not exist yet */
    const char *db = sqlite3_db_filename(store_conn_db(x->c), "main");
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
    for (int i = 0; db && *db && i < 4; i++) {
        char p[1100];
        snprintf(p, sizeof p, "%s%s", db, suffix[i]);
        if (stat(p, &ds) == 0 && ds.st_dev == ts.st_dev && ds.st_ino == ts.st_ino)
            return state_fail(x->e, STATE_EINVAL, "refusing to overwrite the database file %s",
                              t->display);
    }
    return 0;
}

static int read_user_version(store_conn *c, int *out, state_err *e)
{
    sqlite3_stmt *q = store_conn_stmt(c, SQL_USER_VERSION);
    int rc = q ? sqlite3_step(q) : SQLITE_ERROR;
    *out = rc == SQLITE_ROW ? sqlite3_column_int(q, 0) : 0;
    if (q) sqlite3_reset(q);
    return rc == SQLITE_ROW ? 0 : state_fail(e, STATE_EIO, "reading the schema version failed");
}

static int export_snapshot(ex_ctx *x, state_target *t, state_result *r)
{
    int schema_version;
    if (state_schema_read(x->c, &x->sch, x->e) < 0 ||
        read_user_version(x->c, &schema_version, x->e) < 0)
        return -1;
    for (int i = 0; i < x->sch.n; i++) {
        if (count_rows(x, &x->sch.t[i], &x->counts[i]) < 0) return -1;
        x->total += x->counts[i];
    }
    if (check_not_database(x, t) < 0 || state_out_open(&x->out, t, x->e) < 0) return -1;
    now_iso(r->created_at);
    write_header(x, schema_version, r->created_at);
    progress(x->o, "export", 0, x->total);
    for (int i = 0; i < x->sch.n; i++)
        if (export_table(x, i) < 0) return -1;
    if (write_trailer(x) < 0 || state_out_commit(&x->out, x->e) < 0) return -1;
    progress(x->o, "export", x->done, x->done);
    r->schema_version = schema_version;
    r->bytes = x->out.bytes;
    r->rows = x->done;
    r->ntables = (size_t)x->sch.n;
    for (int i = 0; i < x->sch.n; i++) {
        snprintf(r->tables[i].name, sizeof r->tables[i].name, "%s", x->sch.t[i].name);
        r->tables[i].rows = x->counts[i];
    }
    return 0;
}

int state_export(store *st, const char *path, const state_opts *o, state_result *r, state_err *e)
{
    memset(r, 0, sizeof *r);
    e->code = 0;
    e->msg[0] = 0;
    state_target t;
    if (state_target_open(&t, path, o ? o->confine_dir : NULL, e) < 0) return -1;
    snprintf(r->path, sizeof r->path, "%s", t.display);
    ex_ctx x = {.o = o, .e = e};
    x.out.fd = -1;
    x.c = store_pool_get(st);
    int rc = -1;
    if (!x.c) {
        state_fail(e, STATE_EIO, "database busy: no read connection available");
    } else if (store_conn_exec(x.c, SQL_BEGIN) != SQLITE_OK) {
        state_fail(e, STATE_EIO, "cannot begin a read transaction");
    } else {
        jw_init(&x.w, 0, FLUSH_BYTES + 65536);
        rc = export_snapshot(&x, &t, r);
        store_conn_exec(x.c, SQL_END);
        jw_free(&x.w);
    }
    if (rc < 0) state_out_abort(&x.out);
    if (x.c) store_pool_put(st, x.c);
    state_schema_free(&x.sch);
    free(x.b64);
    state_target_close(&t);
    return rc;
}

/* ==== reading a file ================================================================= */

typedef struct ftable {
    char name[STATE_NAME_MAX];
    int ncols;
    char (*cols)[STATE_NAME_MAX];
    uint64_t rows;
    sqlite3_stmt *ins; /* pass 2 */
} ftable;

typedef struct in_ctx {
    const state_opts *o;
    state_err *e;
    const char *display;
    int fd;
    uint64_t size;
    /* header */
    int schema_version;
    char created_at[40];
    int ntables;
    ftable t[STATE_MAX_TABLES];
    /* scan state */
    jarena a;
    uint64_t line, fnv, rows, body_bytes;
    uint64_t verified_fnv, verified_rows; /* pass 1 results, for pass 2 */
    uint64_t last_report;
    int last_table;
    sqlite3 *db; /* pass 2 */
    uint8_t *seen;
    mem_store *mem; /* may be NULL */
} in_ctx;

static int bad(in_ctx *x, const char *what, const char *detail)
{
    return state_fail(x->e, STATE_EINVAL, "%s: line %" PRIu64 ": %s%s%s", x->display, x->line, what,
                      detail ? ": " : "", detail ? detail : "");
}

static const jv *parse_line(in_ctx *x, const char *line, size_t len, size_t slack, bool nl)
{
    json_error err;
    jv *v = json_parse(&x->a, line, len, slack, 8, &err);
    if (!v) {
        if (!nl)
            state_fail(x->e, STATE_EINVAL,
                       "%s: truncated: the last line (%" PRIu64 ") is incomplete", x->display,
                       x->line);
        else
            bad(x, "not valid JSON", err.msg);
        return NULL;
    }
    if (v->type != JV_OBJECT) {
        bad(x, "not a JSON object", NULL);
        return NULL;
    }
    return v;
}

static bool is_int(const jv *v)
{
    return v && v->type == JV_INT;
}

static int parse_table_decl(in_ctx *x, const jv *d)
{
    const jv *name = jv_get(d, "name"), *cols = jv_get(d, "columns");
    if (!jv_is_str(name) || !cols || cols->type != JV_ARRAY || cols->len == 0)
        return bad(x, "header: every table needs a \"name\" and a non-empty \"columns\" list",
                   NULL);
    if (name->len == 0 || name->len >= STATE_NAME_MAX || strlen(name->u.s) != name->len)
        return bad(x, "header: invalid table name", name->u.s);
    for (int i = 0; i < x->ntables; i++)
        if (strcmp(x->t[i].name, name->u.s) == 0)
            return bad(x, "header: table listed twice", name->u.s);
    if (x->ntables == STATE_MAX_TABLES) return bad(x, "header: too many tables", NULL);
    ftable *t = &x->t[x->ntables++];
    snprintf(t->name, sizeof t->name, "%s", name->u.s);
    t->cols = calloc(cols->len, sizeof *t->cols);
    if (!t->cols) abort();
    for (uint32_t i = 0; i < cols->len; i++) {
        const jv *c = &cols->u.items[i];
        if (!jv_is_str(c) || c->len == 0 || c->len >= STATE_NAME_MAX || strlen(c->u.s) != c->len)
            return bad(x, "header: invalid column name in table", t->name);
        for (int k = 0; k < t->ncols; k++)
            if (strcmp(t->cols[k], c->u.s) == 0)
                return bad(x, "header: column listed twice", c->u.s);
        snprintf(t->cols[t->ncols++], STATE_NAME_MAX, "%s", c->u.s);
    }
    return 0;
}

static int parse_header(in_ctx *x, const jv *h)
{
    const jv *fmt = jv_get(h, "format");
    if (!jv_is_str(fmt) || strcmp(fmt->u.s, STATE_FORMAT_NAME) != 0)
        return state_fail(x->e, STATE_EINVAL,
                          "%s is not a persona-mcp state file (line 1 has no "
                          "\"format\":\"" STATE_FORMAT_NAME "\")",
                          x->display);
    const jv *ver = jv_get(h, "version"), *sv = jv_get(h, "schema_version");
    if (!is_int(ver)) return bad(x, "header: \"version\" must be an integer", NULL);
    if (ver->u.i != STATE_FORMAT_VERSION)
        return state_fail(x->e, STATE_EINVAL,
                          "%s: unsupported state file version %" PRId64
                          " (this build reads version %d)",
                          x->display, ver->u.i, STATE_FORMAT_VERSION);
    if (!is_int(sv) || sv->u.i < 1)
        return bad(x, "header: \"schema_version\" must be a positive integer", NULL);
    if (sv->u.i > store_schema_version)
        return state_fail(x->e, STATE_EINVAL,
                          "%s: the state file has schema version %" PRId64
                          ", newer than this build's %d (upgrade persona-mcp to load it)",
                          x->display, sv->u.i, store_schema_version);
    x->schema_version = (int)sv->u.i;
    const jv *at = jv_get(h, "created_at"), *tables = jv_get(h, "tables");
    if (!jv_is_str(at) || at->len >= sizeof x->created_at)
        return bad(x, "header: \"created_at\" must be a timestamp string", NULL);
    snprintf(x->created_at, sizeof x->created_at, "%s", at->u.s);
    if (!tables || tables->type != JV_ARRAY)
        return bad(x, "header: \"tables\" must be an array", NULL);
    for (uint32_t i = 0; i < tables->len; i++)
        if (parse_table_decl(x, &tables->u.items[i]) < 0) return -1;
    return 0;
}

/* One value: checked, and bound at index col + 1 when q is not NULL. */
static int take_value(in_ctx *x, sqlite3_stmt *q, int col, const jv *v, const ftable *t)
{
    int b = col + 1, rc = SQLITE_OK;
    switch (v->type) {
    case JV_NULL:
        if (q) rc = sqlite3_bind_null(q, b);
        break;
    case JV_INT:
        if (q) rc = sqlite3_bind_int64(q, b, v->u.i);
        break;
    case JV_DOUBLE:
        if (q) rc = sqlite3_bind_double(q, b, v->u.d);
        break;
    case JV_STRING:
        if (q) rc = sqlite3_bind_text(q, b, v->u.s, (int)v->len, SQLITE_STATIC);
        break;
    case JV_OBJECT: {
        const jv_member *m = v->len == 1 ? &v->u.members[0] : NULL;
        if (m && m->val.type == JV_STRING && strcmp(m->key, "real") == 0) {
            bool pos = strcmp(m->val.u.s, "inf") == 0, neg = strcmp(m->val.u.s, "-inf") == 0;
            if (!pos && !neg) break;
            if (q) rc = sqlite3_bind_double(q, b, pos ? INFINITY : -INFINITY);
            return rc == SQLITE_OK ? 0 : bad(x, "binding a value failed", t->name);
        }
        bool blob = m && strcmp(m->key, "b64") == 0;
        bool text = m && strcmp(m->key, "text_b64") == 0;
        if (!(blob || text) || m->val.type != JV_STRING) break;
        unsigned char *buf = jarena_alloc(&x->a, m->val.len / 4 * 3 + 1);
        long n = state_b64_decode(m->val.u.s, m->val.len, buf);
        if (n < 0) return bad(x, "invalid base64 in a value of table", t->name);
        if (q && blob) rc = sqlite3_bind_blob(q, b, buf, (int)n, SQLITE_STATIC);
        if (q && text) rc = sqlite3_bind_text(q, b, (const char *)buf, (int)n, SQLITE_STATIC);
        return rc == SQLITE_OK ? 0 : bad(x, "binding a value failed", t->name);
    }
    default:
        break;
    }
    if (rc != SQLITE_OK) return bad(x, "binding a value failed", t->name);
    if (v->type == JV_BOOL || v->type == JV_ARRAY || v->type == JV_OBJECT) {
        char what[STATE_NAME_MAX * 2 + 8];
        snprintf(what, sizeof what, "%s.%s", t->name, t->cols[col]);
        return bad(x, "unsupported value for column", what);
    }
    return 0;
}

static int find_table(in_ctx *x, const jv *name)
{
    if (x->last_table >= 0 && strcmp(x->t[x->last_table].name, name->u.s) == 0)
        return x->last_table;
    for (int i = 0; i < x->ntables; i++)
        if (strcmp(x->t[i].name, name->u.s) == 0) return x->last_table = i;
    return -1;
}

static int take_row(in_ctx *x, const jv *row)
{
    const jv *tn = jv_get(row, "t"), *r = jv_get(row, "r");
    if (row->len != 2 || !jv_is_str(tn) || !r || r->type != JV_OBJECT)
        return bad(x, "a row line must be {\"t\":<table>,\"r\":{<column>:<value>,...}}", NULL);
    int ti = find_table(x, tn);
    if (ti < 0) return bad(x, "row of a table the header does not declare", tn->u.s);
    ftable *t = &x->t[ti];
    if ((int)r->len != t->ncols) return bad(x, "row does not have every column of table", t->name);
    memset(x->seen, 0, (size_t)t->ncols);
    sqlite3_stmt *q = t->ins;
    for (uint32_t i = 0; i < r->len; i++) {
        const jv_member *m = &r->u.members[i];
        int col = (int)i;
        if (strcmp(m->key, t->cols[i]) != 0) { /* not in header order: look it up */
            col = -1;
            for (int k = 0; k < t->ncols && col < 0; k++)
                if (strcmp(m->key, t->cols[k]) == 0) col = k;
        }
        if (col < 0 || x->seen[col])
            return bad(x, "unknown or repeated column in a row of", t->name);
        x->seen[col] = 1;
        if (take_value(x, q, col, &m->val, t) < 0) return -1;
    }
    t->rows++;
    x->rows++;
    if (!q) return 0;
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    if (rc != SQLITE_DONE) {
        char why[STATE_NAME_MAX + 200];
        snprintf(why, sizeof why, "%s: %s", t->name, sqlite3_errmsg(x->db));
        return bad(x, "the database refused the row", why);
    }
    return 0;
}

static int check_trailer(in_ctx *x, const jv *tr)
{
    const jv *end = jv_get(tr, "end"), *rows = jv_get(tr, "rows");
    const jv *total = jv_get(tr, "total_rows"), *bytes = jv_get(tr, "bytes");
    const jv *sum = jv_get(tr, "fnv1a64");
    if (!jv_is_str(end) || strcmp(end->u.s, STATE_FORMAT_NAME) != 0 || !rows ||
        rows->type != JV_OBJECT || !is_int(total) || !is_int(bytes) || !jv_is_str(sum))
        return bad(x, "malformed trailer (needs end, rows, total_rows, bytes, fnv1a64)", NULL);
    if ((int)rows->len != x->ntables)
        return bad(x, "trailer: the row counts do not list every table", NULL);
    for (uint32_t i = 0; i < rows->len; i++) {
        const jv_member *m = &rows->u.members[i];
        int ti = -1;
        for (int k = 0; k < x->ntables && ti < 0; k++)
            if (strcmp(x->t[k].name, m->key) == 0) ti = k;
        if (ti < 0 || !is_int(&m->val)) return bad(x, "trailer: bad row count entry", m->key);
        if ((uint64_t)m->val.u.i != x->t[ti].rows)
            return state_fail(x->e, STATE_EINVAL,
                              "%s: row count mismatch for table %s: the trailer says %" PRId64
                              ", the file holds %" PRIu64 " (truncated or modified)",
                              x->display, m->key, m->val.u.i, x->t[ti].rows);
    }
    if ((uint64_t)total->u.i != x->rows || (uint64_t)bytes->u.i != x->body_bytes)
        return state_fail(x->e, STATE_EINVAL,
                          "%s: the trailer's totals (%" PRId64 " rows, %" PRId64
                          " bytes) do not match the file (%" PRIu64 " rows, %" PRIu64 " bytes)",
                          x->display, total->u.i, bytes->u.i, x->rows, x->body_bytes);
    char hex[24];
    snprintf(hex, sizeof hex, "%016" PRIx64, x->fnv);
    if (strcmp(hex, sum->u.s) != 0)
        return state_fail(x->e, STATE_EINVAL,
                          "%s: checksum mismatch: the file is corrupt or was modified "
                          "(trailer fnv1a64 %.20s, computed %s)",
                          x->display, sum->u.s, hex);
    return 0;
}

/* One pass over the file. apply = false: verify (pass 1); true: insert
 * through the prepared statements (pass 2), the header already known. */
static int scan(in_ctx *x, bool apply)
{
    state_in in;
    if (state_in_init(&in, x->fd, x->e) < 0) return -1;
    x->line = 0;
    x->fnv = STATE_FNV_INIT;
    x->rows = x->body_bytes = x->last_report = 0;
    x->last_table = -1;
    for (int i = 0; i < x->ntables; i++) x->t[i].rows = 0;
    if (!apply) progress(x->o, "verify", 0, x->size);
    const char *line;
    size_t len, slack;
    bool nl, ended = false;
    int rc, out = 0;
    while (out == 0 && (rc = state_in_line(&in, &line, &len, &slack, &nl, x->e)) == 1) {
        x->line++;
        jarena_reset(&x->a);
        if (ended) {
            out = bad(x, "data after the trailer", NULL);
            break;
        }
        const jv *v = NULL;
        if (!(apply && x->line == 1) && !(v = parse_line(x, line, len, slack, nl))) {
            if (x->line == 1)
                state_fail(x->e, STATE_EINVAL,
                           "%s is not a persona-mcp state file (line 1 is "
                           "not a JSON object)",
                           x->display);
            out = -1;
            break;
        }
        if (x->line == 1) {
            if (!apply && (out = parse_header(x, v)) < 0) break;
            if (!apply) {
                int most = 1;
                for (int i = 0; i < x->ntables; i++)
                    if (x->t[i].ncols > most) most = x->t[i].ncols;
                x->seen = calloc((size_t)most, 1);
                if (!x->seen) abort();
            }
        } else if (jv_get(v, "end")) {
            out = apply ? 0 : check_trailer(x, v);
            if (apply && (x->fnv != x->verified_fnv || x->rows != x->verified_rows))
                out = state_fail(x->e, STATE_EINVAL, "%s changed while it was being imported",
                                 x->display);
            ended = true;
            continue;
        } else if (!nl) {
            out = state_fail(x->e, STATE_EINVAL,
                             "%s: truncated: the last line (%" PRIu64 ") is incomplete", x->display,
                             x->line);
            break;
        } else if ((out = take_row(x, v)) < 0) {
            break;
        }
        x->fnv = state_fnv(x->fnv, line, len);
        x->fnv = state_fnv(x->fnv, "\n", 1);
        x->body_bytes += len + 1;
        if (apply && x->rows % PROGRESS_ROWS == 0 && x->rows)
            progress(x->o, "import", x->rows, x->verified_rows);
        if (!apply && in.offset - x->last_report >= PROGRESS_BYTES) {
            x->last_report = in.offset;
            progress(x->o, "verify", in.offset, x->size);
        }
    }
    if (out == 0 && rc < 0) out = -1;
    if (out == 0 && x->line == 0)
        out =
            state_fail(x->e, STATE_EINVAL, "%s is empty: not a persona-mcp state file", x->display);
    if (out == 0 && !ended)
        out = state_fail(x->e, STATE_EINVAL,
                         "%s: truncated: no trailer line (the file ends after line %" PRIu64 ")",
                         x->display, x->line);
    state_in_free(&in);
    if (out == 0 && !apply) {
        x->verified_fnv = x->fnv;
        x->verified_rows = x->rows;
        progress(x->o, "verify", x->size, x->size);
    }
    if (out == 0 && apply) progress(x->o, "import", x->rows, x->verified_rows);
    return out;
}

static void in_free(in_ctx *x)
{
    for (int i = 0; i < x->ntables; i++) {
        free(x->t[i].cols);
        sqlite3_finalize(x->t[i].ins);
    }
    free(x->seen);
    jarena_free(&x->a);
    if (x->fd >= 0) close(x->fd);
}

static void fill_result(const in_ctx *x, state_result *r)
{
    r->schema_version = x->schema_version;
    snprintf(r->created_at, sizeof r->created_at, "%s", x->created_at);
    r->bytes = x->size;
    r->rows = x->verified_rows;
    r->ntables = (size_t)x->ntables;
    for (int i = 0; i < x->ntables; i++) {
        snprintf(r->tables[i].name, sizeof r->tables[i].name, "%s", x->t[i].name);
        r->tables[i].rows = x->t[i].rows;
    }
}

/* Open and verify (pass 1). */
static int open_verified(in_ctx *x, const char *path, const state_opts *o, state_result *r,
                         state_err *e)
{
    memset(r, 0, sizeof *r);
    memset(x, 0, sizeof *x);
    e->code = 0;
    e->msg[0] = 0;
    x->o = o;
    x->e = e;
    x->fd = -1;
    jarena_init(&x->a);
    state_target t;
    if (state_target_open(&t, path, o ? o->confine_dir : NULL, e) < 0) return -1;
    snprintf(r->path, sizeof r->path, "%s", t.display);
    x->display = r->path;
    x->fd = state_target_read(&t, &x->size, e);
    state_target_close(&t);
    if (x->fd < 0) return -1;
    if (scan(x, false) < 0) return -1;
    fill_result(x, r);
    return 0;
}

int state_verify(const char *path, const state_opts *o, state_result *r, state_err *e)
{
    in_ctx x;
    int rc = open_verified(&x, path, o, r, e);
    in_free(&x);
    return rc;
}

/* ==== import ======================================================================== */

/* The file's tables and columns must exist here; our required ones must be
 * in the file. */
static int check_compatible(in_ctx *x, const state_schema *db)
{
    for (int i = 0; i < x->ntables; i++) {
        const ftable *f = &x->t[i];
        const state_table *t = state_schema_find(db, f->name);
        if (!t)
            return state_fail(x->e, STATE_EINVAL,
                              "%s: table %s of the state file does not exist in this database",
                              x->display, f->name);
        for (int k = 0; k < f->ncols; k++)
            if (state_table_col(t, f->cols[k]) < 0)
                return state_fail(x->e, STATE_EINVAL,
                                  "%s: column %s.%s of the state file does not exist in this "
                                  "database",
                                  x->display, f->name, f->cols[k]);
        for (int k = 0; k < t->ncols; k++) {
            bool have = false;
            for (int j = 0; j < f->ncols && !have; j++) have = !strcmp(f->cols[j], t->cols[k].name);
            if (t->cols[k].required && !have)
                return state_fail(x->e, STATE_EINVAL,
                                  "%s: column %s.%s is required by this database but missing "
                                  "from the state file",
                                  x->display, f->name, t->cols[k].name);
        }
    }
    return 0;
}

static int exec_sql(sqlite3 *db, const char *sql, state_err *e)
{
    sqlite3_stmt *q = prepare(db, sql, e);
    if (!q) return SQLITE_ERROR;
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW) return SQLITE_OK;
    state_fail(e, STATE_EIO, "\"%.200s\" failed: %s", sql, sqlite3_errstr(rc));
    return rc;
}

static int delete_all(sqlite3 *db, const state_schema *s, state_err *e)
{
    for (int i = s->n - 1; i >= 0; i--) {
        char sql[512];
        size_t n = 0;
        if (!state_sql_add(sql, sizeof sql, &n, "DELETE FROM ") ||
            !state_sql_ident(sql, sizeof sql, &n, s->t[i].name))
            return SQLITE_TOOBIG;
        int rc = exec_sql(db, sql, e);
        if (rc != SQLITE_OK) return rc;
    }
    return SQLITE_OK;
}

static int prepare_inserts(in_ctx *x)
{
    for (int i = 0; i < x->ntables; i++) {
        ftable *t = &x->t[i];
        char *sql = malloc(16384);
        if (!sql) abort();
        size_t n = 0;
        bool ok = state_sql_add(sql, 16384, &n, "INSERT OR REPLACE INTO ") &&
                  state_sql_ident(sql, 16384, &n, t->name) && state_sql_add(sql, 16384, &n, " (");
        for (int k = 0; ok && k < t->ncols; k++)
            ok = (k == 0 || state_sql_add(sql, 16384, &n, ", ")) &&
                 state_sql_ident(sql, 16384, &n, t->cols[k]);
        ok = ok && state_sql_add(sql, 16384, &n, ") VALUES (");
        for (int k = 0; ok && k < t->ncols; k++) ok = state_sql_add(sql, 16384, &n, k ? ",?" : "?");
        ok = ok && state_sql_add(sql, 16384, &n, ")");
        if (ok) t->ins = prepare(x->db, sql, x->e);
        free(sql);
        if (!ok) return state_fail(x->e, STATE_EINVAL, "table %s has too many columns", t->name);
        if (!t->ins) return -1;
    }
    return 0;
}

/* The write job: one transaction on the writer thread. */
static int import_fn(store_conn *c, void *ctx)
{
    in_ctx *x = ctx;
    x->db = store_conn_db(c);
    mem_dedup_reset(x->mem); /* rows are about to be replaced behind mem_add */
    state_schema db;
    if (state_schema_read(c, &db, x->e) < 0) return SQLITE_ERROR;
    int rc = delete_all(x->db, &db, x->e);
    state_schema_free(&db);
    if (rc != SQLITE_OK) return rc;
    progress(x->o, "import", 0, x->verified_rows);
    if (prepare_inserts(x) < 0 || scan(x, true) < 0) rc = SQLITE_ABORT;
    for (int i = 0; i < x->ntables; i++) {
        sqlite3_finalize(x->t[i].ins);
        x->t[i].ins = NULL;
    }
    return rc;
}

static int check_against_db(store *st, in_ctx *x)
{
    store_conn *c = store_pool_get(st);
    if (!c) return state_fail(x->e, STATE_EIO, "database busy: no read connection available");
    state_schema db;
    int rc = state_schema_read(c, &db, x->e);
    store_pool_put(st, c);
    if (rc < 0) return -1;
    rc = check_compatible(x, &db);
    state_schema_free(&db);
    return rc;
}

int state_import(store *st, persona_reg *reg, mem_store *mem, const char *path, const state_opts *o,
                 state_result *r, state_err *e)
{
    in_ctx x;
    int rc = open_verified(&x, path, o, r, e);
    if (rc == 0) rc = check_against_db(st, &x);
    x.mem = mem;
    if (rc == 0) {
        int src = store_write(st, import_fn, &x);
        if (src != SQLITE_OK && src != SQLITE_DONE) {
            if (!e->code)
                state_fail(e, STATE_EIO, "importing %s failed: %s", r->path, sqlite3_errstr(src));
            rc = -1;
        }
    }
    in_free(&x);
    if (rc < 0) return -1;
    /* Committed: the caches must now follow the database. */
    if (mem) mem_forget_all(mem);
    if (reg && persona_reg_reload(reg, st) < 0)
        return state_fail(e, STATE_EIO,
                          "%s was imported, but reloading the personas failed (restart the "
                          "server)",
                          r->path);
    return 0;
}
