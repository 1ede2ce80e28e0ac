/*
 * common/crypto.c - OpenSSL 3 behind the small interface of crypto.h.
 * Nothing else in Mamori calls OpenSSL's primitives directly (the TLS
 * connections themselves are driven by libmosquitto, mosquitto and libcurl).
 *
 * This file is what a device needs: hashes, random, keys and keystores,
 * TLS client contexts, CSRs to send, certificates to load and verify,
 * signatures and Base64. What only an issuing authority does (checking
 * CSRs, issuing certificates and CRLs, inspecting certificates it is
 * shown) is in crypto_ca.c; libmamori folds in this file alone
 * (lib/CMakeLists.txt), so nothing here may call into crypto_ca.c.
 */
#include "common/crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/crypto_priv.h"
#include "common/fsutil.h"

enum mamori_err crypto_random(void *out, size_t n)
{
    if (n > INT32_MAX)
        return MAMORI_ERR_INVAL;
    return RAND_bytes(out, (int)n) == 1 ? MAMORI_OK : MAMORI_ERR_CRYPTO;
}

void crypto_sha256(const void *data, size_t n, uint8_t out[CRYPTO_SHA256_LEN])
{
    unsigned int len = CRYPTO_SHA256_LEN;
    EVP_Digest(data, n, out, &len, EVP_sha256(), NULL);
}

enum mamori_err crypto_hmac_sha256(const void *key, size_t klen, const void *data, size_t n,
                                   uint8_t out[CRYPTO_SHA256_LEN])
{
    unsigned int len = CRYPTO_SHA256_LEN;
    if (klen > INT32_MAX)
        return MAMORI_ERR_INVAL;
    if (!HMAC(EVP_sha256(), key, (int)klen, data, n, out, &len))
        return MAMORI_ERR_CRYPTO;
    return MAMORI_OK;
}

bool crypto_ct_eq(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

void crypto_wipe(void *p, size_t n)
{
    if (p && n)
        OPENSSL_cleanse(p, n);
}

void crypto_hex(const uint8_t *in, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[in[i] >> 4];
        out[2 * i + 1] = hx[in[i] & 15];
    }
    out[2 * n] = '\0';
}

enum mamori_err crypto_key_generate(struct crypto_key **out)
{
    *out = NULL;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    if (!k)
        return MAMORI_ERR_CRYPTO;
    *out = (struct crypto_key *)k;
    return MAMORI_OK;
}

bool crypto_keystore_parse(const char *name, enum crypto_keystore *out)
{
    if (strcmp(name, "file") == 0)
        *out = CRYPTO_KEYSTORE_FILE;
    else if (strcmp(name, "tpm2") == 0)
        *out = CRYPTO_KEYSTORE_TPM2;
    else
        return false;
    return true;
}

const char *crypto_keystore_name(enum crypto_keystore ks)
{
    return ks == CRYPTO_KEYSTORE_TPM2 ? "tpm2" : "file";
}

enum mamori_err crypto_keystore_init(enum crypto_keystore ks, const char *tcti)
{
    static OSSL_PROVIDER *tpm2, *dflt;
    if (ks == CRYPTO_KEYSTORE_FILE || tpm2)
        return MAMORI_OK;
    /* tpm2-openssl reads its TCTI from the environment when it starts. */
    if (tcti && setenv("TPM2OPENSSL_TCTI", tcti, 1))
        return MAMORI_ERR_NOMEM;
    /* Loading one provider stops the implicit default: load both. */
    if (!dflt && !(dflt = OSSL_PROVIDER_load(NULL, "default")))
        return MAMORI_ERR_CRYPTO;
    if (!(tpm2 = OSSL_PROVIDER_load(NULL, "tpm2"))) {
        ERR_clear_error();
        return MAMORI_ERR_UNAVAILABLE;
    }
    return MAMORI_OK;
}

enum crypto_keystore crypto_key_store(const struct crypto_key *key)
{
    const OSSL_PROVIDER *p = EVP_PKEY_get0_provider((const EVP_PKEY *)key);
    const char *name = p ? OSSL_PROVIDER_get0_name(p) : NULL;
    return name && strcmp(name, "tpm2") == 0 ? CRYPTO_KEYSTORE_TPM2 : CRYPTO_KEYSTORE_FILE;
}

