/* hub/device/register.c - see register.h. */
#include "hub/device/register.h"

#include "hub/device/liveness.h"
#include "hub/device/relay.h"
#include "hub/device/rotation.h"
#include "hub/device/stray.h"

static void sweep_job(struct hub *h, int64_t now_ms)
{
    (void)live_sweep(h, now_ms); /* takes the lock itself */
}

/* T05-L2c: certificates are renewed well before they expire. */
static void rotation_job(struct hub *h, int64_t now_ms)
{
    rotation_tick(h, now_ms / 1000);
}

/* T09-L2b: a timed signed challenge per online device. */
static void relay_job(struct hub *h, int64_t now_ms)
{
    (void)now_ms;
    relay_tick(h);
}

enum mamori_err device_register(struct hub *h)
{
    /* offline is told within two heartbeat intervals: the sweep runs every
     * interval/10, between 100 ms and 1 s */
    int64_t step_ms = h->cfg.heartbeat_s * 100L;
    step_ms = step_ms < 100 ? 100 : step_ms > 1000 ? 1000 : step_ms;
    int64_t rot_ms = (int64_t)h->cfg.rotation_check_s * 1000;
    enum mamori_err rc;
    if ((rc = hub_job_add(h, "liveness_sweep", step_ms, step_ms, 0, sweep_job)) ||
        (rc = hub_job_add(h, "rotation_policy", rot_ms, rot_ms, HUB_JOB_LOCKED | HUB_JOB_SESSION,
                          rotation_job)) ||
        (rc = hub_job_add(h, "relay_challenge", 100, 0, HUB_JOB_LOCKED, relay_job)))
        return rc;
    enum mamori_err r2 = rotation_register(h);
    return r2 ? r2 : stray_register(h);
}
