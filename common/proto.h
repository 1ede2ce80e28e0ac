/*
 * common/proto.h - Mamori's wire conventions (docs/protocol.md):
 * device ids (management numbers), claim codes, MQTT topics, envelopes.
 *
 * Topics live under one versioned namespace:
 *   mamori/v1/d/{device_id}/{hb|tm|ev|res|log}   device -> hub
 *   mamori/v1/d/{device_id}/cmd              hub -> device
 *   mamori/v1/ctl/{sync|notes}               hub -> broker plugin (hub only)
 *   mamori/v1/broker/ev                      broker plugin -> hub (hub only)
 */
#ifndef MAMORI_COMMON_PROTO_H
#define MAMORI_COMMON_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mamori/error.h"

#define PROTO_TOPIC_DEV_PREFIX "mamori/v1/d/"
#define PROTO_TOPIC_CTL_PREFIX "mamori/v1/ctl/"
#define PROTO_TOPIC_CTL_SYNC   PROTO_TOPIC_CTL_PREFIX "sync"  /* the registry's view */
#define PROTO_TOPIC_CTL_NOTES  PROTO_TOPIC_CTL_PREFIX "notes" /* broker/notes.h */
/* a hub that does not send the snapshot asks the node where it stands */
#define PROTO_TOPIC_CTL_HELLO PROTO_TOPIC_CTL_PREFIX "hello"
/* the device partitions a hub holds: 16 hex digits, a bit each (broker/parts.h) */
#define PROTO_TOPIC_CTL_PARTS PROTO_TOPIC_CTL_PREFIX "parts"
#define PROTO_NOTE_MAX        1024 /* one note's message, at most */
#define PROTO_TOPIC_BROKER_EV "mamori/v1/broker/ev"
#define PROTO_HUB_USERNAME    "!hub" /* cannot collide: not a valid device id */
/* The hub's MQTT client id; only the hub's certificate may use it (or
 * PROTO_HUB_CLIENT_ID "-<name>"), and no device id looks like it. */
#define PROTO_HUB_CLIENT_ID "mamori-hub"

/* "MM" + 16 Crockford base32 characters (80 random bits). */
#define PROTO_DEVICE_ID_LEN 18
/* 20 Crockford characters (100 random bits) as XXXXX-XXXXX-XXXXX-XXXXX. */
#define PROTO_CLAIM_CODE_CHARS 20
#define PROTO_CLAIM_CODE_TEXT  23
/* Envelope payloads larger than this are refused by the hub. */
#define PROTO_MAX_PAYLOAD (16 * 1024)

enum proto_kind {
    PROTO_KIND_HB,
    PROTO_KIND_TM,
    PROTO_KIND_EV,
    PROTO_KIND_RES,
    PROTO_KIND_CMD,
    PROTO_KIND_LOG, /* device log records (hash chain) */
};

bool proto_device_id_valid(const char *s, size_t n);
/* Several hubs share the devices out in PROTO_PARTITIONS partitions by a
 * hash of the id (FNV-1a): the hubs and the broker plugin must agree. */
#define PROTO_PARTITIONS 64
unsigned proto_partition(const char *id);
enum mamori_err proto_device_id_new(char out[PROTO_DEVICE_ID_LEN + 1]) MAMORI_MUST_CHECK;

/* Makes a new claim code (text form, NUL-terminated) from a CSPRNG. */
enum mamori_err proto_claim_code_new(char out[PROTO_CLAIM_CODE_TEXT + 1]) MAMORI_MUST_CHECK;
/* Normalises user input (case, dashes, spaces, O->0, I/L->1) to the 20
 * canonical characters. MAMORI_ERR_PARSE when it is not a claim code. */
enum mamori_err proto_claim_code_normalize(const char *in, size_t n,
                                           char out[PROTO_CLAIM_CODE_CHARS + 1]) MAMORI_MUST_CHECK;
/* SHA-256 of the canonical code, hex; what the hub stores. */
void proto_claim_code_hash(const char canon[PROTO_CLAIM_CODE_CHARS + 1], char out_hex[65]);

/* Parses "mamori/v1/d/{id}/{kind}" (untrusted). id_out gets the device id. */
enum mamori_err proto_topic_parse(const char *topic, size_t n, char id_out[PROTO_DEVICE_ID_LEN + 1],
                                  enum proto_kind *kind) MAMORI_MUST_CHECK;
/* Builds the topic for id and kind into out. */
enum mamori_err proto_topic(char *out, size_t outlen, const char *id,
                            enum proto_kind kind) MAMORI_MUST_CHECK;

struct proto_envelope {
    uint64_t seq;
    uint64_t ts_ms;
};
/* Parses and validates an envelope {"v":1,"seq":N,"ts":ms,"body":{...}};
 * body_out (optional) gets a new reference to the body object. */
struct json_t;
enum mamori_err proto_envelope_parse(const void *payload, size_t len, struct proto_envelope *env,
                                     struct json_t **body_out) MAMORI_MUST_CHECK;

#endif
