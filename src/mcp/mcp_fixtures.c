/*
 * mcp_fixtures.c - the MCP conformance suite's fixtures (test_* tools,
 * test:// resources, test prompts), served only with
 * --conformance-fixtures and never listed otherwise.
 *
 * The suite (@modelcontextprotocol/conformance) looks for these names and
 * shapes; each hook below returns 0 when fixtures are off or the name is
 * not a fixture, so the product's own handlers run unchanged.
 *
 * Tools that talk back to the client during the call (sampling and
 * elicitation) defer their answer: they send the request on the call's own
 * stream (the tools/call SSE response, or stdout) and answer the call when
 * the client's reply comes back as a separate message. Tools with logging
 * or progress send their notifications on the same stream before the
 * result; they run on a worker, so their short pauses block nothing else.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mcp/mcp_internal.h"

/* A 1x1 RGBA PNG and an 8-sample 8 kHz mono 8-bit WAV, generated for these
 * fixtures. */
#define PNG_B64                                                                                    \
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mPwr7r2HwAFWgKfQIfPwgAAAABJRU5ErkJg" \
    "gg=="
#define WAV_B64 "UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQgAAACAoMCggGBAYA=="

#define NO_ARGS "{\"type\":\"object\",\"properties\":{}}"

typedef struct fx_tool {
    const char *name, *description, *schema;
} fx_tool;

static const fx_tool g_tools[] = {
    {"test_simple_text", "Returns a simple text content item", NO_ARGS},
    {"test_image_content", "Returns a base64 PNG image content item", NO_ARGS},
    {"test_audio_content", "Returns a base64 WAV audio content item", NO_ARGS},
    {"test_embedded_resource", "Returns an embedded text resource", NO_ARGS},
    {"test_multiple_content_types", "Returns text, image and resource content together", NO_ARGS},
    {"test_tool_with_logging", "Sends three info log notifications while it runs", NO_ARGS},
    {"test_tool_with_progress", "Reports progress 0, 50 and 100 of 100 when given a token",
     NO_ARGS},
    {"test_error_handling", "Always fails with a tool error (isError: true)", NO_ARGS},
    {"test_sampling", "Asks the client's model through sampling/createMessage",
     "{\"type\":\"object\",\"properties\":{\"prompt\":{\"type\":\"string\",\"description\":"
     "\"The prompt to send to the LLM\"}},\"required\":[\"prompt\"]}"},
    {"test_elicitation", "Asks the user for a username and an email through elicitation/create",
     "{\"type\":\"object\",\"properties\":{\"message\":{\"type\":\"string\",\"description\":"
     "\"The message to show the user\"}},\"required\":[\"message\"]}"},
    {"test_elicitation_sep1034_defaults",
     "Elicits a form whose fields carry default values (SEP-1034)", NO_ARGS},
    {"test_elicitation_sep1330_enums", "Elicits a form with the five enum shapes of SEP-1330",
     NO_ARGS},
    {"json_schema_2020_12_tool", "Tool with JSON Schema 2020-12 features",
     "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"type\":\"object\","
     "\"$defs\":{\"address\":{\"type\":\"object\",\"properties\":{\"street\":{\"type\":"
     "\"string\"},\"city\":{\"type\":\"string\"}}}},\"properties\":{\"name\":{\"type\":"
     "\"string\"},\"address\":{\"$ref\":\"#/$defs/address\"}},\"additionalProperties\":false}"},
};

#define NFX_TOOLS (sizeof g_tools / sizeof g_tools[0])

static const char *const g_elicit_basic =
    "{\"type\":\"object\",\"properties\":{\"username\":{\"type\":\"string\",\"description\":"
    "\"User's response\"},\"email\":{\"type\":\"string\",\"description\":\"User's email "
    "address\"}},\"required\":[\"username\",\"email\"]}";

static const char *const g_elicit_defaults =
    "{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\",\"description\":\"Your name\",\"default\":\"John Doe\"},"
    "\"age\":{\"type\":\"integer\",\"description\":\"Your age\",\"default\":30},"
    "\"score\":{\"type\":\"number\",\"description\":\"Your score\",\"default\":95.5},"
    "\"status\":{\"type\":\"string\",\"description\":\"Account status\",\"enum\":[\"active\","
    "\"inactive\",\"pending\"],\"default\":\"active\"},"
    "\"verified\":{\"type\":\"boolean\",\"description\":\"Verified account\",\"default\":true}}}";