/* OpenSSL 3.0 fetches a signature implementation from the first provider
 * that has one (the default provider is loaded first, so that hashing and
 * ciphers stay in software) and then tries to move the key there; a TPM key
 * moves only its public half. Signatures with a TPM key therefore ask for
 * the tpm2 provider's implementation. */
static const char *ks_propq(enum crypto_keystore ks)
{
    return ks == CRYPTO_KEYSTORE_TPM2 ? "?provider=tpm2" : NULL;
}

static const char *sign_propq(const struct crypto_key *key)
{
    return ks_propq(crypto_key_store(key));
}

/* TLS session resumption (client side). The newest session the server
 * offered is kept in the context's ex_data and put on the next connection
 * before its handshake starts (libmosquitto makes the SSL object and
 * connects in one call, so the info callback is the place). */
static int g_sess_idx = -1;
static CRYPTO_ONCE g_sess_once = CRYPTO_ONCE_STATIC_INIT;

static void sess_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    SSL_SESSION_free(ptr);
}

/* Full handshakes (each one a signature by the device key) are counted
 * per context; each connection is counted once (TLS 1.3 tickets after the
 * handshake call the info callback again). */
static int g_full_idx = -1, g_counted_idx = -1;

static void full_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    OPENSSL_free(ptr);
}

static void sess_idx_init(void)
{
    g_sess_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, sess_free);
    g_full_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, full_free);
    g_counted_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static void sess_set(SSL_CTX *c, SSL_SESSION *s)
{
    SSL_SESSION *old = SSL_CTX_get_ex_data(c, g_sess_idx);
    if (SSL_CTX_set_ex_data(c, g_sess_idx, s) == 1)
        SSL_SESSION_free(old);
    else
        SSL_SESSION_free(s);
}

/* A copy is kept: OpenSSL marks the connection's own session object not
 * resumable when that connection ends without a close_notify, which is
 * exactly the network cut after which resuming helps. */
static int sess_new(SSL *ssl, SSL_SESSION *s)
{
    SSL_SESSION *copy = SSL_SESSION_dup(s);
    if (copy)
        sess_set(SSL_get_SSL_CTX(ssl), copy);
    return 0; /* s stays OpenSSL's */
}

static void sess_info(const SSL *ssl, int where, int ret)
{
    (void)ret;
    if ((where & SSL_CB_HANDSHAKE_DONE) && g_counted_idx >= 0 &&
        !SSL_get_ex_data(ssl, g_counted_idx)) {
        SSL *w;
        memcpy(&w, &ssl, sizeof(w));
        uint64_t *full = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), g_full_idx);
        if (SSL_set_ex_data(w, g_counted_idx, w) == 1 && full && !SSL_session_reused(w))
            (*full)++;
        return;
    }
    if (!(where & SSL_CB_HANDSHAKE_START) || SSL_get0_session(ssl))
        return;
    SSL_SESSION *s = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), g_sess_idx);
    if (s && SSL_SESSION_is_resumable(s)) {
        /* The callback's SSL is const by signature only; it is the
         * connection being set up. */
        SSL *w;
        memcpy(&w, &ssl, sizeof(w));
        (void)SSL_set_session(w, s);
    }
}

bool crypto_tls_resumed(const void *ssl)
{
    return ssl && SSL_session_reused((const SSL *)ssl) == 1;
}

uint64_t crypto_tls_full_handshakes(const void *ssl_ctx)
{
    const uint64_t *full =
        ssl_ctx && g_full_idx >= 0 ? SSL_CTX_get_ex_data(ssl_ctx, g_full_idx) : NULL;
    return full ? *full : 0;
}

