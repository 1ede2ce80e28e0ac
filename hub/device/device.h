/*
 * hub/device/device.h - what can be done to and with a device: register
 * (enroll, register), claim, lifecycle actions, commands and settings,
 * telemetry schemas and queries.
 *
 * hub_op_* take the hub lock themselves, check the principal's role (an
 * owner only their own devices), validate their input and commit each
 * change with its audit entry (core/tx.h). The rest expect the lock held.
 */
#ifndef MAMORI_HUB_DEVICE_DEVICE_H
#define MAMORI_HUB_DEVICE_DEVICE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/cmd.h"
#include "hub/core/tx.h"
#include "hub/device/lifecycle.h"

struct command_rec;

/* T02-L3a: the device's state and liveness, as owners and operators see it. */
json_t *device_json(const struct device_rec *d);

enum mamori_err hub_op_transition(struct hub *h, const struct principal *who, const char *device_id,
                                  enum lc_action action, const char *reason) MAMORI_MUST_CHECK;
/* A command as the API shows it. */
json_t *command_json(const struct command_rec *c);
/* A stored, audited, published command (args_json NULL: {}). Lock held. */
enum mamori_err hub_command_issue(struct hub *h, const struct principal *who, const char *id,
                                  enum cmd_type t, int64_t ttl_ms, const char *reason,
                                  const char *args_json, struct command_rec *c) MAMORI_MUST_CHECK;

/* Applies a lifecycle action to d (lock held): the registry, the audit
 * entry, the broker's view, and the signed command to the device for
 * lock/unlock/quarantine/release (its JSON in *command when not NULL). */
enum mamori_err hub_device_action_locked(struct hub *h, const struct principal *who,
                                         struct device_rec *d, enum lc_action a, const char *reason,
                                         json_t **command) MAMORI_MUST_CHECK;
/* The device as who may see it (lock held): owners only their own, and
 * another owner's is MAMORI_ERR_NOTFOUND, not forbidden. */
enum mamori_err hub_device_visible(struct hub *h, const struct principal *who, const char *id,
                                   struct device_rec *d) MAMORI_MUST_CHECK;

enum mamori_err hub_op_enroll(struct hub *h, const struct principal *who, const char *model,
                              const char *csr_pem, json_t **out,
                              struct op_err *e) MAMORI_MUST_CHECK;
enum mamori_err hub_op_register(struct hub *h, const struct principal *who, const char *model,
                                const char *cert_pem, json_t **out,
                                struct op_err *e) MAMORI_MUST_CHECK;
enum mamori_err hub_op_claim(struct hub *h, const struct principal *who, const char *code,
                             const char *peer, json_t **out, struct op_err *e) MAMORI_MUST_CHECK;

enum mamori_err hub_op_device_get(struct hub *h, const struct principal *who, const char *id,
                                  json_t **out) MAMORI_MUST_CHECK;
enum mamori_err hub_op_device_list(struct hub *h, const struct principal *who, const char *after,
                                   int limit, json_t **out) MAMORI_MUST_CHECK;
/* Role check for device actions (lock/unlock also allowed to the owner). */
enum mamori_err hub_op_device_action(struct hub *h, const struct principal *who, const char *id,
                                     const char *action, const char *reason, json_t **out,
                                     struct op_err *e) MAMORI_MUST_CHECK;

/* Telemetry schema of a model (staff only to set; audited). */
enum mamori_err hub_op_schema_set(struct hub *h, const struct principal *who, const char *model,
                                  const json_t *doc, json_t **out,
                                  struct op_err *e) MAMORI_MUST_CHECK;
enum mamori_err hub_op_schema_get(struct hub *h, const struct principal *who, const char *model,
                                  json_t **out) MAMORI_MUST_CHECK;
/* Stored telemetry of a device, from_ts <= ts <= to_ts (ms), cursor after. */
enum mamori_err hub_op_telemetry(struct hub *h, const struct principal *who, const char *id,
                                 int64_t from_ts, int64_t to_ts, int64_t after, int limit,
                                 json_t **out) MAMORI_MUST_CHECK;

/* Remote commands: lock/unlock/quarantine/release go through
 * hub_op_device_action (registry + device); wipe, reboot and self-test are
 * commands only. ttl_s 0: one day. */
/* Remote settings for a device (common/devcfg.h): the next version, sent as
 * a signed "config" command. Staff only. */
enum mamori_err hub_op_config(struct hub *h, const struct principal *who, const char *id,
                              json_t *settings, const char *reason, json_t **out,
                              struct op_err *e) MAMORI_MUST_CHECK;
enum mamori_err hub_op_command(struct hub *h, const struct principal *who, const char *id,
                               const char *type, const char *reason, int64_t ttl_s, json_t **out,
                               struct op_err *e) MAMORI_MUST_CHECK;
enum mamori_err hub_op_command_list(struct hub *h, const struct principal *who, const char *id,
                                    int limit, json_t **out) MAMORI_MUST_CHECK;

/* Recorded events: staff see all, an owner those of their own devices
 * (device_id NULL: every visible device). */
enum mamori_err hub_op_events(struct hub *h, const struct principal *who, const char *device_id,
                              int64_t after, int limit, json_t **out) MAMORI_MUST_CHECK;

#endif
