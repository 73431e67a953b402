/*
 * mem_reembed.c - rebuild embeddings with the current embedder
 * (`persona-mcp reembed`): after switching the embedder (another built-in
 * dimension, or Ollama / an OpenAI-compatible server), or to move a
 * collection of client-supplied vectors onto the server's model.
 *
 * Memories are read in pages by rowid, embedded (in batches, which remote
 * embedders answer in one request), and written back page by page through
 * the writer thread; each persona's memory_collections row is updated in
 * the transaction of its last page, so a collection never claims a model
 * its rows do not have. Loaded collections are dropped and reload lazily.
 */
#include <stdlib.h>
#include <string.h>

#include "memory/mem_embed.h"
#include "memory/mem_internal.h"

#define PAGE 256

typedef struct page {
    size_t n;
    int64_t seq[PAGE];
    char *persona[PAGE];
    char *content[PAGE];
    float *vecs;
    int dim;
} page;

static const char SQL_TARGETS[] =
    "SELECT m.persona_id, count(*) FROM memories m LEFT JOIN memory_collections c"
    " ON c.persona_id = m.persona_id WHERE (?1 IS NULL OR m.persona_id = ?1)"
    " AND (?2 OR c.model IS NULL OR c.model <> ?3) GROUP BY m.persona_id";
static const char SQL_PAGE[] = "SELECT seq, content FROM memories WHERE persona_id = ? AND seq > ?"
                               " ORDER BY seq LIMIT 256";
static const char SQL_SET_VEC[] = "UPDATE memories SET embedding = ? WHERE seq = ?";
static const char SQL_SET_COLL[] =
    "INSERT INTO memory_collections (persona_id, model, dim) VALUES (?1, ?2, ?3)"
    " ON CONFLICT (persona_id) DO UPDATE SET model = ?2, dim = ?3";

static void page_clear(page *p)
{
    for (size_t i = 0; i < p->n; i++) free(p->content[i]);
    p->n = 0;
}

static int read_page(mem_store *m, const char *pid, int64_t after, page *p)
{
    page_clear(p);
    store_conn *sc = store_pool_get(m->st);
    if (!sc) return SQLITE_BUSY;
    sqlite3_stmt *q = store_conn_stmt(sc, SQL_PAGE);
    int rc = SQLITE_ERROR;
    if (q) {
        sqlite3_bind_text(q, 1, pid, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, after);
        while ((rc = sqlite3_step(q)) == SQLITE_ROW && p->n < PAGE) {
            p->seq[p->n] = sqlite3_column_int64(q, 0);
            if (!(p->content[p->n++] = strdup((const char *)sqlite3_column_text(q, 1)))) abort();
        }
        sqlite3_reset(q);
    }
    store_pool_put(m->st, sc);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static int embed_page(mem_store *m, page *p, mem_err *e)
{
    if (!m->remote) {
        p->dim = m->cfg.dim;
        for (size_t i = 0; i < p->n; i++)
            mem_embed_builtin(p->content[i], strlen(p->content[i]), p->vecs + i * (size_t)p->dim,
                              p->dim);
        return 0;
    }
    char err[200];
    if (m->remote(m->remote_ctx, (const char *const *)p->content, p->n, p->vecs,
                  (size_t)PAGE * MEM_MAX_DIM, &p->dim, err, sizeof err) < 0)
        return mem_fail(e, -32002, "embedding failed: %s", err);
    for (size_t i = 0; i < p->n; i++) mem_normalize(p->vecs + i * (size_t)p->dim, p->dim);
    return 0;
}

typedef struct write_job {
    mem_store *m;
    const char *pid;
    page *p;
    bool last;
} write_job;

static int write_fn(store_conn *c, void *ctx)
{
    write_job *j = ctx;
    sqlite3_stmt *q = store_conn_stmt(c, SQL_SET_VEC);
    if (!q) return SQLITE_ERROR;
    for (size_t i = 0; i < j->p->n; i++) {
        sqlite3_bind_blob(q, 1, j->p->vecs + i * (size_t)j->p->dim,
                          (int)(sizeof(float) * (size_t)j->p->dim), SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, j->p->seq[i]);
        int rc = sqlite3_step(q);
        sqlite3_reset(q);
        if (rc != SQLITE_DONE) return rc;
    }
    if (!j->last) return SQLITE_OK;
    q = store_conn_stmt(c, SQL_SET_COLL);
    if (!q) return SQLITE_ERROR;
    sqlite3_bind_text(q, 1, j->pid, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, j->m->model, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 3, j->p->dim);
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

typedef void (*progress_fn)(void *ctx, const char *phase, uint64_t done, uint64_t total);

static int reembed_persona(mem_store *m, const char *pid, page *p, progress_fn progress, void *ctx,
                           int64_t *done, int64_t total, mem_err *e)
{
    int64_t after = 0;
    for (;;) {
        int rc = read_page(m, pid, after, p);
        if (rc != SQLITE_OK) return mem_fail(e, -32002, "reading memories failed (%d)", rc);
        bool last = p->n < PAGE;
        if (p->n && embed_page(m, p, e) < 0) return -1;
        write_job j = {m, pid, p, last};
        if (p->n || last) {
            rc = store_write(m->st, write_fn, &j);
            if (rc != SQLITE_OK && rc != SQLITE_DONE)
                return mem_fail(e, -32002, "writing embeddings failed (%d)", rc);
        }
        *done += (int64_t)p->n;
        if (progress) progress(ctx, "reembed", (uint64_t)*done, (uint64_t)total);
        if (last) break;
        after = p->seq[p->n - 1];
    }
    coll_forget(m, coll_get(m, pid));
    return 0;
}

int mem_reembed(mem_store *m, const char *persona_id, bool all, progress_fn progress, void *ctx,
                int64_t *changed, mem_err *e)
{
    *changed = 0;
    store_conn *sc = store_pool_get(m->st);
    if (!sc) return mem_fail(e, -32002, "database busy");
    sqlite3_stmt *q = store_conn_stmt(sc, SQL_TARGETS);
    char **pids = NULL;
    size_t n = 0;
    int64_t total = 0;
    if (persona_id)
        sqlite3_bind_text(q, 1, persona_id, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(q, 1);
    sqlite3_bind_int(q, 2, all);
    sqlite3_bind_text(q, 3, m->model, -1, SQLITE_STATIC);
    while (q && sqlite3_step(q) == SQLITE_ROW) {
        if (!(pids = realloc(pids, (n + 1) * sizeof *pids)) ||
            !(pids[n++] = strdup((const char *)sqlite3_column_text(q, 0))))
            abort();
        total += sqlite3_column_int64(q, 1);
    }
    if (q) sqlite3_reset(q);
    store_pool_put(m->st, sc);
    page *p = calloc(1, sizeof *p);
    if (!p || !(p->vecs = malloc(sizeof(float) * PAGE * MEM_MAX_DIM))) abort();
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = reembed_persona(m, pids[i], p, progress, ctx, changed, total, e);
    page_clear(p);
    free(p->vecs);
    free(p);
    for (size_t i = 0; i < n; i++) free(pids[i]);
    free(pids);
    return rc;
}
