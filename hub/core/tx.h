/*
 * hub/core/tx.h - who acts, and the audited transaction every change goes
 * through.
 *
 * Each operation of a domain takes the hub lock, checks the principal's
 * role (and for owners, ownership), validates its input, opens a store
 * transaction, makes its change and ends with hub_commit_audited: the
 * audit entry and the change commit together, or neither does.
 */
#ifndef MAMORI_HUB_CORE_TX_H
#define MAMORI_HUB_CORE_TX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hub/core/hub.h"

struct principal {
    int64_t user_id; /* 0 for the hub itself */
    char name[STORE_NAME_MAX + 1];
    enum store_role role;
};

/* Carries a client-facing message with an error code. */
struct op_err {
    char msg[256];
    int64_t retry_after; /* for MAMORI_ERR_RATELIMIT */
};

/* Sets the client-facing message of an op_err. */
#define SET_ERR(e, ...) snprintf((e)->msg, sizeof((e)->msg), __VA_ARGS__)

/* Administrators and operators: privileges separate from owners'. */
bool hub_is_staff(const struct principal *who);
/* 1..max characters of [A-Za-z0-9._-] (names, models). */
bool hub_name_ok(const char *s, size_t max);

/* Lock held, a transaction open: appends the audit entry and commits
 * (rolled back on failure). */
enum mamori_err hub_commit_audited(struct hub *h, const struct principal *who, const char *action,
                                   const char *target, const char *reason,
                                   const char *detail) MAMORI_MUST_CHECK;
/* Audits an action that changes nothing else (e.g. a refused attempt). */
void hub_audit_only(struct hub *h, const struct principal *who, const char *action,
                    const char *target, const char *reason, const char *detail);

/* Failed-attempt throttling (hub/core/auth.h policies), lock held: refused
 * with MAMORI_ERR_RATELIMIT while key is throttled; a failure is recorded. */
struct throttle_rec;
struct throttle_policy;
enum mamori_err hub_throttled(struct hub *h, const char *key, struct throttle_rec *t,
                              struct op_err *e) MAMORI_MUST_CHECK;
void hub_throttle_fail(struct hub *h, const struct throttle_policy *p, const char *key,
                       struct throttle_rec *t);

#endif
