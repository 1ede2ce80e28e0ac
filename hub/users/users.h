/*
 * hub/users/users.h - accounts and sessions: the one-time bootstrap of the
 * first administrator, login (throttled), bearer tokens, staff accounts.
 * Each takes the hub lock itself.
 */
#ifndef MAMORI_HUB_USERS_USERS_H
#define MAMORI_HUB_USERS_USERS_H

#include <jansson.h>

#include "hub/core/tx.h"

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

#endif
