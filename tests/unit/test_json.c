/*
 * test_json.c - unit tests for the JSON module: the arena (json_arena.c),
 * the simdjson adapter behind json_parse() (json_simd.cpp) and the writer
 * (jw.c).
 *
 * Layout: parser tests first (valid documents, then every rejection class
 * with its message), then the writer (escaping, UTF-8 repair, commas,
 * numbers, buffer management), then properties that tie both together
 * (parse -> jw_value -> parse is the identity; random strings and doubles
 * survive the writer; mutated inputs never crash the parser). Each test gets
 * a fresh arena from setup(); messages are checked by substring so wording
 * around the key facts (kind of error, byte offset) can evolve.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/json.h"
#include "lib/jw.h"

static const char k_chat[] =
    "{\"jsonrpc\":\"2.0\",\"method\":\"persona.chat\",\"params\":{\"message\":\"Hello Aria! Tell "
    "me about the music of the elven kingdoms and your travels.\",\"token_budget\":500},"
    "\"id\":\"req-1732530000123\"}";

static jarena g_arena;
static json_error g_err;

static int setup(void **state)
{
    (void)state;
    jarena_init(&g_arena);
    memset(&g_err, 0, sizeof(g_err));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    jarena_free(&g_arena);
    return 0;
}

/* ---- helpers ------------------------------------------------------------- */

static jv *parse_n(const char *s, size_t n, int max_depth)
{
    return json_parse(&g_arena, s, n, n, max_depth, &g_err);
}

static jv *parse(const char *s)
{
    return parse_n(s, strlen(s), JSON_DEFAULT_MAX_DEPTH);
}

static void reject_n(const char *s, size_t n, const char *want)
{
    g_err.msg[0] = '\0';
    jv *v = parse_n(s, n, JSON_DEFAULT_MAX_DEPTH);
    if (v || !strstr(g_err.msg, want))
        fail_msg("input [%.*s]: want error containing \"%s\", got %s \"%s\"", (int)n, s, want,
                 v ? "success" : "error", g_err.msg);
}

static void reject(const char *s, const char *want)
{
    reject_n(s, strlen(s), want);
}

static void expect_str(const jv *v, const char *want, size_t n)
{
    assert_non_null(v);
    assert_int_equal(v->type, JV_STRING);
    assert_int_equal(v->len, n);
    assert_memory_equal(v->u.s, want, n);
    assert_int_equal(v->u.s[n], '\0');
}

/* Compares the writer's JSON text (after the headroom) with want. */
#define EXPECT_JSON(w, want)                                                                       \
    do {                                                                                           \
        assert_int_equal(jw_size(&(w)), strlen(want));                                             \
        assert_memory_equal(jw_data(&(w)), (want), strlen(want));                                  \
    } while (0)

static bool jv_equal(const jv *a, const jv *b)
{
    if (a->type != b->type || a->len != b->len) return false;
    switch (a->type) {
    case JV_NULL:
        return true;
    case JV_BOOL:
        return a->u.b == b->u.b;
    case JV_INT:
        return a->u.i == b->u.i;
    case JV_DOUBLE:
        return memcmp(&a->u.d, &b->u.d, sizeof(double)) == 0;
    case JV_STRING:
        return memcmp(a->u.s, b->u.s, a->len) == 0;
    case JV_ARRAY:
        for (uint32_t i = 0; i < a->len; i++)
            if (!jv_equal(&a->u.items[i], &b->u.items[i])) return false;
        return true;
    case JV_OBJECT:
        for (uint32_t i = 0; i < a->len; i++) {
            const jv_member *x = &a->u.members[i], *y = &b->u.members[i];
            if (x->klen != y->klen || memcmp(x->key, y->key, x->klen)) return false;
            if (!jv_equal(&x->val, &y->val)) return false;
        }
        return true;
    }
    return false;
}

/* ---- parser: valid input ------------------------------------------------- */

static void test_parse_scalars(void **state)
{
    (void)state;
    jv *v = parse("null");
    assert_int_equal(v->type, JV_NULL);
    assert_true(parse(" true ")->u.b);
    assert_int_equal(parse("true")->type, JV_BOOL);
    assert_false(parse("false")->u.b);
    v = parse("-12");
    assert_int_equal(v->type, JV_INT);
    assert_int_equal(v->u.i, -12);
    v = parse("1.5e2");
    assert_int_equal(v->type, JV_DOUBLE);
    assert_true(v->u.d == 150.0);
    assert_int_equal(parse("0")->u.i, 0);
    expect_str(parse("\"hi\""), "hi", 2);
    expect_str(parse("\"\""), "", 0);
    v = parse("[]");
    assert_int_equal(v->type, JV_ARRAY);
    assert_int_equal(v->len, 0);
    v = parse("{}");
    assert_int_equal(v->type, JV_OBJECT);
    assert_int_equal(v->len, 0);
}

