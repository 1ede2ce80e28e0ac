/*
 * cli/release.c - the release signer's offline tools (see release.h).
 */
#include "cli/release.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/crypto.h"
#include "common/fsutil.h"
#include "common/json.h"
#include "common/upmeta.h"

#define PUB_MAX 512

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static enum mamori_err say(enum mamori_err rc, char *why, size_t whylen, const char *msg,
                           const char *arg)
{
    if (why && whylen)
        snprintf(why, whylen, "%s%s%s", msg, arg ? ": " : "", arg ? arg : "");
    return rc;
}

enum mamori_err release_keygen(const char *prefix, char id_out[65])
{
    char kp[4096], pp[4096], b64[2 * CRYPTO_SPKI_MAX];
    uint8_t spki[CRYPTO_SPKI_MAX];
    size_t n;
    struct stat st;
    struct crypto_key *k = NULL;
    if (snprintf(kp, sizeof(kp), "%s.key", prefix) >= (int)sizeof(kp) ||
        snprintf(pp, sizeof(pp), "%s.pub", prefix) >= (int)sizeof(pp))
        return MAMORI_ERR_TOOBIG;
    if (stat(kp, &st) == 0 || stat(pp, &st) == 0)
        return MAMORI_ERR_EXISTS; /* a signing key is never replaced by accident */
    enum mamori_err rc = crypto_key_generate(&k);
    if (!rc)
        rc = crypto_key_spki(k, spki, &n);
    if (!rc && !crypto_b64_encode(spki, n, b64, sizeof(b64) - 1))
        rc = MAMORI_ERR_TOOBIG;
    if (!rc)
        rc = crypto_key_save(k, kp);
    if (!rc) {
        size_t l = strlen(b64);
        b64[l] = '\n';
        rc = fs_write_atomic(pp, b64, l + 1, 0644);
        b64[l] = '\0';
    }
    if (!rc)
        crypto_key_id(spki, n, id_out);
    crypto_key_free(k);
    return rc;
}

/* Reads a .pub file: its base64 SPKI (checked to be a P-256 key) and id. */
static enum mamori_err read_pub(const char *path, char *b64, size_t b64len, char id[65])
{
    char *txt = NULL;
    size_t len;
    uint8_t spki[CRYPTO_SPKI_MAX];
    size_t n;
    struct crypto_pubkey *pub = NULL;
    enum mamori_err rc = fs_read_file(path, PUB_MAX, &txt, &len);
    if (rc)
        return rc;
    txt[strcspn(txt, "\r\n")] = '\0';
    if (strlen(txt) >= b64len || crypto_b64_decode(txt, strlen(txt), spki, sizeof(spki), &n) ||
        crypto_pubkey_parse(spki, n, &pub))
        rc = MAMORI_ERR_PARSE;
    crypto_pubkey_free(pub);
    if (!rc) {
        snprintf(b64, b64len, "%s", txt);
        crypto_key_id(spki, n, id);
    }
    free(txt);
    return rc;
}

/* Adds every key of a comma-separated list to keys and ids. */
static enum mamori_err add_pubs(const char *list, json_t *keys, json_t *ids, char *why,
                                size_t whylen)
{
    char *copy = strdup(list ? list : ""), *save = NULL;
    enum mamori_err rc = copy ? MAMORI_OK : MAMORI_ERR_NOMEM;
    for (char *f = copy ? strtok_r(copy, ",", &save) : NULL; f && !rc;
         f = strtok_r(NULL, ",", &save)) {
        char b64[2 * CRYPTO_SPKI_MAX], id[65];
        if ((rc = read_pub(f, b64, sizeof(b64), id))) {
            say(rc, why, whylen, "not a public key file", f);
            break;
        }
        json_object_set_new(keys, id, json_string(b64));
        json_array_append_new(ids, json_string(id));
    }
    free(copy);
    return rc;
}

