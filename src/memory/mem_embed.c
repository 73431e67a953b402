/*
 * mem_embed.c - the built-in feature-hashing embedder ("builtin-hash-v1").
 *
 * Text is read byte by byte: ASCII letters are lower-cased, ASCII digits and
 * every byte >= 0x80 (UTF-8 lead and continuation bytes) are word bytes, any
 * other ASCII byte ends a word. Each word contributes two kinds of features:
 *
 *   - the word itself, weight 1.0 (seed 'W');
 *   - every byte trigram of " word " (padded with one space on each side, so
 *     a word of L bytes gives L trigrams), weight 0.5 (seed 'T').
 *
 * A feature is hashed with 64-bit FNV-1a over its seed byte and its bytes,
 * then mixed with the splitmix64 finaliser so low and high bits are both
 * well distributed; bucket = h % dim and the sign comes from bit 63. The
 * vector is L2-normalised at the end (all zeros when there was no word).
 *
 * Words give a strong signal for shared vocabulary, trigrams make related
 * forms ("travel", "traveler") similar. Nothing is allocated: the padding
 * of a trigram is supplied on the fly, so words may be any length. Changing
 * anything here changes every stored vector: bump the version in the model id.
 */
#include "memory/mem_embed.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define FNV_OFFSET     0xcbf29ce484222325ULL
#define FNV_PRIME      0x100000001b3ULL
#define WORD_WEIGHT    1.0f
#define TRIGRAM_WEIGHT 0.5f

static uint64_t fnv_byte(uint64_t h, unsigned char c)
{
    return (h ^ c) * FNV_PRIME;
}

static uint64_t mix64(uint64_t h)
{
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

static unsigned char fold(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

static int is_word_byte(unsigned char c)
{
    return c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static void add_feature(float *out, int dim, uint64_t h, float weight)
{
    h = mix64(h);
    size_t bucket = (size_t)(h % (uint64_t)dim);
    out[bucket] += (h >> 63) ? -weight : weight;
}

/* Byte i of " word " where w is the word of n bytes (i in [0, n + 2)). */
static unsigned char padded_at(const unsigned char *w, size_t n, size_t i)
{
    return (i == 0 || i == n + 1) ? ' ' : fold(w[i - 1]);
}

static void add_word(float *out, int dim, const unsigned char *w, size_t n)
{
    uint64_t h = fnv_byte(FNV_OFFSET, 'W');
    for (size_t i = 0; i < n; i++) h = fnv_byte(h, fold(w[i]));
    add_feature(out, dim, h, WORD_WEIGHT);
    for (size_t i = 0; i < n; i++) {
        uint64_t t = fnv_byte(FNV_OFFSET, 'T');
        for (size_t j = 0; j < 3; j++) t = fnv_byte(t, padded_at(w, n, i + j));
        add_feature(out, dim, t, TRIGRAM_WEIGHT);
    }
}

void mem_embed_builtin(const char *text, size_t len, float *out, int dim)
{
    if (!out || dim <= 0) return;
    memset(out, 0, sizeof(float) * (size_t)dim);
    if (!text) return;
    const unsigned char *p = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        while (i < len && !is_word_byte(p[i])) i++;
        size_t start = i;
        while (i < len && is_word_byte(p[i])) i++;
        if (i > start) add_word(out, dim, p + start, i - start);
    }
    mem_normalize(out, dim);
}

void mem_embed_builtin_model(int dim, char *out, size_t n)
{
    if (out && n > 0) snprintf(out, n, "builtin-hash-v1/%d", dim);
}

float mem_normalize(float *v, int dim)
{
    double ss = 0.0;
    for (int i = 0; i < dim; i++) ss += (double)v[i] * (double)v[i];
    double norm = sqrt(ss);
    if (norm > 0.0) {
        float inv = (float)(1.0 / norm);
        for (int i = 0; i < dim; i++) v[i] *= inv;
    }
    return (float)norm;
}
