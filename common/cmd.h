/*
 * common/cmd.h - signed remote commands (hub -> device), docs/protocol.md.
 *
 * On the device's cmd topic the hub publishes
 *   {"v":1, "cmd":"<command JSON text>", "sig":"<base64 ECDSA P-256/SHA-256
 *    over exactly those bytes>", "chain":"<PEM: signer cert + issuing CA>"}
 * where the command is
 *   {"id":"<128-bit nonce, 32 hex>", "device":"MM...", "type":"lock",
 *    "iat":ms, "exp":ms, "args":{...}}.
 * The device accepts it only when the signer's certificate chains to the
 * platform root it was given at the factory and is named
 * CMD_SIGNER_CN, the signature verifies, the command names this device,
 * it is within [iat, exp] (exp - iat at most CMD_MAX_TTL_MS) and its id was
 * never seen before (T01-L1b, T03-L2b: only the hub commands a device, and
 * a recorded command cannot be played again).
 */
#ifndef MAMORI_COMMON_CMD_H
#define MAMORI_COMMON_CMD_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/crypto.h"
#include "mamori/error.h"

/* A "cert" command carries a certificate and its issuing CA (about 1.6 KB). */
#define CMD_TEXT_MAX   8192
#define CMD_ARGS_MAX   4096
#define CMD_SIGNER_CN  "mamori-command-signer"
#define CMD_MAX_TTL_MS (30LL * 24 * 3600 * 1000)
#define CMD_SKEW_MS    (5LL * 60 * 1000)

enum cmd_type {
    CMD_LOCK,
    CMD_UNLOCK,
    CMD_WIPE,
    CMD_REBOOT,
    CMD_QUARANTINE,
    CMD_RELEASE,
    CMD_SELF_TEST,
    CMD_ROTATE,          /* make a new key in place; the result carries its CSR */
    CMD_CERT,            /* the new certificate for that key: install and switch */
    CMD_CONFIG,          /* new settings (common/devcfg.h), on probation until proven */
    CMD_CONFIG_ROLLBACK, /* back to the known-good settings */
    CMD_UPDATE,          /* install a release: {sha256, url, token} (docs/updates.md) */
    CMD_NOTICE,          /* advisories and support end for the device (common/notice.h) */
    CMD_N_TYPES
};
const char *cmd_type_name(enum cmd_type t);
bool cmd_type_parse(const char *s, enum cmd_type *out);

struct cmd {
    char id[33];
    char device[24];
    enum cmd_type type;
    int64_t iat, exp;        /* ms since the epoch */
    char args[CMD_ARGS_MAX]; /* JSON object text */
};

/* Hub: the signed message for c (malloc'd text). */
enum mamori_err cmd_build(const struct cmd *c, const struct crypto_key *key, const char *chain_pem,
                          char **out) MAMORI_MUST_CHECK;

/* Device: the outer message, parsed from untrusted bytes. */
struct cmd_msg {
    json_t *root;
    const char *text; /* points into root */
    size_t text_len;
    const char *chain;
    size_t chain_len;
    uint8_t sig[CRYPTO_SIG_MAX];
    size_t siglen;
};
enum mamori_err cmd_msg_parse(const void *payload, size_t len, struct cmd_msg *m) MAMORI_MUST_CHECK;
void cmd_msg_free(struct cmd_msg *m);

/* Checks the signature and the signer's chain against trust_pem. A signer
 * verified before (its fingerprint in cache_fp) skips the chain check. */
enum mamori_err cmd_msg_verify(const struct cmd_msg *m, const char *trust_pem,
                               char cache_fp[CRYPTO_FP_HEX_LEN]) MAMORI_MUST_CHECK;

/* Parses the (verified) command text. */
enum mamori_err cmd_parse(const char *text, size_t len, struct cmd *out) MAMORI_MUST_CHECK;
/* MAMORI_ERR_FORBIDDEN: for another device; MAMORI_ERR_EXPIRED: outside its
 * validity at now_ms; MAMORI_ERR_INVAL: validity too long. */
enum mamori_err cmd_check(const struct cmd *c, const char *device_id,
                          int64_t now_ms) MAMORI_MUST_CHECK;

#endif
