/*
 * memory.h - long-term memory of personas: store, search, maintain.
 *
 * SQLite (table `memories`) is the one store of record; every write goes
 * through the store's writer thread and is acknowledged after commit. For
 * search, each persona's embeddings and the fields ranking filters need
 * (importance, type, visibility) are loaded into RAM on first use (a
 * "collection") and kept in step after every commit. Collections are a
 * cache: statistics, cross-persona search, pruning and decay read SQLite or
 * load what they need, so nothing is missed after a restart. Cold
 * collections are evicted under a byte budget.
 *
 * Threads: every function here may block (SQLite, scans) and must run on a
 * worker thread, never on the service thread.
 * Ownership: rows returned by searches live in the caller's arena.
 */
#ifndef PMCP_MEMORY_H
#define PMCP_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/json.h"
#include "memory/mem_policy.h"
#include "memory/mem_score.h"

struct store;
struct jw;

typedef struct mem_config {
    int dim;             /* built-in embedder dimension (default 384) */
    size_t budget_bytes; /* resident collections (default 1 GiB) */
    mem_weights weights;
    prune_config prune;
    decay_config decay;
    bool decay_autostart; /* start the background decay loop at boot */
    int access_flush_ms;  /* search hits reach SQLite within this (default 1000) */
} mem_config;

void mem_config_default(mem_config *c);

typedef struct mem_store mem_store;

typedef struct mem_err {
    int code; /* a JSON-RPC code: -32602 bad input, -32002 memory error */
    char msg[256];
} mem_err;

int mem_open(mem_store **out, struct store *st, const mem_config *cfg, char *err, size_t errlen);
void mem_close(mem_store *m);

/* ---- store ------------------------------------------------------------------ */

typedef struct mem_item {
    const char *persona_id;
    const char *content;
    const char *memory_type;     /* default "user_input" */
    double importance;           /* used unless auto_importance */
    bool auto_importance;        /* score with mem_importance() */
    const mem_interest *speaker; /* for auto scoring; may be NULL */
    double emotional_valence;
    const char *related_json;  /* JSON array of strings, default "[]" */
    const char *visibility;    /* private|shared|public */
    const char *metadata_json; /* JSON object, default "{}" */
    const float *embedding;    /* client-supplied; NULL = built-in embedder */
    int embedding_dim;
    bool user_chat; /* score in the user-chat context (spec §6.1) */
} mem_item;

typedef struct mem_added {
    char id[40];
    bool duplicate; /* the same content was already stored: id is the old one */
    double importance;
} mem_added;

/* Store n memories in one transaction (all or nothing). */
int mem_add(mem_store *m, const mem_item *items, size_t n, mem_added *out, mem_err *e);

/* The same, without waiting for the commit: embeds and scores the items
 * here (a bad item returns -1 with e, and done is never called), then
 * returns; done(rc, out, n, e, ctx) runs on the writer thread once the
 * transaction committed (rc 0) or failed (rc -1, e says why). The items are
 * copied: they need not outlive the call. */
typedef void (*mem_add_done)(int rc, const mem_added *out, size_t n, const mem_err *e, void *ctx);
int mem_add_async(mem_store *m, const mem_item *items, size_t n, mem_add_done done, void *ctx,
                  mem_err *e);

typedef struct mem_patch {
    const char *content; /* NULL = unchanged (re-embedded when changed) */
    const char *memory_type;
    bool set_importance;
    double importance;
    const char *visibility;
    const char *metadata_json;
    bool set_valence;
    double emotional_valence;
} mem_patch;

/* 0 ok, 1 no such memory, -1 error in e. */
int mem_update(mem_store *m, const char *id, const mem_patch *p, char *persona_out, size_t n,
               mem_err *e);
int mem_delete(mem_store *m, const char *id, char *persona_out, size_t n, mem_err *e);
/* Drop a persona's collection from RAM (after its rows were deleted). */
void mem_forget_persona(mem_store *m, const char *persona_id);
/* Drop every collection from RAM (after the table was replaced by a state
 * import); each reloads from SQLite on next use. */
void mem_forget_all(mem_store *m);
/* Write the search hits counted in RAM (accessed_count, last_accessed) to
 * SQLite now; returns once committed. Blocks: workers only. */
void mem_access_flush(mem_store *m);
/* Index every memory still queued for full-text indexing (committed rows
 * are indexed in bulk, shortly after their commit; hybrid search calls
 * this itself). Blocks on the writer. Returns 0, or -1 if SQLite failed. */
int mem_fts_flush(mem_store *m);
/* Forget the duplicate filter's content hashes (mem_dedup.c) and the next
 * seq to insert, and empty the row cache once this job's group commits.
 * Call on the writer thread, inside a write job that inserts memories rows
 * other than through mem_add (a state import); all are read from SQLite
 * again. */
void mem_dedup_reset(mem_store *m);
/* Drop the hits counted in RAM without writing them (state import). */
void mem_access_discard(mem_store *m);

/* ---- search ----------------------------------------------------------------- */

enum { MEM_VIS_PRIVATE = 1, MEM_VIS_SHARED = 2, MEM_VIS_PUBLIC = 4, MEM_VIS_ALL = 7 };

