/*
 * mem_rowcache.c - recently read memory rows, kept in RAM.
 *
 * A search ranks rows in RAM (the collections) but reads the k winners'
 * text from SQLite. In WAL mode a read connection drops its whole page cache
 * whenever any commit happened since its last transaction, so after a write
 * (a chat stores every exchange) those k reads are k B-tree descents through
 * pread(2): ~0.1 ms for the 5 memories of a chat prompt, a tenth of the time
 * to first token the server may add. Chats and searches keep returning the
 * same memories, so the rows are kept here, keyed by seq.
 *
 * Correctness rests on three facts:
 *   - a row is only cached with the generation read before the read
 *     transaction that produced it began; mem_rowcache_put() drops it if
 *     the cache was cleared since (both under one mutex), so a row read
 *     before a commit can never outlive that commit's clear;
 *   - the writer clears the cache after every commit that updated or
 *     deleted memories rows: SQLite's update hook on the writer connection
 *     flags such changes (triggers included), and the after-commit callback
 *     of the store (store_set_hooks) clears, before the writing
 *     caller is answered. A write job that replaces rows behind SQLite's
 *     hook (INSERT OR REPLACE in a state import) calls mem_dedup_reset(),
 *     which flags it too;
 *   - inserts never touch a cached row: seqs are never reused in-process.
 * Access counters flushed from RAM are UPDATEs too, so a cached row is at
 * most one flush interval old in accessed_count, as a fresh read is.
 *
 * Bounds: ROWCACHE_SLOTS direct-mapped slots (a new row replaces the slot's
 * occupant), rows over ROWCACHE_ROW_MAX bytes are not kept, and at most
 * ROWCACHE_BYTES in all. One mutex; every operation copies a few hundred
 * bytes under it.
 *
 * Threads: get/put/gen/clear on any thread; the two hooks run on the
 * writer thread only (rows_changed is the writer's).
 */
#include <stdlib.h>
#include <string.h>

#include "memory/mem_internal.h"

#define ROWCACHE_SLOTS   1024
#define ROWCACHE_ROW_MAX (16 * 1024)
#define ROWCACHE_BYTES   (8u * 1024 * 1024)

typedef struct rc_ent {
    int64_t seq; /* 0: empty */
    size_t bytes;
    mem_row row; /* its strings point into blob */
    char *blob;
} rc_ent;

struct mem_rowcache {
    pthread_mutex_t mu;
    uint64_t gen; /* bumped by every clear */
    size_t bytes;
    rc_ent slot[ROWCACHE_SLOTS];
    atomic_uint_fast64_t hits, misses;
};

static size_t slot_of(int64_t seq)
{
    uint64_t h = (uint64_t)seq * 0x9E3779B97F4A7C15ULL;
    return (size_t)(h >> 54); /* top 10 bits: 1024 slots */
}

static void ent_free(mem_rowcache *rc, rc_ent *e)
{
    rc->bytes -= e->bytes;
    free(e->blob);
    memset(e, 0, sizeof *e);
}

mem_rowcache *mem_rowcache_new(void)
{
    mem_rowcache *rc = calloc(1, sizeof *rc);
    if (!rc) abort();
    pthread_mutex_init(&rc->mu, NULL);
    atomic_init(&rc->hits, 0);
    atomic_init(&rc->misses, 0);
    return rc;
}

void mem_rowcache_free(mem_rowcache *rc)
{
    if (!rc) return;
    for (size_t i = 0; i < ROWCACHE_SLOTS; i++)
        if (rc->slot[i].seq) ent_free(rc, &rc->slot[i]);
    pthread_mutex_destroy(&rc->mu);
    free(rc);
}

uint64_t mem_rowcache_gen(mem_rowcache *rc)
{
    pthread_mutex_lock(&rc->mu);
    uint64_t g = rc->gen;
    pthread_mutex_unlock(&rc->mu);
    return g;
}

void mem_rowcache_clear(mem_rowcache *rc)
{
    pthread_mutex_lock(&rc->mu);
    rc->gen++;
    for (size_t i = 0; i < ROWCACHE_SLOTS && rc->bytes; i++)
        if (rc->slot[i].seq) ent_free(rc, &rc->slot[i]);
    pthread_mutex_unlock(&rc->mu);
}

