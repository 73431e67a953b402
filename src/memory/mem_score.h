/*
 * mem_score.h - importance scoring of a memory (spec §6.1), as intended:
 * the configured weights and clamp range are used, keywords match at the
 * start of a word (so "glove" no longer counts as "love", while "loved"
 * and "traveler" still match "love" and "travel"), and the memory-type
 * multipliers are applied. Pure functions: no I/O, no allocation.
 */
#ifndef PMCP_MEM_SCORE_H
#define PMCP_MEM_SCORE_H

#include <stdbool.h>
#include <stddef.h>

/* What the scorer needs to know about a persona's interests. */
typedef struct mem_interest {
    size_t ntopics;
    const char *const *topics; /* topic names, lower case */
    const int *prefs;          /* 0..100 */
    bool has_traits;
    bool trait_curious; /* has a trait named exactly "curious" */
    bool trait_social;  /* has a trait named exactly "social" */
} mem_interest;

typedef struct mem_weights {
    double base, emotional, context, speaker, listener, engagement, relationship, recency;
    double min, max; /* final clamp */
    bool apply_type_multiplier;
} mem_weights;

void mem_weights_default(mem_weights *w); /* 0.3 .25 .20 .10 .05 .10 .10 .05, [0.1, 1] */

typedef struct mem_score_ctx {
    const mem_interest *speaker;  /* NULL: term is 0 */
    const mem_interest *listener; /* NULL: term is 0 */
    bool has_context;
    int continue_score; /* context: default 50 */
    const char *topic;  /* context topic or NULL */
    bool has_turn;
    int turn_continue_score;
    const char *response_type; /* turn response type or NULL */
    bool has_relationship;     /* only counts with a listener */
    double affinity, trust;
    const char *memory_type; /* for the multiplier; NULL = conversation */
} mem_score_ctx;

/* Factor functions, exposed for tests. Each returns [0, 1]. */
double mem_score_emotional(const char *text);
double mem_score_context(const char *text, const mem_score_ctx *ctx);
double mem_score_interest(const char *text, const mem_interest *who);
double mem_score_engagement(const char *text, const mem_score_ctx *ctx);
double mem_type_multiplier(const char *memory_type);

double mem_importance(const char *text, const mem_score_ctx *ctx, const mem_weights *w);

#endif
