/*
 * mem_scan.h - exact top-k by inner product over contiguous float32 rows.
 *
 * Rows and query are unit vectors, so the inner product is the cosine. The
 * dot product is written so the compiler vectorises it (AVX2/AVX-512 clones
 * chosen at run time); the top-k is a bounded min-heap. Recall is 1.0 by
 * construction. Ties are broken by lower row index so results are stable.
 * Large collections are scanned from a half-precision copy first
 * (mem_topk_half), which is exact too: see mem_scan.c.
 */
#ifndef PMCP_MEM_SCAN_H
#define PMCP_MEM_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mem_hit {
    uint32_t row;
    float score;
} mem_hit;

float mem_dot(const float *a, const float *b, int dim);

/* Scan n rows of dim floats; keep rows whose keep[row] is non-zero (keep may
 * be NULL for all). Writes up to k hits, best first, and returns how many. */
size_t mem_topk(const float *rows, size_t n, int dim, const float *q, const uint8_t *keep, size_t k,
                mem_hit *out);

/* float32 -> IEEE 754 half precision (round to nearest even), n values. */
void mem_to_half(const float *in, uint16_t *out, size_t n);

/* The same answer as mem_topk() (same rows, same scores, same order) from
 * half the memory traffic: `half` holds the rows converted by mem_to_half().
 * Every kept row is scored in half precision; only rows whose half score
 * lies within the proven error bound of the k-th best are scored again in
 * float32 from `rows`. norm_max bounds the float32 rows' norms; scratch has
 * room for n floats. */
size_t mem_topk_half(const uint16_t *half, const float *rows, size_t n, int dim, float norm_max,
                     const float *q, const uint8_t *keep, size_t k, mem_hit *out, float *scratch);

/* mem_topk_half in steps, so that the first can be split across threads:
 * when mem_half_ok() (else use mem_topk), mem_half_scores() fills
 * scores[from, to) - NaN where keep is 0 - from any thread, and
 * mem_topk_from_half() finishes once all n are filled. */
bool mem_half_ok(float norm_max, const float *q, int dim);
void mem_half_scores(const uint16_t *half, size_t from, size_t to, int dim, const float *q,
                     const uint8_t *keep, float *scores);
size_t mem_topk_from_half(const float *scores, const float *rows, size_t n, int dim, float norm_max,
                          const float *q, size_t k, mem_hit *out);

#endif
