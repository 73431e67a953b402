/*
 * test_util.c - small helpers of src/lib/util.c.
 *
 * util_iso_time() formats by hand (no gmtime_r, no snprintf); it is checked
 * against gmtime_r() + snprintf() over leap days, century years, the epoch,
 * times before 1970, fractions that round up to the next second, and a
 * pseudo-random sweep of 200,000 instants across 1900-2400.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/utsname.h>
#include <time.h>

#include "lib/util.h"

/* The reference: what util_iso_time printed before it was written by hand. */
static void reference(double epoch, char out[40], bool z)
{
    double whole = floor(epoch);
    long usec = lround((epoch - whole) * 1e6);
    if (usec >= 1000000) {
        whole += 1;
        usec -= 1000000;
    }
    time_t t = (time_t)whole;
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, 40, "%04d-%02d-%02dT%02d:%02d:%02d.%06ld%s", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, usec, z ? "Z" : "+00:00");
}

static void check(double epoch, bool z)
{
    char got[40], want[40];
    memset(got, 'x', sizeof got);
    util_iso_time(epoch, got, z);
    reference(epoch, want, z);
    if (strcmp(got, want) != 0) fail_msg("%.6f: got %s, want %s", epoch, got, want);
}

static void test_iso_time_known(void **state)
{
    (void)state;
    char out[40];
    util_iso_time(0, out, false);
    assert_string_equal(out, "1970-01-01T00:00:00.000000+00:00");
    util_iso_time(951782400.5, out, true); /* 2000-02-29 */
    assert_string_equal(out, "2000-02-29T00:00:00.500000Z");
    util_iso_time(1760524200.123456, out, false);
    assert_string_equal(out, "2025-10-15T10:30:00.123456+00:00");
    util_iso_time(59.9999996, out, false); /* rounds up into the next minute */
    assert_string_equal(out, "1970-01-01T00:01:00.000000+00:00");
    util_iso_time(-1, out, true);
    assert_string_equal(out, "1969-12-31T23:59:59.000000Z");
}

static void test_iso_time_matches_gmtime(void **state)
{
    (void)state;
    static const double edges[] = {0,           -0.25,       86399.9999999, 86400,
                                   -86400,      68169600,    951782399,     951868800,
                                   4107542400,  4107456000,  -2208988800,   -2203891200,
                                   13569465599, 13569465600, 253402300799,  1700000000.000001};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        check(edges[i], false);
        check(edges[i], true);
    }
    uint64_t r = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < 200000; i++) {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        double span = 15778800000.0; /* 1900 .. 2400 */
        double t = -2208988800.0 + (double)(r >> 11) / 9007199254740992.0 * span;
        check(t, i & 1);
    }
}

/* This thread's scheduler slice in ns from /proc (EEVDF kernels), or -1. */
static long my_slice_ns(void)
{
    FILE *f = fopen("/proc/thread-self/sched", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "se.slice", 8) == 0) v = atol(strchr(line, ':') + 1);
    fclose(f);
    return v;
}

static void test_set_slice(void **state)
{
    (void)state;
    long before = my_slice_ns();
    assert_int_equal(util_set_slice_us(0), 0); /* 0: leave the kernel's */
    assert_int_equal(util_set_slice_us(-5), 0);
    assert_true(my_slice_ns() == before);
    int rc = util_set_slice_us(250);
    if (rc != 0) { /* a kernel without sched_setattr, or a sandbox refusing it */
        assert_true(errno == ENOSYS || errno == EPERM || errno == EINVAL);
        return;
    }
    /* custom slices for fair tasks came with Linux 6.12 */
    struct utsname u;
    int major = 0, minor = 0;
    if (uname(&u) == 0) sscanf(u.release, "%d.%d", &major, &minor);
    if (my_slice_ns() >= 0 && (major > 6 || (major == 6 && minor >= 12)))
        assert_int_equal(my_slice_ns(), 250000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iso_time_known),
        cmocka_unit_test(test_iso_time_matches_gmtime),
        cmocka_unit_test(test_set_slice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
