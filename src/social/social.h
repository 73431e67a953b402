/*
 * social.h - relationships between personas and their emotional state
 * (spec §6.8, §6.9, §5.1 "Recommended unified schema", §12 items 18, 21, 27).
 *
 * One schema, one writer (§12 item 18). The original had two relationship
 * writers with two scales (engine: -1..1, defaults 0; manager: 0..1,
 * defaults 0.5). Here every relationship field has ONE scale: affinity,
 * trust, respect and intimacy are all in [0, 1], new pairs start at 0.5
 * (the manager's algorithm of §6.8.2, which relationship.update exposes),
 * and this module is the only code that writes the `relationships`,
 * `interaction_history` and `emotional_states` tables. The conversation
 * engine updates relationships through social_rel_update() with a real
 * quality in [-1, 1] and real minutes (fixes §12 item 27).
 *
 * A pair is stored once, in canonical order (persona1_id < persona2_id by
 * byte comparison); lookups are order-independent. A relationship row is
 * created on demand by the first update of a pair, and only between two
 * existing personas; reads of a pair that never interacted report "none".
 * Interaction history rows keep the caller's order (persona1 = initiator).
 * Deleting a persona removes its relationships, history and emotional state
 * in the same transaction (schema v4 triggers and foreign keys).
 *
 * The pure parts (update rule, type rule, model formulas, compatibility
 * engine, emotional clamping) take plain structs so they can be tested
 * without a store. The store-backed parts write through store_write() on
 * the writer thread (read-modify-write inside one job, so concurrent
 * updates of a pair serialize) and read through the read pool; they block
 * and must run on a worker thread.
 *
 * Errors: functions return 0, or -1 with a JSON-RPC code and message in a
 * social_err (-32000 persona not found, -32002 store busy, -32603 SQLite).
 * Strings returned in structs live in the caller's arena or are literals.
 */
#ifndef PMCP_SOCIAL_H
#define PMCP_SOCIAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/json.h"

struct store;
struct persona_reg;

typedef struct social_err {
    int code; /* JSON-RPC error code */
    char msg[256];
} social_err;

/* ---- relationships ---------------------------------------------------------- */

#define SOCIAL_REL_DEFAULT 0.5 /* affinity/trust/respect/intimacy of a new pair */

typedef struct social_rel {
    char id[40];
    char persona1_id[40], persona2_id[40];     /* canonical order */
    double affinity, trust, respect, intimacy; /* each in [0, 1] */
    char type[16];                             /* stranger, acquaintance, ... */
    int64_t interaction_count;
    double total_interaction_time; /* minutes */
    double recent_quality;         /* quality of the last interaction, [-1, 1] */
    char first_meeting[40];
    char last_interaction[40]; /* "" = never */
    char created_at[40], updated_at[40];
    const char *shared_json; /* JSON array (arena or literal "[]") */
} social_rel;

/* A new pair: every value 0.5, stranger, no interactions. Orders the ids. */
void social_rel_init(social_rel *r, const char *a, const char *b, const char *now_iso);
/* Put two ids in canonical order; returns true when they were swapped. */
bool social_pair_order(const char **a, const char **b);

/* §6.8.2: apply one interaction (q clamped to [-1, 1], minutes >= 0) with
 * the context modifiers, bump the count and time, re-type. */
void social_rel_apply(social_rel *r, double q, double minutes, const char *context,
                      const char *now_iso);
/* §6.8.2 type rule (count, mean of the four values, intimacy, respect). */
const char *social_rel_classify(const social_rel *r);
/* §6.8.1 model formulas. */
double social_rel_compat_score(const social_rel *r);
double social_rel_strength(const social_rel *r);

/* Read the relationship of a pair (either order). *exists is false (and r
 * zeroed) when the pair never interacted. Both personas must exist. */
int social_rel_get(struct store *st, struct persona_reg *reg, const char *a, const char *b,
                   jarena *ar, social_rel *r, bool *exists, social_err *e);
/* Every relationship of a persona, most recently updated first; *out is
 * allocated in ar. The persona must exist. */
int social_rel_list(struct store *st, struct persona_reg *reg, const char *persona, jarena *ar,
                    social_rel **out, size_t *n, social_err *e);
/* One interaction between a and b (§6.8.2): create the pair on demand, update
 * it and append an interaction_history row, in one transaction. */
