/*
 * mem_embed.h - text embeddings.
 *
 * The built-in embedder needs no model and no network: deterministic
 * feature hashing of lower-cased words and of character trigrams (with word
 * boundaries), each feature hashed to a bucket and a sign, word features
 * weighted more than trigrams, then L2-normalised. Texts that share words
 * get a high cosine; identical texts get 1.0. The model id names the
 * algorithm version and dimension ("builtin-hash-v1/384") so a collection
 * built with another embedder or dimension is detected.
 *
 * Remote embedders (Ollama /api/embed, OpenAI-compatible /v1/embeddings)
 * are in mem_embed_remote.c and share the same output contract.
 */
#ifndef PMCP_MEM_EMBED_H
#define PMCP_MEM_EMBED_H

#include <stddef.h>

#define MEM_DEFAULT_DIM 384
#define MEM_MAX_DIM     8192

/* Embed len bytes of UTF-8 text into out[dim] (L2 norm 1, or all zeros for
 * text with no features). Thread-safe, no allocation. */
void mem_embed_builtin(const char *text, size_t len, float *out, int dim);
/* "builtin-hash-v1/<dim>" into out. */
void mem_embed_builtin_model(int dim, char *out, size_t n);
/* Scale v to unit length in place; returns the original norm. */
float mem_normalize(float *v, int dim);

#endif
