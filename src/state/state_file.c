/*
 * state_file.c - the file side of state export/import: where the file may
 * be (path confinement), writing it atomically, reading it line by line,
 * and the two encodings the format needs (FNV-1a 64, base64).
 *
 * Confinement (client paths of state.save/state.load): the path is split
 * into components and walked from a descriptor of the confinement
 * directory with openat(O_NOFOLLOW), never through realpath(): a
 * component cannot be swapped for a symbolic link between a check and the
 * use, and no name is ever resolved outside the directory. Refused, with
 * -32602 and a message naming the problem: empty or over-long paths,
 * control characters, absolute paths, "..", symbolic links anywhere on the
 * way (including the file itself), missing directories, names that do not
 * end in ".jsonl" or start with '.' (which also keeps clients away from
 * the database and from our temporary files), and anything that is not a
 * regular file (directories, FIFOs, devices). FIFOs are opened with
 * O_NONBLOCK so the check cannot hang.
 *
 * Atomic write: a temporary file ".state-tmp-<pid>-<random>.jsonl" (mode
 * 0600: the state holds every memory) is created with O_EXCL in the
 * target's directory, written, fsync'ed, renamed over the target, and the
 * directory is fsync'ed so the rename itself is durable. A reader of the
 * target sees the old file or the complete new one, never a prefix.
 *
 * The line reader keeps JSON_PADDING readable bytes after every line it
 * returns so json_parse() can read the line in place.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/json.h"
#include "state/state_internal.h"

int state_fail(state_err *e, int code, const char *fmt, ...)
{
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- FNV-1a 64 and base64 ------------------------------------------------------- */

uint64_t state_fnv(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void state_b64_encode(const unsigned char *in, size_t n, char *out)
{
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *out++ = B64[v >> 18];
        *out++ = B64[(v >> 12) & 63];
        *out++ = B64[(v >> 6) & 63];
        *out++ = B64[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        *out++ = B64[v >> 18];
        *out++ = B64[(v >> 12) & 63];
        *out++ = i + 1 < n ? B64[(v >> 6) & 63] : '=';
        *out++ = '=';
    }
}

/* Decoding table: the 6-bit value of an alphabet character, 0x80 for
 * anything else (so one OR over a quartet detects an invalid character). */
static uint8_t g_b64_dec[256];
static pthread_once_t g_b64_once = PTHREAD_ONCE_INIT;

static void b64_init(void)
{
    memset(g_b64_dec, 0x80, sizeof g_b64_dec);
    for (int i = 0; i < 64; i++) g_b64_dec[(unsigned char)B64[i]] = (uint8_t)i;
}

long state_b64_decode(const char *in, size_t n, unsigned char *out)
{
    pthread_once(&g_b64_once, b64_init);
    if (n % 4) return -1;
    const unsigned char *s = (const unsigned char *)in;
    size_t full = n, o = 0;
    int pad = 0;
    if (n && s[n - 1] == '=') {
        pad = s[n - 2] == '=' ? 2 : 1;
        full = n - 4;
    }
    for (size_t i = 0; i < full; i += 4) {
        uint8_t a = g_b64_dec[s[i]], b = g_b64_dec[s[i + 1]], c = g_b64_dec[s[i + 2]],
                d = g_b64_dec[s[i + 3]];
        if ((a | b | c | d) & 0x80) return -1;
        uint32_t x = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | d;
        out[o++] = (unsigned char)(x >> 16);
        out[o++] = (unsigned char)(x >> 8);
        out[o++] = (unsigned char)x;
    }
    if (pad) { /* the last quartet: "xy==" or "xyz=" */
        const unsigned char *q = s + full;
        uint8_t a = g_b64_dec[q[0]], b = g_b64_dec[q[1]], c = pad == 1 ? g_b64_dec[q[2]] : 0;
        if ((a | b | c) & 0x80) return -1;
        uint32_t x = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6;
        out[o++] = (unsigned char)(x >> 16);
        if (pad == 1) out[o++] = (unsigned char)(x >> 8);
    }
    return (long)o;
}

/* ---- targets ------------------------------------------------------------------------ */

static int open_dir(const char *path, state_target *t, state_err *e)
{
    t->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (t->dirfd >= 0) return 0;
    if (errno == ENOENT || errno == ENOTDIR)
        return state_fail(e, STATE_EINVAL, "directory not found: %s", path);
    return state_fail(e, STATE_EIO, "cannot open directory %s: %s", path, strerror(errno));
}

/* CLI: any path; only its directory must exist. */
static int open_free(state_target *t, const char *path, state_err *e)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
        return state_fail(e, STATE_EINVAL, "path must name a file: %s", path);
    if (strlen(base) >= sizeof t->base)
        return state_fail(e, STATE_EINVAL, "file name too long: %s", base);
    snprintf(t->base, sizeof t->base, "%s", base);
    snprintf(t->display, sizeof t->display, "%s", path);
    char dir[1024];
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else if ((size_t)(slash - path) >= sizeof dir)
        return state_fail(e, STATE_EINVAL, "path too long");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    return open_dir(dir, t, e);
}

