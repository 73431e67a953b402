/*
 * state_internal.h - shared by the files of src/state/ only.
 *
 *   state_file.c    paths (confinement), the atomic writer, the line reader,
 *                   FNV-1a 64 and base64
 *   state_schema.c  the exportable tables, derived from the schema at run
 *                   time and ordered parents before children
 *   state.c         the file format: export, verification, import
 *   state_progress.c the CLI progress bar
 */
#ifndef PMCP_STATE_INTERNAL_H
#define PMCP_STATE_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "state/state.h"
#include "store/store.h"

int state_fail(state_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- checksum and base64 ------------------------------------------------------ */

#define STATE_FNV_INIT 14695981039346656037ull

uint64_t state_fnv(uint64_t h, const void *data, size_t n);

/* Encoded length of n bytes (with padding). */
static inline size_t state_b64_len(size_t n)
{
    return (n + 2) / 3 * 4;
}
/* Writes state_b64_len(n) characters to out (no NUL). */
void state_b64_encode(const unsigned char *in, size_t n, char *out);
/* Strict: length a multiple of 4, standard alphabet, padding only at the
 * end. out needs n / 4 * 3 bytes. Returns the decoded length or -1. */
long state_b64_decode(const char *in, size_t n, unsigned char *out);

/* ---- where the file is ----------------------------------------------------------- */

typedef struct state_target {
    int dirfd;      /* the directory holding the file */
    char base[256]; /* the file's name in it */
    char display[1024];
    bool confined;
} state_target;

/* Resolve path (confined to confine_dir when that is not NULL) to its
 * directory and name. The directory must exist. */
int state_target_open(state_target *t, const char *path, const char *confine_dir, state_err *e);
void state_target_close(state_target *t);
/* Open the file for reading: it must exist and be a regular file (confined:
 * and not a symbolic link). Returns the fd or -1. */
int state_target_read(state_target *t, uint64_t *size, state_err *e);

/* ---- atomic writer ---------------------------------------------------------------- */

typedef struct state_out {
    state_target *t;
    int fd;
    char tmp[300];
    uint64_t bytes; /* written so far */
    uint64_t fnv;   /* over every byte written with hash = true */
} state_out;

/* Create the temporary file beside the target. */
int state_out_open(state_out *o, state_target *t, state_err *e);
int state_out_write(state_out *o, const void *data, size_t n, bool hash, state_err *e);
/* fsync, rename over the target, fsync the directory. */
int state_out_commit(state_out *o, state_err *e);
/* Remove the temporary file (after a failure); safe after commit. */
void state_out_abort(state_out *o);

/* ---- line reader ------------------------------------------------------------------ */

#define STATE_LINE_MAX (64u << 20) /* longest line accepted: 64 MiB */

typedef struct state_in {
    int fd;
    char *buf;
    size_t cap;        /* bytes of buf usable for data (JSON_PADDING more allocated) */
    size_t start, end; /* unread data */
    bool eof;
    uint64_t offset; /* file offset of buf[start] */
} state_in;

int state_in_init(state_in *r, int fd, state_err *e); /* reads from offset 0 */
void state_in_free(state_in *r);
/* Next line (without its '\n'). *slack = readable bytes from line start
 * (>= len + JSON_PADDING). *nl tells whether a '\n' ended it. Returns 1, 0
 * at end of file, -1 on error. */
int state_in_line(state_in *r, const char **line, size_t *len, size_t *slack, bool *nl,
                  state_err *e);

/* ---- the exportable tables ------------------------------------------------------- */

typedef struct state_column {
    char name[STATE_NAME_MAX];
    bool required; /* NOT NULL, no default, not the rowid alias: an import must supply it */
} state_column;

typedef struct state_table {
    char name[STATE_NAME_MAX];
    bool without_rowid;
    int ncols;
    state_column *cols;
} state_table;

typedef struct state_schema {
    int n;
    state_table t[STATE_MAX_TABLES]; /* parents before children */
} state_schema;

int state_schema_read(store_conn *c, state_schema *s, state_err *e);
void state_schema_free(state_schema *s);
const state_table *state_schema_find(const state_schema *s, const char *name);
int state_table_col(const state_table *t, const char *name); /* index or -1 */
/* Append "name" (double-quoted, quotes doubled) to a SQL buffer. Returns
 * false when it does not fit. */
bool state_sql_ident(char *sql, size_t cap, size_t *len, const char *name);
bool state_sql_add(char *sql, size_t cap, size_t *len, const char *text);

#endif
