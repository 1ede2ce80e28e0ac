/* hub/io/health.h - GET /api/v1/health: the platform's parts at a glance. */
#ifndef MAMORI_HUB_IO_HEALTH_H
#define MAMORI_HUB_IO_HEALTH_H

#include <jansson.h>

#include "hub/core/hub.h"

enum mamori_err hub_op_health(struct hub *h, json_t **out) MAMORI_MUST_CHECK;

#endif
