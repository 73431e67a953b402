/*
 * mem_score.c - importance of a memory (spec §6.1) with the §12 item 25
 * fixes: configurable weights and clamp, word-start keyword matching and
 * memory-type multipliers.
 *
 * Matching is done on the original bytes with ASCII case folding, so there
 * is no lower-cased copy and no allocation. A "word byte" is what Python's
 * \w matched in the original for our purposes: ASCII letters, digits, '_'
 * and every byte >= 0x80 (UTF-8 text). Two kinds of match exist:
 *
 *   - whole word (the original's \b...\b regexes): the phrase starts at a
 *     word boundary and ends at one; phrases may contain a space
 *     ("first time"), matched literally;
 *   - word start (the emotional keyword table and the topic names, which
 *     upstream matched as bare substrings): the phrase starts at a word
 *     boundary and may continue inside the word, so "glove" no longer
 *     counts as "love" while "loved" and "traveler" still match.
 *
 * Differences from Python that cannot matter for ASCII text: the upper-case
 * ratio counts ASCII capitals over code points (UTF-8 continuation bytes are
 * not counted) and the word count splits on ASCII white space only.
 *
 * The text is read once (text_scan): at each word start, only the keywords
 * beginning with that letter are tried (a per-letter index of every fixed
 * keyword table, built once). Whole-word counts keep their non-overlapping,
 * leftmost-first meaning with a per-keyword "next allowed position". The
 * persona topics, few and per request, are matched with has_word_start.
 *
 * Score = clamp(min, max, (base + we*E + wc*C + ws*Is + wl*Il + wg*G + wr*R
 * + wt*T) * type multiplier); T (recency) is 1.0 as in the original.
 */
#include "memory/mem_score.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct weighted {
    const char *word;
    double weight;
} weighted;

typedef struct phrase_group {
    const char *const *phrases;
    double weight;
} phrase_group;

/* ---- matching ------------------------------------------------------------ */

static int fold(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c;
}

static int is_wbyte(unsigned char c)
{
    return c >= 0x80 || c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z');
}

/* Length of phrase p when it matches (folded) at s, else 0. */
static size_t match_at(const unsigned char *s, const char *p)
{
    size_t j = 0;
    for (; p[j]; j++)
        if (!s[j] || fold(s[j]) != (unsigned char)p[j]) return 0;
    return j;
}

static int at_word_start(const unsigned char *t, size_t i)
{
    return i == 0 || !is_wbyte(t[i - 1]);
}

/* Does p occur at the start of some word of t? (The first letter is
 * compared before anything else: most positions fail there, and these
 * scans run once per keyword per stored text.) */
static int has_word_start(const char *text, const char *p)
{
    const unsigned char *t = (const unsigned char *)text;
    const int c0 = (unsigned char)p[0];
    for (size_t i = 0; t[i]; i++)
        if (fold(t[i]) == c0 && at_word_start(t, i) && match_at(t + i, p)) return 1;
    return 0;
}

static double max_d(double a, double b)
{
    return a > b ? a : b;
}

static double clamp(double lo, double hi, double x)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/* Everything the fixed keyword tables and the counters say about one text,
 * from one pass (scan_text, after the tables). */
typedef struct text_scan {
    double emotion;       /* best weight of an emotion keyword at a word start */
    double context;       /* best weight of a context group with a whole-word hit */
    int asks, opinions;   /* non-overlapping whole-word occurrences */
    int bangs, questions; /* '!' and '?' */
    int words;            /* runs of non-white-space */
    size_t upper, chars;  /* ASCII capitals; code points */
} text_scan;

static void scan_text(const char *text, text_scan *out);

/* ---- E: emotional intensity ---------------------------------------------- */

static const weighted k_emotion[] = {
    {"love", 0.9},         {"hate", 0.9},        {"furious", 0.95},  {"ecstatic", 0.9},
    {"devastated", 0.9},   {"thrilled", 0.85},   {"terrified", 0.9}, {"overjoyed", 0.85},
    {"enraged", 0.9},      {"heartbroken", 0.9}, {"happy", 0.6},     {"sad", 0.6},
    {"angry", 0.7},        {"excited", 0.7},     {"worried", 0.6},   {"surprised", 0.65},
    {"disappointed", 0.6}, {"anxious", 0.7},     {"proud", 0.7},     {"embarrassed", 0.65},
    {"content", 0.4},      {"curious", 0.4},     {"tired", 0.3},     {"bored", 0.2},
    {"interested", 0.5},   {"confused", 0.4},    {"amused", 0.4},
};

