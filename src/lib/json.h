/*
 * json.h - JSON input: a read-only tree parsed from untrusted bytes.
 *
 * Parsing is done by simdjson (C++, behind json_simd.cpp) which validates
 * UTF-8 and syntax; the result is copied into a plain C tree allocated from
 * an arena, so the rest of the program never sees C++ and frees a whole
 * request with one arena reset.
 *
 * Ownership: every jv and every string it points to belongs to the arena
 * passed to json_parse(); they live until jarena_reset()/jarena_free().
 * Strings are NUL-terminated and may contain embedded NULs only if the input
 * had "\u0000" (len tells the truth). Object members keep input order;
 * duplicate keys are kept, and jv_get() returns the first.
 */
#ifndef PMCP_JSON_H
#define PMCP_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/* Bytes of readable slack json_parse() wants after the input; callers that
 * own the buffer allocate len + JSON_PADDING to avoid a copy. */
#define JSON_PADDING           64
#define JSON_DEFAULT_MAX_DEPTH 64

/* ---- arena --------------------------------------------------------------- */

typedef struct jarena_block jarena_block;
typedef struct jarena {
    jarena_block *head; /* current block (list of blocks) */
    size_t used;        /* bytes used in head */
} jarena;

void jarena_init(jarena *a);
void *jarena_alloc(jarena *a, size_t n); /* 8-byte aligned; aborts on OOM */
char *jarena_strndup(jarena *a, const char *s, size_t n);
void jarena_reset(jarena *a); /* keeps the first block for reuse */
void jarena_free(jarena *a);

/* ---- tree ---------------------------------------------------------------- */

typedef enum { JV_NULL, JV_BOOL, JV_INT, JV_DOUBLE, JV_STRING, JV_ARRAY, JV_OBJECT } jv_type;

typedef struct jv jv;
typedef struct jv_member jv_member;

struct jv {
    jv_type type;
    uint32_t len; /* string bytes, array items or object members */
    union {
        bool b;
        int64_t i;
        double d;
        const char *s;
        jv *items;          /* JV_ARRAY: len items */
        jv_member *members; /* JV_OBJECT: len members */
    } u;
};

struct jv_member {
    const char *key;
    uint32_t klen;
    jv val;
};

typedef struct json_error {
    char msg[128]; /* e.g. "invalid UTF-8 at byte 17", "nesting deeper than 64" */
} json_error;

/* json_parse's error path (json_diag.c): re-read s against the JSON grammar
 * and describe its first problem with a byte offset in err; `fallback` when
 * the grammar finds none. Only for input a parser has already rejected. */
void json_diagnose(const char *s, size_t n, int max_depth, const char *fallback, json_error *err);
/* Format a message into err (if not NULL); returns false, for `return json_fail(...)`. */
bool json_fail(json_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parse len bytes at buf. If cap >= len + JSON_PADDING the buffer is used in
 * place; otherwise it is copied. Returns NULL and fills err on any error:
 * syntax, invalid UTF-8, numbers out of range, nesting deeper than max_depth,
 * trailing content. Integers that fit int64 are JV_INT; others JV_DOUBLE. */
jv *json_parse(jarena *a, const char *buf, size_t len, size_t cap, int max_depth, json_error *err);

/* Lookups: NULL when o is NULL, not an object, or has no such key. */
const jv *jv_get(const jv *o, const char *key);
const char *jv_type_name(jv_type t); /* "string", "integer", ... */

static inline bool jv_is_str(const jv *v)
{
    return v && v->type == JV_STRING;
}
static inline bool jv_is_num(const jv *v)
{
    return v && (v->type == JV_INT || v->type == JV_DOUBLE);
}
static inline double jv_num(const jv *v)
{
    return v->type == JV_INT ? (double)v->u.i : v->u.d;
}

#endif
