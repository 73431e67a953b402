/*
 * persona.h - personas and their interaction state: the registry.
 *
 * Every persona is held in RAM (they are few and read on nearly every
 * request) in insertion order, mirrored from the `personas` and
 * `persona_interaction_states` tables. Reads take a shared lock and never
 * touch SQLite, so persona.list/status/switch can be answered on the service
 * thread in microseconds. Writes go through the store's writer thread first
 * and change the registry only after their transaction committed.
 *
 * Ownership: the registry owns every persona; pointers returned by lookup
 * functions are valid only while the caller holds the read lock
 * (persona_reg_rdlock .. persona_reg_unlock). persona_create/delete block on
 * the writer and must run on a worker thread.
 */
#ifndef PMCP_PERSONA_H
#define PMCP_PERSONA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;
struct jw;

typedef struct persona {
    int64_t seq;
    char id[40];
    char *name;
    char *description;
    char *traits_json; /* a JSON object, as stored */
    char *topics_json; /* a JSON object of integers */
    int charisma, intelligence;
    char *social_rank;
    char created_at[40];
    /* interaction state (spec §5.0.2) */
    int interest_level, interaction_fatigue;
    char priority[16];
    int available_time, social_energy;
    double cooldown_until;
    char last_updated[40];
} persona;

typedef struct persona_reg persona_reg;

/* Load every persona from the database. Returns 0 or -1 (logged). */
int persona_reg_load(persona_reg **out, struct store *st);
void persona_reg_free(persona_reg *r);
/* Replace the registry's contents with the database's (after a state
 * import). Readers holding the read lock finish first. Returns 0 or -1. */
int persona_reg_reload(persona_reg *r, struct store *st);

void persona_reg_rdlock(persona_reg *r);
void persona_reg_unlock(persona_reg *r);
size_t persona_reg_count(persona_reg *r);
const persona *persona_reg_at(persona_reg *r, size_t i);
const persona *persona_reg_find(persona_reg *r, const char *id);
/* By id, else by name compared case-insensitively (first in list order). */
const persona *persona_reg_resolve(persona_reg *r, const char *id_or_name);

/* Availability rule of spec §6.6. */
bool persona_available(const persona *p, double now);
double persona_cooldown_remaining(const persona *p, double now);

typedef struct persona_new {
    const char *name, *description, *social_rank;
    const char *traits_json, *topics_json; /* compact JSON objects */
    int charisma, intelligence;
} persona_new;

/* Insert, commit, then add to the registry. Returns 0 with the new id in
 * id_out, or an SQLite error code. */
int persona_create(persona_reg *r, struct store *st, const persona_new *in, char id_out[40]);
/* Delete (cascading to its dependent rows), commit, then drop from the
 * registry. Returns 0, 1 when no such persona, or an SQLite error code.
 * name_out receives the deleted persona's name. */
int persona_delete(persona_reg *r, struct store *st, const char *id, char *name_out,
                   size_t name_len);

/* Write the persona object of persona.status: id, name, description,
 * personality_traits, topic_preferences, charisma, intelligence, social_rank. */
void persona_write_profile(struct jw *w, const persona *p);
void persona_write_state(struct jw *w, const persona *p, double now);

/* The persona's topic preferences and traits as the importance scorer
 * wants them, allocated in a; NULL when no persona has this id. */
struct mem_interest;
struct jarena;
const struct mem_interest *persona_interest(persona_reg *r, const char *id, struct jarena *a);

/* Change the interaction state (energy, fatigue, cooldown...) of a persona:
 * written, committed, then applied in RAM. Returns 0, 1 if unknown, or an
 * SQLite error. */
typedef struct persona_state_patch {
    int interaction_fatigue, available_time, social_energy;
    double cooldown_until;
} persona_state_patch;
int persona_set_state(persona_reg *r, struct store *st, const char *id,
                      const persona_state_patch *p);

/* The persona part of an LLM prompt (spec §4.3): "You are <name>.
 * <description>", its traits one per line, and its current situation.
 * Used by user chat and by the persona-to-persona engine. */
typedef struct persona_prompt {
    const char *name, *description, *traits_json, *priority;
    int social_energy, interest_level, available_time;
} persona_prompt;
void persona_write_prompt(struct jw *w, const persona_prompt *p, struct jarena *a);

/* Random UUID4 text (36 chars + NUL). */
void persona_uuid4(char out[40]);

#endif
