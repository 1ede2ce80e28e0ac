/*
 * hub/alerts/alerts.h - rules over the hub's events, alerts with a lifecycle, the
 * response policy, and alert delivery (docs/alerts.md).
 *
 * Every event the hub records passes alerts_on_event. An event that
 * matches a rule (enough times in the rule's window) raises that rule's
 * alert for the device — or counts one more on the alert still live for
 * them (deduplicated). The response policy of the rule for the device's
 * model decides what happens beyond the notification: nothing
 * ("notify": observe, the service goes on), or "quarantine" / "lock" once
 * the alert has counted act_after times — the JEITA principle of notifying
 * and watching while an anomaly is tolerable and acting beyond tolerance.
 * Alerts are opened, acknowledged and resolved by staff; each change goes
 * to the webhooks (HMAC-signed, retried with backoff) from a delivery
 * thread, so a slow receiver never holds the hub.
 *
 * P-HEALTH (notify while tolerable, act beyond), T03-L2a (heartbeat loss
 * delivered), T10-L2a (refusals and floods become alerts).
 */
#ifndef MAMORI_HUB_ALERTS_ALERTS_H
#define MAMORI_HUB_ALERTS_ALERTS_H

#include <jansson.h>

#include "hub/core/hub.h"
#include "hub/core/tx.h"

/* Lock held (as for hub_event). */
void alerts_on_event(struct hub *h, const char *device_id, const char *kind, const char *severity,
                     const char *detail);

/* A mail address this hub sends to or from (a strict subset of RFC 5321:
 * no quoting, no comments, nothing a header could be smuggled in). */
bool alerts_address_ok(const char *addr);

/* Tells every target of a change integrations must hear of (e.g.
 * "device.decommissioned"); detail is a JSON object text. Lock held. */
void alerts_notify(struct hub *h, const char *event, const char *device_id, const char *detail);

/* Subscribes the rules to the hub's events and notices (core/bus.h) and
 * registers the housekeeping jobs (stray devices, expiring certificates,
 * retention, the CRL's renewal). Start-up, before alerts_start. */
enum mamori_err alerts_register(struct hub *h) MAMORI_MUST_CHECK;
/* The delivery thread (webhooks, mail) and the responses it applies. */
enum mamori_err alerts_start(struct hub *h) MAMORI_MUST_CHECK;
void alerts_stop(struct hub *h);

enum mamori_err hub_op_alerts(struct hub *h, const struct principal *who, const char *state,
                              const char *device_id, int64_t after, int limit,
                              json_t **out) MAMORI_MUST_CHECK;
/* action: "ack" or "resolve". */
enum mamori_err hub_op_alert_set(struct hub *h, const struct principal *who, int64_t id,
                                 const char *action, const char *note, json_t **out,
                                 struct op_err *e) MAMORI_MUST_CHECK;
enum mamori_err hub_op_rules(struct hub *h, const struct principal *who,
                             json_t **out) MAMORI_MUST_CHECK;
/* in: {"model": "" | M, "action": "notify"|"quarantine"|"lock", "act_after": N} */
enum mamori_err hub_op_rule_policy(struct hub *h, const struct principal *who, const char *rule,
                                   const json_t *in, json_t **out,
                                   struct op_err *e) MAMORI_MUST_CHECK;
enum mamori_err hub_op_webhook_add(struct hub *h, const struct principal *who, const char *url,
                                   json_t **out, struct op_err *e) MAMORI_MUST_CHECK;
enum mamori_err hub_op_webhooks(struct hub *h, const struct principal *who,
                                json_t **out) MAMORI_MUST_CHECK;
enum mamori_err hub_op_webhook_del(struct hub *h, const struct principal *who, int64_t id,
                                   json_t **out) MAMORI_MUST_CHECK;

#endif
