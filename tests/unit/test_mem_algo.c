/*
 * test_mem_algo.c - unit tests for the pure algorithms of the vector memory:
 * the built-in embedder (mem_embed.c), the exact top-k scan (mem_scan.c),
 * importance scoring (mem_score.c), pruning and decay (mem_policy.c).
 *
 * Layout: embedder properties; the scan against a naive reference (score
 * every kept row with mem_dot, sort by score then row, cut at k) on 200
 * random shapes, with duplicated rows so exact ties occur; the scorer
 * against the spec's §6.1 test vectors and per-factor inputs; pruning score,
 * protections and selection; decay against the §6.3 example table, its
 * protections and the no-compounding property. Randomness comes from a
 * fixed-seed xorshift generator so failures reproduce.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memory/mem_embed.h"
#include "memory/mem_policy.h"
#include "memory/mem_scan.h"
#include "memory/mem_score.h"

#define DAY 86400.0
#define NOW 1.7e9

#define assert_near(a, b, eps)                                                                     \
    do {                                                                                           \
        double a_ = (a), b_ = (b);                                                                 \
        if (!(fabs(a_ - b_) <= (eps))) fail_msg("%s = %.12g, expected %.12g", #a, a_, b_);         \
    } while (0)

/* ---- helpers ----------------------------------------------------------------- */

static uint64_t g_rng = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

static size_t rnd_below(size_t n)
{
    return n ? (size_t)(rnd() % n) : 0;
}

