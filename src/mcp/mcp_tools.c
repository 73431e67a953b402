/*
 * mcp_tools.c - MCP tools. Each product tool names the persona-protocol
 * method it runs: tools/call validates that the arguments are an object,
 * runs that method's handler with them as params (the very code the
 * WebSocket method runs), and returns its JSON result both as text content
 * and as structuredContent. A failing method becomes a tool error
 * (isError: true) carrying its message, as MCP asks for errors the model
 * should see.
 *
 * The chat tool is the one exception: it streams tokens as
 * notifications/progress when the client gave a progressToken, and when no
 * LLM backend is reachable and the client offered sampling, it asks the
 * client's own model through sampling/createMessage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"
#include "lib/util.h"
#include "mcp/mcp_internal.h"
#include "persona/persona.h"

typedef struct mcp_tool {
    const char *name, *title, *description;
    const char *method; /* persona protocol method; NULL = special */
    const char *schema; /* inputSchema (JSON) */
    bool read_only;
} mcp_tool;

#define PID             "\"persona_id\":{\"type\":\"string\",\"description\":\"Persona id\"}"
#define OBJ(props, req) "{\"type\":\"object\",\"properties\":{" props "}" req "}"
#define REQ(...)        ",\"required\":[" __VA_ARGS__ "]"

