/*
 * Unit tests: signed update metadata with roles (common/upmeta.c).
 *
 * Thresholds count distinct keys of the right role only; the next root
 * needs a threshold of the old root keys and of its own; a release key
 * revoked or rotated by a new root stops or starts counting; expired
 * metadata, tampered text and malformed documents are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/json.h"
#include "common/upmeta.h"

#define NOW   1800000000000LL
#define DAY   (24LL * 3600 * 1000)
#define NKEYS 6

static struct crypto_key *keys[NKEYS];
static char ids[NKEYS][CRYPTO_FP_HEX_LEN], spki_b64[NKEYS][2 * CRYPTO_SPKI_MAX];

static int setup_keys(void **state)
{
    (void)state;
    for (int i = 0; i < NKEYS; i++) {
        uint8_t spki[CRYPTO_SPKI_MAX];
        size_t n;
        assert_int_equal(crypto_key_generate(&keys[i]), MAMORI_OK);
        assert_int_equal(crypto_key_spki(keys[i], spki, &n), MAMORI_OK);
        crypto_key_id(spki, n, ids[i]);
        assert_true(crypto_b64_encode(spki, n, spki_b64[i], sizeof(spki_b64[i])) > 0);
    }
    return 0;
}

static int teardown_keys(void **state)
{
    (void)state;
    for (int i = 0; i < NKEYS; i++)
        crypto_key_free(keys[i]);
    return 0;
}

/* A root text: keys listed are all of root_k and rel_k (indexes, -1 ends). */
static char *root_text(uint64_t version, int64_t expires, const int *root_k, unsigned root_th,
                       const int *rel_k, unsigned rel_th)
{
    json_t *k = json_object(), *rk = json_array(), *lk = json_array();
    for (const int *p = root_k; *p >= 0; p++) {
        json_object_set_new(k, ids[*p], json_string(spki_b64[*p]));
        json_array_append_new(rk, json_string(ids[*p]));
    }
    for (const int *p = rel_k; *p >= 0; p++) {
        json_object_set_new(k, ids[*p], json_string(spki_b64[*p]));
        json_array_append_new(lk, json_string(ids[*p]));
    }
    json_t *o = json_pack("{s:s, s:I, s:I, s:o, s:{s:{s:o, s:i}, s:{s:o, s:i}}}", "type", "root",
                          "version", (json_int_t)version, "expires", (json_int_t)expires, "keys", k,
                          "roles", "root", "keyids", rk, "threshold", (int)root_th, "release",
                          "keyids", lk, "threshold", (int)rel_th);
    char *t = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return t;
}

static char *release_text(const char *model, uint64_t sv, uint64_t floor, int64_t expires,
                          uint64_t size)
{
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:{s:s, s:I}}", "type", "release", "model", model,
                  "fw_version", "1.2.3", "security_version", (json_int_t)sv, "floor",
                  (json_int_t)floor, "expires", (json_int_t)expires, "image", "sha256",
                  "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "size",
                  (json_int_t)size);
    char *t = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return t;
}

/* The envelope of text signed by the keys given (-1 ends). */
static char *signed_by(char *text, const int *signers)
{
    char *doc = NULL;
    assert_int_equal(upmeta_wrap(text, &doc), MAMORI_OK);
    free(text);
    for (const int *p = signers; *p >= 0; p++) {
        char *next = NULL;
        assert_int_equal(upmeta_sign(doc, strlen(doc), keys[*p], &next), MAMORI_OK);
        free(doc);
        doc = next;
    }
    return doc;
}

#define L(...) ((const int[]){__VA_ARGS__, -1})

static enum mamori_err first(char *doc, struct upmeta_root *r)
{
    enum mamori_err rc = upmeta_root_first(doc, strlen(doc), NOW, r, NULL, 0);
    free(doc);
    return rc;
}

/* Root keys 0,1,2 (threshold 2), release key 3. */
static void v1(struct upmeta_root *r)
{
    char *d = signed_by(root_text(1, NOW + 365 * DAY, L(0, 1, 2), 2, L(3), 1), L(0, 1));
    assert_int_equal(first(d, r), MAMORI_OK);
}

static void root_threshold(void **state)
{
    (void)state;
    struct upmeta_root r;
    char why[160] = "";
    v1(&r);
    assert_int_equal(r.version, 1);
    assert_int_equal(r.nkeys, 4);
    assert_int_equal(r.root.threshold, 2);
    /* one root key is not enough; nor is a release key added to it */
    char *d = signed_by(root_text(1, NOW + DAY, L(0, 1, 2), 2, L(3), 1), L(0, 3));
    assert_int_equal(upmeta_root_first(d, strlen(d), NOW, &r, why, sizeof(why)), MAMORI_ERR_VERIFY);
    assert_non_null(strstr(why, "2 of its root keys"));
    free(d);
    /* the same signature listed twice counts once */
    d = signed_by(root_text(1, NOW + DAY, L(0, 1, 2), 2, L(3), 1), L(0));
    json_t *e = NULL;
    assert_int_equal(json_parse_untrusted(d, strlen(d), UPMETA_DOC_MAX, &e, NULL, 0), MAMORI_OK);
    json_t *sigs = json_object_get(e, "signatures");
    json_array_append(sigs, json_array_get(sigs, 0));
    free(d);
    d = json_dumps(e, JSON_COMPACT);
    json_decref(e);
    assert_int_equal(first(d, &r), MAMORI_ERR_VERIFY);
    /* signing again with the same key replaces its signature */
    d = signed_by(root_text(1, NOW + DAY, L(0, 1, 2), 2, L(3), 1), L(0, 0, 0));
    assert_int_equal(first(d, &r), MAMORI_ERR_VERIFY);
}

