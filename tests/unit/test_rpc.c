/*
 * test_rpc.c - the JSON-RPC 2.0 envelope (src/rpc/rpc.c).
 *
 * A small method table is registered instead of the API's: "echo" writes its
 * params back, "fail" calls rpc_fail(), "fail_partial" writes half a result
 * and then fails, "fail_nocode" returns -1 without rpc_fail(), "silent"
 * writes nothing (and is the only RPC_WORKER method). Each envelope test
 * parses one message, runs rpc_execute() into a fresh writer and compares the
 * complete response text: the envelope has no varying parts, so exact text is
 * the strongest check (key order, "result" xor "error", id type).
 *
 * The parameter helpers are driven directly through an rpc_call whose params
 * come from parsed JSON, checking return value, output value, error code and
 * the exact message (which must name the field). Sessions are checked for
 * set/current/forget and the reference count (LeakSanitizer reports a
 * session that the last unref failed to free).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/json.h"
#include "lib/jw.h"
#include "lib/log.h"
#include "rpc/rpc.h"

/* ---- test method table --------------------------------------------------- */

static int h_echo(rpc_call *c)
{
    jw_value(c->out, c->params);
    return 0;
}

static int h_fail(rpc_call *c)
{
    return rpc_fail(c, RPC_PERSONA_NOT_FOUND, "boom %d", 7);
}

static int h_fail_partial(rpc_call *c)
{
    jw_obj_begin(c->out);
    jw_kstr(c->out, "half", "written");
    return rpc_fail(c, RPC_INVALID_PARAMS, "Invalid params: 'x' is required");
}

static int h_fail_nocode(rpc_call *c)
{
    (void)c;
    return -1;
}

static int h_silent(rpc_call *c)
{
    (void)c;
    return 0;
}

/* "maybe" is a worker method that may be answered inline: when its params
 * hold "cached": true. Records what it was called with. */
static int g_inline_if_calls;
static const jv *g_inline_if_params;
static bool maybe_inline(app *a, rpc_session *s, const jv *params)
{
    (void)a;
    (void)s;
    g_inline_if_calls++;
    g_inline_if_params = params;
    const jv *c = jv_get(params, "cached");
    return c && c->type == JV_BOOL && c->u.b;
}

/* Deliberately not sorted: rpc_set_methods() must sort for its bsearch. */
static const rpc_method g_test_methods[] = {
    {.name = "silent", .fn = h_silent, .where = RPC_WORKER},
    {.name = "echo", .fn = h_echo, .where = RPC_INLINE},
    {.name = "fail_partial", .fn = h_fail_partial, .where = RPC_INLINE},
    {.name = "fail", .fn = h_fail, .where = RPC_INLINE},
    {.name = "fail_nocode", .fn = h_fail_nocode, .where = RPC_INLINE},
    {.name = "maybe", .fn = h_echo, .where = RPC_WORKER, .inline_if = maybe_inline},
    {.name = "inline_with_hook", .fn = h_echo, .where = RPC_INLINE, .inline_if = maybe_inline},
};
#define N_TEST_METHODS ((int)(sizeof g_test_methods / sizeof g_test_methods[0]))

/* ---- helpers ------------------------------------------------------------- */

static app g_app;

/* Parse `json` (must be valid) and execute it; returns the response text,
 * "" when there is none. Caller frees. */
static char *run_on(rpc_session *s, const char *json)
{
    jarena ar, scratch;
    jarena_init(&ar);
    jarena_init(&scratch);
    json_error err;
    jv *msg = json_parse(&ar, json, strlen(json), 0, JSON_DEFAULT_MAX_DEPTH, &err);
    if (!msg) fail_msg("test input does not parse: %s (%s)", json, err.msg);
    jw out;
    jw_init(&out, 16, 256);
    rpc_execute(&g_app, s, NULL, msg, &out, &scratch, 0);
    char *text = strndup(jw_data(&out), jw_size(&out));
    assert_non_null(text);
    jw_free(&out);
    jarena_free(&ar);
    jarena_free(&scratch);
    return text;
}

static char *run(const char *json)
{
    rpc_session *s = rpc_session_new(1);
    char *r = run_on(s, json);
    rpc_session_unref(s);
    return r;
}

#define EXPECT_RESPONSE(request, expected)                                                         \
    do {                                                                                           \
        char *got_ = run(request);                                                                 \
        assert_string_equal(got_, expected);                                                       \
        free(got_);                                                                                \
    } while (0)

static int setup_methods(void **state)
{
    (void)state;
    rpc_set_methods(g_test_methods, N_TEST_METHODS);
    return 0;
}

/* ---- success / error shape ----------------------------------------------- */

static void test_success_has_no_error_key(void **state)
{
    (void)state;
    EXPECT_RESPONSE(
        "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"a\":1,\"b\":[true,null]},"
        "\"id\":1}",
        "{\"jsonrpc\":\"2.0\",\"result\":{\"a\":1,\"b\":[true,null]},\"id\":1}");
}

static void test_error_has_no_result_key(void **state)
{
    (void)state;
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"fail\",\"id\":\"x\"}",
                    "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32000,\"message\":\"boom 7\"},"
                    "\"id\":\"x\"}");
}

static void test_failure_discards_partial_result(void **state)
{
    (void)state;
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"fail_partial\",\"id\":3}",
                    "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32602,\"message\":\"Invalid params: "
                    "'x' is required\"},\"id\":3}");
}

