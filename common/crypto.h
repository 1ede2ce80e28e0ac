/*
 * common/crypto.h - the only caller of OpenSSL's primitives (STYLE.md habit 6).
 *
 * Keys, certificates and CSRs are opaque handles; PEM text crosses module
 * boundaries. Secrets are compared with crypto_ct_eq() and wiped with
 * crypto_wipe(). All keys are ECDSA P-256 (what TPMs and secure elements do).
 */
#ifndef MAMORI_COMMON_CRYPTO_H
#define MAMORI_COMMON_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "mamori/error.h"

#define CRYPTO_SHA256_LEN 32
#define CRYPTO_FP_HEX_LEN 65 /* 64 hex chars + NUL */
#define CRYPTO_PEM_MAX    (64 * 1024)

struct crypto_key;  /* an EC private (or public) key */
struct crypto_cert; /* an X.509 certificate */
struct crypto_csr;  /* a verified PKCS#10 request */

enum mamori_err crypto_random(void *out, size_t n) MAMORI_MUST_CHECK;
void crypto_sha256(const void *data, size_t n, uint8_t out[CRYPTO_SHA256_LEN]);
/* Streaming SHA-256 (images are hashed as they arrive, never held whole). */
struct crypto_sha256_ctx;
enum mamori_err crypto_sha256_begin(struct crypto_sha256_ctx **out) MAMORI_MUST_CHECK;
void crypto_sha256_update(struct crypto_sha256_ctx *c, const void *data, size_t n);
/* Writes the digest and frees c. */
enum mamori_err crypto_sha256_end(struct crypto_sha256_ctx *c,
                                  uint8_t out[CRYPTO_SHA256_LEN]) MAMORI_MUST_CHECK;
void crypto_sha256_abort(struct crypto_sha256_ctx *c);
/* Writes n bytes to fd (short writes and EINTR retried) and hashes exactly
 * what was written; *done grows by the bytes written, also on failure. */
enum mamori_err crypto_sha256_write(struct crypto_sha256_ctx *c, int fd, const void *data, size_t n,
                                    uint64_t *done) MAMORI_MUST_CHECK;
/* The SHA-256 and size of a file of at most max bytes, read in 64 KiB
 * blocks (MAMORI_ERR_TOOBIG beyond max). */
enum mamori_err crypto_sha256_file(const char *path, uint64_t max, uint8_t out[CRYPTO_SHA256_LEN],
                                   uint64_t *size) MAMORI_MUST_CHECK;
enum mamori_err crypto_hmac_sha256(const void *key, size_t klen, const void *data, size_t n,
                                   uint8_t out[CRYPTO_SHA256_LEN]) MAMORI_MUST_CHECK;
/* Constant-time equality of two n-byte buffers. */
bool crypto_ct_eq(const void *a, const void *b, size_t n);
/* Overwrites n bytes in a way the compiler cannot elide. */
void crypto_wipe(void *p, size_t n);
/* Lower-case hex of n bytes into out (2n+1 bytes). */
void crypto_hex(const uint8_t *in, size_t n, char *out);

/* Where device keys live (T05-L5a: as far as software goes). FILE: a PEM
 * file (mode 0600, checked by the callers). TPM2: in a TPM 2.0 through OpenSSL's tpm2 provider
 * (tpm2-openssl); the file then holds a "TSS2 PRIVATE KEY" blob that only
 * that TPM can load, and the private key never leaves the chip. */
enum crypto_keystore { CRYPTO_KEYSTORE_FILE = 0, CRYPTO_KEYSTORE_TPM2 = 1 };
bool crypto_keystore_parse(const char *name, enum crypto_keystore *out);
const char *crypto_keystore_name(enum crypto_keystore ks);
/* Makes ks usable in this process (idempotent). TPM2 loads the tpm2 and
 * default providers into OpenSSL's default library context, so every key
 * load in the process (libmosquitto's included) understands TPM blobs;
 * tcti selects the TPM ("device:/dev/tpmrm0", "swtpm:path=SOCK"; NULL:
 * $TPM2OPENSSL_TCTI or the provider's default). MAMORI_ERR_UNAVAILABLE when
 * the provider or the TPM cannot be reached. */
