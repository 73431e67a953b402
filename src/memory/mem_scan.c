/*
 * mem_scan.c - exact top-k by inner product (brute force).
 *
 * Kernel: dot_kernel() is one loop under `#pragma omp simd reduction(+:s)`;
 * a plain float reduction is not vectorised by GCC because it may not
 * reassociate the sum (c-dependencies.md §4). The file is built with -O3
 * -fopenmp-simd, and both public entry points are target_clones for
 * AVX-512F, AVX2 and the x86-64 baseline, picked once at load time. The
 * kernel is inlined into each clone, and mem_dot() and mem_topk() inline the
 * same code, so the score mem_topk() reports for a row is exactly
 * mem_dot(row, q) on this machine (tests rely on that).
 *
 * Top-k: the output array itself is a bounded min-heap whose root is the
 * worst hit kept (lowest score; among equal scores the highest row). Rows
 * are scanned in increasing order, so a newcomer replaces the root only
 * with a strictly higher score, which makes lower rows win ties. At the end
 * the heap is sorted in place (heapsort: repeatedly move the worst to the
 * back), leaving best first. No allocation; k may exceed n. Rows whose
 * score is NaN are skipped (they would break the heap order).
 */
#include "memory/mem_scan.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MEM_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MEM_CLONES
#endif

static inline __attribute__((always_inline)) float dot_kernel(const float *restrict a,
                                                              const float *restrict b, int dim)
{
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < dim; i++) s += a[i] * b[i];
    return s;
}

MEM_CLONES float mem_dot(const float *a, const float *b, int dim)
{
    return dot_kernel(a, b, dim);
}

/* True when hit x ranks below hit y (lower score, or same score and later row). */
static inline int worse(const mem_hit *x, const mem_hit *y)
{
    return x->score < y->score || (x->score == y->score && x->row > y->row);
}

static void sift_down(mem_hit *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && worse(&h[l], &h[m])) m = l;
        if (r < n && worse(&h[r], &h[m])) m = r;
        if (m == i) return;
        mem_hit t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void sift_up(mem_hit *h, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!worse(&h[i], &h[p])) return;
        mem_hit t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

/* Offer (row, score) to the heap h of m entries (capacity k); returns the new m. */
static inline size_t heap_offer(mem_hit *h, size_t m, size_t k, uint32_t row, float score)
{
    if (m < k) {
        h[m].row = row;
        h[m].score = score;
        sift_up(h, m);
        return m + 1;
    }
    if (score > h[0].score) {
        h[0].row = row;
        h[0].score = score;
        sift_down(h, m, 0);
    }
    return m;
}

/* Heap (worst at the root) -> array sorted best first. */
static void heap_sort_best_first(mem_hit *h, size_t m)
{
    for (size_t end = m; end > 1; end--) {
        mem_hit t = h[0];
        h[0] = h[end - 1];
        h[end - 1] = t;
        sift_down(h, end - 1, 0);
    }
}

MEM_CLONES size_t mem_topk(const float *rows, size_t n, int dim, const float *q,
                           const uint8_t *keep, size_t k, mem_hit *out)
{
    if (!rows || !q || !out || k == 0 || dim <= 0) return 0;
    size_t m = 0;
    const float *row = rows;
    for (size_t i = 0; i < n; i++, row += dim) {
        if (keep && !keep[i]) continue;
        float s = dot_kernel(row, q, dim);
        if (s != s) continue;
        if (m < k || s > out[0].score) m = heap_offer(out, m, k, (uint32_t)i, s);
    }
    heap_sort_best_first(out, m);
    return m;
}
