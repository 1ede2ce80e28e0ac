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

#include "common/cmd.h"
#include "common/crypto.h"
#include "common/devlog.h"
#include "common/eat.h"
#include "common/schema.h"

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

/* A command signed by a signer issued from the root verifies; any change to
 * it, a signer with another name, or another root does not. */
static void signed_commands(void **st)
{
    struct pki *p = *st;
    struct crypto_key *sk = NULL;
    char *signer_pem = NULL, *msg = NULL, fp[CRYPTO_FP_HEX_LEN] = "";
    assert_int_equal(crypto_key_generate(&sk), MAMORI_OK);
    struct crypto_issue si = {.kind = CRYPTO_CERT_CLIENT,
                              .cn = CMD_SIGNER_CN,
                              .subject = sk,
                              .issuer = p->root,
                              .issuer_key = p->root_key,
                              .not_after = time(NULL) + 3600};
    assert_int_equal(crypto_cert_issue(&si, &signer_pem), MAMORI_OK);
    struct cmd c = {.type = CMD_LOCK, .iat = 1000, .exp = 61000};
    snprintf(c.id, sizeof(c.id), "00112233445566778899aabbccddeeff");
    snprintf(c.device, sizeof(c.device), "MM0123456789ABCDEF");
    assert_int_equal(cmd_build(&c, sk, signer_pem, &msg), MAMORI_OK);
    struct cmd_msg m;
    struct cmd got;
    assert_int_equal(cmd_msg_parse(msg, strlen(msg), &m), MAMORI_OK);
    assert_int_equal(cmd_msg_verify(&m, p->root_pem, fp), MAMORI_OK);
    assert_int_equal(cmd_parse(m.text, m.text_len, &got), MAMORI_OK);
    assert_int_equal(got.type, CMD_LOCK);
    assert_int_equal(cmd_check(&got, "MM0123456789ABCDEF", 2000), MAMORI_OK);
    assert_int_equal(cmd_check(&got, "MM0123456789ABCDEG", 2000), MAMORI_ERR_FORBIDDEN);
    assert_int_equal(cmd_check(&got, "MM0123456789ABCDEF", 61001), MAMORI_ERR_EXPIRED);
    cmd_msg_free(&m);
    /* one changed byte of the command text: the signature fails */
    char *bad = strdup(msg), *t = strstr(bad, "lock");
    memcpy(t, "wipe", 4);
    assert_int_equal(cmd_msg_parse(bad, strlen(bad), &m), MAMORI_OK);
    fp[0] = '\0';
    assert_int_equal(cmd_msg_verify(&m, p->root_pem, fp), MAMORI_ERR_VERIFY);
    cmd_msg_free(&m);
    free(bad);
    /* a signer of another name (a device certificate, say) is refused */
    char *dev_pem = NULL, *msg2 = NULL;
    struct crypto_issue di = si;
    di.cn = "MM0123456789ABCDEF";
    di.subject = p->dev_key;
    assert_int_equal(crypto_cert_issue(&di, &dev_pem), MAMORI_OK);
    assert_int_equal(cmd_build(&c, p->dev_key, dev_pem, &msg2), MAMORI_OK);
    assert_int_equal(cmd_msg_parse(msg2, strlen(msg2), &m), MAMORI_OK);
    fp[0] = '\0';
    assert_int_equal(cmd_msg_verify(&m, p->root_pem, fp), MAMORI_ERR_VERIFY);
    cmd_msg_free(&m);
    /* a self-made "root" in the chain is never an anchor */
    struct crypto_key *rk = NULL;
    char *rogue_root = NULL, *rogue_signer = NULL, *msg3 = NULL;
    assert_int_equal(crypto_key_generate(&rk), MAMORI_OK);
    struct crypto_issue rr = {.kind = CRYPTO_CERT_ROOT_CA,
                              .cn = "Rogue",
                              .subject = rk,
                              .issuer_key = rk,
                              .not_after = time(NULL) + 3600};
    assert_int_equal(crypto_cert_issue(&rr, &rogue_root), MAMORI_OK);
    struct crypto_cert *rc = NULL;
    assert_int_equal(crypto_cert_parse(rogue_root, strlen(rogue_root), &rc), MAMORI_OK);
    struct crypto_issue rs = si;
    rs.issuer = rc;
    rs.issuer_key = rk;
    assert_int_equal(crypto_cert_issue(&rs, &rogue_signer), MAMORI_OK);
    size_t n = strlen(rogue_signer) + strlen(rogue_root) + 1;
    char *chain = malloc(n);
    snprintf(chain, n, "%s%s", rogue_signer, rogue_root);
    assert_int_equal(cmd_build(&c, sk, chain, &msg3), MAMORI_OK);
    assert_int_equal(cmd_msg_parse(msg3, strlen(msg3), &m), MAMORI_OK);
    fp[0] = '\0';
    assert_int_equal(cmd_msg_verify(&m, p->root_pem, fp), MAMORI_ERR_VERIFY);
    cmd_msg_free(&m);
    /* malformed outer messages */
    assert_int_equal(cmd_msg_parse("{\"v\":1}", 7, &m), MAMORI_ERR_PARSE);
    assert_int_equal(
        cmd_msg_parse("{\"v\":1,\"cmd\":\"x\",\"sig\":\"@@@@\",\"chain\":\"\"}", 44, &m),
        MAMORI_ERR_PARSE);
    free(chain);
    free(msg3);
    free(rogue_signer);
    free(rogue_root);
    crypto_cert_free(rc);
    crypto_key_free(rk);
    free(msg2);
    free(dev_pem);
    free(msg);
    free(signer_pem);
    crypto_key_free(sk);
}

