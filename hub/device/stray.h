/*
 * hub/device/stray.h - stray devices: the sweep (a periodic job) marks
 * devices offline longer than --stray-after, or whose owner has not logged
 * in for --owner-idle, as stray; a stray device that comes back online
 * raises stray_returned.
 */
#ifndef MAMORI_HUB_DEVICE_STRAY_H
#define MAMORI_HUB_DEVICE_STRAY_H

#include "hub/core/hub.h"

enum mamori_err stray_register(struct hub *h) MAMORI_MUST_CHECK;

#endif
