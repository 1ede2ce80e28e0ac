/*
 * common/upmeta.h - signed update metadata with roles (docs/updates.md).
 *
 * Two kinds of document, each a signed envelope
 *   {"signed": "<metadata JSON text>",
 *    "signatures": [{"keyid": "<hex SHA-256 of the key's DER SPKI>",
 *                    "sig": "<base64 ECDSA P-256/SHA-256 over exactly that text>"}]}
 *
 * root: the trust anchor a device gets at the factory. It lists keys and
 * two roles, each a set of key ids with a threshold: "root" (offline keys
 * that sign the next root) and "release" (keys that sign releases). A
 * release key is rotated or revoked by a new root version; the devices'
 * anchor changes only through roots signed by a threshold of the old root
 * keys and of the new ones (so a stolen release key never reaches the
 * anchor, and a lost root key is replaced without a factory visit).
 *
 * release: one firmware image for one device model: its version string,
 * its security version (anti-rollback), the floor it sets, and the image's
 * SHA-256 and size; signed by a threshold of release keys.
 *
 * Both expire: expired metadata is refused (freeze attack), and a root
 * version never goes back. Every count and size has a cap; parsing reads
 * only through jansson with the limits of common/json.h.
 */
#ifndef MAMORI_COMMON_UPMETA_H
#define MAMORI_COMMON_UPMETA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/crypto.h"
#include "mamori/error.h"

#define UPMETA_DOC_MAX    (64 * 1024) /* a whole envelope */
#define UPMETA_SIGNED_MAX (32 * 1024) /* the signed text */
#define UPMETA_KEYS_MAX   16          /* keys in a root; key ids in a role; signatures */
#define UPMETA_NAME_MAX   64          /* model and version: [A-Za-z0-9._+~-], 1..64 */
#define UPMETA_IMAGE_MAX  (16ULL * 1024 * 1024 * 1024) /* largest image size accepted */

struct upmeta_role {
    size_t nkeyids;
    char keyids[UPMETA_KEYS_MAX][CRYPTO_FP_HEX_LEN];
    unsigned threshold; /* 1 .. nkeyids */
};

struct upmeta_root {
    uint64_t version; /* 1, 2, ...: each next root is version + 1 */
    int64_t expires;  /* Unix ms */
    size_t nkeys;
    struct {
        char id[CRYPTO_FP_HEX_LEN];
        uint8_t spki[CRYPTO_SPKI_MAX];
        size_t spki_len;
    } keys[UPMETA_KEYS_MAX];
    struct upmeta_role root, release;
};

struct upmeta_release {
    char model[UPMETA_NAME_MAX + 1];
    char fw_version[UPMETA_NAME_MAX + 1];
    uint64_t security_version;
    uint64_t
        floor; /* installing this release raises the model's floor to this (<= security_version) */
    int64_t expires;
    char sha256[CRYPTO_FP_HEX_LEN]; /* of the image, lower-case hex */
    uint64_t size;                  /* of the image, bytes */
};

/* 64 lower-case hex digits (a SHA-256: image digests, key ids). */
bool upmeta_hex64(const char *s);
/* A model or version name: 1..64 of [A-Za-z0-9._+~-]. */
bool upmeta_name_ok(const char *s);

/* A first root, taken as the trust anchor (at the factory): well formed,
 * unexpired at now_ms, and signed by a threshold of its own root keys. */
enum mamori_err upmeta_root_first(const void *doc, size_t len, int64_t now_ms,
                                  struct upmeta_root *out, char *why,
                                  size_t whylen) MAMORI_MUST_CHECK;

/* The next root after trusted: version trusted->version + 1, signed by a
 * threshold of trusted's root keys and of its own. Its expiry is checked
 * only when check_expiry (roots on the way to the newest may have expired;
 * the newest may not: the caller checks it with upmeta_root_current). */
enum mamori_err upmeta_root_next(const struct upmeta_root *trusted, const void *doc, size_t len,
                                 bool check_expiry, int64_t now_ms, struct upmeta_root *out,
                                 char *why, size_t whylen) MAMORI_MUST_CHECK;

/* MAMORI_ERR_EXPIRED when root has expired at now_ms. */
enum mamori_err upmeta_root_current(const struct upmeta_root *root,
                                    int64_t now_ms) MAMORI_MUST_CHECK;

/* A release signed by a threshold of root's release keys, unexpired at
 * now_ms. Errors: MAMORI_ERR_PARSE (malformed), MAMORI_ERR_VERIFY (too few
 * valid signatures), MAMORI_ERR_EXPIRED. The caller checks the model, the
 * floor and the image (they are the device's facts). */
enum mamori_err upmeta_release_verify(const struct upmeta_root *root, const void *doc, size_t len,
                                      int64_t now_ms, struct upmeta_release *out, char *why,
                                      size_t whylen) MAMORI_MUST_CHECK;

/* Signing side (mamorictl release). The signed text of an envelope, as
 * a malloc'd string (*text). */
enum mamori_err upmeta_signed_text(const void *doc, size_t len, char **text) MAMORI_MUST_CHECK;
/* Adds key's signature to the envelope doc (replacing an earlier one by
 * the same key); *out is a new malloc'd envelope. */
enum mamori_err upmeta_sign(const void *doc, size_t len, const struct crypto_key *key,
                            char **out) MAMORI_MUST_CHECK;
/* Wraps metadata text (unsigned) into an envelope without signatures. */
enum mamori_err upmeta_wrap(const char *text, char **out) MAMORI_MUST_CHECK;

#endif
