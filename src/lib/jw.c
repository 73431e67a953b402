/*
 * jw.c - the JSON writer declared in jw.h.
 *
 * Design:
 * - One growable buffer; the first `headroom` bytes are reserved for the
 *   transport (LWS_PRE). Every append goes through jw_reserve(), a single
 *   compare on the hot path; growth doubles the capacity and OOM aborts.
 *   A released or freed writer has buf == NULL, cap == 0, len == headroom,
 *   so the next append simply allocates again.
 * - Commas: before a key or value, jw_sep() looks at the last byte written.
 *   No comma at the start or after '{' '[' ':' ',' or whitespace (the last
 *   two let callers jw_append() a prefix such as "data: " or "...,"); after
 *   anything else (a value's last byte) a ',' goes in first.
 * - Strings: plain runs (no control, '"', '\\' or byte >= 0x80) are scanned
 *   and copied sixteen bytes (SSE2) or eight at a time in one pass
 *   (copy_plain), and a quote or backslash costs no call; a plain
 *   string costs one reservation and no memcpy call. Controls get the short
 *   escapes or \u00XX; bytes >= 0x80 must form a valid UTF-8 sequence (RFC
 *   3629) and are copied as-is, otherwise each maximal invalid subpart is
 *   replaced by U+FFFD, so the output is always valid JSON. U+2028/2029 are
 *   legal in JSON and pass through unescaped.
 * - Integers: hand-written, two digits per step from a lookup table.
 * - Doubles: NaN/Inf become null. Fast path for |v| < 1e15: pick k <= 9
 *   decimals so that N = round(|v| * 10^k) < 1e15, and accept only if
 *   (double)N / 10^k == |v|. N and 10^k are exact doubles and IEEE division
 *   is correctly rounded, so that test is exactly "strtod of the decimal
 *   N/10^k gives v back"; with N < 1e15 at most one such N exists, so the
 *   trimmed result is also the shortest. Everything else goes to snprintf
 *   with the first of %.15g/%.16g/%.17g that round-trips. Integral doubles
 *   keep a ".0" so they read back as doubles (as Python's json writes them).
 *   snprintf/strtod assume the "C" LC_NUMERIC locale (the server never calls
 *   setlocale).
 */
#include "lib/jw.h"
#include "lib/json.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- buffer -------------------------------------------------------------- */

static void jw_grow(jw *w, size_t need)
{
    size_t cap = w->cap ? w->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) abort();
        cap *= 2;
    }
    char *p = realloc(w->buf, cap);
    if (!p) abort();
    w->buf = p;
    w->cap = cap;
}

static inline char *jw_reserve(jw *w, size_t n)
{
    if (w->len + n > w->cap) jw_grow(w, w->len + n);
    return w->buf + w->len;
}

static inline void put(jw *w, const void *s, size_t n)
{
    memcpy(jw_reserve(w, n), s, n);
    w->len += n;
}

static inline void put1(jw *w, char c)
{
    *jw_reserve(w, 1) = c;
    w->len++;
}

void jw_init(jw *w, size_t headroom, size_t initial_cap)
{
    w->buf = NULL;
    w->cap = 0;
    w->len = headroom;
    w->headroom = headroom;
    jw_grow(w, initial_cap > headroom + 64 ? initial_cap : headroom + 64);
}

void jw_free(jw *w)
{
    free(w->buf);
    w->buf = NULL;
    w->cap = 0;
    w->len = w->headroom;
}

void jw_reset(jw *w)
{
    w->len = w->headroom;
}

char *jw_release(jw *w)
{
    char *p = w->buf;
    w->buf = NULL;
    w->cap = 0;
    w->len = w->headroom;
    return p;
}

void jw_truncate(jw *w, size_t size)
{
    if (size <= jw_size(w)) w->len = w->headroom + size;
}

void jw_append(jw *w, const char *s, size_t n)
{
    if (n) put(w, s, n);
}

/* ---- separators ---------------------------------------------------------- */