enum mamori_err crypto_keystore_init(enum crypto_keystore ks, const char *tcti) MAMORI_MUST_CHECK;
/* The keystore a key lives in. */
enum crypto_keystore crypto_key_store(const struct crypto_key *key);
/* A TLS client context (SSL_CTX *) for a device: TLS 1.2 or later, the
 * server must chain to ca_path and match host (name or address), the
 * client presents cert_path with the key in key_path, loaded once (a TPM
 * key stays loaded for the context's life, not once per connection), and
 * its signatures are made where the key lives (ks). The caller owns one
 * reference. */
enum mamori_err crypto_tls_client_ctx(enum crypto_keystore ks, const char *ca_path,
                                      const char *cert_path, const char *key_path, const char *host,
                                      void **ssl_ctx) MAMORI_MUST_CHECK;
/* Replaces the client certificate and key (after a rotation); the old pair
 * stays in force when the new one does not load or does not match. */
enum mamori_err crypto_tls_ctx_set_identity(void *ssl_ctx, const char *cert_path,
                                            const char *key_path) MAMORI_MUST_CHECK;
void crypto_tls_ctx_free(void *ssl_ctx);
/* The broker's name or address to check from the next connection on. */
enum mamori_err crypto_tls_ctx_set_host(void *ssl_ctx, const char *host) MAMORI_MUST_CHECK;
/* The context keeps the newest session the server offered and resumes it
 * on the next connection (dropped when the identity changes). True when
 * the connection on ssl (SSL *) was resumed. */
bool crypto_tls_resumed(const void *ssl);
/* Full (not resumed) handshakes completed on connections of the context. */
uint64_t crypto_tls_full_handshakes(const void *ssl_ctx);
/* Connections of the context read ahead: one read from the socket takes
 * every TLS record waiting, not one record's header and then its body.
 * Only for a reader that drains crypto_tls_pending before it waits on the
 * socket again (what was read ahead is no longer on the socket). */
void crypto_tls_ctx_read_ahead(void *ssl_ctx);
/* Whether the connection ssl (SSL *) holds received bytes not yet read. */
bool crypto_tls_pending(const void *ssl);

/* Keys. Returned handles are owned by the caller (crypto_key_free). */
enum mamori_err crypto_key_generate(struct crypto_key **out) MAMORI_MUST_CHECK;
/* A new P-256 key in ks (crypto_keystore_init first). */
enum mamori_err crypto_key_generate_in(enum crypto_keystore ks,
                                       struct crypto_key **out) MAMORI_MUST_CHECK;
enum mamori_err crypto_key_load(const char *path, struct crypto_key **out) MAMORI_MUST_CHECK;
/* Writes the private key as PEM to path, created with mode 0600 atomically. */
enum mamori_err crypto_key_save(const struct crypto_key *key, const char *path) MAMORI_MUST_CHECK;
void crypto_key_free(struct crypto_key *key);

/* CSRs. crypto_csr_create returns malloc'd PEM (caller frees). */
enum mamori_err crypto_csr_create(const struct crypto_key *key, const char *cn,
                                  char **pem_out) MAMORI_MUST_CHECK;
/* Parses untrusted PEM (len bytes, capped at CRYPTO_PEM_MAX), checks its
 * self-signature and that the key is EC P-256. */
enum mamori_err crypto_csr_parse(const char *pem, size_t len,
                                 struct crypto_csr **out) MAMORI_MUST_CHECK;
void crypto_csr_free(struct crypto_csr *csr);