static void test_parse_nested(void **state)
{
    (void)state;
    jv *v = parse("{\"a\":[1,2.5,\"x\",true,null,{\"b\":{}}],\"c\":-3,\"z\":false}");
    assert_non_null(v);
    assert_int_equal(v->type, JV_OBJECT);
    assert_int_equal(v->len, 3);
    assert_string_equal(v->u.members[0].key, "a");
    assert_string_equal(v->u.members[1].key, "c");
    assert_string_equal(v->u.members[2].key, "z");
    const jv *a = jv_get(v, "a");
    assert_int_equal(a->type, JV_ARRAY);
    assert_int_equal(a->len, 6);
    assert_int_equal(a->u.items[0].type, JV_INT);
    assert_true(a->u.items[1].type == JV_DOUBLE && a->u.items[1].u.d == 2.5);
    expect_str(&a->u.items[2], "x", 1);
    assert_int_equal(a->u.items[3].type, JV_BOOL);
    assert_int_equal(a->u.items[4].type, JV_NULL);
    const jv *b = jv_get(&a->u.items[5], "b");
    assert_true(b && b->type == JV_OBJECT && b->len == 0);
    assert_int_equal(jv_get(v, "c")->u.i, -3);
    assert_true(jv_is_num(jv_get(v, "c")));
    assert_true(jv_num(&a->u.items[1]) == 2.5);
}

static void test_parse_persona_chat(void **state)
{
    (void)state;
    jv *v = parse(k_chat);
    assert_non_null(v);
    expect_str(jv_get(v, "jsonrpc"), "2.0", 3);
    expect_str(jv_get(v, "method"), "persona.chat", 12);
    expect_str(jv_get(v, "id"), "req-1732530000123", 17);
    const jv *p = jv_get(v, "params");
    assert_int_equal(p->type, JV_OBJECT);
    const char *msg = "Hello Aria! Tell me about the music of the elven kingdoms and your travels.";
    expect_str(jv_get(p, "message"), msg, strlen(msg));
    const jv *tb = jv_get(p, "token_budget");
    assert_int_equal(tb->type, JV_INT);
    assert_int_equal(tb->u.i, 500);
}

static void test_parse_unicode(void **state)
{
    (void)state;
    expect_str(parse("\"\\u00e9\\u20ac\""), "\xC3\xA9\xE2\x82\xAC", 5);
    expect_str(parse("\"\\ud83d\\ude00\""), "\xF0\x9F\x98\x80", 4);
    expect_str(parse("\"\\uD83D\\uDE00!\""), "\xF0\x9F\x98\x80!", 5);
    expect_str(parse("\"a\\u0000b\""), "a\0b", 3);
    expect_str(parse("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\""), "\"\\/\b\f\n\r\t", 8);
    expect_str(parse("\"\xE6\x97\xA5\xF0\x9F\x98\x80\""), "\xE6\x97\xA5\xF0\x9F\x98\x80", 7);
    /* escaped key */
    jv *v = parse("{\"k\\u00e9y\":1}");
    assert_int_equal(v->u.members[0].klen, 4);
    assert_non_null(jv_get(v, "k\xC3\xA9y"));
}

static void test_parse_int_limits(void **state)
{
    (void)state;
    jv *v = parse("9223372036854775807");
    assert_int_equal(v->type, JV_INT);
    assert_true(v->u.i == INT64_MAX);
    v = parse("-9223372036854775808");
    assert_int_equal(v->type, JV_INT);
    assert_true(v->u.i == INT64_MIN);
    v = parse("9223372036854775808");
    assert_int_equal(v->type, JV_DOUBLE);
    assert_true(v->u.d == 9223372036854775808.0);
    v = parse("18446744073709551615");
    assert_int_equal(v->type, JV_DOUBLE);
    v = parse("-0");
    assert_true(jv_is_num(v) && jv_num(v) == 0.0);
    v = parse("1e308");
    assert_true(v->type == JV_DOUBLE && v->u.d == 1e308);
}

