/* hub/core/cluster.c - see cluster.h. */
#include "hub/core/cluster.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/proto.h"
#include "hub/core/bus.h"
#include "hub/core/hub.h"
#include "hub/core/jobs.h"

/* the store's lease keys (store.h): "mm" and "mp" */
#define SPACE_HUBS  0x6d6d
#define KEY_MEMBER  0 /* shared: one holder per hub alive */
#define KEY_LEADER  1
#define SPACE_PARTS 0x6d70
#define CHANNEL     "mamori_registry"

unsigned hub_partition(const char *device_id)
{
    return proto_partition(device_id);
}

bool hub_owns(struct hub *h, const char *device_id)
{
    uint64_t owned = __atomic_load_n(&h->cluster.owned, __ATOMIC_ACQUIRE);
    return (owned >> hub_partition(device_id)) & 1u;
}

bool hub_leads(struct hub *h)
{
    return __atomic_load_n(&h->cluster.leader, __ATOMIC_ACQUIRE) != 0;
}

bool hub_cluster_current(struct hub *h)
{
    return !h->cluster.shared || store_session(h->store) == h->cluster.session;
}

static void set_owned(struct hub *h, uint64_t owned)
{
    __atomic_store_n(&h->cluster.owned, owned, __ATOMIC_RELEASE);
}

static void set_leader(struct hub *h, bool on)
{
    __atomic_store_n(&h->cluster.leader, on ? 1 : 0, __ATOMIC_RELEASE);
}

/* The session that held the leases is gone (the connection was reopened):
 * nothing is held any more, and what was cached for it is stale. */
static void lose_all(struct hub *h)
{
    struct hub_cluster *c = &h->cluster;
    int had = __builtin_popcountll(c->owned);
    bool led = hub_leads(h);
    set_owned(h, 0);
    set_leader(h, false);
    c->lost += (uint64_t)had;
    if (had || led) {
        log_warn("the database session of this hub was lost: %d partitions%s given up", had,
                 led ? " and the lead" : "");
        hub_event(h, NULL, "hub_leases_lost", "warning", "{\"hub\":\"%s\",\"partitions\":%d}",
                  h->cfg.hub_name, had);
    }
    if (had && c->on_partitions)
        c->on_partitions(h);
    if (had && c->on_owned)
        c->on_owned(h);
}

static void on_notice(const char *channel, const char *payload, void *arg)
{
    struct hub *h = arg;
    if (strcmp(channel, CHANNEL) == 0 && proto_device_id_valid(payload, strlen(payload)) &&
        h->cluster.on_changed)
        h->cluster.on_changed(h, payload);
}

static void take_lead(struct hub *h)
{
    bool got = false;
    if (hub_leads(h) || store_lease_take(h->store, SPACE_HUBS, KEY_LEADER, false, &got) || !got)
        return;
    set_leader(h, true);
    log_info("hub %s leads: periodic jobs, alert delivery and the broker nodes' registry",
             h->cfg.hub_name);
    hub_event(h, NULL, "hub_leader", "info", "{\"hub\":\"%s\"}", h->cfg.hub_name);
    /* it has listened since it joined: what changes from now on is told;
     * what changed before is in the snapshots on_leader sends */
    if (h->cluster.on_leader)
        h->cluster.on_leader(h);
}

/* Takes this hub's share of the partitions, gives back what it holds
 * beyond it. Lock held, so between two ingest batches. */
static void share_out(struct hub *h)
{
    struct hub_cluster *c = &h->cluster;
    int64_t hubs = 1;
    if (store_lease_holders(h->store, SPACE_HUBS, KEY_MEMBER, &hubs) || hubs < 1)
        hubs = 1;
    c->hubs = hubs;
    int share = (int)((HUB_PARTITIONS + hubs - 1) / hubs);
    uint64_t owned = c->owned, before = owned;
    int have = __builtin_popcountll(owned);
    for (int p = HUB_PARTITIONS - 1; p >= 0 && have > share && hub_cluster_current(h); p--) {
        if (!((owned >> p) & 1u))
            continue;
        owned &= ~(1ull << p); /* not ours from here on, whatever the drop says */
        have--;
        c->given++;
        log_if_err(store_lease_drop(h->store, SPACE_PARTS, p));
    }
    /* Below its floor (the partitions over the hubs, rounded down) a hub
     * takes at every turn; between floor and share only every
     * HUB_CLUSTER_IDLE_TURNS: all at the floor may leave a partition or two
     * nobody holds, and trying every other hub's partitions at each turn
     * would cost a round trip each. */
    bool eager = have < HUB_PARTITIONS / hubs;
    if (!eager && have < share && ++c->idle_turns % HUB_CLUSTER_IDLE_TURNS != 0)
        share = have;
    /* from a place of its own, so hubs starting together rarely collide */
    unsigned from = proto_partition(h->cfg.hub_name);
    for (unsigned k = 0; k < HUB_PARTITIONS && have < share && hub_cluster_current(h); k++) {
        unsigned p = (from + k) % HUB_PARTITIONS;
        bool got = false;
        if ((owned >> p) & 1u)
            continue;
        if (store_lease_take(h->store, SPACE_PARTS, (int)p, false, &got) == MAMORI_OK && got &&
            hub_cluster_current(h)) {
            owned |= 1ull << p;
            have++;
            c->gained++;
        }
    }
    if (!hub_cluster_current(h))
        return; /* the next turn starts over */
    set_owned(h, owned);
    if (owned != before) {
        log_info("hub %s holds %d of %d device partitions (%lld hubs)", h->cfg.hub_name, have,
                 HUB_PARTITIONS, (long long)hubs);
        if (c->on_partitions)
            c->on_partitions(h);
        if (c->on_owned)
            c->on_owned(h);
    }
}

void hub_cluster_turn(struct hub *h, int64_t now_ms)
{
    struct hub_cluster *c = &h->cluster;
    if (!c->shared)
        return;
    if (hub_cluster_current(h))
        (void)store_notices(h->store, on_notice, h);
    if (now_ms < c->next_turn)
        return;
    c->next_turn = now_ms + HUB_CLUSTER_TURN_MS;
    if (!hub_cluster_current(h) || !c->session) {
        if (c->session)
            lose_all(h);
        c->session = store_session(h->store);
        bool got = false;
        /* counted among the hubs alive, and told of the others' changes,
         * before anything is taken */
        if (store_lease_take(h->store, SPACE_HUBS, KEY_MEMBER, true, &got) || !got ||
            !hub_cluster_current(h) || store_listen(h->store, CHANNEL) || !hub_cluster_current(h)) {
            c->session = 0;
            return;
        }
    }
    take_lead(h);
    share_out(h);
}

void hub_cluster_changed(struct hub *h, const char *device_id)
{
    if (h->cluster.shared)
        log_if_err(store_notify(h->store, CHANNEL, device_id));
}

static void cluster_job(struct hub *h, int64_t now_ms)
{
    hub_cluster_turn(h, now_ms);
}

enum mamori_err hub_cluster_start(struct hub *h)
{
    struct hub_cluster *c = &h->cluster;
    c->shared = store_shared(h->store);
    if (!c->shared) {
        set_owned(h, ~0ull);
        set_leader(h, true);
        c->hubs = 1;
    }
    return hub_job_add(h, "cluster", HUB_CLUSTER_NOTES_MS, 0, HUB_JOB_LOCKED | HUB_JOB_EVERY_HUB,
                       cluster_job);
}