enum crypto_cert_kind {
    CRYPTO_CERT_ROOT_CA, /* self-signed, pathlen 1 */
    CRYPTO_CERT_SUB_CA,  /* pathlen 0 */
    CRYPTO_CERT_SERVER,  /* serverAuth, SAN DNS:localhost IP:127.0.0.1 ::1 */
    CRYPTO_CERT_CLIENT,  /* clientAuth */
};

struct crypto_issue {
    enum crypto_cert_kind kind;
    const char *cn;
    const char *org;                  /* optional O= */
    const struct crypto_key *subject; /* public key of the subject (or NULL with csr) */
    const struct crypto_csr *csr;     /* alternative to subject */
    const struct crypto_cert *issuer; /* NULL for a self-signed root */
    const struct crypto_key *issuer_key;
    time_t not_before; /* absolute; 0 means now - 5 min */
    time_t not_after;  /* absolute */
    const char *san;   /* CRYPTO_CERT_SERVER: subjectAltName, "DNS:name,IP:addr,...";
                        * NULL: loopback only (localhost, 127.0.0.1, ::1) */
};
/* Issues a certificate with a random 128-bit serial; *pem_out is malloc'd. */
enum mamori_err crypto_cert_issue(const struct crypto_issue *p, char **pem_out) MAMORI_MUST_CHECK;
/* The same, followed by the issuer's certificate: the chain a server or
 * client presents (leaf + issuing CA; p->issuer set). Malloc'd. */
enum mamori_err crypto_cert_issue_chain(const struct crypto_issue *p,
                                        char **chain_out) MAMORI_MUST_CHECK;

/* A certificate the issuer withdraws, for its CRL. */
struct crypto_revoked {
    const char *serial_hex; /* as crypto_cert_serial_hex gives it */
    time_t when;
    int reason; /* RFC 5280 CRLReason: 1 keyCompromise, 5 cessationOfOperation, ... */
};
/* An X.509 v2 CRL signed by issuer (PEM, malloc'd): the n entries, this
 * update now, the next in next_s seconds, CRL number `number`. */
enum mamori_err crypto_crl_issue(const struct crypto_cert *issuer, const struct crypto_key *key,
                                 const struct crypto_revoked *list, size_t n, time_t next_s,
                                 uint64_t number, char **pem_out) MAMORI_MUST_CHECK;

enum mamori_err crypto_cert_load(const char *path, struct crypto_cert **out) MAMORI_MUST_CHECK;
/* Parses untrusted PEM (first certificate only), capped at CRYPTO_PEM_MAX. */
enum mamori_err crypto_cert_parse(const char *pem, size_t len,
                                  struct crypto_cert **out) MAMORI_MUST_CHECK;
void crypto_cert_free(struct crypto_cert *cert);
/* The certificate's public key: SHA-256 of its SubjectPublicKeyInfo (hex),
 * its type ("ec", "rsa", "ed25519", ...) and size in bits; for EC keys the
 * curve name in type ("ec:prime256v1"). */
enum mamori_err crypto_cert_key_info(const struct crypto_cert *cert, char spki_sha[65], char *type,
                                     size_t typelen, int *bits) MAMORI_MUST_CHECK;
/* SHA-256 over the DER encoding, lower-case hex. */
void crypto_cert_fingerprint(const struct crypto_cert *cert, char out[CRYPTO_FP_HEX_LEN]);
/* Same for a certificate handle owned by someone else (e.g. mosquitto's X509 *). */
void crypto_x509_fingerprint(const void *x509, char out[CRYPTO_FP_HEX_LEN]);
enum mamori_err crypto_x509_cn(const void *x509, char *out, size_t outlen) MAMORI_MUST_CHECK;
enum mamori_err crypto_cert_cn(const struct crypto_cert *cert, char *out,
                               size_t outlen) MAMORI_MUST_CHECK;
enum mamori_err crypto_cert_serial_hex(const struct crypto_cert *cert, char *out,
                                       size_t outlen) MAMORI_MUST_CHECK;