static const mcp_tool g_tools[] = {
    {"persona_list", "List personas", "All personas with availability and energy.", "persona.list",
     OBJ("", ""), true},
    {"persona_get", "Get a persona",
     "A persona's profile, interaction state and memory statistics.", "persona.status",
     OBJ(PID, REQ("\"persona_id\"")), true},
    {"persona_create", "Create a persona", "Create a persona; returns its id.", "persona.create",
     OBJ("\"name\":{\"type\":\"string\"},\"description\":{\"type\":\"string\"},"
         "\"personality_traits\":{\"type\":\"object\"},\"topic_preferences\":{\"type\":\"object\","
         "\"additionalProperties\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":100}},"
         "\"charisma\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":20},"
         "\"intelligence\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":20},"
         "\"social_rank\":{\"type\":\"string\"}",
         REQ("\"name\"")),
     false},
    {"persona_delete", "Delete a persona",
     "Delete a persona and everything that belongs to it (memories, relationships, ...).",
     "persona.delete", OBJ(PID, REQ("\"persona_id\"")), false},
    {"memory_store", "Store a memory",
     "Store a memory for a persona. Importance is scored automatically when not given.",
     "memory.store",
     OBJ(PID ",\"content\":{\"type\":\"string\"},\"memory_type\":{\"type\":\"string\"},"
             "\"importance\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1},"
             "\"visibility\":{\"type\":\"string\",\"enum\":[\"private\",\"shared\",\"public\"]},"
             "\"emotional_valence\":{\"type\":\"number\",\"minimum\":-1,\"maximum\":1},"
             "\"related_personas\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
             "\"metadata\":{\"type\":\"object\"}",
         REQ("\"persona_id\",\"content\"")),
     false},
    {"memory_search", "Search memories",
     "Semantic search of a persona's memories, with optional filters and hybrid keyword "
     "ranking.",
     "memory.search",
     OBJ(PID ",\"query\":{\"type\":\"string\"},\"n_results\":{\"type\":\"integer\",\"minimum\":1,"
             "\"maximum\":1000},\"min_importance\":{\"type\":\"number\"},\"memory_type\":{\"type\":"
             "\"string\"},\"visibility\":{\"type\":\"string\"},\"hybrid\":{\"type\":\"boolean\"}",
         REQ("\"persona_id\",\"query\"")),
     true},
    {"memory_update", "Update a memory",
     "Change a memory's content, importance, type or visibility.", "memory.update",
     OBJ("\"memory_id\":{\"type\":\"string\"},\"content\":{\"type\":\"string\"},\"importance\":{"
         "\"type\":\"number\"},\"memory_type\":{\"type\":\"string\"},\"visibility\":{\"type\":"
         "\"string\"},\"metadata\":{\"type\":\"object\"}",
         REQ("\"memory_id\"")),
     false},
    {"memory_delete", "Delete a memory", "Delete one memory by id.", "memory.delete",
     OBJ("\"memory_id\":{\"type\":\"string\"}", REQ("\"memory_id\"")), false},
    {"memory_stats", "Memory statistics",
     "Counts, average importance and types of a persona's memories.", "memory.stats",
     OBJ(PID, REQ("\"persona_id\"")), true},
    {"memory_prune", "Prune memories",
     "Remove a persona's least valuable memories beyond its target; dry_run only reports.",
     "memory.prune",
     OBJ(PID ",\"force\":{\"type\":\"boolean\"},\"dry_run\":{\"type\":\"boolean\"}",
         REQ("\"persona_id\"")),
     false},
    {"memory_search_cross_persona", "Search shared memories",
     "Search the shared and public memories of every persona, ranked by similarity.",
     "memory.search_cross_persona",
     OBJ(PID ",\"query\":{\"type\":\"string\"},\"n_results\":{\"type\":\"integer\"},"
             "\"min_importance\":{\"type\":\"number\"}",
         REQ("\"persona_id\",\"query\"")),
     true},
    {"relationship_get", "Get a relationship", "The relationship between two personas.",
     "relationship.get",
     OBJ("\"persona1_id\":{\"type\":\"string\"},\"persona2_id\":{\"type\":\"string\"}",
         REQ("\"persona1_id\",\"persona2_id\"")),
     true},
    {"relationship_update", "Record an interaction",
     "Update two personas' relationship after an interaction of a given quality.",
     "relationship.update",
     OBJ("\"persona1_id\":{\"type\":\"string\"},\"persona2_id\":{\"type\":\"string\"},"
         "\"interaction_quality\":{\"type\":\"number\",\"minimum\":-1,\"maximum\":1},"
         "\"duration_minutes\":{\"type\":\"number\"},\"context\":{\"type\":\"string\"}",
         REQ("\"persona1_id\",\"persona2_id\"")),
     false},
    {"emotional_state_get", "Get emotional state", "A persona's mood, energy, stress, curiosity.",
     "emotional.get_state", OBJ(PID, REQ("\"persona_id\"")), true},
    {"emotional_state_update", "Update emotional state",
     "Set parts of a persona's emotional state.", "emotional.update_state",
     OBJ(PID ",\"mood\":{\"type\":\"number\"},\"energy_level\":{\"type\":\"number\"},"
             "\"stress_level\":{\"type\":\"number\"},\"curiosity\":{\"type\":\"number\"},"
             "\"social_battery\":{\"type\":\"number\"}",
         REQ("\"persona_id\"")),
     false},
    {"chat", "Chat with a persona",
     "Send a message to a persona and get its reply (tokens stream as progress notifications "
     "when a progressToken is given). The exchange is remembered.",
     NULL,
     OBJ(PID ",\"message\":{\"type\":\"string\"},\"token_budget\":{\"type\":\"integer\","
             "\"minimum\":1,\"maximum\":32768}",
         REQ("\"persona_id\",\"message\"")),
     false},
};

#define NTOOLS (sizeof g_tools / sizeof g_tools[0])

static bool available(const mcp_tool *t)
{
    return !t->method || rpc_lookup(t->method, NULL) != NULL;
}

/* The product tool named name, or NULL (unknown, unavailable, or a fixture). */
static const mcp_tool *find_tool(const char *name)
{
    for (size_t i = 0; i < NTOOLS; i++)
        if (strcmp(g_tools[i].name, name) == 0) return available(&g_tools[i]) ? &g_tools[i] : NULL;
    return NULL;
}

/* The method a tools/call request runs, when it is a method-backed product
 * tool (not chat, not a fixture); NULL otherwise. */
