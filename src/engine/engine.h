/*
 * engine.h - the persona-to-persona conversation engine (spec §6.4-6.7,
 * §6.10): two personas talk, turn by turn, for as long as their continue
 * score says the conversation is worth it.
 *
 * Each turn: the continue score (§6.4) of speaker S towards listener L
 * decides the route (§4.2): full LLM (score >= 60), constrained LLM (>= 40,
 * short and "prepare to end") or a canned template line (< 40, no LLM).
 * The reply costs tokens (§4.4 estimate) and time: the context's duration
 * and token budget move, S and L lose energy and available time and gain
 * fatigue (§6.6), each remembers the exchange (§6.5.1), the turn and the
 * context are persisted, the pair's relationship is updated (§6.8, with a
 * quality derived from the score: §12 item 27), and a score below 40 or a
 * budget at or under 50 ends the conversation. Ending applies cooldowns
 * (§6.7). A background tick (every 60 s) regenerates every persona from the
 * real time elapsed since the last regeneration, carrying fractions over so
 * nothing is lost to rounding (§12 item 26), and restores available_time.
 *
 * The pure arithmetic (score terms, routing, templates, token estimate,
 * turn effects, regeneration, cooldown) is exposed below so unit tests can
 * run it over simulated time; everything else is behind the opaque engine.
 *
 * Threads: engine_start/stop/simulate run on the main thread. The
 * conversation functions block (SQLite writer, LLM reply) and run on worker
 * threads or in the simulation; never on the service thread.
 * Ownership: the app owns the engine (app->engine), created by engine_start
 * or lazily by the first engine_acquire; engine_stop frees it.
 */
#ifndef PMCP_ENGINE_H
#define PMCP_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "app/app.h"

/* ---- configuration (spec defaults) ------------------------------------------ */

#define ENGINE_TIME_MAX             30.0 /* §6.4 time term at duration 0 */
#define ENGINE_TOPIC_MAX            25.0
#define ENGINE_SOCIAL_MAX           20.0
#define ENGINE_FATIGUE_MAX          15
#define ENGINE_RESOURCE_MAX         10.0
#define ENGINE_HISTORY_SCALE        12.5 /* history = compatibility * 12.5 - 2.5 */
#define ENGINE_HISTORY_OFFSET       2.5
#define ENGINE_DEFAULT_TOPIC_PREF   50
#define ENGINE_SCORE_FULL_HIGH      80 /* >= : full_llm, creativity 0.8 */
#define ENGINE_SCORE_FULL           60 /* >= : full_llm, creativity 0.6 */
#define ENGINE_SCORE_CONSTRAINED    40 /* >= : constrained; below: template */
#define ENGINE_MIN_BUDGET           50 /* should_continue needs budget > 50 */
#define ENGINE_DEFAULT_BUDGET       1000
#define ENGINE_MIN_TURN_SECONDS     30 /* a turn lasts at least 30 s of conversation */
#define ENGINE_ENERGY_MAX           200
#define ENGINE_ENERGY_REGEN_SECS    60.0  /* +1 energy per minute */
#define ENGINE_FATIGUE_REGEN_SECS   300.0 /* -1 fatigue per 5 minutes */
#define ENGINE_TIME_REGEN_PER_SEC   0.5   /* +30 s of available_time per minute */
#define ENGINE_AVAILABLE_TIME_BASE  300   /* restore up to max(this, highest seen) */
#define ENGINE_COOLDOWN_BASE        300.0
#define ENGINE_TICK_SECONDS         60.0
#define ENGINE_SIM_BUDGET           500
#define ENGINE_SIM_MAX_CONCURRENT   3
#define ENGINE_SIM_TURN_PROBABILITY 0.30
#define ENGINE_SIM_MIN_PAIR_SCORE   10.0

/* ---- pure arithmetic ---------------------------------------------------------- */

typedef enum { ENGINE_FULL_LLM, ENGINE_CONSTRAINED, ENGINE_TEMPLATE } engine_route;

