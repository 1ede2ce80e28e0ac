/*
 * hub/core/jobs.h - the hub's periodic work, in one table.
 *
 * Each domain registers its jobs at start-up ({name, period, fn}); one
 * thread runs whatever is due, in the order registered. A job marked
 * HUB_JOB_LOCKED runs with the hub lock held (the common case); one marked
 * HUB_JOB_SESSION runs only while the hub's MQTT session is up (what it
 * would send would otherwise be lost). With several hubs, a job runs on the
 * leader alone unless marked HUB_JOB_EVERY_HUB (hub/core/cluster.h): a hub
 * that takes the lead runs the others' jobs within their period. hub_jobs_run_due is the whole
 * scheduler: tests drive it with the replaceable clock (core/clock.h).
 */
#ifndef MAMORI_HUB_CORE_JOBS_H
#define MAMORI_HUB_CORE_JOBS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "mamori/error.h"

struct hub;

#define HUB_JOB_LOCKED    1u
#define HUB_JOB_SESSION   2u
#define HUB_JOB_EVERY_HUB 4u /* runs on every hub; the rest on the leader only (cluster.h) */
#define HUB_JOBS_MAX      24

typedef void (*hub_job_fn)(struct hub *h, int64_t now_ms);

struct hub_job {
    const char *name;
    int64_t period_ms;
    unsigned flags;
    hub_job_fn fn;
    int64_t next_ms; /* 0: at the first turn */
    uint64_t runs;
};

struct hub_jobs {
    struct hub_job job[HUB_JOBS_MAX];
    size_t n;
    pthread_t thread;
    int running;
};

/* Start-up only. first_ms: delay before the first run (0: at once). */
enum mamori_err hub_job_add(struct hub *h, const char *name, int64_t period_ms, int64_t first_ms,
                            unsigned flags, hub_job_fn fn) MAMORI_MUST_CHECK;
/* Runs every job due at now_ms; returns how many ran. Takes the lock for
 * HUB_JOB_LOCKED jobs itself (call without it). */
size_t hub_jobs_run_due(struct hub *h, int64_t now_ms);
/* The thread that calls hub_jobs_run_due (every 50 ms at most). */
enum mamori_err hub_jobs_start(struct hub *h) MAMORI_MUST_CHECK;
void hub_jobs_stop(struct hub *h);
/* The job named name, for tests and health (NULL when none). */
const struct hub_job *hub_job_named(const struct hub *h, const char *name);

#endif
