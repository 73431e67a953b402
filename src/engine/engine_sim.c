/*
 * engine_sim.c - the chatroom of spec §6.10 (`persona-mcp --simulate`).
 *
 * One loop on the calling thread, one tick every tick_seconds of real time
 * until `minutes` have passed: regenerate every persona; for each
 * conversation the room started, end it if it should not continue, else
 * play a turn with probability 0.3; then, while fewer than three are
 * active, start one between the best pair of available personas not
 * already talking (max of min(charisma) + (energy1 + energy2) / 20, at
 * least 10) on a random room topic with a budget of 500 and play its first
 * turn. Turns go through the same engine_conv_turn() as conversation.turn,
 * so the room exercises exactly what clients drive.
 *
 * The first turn answers a canned opening line for the topic; a turn after
 * a template or fallback line (which carries nothing to answer) gets a
 * canned per-topic follow-up; otherwise each speaker answers what the other
 * just said. Every event is printed as it happens (the transcript), then
 * totals: ticks, conversations (by exit reason), turns, tokens and
 * fallbacks by route, and each persona's final state.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine.h"
#include "engine/engine_internal.h"
#include "persona/persona.h"

#define ROOM_TOPICS 5

static const char *const TOPICS[ROOM_TOPICS] = {"gossip", "travel", "magic", "stories",
                                                "local_news"};
static const char *const OPENERS[ROOM_TOPICS] = {
    "Have you heard the latest gossip from the market square?",
    "Have you travelled anywhere interesting lately?",
    "I have been reading about magic lately. What do you make of it?",
    "Do you know any good stories? I could use one tonight.",
    "Did you hear the news from town today?",
};
static const char *const FOLLOW_UPS[ROOM_TOPICS][2] = {
    {"Who do you think started that rumour?", "Do you believe any of it is true?"},
    {"What was the most beautiful place you have seen?", "Where would you go next if you could?"},
    {"Which spell would you most like to master?",
     "Do you think magic can be studied like any other science?"},
    {"How does that story end?", "Which stories did you love as a child?"},
    {"How do you think it will change things around here?", "What are people saying about it?"},
};

typedef struct room_conv {
    char id[40];
    int topic;
    bool needs_prompt; /* the last line was a template or a fallback */
} room_conv;

typedef struct room_stats {
    int ticks, started, turns, fallbacks;
    int turns_by[3], tokens_by[3];
    long tokens;
    long score_sum;
    double llm_seconds;
    struct {
        char reason[64];
        int count;
    } ends[8];
    int nends;
} room_stats;

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void count_end(room_stats *st, const char *reason)
{
    for (int i = 0; i < st->nends; i++)
        if (strcmp(st->ends[i].reason, reason) == 0) {
            st->ends[i].count++;
            return;
        }
    if (st->nends == 8) return;
    snprintf(st->ends[st->nends].reason, sizeof st->ends[0].reason, "%s", reason);
    st->ends[st->nends++].count = 1;
}

static void name_of(app *a, const char *id, char *out, size_t n)
{
    persona_reg_rdlock(a->personas);
    const persona *p = persona_reg_find(a->personas, id);
    snprintf(out, n, "%s", p ? p->name : id);
    persona_reg_unlock(a->personas);
}

static void print_end(FILE *out, double t, const engine_conv_info *i, room_stats *st)
{
    fprintf(out, "[%8.2fs] conversation %.8s ended: %s (turns %d, tokens %d, duration %d s)\n", t,
            i->id, i->exit_reason, i->turn_count, i->tokens_used, i->duration);
    count_end(st, i->exit_reason);
}

/* Play one turn; false when the conversation is over (or gone). */
static bool room_turn(engine *e, FILE *out, double t0, room_conv *rc, const char *input,
                      room_stats *st)
{
    engine_turn_result r;
    engine_err err;
    if (engine_conv_turn(e, rc->id, input, &r, &err) < 0) {
        fprintf(out, "[%8.2fs] conversation %.8s: turn failed: %s\n", mono() - t0, rc->id, err.msg);
        return false;
    }
    st->turns++;
    st->turns_by[r.route]++;
    st->tokens_by[r.route] += r.tokens_used;
    st->tokens += r.tokens_used;
    st->score_sum += r.continue_score;
    st->fallbacks += r.fallback;
    if (r.route != ENGINE_TEMPLATE) st->llm_seconds += r.processing_time;
    fprintf(out, "[%8.2fs] %s -> %s (%s, score %d, %d tokens%s): %s\n", mono() - t0, r.speaker_name,
            r.listener_name, engine_route_name(r.route), r.continue_score, r.tokens_used,
            r.fallback ? ", fallback" : "", r.text);
    rc->needs_prompt = r.route == ENGINE_TEMPLATE || r.fallback;
    if (r.ended) print_end(out, mono() - t0, &r.conv, st);
    engine_turn_result_free(&r);
    fflush(out);
    return !r.ended;
}

