/*
 * hub/relay.h - relay detection (T09-L2b): the hub times a signed
 * challenge (a self-test command, single-use, signed) to each online device
 * at an interval and learns each device's own round trip; one far above
 * that baseline means something now sits between the device and the hub
 * (a relay, a proxy), and raises relay_suspected (the relay_latency rule).
 */
#ifndef MAMORI_HUB_RELAY_H
#define MAMORI_HUB_RELAY_H

#include "hub/hub.h"
#include "hub/store/store.h"

/* From the alerts thread, lock held: challenges a few devices due. */
void relay_tick(struct hub *h);
/* A command result (lock held): times it when it answers a challenge
 * (true: it did; its record is gone). */
bool relay_on_result(struct hub *h, const char *device_id, const char *command_id);
void relay_free(struct hub *h);

#endif
