/*
 * hub/device/register.h - the device domain's place in the hub: its
 * periodic jobs (liveness sweep, rotation policy, timed challenges) and its handlers (command
 * results by type).
 */
#ifndef MAMORI_HUB_DEVICE_REGISTER_H
#define MAMORI_HUB_DEVICE_REGISTER_H

#include "hub/core/hub.h"

enum mamori_err device_register(struct hub *h) MAMORI_MUST_CHECK;

#endif