static const char *arena_copy(jarena *a, const char *s)
{
    return jarena_strndup(a, s, strlen(s));
}

bool mem_rowcache_get(mem_rowcache *rc, int64_t seq, jarena *a, mem_row *out)
{
    bool hit = false;
    pthread_mutex_lock(&rc->mu);
    const rc_ent *e = &rc->slot[slot_of(seq)];
    if (e->seq == seq) {
        *out = e->row;
        out->persona_id = arena_copy(a, e->row.persona_id);
        out->content = arena_copy(a, e->row.content);
        out->memory_type = arena_copy(a, e->row.memory_type);
        out->related_json = arena_copy(a, e->row.related_json);
        out->visibility = arena_copy(a, e->row.visibility);
        out->metadata_json = arena_copy(a, e->row.metadata_json);
        hit = true;
    }
    pthread_mutex_unlock(&rc->mu);
    atomic_fetch_add(hit ? &rc->hits : &rc->misses, 1);
    return hit;
}

/* Append s (with its NUL) at *p; returns where it went. */
static const char *pack(char **p, const char *s, size_t n)
{
    char *at = *p;
    memcpy(at, s, n + 1);
    *p += n + 1;
    return at;
}

void mem_rowcache_put(mem_rowcache *rc, uint64_t gen, const mem_row *r)
{
    const char *s[6] = {r->persona_id,   r->content,    r->memory_type,
                        r->related_json, r->visibility, r->metadata_json};
    size_t len[6], bytes = 0;
    for (int i = 0; i < 6; i++) bytes += (len[i] = strlen(s[i])) + 1;
    if (bytes > ROWCACHE_ROW_MAX) return;
    char *blob = malloc(bytes);
    if (!blob) return;
    rc_ent e = {.seq = r->seq, .bytes = bytes, .row = *r, .blob = blob};
    char *p = blob;
    e.row.persona_id = pack(&p, s[0], len[0]);
    e.row.content = pack(&p, s[1], len[1]);
    e.row.memory_type = pack(&p, s[2], len[2]);
    e.row.related_json = pack(&p, s[3], len[3]);
    e.row.visibility = pack(&p, s[4], len[4]);
    e.row.metadata_json = pack(&p, s[5], len[5]);
    e.row.similarity = 0;
    pthread_mutex_lock(&rc->mu);
    rc_ent *slot = &rc->slot[slot_of(r->seq)];
    size_t freed = slot->seq ? slot->bytes : 0;
    if (rc->gen == gen && rc->bytes - freed + bytes <= ROWCACHE_BYTES) {
        if (slot->seq) ent_free(rc, slot);
        *slot = e;
        rc->bytes += bytes;
        blob = NULL;
    }
    pthread_mutex_unlock(&rc->mu);
    free(blob); /* not kept */
}

void mem_rowcache_counts(mem_rowcache *rc, uint64_t *hits, uint64_t *misses)
{
    *hits = atomic_load(&rc->hits);
    *misses = atomic_load(&rc->misses);
}

/* ---- writer side ------------------------------------------------------------ */

static void on_row_change(void *ctx, int op, const char *table, int64_t rowid)
{
    (void)rowid;
    mem_store *m = ctx;
    if (op != SQLITE_INSERT && strcmp(table, "memories") == 0) m->rows_changed = true;
}

static void after_commit(void *ctx)
{
    mem_store *m = ctx;
    if (!m->rows_changed) return;
    m->rows_changed = false;
    mem_rowcache_clear(m->rows);
}

void mem_rowcache_attach(mem_store *m)
{
    store_set_hooks(m->st, on_row_change, after_commit, m); /* before any group runs a job */
}

static int noop_fn(store_conn *c, void *ctx)
{
    (void)c;
    (void)ctx;
    return SQLITE_OK;
}

void mem_rowcache_detach(mem_store *m)
{
    store_set_hooks(m->st, NULL, NULL, NULL);
    /* A group running now may still call the hooks with m: wait for it. */
    store_write(m->st, noop_fn, NULL);
}