enum mamori_err crypto_tls_ctx_set_identity(void *ssl_ctx, const char *cert_path,
                                            const char *key_path)
{
    SSL_CTX *c = ssl_ctx;
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    enum mamori_err rc = MAMORI_ERR_TLS;
    BIO *b = BIO_new_file(cert_path, "r");
    if (b)
        cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    if ((b = BIO_new_file(key_path, "r")))
        key = PEM_read_bio_PrivateKey_ex(b, NULL, NULL, NULL, NULL, NULL);
    BIO_free(b);
    /* Both are checked before either replaces what is in force. */
    if (cert && key && X509_check_private_key(cert, key) == 1 &&
        SSL_CTX_use_certificate(c, cert) == 1 && SSL_CTX_use_PrivateKey(c, key) == 1) {
        /* A session carries the identity it was made with: a new
         * certificate starts with a full handshake. */
        if (g_sess_idx >= 0)
            sess_set(c, NULL);
        rc = MAMORI_OK;
    }
    X509_free(cert);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return rc;
}

enum mamori_err crypto_tls_ctx_set_host(void *ssl_ctx, const char *host)
{
    X509_VERIFY_PARAM *vp = SSL_CTX_get0_param(ssl_ctx);
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    /* Each call replaces what was set before (name or address). */
    if (X509_VERIFY_PARAM_set1_host(vp, is_ip ? NULL : host, 0) != 1 ||
        X509_VERIFY_PARAM_set1_ip(vp, NULL, 0) != 1 ||
        (is_ip && X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1)) {
        ERR_clear_error();
        return MAMORI_ERR_TLS;
    }
    if (g_sess_idx >= 0)
        sess_set(ssl_ctx, NULL); /* a session belongs to the server it came from */
    return MAMORI_OK;
}

enum mamori_err crypto_tls_client_ctx(enum crypto_keystore ks, const char *ca_path,
                                      const char *cert_path, const char *key_path, const char *host,
                                      void **ssl_ctx)
{
    SSL_CTX *c = SSL_CTX_new_ex(NULL, ks_propq(ks), TLS_client_method());
    *ssl_ctx = NULL;
    if (!c)
        return MAMORI_ERR_TLS;
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1 ||
        SSL_CTX_load_verify_locations(c, ca_path, NULL) != 1 || crypto_tls_ctx_set_host(c, host) ||
        crypto_tls_ctx_set_identity(c, cert_path, key_path)) {
        SSL_CTX_free(c);
        ERR_clear_error();
        return MAMORI_ERR_TLS;
    }
    SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION);
    if (CRYPTO_THREAD_run_once(&g_sess_once, sess_idx_init) && g_sess_idx >= 0) {
        uint64_t *full = OPENSSL_zalloc(sizeof(*full));
        if (full && SSL_CTX_set_ex_data(c, g_full_idx, full) != 1)
            OPENSSL_free(full);
        SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(c, sess_new);
        SSL_CTX_set_info_callback(c, sess_info);
    }
    *ssl_ctx = c;
    return MAMORI_OK;
}

void crypto_tls_ctx_free(void *ssl_ctx)
{
    SSL_CTX_free(ssl_ctx);
}

void crypto_tls_ctx_read_ahead(void *ssl_ctx)
{
    SSL_CTX_set_read_ahead(ssl_ctx, 1);
}

bool crypto_tls_pending(const void *ssl)
{
    return ssl && SSL_has_pending(ssl) == 1;
}

enum mamori_err crypto_key_generate_in(enum crypto_keystore ks, struct crypto_key **out)
{
    *out = NULL;
    if (ks == CRYPTO_KEYSTORE_FILE)
        return crypto_key_generate(out);
    EVP_PKEY *k = NULL;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, "EC", "provider=tpm2");
    char group[] = "P-256";
    OSSL_PARAM p[] = {OSSL_PARAM_utf8_string("group", group, 0), OSSL_PARAM_END};
    if (!c || EVP_PKEY_keygen_init(c) <= 0 || EVP_PKEY_CTX_set_params(c, p) <= 0 ||
        EVP_PKEY_generate(c, &k) <= 0) {
        EVP_PKEY_CTX_free(c);
        ERR_clear_error();
        return c ? MAMORI_ERR_CRYPTO : MAMORI_ERR_UNAVAILABLE;
    }
    EVP_PKEY_CTX_free(c);
    *out = (struct crypto_key *)k;
    return MAMORI_OK;
}

bool crypto_is_p256(EVP_PKEY *k)
{
    char name[64];
    size_t len = 0;
    if (EVP_PKEY_get_base_id(k) != EVP_PKEY_EC)
        return false;
    if (!EVP_PKEY_get_utf8_string_param(k, "group", name, sizeof(name), &len))
        return false;
    return strcmp(name, "prime256v1") == 0 || strcmp(name, "P-256") == 0;
}

