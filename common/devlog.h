/*
 * common/devlog.h - the device's tamper-evident log (T12-L1a, T12-L1b,
 * T12-L3a), record format shared by the device (writer) and the hub
 * (verifier).
 *
 * A record is {"rec":"<text>","sig":"<base64 ECDSA P-256/SHA-256 over the
 * text, by the device key>"} where the text is exactly
 *   {"n":N,"ts":ms,"type":"boot","data":{...},"prev":"<hex SHA-256 of the
 *    previous record's text>"}
 * n counts from 1 and prev of record 1 is 64 zeros. The signature binds
 * each record to the device; prev binds it to all before it, so an edit,
 * a removal, a reordering or a truncation followed by any later record is
 * seen by whoever holds the chain's last hash (the hub).
 */
#ifndef MAMORI_COMMON_DEVLOG_H
#define MAMORI_COMMON_DEVLOG_H

#include <stddef.h>
#include <stdint.h>

#include "common/crypto.h"
#include "mamori/error.h"

#define DEVLOG_TEXT_MAX  2048
#define DEVLOG_LINE_MAX  2400
#define DEVLOG_ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"

struct devlog_rec {
    uint64_t n;
    int64_t ts;
    char type[33];
    char prev[65];
    char hash[65]; /* SHA-256 of the text: the next record's prev */
};

/* Writer: builds and signs record n after prev (data_json: an object).
 * line_out gets the record (NUL-terminated, no newline), rec_out its
 * fields. */
enum mamori_err devlog_build(const struct crypto_key *key, uint64_t n, int64_t ts, const char *type,
                             const char *data_json, const char *prev,
                             char line_out[DEVLOG_LINE_MAX],
                             struct devlog_rec *rec_out) MAMORI_MUST_CHECK;

/* Reader (untrusted bytes): parses a record and checks its signature with
 * the device certificate (NULL: signature not checked, for the device's own
 * reading of its chain). MAMORI_ERR_VERIFY: bad signature. */
enum mamori_err devlog_parse(const void *line, size_t len, const struct crypto_cert *cert,
                             struct devlog_rec *out) MAMORI_MUST_CHECK;

#endif