static const rpc_method *call_method(const jv *params, const jv **args)
{
    const jv *name = jv_get(params, "name");
    const mcp_tool *t = jv_is_str(name) ? find_tool(name->u.s) : NULL;
    if (!t || !t->method) return NULL; /* fixture names never clash with these */
    const jv *a = jv_get(params, "arguments");
    *args = a && a->type == JV_OBJECT ? a : NULL;
    return rpc_lookup(t->method, NULL);
}

bool mcp_tools_call_inline(app *a, rpc_session *s, const jv *params)
{
    const jv *args = NULL;
    const rpc_method *m = call_method(params, &args);
    if (!m) return false;
    return m->where == RPC_INLINE || (m->inline_if && m->inline_if(a, s, args));
}

bool mcp_request_may_stream(const jv *req)
{
    const jv *method = jv_get(req, "method");
    if (!jv_is_str(method) || strcmp(method->u.s, "tools/call") != 0) return false;
    const jv *params = jv_get(req, "params");
    if (jv_get(jv_get(params, "_meta"), "progressToken")) return true;
    const jv *args = NULL;
    return call_method(params, &args) == NULL; /* chat and fixtures may send first */
}

int mcp_tools_list(rpc_call *c)
{
    jw *w = c->out;
    jw_obj_begin(w);
    jw_key(w, "tools");
    jw_arr_begin(w);
    for (size_t i = 0; i < NTOOLS; i++) {
        const mcp_tool *t = &g_tools[i];
        if (!available(t)) continue;
        jw_obj_begin(w);
        jw_kstr(w, "name", t->name);
        jw_kstr(w, "title", t->title);
        jw_kstr(w, "description", t->description);
        jw_key(w, "inputSchema");
        jw_raw(w, t->schema, strlen(t->schema));
        jw_key(w, "annotations");
        jw_obj_begin(w);
        jw_kbool(w, "readOnlyHint", t->read_only);
        jw_kbool(w, "destructiveHint", !t->read_only && strstr(t->name, "delete") != NULL);
        jw_kbool(w, "openWorldHint", t->method == NULL);
        jw_obj_end(w);
        jw_obj_end(w);
    }
    mcp_fixture_tools_list(c, w);
    jw_arr_end(w);
    jw_obj_end(w);
    return 0;
}

/* Run a persona-protocol method with args and wrap its result. */
static int run_method(rpc_call *c, const mcp_tool *t, const jv *args)
{
    const rpc_method *m = rpc_lookup(t->method, NULL);
    jw out;
    jw_init(&out, 0, 1024);
    rpc_call sub = {.app = c->app,
                    .sess = c->sess,
                    .method = t->method,
                    .params = args,
                    .out = &out,
                    .arena = c->arena,
                    .method_index = -1,
                    .t0 = c->t0};
    int rc = m->fn(&sub);
    jw *w = c->out;
    if (rc != 0) {
        char text[700];
        int n = snprintf(text, sizeof text, "%s (code %d)", sub.err_msg, sub.err_code);
        if (n < 0) n = 0;
        if (n >= (int)sizeof text) n = (int)sizeof text - 1;
        mcp_text_result(w, text, (size_t)n, true);
    } else {
        jw_obj_begin(w);
        jw_key(w, "content");
        jw_arr_begin(w);
        jw_obj_begin(w);
        jw_kstr(w, "type", "text");
        jw_key(w, "text");
        jw_strn(w, jw_data(&out), jw_size(&out));
        jw_obj_end(w);
        jw_arr_end(w);
        if (jw_size(&out) && jw_data(&out)[0] == '{') {
            jw_key(w, "structuredContent");
            jw_raw(w, jw_data(&out), jw_size(&out));
        }
        jw_kbool(w, "isError", false);
        jw_obj_end(w);
    }
    jw_free(&out);
    return 0;
}

/* ---- the chat tool ------------------------------------------------------------- */

