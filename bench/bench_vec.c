/*
 * bench_vec.c - the exact vector scan and the built-in embedder.
 *
 *   (a) exact top-10 by inner product with mem_topk() over 1k, 10k and 100k
 *       rows of 384-dim unit vectors, 200 single queries each, one thread.
 *       Data is clustered like sentence embeddings (256 random centres, each
 *       row a centre plus noise, cosine about 0.7 to its centre; queries
 *       drawn the same way). Each query is timed with clock_gettime: p50,
 *       p99 and queries/s. Peer, in the same run: the naive scalar loop
 *       (one float accumulator, not vectorised - what Debian's FAISS
 *       IndexFlatIP runs at, c-dependencies.md §4) with an insertion top-10.
 *       Recall@10 of mem_topk against that reference must be 1.0.
 *   (b) embedder throughput: mem_embed_builtin() at 384 dims over 20,000
 *       texts of about 200 characters made of common words.
 *
 * Output: key=value lines, then ratio.* lines (> 1 means mem_topk wins).
 */
#include "memory/mem_embed.h"
#include "memory/mem_scan.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DIM       384
#define CENTRES   256
#define QUERIES   200
#define TOPK      10
#define TEXTS     20000
#define TEXT_SIZE 200

static uint64_t g_rng = 0x2545f4914f6cdd1dULL;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