static inline void jw_sep(jw *w)
{
    if (w->len == w->headroom) return;
    switch (w->buf[w->len - 1]) {
    case '{':
    case '[':
    case ':':
    case ',':
    case ' ':
    case '\n':
    case '\r':
    case '\t':
        return;
    default:
        put1(w, ',');
    }
}

void jw_obj_begin(jw *w)
{
    jw_sep(w);
    put1(w, '{');
}

void jw_obj_end(jw *w)
{
    put1(w, '}');
}

void jw_arr_begin(jw *w)
{
    jw_sep(w);
    put1(w, '[');
}

void jw_arr_end(jw *w)
{
    put1(w, ']');
}

void jw_raw(jw *w, const char *json, size_t n)
{
    jw_sep(w);
    put(w, json, n);
}

void jw_null(jw *w)
{
    jw_sep(w);
    put(w, "null", 4);
}

void jw_bool(jw *w, bool v)
{
    jw_sep(w);
    if (v)
        put(w, "true", 4);
    else
        put(w, "false", 5);
}

/* ---- UTF-8 --------------------------------------------------------------- */

/* Checks the multi-byte sequence at s (s[0] >= 0x80). Returns true with *adv
 * = its length if valid; else false with *adv = the maximal invalid subpart
 * (>= 1 byte) to replace by one U+FFFD. */
static bool utf8_seq(const unsigned char *s, size_t n, size_t *adv)
{
    unsigned c = s[0], lo = 0x80, hi = 0xBF;
    size_t need;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c == 0xE0)
        need = 2, lo = 0xA0;
    else if (c == 0xED)
        need = 2, hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF)
        need = 2;
    else if (c == 0xF0)
        need = 3, lo = 0x90;
    else if (c == 0xF4)
        need = 3, hi = 0x8F;
    else if (c >= 0xF1 && c <= 0xF3)
        need = 3;
    else {
        *adv = 1;
        return false;
    }
    size_t i = 1;
    for (; i <= need && i < n && s[i] >= lo && s[i] <= hi; i++) lo = 0x80, hi = 0xBF;
    *adv = i;
    return i == need + 1;
}

size_t jw_utf8_prefix(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, adv;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        if (!utf8_seq(s + i, n - i, &adv)) return i;
        i += adv;
    }
    return n;
}

/* ---- strings ------------------------------------------------------------- */

/* 1 = byte needs attention in a string: control, '"', '\\', or >= 0x80. */
static const unsigned char k_special[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x00 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x10 */
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x20 '"' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x30 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x40 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* 0x50 '\\' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x60 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x70 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x80 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x90 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xA0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xB0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xC0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xD0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xE0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xF0 */
};

static const char k_hex[] = "0123456789abcdef";

static void put_control(jw *w, unsigned char c)
{
    char e[6] = {'\\', 'u', '0', '0', k_hex[c >> 4], k_hex[c & 15]};
    switch (c) {
    case '"':
    case '\\':
        e[1] = (char)c;
        break;
    case '\b':
        e[1] = 'b';
        break;
    case '\f':
        e[1] = 'f';
        break;
    case '\n':
        e[1] = 'n';
        break;
    case '\r':
        e[1] = 'r';
        break;
    case '\t':
        e[1] = 't';
        break;
    default:
        put(w, e, 6);
        return;
    }
    put(w, e, 2);
}

/* Handles the special byte at s[0]; returns how many input bytes it used. */
static size_t put_special(jw *w, const unsigned char *s, size_t n)
{
    if (s[0] < 0x80) {
        put_control(w, s[0]);
        return 1;
    }
    size_t adv;
    if (utf8_seq(s, n, &adv))
        put(w, s, adv);
    else
        put(w, "\xEF\xBF\xBD", 3);
    return adv;
}