static const char *const g_elicit_enums =
    "{\"type\":\"object\",\"properties\":{"
    "\"untitledSingle\":{\"type\":\"string\",\"description\":\"Pick one\",\"enum\":[\"option1\","
    "\"option2\",\"option3\"]},"
    "\"titledSingle\":{\"type\":\"string\",\"description\":\"Pick one\",\"oneOf\":["
    "{\"const\":\"value1\",\"title\":\"First Option\"},{\"const\":\"value2\",\"title\":"
    "\"Second Option\"},{\"const\":\"value3\",\"title\":\"Third Option\"}]},"
    "\"legacyEnum\":{\"type\":\"string\",\"description\":\"Pick one (legacy)\",\"enum\":["
    "\"opt1\",\"opt2\",\"opt3\"],\"enumNames\":[\"Option One\",\"Option Two\",\"Option "
    "Three\"]},"
    "\"untitledMulti\":{\"type\":\"array\",\"description\":\"Pick some\",\"items\":{\"type\":"
    "\"string\",\"enum\":[\"option1\",\"option2\",\"option3\"]}},"
    "\"titledMulti\":{\"type\":\"array\",\"description\":\"Pick some\",\"items\":{\"anyOf\":["
    "{\"const\":\"value1\",\"title\":\"First Choice\"},{\"const\":\"value2\",\"title\":"
    "\"Second Choice\"},{\"const\":\"value3\",\"title\":\"Third Choice\"}]}}}}";

static bool on(const rpc_call *c)
{
    return c->app->mcp_fixtures;
}

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* ---- content items -------------------------------------------------------------- */

static void text_item(jw *w, const char *text)
{
    jw_obj_begin(w);
    jw_kstr(w, "type", "text");
    jw_kstr(w, "text", text);
    jw_obj_end(w);
}

static void media_item(jw *w, const char *type, const char *mime, const char *b64)
{
    jw_obj_begin(w);
    jw_kstr(w, "type", type);
    jw_kstr(w, "data", b64);
    jw_kstr(w, "mimeType", mime);
    jw_obj_end(w);
}

static void resource_item(jw *w, const char *uri, const char *mime, const char *text)
{
    jw_obj_begin(w);
    jw_kstr(w, "type", "resource");
    jw_key(w, "resource");
    jw_obj_begin(w);
    jw_kstr(w, "uri", uri);
    jw_kstr(w, "mimeType", mime);
    jw_kstr(w, "text", text);
    jw_obj_end(w);
    jw_obj_end(w);
}

static void result_begin(jw *w)
{
    jw_obj_begin(w);
    jw_key(w, "content");
    jw_arr_begin(w);
}

static void result_end(jw *w, bool is_error)
{
    jw_arr_end(w);
    jw_kbool(w, "isError", is_error);
    jw_obj_end(w);
}

static void text_result(jw *w, const char *text, bool is_error)
{
    mcp_text_result(w, text, strlen(text), is_error);
}

/* ---- tools ------------------------------------------------------------------------ */

int mcp_fixture_tools_list(rpc_call *c, jw *w)
{
    if (!on(c)) return 0;
    for (size_t i = 0; i < NFX_TOOLS; i++) {
        jw_obj_begin(w);
        jw_kstr(w, "name", g_tools[i].name);
        jw_kstr(w, "description", g_tools[i].description);
        jw_key(w, "inputSchema");
        jw_raw(w, g_tools[i].schema, strlen(g_tools[i].schema));
        jw_obj_end(w);
    }
    return 1;
}

static void tool_logging(rpc_call *c)
{
    mcp_sess *m = mcp_sess_of(c->sess);
    static const char *const steps[] = {"Tool execution started", "Tool processing data",
                                        "Tool execution completed"};
    for (int i = 0; i < 3; i++) {
        if (i) pause_ms(50);
        if (c->sink) mcp_log(m, c->sink, MCP_LOG_INFO, "test_tool_with_logging", steps[i]);
    }
    text_result(c->out, "Tool with logging executed successfully", false);
}

