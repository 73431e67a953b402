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
 * Score = clamp(min, max, (base + we*E + wc*C + ws*Is + wl*Il + wg*G + wr*R
 * + wt*T) * type multiplier); T (recency) is 1.0 as in the original.
 */
#include "memory/mem_score.h"

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

/* Non-overlapping whole-word occurrences of p in t. */
static int count_whole(const char *text, const char *p)
{
    const unsigned char *t = (const unsigned char *)text;
    const int c0 = (unsigned char)p[0];
    int n = 0;
    for (size_t i = 0; t[i];) {
        size_t len = fold(t[i]) == c0 && at_word_start(t, i) ? match_at(t + i, p) : 0;
        if (len && !is_wbyte(t[i + len])) {
            n++;
            i += len;
        } else {
            i++;
        }
    }
    return n;
}

static int count_byte(const char *t, char c)
{
    int n = 0;
    for (; *t; t++) n += *t == c;
    return n;
}

static int count_words(const char *text)
{
    int n = 0, in = 0;
    for (const char *t = text; *t; t++) {
        int space = *t == ' ' || (*t >= '\t' && *t <= '\r');
        if (!space && !in) n++;
        in = !space;
    }
    return n;
}

static double max_d(double a, double b)
{
    return a > b ? a : b;
}

static double clamp(double lo, double hi, double x)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

static double group_max(const char *text, const phrase_group *g, size_t n)
{
    double best = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (g[i].weight <= best) continue;
        for (const char *const *p = g[i].phrases; *p; p++) {
            if (count_whole(text, *p)) {
                best = g[i].weight;
                break;
            }
        }
    }
    return best;
}

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

static double caps_level(const char *text)
{
    size_t upper = 0, chars = 0;
    for (const unsigned char *t = (const unsigned char *)text; *t; t++) {
        chars += (*t & 0xC0) != 0x80;
        upper += *t >= 'A' && *t <= 'Z';
    }
    if (chars == 0) return 0.0;
    double r = (double)upper / (double)chars;
    return r > 0.3 ? 0.7 : r > 0.1 ? 0.4 : 0.0;
}

double mem_score_emotional(const char *text)
{
    if (!text) return 0.0;
    double e = 0.0;
    for (size_t i = 0; i < sizeof k_emotion / sizeof k_emotion[0]; i++)
        if (k_emotion[i].weight > e && has_word_start(text, k_emotion[i].word))
            e = k_emotion[i].weight;
    e = max_d(e, exclamation_level(count_byte(text, '!')));
    return max_d(e, caps_level(text));
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

double mem_score_context(const char *text, const mem_score_ctx *ctx)
{
    double c = text ? group_max(text, k_context, sizeof k_context / sizeof k_context[0]) : 0.0;
    if (ctx && ctx->has_context) c = max_d(c, context_object_level(ctx));
    return c;
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

static int count_all(const char *text, const char *const *list)
{
    int n = 0;
    for (; *list; list++) n += count_whole(text, *list);
    return n;
}

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

double mem_score_engagement(const char *text, const mem_score_ctx *ctx)
{
    double g = 0.0;
    if (text) {
        g += 0.1 * count_byte(text, '?') + 0.05 * count_byte(text, '!');
        g += 0.15 * count_all(text, k_ask) + 0.1 * count_all(text, k_opinion);
        g += length_bonus(count_words(text));
    }
    g += turn_bonus(ctx);
    return g < 1.0 ? g : 1.0;
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
    double s = w->base + w->emotional * mem_score_emotional(text);
    s += w->context * mem_score_context(text, ctx);
    s += w->speaker * mem_score_interest(text, speaker);
    s += w->listener * mem_score_interest(text, listener);
    s += w->engagement * mem_score_engagement(text, ctx);
    if (ctx && ctx->has_relationship && listener) s += w->relationship * relationship_level(ctx);
    s += w->recency * 1.0;
    if (w->apply_type_multiplier) s *= mem_type_multiplier(ctx ? ctx->memory_type : NULL);
    return clamp(w->min, w->max, s);
}