static void test_parse_padded_in_place(void **state)
{
    (void)state;
    size_t n = strlen(k_chat);
    char *exact = malloc(n); /* no padding: must be copied (ASan checks) */
    memcpy(exact, k_chat, n);
    assert_non_null(json_parse(&g_arena, exact, n, n, 64, &g_err));
    char *padded = malloc(n + JSON_PADDING); /* padding: read in place */
    memcpy(padded, k_chat, n);
    memset(padded + n, 'x', JSON_PADDING); /* padding content must not matter */
    jv *v = json_parse(&g_arena, padded, n, n + JSON_PADDING, 64, &g_err);
    assert_non_null(v);
    free(padded);
    free(exact);
    expect_str(jv_get(v, "id"), "req-1732530000123", 17);         /* copied out of the input */
    assert_non_null(json_parse(&g_arena, "[1]", 3, 3, 64, NULL)); /* err may be NULL */
    assert_null(json_parse(&g_arena, "[1", 2, 2, 64, NULL));
}

/* Input that ends right before an unmapped page: if json_parse() read it in
 * place instead of copying (cap == len), simdjson would fault. */
static void test_parse_unpadded_at_page_end(void **state)
{
    (void)state;
    static const char *docs[] = {"{\"a\":\"b\"}", "{\"a\":12345}", "[1,2,3]", "123", "true"};
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    assert_int_equal(mprotect(m + pg, pg, PROT_NONE), 0);
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        size_t n = strlen(docs[i]);
        char *p = memcpy(m + pg - n, docs[i], n);
        assert_non_null(json_parse(&g_arena, p, n, n, 64, &g_err));
    }
    munmap(m, 2 * pg);
}

/* ---- parser: rejections -------------------------------------------------- */

static void test_reject_utf8(void **state)
{
    (void)state;
    reject("\"ab\xFF\"", "invalid UTF-8 at byte 3");
    reject("[\"\xC0\xAF\"]", "invalid UTF-8 at byte 2");
    reject("\"\xE2\x82\"", "invalid UTF-8 at byte 1");
    reject("\"\xED\xA0\x80\xED\xB0\x80\"", "invalid UTF-8 at byte 1"); /* CESU-8 pair */
    reject("\"\xF4\x90\x80\x80\"", "invalid UTF-8");                   /* > U+10FFFF */
    reject("{\"k\xFF\":1}", "invalid UTF-8 at byte 3");
    reject("\xFF", "invalid UTF-8 at byte 0");
}

static void test_reject_strings(void **state)
{
    (void)state;
    reject("\"\\ud800\"", "lone surrogate");
    reject("\"\\udc00\"", "lone surrogate");
    reject("\"\\ud800\\u0041\"", "lone surrogate");
    reject("\"\\x\"", "invalid escape");
    reject("\"\\u12\"", "invalid escape");
    reject("\"a\tb\"", "control character");
    reject("\"abc", "unexpected end of input");
}

static void test_reject_trailing(void **state)
{
    (void)state;
    reject("{} x", "trailing content at byte 3");
    reject("[1]]", "trailing content at byte 3");
    reject("1 2", "trailing content at byte 2");
    reject("\"a\" \"b\"", "trailing content at byte 4");
    reject("{\"a\":1}}", "trailing content at byte 7");
    reject("true false", "trailing content at byte 5");
}

static void test_reject_truncated(void **state)
{
    (void)state;
    reject("{\"a\":1", "unexpected end of input");
    reject("[1,", "unexpected end of input");
    reject("{\"a\":", "unexpected end of input");
    reject("[", "unexpected end of input");
    reject("{\"a\":\"b", "unexpected end of input");
    size_t n = strlen(k_chat);
    for (size_t cut = 1; cut < n; cut++) {
        g_err.msg[0] = '\0';
        assert_null(parse_n(k_chat, cut, 64));
        assert_true(g_err.msg[0] != '\0');
    }
}

static void test_reject_syntax(void **state)
{
    (void)state;
    reject("tru", "invalid token at byte 0");
    reject("[nul]", "invalid token at byte 1");
    reject("[1 2]", "unexpected '2' at byte 3");
    reject("[1,]", "unexpected ']' at byte 3");
    reject("{,}", "unexpected ',' at byte 1");
    reject("{\"a\" 1}", "unexpected '1' at byte 5");
    reject("{\"a\" \"b\"}", "unexpected '\"' at byte 5");
    reject("{1:2}", "unexpected '1' at byte 1");
    reject("[1}", "unexpected '}' at byte 2");
    reject("{\"a\":1]", "unexpected ']' at byte 6");
    reject("[1:2]", "unexpected ':' at byte 2");
    reject("{\"a\"::1}", "unexpected ':' at byte 5");
    reject("[,1]", "unexpected ',' at byte 1");
    reject("]", "unexpected ']' at byte 0");
    reject(",", "unexpected ',' at byte 0");
    reject("[01]", "invalid number at byte 1");
    reject("1.", "invalid number at byte 0");
    reject("-", "invalid number at byte 0");
    reject("[1e400]", "number out of range at byte 1");
    reject("18446744073709551616", "number out of range at byte 0");
    reject("-9223372036854775809", "number out of range at byte 0");
    reject("{\"n\":123456789012345678901234567890}", "number out of range at byte 5");
}

