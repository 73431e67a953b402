/*
 * test_engine.c - the conversation engine (src/engine/).
 *
 * Most tests drive the pure arithmetic of engine_model.c with hand-built
 * inputs: the continue score of spec §6.4 (the Aria/Kira example, 62, and
 * each term at its boundaries), routing thresholds (§4.2), the template and
 * fallback lines and the token estimate (§4.4), turn effects (§6.6),
 * cooldown (§6.7), and regeneration replayed over hours of simulated time
 * in steps of different sizes (the §12 item 26 fixes: fractions carry over,
 * fatigue does fall, available_time comes back, a persona on cooldown
 * becomes available again).
 *
 * The last tests run the engine itself on a real store in a temporary
 * directory with no LLM client (so LLM routes produce the §4.4 fallback):
 * start/status/turn/end, persistence of the row and its turns, memories of
 * both sides, cooldowns, the neutral history term, and the refusals.
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

#include "app/app.h"
#include "engine/engine.h"
#include "engine/engine_internal.h"
#include "lib/util.h"
#include "lib/log.h"
#include "memory/memory.h"
#include "persona/persona.h"
#include "store/store.h"

#define EPS 1e-9

/* ---- continue score --------------------------------------------------------- */

static engine_party aria(void)
{
    return (engine_party){.priority = "social",
                          .topic_pref = 95,
                          .charisma = 18,
                          .social_rank = "performer",
                          .interaction_fatigue = 0,
                          .available_time = 600,
                          .social_energy = 150};
}

static engine_party kira(void)
{
    return (engine_party){.priority = "academic",
                          .topic_pref = -1,
                          .charisma = 12,
                          .social_rank = "scholar",
                          .interaction_fatigue = 0,
                          .available_time = 300,
                          .social_energy = 80};
}

static void test_score_spec_example(void **state)
{
    (void)state;
    engine_party a = aria(), k = kira();
    engine_ctx c = {.duration = 0, .token_budget = 1000};
    engine_terms t;
    /* a fresh pair is neutral: compatibility 0, history -2.5 */
    assert_int_equal(engine_continue_score(&a, &k, &c, 0.0, &t), 62);
    assert_int_equal(t.score, 62);
    assert_true(fabs(t.time - 30) < EPS);
    assert_true(fabs(t.topic - 16.4375) < EPS);
    assert_true(fabs(t.social - 8.8) < EPS);
    assert_true(fabs(t.fatigue - 0) < EPS);
    assert_true(fabs(t.history - -2.5) < EPS);
    assert_true(fabs(t.resource - 10) < EPS);
    /* NULL terms is allowed */
    assert_int_equal(engine_continue_score(&a, &k, &c, 0.0, NULL), 62);
}

static void test_score_time_term(void **state)
{
    (void)state;
    assert_true(engine_time_rate("urgent") == 2);
    assert_true(engine_time_rate("important") == 10);
    assert_true(engine_time_rate("casual") == 30);
    assert_true(engine_time_rate("social") == 30);
    assert_true(engine_time_rate("academic") == 10);
    assert_true(engine_time_rate("none") == 10);
    assert_true(engine_time_rate(NULL) == 10);
    engine_party a = aria(), k = kira();
    engine_terms t;
    engine_ctx c = {.duration = 300, .token_budget = 1000};
    engine_continue_score(&a, &k, &c, 0, &t); /* social: 30 - 300/30 */
    assert_true(fabs(t.time - 20) < EPS);
    engine_continue_score(&k, &a, &c, 0, &t); /* the speaker's priority: academic */
    assert_true(fabs(t.time - 0) < EPS);
    a.priority = "urgent";
    c.duration = 30;
    engine_continue_score(&a, &k, &c, 0, &t);
    assert_true(fabs(t.time - 15) < EPS);
    c.duration = 1000; /* never negative */
    engine_continue_score(&a, &k, &c, 0, &t);
    assert_true(fabs(t.time) < EPS);
}