static void tool_progress(rpc_call *c)
{
    const jv *meta = jv_get(c->params, "_meta");
    const jv *tok = jv_get(meta, "progressToken");
    bool report = c->sink && tok && (tok->type == JV_STRING || tok->type == JV_INT);
    for (int step = 0; step <= 2; step++) {
        if (step) pause_ms(50);
        if (!report) continue;
        jw n;
        jw_init(&n, 0, 160);
        jw_obj_begin(&n);
        jw_kstr(&n, "jsonrpc", "2.0");
        jw_kstr(&n, "method", "notifications/progress");
        jw_key(&n, "params");
        jw_obj_begin(&n);
        jw_key(&n, "progressToken");
        jw_value(&n, tok);
        jw_kint(&n, "progress", step * 50);
        jw_kint(&n, "total", 100);
        jw_kstr(&n, "message", step == 2 ? "done" : "working");
        jw_obj_end(&n);
        jw_obj_end(&n);
        rpc_send_raw(c, jw_data(&n), jw_size(&n));
        jw_free(&n);
    }
    text_result(c->out, "Tool with progress executed successfully", false);
}

/* ---- tools that ask the client (deferred) ------------------------------------------ */

typedef enum { ASK_SAMPLING, ASK_ELICIT, ASK_ELICIT_FORM } ask_kind;

typedef struct fx_ask {
    rpc_deferred *d;
    ask_kind kind;
} fx_ask;

static void ask_finish(fx_ask *a, const char *text, bool is_error)
{
    jw w;
    jw_init(&w, 0, strlen(text) + 96);
    text_result(&w, text, is_error);
    rpc_deferred_result(a->d, jw_data(&w), jw_size(&w));
    jw_free(&w);
    rpc_deferred_end(a->d, !is_error);
    free(a);
}

/* The first text of a sampling result's content (an object, or an array
 * of content blocks since 2025-11-25). */
static const jv *sampled_text(const jv *result)
{
    const jv *content = jv_get(result, "content");
    if (content && content->type == JV_ARRAY) {
        for (uint32_t i = 0; i < content->len; i++) {
            const jv *t = jv_get(&content->u.items[i], "text");
            if (jv_is_str(t)) return t;
        }
        return NULL;
    }
    const jv *t = jv_get(content, "text");
    return jv_is_str(t) ? t : NULL;
}

/* Append v as JSON text ({} when absent) to a plain text buffer. */
static void append_json(jw *t, const jv *v)
{
    jw j;
    jw_init(&j, 0, 128);
    if (v)
        jw_value(&j, v);
    else
        jw_puts(&j, "{}");
    jw_append(t, jw_data(&j), jw_size(&j));
    jw_free(&j);
}

static void ask_reply(void *ctx, const jv *result, const jv *error)
{
    fx_ask *a = ctx;
    jw t;
    jw_init(&t, 0, 256);
    bool failed = false;
    if (!result) {
        const jv *msg = jv_get(error, "message");
        jw_puts(&t, error ? "The client refused the request: " : "The client did not answer");
        if (jv_is_str(msg)) jw_append(&t, msg->u.s, msg->len);
        failed = true;
    } else if (a->kind == ASK_SAMPLING) {
        const jv *text = sampled_text(result);
        jw_puts(&t, "LLM response: ");
        if (text)
            jw_append(&t, text->u.s, text->len);
        else
            append_json(&t, jv_get(result, "content"));
    } else {
        const jv *action = jv_get(result, "action");
        jw_puts(&t, a->kind == ASK_ELICIT ? "User response: action="
                                          : "Elicitation completed: action=");
        if (jv_is_str(action))
            jw_append(&t, action->u.s, action->len);
        else
            jw_puts(&t, "unknown");
        jw_puts(&t, ", content=");
        append_json(&t, jv_get(result, "content"));
    }
    jw_append(&t, "", 1);
    ask_finish(a, jw_data(&t), failed);
    jw_free(&t);
}

static void tool_ask(rpc_call *c, ask_kind kind, const char *text, const char *schema)
{
    mcp_sess *m = mcp_sess_of(c->sess);
    bool capable = kind == ASK_SAMPLING ? m->cap_sampling : m->cap_elicitation;
    if (!capable) {
        text_result(c->out,
                    kind == ASK_SAMPLING ? "The client does not support sampling"
                                         : "The client does not support elicitation",
                    true);
        return;
    }
    fx_ask *a = calloc(1, sizeof *a);
    if (!a) abort();
    a->kind = kind;
    if (!(a->d = rpc_defer(c, true, c->req_id))) {
        free(a);
        text_result(c->out, "This tool cannot run inside a batch", true);
        return;
    }
    jw p;
    jw_init(&p, 0, 1024);
    jw_obj_begin(&p);
    if (kind == ASK_SAMPLING) {
        jw_key(&p, "messages");
        jw_arr_begin(&p);
        jw_obj_begin(&p);
        jw_kstr(&p, "role", "user");
        jw_key(&p, "content");
        text_item(&p, text);
        jw_obj_end(&p);
        jw_arr_end(&p);
        jw_kint(&p, "maxTokens", 100);
    } else {
        jw_kstr(&p, "message", text);
        jw_key(&p, "requestedSchema");
        jw_raw(&p, schema, strlen(schema));
    }
    jw_obj_end(&p);
    jw_append(&p, "", 1);
    const char *method = kind == ASK_SAMPLING ? "sampling/createMessage" : "elicitation/create";
    if (mcp_client_request(m, rpc_deferred_sink(a->d), method, jw_data(&p), ask_reply, a) < 0)
        ask_finish(a, "Cannot reach the client", true);
    jw_free(&p);
}