const char *engine_route_name(engine_route r); /* "full_llm" | "constrained" | "template" */

/* One persona as the continue score sees it. */
typedef struct engine_party {
    const char *priority;    /* urgent | important | casual | social | ... */
    int topic_pref;          /* preference for the topic 0..100; < 0 = absent (50) */
    int charisma;            /* 1..20 */
    const char *social_rank; /* royalty | nobility | merchant | commoner | peasant | other */
    int interaction_fatigue;
    int available_time;
    int social_energy;
} engine_party;

/* The conversation as the continue score sees it. */
typedef struct engine_ctx {
    int duration; /* seconds */
    int token_budget;
    int topic_drift_count;
} engine_ctx;

typedef struct engine_terms {
    double time, topic, social, fatigue, history, resource;
    int score; /* clamp(0, 100, int(time + topic + social - fatigue + history + resource)) */
} engine_terms;

/* Continue score of speaker s towards listener l (spec §6.4); compatibility
 * is the pair's relationship compatibility in [0, 1]. Fills t if not NULL. */
int engine_continue_score(const engine_party *s, const engine_party *l, const engine_ctx *c,
                          double compatibility, engine_terms *t);
double engine_time_rate(const char *priority); /* seconds of duration per point */
int engine_rank_level(const char *rank);
double engine_history_from_compat(double compatibility);
/* The spec's should_continue: score >= 40 and token_budget > 50. */
bool engine_should_continue(int score, int token_budget);

/* Routing (§4.2): route and LLM constraints for a score. */
typedef struct engine_plan {
    engine_route route;
    double creativity; /* 0.8 | 0.6 | 0.5; 0 for template */
    int max_length;    /* words: 100 | 50; 0 for template */
    bool concise;      /* "Style: concise" */
    bool prepare_exit; /* "Prepare to end the conversation politely" */
    int max_tokens;    /* num_predict: min(int(max_length * 1.3), 300), 50 when concise */
} engine_plan;

engine_plan engine_route_for(int score);

/* Template line (§4.4) for a speaker: urgent > energy < 30 > fatigue > 50 >
 * neutral; pick chooses among the pool's three lines (pick % 3). */
const char *engine_template_line(const char *priority, int social_energy, int fatigue,
                                 unsigned pick);
/* The §4.4 fallback when the LLM fails: urgent, energy < 30, else one of four. */
const char *engine_fallback_line(const char *priority, int social_energy, unsigned pick);

/* Token estimate (§4.4): int(words * 1.3 * m), m = 1.5 | 1.0 | 0.1. */
int engine_estimate_tokens(const char *text, engine_route r);
int engine_count_words(const char *text);

/* The interaction state the engine changes. */
typedef struct engine_vitals {
    int social_energy, interaction_fatigue, available_time;
    double cooldown_until;
} engine_vitals;

/* Effects of taking part in a turn lasting d seconds (§6.6): fatigue += d/30,
 * energy -= d/60 (>= 0), available_time -= d (>= 0). The speaker's d is
 * max(30, int(processing_time)); the listener's is half of it. */
int engine_turn_seconds(double processing_time);
void engine_apply_turn(engine_vitals *v, int d);

/* Regeneration over elapsed real seconds (§6.6, §12 item 26): +1 energy per
 * 60 s (<= 200), -1 fatigue per 300 s (>= 0), +0.5 s of available_time per
 * second (<= time_cap). Fractions are kept in carry between calls, so many
 * short calls regenerate exactly as much as one long one. A value already
 * at its bound banks nothing. Negative elapsed counts as 0. */
typedef struct engine_carry {
    double energy, fatigue, time;
} engine_carry;

void engine_regenerate(engine_vitals *v, engine_carry *carry, double elapsed, int time_cap);

/* Cooldown at the end of a conversation (§6.7): 300 s, x0.5 if the final
 * score > 70, x2 if < 30, then x(1 + fatigue of the first participant/100). */
double engine_cooldown_seconds(int final_score, int first_fatigue);

/* ---- the engine ----------------------------------------------------------------- */

typedef struct engine engine;

