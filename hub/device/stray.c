/*
 * hub/device/stray.c - stray devices (T01-L4a, T01-L4b): offline longer than
 * the stray period, or forgotten by their owner, they are restricted to
 * heartbeats and commands until the owner confirms them.
 */
#include "hub/device/stray.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "hub/device/device.h"

/* --- stray devices (T01-L4a, T01-L4b) --------------------------------------- */

static const struct principal STRAY_WHO = {.user_id = 0, .name = "stray", .role = ROLE_ADMIN};

/* Devices offline longer than the stray period become stray: restricted to
 * heartbeats and commands, download tokens void, owner and integrations
 * told (the stray_device rule). Lock held. */
static void stray_mark(struct hub *h, char (*ids)[24], size_t n, const char *reason);

static void stray_sweep(struct hub *h)
{
    static char ids[256][24];
    size_t n = 0;
    char reason[96];
    if (h->cfg.stray_after_s > 0) {
        snprintf(reason, sizeof(reason), "offline longer than the stray period (%lld s)",
                 (long long)h->cfg.stray_after_s);
        log_if_err(store_devices_silent(h->store, hub_now() - h->cfg.stray_after_s, ids, 256, &n));
        stray_mark(h, ids, n, reason);
    }
    /* forgotten by its owner: no login for the owner-idle period (JNSA L4) */
    if (h->cfg.owner_idle_s > 0) {
        snprintf(reason, sizeof(reason), "its owner has not logged in for %lld s",
                 (long long)h->cfg.owner_idle_s);
        log_if_err(
            store_devices_owner_idle(h->store, hub_now() - h->cfg.owner_idle_s, ids, 256, &n));
        stray_mark(h, ids, n, reason);
    }
}

static void stray_mark(struct hub *h, char (*ids)[24], size_t n, const char *reason)
{
    for (size_t i = 0; i < n; i++) {
        struct device_rec d;
        if (store_device_get(h->store, ids[i], &d) ||
            hub_device_action_locked(h, &STRAY_WHO, &d, LC_STRAY_MARK, reason, NULL))
            continue;
        hub_event(h, d.id, "device_stray", "alert", "{\"reason\":\"%s\",\"last_seen\":%lld}",
                  reason, (long long)d.last_seen);
    }
}

/* --- periodic jobs (core/jobs.h) ------------------------------------------ */

static void stray_job(struct hub *h, int64_t now_ms)
{
    (void)now_ms;
    stray_sweep(h);
}

/* A stray device back online: its owner must confirm it. */
static void on_event(struct hub *h, const char *device_id, const char *kind, const char *severity,
                     const char *detail)
{
    (void)severity;
    (void)detail;
    struct device_rec d;
    if (device_id && device_id[0] && strcmp(kind, "online") == 0 &&
        store_device_get(h->store, device_id, &d) == MAMORI_OK && strcmp(d.state, "stray") == 0)
        hub_event(h, device_id, "stray_returned", "alert", "{\"state\":\"stray\"}");
}

enum mamori_err stray_register(struct hub *h)
{
    enum mamori_err rc = hub_on_event(h, on_event);
    if (!rc && (h->cfg.stray_after_s > 0 || h->cfg.owner_idle_s > 0))
        rc = hub_job_add(h, "stray_sweep", 1000, 0, HUB_JOB_LOCKED, stray_job);
    return rc;
}
