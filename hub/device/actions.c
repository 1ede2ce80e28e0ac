/* hub/device/actions.c - a device's lifecycle actions, claim, visibility and commands issued. */
#include "hub/core/auth.h"
#include "hub/device/command.h"
#include "hub/device/device.h"
#include "hub/device/liveness.h"
#include "hub/device/relay.h"
#include "hub/pki/ca.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/proto.h"

/* Applies a lifecycle action. Lock held. */
static enum mamori_err transition_locked(struct hub *h, const struct principal *who,
                                         struct device_rec *d, enum lc_action action,
                                         const char *reason)
{
    enum lc_state from, to;
    if (!lc_state_parse(d->state, &from))
        return MAMORI_ERR_INTERNAL;
    enum mamori_err rc = lc_next(from, action, &to);
    if (rc)
        return rc;
    if ((rc = store_begin(h->store)))
        return rc;
    int64_t now = hub_now();
    rc = store_device_set_state(h->store, d->id, lc_state_name(to), now);
    if (!rc && action == LC_DECOMMISSION)
        rc = store_device_clear_claim(h->store, d->id);
    if (rc) {
        store_rollback(h->store);
        return rc;
    }
    char detail[96];
    snprintf(detail, sizeof(detail), "{\"from\":\"%s\",\"to\":\"%s\"}", lc_state_name(from),
             lc_state_name(to));
    char action_name[48];
    snprintf(action_name, sizeof(action_name), "device_%s", lc_action_name(action));
    if ((rc = hub_commit_audited(h, who, action_name, d->id, reason, detail)))
        return rc;
    snprintf(d->state, sizeof(d->state), "%s", lc_state_name(to));
    d->updated_at = now;
    /* Live effect: the plugin kicks the device when its access drops. */
    hub_push_device(h, d, (int)lc_access(to));
    if (lc_access(to) == LC_ACCESS_DENY)
        live_forget(h, d->id);
    return MAMORI_OK;
}

enum mamori_err hub_op_transition(struct hub *h, const struct principal *who, const char *device_id,
                                  enum lc_action action, const char *reason)
{
    struct device_rec d;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_device_get(h->store, device_id, &d);
    if (!rc)
        rc = transition_locked(h, who, &d, action, reason);
    pthread_mutex_unlock(&h->lock);
    return rc;
}

/* T07-L2b, T02-L1b: ownership needs the code printed with the device
 * (pairing-like), sent only over TLS. */
enum mamori_err hub_op_claim(struct hub *h, const struct principal *who, const char *code,
                             const char *peer, json_t **out, struct op_err *e)
{
    *out = NULL;
    if (who->role != ROLE_OWNER) {
        SET_ERR(e, "only owner accounts claim devices");
        return MAMORI_ERR_FORBIDDEN;
    }
    char key[48], canon[PROTO_CLAIM_CODE_CHARS + 1], ch[65];
    struct throttle_rec t;
    snprintf(key, sizeof(key), "claim:%" PRId64, who->user_id);
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = hub_throttled(h, key, &t, e);
    if (rc)
        goto out;
    struct device_rec d;
    rc = proto_claim_code_normalize(code, strlen(code), canon);
    if (!rc) {
        proto_claim_code_hash(canon, ch);
        crypto_wipe(canon, sizeof(canon));
        rc = store_device_by_claim(h->store, ch, &d);
    }
    if (rc) {
        /* Unknown or malformed: one answer, and failures are rate limited
         * per account, so the code space cannot be probed. */
        hub_throttle_fail(h, &THROTTLE_CLAIM, key, &t);
        hub_event(h, NULL, "claim_failed", "warning", "{\"user\":\"%s\",\"peer\":\"%s\"}",
                  who->name, peer);
        hub_audit_only(h, who, "claim_failed", "", "invalid or used claim code", peer);
        SET_ERR(e, "invalid claim code");
        rc = MAMORI_ERR_NOTFOUND;
        goto out;
    }
    if (d.owner_id) {
        /* The code was right, so this is no guessing attempt; the device
         * stays with its owner. */
        SET_ERR(e, "this device is already claimed");
        hub_event(h, d.id, "claim_reused", "warning", "{\"user\":\"%s\",\"peer\":\"%s\"}",
                  who->name, peer);
        hub_audit_only(h, who, "claim_refused", d.id, "device already claimed", peer);
        rc = MAMORI_ERR_STATE;
        goto out;
    }
    enum lc_state st, to;
    if (!lc_state_parse(d.state, &st) || lc_next(st, LC_CLAIM, &to)) {
        SET_ERR(e, "device %s cannot be claimed in state %s", d.id, d.state);
        rc = MAMORI_ERR_STATE;
        goto out;
    }
    if ((rc = store_begin(h->store)))
        goto out;
    int64_t now = hub_now();
    rc = store_device_claim(h->store, d.id, who->user_id, now);
    if (!rc)
        rc = store_device_set_state(h->store, d.id, lc_state_name(to), now);
    if (rc) {
        store_rollback(h->store);
        goto out;
    }
    log_if_err(store_throttle_clear(h->store, key));
    if ((rc = hub_commit_audited(h, who, "device_claim", d.id, "claim code accepted", peer)))
        goto out;
    hub_push_device(h, &d, (int)lc_access(to));
    if (!store_device_get(h->store, d.id, &d))
        *out = device_json(&d);
out:
    pthread_mutex_unlock(&h->lock);
    return rc;
}

