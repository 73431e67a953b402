/*
 * mem_search.c - exact vector search over a persona's collection, hybrid
 * ranking with FTS5, cross-persona search and listing.
 *
 * The scan runs under the collection's read lock on the RAM arrays; the
 * matching rows' text and fields are then read from SQLite by rowid (a
 * handful of primary-key lookups). Filters (min_importance, memory_type,
 * visibility) become one keep-mask, so they always combine (spec §12 item
 * 16). Hybrid mode fuses the vector ranking with FTS5's BM25 ranking by
 * reciprocal rank fusion (k = 60). Every hit is counted as an access
 * (accessed_count, last_accessed) in RAM and written in batches
 * (mem_access.c): search latency does not wait for it, and pruning and decay
 * flush first, so they see real access data.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "lib/log.h"
#include "memory/mem_internal.h"
#include "memory/mem_scan.h"

#define RRF_K 60.0
#define MAX_K 1000
/* From this many rows the float32 scan no longer fits the caches well and
 * the half-precision prefilter (exact as well, mem_scan.c) is used. */
#define HALF_MIN_ROWS 256

typedef struct cand {
    int64_t seq;
    float score; /* cosine */
    double rank; /* ordering key (RRF or cosine) */
} cand;

static int cmp_cand(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->rank != y->rank) return x->rank > y->rank ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static const char SQL_ROW[] =
    "SELECT id, persona_id, content, memory_type, importance, emotional_valence,"
    " related_personas, visibility, metadata, created_at, accessed_count,"
    " coalesce(last_accessed, 0) FROM memories WHERE seq = ?";

static const char *col_dup(jarena *a, sqlite3_stmt *q, int i)
{
    const char *s = (const char *)sqlite3_column_text(q, i);
    return jarena_strndup(a, s ? s : "", (size_t)sqlite3_column_bytes(q, i));
}

static void read_row(sqlite3_stmt *q, jarena *a, mem_row *r)
{
    snprintf(r->id, sizeof r->id, "%s", (const char *)sqlite3_column_text(q, 0));
    r->persona_id = col_dup(a, q, 1);
    r->content = col_dup(a, q, 2);
    r->memory_type = col_dup(a, q, 3);
    r->importance = sqlite3_column_double(q, 4);
    r->emotional_valence = sqlite3_column_double(q, 5);
    r->related_json = col_dup(a, q, 6);
    r->visibility = col_dup(a, q, 7);
    r->metadata_json = col_dup(a, q, 8);
    r->created_at = sqlite3_column_double(q, 9);
    r->accessed_count = sqlite3_column_int64(q, 10);
    r->last_accessed = sqlite3_column_double(q, 11);
}

int mem_fetch_rows(mem_store *m, store_conn *sc, const int64_t *seqs, size_t n, jarena *a,
                   mem_row *out, size_t *got)
{
    (void)m;
    sqlite3_stmt *q = store_conn_stmt(sc, SQL_ROW);
    if (!q) return SQLITE_ERROR;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        sqlite3_bind_int64(q, 1, seqs[i]);
        int rc = sqlite3_step(q);
        if (rc == SQLITE_ROW) {
            out[k].seq = seqs[i];
            read_row(q, a, &out[k]);
            out[k++].similarity = 0; /* a search sets its own */
        }
        sqlite3_reset(q);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) return rc;
    }
    *got = k;
    return SQLITE_OK;
}

/* Rows missing from the row cache, in one read transaction (not one each: a
 * WAL read lock and a look at the wal-index per transaction); each is then
 * offered to the cache under the generation read before it began. */
static int fetch_misses(mem_store *m, uint64_t gen, const int64_t *seqs, size_t n, jarena *a,
                        mem_row *out, size_t *got)
{
    store_conn *sc = store_pool_get(m->st);
    if (!sc) return -1;
    bool txn = n > 1 && store_conn_exec(sc, "BEGIN") == SQLITE_OK;
    int rc = mem_fetch_rows(m, sc, seqs, n, a, out, got);
    if (txn) store_conn_exec(sc, "COMMIT");
    store_pool_put(m->st, sc);
    if (rc != SQLITE_OK) return rc;
    for (size_t i = 0; i < *got; i++) mem_rowcache_put(m->rows, gen, &out[i]);
    return SQLITE_OK;
}

/* Rows by seq in the order given (missing ones skipped), scores as their
 * similarity: from the row cache (mem_rowcache.c), the rest from SQLite. */
