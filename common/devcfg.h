/*
 * common/devcfg.h - the settings the hub may change on a device remotely
 * (T01-L3c, T08-*): a JSON object, at most DEVCFG_MAX bytes, unknown keys
 * refused.
 *
 *   {"heartbeat_s": 30,             1..3600
 *    "broker_host": "mqtt.example",  where the device connects (T01-L1a)
 *    "broker_port": 8883,            1..65535
 *    "health_s": 60,                 5..3600: how long the device has to prove
 *                                    the new settings work before it rolls back
 *    "schema": {...}}                the model's telemetry schema (common/schema.h)
 *
 * The hub checks a document with the same parser before it signs it; the
 * device checks it again before it applies it.
 */
#ifndef MAMORI_COMMON_DEVCFG_H
#define MAMORI_COMMON_DEVCFG_H

#include <stdbool.h>
#include <stddef.h>

#include "mamori/error.h"

#define DEVCFG_MAX 3072

struct devcfg {
    unsigned heartbeat_s; /* 0: not set */
    char broker_host[256];
    int broker_port;   /* 0: not set */
    unsigned health_s; /* default 60 */
    bool has_schema;
    char schema_json[DEVCFG_MAX]; /* compact text of "schema" when has_schema */
};

/* Parses untrusted bytes; why gets the reason for a refusal. */
enum mamori_err devcfg_parse(const void *data, size_t len, struct devcfg *out, char *why,
                             size_t whylen) MAMORI_MUST_CHECK;

#endif
