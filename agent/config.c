/*
 * agent/config.c - parsing of mamori-agent's configuration (config.h).
 */
#include "agent/config.h"

#include <stdio.h>
#include <string.h>

#include "common/crypto.h"
#include "common/json.h"

#define WHY(...) (snprintf(why, whylen, __VA_ARGS__), MAMORI_ERR_PARSE)

static bool path_ok(const char *p)
{
    /* Absolute, and no ".." component: the agent runs with privileges a
     * relative or climbing path could misdirect. */
    if (p[0] != '/')
        return false;
    for (const char *s = p; (s = strstr(s, "..")) != NULL; s += 2)
        if ((s == p || s[-1] == '/') && (s[2] == '\0' || s[2] == '/'))
            return false;
    return true;
}

static enum mamori_err get_path(json_t *j, const char *k, bool required, char *out, size_t outlen,
                                char *why, size_t whylen)
{
    const char *v;
    if (!json_object_get(j, k)) {
        if (required)
            return WHY("%s is required", k);
        return MAMORI_OK;
    }
    if (!json_get_str(j, k, outlen - 1, &v) || !path_ok(v))
        return WHY("%s must be an absolute path without '..' (at most %zu bytes)", k, outlen - 1);
    snprintf(out, outlen, "%s", v);
    return MAMORI_OK;
}

/* An optional whole number in lo..hi (out untouched when absent). */
static enum mamori_err get_uint(json_t *j, const char *k, unsigned lo, unsigned hi, unsigned *out,
                                char *why, size_t whylen)
{
    uint64_t n;
    if (!json_object_get(j, k))
        return MAMORI_OK;
    if (!json_get_u64(j, k, &n) || n < lo || n > hi)
        return WHY("%s must be %u..%u", k, lo, hi);
    *out = (unsigned)n;
    return MAMORI_OK;
}

enum mamori_err agent_config_parse(const void *data, size_t len, struct agent_config *c, char *why,
                                   size_t whylen)
{
    static const char *const KEYS[] = {
        "identity_dir",     "state_dir",        "socket",         "schema_file",    "heartbeat_s",
        "outbox_max",       "broker_host",      "broker_port",    "reboot_command", "keystore",
        "tpm_tcti",         "update_slots_dir", "update_trial_s", "update_check_s", "update_hook",
        "update_install_s", "update_rate_kbps"};
    json_t *j = NULL;
    memset(c, 0, sizeof(*c));
    enum mamori_err rc = json_parse_untrusted(data, len, AGENT_CONFIG_MAX, &j, why, whylen);
    if (rc)
        return rc;
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v)
    {
        bool known = false;
        for (size_t i = 0; i < sizeof(KEYS) / sizeof(KEYS[0]); i++)
            known |= strcmp(k, KEYS[i]) == 0;
        if (!known) {
            rc = WHY("unknown key '%.40s'", k);
            goto out;
        }
    }
    if ((rc = get_path(j, "identity_dir", true, c->identity_dir, sizeof(c->identity_dir), why,
                       whylen)) ||
        (rc = get_path(j, "state_dir", true, c->state_dir, sizeof(c->state_dir), why, whylen)) ||
        (rc = get_path(j, "socket", false, c->socket, sizeof(c->socket), why, whylen)) ||
        (rc = get_path(j, "schema_file", false, c->schema_file, sizeof(c->schema_file), why,
                       whylen)) ||
        (rc = get_path(j, "reboot_command", false, c->reboot_command, sizeof(c->reboot_command),
                       why, whylen)) ||
        (rc = get_path(j, "update_slots_dir", false, c->update_slots_dir,
                       sizeof(c->update_slots_dir), why, whylen)) ||
        (rc = get_path(j, "update_hook", false, c->update_hook, sizeof(c->update_hook), why,
                       whylen)))
        goto out;
    if (c->update_slots_dir[0] && c->update_hook[0]) {
        rc = WHY("update_slots_dir and update_hook: one update backend, not both");
        goto out;
    }
    if (!c->socket[0] && snprintf(c->socket, sizeof(c->socket), "%s/agent.sock", c->state_dir) >=
                             (int)sizeof(c->socket)) {
        rc = WHY("state_dir too long for the default socket path");
        goto out;
    }
    const char *ks = "file";
    enum crypto_keystore kk;
    if (json_object_get(j, "keystore") &&
        (!json_get_str(j, "keystore", 7, &ks) || !crypto_keystore_parse(ks, &kk))) {
        rc = WHY("keystore must be \"file\" or \"tpm2\"");
        goto out;
    }
    snprintf(c->keystore, sizeof(c->keystore), "%s", ks);
    if (json_object_get(j, "tpm_tcti")) {
        const char *t;
        if (strcmp(ks, "tpm2") != 0 || !json_get_str(j, "tpm_tcti", sizeof(c->tpm_tcti) - 1, &t) ||
            !t[0]) {
            rc = WHY("tpm_tcti is a TCTI string, for keystore \"tpm2\" only");
            goto out;
        }
        snprintf(c->tpm_tcti, sizeof(c->tpm_tcti), "%s", t);
    }
    uint64_t n;
    c->heartbeat_s = 30;
    if ((rc = get_uint(j, "heartbeat_s", 1, 3600, &c->heartbeat_s, why, whylen)))
        goto out;
    if ((rc = get_uint(j, "update_trial_s", 5, 86400, &c->update_trial_s, why, whylen)) ||
        (rc = get_uint(j, "update_check_s", 1, 7 * 86400, &c->update_check_s, why, whylen)) ||
        (rc = get_uint(j, "update_install_s", 10, 86400, &c->update_install_s, why, whylen)) ||
        (rc = get_uint(j, "update_rate_kbps", 2, 10000000, &c->update_rate_kbps, why, whylen)))
        goto out;
    if (json_object_get(j, "outbox_max")) {
        if (!json_get_u64(j, "outbox_max", &n) || n < 16 || n > 10000000) {
            rc = WHY("outbox_max must be 16..10000000");
            goto out;
        }
        c->outbox_max = (size_t)n;
    }
    if (json_object_get(j, "broker_host")) {
        const char *h;
        if (!json_get_str(j, "broker_host", sizeof(c->broker_host) - 1, &h) || !h[0]) {
            rc = WHY("broker_host must be a host name or address");
            goto out;
        }
        snprintf(c->broker_host, sizeof(c->broker_host), "%s", h);
    }
    if (json_object_get(j, "broker_port")) {
        if (!json_get_u64(j, "broker_port", &n) || n < 1 || n > 65535) {
            rc = WHY("broker_port must be 1..65535");
            goto out;
        }
        c->broker_port = (int)n;
    }
out:
    json_decref(j);
    return rc;
}
