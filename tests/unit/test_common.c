/* Unit tests: common/ (bounded cursor, capped buffer, proto ids/codes/topics, JSON limits). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/json.h"
#include "common/notice.h"
#include "common/proto.h"

static void cursor_never_overreads(void **st)
{
    (void)st;
    uint8_t data[] = {1, 2, 3};
    struct mbuf b = mbuf_init(data, sizeof(data));
    uint16_t v16;
    uint32_t v32;
    const uint8_t *p;
    assert_int_equal(mbuf_u16be(&b, &v16), MAMORI_OK);
    assert_int_equal(v16, 0x0102);
    assert_int_equal(mbuf_u32be(&b, &v32), MAMORI_ERR_TRUNCATED);
    assert_int_equal(b.pos, 2); /* a failed read consumes nothing */
    assert_int_equal(mbuf_take(&b, 2, &p), MAMORI_ERR_TRUNCATED);
    assert_int_equal(mbuf_take(&b, SIZE_MAX, &p), MAMORI_ERR_TRUNCATED);
    assert_int_equal(mbuf_take(&b, 1, &p), MAMORI_OK);
    assert_int_equal(*p, 3);
    assert_int_equal(mbuf_left(&b), 0);
}

static void split_segments(void **st)
{
    (void)st;
    struct mbuf b = mbuf_init("a/bc//d", 7);
    const uint8_t *s;
    size_t n;
    mbuf_split(&b, '/', &s, &n);
    assert_true(mbuf_eq(s, n, "a"));
    mbuf_split(&b, '/', &s, &n);
    assert_true(mbuf_eq(s, n, "bc"));
    mbuf_split(&b, '/', &s, &n);
    assert_true(mbuf_eq(s, n, ""));
    mbuf_split(&b, '/', &s, &n);
    assert_true(mbuf_eq(s, n, "d"));
    assert_int_equal(mbuf_left(&b), 0);
}

static void dbuf_cap_is_hard(void **st)
{
    (void)st;
    struct dbuf d;
    dbuf_init(&d, 8);
    assert_int_equal(dbuf_addstr(&d, "12345678"), MAMORI_OK);
    assert_int_equal(dbuf_addstr(&d, "9"), MAMORI_ERR_TOOBIG);
    assert_int_equal(d.len, 8);
    assert_string_equal(d.p, "12345678");
    /* once failed, stays failed: no half-written output is ever used */
    assert_int_equal(dbuf_add(&d, "", 0), MAMORI_ERR_TOOBIG);
    dbuf_free(&d);
    dbuf_init(&d, 4);
    assert_int_equal(dbuf_printf(&d, "%d", 123456), MAMORI_ERR_TOOBIG);
    dbuf_free(&d);
}

static void device_ids(void **st)
{
    (void)st;
    char a[PROTO_DEVICE_ID_LEN + 1], b[PROTO_DEVICE_ID_LEN + 1];
    assert_int_equal(proto_device_id_new(a), MAMORI_OK);
    assert_int_equal(proto_device_id_new(b), MAMORI_OK);
    assert_true(proto_device_id_valid(a, strlen(a)));
    assert_string_not_equal(a, b);
    assert_false(proto_device_id_valid("MM123", 5));
    assert_false(proto_device_id_valid("XX0123456789ABCDEF", 18));
    assert_false(proto_device_id_valid("MM0123456789ABCDEU", 18)); /* U not Crockford */
    assert_false(proto_device_id_valid("!hub", 4));
    assert_false(proto_device_id_valid("MM01234567\0ABCDEFG", 18));
}

static void claim_codes(void **st)
{
    (void)st;
    char code[PROTO_CLAIM_CODE_TEXT + 1], canon[PROTO_CLAIM_CODE_CHARS + 1], h1[65], h2[65];
    assert_int_equal(proto_claim_code_new(code), MAMORI_OK);
    assert_int_equal(strlen(code), PROTO_CLAIM_CODE_TEXT);
    assert_int_equal(code[5], '-');
    assert_int_equal(proto_claim_code_normalize(code, strlen(code), canon), MAMORI_OK);
    proto_claim_code_hash(canon, h1);
    /* user typing: lower case, spaces, O for 0 and l for 1 all normalise */
    char typed[64];
    size_t o = 0;
    for (size_t i = 0; code[i]; i++) {
        char c = code[i];
        if (c == '-') {
            typed[o++] = ' ';
            continue;
        }
        if (c == '0')
            c = 'O';
        else if (c == '1')
            c = 'l';
        else if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        typed[o++] = c;
    }
    typed[o] = '\0';
    assert_int_equal(proto_claim_code_normalize(typed, strlen(typed), canon), MAMORI_OK);
    proto_claim_code_hash(canon, h2);
    assert_string_equal(h1, h2);
    assert_int_equal(proto_claim_code_normalize("ABCDE", 5, canon), MAMORI_ERR_PARSE);
    assert_int_equal(proto_claim_code_normalize("ABCDE-ABCDE-ABCDE-ABCDU", 23, canon),
                     MAMORI_ERR_PARSE);
    assert_int_equal(proto_claim_code_normalize("ABCDE-ABCDE-ABCDE-ABCDE-A", 25, canon),
                     MAMORI_ERR_PARSE);
}

