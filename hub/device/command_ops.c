/* hub/device/command_ops.c - remote commands and settings as principals ask for them. */
#include "common/devcfg.h"
#include "common/cmd.h"
#include "hub/device/device.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/proto.h"

/* ---- remote commands ---- */

enum mamori_err hub_op_command(struct hub *h, const struct principal *who, const char *id,
                               const char *type, const char *reason, int64_t ttl_s, json_t **out,
                               struct op_err *e)
{
    enum cmd_type t;
    *out = NULL;
    if (!cmd_type_parse(type, &t)) {
        SET_ERR(e, "unknown command '%s'", type);
        return MAMORI_ERR_INVAL;
    }
    /* Lock, unlock, quarantine and release change the registry too. */
    if (t == CMD_LOCK || t == CMD_UNLOCK || t == CMD_QUARANTINE || t == CMD_RELEASE)
        return hub_op_device_action(h, who, id, type, reason, out, e);
    /* Certificates reach devices only through a rotation the hub runs;
     * settings only with their document (POST .../config). */
    if (t == CMD_CERT) {
        SET_ERR(e, "'cert' is sent by the hub during a rotation; issue 'rotate'");
        return MAMORI_ERR_INVAL;
    }
    if (t == CMD_CONFIG) {
        SET_ERR(e, "settings go to POST /devices/{id}/config");
        return MAMORI_ERR_INVAL;
    }
    if (t == CMD_UPDATE || t == CMD_NOTICE) {
        SET_ERR(e, "%s",
                t == CMD_UPDATE ? "releases go out with 'firmware deploy' or a campaign"
                                : "notices are sent by the hub from its advisories and support "
                                  "periods");
        return MAMORI_ERR_INVAL;
    }
    /* Owners may test and wipe their own device; reboots are operators'. */
    if (!hub_is_staff(who) && !(who->role == ROLE_OWNER && (t == CMD_SELF_TEST || t == CMD_WIPE)))
        return MAMORI_ERR_FORBIDDEN;
    int64_t ttl_ms = ttl_s > 0 ? ttl_s * 1000 : 24 * 3600 * 1000LL;
    if (ttl_ms < 10000 || ttl_ms > CMD_MAX_TTL_MS) {
        SET_ERR(e, "ttl_s must be 10 s to 30 days");
        return MAMORI_ERR_INVAL;
    }
    struct device_rec d;
    struct command_rec c;
    enum lc_state st;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = hub_device_visible(h, who, id, &d);
    if (!rc && (!lc_state_parse(d.state, &st) || lc_access(st) == LC_ACCESS_DENY)) {
        SET_ERR(e, "a device in state '%s' cannot receive commands", d.state);
        rc = MAMORI_ERR_STATE;
    }
    if (!rc && t == CMD_ROTATE) {
        /* The rotation's own validity; the policy sees it was asked. */
        rc = store_device_rotation_asked(h->store, id, hub_now());
        if (!rc)
            rc = hub_command_issue(h, who, id, t, ttl_ms, reason, NULL, &c);
    } else if (!rc) {
        rc = hub_command_issue(h, who, id, t, ttl_ms, reason, NULL, &c);
    }
    if (!rc)
        *out = command_json(&c);
    pthread_mutex_unlock(&h->lock);
    return rc;
}

/* T01-L3c, T08-*: remote settings come only from the hub, signed, checked
 * here with the device's own parser, numbered per device (the device takes
 * only a newer version), and audited. */
enum mamori_err hub_op_config(struct hub *h, const struct principal *who, const char *id,
                              json_t *settings, const char *reason, json_t **out, struct op_err *e)
{
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    char *txt = json_is_object(settings) ? json_dump_compact(settings) : NULL;
    struct devcfg cfg;
    char why[160] = "settings must be an object";
    if (!txt || devcfg_parse(txt, strlen(txt), &cfg, why, sizeof(why))) {
        free(txt);
        SET_ERR(e, "%s", why);
        return MAMORI_ERR_INVAL;
    }
    struct device_rec d;
    struct command_rec c;
    enum lc_state st;
    char key[64], val[32];
    unsigned long long ver = 0;
    snprintf(key, sizeof(key), "cfgver:%s", id);
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = hub_device_visible(h, who, id, &d);
    if (!rc && (!lc_state_parse(d.state, &st) || lc_access(st) == LC_ACCESS_DENY)) {
        SET_ERR(e, "a device in state '%s' cannot receive commands", d.state);
        rc = MAMORI_ERR_STATE;
    }
    if (!rc && store_meta_get(h->store, key, val, sizeof(val)) == MAMORI_OK)
        ver = strtoull(val, NULL, 10);
    ver++;
    json_t *args = NULL;
    char *atxt = NULL;
    if (!rc &&
        (!(args = json_pack("{s:I,s:O}", "version", (json_int_t)ver, "settings", settings)) ||
         !(atxt = json_dump_compact(args))))
        rc = MAMORI_ERR_NOMEM;
    if (!rc) {
        snprintf(val, sizeof(val), "%llu", ver);
        rc = store_meta_set(h->store, key, val);
    }
    if (!rc)
        rc = hub_command_issue(h, who, id, CMD_CONFIG, 7LL * 24 * 3600 * 1000, reason, atxt, &c);
    if (!rc)
        *out = command_json(&c);
    pthread_mutex_unlock(&h->lock);
    json_decref(args);
    free(atxt);
    free(txt);
    return rc;
}

struct cmd_list {
    json_t *arr;
};

static bool cmd_list_one(const struct command_rec *c, void *arg)
{
    struct cmd_list *l = arg;
    json_array_append_new(l->arr, command_json(c));
    return true;
}

enum mamori_err hub_op_command_list(struct hub *h, const struct principal *who, const char *id,
                                    int limit, json_t **out)
{
    struct device_rec d;
    struct cmd_list l = {.arr = json_array()};
    *out = NULL;
    if (!l.arr)
        return MAMORI_ERR_NOMEM;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = hub_device_visible(h, who, id, &d);
    if (!rc)
        rc = store_command_list(h->store, id, false, 0, limit, cmd_list_one, &l);
    pthread_mutex_unlock(&h->lock);
    if (rc) {
        json_decref(l.arr);
        return rc;
    }
    *out = json_pack("{s:s,s:o}", "device", id, "commands", l.arr);
    return *out ? MAMORI_OK : MAMORI_ERR_NOMEM;
}