typedef struct chat_tool {
    rpc_deferred *d;
    mcp_sess *m;
    char *progress; /* progressToken as JSON text, or NULL */
    char persona_name[128];
    char *system_prompt;
    char *message;
} chat_tool;

static void chat_tool_free(chat_tool *t)
{
    free(t->progress);
    free(t->system_prompt);
    free(t->message);
    free(t);
}

static void tool_result(chat_tool *t, const char *text, size_t len, bool err, const char *extra)
{
    jw w;
    jw_init(&w, 0, len + 256);
    jw_obj_begin(&w);
    jw_key(&w, "content");
    jw_arr_begin(&w);
    jw_obj_begin(&w);
    jw_kstr(&w, "type", "text");
    jw_key(&w, "text");
    jw_strn(&w, text, len);
    jw_obj_end(&w);
    jw_arr_end(&w);
    if (extra) {
        jw_key(&w, "structuredContent");
        jw_raw(&w, extra, strlen(extra));
    }
    jw_kbool(&w, "isError", err);
    jw_obj_end(&w);
    rpc_deferred_result(t->d, jw_data(&w), jw_size(&w));
    jw_free(&w);
    rpc_deferred_end(t->d, !err);
    chat_tool_free(t);
}

static void chat_tool_token(void *ctx, const char *tok, size_t len, int n, size_t total)
{
    chat_tool *t = ctx;
    (void)total;
    if (!t->progress) return;
    jw w;
    jw_init(&w, 0, 256);
    jw_puts(&w, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":");
    jw_obj_begin(&w);
    jw_key(&w, "progressToken");
    jw_raw(&w, t->progress, strlen(t->progress));
    jw_kint(&w, "progress", n);
    jw_key(&w, "message");
    jw_strn(&w, tok, len);
    jw_obj_end(&w);
    jw_append(&w, "}", 1);
    rpc_deferred_send_raw(t->d, jw_data(&w), jw_size(&w));
    jw_free(&w);
}

static void sampled(void *ctx, const jv *result, const jv *error)
{
    chat_tool *t = ctx;
    const jv *content = jv_get(result, "content");
    const jv *text = jv_get(content, "text");
    if (!error && jv_is_str(text)) {
        tool_result(t, text->u.s, text->len, false, "{\"source\":\"sampling\"}");
        return;
    }
    const char *why = "the client did not answer the sampling request";
    const jv *msg = jv_get(error, "message");
    if (jv_is_str(msg)) why = msg->u.s;
    char buf[400];
    /* why is the client's text, of any length: the message is cut to buf */
    int n = snprintf(buf, sizeof buf, "No LLM backend is reachable and sampling failed: %s", why);
    if (n < 0) n = 0;
    if (n >= (int)sizeof buf) n = (int)sizeof buf - 1;
    tool_result(t, buf, (size_t)n, true, NULL);
}

/* Ask the client's model (sampling/createMessage). */
static bool try_sampling(chat_tool *t, const chat_result *r)
{
    if (!t->m->cap_sampling) return false;
    jw p;
    jw_init(&p, 0, 1024);
    jw_obj_begin(&p);
    jw_key(&p, "messages");
    jw_arr_begin(&p);
    jw_obj_begin(&p);
    jw_kstr(&p, "role", "user");
    jw_key(&p, "content");
    jw_obj_begin(&p);
    jw_kstr(&p, "type", "text");
    jw_kstr(&p, "text", t->message);
    jw_obj_end(&p);
    jw_obj_end(&p);
    jw_arr_end(&p);
    char sys[256];
    snprintf(sys, sizeof sys, "You are %s. Stay in character and answer the user.",
             r->persona_name ? r->persona_name : "a persona");
    jw_kstr(&p, "systemPrompt", sys);
    jw_kint(&p, "maxTokens", 512);
    jw_obj_end(&p);
    jw_append(&p, "", 1);
    int rc = mcp_client_request(t->m, rpc_deferred_sink(t->d), "sampling/createMessage",
                                jw_data(&p), sampled, t);
    jw_free(&p);
    return rc == 0;
}