static int fetch_cached(mem_store *m, const int64_t *seqs, const float *scores, size_t n, jarena *a,
                        mem_row *out, size_t *got, mem_err *e)
{
    uint64_t gen = mem_rowcache_gen(m->rows); /* before any read transaction */
    mem_row *tmp = jarena_alloc(a, sizeof *tmp * n);
    bool *have = jarena_alloc(a, n);
    int64_t *miss = jarena_alloc(a, sizeof *miss * n);
    size_t nmiss = 0;
    for (size_t i = 0; i < n; i++)
        if (!(have[i] = mem_rowcache_get(m->rows, seqs[i], a, &tmp[i]))) miss[nmiss++] = seqs[i];
    if (nmiss) {
        mem_row *fetched = jarena_alloc(a, sizeof *fetched * nmiss);
        size_t nf = 0;
        int rc = fetch_misses(m, gen, miss, nmiss, a, fetched, &nf);
        if (rc < 0) return mem_fail(e, -32002, "database busy: no read connection available");
        if (rc != SQLITE_OK)
            return mem_fail(e, -32002, "reading memories failed (SQLite error %d)", rc);
        /* fetched keeps the order of miss, which keeps the order of seqs */
        for (size_t i = 0, f = 0; i < n && f < nf; i++)
            if (!have[i] && seqs[i] == fetched[f].seq) {
                tmp[i] = fetched[f++];
                have[i] = true;
            }
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (have[i]) {
            out[k] = tmp[i];
            out[k++].similarity = scores ? scores[i] : 0;
        }
    *got = k;
    return 0;
}

/* ---- one collection -------------------------------------------------------- */

/* Keep-mask from the filters; NULL when nothing is filtered. */
static uint8_t *build_mask(mem_store *m, const mem_coll *c, double min_imp, const char *type,
                           unsigned vis_mask, jarena *a, bool *none)
{
    *none = false;
    int tid = -1;
    if (type) {
        tid = mem_type_id(m, type, false);
        if (tid < 0) {
            *none = true; /* no memory has ever had this type */
            return NULL;
        }
    }
    bool vis_all = vis_mask == 0 || (vis_mask & MEM_VIS_ALL) == MEM_VIS_ALL;
    if (min_imp <= 0 && tid < 0 && vis_all) return NULL;
    uint8_t *keep = jarena_alloc(a, c->n ? c->n : 1);
    for (size_t r = 0; r < c->n; r++)
        keep[r] = (uint8_t)(c->importance[r] >= (float)min_imp - 1e-7f &&
                            (tid < 0 || c->type_id[r] == tid) &&
                            (vis_all || (vis_mask & (1u << c->vis[r]))));
    return keep;
}

/* Quote each alphanumeric token for an FTS5 OR query. */
static char *fts_query(const char *text, jarena *a)
{
    size_t len = strlen(text);
    char *q = jarena_alloc(a, len * 3 + 16);
    size_t o = 0;
    int tokens = 0;
    for (size_t i = 0; i < len && tokens < 32;) {
        while (i < len && !isalnum((unsigned char)text[i]) && (unsigned char)text[i] < 0x80) i++;
        size_t s = i;
        while (i < len && (isalnum((unsigned char)text[i]) || (unsigned char)text[i] >= 0x80)) i++;
        if (i == s) continue;
        if (tokens++) o += (size_t)sprintf(q + o, " OR ");
        q[o++] = '"';
        memcpy(q + o, text + s, i - s);
        o += i - s;
        q[o++] = '"';
    }
    q[o] = 0;
    return tokens ? q : NULL;
}

static const char SQL_FTS[] =
    "SELECT m.seq FROM memories_fts JOIN memories m ON m.seq = memories_fts.rowid"
    " WHERE memories_fts MATCH ?1 AND m.persona_id = ?2 ORDER BY bm25(memories_fts) LIMIT ?3";

/* Fuse: vector hits (ranked) and BM25 hits (ranked) -> RRF into cands. */
static size_t fuse_bm25(mem_coll *c, store_conn *sc, const char *text, const float *qv,
                        const uint8_t *keep, cand *cands, size_t nc, size_t cap, jarena *a)
{
    for (size_t i = 0; i < nc; i++) cands[i].rank = 1.0 / (RRF_K + (double)i + 1);
    char *fq = fts_query(text, a);
    sqlite3_stmt *q = fq ? store_conn_stmt(sc, SQL_FTS) : NULL;
    if (!q) return nc;
    sqlite3_bind_text(q, 1, fq, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, c->persona_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, (sqlite3_int64)cap);
    int rank = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(q, 0);
        long r = coll_find(c, seq);
        if (r < 0 || (keep && !keep[r])) continue;
        double add = 1.0 / (RRF_K + ++rank);
        size_t i = 0;
        while (i < nc && cands[i].seq != seq) i++;
        if (i == nc) {
            if (nc == cap) continue;
            cands[nc++] = (cand){seq, mem_dot(c->vecs + (size_t)r * (size_t)c->dim, qv, c->dim), 0};
        }
        cands[i].rank += add;
    }
    sqlite3_reset(q);
    return nc;
}