static void test_reject_empty(void **state)
{
    (void)state;
    reject("", "empty input");
    reject("  \n\t ", "empty input");
    assert_null(json_parse(&g_arena, NULL, 0, 0, 64, &g_err));
    assert_non_null(strstr(g_err.msg, "empty input"));
}

static char *nest(int depth, char open, char close, const char *inner)
{
    size_t n = strlen(inner), total = 2 * (size_t)depth + n;
    char *s = malloc(total + 1);
    memset(s, open, (size_t)depth);
    memcpy(s + depth, inner, n);
    memset(s + depth + n, close, (size_t)depth);
    s[total] = '\0';
    return s;
}

static void test_depth_limit(void **state)
{
    (void)state;
    char *ok = nest(64, '[', ']', "1");
    assert_non_null(parse_n(ok, strlen(ok), 64));
    char *deep = nest(65, '[', ']', "1");
    assert_null(parse_n(deep, strlen(deep), 64));
    assert_string_equal(g_err.msg, "nesting deeper than 64");
    assert_null(parse_n(ok, strlen(ok), 63));
    assert_string_equal(g_err.msg, "nesting deeper than 63");
    assert_null(parse_n(deep, strlen(deep), 0)); /* <= 0 selects the default, 64 */
    assert_string_equal(g_err.msg, "nesting deeper than 64");
    free(ok);
    free(deep);
    /* objects count too */
    char obj[2048] = "", *p = obj;
    for (int i = 0; i < 65; i++) p += sprintf(p, "{\"a\":");
    p += sprintf(p, "1");
    for (int i = 0; i < 65; i++) *p++ = '}';
    *p = '\0';
    reject(obj, "nesting deeper than 64");
    /* deeper than simdjson's own limit (1024), balanced and unbalanced */
    char *huge = nest(2000, '[', ']', "");
    reject(huge, "nesting deeper than 64");
    free(huge);
    size_t n = 100000;
    char *opens = malloc(n);
    memset(opens, '[', n);
    reject_n(opens, n, "nesting deeper than 64");
    free(opens);
}

static void test_depth_above_simdjson_default(void **state)
{
    (void)state;
    char *s = nest(1500, '[', ']', "");
    assert_non_null(parse_n(s, strlen(s), 2000));
    assert_null(parse_n(s, strlen(s), 1499));
    assert_string_equal(g_err.msg, "nesting deeper than 1499");
    free(s);
}

/* ---- tree helpers and arena ---------------------------------------------- */

static void test_jv_get(void **state)
{
    (void)state;
    jv *v = parse("{\"a\":1,\"b\":2,\"a\":3,\"\":4}");
    assert_int_equal(v->len, 4);
    assert_int_equal(jv_get(v, "a")->u.i, 1);
    assert_int_equal(jv_get(v, "b")->u.i, 2);
    assert_int_equal(jv_get(v, "")->u.i, 4);
    assert_null(jv_get(v, "c"));
    assert_null(jv_get(v, "ab"));
    assert_null(jv_get(NULL, "a"));
    assert_null(jv_get(parse("[1]"), "a"));
    assert_string_equal(jv_type_name(JV_INT), "integer");
    assert_string_equal(jv_type_name(JV_DOUBLE), "number");
    assert_string_equal(jv_type_name(JV_STRING), "string");
    assert_string_equal(jv_type_name(JV_OBJECT), "object");
    assert_string_equal(jv_type_name(JV_ARRAY), "array");
    assert_string_equal(jv_type_name(JV_BOOL), "boolean");
    assert_string_equal(jv_type_name(JV_NULL), "null");
    assert_false(jv_is_str(NULL));
}

