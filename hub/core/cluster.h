/*
 * hub/core/cluster.h - several hubs over one PostgreSQL store, no leader
 * chosen by hand (docs/internals/hub.md, "Several hubs").
 *
 * Every hub reads every broker node and sees every device message; the
 * work is shared out with the store's leases (store.h), held on the store's
 * own connection so that what a hub writes is fenced by what it holds:
 *   - the devices, in HUB_PARTITIONS partitions by a hash of their id: a
 *     hub records the streams, results and liveness changes of the devices
 *     of the partitions it holds, and drops the rest unacknowledged (their
 *     holder records them; a device sends again what stays unacknowledged).
 *     Each hub takes its share (the partitions over the hubs alive) and
 *     gives back what it holds beyond it, between two batches;
 *   - the leader: the one hub that runs the periodic jobs meant to run
 *     once (liveness records aside), delivers alerts and keeps the broker
 *     nodes' registry view: snapshots, and every change;
 *   - changes: a hub that changes a device's registry entry or owner tells
 *     the others with a store notice naming the device, sent at the
 *     change's commit. Every hub reads its cached state of the device again
 *     (on_changed), and the leader sends the nodes the device's entry as
 *     the registry has it then, so they get its latest word whatever order
 *     the notices come in.
 * A hub that dies, or loses the database, loses its leases with its
 * connection; the others take them at their next turn (HUB_CLUSTER_TURN_MS).
 * With SQLite (one hub) this hub holds everything, always.
 */
#ifndef MAMORI_HUB_CORE_CLUSTER_H
#define MAMORI_HUB_CORE_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

#include "common/proto.h"
#include "mamori/error.h"

struct hub;

#define HUB_PARTITIONS         64 /* one bit each in hub_cluster.owned */
#define HUB_CLUSTER_TURN_MS    500
#define HUB_CLUSTER_NOTES_MS   50 /* how often the leader reads the others' changes */
#define HUB_CLUSTER_IDLE_TURNS 10 /* a hub at its floor looks for free partitions this seldom */

struct hub_cluster {
    bool shared;                  /* the store lets several hubs share it */
    uint64_t session;             /* the store session the leases were taken on (lock) */
    uint64_t owned;               /* partitions held, a bit each (atomic) */
    int leader;                   /* the leader's lease held (atomic) */
    int64_t hubs;                 /* hubs alive when last counted (lock) */
    int64_t next_turn;            /* (lock) */
    uint64_t idle_turns;          /* (lock) */
    uint64_t gained, given, lost; /* partitions taken, given back, lost with the session */
    /* set by the rooms above at start-up */
    void (*on_partitions)(struct hub *h); /* what was held changed: forget cached state */
    void (*on_owned)(struct hub *h);      /* ...: tell the broker nodes (io) */
    void (*on_leader)(struct hub *h);     /* this hub became the leader */
    void (*on_changed)(struct hub *h, const char *device_id); /* another hub changed it (lock) */
};

/* The partition of a device id. */
unsigned hub_partition(const char *device_id);
/* Any thread, lock or not: whether this hub records device_id's messages,
 * and whether it leads. */
bool hub_owns(struct hub *h, const char *device_id);
bool hub_leads(struct hub *h);
/* Under the lock, in a transaction: true while the store session is the
 * one the leases were taken on (what is written now is fenced by them). */
bool hub_cluster_current(struct hub *h);
/* Start-up: the cluster's job, and with SQLite every partition and the
 * lead at once. */
enum mamori_err hub_cluster_start(struct hub *h) MAMORI_MUST_CHECK;
/* One turn (the job; lock held): the session, the lead, the partitions,
 * the other hubs' changes. */
void hub_cluster_turn(struct hub *h, int64_t now_ms);
/* A device's registry entry or owner changed on this hub: the other hubs
 * are told (the leader sends the entry on to the broker nodes). Lock
 * held. */
void hub_cluster_changed(struct hub *h, const char *device_id);
#endif