enum mamori_err crypto_key_load(const char *path, struct crypto_key **out)
{
    *out = NULL;
    char *pem = NULL;
    size_t len = 0;
    enum mamori_err rc = fs_read_file(path, CRYPTO_PEM_MAX, &pem, &len);
    if (rc)
        return rc;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *k = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    crypto_wipe(pem, len);
    free(pem);
    if (!k)
        return MAMORI_ERR_PARSE;
    if (!crypto_is_p256(k)) {
        EVP_PKEY_free(k);
        return MAMORI_ERR_CRYPTO;
    }
    *out = (struct crypto_key *)k;
    return MAMORI_OK;
}

enum mamori_err crypto_key_save(const struct crypto_key *key, const char *path)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio)
        return MAMORI_ERR_NOMEM;
    enum mamori_err rc = MAMORI_ERR_CRYPTO;
    if (!PEM_write_bio_PrivateKey(bio, K(key), NULL, NULL, 0, NULL, NULL))
        goto out_bio;
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    rc = fs_write_atomic(path, data, (size_t)n, 0600);
out_bio:
    BIO_free(bio); /* BIO_s_mem clears its buffer on free */
    return rc;
}

void crypto_key_free(struct crypto_key *key)
{
    EVP_PKEY_free(K(key));
}

enum mamori_err crypto_bio_string(BIO *bio, char **out)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    if (n < 0)
        return MAMORI_ERR_CRYPTO;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return MAMORI_ERR_NOMEM;
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    *out = s;
    return MAMORI_OK;
}

enum mamori_err crypto_name_set(X509_NAME *name, const char *cn, const char *org)
{
    if (org && !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)org, -1,
                                           -1, 0))
        return MAMORI_ERR_CRYPTO;
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                    0))
        return MAMORI_ERR_CRYPTO;
    return MAMORI_OK;
}

enum mamori_err crypto_csr_create(const struct crypto_key *key, const char *cn, char **pem_out)
{
    *pem_out = NULL;
    enum mamori_err rc = MAMORI_ERR_CRYPTO;
    X509_REQ *req = X509_REQ_new();
    BIO *bio = BIO_new(BIO_s_mem());
    EVP_MD_CTX *md = NULL;
    if (!req || !bio)
        goto out;
    if (!X509_REQ_set_version(req, 0) || crypto_name_set(X509_REQ_get_subject_name(req), cn, NULL))
        goto out;
    if (!X509_REQ_set_pubkey(req, K(key)) || !(md = EVP_MD_CTX_new()) ||
        EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, sign_propq(key), K(key), NULL) != 1 ||
        !X509_REQ_sign_ctx(req, md))
        goto out;
    if (!PEM_write_bio_X509_REQ(bio, req))
        goto out;
    rc = crypto_bio_string(bio, pem_out);
out:
    EVP_MD_CTX_free(md);
    BIO_free(bio);
    X509_REQ_free(req);
    ERR_clear_error();
    return rc;
}

enum mamori_err crypto_cert_parse(const char *pem, size_t len, struct crypto_cert **out)
{
    *out = NULL;
    if (len == 0)
        return MAMORI_ERR_PARSE;
    if (len > CRYPTO_PEM_MAX)
        return MAMORI_ERR_TOOBIG;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509 *c = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    ERR_clear_error();
    if (!c)
        return MAMORI_ERR_PARSE;
    *out = (struct crypto_cert *)c;
    return MAMORI_OK;
}

enum mamori_err crypto_cert_load(const char *path, struct crypto_cert **out)
{
    char *pem = NULL;
    size_t len = 0;
    *out = NULL;
    enum mamori_err rc = fs_read_file(path, CRYPTO_PEM_MAX, &pem, &len);
    if (rc)
        return rc;
    rc = crypto_cert_parse(pem, len, out);
    free(pem);
    return rc;
}

void crypto_cert_free(struct crypto_cert *cert)
{
    X509_free(C(cert));
}

