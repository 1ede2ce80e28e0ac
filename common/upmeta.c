/*
 * common/upmeta.c - signed update metadata with roles (see upmeta.h and
 * docs/updates.md); P-UPD.
 */
#include "common/upmeta.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"

#define SIG_B64_MAX 128

struct sigs {
    size_t n;
    struct {
        char keyid[CRYPTO_FP_HEX_LEN];
        uint8_t sig[CRYPTO_SIG_MAX];
        size_t len;
    } s[UPMETA_KEYS_MAX];
};

static enum mamori_err fail(enum mamori_err rc, char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static enum mamori_err fail(enum mamori_err rc, char *why, size_t whylen, const char *fmt, ...)
{
    if (why && whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* Model and version names: letters, digits and . _ - + ~ (they end up in
 * JSON, logs and file names without escaping). */
bool upmeta_name_ok(const char *s)
{
    if (!*s || strlen(s) > UPMETA_NAME_MAX)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("._-+~", *s)))
            return false;
    return true;
}

bool upmeta_hex64(const char *s)
{
    if (strlen(s) != 64)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

/* Only the members named may be present. */
static bool only_members(json_t *o, const char *const *names, size_t n)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        bool known = false;
        for (size_t i = 0; i < n && !known; i++)
            known = strcmp(k, names[i]) == 0;
        if (!known)
            return false;
    }
    return true;
}

static bool get_i64(const json_t *o, const char *key, int64_t *out)
{
    uint64_t v;
    if (!json_get_u64(o, key, &v) || v > (uint64_t)INT64_MAX)
        return false;
    *out = (int64_t)v;
    return true;
}

/* The envelope: the signed text (a new string) and its signatures. */
static enum mamori_err envelope(const void *doc, size_t len, char **text, struct sigs *sg,
                                char *why, size_t whylen)
{
    static const char *const members[] = {"signed", "signatures"};
    json_t *e = NULL;
    const char *t;
    *text = NULL;
    memset(sg, 0, sizeof(*sg));
    if (len > UPMETA_DOC_MAX)
        return fail(MAMORI_ERR_TOOBIG, why, whylen, "document over %d bytes", UPMETA_DOC_MAX);
    if (json_parse_untrusted(doc, len, UPMETA_DOC_MAX, &e, NULL, 0))
        return fail(MAMORI_ERR_PARSE, why, whylen, "not a JSON object");
    enum mamori_err rc = MAMORI_ERR_PARSE;
    json_t *arr = json_object_get(e, "signatures");
    if (!only_members(e, members, 2) || !json_get_str(e, "signed", UPMETA_SIGNED_MAX, &t) ||
        !json_is_array(arr) || json_array_size(arr) > UPMETA_KEYS_MAX) {
        fail(rc, why, whylen, "not a signed envelope");
        goto out;
    }
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        static const char *const sm[] = {"keyid", "sig"};
        const char *kid, *b64;
        if (!json_is_object(v) || !only_members(v, sm, 2) || !json_get_str(v, "keyid", 64, &kid) ||
            !upmeta_hex64(kid) || !json_get_str(v, "sig", SIG_B64_MAX, &b64) ||
            crypto_b64_decode(b64, strlen(b64), sg->s[sg->n].sig, CRYPTO_SIG_MAX,
                              &sg->s[sg->n].len)) {
            fail(rc, why, whylen, "signature %zu malformed", i);
            goto out;
        }
        memcpy(sg->s[sg->n].keyid, kid, CRYPTO_FP_HEX_LEN);
        sg->n++;
    }
    if (!(*text = strdup(t))) {
        rc = MAMORI_ERR_NOMEM;
        goto out;
    }
    rc = MAMORI_OK;
out:
    json_decref(e);
    return rc;
}

static const uint8_t *key_of(const struct upmeta_root *r, const char *id, size_t *len)
{
    for (size_t i = 0; i < r->nkeys; i++)
        if (strcmp(r->keys[i].id, id) == 0) {
            *len = r->keys[i].spki_len;
            return r->keys[i].spki;
        }
    return NULL;
}

/* How many keys of role (their keys in keys_from) made a valid signature
 * over text. Each key counts once, whatever the envelope repeats. */
