/*
 * hub/device/liveness.h - which devices are online: heartbeats are kept in
 * memory (never a database write per beat); only online/offline
 * transitions are recorded.
 */
#ifndef MAMORI_HUB_DEVICE_LIVENESS_H
#define MAMORI_HUB_DEVICE_LIVENESS_H

#include <stdbool.h>
#include <stdint.h>

#include "hub/core/hub.h"

struct tm_dev;

/* Liveness of one device. */
struct live_entry {
    char id[24];
    int64_t last_seen_ms;
    int interval_s;
    bool online;
    bool used;
    int64_t malformed_reported_ms; /* last "malformed_message" event */
    uint32_t malformed_suppressed; /* since then */
    struct tm_dev *tm;             /* stream state (hub/device/telemetry.c), lazily */
};

/* A heartbeat of a device already online: its time noted under the
 * table's own lock (hub->live_mu), without the hub lock, so heartbeats
 * never wait behind a batch of device data. False when the device is not
 * online (or unknown): then live_heartbeat, with the hub lock. */
bool live_beat(struct hub *h, const char *id, int64_t now_ms);
/* Hub lock held for these. A heartbeat: true when it brought the device
 * online (only then is the store written). */
bool live_heartbeat(struct hub *h, const char *id, int64_t now_ms);
void live_forget(struct hub *h, const char *id);
/* Records a malformed message from a device, at most one event per device
 * per minute (with the count of those left out), so a device cannot turn
 * garbage into a stream of database writes. Lock held. */
void live_malformed(struct hub *h, const char *id, int64_t now_ms);
/* Marks offline every device silent for longer than its allowance; returns
 * how many were marked. Takes the lock itself. */
int live_sweep(struct hub *h, int64_t now_ms);
/* Seeds the table from the devices the store says are online (after a
 * crash the database may say so of devices that never came back). */
enum mamori_err live_start(struct hub *h) MAMORI_MUST_CHECK;
/* The liveness entry of a registered device (found or added), NULL when the
 * id is not registered. Lock held; the pointer is valid until the table
 * grows. */
struct live_entry *live_entry_of(struct hub *h, const char *id);

#endif