/* The best pair of available personas not in a conversation; false if none
 * reaches the minimum. */
static bool pick_pair(engine *e, app *a, char p1[40], char p2[40])
{
    typedef struct cand {
        char id[40];
        int charisma, energy;
    } cand;
    double now = app_now();
    persona_reg_rdlock(a->personas);
    size_t n = persona_reg_count(a->personas), k = 0;
    cand *c = calloc(n ? n : 1, sizeof *c);
    if (!c) abort();
    for (size_t i = 0; i < n; i++) {
        const persona *p = persona_reg_at(a->personas, i);
        if (!persona_available(p, now)) continue;
        memcpy(c[k].id, p->id, 40);
        c[k].charisma = p->charisma;
        c[k++].energy = p->social_energy;
    }
    persona_reg_unlock(a->personas);
    double best = -1;
    for (size_t i = 0; i < k; i++) {
        if (engine_persona_busy(e, c[i].id)) c[i].id[0] = 0;
    }
    for (size_t i = 0; i < k; i++)
        for (size_t j = i + 1; j < k; j++) {
            if (!c[i].id[0] || !c[j].id[0]) continue;
            int ch = c[i].charisma < c[j].charisma ? c[i].charisma : c[j].charisma;
            double s = ch + (c[i].energy + c[j].energy) / 20.0;
            if (s >= ENGINE_SIM_MIN_PAIR_SCORE && s > best) {
                best = s;
                memcpy(p1, c[i].id, 40);
                memcpy(p2, c[j].id, 40);
            }
        }
    free(c);
    return best >= 0;
}

static bool room_start(engine *e, app *a, FILE *out, double t0, room_conv *rc, room_stats *st)
{
    char p1[40], p2[40];
    if (!pick_pair(e, a, p1, p2)) return false;
    int topic = (int)(engine_random() % ROOM_TOPICS);
    engine_conv_info info;
    engine_err err;
    if (engine_conv_start(e, p1, p2, TOPICS[topic], ENGINE_SIM_BUDGET, &info, &err) < 0) {
        fprintf(out, "[%8.2fs] could not start a conversation: %s\n", mono() - t0, err.msg);
        return false;
    }
    st->started++;
    char n1[128], n2[128];
    name_of(a, p1, n1, sizeof n1);
    name_of(a, p2, n2, sizeof n2);
    fprintf(out, "[%8.2fs] conversation %.8s started: %s & %s on %s (budget %d, score %d)\n",
            mono() - t0, info.id, n1, n2, TOPICS[topic], ENGINE_SIM_BUDGET, info.continue_score);
    memcpy(rc->id, info.id, 40);
    rc->topic = topic;
    rc->needs_prompt = false;
    char open[300];
    snprintf(open, sizeof open, "%s says: \"%s\"", n2, OPENERS[topic]);
    return room_turn(e, out, t0, rc, open, st);
}

/* One tick over the room's conversations; returns how many remain. */
static int room_tick(engine *e, app *a, FILE *out, double t0, room_conv *rooms, int n,
                     room_stats *st)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        room_conv *rc = &rooms[i];
        engine_conv_info info;
        engine_err err;
        bool keep = engine_conv_status(e, rc->id, &info, &err) == 0 && info.active;
        if (keep && !engine_should_continue(info.continue_score, info.token_budget)) {
            if (engine_conv_end(e, rc->id, "natural_conclusion", &info, &err) == 0)
                print_end(out, mono() - t0, &info, st);
            keep = false;
        } else if (keep && engine_random01() < ENGINE_SIM_TURN_PROBABILITY) {
            const char *input =
                rc->needs_prompt ? FOLLOW_UPS[rc->topic][engine_random() % 2] : NULL;
            keep = room_turn(e, out, t0, rc, input, st);
        }
        if (keep) rooms[k++] = *rc;
    }
    while (k < ENGINE_SIM_MAX_CONCURRENT && !atomic_load(&a->stopping)) {
        room_conv rc;
        int before = st->started;
        if (room_start(e, a, out, t0, &rc, st))
            rooms[k++] = rc;
        else if (st->started == before)
            break; /* nobody left to pair (else: started and already over) */
    }
    return k;
}