static void topics(void **st)
{
    (void)st;
    char id[PROTO_DEVICE_ID_LEN + 1], t[96];
    enum proto_kind k;
    const char *good = "mamori/v1/d/MM0123456789ABCDEF/hb";
    assert_int_equal(proto_topic_parse(good, strlen(good), id, &k), MAMORI_OK);
    assert_string_equal(id, "MM0123456789ABCDEF");
    assert_int_equal(k, PROTO_KIND_HB);
    assert_int_equal(proto_topic(t, sizeof(t), id, PROTO_KIND_TM), MAMORI_OK);
    assert_string_equal(t, "mamori/v1/d/MM0123456789ABCDEF/tm");
    const char *bad[] = {"mamori/v1/d/MM0123456789ABCDEF/hb/",
                         "mamori/v1/d/MM0123456789ABCDEF/xx",
                         "mamori/v1/d/+/hb",
                         "mamori/v2/d/MM0123456789ABCDEF/hb",
                         "mamori/v1/d/MM0123456789ABCDEF",
                         "mamori/v1/d/MM0123456789ABCDEF/hb/x",
                         ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(proto_topic_parse(bad[i], strlen(bad[i]), id, &k), MAMORI_ERR_PARSE);
    assert_int_equal(proto_topic(t, 10, id, PROTO_KIND_TM), MAMORI_ERR_TOOBIG);
}

static void json_limits(void **st)
{
    (void)st;
    json_t *v = NULL;
    char err[128];
    assert_int_equal(json_parse_untrusted("{\"a\":1}", 7, 100, &v, err, sizeof(err)), MAMORI_OK);
    json_decref(v);
    assert_int_equal(json_parse_untrusted("{\"a\":1}", 7, 6, &v, err, sizeof(err)),
                     MAMORI_ERR_TOOBIG);
    assert_null(v);
    assert_int_equal(json_parse_untrusted("{\"a\":1", 6, 100, &v, err, sizeof(err)),
                     MAMORI_ERR_PARSE);
    assert_int_equal(json_parse_untrusted("[1]", 3, 100, &v, err, sizeof(err)), MAMORI_ERR_PARSE);
    assert_int_equal(json_parse_untrusted("{\"a\":1,\"a\":2}", 13, 100, &v, err, sizeof(err)),
                     MAMORI_ERR_PARSE);
    assert_int_equal(json_parse_untrusted("{\"a\":\"\\u0000\"}", 14, 100, &v, err, sizeof(err)),
                     MAMORI_ERR_PARSE);
    assert_int_equal(json_parse_untrusted("", 0, 100, &v, err, sizeof(err)), MAMORI_ERR_PARSE);
    char deep[200];
    size_t n = 0;
    deep[n++] = '{';
    for (int i = 0; i < 20; i++)
        n += (size_t)snprintf(deep + n, sizeof(deep) - n, "\"a\":{");
    deep[n++] = '}';
    for (int i = 0; i < 20; i++)
        deep[n++] = '}';
    assert_int_equal(json_parse_untrusted(deep, n, sizeof(deep), &v, err, sizeof(err)),
                     MAMORI_ERR_PARSE);
    assert_string_equal(err, "JSON nested too deeply");
}

static void envelopes(void **st)
{
    (void)st;
    struct proto_envelope e;
    json_t *body = NULL;
    const char *ok = "{\"v\":1,\"seq\":7,\"ts\":1700000000000,\"body\":{\"t\":1}}";
    assert_int_equal(proto_envelope_parse(ok, strlen(ok), &e, &body), MAMORI_OK);
    assert_int_equal(e.seq, 7);
    assert_non_null(body);
    json_decref(body);
    const char *bad[] = {"{\"v\":2,\"seq\":7,\"ts\":1}", "{\"v\":1,\"seq\":-1,\"ts\":1}",
                         "{\"v\":1,\"ts\":1}", "{\"v\":1,\"seq\":1,\"ts\":1,\"body\":[1]}", "{}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(proto_envelope_parse(bad[i], strlen(bad[i]), &e, NULL), MAMORI_ERR_PARSE);
}

static bool notice_ok(const char *doc)
{
    struct notice n;
    return notice_parse(doc, strlen(doc), &n) == MAMORI_OK;
}

static void notices(void **state)
{
    (void)state;
    struct notice n;
    const char *good = "{\"fw_version\":\"2.0\",\"support_end\":1932595200,\"advisories\":["
                       "{\"id\":7,\"severity\":\"high\",\"title\":\"CVE-2026-1 in the UI\","
                       "\"fixed_version\":\"3.1\"},{\"id\":3,\"severity\":\"critical\",\"title\":"
                       "\"t\",\"fixed_version\":\"\"}],\"more\":2}";
    assert_int_equal(notice_parse(good, strlen(good), &n), MAMORI_OK);
    assert_string_equal(n.fw_version, "2.0");
    assert_int_equal(n.support_end, 1932595200);
    assert_int_equal(n.n, 2);
    assert_int_equal(n.more, 2);
    assert_int_equal(n.adv[0].id, 7);
    assert_string_equal(n.adv[0].fixed_version, "3.1");
    assert_string_equal(notice_worst(&n), "critical");
    assert_true(notice_ok("{\"fw_version\":\"\",\"support_end\":0,\"advisories\":[],\"more\":0}"));
    /* every rule, broken once */
    const char *bad[] = {
        "{\"fw_version\":\"2.0\",\"support_end\":0,\"advisories\":[],\"more\":0,\"x\":1}",
        "{\"fw_version\":\"2.0\",\"support_end\":-1,\"advisories\":[],\"more\":0}",
        "{\"fw_version\":\"2.0\",\"support_end\":99999999999999,\"advisories\":[],\"more\":0}",
        "{\"fw_version\":\"../x\",\"support_end\":0,\"advisories\":[],\"more\":0}",
        "{\"fw_version\":\"2.0\",\"support_end\":\"soon\",\"advisories\":[],\"more\":0}",
        "{\"fw_version\":\"2.0\",\"support_end\":0,\"advisories\":{},\"more\":0}",
        "{\"fw_version\":\"2.0\",\"support_end\":0,\"advisories\":[],\"more\":-3}",
        "{\"fw_version\":\"2.0\",\"support_end\":0,\"advisories\":[{\"id\":1,\"severity\":"
        "\"urgent\",\"title\":\"t\",\"fixed_version\":\"\"}],\"more\":0}",
        "{\"fw_version\":\"2.0\",\"support_end\":0,\"advisories\":[{\"id\":0,\"severity\":"
        "\"low\",\"title\":\"t\",\"fixed_version\":\"\"}],\"more\":0}",
        "{\"fw_version\":\"2.0\",\"support_end\":0,\"advisories\":[{\"id\":1,\"severity\":"
        "\"low\",\"title\":\"\",\"fixed_version\":\"\"}],\"more\":0}",
        "{\"fw_version\":\"2.0\",\"support_end\":0,\"advisories\":[{\"id\":1,\"severity\":"
        "\"low\",\"title\":\"a\\u0000b\",\"fixed_version\":\"\"}],\"more\":0}",
        "{\"fw_version\":\"2.0\",\"support_end\":0,\"advisories\":[{\"id\":1,\"severity\":"
        "\"low\",\"title\":\"t\"}],\"more\":0}",
        "[]",
        "{\"fw_version\":\"2.0\"",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_not_equal(notice_parse(bad[i], strlen(bad[i]), &n), MAMORI_OK);
        assert_int_equal(n.n, 0); /* nothing half-filled */
    }
    /* more than NOTICE_ADVISORIES listed; a title over the limit */
    char doc[NOTICE_MAX * 2];
    size_t k = (size_t)snprintf(
        doc, sizeof(doc), "{\"fw_version\":\"1\",\"support_end\":0,\"more\":0,\"advisories\":[");
    for (int i = 0; i <= NOTICE_ADVISORIES; i++)
        k += (size_t)snprintf(doc + k, sizeof(doc) - k,
                              "%s{\"id\":%d,\"severity\":\"low\",\"title\":\"t\","
                              "\"fixed_version\":\"\"}",
                              i ? "," : "", i + 1);
    snprintf(doc + k, sizeof(doc) - k, "]}");
    assert_false(notice_ok(doc));
    char title[NOTICE_TITLE_MAX + 2];
    memset(title, 'a', sizeof(title) - 1);
    title[sizeof(title) - 1] = '\0';
    snprintf(doc, sizeof(doc),
             "{\"fw_version\":\"1\",\"support_end\":0,\"more\":0,\"advisories\":[{\"id\":1,"
             "\"severity\":\"low\",\"title\":\"%s\",\"fixed_version\":\"\"}]}",
             title);
    assert_false(notice_ok(doc));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cursor_never_overreads),
        cmocka_unit_test(split_segments),
        cmocka_unit_test(dbuf_cap_is_hard),
        cmocka_unit_test(device_ids),
        cmocka_unit_test(claim_codes),
        cmocka_unit_test(topics),
        cmocka_unit_test(json_limits),
        cmocka_unit_test(envelopes),
        cmocka_unit_test(notices),
    };
    return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
