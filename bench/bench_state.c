/*
 * bench_state.c - state export and import throughput (issue 6 item 4).
 *
 *   bench_state [MEMORIES] [DIM]          defaults: 100000 memories, 384 dimensions
 *
 * A temporary database is filled directly through the store API (write
 * jobs of 5,000 INSERTs on the writer thread: 10 personas' memories with
 * random unit float32 embeddings, their memory_collections rows), then:
 *   export  state_export() of the whole database to a file (one snapshot,
 *           temp file + fsync + rename), timed;
 *   import  state_import() of that file into a second, fresh database,
 *           timed in total and per phase through the progress callback:
 *           verify (pass 1: parse, decode, checksum) and the write job
 *           (delete + insert in one transaction, FTS triggers included).
 * Then the same k-NN queries run on both databases through the memory
 * module; search_identical=1 when every result list matches (ids and
 * similarities).
 *
 * Output: key=value lines. Files live under $TMPDIR (default /tmp) and are
 * removed at the end.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/json.h"
#include "lib/log.h"
#include "lib/util.h"
#include "memory/memory.h"
#include "persona/persona.h"
#include "state/state.h"
#include "store/store.h"

#define PERSONAS 10
#define JOB_ROWS 5000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static double rnd(void) /* xorshift64*, uniform in [0, 1) */
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (double)((g_rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

typedef struct fill_job {
    long first, count;
    int dim;
    float *vec;
} fill_job;

static const char SQL_INSERT[] =
    "INSERT INTO memories (id, persona_id, content, content_hash, memory_type, importance,"
    " base_importance, emotional_valence, related_personas, visibility, metadata, created_at,"
    " embedding) VALUES (?,?,?,?,?,?,?,?,'[]',?,?,?,?)";
static const char SQL_COLL[] =
    "INSERT OR IGNORE INTO memory_collections (persona_id, model, dim) VALUES (?, ?, ?)";

static const char *const WORDS[] = {"amber", "basalt", "cedar",  "dune",    "ember",
                                    "fjord", "glade",  "harbor", "island",  "juniper",
                                    "kelp",  "lagoon", "meadow", "nebula",  "orchard",
                                    "pine",  "quartz", "reef",   "savanna", "tundra"};

static int fill_fn(store_conn *c, void *ctx)
{
    fill_job *j = ctx;
    char model[32];
    snprintf(model, sizeof model, "client/%d", j->dim);
    for (int p = 0; p < PERSONAS; p++) {
        char pid[16];
        snprintf(pid, sizeof pid, "bench-%d", p);
        sqlite3_stmt *q = store_conn_stmt(c, SQL_COLL);
        if (!q) return SQLITE_ERROR;
        sqlite3_bind_text(q, 1, pid, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(q, 2, model, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(q, 3, j->dim);
        int rc = sqlite3_step(q);
        sqlite3_reset(q);
        if (rc != SQLITE_DONE) return rc;
    }
    for (long i = j->first; i < j->first + j->count; i++) {
        char id[40], pid[16], content[160], meta[48];
        util_uuid4(id);
        snprintf(pid, sizeof pid, "bench-%ld", i % PERSONAS);
        snprintf(content, sizeof content, "%s %s %s memory number %ld about the %s", WORDS[i % 20],
                 WORDS[(i / 20) % 20], WORDS[(i / 400) % 20], i, WORDS[(i * 7) % 20]);
        snprintf(meta, sizeof meta, "{\"i\":%ld}", i);
        double norm = 0;
        for (int d = 0; d < j->dim; d++) {
            j->vec[d] = (float)(rnd() * 2 - 1);
            norm += (double)j->vec[d] * j->vec[d];
        }
        for (int d = 0; d < j->dim; d++) j->vec[d] = (float)(j->vec[d] / sqrt(norm));
        sqlite3_stmt *q = store_conn_stmt(c, SQL_INSERT);
        if (!q) return SQLITE_ERROR;
        double imp = round(rnd() * 1e6) / 1e6;
        sqlite3_bind_text(q, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(q, 2, pid, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(q, 3, content, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(q, 4, (sqlite3_int64)util_hash64(content, strlen(content)));
        sqlite3_bind_text(q, 5, i % 3 ? "observation" : "user_input", -1, SQLITE_STATIC);
        sqlite3_bind_double(q, 6, imp);
        sqlite3_bind_double(q, 7, imp);
        sqlite3_bind_double(q, 8, rnd() * 2 - 1);
        sqlite3_bind_text(q, 9, i % 2 ? "private" : "shared", -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 10, meta, -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(q, 11, 1.7e9 + (double)i);
        sqlite3_bind_blob(q, 12, j->vec, (int)(sizeof(float) * (size_t)j->dim), SQLITE_TRANSIENT);
        int rc = sqlite3_step(q);
        sqlite3_reset(q);
        if (rc != SQLITE_DONE) return rc;
    }
    return SQLITE_OK;
}

typedef struct side {
    char dir[300], db[340];
    store *st;
    persona_reg *reg;
    mem_store *mem;
} side;

static int side_open(side *s, const char *root, const char *name, int dim)
{
    snprintf(s->dir, sizeof s->dir, "%s/%s", root, name);
    snprintf(s->db, sizeof s->db, "%s/personas.db", s->dir);
    if (mkdir(s->dir, 0700) < 0) return -1;
    store_opts o;
    store_opts_default(&o);
    o.path = s->db;
    char err[256];
    if (store_open(&s->st, &o, err, sizeof err) < 0) {
        fprintf(stderr, "store_open: %s\n", err);
        return -1;
    }
    if (persona_reg_load(&s->reg, s->st) < 0) return -1;
    mem_config mc;
    mem_config_default(&mc);
    mc.dim = dim;
    return mem_open(&s->mem, s->st, &mc, err, sizeof err);
}

static void side_close(side *s)
{
    mem_close(s->mem);
    store_close(s->st);
    persona_reg_free(s->reg);
    static const char *const suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        char p[400];
        snprintf(p, sizeof p, "%s%s", s->db, suffix[i]);
        unlink(p);
    }
    rmdir(s->dir);
}

typedef struct phases {
    double t_verify_start, t_verify_end, t_import_start, t_import_end;
} phases;

static void on_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
    phases *p = ctx;
    double t = now_s();
    if (!strcmp(phase, "verify")) {
        if (!p->t_verify_start) p->t_verify_start = t;
        if (done == total) p->t_verify_end = t;
    } else if (!strcmp(phase, "import")) {
        if (!p->t_import_start) p->t_import_start = t;
        if (done == total) p->t_import_end = t;
    }
}

static int compare_searches(side *a, side *b, int dim)
{
    float *q = malloc(sizeof(float) * (size_t)dim);
    int same = 1;
    for (int k = 0; k < 20 && same; k++) {
        for (int d = 0; d < dim; d++) q[d] = (float)(rnd() * 2 - 1);
        char pid[16];
        snprintf(pid, sizeof pid, "bench-%d", k % PERSONAS);
        mem_query mq = {.persona_id = pid, .embedding = q, .embedding_dim = dim, .k = 10};
        jarena ar;
        jarena_init(&ar);
        mem_row *ra, *rb;
        size_t na = 0, nb = 0;
        mem_err e = {0};
        if (mem_search(a->mem, &mq, &ar, &ra, &na, &e) < 0 ||
            mem_search(b->mem, &mq, &ar, &rb, &nb, &e) < 0 || na != nb || na == 0) {
            same = 0;
        }
        for (size_t i = 0; same && i < na; i++)
            same = !strcmp(ra[i].id, rb[i].id) && ra[i].similarity == rb[i].similarity;
        jarena_free(&ar);
    }
    free(q);
    return same;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000;
    int dim = argc > 2 ? atoi(argv[2]) : 384;
    if (n < PERSONAS || dim < 1 || dim > 8192) {
        fprintf(stderr, "usage: bench_state [MEMORIES>=10] [DIM 1..8192]\n");
        return 2;
    }
    log_set_level(LOG_ERROR);
    const char *tmp = getenv("TMPDIR");
    char root[256];
    snprintf(root, sizeof root, "%s/pmcp-bench-state-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(root)) return 1;
    side a = {0}, b = {0};
    if (side_open(&a, root, "a", dim) < 0 || side_open(&b, root, "b", dim) < 0) return 1;

    double t0 = now_s();
    fill_job j = {.dim = dim, .vec = malloc(sizeof(float) * (size_t)dim)};
    for (long first = 0; first < n; first += JOB_ROWS) {
        j.first = first;
        j.count = n - first < JOB_ROWS ? n - first : JOB_ROWS;
        int rc = store_write(a.st, fill_fn, &j);
        if (rc != SQLITE_OK) {
            fprintf(stderr, "fill failed: %s\n", sqlite3_errstr(rc));
            return 1;
        }
    }
    free(j.vec);
    double t_fill = now_s() - t0;

    char file[400];
    snprintf(file, sizeof file, "%s/state.jsonl", root);
    state_result r;
    state_err e = {0};
    t0 = now_s();
    if (state_export(a.st, file, NULL, &r, &e) < 0) {
        fprintf(stderr, "export: %s\n", e.msg);
        return 1;
    }
    double t_export = now_s() - t0;

    phases ph = {0};
    state_opts o = {.progress = on_progress, .progress_ctx = &ph};
    state_result ri;
    t0 = now_s();
    if (state_import(b.st, b.reg, b.mem, file, &o, &ri, &e) < 0) {
        fprintf(stderr, "import: %s\n", e.msg);
        return 1;
    }
    double t_import = now_s() - t0;
    int same = compare_searches(&a, &b, dim) && ri.rows == r.rows;

    printf("memories=%ld\n", n);
    printf("dim=%d\n", dim);
    printf("rows_total=%llu\n", (unsigned long long)r.rows);
    printf("file_bytes=%llu\n", (unsigned long long)r.bytes);
    printf("bytes_per_memory=%.0f\n", (double)r.bytes / (double)n);
    printf("fill_seconds=%.3f\n", t_fill);
    printf("export_seconds=%.3f\n", t_export);
    printf("export_memories_per_s=%.0f\n", (double)n / t_export);
    printf("export_mb_per_s=%.1f\n", (double)r.bytes / 1e6 / t_export);
    printf("import_seconds=%.3f\n", t_import);
    printf("import_memories_per_s=%.0f\n", (double)n / t_import);
    printf("import_verify_seconds=%.3f\n", ph.t_verify_end - ph.t_verify_start);
    printf("import_write_seconds=%.3f\n", ph.t_import_end - ph.t_import_start);
    printf("import_write_memories_per_s=%.0f\n", (double)n / (ph.t_import_end - ph.t_import_start));
    printf("search_identical=%d\n", same);

    side_close(&a);
    side_close(&b);
    unlink(file);
    rmdir(root);
    return same ? 0 : 1;
}
