/*
 * common/eat.c - the device's signed security status (eat.h).
 */
#include "common/eat.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "common/json.h"

#define EAT_HEADER "{\"alg\":\"ES256\",\"typ\":\"eat+jwt\"}"

/* base64url without padding (RFC 7515 2); 0 when out is too small. */
static size_t b64url_encode(const uint8_t *in, size_t n, char *out, size_t outlen)
{
    size_t len = crypto_b64_encode(in, n, out, outlen);
    while (len && out[len - 1] == '=')
        len--;
    for (size_t i = 0; i < len; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    if (len < outlen)
        out[len] = '\0';
    return len;
}

/* Canonical base64url only: its alphabet, no padding, no stray bits. */
static enum mamori_err b64url_decode(const char *in, size_t n, uint8_t *out, size_t outlen,
                                     size_t *got)
{
    char tmp[EAT_MAX + 4];
    if (n == 0 || n % 4 == 1 || n > EAT_MAX)
        return MAMORI_ERR_PARSE;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return MAMORI_ERR_PARSE;
        tmp[i] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    size_t len = n;
    while (len % 4)
        tmp[len++] = '=';
    return crypto_b64_decode(tmp, len, out, outlen, got) ? MAMORI_ERR_PARSE : MAMORI_OK;
}

enum mamori_err eat_sign(const struct crypto_key *key, const char *claims_json,
                         char out[EAT_MAX + 1])
{
    size_t cl = strlen(claims_json);
    if (cl == 0 || cl > EAT_CLAIMS_MAX)
        return MAMORI_ERR_TOOBIG;
    char *p = out;
    size_t left = EAT_MAX + 1;
    size_t n = b64url_encode((const uint8_t *)EAT_HEADER, strlen(EAT_HEADER), p, left);
    if (!n || n + 1 >= left)
        return MAMORI_ERR_TOOBIG;
    p[n] = '.';
    p += n + 1;
    left -= n + 1;
    if (!(n = b64url_encode((const uint8_t *)claims_json, cl, p, left)) || n + 1 >= left)
        return MAMORI_ERR_TOOBIG;
    p += n;
    left -= n;
    uint8_t der[CRYPTO_SIG_MAX], raw[CRYPTO_SIG_RAW_LEN];
    size_t dl;
    enum mamori_err rc = crypto_ecdsa_sign(key, out, (size_t)(p - out), der, &dl);
    if (!rc)
        rc = crypto_ecdsa_der_to_raw(der, dl, raw);
    if (rc)
        return rc;
    *p++ = '.';
    left--;
    if (!(n = b64url_encode(raw, sizeof(raw), p, left)) || n >= left)
        return MAMORI_ERR_TOOBIG;
    return MAMORI_OK;
}

static bool int_ok(const json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) >= 0;
}

/* The claim set of EAT_PROFILE, and nothing else. */
static const char *claims_check(json_t *c, const char *want_sub)
{
    const char *key, *s;
    json_t *v;
    json_object_foreach(c, key, v)
    {
        if (strcmp(key, "eat_profile") == 0) {
            if (!json_is_string(v) || strcmp(json_string_value(v), EAT_PROFILE) != 0)
                return "unknown eat_profile";
        } else if (strcmp(key, "sub") == 0) {
            if (!json_get_str(c, "sub", 64, &s) || (want_sub && strcmp(s, want_sub) != 0))
                return "sub is not this device";
        } else if (strcmp(key, "swversion") == 0) {
            if (json_array_size(v) != 2 || !json_is_string(json_array_get(v, 0)) ||
                strlen(json_string_value(json_array_get(v, 0))) > 64 ||
                !json_is_integer(json_array_get(v, 1)))
                return "swversion is not [version, scheme]";
        } else if (strcmp(key, "mamori") == 0) {
            const char *k2;
            json_t *v2;
            if (!json_is_object(v))
                return "mamori is not an object";
            json_object_foreach(v, k2, v2)
            {
                bool flag = strcmp(k2, "locked") == 0 || strcmp(k2, "quarantined") == 0;
                bool num = strcmp(k2, "cert_not_after") == 0 || strcmp(k2, "support_end") == 0 ||
                           strcmp(k2, "advisories") == 0 || strcmp(k2, "log_records") == 0;
                if (!(flag && json_is_boolean(v2)) && !(num && int_ok(v2)))
                    return "unknown or mistyped status claim";
            }
        } else if (strcmp(key, "iat") != 0 && strcmp(key, "exp") != 0) {
            return "unknown claim";
        }
    }
    json_t *iat = json_object_get(c, "iat"), *exp = json_object_get(c, "exp");
    if (!json_object_get(c, "eat_profile") || !json_object_get(c, "sub"))
        return "eat_profile and sub are required";
    if (!int_ok(iat) || !int_ok(exp) || json_integer_value(exp) <= json_integer_value(iat) ||
        json_integer_value(exp) - json_integer_value(iat) > EAT_TTL_MAX)
        return "iat and exp must bound a validity of at most 7 days";
    return NULL;
}

enum mamori_err eat_verify(const char *tok, size_t len, const struct crypto_cert *cert,
                           const char *want_sub, json_t **claims, const char **why)
{
    *claims = NULL;
    *why = "not a compact JWS";
    if (len == 0 || len > EAT_MAX)
        return MAMORI_ERR_PARSE;
    const char *d1 = memchr(tok, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)))
        return MAMORI_ERR_PARSE;
    uint8_t hdr[64], body[EAT_CLAIMS_MAX + 4], raw[CRYPTO_SIG_RAW_LEN + 4];
    size_t hl, bl, sl;
    if (b64url_decode(tok, (size_t)(d1 - tok), hdr, sizeof(hdr), &hl) || hl != strlen(EAT_HEADER) ||
        memcmp(hdr, EAT_HEADER, hl) != 0) {
        *why = "header is not {\"alg\":\"ES256\",\"typ\":\"eat+jwt\"}";
        return MAMORI_ERR_PARSE;
    }
    if (b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), body, sizeof(body), &bl) ||
        bl > EAT_CLAIMS_MAX ||
        b64url_decode(d2 + 1, len - (size_t)(d2 + 1 - tok), raw, sizeof(raw), &sl) ||
        sl != CRYPTO_SIG_RAW_LEN) {
        *why = "claims or signature not base64url of the right size";
        return MAMORI_ERR_PARSE;
    }
    json_t *c = NULL;
    if (json_parse_untrusted(body, bl, EAT_CLAIMS_MAX, &c, NULL, 0)) {
        *why = "claims are not a JSON object";
        return MAMORI_ERR_PARSE;
    }
    if ((*why = claims_check(c, want_sub)) != NULL) {
        json_decref(c);
        return MAMORI_ERR_PARSE;
    }
    if (cert) {
        uint8_t der[CRYPTO_SIG_MAX];
        size_t dl;
        if (crypto_ecdsa_raw_to_der(raw, der, &dl) ||
            crypto_cert_verify_sig(cert, tok, (size_t)(d2 - tok), der, dl)) {
            *why = "signature does not verify with the device certificate";
            json_decref(c);
            return MAMORI_ERR_VERIFY;
        }
    }
    *why = NULL;
    *claims = c;
    return MAMORI_OK;
}