static int check_client_name(const char *path, const char *base, state_err *e)
{
    size_t n = strlen(base);
    if (n == 0) return state_fail(e, STATE_EINVAL, "path must name a file, not a directory");
    if (base[0] == '.')
        return state_fail(e, STATE_EINVAL, "state file names must not start with '.': %s", path);
    if (n <= 6 || strcmp(base + n - 6, ".jsonl") != 0)
        return state_fail(e, STATE_EINVAL, "state file names must end in .jsonl: %s", path);
    if (n > 200) return state_fail(e, STATE_EINVAL, "state file name longer than 200 bytes");
    return 0;
}

/* Descend one directory level from t->dirfd without following links. */
static int descend(state_target *t, const char *comp, const char *shown, state_err *e)
{
    struct stat st;
    if (fstatat(t->dirfd, comp, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
            return state_fail(e, STATE_EINVAL, "directory not found in the data directory: %s",
                              shown);
        return state_fail(e, STATE_EIO, "cannot read %s: %s", shown, strerror(errno));
    }
    if (S_ISLNK(st.st_mode))
        return state_fail(e, STATE_EINVAL,
                          "%s is a symbolic link (links are not followed in state file paths)",
                          shown);
    if (!S_ISDIR(st.st_mode)) return state_fail(e, STATE_EINVAL, "%s is not a directory", shown);
    int fd = openat(t->dirfd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return state_fail(e, errno == ELOOP ? STATE_EINVAL : STATE_EIO, "cannot open %s: %s", shown,
                          strerror(errno));
    close(t->dirfd);
    t->dirfd = fd;
    return 0;
}

static int open_confined(state_target *t, const char *path, const char *root, state_err *e)
{
    size_t n = strlen(path);
    if (n > 1000) return state_fail(e, STATE_EINVAL, "path longer than 1000 bytes");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)path[i] < 0x20 || path[i] == 0x7f)
            return state_fail(e, STATE_EINVAL, "path contains a control character");
    if (path[0] == '/')
        return state_fail(e, STATE_EINVAL,
                          "absolute paths are not allowed: give a path relative to the data "
                          "directory (%s)",
                          path);
    /* Normalise: drop empty and "." components, refuse "..". */
    char comps[1024];
    snprintf(comps, sizeof comps, "%s", path);
    const char *parts[512];
    int np = 0;
    for (char *save = NULL, *c = strtok_r(comps, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0) continue;
        if (strcmp(c, "..") == 0)
            return state_fail(e, STATE_EINVAL,
                              "'..' is not allowed in a state file path: %s (the file must be "
                              "inside the data directory)",
                              path);
        if (np == 512) return state_fail(e, STATE_EINVAL, "path has too many components");
        parts[np++] = c;
    }
    if (np == 0 || path[n - 1] == '/')
        return state_fail(e, STATE_EINVAL, "path must name a file, not a directory: %s", path);
    if (check_client_name(path, parts[np - 1], e) < 0) return -1;
    size_t dl = 0;
    t->display[0] = 0;
    for (int i = 0; i < np; i++)
        dl += (size_t)snprintf(t->display + dl, sizeof t->display - dl, "%s%s", i ? "/" : "",
                               parts[i]);
    snprintf(t->base, sizeof t->base, "%s", parts[np - 1]);
    t->confined = true;
    t->dirfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (t->dirfd < 0)
        return state_fail(e, STATE_EIO, "cannot open the data directory: %s", strerror(errno));
    char shown[1024];
    size_t sl = 0;
    for (int i = 0; i + 1 < np; i++) {
        sl += (size_t)snprintf(shown + sl, sizeof shown - sl, "%s%s", i ? "/" : "", parts[i]);
        if (descend(t, parts[i], shown, e) < 0) return -1;
    }
    return 0;
}

