/*
 * hub/device/liveness.c - heartbeat tracking and offline detection
 * (T03-L2a, T03-L4a, T04-L2a, T04-L4a: disconnection by theft or destruction
 * is detected and an alert is recorded; T09-L3a: the system can tell that a
 * device stopped; T01-L2b, T01-L4a, P-HEALTH: monitoring from outside the
 * device, whether or not anyone is watching; T10-L3d: silence is handled,
 * never waited on. With the broker's reports (hub/io/mqtt.c) this is the
 * monitoring of T05-L2a, T05-L4a, T06-L2a, T06-L4a, T07-L4a, T09-L2a,
 * T09-L4a, T11-L2a, T11-L4a and T12-L2b).
 *
 * Heartbeats update an in-memory open-addressing table (no database write
 * per heartbeat); only online/offline transitions are written. A device is
 * declared offline when it has been silent for 1.5 heartbeat intervals; the
 * sweep runs every interval/10, so the alert is raised within two intervals
 * of the last heartbeat.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "hub/device/liveness.h"

static uint64_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static struct live_entry *slot(struct live_entry *tab, size_t cap, const char *id)
{
    size_t i = hash_id(id) & (cap - 1);
    while (tab[i].used && strcmp(tab[i].id, id) != 0)
        i = (i + 1) & (cap - 1);
    return &tab[i];
}

static bool grow(struct hub *h)
{
    size_t ncap = h->live_cap ? h->live_cap * 2 : 1024;
    struct live_entry *n = calloc(ncap, sizeof(*n));
    if (!n)
        return false;
    for (size_t i = 0; i < h->live_cap; i++)
        if (h->live[i].used)
            *slot(n, ncap, h->live[i].id) = h->live[i];
    free(h->live);
    h->live = n;
    h->live_cap = ncap;
    return true;
}

/* Finds or adds the entry of a registered device (NULL when unknown). */
static struct live_entry *entry_of(struct hub *h, const char *id, int hb_interval)
{
    pthread_mutex_lock(&h->live_mu);
    struct live_entry *e = NULL;
    if ((h->live_count + 1) * 10 <= h->live_cap * 7 || grow(h)) {
        e = slot(h->live, h->live_cap, id);
        if (!e->used) {
            memset(e, 0, sizeof(*e));
            snprintf(e->id, sizeof(e->id), "%s", id);
            e->interval_s = hb_interval > 0 ? hb_interval : h->cfg.heartbeat_s;
            e->used = true;
            h->live_count++;
        }
    }
    pthread_mutex_unlock(&h->live_mu);
    return e;
}

/* The entry of a device seen before, or a new one for a registered device
 * (NULL when the id is not in the registry). */
struct live_entry *live_entry_of(struct hub *h, const char *id)
{
    struct live_entry *e = h->live_cap ? slot(h->live, h->live_cap, id) : NULL;
    if (e && e->used)
        return e;
    struct device_rec d;
    if (store_device_get(h->store, id, &d))
        return NULL;
    return entry_of(h, id, d.hb_interval); /* may grow the table */
}

bool live_beat(struct hub *h, const char *id, int64_t now_ms)
{
    bool done = false;
    pthread_mutex_lock(&h->live_mu);
    if (h->live_cap) {
        struct live_entry *e = slot(h->live, h->live_cap, id);
        if (e->used && e->online) {
            e->last_seen_ms = now_ms;
            done = true;
        }
    }
    pthread_mutex_unlock(&h->live_mu);
    return done;
}

bool live_heartbeat(struct hub *h, const char *id, int64_t now_ms)
{
    struct live_entry *e = live_entry_of(h, id);
    if (!e)
        return false;
    pthread_mutex_lock(&h->live_mu);
    e->last_seen_ms = now_ms;
    bool came = !e->online;
    e->online = true;
    pthread_mutex_unlock(&h->live_mu);
    if (!came || !hub_owns(h, id))
        return came; /* every hub follows every device; the holder records */
    log_if_err(store_device_set_online(h->store, id, true, now_ms / 1000));
    hub_event(h, id, "online", "info", "{}");
    return true;
}

