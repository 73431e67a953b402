/*
 * util.c - see util.h.
 */
#include "lib/util.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void uuid_text(const unsigned char b[16], char out[40])
{
    static const char hex[] = "0123456789abcdef";
    int o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = 0;
}

void util_uuid4(char out[40])
{
    unsigned char b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) abort();
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    uuid_text(b, out);
}

/* n random bytes from a per-thread pool refilled by getrandom. */
static void random_bytes(unsigned char *dst, size_t n)
{
    static _Thread_local unsigned char pool[256];
    static _Thread_local size_t left;
    for (size_t i = 0; i < n; i++) {
        if (!left) {
            if (getrandom(pool, sizeof pool, 0) != (ssize_t)sizeof pool) abort();
            left = sizeof pool;
        }
        dst[i] = pool[--left];
        pool[left] = 0; /* a byte is never handed out twice */
    }
}

void util_uuid7(char out[40])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    unsigned frac = (unsigned)(((uint64_t)ts.tv_nsec % 1000000u) * 4096u / 1000000u);
    unsigned char b[16];
    for (int i = 0; i < 6; i++) b[i] = (unsigned char)(ms >> (40 - 8 * i));
    b[6] = (unsigned char)(0x70 | (frac >> 8));
    b[7] = (unsigned char)(frac & 0xff);
    random_bytes(b + 8, 8);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    uuid_text(b, out);
}

/* Civil date (proleptic Gregorian) of a day count from 1970-01-01: eras of
 * 400 years (146,097 days) starting on March 1, so the leap day is the last
 * day of a year; no table, no lock. */
static void civil_from_days(int64_t days, int64_t *y, int *m, int *d)
{
    days += 719468; /* 0000-03-01 -> 1970-01-01 */
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t doe = days - era * 146097;                                   /* [0, 146096] */
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
    int64_t mp = (5 * doy + 2) / 153;                                    /* [0, 11], March = 0 */
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* v as exactly n decimal digits (v < 10^n) at p; returns p + n. */
static char *put_digits(char *p, long v, int n)
{
    for (int i = n - 1; i >= 0; i--, v /= 10) p[i] = (char)('0' + v % 10);
    return p + n;
}

/* Formatted by hand, not with gmtime_r() + snprintf(): glibc's gmtime_r
 * takes a process-wide lock, and search results format two times per row. */
void util_iso_time(double epoch, char out[40], bool z)
{
    double whole = floor(epoch);
    long usec = lround((epoch - whole) * 1e6);
    if (usec >= 1000000) {
        whole += 1;
        usec -= 1000000;
    }
    int64_t t = (int64_t)whole;
    int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
    long sod = (long)(t - days * 86400);
    int64_t y;
    int mon, mday;
    civil_from_days(days, &y, &mon, &mday);
    if (y < 0 || y > 9999) { /* outside what four digits hold: the general path */
        snprintf(out, 40, "%04lld-%02d-%02dT%02ld:%02ld:%02ld.%06ld%s", (long long)y, mon, mday,
                 sod / 3600, sod / 60 % 60, sod % 60, usec, z ? "Z" : "+00:00");
        return;
    }
    char *p = put_digits(out, (long)y, 4);
    *p++ = '-';
    p = put_digits(p, mon, 2);
    *p++ = '-';
    p = put_digits(p, mday, 2);
    *p++ = 'T';
    p = put_digits(p, sod / 3600, 2);
    *p++ = ':';
    p = put_digits(p, sod / 60 % 60, 2);
    *p++ = ':';
    p = put_digits(p, sod % 60, 2);
    *p++ = '.';
    p = put_digits(p, usec, 6);
    memcpy(p, z ? "Z" : "+00:00", z ? 2 : 7);
}

uint64_t util_hash64(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

struct timespec util_realtime_in(uint64_t us)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + (us % 1000000u) * 1000u;
    ts.tv_sec += (time_t)(us / 1000000u + ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    return ts;
}

/* ---- scheduling ------------------------------------------------------------------ */

/* struct sched_attr as the kernel reads it (glibc 2.36 has no wrapper) */
struct util_sched_attr {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
};

int util_set_slice_us(int us)
{
    /* a thread an operator put under another policy (chrt --batch/--idle) keeps it */
    if (us <= 0 || sched_getscheduler(0) != SCHED_OTHER) return 0;
    struct util_sched_attr a = {.size = sizeof a,
                                .policy = SCHED_OTHER,
                                .nice = getpriority(PRIO_PROCESS, 0),
                                .runtime = (uint64_t)us * 1000u};
    return (int)syscall(SYS_sched_setattr, 0, &a, 0);
}
