/*
 * hub/device/ingest.h - device messages in: heartbeats at once, the data
 * streams and command results in batches.
 *
 * The MQTT session (hub/io/mqtt.c) hands each message here by kind.
 * Heartbeats touch only the liveness table in memory (no store access per
 * beat). Telemetry, events, the device log and command results are queued
 * (bounded in messages and bytes; a full queue makes the session wait, so TCP and the broker
 * hold the rest) and taken by one worker in batches: each batch is
 * checked and recorded in ONE store transaction (the rows, the events and
 * alerts they raise, the sequence state), and only after its commit does
 * the hub acknowledge to the devices (T10-L3c), paced: the worker sends
 * what the batches owe at least every TM_ACK_PERIOD_MS (telemetry.h). A
 * batch starts when a message is queued and waits, without any lock, at
 * most cfg.ingest_gather_ms (10) for INGEST_BATCH messages, and never past
 * the time owed acknowledgements are due (a commit costs about the same
 * for a few messages as for hundreds, so under load fewer, larger commits
 * leave more CPU to the broker); it closes at INGEST_BATCH messages or
 * after INGEST_BATCH_MS of work, so an API call never waits behind more
 * than one batch.
 */
#ifndef MAMORI_HUB_DEVICE_INGEST_H
#define MAMORI_HUB_DEVICE_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/proto.h"
#include "hub/core/hub.h"

#define INGEST_QUEUE       32768              /* messages waiting */
#define INGEST_QUEUE_BYTES (32 * 1024 * 1024) /* and their bytes */
#define INGEST_BATCH       512                /* messages per transaction, at most */
#define INGEST_BATCH_MS    20                 /* work per transaction, at most (then commit) */

struct ingest_stats {
    uint64_t batches, messages, largest;
    uint64_t failed; /* batches whose commit failed (devices resend) */
    uint64_t queued; /* now */
    bool gathering;  /* now: the worker lets a short batch fill */
};

enum mamori_err ingest_start(struct hub *h) MAMORI_MUST_CHECK;
/* Records what is queued, then stops the worker. */
void ingest_stop(struct hub *h);
/* A heartbeat (any thread; takes the lock itself). */
void ingest_heartbeat(struct hub *h, const char *id, const void *payload, size_t len);
/* Queues a data message (tm, ev, log) or a command result (res); waits
 * while the queue is full. False when the hub is stopping (not queued: the
 * device, unacknowledged, sends it again). */
bool ingest_submit(struct hub *h, const char *id, enum proto_kind kind, const void *payload,
                   size_t len);
void ingest_stats(struct hub *h, struct ingest_stats *out);

#endif
