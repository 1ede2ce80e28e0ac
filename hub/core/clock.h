/*
 * hub/core/clock.h - the hub's one source of time.
 *
 * Hub code never calls time(2) or clock_gettime(2) itself: it asks here, so
 * a test can put the whole hub on a clock it moves by hand (liveness,
 * stray devices, retention, expiry and the periodic jobs are then tested
 * without waiting real time). The default is the system's wall clock and
 * its monotonic clock.
 */
#ifndef MAMORI_HUB_CORE_CLOCK_H
#define MAMORI_HUB_CORE_CLOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct hub;

/* Wall-clock time since the epoch: seconds, milliseconds. */
int64_t hub_now(void);
int64_t hub_now_ms(void);
/* A clock that never goes backwards (ms, arbitrary origin): deadlines. */
int64_t hub_mono_ms(void);

/* Replaces the clock for the whole process (a test's): now_ms returns the
 * wall-clock time in ms, and the monotonic clock follows it. NULL puts the
 * system's clock back. Not for production code. */
void hub_clock_override(int64_t (*now_ms)(void *arg), void *arg);

/* The absolute time ms milliseconds of real time from now on clock clk,
 * for pthread_cond_timedwait (a wait is real time even under a test's
 * clock: the thread must still wake). */
void hub_wait_deadline(struct timespec *out, clockid_t clk, unsigned ms);

/* Whether the deadline t (from hub_wait_deadline on clk) has passed. */
bool hub_deadline_passed(const struct timespec *t, clockid_t clk);
/* Moves the deadline t back to by when by (same clock; NULL: none) comes
 * first. */
void hub_deadline_cap(struct timespec *t, const struct timespec *by);

/* Sleeps ms milliseconds of real time, waking early when the hub stops. */
void hub_sleep(struct hub *h, unsigned ms);
/* Sleeps *backoff_ms (interruptible) and doubles it up to max_ms. */
void hub_backoff(struct hub *h, unsigned *backoff_ms, unsigned max_ms);

#endif