typedef struct mem_query {
    const char *persona_id;
    const char *text;
    const float *embedding; /* instead of text */
    int embedding_dim;
    size_t k;
    double min_importance;
    const char *memory_type; /* NULL = any */
    unsigned vis_mask;       /* MEM_VIS_*; 0 = all */
    bool hybrid;             /* fuse FTS5 BM25 with the vector ranking */
    bool record_access;      /* count the hits as accesses (default true) */
} mem_query;

typedef struct mem_row {
    int64_t seq;
    char id[40];
    const char *persona_id;
    const char *content;
    const char *memory_type;
    double importance, emotional_valence, similarity;
    const char *related_json;
    const char *visibility;
    const char *metadata_json;
    double created_at, last_accessed;
    int64_t accessed_count;
} mem_row;

int mem_search(mem_store *m, const mem_query *q, jarena *a, mem_row **rows, size_t *n, mem_err *e);

/* Count rows from a search made with record_access = false as accessed
 * (in RAM, written in batches, as record_access does). For callers with
 * something more urgent to do first: chat starts its backend request. */
void mem_record_access(mem_store *m, const mem_row *rows, size_t n);

typedef struct mem_cross_query {
    const char *requester;
    const char *text;
    size_t k;
    double min_importance;
    bool include_shared, include_public;
} mem_cross_query;

int mem_search_cross(mem_store *m, const mem_cross_query *q, jarena *a, mem_row **rows, size_t *n,
                     mem_err *e);

/* Every memory of a persona, most recent first, paginated (for resources). */
int mem_list(mem_store *m, const char *persona_id, size_t offset, size_t limit, jarena *a,
             mem_row **rows, size_t *n, mem_err *e);

/* ---- statistics and maintenance ------------------------------------------- */

/* memory.stats object for a persona (spec §2.5), from the collection's
 * aggregates (loading it if needed). */
int mem_write_stats(mem_store *m, const char *persona_id, struct jw *w, mem_err *e);
/* True when mem_write_stats() would not touch SQLite (collection loaded):
 * the service thread may then call it inline. Never blocks for long. */
bool mem_stats_ready(mem_store *m, const char *persona_id);
/* True when a text search of persona_id's memories would neither load its
 * collection nor call a remote embedder: only the k rows may be read, from
 * the row cache or (on a miss) SQLite. */
bool mem_search_ready(mem_store *m, const char *persona_id);
int mem_write_shared_stats(mem_store *m, struct jw *w, mem_err *e);
void mem_write_collection_metrics(mem_store *m, struct jw *w); /* Prometheus text */

typedef struct mem_prune_result {
    bool pruned; /* false: no pruning needed */
    int64_t before, after, removed;
    double avg_importance_pruned, avg_importance_kept;
    double seconds;
    double min_pruned, max_pruned;
} mem_prune_result;

int mem_prune(mem_store *m, const char *persona_id, bool force, bool dry_run, mem_prune_result *r,
              mem_err *e);
/* Prune every persona that needs it; returns personas processed. */
int mem_prune_all(mem_store *m, int64_t *before, int64_t *after, int *errors, double *secs);
void mem_write_prune_stats(mem_store *m, struct jw *w);

typedef struct mem_decay_result {
    int personas;
    int64_t processed, decayed;
    int auto_prunes;
    double avg_decay, seconds;
} mem_decay_result;

int mem_decay_persona(mem_store *m, const char *persona_id, mem_decay_result *r, mem_err *e);
int mem_decay_force(mem_store *m, const char *persona_id, double factor, mem_decay_result *r,
                    mem_err *e);
int mem_decay_cycle(mem_store *m, mem_decay_result *r, mem_err *e);
bool mem_decay_start(mem_store *m); /* false if already running */
bool mem_decay_stop(mem_store *m);
void mem_write_decay_stats(mem_store *m, struct jw *w);
const mem_config *mem_get_config(mem_store *m);

/* The model id this store embeds text with ("builtin-hash-v1/384", or the
 * remote embedder's, e.g. "ollama:nomic-embed-text"). */
const char *mem_model(mem_store *m);

/* Use a remote embedder (Ollama, OpenAI-compatible) instead of the built-in
 * one. fn embeds n texts into out (room for cap floats) and sets *dim. It
 * blocks; it is called on worker threads. */
typedef int (*mem_embed_fn)(void *ctx, const char *const *texts, size_t n, float *out, size_t cap,
                            int *dim, char *err, size_t errlen);
void mem_set_embedder(mem_store *m, const char *model_id, mem_embed_fn fn, void *ctx);

/* Rebuild embeddings with the current embedder: every memory of personas
 * whose collection was built by another model (all of them with all=true;
 * only persona_id's when given). progress(ctx, phase, done, total) may be
 * NULL. Sets *changed to the memories re-embedded. 0 or -1 with e. */
int mem_reembed(mem_store *m, const char *persona_id, bool all,
                void (*progress)(void *ctx, const char *phase, uint64_t done, uint64_t total),
                void *ctx, int64_t *changed, mem_err *e);

#endif