static double exclamation_level(int bangs)
{
    return bangs >= 3 ? 0.8 : bangs == 2 ? 0.6 : bangs == 1 ? 0.4 : 0.0;
}

static double caps_level(const text_scan *sc)
{
    if (sc->chars == 0) return 0.0;
    double r = (double)sc->upper / (double)sc->chars;
    return r > 0.3 ? 0.7 : r > 0.1 ? 0.4 : 0.0;
}

static double emotional_of(const text_scan *sc)
{
    double e = max_d(sc->emotion, exclamation_level(sc->bangs));
    return max_d(e, caps_level(sc));
}

double mem_score_emotional(const char *text)
{
    if (!text) return 0.0;
    text_scan sc;
    scan_text(text, &sc);
    return emotional_of(&sc);
}

/* ---- C: context significance --------------------------------------------- */

static const char *const k_life[] = {"emergency", "urgent",  "crisis",   "death",
                                     "born",      "married", "divorced", NULL};
static const char *const k_secret[] = {"secret",     "confession", "betrayal",
                                       "revelation", "discovered", NULL};
static const char *const k_moment[] = {"first time", "never again", "last chance", "forever", NULL};
static const char *const k_major[] = {"important", "significant", "critical",
                                      "serious",   "major",       NULL};
static const char *const k_vow[] = {"promise", "swear", "vow", "commitment", "decision", NULL};
static const char *const k_fight[] = {"fight", "argument", "conflict", "disagreement", NULL};
static const char *const k_odd[] = {"interesting", "unusual", "strange", "weird", "funny", NULL};
static const char *const k_plan[] = {"plan", "idea", "suggestion", "proposal", NULL};
static const char *const k_memory[] = {"remember", "forget", "recall", "remind", NULL};
static const char *const k_magic[] = {"magic",  "spell",    "enchant", "wizard",
                                      "dragon", "artifact", NULL};
static const char *const k_trade[] = {"business", "trade", "profit", "loss", "money", NULL};
static const char *const k_people[] = {"family", "friend", "enemy", "ally", "relationship", NULL};

static const phrase_group k_context[] = {
    {k_life, 0.9},    {k_secret, 0.85}, {k_moment, 0.8}, {k_major, 0.7},
    {k_vow, 0.7},     {k_fight, 0.65},  {k_odd, 0.5},    {k_plan, 0.5},
    {k_memory, 0.45}, {k_magic, 0.6},   {k_trade, 0.55}, {k_people, 0.6},
};

static int in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcasecmp(s, *list) == 0) return 1;
    return 0;
}

static double context_object_level(const mem_score_ctx *ctx)
{
    static const char *const hot[] = {"crisis", "emergency", "important", "secret", NULL};
    static const char *const warm[] = {"personal", "relationship", "family", NULL};
    double c = ctx->continue_score >= 80 ? 0.7 : ctx->continue_score >= 60 ? 0.5 : 0.0;
    if (ctx->topic && in_list(ctx->topic, hot)) c = max_d(c, 0.8);
    if (ctx->topic && in_list(ctx->topic, warm)) c = max_d(c, 0.6);
    return c;
}

static double context_of(const text_scan *sc, const mem_score_ctx *ctx)
{
    double c = sc ? sc->context : 0.0;
    if (ctx && ctx->has_context) c = max_d(c, context_object_level(ctx));
    return c;
}

double mem_score_context(const char *text, const mem_score_ctx *ctx)
{
    text_scan sc;
    if (text) scan_text(text, &sc);
    return context_of(text ? &sc : NULL, ctx);
}

/* ---- Is / Il: interest of a persona -------------------------------------- */

static double trait_fallback(const mem_interest *who)
{
    if (who->trait_curious) return 0.6;
    if (who->trait_social) return 0.5;
    return who->has_traits ? 0.4 : 0.5;
}