/* Owners see only their own devices; others see all. Lock held. */
enum mamori_err hub_device_visible(struct hub *h, const struct principal *who, const char *id,
                                   struct device_rec *d)
{
    if (!proto_device_id_valid(id, strlen(id)))
        return MAMORI_ERR_NOTFOUND;
    enum mamori_err rc = store_device_get(h->store, id, d);
    if (rc)
        return rc;
    /* Another owner's device is "not found", not "forbidden": its existence
     * is not the caller's business either (T06-L1a). */
    if (who->role == ROLE_OWNER && d->owner_id != who->user_id)
        return MAMORI_ERR_NOTFOUND;
    return MAMORI_OK;
}

enum mamori_err hub_op_device_get(struct hub *h, const struct principal *who, const char *id,
                                  json_t **out)
{
    struct device_rec d;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = hub_device_visible(h, who, id, &d);
    *out = rc ? NULL : device_json(&d);
    if (*out)
        hub_device_view(h, &d, *out); /* P-UPD: firmware, advisories, support end */
    if (*out)
        relay_describe(h, id, *out); /* T09-L2b: the round trip it is held against */
    pthread_mutex_unlock(&h->lock);
    return rc;
}

struct list_ctx {
    json_t *arr;
    char last[24];
    int n;
};

static bool dev_cb(const struct device_rec *d, void *arg)
{
    struct list_ctx *c = arg;
    json_array_append_new(c->arr, device_json(d));
    snprintf(c->last, sizeof(c->last), "%s", d->id);
    c->n++;
    return true;
}

enum mamori_err hub_op_device_list(struct hub *h, const struct principal *who, const char *after,
                                   int limit, json_t **out)
{
    struct list_ctx c = {.arr = json_array()};
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_device_list(h->store, who->role == ROLE_OWNER ? who->user_id : 0,
                                           after, limit, dev_cb, &c);
    pthread_mutex_unlock(&h->lock);
    *out = json_pack("{s:o}", "devices", c.arr);
    if (c.n == limit)
        json_object_set_new(*out, "next", json_string(c.last));
    return rc;
}

/* Creates, audits and publishes a remote command. Lock held. */
enum mamori_err hub_command_issue(struct hub *h, const struct principal *who, const char *id,
                                  enum cmd_type t, int64_t ttl_ms, const char *reason,
                                  const char *args_json, struct command_rec *c)
{
    uint8_t nonce[16];
    enum mamori_err rc = crypto_random(nonce, sizeof(nonce));
    if (rc)
        return rc;
    memset(c, 0, sizeof(*c));
    crypto_hex(nonce, sizeof(nonce), c->id);
    snprintf(c->device_id, sizeof(c->device_id), "%s", id);
    snprintf(c->type, sizeof(c->type), "%s", cmd_type_name(t));
    if (snprintf(c->args, sizeof(c->args), "%s", args_json ? args_json : "{}") >=
        (int)sizeof(c->args))
        return MAMORI_ERR_TOOBIG;
    snprintf(c->issued_by, sizeof(c->issued_by), "%s", who->name);
    snprintf(c->status, sizeof(c->status), "pending");
    snprintf(c->result, sizeof(c->result), "{}");
    c->issued_at = c->updated_at = hub_now_ms();
    c->expires_at = c->issued_at + ttl_ms;
    if ((rc = store_begin(h->store)))
        return rc;
    if ((rc = store_command_add(h->store, c))) {
        store_rollback(h->store);
        return rc;
    }
    char action[32], detail[96];
    snprintf(action, sizeof(action), "command_%s", c->type);
    snprintf(detail, sizeof(detail), "{\"command\":\"%s\",\"expires_at\":%lld}", c->id,
             (long long)c->expires_at);
    if ((rc = hub_commit_audited(h, who, action, id, reason, detail)))
        return rc;
    cmd_publish(h, c);
    return MAMORI_OK;
}