time_t crypto_cert_not_after(const struct crypto_cert *cert);
bool crypto_cert_is_ca(const struct crypto_cert *cert);
/* True when the certificate's public key is the public half of key. */
bool crypto_cert_matches_key(const struct crypto_cert *cert, const struct crypto_key *key);
/* Verifies cert against the CA certificates in trust_pem (a PEM bundle) at
 * the current time: signature chain, validity, CA flags, clientAuth. */
enum mamori_err crypto_cert_verify(const struct crypto_cert *cert,
                                   const char *trust_pem) MAMORI_MUST_CHECK;
/* ECDSA P-256 / SHA-256 signatures, DER encoded (at most CRYPTO_SIG_MAX). */
#define CRYPTO_SIG_MAX 80
enum mamori_err crypto_ecdsa_sign(const struct crypto_key *key, const void *data, size_t n,
                                  uint8_t sig[CRYPTO_SIG_MAX], size_t *siglen) MAMORI_MUST_CHECK;
enum mamori_err crypto_cert_verify_sig(const struct crypto_cert *cert, const void *data, size_t n,
                                       const uint8_t *sig, size_t siglen) MAMORI_MUST_CHECK;
/* The same P-256 signature as JWS writes it (RFC 7518 3.4): r || s, 32
 * bytes each, big-endian. */
#define CRYPTO_SIG_RAW_LEN 64
enum mamori_err crypto_ecdsa_der_to_raw(const uint8_t *der, size_t n,
                                        uint8_t raw[CRYPTO_SIG_RAW_LEN]) MAMORI_MUST_CHECK;
enum mamori_err crypto_ecdsa_raw_to_der(const uint8_t raw[CRYPTO_SIG_RAW_LEN],
                                        uint8_t der[CRYPTO_SIG_MAX], size_t *n) MAMORI_MUST_CHECK;
/* As crypto_cert_verify, with untrusted intermediates (PEM, at most 4 used;
 * NULL for none) that may complete the path but are never trusted. */
enum mamori_err crypto_cert_verify_chain(const struct crypto_cert *cert, const char *untrusted_pem,
                                         size_t untrusted_len,
                                         const char *trust_pem) MAMORI_MUST_CHECK;
/* Base64 (standard alphabet, padded). encode returns the length written
 * (0 when out is too small); decode refuses anything but canonical input. */
size_t crypto_b64_encode(const uint8_t *in, size_t n, char *out, size_t outlen);
enum mamori_err crypto_b64_decode(const char *in, size_t n, uint8_t *out, size_t outlen,
                                  size_t *got) MAMORI_MUST_CHECK;

/* Bare public keys (signed update metadata: docs/updates.md). A key is
 * exchanged as its DER SubjectPublicKeyInfo (at most CRYPTO_SPKI_MAX
 * bytes); only P-256 is accepted. Its key id is the hex SHA-256 of that
 * DER. */
#define CRYPTO_SPKI_MAX 128
struct crypto_pubkey;
enum mamori_err crypto_key_spki(const struct crypto_key *key, uint8_t out[CRYPTO_SPKI_MAX],
                                size_t *len) MAMORI_MUST_CHECK;
enum mamori_err crypto_pubkey_parse(const uint8_t *spki, size_t len,
                                    struct crypto_pubkey **out) MAMORI_MUST_CHECK;
enum mamori_err crypto_pubkey_verify(const struct crypto_pubkey *pub, const void *data, size_t n,
                                     const uint8_t *sig, size_t siglen) MAMORI_MUST_CHECK;
void crypto_pubkey_free(struct crypto_pubkey *pub);
void crypto_key_id(const uint8_t *spki, size_t len, char out[CRYPTO_FP_HEX_LEN]);

/* Returns malloc'd PEM of cert. */
enum mamori_err crypto_cert_pem(const struct crypto_cert *cert, char **pem_out) MAMORI_MUST_CHECK;

#endif