static void test_score_topic_term(void **state)
{
    (void)state;
    engine_party a = aria(), k = kira();
    engine_terms t;
    engine_ctx c = {.token_budget = 1000};
    a.topic_pref = k.topic_pref = -1; /* both absent: 50 */
    engine_continue_score(&a, &k, &c, 0, &t);
    assert_true(fabs(t.topic - 12.5) < EPS);
    a.topic_pref = k.topic_pref = 100;
    engine_continue_score(&a, &k, &c, 0, &t);
    assert_true(fabs(t.topic - 25) < EPS);
    a.topic_pref = 90;
    k.topic_pref = 10; /* pull = 0.7*50 + 0.3*10 = 38 */
    engine_continue_score(&a, &k, &c, 0, &t);
    assert_true(fabs(t.topic - 9.5) < EPS);
    c.topic_drift_count = 3; /* x0.6 past two drifts */
    engine_continue_score(&a, &k, &c, 0, &t);
    assert_true(fabs(t.topic - 5.7) < EPS);
    c.topic_drift_count = 2;
    engine_continue_score(&a, &k, &c, 0, &t);
    assert_true(fabs(t.topic - 9.5) < EPS);
}

static void test_score_social_term(void **state)
{
    (void)state;
    assert_int_equal(engine_rank_level("royalty"), 5);
    assert_int_equal(engine_rank_level("nobility"), 4);
    assert_int_equal(engine_rank_level("merchant"), 3);
    assert_int_equal(engine_rank_level("commoner"), 2);
    assert_int_equal(engine_rank_level("peasant"), 1);
    assert_int_equal(engine_rank_level("bard"), 2);
    assert_int_equal(engine_rank_level(NULL), 2);
    engine_party a = aria(), k = kira();
    engine_terms t;
    engine_ctx c = {.token_budget = 1000};
    struct {
        const char *r1, *r2;
        double status;
    } cases[] = {{"royalty", "royalty", 8},
                 {"merchant", "commoner", 6},
                 {"nobility", "commoner", 4},
                 {"royalty", "commoner", 2},
                 {"peasant", "royalty", 2}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        a.social_rank = cases[i].r1;
        k.social_rank = cases[i].r2;
        engine_continue_score(&a, &k, &c, 0, &t);
        assert_true(fabs(t.social - (0.8 * 12 + cases[i].status) / 2) < EPS);
    }
    a.charisma = k.charisma = 20;
    a.social_rank = k.social_rank = "commoner";
    engine_continue_score(&a, &k, &c, 0, &t);
    assert_true(fabs(t.social - 12) < EPS); /* (16 + 8) / 2, under the cap of 20 */
}

static void test_score_fatigue_history_resource(void **state)
{
    (void)state;
    engine_party a = aria(), k = kira();
    engine_terms t;
    engine_ctx c = {.token_budget = 1000};
    a.interaction_fatigue = 7;
    engine_continue_score(&a, &k, &c, 0, &t);
    assert_true(fabs(t.fatigue - 3) < EPS);
    a.interaction_fatigue = 100;
    engine_continue_score(&a, &k, &c, 0, &t);
    assert_true(fabs(t.fatigue - 15) < EPS);
    k.interaction_fatigue = 100; /* only the speaker's fatigue counts */
    a.interaction_fatigue = 0;
    engine_continue_score(&a, &k, &c, 0, &t);
    assert_true(fabs(t.fatigue) < EPS);

    assert_true(fabs(engine_history_from_compat(0) - -2.5) < EPS);
    assert_true(fabs(engine_history_from_compat(0.6) - 5) < EPS);
    assert_true(fabs(engine_history_from_compat(1) - 10) < EPS);
    engine_continue_score(&a, &k, &c, 1.0, &t);
    assert_true(fabs(t.history - 10) < EPS);
    assert_int_equal(t.score, 75); /* 30 + 16.4375 + 8.8 + 10 + 10 = 75.24 */

    a.available_time = 30;
    engine_continue_score(&a, &k, &c, 0, &t);
    assert_true(fabs(t.resource - 5) < EPS);
    a.available_time = 600;
    c.token_budget = 50;
    engine_continue_score(&a, &k, &c, 0, &t);
    assert_true(fabs(t.resource - 5) < EPS);
    c.token_budget = 1000;
    a.social_energy = 15;
    engine_continue_score(&a, &k, &c, 0, &t);
    assert_true(fabs(t.resource - 5) < EPS);
    a.available_time = 30;
    c.token_budget = 50;
    engine_continue_score(&a, &k, &c, 0, &t); /* all three: 10 * .5 * .5 * .5 */
    assert_true(fabs(t.resource - 1.25) < EPS);
    a.available_time = 0;
    engine_continue_score(&a, &k, &c, 0, &t);
    assert_true(fabs(t.resource) < EPS);
}

