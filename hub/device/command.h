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
/* Sends again every pending, unexpired command of a device (it came back,
 * or asked). Each copy is counted (see cmd_copy_expected). */
void cmd_resend_pending(struct hub *h, const char *id);
/* Lock held. A device refused command CMD_ID of device ID as one it already
 * ran: true when that refusal answers a copy the hub itself sent again (the
 * first copy had reached the device after all), false when it is one more
 * copy than the hub sent: a replay from someone else. */
bool cmd_copy_expected(struct hub *h, const char *id, const char *cmd_id);
void cmd_free(struct hub *h);
/* A result from the device (res topic). */
void cmd_result(struct hub *h, const char *id, json_t *body);

#endif
