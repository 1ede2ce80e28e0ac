/* hub/core/records.h - reading and checking the audit log (staff). */
#ifndef MAMORI_HUB_CORE_RECORDS_H
#define MAMORI_HUB_CORE_RECORDS_H

#include <jansson.h>

#include "hub/core/tx.h"

enum mamori_err hub_op_audit_list(struct hub *h, const struct principal *who, int64_t after,
                                  int limit, json_t **out) MAMORI_MUST_CHECK;
enum mamori_err hub_op_audit_verify(struct hub *h, const struct principal *who,
                                    json_t **out) MAMORI_MUST_CHECK;

#endif