/* Scan one acquired collection; returns candidates (cosine-ranked). */
static size_t scan_coll(mem_store *m, mem_coll *c, const float *qv, size_t k, double min_imp,
                        const char *type, unsigned vis, cand *out, jarena *a)
{
    bool none;
    uint8_t *keep = build_mask(m, c, min_imp, type, vis, a, &none);
    if (none || c->n == 0) return 0;
    mem_hit *hits = jarena_alloc(a, sizeof *hits * k);
    size_t h;
    if (c->n >= HALF_MIN_ROWS && mem_half_ok(c->norm_max, qv, c->dim)) {
        float *scores = jarena_alloc(a, sizeof(float) * c->n);
        mem_split_half_scores(m->split, c->half, c->n, c->dim, qv, keep, scores);
        h = mem_topk_from_half(scores, c->vecs, c->n, c->dim, c->norm_max, qv, k, hits);
    } else {
        h = mem_topk(c->vecs, c->n, c->dim, qv, keep, k, hits);
    }
    for (size_t i = 0; i < h; i++)
        out[i] = (cand){c->seq[hits[i].row], hits[i].score, hits[i].score};
    return h;
}

static float clamp01(float s)
{
    return s < 0 ? 0 : (s > 1 ? 1 : s);
}

static int finish(mem_store *m, cand *cands, size_t nc, size_t k, bool access, jarena *a,
                  mem_row **rows, size_t *n, mem_err *e)
{
    qsort(cands, nc, sizeof *cands, cmp_cand);
    if (nc > k) nc = k;
    int64_t *seqs = jarena_alloc(a, sizeof *seqs * (nc ? nc : 1));
    float *scores = jarena_alloc(a, sizeof *scores * (nc ? nc : 1));
    for (size_t i = 0; i < nc; i++) {
        seqs[i] = cands[i].seq;
        scores[i] = clamp01(cands[i].score);
    }
    *rows = jarena_alloc(a, sizeof **rows * (nc ? nc : 1));
    *n = 0;
    if (!nc) return 0;
    if (fetch_cached(m, seqs, scores, nc, a, *rows, n, e) < 0) return -1;
    if (access) mem_record_access(m, *rows, *n);
    return 0;
}

static int check_query(const mem_query *q, mem_err *e)
{
    if (!q->persona_id || !*q->persona_id)
        return mem_fail(e, -32602, "Invalid params: 'persona_id' is required");
    if (!q->embedding && (!q->text || !*q->text))
        return mem_fail(e, -32602, "Invalid params: 'query' is required");
    if (q->k < 1 || q->k > MAX_K)
        return mem_fail(e, -32602, "Invalid params: 'n_results' must be between 1 and %d", MAX_K);
    return 0;
}

int mem_search(mem_store *m, const mem_query *q, jarena *a, mem_row **rows, size_t *n, mem_err *e)
{
    *rows = NULL;
    *n = 0;
    if (check_query(q, e) < 0) return -1;
    mem_coll *c = coll_get(m, q->persona_id);
    float *qv;
    int dim;
    char model[MEM_MODEL_LEN];
    if (mem_embed_for(m, c, q->text, q->embedding, q->embedding_dim, &qv, &dim, model, a, e) < 0)
        return -1;
    if (coll_acquire(m, c, e) < 0) return -1;
    /* The model is known for certain only once the collection is loaded. */
    if (c->model[0] && strcmp(c->model, model) != 0) {
        char have[MEM_MODEL_LEN];
        snprintf(have, sizeof have, "%s", c->model);
        coll_release(c);
        return mem_fail(e, -32002,
                        "Embedding model mismatch for persona %s: its memories use %s, this "
                        "request uses %s (pass embeddings of that model, or run persona-mcp "
                        "reembed)",
                        q->persona_id, have, model);
    }
    size_t cap = q->hybrid ? (q->k * 4 > 50 ? q->k * 4 : 50) : q->k;
    cand *cands = jarena_alloc(a, sizeof *cands * cap * 2);
    size_t nc = 0;
    if (c->dim == dim) {
        nc = scan_coll(m, c, qv, cap, q->min_importance, q->memory_type, q->vis_mask, cands, a);
        if (q->hybrid && q->text && c->n) {
            bool none;
            uint8_t *keep =
                build_mask(m, c, q->min_importance, q->memory_type, q->vis_mask, a, &none);
            store_conn *sc = none ? NULL : store_pool_get(m->st);
            if (sc && mem_fts_sync(m, sc) != SQLITE_OK) /* vector ranking alone, then */
                log_warn("full-text index not brought up to date", "persona=\"%s\"", c->persona_id);
            if (sc) {
                nc = fuse_bm25(c, sc, q->text, qv, keep, cands, nc, cap * 2, a);
                store_pool_put(m->st, sc);
            }
        }
    }
    coll_release(c);
    return finish(m, cands, nc, q->k, q->record_access, a, rows, n, e);
}