static void test_score_clamped_and_truncated(void **state)
{
    (void)state;
    engine_party a = aria(), k = kira();
    engine_ctx c = {.duration = 100000, .token_budget = 0};
    a.interaction_fatigue = 1000;
    /* 0 + 16.4375 + 8.8 - 15 - 2.5 + 0 = 7.74 -> 7 */
    assert_int_equal(engine_continue_score(&a, &k, &c, 0, NULL), 7);
    a.topic_pref = k.topic_pref = 0;
    a.charisma = k.charisma = 1;
    a.social_rank = "royalty";
    k.social_rank = "peasant"; /* 0 + 0 + 1.4 - 15 - 2.5 + 0 < 0 */
    assert_int_equal(engine_continue_score(&a, &k, &c, 0, NULL), 0);
    engine_party b = aria(), d = aria();
    b.topic_pref = d.topic_pref = 100;
    b.charisma = d.charisma = 20;
    engine_ctx fresh = {.token_budget = 1000};
    /* 30 + 25 + 12 + 10 + 10 = 87: the maximum is under 100 */
    assert_int_equal(engine_continue_score(&b, &d, &fresh, 1.0, NULL), 87);
}

static void test_should_continue(void **state)
{
    (void)state;
    assert_true(engine_should_continue(40, 51));
    assert_false(engine_should_continue(39, 1000));
    assert_false(engine_should_continue(40, 50));
    assert_true(engine_should_continue(100, 1000));
}

/* ---- routing, lines, tokens ----------------------------------------------------- */

static void test_routing_thresholds(void **state)
{
    (void)state;
    engine_plan p = engine_route_for(100);
    assert_int_equal(p.route, ENGINE_FULL_LLM);
    assert_true(p.creativity == 0.8);
    p = engine_route_for(80);
    assert_int_equal(p.route, ENGINE_FULL_LLM);
    assert_true(p.creativity == 0.8);
    assert_int_equal(p.max_length, 100);
    assert_int_equal(p.max_tokens, 130);
    assert_false(p.concise || p.prepare_exit);
    p = engine_route_for(79);
    assert_int_equal(p.route, ENGINE_FULL_LLM);
    assert_true(p.creativity == 0.6);
    p = engine_route_for(60);
    assert_int_equal(p.route, ENGINE_FULL_LLM);
    assert_true(p.creativity == 0.6);
    p = engine_route_for(59);
    assert_int_equal(p.route, ENGINE_CONSTRAINED);
    assert_true(p.creativity == 0.5);
    assert_int_equal(p.max_length, 50);
    assert_int_equal(p.max_tokens, 50);
    assert_true(p.concise && p.prepare_exit);
    p = engine_route_for(40);
    assert_int_equal(p.route, ENGINE_CONSTRAINED);
    p = engine_route_for(39);
    assert_int_equal(p.route, ENGINE_TEMPLATE);
    assert_int_equal(p.max_tokens, 0);
    p = engine_route_for(0);
    assert_int_equal(p.route, ENGINE_TEMPLATE);
    assert_string_equal(engine_route_name(ENGINE_FULL_LLM), "full_llm");
    assert_string_equal(engine_route_name(ENGINE_CONSTRAINED), "constrained");
    assert_string_equal(engine_route_name(ENGINE_TEMPLATE), "template");
}

static void test_template_lines(void **state)
{
    (void)state;
    const char *urgent[] = {"I really must go.", "I have urgent matters to attend to.",
                            "Perhaps we can continue this later."};
    const char *drained[] = {"I'm feeling a bit drained.", "I think I need a break from talking.",
                             "It's been a long day for me."};
    const char *tired[] = {"Interesting... I should get going though.",
                           "I'll let you get back to what you were doing.",
                           "Nice chatting with you."};
    const char *neutral[] = {"I see.", "That's good to know.", "Hmm, interesting."};
    for (unsigned i = 0; i < 6; i++) {
        /* urgent wins over low energy and fatigue */
        assert_string_equal(engine_template_line("urgent", 5, 99, i), urgent[i % 3]);
        /* then energy < 30, over fatigue */
        assert_string_equal(engine_template_line("social", 29, 99, i), drained[i % 3]);
        assert_string_equal(engine_template_line("social", 30, 51, i), tired[i % 3]);
        assert_string_equal(engine_template_line("social", 30, 50, i), neutral[i % 3]);
        assert_string_equal(engine_template_line(NULL, 100, 0, i), neutral[i % 3]);
    }
    assert_string_equal(engine_fallback_line("urgent", 5, 0),
                        "I really need to focus on urgent matters right now.");
    assert_string_equal(engine_fallback_line("social", 29, 0),
                        "I'm feeling a bit drained from all this conversation.");
    assert_string_equal(engine_fallback_line("social", 30, 0),
                        "I'm having trouble finding the right words right now.");
    assert_string_equal(engine_fallback_line("social", 30, 3),
                        "I appreciate you bringing that up.");
}