void crypto_x509_fingerprint(const void *x509, char out[CRYPTO_FP_HEX_LEN])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!X509_digest(C(x509), EVP_sha256(), md, &n) || n != CRYPTO_SHA256_LEN) {
        out[0] = '\0';
        return;
    }
    crypto_hex(md, n, out);
}

void crypto_cert_fingerprint(const struct crypto_cert *cert, char out[CRYPTO_FP_HEX_LEN])
{
    crypto_x509_fingerprint(cert, out);
}

enum mamori_err crypto_x509_cn(const void *x509, char *out, size_t outlen)
{
    X509_NAME *name = X509_get_subject_name(C(x509));
    int idx = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
    if (idx < 0)
        return MAMORI_ERR_NOTFOUND;
    /* Exactly one CN: a second one would make the identity ambiguous. */
    if (X509_NAME_get_index_by_NID(name, NID_commonName, idx) >= 0)
        return MAMORI_ERR_PARSE;
    ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
    int n = ASN1_STRING_length(s);
    const unsigned char *d = ASN1_STRING_get0_data(s);
    if (n <= 0 || (size_t)n >= outlen)
        return MAMORI_ERR_TOOBIG;
    if (memchr(d, 0, (size_t)n))
        return MAMORI_ERR_PARSE; /* embedded NUL: never trust such a name */
    memcpy(out, d, (size_t)n);
    out[n] = '\0';
    return MAMORI_OK;
}

enum mamori_err crypto_cert_cn(const struct crypto_cert *cert, char *out, size_t outlen)
{
    return crypto_x509_cn(cert, out, outlen);
}

time_t crypto_cert_not_after(const struct crypto_cert *cert)
{
    const ASN1_TIME *t = X509_get0_notAfter(C(cert));
    struct tm tm;
    if (!t || !ASN1_TIME_to_tm(t, &tm))
        return 0;
    return timegm(&tm);
}

bool crypto_cert_matches_key(const struct crypto_cert *cert, const struct crypto_key *key)
{
    EVP_PKEY *pub = X509_get0_pubkey(C(cert));
    return pub && EVP_PKEY_eq(pub, K(key)) == 1;
}

enum mamori_err crypto_cert_verify(const struct crypto_cert *cert, const char *trust_pem)
{
    return crypto_cert_verify_chain(cert, NULL, 0, trust_pem);
}

/* ---- signatures and chains (signed commands) ---- */

enum mamori_err crypto_ecdsa_sign(const struct crypto_key *key, const void *data, size_t n,
                                  uint8_t sig[CRYPTO_SIG_MAX], size_t *siglen)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    size_t len = CRYPTO_SIG_MAX;
    enum mamori_err rc = MAMORI_ERR_CRYPTO;
    if (md && EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, sign_propq(key), K(key), NULL) == 1 &&
        EVP_DigestSign(md, sig, &len, data, n) == 1) {
        *siglen = len;
        rc = MAMORI_OK;
    }
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    return rc;
}

enum mamori_err crypto_cert_verify_sig(const struct crypto_cert *cert, const void *data, size_t n,
                                       const uint8_t *sig, size_t siglen)
{
    EVP_PKEY *pub = X509_get0_pubkey(C(cert));
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    enum mamori_err rc = MAMORI_ERR_VERIFY;
    if (pub && md && siglen <= CRYPTO_SIG_MAX &&
        EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub) == 1 &&
        EVP_DigestVerify(md, sig, siglen, data, n) == 1)
        rc = MAMORI_OK;
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    return rc;
}

enum mamori_err crypto_ecdsa_der_to_raw(const uint8_t *der, size_t n,
                                        uint8_t raw[CRYPTO_SIG_RAW_LEN])
{
    const unsigned char *p = der;
    ECDSA_SIG *sig = n <= CRYPTO_SIG_MAX ? d2i_ECDSA_SIG(NULL, &p, (long)n) : NULL;
    const BIGNUM *r = NULL, *s = NULL;
    enum mamori_err rc = MAMORI_ERR_CRYPTO;
    if (sig && p == der + n) {
        ECDSA_SIG_get0(sig, &r, &s);
        if (BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32)
            rc = MAMORI_OK;
    }
    ECDSA_SIG_free(sig);
    ERR_clear_error();
    return rc;
}