static void test_arena(void **state)
{
    (void)state;
    jarena a;
    jarena_init(&a);
    char *first = jarena_alloc(&a, 1);
    jarena_block *first_block = a.head;
    for (size_t i = 1; i < 3000; i++) {
        char *p = jarena_alloc(&a, i % 97 + 1);
        assert_int_equal((uintptr_t)p % 8, 0);
        memset(p, 0xAB, i % 97 + 1);
    }
    char *big = jarena_alloc(&a, 1 << 20);
    memset(big, 1, 1 << 20);
    assert_true(a.head != first_block);
    jarena_reset(&a);
    assert_ptr_equal(a.head, first_block);
    assert_int_equal(a.used, 0);
    assert_ptr_equal(jarena_alloc(&a, 5), first);
    char *s = jarena_strndup(&a, "hello world", 5);
    assert_string_equal(s, "hello");
    jarena_free(&a);
    assert_null(a.head);
    jarena_reset(&a); /* no-op on an empty arena */
    jarena_free(&a);
}

static void test_arena_reuse_across_parses(void **state)
{
    (void)state;
    jarena_block *first = NULL;
    for (int i = 0; i < 1000; i++) {
        jarena_reset(&g_arena);
        jv *v = parse(k_chat);
        assert_non_null(v);
        assert_int_equal(jv_get(jv_get(v, "params"), "token_budget")->u.i, 500);
        if (!first) first = g_arena.head;
        assert_ptr_equal(g_arena.head, first); /* one block, reused: no malloc */
    }
}

/* ---- writer -------------------------------------------------------------- */

static void test_writer_escaping(void **state)
{
    (void)state;
    jw w;
    jw_init(&w, 0, 0);
    jw_strn(&w, "a\"b\\c/\n\r\t\b\f\x01\x1f\x7f", 14);
    EXPECT_JSON(w, "\"a\\\"b\\\\c/\\n\\r\\t\\b\\f\\u0001\\u001f\x7f\"");
    jw_reset(&w);
    jw_str(&w, "line\xE2\x80\xA8sep\xE2\x80\xA9 \xC3\xA9\xF0\x9F\x98\x80"); /* valid: as-is */
    EXPECT_JSON(w, "\"line\xE2\x80\xA8sep\xE2\x80\xA9 \xC3\xA9\xF0\x9F\x98\x80\"");
    jw_reset(&w);
    jw_strn(&w, "a\0b", 3);
    EXPECT_JSON(w, "\"a\\u0000b\"");
    jw_reset(&w);
    jw_str(&w, NULL);
    jw_strn(&w, NULL, 0);
    EXPECT_JSON(w, "null,null");
    jw_free(&w);
}