json_t *command_json(const struct command_rec *c)
{
    json_t *res = json_loads(c->result, 0, NULL);
    return json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:s,s:o*}", "id", c->id, "device", c->device_id,
                     "type", c->type, "issued_by", c->issued_by, "issued_at",
                     (json_int_t)c->issued_at, "expires_at", (json_int_t)c->expires_at, "status",
                     c->status, "result", res);
}

/* The device command that follows a registry transition, if any. */
static bool command_of(enum lc_action a, enum cmd_type *t)
{
    switch (a) {
    case LC_LOCK:
        *t = CMD_LOCK;
        return true;
    case LC_UNLOCK:
        *t = CMD_UNLOCK;
        return true;
    case LC_QUARANTINE:
        *t = CMD_QUARANTINE;
        return true;
    case LC_RELEASE:
        *t = CMD_RELEASE;
        return true;
    default:
        return false;
    }
}

enum mamori_err hub_device_action_locked(struct hub *h, const struct principal *who,
                                         struct device_rec *d, enum lc_action a, const char *reason,
                                         json_t **command)
{
    enum cmd_type t;
    struct command_rec c;
    enum lc_state from, to;
    /* Disposal (T01-L5a, T02-L5a): a device that may still connect is told
     * to wipe itself before its access goes (best effort: an offline
     * device cannot hear it; its certificate is in the CRL either way). */
    bool wipe = a == LC_DECOMMISSION && lc_state_parse(d->state, &from) && !lc_next(from, a, &to) &&
                lc_access(from) != LC_ACCESS_DENY;
    if (wipe && hub_command_issue(h, who, d->id, CMD_WIPE, CMD_MAX_TTL_MS, reason, NULL, &c))
        log_warn("device %s: decommissioned without a wipe command", d->id);
    enum mamori_err rc = transition_locked(h, who, d, a, reason);
    if (!rc && (a == LC_DECOMMISSION || a == LC_REVOKE)) {
        char detail[160];
        snprintf(detail, sizeof(detail),
                 "{\"model\":\"%s\",\"cert_serial\":\"%s\",\"wipe_sent\":%s}", d->model,
                 d->cert_serial, wipe ? "true" : "false");
        /* its certificate goes into the CRL for other relying parties */
        log_if_err(ca_crl_write(h));
        if (a == LC_DECOMMISSION) {
            /* what the hub held of its use goes; the registry entry and the
             * audit log keep the device id, which names no person */
            log_if_err(store_device_data_erase(h->store, d->id, NULL));
            log_if_err(store_transfer_del(h->store, d->id));
            log_if_err(store_device_set_owner(h->store, d->id, 0, hub_now()));
        }
        hub_notice(h, a == LC_DECOMMISSION ? "device.decommissioned" : "device.revoked", d->id,
                   detail);
    }
    /* The registry changed; now tell the device itself (T03-L2b, T02-L3c).
     * A lock must reach a device that is offline now: it is kept for 30
     * days and sent again whenever the device comes back. */
    if (!rc && command_of(a, &t)) {
        if (hub_command_issue(h, who, d->id, t, CMD_MAX_TTL_MS, reason, NULL, &c) == MAMORI_OK) {
            if (command)
                *command = command_json(&c);
        } else {
            log_warn("device %s: %s recorded but the command was not issued", d->id,
                     lc_action_name(a));
        }
    }
    return rc;
}

enum mamori_err hub_op_device_action(struct hub *h, const struct principal *who, const char *id,
                                     const char *action, const char *reason, json_t **out,
                                     struct op_err *e)
{
    enum lc_action a;
    *out = NULL;
    if (!lc_action_parse(action, &a) || a == LC_CLAIM || a == LC_ACTIVATE || a == LC_STRAY_MARK) {
        SET_ERR(e, "unknown action '%s'", action);
        return MAMORI_ERR_NOTFOUND;
    }
    /* Owners may lock and unlock their own devices (T03-L2b: a stolen
     * device is put out of service by its owner); every other action is for
     * operators and administrators. */
    bool owner_ok = a == LC_LOCK || a == LC_UNLOCK || a == LC_CONFIRM;
    if (!hub_is_staff(who) && !(owner_ok && who->role == ROLE_OWNER))
        return MAMORI_ERR_FORBIDDEN;
    struct device_rec d;
    json_t *cj = NULL;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = hub_device_visible(h, who, id, &d);
    if (!rc) {
        rc = hub_device_action_locked(h, who, &d, a, reason, &cj);
        if (rc == MAMORI_ERR_STATE)
            SET_ERR(e, "cannot %s a device in state '%s'", action, d.state);
    }
    if (!rc) {
        *out = device_json(&d);
        if (*out && cj)
            json_object_set_new(*out, "command", cj);
        else
            json_decref(cj);
    }
    pthread_mutex_unlock(&h->lock);
    return rc;
}