/* A required string argument, or a tool error naming it (returns NULL). */
static const char *str_arg(rpc_call *c, const jv *args, const char *key)
{
    const jv *v = jv_get(args, key);
    if (jv_is_str(v)) return v->u.s;
    char msg[128];
    snprintf(msg, sizeof msg, "Invalid arguments: '%s' (string) is required", key);
    text_result(c->out, msg, true);
    return NULL;
}

int mcp_fixture_tool_call(rpc_call *c, const char *name, const jv *args)
{
    if (!on(c)) return 0;
    jw *w = c->out;
    const char *s;
    if (strcmp(name, "test_simple_text") == 0) {
        text_result(w, "This is a simple text response for testing.", false);
    } else if (strcmp(name, "test_image_content") == 0) {
        result_begin(w);
        media_item(w, "image", "image/png", PNG_B64);
        result_end(w, false);
    } else if (strcmp(name, "test_audio_content") == 0) {
        result_begin(w);
        media_item(w, "audio", "audio/wav", WAV_B64);
        result_end(w, false);
    } else if (strcmp(name, "test_embedded_resource") == 0) {
        result_begin(w);
        resource_item(w, "test://embedded-resource", "text/plain",
                      "This is an embedded resource content.");
        result_end(w, false);
    } else if (strcmp(name, "test_multiple_content_types") == 0) {
        result_begin(w);
        text_item(w, "Multiple content types test:");
        media_item(w, "image", "image/png", PNG_B64);
        resource_item(w, "test://mixed-content-resource", "application/json",
                      "{\"test\":\"data\",\"value\":123}");
        result_end(w, false);
    } else if (strcmp(name, "test_tool_with_logging") == 0) {
        tool_logging(c);
    } else if (strcmp(name, "test_tool_with_progress") == 0) {
        tool_progress(c);
    } else if (strcmp(name, "test_error_handling") == 0) {
        text_result(w, "This tool intentionally returns an error for testing", true);
    } else if (strcmp(name, "test_sampling") == 0) {
        if ((s = str_arg(c, args, "prompt"))) tool_ask(c, ASK_SAMPLING, s, NULL);
    } else if (strcmp(name, "test_elicitation") == 0) {
        if ((s = str_arg(c, args, "message"))) tool_ask(c, ASK_ELICIT, s, g_elicit_basic);
    } else if (strcmp(name, "test_elicitation_sep1034_defaults") == 0) {
        tool_ask(c, ASK_ELICIT_FORM, "Please review and update the form fields with defaults",
                 g_elicit_defaults);
    } else if (strcmp(name, "test_elicitation_sep1330_enums") == 0) {
        tool_ask(c, ASK_ELICIT_FORM, "Please select options from the enum fields", g_elicit_enums);
    } else if (strcmp(name, "json_schema_2020_12_tool") == 0) {
        jw t;
        jw_init(&t, 0, 128);
        jw_puts(&t, "Received arguments: ");
        append_json(&t, args);
        jw_append(&t, "", 1);
        text_result(w, jw_data(&t), false);
        jw_free(&t);
    } else {
        return 0;
    }
    return 1;
}

/* ---- resources -------------------------------------------------------------------- */

static void resource_entry(jw *w, const char *uri, const char *name, const char *desc,
                           const char *mime)
{
    jw_obj_begin(w);
    jw_kstr(w, "uri", uri);
    jw_kstr(w, "name", name);
    jw_kstr(w, "description", desc);
    jw_kstr(w, "mimeType", mime);
    jw_obj_end(w);
}

int mcp_fixture_resources_list(rpc_call *c, jw *w)
{
    if (!on(c)) return 0;
    resource_entry(w, "test://static-text", "Static Text Resource",
                   "A static text resource for testing", "text/plain");
    resource_entry(w, "test://static-binary", "Static Binary Resource",
                   "A static binary resource (a PNG image) for testing", "image/png");
    resource_entry(w, "test://watched-resource", "Watched Resource",
                   "A resource that can be subscribed to", "text/plain");
    return 1;
}

