/*
 * store_image.c - a new database written from the prebuilt schema image.
 *
 * Running the migrations costs about a millisecond of CPU (parsing and
 * executing the schema; FTS5 alone creates five tables). The same file is
 * built once at build time (src/store/gen/store_image_gen.c), so creating
 * a database is writing those bytes with the seed rows' per-database values
 * filled in: a fresh UUID for each seed persona and the creation time,
 * written over same-length placeholders at offsets the generator recorded.
 * The UUIDs are handed out in ascending order, as the placeholders sort, so
 * the indexes over them stay ordered (the seed persona created first gets
 * the smaller of the random UUIDs; nothing else about them changes).
 *
 * Crash safety of creation: the bytes go to an unnamed file in the target
 * directory (O_TMPFILE), which is given its name only when complete
 * (linkat through /proc/self/fd; like O_EXCL it fails if the name exists,
 * and then this database is left alone). A process killed at any point
 * leaves either no file or the whole image - never a partial file that a
 * later start would take as a database. Durability: the image is not
 * synced here (that is ~0.5 ms of waiting for the disk on the open path);
 * the returned descriptor goes to the writer thread, which fdatasyncs it
 * before it runs its first write, so no write is acknowledged - and no WAL
 * frame that depends on the image is written - before the image is on disk.
 * Only a power cut in those first milliseconds could leave a damaged new
 * file, and it would hold no acknowledged data (the same window as the
 * migration path's, see store.c). SQLite's first WAL sync also syncs the
 * directory, which makes the name durable.
 *
 * Where O_TMPFILE or /proc/self/fd is missing, nothing is created and
 * store_open runs the migrations as before.
 */
#include "store/store_image.h"

#include "store/store.h"
#include "lib/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

enum { UUID_LEN = 36, TIME_LEN = 32, MAX_SEEDS = 8, MAX_IOV = 2 * 64 + 1 };

typedef struct seed_values {
    char uuid[MAX_SEEDS][40];
    char time[40];
} seed_values;

static int cmp_uuid(const void *a, const void *b)
{
    return strcmp(a, b);
}

static int make_values(seed_values *v)
{
    if (store_image_seeds > MAX_SEEDS) return -1;
    for (int k = 0; k < store_image_seeds; k++) util_uuid4(v->uuid[k]);
    qsort(v->uuid, (size_t)store_image_seeds, sizeof v->uuid[0], cmp_uuid);
    store_now_iso(v->time);
    return strlen(v->time) == TIME_LEN ? 0 : -1;
}

/* The image as iovecs: its own bytes between the patches, the values over
 * them. Returns the count, or -1. */
static int image_iov(const seed_values *v, struct iovec *iov)
{
    int n = 0;
    size_t at = 0;
    if (store_image_npatches > (MAX_IOV - 1) / 2) return -1;
    for (int i = 0; i < store_image_npatches; i++) {
        const store_image_patch *p = &store_image_patches[i];
        bool is_time = p->what == STORE_IMAGE_TIME;
        if (!is_time && p->what >= store_image_seeds) return -1;
        iov[n++] = (struct iovec){(void *)(store_image + at), p->offset - at};
        iov[n++] = (struct iovec){(void *)(is_time ? v->time : v->uuid[p->what]),
                                  is_time ? TIME_LEN : UUID_LEN};
        at = p->offset + iov[n - 1].iov_len;
    }
    iov[n++] = (struct iovec){(void *)(store_image + at), store_image_size - at};
    return n;
}

static int write_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        while (n > 0 && (size_t)w >= iov->iov_len) { /* drop what was written */
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

static bool exists(const char *path, const char *suffix)
{
    char p[PATH_MAX];
    struct stat st;
    snprintf(p, sizeof p, "%s%s", path, suffix);
    return stat(p, &st) == 0 || errno != ENOENT;
}

static int open_unnamed(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    return open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
}

int store_image_create(const char *path)
{
    if (strlen(path) >= PATH_MAX - 16 || exists(path, "-wal")) return -1;
    seed_values v;
    struct iovec iov[MAX_IOV];
    int n = make_values(&v) == 0 ? image_iov(&v, iov) : -1;
    if (n < 0) return -1;
    int fd = open_unnamed(path);
    if (fd < 0) return -1;
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
    if (write_all(fd, iov, n) != 0 ||
        linkat(AT_FDCWD, self, AT_FDCWD, path, AT_SYMLINK_FOLLOW) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}