int social_rel_update(struct store *st, struct persona_reg *reg, const char *a, const char *b,
                      double q, double minutes, const char *context, social_rel *out,
                      social_err *e);

/* Interactions of a pair with |quality| > 0.7 (the model's memorable
 * moments), oldest first, allocated in ar. */
typedef struct social_moment {
    const char *timestamp, *context;
    double quality, duration;
} social_moment;
int social_rel_moments(struct store *st, const char *a, const char *b, jarena *ar,
                       social_moment **out, size_t *n, social_err *e);

#define SOCIAL_TOP_ACTIVE 5
typedef struct social_type_count {
    const char *type;
    int64_t count;
} social_type_count;
typedef struct social_stats {
    int64_t total_relationships;
    social_type_count *types; /* in ar */
    size_t ntypes;
    double average_compatibility; /* mean of (a+t+r+i)/4, rounded to 3 */
    int64_t total_interactions;   /* interaction_history rows */
    struct {
        const char *persona_id;
        int64_t interactions;
    } active[SOCIAL_TOP_ACTIVE]; /* by count as persona1 (initiator) */
    size_t nactive;
} social_stats;
int social_stats_get(struct store *st, jarena *ar, social_stats *out, social_err *e);

/* ---- compatibility engine (§6.8.3) ------------------------------------------ */

typedef struct social_profile {
    const char *id, *name;
    const jv *traits; /* object; Big-Five values in [0,1] or 0..100 (scaled) */
    const jv *topics; /* object of interests 0..100 */
    int charisma, intelligence;
    const char *social_rank;
} social_profile;

#define SOCIAL_MAX_TOPICS     5
#define SOCIAL_MAX_CHALLENGES 5
typedef struct social_compat {
    double personality, social, interests, history, overall; /* unrounded */
    const char *prediction;
    const char *style, *potential, *frequency;
    const char *topics[SOCIAL_MAX_TOPICS];
    int ntopics;
    const char *challenges[SOCIAL_MAX_CHALLENGES];
    int nchallenges;
} social_compat;

double social_personality_score(const jv *t1, const jv *t2);
double social_social_score(const social_profile *a, const social_profile *b);
double social_interest_score(const jv *t1, const jv *t2);
/* rel may be NULL (no relationship: history 0.5). */
void social_compat_compute(const social_profile *a, const social_profile *b, const social_rel *rel,
                           social_compat *out);

/* Load both profiles from the registry (copied into ar), read the existing
 * relationship, compute. -32000 when either persona is unknown. */
int social_compatibility(struct store *st, struct persona_reg *reg, const char *a, const char *b,
                         jarena *ar, social_profile *pa, social_profile *pb, social_compat *out,
                         bool *existing, social_err *e);

/* Round half-even on the decimal expansion like Python's round(x, 3). */
double social_round3(double x);

/* ---- emotional state (§6.9) ------------------------------------------------- */

typedef struct social_emotion {
    double mood;                                                  /* [-1, 1] */
    double energy_level, stress_level, curiosity, social_battery; /* [0, 1] */
    char last_updated[40];
} social_emotion;

/* A patch: each field applies only when its has_ flag is set. */
typedef struct social_emotion_patch {
    bool has_mood, has_energy, has_stress, has_curiosity, has_battery;
    double mood, energy_level, stress_level, curiosity, social_battery;
} social_emotion_patch;

/* Defaults of a new row (the relationship manager's): 0.5/0.7/0.3/0.6/0.8. */
void social_emotion_defaults(social_emotion *s);
/* Apply a patch with clamping (mood to [-1,1], the rest to [0,1]). */
void social_emotion_apply(social_emotion *s, const social_emotion_patch *p);

/* The persona's state; a persona with no row yet gets one with the defaults
 * (stored). Unknown persona: -32000 and nothing is written (§12 item 21). */
int social_emotion_get(struct store *st, struct persona_reg *reg, const char *persona,
                       social_emotion *out, social_err *e);
/* Apply a clamped patch, set last_updated = now, store; the row is created
 * from the defaults when missing. Unknown persona: -32000. */
int social_emotion_update(struct store *st, struct persona_reg *reg, const char *persona,
                          const social_emotion_patch *p, social_emotion *out, social_err *e);

#endif
