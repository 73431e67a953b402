/*
 * json_arena.c - the bump allocator behind parsed JSON trees, plus the two
 * small tree helpers (jv_get, jv_type_name) that need no parser.
 *
 * Design: an arena is a singly linked list of malloc'd blocks, newest first
 * (a->head). Allocation bumps a->used inside the head block; when it does not
 * fit, a new block of twice the previous size (or the request, if larger) is
 * pushed in front, so a large document costs O(log n) mallocs. Nothing is
 * freed individually. jarena_reset() frees every block except the first (the
 * oldest, at the tail of the list) and rewinds it, so a connection that
 * parses request after request reuses one block and never calls malloc in
 * the steady state. The first block is created lazily by the first alloc.
 * Every allocation is rounded up to 8 bytes, so returned pointers are 8-byte
 * aligned (block data is max_align_t aligned). Out of memory aborts: a parse
 * tree has no sensible partial state to hand back.
 */
#include "lib/json.h"

#include <stdlib.h>
#include <string.h>

#define ARENA_FIRST_BLOCK 8192

struct jarena_block {
    jarena_block *next; /* older block */
    size_t size;        /* usable bytes in data */
    max_align_t data[]; /* flexible array member; alignment for any type */
};

void jarena_init(jarena *a)
{
    a->head = NULL;
    a->used = 0;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) abort();
    return p;
}

static void arena_push_block(jarena *a, size_t need)
{
    size_t size = a->head ? a->head->size * 2 : ARENA_FIRST_BLOCK;
    if (size < need) size = need;
    jarena_block *b = xmalloc(sizeof(*b) + size);
    b->next = a->head;
    b->size = size;
    a->head = b;
    a->used = 0;
}

void *jarena_alloc(jarena *a, size_t n)
{
    if (n > SIZE_MAX / 4) abort();
    n = (n + 7) & ~(size_t)7;
    if (!a->head || a->head->size - a->used < n) arena_push_block(a, n);
    void *p = (char *)a->head->data + a->used;
    a->used += n;
    return p;
}

char *jarena_strndup(jarena *a, const char *s, size_t n)
{
    char *p = jarena_alloc(a, n + 1);
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void jarena_reset(jarena *a)
{
    jarena_block *b = a->head;
    if (!b) return;
    while (b->next) {
        jarena_block *older = b->next;
        free(b);
        b = older;
    }
    a->head = b;
    a->used = 0;
}

void jarena_free(jarena *a)
{
    jarena_block *b = a->head;
    while (b) {
        jarena_block *older = b->next;
        free(b);
        b = older;
    }
    jarena_init(a);
}

const jv *jv_get(const jv *o, const char *key)
{
    if (!o || o->type != JV_OBJECT || !key) return NULL;
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < o->len; i++) {
        const jv_member *m = &o->u.members[i];
        if (m->klen == klen && memcmp(m->key, key, klen) == 0) return &m->val;
    }
    return NULL;
}

const char *jv_type_name(jv_type t)
{
    switch (t) {
    case JV_NULL:
        return "null";
    case JV_BOOL:
        return "boolean";
    case JV_INT:
        return "integer";
    case JV_DOUBLE:
        return "number";
    case JV_STRING:
        return "string";
    case JV_ARRAY:
        return "array";
    case JV_OBJECT:
        return "object";
    }
    return "unknown";
}
