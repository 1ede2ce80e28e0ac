/*
 * hub/device/devstatus.h - devices' signed security status (see devstatus.c).
 */
#ifndef MAMORI_HUB_DEVSTATUS_H
#define MAMORI_HUB_DEVSTATUS_H

#include <jansson.h>

#include "hub/core/hub.h"
#include "hub/core/tx.h"

/* The device's last verified status: {device, eat (the token as the device
 * signed it), claims, issued_at, expires_at, received_at, current,
 * certificate (PEM, the key that signed it unless it was rotated since)}.
 * Owners see their own devices'; MAMORI_ERR_NOTFOUND when none yet. */
enum mamori_err hub_op_device_status(struct hub *h, const struct principal *who, const char *id,
                                     json_t **out) MAMORI_MUST_CHECK;
/* A device's signed security status event (common/eat.h). Lock held. */
void status_ingest(struct hub *h, const char *id, const json_t *body);

#endif
