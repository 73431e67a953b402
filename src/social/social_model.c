/*
 * social_model.c - the pure part of social.h: no store, no locks.
 *
 * Relationship update and type rules are the relationship manager's (spec
 * §6.8.2) on the one [0, 1] scale; compatibility_score and
 * relationship_strength are the model formulas of §6.8.1 evaluated on the
 * stored values. The compatibility engine is §6.8.3 with two decisions the
 * spec leaves open:
 *   - Big-Five trait values above 1 are read as a 0..100 scale and divided
 *     by 100 (personas of the original use 0..100 integers for their own
 *     traits); values are then clamped to [0, 1]. Non-numeric values count
 *     as absent.
 *   - recommended topics tie on combined interest in persona1's order.
 * Reported scores are rounded like Python's round(x, 3) by the caller
 * (social_round3); thresholds use the unrounded values.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/util.h"
#include "social/social.h"

static double clampd(double x, double lo, double hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

double social_round3(double x)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%.3f", x);
    double v = strtod(buf, NULL);
    return v == 0 ? 0.0 : v; /* no -0 */
}

/* ---- relationships ---------------------------------------------------------- */

bool social_pair_order(const char **a, const char **b)
{
    if (strcmp(*a, *b) <= 0) return false;
    const char *t = *a;
    *a = *b;
    *b = t;
    return true;
}

void social_rel_init(social_rel *r, const char *a, const char *b, const char *now_iso)
{
    memset(r, 0, sizeof *r);
    social_pair_order(&a, &b);
    util_uuid4(r->id);
    snprintf(r->persona1_id, sizeof r->persona1_id, "%s", a);
    snprintf(r->persona2_id, sizeof r->persona2_id, "%s", b);
    r->affinity = r->trust = r->respect = r->intimacy = SOCIAL_REL_DEFAULT;
    snprintf(r->type, sizeof r->type, "stranger");
    snprintf(r->first_meeting, sizeof r->first_meeting, "%s", now_iso);
    snprintf(r->created_at, sizeof r->created_at, "%s", now_iso);
    snprintf(r->updated_at, sizeof r->updated_at, "%s", now_iso);
    r->shared_json = "[]";
}

/* §6.8.2 context modifiers, added to a field on every update. */
typedef struct ctx_mod {
    const char *context;
    double affinity, trust, respect, intimacy;
} ctx_mod;

static const ctx_mod MODS[] = {
    {"conflict", -0.1, -0.2, 0, 0}, {"collaboration", 0, 0.1, 0.1, 0},
    {"casual", 0.1, 0, 0, 0},       {"deep_conversation", 0, 0.05, 0, 0.1},
    {"professional", 0, 0, 0.1, 0},
};

static const ctx_mod *find_mod(const char *context)
{
    static const ctx_mod none = {"", 0, 0, 0, 0};
    for (size_t i = 0; context && i < sizeof MODS / sizeof MODS[0]; i++)
        if (strcmp(MODS[i].context, context) == 0) return &MODS[i];
    return &none;
}

void social_rel_apply(social_rel *r, double q, double minutes, const char *context,
                      const char *now_iso)
{
    q = clampd(q, -1, 1);
    if (!(minutes >= 0)) minutes = 0;
    double d = 0.1 * q * fmin(1.0, minutes / 30.0);
    const ctx_mod *m = find_mod(context);
    r->affinity = clampd(r->affinity + d + m->affinity, 0, 1);
    r->trust = clampd(r->trust + 0.8 * d + m->trust, 0, 1);
    r->respect = clampd(r->respect + 0.9 * d + m->respect, 0, 1);
    r->intimacy = clampd(r->intimacy + 0.7 * d + m->intimacy, 0, 1);
    r->interaction_count++;
    r->total_interaction_time += minutes;
    r->recent_quality = q;
    snprintf(r->last_interaction, sizeof r->last_interaction, "%s", now_iso);
    snprintf(r->updated_at, sizeof r->updated_at, "%s", now_iso);
    snprintf(r->type, sizeof r->type, "%s", social_rel_classify(r));
}

const char *social_rel_classify(const social_rel *r)
{
    if (r->interaction_count < 3) return "stranger";
    double avg = (r->affinity + r->trust + r->respect + r->intimacy) / 4;
    if (avg < 0.3) return r->affinity < 0.2 ? "enemy" : "rival";
    if (avg < 0.5) return "acquaintance";
    if (avg < 0.7) return "friend";
    if (r->intimacy > 0.8) return "romantic";
    if (r->respect > 0.8 && r->interaction_count > 10) return "mentor";
    return "close_friend";
}