static float rnd_unit(void)
{
    return (float)((double)(rnd() >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}

static double cosine(const float *a, const float *b, int dim)
{
    double s = 0;
    for (int i = 0; i < dim; i++) s += (double)a[i] * b[i];
    return s;
}

static double norm(const float *v, int dim)
{
    return sqrt(cosine(v, v, dim));
}

static void embed(const char *s, float *out, int dim)
{
    mem_embed_builtin(s, strlen(s), out, dim);
}

static int all_zero(const float *v, int dim)
{
    for (int i = 0; i < dim; i++)
        if (v[i] != 0.0f) return 0;
    return 1;
}

/* ---- embedder ------------------------------------------------------------------ */

static void test_embed_deterministic(void **state)
{
    (void)state;
    float a[MEM_DEFAULT_DIM], b[MEM_DEFAULT_DIM];
    const char *t = "User said: I love reading about magical theories and ancient spells.";
    embed(t, a, MEM_DEFAULT_DIM);
    embed(t, b, MEM_DEFAULT_DIM);
    assert_memory_equal(a, b, sizeof a);
    assert_near(cosine(a, b, MEM_DEFAULT_DIM), 1.0, 1e-6);
    embed("HELLO, World", b, MEM_DEFAULT_DIM);
    embed("hello world", a, MEM_DEFAULT_DIM);
    assert_memory_equal(a, b, sizeof a);
}

static void test_embed_unit_norm_dims(void **state)
{
    (void)state;
    static float v[1024];
    const char *texts[] = {"a", "The weather is nice today", "EMERGENCY! There's a dragon!",
                           "caf\xc3\xa9 na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac", "x1 y2 z3"};
    for (int dim = 8; dim <= 1024; dim += (dim < 64 ? 1 : 37)) {
        for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
            embed(texts[t], v, dim);
            assert_near(norm(v, dim), 1.0, 1e-5);
        }
    }
    embed("unit", v, 1024);
    assert_near(norm(v, 1024), 1.0, 1e-5);
}

static void test_embed_similarity(void **state)
{
    (void)state;
    float q[MEM_DEFAULT_DIM], near[MEM_DEFAULT_DIM], far[MEM_DEFAULT_DIM], part[MEM_DEFAULT_DIM];
    embed("Aria loves music and stories about dragons", q, MEM_DEFAULT_DIM);
    embed("music and stories about dragons", near, MEM_DEFAULT_DIM);
    embed("The weather is nice today", far, MEM_DEFAULT_DIM);
    embed("a traveler told of dragon stories", part, MEM_DEFAULT_DIM);
    double cn = cosine(q, near, MEM_DEFAULT_DIM), cf = cosine(q, far, MEM_DEFAULT_DIM);
    double cp = cosine(q, part, MEM_DEFAULT_DIM);
    assert_true(cn > 0.6);
    assert_true(cn > cp);
    assert_true(cp > cf + 0.1);
    assert_true(fabs(cf) < 0.25);
    /* trigrams make related forms similar */
    embed("travel", q, MEM_DEFAULT_DIM);
    embed("traveler", near, MEM_DEFAULT_DIM);
    embed("potato", far, MEM_DEFAULT_DIM);
    assert_true(cosine(q, near, MEM_DEFAULT_DIM) > cosine(q, far, MEM_DEFAULT_DIM) + 0.2);
}

static void test_embed_empty_and_utf8(void **state)
{
    (void)state;
    float v[64], w[64];
    embed("", v, 64);
    assert_true(all_zero(v, 64));
    embed("  ,.;!? -- ", v, 64);
    assert_true(all_zero(v, 64));
    v[3] = 1.0f;
    mem_embed_builtin(NULL, 0, v, 64);
    assert_true(all_zero(v, 64));
    mem_embed_builtin("abc", 0, v, 64);
    assert_true(all_zero(v, 64));
    embed("caf\xc3\xa9", v, 64);
    embed("cafe", w, 64);
    assert_false(all_zero(v, 64));
    assert_true(cosine(v, w, 64) < 0.999);
    mem_embed_builtin("cafe!", 4, v, 64); /* only len bytes are read */
    assert_memory_equal(v, w, sizeof v);
}

static void test_embed_model_and_normalize(void **state)
{
    (void)state;
    char id[64];
    mem_embed_builtin_model(384, id, sizeof id);
    assert_string_equal(id, "builtin-hash-v1/384");
    float v[3] = {3, 0, 4}, z[3] = {0, 0, 0};
    assert_near(mem_normalize(v, 3), 5.0, 1e-6);
    assert_near(v[0], 0.6, 1e-6);
    assert_near(v[2], 0.8, 1e-6);
    assert_near(mem_normalize(z, 3), 0.0, 0);
    assert_true(all_zero(z, 3));
}

/* ---- scan --------------------------------------------------------------------- */

static int cmp_hit(const void *a, const void *b)
{
    const mem_hit *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

static size_t naive_topk(const float *rows, size_t n, int dim, const float *q, const uint8_t *keep,
                         size_t k, mem_hit *out)
{
    mem_hit *all = malloc((n + 1) * sizeof *all);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (keep && !keep[i]) continue;
        all[m].row = (uint32_t)i;
        all[m++].score = mem_dot(rows + i * (size_t)dim, q, dim);
    }
    qsort(all, m, sizeof *all, cmp_hit);
    size_t r = m < k ? m : k;
    memcpy(out, all, r * sizeof *all);
    free(all);
    return r;
}

/* Random rows; in one case out of three every row is a copy of one of a few
 * distinct rows, so runs of exactly equal scores straddle the cut at k. */
static void fill_case(float *rows, size_t n, int dim, float *q)
{
    for (size_t i = 0; i < n * (size_t)dim; i++) rows[i] = rnd_unit();
    for (int i = 0; i < dim; i++) q[i] = rnd_unit();
    size_t pool = 1 + rnd_below(8);
    if (rnd_below(3) != 0 || n <= pool) return;
    for (size_t i = pool; i < n; i++)
        memcpy(rows + i * dim, rows + rnd_below(pool) * dim, sizeof(float) * (size_t)dim);
}

static uint8_t *make_keep(size_t n)
{
    if (rnd_below(3) == 0) return NULL;
    uint8_t *keep = malloc(n + 1);
    size_t density = rnd_below(101);
    for (size_t i = 0; i < n; i++) keep[i] = rnd_below(100) < density;
    return keep;
}

static void run_scan_case(size_t n, int dim, size_t k)
{
    float *rows = malloc((n * (size_t)dim + 1) * sizeof(float));
    float *q = malloc((size_t)dim * sizeof(float));
    fill_case(rows, n, dim, q);
    uint8_t *keep = make_keep(n);
    mem_hit *got = malloc((k + 1) * sizeof *got), *want = malloc((k + 1) * sizeof *want);
    size_t g = mem_topk(rows, n, dim, q, keep, k, got);
    size_t w = naive_topk(rows, n, dim, q, keep, k, want);
    if (g != w) fail_msg("n=%zu dim=%d k=%zu: %zu hits, expected %zu", n, dim, k, g, w);
    for (size_t i = 0; i < w; i++) {
        if (got[i].row != want[i].row || got[i].score != want[i].score)
            fail_msg("n=%zu dim=%d k=%zu hit %zu: row %u, expected %u", n, dim, k, i, got[i].row,
                     want[i].row);
    }
    free(rows), free(q), free(keep), free(got), free(want);
}

static void test_scan_random_vs_naive(void **state)
{
    (void)state;
    for (int c = 0; c < 200; c++) {
        size_t n = c < 5 ? (size_t)c : rnd_below(5001);
        int dim = c % 10 == 0 ? 384 : 1 + (int)rnd_below(700);
        size_t k = rnd_below(4) == 0 ? n + rnd_below(20) : 1 + rnd_below(50);
        run_scan_case(n, dim, k);
    }
}

static void test_scan_edges(void **state)
{
    (void)state;
    float rows[4 * 3] = {1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1};
    float q[3] = {1, 0, 0};
    mem_hit out[8];
    assert_int_equal(mem_topk(rows, 4, 3, q, NULL, 0, out), 0);
    assert_int_equal(mem_topk(rows, 0, 3, q, NULL, 5, out), 0);
    uint8_t none[4] = {0, 0, 0, 0}, some[4] = {0, 1, 1, 1};
    assert_int_equal(mem_topk(rows, 4, 3, q, none, 5, out), 0);
    assert_int_equal(mem_topk(rows, 4, 3, q, NULL, 8, out), 4);
    assert_int_equal(out[0].row, 0); /* tie with row 2: lower row first */
    assert_int_equal(out[1].row, 2);
    assert_int_equal(mem_topk(rows, 4, 3, q, some, 1, out), 1);
    assert_int_equal(out[0].row, 2);
    assert_near(out[0].score, 1.0, 0);
}

/* ---- half-precision prefilter ------------------------------------------------ */

static void normalize_rows(float *rows, size_t n, int dim)
{
    for (size_t i = 0; i < n; i++) mem_normalize(rows + i * (size_t)dim, dim);
}

/* Unit rows; in half of the cases they are tiny perturbations (1e-4) of a
 * few base rows, so many scores lie closer together than half precision can
 * tell apart and the float32 rescoring alone decides the order. */
static void fill_half_case(float *rows, size_t n, int dim, float *q)
{
    for (int i = 0; i < dim; i++) q[i] = rnd_unit();
    mem_normalize(q, dim);
    size_t pool = 1 + rnd_below(4);
    bool near = rnd_below(2) == 0 && n > pool;
    for (size_t i = 0; i < n * (size_t)dim; i++) rows[i] = rnd_unit();
    if (near)
        for (size_t i = pool; i < n; i++)
            for (int j = 0; j < dim; j++)
                rows[i * dim + j] = rows[rnd_below(pool) * dim + j] + 1e-4f * rnd_unit();
    normalize_rows(rows, n, dim);
}

static void run_half_case(size_t n, int dim, size_t k, float norm_max)
{
    float *rows = malloc((n * (size_t)dim + 1) * sizeof(float));
    uint16_t *half = malloc((n * (size_t)dim + 1) * sizeof(uint16_t));
    float *q = malloc((size_t)dim * sizeof(float)), *scratch = malloc((n + 1) * sizeof(float));
    fill_half_case(rows, n, dim, q);
    mem_to_half(rows, half, n * (size_t)dim);
    uint8_t *keep = make_keep(n);
    mem_hit *got = malloc((k + 1) * sizeof *got), *want = malloc((k + 1) * sizeof *want);
    size_t g = mem_topk_half(half, rows, n, dim, norm_max, q, keep, k, got, scratch);
    size_t w = mem_topk(rows, n, dim, q, keep, k, want);
    if (g != w) fail_msg("n=%zu dim=%d k=%zu: %zu hits, expected %zu", n, dim, k, g, w);
    for (size_t i = 0; i < w; i++)
        if (got[i].row != want[i].row || got[i].score != want[i].score)
            fail_msg("n=%zu dim=%d k=%zu hit %zu: row %u (%.9g), expected %u (%.9g)", n, dim, k, i,
                     got[i].row, (double)got[i].score, want[i].row, (double)want[i].score);
    free(rows), free(half), free(q), free(scratch), free(keep), free(got), free(want);
}

static void test_half_prefilter_is_exact(void **state)
{
    (void)state;
    for (int c = 0; c < 300; c++) {
        size_t n = c < 5 ? (size_t)c : rnd_below(4001);
        int dim = c % 3 == 0 ? 384 : 1 + (int)rnd_below(700);
        size_t k = rnd_below(4) == 0 ? n + rnd_below(20) : 1 + rnd_below(50);
        run_half_case(n, dim, k, 1.0001f);
    }
    run_half_case(500, 384, 10, 100.0f); /* rows said too long for half: float32 path */
}

/* mem_to_half rounds like the compiler's own float -> _Float16 conversion
 * (round to nearest even), through subnormals, overflow and NaN. */
static void test_half_conversion(void **state)
{
    (void)state;
    static const float special[] = {0.0f,     -0.0f,     1.0f,         -2.5f,      65504.0f,
                                    65519.0f, 65520.0f,  1e6f,         -1e6f,      0x1p-14f,
                                    0x1p-24f, 0x1p-25f,  0x1.8p-25f,   0x1p-26f,   1e-30f,
                                    INFINITY, -INFINITY, 0x1.ffep-15f, 3.14159265f};
    for (size_t i = 0; i < sizeof special / sizeof *special; i++) {
        uint16_t h, ref;
        _Float16 f = (_Float16)special[i];
        memcpy(&ref, &f, sizeof ref);
        mem_to_half(&special[i], &h, 1);
        if (h != ref) fail_msg("%a -> %#x, expected %#x", (double)special[i], h, ref);
    }
    for (int i = 0; i < 200000; i++) {
        uint32_t bits = (uint32_t)rnd_below(1u << 31) | (rnd_below(2) ? 0x80000000u : 0);
        float x;
        memcpy(&x, &bits, sizeof x);
        if (x != x) continue; /* NaN payloads may differ; NaN-ness is checked below */
        uint16_t h, ref;
        _Float16 f = (_Float16)x;
        memcpy(&ref, &f, sizeof ref);
        mem_to_half(&x, &h, 1);
        if (h != ref) fail_msg("%a -> %#x, expected %#x", (double)x, h, ref);
    }
    float nan = NAN;
    uint16_t h;
    mem_to_half(&nan, &h, 1);
    assert_true((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0);
}

static void test_dot_accuracy(void **state)
{
    (void)state;
    float a[700], b[700];
    for (int dim = 1; dim <= 700; dim += 13) {
        for (int i = 0; i < dim; i++) a[i] = rnd_unit(), b[i] = rnd_unit();
        assert_near(mem_dot(a, b, dim), cosine(a, b, dim), 1e-4);
    }
    assert_near(mem_dot(a, b, 0), 0.0, 0);
}

/* ---- scorer --------------------------------------------------------------------- */

/* Aria and Kira as seeded in store_schema.c. */
static const char *const k_aria_topics[] = {"music", "stories",   "travel", "gossip",
                                            "magic", "adventure", "art",    "local_news"};
static const int k_aria_prefs[] = {95, 90, 85, 80, 70, 85, 80, 75};
static const char *const k_kira_topics[] = {"research", "magic",     "history", "philosophy",
                                            "books",    "discovery", "gossip",  "small_talk"};
static const int k_kira_prefs[] = {95, 90, 85, 80, 85, 90, 20, 25};

static const mem_interest k_aria = {8, k_aria_topics, k_aria_prefs, true, true, false};
static const mem_interest k_kira = {8, k_kira_topics, k_kira_prefs, true, false, false};

static mem_score_ctx chat_ctx(const mem_interest *speaker)
{
    return (mem_score_ctx){.speaker = speaker,
                           .has_context = true,
                           .continue_score = 50,
                           .topic = "user_conversation",
                           .memory_type = "conversation"};
}

static double score_default(const char *text, const mem_score_ctx *ctx)
{
    mem_weights w;
    mem_weights_default(&w);
    return mem_importance(text, ctx, &w);
}

static void check_vector(const char *text, double aria, double kira, double none)
{
    mem_score_ctx a = chat_ctx(&k_aria), k = chat_ctx(&k_kira);
    mem_score_ctx plain = {.memory_type = "conversation"};
    assert_near(score_default(text, &a), aria, 1e-9);
    assert_near(score_default(text, &k), kira, 1e-9);
    assert_near(score_default(text, &plain), none, 1e-9);
    assert_near(score_default(text, NULL), none, 1e-9);
}

static void test_score_spec_vectors(void **state)
{
    (void)state;
    check_vector("User said: Hello!. I responded: Hi there, traveler!", 0.595, 0.55, 0.51);
    check_vector("User said: I love reading about magical theories and ancient spells. I "
                 "responded: How wonderful!",
                 0.675, 0.695, 0.605);
    check_vector("The weather is nice today", 0.41, 0.39, 0.35);
    check_vector("EMERGENCY! There's a dragon attacking!", 0.75, 0.73, 0.69);
}

static void test_score_emotional(void **state)
{
    (void)state;
    assert_near(mem_score_emotional("a glove"), 0.0, 0);
    assert_near(mem_score_emotional("she loved it"), 0.9, 0);
    assert_near(mem_score_emotional("love"), 0.9, 0);
    assert_near(mem_score_emotional("so-called love."), 0.9, 0);
    assert_near(mem_score_emotional("furious"), 0.95, 0);
    assert_near(mem_score_emotional("unhappy"), 0.0, 0); /* word start only */
    assert_near(mem_score_emotional("sadness and boredom"), 0.6, 0);
    assert_near(mem_score_emotional("bored"), 0.2, 0);
    assert_near(mem_score_emotional("a!"), 0.4, 0);
    assert_near(mem_score_emotional("a!!"), 0.6, 0);
    assert_near(mem_score_emotional("wow!!!!"), 0.8, 0);
    assert_near(mem_score_emotional("HELLO there friend"), 0.4, 0); /* 5/18 */
    assert_near(mem_score_emotional("HELLO THERE"), 0.7, 0);
    assert_near(mem_score_emotional("Hi there"), 0.4, 0);     /* 1/8 > 0.1 */
    assert_near(mem_score_emotional("Hi there you"), 0.0, 0); /* 1/12 */
    assert_near(mem_score_emotional(""), 0.0, 0);
    assert_near(mem_score_emotional(NULL), 0.0, 0);
}

static void test_score_context(void **state)
{
    (void)state;
    assert_near(mem_score_context("It was an Emergency.", NULL), 0.9, 0);
    assert_near(mem_score_context("emergencyroom", NULL), 0.0, 0);
    assert_near(mem_score_context("the first time we met", NULL), 0.8, 0);
    assert_near(mem_score_context("the first  time", NULL), 0.0, 0);
    assert_near(mem_score_context("a spell", NULL), 0.6, 0);
    assert_near(mem_score_context("ancient spells", NULL), 0.0, 0); /* whole words */
    assert_near(mem_score_context("my friend has a plan", NULL), 0.6, 0);
    assert_near(mem_score_context("remember me", NULL), 0.45, 0);
    mem_score_ctx c = {.has_context = true, .continue_score = 80};
    assert_near(mem_score_context("hello", &c), 0.7, 0);
    c.continue_score = 60;
    assert_near(mem_score_context("hello", &c), 0.5, 0);
    c.continue_score = 59;
    assert_near(mem_score_context("hello", &c), 0.0, 0);
    c.topic = "Secret";
    assert_near(mem_score_context("hello", &c), 0.8, 0);
    c.topic = "family";
    assert_near(mem_score_context("hello", &c), 0.6, 0);
    assert_near(mem_score_context("a crisis", &c), 0.9, 0);
    c.has_context = false;
    assert_near(mem_score_context("hello", &c), 0.0, 0);
}

static void test_score_interest(void **state)
{
    (void)state;
    assert_near(mem_score_interest("Hi there, traveler!", &k_aria), 0.85, 1e-12);
    assert_near(mem_score_interest("the art of music", &k_aria), 0.95, 1e-12);
    assert_near(mem_score_interest("my heart", &k_aria), 0.6, 0); /* not "art" */
    assert_near(mem_score_interest("small_talk only", &k_kira), 0.25, 1e-12);
    assert_near(mem_score_interest("nothing here", &k_kira), 0.4, 0); /* traits, none curious */
    assert_near(mem_score_interest("x", NULL), 0.0, 0);
    const mem_interest empty = {0};
    assert_near(mem_score_interest("music", &empty), 0.5, 0);
    const char *t[] = {"music"};
    const int p[] = {150};
    mem_interest social = {1, t, p, true, false, true};
    assert_near(mem_score_interest("Music!", &social), 1.0, 0);
    assert_near(mem_score_interest("none", &social), 0.5, 0);
    social.has_traits = social.trait_social = false;
    assert_near(mem_score_interest("none", &social), 0.5, 0);
}

static void test_score_engagement(void **state)
{
    (void)state;
    assert_near(mem_score_engagement("How? Why!", NULL), 0.45, 1e-12);
    assert_near(mem_score_engagement("tell me what you think", NULL), 0.4, 1e-12);
    assert_near(mem_score_engagement("somehow whatever", NULL), 0.0, 0);
    assert_near(mem_score_engagement("I disagree", NULL), 0.1, 1e-12);
    /* One pass over the text: every occurrence counts, words sharing a first
     * letter are told apart, and case, punctuation and word ends matter. */
    assert_near(mem_score_engagement("how, HOW; how", NULL), 0.45, 1e-12);
    assert_near(mem_score_engagement("tell me tell me", NULL), 0.3, 1e-12);
    assert_near(mem_score_engagement("tell metell me", NULL), 0.0, 0);
    assert_near(mem_score_engagement("why what when where", NULL), 0.6, 1e-12);
    assert_near(mem_score_engagement("_how how_ 1how how1", NULL), 0.0, 0);
    assert_near(mem_score_engagement("feel, think. agree", NULL), 0.3, 1e-12);
    assert_near(mem_score_engagement("a b c d e f g h i j", NULL), 0.1, 1e-12);
    assert_near(mem_score_engagement("????????????", NULL), 1.0, 0);
    char words[256] = "";
    for (int i = 0; i < 50; i++) strcat(words, "w ");
    assert_near(mem_score_engagement(words, NULL), 0.3, 1e-12);
    words[40] = 0; /* 20 words */
    assert_near(mem_score_engagement(words, NULL), 0.2, 1e-12);
    mem_score_ctx c = {.has_turn = true, .turn_continue_score = 70, .response_type = "creative"};
    assert_near(mem_score_engagement("x", &c), 0.35, 1e-12);
    c.turn_continue_score = 50;
    c.response_type = "detailed";
    assert_near(mem_score_engagement("x", &c), 0.2, 1e-12);
}

static void test_score_type_multiplier(void **state)
{
    (void)state;
    assert_near(mem_type_multiplier(NULL), 1.0, 0);
    assert_near(mem_type_multiplier("conversation"), 1.0, 0);
    assert_near(mem_type_multiplier("observation"), 0.8, 0);
    assert_near(mem_type_multiplier("reflection"), 1.2, 0);
    assert_near(mem_type_multiplier("relationship"), 1.3, 0);
    assert_near(mem_type_multiplier("goal"), 1.4, 0);
    assert_near(mem_type_multiplier("secret"), 1.5, 0);
    assert_near(mem_type_multiplier("trauma"), 1.6, 0);
    assert_near(mem_type_multiplier("achievement"), 1.3, 0);
    assert_near(mem_type_multiplier("learning"), 1.1, 0);
    assert_near(mem_type_multiplier("routine"), 0.6, 0);
    assert_near(mem_type_multiplier("user_input"), 1.0, 0);
    mem_score_ctx c = {.memory_type = "secret"};
    assert_near(score_default("The weather is nice today", &c), 0.525, 1e-9);
    c.memory_type = "routine";
    assert_near(score_default("The weather is nice today", &c), 0.21, 1e-9);
    c.memory_type = "trauma";
    assert_near(score_default("EMERGENCY! There's a dragon attacking!", &c), 1.0, 0);
    mem_weights w;
    mem_weights_default(&w);
    w.apply_type_multiplier = false;
    assert_near(mem_importance("The weather is nice today", &c, &w), 0.35, 1e-9);
}

static void test_score_clamp_and_relationship(void **state)
{
    (void)state;
    mem_weights w;
    mem_weights_default(&w);
    w.base = 0.0;
    w.recency = 0.0;
    assert_near(mem_importance("plain words", NULL, &w), 0.1, 0);
    mem_weights_default(&w);
    w.min = 0.51;
    w.max = 0.8;
    assert_near(mem_importance("The weather is nice today", NULL, &w), 0.51, 0);
    assert_near(mem_importance("EMERGENCY! There's a dragon attacking!", NULL, &w), 0.69, 1e-9);
    assert_near(mem_importance("I LOVE this!!! An EMERGENCY! Why? How?", NULL, &w), 0.8, 0);
    mem_score_ctx c = {.listener = &k_kira};
    double base = score_default("nothing", &c); /* 0.35 + 0.05 * 0.4 */
    assert_near(base, 0.37, 1e-9);
    c.has_relationship = true;
    c.affinity = c.trust = 0.9;
    assert_near(score_default("nothing", &c) - base, 0.09, 1e-9);
    c.affinity = c.trust = 0.5;
    assert_near(score_default("nothing", &c) - base, 0.05, 1e-9);
    c.affinity = 0.35, c.trust = 0.35;
    assert_near(score_default("nothing", &c) - base, 0.07, 1e-9);
    c.affinity = -1.0, c.trust = 0.3; /* clamped to 0: s = 0.15 */
    assert_near(score_default("nothing", &c) - base, 0.09, 1e-9);
    c.listener = NULL; /* relationship counts only with a listener */
    assert_near(score_default("nothing", &c), 0.35, 1e-9);
}

/* ---- pruning -------------------------------------------------------------------- */

static mem_fact fact(double imp, int64_t accessed, double age_days, double accessed_days_ago)
{
    return (mem_fact){.importance = imp,
                      .base_importance = imp,
                      .accessed_count = accessed,
                      .created_at = NOW - age_days * DAY,
                      .last_accessed = accessed_days_ago < 0 ? 0 : NOW - accessed_days_ago * DAY};
}

static void test_prune_score(void **state)
{
    (void)state;
    prune_config c;
    prune_config_default(&c);
    mem_fact f = fact(0.5, 2, 3.5, 1);
    assert_near(prune_score(&f, NOW, &c), 0.3 + 0.06 + 0.1, 1e-12);
    f = fact(0.5, 2, 48.5, 1); /* 48 whole days */
    assert_near(prune_score(&f, NOW, &c), 0.36 + 0.1 * (1 - 0.9 * 41 / 83.0), 1e-12);
    f = fact(0.5, 20, 100, 1);
    assert_near(prune_score(&f, NOW, &c), 0.3 + 0.3 + 0.01, 1e-12);
    c.strategy = PRUNE_IMPORTANCE_ACCESS;
    assert_near(prune_score(&f, NOW, &c), 0.6, 1e-12);
    c.strategy = PRUNE_IMPORTANCE_ONLY;
    assert_near(prune_score(&f, NOW, &c), 0.3, 1e-12);
    prune_strategy s;
    assert_int_equal(prune_strategy_parse("importance_access", &s), 0);
    assert_int_equal(s, PRUNE_IMPORTANCE_ACCESS);
    assert_int_equal(prune_strategy_parse("lru", &s), -1);
    assert_string_equal(prune_strategy_name(PRUNE_IMPORTANCE_ACCESS_AGE), "importance_access_age");
}

static void test_prune_protection(void **state)
{
    (void)state;
    prune_config c;
    prune_config_default(&c);
    mem_fact f = fact(0.7, 1, 60, 10);
    assert_true(prune_is_protected(&f, NOW, &c));
    f = fact(0.69, 1, 60, 10);
    assert_false(prune_is_protected(&f, NOW, &c));
    f = fact(0.2, 5, 60, 10);
    assert_true(prune_is_protected(&f, NOW, &c));
    f = fact(0.2, 4, 60, 10);
    assert_false(prune_is_protected(&f, NOW, &c));
    f = fact(0.2, 0, 29.9, -1); /* never accessed, in the grace period */
    assert_true(prune_is_protected(&f, NOW, &c));
    f = fact(0.2, 0, 30, -1);
    assert_false(prune_is_protected(&f, NOW, &c));
    f = fact(0.2, 1, 1, 1);
    assert_false(prune_is_protected(&f, NOW, &c));
}

static void check_selection(const mem_fact *f, size_t n, const prune_config *c, size_t *out,
                            size_t m)
{
    uint8_t *chosen = calloc(n, 1);
    double worst = -1;
    for (size_t i = 0; i < m; i++) {
        assert_false(prune_is_protected(&f[out[i]], NOW, c));
        assert_false(chosen[out[i]]);
        chosen[out[i]] = 1;
        double s = prune_score(&f[out[i]], NOW, c);
        assert_true(s >= worst);
        if (i > 0 && s == worst) assert_true(out[i] > out[i - 1]);
        worst = s;
    }
    for (size_t i = 0; i < n; i++)
        if (!chosen[i] && !prune_is_protected(&f[i], NOW, c))
            assert_true(prune_score(&f[i], NOW, c) >= worst);
    free(chosen);
}

static void test_prune_select(void **state)
{
    (void)state;
    prune_config c;
    prune_config_default(&c);
    enum { N = 1000 };
    mem_fact *f = malloc(N * sizeof *f);
    size_t *out = malloc(N * sizeof *out);
    for (size_t i = 0; i < N; i++)
        f[i] = fact((double)rnd_below(70) / 100.0, (int64_t)rnd_below(5), 30 + rnd_below(100), 20);
    for (size_t i = 0; i < N; i += 20) f[i].importance = 0.75; /* 50 protected */
    size_t m = prune_select(f, N, NOW, &c, out);
    assert_int_equal(m, N - 800);
    check_selection(f, N, &c, out, m);
    /* many protected: all the unprotected ones, no more */
    for (size_t i = 0; i < 900; i++) f[i] = fact(i < 850 ? 0.9 : 0.1, 1, 60, 20);
    m = prune_select(f, 900, NOW, &c, out);
    assert_int_equal(m, 50);
    check_selection(f, 900, &c, out, m);
    /* at or below target: nothing */
    assert_int_equal(prune_select(f, 800, NOW, &c, out), 0);
    /* equal scores go in index order */
    for (size_t i = 0; i < 803; i++) f[i] = fact(0.3, 1, 60, 20);
    m = prune_select(f, 803, NOW, &c, out);
    assert_int_equal(m, 3);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 1);
    assert_int_equal(out[2], 2);
    free(f), free(out);
}

/* ---- decay ---------------------------------------------------------------------- */

static double decay_at(decay_mode mode, double imp, double days)
{
    decay_config c;
    decay_config_default(&c);
    c.mode = mode;
    mem_fact f = fact(imp, 0, days + 0.25, -1);
    return decay_importance(&f, NOW, &c);
}

static void test_decay_spec_table(void **state)
{
    (void)state;
    static const double days[5] = {1, 7, 30, 60, 90};
    static const struct {
        decay_mode mode;
        double v[5];
    } table[] = {
        {DECAY_ACCESS_BASED, {0.586, 0.504, 0.24, 0.1, 0.1}},
        {DECAY_EXPONENTIAL, {0.586, 0.51, 0.3, 0.15, 0.12}},
        {DECAY_LINEAR, {0.594, 0.558, 0.42, 0.24, 0.12}},
        {DECAY_LOGARITHMIC, {0.508, 0.323, 0.143, 0.12, 0.12}},
    };
    for (size_t m = 0; m < 4; m++)
        for (int d = 0; d < 5; d++)
            assert_near(decay_at(table[m].mode, 0.6, days[d]), table[m].v[d], 0);
    assert_near(decay_at(DECAY_LINEAR, 0.6, 0), 0.6, 0);
    assert_near(decay_at(DECAY_LINEAR, 0.6, 200), 0.12, 0);
}

static void test_decay_no_compounding(void **state)
{
    (void)state;
    decay_config c;
    decay_config_default(&c);
    for (int mode = DECAY_LINEAR; mode <= DECAY_ACCESS_BASED; mode++) {
        c.mode = (decay_mode)mode;
        mem_fact f = fact(0.6, 0, 7.5, -1);
        double first = decay_importance(&f, NOW, &c);
        for (int cycle = 0; cycle < 100; cycle++) {
            f.importance = decay_importance(&f, NOW, &c);
            assert_near(f.importance, first, 0);
        }
        /* applied to the current value, as upstream did, it would compound */
        mem_fact up = f;
        up.base_importance = f.importance;
        assert_true(decay_importance(&up, NOW, &c) < first);
        /* later cycles: still a function of base and age only */
        assert_near(decay_importance(&f, NOW + 23 * DAY, &c), decay_at(c.mode, 0.6, 30), 0);
    }
}

static void test_decay_protections(void **state)
{
    (void)state;
    decay_config c;
    decay_config_default(&c);
    mem_fact f = fact(0.85, 0, 60, -1);
    assert_near(decay_importance(&f, NOW, &c), 0.85, 0);
    f = fact(0.6, 2, 60, 3); /* accessed 3 days ago */
    assert_near(decay_importance(&f, NOW, &c), 0.6, 0);
    f = fact(0.6, 1, 30, 8); /* accessed 8 days ago: f = 0.3, times 1 */
    assert_near(decay_importance(&f, NOW, &c), 0.42, 0);
    f = fact(0.6, 3, 30, 8); /* high access: f halved */
    assert_near(decay_importance(&f, NOW, &c), 0.51, 0);
    f = fact(0.6, 0, 30, -1);
    f.importance = 0.2; /* already lower than the decayed base: never raised */
    assert_near(decay_importance(&f, NOW, &c), 0.2, 0);
    f = fact(0.05, 0, 30, -1); /* below the floor: not raised to it */
    assert_near(decay_importance(&f, NOW, &c), 0.05, 0);
    c.mode = DECAY_NONE;
    f = fact(0.6, 0, 60, -1);
    assert_near(decay_importance(&f, NOW, &c), 0.6, 0);
    decay_mode m;
    assert_int_equal(decay_mode_parse("logarithmic", &m), 0);
    assert_int_equal(m, DECAY_LOGARITHMIC);
    assert_int_equal(decay_mode_parse("step", &m), -1);
    assert_string_equal(decay_mode_name(DECAY_ACCESS_BASED), "access_based");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embed_deterministic),
        cmocka_unit_test(test_embed_unit_norm_dims),
        cmocka_unit_test(test_embed_similarity),
        cmocka_unit_test(test_embed_empty_and_utf8),
        cmocka_unit_test(test_embed_model_and_normalize),
        cmocka_unit_test(test_scan_random_vs_naive),
        cmocka_unit_test(test_scan_edges),
        cmocka_unit_test(test_dot_accuracy),
        cmocka_unit_test(test_half_prefilter_is_exact),
        cmocka_unit_test(test_half_conversion),
        cmocka_unit_test(test_score_spec_vectors),
        cmocka_unit_test(test_score_emotional),
        cmocka_unit_test(test_score_context),
        cmocka_unit_test(test_score_interest),
        cmocka_unit_test(test_score_engagement),
        cmocka_unit_test(test_score_type_multiplier),
        cmocka_unit_test(test_score_clamp_and_relationship),
        cmocka_unit_test(test_prune_score),
        cmocka_unit_test(test_prune_protection),
        cmocka_unit_test(test_prune_select),
        cmocka_unit_test(test_decay_spec_table),
        cmocka_unit_test(test_decay_no_compounding),
        cmocka_unit_test(test_decay_protections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