static void chat_tool_end(void *ctx, const chat_result *r)
{
    chat_tool *t = ctx;
    if (r->fallback && try_sampling(t, r)) return;
    bool ok = r->status == LLM_OK || r->fallback;
    jw extra;
    jw_init(&extra, 0, 256);
    jw_obj_begin(&extra);
    jw_kstr(&extra, "persona_id", r->persona_id);
    jw_kbool(&extra, "fallback", r->fallback);
    if (r->fallback) jw_kstr(&extra, "fallback_reason", r->fallback_reason);
    if (r->memory_id && *r->memory_id) jw_kstr(&extra, "memory_id", r->memory_id);
    jw_kint(&extra, "chunks", r->chunks);
    jw_obj_end(&extra);
    jw_append(&extra, "", 1);
    if (ok)
        tool_result(t, r->text, r->len, false, jw_data(&extra));
    else
        tool_result(t, r->detail, strlen(r->detail), true, jw_data(&extra));
    jw_free(&extra);
}

static int chat_call(rpc_call *c, const jv *args, const jv *meta)
{
    const rpc_call saved = *c;
    c->params = args;
    const char *pid, *msg;
    int64_t budget;
    int rc = (rpc_param_str(c, "persona_id", true, &pid) < 0 ||
              rpc_param_str(c, "message", true, &msg) < 0 ||
              rpc_param_int(c, "token_budget", 1, 32768, 500, &budget) < 0)
                 ? -1
                 : 0;
    c->params = saved.params;
    if (rc < 0) {
        mcp_text_result(c->out, c->err_msg, strlen(c->err_msg), true);
        c->err_code = 0;
        return 0;
    }
    chat_tool *t = calloc(1, sizeof *t);
    if (!t) abort();
    t->m = mcp_sess_of(c->sess);
    if (!(t->message = strdup(msg))) abort();
    const jv *tok = jv_get(meta, "progressToken");
    if (tok && (tok->type == JV_STRING || tok->type == JV_INT)) {
        jw tw;
        jw_init(&tw, 0, 64);
        jw_value(&tw, tok);
        jw_append(&tw, "", 1);
        t->progress = jw_release(&tw);
    }
    if (!(t->d = rpc_defer(c, true, c->req_id))) {
        chat_tool_free(t);
        return rpc_fail(c, RPC_INVALID_REQUEST, "Invalid Request: chat cannot run in a batch");
    }
    char sid[40], id[40] = "";
    util_uuid4(sid);
    persona_reg_rdlock(c->app->personas); /* an id, or a name as persona.switch takes */
    const persona *p = persona_reg_resolve(c->app->personas, pid);
    if (p) memcpy(id, p->id, sizeof id);
    persona_reg_unlock(c->app->personas);
    if (id[0]) pid = id;
    chat_req req = {.persona_id = pid,
                    .sess = c->sess, /* its history; notifications/cancelled matches by session */
                    .message = msg,
                    .max_tokens = (int)budget,
                    .stream_id = sid,
                    .request_id = rpc_deferred_id(t->d),
                    .t0 = c->t0};
    chat_events ev = {chat_tool_token, chat_tool_end, NULL};
    int code;
    char err[256];
    if (chat_begin(c->app, &req, &ev, t, &code, err, sizeof err) < 0)
        tool_result(t, err, strlen(err), true, NULL);
    return 0;
}

int mcp_tools_call(rpc_call *c)
{
    const char *name;
    const jv *args, *meta;
    if (rpc_param_str(c, "name", true, &name) < 0 || rpc_param_obj(c, "arguments", &args) < 0 ||
        rpc_param_obj(c, "_meta", &meta) < 0)
        return -1;
    if (mcp_fixture_tool_call(c, name, args)) return 0;
    const mcp_tool *t = find_tool(name);
    if (t) return t->method ? run_method(c, t, args) : chat_call(c, args, meta);
    return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: unknown tool '%s'", name);
}