enum mamori_err crypto_ecdsa_raw_to_der(const uint8_t raw[CRYPTO_SIG_RAW_LEN],
                                        uint8_t der[CRYPTO_SIG_MAX], size_t *n)
{
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, 32, NULL), *s = BN_bin2bn(raw + 32, 32, NULL);
    enum mamori_err rc = MAMORI_ERR_CRYPTO;
    if (sig && r && s && ECDSA_SIG_set0(sig, r, s) == 1) {
        r = s = NULL; /* the signature owns them */
        int len = i2d_ECDSA_SIG(sig, NULL);
        unsigned char *p = der;
        if (len > 0 && len <= CRYPTO_SIG_MAX && i2d_ECDSA_SIG(sig, &p) == len) {
            *n = (size_t)len;
            rc = MAMORI_OK;
        }
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    ERR_clear_error();
    return rc;
}

enum mamori_err crypto_sha256_begin(struct crypto_sha256_ctx **out)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    *out = NULL;
    if (!c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(c);
        ERR_clear_error();
        return MAMORI_ERR_CRYPTO;
    }
    *out = (struct crypto_sha256_ctx *)c;
    return MAMORI_OK;
}

void crypto_sha256_update(struct crypto_sha256_ctx *c, const void *data, size_t n)
{
    (void)EVP_DigestUpdate((EVP_MD_CTX *)c, data, n);
}

enum mamori_err crypto_sha256_end(struct crypto_sha256_ctx *c, uint8_t out[CRYPTO_SHA256_LEN])
{
    unsigned len = 0;
    int ok = EVP_DigestFinal_ex((EVP_MD_CTX *)c, out, &len);
    EVP_MD_CTX_free((EVP_MD_CTX *)c);
    ERR_clear_error();
    return ok == 1 && len == CRYPTO_SHA256_LEN ? MAMORI_OK : MAMORI_ERR_CRYPTO;
}

void crypto_sha256_abort(struct crypto_sha256_ctx *c)
{
    EVP_MD_CTX_free((EVP_MD_CTX *)c);
}

enum mamori_err crypto_sha256_write(struct crypto_sha256_ctx *c, int fd, const void *data, size_t n,
                                    uint64_t *done)
{
    const uint8_t *p = data;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return MAMORI_ERR_IO;
        crypto_sha256_update(c, p, (size_t)w);
        p += w;
        n -= (size_t)w;
        *done += (uint64_t)w;
    }
    return MAMORI_OK;
}

enum mamori_err crypto_sha256_file(const char *path, uint64_t max, uint8_t out[CRYPTO_SHA256_LEN],
                                   uint64_t *size)
{
    struct crypto_sha256_ctx *c = NULL;
    enum mamori_err rc = crypto_sha256_begin(&c);
    FILE *f = rc ? NULL : fopen(path, "rb");
    static _Thread_local uint8_t buf[64 * 1024];
    uint64_t total = 0;
    if (!rc && !f)
        rc = errno == ENOENT ? MAMORI_ERR_NOTFOUND : MAMORI_ERR_IO;
    while (!rc) {
        size_t n = fread(buf, 1, sizeof(buf), f);
        if (n == 0) {
            rc = ferror(f) ? MAMORI_ERR_IO : MAMORI_OK;
            break;
        }
        if ((total += n) > max)
            rc = MAMORI_ERR_TOOBIG;
        else
            crypto_sha256_update(c, buf, n);
    }
    if (f)
        fclose(f);
    if (rc) {
        crypto_sha256_abort(c);
        return rc;
    }
    *size = total;
    return crypto_sha256_end(c, out);
}

enum mamori_err crypto_key_spki(const struct crypto_key *key, uint8_t out[CRYPTO_SPKI_MAX],
                                size_t *len)
{
    int n = i2d_PUBKEY(K(key), NULL);
    unsigned char *p = out;
    if (n <= 0 || n > CRYPTO_SPKI_MAX || i2d_PUBKEY(K(key), &p) != n) {
        ERR_clear_error();
        return MAMORI_ERR_CRYPTO;
    }
    *len = (size_t)n;
    return MAMORI_OK;
}