static void test_token_estimate(void **state)
{
    (void)state;
    const char *ten = "one two three four five six seven eight nine ten";
    assert_int_equal(engine_count_words(ten), 10);
    assert_int_equal(engine_count_words("  spaced\tout\n words  "), 3);
    assert_int_equal(engine_count_words(""), 0);
    assert_int_equal(engine_count_words(NULL), 0);
    assert_int_equal(engine_estimate_tokens(ten, ENGINE_FULL_LLM), 19); /* 19.5 */
    assert_int_equal(engine_estimate_tokens(ten, ENGINE_CONSTRAINED), 13);
    assert_int_equal(engine_estimate_tokens(ten, ENGINE_TEMPLATE), 1); /* 1.3 */
    assert_int_equal(engine_estimate_tokens("I see.", ENGINE_TEMPLATE), 0);
    assert_int_equal(engine_estimate_tokens("", ENGINE_FULL_LLM), 0);
}

/* ---- energy, fatigue, cooldown over simulated time --------------------------------- */

static void test_turn_effects(void **state)
{
    (void)state;
    assert_int_equal(engine_turn_seconds(0.2), 30);
    assert_int_equal(engine_turn_seconds(30.9), 30);
    assert_int_equal(engine_turn_seconds(125.7), 125);
    engine_vitals v = {.social_energy = 80, .interaction_fatigue = 0, .available_time = 300};
    engine_apply_turn(&v, 30); /* a 30 s turn tires but costs no energy */
    assert_int_equal(v.interaction_fatigue, 1);
    assert_int_equal(v.social_energy, 80);
    assert_int_equal(v.available_time, 270);
    engine_apply_turn(&v, 15); /* the listener's half */
    assert_int_equal(v.interaction_fatigue, 1);
    assert_int_equal(v.available_time, 255);
    engine_apply_turn(&v, 125);
    assert_int_equal(v.interaction_fatigue, 5);
    assert_int_equal(v.social_energy, 78);
    assert_int_equal(v.available_time, 130);
    engine_vitals low = {.social_energy = 1, .available_time = 10};
    engine_apply_turn(&low, 600);
    assert_int_equal(low.social_energy, 0);
    assert_int_equal(low.available_time, 0);
    assert_int_equal(low.interaction_fatigue, 20);
}

static void test_cooldown(void **state)
{
    (void)state;
    assert_true(fabs(engine_cooldown_seconds(50, 0) - 300) < EPS);
    assert_true(fabs(engine_cooldown_seconds(70, 0) - 300) < EPS);
    assert_true(fabs(engine_cooldown_seconds(71, 0) - 150) < EPS);
    assert_true(fabs(engine_cooldown_seconds(30, 0) - 300) < EPS);
    assert_true(fabs(engine_cooldown_seconds(29, 0) - 600) < EPS);
    assert_true(fabs(engine_cooldown_seconds(50, 50) - 450) < EPS);
    assert_true(fabs(engine_cooldown_seconds(10, 20) - 720) < EPS);
}

static void test_regeneration_carries_fractions(void **state)
{
    (void)state;
    /* the original reset its clock every minute: 59 s steps never added a
     * point and fatigue (1 per 300 s) never fell. */
    engine_vitals v = {.social_energy = 100, .interaction_fatigue = 10, .available_time = 300};
    engine_carry c = {0};
    for (int i = 0; i < 10; i++) engine_regenerate(&v, &c, 59, 300);
    assert_int_equal(v.social_energy, 109); /* 590 s = 9.83 min */
    assert_int_equal(v.interaction_fatigue, 9);
    /* many steps of any size equal one long step */
    engine_vitals a = {.social_energy = 20, .interaction_fatigue = 40, .available_time = 0};
    engine_vitals b = a;
    engine_carry ca = {0}, cb = {0};
    for (int i = 0; i < 3601; i++) engine_regenerate(&a, &ca, 1.0, 600);
    engine_regenerate(&b, &cb, 3601, 600);
    assert_int_equal(a.social_energy, 80);
    assert_int_equal(b.social_energy, 80);
    assert_int_equal(a.interaction_fatigue, 28);
    assert_int_equal(b.interaction_fatigue, 28);
    assert_int_equal(a.available_time, 600); /* 1800 s back, capped */
    assert_int_equal(b.available_time, 600);
    /* odd steps: 7 s x 1000 = 7000 s */
    engine_vitals o = {.social_energy = 0, .interaction_fatigue = 100, .available_time = 0};
    engine_carry co = {0};
    for (int i = 0; i < 1000; i++) engine_regenerate(&o, &co, 7, 10000);
    assert_int_equal(o.social_energy, 116);      /* 7000 / 60 = 116.7 */
    assert_int_equal(o.interaction_fatigue, 77); /* 100 - 23.3 */
    assert_int_equal(o.available_time, 3500);    /* 0.5 s per s */
}

