/*
 * util.h - small helpers with no better home: random ids and time text.
 */
#ifndef PMCP_UTIL_H
#define PMCP_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Random UUID version 4 text, 36 characters + NUL (getrandom). */
void util_uuid4(char out[40]);
/* Time-ordered UUID version 7 text (RFC 9562): 48 bits of Unix time in ms,
 * 12 bits of sub-millisecond clock (the RFC's method 3), 62 random bits
 * (getrandom, drawn 256 bytes at a time per thread). Ids made later sort
 * later (to 1/4096 ms), so an index on them grows at its end. */
void util_uuid7(char out[40]);
/* Epoch seconds -> "2025-10-15T10:30:00.123456+00:00" (or "...Z" when z). */
void util_iso_time(double epoch, char out[40], bool z);
/* 64-bit FNV-1a of n bytes. */
uint64_t util_hash64(const void *data, size_t n);
/* The CLOCK_REALTIME time us microseconds from now: the deadline that
 * pthread_cond_timedwait takes on a default condition variable. */
struct timespec util_realtime_in(uint64_t us);
/* Ask the kernel for a time slice of us microseconds for the calling thread
 * (EEVDF, Linux 6.12+: a shorter slice is scheduled sooner when it wakes).
 * 0 on success, when us <= 0, or when the thread is not SCHED_OTHER (an
 * operator's chrt wins); -1 (errno) where the kernel refuses. */
int util_set_slice_us(int us);

#endif
