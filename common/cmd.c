/*
 * common/cmd.c - signed remote commands (cmd.h).
 */
#include "common/cmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/proto.h"

static const char *const NAMES[CMD_N_TYPES] = {
    "lock",   "unlock", "wipe",   "reboot",          "quarantine", "release", "self-test",
    "rotate", "cert",   "config", "config-rollback", "update",     "notice"};

const char *cmd_type_name(enum cmd_type t)
{
    return (unsigned)t < CMD_N_TYPES ? NAMES[t] : "?";
}

bool cmd_type_parse(const char *s, enum cmd_type *out)
{
    for (int i = 0; i < CMD_N_TYPES; i++)
        if (strcmp(s, NAMES[i]) == 0) {
            *out = (enum cmd_type)i;
            return true;
        }
    return false;
}

enum mamori_err cmd_build(const struct cmd *c, const struct crypto_key *key, const char *chain_pem,
                          char **out)
{
    *out = NULL;
    json_t *args = json_loads(c->args[0] ? c->args : "{}", JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(args)) {
        json_decref(args);
        return MAMORI_ERR_INVAL;
    }
    json_t *inner = json_pack("{s:s,s:s,s:s,s:I,s:I,s:o}", "id", c->id, "device", c->device, "type",
                              cmd_type_name(c->type), "iat", (json_int_t)c->iat, "exp",
                              (json_int_t)c->exp, "args", args);
    char *text = inner ? json_dump_compact(inner) : NULL;
    json_decref(inner);
    if (!text)
        return MAMORI_ERR_NOMEM;
    uint8_t sig[CRYPTO_SIG_MAX];
    size_t siglen;
    char b64[2 * CRYPTO_SIG_MAX];
    enum mamori_err rc = strlen(text) > CMD_TEXT_MAX ? MAMORI_ERR_TOOBIG : MAMORI_OK;
    if (!rc)
        rc = crypto_ecdsa_sign(key, text, strlen(text), sig, &siglen);
    if (!rc && crypto_b64_encode(sig, siglen, b64, sizeof(b64)) == 0)
        rc = MAMORI_ERR_INTERNAL;
    if (!rc) {
        json_t *msg =
            json_pack("{s:i,s:s,s:s,s:s}", "v", 1, "cmd", text, "sig", b64, "chain", chain_pem);
        *out = msg ? json_dump_compact(msg) : NULL;
        json_decref(msg);
        rc = *out ? MAMORI_OK : MAMORI_ERR_NOMEM;
    }
    free(text);
    return rc;
}

void cmd_msg_free(struct cmd_msg *m)
{
    json_decref(m->root);
    memset(m, 0, sizeof(*m));
}

enum mamori_err cmd_msg_parse(const void *payload, size_t len, struct cmd_msg *m)
{
    memset(m, 0, sizeof(*m));
    enum mamori_err rc = json_parse_untrusted(payload, len, PROTO_MAX_PAYLOAD, &m->root, NULL, 0);
    if (rc)
        return rc;
    uint64_t v;
    const char *sig;
    if (!json_get_u64(m->root, "v", &v) || v != 1 ||
        !json_get_str(m->root, "cmd", CMD_TEXT_MAX, &m->text) ||
        !json_get_str(m->root, "sig", 2 * CRYPTO_SIG_MAX, &sig) ||
        !json_get_str(m->root, "chain", 12 * 1024, &m->chain)) {
        cmd_msg_free(m);
        return MAMORI_ERR_PARSE;
    }
    m->text_len = strlen(m->text);
    m->chain_len = strlen(m->chain);
    if ((rc = crypto_b64_decode(sig, strlen(sig), m->sig, sizeof(m->sig), &m->siglen))) {
        cmd_msg_free(m);
        return rc;
    }
    return MAMORI_OK;
}

enum mamori_err cmd_msg_verify(const struct cmd_msg *m, const char *trust_pem,
                               char cache_fp[CRYPTO_FP_HEX_LEN])
{
    struct crypto_cert *signer = NULL;
    char fp[CRYPTO_FP_HEX_LEN], cn[64];
    enum mamori_err rc = crypto_cert_parse(m->chain, m->chain_len, &signer);
    if (rc)
        return MAMORI_ERR_VERIFY;
    crypto_cert_fingerprint(signer, fp);
    if (!cache_fp[0] || !crypto_ct_eq(fp, cache_fp, CRYPTO_FP_HEX_LEN)) {
        /* A new signer: it must chain to the platform root and be the
         * hub's command signer, not any other certificate of the platform
         * (a device's own certificate chains there too). */
        if (crypto_cert_cn(signer, cn, sizeof(cn)) || strcmp(cn, CMD_SIGNER_CN) != 0)
            rc = MAMORI_ERR_VERIFY;
        else
            rc = crypto_cert_verify_chain(signer, m->chain, m->chain_len, trust_pem);
        if (!rc)
            memcpy(cache_fp, fp, CRYPTO_FP_HEX_LEN);
    }
    if (!rc)
        rc = crypto_cert_verify_sig(signer, m->text, m->text_len, m->sig, m->siglen);
    crypto_cert_free(signer);
    return rc ? MAMORI_ERR_VERIFY : MAMORI_OK;
}

static bool hex_id(const char *s)
{
    if (strlen(s) != 32)
        return false;
    for (int i = 0; i < 32; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

enum mamori_err cmd_parse(const char *text, size_t len, struct cmd *c)
{
    json_t *j = NULL;
    memset(c, 0, sizeof(*c));
    enum mamori_err rc = json_parse_untrusted(text, len, CMD_TEXT_MAX, &j, NULL, 0);
    if (rc)
        return rc;
    const char *id, *dev, *type;
    json_t *iat = json_object_get(j, "iat"), *exp = json_object_get(j, "exp");
    json_t *args = json_object_get(j, "args");
    char *at = NULL;
    if (json_object_size(j) != 6 || !json_get_str(j, "id", 32, &id) || !hex_id(id) ||
        !json_get_str(j, "device", PROTO_DEVICE_ID_LEN, &dev) ||
        !proto_device_id_valid(dev, strlen(dev)) || !json_get_str(j, "type", 16, &type) ||
        !cmd_type_parse(type, &c->type) || !json_is_integer(iat) || !json_is_integer(exp) ||
        !json_is_object(args) || !(at = json_dump_compact(args)) || strlen(at) >= sizeof(c->args)) {
        free(at);
        json_decref(j);
        memset(c, 0, sizeof(*c));
        return MAMORI_ERR_PARSE;
    }
    snprintf(c->id, sizeof(c->id), "%s", id);
    snprintf(c->device, sizeof(c->device), "%s", dev);
    snprintf(c->args, sizeof(c->args), "%s", at);
    c->iat = (int64_t)json_integer_value(iat);
    c->exp = (int64_t)json_integer_value(exp);
    free(at);
    json_decref(j);
    return MAMORI_OK;
}

enum mamori_err cmd_check(const struct cmd *c, const char *device_id, int64_t now_ms)
{
    if (strcmp(c->device, device_id) != 0)
        return MAMORI_ERR_FORBIDDEN;
    if (c->exp <= c->iat || c->exp - c->iat > CMD_MAX_TTL_MS)
        return MAMORI_ERR_INVAL;
    if (now_ms > c->exp || now_ms + CMD_SKEW_MS < c->iat)
        return MAMORI_ERR_EXPIRED;
    return MAMORI_OK;
}
