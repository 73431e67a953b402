/*
 * engine_model.c - the arithmetic of the conversation engine (spec §6.4
 * continue score, §4.2 routing, §4.4 template lines and token estimate,
 * §6.6 turn effects and regeneration, §6.7 cooldown). Pure functions: no
 * I/O, no locks, no allocation, so tests can replay hours of simulated
 * time in microseconds.
 *
 * Where the original computed in floating point and truncated with int(),
 * so do we (the Aria/Kira example of §6.4 is 62.74 -> 62). Integer
 * divisions of the original (d // 30) are C integer divisions of
 * non-negative values, which agree.
 */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/engine.h"

const char *engine_route_name(engine_route r)
{
    switch (r) {
    case ENGINE_FULL_LLM:
        return "full_llm";
    case ENGINE_CONSTRAINED:
        return "constrained";
    default:
        return "template";
    }
}

/* ---- continue score ---------------------------------------------------------- */

double engine_time_rate(const char *priority)
{
    if (!priority) return 10;
    if (strcmp(priority, "urgent") == 0) return 2;
    if (strcmp(priority, "important") == 0) return 10;
    if (strcmp(priority, "casual") == 0 || strcmp(priority, "social") == 0) return 30;
    return 10;
}

int engine_rank_level(const char *rank)
{
    static const struct {
        const char *name;
        int level;
    } levels[] = {
        {"royalty", 5}, {"nobility", 4}, {"merchant", 3}, {"commoner", 2}, {"peasant", 1}};
    for (size_t i = 0; rank && i < sizeof levels / sizeof levels[0]; i++)
        if (strcasecmp(rank, levels[i].name) == 0) return levels[i].level;
    return 2; /* unknown ranks count as commoner */
}

double engine_history_from_compat(double compatibility)
{
    return compatibility * ENGINE_HISTORY_SCALE - ENGINE_HISTORY_OFFSET;
}

static double pref(const engine_party *p)
{
    return p->topic_pref < 0 ? ENGINE_DEFAULT_TOPIC_PREF : p->topic_pref;
}

static double resource_term(const engine_party *s, const engine_ctx *c)
{
    double r = ENGINE_RESOURCE_MAX;
    if (s->available_time < 60) r *= s->available_time / 60.0;
    if (c->token_budget < 100) r *= c->token_budget / 100.0;
    if (s->social_energy < 30) r *= s->social_energy / 30.0;
    return r;
}

int engine_continue_score(const engine_party *s, const engine_party *l, const engine_ctx *c,
                          double compatibility, engine_terms *t)
{
    engine_terms x;
    x.time = fmax(0, ENGINE_TIME_MAX - c->duration / engine_time_rate(s->priority));
    double p1 = pref(s), p2 = pref(l);
    double pull = 0.7 * ((p1 + p2) / 2) + 0.3 * fmin(p1, p2);
    if (c->topic_drift_count > 2) pull *= 0.6;
    x.topic = fmin(ENGINE_TOPIC_MAX, pull * ENGINE_TOPIC_MAX / 100);
    int dl = abs(engine_rank_level(s->social_rank) - engine_rank_level(l->social_rank));
    double status = dl == 0 ? 8 : dl == 1 ? 6 : dl >= 3 ? 2 : 4;
    double charisma = s->charisma < l->charisma ? s->charisma : l->charisma;
    x.social = fmin(ENGINE_SOCIAL_MAX, (0.8 * charisma + status) / 2);
    int fatigue = s->interaction_fatigue / 2;
    x.fatigue = fatigue < ENGINE_FATIGUE_MAX ? fatigue : ENGINE_FATIGUE_MAX;
    x.history = engine_history_from_compat(compatibility);
    x.resource = resource_term(s, c);
    double sum = x.time + x.topic + x.social - x.fatigue + x.history + x.resource;
    double v = trunc(sum); /* Python int(): toward zero */
    x.score = v < 0 ? 0 : v > 100 ? 100 : (int)v;
    if (t) *t = x;
    return x.score;
}

bool engine_should_continue(int score, int token_budget)
{
    return score >= ENGINE_SCORE_CONSTRAINED && token_budget > ENGINE_MIN_BUDGET;
}

/* ---- routing ------------------------------------------------------------------- */

static int num_predict(int max_length)
{
    int n = (int)(max_length * 1.3);
    return n < 300 ? n : 300;
}

engine_plan engine_route_for(int score)
{
    engine_plan p = {0};
    if (score >= ENGINE_SCORE_FULL) {
        p.route = ENGINE_FULL_LLM;
        p.creativity = score >= ENGINE_SCORE_FULL_HIGH ? 0.8 : 0.6;
        p.max_length = 100;
        p.max_tokens = num_predict(p.max_length);
    } else if (score >= ENGINE_SCORE_CONSTRAINED) {
        p.route = ENGINE_CONSTRAINED;
        p.creativity = 0.5;
        p.max_length = 50;
        p.concise = true;
        p.prepare_exit = true;
        p.max_tokens = 50; /* style concise sets num_predict 50, applied last */
    } else {
        p.route = ENGINE_TEMPLATE;
    }
    return p;
}

