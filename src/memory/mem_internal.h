/*
 * mem_internal.h - shared by the files of src/memory/ only.
 */
#ifndef PMCP_MEM_INTERNAL_H
#define PMCP_MEM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "memory/memory.h"
#include "store/store.h"

#define MEM_MAP_BUCKETS 1024
#define MEM_MODEL_LEN   64
#define MEM_PERSONA_MAX 200 /* bytes of a persona_id */

/* One persona's vectors in RAM, rows in seq order (seq = SQLite rowid,
 * increasing in commit order, so a binary search finds a row). */
typedef struct mem_coll {
    struct mem_coll *next; /* hash bucket chain */
    char *persona_id;
    pthread_rwlock_t lock;
    bool loaded;
    char model[MEM_MODEL_LEN]; /* "" = no memories stored yet */
    int dim;
    size_t n, cap;
    float *vecs;
    uint16_t *half; /* the same rows in half precision: the scan of large collections */
    float norm_max; /* no row's norm exceeds this (the half scan's error bound) */
    int64_t *seq;
    float *importance;
    uint16_t *type_id;
    uint8_t *vis;    /* 0 private, 1 shared, 2 public */
    double *created; /* epoch seconds */
    int64_t max_seq;
    /* Seqs deleted before their insert was applied here (two workers apply
     * commits in any order): that insert is dropped when it comes. Seqs are
     * never reused while the process runs (next_seq), so a tombstone never
     * hides a newer row. Few, and cleared on unload. */
    int64_t *tomb;
    size_t ntomb;
    /* Aggregates for memory.stats, kept in step with the rows so statistics
     * of a loaded collection cost O(types), not O(rows). */
    double sum_importance;
    size_t high_count;     /* importance >= 0.7 */
    uint32_t *type_counts; /* by type id */
    size_t ntype_counts;
    int64_t today; /* UTC day number today_count refers to */
    size_t today_count;
    atomic_uint_fast64_t last_used_ns;
} mem_coll;

typedef struct mem_maint_stats {
    /* pruning */
    int64_t prune_ops, prune_removed, prune_personas;
    double prune_seconds, last_global_prune;
    /* decay */
    int64_t decay_cycles, decay_decayed, decay_auto_prunes;
    double decay_last_run;
    mem_decay_result recent;
} mem_maint_stats;

struct mem_store {
    store *st;
    mem_config cfg;
    char model[MEM_MODEL_LEN];
    mem_embed_fn remote; /* NULL: the built-in embedder */
    void *remote_ctx;
    pthread_mutex_t map_mu;
    mem_coll *buckets[MEM_MAP_BUCKETS];
    pthread_mutex_t types_mu;
    char **types;
    size_t ntypes;
    atomic_uint_fast64_t loads, evictions, load_ns, resident_bytes;
    pthread_mutex_t stats_mu; /* guards maint, pruning_now, prune times */
    mem_maint_stats maint;
    struct mem_prune_mark *prune_marks; /* per persona: last prune time, running */
    pthread_mutex_t decay_mu;
    pthread_cond_t decay_cv;
    pthread_t decay_thread;
    bool decay_running, decay_quit;
    struct mem_access *access; /* search hits waiting to be written (mem_access.c) */
    struct mem_split *split;   /* helper thread for large scans (mem_split.c); may be NULL */
    atomic_size_t fts_pending; /* rows queued for FTS5 since the last flush (a hint) */
    atomic_bool fts_flushing;  /* an asynchronous FTS flush is queued or running */
    struct mem_dedup *dedup;   /* content hashes per persona; writer thread only */
    int64_t next_seq;          /* next memories.seq to insert; 0 = read max(seq); writer only */
    struct mem_rowcache *rows; /* rows recently read (mem_rowcache.c) */
    bool rows_changed;         /* this transaction updated or deleted rows; writer only */
};

/* mem_coll.c */
mem_coll *coll_get(mem_store *m, const char *persona_id);
/* Load if needed; returns with the read lock held, or -1 with e set. */
int coll_acquire(mem_store *m, mem_coll *c, mem_err *e);
void coll_release(mem_coll *c);
void coll_apply_insert(mem_store *m, mem_coll *c, int64_t seq, const float *vec, int dim,
                       const char *model, double importance, const char *type, int vis,
                       double created);
void coll_apply_delete(mem_store *m, mem_coll *c, const int64_t *seqs, size_t n);
void coll_apply_update(mem_store *m, mem_coll *c, int64_t seq, double importance, const char *type,
                       int vis, const float *vec);
