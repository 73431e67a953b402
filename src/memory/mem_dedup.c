/*
 * mem_dedup.c - "is this exact content already stored for this persona?"
 * without a B-tree index on content hashes.
 *
 * An index on (persona_id, content_hash) puts every new row at a random
 * place in the index, so each stored memory dirtied one more page in the
 * WAL; measured, that index alone was a third of the writer's cost per row.
 * Instead the writer thread keeps, per persona, an open-addressing table
 * of (content hash -> seq) pairs, loaded on the persona's first write from
 * the covering index memories_persona (persona_id, seq, content_hash), an
 * append-only index, and extended by every insert and content update.
 *
 * The table is a filter that may say too much, never too little: it holds
 * every committed row's hash, plus entries of rows rolled back, deleted or
 * changed since (their seq no longer holds that content). A hash found is
 * confirmed by reading the row (seq, hash and content must all match), so
 * stale entries cost one primary-key lookup and are never believed.
 * Anything that writes memories rows by other means (a state import) calls
 * mem_dedup_reset() inside its write job, and the tables are loaded again.
 *
 * Threads: everything here runs on the writer thread (inside write jobs,
 * on the writer's connection), so there is no lock; mem_dedup_close() frees
 * the tables from a write job too. Memory: 16 bytes per memory of each
 * persona written to since start (32 at worst load), freed by
 * mem_dedup_reset() and mem_close().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "memory/mem_internal.h"

#define DD_BUCKETS 256

typedef struct dd_entry {
    uint64_t hash;
    int64_t seq; /* 0: empty slot (seq is an INTEGER PRIMARY KEY, >= 1) */
} dd_entry;

typedef struct dd_set {
    char *persona;
    dd_entry *e;
    size_t cap, n; /* cap a power of two; n <= cap / 2 */
    struct dd_set *next;
} dd_set;

struct mem_dedup {
    dd_set *buckets[DD_BUCKETS];
};

static const char SQL_LOAD[] = "SELECT content_hash, seq FROM memories WHERE persona_id = ?";
static const char SQL_CONFIRM[] =
    "SELECT id, importance FROM memories WHERE seq = ? AND content_hash = ? AND content = ?";

static void set_put(dd_set *s, uint64_t hash, int64_t seq);

static void set_grow(dd_set *s)
{
    dd_entry *old = s->e;
    size_t oldcap = s->cap;
    s->cap = oldcap ? oldcap * 2 : 64;
    s->e = calloc(s->cap, sizeof *s->e);
    if (!s->e) abort();
    s->n = 0;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].seq) set_put(s, old[i].hash, old[i].seq);
    free(old);
}

/* Add (hash, seq) unless that exact pair is there (a job run twice). */
static void set_put(dd_set *s, uint64_t hash, int64_t seq)
{
    if ((s->n + 1) * 2 > s->cap) set_grow(s);
    size_t mask = s->cap - 1, i = (size_t)hash & mask;
    for (; s->e[i].seq; i = (i + 1) & mask)
        if (s->e[i].hash == hash && s->e[i].seq == seq) return;
    s->e[i] = (dd_entry){hash, seq};
    s->n++;
}

static void set_free(dd_set *s)
{
    free(s->persona);
    free(s->e);
    free(s);
}

static dd_set *set_find(struct mem_dedup *d, const char *persona, size_t b)
{
    for (dd_set *s = d->buckets[b]; s; s = s->next)
        if (strcmp(s->persona, persona) == 0) return s;
    return NULL;
}

/* The persona's table, loaded through the writer's connection if new. */
static int set_get(mem_store *m, store_conn *c, const char *persona, dd_set **out)
{
    if (!m->dedup) {
        m->dedup = calloc(1, sizeof *m->dedup);
        if (!m->dedup) abort();
    }
    size_t b = (size_t)(util_hash64(persona, strlen(persona)) % DD_BUCKETS);
    if ((*out = set_find(m->dedup, persona, b))) return SQLITE_OK;
    sqlite3_stmt *q = store_conn_stmt(c, SQL_LOAD);
    if (!q) return SQLITE_ERROR;
    dd_set *s = calloc(1, sizeof *s);
    if (!s || !(s->persona = strdup(persona))) abort();
    set_grow(s);
    sqlite3_bind_text(q, 1, persona, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW)
        set_put(s, (uint64_t)sqlite3_column_int64(q, 0), sqlite3_column_int64(q, 1));
    sqlite3_reset(q);
    if (rc != SQLITE_DONE) {
        set_free(s);
        return rc;
    }
    s->next = m->dedup->buckets[b];
    m->dedup->buckets[b] = s;
    *out = s;
    return SQLITE_OK;
}

/* Is seq's row still this content? Fills id and importance when it is. */
static int confirm(store_conn *c, int64_t seq, uint64_t hash, const char *content, mem_added *out)
{
    sqlite3_stmt *q = store_conn_stmt(c, SQL_CONFIRM);
    if (!q) return SQLITE_ERROR;
    sqlite3_bind_int64(q, 1, seq);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)hash);
    sqlite3_bind_text(q, 3, content, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        snprintf(out->id, sizeof out->id, "%s", (const char *)sqlite3_column_text(q, 0));
        out->importance = sqlite3_column_double(q, 1); /* the stored memory's */
        out->duplicate = true;
    }
    sqlite3_reset(q);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int mem_dedup_find(mem_store *m, store_conn *c, const char *persona, uint64_t hash,
                   const char *content, mem_added *out)
{
    dd_set *s;
    int rc = set_get(m, c, persona, &s);
    if (rc != SQLITE_OK) return rc;
    size_t mask = s->cap - 1;
    for (size_t i = (size_t)hash & mask; s->e[i].seq && !out->duplicate; i = (i + 1) & mask) {
        if (s->e[i].hash != hash) continue;
        rc = confirm(c, s->e[i].seq, hash, content, out);
        if (rc != SQLITE_OK) return rc;
    }
    return SQLITE_OK;
}

void mem_dedup_note(mem_store *m, const char *persona, uint64_t hash, int64_t seq)
{
    if (!m->dedup) return; /* nothing loaded: a later load reads the row */
    size_t b = (size_t)(util_hash64(persona, strlen(persona)) % DD_BUCKETS);
    dd_set *s = set_find(m->dedup, persona, b);
    if (s) set_put(s, hash, seq);
}

static int reset_fn(store_conn *c, void *ctx)
{
    (void)c;
    mem_dedup_reset(ctx);
    return SQLITE_OK;
}

void mem_dedup_close(mem_store *m)
{
    /* As a write job: after every job queued before it, on the writer. */
    if (store_write(m->st, reset_fn, m) != SQLITE_OK) mem_dedup_reset(m); /* writer gone */
}

void mem_dedup_reset(mem_store *m)
{
    if (!m) return;
    m->next_seq = 0;        /* rows may have come in with their own seqs: read max(seq) again */
    m->rows_changed = true; /* INSERT OR REPLACE: the row cache is cleared after the commit */
    if (!m->dedup) return;
    for (int b = 0; b < DD_BUCKETS; b++) {
        while (m->dedup->buckets[b]) {
            dd_set *s = m->dedup->buckets[b];
            m->dedup->buckets[b] = s->next;
            set_free(s);
        }
    }
    free(m->dedup);
    m->dedup = NULL;
}
