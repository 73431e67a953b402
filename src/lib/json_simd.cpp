/*
 * json_simd.cpp - json_parse() on top of simdjson's DOM parser; the only C++
 * in the program. Built with -fno-exceptions: only error-code APIs are used.
 *
 * Design:
 * - One thread_local dom::parser per thread, so any thread may parse and its
 *   buffers are reused across calls. Documents above kOneOffBytes use a
 *   parser of their own, so a single huge request does not pin memory in a
 *   thread for good.
 * - If the caller's buffer has JSON_PADDING readable bytes after the JSON,
 *   simdjson reads it in place; otherwise simdjson copies it.
 * - The DOM is then walked into the C jv tree in the caller's arena, so
 *   nothing refers to the parser afterwards. Strings and keys are copied,
 *   NUL-terminated, into one pool of len bytes (see copy_str). The walk
 *   enforces max_depth (max_depth <= 0 means JSON_DEFAULT_MAX_DEPTH); int64
 *   values stay JV_INT, uint64 above INT64_MAX become JV_DOUBLE; simdjson
 *   itself rejects integers beyond that and doubles beyond the double range.
 * - simdjson gives an error code but no position. On the (cold) error path
 *   UTF-8 errors are located with jw_utf8_prefix() and structural/number/
 *   literal errors by json_diagnose(), a small re-scan against the grammar,
 *   so callers get "invalid UTF-8 at byte 17", "unexpected ']' at byte 3",
 *   "trailing content at byte 5", "unexpected end of input", "nesting deeper
 *   than 64", "number out of range at byte 9". That scanner is plain C
 *   (json_diag.c); the fast path is parse_with() and the convert_*() walk.
 */
#include <simdjson.h>

#include <cstdlib>
#include <cstring>
#include <string>

extern "C" {
#include "lib/json.h"
#include "lib/jw.h"
}

using namespace simdjson;

static_assert(JSON_PADDING >= SIMDJSON_PADDING, "JSON_PADDING too small for simdjson");
static constexpr size_t kOneOffBytes = 1 << 20;
static constexpr size_t kCountSaturated = 0xFFFFFF; /* simdjson's scope_count cap */

/* ---- error path: name what simdjson only numbered ----------------------- */

static const struct {
    error_code code;
    const char *msg;
} kMessages[] = {
    {EMPTY, "empty input"},
    {UNCLOSED_STRING, "unexpected end of input in string"},
    {UNESCAPED_CHARS, "unescaped control character in string"},
    {STRING_ERROR, "invalid escape in string (bad \\u or lone surrogate)"},
    {CAPACITY, "document too large"},
    {MEMALLOC, "out of memory"},
};

static void report(error_code code, const char *buf, size_t len, int max_depth, json_error *err)
{
    if (code == UTF8_ERROR) {
        json_fail(err, "invalid UTF-8 at byte %zu", jw_utf8_prefix(buf, len));
        return;
    }
    if (code == NUMBER_ERROR || code == TAPE_ERROR || code == DEPTH_ERROR || code == T_ATOM_ERROR ||
        code == F_ATOM_ERROR || code == N_ATOM_ERROR) {
        const char *fallback = code == NUMBER_ERROR ? "invalid number" : "invalid JSON";
        json_diagnose(buf, len, max_depth, fallback, err);
        return;
    }
    for (const auto &m : kMessages)
        if (m.code == code) return (void)json_fail(err, "%s", m.msg);
    json_fail(err, "%s", error_message(code));
}

/* ---- DOM -> jv ----------------------------------------------------------- */

struct walk {
    jarena *a;
    int max_depth;
    json_error *err;
    char *strings; /* pool for every string and key: see copy_str() */
};

/* Unescaped text plus its NUL never takes more bytes than the quoted input
 * did, so all strings of a document fit in one len-byte pool taken from the
 * arena up front: one allocation instead of one per string. */
static const char *copy_str(walk &w, std::string_view sv)
{
    char *p = w.strings;
    memcpy(p, sv.data(), sv.size());
    p[sv.size()] = '\0';
    w.strings += sv.size() + 1;
    return p;
}

static bool convert(walk &w, dom::element e, jv *out, int depth);

template <class C> static size_t count_of(C c)
{
    size_t n = c.size();
    if (n < kCountSaturated) return n;
    n = 0;
    for (auto x : c) (void)x, n++;
    return n;
}