void live_malformed(struct hub *h, const char *id, int64_t now_ms)
{
    struct live_entry *e = hub_owns(h, id) ? live_entry_of(h, id) : NULL;
    if (!e)
        return;
    if (e->malformed_reported_ms && now_ms - e->malformed_reported_ms < 60000) {
        e->malformed_suppressed++;
        return;
    }
    hub_event(h, id, "malformed_message", "warning", "{\"suppressed_before\":%u}",
              e->malformed_suppressed);
    e->malformed_reported_ms = now_ms;
    e->malformed_suppressed = 0;
}

void live_forget(struct hub *h, const char *id)
{
    if (!h->live_cap)
        return;
    pthread_mutex_lock(&h->live_mu);
    struct live_entry *e = slot(h->live, h->live_cap, id);
    bool was = e->used && e->online;
    int64_t last = e->last_seen_ms;
    if (was)
        e->online = false;
    pthread_mutex_unlock(&h->live_mu);
    if (was)
        log_if_err(store_device_set_online(h->store, id, false, last / 1000));
}

#define SWEEP_BATCH 256

struct gone {
    char id[24];
    int64_t last_ms;
    int interval_s;
};

/* Takes, under live_mu, up to SWEEP_BATCH devices silent past their
 * allowance, marking them offline; from *next on. */
static size_t silent_ones(struct hub *h, int64_t now_ms, size_t *next, struct gone *out)
{
    size_t n = 0;
    pthread_mutex_lock(&h->live_mu);
    for (; *next < h->live_cap && n < SWEEP_BATCH; (*next)++) {
        struct live_entry *e = &h->live[*next];
        if (!e->used || !e->online || now_ms - e->last_seen_ms <= (int64_t)e->interval_s * 1500)
            continue;
        e->online = false;
        snprintf(out[n].id, sizeof(out[n].id), "%s", e->id);
        out[n].last_ms = e->last_seen_ms;
        out[n].interval_s = e->interval_s;
        n++;
    }
    pthread_mutex_unlock(&h->live_mu);
    return n;
}

int live_sweep(struct hub *h, int64_t now_ms)
{
    static struct gone batch[SWEEP_BATCH]; /* one sweeper: the jobs thread */
    int total = 0;
    size_t next = 0, n;
    pthread_mutex_lock(&h->lock);
    /* the events go out with the table released: their subscribers may
     * act on the device (and so on the table) */
    while ((n = silent_ones(h, now_ms, &next, batch)) > 0) {
        for (size_t i = 0; i < n; i++) {
            if (!hub_owns(h, batch[i].id))
                continue; /* its holder records it */
            log_if_err(
                store_device_set_online(h->store, batch[i].id, false, batch[i].last_ms / 1000));
            hub_event(h, batch[i].id, "offline", "alert", "{\"silent_ms\":%lld,\"heartbeat_s\":%d}",
                      (long long)(now_ms - batch[i].last_ms), batch[i].interval_s);
        }
        total += (int)n;
    }
    pthread_mutex_unlock(&h->lock);
    return total;
}

struct seed {
    struct hub *h;
    int64_t now_ms;
    char last[24];
    int n;
};

static bool seed_one(const struct device_rec *d, void *arg)
{
    struct seed *s = arg;
    snprintf(s->last, sizeof(s->last), "%s", d->id);
    s->n++;
    if (!d->online)
        return true;
    struct live_entry *e = entry_of(s->h, d->id, d->hb_interval);
    if (e) {
        /* Online when we stopped: a fresh allowance from now; silence from
         * here on is reported like any other. */
        pthread_mutex_lock(&s->h->live_mu);
        e->online = true;
        e->last_seen_ms = s->now_ms;
        pthread_mutex_unlock(&s->h->live_mu);
    }
    return true;
}

enum mamori_err live_start(struct hub *h)
{
    /* After a crash the database may still say "online" for devices that
     * never came back: seed them so the sweep can tell. */
    struct seed s = {.h = h, .now_ms = hub_now_ms()};
    pthread_mutex_lock(&h->lock);
    for (;;) {
        int before = s.n;
        if (store_device_list(h->store, 0, s.last, 1000, seed_one, &s) || s.n - before < 1000)
            break;
    }
    pthread_mutex_unlock(&h->lock);
    return MAMORI_OK;
}
