/*
 * hub/device/telemetry.h - the device data streams (telemetry, events, the
 * signed device log): checked, recorded in batches, acknowledged after the
 * commit. All with the lock held.
 */
#ifndef MAMORI_HUB_DEVICE_TELEMETRY_H
#define MAMORI_HUB_DEVICE_TELEMETRY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "hub/core/hub.h"

enum stream_kind { STREAM_TM = 0, STREAM_EV = 1, STREAM_LOG = 2, STREAM_N };
#define TM_SKEW_MS    (5 * 60 * 1000LL)        /* device clock ahead of ours */
#define TM_MAX_AGE_MS (7 * 24 * 3600 * 1000LL) /* store-and-forward window */
#define TM_EV_WINDOW  1024                     /* resends recognised (events) */

struct proto_envelope;
struct crypto_cert;

void tm_ingest(struct hub *h, const char *id, enum stream_kind s, const struct proto_envelope *env,
               json_t *body, const void *payload, size_t len);
/* Commits buffered rows with the sequence state, then acknowledges. Inside
 * an open transaction (a batch of device messages) it only writes them:
 * tm_settle acknowledges once that transaction has committed (or, when
 * it has not, forgets the state that was not stored). */
void tm_flush(struct hub *h);
void tm_settle(struct hub *h, bool committed);
/* Acknowledgements are paced: what a batch committed is owed to each of
 * its devices and told within TM_ACK_PERIOD_MS (tm_acks_send, run by the
 * ingest worker), or at once when a stream is TM_ACK_EVERY numbers ahead
 * of what the device was last told. One acknowledgement covers every
 * message of the period, so a device's sustained stream costs the broker
 * a few acknowledgements per second, not one per message. */
#define TM_ACK_PERIOD_MS 250
#define TM_ACK_EVERY     32
bool tm_acks_owed(struct hub *h);
void tm_acks_send(struct hub *h);
void tm_schema_changed(struct hub *h, const char *model);
enum mamori_err tm_query(struct hub *h, const char *id, int64_t from_ts, int64_t to_ts,
                         int64_t after, int limit, json_t **out) MAMORI_MUST_CHECK;
struct tm_counts {
    uint64_t accepted, duplicates, rejected;
    uint64_t before_owner; /* sent before the device changed hands: not recorded */
};
void tm_stats(struct hub *h, struct tm_counts *out);
/* The device has a new owner from since_ms on (a transfer): what it sent
 * before belongs to the previous owner and never enters the records the
 * new owner sees. Call tm_flush first, in the same hold of the lock. */
void tm_owner_changed(struct hub *h, const char *id, int64_t since_ms);
void tm_free(struct hub *h);
/* Lock held, between batches: every device's stream state is read again
 * from the store when next used (the partitions this hub holds changed:
 * another hub may have recorded since, hub/core/cluster.h). */
void tm_forget(struct hub *h);
/* The same for one device (another hub changed its owner). Lock held. */
void tm_forget_one(struct hub *h, const char *id);
/* Runs check with the device's current, next and previous certificates in
 * turn until one answers other than MAMORI_ERR_VERIFY: across a key
 * rotation the device signs with either key. */
enum mamori_err hub_device_certs_try(struct hub *h, const char *id,
                                     enum mamori_err (*check)(const struct crypto_cert *, void *),
                                     void *arg) MAMORI_MUST_CHECK;

#endif
