/*
 * json_diag.c - the cold error path of json_parse(): simdjson names what went
 * wrong (a structural, number or literal error) but not where, so the input
 * is re-read token by token against the JSON grammar (RFC 8259) and the first
 * problem is reported with its byte offset: "unexpected ']' at byte 3",
 * "trailing content at byte 5", "unexpected end of input", "nesting deeper
 * than 64", "invalid number at byte 2", "number out of range at byte 9".
 *
 * Plain C, apart from simdjson's adapter (json_simd.cpp), which calls it only
 * after a failed parse; json_fail() writes the message of every parse error.
 * json_diagnose allocates one byte per nesting level, freed before it returns.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/json.h"

bool json_fail(json_error *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return false;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_delim(char c)
{
    return is_ws(c) || c == '[' || c == ']' || c == '{' || c == '}' || c == ',' || c == ':' ||
           c == '"';
}

/* Index just past the string opening at s[i], or n + 1 if unterminated. */
static size_t string_end(const char *s, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return n + 1;
}

static size_t digits(const char *s, size_t n, size_t i)
{
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    return i;
}

/* RFC 8259 number grammar over the whole token; *integral if no frac/exp. */
static bool number_syntax(const char *s, size_t n, bool *integral)
{
    size_t i = s[0] == '-' ? 1 : 0, d;
    if (i < n && s[i] == '0')
        i++;
    else if (i < n && s[i] >= '1' && s[i] <= '9')
        i = digits(s, n, i);
    else
        return false;
    *integral = i == n;
    if (i < n && s[i] == '.') {
        if ((d = digits(s, n, i + 1)) == i + 1) return false;
        i = d;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i += (i + 1 < n && (s[i + 1] == '+' || s[i + 1] == '-')) ? 2 : 1;
        if ((d = digits(s, n, i)) == i) return false;
        i = d;
    }
    return i == n;
}

/* s[0..n) is a valid number token: does it fit an int64/uint64 (integral) or a double? */
static bool number_in_range(const char *s, size_t n, bool integral)
{
    char *t = malloc(n + 1);
    if (!t) abort();
    memcpy(t, s, n);
    t[n] = '\0';
    errno = 0;
    bool ok;
    if (!integral)
        ok = !isinf(strtod(t, NULL));
    else {
        if (t[0] == '-')
            (void)strtoll(t, NULL, 10);
        else
            (void)strtoull(t, NULL, 10);
        ok = errno != ERANGE;
    }
    free(t);
    return ok;
}

/* Checks one scalar token; false (with err filled) if it is bad. */
static bool scalar_ok(const char *s, size_t n, size_t at, json_error *err)
{
    bool integral = false;
    if (s[0] == '-' || (s[0] >= '0' && s[0] <= '9')) {
        if (!number_syntax(s, n, &integral))
            return json_fail(err, "invalid number at byte %zu", at);
        if (!number_in_range(s, n, integral))
            return json_fail(err, "number out of range at byte %zu", at);
        return true;
    }
    if ((n == 4 && !memcmp(s, "true", 4)) || (n == 5 && !memcmp(s, "false", 5)) ||
        (n == 4 && !memcmp(s, "null", 4)))
        return true;
    return json_fail(err, "invalid token at byte %zu", at);
}

/* What the grammar allows next. */
enum expect { VALUE, VALUE_OR_CLOSE, KEY, KEY_OR_CLOSE, COLON, COMMA_OR_CLOSE, END };

/* The stack of open brackets ('[' or '{'), at most max_depth deep. */
typedef struct brackets {
    char *v;
    size_t n;
} brackets;

static void scan(const char *s, size_t n, size_t max_depth, const char *fallback, json_error *err,
                 brackets *open)
{
    enum expect ex = VALUE;
    for (size_t i = 0, at; i < n; i++) {
        char c = s[at = i];
        bool ok = ex == VALUE || ex == VALUE_OR_CLOSE;
        if (is_ws(c)) continue;
        if (ex == END) return (void)json_fail(err, "trailing content at byte %zu", at);
        if (ok && (c == '[' || c == '{')) {
            if (open->n >= max_depth)
                return (void)json_fail(err, "nesting deeper than %zu", max_depth);
            open->v[open->n++] = c;
            ex = c == '[' ? VALUE_OR_CLOSE : KEY_OR_CLOSE;
            continue;
        } else if (c == ']' || c == '}') {
            char want = c == ']' ? '[' : '{';
            ok = (ex == COMMA_OR_CLOSE || ex == (want == '[' ? VALUE_OR_CLOSE : KEY_OR_CLOSE)) &&
                 open->n && open->v[open->n - 1] == want;
            if (ok) open->n--;
        } else if ((c == ',' && ex == COMMA_OR_CLOSE) || (c == ':' && ex == COLON)) {
            ex = c == ':' || open->v[open->n - 1] == '[' ? VALUE : KEY;
            continue;
        } else if (c == '"') {
            if ((i = string_end(s, n, i) - 1) >= n) break;
            if (ex == KEY || ex == KEY_OR_CLOSE) {
                ex = COLON;
                continue;
            }
        } else if (c != '[' && c != '{' && c != ',' && c != ':') {
            while (i + 1 < n && !is_delim(s[i + 1])) i++;
            if (ok && !scalar_ok(s + at, i + 1 - at, at, err)) return;
        } else {
            ok = false;
        }
        if (!ok) return (void)json_fail(err, "unexpected '%c' at byte %zu", c, at);
        ex = open->n == 0 ? END : COMMA_OR_CLOSE;
    }
    json_fail(err, "%s", ex == END ? fallback : "unexpected end of input");
}

void json_diagnose(const char *s, size_t n, int max_depth, const char *fallback, json_error *err)
{
    size_t depth = max_depth > 0 ? (size_t)max_depth : JSON_DEFAULT_MAX_DEPTH;
    brackets open = {malloc(depth), 0};
    if (!open.v) abort();
    scan(s, n, depth, fallback, err, &open);
    free(open.v);
}