static enum mamori_err write_wrapped(json_t *o, const char *out)
{
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER), *doc = NULL;
    enum mamori_err rc = text ? upmeta_wrap(text, &doc) : MAMORI_ERR_NOMEM;
    if (!rc)
        rc = fs_write_atomic(out, doc, strlen(doc), 0644);
    free(text);
    free(doc);
    return rc;
}

enum mamori_err release_root_create(const struct release_root_opts *o, const char *out, char *why,
                                    size_t whylen)
{
    json_t *keys = json_object(), *rk = json_array(), *lk = json_array();
    enum mamori_err rc = add_pubs(o->root_pubs, keys, rk, why, whylen);
    if (!rc)
        rc = add_pubs(o->release_pubs, keys, lk, why, whylen);
    if (!rc && (json_array_size(rk) == 0 || json_array_size(lk) == 0 || o->root_threshold < 1 ||
                o->root_threshold > json_array_size(rk) || o->release_threshold < 1 ||
                o->release_threshold > json_array_size(lk) || o->version < 1))
        rc = say(MAMORI_ERR_INVAL, why, whylen,
                 "each role needs keys and a threshold between 1 and their number", NULL);
    json_t *root = NULL;
    if (!rc)
        root = json_pack("{s:s, s:I, s:I, s:O, s:{s:{s:O, s:i}, s:{s:O, s:i}}}", "type", "root",
                         "version", (json_int_t)o->version, "expires", (json_int_t)o->expires_ms,
                         "keys", keys, "roles", "root", "keyids", rk, "threshold",
                         (int)o->root_threshold, "release", "keyids", lk, "threshold",
                         (int)o->release_threshold);
    if (!rc)
        rc = root ? write_wrapped(root, out) : MAMORI_ERR_NOMEM;
    json_decref(root);
    json_decref(keys);
    json_decref(rk);
    json_decref(lk);
    return rc;
}

enum mamori_err release_manifest_create(const struct release_manifest_opts *o, const char *out,
                                        char *why, size_t whylen)
{
    uint8_t h[CRYPTO_SHA256_LEN];
    char hex[CRYPTO_FP_HEX_LEN];
    uint64_t size = 0;
    if (!o->model || !*o->model || strlen(o->model) > UPMETA_NAME_MAX || !o->fw_version ||
        !*o->fw_version || strlen(o->fw_version) > UPMETA_NAME_MAX ||
        o->floor > o->security_version)
        return say(MAMORI_ERR_INVAL, why, whylen,
                   "need --model, --fw-version (64 chars at most) and --floor <= "
                   "--security-version",
                   NULL);
    enum mamori_err rc = crypto_sha256_file(o->image, UPMETA_IMAGE_MAX, h, &size);
    if (rc)
        return say(rc, why, whylen, "cannot hash the image", mamori_strerror(rc));
    if (size == 0)
        return say(MAMORI_ERR_INVAL, why, whylen, "the image is empty", NULL);
    crypto_hex(h, sizeof(h), hex);
    json_t *m =
        json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:{s:s, s:I}}", "type", "release", "model",
                  o->model, "fw_version", o->fw_version, "security_version",
                  (json_int_t)o->security_version, "floor", (json_int_t)o->floor, "expires",
                  (json_int_t)o->expires_ms, "image", "sha256", hex, "size", (json_int_t)size);
    rc = m ? write_wrapped(m, out) : MAMORI_ERR_NOMEM;
    json_decref(m);
    return rc;
}

enum mamori_err release_sign(const char *file, const char *key_path, char *why, size_t whylen)
{
    char *doc = NULL, *signed_doc = NULL;
    size_t len;
    struct crypto_key *k = NULL;
    enum mamori_err rc = fs_read_file(file, UPMETA_DOC_MAX, &doc, &len);
    if (rc)
        return say(rc, why, whylen, "cannot read", file);
    if ((rc = fs_check_private(key_path, 0)) || (rc = crypto_key_load(key_path, &k)))
        say(rc, why, whylen, "signing key refused (must be ours, mode 0600)", key_path);
    if (!rc && (rc = upmeta_sign(doc, len, k, &signed_doc)))
        say(rc, why, whylen, "not a signed document, or no room for another signature", file);
    if (!rc)
        rc = fs_write_atomic(file, signed_doc, strlen(signed_doc), 0644);
    crypto_key_free(k);
    free(doc);
    free(signed_doc);
    return rc;
}