int mcp_fixture_templates_list(rpc_call *c, jw *w)
{
    if (!on(c)) return 0;
    jw_obj_begin(w);
    jw_kstr(w, "uriTemplate", "test://template/{id}/data");
    jw_kstr(w, "name", "Resource Template");
    jw_kstr(w, "description", "A resource template with an id parameter");
    jw_kstr(w, "mimeType", "application/json");
    jw_obj_end(w);
    return 1;
}

/* {"contents":[{"uri":..,"mimeType":..,"text"|"blob":..}]} */
static void contents(jw *w, const char *uri, const char *mime, const char *key, const char *val)
{
    jw_obj_begin(w);
    jw_key(w, "contents");
    jw_arr_begin(w);
    jw_obj_begin(w);
    jw_kstr(w, "uri", uri);
    jw_kstr(w, "mimeType", mime);
    jw_kstr(w, key, val);
    jw_obj_end(w);
    jw_arr_end(w);
    jw_obj_end(w);
}

int mcp_fixture_resource_read(rpc_call *c, const char *uri)
{
    static const char tpl_head[] = "test://template/", tpl_tail[] = "/data";
    if (!on(c) || strncmp(uri, "test://", 7) != 0) return 0;
    if (strcmp(uri, "test://static-text") == 0) {
        contents(c->out, uri, "text/plain", "text",
                 "This is the content of the static text resource.");
        return 1;
    }
    if (strcmp(uri, "test://static-binary") == 0) {
        contents(c->out, uri, "image/png", "blob", PNG_B64);
        return 1;
    }
    if (strcmp(uri, "test://watched-resource") == 0) {
        contents(c->out, uri, "text/plain", "text", "This is a resource that can be watched.");
        return 1;
    }
    size_t n = strlen(uri), h = sizeof tpl_head - 1, t = sizeof tpl_tail - 1;
    if (n > h + t && strncmp(uri, tpl_head, h) == 0 && strcmp(uri + n - t, tpl_tail) == 0 &&
        !memchr(uri + h, '/', n - h - t)) {
        jw id, body;
        jw_init(&id, 0, 64);
        jw_append(&id, uri + h, n - h - t);
        jw_append(&id, "", 1);
        char data[160];
        snprintf(data, sizeof data, "Data for ID: %.120s", jw_data(&id));
        jw_init(&body, 0, 128);
        jw_obj_begin(&body);
        jw_kstr(&body, "id", jw_data(&id));
        jw_kbool(&body, "templateTest", true);
        jw_kstr(&body, "data", data);
        jw_obj_end(&body);
        jw_append(&body, "", 1);
        contents(c->out, uri, "application/json", "text", jw_data(&body));
        jw_free(&body);
        jw_free(&id);
        return 1;
    }
    return 0;
}

#define PROMPT(w, lit) jw_raw(w, lit, sizeof lit - 1)

/* ---- prompts ---------------------------------------------------------------------- */

int mcp_fixture_prompts_list(rpc_call *c, jw *w)
{
    if (!on(c)) return 0;
    PROMPT(w, "{\"name\":\"test_simple_prompt\",\"description\":\"A simple prompt without "
              "arguments\"}");
    PROMPT(w, "{\"name\":\"test_prompt_with_arguments\",\"description\":\"A prompt with two "
              "required arguments\",\"arguments\":[{\"name\":\"arg1\",\"description\":\"First "
              "test argument\",\"required\":true},{\"name\":\"arg2\",\"description\":\"Second "
              "test argument\",\"required\":true}]}");
    PROMPT(w, "{\"name\":\"test_prompt_with_embedded_resource\",\"description\":\"A prompt "
              "that embeds a resource\",\"arguments\":[{\"name\":\"resourceUri\","
              "\"description\":\"URI of the resource to embed\",\"required\":true}]}");
    PROMPT(w, "{\"name\":\"test_prompt_with_image\",\"description\":\"A prompt with image "
              "content\"}");
    return 1;
}

/* One user message of a prompt: the content item goes between begin and end. */
static void msg_begin(jw *w)
{
    jw_obj_begin(w);
    jw_kstr(w, "role", "user");
    jw_key(w, "content");
}

static void msg_end(jw *w)
{
    jw_obj_end(w);
}

