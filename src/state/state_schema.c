/*
 * state_schema.c - which tables a state file holds, derived from the
 * database's own schema at run time (never a hard-coded list), so tables
 * added by later schema versions are exported and imported unchanged.
 *
 * Exportable: every ordinary table of the main schema (PRAGMA table_list
 * type 'table'), except SQLite's own (sqlite_*), virtual tables (type
 * 'virtual') and their shadow tables (type 'shadow', and, as a second
 * guard, any table named "<virtual table>_..."). The FTS5 index over
 * memories is such a virtual table; its insert triggers rebuild it as the
 * rows of `memories` are imported.
 *
 * Columns come from PRAGMA table_xinfo without hidden or generated columns
 * (those cannot be inserted). A column is "required" when it is NOT NULL,
 * has no default and is not the rowid alias: a file from an older schema
 * that lacks such a column cannot be imported.
 *
 * Order: parents before children by the foreign keys of PRAGMA
 * foreign_key_list (a stable topological sort, ties in creation order).
 * Import inserts in this order and deletes in the reverse one, so foreign
 * keys hold at every statement. A cycle (none exists today) falls back to
 * creation order for the tables involved.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/log.h"
#include "state/state_internal.h"

static const char SQL_TABLES[] = "SELECT l.name, l.type, l.wr FROM pragma_table_list AS l"
                                 " JOIN sqlite_schema AS s ON s.name = l.name AND s.type = 'table'"
                                 " WHERE l.schema = 'main' ORDER BY s.rowid";
static const char SQL_COLS[] =
    "SELECT name, hidden, \"notnull\", dflt_value IS NOT NULL, pk, upper(type)"
    " FROM pragma_table_xinfo(?1) ORDER BY cid";
static const char SQL_PARENTS[] = "SELECT DISTINCT \"table\" FROM pragma_foreign_key_list(?1)";

typedef struct raw_table {
    char name[STATE_NAME_MAX];
    bool without_rowid;
    char parents[8][STATE_NAME_MAX];
    int nparents;
} raw_table;

static int db_fail(state_err *e, store_conn *c, const char *what)
{
    return state_fail(e, STATE_EIO, "%s: %s", what, sqlite3_errmsg(store_conn_db(c)));
}

static int read_columns(store_conn *c, state_table *t, state_err *e)
{
    sqlite3_stmt *q = store_conn_stmt(c, SQL_COLS);
    if (!q) return db_fail(e, c, "reading table columns");
    sqlite3_bind_text(q, 1, t->name, -1, SQLITE_STATIC);
    int cap = 16, npk = 0, alias = -1, rc;
    t->cols = calloc((size_t)cap, sizeof *t->cols);
    if (!t->cols) abort();
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(q, 0);
        if (sqlite3_column_int(q, 4) > 0) {
            npk++;
            const char *type = (const char *)sqlite3_column_text(q, 5);
            if (type && strcmp(type, "INTEGER") == 0) alias = t->ncols;
        }
        if (sqlite3_column_int(q, 1) != 0) continue; /* hidden or generated */
        if (!name || strlen(name) >= STATE_NAME_MAX) {
            sqlite3_reset(q);
            return state_fail(e, STATE_EIO, "a column name of table %s is too long", t->name);
        }
        if (t->ncols == cap) {
            cap *= 2;
            t->cols = realloc(t->cols, (size_t)cap * sizeof *t->cols);
            if (!t->cols) abort();
        }
        state_column *col = &t->cols[t->ncols++];
        snprintf(col->name, sizeof col->name, "%s", name);
        col->required = sqlite3_column_int(q, 2) && !sqlite3_column_int(q, 3);
    }
    sqlite3_reset(q);
    if (rc != SQLITE_DONE) return db_fail(e, c, "reading table columns");
    if (npk == 1 && alias >= 0 && !t->without_rowid) t->cols[alias].required = false;
    return 0;
}

static int read_parents(store_conn *c, raw_table *t, state_err *e)
{
    sqlite3_stmt *q = store_conn_stmt(c, SQL_PARENTS);
    if (!q) return db_fail(e, c, "reading foreign keys");
    sqlite3_bind_text(q, 1, t->name, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *p = (const char *)sqlite3_column_text(q, 0);
        if (!p || t->nparents == 8 || strcasecmp(p, t->name) == 0) continue;
        snprintf(t->parents[t->nparents++], STATE_NAME_MAX, "%s", p);
    }
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? 0 : db_fail(e, c, "reading foreign keys");
}

static bool is_shadow_of(const char *name, char (*virt)[STATE_NAME_MAX], int nvirt)
{
    for (int i = 0; i < nvirt; i++) {
        size_t n = strlen(virt[i]);
        if (strncasecmp(name, virt[i], n) == 0 && name[n] == '_') return true;
    }
    return false;
}

