/*
 * test_social.c - relationships and emotional state (src/social/).
 *
 * Two kinds of tests. The pure model (update rule with context modifiers,
 * type rule, §6.8.1 formulas, compatibility engine, emotional clamping) is
 * checked on hand-built structs against the numbers of spec §6.8 and §6.9,
 * including the two worked examples: the §6.8.2 first update of a pair and
 * the §6.8.3 Aria/Kira compatibility. The store-backed part runs on a real
 * SQLite store (schema v4) in a temporary directory with the persona
 * registry loaded from it (so the seeded Aria and Kira exist); database
 * effects are checked with direct SQL on a pooled read connection, and
 * persistence by closing and reopening store and registry.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/json.h"
#include "lib/log.h"
#include "persona/persona.h"
#include "social/social.h"
#include "store/store.h"

#define EPS 1e-9
#define NOW "2025-10-15T10:30:00.000000+00:00"

static const char ARIA_TRAITS[] =
    "{\"extroverted\":90,\"creative\":85,\"empathetic\":80,\"curious\":75,\"optimistic\":85}";
static const char ARIA_TOPICS[] = "{\"music\":95,\"stories\":90,\"travel\":85,\"gossip\":80,"
                                  "\"magic\":70,\"adventure\":85,\"art\":80,\"local_news\":75}";
static const char KIRA_TRAITS[] =
    "{\"introverted\":70,\"analytical\":95,\"focused\":90,\"methodical\":85,\"reserved\":75}";
static const char KIRA_TOPICS[] = "{\"research\":95,\"magic\":90,\"history\":85,"
                                  "\"philosophy\":80,\"books\":85,\"discovery\":90,"
                                  "\"gossip\":20,\"small_talk\":25}";

/* ---- fixture ------------------------------------------------------------- */

typedef struct fx {
    char dir[64];
    char path[128];
    store *st;
    persona_reg *reg;
    char aria[40], kira[40];
    jarena ar;
} fx;

static void fx_open(fx *f)
{
    store_opts o;
    store_opts_default(&o);
    o.path = f->path;
    char err[256];
    if (store_open(&f->st, &o, err, sizeof err) != 0) fail_msg("store_open: %s", err);
    assert_int_equal(persona_reg_load(&f->reg, f->st), 0);
    persona_reg_rdlock(f->reg);
    assert_true(persona_reg_count(f->reg) >= 2);
    snprintf(f->aria, sizeof f->aria, "%s", persona_reg_at(f->reg, 0)->id);
    snprintf(f->kira, sizeof f->kira, "%s", persona_reg_at(f->reg, 1)->id);
    persona_reg_unlock(f->reg);
}

static void fx_close(fx *f)
{
    persona_reg_free(f->reg);
    store_close(f->st);
    f->reg = NULL;
    f->st = NULL;
}

static int fx_setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/pmcp-social-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->path, sizeof f->path, "%s/personas.db", f->dir);
    fx_open(f);
    jarena_init(&f->ar);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    fx *f = *state;
    fx_close(f);
    jarena_free(&f->ar);
    char p[160];
    static const char *const suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* ---- helpers ------------------------------------------------------------- */

static const jv *parse(jarena *a, const char *text)
{
    json_error err;
    const jv *v = json_parse(a, text, strlen(text), 0, 16, &err);
    if (!v) fail_msg("bad JSON in test: %s", err.msg);
    return v;
}

