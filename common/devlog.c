/*
 * common/devlog.c - device log records (devlog.h).
 */
#include "common/devlog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"

static void hash_text(const char *text, size_t n, char out[65])
{
    uint8_t md[CRYPTO_SHA256_LEN];
    crypto_sha256(text, n, md);
    crypto_hex(md, sizeof(md), out);
}

static bool type_ok(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= '0' && t[i] <= '9') || t[i] == '_'))
            return false;
    return true;
}

enum mamori_err devlog_build(const struct crypto_key *key, uint64_t n, int64_t ts, const char *type,
                             const char *data_json, const char *prev,
                             char line_out[DEVLOG_LINE_MAX], struct devlog_rec *rec)
{
    char text[DEVLOG_TEXT_MAX];
    if (!type_ok(type) || strlen(prev) != 64)
        return MAMORI_ERR_INVAL;
    int len = snprintf(text, sizeof(text),
                       "{\"n\":%llu,\"ts\":%lld,\"type\":\"%s\",\"data\":%s,\"prev\":\"%s\"}",
                       (unsigned long long)n, (long long)ts, type, data_json, prev);
    if (len < 0 || (size_t)len >= sizeof(text))
        return MAMORI_ERR_TOOBIG;
    uint8_t sig[CRYPTO_SIG_MAX];
    size_t siglen;
    char b64[2 * CRYPTO_SIG_MAX];
    enum mamori_err rc = crypto_ecdsa_sign(key, text, (size_t)len, sig, &siglen);
    if (rc)
        return rc;
    if (crypto_b64_encode(sig, siglen, b64, sizeof(b64)) == 0)
        return MAMORI_ERR_INTERNAL;
    /* The text goes in as a JSON string: escape it with jansson. */
    json_t *o = json_pack("{s:s,s:s}", "rec", text, "sig", b64);
    char *line = o ? json_dump_compact(o) : NULL;
    json_decref(o);
    if (!line)
        return MAMORI_ERR_NOMEM;
    rc = strlen(line) < DEVLOG_LINE_MAX ? MAMORI_OK : MAMORI_ERR_TOOBIG;
    if (!rc) {
        memcpy(line_out, line, strlen(line) + 1);
        memset(rec, 0, sizeof(*rec));
        rec->n = n;
        rec->ts = ts;
        snprintf(rec->type, sizeof(rec->type), "%s", type);
        snprintf(rec->prev, sizeof(rec->prev), "%s", prev);
        hash_text(text, (size_t)len, rec->hash);
    }
    free(line);
    return rc;
}

enum mamori_err devlog_parse(const void *line, size_t len, const struct crypto_cert *cert,
                             struct devlog_rec *out)
{
    json_t *o = NULL, *r = NULL;
    const char *text, *sig, *type, *prev;
    uint64_t n;
    memset(out, 0, sizeof(*out));
    enum mamori_err rc = json_parse_untrusted(line, len, DEVLOG_LINE_MAX, &o, NULL, 0);
    if (rc)
        return rc;
    if (json_object_size(o) != 2 || !json_get_str(o, "rec", DEVLOG_TEXT_MAX, &text) ||
        !json_get_str(o, "sig", 2 * CRYPTO_SIG_MAX, &sig)) {
        json_decref(o);
        return MAMORI_ERR_PARSE;
    }
    size_t tlen = strlen(text);
    rc = json_parse_untrusted(text, tlen, DEVLOG_TEXT_MAX, &r, NULL, 0);
    json_t *ts = r ? json_object_get(r, "ts") : NULL;
    if (!rc && (json_object_size(r) != 5 || !json_get_u64(r, "n", &n) || n == 0 ||
                !json_is_integer(ts) || !json_get_str(r, "type", 32, &type) || !type_ok(type) ||
                !json_is_object(json_object_get(r, "data")) ||
                !json_get_str(r, "prev", 64, &prev) || strlen(prev) != 64))
        rc = MAMORI_ERR_PARSE;
    if (!rc && cert) {
        uint8_t s[CRYPTO_SIG_MAX];
        size_t slen;
        if (crypto_b64_decode(sig, strlen(sig), s, sizeof(s), &slen) ||
            crypto_cert_verify_sig(cert, text, tlen, s, slen))
            rc = MAMORI_ERR_VERIFY;
    }
    if (!rc) {
        out->n = n;
        out->ts = (int64_t)json_integer_value(ts);
        snprintf(out->type, sizeof(out->type), "%s", type);
        snprintf(out->prev, sizeof(out->prev), "%s", prev);
        hash_text(text, tlen, out->hash);
    }
    json_decref(r);
    json_decref(o);
    return rc;
}