double mem_score_interest(const char *text, const mem_interest *who)
{
    if (!who) return 0.0;
    if (who->ntopics == 0) return 0.5;
    double best = 0.0;
    int found = 0;
    for (size_t i = 0; text && i < who->ntopics; i++) {
        const char *topic = who->topics[i];
        if (!topic || !*topic || !has_word_start(text, topic)) continue;
        double v = clamp(0.0, 1.0, (who->prefs ? who->prefs[i] : 0) / 100.0);
        best = found ? max_d(best, v) : v;
        found = 1;
    }
    return found ? best : trait_fallback(who);
}

/* ---- G: engagement -------------------------------------------------------- */

static const char *const k_ask[] = {"tell me", "explain", "describe", "how", "why",
                                    "what",    "when",    "where",    NULL};
static const char *const k_opinion[] = {"agree",   "disagree", "think", "feel",
                                        "believe", "opinion",  NULL};

static double length_bonus(int words)
{
    return words >= 50 ? 0.3 : words >= 20 ? 0.2 : words >= 10 ? 0.1 : 0.0;
}

static double turn_bonus(const mem_score_ctx *ctx)
{
    if (!ctx || !ctx->has_turn) return 0.0;
    double b = ctx->turn_continue_score >= 70 ? 0.2 : ctx->turn_continue_score >= 50 ? 0.1 : 0.0;
    if (ctx->response_type && strcasecmp(ctx->response_type, "creative") == 0) b += 0.15;
    if (ctx->response_type && strcasecmp(ctx->response_type, "detailed") == 0) b += 0.1;
    return b;
}

static double engagement_of(const text_scan *sc, const mem_score_ctx *ctx)
{
    double g = 0.0;
    if (sc) {
        g += 0.1 * sc->questions + 0.05 * sc->bangs;
        g += 0.15 * sc->asks + 0.1 * sc->opinions;
        g += length_bonus(sc->words);
    }
    g += turn_bonus(ctx);
    return g < 1.0 ? g : 1.0;
}

double mem_score_engagement(const char *text, const mem_score_ctx *ctx)
{
    text_scan sc;
    if (text) scan_text(text, &sc);
    return engagement_of(text ? &sc : NULL, ctx);
}

/* ---- the one pass ---------------------------------------------------------- */

enum { KW_EMOTION, KW_CONTEXT, KW_ASK, KW_OPINION };

typedef struct keyword {
    const char *phrase;
    unsigned char kind;
    double weight; /* emotion: its own; context: its group's */
} keyword;

#define KW_MAX 128

/* Every fixed keyword, and per first letter the list of those starting with
 * it (indices into kw). Built once; read-only afterwards. */
static struct {
    keyword kw[KW_MAX];
    int nkw;
    unsigned char first[KW_MAX]; /* per letter, in kw order: */
    int start[257];              /* bucket of letter c: by_letter[start[c] .. start[c+1]) */
    unsigned char by_letter[KW_MAX];
} g_kw;
static pthread_once_t g_kw_once = PTHREAD_ONCE_INIT;

static void kw_add(const char *phrase, int kind, double weight)
{
    if (g_kw.nkw == KW_MAX) abort(); /* raise KW_MAX with the tables */
    g_kw.kw[g_kw.nkw] = (keyword){phrase, (unsigned char)kind, weight};
    g_kw.first[g_kw.nkw++] = (unsigned char)phrase[0];
}

static void kw_add_list(const char *const *list, int kind, double weight)
{
    for (; *list; list++) kw_add(*list, kind, weight);
}

static void kw_build(void)
{
    for (size_t i = 0; i < sizeof k_emotion / sizeof k_emotion[0]; i++)
        kw_add(k_emotion[i].word, KW_EMOTION, k_emotion[i].weight);
    for (size_t i = 0; i < sizeof k_context / sizeof k_context[0]; i++)
        kw_add_list(k_context[i].phrases, KW_CONTEXT, k_context[i].weight);
    kw_add_list(k_ask, KW_ASK, 0);
    kw_add_list(k_opinion, KW_OPINION, 0);
    int count[256] = {0};
    for (int i = 0; i < g_kw.nkw; i++) count[g_kw.first[i]]++;
    for (int c = 0; c < 256; c++) g_kw.start[c + 1] = g_kw.start[c] + count[c];
    int at[256];
    memcpy(at, g_kw.start, sizeof at);
    for (int i = 0; i < g_kw.nkw; i++) g_kw.by_letter[at[g_kw.first[i]]++] = (unsigned char)i;
}