/* ---- canned lines -------------------------------------------------------------- */

static const char *const T_URGENT[3] = {"I really must go.", "I have urgent matters to attend to.",
                                        "Perhaps we can continue this later."};
static const char *const T_DRAINED[3] = {"I'm feeling a bit drained.",
                                         "I think I need a break from talking.",
                                         "It's been a long day for me."};
static const char *const T_TIRED[3] = {"Interesting... I should get going though.",
                                       "I'll let you get back to what you were doing.",
                                       "Nice chatting with you."};
static const char *const T_NEUTRAL[3] = {"I see.", "That's good to know.", "Hmm, interesting."};

const char *engine_template_line(const char *priority, int social_energy, int fatigue,
                                 unsigned pick)
{
    const char *const *pool = T_NEUTRAL;
    if (priority && strcmp(priority, "urgent") == 0)
        pool = T_URGENT;
    else if (social_energy < 30)
        pool = T_DRAINED;
    else if (fatigue > 50)
        pool = T_TIRED;
    return pool[pick % 3];
}

const char *engine_fallback_line(const char *priority, int social_energy, unsigned pick)
{
    static const char *const pool[4] = {
        "I'm having trouble finding the right words right now.",
        "Let me think about that for a moment.",
        "That's an interesting point to consider.",
        "I appreciate you bringing that up.",
    };
    if (priority && strcmp(priority, "urgent") == 0)
        return "I really need to focus on urgent matters right now.";
    if (social_energy < 30) return "I'm feeling a bit drained from all this conversation.";
    return pool[pick % 4];
}

/* ---- tokens -------------------------------------------------------------------- */

int engine_count_words(const char *text)
{
    int words = 0;
    bool in = false;
    for (const unsigned char *p = (const unsigned char *)text; p && *p; p++) {
        bool sp = isspace(*p) != 0;
        if (!sp && !in) words++;
        in = !sp;
    }
    return words;
}

int engine_estimate_tokens(const char *text, engine_route r)
{
    double m = r == ENGINE_FULL_LLM ? 1.5 : r == ENGINE_CONSTRAINED ? 1.0 : 0.1;
    return (int)(engine_count_words(text) * 1.3 * m);
}

/* ---- energy, fatigue, availability --------------------------------------------- */

int engine_turn_seconds(double processing_time)
{
    int pt = processing_time > 1e9 ? 1000000000 : (int)processing_time;
    return pt > ENGINE_MIN_TURN_SECONDS ? pt : ENGINE_MIN_TURN_SECONDS;
}

void engine_apply_turn(engine_vitals *v, int d)
{
    if (d < 0) d = 0;
    v->interaction_fatigue += d / 30;
    v->social_energy -= d / 60;
    if (v->social_energy < 0) v->social_energy = 0;
    v->available_time -= d;
    if (v->available_time < 0) v->available_time = 0;
}

/* Move whole units out of *acc; a value at its bound banks nothing. */
static int take_units(double *acc, double add, bool at_bound)
{
    if (at_bound) {
        *acc = 0;
        return 0;
    }
    *acc += add;
    double whole = floor(*acc);
    *acc -= whole;
    return whole > 1e9 ? 1000000000 : (int)whole;
}

void engine_regenerate(engine_vitals *v, engine_carry *c, double elapsed, int time_cap)
{
    if (!(elapsed > 0)) return; /* also NaN */
    int gain = take_units(&c->energy, elapsed / ENGINE_ENERGY_REGEN_SECS,
                          v->social_energy >= ENGINE_ENERGY_MAX);
    if (gain) {
        int64_t e = (int64_t)v->social_energy + gain;
        v->social_energy = e > ENGINE_ENERGY_MAX ? ENGINE_ENERGY_MAX : (int)e;
    }
    int rest =
        take_units(&c->fatigue, elapsed / ENGINE_FATIGUE_REGEN_SECS, v->interaction_fatigue <= 0);
    if (rest)
        v->interaction_fatigue = rest >= v->interaction_fatigue ? 0 : v->interaction_fatigue - rest;
    int back =
        take_units(&c->time, elapsed * ENGINE_TIME_REGEN_PER_SEC, v->available_time >= time_cap);
    if (back) {
        int64_t t = (int64_t)v->available_time + back;
        v->available_time = t > time_cap ? time_cap : (int)t;
    }
}

double engine_cooldown_seconds(int final_score, int first_fatigue)
{
    double cd = ENGINE_COOLDOWN_BASE;
    if (final_score > 70)
        cd *= 0.5;
    else if (final_score < 30)
        cd *= 2.0;
    return cd * (1 + first_fatigue / 100.0);
}