static void print_stats(app *a, FILE *out, double elapsed, room_stats *st)
{
    fprintf(out, "\n=== statistics ===\n");
    fprintf(out, "elapsed: %.2f s, ticks: %d\n", elapsed, st->ticks);
    fprintf(out, "conversations: %d started\n", st->started);
    for (int i = 0; i < st->nends; i++)
        fprintf(out, "  ended %s: %d\n", st->ends[i].reason, st->ends[i].count);
    fprintf(out, "turns: %d (full_llm %d, constrained %d, template %d), fallbacks %d\n", st->turns,
            st->turns_by[ENGINE_FULL_LLM], st->turns_by[ENGINE_CONSTRAINED],
            st->turns_by[ENGINE_TEMPLATE], st->fallbacks);
    fprintf(out, "tokens: %ld (full_llm %d, constrained %d, template %d)\n", st->tokens,
            st->tokens_by[ENGINE_FULL_LLM], st->tokens_by[ENGINE_CONSTRAINED],
            st->tokens_by[ENGINE_TEMPLATE]);
    fprintf(out, "average continue score: %.1f\n",
            st->turns ? (double)st->score_sum / st->turns : 0.0);
    fprintf(out, "LLM time: %.2f s over %d LLM turns\n", st->llm_seconds,
            st->turns_by[ENGINE_FULL_LLM] + st->turns_by[ENGINE_CONSTRAINED]);
    fprintf(out, "personas:\n");
    double now = app_now();
    persona_reg_rdlock(a->personas);
    for (size_t i = 0; i < persona_reg_count(a->personas); i++) {
        const persona *p = persona_reg_at(a->personas, i);
        fprintf(out,
                "  %s: energy %d, fatigue %d, available_time %d s, cooldown %.0f s, "
                "available %s\n",
                p->name, p->social_energy, p->interaction_fatigue, p->available_time,
                persona_cooldown_remaining(p, now), persona_available(p, now) ? "yes" : "no");
    }
    persona_reg_unlock(a->personas);
    fflush(out);
}

static void nap(app *a, double until)
{
    for (double left = until - mono(); left > 0 && !atomic_load(&a->stopping);
         left = until - mono()) {
        double s = left < 0.2 ? left : 0.2;
        struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

int engine_simulate(app *a, double minutes, double tick_seconds, FILE *out)
{
    if (!(tick_seconds > 0)) tick_seconds = 30;
    if (!(minutes >= 0)) minutes = 0;
    engine *e = engine_acquire(a);
    if (!e) {
        fprintf(out, "simulation: the conversation engine is not available\n");
        return -1;
    }
    persona_reg_rdlock(a->personas);
    size_t np = persona_reg_count(a->personas);
    persona_reg_unlock(a->personas);
    if (np < 2) {
        fprintf(out, "simulation: needs at least 2 personas, found %zu\n", np);
        engine_release(e);
        return -1;
    }
    const llm_config *lc = &a->cfg.llm;
    fprintf(out,
            "=== persona-mcp simulation: %.2f min, tick %.2f s, %zu personas, backend %s %s "
            "model %s ===\n",
            minutes, tick_seconds, np, llm_provider_name(lc->provider), lc->url, lc->model);
    fflush(out);
    room_conv rooms[ENGINE_SIM_MAX_CONCURRENT];
    int n = 0;
    room_stats st;
    memset(&st, 0, sizeof st);
    double t0 = mono(), end = t0 + minutes * 60;
    for (double next = t0; mono() < end && !atomic_load(&a->stopping);) {
        st.ticks++;
        engine_regen_pass(e);
        n = room_tick(e, a, out, t0, rooms, n, &st);
        next += tick_seconds;
        nap(a, next < end ? next : end);
    }
    for (int i = 0; i < n; i++) {
        engine_conv_info info;
        engine_err err;
        if (engine_conv_end(e, rooms[i].id, "simulation_end", &info, &err) == 0)
            print_end(out, mono() - t0, &info, &st);
    }
    print_stats(a, out, mono() - t0, &st);
    engine_release(e);
    return 0;
}
