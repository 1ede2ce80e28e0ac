/*
 * hub/compliance/report.h - the fleet audit (docs/alerts.md, "Fleet audit"): checks
 * over the registry that a self-hosted operator would otherwise buy as a
 * cloud service's audit feature (AWS Device Defender Audit).
 */
#ifndef MAMORI_HUB_REPORT_H
#define MAMORI_HUB_REPORT_H

#include <jansson.h>

#include "hub/core/hub.h"
#include "hub/core/tx.h"

/* Staff: {generated_at, devices, checks: [{id, title, status: ok|finding,
 * count, items: [...] (first 100)}]}. */
enum mamori_err hub_op_fleet_audit(struct hub *h, const struct principal *who,
                                   json_t **out) MAMORI_MUST_CHECK;

#endif