static void test_failure_without_code_is_internal_error(void **state)
{
    (void)state;
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"fail_nocode\",\"id\":4}",
                    "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32603,\"message\":\"Internal "
                    "error\"},\"id\":4}");
}

static void test_handler_writing_nothing_gives_null_result(void **state)
{
    (void)state;
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"silent\",\"id\":2}",
                    "{\"jsonrpc\":\"2.0\",\"result\":null,\"id\":2}");
}

/* JSON-RPC 2.0: params, when present, is a structured value; null is not. */
static void test_params_null_is_invalid_absent_is_fine(void **state)
{
    (void)state;
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":null,\"id\":5}",
                    "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"Invalid "
                    "Request: params must be an object or an array\"},\"id\":5}");
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":5}",
                    "{\"jsonrpc\":\"2.0\",\"result\":null,\"id\":5}");
}

static void test_jsonrpc_member_is_required(void **state)
{
    (void)state;
    EXPECT_RESPONSE("{\"method\":\"echo\",\"params\":{},\"id\":6,\"extra\":[1]}",
                    "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"Invalid "
                    "Request: jsonrpc \\\"2.0\\\" is required\"},\"id\":6}");
    EXPECT_RESPONSE(
        "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{},\"id\":6,\"extra\":[1]}",
        "{\"jsonrpc\":\"2.0\",\"result\":{},\"id\":6}");
}

/* ---- ids ----------------------------------------------------------------- */

static void test_ids_echoed_with_their_type(void **state)
{
    (void)state;
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"silent\",\"id\":\"abc\"}",
                    "{\"jsonrpc\":\"2.0\",\"result\":null,\"id\":\"abc\"}");
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"silent\",\"id\":\"7\"}",
                    "{\"jsonrpc\":\"2.0\",\"result\":null,\"id\":\"7\"}");
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"silent\",\"id\":7}",
                    "{\"jsonrpc\":\"2.0\",\"result\":null,\"id\":7}");
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"silent\",\"id\":-42}",
                    "{\"jsonrpc\":\"2.0\",\"result\":null,\"id\":-42}");
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"silent\",\"id\":9007199254740993}",
                    "{\"jsonrpc\":\"2.0\",\"result\":null,\"id\":9007199254740993}");
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"silent\",\"id\":1.5}",
                    "{\"jsonrpc\":\"2.0\",\"result\":null,\"id\":1.5}");
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"silent\",\"id\":null}",
                    "{\"jsonrpc\":\"2.0\",\"result\":null,\"id\":null}");
    /* Escapes in a string id survive the round trip. */
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"silent\",\"id\":\"a\\\"b\\\\c\\u00e9\"}",
                    "{\"jsonrpc\":\"2.0\",\"result\":null,\"id\":\"a\\\"b\\\\c\xc3\xa9\"}");
}

static void test_error_echoes_id(void **state)
{
    (void)state;
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"fail\",\"id\":2.25}",
                    "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32000,\"message\":\"boom 7\"},"
                    "\"id\":2.25}");
}

/* ---- notifications ------------------------------------------------------- */

static void test_notification_gives_no_output(void **state)
{
    (void)state;
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"a\":1}}", "");
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"fail\"}", "");
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"fail_partial\"}", "");
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"silent\"}", "");
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"no.such\"}", "");
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":[1]}", "");
}

static void test_invalid_notification_still_answered(void **state)
{
    (void)state;
    /* Without a valid method it cannot be recognised as a notification:
     * JSON-RPC 2.0 answers an Invalid Request with id null. */
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\"}",
                    "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"Invalid "
                    "Request: method is required\"},\"id\":null}");
}

/* ---- batches ------------------------------------------------------------- */

static void test_batch_mixed(void **state)
{
    (void)state;
    EXPECT_RESPONSE(
        "[{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"a\":1},\"id\":1},"
        "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"b\":2}},"
        "{\"jsonrpc\":\"2.0\",\"method\":\"fail\",\"id\":\"f\"},"
        "{\"jsonrpc\":\"2.0\",\"method\":\"silent\"},"
        "{\"jsonrpc\":\"2.0\",\"method\":\"nope\",\"id\":\"q\"},"
        "5,"
        "{\"jsonrpc\":\"2.0\",\"method\":\"silent\",\"id\":null}]",
        "[{\"jsonrpc\":\"2.0\",\"result\":{\"a\":1},\"id\":1},"
        "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32000,\"message\":\"boom 7\"},\"id\":\"f\"},"
        "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32601,\"message\":\"Method not found: "
        "nope\"},\"id\":\"q\"},"
        "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"Invalid Request: expected "
        "a JSON object\"},\"id\":null},"
        "{\"jsonrpc\":\"2.0\",\"result\":null,\"id\":null}]");
}

static void test_batch_notification_first_and_last(void **state)
{
    (void)state;
    EXPECT_RESPONSE("[{\"jsonrpc\":\"2.0\",\"method\":\"silent\"},"
                    "{\"jsonrpc\":\"2.0\",\"method\":\"silent\",\"id\":1},"
                    "{\"jsonrpc\":\"2.0\",\"method\":\"fail\"}]",
                    "[{\"jsonrpc\":\"2.0\",\"result\":null,\"id\":1}]");
}