int state_target_open(state_target *t, const char *path, const char *confine_dir, state_err *e)
{
    memset(t, 0, sizeof *t);
    t->dirfd = -1;
    int rc;
    if (!path || !*path)
        rc = state_fail(e, STATE_EINVAL, "'path' must not be empty");
    else
        rc = confine_dir ? open_confined(t, path, confine_dir, e) : open_free(t, path, e);
    if (rc < 0) state_target_close(t);
    return rc;
}

void state_target_close(state_target *t)
{
    if (t->dirfd >= 0) close(t->dirfd);
    t->dirfd = -1;
}

int state_target_read(state_target *t, uint64_t *size, state_err *e)
{
    int flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | (t->confined ? O_NOFOLLOW : 0);
    int fd = openat(t->dirfd, t->base, flags);
    if (fd < 0) {
        if (errno == ENOENT)
            return state_fail(e, STATE_EINVAL, "state file not found: %s", t->display);
        if (errno == ELOOP)
            return state_fail(e, STATE_EINVAL,
                              "%s is a symbolic link (links are not followed in state file paths)",
                              t->display);
        if (errno == EISDIR || errno == ENXIO)
            return state_fail(e, STATE_EINVAL, "%s is not a regular file", t->display);
        return state_fail(e, STATE_EIO, "cannot open %s: %s", t->display, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return state_fail(e, STATE_EINVAL, "%s is not a regular file", t->display);
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    *size = (uint64_t)st.st_size;
    return fd;
}

/* ---- atomic writer ------------------------------------------------------------------ */

int state_out_open(state_out *o, state_target *t, state_err *e)
{
    memset(o, 0, sizeof *o);
    o->t = t;
    o->fd = -1;
    o->fnv = STATE_FNV_INIT;
    struct stat st;
    if (fstatat(t->dirfd, t->base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode) && t->confined)
            return state_fail(e, STATE_EINVAL,
                              "%s is a symbolic link (links are not followed in state file paths)",
                              t->display);
        if (S_ISDIR(st.st_mode) || (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)))
            return state_fail(e, STATE_EINVAL, "%s exists and is not a regular file", t->display);
    }
    uint32_t rnd = 0;
    if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) rnd = (uint32_t)rand();
    snprintf(o->tmp, sizeof o->tmp, ".state-tmp-%ld-%08x.jsonl", (long)getpid(), rnd);
    o->fd = openat(t->dirfd, o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (o->fd < 0) {
        o->tmp[0] = 0;
        return state_fail(e, STATE_EIO, "cannot create a temporary file beside %s: %s", t->display,
                          strerror(errno));
    }
    return 0;
}