/* The keywords that begin at word start i of t (first letter already known
 * to be c). next[] holds, per keyword, the first position a new counted
 * occurrence may start at (the end of the last one). */
static void scan_word_start(const unsigned char *t, size_t i, int c, size_t *next, text_scan *out)
{
    for (int b = g_kw.start[c]; b < g_kw.start[c + 1]; b++) {
        int k = g_kw.by_letter[b];
        const keyword *kw = &g_kw.kw[k];
        size_t len = match_at(t + i, kw->phrase);
        if (!len) continue;
        if (kw->kind == KW_EMOTION) {
            out->emotion = max_d(out->emotion, kw->weight);
            continue;
        }
        if (is_wbyte(t[i + len]) || i < next[k]) continue; /* not a whole word, or overlapping */
        next[k] = i + len;
        if (kw->kind == KW_CONTEXT) out->context = max_d(out->context, kw->weight);
        out->asks += kw->kind == KW_ASK;
        out->opinions += kw->kind == KW_OPINION;
    }
}

static void scan_text(const char *text, text_scan *out)
{
    pthread_once(&g_kw_once, kw_build);
    memset(out, 0, sizeof *out);
    size_t next[KW_MAX] = {0};
    const unsigned char *t = (const unsigned char *)text;
    int prev_word = 0, in_word = 0;
    for (size_t i = 0; t[i]; i++) {
        unsigned char ch = t[i];
        int c = fold(ch);
        if (!prev_word && g_kw.start[c] != g_kw.start[c + 1]) scan_word_start(t, i, c, next, out);
        prev_word = is_wbyte(ch);
        int space = ch == ' ' || (ch >= '\t' && ch <= '\r');
        out->words += !space && !in_word;
        in_word = !space;
        out->bangs += ch == '!';
        out->questions += ch == '?';
        out->chars += (ch & 0xC0) != 0x80;
        out->upper += ch >= 'A' && ch <= 'Z';
    }
}

/* ---- R, type multiplier, total -------------------------------------------- */

static double relationship_level(const mem_score_ctx *ctx)
{
    double s = (clamp(0.0, 1.0, ctx->affinity) + clamp(0.0, 1.0, ctx->trust)) / 2.0;
    if (s >= 0.8 || s <= 0.2) return 0.9;
    if (s >= 0.6 || s <= 0.4) return 0.7;
    return 0.5;
}

static const weighted k_types[] = {
    {"conversation", 1.0}, {"observation", 0.8}, {"reflection", 1.2}, {"relationship", 1.3},
    {"goal", 1.4},         {"secret", 1.5},      {"trauma", 1.6},     {"achievement", 1.3},
    {"learning", 1.1},     {"routine", 0.6},
};

double mem_type_multiplier(const char *memory_type)
{
    if (!memory_type) return 1.0;
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++)
        if (strcasecmp(memory_type, k_types[i].word) == 0) return k_types[i].weight;
    return 1.0;
}

void mem_weights_default(mem_weights *w)
{
    *w = (mem_weights){.base = 0.3,
                       .emotional = 0.25,
                       .context = 0.20,
                       .speaker = 0.10,
                       .listener = 0.05,
                       .engagement = 0.10,
                       .relationship = 0.10,
                       .recency = 0.05,
                       .min = 0.1,
                       .max = 1.0,
                       .apply_type_multiplier = true};
}

double mem_importance(const char *text, const mem_score_ctx *ctx, const mem_weights *w)
{
    mem_weights dflt;
    if (!w) {
        mem_weights_default(&dflt);
        w = &dflt;
    }
    if (!text) text = "";
    const mem_interest *speaker = ctx ? ctx->speaker : NULL;
    const mem_interest *listener = ctx ? ctx->listener : NULL;
    text_scan sc;
    scan_text(text, &sc);
    double s = w->base + w->emotional * emotional_of(&sc);
    s += w->context * context_of(&sc, ctx);
    s += w->speaker * mem_score_interest(text, speaker);
    s += w->listener * mem_score_interest(text, listener);
    s += w->engagement * engagement_of(&sc, ctx);
    if (ctx && ctx->has_relationship && listener) s += w->relationship * relationship_level(ctx);
    s += w->recency * 1.0;
    if (w->apply_type_multiplier) s *= mem_type_multiplier(ctx ? ctx->memory_type : NULL);
    return clamp(w->min, w->max, s);
}