static unsigned valid_sigs(const struct upmeta_root *keys_from, const struct upmeta_role *role,
                           const char *text, const struct sigs *sg)
{
    unsigned n = 0;
    for (size_t k = 0; k < role->nkeyids; k++) {
        size_t slen = 0;
        const uint8_t *spki = key_of(keys_from, role->keyids[k], &slen);
        struct crypto_pubkey *pub = NULL;
        if (!spki || crypto_pubkey_parse(spki, slen, &pub))
            continue;
        for (size_t i = 0; i < sg->n; i++)
            if (strcmp(sg->s[i].keyid, role->keyids[k]) == 0 &&
                crypto_pubkey_verify(pub, text, strlen(text), sg->s[i].sig, sg->s[i].len) ==
                    MAMORI_OK) {
                n++;
                break;
            }
        crypto_pubkey_free(pub);
    }
    return n;
}

static bool parse_role(json_t *o, const struct upmeta_root *r, struct upmeta_role *out)
{
    static const char *const members[] = {"keyids", "threshold"};
    json_t *ids = json_object_get(o, "keyids");
    uint64_t th = 0;
    memset(out, 0, sizeof(*out));
    if (!json_is_object(o) || !only_members(o, members, 2) || !json_is_array(ids) ||
        json_array_size(ids) == 0 || json_array_size(ids) > UPMETA_KEYS_MAX ||
        !json_get_u64(o, "threshold", &th) || th < 1 || th > json_array_size(ids))
        return false;
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        const char *id = json_string_value(v);
        size_t unused;
        if (!id || !upmeta_hex64(id) || !key_of(r, id, &unused))
            return false;
        for (size_t j = 0; j < out->nkeyids; j++)
            if (strcmp(out->keyids[j], id) == 0)
                return false; /* a key listed twice would count twice */
        memcpy(out->keyids[out->nkeyids++], id, CRYPTO_FP_HEX_LEN);
    }
    out->threshold = (unsigned)th;
    return true;
}

static enum mamori_err parse_root(const char *text, struct upmeta_root *r, char *why, size_t whylen)
{
    static const char *const members[] = {"type", "version", "expires", "keys", "roles"};
    static const char *const role_names[] = {"root", "release"};
    json_t *o = NULL;
    const char *type;
    memset(r, 0, sizeof(*r));
    if (json_parse_untrusted(text, strlen(text), UPMETA_SIGNED_MAX, &o, NULL, 0))
        return fail(MAMORI_ERR_PARSE, why, whylen, "signed text is not a JSON object");
    enum mamori_err rc = MAMORI_ERR_PARSE;
    json_t *keys = json_object_get(o, "keys"), *roles = json_object_get(o, "roles");
    if (!only_members(o, members, 5) || !json_get_str(o, "type", 16, &type) ||
        strcmp(type, "root") != 0 || !json_get_u64(o, "version", &r->version) || r->version == 0 ||
        !get_i64(o, "expires", &r->expires) || !json_is_object(keys) ||
        json_object_size(keys) == 0 || json_object_size(keys) > UPMETA_KEYS_MAX ||
        !json_is_object(roles) || !only_members(roles, role_names, 2)) {
        fail(rc, why, whylen, "not a root document");
        goto out;
    }
    const char *id;
    json_t *v;
    json_object_foreach(keys, id, v)
    {
        const char *b64 = json_string_value(v);
        char calc[CRYPTO_FP_HEX_LEN];
        struct crypto_pubkey *pub = NULL;
        size_t n = r->nkeys;
        if (!upmeta_hex64(id) || !b64 || strlen(b64) > 2 * CRYPTO_SPKI_MAX ||
            crypto_b64_decode(b64, strlen(b64), r->keys[n].spki, CRYPTO_SPKI_MAX,
                              &r->keys[n].spki_len) ||
            crypto_pubkey_parse(r->keys[n].spki, r->keys[n].spki_len, &pub)) {
            fail(rc, why, whylen, "key %.16s is not a P-256 public key", id);
            goto out;
        }
        crypto_pubkey_free(pub);
        crypto_key_id(r->keys[n].spki, r->keys[n].spki_len, calc);
        if (strcmp(calc, id) != 0) {
            fail(rc, why, whylen, "key %.16s is listed under another key's id", id);
            goto out;
        }
        memcpy(r->keys[n].id, id, CRYPTO_FP_HEX_LEN);
        r->nkeys++;
    }
    if (!parse_role(json_object_get(roles, "root"), r, &r->root) ||
        !parse_role(json_object_get(roles, "release"), r, &r->release)) {
        fail(rc, why, whylen, "roles: each needs key ids of listed keys and a threshold");
        goto out;
    }
    rc = MAMORI_OK;
out:
    json_decref(o);
    return rc;
}

