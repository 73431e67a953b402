/*
 * api_table.c - every JSON-RPC method of the persona protocol, its handler,
 * and where it runs. RPC_INLINE handlers only read RAM and are answered on
 * the service thread; RPC_WORKER handlers may block (SQLite, scans) and run
 * on the worker pool, unless their inline_if says this call is in RAM.
 */
#include "api/api.h"

#define INLINE(name, fn)                                                                           \
    {                                                                                              \
        name, fn, RPC_INLINE, NULL                                                                 \
    }
#define WORKER(name, fn)                                                                           \
    {                                                                                              \
        name, fn, RPC_WORKER, NULL                                                                 \
    }

/* Pipelined calls of these may run side by side (rpc_where). */
#define WORKER_CONCURRENT(name, fn)                                                                \
    {                                                                                              \
        name, fn, RPC_WORKER_CONCURRENT, NULL                                                      \
    }

static const rpc_method g_table[] = {
    /* persona.* - api_persona.c, api_memory.c */
    INLINE("persona.list", api_persona_list),
    WORKER("persona.create", api_persona_create),
    INLINE("persona.switch", api_persona_switch),
    {"persona.status", api_persona_status, RPC_WORKER, api_stats_inline},
    WORKER("persona.delete", api_persona_delete),
    WORKER("persona.memory", api_persona_memory),
    /* chat - api_chat.c */
    {"persona.chat", api_persona_chat, RPC_WORKER, api_chat_inline_if},
    {"persona.chat_stream", api_persona_chat_stream, RPC_WORKER, api_chat_inline_if},
    INLINE("persona.chat_cancel", api_persona_chat_cancel),
    /* memory.* - api_memory.c */
    WORKER_CONCURRENT("memory.store", api_memory_store),
    WORKER_CONCURRENT("memory.store_batch", api_memory_store_batch),
    WORKER("memory.update", api_memory_update),
    WORKER("memory.delete", api_memory_delete),
    WORKER("memory.search", api_memory_search),
    WORKER("memory.search_cross_persona", api_memory_search_cross),
    {"memory.stats", api_memory_stats, RPC_WORKER, api_stats_inline},
    WORKER("memory.shared_stats", api_memory_shared_stats),
    /* memory maintenance - api_maint.c */
    WORKER("memory.prune", api_memory_prune),
    WORKER("memory.prune_all", api_memory_prune_all),
    WORKER("memory.prune_recommendations", api_memory_prune_recommendations),
    INLINE("memory.prune_stats", api_memory_prune_stats),
    WORKER("memory.decay_start", api_memory_decay_start),
    WORKER("memory.decay_stop", api_memory_decay_stop),
    INLINE("memory.decay_stats", api_memory_decay_stats),
    WORKER("memory.decay_force", api_memory_decay_force),
    /* system.* - api_system.c */
    INLINE("system.status", api_system_status),
    WORKER("system.models", api_system_models),
    /* conversation.* - api_conversation.c: persona-to-persona conversations
     * of the engine; all block (SQLite writer, LLM reply) */
    WORKER("conversation.start", api_conversation_start),
    WORKER("conversation.status", api_conversation_status),
    WORKER("conversation.end", api_conversation_end),
    WORKER("conversation.turn", api_conversation_turn),
    /* relationships, emotions, visual - api_social.c */
    WORKER("relationship.get", api_relationship_get),
    WORKER("relationship.list", api_relationship_list),
    WORKER("relationship.compatibility", api_relationship_compatibility),
    WORKER("relationship.stats", api_relationship_stats),
    WORKER("relationship.update", api_relationship_update),
    WORKER("persona.relationship", api_persona_relationship),
    WORKER("emotional.get_state", api_emotional_get_state),
    WORKER("emotional.update_state", api_emotional_update_state),
    INLINE("visual.update", api_visual_update),
    /* state.* - api_state.c: export/import of the whole database (state/state.h) */
    WORKER("state.save", api_state_save),
    WORKER("state.load", api_state_load),
};

void api_init(void)
{
    rpc_set_methods(g_table, (int)(sizeof g_table / sizeof g_table[0]));
}
