/*
 * store_image_gen.c - build-time generator of the schema image.
 *
 *   store_image_gen OUT.c SCRATCH.db
 *
 * Runs the real migrations (store_migrations[], every version, seed
 * included, one transaction with the user_version bump) into an empty
 * database at SCRATCH.db in WAL mode with SQLite's default page size, as
 * store_open does, and turns the result into the image that
 * store_image.c writes when it creates a new database:
 *
 *   - the seed rows carry values that must differ per database (each
 *     persona's random UUID, the creation time). They are replaced by
 *     placeholders of the same length: persona k (in seq order) gets
 *     00000000-0000-4000-8000-00000000000k, every time column
 *     0000-00-00T00:00:00.000000+00:00. The placeholders sort like the
 *     UUIDs store_image.c puts in their place (it hands them out in
 *     ascending order), so every index stays in order;
 *   - VACUUM rebuilds the file, so no copy of the old values is left in
 *     free space, and closing it checkpoints and removes the WAL (bytes
 *     18-19 of the header keep saying WAL);
 *   - the offset of every placeholder byte string is recorded. Each UUID
 *     must occur exactly 4 times (personas row and its id index,
 *     persona_interaction_states row and its key index), the time once per
 *     time column value (2 per persona + meta.seeded_at); any other count
 *     means a migration put them somewhere new, and the build fails here
 *     rather than producing an image that cannot be filled in safely.
 *
 * OUT.c gets store_image[], its size, its schema version and the patch
 * list (store/store_image.h). Whether a database created from it matches
 * one created by the migrations is checked by tests/unit/test_store.c.
 * Exit status 0 on success; on failure a message on stderr and OUT.c is not
 * written (the build stops).
 */
#include "store/store.h"
#include "store/store_image.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { MAX_PATCHES = 64, MAX_SEEDS = 8 };

static store_image_patch g_patches[MAX_PATCHES];
static int g_npatches;

static int die(const char *what, sqlite3 *db)
{
    fprintf(stderr, "store_image_gen: %s: %s\n", what, db ? sqlite3_errmsg(db) : "failed");
    sqlite3_close(db);
    return 1;
}

static void unlink_all(const char *path)
{
    static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
    char p[4096];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", path, sfx[i]);
        unlink(p);
    }
}

static void placeholder_uuid(char out[40], int k)
{
    snprintf(out, 40, "00000000-0000-4000-8000-%012d", k + 1);
}

static int count_seeds(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int n = -1;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM personas", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* Every seed value that differs per database becomes its placeholder. */
static int put_placeholders(sqlite3 *db, int nseeds)
{
    static const char sql[] =
        "UPDATE persona_interaction_states SET persona_id = ?2, last_updated = ?3"
        "  WHERE persona_id = (SELECT id FROM personas WHERE seq = ?1);"
        "UPDATE personas SET id = ?2, created_at = ?3 WHERE seq = ?1;";
    for (int k = 0; k < nseeds; k++) {
        char id[40];
        placeholder_uuid(id, k);
        const char *tail = sql;
        while (*tail) {
            sqlite3_stmt *st = NULL;
            if (sqlite3_prepare_v2(db, tail, -1, &st, &tail) != SQLITE_OK) return -1;
            sqlite3_bind_int(st, 1, k + 1);
            sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, STORE_IMAGE_TIME_PLACEHOLDER, -1, SQLITE_STATIC);
            int rc = sqlite3_step(st);
            sqlite3_finalize(st);
            if (rc != SQLITE_DONE || sqlite3_changes(db) != 1) return -1;
        }
    }
    return sqlite3_exec(db,
                        "UPDATE meta SET value = '" STORE_IMAGE_TIME_PLACEHOLDER
                        "' WHERE key = 'seeded_at'",
                        NULL, NULL, NULL) == SQLITE_OK &&
                   sqlite3_changes(db) == 1
               ? 0
               : -1;
}