static void root_expired_and_malformed(void **state)
{
    (void)state;
    struct upmeta_root r;
    char why[160];
    assert_int_equal(first(signed_by(root_text(1, NOW - 1, L(0, 1), 1, L(3), 1), L(0)), &r),
                     MAMORI_ERR_EXPIRED);
    /* thresholds out of range */
    assert_int_equal(first(signed_by(root_text(1, NOW + DAY, L(0, 1), 0, L(3), 1), L(0)), &r),
                     MAMORI_ERR_PARSE);
    assert_int_equal(first(signed_by(root_text(1, NOW + DAY, L(0, 1), 3, L(3), 1), L(0, 1)), &r),
                     MAMORI_ERR_PARSE);
    /* a key listed twice in a role would count twice */
    assert_int_equal(first(signed_by(root_text(1, NOW + DAY, L(0, 0), 2, L(3), 1), L(0)), &r),
                     MAMORI_ERR_PARSE);
    /* a key filed under another key's id */
    char *t = root_text(1, NOW + DAY, L(0), 1, L(3), 1);
    char *p = strstr(t, spki_b64[3]);
    assert_non_null(p);
    memcpy(p, spki_b64[4], strlen(spki_b64[4])); /* same length: P-256 SPKI */
    assert_int_equal(first(signed_by(t, L(0)), &r), MAMORI_ERR_PARSE);
    /* an unknown member, a wrong type, no envelope */
    const char *bad[] = {
        "{\"signed\":\"{}\",\"signatures\":[]}",
        "{\"signed\":\"{\\\"type\\\":\\\"release\\\"}\",\"signatures\":[]}",
        "{\"signed\":\"x\",\"signatures\":[],\"extra\":1}",
        "{\"signed\":\"x\",\"signatures\":[{\"keyid\":\"00\",\"sig\":\"AA==\"}]}",
        "[]",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_not_equal(upmeta_root_first(bad[i], strlen(bad[i]), NOW, &r, why, sizeof(why)),
                             MAMORI_OK);
}

static void root_rotation(void **state)
{
    (void)state;
    struct upmeta_root r1, r2, r3;
    v1(&r1);
    /* v2: root key 2 replaced by 4; release key 3 replaced by 5 */
    char *t = root_text(2, NOW + DAY, L(0, 1, 4), 2, L(5), 1);
    char *both = signed_by(strdup(t), L(0, 1, 4));
    assert_int_equal(upmeta_root_next(&r1, both, strlen(both), true, NOW, &r2, NULL, 0), MAMORI_OK);
    /* a threshold of the old keys alone: the new key set never agreed */
    char *old_only = signed_by(root_text(2, NOW + DAY, L(4, 5), 2, L(3), 1), L(0, 1));
    assert_int_equal(upmeta_root_next(&r1, old_only, strlen(old_only), true, NOW, &r3, NULL, 0),
                     MAMORI_ERR_VERIFY);
    /* new keys alone (a thief's root): refused */
    char *new_only = signed_by(root_text(2, NOW + DAY, L(4, 5), 1, L(3), 1), L(4));
    assert_int_equal(upmeta_root_next(&r1, new_only, strlen(new_only), true, NOW, &r3, NULL, 0),
                     MAMORI_ERR_VERIFY);
    /* versions only go up by one */
    char *skip = signed_by(root_text(3, NOW + DAY, L(0, 1, 2), 2, L(3), 1), L(0, 1));
    assert_int_equal(upmeta_root_next(&r1, skip, strlen(skip), true, NOW, &r3, NULL, 0),
                     MAMORI_ERR_VERIFY);
    assert_int_equal(upmeta_root_next(&r2, both, strlen(both), true, NOW, &r3, NULL, 0),
                     MAMORI_ERR_VERIFY);
    /* an expired root on the way is passed over; as the newest it is refused */
    char *old = signed_by(root_text(2, NOW - DAY, L(0, 1, 4), 2, L(5), 1), L(0, 1, 4));
    assert_int_equal(upmeta_root_next(&r1, old, strlen(old), false, NOW, &r3, NULL, 0), MAMORI_OK);
    assert_int_equal(upmeta_root_current(&r3, NOW), MAMORI_ERR_EXPIRED);
    assert_int_equal(upmeta_root_next(&r1, old, strlen(old), true, NOW, &r3, NULL, 0),
                     MAMORI_ERR_EXPIRED);
    free(t);
    free(both);
    free(old_only);
    free(new_only);
    free(skip);
    free(old);
}

static enum mamori_err rel(const struct upmeta_root *r, char *doc, struct upmeta_release *out)
{
    enum mamori_err rc = upmeta_release_verify(r, doc, strlen(doc), NOW, out, NULL, 0);
    free(doc);
    return rc;
}

static void release_keys_rotate_and_revoke(void **state)
{
    (void)state;
    struct upmeta_root r1, r2;
    struct upmeta_release m;
    v1(&r1);
    assert_int_equal(rel(&r1, signed_by(release_text("cam", 5, 3, NOW + DAY, 4096), L(3)), &m),
                     MAMORI_OK);
    assert_string_equal(m.model, "cam");
    assert_string_equal(m.fw_version, "1.2.3");
    assert_int_equal(m.security_version, 5);
    assert_int_equal(m.floor, 3);
    assert_int_equal(m.size, 4096);
    /* root keys do not sign releases */
    assert_int_equal(rel(&r1, signed_by(release_text("cam", 5, 3, NOW + DAY, 1), L(0, 1)), &m),
                     MAMORI_ERR_VERIFY);
    /* v2 revokes release key 3 and brings in 5 */
    char *d = signed_by(root_text(2, NOW + DAY, L(0, 1, 2), 2, L(5), 1), L(0, 1));
    assert_int_equal(upmeta_root_next(&r1, d, strlen(d), true, NOW, &r2, NULL, 0), MAMORI_OK);
    free(d);
    assert_int_equal(rel(&r2, signed_by(release_text("cam", 6, 3, NOW + DAY, 1), L(3)), &m),
                     MAMORI_ERR_VERIFY);
    assert_int_equal(rel(&r2, signed_by(release_text("cam", 6, 3, NOW + DAY, 1), L(5)), &m),
                     MAMORI_OK);
    /* expired release metadata */
    assert_int_equal(rel(&r2, signed_by(release_text("cam", 6, 3, NOW, 1), L(5)), &m),
                     MAMORI_ERR_EXPIRED);
}

static void release_threshold_tamper_malformed(void **state)
{
    (void)state;
    struct upmeta_root r;
    struct upmeta_release m;
    char *d = signed_by(root_text(1, NOW + DAY, L(0), 1, L(3, 4, 5), 2), L(0));
    assert_int_equal(first(d, &r), MAMORI_OK);
    assert_int_equal(rel(&r, signed_by(release_text("cam", 1, 0, NOW + DAY, 9), L(3)), &m),
                     MAMORI_ERR_VERIFY);
    assert_int_equal(rel(&r, signed_by(release_text("cam", 1, 0, NOW + DAY, 9), L(3, 5)), &m),
                     MAMORI_OK);
    /* a signature over other text (the size changed after signing) */
    d = signed_by(release_text("cam", 1, 0, NOW + DAY, 9), L(3, 5));
    char *p = strstr(d, "\\\"size\\\":9");
    assert_non_null(p);
    p[strlen("\\\"size\\\":")] = '8';
    assert_int_equal(rel(&r, d, &m), MAMORI_ERR_VERIFY);
    /* floor above the security version, empty image, empty model */
    assert_int_equal(rel(&r, signed_by(release_text("cam", 1, 2, NOW + DAY, 9), L(3, 5)), &m),
                     MAMORI_ERR_PARSE);
    assert_int_equal(rel(&r, signed_by(release_text("cam", 1, 0, NOW + DAY, 0), L(3, 5)), &m),
                     MAMORI_ERR_PARSE);
    assert_int_equal(rel(&r, signed_by(release_text("", 1, 0, NOW + DAY, 9), L(3, 5)), &m),
                     MAMORI_ERR_PARSE);
    /* names that would need escaping are refused */
    assert_int_equal(rel(&r, signed_by(release_text("cam\\\"x", 1, 0, NOW + DAY, 9), L(3, 5)), &m),
                     MAMORI_ERR_PARSE);
    assert_int_equal(rel(&r, signed_by(release_text("cam x", 1, 0, NOW + DAY, 9), L(3, 5)), &m),
                     MAMORI_ERR_PARSE);
    /* a root document is not a release */
    d = signed_by(root_text(1, NOW + DAY, L(0), 1, L(3), 1), L(3, 5));
    assert_int_equal(rel(&r, d, &m), MAMORI_ERR_PARSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(root_threshold),
        cmocka_unit_test(root_expired_and_malformed),
        cmocka_unit_test(root_rotation),
        cmocka_unit_test(release_keys_rotate_and_revoke),
        cmocka_unit_test(release_threshold_tamper_malformed),
    };
    return cmocka_run_group_tests(tests, setup_keys, teardown_keys);
}
