/*
 * common/crypto_ca.c - the issuing authority's side of crypto.h: checking
 * CSRs, issuing certificates and CRLs, and inspecting the certificates it
 * is shown (serial, key, CA flag, PEM). The hub and the factory tools use
 * it; a device does not, and libmamori leaves it out (lib/CMakeLists.txt).
 * The rest of crypto.h is in crypto.c.
 */
#include "common/crypto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/crypto_priv.h"

enum mamori_err crypto_csr_parse(const char *pem, size_t len, struct crypto_csr **out)
{
    *out = NULL;
    if (len == 0 || len > CRYPTO_PEM_MAX)
        return len ? MAMORI_ERR_TOOBIG : MAMORI_ERR_PARSE;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509_REQ *req = bio ? PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    ERR_clear_error();
    if (!req)
        return MAMORI_ERR_PARSE;
    EVP_PKEY *pk = X509_REQ_get0_pubkey(req);
    if (!pk || !crypto_is_p256(pk)) {
        X509_REQ_free(req);
        return MAMORI_ERR_CRYPTO;
    }
    if (X509_REQ_verify(req, pk) != 1) {
        ERR_clear_error();
        X509_REQ_free(req);
        return MAMORI_ERR_VERIFY;
    }
    *out = (struct crypto_csr *)req;
    return MAMORI_OK;
}

void crypto_csr_free(struct crypto_csr *csr)
{
    X509_REQ_free(R(csr));
}

static enum mamori_err add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return MAMORI_ERR_CRYPTO;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? MAMORI_OK : MAMORI_ERR_CRYPTO;
}

enum mamori_err crypto_cert_issue(const struct crypto_issue *p, char **pem_out)
{
    *pem_out = NULL;
    enum mamori_err rc = MAMORI_ERR_CRYPTO;
    EVP_PKEY *pub = p->subject ? K(p->subject) : (p->csr ? X509_REQ_get0_pubkey(R(p->csr)) : NULL);
    if (!pub || !p->issuer_key || !p->cn || (!p->issuer && p->kind != CRYPTO_CERT_ROOT_CA))
        return MAMORI_ERR_INVAL;
    X509 *cert = X509_new();
    BIO *bio = BIO_new(BIO_s_mem());
    BIGNUM *bn = BN_new();
    uint8_t serial[16];
    if (!cert || !bio || !bn)
        goto out;
    if (crypto_random(serial, sizeof(serial)))
        goto out;
    serial[0] &= 0x7f; /* RFC 5280 4.1.2.2: positive, at most 20 octets */
    serial[0] |= 0x01;
    if (!BN_bin2bn(serial, sizeof(serial), bn) ||
        !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)))
        goto out;
    if (!X509_set_version(cert, 2))
        goto out;
    time_t nb = p->not_before ? p->not_before : time(NULL) - 300;
    time_t na = p->not_after;
    if (!X509_time_adj(X509_getm_notBefore(cert), 0, &nb) ||
        !X509_time_adj(X509_getm_notAfter(cert), 0, &na))
        goto out;
    if (crypto_name_set(X509_get_subject_name(cert), p->cn, p->org))
        goto out;
    X509 *issuer = p->issuer ? C(p->issuer) : cert;
    if (!X509_set_issuer_name(cert, X509_get_subject_name(issuer)) || !X509_set_pubkey(cert, pub))
        goto out;
    if (add_ext(cert, issuer, NID_subject_key_identifier, "hash"))
        goto out;
    if (p->issuer && add_ext(cert, issuer, NID_authority_key_identifier, "keyid:always"))
        goto out;
    switch (p->kind) {
    case CRYPTO_CERT_ROOT_CA:
        if (add_ext(cert, issuer, NID_basic_constraints, "critical,CA:TRUE,pathlen:1") ||
            add_ext(cert, issuer, NID_key_usage, "critical,keyCertSign,cRLSign"))
            goto out;
        break;
    case CRYPTO_CERT_SUB_CA:
        if (add_ext(cert, issuer, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
            add_ext(cert, issuer, NID_key_usage, "critical,keyCertSign,cRLSign"))
            goto out;
        break;
    case CRYPTO_CERT_SERVER:
        if (add_ext(cert, issuer, NID_basic_constraints, "critical,CA:FALSE") ||
            add_ext(cert, issuer, NID_key_usage, "critical,digitalSignature") ||
            add_ext(cert, issuer, NID_ext_key_usage, "serverAuth") ||
            add_ext(cert, issuer, NID_subject_alt_name,
                    p->san ? p->san : "DNS:localhost,IP:127.0.0.1,IP:::1"))
            goto out;
        break;
    case CRYPTO_CERT_CLIENT:
        if (add_ext(cert, issuer, NID_basic_constraints, "critical,CA:FALSE") ||
            add_ext(cert, issuer, NID_key_usage, "critical,digitalSignature") ||
            add_ext(cert, issuer, NID_ext_key_usage, "clientAuth"))
            goto out;
        break;
    }
    if (!X509_sign(cert, K(p->issuer_key), EVP_sha256()))
        goto out;
    if (!PEM_write_bio_X509(bio, cert))
        goto out;
    rc = crypto_bio_string(bio, pem_out);
out:
    ERR_clear_error();
    BN_free(bn);
    BIO_free(bio);
    X509_free(cert);
    return rc;
}

