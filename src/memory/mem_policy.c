/*
 * mem_policy.c - pruning (spec §6.2) and decay (§6.3) of memories, as pure
 * functions of the memory facts, the time and the configuration.
 *
 * Ages are whole days: floor((now - created_at) / 86400), as Python's
 * timedelta.days gave the original.
 *
 * Pruning: score = w_importance * importance (+ w_access * min(accessed/10,
 * 1) unless importance_only) (+ w_age * age_score for importance_access_age),
 * with age_score 1.0 up to recent_memory_days, 0.1 from ancient_memory_days
 * and linear in between. Protected: importance >= max_importance_to_delete,
 * accessed_count >= high_access_threshold, or never accessed and younger
 * than zero_access_grace_days. prune_select sorts (score, index) pairs and
 * walks them lowest first, skipping protected memories, until it has
 * count - target of them; equal scores go in index order.
 *
 * Decay (§12 item 24 fixed): the factor for the memory's age is applied to
 * its *base* importance, never to the current (already decayed) value, so a
 * cycle run twice, or a hundred times, gives the value a single cycle gives.
 * Protected (unchanged): mode none, current importance >=
 * protected_importance, or accessed less than access_protection_days ago.
 * Result = min(current, round3(max(base - base * f, floor))): decay never
 * raises a memory (also not to the floor) and the floor is only reached from
 * above. round3 is correct decimal rounding via printf("%.3f"), the same
 * result as Python's round(x, 3) (x * 1000 rounding differs on values such
 * as 0.0285 that are just below a half in binary).
 */
#include "memory/mem_policy.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#define DAY_SECS 86400.0

static int64_t age_days(double from, double now)
{
    return (int64_t)floor((now - from) / DAY_SECS);
}

/* ---- pruning --------------------------------------------------------------- */

void prune_config_default(prune_config *c)
{
    *c = (prune_config){.target = 800,
                        .threshold = 900,
                        .strategy = PRUNE_IMPORTANCE_ACCESS_AGE,
                        .w_importance = 0.6,
                        .w_access = 0.3,
                        .w_age = 0.1,
                        .max_importance_to_delete = 0.7,
                        .high_access_threshold = 5,
                        .zero_access_grace_days = 30,
                        .recent_memory_days = 7,
                        .ancient_memory_days = 90,
                        .min_interval_secs = 3600};
}

static const char *const k_prune_names[] = {"importance_only", "importance_access",
                                            "importance_access_age"};

int prune_strategy_parse(const char *s, prune_strategy *out)
{
    for (int i = 0; s && i < 3; i++) {
        if (strcasecmp(s, k_prune_names[i]) == 0) {
            *out = (prune_strategy)i;
            return 0;
        }
    }
    return -1;
}

const char *prune_strategy_name(prune_strategy s)
{
    return (unsigned)s < 3 ? k_prune_names[s] : "unknown";
}

static double age_score(int64_t age, const prune_config *c)
{
    if (age <= c->recent_memory_days) return 1.0;
    if (age >= c->ancient_memory_days) return 0.1;
    double span = (double)(c->ancient_memory_days - c->recent_memory_days);
    return 1.0 - 0.9 * (double)(age - c->recent_memory_days) / span;
}

double prune_score(const mem_fact *f, double now, const prune_config *c)
{
    double s = c->w_importance * f->importance;
    if (c->strategy != PRUNE_IMPORTANCE_ONLY) {
        double a = (double)f->accessed_count / 10.0;
        s += c->w_access * (a < 1.0 ? a : 1.0);
    }
    if (c->strategy == PRUNE_IMPORTANCE_ACCESS_AGE)
        s += c->w_age * age_score(age_days(f->created_at, now), c);
    return s;
}

bool prune_is_protected(const mem_fact *f, double now, const prune_config *c)
{
    if (f->importance >= c->max_importance_to_delete) return true;
    if (f->accessed_count >= c->high_access_threshold) return true;
    return f->accessed_count == 0 && age_days(f->created_at, now) < c->zero_access_grace_days;
}

typedef struct ranked {
    double score;
    size_t index;
} ranked;