static void test_regeneration_bounds(void **state)
{
    (void)state;
    engine_vitals v = {.social_energy = 199,
                       .interaction_fatigue = 0,
                       .available_time = 300,
                       .cooldown_until = 123.5};
    engine_carry c = {0};
    engine_regenerate(&v, &c, 7200, 300);
    assert_int_equal(v.social_energy, 200);
    assert_int_equal(v.interaction_fatigue, 0);
    assert_int_equal(v.available_time, 300);
    assert_true(v.cooldown_until == 123.5); /* untouched */
    /* nothing is banked while at a bound: after an hour at 200, a drop to
     * 190 regains 1 point per minute from then on, not 60 at once */
    engine_regenerate(&v, &c, 3600, 300);
    v.social_energy = 190;
    engine_regenerate(&v, &c, 30, 300);
    assert_int_equal(v.social_energy, 190);
    engine_regenerate(&v, &c, 30, 300);
    assert_int_equal(v.social_energy, 191);
    /* no time passed, or the clock went back: nothing changes */
    engine_vitals w = {.social_energy = 50, .interaction_fatigue = 5, .available_time = 10};
    engine_carry cw = {0};
    engine_regenerate(&w, &cw, 0, 300);
    engine_regenerate(&w, &cw, -500, 300);
    engine_regenerate(&w, &cw, NAN, 300);
    assert_int_equal(w.social_energy, 50);
    assert_int_equal(w.interaction_fatigue, 5);
    assert_int_equal(w.available_time, 10);
    assert_true(cw.energy == 0 && cw.fatigue == 0 && cw.time == 0);
}

/* A conversation that drains Kira, then a minute-by-minute rest: she is
 * unavailable through the cooldown and available again after it, because
 * available_time comes back (§12 item 26). */
static void test_simulated_day(void **state)
{
    (void)state;
    persona k;
    memset(&k, 0, sizeof k);
    k.social_energy = 80;
    k.available_time = 300;
    engine_vitals v = {.social_energy = 80, .interaction_fatigue = 0, .available_time = 300};
    double now = 1e6;
    for (int turn = 0; turn < 10; turn++) engine_apply_turn(&v, turn % 2 ? 15 : 30);
    assert_int_equal(v.available_time, 75);
    assert_int_equal(v.interaction_fatigue, 5);
    for (int turn = 0; turn < 4; turn++) engine_apply_turn(&v, 40);
    assert_int_equal(v.available_time, 0);
    assert_int_equal(v.interaction_fatigue, 9);
    v.cooldown_until = now + engine_cooldown_seconds(35, v.interaction_fatigue);
    assert_true(fabs(v.cooldown_until - now - 327) < EPS);
    engine_carry c = {0};
    int first_available = -1;
    for (int minute = 1; minute <= 60; minute++) {
        engine_regenerate(&v, &c, 60, 300);
        k.social_energy = v.social_energy;
        k.available_time = v.available_time;
        k.cooldown_until = v.cooldown_until;
        if (first_available < 0 && persona_available(&k, now + minute * 60))
            first_available = minute;
    }
    assert_int_equal(first_available, 6); /* cooldown 327 s: minute 6 */
    assert_int_equal(v.available_time, 300);
    assert_int_equal(v.social_energy, 140);
    assert_int_equal(v.interaction_fatigue, 0); /* 9 - 12, floored */
}

/* ---- the engine on a real store ------------------------------------------------------ */

typedef struct fx {
    char dir[64];
    char path[128];
    app a;
    char aria[40], kira[40];
} fx;

