/*
 * hub/device/command.h - remote commands: signing, delivery, redelivery,
 * results (handed to the handlers registered by command type, core/bus.h).
 */
#ifndef MAMORI_HUB_DEVICE_COMMAND_H
#define MAMORI_HUB_DEVICE_COMMAND_H

#include <jansson.h>

#include "hub/core/hub.h"

struct command_rec;

/* Lock held. Signs and publishes a stored command. */
void cmd_publish(struct hub *h, const struct command_rec *c);
/* Sends again every pending, unexpired command of a device (it came back). */
void cmd_resend_pending(struct hub *h, const char *id);
/* A result from the device (res topic). */
void cmd_result(struct hub *h, const char *id, json_t *body);

#endif
