/*
 * hub/device/relay.h - relay detection (T09-L2b): the hub times a signed
 * challenge (a self-test command, single-use, signed) to each online device
 * at an interval and learns each device's own round trip; one far above
 * that baseline means something now sits between the device and the hub
 * (a relay, a proxy), and raises relay_suspected (the relay_latency rule).
 */
#ifndef MAMORI_HUB_RELAY_H
#define MAMORI_HUB_RELAY_H

#include <jansson.h>

#include "hub/core/hub.h"
#include "hub/store/store.h"

/* From the alerts thread, lock held: challenges a few devices due. */
void relay_tick(struct hub *h);
/* A command result (lock held): times it when it answers a challenge
 * (true: it did; its record is gone). */
bool relay_on_result(struct hub *h, const char *device_id, const char *command_id);
/* A device's connection begins (lock held): a challenge sent before it is
 * dropped with its record, never re-sent and timed (its round trip would
 * include the time the device was away, and poison the baseline). */
void relay_on_connect(struct hub *h, const char *device_id);
/* Adds "round_trip": {"baseline_ms", "samples", "learned"} to a device's
 * JSON when its round trip is followed (lock held): what the detection
 * compares against, for the operator (and for tests to wait on). */
void relay_describe(struct hub *h, const char *device_id, json_t *out);
void relay_free(struct hub *h);

#endif
