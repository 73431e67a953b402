/*
 * engine_internal.h - what engine.c shares with engine_sim.c and nothing
 * else: random numbers, the regeneration pass, and a look at which
 * conversations are active.
 */
#ifndef PMCP_ENGINE_INTERNAL_H
#define PMCP_ENGINE_INTERNAL_H

#include <stddef.h>

#include "engine/engine.h"

/* Uniform random 32 bits (getrandom). */
unsigned engine_random(void);
/* Uniform in [0, 1). */
double engine_random01(void);

/* Regenerate every persona from the real time elapsed since its last
 * regeneration and end conversations whose participant was deleted. */
void engine_regen_pass(engine *e);

/* Is the persona a participant of an active conversation? */
bool engine_persona_busy(engine *e, const char *id);

/* Ids of the active conversations, oldest first (malloc'd array; free). */
size_t engine_active_ids(engine *e, char (**ids)[40]);

#endif
