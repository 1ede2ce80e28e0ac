/*
 * hub/owners/owners.h - what owners do with their devices and their data beyond
 * claiming them (docs/owners.md): ownership transfer with a fresh
 * single-use code (P-OWNER, JEITA 4.1.1), and the data rights of export and
 * erasure (ETSI EN 303 645 5.11, GDPR arts. 15, 17, 20).
 */
#ifndef MAMORI_HUB_OWNERS_H
#define MAMORI_HUB_OWNERS_H

#include <jansson.h>

#include "hub/core/hub.h"
#include "hub/core/tx.h"

/* The owner starts a transfer: data "export" (the previous owner keeps a
 * copy of the device's data, then it is erased) or "erase". */
enum mamori_err hub_op_transfer_start(struct hub *h, const struct principal *who, const char *id,
                                      const char *data, json_t **out,
                                      struct op_err *e) MAMORI_MUST_CHECK;
enum mamori_err hub_op_transfer_cancel(struct hub *h, const struct principal *who, const char *id,
                                       json_t **out, struct op_err *e) MAMORI_MUST_CHECK;
/* The new owner accepts with the code. */
enum mamori_err hub_op_transfer_accept(struct hub *h, const struct principal *who, const char *code,
                                       const char *peer, json_t **out,
                                       struct op_err *e) MAMORI_MUST_CHECK;
/* Everything the hub holds of the caller, as JSON. */
enum mamori_err hub_op_me_export(struct hub *h, const struct principal *who,
                                 json_t **out) MAMORI_MUST_CHECK;
/* Erases the data of the caller's devices (confirm: the caller's name). */
enum mamori_err hub_op_me_erase(struct hub *h, const struct principal *who, const char *confirm,
                                json_t **out, struct op_err *e) MAMORI_MUST_CHECK;
/* Deletes the caller's account (confirm: the caller's name). Devices the
 * caller owns make it refuse (MAMORI_ERR_STATE) unless devices is
 * "decommission": each is then decommissioned first (wiped, its
 * certificate revoked, its data erased). The last administrator stays. */
enum mamori_err hub_op_me_delete(struct hub *h, const struct principal *who, const char *confirm,
                                 const char *devices, json_t **out,
                                 struct op_err *e) MAMORI_MUST_CHECK;
/* An administrator deletes an account that owns no device (reason audited). */
enum mamori_err hub_op_user_delete(struct hub *h, const struct principal *who, const char *name,
                                   const char *reason, json_t **out,
                                   struct op_err *e) MAMORI_MUST_CHECK;
/* The exports kept for the caller (id 0: the list; else that one). */
enum mamori_err hub_op_exports(struct hub *h, const struct principal *who, int64_t id,
                               json_t **out) MAMORI_MUST_CHECK;

#endif