/* ---- cross-persona ----------------------------------------------------------- */

static const char SQL_SHARERS[] =
    "SELECT DISTINCT persona_id FROM memories WHERE visibility <> 'private' AND persona_id <> ?";

static size_t scan_other(mem_store *m, const char *pid, const mem_cross_query *q, unsigned vis,
                         const float *qv, int dim, cand *out, jarena *a)
{
    mem_coll *c = coll_get(m, pid);
    mem_err ignore;
    if (coll_acquire(m, c, &ignore) < 0) return 0;
    /* A collection built by another embedder cannot be compared: skip it. */
    bool same = strcmp(c->model, m->model) == 0 && c->dim == dim;
    size_t h = same ? scan_coll(m, c, qv, q->k, q->min_importance, NULL, vis, out, a) : 0;
    coll_release(c);
    return h;
}

int mem_search_cross(mem_store *m, const mem_cross_query *q, jarena *a, mem_row **rows, size_t *n,
                     mem_err *e)
{
    *rows = NULL;
    *n = 0;
    unsigned vis =
        (q->include_shared ? MEM_VIS_SHARED : 0) | (q->include_public ? MEM_VIS_PUBLIC : 0);
    if (!vis) return 0;
    store_conn *sc = store_pool_get(m->st);
    if (!sc) return mem_fail(e, -32002, "database busy: no read connection available");
    sqlite3_stmt *st = store_conn_stmt(sc, SQL_SHARERS);
    size_t np = 0, capp = 16;
    const char **pids = jarena_alloc(a, sizeof *pids * capp);
    pids[np++] = q->requester;
    sqlite3_bind_text(st, 1, q->requester, -1, SQLITE_STATIC);
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        if (np == capp) {
            const char **bigger = jarena_alloc(a, sizeof *pids * capp * 2);
            memcpy(bigger, pids, sizeof *pids * capp);
            pids = bigger;
            capp *= 2;
        }
        pids[np++] = col_dup(a, st, 0);
    }
    if (st) sqlite3_reset(st);
    store_pool_put(m->st, sc);
    float *qv;
    int dim;
    if (mem_embed_text(m, q->text, &qv, &dim, a, e) < 0) return -1; /* once, for all */
    cand *cands = jarena_alloc(a, sizeof *cands * q->k * np);
    size_t nc = 0;
    for (size_t i = 0; i < np; i++) nc += scan_other(m, pids[i], q, vis, qv, dim, cands + nc, a);
    return finish(m, cands, nc, q->k, true, a, rows, n, e);
}

static const char SQL_LIST[] =
    "SELECT seq FROM memories WHERE persona_id = ? ORDER BY created_at DESC, seq DESC"
    " LIMIT ? OFFSET ?";

int mem_list(mem_store *m, const char *persona_id, size_t offset, size_t limit, jarena *a,
             mem_row **rows, size_t *n, mem_err *e)
{
    *n = 0;
    *rows = jarena_alloc(a, sizeof **rows * (limit ? limit : 1));
    store_conn *sc = store_pool_get(m->st);
    if (!sc) return mem_fail(e, -32002, "database busy: no read connection available");
    sqlite3_stmt *q = store_conn_stmt(sc, SQL_LIST);
    int64_t *seqs = jarena_alloc(a, sizeof *seqs * (limit ? limit : 1));
    size_t k = 0;
    int rc = SQLITE_ERROR;
    if (q) {
        sqlite3_bind_text(q, 1, persona_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, (sqlite3_int64)limit);
        sqlite3_bind_int64(q, 3, (sqlite3_int64)offset);
        while ((rc = sqlite3_step(q)) == SQLITE_ROW && k < limit)
            seqs[k++] = sqlite3_column_int64(q, 0);
        sqlite3_reset(q);
        if (rc == SQLITE_DONE || rc == SQLITE_ROW) rc = mem_fetch_rows(m, sc, seqs, k, a, *rows, n);
    }
    store_pool_put(m->st, sc);
    return rc == SQLITE_OK ? 0
                           : mem_fail(e, -32002, "listing memories failed (SQLite error %d)", rc);
}
