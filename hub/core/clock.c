/* hub/core/clock.c - see clock.h. */
#include "hub/core/clock.h"

#include <stddef.h>
#include <time.h>

#include "hub/core/hub.h"

static int64_t (*override_fn)(void *);
static void *override_arg;

void hub_clock_override(int64_t (*now_ms)(void *arg), void *arg)
{
    override_arg = arg;
    __atomic_store_n(&override_fn, now_ms, __ATOMIC_RELEASE);
}

int64_t hub_now_ms(void)
{
    int64_t (*fn)(void *) = __atomic_load_n(&override_fn, __ATOMIC_ACQUIRE);
    if (fn)
        return fn(override_arg);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t hub_now(void)
{
    return hub_now_ms() / 1000;
}

int64_t hub_mono_ms(void)
{
    int64_t (*fn)(void *) = __atomic_load_n(&override_fn, __ATOMIC_ACQUIRE);
    if (fn)
        return fn(override_arg);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void hub_wait_deadline(struct timespec *out, clockid_t clk, unsigned ms)
{
    clock_gettime(clk, out);
    out->tv_nsec += (long)(ms % 1000) * 1000000L;
    out->tv_sec += ms / 1000 + out->tv_nsec / 1000000000L;
    out->tv_nsec %= 1000000000L;
}

/* a is at or after b */
static bool ts_not_before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec > b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec >= b->tv_nsec);
}

bool hub_deadline_passed(const struct timespec *t, clockid_t clk)
{
    struct timespec now;
    clock_gettime(clk, &now);
    return ts_not_before(&now, t);
}

void hub_deadline_cap(struct timespec *t, const struct timespec *by)
{
    if (by && !ts_not_before(by, t))
        *t = *by;
}

void hub_sleep(struct hub *h, unsigned ms)
{
    for (unsigned slept = 0; slept < ms && !h->stopping; slept += 50) {
        struct timespec step = {0, 50 * 1000000L};
        nanosleep(&step, NULL);
    }
}

void hub_backoff(struct hub *h, unsigned *backoff_ms, unsigned max_ms)
{
    hub_sleep(h, *backoff_ms);
    *backoff_ms = *backoff_ms * 2 > max_ms ? max_ms : *backoff_ms * 2;
}