static void test_batch_all_notifications_gives_nothing(void **state)
{
    (void)state;
    EXPECT_RESPONSE("[{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"a\":1}},"
                    "{\"jsonrpc\":\"2.0\",\"method\":\"fail\"},"
                    "{\"jsonrpc\":\"2.0\",\"method\":\"nope\"}]",
                    "");
}

static void test_empty_batch_is_invalid(void **state)
{
    (void)state;
    EXPECT_RESPONSE("[]", "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"Invalid "
                          "Request: empty batch\"},\"id\":null}");
}

static void test_nested_batch_items_are_invalid(void **state)
{
    (void)state;
    EXPECT_RESPONSE("[[],[{\"method\":\"echo\",\"id\":1}]]",
                    "[{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"Invalid "
                    "Request: expected a JSON object\"},\"id\":null},"
                    "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"Invalid "
                    "Request: expected a JSON object\"},\"id\":null}]");
}

/* ---- -32600 -------------------------------------------------------------- */

static void test_invalid_requests(void **state)
{
    (void)state;
    static const struct {
        const char *req, *resp;
    } cases[] = {
        {"42", "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"Invalid Request: "
               "expected a JSON object\"},\"id\":null}"},
        {"\"echo\"", "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"Invalid "
                     "Request: expected a JSON object\"},\"id\":null}"},
        {"null", "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"Invalid Request: "
                 "expected a JSON object\"},\"id\":null}"},
        {"{\"jsonrpc\":\"1.0\",\"method\":\"echo\",\"id\":1}",
         "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"Invalid Request: jsonrpc "
         "must be \\\"2.0\\\"\"},\"id\":1}"},
        {"{\"jsonrpc\":2.0,\"method\":\"echo\",\"id\":1}",
         "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"Invalid Request: jsonrpc "
         "must be \\\"2.0\\\"\"},\"id\":1}"},
        {"{\"jsonrpc\":\"2.0\",\"id\":\"m\"}",
         "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"Invalid Request: method "
         "is required\"},\"id\":\"m\"}"},
        {"{\"jsonrpc\":\"2.0\",\"method\":7,\"id\":\"m\"}",
         "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"Invalid Request: method "
         "must be a string\"},\"id\":\"m\"}"},
        {"{\"jsonrpc\":\"2.0\",\"method\":null,\"id\":\"m\"}",
         "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"Invalid Request: method "
         "must be a string\"},\"id\":\"m\"}"},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":\"a=1\",\"id\":2}",
         "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"Invalid Request: params "
         "must be an object or an array\"},\"id\":2}"},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":3,\"id\":2}",
         "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"Invalid Request: params "
         "must be an object or an array\"},\"id\":2}"},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":{\"a\":1}}",
         "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"Invalid Request: id must "
         "be a string, a number or null\"},\"id\":null}"},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":[1]}",
         "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"Invalid Request: id must "
         "be a string, a number or null\"},\"id\":null}"},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":true}",
         "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":\"Invalid Request: id must "
         "be a string, a number or null\"},\"id\":null}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = run(cases[i].req);
        if (strcmp(got, cases[i].resp) != 0)
            fail_msg("request %s\n  expected %s\n  got      %s", cases[i].req, cases[i].resp, got);
        free(got);
    }
}

/* ---- -32601 / -32602 ----------------------------------------------------- */

static void test_method_not_found_names_method(void **state)
{
    (void)state;
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"persona.get\",\"id\":9}",
                    "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32601,\"message\":\"Method not "
                    "found: persona.get\"},\"id\":9}");
    /* Lookup is exact: case and prefixes do not match. */
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"ECHO\",\"id\":9}",
                    "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32601,\"message\":\"Method not "
                    "found: ECHO\"},\"id\":9}");
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"fai\",\"id\":9}",
                    "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32601,\"message\":\"Method not "
                    "found: fai\"},\"id\":9}");
    /* A name with characters to escape still yields valid JSON. */
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"a\\\"b\\n\",\"id\":9}",
                    "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32601,\"message\":\"Method not "
                    "found: a\\\"b\\n\"},\"id\":9}");
}

static void test_long_unknown_method_name_is_valid_json(void **state)
{
    (void)state;
    char req[1200];
    char name[1001];
    memset(name, 'm', 1000);
    name[1000] = 0;
    snprintf(req, sizeof req, "{\"jsonrpc\":\"2.0\",\"method\":\"%s\",\"id\":1}", name);
    char *got = run(req);
    jarena ar;
    jarena_init(&ar);
    json_error err;
    jv *v = json_parse(&ar, got, strlen(got), 0, JSON_DEFAULT_MAX_DEPTH, &err);
    assert_non_null(v);
    const jv *e = jv_get(v, "error");
    assert_non_null(e);
    assert_int_equal(jv_get(e, "code")->u.i, RPC_METHOD_NOT_FOUND);
    assert_true(strncmp(jv_get(e, "message")->u.s, "Method not found: mmm", 21) == 0);
    jarena_free(&ar);
    free(got);
}

static void test_positional_params_rejected(void **state)
{
    (void)state;
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":[1,2],\"id\":1}",
                    "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32602,\"message\":\"Invalid params: "
                    "params must be an object of named parameters\"},\"id\":1}");
    EXPECT_RESPONSE("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":[],\"id\":1}",
                    "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32602,\"message\":\"Invalid params: "
                    "params must be an object of named parameters\"},\"id\":1}");
}

