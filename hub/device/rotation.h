/*
 * hub/device/rotation.h - certificate rotation, lock held. start: asks the
 * device for a new key ("rotate"); then follows the device's answers
 * (registered for the "rotate" and "cert" results: "rotate" -> CSR ->
 * certificate -> "cert" -> switch confirmed); tick: the rotation policy
 * (renew before expiry, maximum age).
 */
#ifndef MAMORI_HUB_DEVICE_ROTATION_H
#define MAMORI_HUB_DEVICE_ROTATION_H

#include <stdint.h>

#include "hub/core/hub.h"
#include "hub/core/tx.h"

enum mamori_err rotation_start(struct hub *h, const struct principal *who, const char *id,
                               const char *reason) MAMORI_MUST_CHECK;
enum mamori_err rotation_register(struct hub *h) MAMORI_MUST_CHECK;
void rotation_tick(struct hub *h, int64_t now_s);

#endif
