/*
 * api.h - the method handlers of the persona protocol, one file per
 * namespace: api_persona.c (persona.*), api_memory.c (memory.* searches and
 * writes, persona.memory), api_maint.c (memory pruning and decay),
 * api_chat.c (persona.chat, persona.chat_stream, persona.chat_cancel),
 * api_system.c (system.*), api_social.c (relationship.*, emotional.*,
 * persona.relationship, visual.update). The table
 * that maps every method name to its handler and thread is api_table.c:
 * start there to find the handler of any method.
 *
 * Handlers validate their parameters (-32602 naming the field), call the
 * domain modules (persona/, store/, ...) and write their result with jw.
 */
#ifndef PMCP_API_H
#define PMCP_API_H

#include "rpc/rpc.h"

/* Register the method table with the envelope. */
void api_init(void);

enum { RPC_PERSONA_UNAVAILABLE = -32006 };

int api_persona_list(rpc_call *c);
int api_persona_create(rpc_call *c);
int api_persona_switch(rpc_call *c);
int api_persona_status(rpc_call *c);
int api_persona_delete(rpc_call *c);

int api_persona_memory(rpc_call *c);
int api_persona_chat(rpc_call *c);
int api_persona_chat_stream(rpc_call *c);
int api_persona_chat_cancel(rpc_call *c);
/* Start a chat on the service thread when nothing else is going on: no chat
 * streaming, no job queued, the persona's memories in RAM (api_chat.c). */
bool api_chat_inline_if(app *a, rpc_session *s, const jv *params);

int api_memory_store(rpc_call *c);
int api_memory_store_batch(rpc_call *c);
int api_memory_update(rpc_call *c);
int api_memory_delete(rpc_call *c);
int api_memory_search(rpc_call *c);
int api_memory_search_cross(rpc_call *c);
int api_memory_stats(rpc_call *c);
int api_memory_shared_stats(rpc_call *c);
int api_memory_prune(rpc_call *c);
int api_memory_prune_all(rpc_call *c);
int api_memory_prune_recommendations(rpc_call *c);
int api_memory_prune_stats(rpc_call *c);
int api_memory_decay_start(rpc_call *c);
int api_memory_decay_stop(rpc_call *c);
int api_memory_decay_stats(rpc_call *c);
int api_memory_decay_force(rpc_call *c);
/* inline_if of persona.status and memory.stats: the persona's memory
 * statistics are in RAM. */
bool api_stats_inline(app *a, rpc_session *s, const jv *params);

int api_system_status(rpc_call *c);
int api_system_models(rpc_call *c);

/* conversation.* - api_conversation.c (engine/engine.h): start, status,
 * end of spec §2.4, and turn (ours: play the next turn on request). */
int api_conversation_start(rpc_call *c);
int api_conversation_status(rpc_call *c);
int api_conversation_end(rpc_call *c);
int api_conversation_turn(rpc_call *c);

/* relationships, emotions, visual - api_social.c */
int api_relationship_get(rpc_call *c);
int api_relationship_list(rpc_call *c);
int api_relationship_compatibility(rpc_call *c);
int api_relationship_stats(rpc_call *c);
int api_relationship_update(rpc_call *c);
int api_persona_relationship(rpc_call *c);
int api_emotional_get_state(rpc_call *c);
int api_emotional_update_state(rpc_call *c);
int api_visual_update(rpc_call *c);

/* state.save, state.load - api_state.c */
int api_state_save(rpc_call *c);
int api_state_load(rpc_call *c);

/* Shared by handlers: the persona named by params.persona_id, or the
 * session's current persona. Writes the resolved id (40 bytes). Fails with
 * -32001 when neither exists. */
int api_persona_param(rpc_call *c, char id_out[40]);

#endif