/* Escapes valid UTF-8 text the plain way, one byte at a time. */
static size_t escape_ref(const char *in, size_t n, char *out)
{
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        const char *short_esc = c == '"'    ? "\\\""
                                : c == '\\' ? "\\\\"
                                : c == '\n' ? "\\n"
                                : c == '\r' ? "\\r"
                                : c == '\t' ? "\\t"
                                : c == '\b' ? "\\b"
                                : c == '\f' ? "\\f"
                                            : NULL;
        if (short_esc) {
            memcpy(out + o, short_esc, 2);
            o += 2;
        } else if (c < 0x20) {
            o += (size_t)sprintf(out + o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = 0;
    return o;
}

/* Random strings dense in quotes, backslashes, controls and multi-byte
 * characters, at every offset of the 16- and 8-byte steps of the plain-run
 * scan, against the byte-by-byte reference. */
static void test_writer_escaping_random(void **state)
{
    (void)state;
    static const char *const pieces[] = {
        "a",         "\"",     "\\",   "\n",       "\x01",
        "\x1f",      " ",      "\x7f", "\xC3\xA9", "\xF0\x9F\x98\x80",
        "xyzxyzxyz", "{\"k\":"};
    uint64_t r = 0x243F6A8885A308D3ULL;
    char in[512], want[4096];
    jw w;
    jw_init(&w, 0, 0);
    for (int t = 0; t < 20000; t++) {
        size_t n = 0;
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        int parts = (int)(r % 48);
        for (int k = 0; k < parts; k++) {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            const char *pc = pieces[r % (sizeof pieces / sizeof pieces[0])];
            memcpy(in + n, pc, strlen(pc));
            n += strlen(pc);
        }
        size_t wn = escape_ref(in, n, want);
        jw_reset(&w);
        jw_strn(&w, in, n);
        if (jw_size(&w) != wn || memcmp(jw_data(&w), want, wn) != 0)
            fail_msg("case %d: got %.*s, want %s", t, (int)jw_size(&w), jw_data(&w), want);
    }
    jw_free(&w);
}

static void test_writer_invalid_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {
        {"a\xFF"
         "b",
         "\"a\xEF\xBF\xBD"
         "b\""},
        {"\xC0\xAF", "\"\xEF\xBF\xBD\xEF\xBF\xBD\""},                 /* overlong: 2 bad bytes */
        {"x\xE2\x82", "\"x\xEF\xBF\xBD\""},                           /* truncated: 1 subpart */
        {"\xE2\x82x", "\"\xEF\xBF\xBDx\""},                           /* truncated mid-string */
        {"\xED\xA0\x80", "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""}, /* surrogate */
        {"\xF4\x90\x80\x80", "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""},
        {"\xF0\x9F\x98", "\"\xEF\xBF\xBD\""},
        {"\xE0\x80\xAF", "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""}, /* overlong 3-byte */
        {"\xF0\x80\x80\xAF", "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""},
    };
    jw w;
    jw_init(&w, 0, 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        jw_reset(&w);
        jw_str(&w, cases[i].in);
        EXPECT_JSON(w, cases[i].out);
        assert_non_null(parse_n(jw_data(&w), jw_size(&w), 64));
    }
    jw_free(&w);
    assert_int_equal(jw_utf8_prefix("ab\xC3\xA9", 4), 4);
    assert_int_equal(jw_utf8_prefix("ab\xC3", 3), 2);
    assert_int_equal(jw_utf8_prefix("\xF0\x9F\x98\x80\xFF", 5), 4);
    assert_int_equal(jw_utf8_prefix("\xED\x9F\xBF", 3), 3); /* U+D7FF ok */
    assert_int_equal(jw_utf8_prefix("\xED\xA0\x80", 3), 0);
    assert_int_equal(jw_utf8_prefix("", 0), 0);
}

static void test_writer_commas(void **state)
{
    (void)state;
    jw w;
    jw_init(&w, 0, 0);
    jw_obj_begin(&w);
    jw_key(&w, "a");
    jw_arr_begin(&w);
    jw_int(&w, 1);
    jw_int(&w, 2);
    jw_obj_begin(&w);
    jw_key(&w, "b");
    jw_null(&w);
    jw_obj_end(&w);
    jw_arr_begin(&w);
    jw_arr_end(&w);
    jw_bool(&w, true);
    jw_arr_end(&w);
    jw_key(&w, "c");
    jw_obj_begin(&w);
    jw_keyn(&w, "d\"", 2);
    jw_arr_begin(&w);
    jw_arr_end(&w);
    jw_obj_end(&w);
    jw_kstr(&w, "e", "x");
    jw_kint(&w, "f", -1);
    jw_kdouble(&w, "g", 0.5);
    jw_kbool(&w, "h", false);
    jw_key(&w, "r");
    jw_raw(&w, "{\"z\":1}", 7);
    jw_obj_end(&w);
    EXPECT_JSON(w, "{\"a\":[1,2,{\"b\":null},[],true],\"c\":{\"d\\\"\":[]},\"e\":\"x\",\"f\":-1,"
                   "\"g\":0.5,\"h\":false,\"r\":{\"z\":1}}");
    assert_non_null(parse_n(jw_data(&w), jw_size(&w), 64));
    /* prefixes appended verbatim do not get a comma */
    jw_reset(&w);
    jw_append(&w, "data: ", 6);
    jw_obj_begin(&w);
    jw_obj_end(&w);
    jw_append(&w, "\n\n", 2);
    jw_arr_begin(&w);
    jw_arr_end(&w);
    jw_append(&w, "[1,", 3);
    jw_int(&w, 2);
    jw_puts(&w, "]\n");
    EXPECT_JSON(w, "data: {}\n\n[][1,2]\n");
    jw_free(&w);
}

static void test_writer_ints(void **state)
{
    (void)state;
    static const struct {
        int64_t v;
        const char *s;
    } cases[] = {{0, "0"},
                 {7, "7"},
                 {-1, "-1"},
                 {10, "10"},
                 {99, "99"},
                 {100, "100"},
                 {-12345, "-12345"},
                 {1000000007, "1000000007"},
                 {INT64_MAX, "9223372036854775807"},
                 {INT64_MIN, "-9223372036854775808"}};
    jw w;
    jw_init(&w, 0, 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        jw_reset(&w);
        jw_int(&w, cases[i].v);
        EXPECT_JSON(w, cases[i].s);
    }
    jw_free(&w);
}

static void expect_double(double v, const char *want)
{
    jw w;
    jw_init(&w, 0, 0);
    jw_double(&w, v);
    if (jw_size(&w) != strlen(want) || memcmp(jw_data(&w), want, strlen(want)))
        fail_msg("%.17g: want %s, got %.*s", v, want, (int)jw_size(&w), jw_data(&w));
    jw_free(&w);
}

/* jw_double output must parse back (strtod) to exactly v. */
static void expect_double_roundtrip(double v)
{
    jw w;
    jw_init(&w, 0, 0);
    jw_double(&w, v);
    char buf[64];
    snprintf(buf, sizeof(buf), "%.*s", (int)jw_size(&w), jw_data(&w));
    jw_free(&w);
    if (strtod(buf, NULL) != v || signbit(strtod(buf, NULL)) != signbit(v))
        fail_msg("%.17g written as %s", v, buf);
}

static void test_writer_doubles(void **state)
{
    (void)state;
    expect_double(0.5, "0.5");
    expect_double(0.1, "0.1");
    expect_double(0.61, "0.61");
    expect_double(-2.25, "-2.25");
    expect_double(1e300, "1e+300");
    expect_double(-0.0, "-0.0");
    expect_double(0.0, "0.0");
    expect_double(1.0, "1.0");
    expect_double(100.0, "100.0");
    expect_double(123456789.123, "123456789.123");
    expect_double(0.000000015, "0.000000015");
    expect_double(1e-10, "1e-10");
    expect_double(1e15, "1e+15");
    expect_double(999999999999999.0, "999999999999999.0");
    expect_double(0.30000000000000004, "0.30000000000000004");
    expect_double(NAN, "null");
    expect_double(INFINITY, "null");
    expect_double(-INFINITY, "null");
    expect_double(1.0 / 3.0, "0.3333333333333333");
    expect_double_roundtrip(1.0 / 3.0);
    expect_double_roundtrip(2.0 / 3.0 * 1e9);
    expect_double_roundtrip(5e-324);
    expect_double_roundtrip(1.7976931348623157e308);
    expect_double_roundtrip(-0.0);
    expect_double_roundtrip(9007199254740993.0);
    /* the output always reads back as a double, never an integer */
    jw w;
    jw_init(&w, 0, 0);
    jw_double(&w, 1234567890123456.0);
    jv *v = parse_n(jw_data(&w), jw_size(&w), 64);
    assert_int_equal(v->type, JV_DOUBLE);
    assert_true(v->u.d == 1234567890123456.0);
    jw_free(&w);
}

static uint64_t g_rng = 0x9E3779B97F4A7C15u;

static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

static void test_writer_doubles_random(void **state)
{
    (void)state;
    for (int i = 0; i < 200000; i++) {
        uint64_t bits = rnd();
        double v;
        memcpy(&v, &bits, sizeof(v));
        if (isfinite(v)) expect_double_roundtrip(v);
        /* decimal-looking values exercise the fast path */
        double d = (double)(int64_t)(rnd() % 2000000000001ull - 1000000000000ll) /
                   pow(10.0, (double)(rnd() % 12));
        expect_double_roundtrip(d);
    }
}

static void test_writer_headroom(void **state)
{
    (void)state;
    jw w;
    jw_init(&w, 16, 8);
    assert_ptr_equal(jw_data(&w), w.buf + 16);
    assert_int_equal(jw_size(&w), 0);
    memset(w.buf, 'H', 16);
    jw_arr_begin(&w); /* at the start: no comma even though headroom bytes exist */
    for (int i = 0; i < 10000; i++) jw_int(&w, i);
    jw_arr_end(&w);
    assert_true(w.cap >= w.len);
    assert_ptr_equal(jw_data(&w), w.buf + 16);
    for (int i = 0; i < 16; i++) assert_int_equal(w.buf[i], 'H'); /* kept across growth */
    assert_memory_equal(jw_data(&w), "[0,1,2,", 7);
    jv *v = parse_n(jw_data(&w), jw_size(&w), 64);
    assert_int_equal(v->len, 10000);
    assert_int_equal(v->u.items[9999].u.i, 9999);
    size_t size = jw_size(&w);
    char *buf = jw_release(&w);
    assert_memory_equal(buf + 16, "[0,1,2,", 7);
    assert_int_equal(buf[16 + size - 1], ']');
    free(buf);
    assert_null(w.buf);
    assert_int_equal(jw_size(&w), 0);
    jw_int(&w, 5); /* a released writer is reusable */
    EXPECT_JSON(w, "5");
    assert_int_equal(w.len, 17);
    jw_free(&w);
    jw_null(&w); /* and so is a freed one */
    EXPECT_JSON(w, "null");
    jw_free(&w);
}

static void test_writer_truncate(void **state)
{
    (void)state;
    jw w;
    jw_init(&w, 4, 0);
    jw_arr_begin(&w);
    jw_int(&w, 1);
    jw_int(&w, 2);
    size_t mark = jw_size(&w);
    jw_obj_begin(&w);
    jw_key(&w, "half");
    jw_truncate(&w, mark); /* roll back the half-written object */
    jw_int(&w, 3);
    jw_arr_end(&w);
    EXPECT_JSON(w, "[1,2,3]");
    jw_truncate(&w, 100); /* beyond the size: ignored */
    EXPECT_JSON(w, "[1,2,3]");
    jw_truncate(&w, 0);
    assert_int_equal(jw_size(&w), 0);
    jw_int(&w, 9); /* back at the start: no comma */
    EXPECT_JSON(w, "9");
    jw_free(&w);
}

/* ---- properties ---------------------------------------------------------- */

static void roundtrip(const char *doc, bool same_text)
{
    jv *a = parse(doc);
    assert_non_null(a);
    jw w;
    jw_init(&w, 0, 0);
    jw_value(&w, a);
    jv *b = parse_n(jw_data(&w), jw_size(&w), 64);
    if (!b) fail_msg("re-parse of [%.*s]: %s", (int)jw_size(&w), jw_data(&w), g_err.msg);
    assert_true(jv_equal(a, b));
    if (same_text) EXPECT_JSON(w, doc);
    jw_free(&w);
}

static void test_roundtrip(void **state)
{
    (void)state;
    roundtrip(k_chat, true);
    roundtrip("{\"a\":[1,2.5,\"x\",true,null,{\"b\":{}}],\"c\":-3,\"a\":[]}", true);
    roundtrip("[\"\\u0000\\\"\\\\\\n\\u001f\xE2\x80\xA8\xF0\x9F\x98\x80\",-9223372036854775808]",
              true);
    roundtrip("[0.1,1e300,-0.0,1.0,123456789.123,0.3333333333333333,5e-324,1.5e-8]", false);
    roundtrip("{\"k\\u00e9\\\"y\":{\"\":[[],[{}]]}}", false);
    jw w;
    jw_init(&w, 0, 0);
    jw_value(&w, NULL);
    EXPECT_JSON(w, "null");
    jw_free(&w);
}

static void test_random_strings_roundtrip(void **state)
{
    (void)state;
    jw w;
    jw_init(&w, 0, 0);
    unsigned char s[64];
    for (int i = 0; i < 50000; i++) {
        size_t n = rnd() % sizeof(s);
        for (size_t j = 0; j < n; j++) {
            uint64_t r = rnd();
            s[j] = (r & 3) ? (unsigned char)(r >> 8) : (unsigned char)(0x20 + (r >> 8) % 95);
        }
        jw_reset(&w);
        jw_strn(&w, (const char *)s, n);
        jarena_reset(&g_arena);
        jv *v = parse_n(jw_data(&w), jw_size(&w), 64);
        if (!v) fail_msg("writer produced invalid JSON: %s", g_err.msg);
        if (jw_utf8_prefix((const char *)s, n) == n) expect_str(v, (const char *)s, n);
    }
    jw_free(&w);
}

static void test_mutations_do_not_crash(void **state)
{
    (void)state;
    size_t n = strlen(k_chat);
    char *buf = malloc(n + JSON_PADDING);
    static const char bytes[] = "{}[]\",:\\0-1e.tfnu \xFF\xC3";
    for (int i = 0; i < 30000; i++) {
        memcpy(buf, k_chat, n);
        for (int k = 0; k < 1 + (int)(rnd() % 3); k++)
            buf[rnd() % n] = bytes[rnd() % (sizeof(bytes) - 1)];
        size_t len = rnd() % (n + 1);
        jarena_reset(&g_arena);
        g_err.msg[0] = '\0';
        jv *v = json_parse(&g_arena, buf, len, (i & 1) ? n + JSON_PADDING : len, 64, &g_err);
        assert_true(v != NULL || g_err.msg[0] != '\0');
    }
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parse_scalars, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_nested, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_persona_chat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_unicode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_int_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_padded_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_unpadded_at_page_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reject_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reject_strings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reject_trailing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reject_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reject_syntax, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reject_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_depth_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_depth_above_simdjson_default, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jv_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arena, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arena_reuse_across_parses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_escaping_random, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_invalid_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_commas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_ints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_doubles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_doubles_random, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_headroom, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_truncate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_strings_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mutations_do_not_crash, setup, teardown),
    };
    return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