/* Standard normal (Box-Muller). */
static float gauss(void)
{
    double u = ((double)(rnd() >> 11) + 1.0) / 9007199254740993.0;
    double v = (double)(rnd() >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Sorts v. p in [0, 1]. */
static uint64_t pct(uint64_t *v, size_t n, double p)
{
    qsort(v, n, sizeof v[0], cmp_u64);
    return v[(size_t)(p * (double)(n - 1) + 0.5)];
}

/* ---- data --------------------------------------------------------------- */

static void random_unit(float *v)
{
    for (int i = 0; i < DIM; i++) v[i] = gauss();
    mem_normalize(v, DIM);
}

/* centre + noise with |noise| ~ 1, so cosine to the centre is about 0.7. */
static void clustered(float *v, const float *centres)
{
    const float *c = centres + (rnd() % CENTRES) * DIM;
    float scale = 1.0f / sqrtf((float)DIM);
    for (int i = 0; i < DIM; i++) v[i] = c[i] + gauss() * scale;
    mem_normalize(v, DIM);
}

/* ---- the peer: a plain scalar loop ----------------------------------------- */

__attribute__((noinline, optimize("no-tree-vectorize"))) static float
scalar_dot(const float *a, const float *b, int dim)
{
    float s = 0.0f;
    for (int i = 0; i < dim; i++) s += a[i] * b[i];
    return s;
}

/* Insert (row, s) into best[0..*m) sorted best first, capacity k. */
static void insert_hit(mem_hit *best, size_t *m, size_t k, uint32_t row, float s)
{
    if (*m == k && !(s > best[k - 1].score)) return;
    size_t i = *m < k ? (*m)++ : k - 1;
    while (i > 0 && best[i - 1].score < s) {
        best[i] = best[i - 1];
        i--;
    }
    best[i].row = row;
    best[i].score = s;
}

static size_t scalar_topk(const float *rows, size_t n, const float *q, size_t k, mem_hit *out)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        insert_hit(out, &m, k, (uint32_t)i, scalar_dot(rows + i * DIM, q, DIM));
    return m;
}

/* ---- (a) scan ---------------------------------------------------------------- */

static double recall(const mem_hit *got, size_t ng, const mem_hit *want, size_t nw)
{
    size_t same = 0;
    for (size_t i = 0; i < nw; i++)
        for (size_t j = 0; j < ng; j++) same += got[j].row == want[i].row;
    return nw ? (double)same / (double)nw : 1.0;
}

typedef struct timing {
    uint64_t p50, p99, total;
} timing;

static timing summarise(uint64_t *ns)
{
    timing t = {0, 0, 0};
    for (size_t i = 0; i < QUERIES; i++) t.total += ns[i];
    t.p50 = pct(ns, QUERIES, 0.50);
    t.p99 = pct(ns, QUERIES, 0.99);
    return t;
}

static void report(const char *name, size_t n, timing t)
{
    printf("vec.%s.n%zu.p50_us=%.1f\n", name, n, (double)t.p50 / 1e3);
    printf("vec.%s.n%zu.p99_us=%.1f\n", name, n, (double)t.p99 / 1e3);
    printf("vec.%s.n%zu.qps=%.0f\n", name, n, QUERIES / ((double)t.total / 1e9));
}

static void bench_scan(size_t n, const float *centres, const float *queries)
{
    float *rows = malloc(n * DIM * sizeof(float));
    for (size_t i = 0; i < n; i++) clustered(rows + i * DIM, centres);
    uint16_t *half = malloc(n * DIM * sizeof(uint16_t));
    float *scratch = malloc(n * sizeof(float));
    mem_to_half(rows, half, n * DIM);
    static uint64_t simd_ns[QUERIES], scalar_ns[QUERIES], half_ns[QUERIES];
    double rsum = 0.0;
    size_t half_same = 0;
    for (size_t qi = 0; qi < QUERIES; qi++) {
        const float *q = queries + qi * DIM;
        mem_hit got[TOPK], want[TOPK];
        uint64_t t0 = now_ns();
        size_t ng = mem_topk(rows, n, DIM, q, NULL, TOPK, got);
        uint64_t t1 = now_ns();
        size_t nw = scalar_topk(rows, n, q, TOPK, want);
        uint64_t t2 = now_ns();
        mem_hit hg[TOPK];
        uint64_t t3 = now_ns();
        size_t nh = mem_topk_half(half, rows, n, DIM, 1.001f, q, NULL, TOPK, hg, scratch);
        half_ns[qi] = now_ns() - t3;
        half_same += nh == ng && memcmp(hg, got, ng * sizeof *got) == 0;
        simd_ns[qi] = t1 - t0;
        scalar_ns[qi] = t2 - t1;
        rsum += recall(got, ng, want, nw);
    }
    timing s = summarise(simd_ns), r = summarise(scalar_ns), h = summarise(half_ns);
    report("topk", n, s);
    report("scalar", n, r);
    report("topk_half", n, h);
    printf("vec.topk_half.n%zu.identical_to_topk=%zu/%d\n", n, half_same, QUERIES);
    printf("ratio.vec.n%zu.topk_over_topk_half_p50=%.2f\n", n, (double)s.p50 / (double)h.p50);
    free(half);
    free(scratch);
    printf("vec.topk.n%zu.recall=%.4f\n", n, rsum / QUERIES);
    printf("ratio.vec.n%zu.scalar_over_topk_p50=%.2f\n", n, (double)r.p50 / (double)s.p50);
    free(rows);
}

/* ---- (b) embedder -------------------------------------------------------------- */

static const char *const k_words[] = {
    "the",   "a",      "memory", "persona", "music",  "dragon",   "travel", "story",    "ancient",
    "spell", "market", "friend", "quiet",   "river",  "lantern",  "bard",   "scholar",  "library",
    "night", "warm",   "bread",  "song",    "letter", "mountain", "ship",   "remember", "laughed",
    "about", "with",   "into",   "under",   "golden", "curious",  "tavern", "north",    "winter"};

static void make_text(char *out, size_t size)
{
    size_t len = 0, nw = sizeof k_words / sizeof k_words[0];
    while (len + 12 < size) {
        const char *w = k_words[rnd() % nw];
        len += (size_t)snprintf(out + len, size - len, "%s%s", len ? " " : "", w);
        if (rnd() % 9 == 0 && len + 1 < size) out[len++] = rnd() % 2 ? ',' : '.';
    }
    out[len] = 0;
}

static void bench_embed(void)
{
    char(*texts)[TEXT_SIZE + 16] = malloc(TEXTS * sizeof *texts);
    size_t bytes = 0;
    for (size_t i = 0; i < TEXTS; i++) {
        make_text(texts[i], TEXT_SIZE + 1);
        bytes += strlen(texts[i]);
    }
    float v[DIM];
    double sink = 0.0;
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < TEXTS; i++) {
        mem_embed_builtin(texts[i], strlen(texts[i]), v, DIM);
        sink += v[i % DIM];
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    printf("embed.builtin.dim=%d\n", DIM);
    printf("embed.builtin.avg_chars=%.0f\n", (double)bytes / TEXTS);
    printf("embed.builtin.texts_per_s=%.0f\n", TEXTS / secs);
    printf("embed.builtin.us_per_text=%.2f\n", secs * 1e6 / TEXTS);
    printf("embed.builtin.mb_per_s=%.1f\n", (double)bytes / secs / 1e6);
    if (sink == 12345.0) printf("#\n");
    free(texts);
}

int main(void)
{
    float *centres = malloc(CENTRES * DIM * sizeof(float));
    float *queries = malloc(QUERIES * DIM * sizeof(float));
    for (size_t i = 0; i < CENTRES; i++) random_unit(centres + i * DIM);
    for (size_t i = 0; i < QUERIES; i++) clustered(queries + i * DIM, centres);
    static const size_t sizes[] = {1000, 10000, 100000};
    printf("vec.dim=%d\nvec.k=%d\nvec.queries=%d\n", DIM, TOPK, QUERIES);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        bench_scan(sizes[i], centres, queries);
    bench_embed();
    free(centres);
    free(queries);
    return 0;
}