static int64_t sql_count(fx *f, const char *sql, const char *arg)
{
    store_conn *c = store_pool_get(f->st);
    assert_non_null(c);
    sqlite3_stmt *q = store_conn_stmt(c, sql);
    assert_non_null(q);
    if (arg) sqlite3_bind_text(q, 1, arg, -1, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(q, 0);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    store_pool_put(f->st, c);
    return n;
}

static const char SQL_COUNT_REL[] = "SELECT count(*) FROM relationships";
static const char SQL_COUNT_HIST[] = "SELECT count(*) FROM interaction_history";
static const char SQL_COUNT_EMO[] = "SELECT count(*) FROM emotional_states";
static const char SQL_COUNT_EMO_OF[] =
    "SELECT count(*) FROM emotional_states WHERE persona_id = ?1";

static social_rel fresh(void)
{
    social_rel r;
    social_rel_init(&r, "a", "b", NOW);
    return r;
}

static void make_persona(fx *f, const char *name, char id[40])
{
    persona_new in = {.name = name,
                      .description = "",
                      .social_rank = "commoner",
                      .traits_json = "{}",
                      .topics_json = "{}",
                      .charisma = 10,
                      .intelligence = 10};
    assert_int_equal(persona_create(f->reg, f->st, &in, id), 0);
}

/* ---- model: update rule ------------------------------------------------------ */

static void test_init_defaults_and_order(void **state)
{
    (void)state;
    social_rel r;
    social_rel_init(&r, "zeta", "alpha", NOW);
    assert_string_equal(r.persona1_id, "alpha");
    assert_string_equal(r.persona2_id, "zeta");
    assert_float_equal(r.affinity, 0.5, EPS);
    assert_float_equal(r.trust, 0.5, EPS);
    assert_float_equal(r.respect, 0.5, EPS);
    assert_float_equal(r.intimacy, 0.5, EPS);
    assert_string_equal(r.type, "stranger");
    assert_int_equal(r.interaction_count, 0);
    assert_string_equal(r.first_meeting, NOW);
    assert_string_equal(r.last_interaction, "");
    assert_int_equal(strlen(r.id), 36);
    const char *a = "b", *b = "a";
    assert_true(social_pair_order(&a, &b));
    assert_string_equal(a, "a");
    assert_false(social_pair_order(&a, &b));
}

/* §6.8.2 example: new pair, q = 0.8, 5 minutes, conversation. */
static void test_update_spec_example(void **state)
{
    (void)state;
    social_rel r = fresh();
    social_rel_apply(&r, 0.8, 5, "conversation", "2025-10-15T11:00:00.000000+00:00");
    assert_float_equal(r.affinity, 0.513333, 1e-6);
    assert_float_equal(r.trust, 0.510667, 1e-6);
    assert_float_equal(r.respect, 0.512, 1e-9);
    assert_float_equal(r.intimacy, 0.509333, 1e-6);
    assert_string_equal(r.type, "stranger");
    assert_int_equal(r.interaction_count, 1);
    assert_float_equal(r.total_interaction_time, 5, EPS);
    assert_float_equal(r.recent_quality, 0.8, EPS);
    assert_string_equal(r.last_interaction, "2025-10-15T11:00:00.000000+00:00");
    assert_string_equal(r.first_meeting, NOW);
}

static void test_update_duration_factor_and_q_clamp(void **state)
{
    (void)state;
    social_rel r = fresh(), s = fresh();
    /* 60 minutes saturate the duration factor at 1 */
    social_rel_apply(&r, 1.0, 60, "conversation", NOW);
    assert_float_equal(r.affinity, 0.6, EPS);
    assert_float_equal(r.trust, 0.58, EPS);
    assert_float_equal(r.respect, 0.59, EPS);
    assert_float_equal(r.intimacy, 0.57, EPS);
    /* q beyond [-1, 1] is clamped; negative minutes count as 0 */
    social_rel_apply(&s, 7.0, 30, "conversation", NOW);
    assert_float_equal(s.affinity, 0.6, EPS);
    assert_float_equal(s.recent_quality, 1.0, EPS);
    social_rel t = fresh();
    social_rel_apply(&t, 1.0, -5, "conversation", NOW);
    assert_float_equal(t.affinity, 0.5, EPS);
    assert_float_equal(t.total_interaction_time, 0, EPS);
    assert_int_equal(t.interaction_count, 1);
}

static void test_context_modifiers(void **state)
{
    (void)state;
    static const struct {
        const char *ctx;
        double a, t, r, i;
    } cases[] = {
        {"conflict", 0.4, 0.3, 0.5, 0.5},       {"collaboration", 0.5, 0.6, 0.6, 0.5},
        {"casual", 0.6, 0.5, 0.5, 0.5},         {"deep_conversation", 0.5, 0.55, 0.5, 0.6},
        {"professional", 0.5, 0.5, 0.6, 0.5},   {"conversation", 0.5, 0.5, 0.5, 0.5},
        {"something_else", 0.5, 0.5, 0.5, 0.5},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        social_rel r = fresh();
        social_rel_apply(&r, 0.0, 5, cases[k].ctx, NOW); /* q = 0: only the modifier */
        assert_float_equal(r.affinity, cases[k].a, EPS);
        assert_float_equal(r.trust, cases[k].t, EPS);
        assert_float_equal(r.respect, cases[k].r, EPS);
        assert_float_equal(r.intimacy, cases[k].i, EPS);
    }
    /* modifier and quality add up: conflict with q = -1 over 30 minutes */
    social_rel r = fresh();
    social_rel_apply(&r, -1.0, 30, "conflict", NOW);
    assert_float_equal(r.affinity, 0.5 - 0.1 - 0.1, EPS);
    assert_float_equal(r.trust, 0.5 - 0.08 - 0.2, EPS);
    assert_float_equal(r.respect, 0.5 - 0.09, EPS);
    assert_float_equal(r.intimacy, 0.5 - 0.07, EPS);
}

static void test_values_clamped_to_unit_interval(void **state)
{
    (void)state;
    social_rel r = fresh();
    for (int i = 0; i < 20; i++) social_rel_apply(&r, -1.0, 30, "conflict", NOW);
    assert_float_equal(r.affinity, 0, EPS);
    assert_float_equal(r.trust, 0, EPS);
    assert_float_equal(r.respect, 0, EPS);
    assert_float_equal(r.intimacy, 0, EPS);
    assert_string_equal(r.type, "enemy");
    social_rel s = fresh();
    for (int i = 0; i < 20; i++) social_rel_apply(&s, 1.0, 30, "deep_conversation", NOW);
    assert_float_equal(s.affinity, 1, EPS);
    assert_float_equal(s.trust, 1, EPS);
    assert_float_equal(s.intimacy, 1, EPS);
    assert_float_equal(s.total_interaction_time, 600, EPS);
    assert_string_equal(s.type, "romantic");
}

/* ---- model: type rule -------------------------------------------------------- */

static const char *classify(double a, double t, double r, double i, int64_t n)
{
    social_rel x = fresh();
    x.affinity = a, x.trust = t, x.respect = r, x.intimacy = i;
    x.interaction_count = n;
    return social_rel_classify(&x);
}

static void test_type_rule(void **state)
{
    (void)state;
    assert_string_equal(classify(1, 1, 1, 1, 2), "stranger"); /* count < 3 */
    assert_string_equal(classify(0.1, 0.2, 0.3, 0.3, 3), "enemy");
    assert_string_equal(classify(0.2, 0.2, 0.3, 0.3, 3), "rival");
    assert_string_equal(classify(0.3, 0.3, 0.3, 0.3, 3), "acquaintance");
    assert_string_equal(classify(0.5, 0.5, 0.5, 0.5, 3), "friend");
    assert_string_equal(classify(0.7, 0.7, 0.7, 0.7, 3), "close_friend");
    assert_string_equal(classify(0.7, 0.7, 0.7, 0.81, 3), "romantic");
    assert_string_equal(classify(0.7, 0.7, 0.81, 0.7, 11), "mentor");
    assert_string_equal(classify(0.7, 0.7, 0.81, 0.7, 10), "close_friend");
    assert_string_equal(classify(0.7, 0.7, 0.9, 0.9, 20), "romantic"); /* intimacy first */
}

/* ---- model: §6.8.1 formulas ----------------------------------------------------- */

static void test_model_formulas(void **state)
{
    (void)state;
    social_rel r = fresh();
    assert_float_equal(social_rel_compat_score(&r), 0.6, EPS); /* 0.5 x 1.2 */
    assert_float_equal(social_rel_strength(&r), 0.5, EPS);
    r.affinity = 0; /* no 1.2 bonus; intimacy counts negatively */
    assert_float_equal(social_rel_compat_score(&r), 0.125 + 0.125 + 0.1, EPS);
    assert_float_equal(social_rel_strength(&r), 0.15 + 0.1 - 0.05, EPS);
    r.affinity = r.trust = r.respect = r.intimacy = 1; /* capped at 1 */
    assert_float_equal(social_rel_compat_score(&r), 1.0, EPS);
    assert_float_equal(social_rel_strength(&r), 1.0, EPS);
    social_rel s = fresh();
    social_rel_apply(&s, 0.8, 5, "conversation", NOW);
    double want = (0.3 * s.affinity + 0.25 * s.trust + 0.25 * s.respect + 0.2 * s.intimacy) * 1.2;
    assert_float_equal(social_rel_compat_score(&s), want, EPS);
}

/* ---- compatibility engine ------------------------------------------------------ */

static social_profile profile(jarena *a, const char *traits, const char *topics, int cha, int intel,
                              const char *rank)
{
    social_profile p = {.id = "x", .name = "x", .charisma = cha, .intelligence = intel};
    p.traits = parse(a, traits);
    p.topics = parse(a, topics);
    p.social_rank = rank;
    return p;
}

static void test_compat_aria_kira_example(void **state)
{
    fx *f = *state;
    social_profile a = profile(&f->ar, ARIA_TRAITS, ARIA_TOPICS, 18, 14, "performer");
    social_profile k = profile(&f->ar, KIRA_TRAITS, KIRA_TOPICS, 12, 18, "scholar");
    social_compat c;
    social_compat_compute(&a, &k, NULL, &c);
    /* the 0..100 traits of Aria and Kira share no Big-Five name: 0.5 */
    assert_float_equal(c.personality, 0.5, EPS);
    assert_float_equal(c.social, 0.82, EPS);
    assert_float_equal(c.interests, 0.85, EPS);
    assert_float_equal(c.history, 0.5, EPS);
    assert_float_equal(c.overall, 0.6675, EPS);
    assert_float_equal(social_round3(c.overall), 0.667, 1e-12); /* Python round(0.6675, 3) */
    assert_string_equal(c.prediction, "very_good");
    assert_string_equal(c.style, "friendly_engaging");
    assert_string_equal(c.potential, "good_friends");
    assert_string_equal(c.frequency, "regular");
    assert_int_equal(c.ntopics, 1);
    assert_string_equal(c.topics[0], "magic");
    assert_int_equal(c.nchallenges, 0);
    /* symmetric */
    social_compat d;
    social_compat_compute(&k, &a, NULL, &d);
    assert_float_equal(d.overall, c.overall, EPS);
}

static void test_compat_from_store(void **state)
{
    fx *f = *state;
    social_profile pa, pb;
    social_compat c;
    bool existing = true;
    social_err e = {0};
    assert_int_equal(
        social_compatibility(f->st, f->reg, f->aria, f->kira, &f->ar, &pa, &pb, &c, &existing, &e),
        0);
    assert_false(existing);
    assert_string_equal(pa.name, "Aria");
    assert_string_equal(pb.name, "Kira");
    assert_float_equal(c.overall, 0.6675, EPS);
    /* an existing relationship feeds history = (strength + 1) / 2 */
    social_rel r;
    assert_int_equal(social_rel_update(f->st, f->reg, f->aria, f->kira, 1.0, 30, "casual", &r, &e),
                     0);
    assert_int_equal(
        social_compatibility(f->st, f->reg, f->kira, f->aria, &f->ar, &pa, &pb, &c, &existing, &e),
        0);
    assert_true(existing);
    assert_float_equal(c.history, (social_rel_strength(&r) + 1) / 2, EPS);
    assert_string_equal(pa.name, "Kira");
    /* unknown persona */
    assert_int_equal(
        social_compatibility(f->st, f->reg, f->aria, "nope", &f->ar, &pa, &pb, &c, &existing, &e),
        -1);
    assert_int_equal(e.code, -32000);
}

static void test_personality_big_five(void **state)
{
    fx *f = *state;
    jarena *a = &f->ar;
    /* one shared trait each */
    assert_float_equal(
        social_personality_score(parse(a, "{\"openness\":0.8}"), parse(a, "{\"openness\":0.5}")),
        0.7, EPS);
    assert_float_equal(social_personality_score(parse(a, "{\"extraversion\":0.8}"),
                                                parse(a, "{\"extraversion\":0.4}")),
                       1 - 0.7 * 0.4, EPS);
    assert_float_equal(social_personality_score(parse(a, "{\"extraversion\":0.9}"),
                                                parse(a, "{\"extraversion\":0.2}")),
                       1 - 0.7, EPS);
    assert_float_equal(social_personality_score(parse(a, "{\"neuroticism\":0.2}"),
                                                parse(a, "{\"neuroticism\":0.4}")),
                       1 - 0.2 - 0.3 * 0.4, EPS);
    /* 0..100 values are scaled: the same as 0.8 / 0.5 */
    assert_float_equal(
        social_personality_score(parse(a, "{\"openness\":80}"), parse(a, "{\"openness\":0.5}")),
        0.7, EPS);
    /* weighted mean over shared traits only */
    double want = (0.2 * 1.0 + 0.25 * 0.5) / 0.45;
    assert_float_equal(
        social_personality_score(parse(a, "{\"openness\":0.5,\"agreeableness\":1,\"x\":3}"),
                                 parse(a, "{\"openness\":0.5,\"agreeableness\":0.5}")),
        want, EPS);
    /* nothing shared, empty, non-numeric: 0.5 */
    assert_float_equal(
        social_personality_score(parse(a, "{\"openness\":0.5}"), parse(a, "{\"neuroticism\":1}")),
        0.5, EPS);
    assert_float_equal(social_personality_score(parse(a, "{}"), parse(a, "{}")), 0.5, EPS);
    assert_float_equal(
        social_personality_score(parse(a, "{\"openness\":true}"), parse(a, "{\"openness\":0.5}")),
        0.5, EPS);
}

static void test_social_score(void **state)
{
    (void)state;
    social_profile a = {.charisma = 20, .intelligence = 10, .social_rank = "noble"};
    social_profile b = {.charisma = 20, .intelligence = 13, .social_rank = "Noble"};
    assert_float_equal(social_social_score(&a, &b), 0.4 + 0.4 + 0.2, EPS);
    b.intelligence = 16, b.social_rank = "merchant"; /* |dint| 6, |drank| 1 */
    assert_float_equal(social_social_score(&a, &b), 0.4 + 0.32 + 0.16, EPS);
    b.intelligence = 17, b.social_rank = "artisan"; /* 7, 2 */
    assert_float_equal(social_social_score(&a, &b), 0.4 + 0.2 + 0.12, EPS);
    b.charisma = 2, b.social_rank = "peasant"; /* 22/40, 4 */
    assert_float_equal(social_social_score(&a, &b), 0.4 * 0.55 + 0.2 + 0.06, EPS);
    a.social_rank = "wizard", b.social_rank = "commoner"; /* unknown = commoner */
    assert_float_equal(social_social_score(&a, &b), 0.4 * 0.55 + 0.2 + 0.2, EPS);
}

static void test_interest_score(void **state)
{
    fx *f = *state;
    jarena *a = &f->ar;
    assert_float_equal(social_interest_score(parse(a, "{}"), parse(a, "{\"x\":50}")), 0.5, EPS);
    assert_float_equal(social_interest_score(NULL, parse(a, "{\"x\":50}")), 0.5, EPS);
    assert_float_equal(social_interest_score(parse(a, "{\"x\":50}"), parse(a, "{\"y\":50}")), 0.3,
                       EPS);
    /* common but not > 20 on both: 0.3 plus the overlap bonus */
    assert_float_equal(
        social_interest_score(parse(a, "{\"x\":10,\"y\":1}"), parse(a, "{\"x\":90}")),
        0.3 + 0.2 * 1 / 2, EPS);
    /* identical single topic: 1 + 0.2 clamps to 1 */
    assert_float_equal(social_interest_score(parse(a, "{\"x\":60}"), parse(a, "{\"x\":60}")), 1.0,
                       EPS);
    /* two qualifying topics, weighted by combined interest */
    double w1 = 1.0, s1 = 1.0, w2 = 0.5, s2 = 0.8;
    double want = (w1 * s1 + w2 * s2) / (w1 + w2) + 0.2 * 2 / 3;
    assert_float_equal(social_interest_score(parse(a, "{\"x\":100,\"y\":60,\"z\":5}"),
                                             parse(a, "{\"x\":100,\"y\":40}")),
                       fmin(1, want), EPS);
}

static void test_recommended_topics_and_challenges(void **state)
{
    fx *f = *state;
    social_profile a =
        profile(&f->ar, "{\"neuroticism\":0.9,\"extraversion\":0.95,\"openness\":0.0}",
                "{\"a\":40,\"b\":90,\"c\":60,\"d\":35,\"e\":70,\"f\":31,\"g\":80,"
                "\"h\":30}",
                10, 10, "commoner");
    social_profile b = profile(&f->ar, "{\"extraversion\":0.1,\"openness\":1.0}",
                               "{\"h\":99,\"g\":80,\"f\":31,\"e\":70,\"d\":35,\"c\":60,\"b\":90,"
                               "\"a\":40}",
                               10, 10, "commoner");
    social_compat c;
    social_compat_compute(&a, &b, NULL, &c);
    assert_int_equal(c.ntopics, 5); /* h excluded (30 is not > 30), top 5 by a + b */
    const char *want[] = {"b", "g", "e", "c", "a"};
    for (int i = 0; i < 5; i++) assert_string_equal(c.topics[i], want[i]);
    /* personality: openness 0 vs 1 -> 0, extraversion 0.85 apart -> 0.15 */
    assert_true(c.personality < 0.4);
    assert_int_equal(c.nchallenges, 3);
    assert_string_equal(c.challenges[0], "personality_clash");
    assert_string_equal(c.challenges[1], "high_stress_potential");
    assert_string_equal(c.challenges[2], "energy_level_mismatch");
}

static void test_prediction_bands(void **state)
{
    fx *f = *state;
    /* perfect match: Big-Five identical, same social, same topics, strong history */
    social_profile a = profile(&f->ar, "{\"openness\":0.5}", "{\"x\":90}", 20, 10, "noble");
    social_compat c;
    social_rel r = fresh();
    r.affinity = r.trust = r.respect = r.intimacy = 1;
    social_compat_compute(&a, &a, &r, &c);
    assert_float_equal(c.overall, 1.0, EPS);
    assert_string_equal(c.prediction, "excellent");
    assert_string_equal(c.style, "collaborative_enthusiastic");
    assert_string_equal(c.potential, "excellent_friends");
    assert_string_equal(c.frequency, "frequent");
    /* a poor match */
    social_profile b = profile(&f->ar, "{\"openness\":0}", "{\"x\":90}", 1, 10, "noble");
    social_profile d = profile(&f->ar, "{\"openness\":1}", "{\"y\":90}", 1, 20, "peasant");
    social_compat_compute(&b, &d, NULL, &c);
    assert_true(c.overall <= 0.35);
    assert_string_equal(c.prediction, "difficult");
    assert_string_equal(c.style, "formal_distant");
    assert_string_equal(c.frequency, "minimal");
}

static void test_round3(void **state)
{
    (void)state;
    assert_float_equal(social_round3(0.82), 0.82, 1e-15);
    assert_float_equal(social_round3(0.12345), 0.123, 1e-15);
    assert_float_equal(social_round3(0.9996), 1.0, 1e-15);
    assert_float_equal(social_round3(-0.0001), 0.0, 1e-15);
    assert_false(signbit(social_round3(-0.0001)));
}

/* ---- store: relationships --------------------------------------------------------- */

static void test_update_creates_pair_on_demand(void **state)
{
    fx *f = *state;
    social_rel r, g;
    bool exists = true;
    social_err e = {0};
    assert_int_equal(social_rel_get(f->st, f->reg, f->aria, f->kira, &f->ar, &g, &exists, &e), 0);
    assert_false(exists);
    assert_int_equal(sql_count(f, SQL_COUNT_REL, NULL), 0);
    assert_int_equal(
        social_rel_update(f->st, f->reg, f->kira, f->aria, 0.8, 5, "conversation", &r, &e), 0);
    assert_float_equal(r.affinity, 0.513333, 1e-6);
    assert_float_equal(r.intimacy, 0.509333, 1e-6);
    assert_true(strcmp(r.persona1_id, r.persona2_id) < 0);
    assert_int_equal(sql_count(f, SQL_COUNT_REL, NULL), 1);
    assert_int_equal(sql_count(f, SQL_COUNT_HIST, NULL), 1);
    /* either order reads the same row */
    assert_int_equal(social_rel_get(f->st, f->reg, f->aria, f->kira, &f->ar, &g, &exists, &e), 0);
    assert_true(exists);
    assert_string_equal(g.id, r.id);
    assert_float_equal(g.trust, r.trust, EPS);
    assert_string_equal(g.shared_json, "[]");
    assert_int_equal(social_rel_get(f->st, f->reg, f->kira, f->aria, &f->ar, &g, &exists, &e), 0);
    assert_string_equal(g.id, r.id);
    /* a second update continues from the stored values, one row */
    assert_int_equal(
        social_rel_update(f->st, f->reg, f->aria, f->kira, 0.8, 5, "conversation", &r, &e), 0);
    assert_int_equal(r.interaction_count, 2);
    assert_float_equal(r.affinity, 0.5 + 2 * 0.08 / 6, EPS);
    assert_string_equal(r.first_meeting, g.first_meeting);
    assert_int_equal(sql_count(f, SQL_COUNT_REL, NULL), 1);
    assert_int_equal(sql_count(f, SQL_COUNT_HIST, NULL), 2);
}

static void test_update_rejects_unknown_and_self(void **state)
{
    fx *f = *state;
    social_rel r;
    social_err e = {0};
    assert_int_equal(
        social_rel_update(f->st, f->reg, f->aria, "ghost", 0.5, 5, "conversation", &r, &e), -1);
    assert_int_equal(e.code, -32000);
    assert_non_null(strstr(e.msg, "ghost"));
    assert_int_equal(
        social_rel_update(f->st, f->reg, f->aria, f->aria, 0.5, 5, "conversation", &r, &e), -1);
    assert_int_equal(e.code, -32602);
    bool exists;
    assert_int_equal(social_rel_get(f->st, f->reg, "ghost", f->aria, &f->ar, &r, &exists, &e), -1);
    assert_int_equal(e.code, -32000);
    assert_int_equal(sql_count(f, SQL_COUNT_REL, NULL), 0);
    assert_int_equal(sql_count(f, SQL_COUNT_HIST, NULL), 0);
}

static void test_list_stats_and_moments(void **state)
{
    fx *f = *state;
    char third[40];
    make_persona(f, "Third", third);
    social_rel r;
    social_err e = {0};
    assert_int_equal(social_rel_update(f->st, f->reg, f->aria, f->kira, 0.9, 10, "casual", &r, &e),
                     0);
    assert_int_equal(social_rel_update(f->st, f->reg, f->aria, third, -0.2, 5, "conflict", &r, &e),
                     0);
    assert_int_equal(social_rel_update(f->st, f->reg, third, f->aria, 0.1, 5, "casual", &r, &e), 0);
    social_rel *v;
    size_t n;
    assert_int_equal(social_rel_list(f->st, f->reg, f->aria, &f->ar, &v, &n, &e), 0);
    assert_int_equal(n, 2);
    assert_int_equal(social_rel_list(f->st, f->reg, f->kira, &f->ar, &v, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_int_equal(social_rel_list(f->st, f->reg, "ghost", &f->ar, &v, &n, &e), -1);
    assert_int_equal(e.code, -32000);

    social_stats s;
    assert_int_equal(social_stats_get(f->st, &f->ar, &s, &e), 0);
    assert_int_equal(s.total_relationships, 2);
    assert_int_equal(s.total_interactions, 3);
    assert_int_equal(s.ntypes, 1);
    assert_string_equal(s.types[0].type, "stranger");
    assert_int_equal(s.types[0].count, 2);
    assert_int_equal(s.nactive, 2);
    assert_string_equal(s.active[0].persona_id, f->aria); /* initiated 2 */
    assert_int_equal(s.active[0].interactions, 2);
    assert_string_equal(s.active[1].persona_id, third);
    social_rel a, b;
    bool ex;
    social_rel_get(f->st, f->reg, f->aria, f->kira, &f->ar, &a, &ex, &e);
    social_rel_get(f->st, f->reg, f->aria, third, &f->ar, &b, &ex, &e);
    double avg = ((a.affinity + a.trust + a.respect + a.intimacy) / 4 +
                  (b.affinity + b.trust + b.respect + b.intimacy) / 4) /
                 2;
    assert_float_equal(s.average_compatibility, social_round3(avg), 1e-12);

    social_moment *m;
    assert_int_equal(social_rel_moments(f->st, f->kira, f->aria, &f->ar, &m, &n, &e), 0);
    assert_int_equal(n, 1); /* |0.9| > 0.7 */
    assert_float_equal(m[0].quality, 0.9, EPS);
    assert_string_equal(m[0].context, "casual");
    assert_float_equal(m[0].duration, 10, EPS);
}

static void test_stats_empty(void **state)
{
    fx *f = *state;
    social_stats s;
    social_err e = {0};
    assert_int_equal(social_stats_get(f->st, &f->ar, &s, &e), 0);
    assert_int_equal(s.total_relationships, 0);
    assert_int_equal(s.total_interactions, 0);
    assert_int_equal(s.ntypes, 0);
    assert_int_equal(s.nactive, 0);
    assert_float_equal(s.average_compatibility, 0.0, 0);
}

static void test_persona_delete_cascades(void **state)
{
    fx *f = *state;
    char third[40], name[64];
    make_persona(f, "Third", third);
    social_rel r;
    social_emotion em;
    social_err e = {0};
    assert_int_equal(social_rel_update(f->st, f->reg, f->aria, third, 0.5, 5, "casual", &r, &e), 0);
    assert_int_equal(social_rel_update(f->st, f->reg, third, f->kira, 0.5, 5, "casual", &r, &e), 0);
    assert_int_equal(social_rel_update(f->st, f->reg, f->aria, f->kira, 0.5, 5, "casual", &r, &e),
                     0);
    assert_int_equal(social_emotion_get(f->st, f->reg, third, &em, &e), 0);
    assert_int_equal(social_emotion_get(f->st, f->reg, f->aria, &em, &e), 0);
    assert_int_equal(persona_delete(f->reg, f->st, third, name, sizeof name), 0);
    assert_int_equal(sql_count(f, SQL_COUNT_REL, NULL), 1);
    assert_int_equal(sql_count(f, SQL_COUNT_HIST, NULL), 1);
    assert_int_equal(sql_count(f, SQL_COUNT_EMO_OF, third), 0);
    assert_int_equal(sql_count(f, SQL_COUNT_EMO, NULL), 1);
    assert_int_equal(social_emotion_get(f->st, f->reg, third, &em, &e), -1);
    assert_int_equal(e.code, -32000);
}

static void test_persistence_across_reopen(void **state)
{
    fx *f = *state;
    social_rel r, g;
    social_emotion em;
    social_emotion_patch p = {.has_mood = true, .mood = -0.25};
    social_err e = {0};
    assert_int_equal(
        social_rel_update(f->st, f->reg, f->aria, f->kira, 0.6, 20, "professional", &r, &e), 0);
    assert_int_equal(social_emotion_update(f->st, f->reg, f->kira, &p, &em, &e), 0);
    fx_close(f);
    fx_open(f);
    bool exists;
    assert_int_equal(social_rel_get(f->st, f->reg, f->kira, f->aria, &f->ar, &g, &exists, &e), 0);
    assert_true(exists);
    assert_string_equal(g.id, r.id);
    assert_float_equal(g.respect, r.respect, 0);
    assert_float_equal(g.total_interaction_time, 20, 0);
    assert_float_equal(g.recent_quality, 0.6, 0);
    assert_string_equal(g.last_interaction, r.last_interaction);
    assert_int_equal(social_emotion_get(f->st, f->reg, f->kira, &em, &e), 0);
    assert_float_equal(em.mood, -0.25, 0);
    assert_float_equal(em.energy_level, 0.7, 0);
}

/* ---- emotional state -------------------------------------------------------------- */

static void test_emotion_apply_clamps(void **state)
{
    (void)state;
    social_emotion s;
    social_emotion_defaults(&s);
    assert_float_equal(s.mood, 0.5, 0);
    assert_float_equal(s.energy_level, 0.7, 0);
    assert_float_equal(s.stress_level, 0.3, 0);
    assert_float_equal(s.curiosity, 0.6, 0);
    assert_float_equal(s.social_battery, 0.8, 0);
    social_emotion_patch p = {.has_mood = true,
                              .mood = 5,
                              .has_energy = true,
                              .energy_level = -2,
                              .has_stress = true,
                              .stress_level = 1.5,
                              .has_battery = true,
                              .social_battery = 0.25};
    social_emotion_apply(&s, &p);
    assert_float_equal(s.mood, 1, 0);
    assert_float_equal(s.energy_level, 0, 0);
    assert_float_equal(s.stress_level, 1, 0);
    assert_float_equal(s.curiosity, 0.6, 0); /* untouched */
    assert_float_equal(s.social_battery, 0.25, 0);
    social_emotion_patch q = {.has_mood = true, .mood = -9, .has_curiosity = true, .curiosity = -1};
    social_emotion_apply(&s, &q);
    assert_float_equal(s.mood, -1, 0);
    assert_float_equal(s.curiosity, 0, 0);
}

static void test_emotion_get_unknown_creates_nothing(void **state)
{
    fx *f = *state;
    social_emotion s;
    social_err e = {0};
    assert_int_equal(social_emotion_get(f->st, f->reg, "ghost", &s, &e), -1);
    assert_int_equal(e.code, -32000);
    social_emotion_patch p = {.has_mood = true, .mood = 0.1};
    assert_int_equal(social_emotion_update(f->st, f->reg, "ghost", &p, &s, &e), -1);
    assert_int_equal(e.code, -32000);
    assert_int_equal(sql_count(f, SQL_COUNT_EMO, NULL), 0);
}

static void test_emotion_get_creates_defaults_once(void **state)
{
    fx *f = *state;
    social_emotion s, t;
    social_err e = {0};
    assert_int_equal(social_emotion_get(f->st, f->reg, f->aria, &s, &e), 0);
    assert_float_equal(s.mood, 0.5, 0);
    assert_float_equal(s.social_battery, 0.8, 0);
    assert_int_equal(strlen(s.last_updated), 32);
    assert_int_equal(sql_count(f, SQL_COUNT_EMO_OF, f->aria), 1);
    assert_int_equal(social_emotion_get(f->st, f->reg, f->aria, &t, &e), 0);
    assert_string_equal(t.last_updated, s.last_updated); /* read, not rewritten */
    assert_int_equal(sql_count(f, SQL_COUNT_EMO, NULL), 1);
}

static void test_emotion_update_clamps_and_keeps_others(void **state)
{
    fx *f = *state;
    social_emotion s;
    social_err e = {0};
    social_emotion_patch p = {.has_mood = true, .mood = -3, .has_energy = true, .energy_level = 2};
    assert_int_equal(social_emotion_update(f->st, f->reg, f->kira, &p, &s, &e), 0);
    assert_float_equal(s.mood, -1, 0);
    assert_float_equal(s.energy_level, 1, 0);
    assert_float_equal(s.stress_level, 0.3, 0);
    social_emotion_patch q = {.has_stress = true, .stress_level = 0.05};
    assert_int_equal(social_emotion_update(f->st, f->reg, f->kira, &q, &s, &e), 0);
    assert_float_equal(s.mood, -1, 0);
    assert_float_equal(s.stress_level, 0.05, 0);
    social_emotion g;
    assert_int_equal(social_emotion_get(f->st, f->reg, f->kira, &g, &e), 0);
    assert_float_equal(g.energy_level, 1, 0);
    assert_string_equal(g.last_updated, s.last_updated);
}

int main(void)
{
    log_set_level(LOG_ERROR);
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_defaults_and_order),
        cmocka_unit_test(test_update_spec_example),
        cmocka_unit_test(test_update_duration_factor_and_q_clamp),
        cmocka_unit_test(test_context_modifiers),
        cmocka_unit_test(test_values_clamped_to_unit_interval),
        cmocka_unit_test(test_type_rule),
        cmocka_unit_test(test_model_formulas),
        T(test_compat_aria_kira_example),
        T(test_compat_from_store),
        T(test_personality_big_five),
        cmocka_unit_test(test_social_score),
        T(test_interest_score),
        T(test_recommended_topics_and_challenges),
        T(test_prediction_bands),
        cmocka_unit_test(test_round3),
        T(test_update_creates_pair_on_demand),
        T(test_update_rejects_unknown_and_self),
        T(test_list_stats_and_moments),
        T(test_stats_empty),
        T(test_persona_delete_cascades),
        T(test_persistence_across_reopen),
        cmocka_unit_test(test_emotion_apply_clamps),
        T(test_emotion_get_unknown_creates_nothing),
        T(test_emotion_get_creates_defaults_once),
        T(test_emotion_update_clamps_and_keeps_others),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