static int cmp_ranked(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

size_t prune_select(const mem_fact *facts, size_t n, double now, const prune_config *c, size_t *out)
{
    size_t target = c->target > 0 ? (size_t)c->target : 0;
    if (n <= target || !facts || !out) return 0;
    ranked *r = malloc(n * sizeof *r);
    if (!r) return 0;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (prune_is_protected(&facts[i], now, c)) continue;
        r[m].score = prune_score(&facts[i], now, c);
        r[m++].index = i;
    }
    qsort(r, m, sizeof *r, cmp_ranked);
    size_t want = n - target, k = 0;
    for (; k < m && k < want; k++) out[k] = r[k].index;
    free(r);
    return k;
}

/* ---- decay ----------------------------------------------------------------- */

void decay_config_default(decay_config *c)
{
    *c = (decay_config){.mode = DECAY_ACCESS_BASED,
                        .interval_hours = 6,
                        .max_decay_days = 90,
                        .floor = 0.1,
                        .protected_importance = 0.8,
                        .access_protection_days = 7,
                        .high_access_threshold = 3,
                        .zero_access_multiplier = 2.0,
                        .linear_rate = 0.01,
                        .half_life_days = 30,
                        .auto_pruning = true,
                        .auto_prune_threshold = 1000,
                        .auto_prune_importance = 0.3,
                        .auto_prune_min_low = 50};
}

static const char *const k_decay_names[] = {"none", "linear", "exponential", "logarithmic",
                                            "access_based"};

int decay_mode_parse(const char *s, decay_mode *out)
{
    for (int i = 0; s && i < 5; i++) {
        if (strcasecmp(s, k_decay_names[i]) == 0) {
            *out = (decay_mode)i;
            return 0;
        }
    }
    return -1;
}

const char *decay_mode_name(decay_mode m)
{
    return (unsigned)m < 5 ? k_decay_names[m] : "unknown";
}

/* The cap on the factor; §6.3 fixes 0.8 for age >= max_decay_days. */
#define DECAY_MAX_FACTOR 0.8
#define ACCESS_CAP       0.6
#define ACCESS_BASE      0.7
#define ACCESS_SCALE     30.0 /* days; fixed in §6.3, not the half-life */

static double mode_factor(decay_mode m, double age, const decay_config *c)
{
    switch (m) {
    case DECAY_LINEAR:
        return fmin(c->linear_rate * age, DECAY_MAX_FACTOR);
    case DECAY_EXPONENTIAL:
        return 1.0 - pow(0.5, age / c->half_life_days);
    case DECAY_LOGARITHMIC:
        return fmin(log1p(age) / log1p((double)c->max_decay_days), DECAY_MAX_FACTOR);
    case DECAY_ACCESS_BASED:
        return fmin(1.0 - pow(ACCESS_BASE, age / ACCESS_SCALE), ACCESS_CAP);
    default:
        return 0.0;
    }
}

static double decay_factor(const mem_fact *f, int64_t age, const decay_config *c)
{
    if (age <= 0) return 0.0;
    double k = age >= c->max_decay_days ? DECAY_MAX_FACTOR : mode_factor(c->mode, (double)age, c);
    if (c->mode == DECAY_ACCESS_BASED) {
        if (f->accessed_count <= 0)
            k *= c->zero_access_multiplier;
        else if (f->accessed_count >= c->high_access_threshold)
            k *= 0.5;
    }
    return k;
}

static double round3(double x)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%.3f", x);
    return strtod(buf, NULL);
}

static bool decay_protected(const mem_fact *f, double now, const decay_config *c)
{
    if (c->mode == DECAY_NONE) return true;
    if (f->importance >= c->protected_importance) return true;
    return f->last_accessed > 0 && now - f->last_accessed < c->access_protection_days * DAY_SECS;
}

double decay_importance(const mem_fact *f, double now, const decay_config *c)
{
    if (decay_protected(f, now, c)) return f->importance;
    double k = decay_factor(f, age_days(f->created_at, now), c);
    double v = round3(fmax(f->base_importance - f->base_importance * k, c->floor));
    return v < f->importance ? v : f->importance;
}