static void test_write_error_with_data(void **state)
{
    (void)state;
    jw out;
    jw_init(&out, 0, 64);
    rpc_write_error(&out, NULL, RPC_PARSE_ERROR, "Parse error", "unexpected end");
    char *text = strndup(jw_data(&out), jw_size(&out));
    assert_string_equal(text, "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32700,\"message\":\"Parse "
                              "error\",\"data\":\"unexpected end\"},\"id\":null}");
    free(text);
    jw_free(&out);
}

/* ---- table, rpc_message_where -------------------------------------------- */

static void test_lookup(void **state)
{
    (void)state;
    for (int i = 0; i < N_TEST_METHODS; i++) {
        int idx = -2;
        const rpc_method *m = rpc_lookup(g_test_methods[i].name, &idx);
        assert_ptr_equal(m, &g_test_methods[i]);
        assert_int_equal(idx, i); /* index into the caller's table, not the sorted one */
    }
    int idx = 5;
    assert_null(rpc_lookup("nope", &idx));
    assert_int_equal(idx, -1);
    assert_null(rpc_lookup("", NULL));
    assert_null(rpc_lookup("zzz", NULL));
    assert_null(rpc_lookup("a", NULL));
}

static rpc_where where_of(const char *json)
{
    jarena ar;
    jarena_init(&ar);
    json_error err;
    jv *msg = json_parse(&ar, json, strlen(json), 0, JSON_DEFAULT_MAX_DEPTH, &err);
    assert_non_null(msg);
    rpc_session *s = rpc_session_new(1);
    rpc_where w = rpc_message_where(&g_app, s, msg);
    rpc_session_unref(s);
    jarena_free(&ar);
    return w;
}

static void test_message_where(void **state)
{
    (void)state;
    assert_int_equal(where_of("{\"method\":\"echo\",\"id\":1}"), RPC_INLINE);
    assert_int_equal(where_of("{\"method\":\"silent\",\"id\":1}"), RPC_WORKER);
    assert_int_equal(where_of("{\"method\":\"silent\"}"), RPC_WORKER);
    assert_int_equal(where_of("{\"method\":\"nope\",\"id\":1}"), RPC_INLINE);
    assert_int_equal(where_of("{\"method\":5,\"id\":1}"), RPC_INLINE);
    assert_int_equal(where_of("{\"id\":1}"), RPC_INLINE);
    assert_int_equal(where_of("17"), RPC_INLINE);
    assert_int_equal(where_of("[]"), RPC_INLINE);
    assert_int_equal(where_of("[{\"method\":\"echo\"},{\"method\":\"fail\",\"id\":2}]"),
                     RPC_INLINE);
    /* One worker method anywhere in a batch sends the whole batch to a worker. */
    assert_int_equal(where_of("[{\"method\":\"echo\"},3,{\"method\":\"silent\",\"id\":2}]"),
                     RPC_WORKER);
    assert_int_equal(where_of("[{\"method\":\"silent\"},{\"method\":\"echo\"}]"), RPC_WORKER);
}

static void test_message_where_inline_if(void **state)
{
    (void)state;
    g_inline_if_calls = 0;
    assert_int_equal(where_of("{\"method\":\"maybe\",\"params\":{\"cached\":true},\"id\":1}"),
                     RPC_INLINE);
    assert_int_equal(g_inline_if_calls, 1);
    assert_int_equal(where_of("{\"method\":\"maybe\",\"params\":{\"cached\":false},\"id\":1}"),
                     RPC_WORKER);
    /* absent, null or positional params reach the hook as NULL */
    g_inline_if_params = (const jv *)1;
    assert_int_equal(where_of("{\"method\":\"maybe\",\"id\":1}"), RPC_WORKER);
    assert_null(g_inline_if_params);
    g_inline_if_params = (const jv *)1;
    assert_int_equal(where_of("{\"method\":\"maybe\",\"params\":[true],\"id\":1}"), RPC_WORKER);
    assert_null(g_inline_if_params);
    g_inline_if_params = (const jv *)1;
    assert_int_equal(where_of("{\"method\":\"maybe\",\"params\":null,\"id\":1}"), RPC_WORKER);
    assert_null(g_inline_if_params);
    /* a batch is inline only when every worker method in it can be */
    assert_int_equal(where_of("[{\"method\":\"maybe\",\"params\":{\"cached\":true}},"
                              "{\"method\":\"echo\",\"id\":1}]"),
                     RPC_INLINE);
    assert_int_equal(where_of("[{\"method\":\"maybe\",\"params\":{\"cached\":true}},"
                              "{\"method\":\"maybe\",\"params\":{},\"id\":1}]"),
                     RPC_WORKER);
    assert_int_equal(where_of("[{\"method\":\"maybe\",\"params\":{\"cached\":true}},"
                              "{\"method\":\"silent\",\"id\":1}]"),
                     RPC_WORKER);
    /* the hook is not consulted for methods that are inline anyway */
    g_inline_if_calls = 0;
    assert_int_equal(where_of("{\"method\":\"inline_with_hook\",\"params\":{},\"id\":1}"),
                     RPC_INLINE);
    assert_int_equal(g_inline_if_calls, 0);
}

/* ---- parameter helpers --------------------------------------------------- */

