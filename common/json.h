/*
 * common/json.h - untrusted JSON through jansson with hard limits.
 *
 * json_parse_untrusted() refuses input over max bytes before parsing, rejects
 * duplicate keys and embedded NULs, and caps nesting depth, so every API body
 * and MQTT payload gets the same treatment.
 */
#ifndef MAMORI_COMMON_JSON_H
#define MAMORI_COMMON_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "mamori/error.h"

#define JSON_MAX_DEPTH 16

/* On success *out is a new reference to an object (the only top-level type
 * Mamori accepts). On error *out is NULL and err (if not NULL, errlen bytes)
 * holds a message safe to show to the sender. */
enum mamori_err json_parse_untrusted(const void *data, size_t len, size_t max, json_t **out,
                                     char *err, size_t errlen) MAMORI_MUST_CHECK;

/* Typed getters. Each returns false (and leaves *out alone) when the member
 * is missing, has the wrong type, or is out of bounds. */
bool json_get_str(const json_t *obj, const char *key, size_t maxlen, const char **out);
bool json_get_u64(const json_t *obj, const char *key, uint64_t *out);

/* Serialises compactly; malloc'd string or NULL. */
char *json_dump_compact(const json_t *v);

#endif