/* Copies the leading run of s that has no special byte to dst (room for n
 * bytes) and returns its length. With SSE2 (every x86-64), sixteen bytes per
 * step: they are stored as they are, and a mask of the special ones (equal
 * to '"' or '\\', at most 0x1F, or with the high bit set) gives the run's
 * end by its lowest set bit, so a string dense in quotes (JSON text escaped
 * into a string) costs a step per quote, not a byte loop. Elsewhere, eight
 * bytes per step: a word's high bits light up for a byte >= 0x80 (x), < 0x20
 * (x - 0x20) or equal to '"' or '\\' (zero after the xor, minus 1). Bytes
 * >= 0x80 are caught by x itself, so the other terms only matter for ASCII
 * bytes, where they cannot misfire except through a borrow out of a lower
 * byte that was a hit anyway. The byte loop then finds the exact position. */
static size_t copy_plain(char *dst, const unsigned char *s, size_t n)
{
    size_t i = 0;
#ifdef __SSE2__
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'),
                  ctl = _mm_set1_epi8(0x1F);
    for (; i + 16 <= n; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        _mm_storeu_si128((__m128i *)(void *)(dst + i), x);
        __m128i low = _mm_cmpeq_epi8(_mm_min_epu8(x, ctl), x); /* x <= 0x1F */
        __m128i hit =
            _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash)), low);
        unsigned bits = (unsigned)_mm_movemask_epi8(hit) | (unsigned)_mm_movemask_epi8(x);
        if (bits) return i + (size_t)__builtin_ctz(bits);
    }
#else
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, s + i, 8);
        uint64_t q = (x ^ (ones * '"')) - ones, b = (x ^ (ones * '\\')) - ones;
        if ((x | (x - ones * 0x20) | q | b) & highs) break;
        memcpy(dst + i, &x, 8);
    }
#endif
    for (; i < n && !k_special[s[i]]; i++) dst[i] = (char)s[i];
    return i;
}

/* Writes "s" (escaped) followed by suffix if it is not 0. Plain strings, the
 * common case, take one reservation and one pass. */
static void put_escaped(jw *w, const char *str, size_t n, char suffix)
{
    const unsigned char *s = (const unsigned char *)str;
    char *p = jw_reserve(w, n + 3);
    *p = '"';
    size_t i = copy_plain(p + 1, s, n);
    w->len += i + 1;
    while (i < n) {
        if (s[i] == '"' || s[i] == '\\') { /* the usual special byte: no call */
            char *o = jw_reserve(w, n - i + 1);
            o[0] = '\\';
            o[1] = (char)s[i];
            size_t run = copy_plain(o + 2, s + i + 1, n - i - 1);
            w->len += run + 2;
            i += run + 1;
            continue;
        }
        i += put_special(w, s + i, n - i);
        size_t run = copy_plain(jw_reserve(w, n - i), s + i, n - i);
        w->len += run;
        i += run;
    }
    p = jw_reserve(w, 2);
    p[0] = '"';
    p[1] = suffix;
    w->len += suffix ? 2 : 1;
}

void jw_key(jw *w, const char *key)
{
    size_t n = strlen(key);
    jw_sep(w);
    char *p = jw_reserve(w, n + 3);
    p[0] = '"';
    memcpy(p + 1, key, n);
    p[n + 1] = '"';
    p[n + 2] = ':';
    w->len += n + 3;
}

void jw_keyn(jw *w, const char *key, size_t n)
{
    jw_sep(w);
    put_escaped(w, key, n, ':');
}

void jw_str(jw *w, const char *s)
{
    if (!s)
        jw_null(w);
    else
        jw_strn(w, s, strlen(s));
}

void jw_strn(jw *w, const char *s, size_t n)
{
    if (!s) {
        jw_null(w);
        return;
    }
    jw_sep(w);
    put_escaped(w, s, n, 0);
}

/* ---- numbers ------------------------------------------------------------- */

static const char k_pairs[] = "00010203040506070809"
                              "10111213141516171819"
                              "20212223242526272829"
                              "30313233343536373839"
                              "40414243444546474849"
                              "50515253545556575859"
                              "60616263646566676869"
                              "70717273747576777879"
                              "80818283848586878889"
                              "90919293949596979899";