typedef struct pcall {
    jarena ar;
    jw out;
    rpc_call c;
} pcall;

/* params_json NULL means "no params at all". */
static pcall *pc_new(const char *params_json)
{
    pcall *p = calloc(1, sizeof *p);
    assert_non_null(p);
    jarena_init(&p->ar);
    jw_init(&p->out, 0, 64);
    p->c.app = &g_app;
    p->c.method = "test";
    p->c.out = &p->out;
    p->c.arena = &p->ar;
    if (params_json) {
        json_error err;
        jv *v =
            json_parse(&p->ar, params_json, strlen(params_json), 0, JSON_DEFAULT_MAX_DEPTH, &err);
        if (!v) fail_msg("params do not parse: %s", params_json);
        p->c.params = v;
    }
    return p;
}

static void pc_free(pcall *p)
{
    jw_free(&p->out);
    jarena_free(&p->ar);
    free(p);
}

/* Assert the call failed with -32602 and exactly `msg`. */
static void pc_expect_fail(pcall *p, int rc, const char *msg)
{
    assert_int_equal(rc, -1);
    assert_int_equal(p->c.err_code, RPC_INVALID_PARAMS);
    assert_string_equal(p->c.err_msg, msg);
}

static void test_param_str(void **state)
{
    (void)state;
    const char *s = "sentinel";
    pcall *p = pc_new("{\"name\":\"Aria\",\"empty\":\"\",\"num\":5,\"nul\":null,\"obj\":{}}");
    assert_int_equal(rpc_param_str(&p->c, "name", true, &s), 0);
    assert_string_equal(s, "Aria");
    assert_int_equal(p->c.err_code, 0);
    /* optional: absent and null give NULL; empty is allowed */
    assert_int_equal(rpc_param_str(&p->c, "absent", false, &s), 0);
    assert_null(s);
    assert_int_equal(rpc_param_str(&p->c, "nul", false, &s), 0);
    assert_null(s);
    assert_int_equal(rpc_param_str(&p->c, "empty", false, &s), 0);
    assert_string_equal(s, "");
    pc_free(p);

    p = pc_new("{\"nul\":null}");
    pc_expect_fail(p, rpc_param_str(&p->c, "absent", true, &s),
                   "Invalid params: 'absent' is required");
    assert_null(s);
    pc_free(p);
    p = pc_new("{\"nul\":null}");
    pc_expect_fail(p, rpc_param_str(&p->c, "nul", true, &s), "Invalid params: 'nul' is required");
    pc_free(p);
    p = pc_new("{\"empty\":\"\"}");
    pc_expect_fail(p, rpc_param_str(&p->c, "empty", true, &s),
                   "Invalid params: 'empty' must not be empty");
    pc_free(p);
    p = pc_new("{\"num\":5}");
    pc_expect_fail(p, rpc_param_str(&p->c, "num", false, &s),
                   "Invalid params: 'num' must be a string, got integer");
    pc_free(p);
    p = pc_new("{\"obj\":{}}");
    pc_expect_fail(p, rpc_param_str(&p->c, "obj", true, &s),
                   "Invalid params: 'obj' must be a string, got object");
    pc_free(p);
    p = pc_new("{\"b\":false}");
    pc_expect_fail(p, rpc_param_str(&p->c, "b", true, &s),
                   "Invalid params: 'b' must be a string, got boolean");
    pc_free(p);
    /* No params at all. */
    p = pc_new(NULL);
    assert_int_equal(rpc_param_str(&p->c, "name", false, &s), 0);
    assert_null(s);
    pc_expect_fail(p, rpc_param_str(&p->c, "name", true, &s), "Invalid params: 'name' is required");
    pc_free(p);
}