/* For main.c. engine_start: create the engine (closing conversations a
 * previous run left active: exit_reason "server_restart") and start the 60 s
 * regeneration tick. 0, or -1 (logged). Call after the store, registry,
 * memory and LLM client are open and before the network starts.
 * engine_stop: refuse new calls, wait for those in progress, stop the tick,
 * end active conversations ("server_shutdown", no cooldown), free. Call
 * after the network and the worker pool stopped, before llm_stop, mem_close
 * and store_close. Idempotent; also frees an engine created lazily. */
int engine_start(app *a);
/* Conversations in progress (for system.status); never waits for an LLM. */
int engine_active_count(app *a);
void engine_stop(app *a);

/* The §6.10 chatroom for `minutes` of real time, one tick every
 * tick_seconds: regenerate; end conversations that should not continue,
 * advance each other one with probability 0.3; while fewer than 3 are
 * active, start one between the best pair of available idle personas on a
 * random room topic (budget 500) and play its first turn. Prints the
 * transcript and statistics to out. Returns 0, or -1 when fewer than two
 * personas exist (message on out). Stops early when app->stopping is set. */
int engine_simulate(app *a, double minutes, double tick_seconds, FILE *out);

/* ---- conversations (for api_conversation.c) ----------------------------------
 * Every call runs between engine_acquire (NULL when the server is stopping:
 * answer -32005) and engine_release. Errors carry a JSON-RPC code. */
#define ENGINE_ERR_UNAVAILABLE (-32006) /* = RPC_PERSONA_UNAVAILABLE of api.h */

typedef struct engine_err {
    int code;
    char msg[256];
} engine_err;

engine *engine_acquire(app *a);
void engine_release(engine *e);

typedef struct engine_conv_info {
    char id[40];
    char participants[2][40];
    char topic[256];
    bool active;
    int turn_count, duration, token_budget, tokens_used, continue_score;
    double started_at, ended_at; /* epoch seconds; ended_at 0 while active */
    char exit_reason[64];
    char next_speaker[40]; /* "" when ended */
    int score_history_len;
} engine_conv_info;

/* Start a conversation: both personas must exist (-32000 "One or both
 * personas not found"), differ (-32602), be available and not already in an
 * active conversation (-32006). Computes the opening continue score. */
int engine_conv_start(engine *e, const char *p1, const char *p2, const char *topic, int budget,
                      engine_conv_info *out, engine_err *err);

/* The active conversation, else the ended one stored in `conversations`
 * (active = false); -32602 "Conversation not found: <id>" otherwise. */
int engine_conv_status(engine *e, const char *id, engine_conv_info *out, engine_err *err);

/* End an active conversation: cooldowns for both, persisted, removed.
 * -32602 "Conversation not found: <id>" if it is not active. */
int engine_conv_end(engine *e, const char *id, const char *reason, engine_conv_info *out,
                    engine_err *err);

typedef struct engine_turn_result {
    engine_conv_info conv; /* after the turn (ended when it concluded) */
    int turn_number;       /* 1-based */
    char speaker_id[40], listener_id[40];
    char speaker_name[128], listener_name[128];
    char *text; /* the reply (malloc; free with engine_turn_result_free) */
    engine_route route;
    int continue_score, tokens_used;
    double processing_time;
    bool fallback;
    char fallback_reason[128];
    bool ended;
} engine_turn_result;

/* Play the next turn (participants alternate, the first starts). input is
 * what the speaker answers; NULL = the other participant's last line, or an
 * opening line on the topic for the first turn. */
int engine_conv_turn(engine *e, const char *id, const char *input, engine_turn_result *r,
                     engine_err *err);
void engine_turn_result_free(engine_turn_result *r);

/* The history term of the continue score for a pair: compatibility x 12.5
 * - 2.5, the compatibility of their relationship (social.h) on the signed
 * scale of §6.8.1; -2.5 for a pair that never met or a fresh one. Blocks
 * (SQLite read). */
double engine_history_term(engine *e, const char *a, const char *b);

#endif
