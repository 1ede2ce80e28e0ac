/* hub/core/jobs.c - see jobs.h. */
#include "hub/core/jobs.h"

#include <string.h>
#include <sys/prctl.h>

#include "hub/core/clock.h"
#include "hub/core/cluster.h"
#include "hub/core/hub.h"

enum mamori_err hub_job_add(struct hub *h, const char *name, int64_t period_ms, int64_t first_ms,
                            unsigned flags, hub_job_fn fn)
{
    struct hub_jobs *j = &h->jobs;
    if (j->n == HUB_JOBS_MAX)
        return MAMORI_ERR_TOOBIG;
    if (period_ms <= 0 || !fn)
        return MAMORI_ERR_INVAL;
    j->job[j->n++] = (struct hub_job){.name = name,
                                      .period_ms = period_ms,
                                      .flags = flags,
                                      .fn = fn,
                                      .next_ms = first_ms ? hub_now_ms() + first_ms : 0};
    return MAMORI_OK;
}

size_t hub_jobs_run_due(struct hub *h, int64_t now_ms)
{
    size_t ran = 0;
    for (size_t i = 0; i < h->jobs.n && !h->stopping; i++) {
        struct hub_job *b = &h->jobs.job[i];
        if (b->next_ms > now_ms)
            continue;
        /* the next run is a period after this one, not after a backlog */
        b->next_ms = now_ms + b->period_ms;
        bool locked = b->flags & HUB_JOB_LOCKED;
        if (locked)
            pthread_mutex_lock(&h->lock);
        bool mine = (b->flags & HUB_JOB_EVERY_HUB) || hub_leads(h);
        if (mine && (!(b->flags & HUB_JOB_SESSION) || h->mqtt_connected)) {
            b->fn(h, now_ms);
            b->runs++;
            ran++;
        }
        if (locked)
            pthread_mutex_unlock(&h->lock);
    }
    return ran;
}

static void *jobs_thread(void *arg)
{
    (void)prctl(PR_SET_NAME, "mamori-jobs", 0, 0, 0); /* top -H, ps -L */
    struct hub *h = arg;
    while (!h->stopping) {
        (void)hub_jobs_run_due(h, hub_now_ms());
        hub_sleep(h, 50);
    }
    return NULL;
}

enum mamori_err hub_jobs_start(struct hub *h)
{
    if (pthread_create(&h->jobs.thread, NULL, jobs_thread, h))
        return MAMORI_ERR_INTERNAL;
    h->jobs.running = 1;
    return MAMORI_OK;
}

void hub_jobs_stop(struct hub *h)
{
    if (!h->jobs.running)
        return;
    h->stopping = 1;
    pthread_join(h->jobs.thread, NULL);
    h->jobs.running = 0;
}

const struct hub_job *hub_job_named(const struct hub *h, const char *name)
{
    for (size_t i = 0; i < h->jobs.n; i++)
        if (strcmp(h->jobs.job[i].name, name) == 0)
            return &h->jobs.job[i];
    return NULL;
}
