/*
 * common/crypto_priv.h - what crypto.c and crypto_ca.c share inside the
 * crypto module; nothing outside common/crypto*.c includes it (crypto.h is
 * the interface). The helpers are defined in crypto.c.
 */
#ifndef MAMORI_COMMON_CRYPTO_PRIV_H
#define MAMORI_COMMON_CRYPTO_PRIV_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "mamori/error.h"

/* Our handles are OpenSSL objects; many OpenSSL 3 accessors are not
 * const-correct, so the const is dropped here, at the one boundary. */
#define K(x) ((EVP_PKEY *)(uintptr_t)(x))
#define C(x) ((X509 *)(uintptr_t)(x))
#define R(x) ((X509_REQ *)(uintptr_t)(x))

/* True when k is an EC key on P-256. */
bool crypto_is_p256(EVP_PKEY *k);
/* What a memory BIO holds, as a malloc'd NUL-terminated string. */
enum mamori_err crypto_bio_string(BIO *bio, char **out);
/* Adds O=org (when given) and CN=cn to name. */
enum mamori_err crypto_name_set(X509_NAME *name, const char *cn, const char *org);

#endif