int state_out_write(state_out *o, const void *data, size_t n, bool hash, state_err *e)
{
    if (hash) o->fnv = state_fnv(o->fnv, data, n);
    const char *p = data;
    while (n) {
        ssize_t w = write(o->fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0)
            return state_fail(e, STATE_EIO, "writing %s failed: %s", o->t->display,
                              strerror(errno));
        p += w;
        n -= (size_t)w;
        o->bytes += (uint64_t)w;
    }
    return 0;
}

int state_out_commit(state_out *o, state_err *e)
{
    if (fsync(o->fd) < 0)
        return state_fail(e, STATE_EIO, "fsync of %s failed: %s", o->t->display, strerror(errno));
    int rc = close(o->fd);
    o->fd = -1;
    if (rc < 0)
        return state_fail(e, STATE_EIO, "closing %s failed: %s", o->t->display, strerror(errno));
    if (renameat(o->t->dirfd, o->tmp, o->t->dirfd, o->t->base) < 0)
        return state_fail(e, STATE_EIO, "renaming the temporary file to %s failed: %s",
                          o->t->display, strerror(errno));
    o->tmp[0] = 0;
    if (fsync(o->t->dirfd) < 0)
        return state_fail(e, STATE_EIO, "fsync of the directory of %s failed: %s", o->t->display,
                          strerror(errno));
    return 0;
}

void state_out_abort(state_out *o)
{
    if (o->fd >= 0) close(o->fd);
    o->fd = -1;
    if (o->tmp[0] && o->t) unlinkat(o->t->dirfd, o->tmp, 0);
    o->tmp[0] = 0;
}

/* ---- line reader -------------------------------------------------------------------- */

#define IN_CHUNK (1u << 20)

static void in_alloc(state_in *r, size_t cap)
{
    char *b = realloc(r->buf, cap + JSON_PADDING);
    if (!b) abort();
    memset(b + r->cap, 0, cap + JSON_PADDING - r->cap); /* never read uninitialised bytes */
    r->buf = b;
    r->cap = cap;
}

int state_in_init(state_in *r, int fd, state_err *e)
{
    memset(r, 0, sizeof *r);
    r->fd = fd;
    if (lseek(fd, 0, SEEK_SET) < 0)
        return state_fail(e, STATE_EIO, "cannot seek in the state file: %s", strerror(errno));
    in_alloc(r, IN_CHUNK);
    return 0;
}

void state_in_free(state_in *r)
{
    free(r->buf);
    r->buf = NULL;
}

int state_in_line(state_in *r, const char **line, size_t *len, size_t *slack, bool *nl,
                  state_err *e)
{
    size_t scanned = 0; /* bytes after start already known to hold no '\n' */
    for (;;) {
        char *s = r->buf + r->start;
        char *p = memchr(s + scanned, '\n', r->end - r->start - scanned);
        if (p || (r->eof && r->end > r->start)) {
            size_t n = p ? (size_t)(p - s) : r->end - r->start;
            *line = s;
            *len = n;
            *slack = r->cap + JSON_PADDING - r->start;
            *nl = p != NULL;
            r->start += n + (p != NULL);
            r->offset += n + (p != NULL);
            return 1;
        }
        if (r->eof) return 0;
        scanned = r->end - r->start;
        if (r->start > 0) {
            memmove(r->buf, s, scanned);
            r->end = scanned;
            r->start = 0;
        }
        if (r->end == r->cap) {
            if (r->cap >= STATE_LINE_MAX)
                return state_fail(e, STATE_EINVAL, "line longer than %u MiB at byte %llu",
                                  STATE_LINE_MAX >> 20, (unsigned long long)r->offset);
            in_alloc(r, r->cap * 2);
        }
        ssize_t got = read(r->fd, r->buf + r->end, r->cap - r->end);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0)
            return state_fail(e, STATE_EIO, "reading the state file failed: %s", strerror(errno));
        if (got == 0)
            r->eof = true;
        else
            r->end += (size_t)got;
    }
}
