/*
 * common/crypto.c - OpenSSL 3 behind the small interface of crypto.h.
 * Nothing else in Mamori calls OpenSSL's primitives directly (the TLS
 * connections themselves are driven by libmosquitto, mosquitto and libcurl).
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

#include "common/fsutil.h"

/* Our handles are OpenSSL objects; many OpenSSL 3 accessors are not
 * const-correct, so the const is dropped here, at the one boundary. */
#define K(x) ((EVP_PKEY *)(uintptr_t)(x))
#define C(x) ((X509 *)(uintptr_t)(x))
#define R(x) ((X509_REQ *)(uintptr_t)(x))

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

static bool key_is_p256(EVP_PKEY *k)
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
    if (!key_is_p256(k)) {
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

static enum mamori_err bio_to_string(BIO *bio, char **out)
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

static enum mamori_err name_set(X509_NAME *name, const char *cn, const char *org)
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
    if (!X509_REQ_set_version(req, 0) || name_set(X509_REQ_get_subject_name(req), cn, NULL))
        goto out;
    if (!X509_REQ_set_pubkey(req, K(key)) || !(md = EVP_MD_CTX_new()) ||
        EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, sign_propq(key), K(key), NULL) != 1 ||
        !X509_REQ_sign_ctx(req, md))
        goto out;
    if (!PEM_write_bio_X509_REQ(bio, req))
        goto out;
    rc = bio_to_string(bio, pem_out);
out:
    EVP_MD_CTX_free(md);
    BIO_free(bio);
    X509_REQ_free(req);
    ERR_clear_error();
    return rc;
}

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
    if (!pk || !key_is_p256(pk)) {
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
    if (name_set(X509_get_subject_name(cert), p->cn, p->org))
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
            add_ext(cert, issuer, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1"))
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
    rc = bio_to_string(bio, pem_out);
out:
    ERR_clear_error();
    BN_free(bn);
    BIO_free(bio);
    X509_free(cert);
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

time_t crypto_cert_not_after(const struct crypto_cert *cert)
{
    const ASN1_TIME *t = X509_get0_notAfter(C(cert));
    struct tm tm;
    if (!t || !ASN1_TIME_to_tm(t, &tm))
        return 0;
    return timegm(&tm);
}

bool crypto_cert_is_ca(const struct crypto_cert *cert)
{
    return X509_check_ca(C(cert)) > 0;
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

enum mamori_err crypto_cert_pem(const struct crypto_cert *cert, char **pem_out)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio)
        return MAMORI_ERR_NOMEM;
    enum mamori_err rc = MAMORI_ERR_CRYPTO;
    if (PEM_write_bio_X509(bio, C(cert)))
        rc = bio_to_string(bio, pem_out);
    BIO_free(bio);
    return rc;
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
    if (!k || p != spki + len || !key_is_p256(k)) {
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