enum mamori_err crypto_pubkey_parse(const uint8_t *spki, size_t len, struct crypto_pubkey **out)
{
    *out = NULL;
    if (!spki || len == 0 || len > CRYPTO_SPKI_MAX)
        return MAMORI_ERR_PARSE;
    const unsigned char *p = spki;
    EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)len);
    /* the whole input, and nothing but a P-256 key */
    if (!k || p != spki + len || !crypto_is_p256(k)) {
        EVP_PKEY_free(k);
        ERR_clear_error();
        return MAMORI_ERR_PARSE;
    }
    *out = (struct crypto_pubkey *)k;
    return MAMORI_OK;
}

enum mamori_err crypto_pubkey_verify(const struct crypto_pubkey *pub, const void *data, size_t n,
                                     const uint8_t *sig, size_t siglen)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    enum mamori_err rc = MAMORI_ERR_VERIFY;
    if (md && pub && siglen <= CRYPTO_SIG_MAX &&
        EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, K(pub)) == 1 &&
        EVP_DigestVerify(md, sig, siglen, data, n) == 1)
        rc = MAMORI_OK;
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    return rc;
}

void crypto_pubkey_free(struct crypto_pubkey *pub)
{
    EVP_PKEY_free(K(pub));
}

void crypto_key_id(const uint8_t *spki, size_t len, char out[CRYPTO_FP_HEX_LEN])
{
    uint8_t h[CRYPTO_SHA256_LEN];
    crypto_sha256(spki, len, h);
    crypto_hex(h, sizeof(h), out);
}

enum mamori_err crypto_cert_verify_chain(const struct crypto_cert *cert, const char *untrusted_pem,
                                         size_t untrusted_len, const char *trust_pem)
{
    enum mamori_err rc = MAMORI_ERR_VERIFY;
    if (untrusted_len > CRYPTO_PEM_MAX)
        return MAMORI_ERR_TOOBIG;
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    STACK_OF(X509) *chain = sk_X509_new_null();
    BIO *tb = BIO_new_mem_buf(trust_pem, -1);
    BIO *ub = untrusted_pem ? BIO_new_mem_buf(untrusted_pem, (int)untrusted_len) : NULL;
    X509 *x;
    int n = 0;
    if (!store || !ctx || !chain || !tb || (untrusted_pem && !ub)) {
        rc = MAMORI_ERR_NOMEM;
        goto out;
    }
    while ((x = PEM_read_bio_X509(tb, NULL, NULL, NULL)) != NULL) {
        X509_STORE_add_cert(store, x);
        X509_free(x);
        n++;
    }
    /* The intermediates only help build the path; they are never anchors. */
    while (ub && sk_X509_num(chain) < 4 && (x = PEM_read_bio_X509(ub, NULL, NULL, NULL)) != NULL)
        if (!sk_X509_push(chain, x))
            X509_free(x);
    if (n == 0 || !X509_STORE_CTX_init(ctx, store, C(cert), chain))
        goto out;
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
    if (X509_verify_cert(ctx) == 1)
        rc = MAMORI_OK;
    else if (X509_STORE_CTX_get_error(ctx) == X509_V_ERR_CERT_HAS_EXPIRED)
        rc = MAMORI_ERR_EXPIRED;
out:
    ERR_clear_error();
    BIO_free(tb);
    BIO_free(ub);
    sk_X509_pop_free(chain, X509_free);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return rc;
}

size_t crypto_b64_encode(const uint8_t *in, size_t n, char *out, size_t outlen)
{
    size_t need = 4 * ((n + 2) / 3) + 1;
    if (outlen < need || n > INT32_MAX / 2)
        return 0;
    return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

enum mamori_err crypto_b64_decode(const char *in, size_t n, uint8_t *out, size_t outlen,
                                  size_t *got)
{
    if (n == 0 || n % 4 != 0 || n / 4 * 3 > outlen)
        return MAMORI_ERR_PARSE;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '+' || c == '/' || (c == '=' && i >= n - 2);
        if (!ok)
            return MAMORI_ERR_PARSE;
    }
    int len = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
    if (len < 0)
        return MAMORI_ERR_PARSE;
    size_t pad = (in[n - 1] == '=') + (in[n - 2] == '=');
    *got = (size_t)len - pad;
    return MAMORI_OK;
}
