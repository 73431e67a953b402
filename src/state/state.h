/*
 * state.h - export and import of the whole persistent state as one portable
 * file (issue 6 item 4; state.save / state.load; persona-mcp export/import).
 *
 * The file is JSON lines, versioned and checksummed (docs/STATE.md):
 *
 *   {"format":"persona-mcp-state","version":1,"schema_version":N,
 *    "created_at":"...","generator":"persona-mcp X.Y.Z",
 *    "tables":[{"name":"personas","columns":["seq","id",...]},...]}
 *   {"t":"personas","r":{"seq":1,"id":"...",...}}          one line per row
 *   ...
 *   {"end":"persona-mcp-state","rows":{"personas":2,...},"total_rows":N,
 *    "bytes":B,"fnv1a64":"<16 hex>"}                        the trailer
 *
 * Every table of the database is exported except SQLite's own (sqlite_*),
 * virtual tables and their shadow tables (the FTS5 index is rebuilt by the
 * insert triggers); the list is derived from the schema at run time and
 * ordered parents before children (foreign keys), so tables added by later
 * schema versions are exported without changes here.
 *
 * Export reads one consistent snapshot (one read transaction on a pool
 * connection) and writes atomically: a temporary file in the target's
 * directory, fsync, rename, fsync of the directory. Import verifies the
 * whole file first (header, version, schema compatibility, every line,
 * row counts, checksum) and changes nothing if any check fails; then, in
 * ONE write job on the store's writer thread (one transaction), it deletes
 * every row of every exportable table and inserts the file's rows,
 * re-checking the checksum as it reads; then it refreshes the RAM caches
 * (persona registry reloaded, memory collections forgotten).
 *
 * Paths: with opts.confine_dir set (the RPC methods), `path` is a client
 * path confined to that directory: relative, no "..", no symbolic link on
 * the way, a regular file named *.jsonl; anything else is refused with
 * -32602. Without it (the CLI), any path is taken as given.
 *
 * Threads: both calls block (SQLite, file I/O, the writer) and must not run
 * on the service thread. The progress callback runs on the calling thread
 * during export and verification and on the store's writer thread during
 * the import itself.
 */
#ifndef PMCP_STATE_H
#define PMCP_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct store;
struct persona_reg;
struct mem_store;

#define STATE_FORMAT_NAME    "persona-mcp-state"
#define STATE_FORMAT_VERSION 1
#define STATE_MAX_TABLES     64
#define STATE_NAME_MAX       128 /* bytes of a table or column name */

/* JSON-RPC codes carried by state_err.code. */
enum { STATE_EINVAL = -32602, STATE_EIO = -32603 };

typedef struct state_err {
    int code; /* STATE_EINVAL: bad path or file; STATE_EIO: I/O or SQLite */
    char msg[512];
} state_err;

/* phase: "export" and "import" count rows, "verify" counts bytes read. */
typedef void (*state_progress_fn)(void *ctx, const char *phase, uint64_t done, uint64_t total);

typedef struct state_opts {
    const char *confine_dir; /* non-NULL: path is a client path inside this directory */
    state_progress_fn progress;
    void *progress_ctx;
} state_opts;

typedef struct state_table_rows {
    char name[STATE_NAME_MAX];
    uint64_t rows;
} state_table_rows;

typedef struct state_result {
    char path[1024];     /* as given (confined: normalised, relative to the directory) */
    char created_at[40]; /* the file's header timestamp */
    int schema_version;  /* the file's */
    uint64_t bytes;      /* file size */
    uint64_t rows;       /* total rows */
    size_t ntables;
    state_table_rows tables[STATE_MAX_TABLES]; /* in file order */
} state_result;

/* Write the state of st to path. Returns 0, or -1 with e filled. */
int state_export(struct store *st, const char *path, const state_opts *o, state_result *r,
                 state_err *e);

/* Replace the state of st with the file's. reg and mem (either may be NULL)
 * are refreshed after the commit. Returns 0, or -1 with e filled; on -1 the
 * database is unchanged. */
int state_import(struct store *st, struct persona_reg *reg, struct mem_store *mem, const char *path,
                 const state_opts *o, state_result *r, state_err *e);

/* Verify a file without touching any database (header, version, schema
 * version not newer than this build's, lines, counts, checksum). */
int state_verify(const char *path, const state_opts *o, state_result *r, state_err *e);

/* Default file name for a save at `epoch`: "state-20251015T103000.123Z.jsonl". */
void state_default_name(double epoch, char out[64]);

/* ---- progress bar (state_progress.c), for the CLI on stderr --------------------
 * Pass state_bar_progress as opts.progress and the bar as progress_ctx:
 *   import [#########...........] 45% 45000/100000 rows
 * On a terminal the line is redrawn in place (at most every 50 ms and on
 * every percent); otherwise a line is printed every 10 %. */
typedef struct state_bar {
    FILE *out;
    bool tty;
    int width; /* cells of the bar, default 30 */
    char phase[16];
    int last_pct;
    uint64_t last_ns;
    bool open; /* a redrawn line is on screen without its newline */
} state_bar;

void state_bar_init(state_bar *b, FILE *out);
void state_bar_progress(void *bar, const char *phase, uint64_t done, uint64_t total);
void state_bar_finish(state_bar *b); /* end the current line */
/* The text of one bar (no newline): "[#####.....] 52% 52000/100000 rows".
 * Returns its length (as snprintf). */
int state_bar_format(char *buf, size_t n, const char *phase, uint64_t done, uint64_t total,
                     int width);

#endif
