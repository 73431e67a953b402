/*
 * api_table.c - every JSON-RPC method of the persona protocol, its handler,
 * and where it runs. RPC_INLINE handlers only read RAM and are answered on
 * the service thread; RPC_WORKER handlers may block (SQLite writes, scans)
 * and run on the worker pool.
 */
#include "api/api.h"

static const rpc_method g_table[] = {
    {"persona.list", api_persona_list, RPC_INLINE},
    {"persona.create", api_persona_create, RPC_WORKER},
    {"persona.switch", api_persona_switch, RPC_INLINE},
    {"persona.status", api_persona_status, RPC_INLINE},
    {"persona.delete", api_persona_delete, RPC_WORKER},
    {"system.status", api_system_status, RPC_INLINE},
    {"system.models", api_system_models, RPC_INLINE},
};

void api_init(void)
{
    rpc_set_methods(g_table, (int)(sizeof g_table / sizeof g_table[0]));
}