static int build_db(const char *path, int *nseeds)
{
    sqlite3 *db = NULL;
    unlink_all(path);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
        return die("open", db);
    char bump[48];
    snprintf(bump, sizeof bump, "PRAGMA user_version = %d", store_schema_version);
    if (sqlite3_exec(db, "PRAGMA journal_mode=WAL; BEGIN IMMEDIATE", NULL, NULL, NULL))
        return die("begin", db);
    for (int v = 0; v < store_schema_version; v++) {
        if (sqlite3_exec(db, store_migrations[v], NULL, NULL, NULL)) return die("migration", db);
    }
    if (sqlite3_exec(db, bump, NULL, NULL, NULL) || sqlite3_exec(db, "COMMIT", NULL, NULL, NULL))
        return die("commit", db);
    *nseeds = count_seeds(db);
    if (*nseeds < 1 || *nseeds > MAX_SEEDS) return die("unexpected number of seed personas", db);
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) || put_placeholders(db, *nseeds) ||
        sqlite3_exec(db, "COMMIT; VACUUM", NULL, NULL, NULL))
        return die("placeholders", db);
    if (sqlite3_close(db) != SQLITE_OK) return die("close", db);
    return 0;
}

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *buf = NULL;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n > 100 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n)) &&
        fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = n > 0 ? (size_t)n : 0;
    return buf;
}

/* Records every occurrence of s as a patch of kind `what`; returns the count. */
static int find_all(const unsigned char *img, size_t len, const char *s, int what)
{
    size_t n = strlen(s);
    int found = 0;
    for (size_t i = 0; i + n <= len; i++) {
        if (img[i] != (unsigned char)s[0] || memcmp(img + i, s, n) != 0) continue;
        if (g_npatches == MAX_PATCHES) return -1;
        g_patches[g_npatches++] = (store_image_patch){.offset = (uint32_t)i, .what = (uint8_t)what};
        found++;
    }
    return found;
}

static int cmp_patch(const void *a, const void *b)
{
    uint32_t x = ((const store_image_patch *)a)->offset, y = ((const store_image_patch *)b)->offset;
    return (x > y) - (x < y);
}

static int find_patches(const unsigned char *img, size_t len, int nseeds)
{
    for (int k = 0; k < nseeds; k++) {
        char id[40];
        placeholder_uuid(id, k);
        int n = find_all(img, len, id, k);
        if (n != 4) {
            fprintf(stderr, "store_image_gen: placeholder %s found %d times, not 4\n", id, n);
            return -1;
        }
    }
    int n = find_all(img, len, STORE_IMAGE_TIME_PLACEHOLDER, STORE_IMAGE_TIME);
    if (n != 2 * nseeds + 1) {
        fprintf(stderr, "store_image_gen: time placeholder found %d times, not %d\n", n,
                2 * nseeds + 1);
        return -1;
    }
    qsort(g_patches, (size_t)g_npatches, sizeof g_patches[0], cmp_patch);
    return 0;
}

static int emit(const char *out, const unsigned char *img, size_t len, int nseeds)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    FILE *f = fopen(tmp, "w");
    if (!f) return 1;
    fprintf(f, "/* Generated by store_image_gen (src/store/gen) from the migrations in\n"
               " * src/store/store_schema.c; do not edit. */\n"
               "#include \"store/store_image.h\"\n\n");
    fprintf(f, "const int store_image_version = %d;\n", store_schema_version);
    fprintf(f, "const int store_image_seeds = %d;\n", nseeds);
    fprintf(f, "const size_t store_image_size = %zu;\n", len);
    fprintf(f, "const int store_image_npatches = %d;\n", g_npatches);
    fprintf(f, "const store_image_patch store_image_patches[%d] = {\n", g_npatches);
    for (int i = 0; i < g_npatches; i++)
        fprintf(f, "    {%u, %u},\n", (unsigned)g_patches[i].offset, (unsigned)g_patches[i].what);
    fprintf(f, "};\n");
    fprintf(f, "const unsigned char store_image[%zu] = {\n", len);
    for (size_t i = 0; i < len; i++)
        fprintf(f, "%u,%s", img[i], i % 24 == 23 || i + 1 == len ? "\n" : "");
    fprintf(f, "};\n");
    if (fclose(f) != 0 || rename(tmp, out) != 0) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: store_image_gen OUT.c SCRATCH.db\n");
        return 2;
    }
    int nseeds = 0;
    if (build_db(argv[2], &nseeds) != 0) return 1;
    size_t len = 0;
    unsigned char *img = read_all(argv[2], &len);
    /* A WAL-mode file (header bytes 18, 19) of whole pages. */
    if (!img || len % 512 != 0 || len > UINT32_MAX || img[18] != 2 || img[19] != 2) {
        fprintf(stderr, "store_image_gen: %s is not a WAL-mode database image\n", argv[2]);
        free(img);
        return 1;
    }
    int rc = find_patches(img, len, nseeds) != 0 ? 1 : emit(argv[1], img, len, nseeds);
    if (rc) fprintf(stderr, "store_image_gen: no image written to %s\n", argv[1]);
    free(img);
    unlink_all(argv[2]);
    return rc;
}