enum mamori_err crypto_crl_issue(const struct crypto_cert *issuer, const struct crypto_key *key,
                                 const struct crypto_revoked *list, size_t n, time_t next_s,
                                 uint64_t number, char **pem_out)
{
    enum mamori_err rc = MAMORI_ERR_CRYPTO;
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *now = ASN1_TIME_set(NULL, time(NULL)),
              *next = ASN1_TIME_set(NULL, time(NULL) + next_s);
    ASN1_INTEGER *num = ASN1_INTEGER_new();
    BIO *bio = NULL;
    *pem_out = NULL;
    if (!crl || !now || !next || !num || !X509_CRL_set_version(crl, X509_CRL_VERSION_2) ||
        !X509_CRL_set_issuer_name(crl, X509_get_subject_name(C(issuer))) ||
        !X509_CRL_set1_lastUpdate(crl, now) || !X509_CRL_set1_nextUpdate(crl, next) ||
        !ASN1_INTEGER_set_uint64(num, number) ||
        !X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0))
        goto out;
    for (size_t i = 0; i < n; i++) {
        BIGNUM *bn = NULL;
        X509_REVOKED *r = X509_REVOKED_new();
        ASN1_INTEGER *serial = NULL;
        ASN1_TIME *when = ASN1_TIME_set(NULL, list[i].when);
        ASN1_ENUMERATED *why = ASN1_ENUMERATED_new();
        bool ok =
            r && when && why && BN_hex2bn(&bn, list[i].serial_hex) > 0 &&
            (serial = BN_to_ASN1_INTEGER(bn, NULL)) && X509_REVOKED_set_serialNumber(r, serial) &&
            X509_REVOKED_set_revocationDate(r, when) && ASN1_ENUMERATED_set(why, list[i].reason) &&
            X509_REVOKED_add1_ext_i2d(r, NID_crl_reason, why, 0, 0) &&
            X509_CRL_add0_revoked(crl, r);
        BN_free(bn);
        ASN1_INTEGER_free(serial);
        ASN1_TIME_free(when);
        ASN1_ENUMERATED_free(why);
        if (!ok) {
            X509_REVOKED_free(r);
            goto out;
        }
    }
    if (!X509_CRL_sort(crl) || !X509_CRL_sign(crl, K(key), EVP_sha256()) ||
        !(bio = BIO_new(BIO_s_mem())) || !PEM_write_bio_X509_CRL(bio, crl))
        goto out;
    char *data;
    long len = BIO_get_mem_data(bio, &data);
    if (len > 0 && (*pem_out = malloc((size_t)len + 1))) {
        memcpy(*pem_out, data, (size_t)len);
        (*pem_out)[len] = '\0';
        rc = MAMORI_OK;
    } else {
        rc = MAMORI_ERR_NOMEM;
    }
out:
    BIO_free(bio);
    ASN1_INTEGER_free(num);
    ASN1_TIME_free(now);
    ASN1_TIME_free(next);
    X509_CRL_free(crl);
    return rc;
}

enum mamori_err crypto_cert_serial_hex(const struct crypto_cert *cert, char *out, size_t outlen)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(C(cert)), NULL);
    if (!bn)
        return MAMORI_ERR_CRYPTO;
    char *hex = BN_bn2hex(bn);
    BN_free(bn);
    if (!hex)
        return MAMORI_ERR_NOMEM;
    enum mamori_err rc = MAMORI_OK;
    if (strlen(hex) >= outlen)
        rc = MAMORI_ERR_TOOBIG;
    else
        memcpy(out, hex, strlen(hex) + 1);
    OPENSSL_free(hex);
    return rc;
}

bool crypto_cert_is_ca(const struct crypto_cert *cert)
{
    return X509_check_ca(C(cert)) > 0;
}

enum mamori_err crypto_cert_pem(const struct crypto_cert *cert, char **pem_out)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio)
        return MAMORI_ERR_NOMEM;
    enum mamori_err rc = MAMORI_ERR_CRYPTO;
    if (PEM_write_bio_X509(bio, C(cert)))
        rc = crypto_bio_string(bio, pem_out);
    BIO_free(bio);
    return rc;
}

enum mamori_err crypto_cert_key_info(const struct crypto_cert *cert, char spki_sha[65], char *type,
                                     size_t typelen, int *bits)
{
    EVP_PKEY *pub = X509_get0_pubkey(C(cert));
    unsigned char *der = NULL;
    uint8_t h[CRYPTO_SHA256_LEN];
    if (!pub)
        return MAMORI_ERR_CRYPTO;
    int n = i2d_PUBKEY(pub, &der);
    if (n <= 0)
        return MAMORI_ERR_CRYPTO;
    crypto_sha256(der, (size_t)n, h);
    OPENSSL_free(der);
    crypto_hex(h, sizeof(h), spki_sha);
    *bits = EVP_PKEY_get_bits(pub);
    char curve[64] = "";
    size_t cl = 0;
    const char *t = EVP_PKEY_get0_type_name(pub);
    if (EVP_PKEY_get_base_id(pub) == EVP_PKEY_EC)
        (void)EVP_PKEY_get_utf8_string_param(pub, "group", curve, sizeof(curve), &cl);
    snprintf(type, typelen, "%s%s%s", t ? t : "?", curve[0] ? ":" : "", curve);
    return MAMORI_OK;
}

enum mamori_err crypto_cert_issue_chain(const struct crypto_issue *p, char **chain_out)
{
    char *leaf = NULL, *issuer = NULL;
    *chain_out = NULL;
    if (!p->issuer)
        return MAMORI_ERR_INVAL;
    enum mamori_err rc = crypto_cert_issue(p, &leaf);
    if (!rc)
        rc = crypto_cert_pem(p->issuer, &issuer);
    if (!rc) {
        size_t a = strlen(leaf), b = strlen(issuer);
        *chain_out = malloc(a + b + 1);
        if (*chain_out) {
            memcpy(*chain_out, leaf, a);
            memcpy(*chain_out + a, issuer, b + 1);
        } else {
            rc = MAMORI_ERR_NOMEM;
        }
    }
    free(leaf);
    free(issuer);
    return rc;
}