enum mamori_err upmeta_root_current(const struct upmeta_root *root, int64_t now_ms)
{
    return now_ms >= root->expires ? MAMORI_ERR_EXPIRED : MAMORI_OK;
}

enum mamori_err upmeta_root_first(const void *doc, size_t len, int64_t now_ms,
                                  struct upmeta_root *out, char *why, size_t whylen)
{
    char *text = NULL;
    struct sigs sg;
    enum mamori_err rc = envelope(doc, len, &text, &sg, why, whylen);
    if (!rc)
        rc = parse_root(text, out, why, whylen);
    if (!rc && upmeta_root_current(out, now_ms))
        rc = fail(MAMORI_ERR_EXPIRED, why, whylen, "root version %llu has expired",
                  (unsigned long long)out->version);
    if (!rc && valid_sigs(out, &out->root, text, &sg) < out->root.threshold)
        rc = fail(MAMORI_ERR_VERIFY, why, whylen, "root not signed by %u of its root keys",
                  out->root.threshold);
    free(text);
    return rc;
}

enum mamori_err upmeta_root_next(const struct upmeta_root *trusted, const void *doc, size_t len,
                                 bool check_expiry, int64_t now_ms, struct upmeta_root *out,
                                 char *why, size_t whylen)
{
    char *text = NULL;
    struct sigs sg;
    enum mamori_err rc = envelope(doc, len, &text, &sg, why, whylen);
    if (!rc)
        rc = parse_root(text, out, why, whylen);
    if (!rc && out->version != trusted->version + 1)
        rc = fail(MAMORI_ERR_VERIFY, why, whylen, "root version %llu does not follow %llu",
                  (unsigned long long)out->version, (unsigned long long)trusted->version);
    if (!rc && valid_sigs(trusted, &trusted->root, text, &sg) < trusted->root.threshold)
        rc = fail(MAMORI_ERR_VERIFY, why, whylen,
                  "root %llu not signed by %u of the previous root keys",
                  (unsigned long long)out->version, trusted->root.threshold);
    if (!rc && valid_sigs(out, &out->root, text, &sg) < out->root.threshold)
        rc = fail(MAMORI_ERR_VERIFY, why, whylen, "root %llu not signed by %u of its own root keys",
                  (unsigned long long)out->version, out->root.threshold);
    if (!rc && check_expiry && upmeta_root_current(out, now_ms))
        rc = fail(MAMORI_ERR_EXPIRED, why, whylen, "root version %llu has expired",
                  (unsigned long long)out->version);
    free(text);
    return rc;
}

static enum mamori_err parse_release(const char *text, struct upmeta_release *r, char *why,
                                     size_t whylen)
{
    static const char *const members[] = {"type",  "model",   "fw_version", "security_version",
                                          "floor", "expires", "image"};
    static const char *const im[] = {"sha256", "size"};
    json_t *o = NULL;
    const char *type, *model, *ver, *sha;
    memset(r, 0, sizeof(*r));
    if (json_parse_untrusted(text, strlen(text), UPMETA_SIGNED_MAX, &o, NULL, 0))
        return fail(MAMORI_ERR_PARSE, why, whylen, "signed text is not a JSON object");
    json_t *img = json_object_get(o, "image");
    enum mamori_err rc = MAMORI_OK;
    if (!only_members(o, members, 7) || !json_get_str(o, "type", 16, &type) ||
        strcmp(type, "release") != 0 || !json_get_str(o, "model", UPMETA_NAME_MAX, &model) ||
        !upmeta_name_ok(model) || !json_get_str(o, "fw_version", UPMETA_NAME_MAX, &ver) ||
        !upmeta_name_ok(ver) || !json_get_u64(o, "security_version", &r->security_version) ||
        !json_get_u64(o, "floor", &r->floor) || r->floor > r->security_version ||
        !get_i64(o, "expires", &r->expires) || !json_is_object(img) || !only_members(img, im, 2) ||
        !json_get_str(img, "sha256", 64, &sha) || !upmeta_hex64(sha) ||
        !json_get_u64(img, "size", &r->size) || r->size == 0 || r->size > UPMETA_IMAGE_MAX)
        rc = fail(MAMORI_ERR_PARSE, why, whylen, "not a release document");
    if (!rc) {
        snprintf(r->model, sizeof(r->model), "%s", model);
        snprintf(r->fw_version, sizeof(r->fw_version), "%s", ver);
        memcpy(r->sha256, sha, CRYPTO_FP_HEX_LEN);
    }
    json_decref(o);
    return rc;
}