/* Returns the argument, or calls rpc_fail and returns NULL. */
static const char *prompt_arg(rpc_call *c, const jv *args, const char *key)
{
    const jv *v = jv_get(args, key);
    if (jv_is_str(v)) return v->u.s;
    rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: argument '%s' is required", key);
    return NULL;
}

int mcp_fixture_prompt_get(rpc_call *c, const char *name, const jv *args)
{
    if (!on(c)) return 0;
    jw *w = c->out;
    if (strcmp(name, "test_simple_prompt") == 0) {
        jw_obj_begin(w);
        jw_key(w, "messages");
        jw_arr_begin(w);
        msg_begin(w);
        text_item(w, "This is a simple prompt for testing.");
        msg_end(w);
    } else if (strcmp(name, "test_prompt_with_arguments") == 0) {
        const char *a1 = prompt_arg(c, args, "arg1"), *a2 = a1 ? prompt_arg(c, args, "arg2") : NULL;
        if (!a1 || !a2) return -1;
        jw text;
        jw_init(&text, 0, 128);
        jw_puts(&text, "Prompt with arguments: arg1='");
        jw_puts(&text, a1);
        jw_puts(&text, "', arg2='");
        jw_puts(&text, a2);
        jw_append(&text, "'", 1);
        jw_append(&text, "", 1);
        jw_obj_begin(w);
        jw_key(w, "messages");
        jw_arr_begin(w);
        msg_begin(w);
        text_item(w, jw_data(&text));
        msg_end(w);
        jw_free(&text);
    } else if (strcmp(name, "test_prompt_with_embedded_resource") == 0) {
        const char *uri = prompt_arg(c, args, "resourceUri");
        if (!uri) return -1;
        jw_obj_begin(w);
        jw_key(w, "messages");
        jw_arr_begin(w);
        msg_begin(w);
        resource_item(w, uri, "text/plain", "Embedded resource content for testing.");
        msg_end(w);
        msg_begin(w);
        text_item(w, "Please process the embedded resource above.");
        msg_end(w);
    } else if (strcmp(name, "test_prompt_with_image") == 0) {
        jw_obj_begin(w);
        jw_key(w, "messages");
        jw_arr_begin(w);
        msg_begin(w);
        media_item(w, "image", "image/png", PNG_B64);
        msg_end(w);
        msg_begin(w);
        text_item(w, "Please analyze the image above.");
        msg_end(w);
    } else {
        return 0;
    }
    jw_arr_end(w);
    jw_obj_end(w);
    return 1;
}

/* ---- completion ------------------------------------------------------------------- */

int mcp_fixture_complete(rpc_call *c, const jv *ref, const jv *arg)
{
    static const char *const arg1_values[] = {"paris", "park", "party", "test", "testing"};
    static const char *const id_values[] = {"1", "2", "3", "123"};
    if (!on(c)) return 0;
    const jv *type = jv_get(ref, "type"), *rname = jv_get(ref, "name"), *uri = jv_get(ref, "uri");
    const jv *aname = jv_get(arg, "name"), *val = jv_get(arg, "value");
    const char *const *values;
    size_t nvalues;
    if (!jv_is_str(type) || !jv_is_str(aname)) return 0;
    if (strcmp(type->u.s, "ref/prompt") == 0 && jv_is_str(rname) &&
        strcmp(rname->u.s, "test_prompt_with_arguments") == 0) {
        values = arg1_values;
        nvalues = strcmp(aname->u.s, "arg1") == 0 ? sizeof arg1_values / sizeof *arg1_values : 0;
    } else if (strcmp(type->u.s, "ref/resource") == 0 && jv_is_str(uri) &&
               strcmp(uri->u.s, "test://template/{id}/data") == 0) {
        values = id_values;
        nvalues = strcmp(aname->u.s, "id") == 0 ? sizeof id_values / sizeof *id_values : 0;
    } else {
        return 0;
    }
    const char *prefix = jv_is_str(val) ? val->u.s : "";
    size_t plen = strlen(prefix);
    jw *w = c->out;
    jw_obj_begin(w);
    jw_key(w, "completion");
    jw_obj_begin(w);
    jw_key(w, "values");
    jw_arr_begin(w);
    int total = 0;
    for (size_t i = 0; i < nvalues; i++)
        if (strncmp(values[i], prefix, plen) == 0) {
            jw_str(w, values[i]);
            total++;
        }
    jw_arr_end(w);
    jw_kint(w, "total", total);
    jw_kbool(w, "hasMore", false);
    jw_obj_end(w);
    jw_obj_end(w);
    return 1;
}
