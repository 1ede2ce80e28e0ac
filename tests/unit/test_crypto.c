/* Unit tests: common/crypto (keys, CSRs, issuing, chain verification, fingerprints). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "common/crypto.h"

struct pki {
    struct crypto_key *root_key, *dev_key;
    struct crypto_cert *root;
    char *root_pem;
};

static int setup(void **st)
{
    struct pki *p = calloc(1, sizeof(*p));
    assert_int_equal(crypto_key_generate(&p->root_key), MAMORI_OK);
    assert_int_equal(crypto_key_generate(&p->dev_key), MAMORI_OK);
    struct crypto_issue ri = {.kind = CRYPTO_CERT_ROOT_CA,
                              .cn = "Test Root",
                              .subject = p->root_key,
                              .issuer_key = p->root_key,
                              .not_after = time(NULL) + 86400};
    assert_int_equal(crypto_cert_issue(&ri, &p->root_pem), MAMORI_OK);
    assert_int_equal(crypto_cert_parse(p->root_pem, strlen(p->root_pem), &p->root), MAMORI_OK);
    *st = p;
    return 0;
}

static int teardown(void **st)
{
    struct pki *p = *st;
    crypto_key_free(p->root_key);
    crypto_key_free(p->dev_key);
    crypto_cert_free(p->root);
    free(p->root_pem);
    free(p);
    return 0;
}

static char *issue_from_csr(struct pki *p, time_t nb, time_t na)
{
    char *csr_pem = NULL, *cert = NULL;
    struct crypto_csr *csr = NULL;
    assert_int_equal(crypto_csr_create(p->dev_key, "ignored", &csr_pem), MAMORI_OK);
    assert_int_equal(crypto_csr_parse(csr_pem, strlen(csr_pem), &csr), MAMORI_OK);
    struct crypto_issue di = {.kind = CRYPTO_CERT_CLIENT,
                              .cn = "MM0123456789ABCDEF",
                              .csr = csr,
                              .issuer = p->root,
                              .issuer_key = p->root_key,
                              .not_before = nb,
                              .not_after = na};
    assert_int_equal(crypto_cert_issue(&di, &cert), MAMORI_OK);
    crypto_csr_free(csr);
    free(csr_pem);
    return cert;
}

static void csr_to_verified_cert(void **st)
{
    struct pki *p = *st;
    char *pem = issue_from_csr(p, 0, time(NULL) + 3600);
    struct crypto_cert *c = NULL;
    assert_int_equal(crypto_cert_parse(pem, strlen(pem), &c), MAMORI_OK);
    assert_int_equal(crypto_cert_verify(c, p->root_pem), MAMORI_OK);
    assert_true(crypto_cert_matches_key(c, p->dev_key));
    assert_false(crypto_cert_matches_key(c, p->root_key));
    assert_false(crypto_cert_is_ca(c));
    assert_true(crypto_cert_is_ca(p->root));
    char cn[64], fp1[65], fp2[65];
    assert_int_equal(crypto_cert_cn(c, cn, sizeof(cn)), MAMORI_OK);
    assert_string_equal(cn, "MM0123456789ABCDEF"); /* the CSR's CN was ignored */
    crypto_cert_fingerprint(c, fp1);
    crypto_cert_fingerprint(c, fp2);
    assert_int_equal(strlen(fp1), 64);
    assert_string_equal(fp1, fp2);
    assert_int_equal(crypto_cert_cn(c, cn, 4), MAMORI_ERR_TOOBIG);
    crypto_cert_free(c);
    free(pem);
}

static void untrusted_and_expired_refused(void **st)
{
    struct pki *p = *st;
    /* a different root: the chain must not verify */
    struct crypto_key *k2 = NULL;
    char *other = NULL;
    assert_int_equal(crypto_key_generate(&k2), MAMORI_OK);
    struct crypto_issue ri = {.kind = CRYPTO_CERT_ROOT_CA,
                              .cn = "Test Root",
                              .subject = k2,
                              .issuer_key = k2,
                              .not_after = time(NULL) + 86400};
    assert_int_equal(crypto_cert_issue(&ri, &other), MAMORI_OK);
    char *pem = issue_from_csr(p, 0, time(NULL) + 3600);
    struct crypto_cert *c = NULL;
    assert_int_equal(crypto_cert_parse(pem, strlen(pem), &c), MAMORI_OK);
    assert_int_equal(crypto_cert_verify(c, other), MAMORI_ERR_VERIFY);
    assert_int_equal(crypto_cert_verify(c, "no pem here"), MAMORI_ERR_VERIFY);
    crypto_cert_free(c);
    free(pem);
    pem = issue_from_csr(p, time(NULL) - 7200, time(NULL) - 3600);
    assert_int_equal(crypto_cert_parse(pem, strlen(pem), &c), MAMORI_OK);
    assert_int_equal(crypto_cert_verify(c, p->root_pem), MAMORI_ERR_EXPIRED);
    crypto_cert_free(c);
    free(pem);
    free(other);
    crypto_key_free(k2);
}

static void tampered_csr_refused(void **st)
{
    struct pki *p = *st;
    char *csr_pem = NULL;
    struct crypto_csr *csr = NULL;
    assert_int_equal(crypto_csr_create(p->dev_key, "device", &csr_pem), MAMORI_OK);
    /* flip one base64 character inside the body: signature no longer matches
     * (or the DER no longer parses) */
    size_t mid = strlen(csr_pem) / 2;
    csr_pem[mid] = csr_pem[mid] == 'A' ? 'B' : 'A';
    enum mamori_err rc = crypto_csr_parse(csr_pem, strlen(csr_pem), &csr);
    assert_true(rc == MAMORI_ERR_VERIFY || rc == MAMORI_ERR_PARSE || rc == MAMORI_ERR_CRYPTO);
    assert_null(csr);
    assert_int_equal(crypto_csr_parse("", 0, &csr), MAMORI_ERR_PARSE);
    assert_int_equal(crypto_csr_parse("x", CRYPTO_PEM_MAX + 1, &csr), MAMORI_ERR_TOOBIG);
    free(csr_pem);
}

static void secrets_helpers(void **st)
{
    (void)st;
    uint8_t a[32], b[32];
    assert_int_equal(crypto_random(a, sizeof(a)), MAMORI_OK);
    memcpy(b, a, sizeof(a));
    assert_true(crypto_ct_eq(a, b, sizeof(a)));
    b[31] ^= 1;
    assert_false(crypto_ct_eq(a, b, sizeof(a)));
    crypto_wipe(a, sizeof(a));
    for (size_t i = 0; i < sizeof(a); i++)
        assert_int_equal(a[i], 0);
    uint8_t md[32], mac1[32], mac2[32];
    crypto_sha256("abc", 3, md);
    char hex[65];
    crypto_hex(md, 32, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(crypto_hmac_sha256("k", 1, "m", 1, mac1), MAMORI_OK);
    assert_int_equal(crypto_hmac_sha256("K", 1, "m", 1, mac2), MAMORI_OK);
    assert_false(crypto_ct_eq(mac1, mac2, 32));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(csr_to_verified_cert),
        cmocka_unit_test(untrusted_and_expired_refused),
        cmocka_unit_test(tampered_csr_refused),
        cmocka_unit_test(secrets_helpers),
    };
    return cmocka_run_group_tests_name("crypto", tests, setup, teardown);
}
