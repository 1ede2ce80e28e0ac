/*
 * common/schema.h - telemetry schemas: what a device model may report.
 *
 * A schema is declared per device model (docs/protocol.md, "Telemetry"):
 *
 *   {"fields": [{"name": "temp_c", "type": "number", "unit": "degC",
 *                "min": -40, "max": 85, "max_rate_hz": 1}, ...]}
 *
 * The same code checks a telemetry body on the device (libmamori refuses
 * out-of-range values before they are queued) and on the hub (which refuses
 * and alerts on anything the schema does not allow: T11-L1e, T11-L3a).
 * Parsing and checking read untrusted input and are fuzzed (fuzz_schema).
 */
#ifndef MAMORI_COMMON_SCHEMA_H
#define MAMORI_COMMON_SCHEMA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mamori/error.h"

#define SCHEMA_MAX_FIELDS 64
#define SCHEMA_NAME_MAX   32
#define SCHEMA_UNIT_MAX   16
#define SCHEMA_JSON_MAX   (16 * 1024)
#define SCHEMA_RATE_MAX   1000.0 /* highest max_rate_hz accepted */

enum schema_type { SCHEMA_NUMBER, SCHEMA_INTEGER, SCHEMA_BOOLEAN };

struct schema_field {
    char name[SCHEMA_NAME_MAX + 1];
    char unit[SCHEMA_UNIT_MAX + 1];
    enum schema_type type;
    double min, max;    /* inclusive; ignored for booleans */
    double max_rate_hz; /* 0: no limit */
};

struct schema {
    size_t n;
    struct schema_field f[SCHEMA_MAX_FIELDS];
};

/* Parses a schema document (untrusted, len bytes). On error, why (whylen
 * bytes) says what is wrong in words fit for the operator who sent it. */
enum mamori_err schema_parse(const void *json, size_t len, struct schema *out, char *why,
                             size_t whylen) MAMORI_MUST_CHECK;
/* Serialises s back to its document form (new reference). */
json_t *schema_to_json(const struct schema *s);

/* Checks a telemetry body against s: an object whose members are all
 * declared fields of the right type and within [min, max]. At least one
 * field must be present. MAMORI_ERR_PARSE (unknown field, wrong type, empty)
 * or MAMORI_ERR_INVAL (out of range), with why set. */
enum mamori_err schema_check(const struct schema *s, json_t *body, char *why,
                             size_t whylen) MAMORI_MUST_CHECK;

/* Rate state: the last accepted time of each field. */
struct schema_rate {
    int64_t last_ms[SCHEMA_MAX_FIELDS];
};
/* True when every field of body may be sent at ts_ms under its max_rate_hz
 * (with tol, a fraction of the period, allowed for clock jitter). When
 * accept is true and the check passes, the fields' times are recorded. */
bool schema_rate_ok(const struct schema *s, struct schema_rate *r, json_t *body, int64_t ts_ms,
                    double tol, bool accept, char *why, size_t whylen);

#endif
