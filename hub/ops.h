/*
 * hub/ops.h - the hub's domain operations, one function per thing a
 * principal can do. The API is a thin JSON/HTTP shell over these.
 *
 * Each function takes the hub lock itself, checks the principal's role (and
 * for owners, ownership), validates its input, performs the change and its
 * audit entry in one transaction, and tells the broker plugin when a
 * device's access changed. Results are returned as new jansson references
 * owned by the caller.
 */
#ifndef MAMORI_HUB_OPS_H
#define MAMORI_HUB_OPS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "hub/hub.h"
#include "hub/lifecycle.h"

/* Sets the client-facing message of an op_err. */
#define SET_ERR(e, ...) snprintf((e)->msg, sizeof((e)->msg), __VA_ARGS__)

/* Administrators and operators: privileges separate from owners'. */
bool hub_is_staff(const struct principal *who);

/* Applies a lifecycle action to d (lock held): the registry, the audit
 * entry, the broker's view, and the signed command to the device for
 * lock/unlock/quarantine/release (its JSON in *command when not NULL). */
struct device_rec;
enum mamori_err hub_device_action_locked(struct hub *h, const struct principal *who,
                                         struct device_rec *d, enum lc_action a, const char *reason,
                                         json_t **command) MAMORI_MUST_CHECK;
/* The device as who may see it (lock held): owners only their own, and
 * another owner's is MAMORI_ERR_NOTFOUND, not forbidden. */
enum mamori_err hub_device_visible(struct hub *h, const struct principal *who, const char *id,
                                   struct device_rec *d) MAMORI_MUST_CHECK;

/* Carries a client-facing message with an error code. */
struct op_err {
    char msg[256];
    int64_t retry_after; /* for MAMORI_ERR_RATELIMIT */
};

/* Failed-attempt throttling (hub/auth.h policies), lock held: refused with
 * MAMORI_ERR_RATELIMIT while key is throttled; a failure is recorded. */
struct throttle_rec;
struct throttle_policy;
enum mamori_err hub_throttled(struct hub *h, const char *key, struct throttle_rec *t,
                              struct op_err *e) MAMORI_MUST_CHECK;
void hub_throttle_fail(struct hub *h, const struct throttle_policy *p, const char *key,
                       struct throttle_rec *t);

enum mamori_err hub_op_bootstrap(struct hub *h, const char *token, const char *user,
                                 const char *password, const char *peer,
                                 struct op_err *e) MAMORI_MUST_CHECK;
enum mamori_err hub_op_login(struct hub *h, const char *user, const char *password,
                             const char *peer, json_t **out, struct op_err *e) MAMORI_MUST_CHECK;
enum mamori_err hub_op_logout(struct hub *h, const char *token) MAMORI_MUST_CHECK;
/* Resolves a bearer token to its principal (MAMORI_ERR_AUTH when invalid or expired). */
enum mamori_err hub_op_authenticate(struct hub *h, const char *token,
                                    struct principal *who) MAMORI_MUST_CHECK;
enum mamori_err hub_op_user_add(struct hub *h, const struct principal *who, const char *name,
                                const char *role, const char *password, json_t **out,
                                struct op_err *e) MAMORI_MUST_CHECK;
enum mamori_err hub_op_user_list(struct hub *h, const struct principal *who,
                                 json_t **out) MAMORI_MUST_CHECK;

enum mamori_err hub_op_enroll(struct hub *h, const struct principal *who, const char *model,
                              const char *csr_pem, json_t **out,
                              struct op_err *e) MAMORI_MUST_CHECK;
enum mamori_err hub_op_register(struct hub *h, const struct principal *who, const char *model,
                                const char *cert_pem, json_t **out,
                                struct op_err *e) MAMORI_MUST_CHECK;
enum mamori_err hub_op_ca_import(struct hub *h, const struct principal *who, const char *model,
                                 const char *cert_pem, json_t **out,
                                 struct op_err *e) MAMORI_MUST_CHECK;
enum mamori_err hub_op_ca_list(struct hub *h, const struct principal *who,
                               json_t **out) MAMORI_MUST_CHECK;

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

enum mamori_err hub_op_audit_list(struct hub *h, const struct principal *who, int64_t after,
                                  int limit, json_t **out) MAMORI_MUST_CHECK;
enum mamori_err hub_op_audit_verify(struct hub *h, const struct principal *who,
                                    json_t **out) MAMORI_MUST_CHECK;
enum mamori_err hub_op_events(struct hub *h, const struct principal *who, const char *device_id,
                              int64_t after, int limit, json_t **out) MAMORI_MUST_CHECK;
enum mamori_err hub_op_health(struct hub *h, json_t **out) MAMORI_MUST_CHECK;

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

json_t *device_json(const struct device_rec *d);

#endif