static bool convert_array(walk &w, dom::array arr, jv *out, int depth)
{
    size_t n = count_of(arr), i = 0;
    jv *items = static_cast<jv *>(jarena_alloc(w.a, n * sizeof(jv)));
    for (dom::element x : arr)
        if (!convert(w, x, &items[i++], depth)) return false;
    out->len = static_cast<uint32_t>(n);
    out->u.items = items;
    return true;
}

static bool convert_object(walk &w, dom::object obj, jv *out, int depth)
{
    size_t n = count_of(obj), i = 0;
    auto *mem = static_cast<jv_member *>(jarena_alloc(w.a, n * sizeof(jv_member)));
    for (dom::key_value_pair kv : obj) {
        jv_member *m = &mem[i++];
        m->key = copy_str(w, kv.key);
        m->klen = static_cast<uint32_t>(kv.key.size());
        if (!convert(w, kv.value, &m->val, depth)) return false;
    }
    out->len = static_cast<uint32_t>(n);
    out->u.members = mem;
    return true;
}

static bool convert(walk &w, dom::element e, jv *out, int depth)
{
    out->len = 0;
    switch (e.type()) {
    case dom::element_type::ARRAY:
        out->type = JV_ARRAY;
        if (depth >= w.max_depth) return json_fail(w.err, "nesting deeper than %d", w.max_depth);
        return convert_array(w, e.get_array().value_unsafe(), out, depth + 1);
    case dom::element_type::OBJECT:
        out->type = JV_OBJECT;
        if (depth >= w.max_depth) return json_fail(w.err, "nesting deeper than %d", w.max_depth);
        return convert_object(w, e.get_object().value_unsafe(), out, depth + 1);
    case dom::element_type::STRING: {
        std::string_view sv = e.get_string().value_unsafe();
        out->type = JV_STRING;
        out->len = static_cast<uint32_t>(sv.size());
        out->u.s = copy_str(w, sv);
        return true;
    }
    case dom::element_type::INT64:
        out->type = JV_INT;
        out->u.i = e.get_int64().value_unsafe();
        return true;
    case dom::element_type::UINT64:
        out->type = JV_DOUBLE;
        out->u.d = static_cast<double>(e.get_uint64().value_unsafe());
        return true;
    case dom::element_type::DOUBLE:
        out->type = JV_DOUBLE;
        out->u.d = e.get_double().value_unsafe();
        return true;
    case dom::element_type::BOOL:
        out->type = JV_BOOL;
        out->u.b = e.get_bool().value_unsafe();
        return true;
    case dom::element_type::NULL_VALUE:
        out->type = JV_NULL;
        return true;
    }
    return json_fail(w.err, "unknown simdjson element type");
}

static jv *parse_with(dom::parser &p, jarena *a, const char *buf, size_t len, size_t cap,
                      int max_depth, json_error *err)
{
    if (static_cast<size_t>(max_depth) >= p.max_depth()) {
        size_t depth = static_cast<size_t>(max_depth) + 1;
        error_code code = p.allocate(len > p.capacity() ? len : p.capacity(), depth);
        if (code) {
            json_fail(err, "out of memory");
            return nullptr;
        }
    }
    dom::element root;
    bool copy = cap < len || cap - len < JSON_PADDING;
    error_code code = p.parse(buf, len, copy).get(root);
    if (code) {
        report(code, buf, len, max_depth, err);
        return nullptr;
    }
    jv *out = static_cast<jv *>(jarena_alloc(a, sizeof(jv)));
    walk w{a, max_depth, err, static_cast<char *>(jarena_alloc(a, len))};
    return convert(w, root, out, 0) ? out : nullptr;
}

extern "C" jv *json_parse(jarena *a, const char *buf, size_t len, size_t cap, int max_depth,
                          json_error *err)
{
    static thread_local dom::parser tl_parser;
    if (max_depth <= 0) max_depth = JSON_DEFAULT_MAX_DEPTH;
    if (!buf || len == 0) {
        json_fail(err, "empty input");
        return nullptr;
    }
    if (len <= kOneOffBytes) return parse_with(tl_parser, a, buf, len, cap, max_depth, err);
    dom::parser one_off;
    return parse_with(one_off, a, buf, len, cap, max_depth, err);
}