double social_rel_compat_score(const social_rel *r)
{
    double s = 0.3 * fabs(r->affinity) + 0.25 * fabs(r->trust) + 0.25 * fabs(r->respect) +
               0.2 * r->intimacy;
    if (r->affinity > 0 && r->trust > 0) s *= 1.2;
    return fmin(1.0, s);
}

double social_rel_strength(const social_rel *r)
{
    return 0.4 * r->affinity + 0.3 * r->trust + 0.2 * r->respect +
           0.1 * (r->affinity > 0 ? r->intimacy : -r->intimacy);
}

/* ---- compatibility: personality --------------------------------------------- */

/* A Big-Five trait in [0, 1]; false when absent or not a number. */
static bool trait(const jv *traits, const char *name, double *out)
{
    const jv *v = jv_get(traits, name);
    if (!jv_is_num(v)) return false;
    double x = jv_num(v);
    if (x > 1) x /= 100; /* a 0..100 scale */
    *out = clampd(x, 0, 1);
    return true;
}

static double trait_or(const jv *traits, const char *name, double def)
{
    double x;
    return trait(traits, name, &x) ? x : def;
}

static double trait_similarity(const char *name, double x, double y)
{
    double d = fabs(x - y);
    if (strcmp(name, "neuroticism") == 0) return 1 - d - 0.3 * fmax(x, y);
    if (strcmp(name, "extraversion") == 0) return d < 0.5 ? 1 - 0.7 * d : 1 - d;
    return 1 - d;
}

double social_personality_score(const jv *t1, const jv *t2)
{
    static const struct {
        const char *name;
        double weight;
    } BIG5[] = {{"openness", 0.2},
                {"conscientiousness", 0.15},
                {"extraversion", 0.25},
                {"agreeableness", 0.25},
                {"neuroticism", 0.15}};
    double sum = 0, wsum = 0;
    for (size_t i = 0; i < sizeof BIG5 / sizeof BIG5[0]; i++) {
        double x, y;
        if (!trait(t1, BIG5[i].name, &x) || !trait(t2, BIG5[i].name, &y)) continue;
        sum += BIG5[i].weight * clampd(trait_similarity(BIG5[i].name, x, y), 0, 1);
        wsum += BIG5[i].weight;
    }
    return wsum > 0 ? sum / wsum : 0.5;
}

/* ---- compatibility: social -------------------------------------------------- */

static int rank_level(const char *rank)
{
    static const struct {
        const char *name;
        int level;
    } RANKS[] = {{"noble", 4}, {"merchant", 3}, {"artisan", 2}, {"commoner", 1}, {"peasant", 0}};
    for (size_t i = 0; rank && i < sizeof RANKS / sizeof RANKS[0]; i++)
        if (strcasecmp(RANKS[i].name, rank) == 0) return RANKS[i].level;
    return 1;
}

double social_social_score(const social_profile *a, const social_profile *b)
{
    double charisma = fmin(1.0, (a->charisma + b->charisma) / 40.0);
    int di = abs(a->intelligence - b->intelligence);
    double intel = di <= 3 ? 1.0 : di <= 6 ? 0.8 : 0.5;
    int dr = abs(rank_level(a->social_rank) - rank_level(b->social_rank));
    double rank = dr == 0 ? 1.0 : dr == 1 ? 0.8 : dr == 2 ? 0.6 : 0.3;
    return 0.4 * charisma + 0.4 * intel + 0.2 * rank;
}

/* ---- compatibility: interests ----------------------------------------------- */

/* Member i of an object is a topic: numeric, and the first of its key. */
static bool topic_at(const jv *o, uint32_t i, const char **key, double *val)
{
    const jv *v = &o->u.members[i].val;
    if (!jv_is_num(v) || jv_get(o, o->u.members[i].key) != v) return false;
    *key = o->u.members[i].key;
    *val = jv_num(v);
    return true;
}

static size_t topic_count(const jv *o)
{
    size_t n = 0;
    const char *k;
    double v;
    for (uint32_t i = 0; o && o->type == JV_OBJECT && i < o->len; i++) n += topic_at(o, i, &k, &v);
    return n;
}

static bool topic_in(const jv *o, const char *key, double *val)
{
    const jv *v = jv_get(o, key);
    if (!jv_is_num(v)) return false;
    *val = jv_num(v);
    return true;
}

double social_interest_score(const jv *t1, const jv *t2)
{
    size_t n1 = topic_count(t1), n2 = topic_count(t2);
    if (n1 == 0 || n2 == 0) return 0.5;
    size_t common = 0;
    double sum = 0, wsum = 0;
    for (uint32_t i = 0; i < t1->len; i++) {
        const char *k;
        double x, y;
        if (!topic_at(t1, i, &k, &x) || !topic_in(t2, k, &y)) continue;
        common++;
        if (x <= 20 || y <= 20) continue;
        double w = (x + y) / 200;
        sum += w * (1 - fabs(x - y) / 100);
        wsum += w;
    }
    if (common == 0) return 0.3;
    double base = wsum > 0 ? sum / wsum : 0.3;
    return clampd(base + 0.2 * (double)common / (double)(n1 > n2 ? n1 : n2), 0, 1);
}