/* Writes the decimal digits of v ending just before end; returns the start. */
static char *u64_digits(char *end, uint64_t v)
{
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        end -= 2;
        memcpy(end, k_pairs + 2 * r, 2);
    }
    if (v >= 10) {
        end -= 2;
        memcpy(end, k_pairs + 2 * v, 2);
    } else {
        *--end = (char)('0' + v);
    }
    return end;
}

void jw_int(jw *w, int64_t v)
{
    char tmp[24], *end = tmp + sizeof(tmp);
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    char *p = u64_digits(end, u);
    if (v < 0) *--p = '-';
    jw_sep(w);
    put(w, p, (size_t)(end - p));
}

static const double k_pow10[10] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};

/* "[-]int.frac" from N and k decimals (N already trimmed); returns length. */
static size_t put_fixed(char *out, bool neg, uint64_t n, int k)
{
    char tmp[24], *end = tmp + sizeof(tmp);
    char *d = u64_digits(end, n), *o = out;
    size_t nd = (size_t)(end - d), uk = (size_t)k;
    if (neg) *o++ = '-';
    if (k == 0) {
        memcpy(o, d, nd);
        memcpy(o + nd, ".0", 2);
        return (size_t)(o - out) + nd + 2;
    }
    if (nd <= uk) {
        memcpy(o, "0.", 2);
        memset(o + 2, '0', uk - nd);
        memcpy(o + 2 + uk - nd, d, nd);
        return (size_t)(o - out) + 2 + uk;
    }
    memcpy(o, d, nd - uk);
    o[nd - uk] = '.';
    memcpy(o + nd - uk + 1, d + nd - uk, uk);
    return (size_t)(o - out) + nd + 1;
}

/* Returns 0 when v needs the slow path (see the design note). */
static size_t fmt_double_fast(char *out, double v)
{
    double a = fabs(v);
    if (!(a < 1e15)) return 0;
    int k = 9;
    while (k > 0 && a * k_pow10[k] >= 1e15) k--;
    uint64_t n = (uint64_t)(a * k_pow10[k] + 0.5);
    if ((double)n / k_pow10[k] != a) return 0;
    while (k > 0 && n % 10 == 0) n /= 10, k--;
    return put_fixed(out, signbit(v) != 0, n, k);
}

static size_t fmt_double_slow(char *out, size_t cap, double v)
{
    int len = 0;
    for (int prec = 15; prec <= 17; prec++) {
        len = snprintf(out, cap, "%.*g", prec, v);
        if (prec == 17 || strtod(out, NULL) == v) break;
    }
    if (!strpbrk(out, ".eE")) {
        memcpy(out + len, ".0", 3);
        len += 2;
    }
    return (size_t)len;
}

void jw_double(jw *w, double v)
{
    if (!isfinite(v)) {
        jw_null(w);
        return;
    }
    char tmp[48];
    size_t n = fmt_double_fast(tmp, v);
    if (!n) n = fmt_double_slow(tmp, sizeof(tmp), v);
    jw_sep(w);
    put(w, tmp, n);
}

/* ---- parsed values ------------------------------------------------------- */

void jw_value(jw *w, const jv *v)
{
    if (!v) {
        jw_null(w);
        return;
    }
    switch (v->type) {
    case JV_NULL:
        jw_null(w);
        break;
    case JV_BOOL:
        jw_bool(w, v->u.b);
        break;
    case JV_INT:
        jw_int(w, v->u.i);
        break;
    case JV_DOUBLE:
        jw_double(w, v->u.d);
        break;
    case JV_STRING:
        jw_strn(w, v->u.s, v->len);
        break;
    case JV_ARRAY:
        jw_arr_begin(w);
        for (uint32_t i = 0; i < v->len; i++) jw_value(w, &v->u.items[i]);
        jw_arr_end(w);
        break;
    case JV_OBJECT:
        jw_obj_begin(w);
        for (uint32_t i = 0; i < v->len; i++) {
            const jv_member *m = &v->u.members[i];
            jw_keyn(w, m->key, m->klen);
            jw_value(w, &m->val);
        }
        jw_obj_end(w);
        break;
    }
}

void jw_puts(jw *w, const char *s)
{
    jw_append(w, s, strlen(s));
}