static void test_param_int(void **state)
{
    (void)state;
    int64_t v = -99;
    pcall *p = pc_new("{\"a\":10,\"b\":10.0,\"c\":null,\"lo\":1,\"hi\":20,\"neg\":-5,"
                      "\"big\":9223372036854775807}");
    assert_int_equal(rpc_param_int(&p->c, "a", 1, 20, 7, &v), 0);
    assert_int_equal(v, 10);
    assert_int_equal(rpc_param_int(&p->c, "b", 1, 20, 7, &v), 0); /* 10.0 is an integer */
    assert_int_equal(v, 10);
    assert_int_equal(rpc_param_int(&p->c, "c", 1, 20, 7, &v), -1); /* null is not a number */
    assert_non_null(strstr(p->c.err_msg, "'c'"));
    p->c.err_code = 0;
    assert_int_equal(rpc_param_int(&p->c, "missing", 1, 20, 7, &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(rpc_param_int(&p->c, "lo", 1, 20, 7, &v), 0); /* bounds inclusive */
    assert_int_equal(v, 1);
    assert_int_equal(rpc_param_int(&p->c, "hi", 1, 20, 7, &v), 0);
    assert_int_equal(v, 20);
    assert_int_equal(rpc_param_int(&p->c, "neg", -10, 0, 0, &v), 0);
    assert_int_equal(v, -5);
    assert_int_equal(rpc_param_int(&p->c, "big", INT64_MIN, INT64_MAX, 0, &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(p->c.err_code, 0);
    pc_free(p);

    static const struct {
        const char *params, *msg;
    } bad[] = {
        {"{\"n\":10.5}", "Invalid params: 'n' must be an integer, got number"},
        {"{\"n\":0.1}", "Invalid params: 'n' must be an integer, got number"},
        {"{\"n\":1e300}", "Invalid params: 'n' must be an integer, got number"},
        {"{\"n\":\"10\"}", "Invalid params: 'n' must be an integer, got string"},
        {"{\"n\":true}", "Invalid params: 'n' must be an integer, got boolean"},
        {"{\"n\":[10]}", "Invalid params: 'n' must be an integer, got array"},
        {"{\"n\":21}", "Invalid params: 'n' must be between 1 and 20, got 21"},
        {"{\"n\":0}", "Invalid params: 'n' must be between 1 and 20, got 0"},
        {"{\"n\":-3}", "Invalid params: 'n' must be between 1 and 20, got -3"},
        {"{\"n\":21.0}", "Invalid params: 'n' must be between 1 and 20, got 21"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = pc_new(bad[i].params);
        v = 12345;
        int rc = rpc_param_int(&p->c, "n", 1, 20, 7, &v);
        if (rc != -1 || p->c.err_code != RPC_INVALID_PARAMS || strcmp(p->c.err_msg, bad[i].msg))
            fail_msg("params %s: rc=%d code=%d msg='%s', expected '%s'", bad[i].params, rc,
                     p->c.err_code, p->c.err_msg, bad[i].msg);
        assert_int_equal(v, 7); /* *out holds the default, not the rejected value */
        pc_free(p);
    }
}

static void test_param_num(void **state)
{
    (void)state;
    double d = -1;
    pcall *p = pc_new("{\"x\":0.25,\"i\":1,\"n\":null}");
    assert_int_equal(rpc_param_num(&p->c, "x", 0, 1, 0.5, &d), 0);
    assert_true(d == 0.25);
    assert_int_equal(rpc_param_num(&p->c, "i", 0, 1, 0.5, &d), 0); /* integers are numbers */
    assert_true(d == 1.0);
    assert_int_equal(rpc_param_num(&p->c, "n", 0, 1, 0.5, &d), -1); /* null is not a number */
    p->c.err_code = 0;
    assert_int_equal(rpc_param_num(&p->c, "absent", 0, 1, 0.5, &d), 0);
    assert_true(d == 0.5);
    pc_free(p);

    p = pc_new("{\"x\":1.5}");
    pc_expect_fail(p, rpc_param_num(&p->c, "x", 0, 1, 0.5, &d),
                   "Invalid params: 'x' must be between 0 and 1");
    pc_free(p);
    p = pc_new("{\"x\":-0.001}");
    pc_expect_fail(p, rpc_param_num(&p->c, "x", 0, 1, 0.5, &d),
                   "Invalid params: 'x' must be between 0 and 1");
    pc_free(p);
    p = pc_new("{\"x\":\"0.5\"}");
    pc_expect_fail(p, rpc_param_num(&p->c, "x", 0, 1, 0.5, &d),
                   "Invalid params: 'x' must be a number, got string");
    pc_free(p);
}

static void test_param_bool(void **state)
{
    (void)state;
    bool b = false;
    pcall *p = pc_new("{\"t\":true,\"f\":false,\"n\":null}");
    assert_int_equal(rpc_param_bool(&p->c, "t", false, &b), 0);
    assert_true(b);
    assert_int_equal(rpc_param_bool(&p->c, "f", true, &b), 0);
    assert_false(b);
    assert_int_equal(rpc_param_bool(&p->c, "n", true, &b), -1); /* null is not a boolean */
    p->c.err_code = 0;
    assert_int_equal(rpc_param_bool(&p->c, "absent", false, &b), 0);
    assert_false(b);
    pc_free(p);
    p = pc_new("{\"t\":1}");
    pc_expect_fail(p, rpc_param_bool(&p->c, "t", false, &b),
                   "Invalid params: 't' must be a boolean, got integer");
    pc_free(p);
    p = pc_new("{\"t\":\"true\"}");
    pc_expect_fail(p, rpc_param_bool(&p->c, "t", false, &b),
                   "Invalid params: 't' must be a boolean, got string");
    pc_free(p);
}

static void test_param_obj_arr(void **state)
{
    (void)state;
    const jv *o = (const jv *)1;
    pcall *p = pc_new("{\"o\":{\"k\":1},\"a\":[1,2],\"n\":null}");
    assert_int_equal(rpc_param_obj(&p->c, "o", &o), 0);
    assert_non_null(o);
    assert_int_equal(o->type, JV_OBJECT);
    assert_int_equal(o->len, 1);
    assert_int_equal(rpc_param_arr(&p->c, "a", &o), 0);
    assert_int_equal(o->type, JV_ARRAY);
    assert_int_equal(o->len, 2);
    assert_int_equal(rpc_param_obj(&p->c, "n", &o), 0);
    assert_null(o);
    assert_int_equal(rpc_param_arr(&p->c, "absent", &o), 0);
    assert_null(o);
    pc_free(p);
    p = pc_new("{\"o\":[1]}");
    pc_expect_fail(p, rpc_param_obj(&p->c, "o", &o),
                   "Invalid params: 'o' must be an object, got array");
    assert_null(o);
    pc_free(p);
    p = pc_new("{\"o\":\"{}\"}");
    pc_expect_fail(p, rpc_param_obj(&p->c, "o", &o),
                   "Invalid params: 'o' must be an object, got string");
    pc_free(p);
    p = pc_new("{\"a\":{}}");
    pc_expect_fail(p, rpc_param_arr(&p->c, "a", &o),
                   "Invalid params: 'a' must be an array, got object");
    pc_free(p);
}

static void test_param_duplicate_key_first_wins(void **state)
{
    (void)state;
    int64_t v = 0;
    pcall *p = pc_new("{\"n\":3,\"n\":\"x\"}");
    assert_int_equal(rpc_param_int(&p->c, "n", 0, 10, 0, &v), 0);
    assert_int_equal(v, 3);
    pc_free(p);
}

static void test_rpc_fail_formats_and_truncates(void **state)
{
    (void)state;
    pcall *p = pc_new(NULL);
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    assert_int_equal(rpc_fail(&p->c, RPC_LLM_ERROR, "%s", big), -1);
    assert_int_equal(p->c.err_code, RPC_LLM_ERROR);
    assert_int_equal(strlen(p->c.err_msg), sizeof p->c.err_msg - 1);
    pc_free(p);
}

/* ---- sessions ------------------------------------------------------------ */

static void test_session_current(void **state)
{
    (void)state;
    rpc_session *s = rpc_session_new(77);
    assert_int_equal(s->id, 77);
    assert_int_equal(atomic_load(&s->refs), 1);
    char out[40];
    memset(out, 'z', sizeof out);
    assert_false(rpc_session_current(s, out));
    assert_string_equal(out, "");

    rpc_session_set_current(s, "11111111-2222-4333-8444-555555555555");
    assert_true(rpc_session_current(s, out));
    assert_string_equal(out, "11111111-2222-4333-8444-555555555555");

    rpc_session_forget(s, "someone-else"); /* not current: kept */
    assert_true(rpc_session_current(s, out));
    rpc_session_forget(s, "11111111-2222-4333-8444-55555555555"); /* prefix: kept */
    assert_true(rpc_session_current(s, out));
    rpc_session_forget(s, "11111111-2222-4333-8444-555555555555");
    assert_false(rpc_session_current(s, out));
    assert_string_equal(out, "");

    rpc_session_set_current(s, "abc");
    rpc_session_set_current(s, NULL); /* NULL clears */
    assert_false(rpc_session_current(s, out));

    /* An over-long id is truncated to the 39 bytes that fit, never overflows. */
    rpc_session_set_current(s, "0123456789012345678901234567890123456789-overflow");
    assert_true(rpc_session_current(s, out));
    assert_int_equal(strlen(out), 39);
    assert_memory_equal(out, "012345678901234567890123456789012345678", 39);
    rpc_session_unref(s);
}

static void test_session_refcount(void **state)
{
    (void)state;
    rpc_session *s = rpc_session_new(1);
    rpc_session_ref(s);
    rpc_session_ref(s);
    assert_int_equal(atomic_load(&s->refs), 3);
    rpc_session_unref(s);
    assert_int_equal(atomic_load(&s->refs), 2);
    rpc_session_set_current(s, "still-alive"); /* usable while referenced */
    rpc_session_unref(s);
    assert_int_equal(atomic_load(&s->refs), 1);
    char out[40];
    assert_true(rpc_session_current(s, out));
    assert_string_equal(out, "still-alive");
    rpc_session_unref(s);    /* last reference frees (LeakSanitizer checks) */
    rpc_session_unref(NULL); /* tolerated */
}

static void test_sessions_are_independent_through_execute(void **state)
{
    (void)state;
    rpc_session *a = rpc_session_new(1), *b = rpc_session_new(2);
    rpc_session_set_current(a, "A");
    char *r = run_on(b, "{\"jsonrpc\":\"2.0\",\"method\":\"silent\",\"id\":1}");
    free(r);
    char out[40];
    assert_true(rpc_session_current(a, out));
    assert_string_equal(out, "A");
    assert_false(rpc_session_current(b, out));
    rpc_session_unref(a);
    rpc_session_unref(b);
}

/* ---- output buffer handling ---------------------------------------------- */

static void test_execute_appends_after_headroom(void **state)
{
    (void)state;
    /* The transport reserves headroom; the response must start right after it. */
    jarena ar, scratch;
    jarena_init(&ar);
    jarena_init(&scratch);
    const char *req = "{\"jsonrpc\":\"2.0\",\"method\":\"silent\",\"id\":1}";
    json_error err;
    jv *msg = json_parse(&ar, req, strlen(req), 0, JSON_DEFAULT_MAX_DEPTH, &err);
    assert_non_null(msg);
    jw out;
    jw_init(&out, 32, 0);
    rpc_session *s = rpc_session_new(1);
    rpc_execute(&g_app, s, NULL, msg, &out, &scratch, 0);
    assert_int_equal(out.headroom, 32);
    const char *want = "{\"jsonrpc\":\"2.0\",\"result\":null,\"id\":1}";
    assert_int_equal(jw_size(&out), strlen(want));
    assert_memory_equal(jw_data(&out), want, strlen(want));
    rpc_session_unref(s);
    jw_free(&out);
    jarena_free(&ar);
    jarena_free(&scratch);
}

/* A sink that keeps what it is sent (frames after their headroom). */
typedef struct rec_sink {
    rpc_sink base;
    char frames[4][256];
    int nframes, refs, watched, finished;
} rec_sink;

static void rec_send(rpc_sink *s, jw *frame)
{
    rec_sink *r = (rec_sink *)s;
    assert_int_equal(frame->headroom, s->headroom);
    assert_true(r->nframes < 4 && jw_size(frame) < sizeof r->frames[0]);
    memcpy(r->frames[r->nframes], jw_data(frame), jw_size(frame));
    r->frames[r->nframes++][jw_size(frame)] = 0;
    jw_free(frame); /* the sink owns it */
}
static void rec_finish(rpc_sink *s)
{
    ((rec_sink *)s)->finished++;
}
static void rec_ref(rpc_sink *s)
{
    ((rec_sink *)s)->refs++;
}
static void rec_unref(rpc_sink *s)
{
    ((rec_sink *)s)->refs--;
}
static void rec_watch(rpc_sink *s, rpc_deferred *d)
{
    (void)d;
    ((rec_sink *)s)->watched++;
}
static void rec_unwatch(rpc_sink *s, rpc_deferred *d)
{
    (void)d;
    ((rec_sink *)s)->watched--;
}
static const rpc_sink_ops g_rec_ops = {rec_send,  rec_finish, rec_ref,
                                       rec_unref, rec_watch,  rec_unwatch};

static void test_deferred_result_in_place_equals_copy(void **state)
{
    (void)state;
    /* A result written in place (streamed tokens) leaves as the same frame as one
     * handed over as text, with the request's id and the sink's headroom. */
    rec_sink sink = {.base = {&g_rec_ops, 16}};
    jarena ar;
    jarena_init(&ar);
    json_error err;
    jv *id = json_parse(&ar, "\"req-7\"", 7, 0, JSON_DEFAULT_MAX_DEPTH, &err);
    assert_non_null(id);
    rpc_call c = {.app = &g_app, .sink = &sink.base, .can_defer = true, .req_id = id};
    rpc_deferred *d = rpc_defer(&c, true, id);
    assert_non_null(d);
    assert_int_equal(sink.refs, 1);
    assert_int_equal(sink.watched, 1);
    const char *ev = "{\"event_type\":\"stream_chunk\",\"chunk\":\"Hi\"}";
    rpc_deferred_result(d, ev, strlen(ev));
    jw w = rpc_deferred_result_begin(d);
    jw_obj_begin(&w);
    jw_kstr(&w, "event_type", "stream_chunk");
    jw_kstr(&w, "chunk", "Hi");
    jw_obj_end(&w);
    rpc_deferred_result_end(d, &w);
    assert_int_equal(sink.nframes, 2);
    assert_string_equal(sink.frames[0],
                        "{\"jsonrpc\":\"2.0\",\"result\":{\"event_type\":\"stream_chunk\","
                        "\"chunk\":\"Hi\"},\"id\":\"req-7\"}");
    assert_string_equal(sink.frames[1], sink.frames[0]);
    rpc_deferred_end(d, true);
    assert_int_equal(sink.refs, 0);
    assert_int_equal(sink.watched, 0);
    assert_int_equal(sink.finished, 1); /* ordered: the connection may go on */
    jarena_free(&ar);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deferred_result_in_place_equals_copy),
        cmocka_unit_test(test_success_has_no_error_key),
        cmocka_unit_test(test_error_has_no_result_key),
        cmocka_unit_test(test_failure_discards_partial_result),
        cmocka_unit_test(test_failure_without_code_is_internal_error),
        cmocka_unit_test(test_handler_writing_nothing_gives_null_result),
        cmocka_unit_test(test_params_null_is_invalid_absent_is_fine),
        cmocka_unit_test(test_jsonrpc_member_is_required),
        cmocka_unit_test(test_ids_echoed_with_their_type),
        cmocka_unit_test(test_error_echoes_id),
        cmocka_unit_test(test_notification_gives_no_output),
        cmocka_unit_test(test_invalid_notification_still_answered),
        cmocka_unit_test(test_batch_mixed),
        cmocka_unit_test(test_batch_notification_first_and_last),
        cmocka_unit_test(test_batch_all_notifications_gives_nothing),
        cmocka_unit_test(test_empty_batch_is_invalid),
        cmocka_unit_test(test_nested_batch_items_are_invalid),
        cmocka_unit_test(test_invalid_requests),
        cmocka_unit_test(test_method_not_found_names_method),
        cmocka_unit_test(test_long_unknown_method_name_is_valid_json),
        cmocka_unit_test(test_positional_params_rejected),
        cmocka_unit_test(test_write_error_with_data),
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_message_where),
        cmocka_unit_test(test_message_where_inline_if),
        cmocka_unit_test(test_param_str),
        cmocka_unit_test(test_param_int),
        cmocka_unit_test(test_param_num),
        cmocka_unit_test(test_param_bool),
        cmocka_unit_test(test_param_obj_arr),
        cmocka_unit_test(test_param_duplicate_key_first_wins),
        cmocka_unit_test(test_rpc_fail_formats_and_truncates),
        cmocka_unit_test(test_session_current),
        cmocka_unit_test(test_session_refcount),
        cmocka_unit_test(test_sessions_are_independent_through_execute),
        cmocka_unit_test(test_execute_appends_after_headroom),
    };
    return cmocka_run_group_tests(tests, setup_methods, NULL);
}
