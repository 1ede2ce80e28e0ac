/*
 * common/eat.h - a device's security status in a standard form (P-MGMT,
 * JEITA 5.2): an Entity Attestation Token (RFC 9711) in JWT form (RFC
 * 7519), i.e. a JWS (RFC 7515) in compact serialisation, ES256 (RFC 7518)
 * by the device key. The device builds and signs it (lib/device.c); the
 * hub verifies it against the device's certificate and serves it as it
 * came, so any relying party can check it with that certificate.
 *
 * Header, exactly: {"alg":"ES256","typ":"eat+jwt"}
 * Claims (nothing else is accepted):
 *   eat_profile  EAT_PROFILE (the claim set below)
 *   sub          the device id
 *   iat, exp     when it was made and until when it may be relied on (Unix
 *                seconds; exp > iat, at most EAT_TTL_MAX later)
 *   swversion    optional [version, 1]: the firmware, multipartnumeric
 *   mamori       the status and the validity of its security functions:
 *     cert_not_after  (int)  the identity certificate's end
 *     support_end     (int)  the model's security-support end (0: not announced)
 *     advisories      (int)  advisories the hub named for its firmware
 *     log_records     (int)  records in its signed log (0: no log)
 *     locked, quarantined (bool)
 */
#ifndef MAMORI_COMMON_EAT_H
#define MAMORI_COMMON_EAT_H

#include <jansson.h>
#include <stddef.h>

#include "common/crypto.h"
#include "mamori/error.h"

#define EAT_MAX        2048 /* the compact token */
#define EAT_CLAIMS_MAX 1024 /* the claims' JSON */
#define EAT_TTL_MAX    (7 * 86400)
#define EAT_PROFILE    "tag:mamori.dev,2026:device-status-1"

/* Signs claims_json (an object's text, at most EAT_CLAIMS_MAX bytes) into
 * out (NUL-terminated). */
enum mamori_err eat_sign(const struct crypto_key *key, const char *claims_json,
                         char out[EAT_MAX + 1]) MAMORI_MUST_CHECK;

/* Reads a token (untrusted bytes): the form above, the signature with cert
 * (NULL: not checked, for tests of the form), sub equal to want_sub (NULL:
 * any). *claims gets the parsed claims (a new reference) on success.
 * MAMORI_ERR_VERIFY: the signature does not verify; MAMORI_ERR_PARSE:
 * anything else wrong (why, a short text, in why). */
enum mamori_err eat_verify(const char *tok, size_t len, const struct crypto_cert *cert,
                           const char *want_sub, json_t **claims,
                           const char **why) MAMORI_MUST_CHECK;

#endif