static void telemetry_schemas(void **st)
{
    (void)st;
    struct schema s;
    char why[160];
    const char *doc = "{\"fields\":[{\"name\":\"t\",\"type\":\"number\",\"min\":-40,\"max\":85,"
                      "\"max_rate_hz\":2},{\"name\":\"on\",\"type\":\"boolean\"},"
                      "{\"name\":\"n\",\"type\":\"integer\",\"min\":0,\"max\":9}]}";
    assert_int_equal(schema_parse(doc, strlen(doc), &s, why, sizeof(why)), MAMORI_OK);
    assert_int_equal(s.n, 3);
    static const char *const bad[] = {
        "{\"fields\":[]}",
        "{\"fields\":[{\"name\":\"t\",\"type\":\"number\"}]}",
        "{\"fields\":[{\"name\":\"t\",\"type\":\"number\",\"min\":2,\"max\":1}]}",
        "{\"fields\":[{\"name\":\"T\",\"type\":\"number\",\"min\":0,\"max\":1}]}",
        "{\"fields\":[{\"name\":\"t\",\"type\":\"string\"}]}",
        "{\"fields\":[{\"name\":\"t\",\"type\":\"boolean\",\"min\":0}]}",
        "{\"fields\":[{\"name\":\"t\",\"type\":\"boolean\"},{\"name\":\"t\",\"type\":\"boolean\"}]"
        "}",
        "{\"fields\":[{\"name\":\"t\",\"type\":\"boolean\",\"extra\":1}]}",
        "{\"fields\":[],\"x\":1}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(schema_parse(bad[i], strlen(bad[i]), &s, why, sizeof(why)),
                         MAMORI_ERR_PARSE);
    assert_int_equal(schema_parse(doc, strlen(doc), &s, why, sizeof(why)), MAMORI_OK);
    struct {
        const char *body;
        enum mamori_err want;
    } cases[] = {
        {"{\"t\":20.5,\"on\":true,\"n\":3}", MAMORI_OK},
        {"{\"t\":-40}", MAMORI_OK},
        {"{\"t\":85.0001}", MAMORI_ERR_INVAL},
        {"{\"n\":10}", MAMORI_ERR_INVAL},
        {"{\"n\":1.5}", MAMORI_ERR_PARSE},
        {"{\"on\":1}", MAMORI_ERR_PARSE},
        {"{\"t\":\"20\"}", MAMORI_ERR_PARSE},
        {"{\"humidity\":1}", MAMORI_ERR_PARSE},
        {"{}", MAMORI_ERR_PARSE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *b = json_loads(cases[i].body, 0, NULL);
        assert_non_null(b);
        assert_int_equal(schema_check(&s, b, why, sizeof(why)), cases[i].want);
        json_decref(b);
    }
    /* 2 Hz: a second value 400 ms later is too soon, 500 ms is fine */
    struct schema_rate r = {{0}};
    json_t *b = json_loads("{\"t\":1}", 0, NULL);
    assert_true(schema_rate_ok(&s, &r, b, 10000, 0, true, why, sizeof(why)));
    assert_false(schema_rate_ok(&s, &r, b, 10400, 0, true, why, sizeof(why)));
    assert_true(schema_rate_ok(&s, &r, b, 10500, 0, true, why, sizeof(why)));
    json_decref(b);
}

/* A device certificate for MM0123456789ABCDEF on subject's key, issued by
 * the test root (its PEM in *pem). */
static struct crypto_cert *device_cert(struct pki *p, const struct crypto_key *subject, char **pem)
{
    struct crypto_issue di = {.kind = CRYPTO_CERT_CLIENT,
                              .cn = "MM0123456789ABCDEF",
                              .subject = subject,
                              .issuer = p->root,
                              .issuer_key = p->root_key,
                              .not_after = time(NULL) + 3600};
    struct crypto_cert *cert = NULL;
    assert_int_equal(crypto_cert_issue(&di, pem), MAMORI_OK);
    assert_int_equal(crypto_cert_parse(*pem, strlen(*pem), &cert), MAMORI_OK);
    return cert;
}

/* Records verify with the device's certificate, chain by hash, and any
 * change to the text breaks the signature. */
static void device_log_chain(void **st)
{
    struct pki *p = *st;
    char *pem = NULL, l1[DEVLOG_LINE_MAX], l2[DEVLOG_LINE_MAX];
    struct crypto_cert *cert = device_cert(p, p->dev_key, &pem);
    struct devlog_rec a, b, got;
    assert_int_equal(devlog_build(p->dev_key, 1, 1000, "boot", "{}", DEVLOG_ZERO_HASH, l1, &a),
                     MAMORI_OK);
    assert_int_equal(
        devlog_build(p->dev_key, 2, 2000, "command", "{\"x\":\"q\\\"\"}", a.hash, l2, &b),
        MAMORI_OK);
    assert_int_equal(devlog_parse(l1, strlen(l1), cert, &got), MAMORI_OK);
    assert_string_equal(got.hash, a.hash);
    assert_int_equal(devlog_parse(l2, strlen(l2), cert, &got), MAMORI_OK);
    assert_string_equal(got.prev, a.hash); /* the chain */
    /* an edited record: the signature no longer verifies */
    char *t = strstr(l2, "command");
    memcpy(t, "comment", 7);
    assert_int_equal(devlog_parse(l2, strlen(l2), cert, &got), MAMORI_ERR_VERIFY);
    assert_int_equal(devlog_parse(l2, strlen(l2), NULL, &got), MAMORI_OK); /* parse only */
    /* another key's certificate does not verify it */
    char *other = NULL;
    struct crypto_cert *oc = device_cert(p, p->root_key, &other);
    assert_int_equal(devlog_parse(l1, strlen(l1), oc, &got), MAMORI_ERR_VERIFY);
    /* bad input */
    assert_int_equal(devlog_build(p->dev_key, 3, 1, "Bad Type", "{}", a.hash, l1, &a),
                     MAMORI_ERR_INVAL);
    assert_int_equal(devlog_parse("{\"rec\":\"{}\",\"sig\":\"AAAA\"}", 26, NULL, &got),
                     MAMORI_ERR_PARSE);
    crypto_cert_free(oc);
    free(other);
    crypto_cert_free(cert);
    free(pem);
}

/* The base64url of s (no padding), for building hostile tokens. */
static void b64u(const char *s, char *out, size_t n)
{
    size_t len = crypto_b64_encode((const uint8_t *)s, strlen(s), out, n);
    while (len && out[len - 1] == '=')
        len--;
    out[len] = '\0';
    for (size_t i = 0; i < len; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
}

/* The security status token: signed by the device key, verified with its
 * certificate, its form and claims held to the profile. */
static void security_status_token(void **st)
{
    struct pki *p = *st;
    char *pem = NULL, tok[EAT_MAX + 1], bad[EAT_MAX + 16];
    struct crypto_cert *cert = device_cert(p, p->dev_key, &pem);
    const char *claims =
        "{\"eat_profile\":\"" EAT_PROFILE "\",\"sub\":\"MM0123456789ABCDEF\",\"iat\":1000,"
        "\"exp\":2000,\"swversion\":[\"2.1\",1],\"mamori\":{\"cert_not_after\":5000,"
        "\"support_end\":0,\"advisories\":1,\"log_records\":7,\"locked\":false,"
        "\"quarantined\":false}}";
    json_t *c = NULL;
    const char *why = NULL;
    assert_int_equal(eat_sign(p->dev_key, claims, tok), MAMORI_OK);
    assert_int_equal(eat_verify(tok, strlen(tok), cert, "MM0123456789ABCDEF", &c, &why), MAMORI_OK);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(c, "mamori"), "log_records")), 7);
    json_decref(c);
    /* the JWS signature is r || s: 64 bytes, 86 base64url characters */
    assert_int_equal(strlen(strrchr(tok, '.') + 1), 86);
    /* another device's id, another key's certificate */
    assert_int_equal(eat_verify(tok, strlen(tok), cert, "MMZZZZZZZZZZZZZZZZ", &c, &why),
                     MAMORI_ERR_PARSE);
    assert_null(c);
    char *other = NULL;
    struct crypto_cert *oc = device_cert(p, p->root_key, &other);
    assert_int_equal(eat_verify(tok, strlen(tok), oc, NULL, &c, &why), MAMORI_ERR_VERIFY);
    /* claims swapped under the same signature */
    char body[600], hdr[80];
    b64u("{\"eat_profile\":\"" EAT_PROFILE "\",\"sub\":\"MM0123456789ABCDEF\",\"iat\":1000,"
         "\"exp\":2000,\"mamori\":{\"locked\":true}}",
         body, sizeof(body));
    const char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
    snprintf(bad, sizeof(bad), "%.*s.%s%s", (int)(d1 - tok), tok, body, d2);
    assert_int_equal(eat_verify(bad, strlen(bad), cert, NULL, &c, &why), MAMORI_ERR_VERIFY);
    assert_int_equal(eat_verify(bad, strlen(bad), NULL, NULL, &c, &why), MAMORI_OK); /* form ok */
    json_decref(c);
    /* "alg":"none" and any other header are refused, whatever follows */
    b64u("{\"alg\":\"none\",\"typ\":\"eat+jwt\"}", hdr, sizeof(hdr));
    snprintf(bad, sizeof(bad), "%s%s", hdr, d1);
    assert_int_equal(eat_verify(bad, strlen(bad), NULL, NULL, &c, &why), MAMORI_ERR_PARSE);
    snprintf(bad, sizeof(bad), "%s.", hdr);
    assert_int_equal(eat_verify(bad, strlen(bad), NULL, NULL, &c, &why), MAMORI_ERR_PARSE);
    /* claims outside the profile */
    const char *wrong[] = {
        "{\"eat_profile\":\"" EAT_PROFILE "\",\"sub\":\"MM0123456789ABCDEF\",\"iat\":1000,"
        "\"exp\":2000,\"admin\":true}",
        "{\"eat_profile\":\"" EAT_PROFILE "\",\"sub\":\"MM0123456789ABCDEF\",\"iat\":1000,"
        "\"exp\":999999}",
        "{\"eat_profile\":\"" EAT_PROFILE "\",\"sub\":\"MM0123456789ABCDEF\",\"iat\":1000,"
        "\"exp\":1000}",
        "{\"eat_profile\":\"tag:other\",\"sub\":\"MM0123456789ABCDEF\",\"iat\":1,\"exp\":2}",
        "{\"sub\":\"MM0123456789ABCDEF\",\"iat\":1,\"exp\":2}",
        "{\"eat_profile\":\"" EAT_PROFILE "\",\"sub\":\"MM0123456789ABCDEF\",\"iat\":1,\"exp\":2,"
        "\"mamori\":{\"locked\":1}}",
        "{\"eat_profile\":\"" EAT_PROFILE "\",\"sub\":\"MM0123456789ABCDEF\",\"iat\":1,\"exp\":2,"
        "\"swversion\":\"2.1\"}",
        "[1]",
    };
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        assert_int_equal(eat_sign(p->dev_key, wrong[i], bad), MAMORI_OK);
        assert_int_equal(eat_verify(bad, strlen(bad), cert, NULL, &c, &why), MAMORI_ERR_PARSE);
        assert_non_null(why);
    }
    /* the form: padding, foreign characters, a fourth part, too long */
    snprintf(bad, sizeof(bad), "%s=", tok);
    assert_int_equal(eat_verify(bad, strlen(bad), NULL, NULL, &c, &why), MAMORI_ERR_PARSE);
    snprintf(bad, sizeof(bad), "%s", tok);
    bad[3] = '+';
    assert_int_equal(eat_verify(bad, strlen(bad), NULL, NULL, &c, &why), MAMORI_ERR_PARSE);
    snprintf(bad, sizeof(bad), "%s.AAAA", tok);
    assert_int_equal(eat_verify(bad, strlen(bad), NULL, NULL, &c, &why), MAMORI_ERR_PARSE);
    assert_int_equal(eat_verify(tok, EAT_MAX + 1, NULL, NULL, &c, &why), MAMORI_ERR_PARSE);
    /* r || s and DER carry the same signature */
    uint8_t der[CRYPTO_SIG_MAX], raw[CRYPTO_SIG_RAW_LEN], der2[CRYPTO_SIG_MAX];
    size_t dl, dl2;
    assert_int_equal(crypto_ecdsa_sign(p->dev_key, "x", 1, der, &dl), MAMORI_OK);
    assert_int_equal(crypto_ecdsa_der_to_raw(der, dl, raw), MAMORI_OK);
    assert_int_equal(crypto_ecdsa_raw_to_der(raw, der2, &dl2), MAMORI_OK);
    assert_memory_equal(der, der2, dl);
    assert_int_equal(crypto_ecdsa_der_to_raw(der, dl - 1, raw), MAMORI_ERR_CRYPTO);
    crypto_cert_free(oc);
    free(other);
    crypto_cert_free(cert);
    free(pem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(csr_to_verified_cert), cmocka_unit_test(untrusted_and_expired_refused),
        cmocka_unit_test(tampered_csr_refused), cmocka_unit_test(secrets_helpers),
        cmocka_unit_test(signed_commands),      cmocka_unit_test(telemetry_schemas),
        cmocka_unit_test(device_log_chain),     cmocka_unit_test(security_status_token),
    };
    return cmocka_run_group_tests_name("crypto", tests, setup, teardown);
}
