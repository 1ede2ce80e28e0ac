/*
 * hub/fleet/campaign.h - staged update campaigns (docs/updates.md; P-UPD).
 *
 * A campaign sends one release to every device of its model (or of one
 * group of them) that may take commands: canary devices first, and the first wave only once every
 * canary has finished; then waves of `wave` devices every `interval_s`,
 * only inside the maintenance window (UTC hours; start == end: always).
 * A device has finished when it committed the new slot (or runs it
 * already) or failed (refused, failed, rolled back). When the failed share
 * of the finished devices passes max_fail_pct the campaign pauses itself
 * and raises an alert; an operator resumes or cancels it. Owners see
 * update_sent events for their devices. Every state change is audited.
 */
#ifndef MAMORI_HUB_CAMPAIGN_H
#define MAMORI_HUB_CAMPAIGN_H

#include <jansson.h>

#include "hub/core/hub.h"
#include "hub/core/tx.h"

struct campaign_opts {
    int canary;                   /* 0..1000, default 1 */
    int wave;                     /* 1..1000, default 10 */
    int interval_s;               /* 1..86400, default 300 */
    int max_fail_pct;             /* 0..100, default 10 */
    int window_start, window_end; /* UTC hours 0..23; equal: no window */
    const char *group;            /* NULL or "": every device of the model */
};

enum mamori_err hub_op_campaign_create(struct hub *h, const struct principal *who,
                                       const char *sha256, const char *reason,
                                       const struct campaign_opts *o, json_t **out,
                                       struct op_err *e) MAMORI_MUST_CHECK;
enum mamori_err hub_op_campaigns(struct hub *h, const struct principal *who,
                                 json_t **out) MAMORI_MUST_CHECK;
/* The campaign, its counts and every device's status. */
enum mamori_err hub_op_campaign_get(struct hub *h, const struct principal *who, int64_t id,
                                    json_t **out) MAMORI_MUST_CHECK;
/* pause, resume or cancel. */
enum mamori_err hub_op_campaign_action(struct hub *h, const struct principal *who, int64_t id,
                                       const char *action, const char *reason, json_t **out,
                                       struct op_err *e) MAMORI_MUST_CHECK;

/* Device groups (staff): add or remove a device; list a group. */
enum mamori_err hub_op_group_set(struct hub *h, const struct principal *who, const char *group,
                                 const char *device_id, bool member, json_t **out,
                                 struct op_err *e) MAMORI_MUST_CHECK;
enum mamori_err hub_op_group_get(struct hub *h, const struct principal *who, const char *group,
                                 json_t **out) MAMORI_MUST_CHECK;

/* Registers the campaigns' part: update results and update events
 * (update_committed, update_rolled_back, and update_status, which settles a
 * device whose last event was lost) by type, and the wave job. */
enum mamori_err campaign_register(struct hub *h) MAMORI_MUST_CHECK;

#endif