/* The exportable tables in creation order. */
static int list_tables(store_conn *c, raw_table *raw, int *nraw, state_err *e)
{
    char(*vt)[STATE_NAME_MAX] = calloc(STATE_MAX_TABLES, STATE_NAME_MAX);
    if (!vt) abort();
    int nvirt = 0, n = 0, rc;
    sqlite3_stmt *q = store_conn_stmt(c, SQL_TABLES);
    if (!q) {
        free(vt);
        return db_fail(e, c, "listing tables");
    }
    raw_table *all = calloc(4 * STATE_MAX_TABLES, sizeof *all);
    if (!all) abort();
    int nall = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(q, 0);
        const char *type = (const char *)sqlite3_column_text(q, 1);
        if (!name || !type || strncasecmp(name, "sqlite_", 7) == 0) continue;
        if (strcmp(type, "virtual") == 0) {
            if (nvirt < STATE_MAX_TABLES) snprintf(vt[nvirt++], STATE_NAME_MAX, "%s", name);
            continue;
        }
        if (strcmp(type, "table") != 0) continue; /* shadow, view */
        if (nall == 4 * STATE_MAX_TABLES || strlen(name) >= STATE_NAME_MAX) {
            rc = SQLITE_FULL;
            break;
        }
        snprintf(all[nall].name, STATE_NAME_MAX, "%s", name);
        all[nall++].without_rowid = sqlite3_column_int(q, 2) != 0;
    }
    sqlite3_reset(q);
    int out = 0;
    if (rc == SQLITE_FULL)
        out = state_fail(e, STATE_EIO, "the database has too many tables or too long a name");
    else if (rc != SQLITE_DONE)
        out = db_fail(e, c, "listing tables");
    for (int i = 0; out == 0 && i < nall; i++) {
        if (is_shadow_of(all[i].name, vt, nvirt)) continue;
        if (n == STATE_MAX_TABLES) {
            out =
                state_fail(e, STATE_EIO, "the database has more than %d tables", STATE_MAX_TABLES);
            break;
        }
        raw[n++] = all[i];
    }
    free(all);
    free(vt);
    *nraw = n;
    return out;
}

static bool emitted(const state_schema *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcasecmp(s->t[i].name, name) == 0) return true;
    return false;
}

static bool exportable(const raw_table *raw, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcasecmp(raw[i].name, name) == 0) return true;
    return false;
}

static bool ready(const state_schema *s, const raw_table *raw, int n, const raw_table *t)
{
    for (int p = 0; p < t->nparents; p++)
        if (exportable(raw, n, t->parents[p]) && !emitted(s, t->parents[p])) return false;
    return true;
}

int state_schema_read(store_conn *c, state_schema *s, state_err *e)
{
    memset(s, 0, sizeof *s);
    raw_table *raw = calloc(STATE_MAX_TABLES, sizeof *raw);
    if (!raw) abort();
    int n = 0, rc = list_tables(c, raw, &n, e);
    for (int i = 0; rc == 0 && i < n; i++) rc = read_parents(c, &raw[i], e);
    bool done[STATE_MAX_TABLES] = {false};
    while (rc == 0 && s->n < n) {
        int pick = -1;
        for (int i = 0; i < n && pick < 0; i++)
            if (!done[i] && ready(s, raw, n, &raw[i])) pick = i;
        if (pick < 0) { /* a cycle: the first remaining table, in creation order */
            for (int i = 0; i < n && pick < 0; i++)
                if (!done[i]) pick = i;
            log_warn("state: foreign keys form a cycle", "table=\"%s\"", raw[pick].name);
        }
        done[pick] = true;
        state_table *t = &s->t[s->n++];
        snprintf(t->name, sizeof t->name, "%s", raw[pick].name);
        t->without_rowid = raw[pick].without_rowid;
        rc = read_columns(c, t, e);
    }
    free(raw);
    if (rc < 0) state_schema_free(s);
    return rc;
}

void state_schema_free(state_schema *s)
{
    for (int i = 0; i < s->n; i++) free(s->t[i].cols);
    s->n = 0;
}

const state_table *state_schema_find(const state_schema *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->t[i].name, name) == 0) return &s->t[i];
    return NULL;
}

int state_table_col(const state_table *t, const char *name)
{
    for (int i = 0; i < t->ncols; i++)
        if (strcmp(t->cols[i].name, name) == 0) return i;
    return -1;
}

bool state_sql_add(char *sql, size_t cap, size_t *len, const char *text)
{
    size_t n = strlen(text);
    if (*len + n + 1 > cap) return false;
    memcpy(sql + *len, text, n + 1);
    *len += n;
    return true;
}

bool state_sql_ident(char *sql, size_t cap, size_t *len, const char *name)
{
    size_t l = *len;
    if (l + 1 >= cap) return false;
    sql[l++] = '"';
    for (const char *p = name; *p; p++) {
        if (l + 3 >= cap) return false;
        if (*p == '"') sql[l++] = '"';
        sql[l++] = *p;
    }
    sql[l++] = '"';
    sql[l] = 0;
    *len = l;
    return true;
}
