/* hub/device/register.c - see register.h. */
#include "hub/device/register.h"

#include "hub/device/lifecycle.h"
#include "hub/device/liveness.h"
#include "hub/device/relay.h"
#include "hub/device/rotation.h"
#include "hub/device/stray.h"
#include "hub/device/telemetry.h"

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

/* Another hub changed a device's registry entry or owner: what this hub
 * holds of it is read again when next used, and if this hub leads it sends
 * the broker nodes the entry as the registry has it now (whatever order
 * the others' notices come in, the latest word wins). Lock held. */
static void changed_elsewhere(struct hub *h, const char *id)
{
    struct device_rec d;
    enum lc_state st;
    tm_forget_one(h, id);
    if (hub_leads(h) && h->out.push_device && store_device_get(h->store, id, &d) == MAMORI_OK &&
        lc_state_parse(d.state, &st))
        h->out.push_device(h, &d, (int)lc_access(st));
}

enum mamori_err device_register(struct hub *h)
{
    h->cluster.on_changed = changed_elsewhere;
    h->cluster.on_partitions = tm_forget;
    /* offline is told within two heartbeat intervals: the sweep runs every
     * interval/10, between 100 ms and 1 s */
    int64_t step_ms = h->cfg.heartbeat_s * 100L;
    step_ms = step_ms < 100 ? 100 : step_ms > 1000 ? 1000 : step_ms;
    int64_t rot_ms = (int64_t)h->cfg.rotation_check_s * 1000;
    enum mamori_err rc;
    if ((rc = hub_job_add(h, "liveness_sweep", step_ms, step_ms, HUB_JOB_EVERY_HUB, sweep_job)) ||
        (rc = hub_job_add(h, "rotation_policy", rot_ms, rot_ms, HUB_JOB_LOCKED | HUB_JOB_SESSION,
                          rotation_job)) ||
        (rc = hub_job_add(h, "relay_challenge", 100, 0, HUB_JOB_LOCKED | HUB_JOB_EVERY_HUB,
                          relay_job)))
        return rc;
    enum mamori_err r2 = rotation_register(h);
    return r2 ? r2 : stray_register(h);
}
