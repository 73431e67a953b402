/*
 * jw.h - JSON output: an append-only writer into one growable buffer.
 *
 * The writer inserts commas itself (it looks at the last byte written), so
 * callers just emit keys and values in order. Strings are escaped per RFC
 * 8259; invalid UTF-8 in a string is replaced by U+FFFD so output is always
 * valid JSON. Integers are formatted by hand; doubles take a hand-written fast
 * path for values with up to 9 decimals and fall back to "%.17g" only for
 * the rest (never NaN/Inf: those are written as null).
 *
 * The buffer may reserve `headroom` bytes in front of the JSON (libwebsockets
 * needs LWS_PRE bytes before a frame); jw_data() points after it.
 *
 * Ownership: the writer owns buf until jw_release() hands it to the caller
 * (free() it, from the start of the allocation, i.e. jw_release's return).
 */
#ifndef PMCP_JW_H
#define PMCP_JW_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

typedef struct jw {
    char *buf;       /* allocation; JSON starts at buf + headroom */
    size_t len;      /* bytes used including headroom */
    size_t cap;      /* bytes allocated */
    size_t headroom; /* fixed bytes kept before the JSON */
} jw;

void jw_init(jw *w, size_t headroom, size_t initial_cap);
void jw_free(jw *w);
void jw_reset(jw *w);    /* empty again, keeps the allocation */
char *jw_release(jw *w); /* returns buf (caller frees); w is empty afterwards */

static inline const char *jw_data(const jw *w)
{
    return w->buf + w->headroom;
}
static inline size_t jw_size(const jw *w)
{
    return w->len - w->headroom;
}
/* Truncate back to a size previously read with jw_size() (error rollback). */
void jw_truncate(jw *w, size_t size);

void jw_obj_begin(jw *w);
void jw_obj_end(jw *w);
void jw_arr_begin(jw *w);
void jw_arr_end(jw *w);
void jw_key(jw *w, const char *key);            /* key must be a literal-safe ASCII name */
void jw_keyn(jw *w, const char *key, size_t n); /* escaped */
void jw_str(jw *w, const char *s);              /* NULL writes null */
void jw_strn(jw *w, const char *s, size_t n);
void jw_int(jw *w, int64_t v);
void jw_double(jw *w, double v);
void jw_bool(jw *w, bool v);
void jw_null(jw *w);
/* Append already-valid JSON text as one value (comma handled). */
void jw_raw(jw *w, const char *json, size_t n);
/* Append bytes verbatim with no comma logic (for envelopes). */
void jw_append(jw *w, const char *s, size_t n);

/* Append a NUL-terminated string verbatim (no comma logic, no escaping). */
void jw_puts(jw *w, const char *s);

/* Write a parsed jv back out (used to echo ids and store JSON objects). */
struct jv;
void jw_value(jw *w, const struct jv *v);

/* Length of the longest prefix of s that is valid UTF-8 (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF); n if all of it is.
 * Also useful to hold back a character split across stream chunks. */
size_t jw_utf8_prefix(const char *s, size_t n);

/* Convenience: key + value. */
static inline void jw_kstr(jw *w, const char *k, const char *s)
{
    jw_key(w, k);
    jw_str(w, s);
}
static inline void jw_kint(jw *w, const char *k, int64_t v)
{
    jw_key(w, k);
    jw_int(w, v);
}
static inline void jw_kdouble(jw *w, const char *k, double v)
{
    jw_key(w, k);
    jw_double(w, v);
}
static inline void jw_kbool(jw *w, const char *k, bool v)
{
    jw_key(w, k);
    jw_bool(w, v);
}

#endif
