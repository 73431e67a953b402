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
 *
 * Half-precision prefilter (mem_topk_half): past a few thousand rows the
 * float32 scan is bound by memory bandwidth (10k rows x 384 dims = 15 MB per
 * query), so large collections also keep their rows in IEEE half precision
 * (half the bytes) and are scanned from that copy first. The answer stays
 * exact, by a bound rather than by luck: for every row,
 *
 *   |half score - float32 score| <= eps = |q| * (N * (2^-11 (1 + 2g) + 4g)
 *                                             + 2^-25 sqrt(dim))  (+1%)
 *
 * where N bounds the rows' norms, 2^-11 is half's relative rounding error
 * for normal numbers, 2^-25 its absolute error below 2^-14 (subnormals), and
 * g = dim 2^-24 / (1 - dim 2^-24) bounds float32 accumulation in either dot
 * product, in any summation order. The k best half scores have float32
 * scores of at least (k-th half score - eps), so no row whose half score is
 * below (k-th half score - 2 eps) can enter the exact top-k. Every other
 * kept row is scored again with the very float32 kernel mem_topk() uses, and
 * the heap is rebuilt from those scores: same rows, same scores, same ties.
 * With unit vectors at 384 dims eps is about 6e-4, which lets a handful of
 * rows through besides the k.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

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

/* ---- half precision ---------------------------------------------------------- */

/* float32 -> half, round to nearest even (IEEE 754 binary16). */
static uint16_t half_of(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;
    if (a >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds past 65504 */
    if (a < 0x33000000u) return (uint16_t)sign;              /* below 2^-25: zero */
    uint32_t r, rem, halfway;
    if (a < 0x38800000u) { /* half subnormal: round(value / 2^-24) */
        uint32_t mant = (a & 0x7fffffu) | 0x800000u, shift = 126u - (a >> 23);
        r = mant >> shift;
        rem = mant & ((1u << shift) - 1);
        halfway = 1u << (shift - 1);
    } else { /* normal: rebias the exponent, keep 10 mantissa bits */
        r = (a >> 13) - (112u << 10);
        rem = a & 0x1fffu;
        halfway = 0x1000u;
    }
    if (rem > halfway || (rem == halfway && (r & 1))) r++; /* a carry may reach inf: right */
    return (uint16_t)(sign | r);
}

static float float_of_half(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
    if (e == 0) {
        float f = (float)m * 0x1p-24f;
        return sign ? -f : f;
    }
    x = sign | (e == 31 ? 0x7f800000u | (m << 13) : ((e + 112u) << 23) | (m << 13));
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

void mem_to_half(const float *in, uint16_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = half_of(in[i]);
}

typedef float (*half_dot_fn)(const uint16_t *a, const float *q, int dim);

static float half_dot_c(const uint16_t *a, const float *q, int dim)
{
    float s = 0.0f;
    for (int i = 0; i < dim; i++) s += float_of_half(a[i]) * q[i];
    return s;
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) static float half_dot_512(const uint16_t *a, const float *q,
                                                             int dim)
{
    /* Four accumulators: a chain of dim/64 dependent FMAs each, not dim/16. */
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(),
           s3 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 64 <= dim; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(a + i))),
                             _mm512_loadu_ps(q + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(a + i + 16))),
                             _mm512_loadu_ps(q + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(a + i + 32))),
                             _mm512_loadu_ps(q + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(a + i + 48))),
                             _mm512_loadu_ps(q + i + 48), s3);
    }
    for (; i + 16 <= dim; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(a + i))),
                             _mm512_loadu_ps(q + i), s0);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    for (; i < dim; i++) s += float_of_half(a[i]) * q[i];
    return s;
}

__attribute__((target("avx2,fma,f16c"))) static float half_dot_256(const uint16_t *a,
                                                                   const float *q, int dim)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= dim; i += 16) {
        __m256 x0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i)));
        __m256 x1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i + 8)));
        s0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(q + i), s0);
        s1 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(q + i + 8), s1);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, _mm256_add_ps(s0, s1));
    float s = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) +
              ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
    for (; i < dim; i++) s += float_of_half(a[i]) * q[i];
    return s;
}
#endif

static half_dot_fn pick_half_dot(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return half_dot_512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return half_dot_256;
#endif
    return half_dot_c;
}

/* The bound of the file comment, for a query of norm qn. */
static double half_eps(double qn, int dim, float norm_max)
{
    double n = (double)dim, u = 0x1p-24, g = n * u / (1.0 - n * u);
    double e = (double)norm_max * (0x1p-11 * (1.0 + 2.0 * g) + 4.0 * g) + 0x1p-25 * sqrt(n);
    return qn * e * 1.01;
}

bool mem_half_ok(float norm_max, const float *q, int dim)
{
    if (!q || dim <= 0 || !(norm_max <= 4.0f)) return false; /* longer rows could overflow */
    double qn = 0;
    for (int i = 0; i < dim; i++) qn += (double)q[i] * (double)q[i];
    return isfinite(qn);
}

void mem_half_scores(const uint16_t *half, size_t from, size_t to, int dim, const float *q,
                     const uint8_t *keep, float *scores)
{
    half_dot_fn hd = pick_half_dot();
    for (size_t i = from; i < to; i++)
        scores[i] = (keep && !keep[i]) ? NAN : hd(half + i * (size_t)dim, q, dim);
}

MEM_CLONES size_t mem_topk_from_half(const float *scores, const float *rows, size_t n, int dim,
                                     float norm_max, const float *q, size_t k, mem_hit *out)
{
    if (!scores || !rows || !q || !out || k == 0 || dim <= 0) return 0;
    double qn = 0;
    for (int i = 0; i < dim; i++) qn += (double)q[i] * (double)q[i];
    qn = sqrt(qn);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        float s = scores[i];
        if (s == s && (m < k || s > out[0].score)) m = heap_offer(out, m, k, (uint32_t)i, s);
    }
    float floor_score = -INFINITY;
    if (m == k)
        floor_score = nextafterf((float)((double)out[0].score - 2.0 * half_eps(qn, dim, norm_max)),
                                 -INFINITY);
    m = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(scores[i] >= floor_score)) continue; /* also skips NaN and unkept rows */
        float s = dot_kernel(rows + i * (size_t)dim, q, dim);
        if (s == s && (m < k || s > out[0].score)) m = heap_offer(out, m, k, (uint32_t)i, s);
    }
    heap_sort_best_first(out, m);
    return m;
}

size_t mem_topk_half(const uint16_t *half, const float *rows, size_t n, int dim, float norm_max,
                     const float *q, const uint8_t *keep, size_t k, mem_hit *out, float *scratch)
{
    if (!half || !rows || !q || !out || !scratch || k == 0 || dim <= 0) return 0;
    if (!mem_half_ok(norm_max, q, dim)) return mem_topk(rows, n, dim, q, keep, k, out);
    mem_half_scores(half, 0, n, dim, q, keep, scratch);
    return mem_topk_from_half(scratch, rows, n, dim, norm_max, q, k, out);
}