enum mamori_err release_verify(const char *roots, const char *release_file, const char *image,
                               char *out, size_t outlen)
{
    struct upmeta_root r;
    char *copy = strdup(roots ? roots : ""), *save = NULL, why[200] = "";
    int64_t now = now_ms();
    enum mamori_err rc = copy ? MAMORI_OK : MAMORI_ERR_NOMEM;
    size_t n = 0;
    for (char *f = copy ? strtok_r(copy, ",", &save) : NULL; f && !rc;
         f = strtok_r(NULL, ",", &save), n++) {
        char *doc = NULL;
        size_t len;
        struct upmeta_root next;
        if ((rc = fs_read_file(f, UPMETA_DOC_MAX, &doc, &len))) {
            snprintf(why, sizeof(why), "cannot read %s", f);
            break;
        }
        /* roots on the way may have expired; the newest is checked below */
        rc = n == 0 ? upmeta_root_first(doc, len, INT64_MIN, &r, why, sizeof(why))
                    : upmeta_root_next(&r, doc, len, false, now, &next, why, sizeof(why));
        if (!rc && n > 0)
            r = next;
        free(doc);
    }
    free(copy);
    if (!rc && n == 0)
        rc = MAMORI_ERR_INVAL, snprintf(why, sizeof(why), "no root given");
    if (!rc && (rc = upmeta_root_current(&r, now)))
        snprintf(why, sizeof(why), "root version %llu has expired", (unsigned long long)r.version);
    if (rc) {
        snprintf(out, outlen, "refused: %s", why);
        return rc;
    }
    if (!release_file) {
        snprintf(out, outlen,
                 "root version %llu trusted (%zu keys; root %u of %zu, release %u of %zu)",
                 (unsigned long long)r.version, r.nkeys, r.root.threshold, r.root.nkeyids,
                 r.release.threshold, r.release.nkeyids);
        return MAMORI_OK;
    }
    char *doc = NULL;
    size_t len;
    struct upmeta_release m;
    if ((rc = fs_read_file(release_file, UPMETA_DOC_MAX, &doc, &len))) {
        snprintf(out, outlen, "refused: cannot read %s", release_file);
        return rc;
    }
    rc = upmeta_release_verify(&r, doc, len, now, &m, why, sizeof(why));
    free(doc);
    if (rc) {
        snprintf(out, outlen, "refused: %s", why);
        return rc;
    }
    if (image) {
        uint8_t h[CRYPTO_SHA256_LEN];
        char hex[CRYPTO_FP_HEX_LEN];
        uint64_t size = 0;
        rc = crypto_sha256_file(image, m.size, h, &size);
        if (!rc) {
            crypto_hex(h, sizeof(h), hex);
            if (size != m.size || !crypto_ct_eq(hex, m.sha256, 64))
                rc = MAMORI_ERR_VERIFY;
        }
        if (rc) {
            snprintf(out, outlen, "refused: the image is not the one the release names (%s)",
                     rc == MAMORI_ERR_TOOBIG ? "larger" : "digest or size differs");
            return rc;
        }
    }
    snprintf(out, outlen,
             "release %s for model %s: security version %llu, floor %llu, image %llu bytes "
             "sha256 %s%s; signed under root version %llu",
             m.fw_version, m.model, (unsigned long long)m.security_version,
             (unsigned long long)m.floor, (unsigned long long)m.size, m.sha256,
             image ? " (image matches)" : "", (unsigned long long)r.version);
    return MAMORI_OK;
}