enum mamori_err upmeta_release_verify(const struct upmeta_root *root, const void *doc, size_t len,
                                      int64_t now_ms, struct upmeta_release *out, char *why,
                                      size_t whylen)
{
    char *text = NULL;
    struct sigs sg;
    enum mamori_err rc = envelope(doc, len, &text, &sg, why, whylen);
    if (!rc)
        rc = parse_release(text, out, why, whylen);
    /* The signature before anything else is believed of it. */
    if (!rc && valid_sigs(root, &root->release, text, &sg) < root->release.threshold)
        rc = fail(MAMORI_ERR_VERIFY, why, whylen, "release not signed by %u release keys",
                  root->release.threshold);
    if (!rc && now_ms >= out->expires)
        rc = fail(MAMORI_ERR_EXPIRED, why, whylen, "release metadata has expired");
    free(text);
    return rc;
}

enum mamori_err upmeta_signed_text(const void *doc, size_t len, char **text)
{
    struct sigs sg;
    return envelope(doc, len, text, &sg, NULL, 0);
}

enum mamori_err upmeta_wrap(const char *text, char **out)
{
    json_t *e = json_pack("{s:s, s:[]}", "signed", text, "signatures");
    *out = e ? json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(e);
    return *out ? MAMORI_OK : MAMORI_ERR_NOMEM;
}

enum mamori_err upmeta_sign(const void *doc, size_t len, const struct crypto_key *key, char **out)
{
    char *text = NULL, b64[SIG_B64_MAX + 4], kid[CRYPTO_FP_HEX_LEN];
    struct sigs sg;
    uint8_t spki[CRYPTO_SPKI_MAX], sig[CRYPTO_SIG_MAX];
    size_t spki_len, sig_len;
    *out = NULL;
    enum mamori_err rc = envelope(doc, len, &text, &sg, NULL, 0);
    if (!rc)
        rc = crypto_key_spki(key, spki, &spki_len);
    if (!rc)
        rc = crypto_ecdsa_sign(key, text, strlen(text), sig, &sig_len);
    if (rc) {
        free(text);
        return rc;
    }
    crypto_key_id(spki, spki_len, kid);
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < sg.n; i++) {
        char ob[SIG_B64_MAX + 4];
        if (strcmp(sg.s[i].keyid, kid) == 0 ||
            !crypto_b64_encode(sg.s[i].sig, sg.s[i].len, ob, sizeof(ob)))
            continue;
        json_array_append_new(arr, json_pack("{s:s, s:s}", "keyid", sg.s[i].keyid, "sig", ob));
    }
    if (arr && json_array_size(arr) < UPMETA_KEYS_MAX &&
        crypto_b64_encode(sig, sig_len, b64, sizeof(b64)))
        json_array_append_new(arr, json_pack("{s:s, s:s}", "keyid", kid, "sig", b64));
    else
        rc = MAMORI_ERR_TOOBIG;
    json_t *e = !rc && arr ? json_pack("{s:s, s:O}", "signed", text, "signatures", arr) : NULL;
    if (!rc)
        *out = e ? json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(e);
    json_decref(arr);
    free(text);
    if (!rc && !*out)
        rc = MAMORI_ERR_NOMEM;
    return rc;
}
