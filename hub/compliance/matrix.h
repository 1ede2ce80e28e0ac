/*
 * hub/compliance/matrix.h - the live threat-matrix report (P-MGMT; docs/alerts.md,
 * "Live threat matrix"): the 12 threats x 5 lifecycle states, each cell
 * with the countermeasures of docs/threat-matrix.md and, where the hub can
 * tell, their live status for the fleet or for one device.
 */
#ifndef MAMORI_HUB_MATRIX_H
#define MAMORI_HUB_MATRIX_H

#include <jansson.h>

#include "hub/core/hub.h"
#include "hub/core/tx.h"

/* device_id NULL: the fleet. Staff see any device, owners their own. The
 * answer has "cells" (JSON) and "markdown" (the same as a table). */
enum mamori_err hub_op_matrix(struct hub *h, const struct principal *who, const char *device_id,
                              json_t **out) MAMORI_MUST_CHECK;

/* The ETSI EN 303 645 self-assessment (docs/etsi-en-303-645.md): each
 * provision met or not applicable, with its evidence; staff. */
enum mamori_err hub_op_etsi(struct hub *h, const struct principal *who,
                            json_t **out) MAMORI_MUST_CHECK;

#endif