static int fx_setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/pmcp-engine-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->path, sizeof f->path, "%s/personas.db", f->dir);
    store_opts o;
    store_opts_default(&o);
    o.path = f->path;
    char err[256];
    if (store_open(&f->a.store, &o, err, sizeof err) != 0) return -1;
    if (persona_reg_load(&f->a.personas, f->a.store) != 0) return -1;
    mem_config_default(&f->a.cfg.mem);
    if (mem_open(&f->a.memory, f->a.store, &f->a.cfg.mem, err, sizeof err) != 0) return -1;
    persona_reg_rdlock(f->a.personas);
    memcpy(f->aria, persona_reg_at(f->a.personas, 0)->id, 40);
    memcpy(f->kira, persona_reg_at(f->a.personas, 1)->id, 40);
    persona_reg_unlock(f->a.personas);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    fx *f = *state;
    engine_stop(&f->a);
    mem_close(f->a.memory);
    store_close(f->a.store);
    persona_reg_free(f->a.personas);
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

static int64_t sql_int(fx *f, const char *sql, const char *arg)
{
    store_conn *c = store_pool_get(f->a.store);
    assert_non_null(c);
    sqlite3_stmt *q = store_conn_stmt(c, sql);
    assert_non_null(q);
    if (arg) sqlite3_bind_text(q, 1, arg, -1, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(q, 0);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    store_pool_put(f->a.store, c);
    return n;
}

static engine_vitals vitals(fx *f, const char *id)
{
    engine_vitals v = {0};
    persona_reg_rdlock(f->a.personas);
    const persona *p = persona_reg_find(f->a.personas, id);
    assert_non_null(p);
    v.social_energy = p->social_energy;
    v.interaction_fatigue = p->interaction_fatigue;
    v.available_time = p->available_time;
    v.cooldown_until = p->cooldown_until;
    persona_reg_unlock(f->a.personas);
    return v;
}

static void test_engine_conversation(void **state)
{
    fx *f = *state;
    engine *e = engine_acquire(&f->a);
    assert_non_null(e);
    assert_true(fabs(engine_history_term(e, f->aria, f->kira) - -2.5) < EPS);
    engine_conv_info info;
    engine_err err;
    assert_int_equal(engine_conv_start(e, f->aria, f->kira, "music", 1000, &info, &err), 0);
    assert_int_equal(info.continue_score, 62); /* the spec's example, live */
    assert_true(info.active);
    assert_int_equal(info.turn_count, 0);
    assert_string_equal(info.next_speaker, f->aria);
    char id[40];
    memcpy(id, info.id, 40);
    assert_int_equal(sql_int(f,
                             "SELECT count(*) FROM conversations WHERE id = ?1 AND"
                             " kind = 'persona' AND ended_at IS NULL",
                             id),
                     1);
    /* both busy now */
    assert_int_equal(engine_conv_start(e, f->kira, f->aria, "magic", 1000, &info, &err), -1);
    assert_int_equal(err.code, ENGINE_ERR_UNAVAILABLE);

    engine_vitals a0 = vitals(f, f->aria), k0 = vitals(f, f->kira);
    engine_turn_result r;
    assert_int_equal(engine_conv_turn(e, id, NULL, &r, &err), 0);
    assert_int_equal(r.turn_number, 1);
    assert_string_equal(r.speaker_id, f->aria);
    assert_string_equal(r.listener_id, f->kira);
    assert_int_equal(r.continue_score, 62);
    assert_int_equal(r.route, ENGINE_FULL_LLM);
    assert_true(r.fallback); /* no LLM client */
    assert_int_equal(r.tokens_used, engine_estimate_tokens(r.text, ENGINE_FULL_LLM));
    assert_int_equal(r.conv.turn_count, 1);
    assert_int_equal(r.conv.duration, 30);
    assert_int_equal(r.conv.tokens_used, r.tokens_used);
    assert_int_equal(r.conv.token_budget, 1000 - r.tokens_used);
    assert_string_equal(r.conv.next_speaker, f->kira);
    engine_turn_result_free(&r);
    engine_vitals a1 = vitals(f, f->aria), k1 = vitals(f, f->kira);
    assert_int_equal(a1.interaction_fatigue, a0.interaction_fatigue + 1);
    assert_int_equal(a1.available_time, a0.available_time - 30);
    assert_int_equal(k1.available_time, k0.available_time - 15);
    assert_int_equal(
        sql_int(f, "SELECT count(*) FROM conversation_turns WHERE conversation_id = ?1", id), 1);
    assert_int_equal(sql_int(f,
                             "SELECT count(*) FROM memories WHERE memory_type = 'conversation'"
                             " AND json_extract(metadata, '$.conversation_id') = ?1",
                             id),
                     2);
    /* the relationship was updated with a real quality (62 -> 0.24) */
    assert_int_equal(sql_int(f,
                             "SELECT count(*) FROM relationships WHERE interaction_count = 1"
                             " AND affinity > 0.5 AND ?1 IN (persona1_id, persona2_id)",
                             f->aria),
                     1);

    assert_int_equal(engine_conv_turn(e, id, "Tell me about your research.", &r, &err), 0);
    assert_string_equal(r.speaker_id, f->kira);
    assert_int_equal(r.turn_number, 2);
    engine_turn_result_free(&r);

    assert_int_equal(engine_conv_status(e, id, &info, &err), 0);
    assert_int_equal(info.turn_count, 2);
    assert_int_equal(info.score_history_len, 2);

    double before = app_now();
    assert_int_equal(engine_conv_end(e, id, "user_request", &info, &err), 0);
    assert_false(info.active);
    assert_string_equal(info.exit_reason, "user_request");
    engine_vitals a2 = vitals(f, f->aria), k2 = vitals(f, f->kira);
    double cd = engine_cooldown_seconds(info.continue_score, a2.interaction_fatigue);
    assert_true(a2.cooldown_until >= before + cd - 1 && a2.cooldown_until <= app_now() + cd);
    assert_true(fabs(k2.cooldown_until - a2.cooldown_until) < EPS);
    /* ended: status reads the row; turn and end refuse */
    assert_int_equal(engine_conv_status(e, id, &info, &err), 0);
    assert_false(info.active);
    assert_int_equal(info.turn_count, 2);
    assert_string_equal(info.exit_reason, "user_request");
    assert_int_equal(engine_conv_turn(e, id, NULL, &r, &err), -1);
    assert_int_equal(err.code, -32602);
    assert_int_equal(engine_conv_end(e, id, "again", &info, &err), -1);
    assert_int_equal(err.code, -32602);
    /* on cooldown: cannot start */
    assert_int_equal(engine_conv_start(e, f->aria, f->kira, "music", 1000, &info, &err), -1);
    assert_int_equal(err.code, ENGINE_ERR_UNAVAILABLE);
    assert_non_null(strstr(err.msg, "Failed to start conversation"));
    engine_release(e);
}

static void test_engine_refusals_and_natural_end(void **state)
{
    fx *f = *state;
    engine *e = engine_acquire(&f->a);
    engine_conv_info info;
    engine_err err;
    assert_int_equal(engine_conv_start(e, f->aria, f->aria, "x", 1000, &info, &err), -1);
    assert_int_equal(err.code, -32602);
    assert_int_equal(engine_conv_start(e, f->aria, "nobody", "x", 1000, &info, &err), -1);
    assert_int_equal(err.code, -32000);
    assert_string_equal(err.msg, "One or both personas not found");
    assert_int_equal(engine_conv_status(e, "nope", &info, &err), -1);
    assert_int_equal(err.code, -32602);
    assert_string_equal(err.msg, "Conversation not found: nope");
    /* a budget of 60: the first turn's tokens leave <= 50, a natural end */
    assert_int_equal(engine_conv_start(e, f->aria, f->kira, "music", 60, &info, &err), 0);
    engine_turn_result r;
    assert_int_equal(engine_conv_turn(e, info.id, NULL, &r, &err), 0);
    if (r.tokens_used >= 10) {
        assert_true(r.ended);
        assert_string_equal(r.conv.exit_reason, "natural_conclusion");
        assert_true(vitals(f, f->aria).cooldown_until > app_now());
    }
    engine_turn_result_free(&r);
    engine_release(e);
}

static void test_engine_stop_closes_active(void **state)
{
    fx *f = *state;
    engine *e = engine_acquire(&f->a);
    engine_conv_info info;
    engine_err err;
    assert_int_equal(engine_conv_start(e, f->aria, f->kira, "travel", 1000, &info, &err), 0);
    engine_release(e);
    engine_stop(&f->a);
    assert_null(f->a.engine);
    assert_int_equal(sql_int(f,
                             "SELECT count(*) FROM conversations WHERE id = ?1 AND"
                             " exit_reason = 'server_shutdown' AND ended_at IS NOT NULL",
                             info.id),
                     1);
    /* no cooldown for a shutdown */
    assert_true(vitals(f, f->aria).cooldown_until <= app_now());
}

typedef struct backdate_job {
    const char *id;
    char when[40];
} backdate_job;

static int backdate_fn(store_conn *c, void *ctx)
{
    backdate_job *j = ctx;
    sqlite3_stmt *q = store_conn_stmt(
        c, "UPDATE persona_interaction_states SET interaction_fatigue = 30, available_time = 0,"
           " social_energy = 20, last_updated = ?2 WHERE persona_id = ?1");
    if (!q) return SQLITE_ERROR;
    sqlite3_bind_text(q, 1, j->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, j->when, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Kira was drained an hour ago (last_updated): the first pass of a new
 * engine regenerates her for that real hour, the next one (no time
 * passed) changes nothing. */
static void test_engine_regen_pass_uses_elapsed_time(void **state)
{
    fx *f = *state;
    backdate_job j = {.id = f->kira};
    util_iso_time(app_now() - 3600 - 30, j.when, false);
    assert_int_equal(store_write(f->a.store, backdate_fn, &j), SQLITE_OK);
    persona_reg_free(f->a.personas);
    assert_int_equal(persona_reg_load(&f->a.personas, f->a.store), 0);
    engine *e = engine_acquire(&f->a);
    assert_non_null(e);
    engine_regen_pass(e);
    engine_vitals v = vitals(f, f->kira);
    assert_int_equal(v.social_energy, 80);       /* 20 + 60 */
    assert_int_equal(v.interaction_fatigue, 18); /* 30 - 12 */
    assert_int_equal(v.available_time, 300);     /* 0 + 1815, up to the base cap */
    engine_vitals a = vitals(f, f->aria);
    assert_int_equal(a.social_energy, 150); /* Aria (fresh) unchanged */
    assert_int_equal(a.available_time, 600);
    engine_regen_pass(e);
    v = vitals(f, f->kira);
    assert_int_equal(v.social_energy, 80);
    assert_int_equal(v.interaction_fatigue, 18);
    engine_release(e);
}

/* The §6.10 room for 1.2 s of real time in 0.2 s ticks, with no LLM client
 * (every LLM turn is a fallback): Aria and Kira are paired at the first
 * tick, the transcript and the statistics are printed, and the room ends
 * what it started. */
static void test_engine_simulate(void **state)
{
    fx *f = *state;
    char path[200];
    snprintf(path, sizeof path, "%s/sim.txt", f->dir);
    FILE *out = fopen(path, "w+");
    assert_non_null(out);
    assert_int_equal(engine_simulate(&f->a, 0.02, 0.2, out), 0);
    rewind(out);
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, out);
    buf[n] = 0;
    fclose(out);
    unlink(path);
    assert_non_null(strstr(buf, "=== persona-mcp simulation"));
    assert_non_null(strstr(buf, "started: Aria & Kira on "));
    assert_non_null(strstr(buf, "Aria -> Kira ("));
    assert_non_null(strstr(buf, "=== statistics ==="));
    assert_non_null(strstr(buf, "conversations: 1 started"));
    assert_non_null(strstr(buf, "turns: "));
    assert_non_null(strstr(buf, "tokens: "));
    assert_non_null(strstr(buf, "  Aria: energy "));
    /* the room ended what it started: nothing is left active */
    assert_int_equal(sql_int(f,
                             "SELECT count(*) FROM conversations WHERE kind = 'persona' AND"
                             " ended_at IS NULL",
                             NULL),
                     0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM conversation_turns", NULL) >= 1, 1);
    /* fewer than two personas: refused */
    char name[64];
    assert_int_equal(persona_delete(f->a.personas, f->a.store, f->kira, name, sizeof name), 0);
    out = fopen(path, "w+");
    assert_int_equal(engine_simulate(&f->a, 0.01, 0.2, out), -1);
    fclose(out);
    unlink(path);
}

int main(void)
{
    log_set_level(LOG_ERROR);
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_score_spec_example),
        cmocka_unit_test(test_score_time_term),
        cmocka_unit_test(test_score_topic_term),
        cmocka_unit_test(test_score_social_term),
        cmocka_unit_test(test_score_fatigue_history_resource),
        cmocka_unit_test(test_score_clamped_and_truncated),
        cmocka_unit_test(test_should_continue),
        cmocka_unit_test(test_routing_thresholds),
        cmocka_unit_test(test_template_lines),
        cmocka_unit_test(test_token_estimate),
        cmocka_unit_test(test_turn_effects),
        cmocka_unit_test(test_cooldown),
        cmocka_unit_test(test_regeneration_carries_fractions),
        cmocka_unit_test(test_regeneration_bounds),
        cmocka_unit_test(test_simulated_day),
        T(test_engine_conversation),
        T(test_engine_refusals_and_natural_end),
        T(test_engine_stop_closes_active),
        T(test_engine_regen_pass_uses_elapsed_time),
        T(test_engine_simulate),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
