/*
 * store_image.h - creating a new database from the prebuilt schema image.
 *
 * At build time store_image_gen (src/store/gen) runs the migrations into
 * an empty database and emits its bytes (store_image[]) with a list of
 * patches: the places where the seed rows hold a per-database value (a
 * persona's UUID, the creation time) as a placeholder of the same length.
 * store_image_create() writes that image, patched, as a new database file
 * instead of running the migrations; see store_image.c.
 */
#ifndef PMCP_STORE_IMAGE_H
#define PMCP_STORE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

/* Same length as the time text of the seed (strftime ... '%f000+00:00')
 * and of store_now_iso(). */
#define STORE_IMAGE_TIME_PLACEHOLDER "0000-00-00T00:00:00.000000+00:00"
#define STORE_IMAGE_TIME             255 /* patch kind: the time; 0..n-1: UUID of seed k */

typedef struct store_image_patch {
    uint32_t offset; /* in store_image[] */
    uint8_t what;    /* seed persona k (its UUID, 36 bytes) or STORE_IMAGE_TIME (32 bytes) */
} store_image_patch;

/* Generated (build dir, store_image_data.c). */
extern const int store_image_version; /* PRAGMA user_version of the image */
extern const int store_image_seeds;   /* seed personas; UUID placeholders in seq order */
extern const size_t store_image_size;
extern const int store_image_npatches;
extern const store_image_patch store_image_patches[];
extern const unsigned char store_image[];

/* Create the database file `path` from the image, if there is no file
 * there. Returns a descriptor of the new file (>= 0; the caller must
 * fdatasync it before the first write to the database is acknowledged, then
 * close it), or -1 when nothing was created: a file (or a WAL without one)
 * is already there, or this system cannot create a file atomically
 * (O_TMPFILE, /proc/self/fd) - the caller then opens `path` the usual way. */
int store_image_create(const char *path);

#endif
