/*
 * mem_policy.h - pruning (spec §6.2) and decay (§6.3) as pure functions
 * over arrays of memory facts; the memory module loads the facts, calls
 * these, and writes the outcome through the writer thread.
 *
 * Decay is computed from each memory's base importance and its age, never
 * from the current (already decayed) value, so repeated cycles do not
 * compound (§12 item 24).
 */
#ifndef PMCP_MEM_POLICY_H
#define PMCP_MEM_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mem_fact {
    double importance;      /* current */
    double base_importance; /* as stored, before any decay */
    int64_t accessed_count;
    double created_at;    /* epoch seconds */
    double last_accessed; /* epoch seconds, 0 = never */
} mem_fact;

typedef enum {
    PRUNE_IMPORTANCE_ONLY,
    PRUNE_IMPORTANCE_ACCESS,
    PRUNE_IMPORTANCE_ACCESS_AGE
} prune_strategy;

typedef struct prune_config {
    int target;    /* 800 */
    int threshold; /* 900: prune when count >= threshold */
    prune_strategy strategy;
    double w_importance, w_access, w_age; /* 0.6 0.3 0.1 */
    double max_importance_to_delete;      /* 0.7: protected at or above */
    int high_access_threshold;            /* 5: protected at or above */
    int zero_access_grace_days;           /* 30 */
    int recent_memory_days;               /* 7 */
    int ancient_memory_days;              /* 90 */
    int min_interval_secs;                /* 3600: not twice within */
} prune_config;

void prune_config_default(prune_config *c);
int prune_strategy_parse(const char *s, prune_strategy *out); /* 0 ok, -1 unknown */
const char *prune_strategy_name(prune_strategy s);

double prune_score(const mem_fact *f, double now, const prune_config *c);
bool prune_is_protected(const mem_fact *f, double now, const prune_config *c);
/* Choose up to count - target memories, lowest score first, skipping
 * protected ones. Writes indexes into out (capacity n) and returns how many. */
size_t prune_select(const mem_fact *facts, size_t n, double now, const prune_config *c,
                    size_t *out);

typedef enum {
    DECAY_NONE,
    DECAY_LINEAR,
    DECAY_EXPONENTIAL,
    DECAY_LOGARITHMIC,
    DECAY_ACCESS_BASED
} decay_mode;

typedef struct decay_config {
    decay_mode mode;               /* access_based */
    double interval_hours;         /* 6 */
    int max_decay_days;            /* 90 */
    double floor;                  /* 0.1 */
    double protected_importance;   /* 0.8 */
    int access_protection_days;    /* 7 */
    int high_access_threshold;     /* 3 */
    double zero_access_multiplier; /* 2.0 */
    double linear_rate;            /* 0.01 per day */
    double half_life_days;         /* 30 */
    bool auto_pruning;             /* true */
    int auto_prune_threshold;      /* 1000 memories */
    double auto_prune_importance;  /* 0.3 */
    int auto_prune_min_low;        /* 50: more than this many at or below it */
} decay_config;

void decay_config_default(decay_config *c);
int decay_mode_parse(const char *s, decay_mode *out);
const char *decay_mode_name(decay_mode m);

/* The decayed importance of one memory now (rounded to 3 decimals), or its
 * current importance when it is protected or the mode is none. */
double decay_importance(const mem_fact *f, double now, const decay_config *c);

#endif