void coll_forget(mem_store *m, mem_coll *c);
/* Bring today_count to the current day (caller holds the write lock). */
void coll_refresh_today(mem_coll *c);
int64_t coll_day(double epoch);
void coll_free_all(mem_store *m);
/* Row index of seq in a loaded collection, or -1. Caller holds a lock. */
long coll_find(const mem_coll *c, int64_t seq);
int mem_type_id(mem_store *m, const char *type, bool create);
int mem_vis_code(const char *v); /* -1 for an unknown name */
const char *mem_vis_name(int code);

/* mem_write.c: embed a text with the store's embedder (vector in a). */
int mem_embed_text(mem_store *m, const char *text, float **out, int *dim, jarena *a, mem_err *e);
/* Fails when c was built by another model than `model`. */
int mem_check_model(mem_coll *c, const char *model, mem_err *e);
/* mem_write.c: embedding of a query or item; checks the collection model. */
int mem_embed_for(mem_store *m, mem_coll *c, const char *text, const float *given, int given_dim,
                  float **out, int *dim, char model[MEM_MODEL_LEN], jarena *a, mem_err *e);
int mem_fail(mem_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* mem_maint.c: free the per-persona prune/decay marks. */
void mem_maint_free(mem_store *m);

/* mem_access.c: search hits are counted in RAM (mem_record_access) and
 * flushed by a timer, when many rows wait, and by mem_access_flush(). */
typedef struct mem_access mem_access;
void mem_access_open(mem_store *m, int flush_ms);
void mem_access_close(mem_store *m); /* flushes what is left */

/* mem_fts.c: deferred full-text indexing (see schema v5). The writer
 * indexes memories_fts_pending in bulk: mem_fts_added() counts committed
 * rows and queues a flush at MEM_FTS_BATCH of them, mem_fts_tick() (the
 * access timer) queues one when any are counted, mem_fts_sync() makes the
 * index complete before an FTS query (sc: the caller's read connection,
 * outside a transaction), mem_fts_close() flushes what is left. */
#define MEM_FTS_BATCH 1024
void mem_fts_added(mem_store *m, size_t n);
void mem_fts_tick(mem_store *m);
int mem_fts_sync(mem_store *m, store_conn *sc);
void mem_fts_close(mem_store *m);

/* mem_dedup.c (writer thread only, inside write jobs on its connection c):
 * find sets out->duplicate, id and importance when the persona already has
 * a memory with exactly this content; note records a row just written. */
int mem_dedup_find(mem_store *m, store_conn *c, const char *persona, uint64_t hash,
                   const char *content, mem_added *out);
void mem_dedup_note(mem_store *m, const char *persona, uint64_t hash, int64_t seq);
void mem_dedup_close(mem_store *m); /* any thread but the writer: frees the tables */

/* mem_split.c: fill scores[0, n) like mem_half_scores(), the work shared
 * with a helper thread when the collection is large and the helper free.
 * mem_split_start() returns NULL on one core (then it scans alone). */
typedef struct mem_split mem_split;
mem_split *mem_split_start(void);
void mem_split_stop(mem_split *sp);
void mem_split_half_scores(mem_split *sp, const uint16_t *half, size_t n, int dim, const float *q,
                           const uint8_t *keep, float *scores);

/* mem_rowcache.c: rows read recently, by seq. gen() is read before the read
 * transaction whose rows are then put() with it; clear() drops everything
 * (and refuses puts of older generations). attach() hooks the writer (update
 * hook and after-commit callback) so commits that update or delete rows
 * clear it; detach() undoes that, as a write job. */
typedef struct mem_rowcache mem_rowcache;
mem_rowcache *mem_rowcache_new(void);
void mem_rowcache_free(mem_rowcache *rc);
uint64_t mem_rowcache_gen(mem_rowcache *rc);
bool mem_rowcache_get(mem_rowcache *rc, int64_t seq, jarena *a, mem_row *out);
void mem_rowcache_put(mem_rowcache *rc, uint64_t gen, const mem_row *r);
void mem_rowcache_clear(mem_rowcache *rc);
void mem_rowcache_counts(mem_rowcache *rc, uint64_t *hits, uint64_t *misses);
void mem_rowcache_attach(mem_store *m);
void mem_rowcache_detach(mem_store *m);

/* mem_search.c: read full rows by seq through a pool connection. */
int mem_fetch_rows(mem_store *m, store_conn *sc, const int64_t *seqs, size_t n, jarena *a,
                   mem_row *out, size_t *got);

#endif