/* Common topics both like > 30, by combined interest, top SOCIAL_MAX_TOPICS. */
static void recommend_topics(const jv *t1, const jv *t2, social_compat *out)
{
    double score[SOCIAL_MAX_TOPICS];
    out->ntopics = 0;
    for (uint32_t i = 0; t1 && t1->type == JV_OBJECT && i < t1->len; i++) {
        const char *k;
        double x, y;
        if (!topic_at(t1, i, &k, &x) || !topic_in(t2, k, &y) || x <= 30 || y <= 30) continue;
        int pos = out->ntopics;
        while (pos > 0 && score[pos - 1] < x + y) pos--;
        if (pos >= SOCIAL_MAX_TOPICS) continue;
        int last = out->ntopics < SOCIAL_MAX_TOPICS ? out->ntopics : SOCIAL_MAX_TOPICS - 1;
        for (int j = last; j > pos; j--) {
            score[j] = score[j - 1];
            out->topics[j] = out->topics[j - 1];
        }
        score[pos] = x + y;
        out->topics[pos] = k;
        if (out->ntopics < SOCIAL_MAX_TOPICS) out->ntopics++;
    }
}

/* ---- compatibility: overall ------------------------------------------------- */

static void add_challenge(social_compat *c, const char *name)
{
    if (c->nchallenges < SOCIAL_MAX_CHALLENGES) c->challenges[c->nchallenges++] = name;
}

static void challenges(const social_profile *a, const social_profile *b, social_compat *c)
{
    c->nchallenges = 0;
    if (c->personality < 0.4) add_challenge(c, "personality_clash");
    if (c->social < 0.4) add_challenge(c, "social_mismatch");
    if (c->interests < 0.3) add_challenge(c, "few_shared_interests");
    if (trait_or(a->traits, "neuroticism", 0.5) > 0.7 ||
        trait_or(b->traits, "neuroticism", 0.5) > 0.7)
        add_challenge(c, "high_stress_potential");
    double dx = trait_or(a->traits, "extraversion", 0.5) - trait_or(b->traits, "extraversion", 0.5);
    if (fabs(dx) > 0.6) add_challenge(c, "energy_level_mismatch");
}

static void suggestions(social_compat *c)
{
    double o = c->overall;
    c->prediction = o > 0.8    ? "excellent"
                    : o > 0.65 ? "very_good"
                    : o > 0.5  ? "good"
                    : o > 0.35 ? "challenging"
                               : "difficult";
    if (o > 0.8) {
        c->style = "collaborative_enthusiastic", c->potential = "excellent_friends";
        c->frequency = "frequent";
    } else if (o > 0.6) {
        c->style = "friendly_engaging", c->potential = "good_friends", c->frequency = "regular";
    } else if (o > 0.4) {
        c->style = "respectful_cautious", c->potential = "cordial_acquaintances";
        c->frequency = "occasional";
    } else {
        c->style = "formal_distant", c->potential = "professional_only", c->frequency = "minimal";
    }
}

void social_compat_compute(const social_profile *a, const social_profile *b, const social_rel *rel,
                           social_compat *out)
{
    memset(out, 0, sizeof *out);
    out->personality = social_personality_score(a->traits, b->traits);
    out->social = social_social_score(a, b);
    out->interests = social_interest_score(a->topics, b->topics);
    out->history = rel ? (social_rel_strength(rel) + 1) / 2 : 0.5;
    out->overall =
        0.35 * out->personality + 0.25 * out->social + 0.25 * out->interests + 0.15 * out->history;
    suggestions(out);
    recommend_topics(a->topics, b->topics, out);
    challenges(a, b, out);
}

/* ---- emotional state -------------------------------------------------------- */

void social_emotion_defaults(social_emotion *s)
{
    memset(s, 0, sizeof *s);
    s->mood = 0.5;
    s->energy_level = 0.7;
    s->stress_level = 0.3;
    s->curiosity = 0.6;
    s->social_battery = 0.8;
}

void social_emotion_apply(social_emotion *s, const social_emotion_patch *p)
{
    if (p->has_mood) s->mood = clampd(p->mood, -1, 1);
    if (p->has_energy) s->energy_level = clampd(p->energy_level, 0, 1);
    if (p->has_stress) s->stress_level = clampd(p->stress_level, 0, 1);
    if (p->has_curiosity) s->curiosity = clampd(p->curiosity, 0, 1);
    if (p->has_battery) s->social_battery = clampd(p->social_battery, 0, 1);
}
