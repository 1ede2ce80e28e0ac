/*
 * hub/owners/owners.c - ownership transfer and data rights (see owners.h);
 * P-OWNER, P-DATA.
 */
#include "hub/device/device.h"
#include "hub/device/telemetry.h"
#include "hub/owners/owners.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/proto.h"
#include "hub/core/auth.h"
#include "hub/device/lifecycle.h"

#define TRANSFER_TTL_S  (7 * 24 * 3600)
#define EXPORT_ROWS_MAX 100000 /* telemetry rows per device in one export */
#define EXPORT_PAGE     1000

/* The owner's own, live device. Lock held. */
static enum mamori_err own_device(struct hub *h, const struct principal *who, const char *id,
                                  struct device_rec *d, struct op_err *e)
{
    enum lc_state st;
    if (who->role != ROLE_OWNER) {
        SET_ERR(e, "only the device's owner transfers it");
        return MAMORI_ERR_FORBIDDEN;
    }
    if (!proto_device_id_valid(id, strlen(id)) || store_device_get(h->store, id, d) ||
        d->owner_id != who->user_id)
        return MAMORI_ERR_NOTFOUND;
    if (!lc_state_parse(d->state, &st) || st == LC_REVOKED || st == LC_DECOMMISSIONED) {
        SET_ERR(e, "a device in state '%s' cannot change hands", d->state);
        return MAMORI_ERR_STATE;
    }
    return MAMORI_OK;
}

enum mamori_err hub_op_transfer_start(struct hub *h, const struct principal *who, const char *id,
                                      const char *data, json_t **out, struct op_err *e)
{
    struct device_rec d;
    struct transfer_rec t;
    char code[PROTO_CLAIM_CODE_TEXT + 1], canon[PROTO_CLAIM_CODE_CHARS + 1];
    *out = NULL;
    if (strcmp(data, "export") != 0 && strcmp(data, "erase") != 0) {
        SET_ERR(e, "data: \"export\" (you keep a copy, then it is erased) or \"erase\"");
        return MAMORI_ERR_INVAL;
    }
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = own_device(h, who, id, &d, e);
    if (!rc && !(rc = proto_claim_code_new(code)) &&
        !(rc = proto_claim_code_normalize(code, strlen(code), canon))) {
        memset(&t, 0, sizeof(t));
        snprintf(t.device_id, sizeof(t.device_id), "%s", id);
        proto_claim_code_hash(canon, t.code_hash);
        crypto_wipe(canon, sizeof(canon));
        t.from_user = who->user_id;
        snprintf(t.data, sizeof(t.data), "%s", data);
        t.created_at = hub_now();
        t.expires_at = t.created_at + TRANSFER_TTL_S;
        char detail[64];
        snprintf(detail, sizeof(detail), "{\"data\":\"%s\"}", data);
        if (!(rc = store_begin(h->store))) {
            rc = store_transfer_put(h->store, &t);
            if (rc)
                store_rollback(h->store);
            else
                rc = hub_commit_audited(h, who, "transfer_started", id, "", detail);
        }
        if (!rc) /* the code is shown this once; only its hash is kept */
            *out = json_pack("{s:s, s:s, s:s, s:I}", "device", id, "code", code, "data", data,
                             "expires_at", (json_int_t)t.expires_at);
    }
    crypto_wipe(code, sizeof(code));
    pthread_mutex_unlock(&h->lock);
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}

enum mamori_err hub_op_transfer_cancel(struct hub *h, const struct principal *who, const char *id,
                                       json_t **out, struct op_err *e)
{
    struct device_rec d;
    struct transfer_rec t;
    *out = NULL;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = own_device(h, who, id, &d, e);
    if (!rc && (rc = store_transfer_find(h->store, id, NULL, &t)) == MAMORI_ERR_NOTFOUND)
        SET_ERR(e, "no transfer under way for this device");
    if (!rc && !(rc = store_begin(h->store))) {
        rc = store_transfer_del(h->store, id);
        if (rc)
            store_rollback(h->store);
        else
            rc = hub_commit_audited(h, who, "transfer_cancelled", id, "", "");
    }
    pthread_mutex_unlock(&h->lock);
    if (!rc)
        *out = json_pack("{s:s, s:b}", "device", id, "cancelled", 1);
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}

/* --- exports ------------------------------------------------------------- */

/* What the hub holds of one device, read as who (owners: their own). */
static json_t *device_export(struct hub *h, const struct principal *who, const char *id)
{
    json_t *dev = NULL, *ev = NULL, *cmds = NULL, *rows = json_array();
    bool truncated = false;
    int64_t after = 0;
    if (hub_op_device_get(h, who, id, &dev) || !rows) {
        json_decref(dev);
        json_decref(rows);
        return NULL;
    }
    for (;;) {
        json_t *page = NULL;
        if (hub_op_telemetry(h, who, id, 0, INT64_MAX, after, EXPORT_PAGE, &page)) {
            json_decref(page);
            break;
        }
        json_array_extend(rows, json_object_get(page, "items"));
        json_t *next = json_object_get(page, "next");
        after = json_is_integer(next) ? (int64_t)json_integer_value(next) : 0;
        json_decref(page);
        if (!after)
            break;
        if (json_array_size(rows) >= EXPORT_ROWS_MAX) {
            truncated = true;
            break;
        }
    }
    if (hub_op_events(h, who, id, 0, 1000, &ev)) {
        json_decref(ev);
        ev = NULL;
    }
    if (hub_op_command_list(h, who, id, 1000, &cmds)) {
        json_decref(cmds);
        cmds = NULL;
    }
    json_t *evs = ev ? json_incref(json_object_get(ev, "events")) : NULL;
    json_t *cs = cmds ? json_incref(json_object_get(cmds, "commands")) : NULL;
    json_decref(ev);
    json_decref(cmds);
    return json_pack("{s:o, s:o, s:b, s:o, s:o}", "device", dev, "telemetry", rows,
                     "telemetry_truncated", truncated, "events", evs ? evs : json_array(),
                     "commands", cs ? cs : json_array());
}

/* --- accepting --------------------------------------------------------- */

/* A transfer code that does not work: one answer, throttled per account,
 * recorded as a failed claim (the auth_failures rule counts them). Lock held. */
static enum mamori_err refuse(struct hub *h, const struct principal *who, const char *key,
                              struct throttle_rec *t, const char *peer, struct op_err *e)
{
    hub_throttle_fail(h, &THROTTLE_CLAIM, key, t);
    hub_event(h, NULL, "claim_failed", "warning",
              "{\"user\":\"%s\",\"peer\":\"%s\",\"kind\":\"transfer\"}", who->name, peer);
    SET_ERR(e, "invalid or expired transfer code");
    return MAMORI_ERR_NOTFOUND;
}

/* Finds the live transfer for code (canonical, hashed). Lock held. */
static enum mamori_err find_transfer(struct hub *h, const char *code, struct transfer_rec *t,
                                     struct device_rec *d)
{
    char canon[PROTO_CLAIM_CODE_CHARS + 1], ch[65];
    enum mamori_err rc = proto_claim_code_normalize(code, strlen(code), canon);
    if (rc)
        return MAMORI_ERR_NOTFOUND;
    proto_claim_code_hash(canon, ch);
    crypto_wipe(canon, sizeof(canon));
    if ((rc = store_transfer_find(h->store, NULL, ch, t)))
        return rc;
    if (t->expires_at <= hub_now() || store_device_get(h->store, t->device_id, d) ||
        d->owner_id != t->from_user)
        return MAMORI_ERR_NOTFOUND; /* expired, or the device moved on meanwhile */
    return MAMORI_OK;
}

enum mamori_err hub_op_transfer_accept(struct hub *h, const struct principal *who, const char *code,
                                       const char *peer, json_t **out, struct op_err *e)
{
    struct transfer_rec t, t2;
    struct device_rec d;
    struct user_rec from;
    struct throttle_rec th;
    char key[48];
    char *export_txt = NULL;
    *out = NULL;
    if (who->role != ROLE_OWNER) {
        SET_ERR(e, "only owner accounts take devices over");
        return MAMORI_ERR_FORBIDDEN;
    }
    snprintf(key, sizeof(key), "transfer:%" PRId64, who->user_id);
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = hub_throttled(h, key, &th, e);
    if (!rc && find_transfer(h, code, &t, &d))
        rc = refuse(h, who, key, &th, peer, e);
    if (!rc && t.from_user == who->user_id) {
        SET_ERR(e, "the device is yours already");
        rc = MAMORI_ERR_STATE;
    }
    if (!rc && (rc = store_user_by_id(h->store, t.from_user, &from)))
        rc = MAMORI_ERR_NOTFOUND;
    pthread_mutex_unlock(&h->lock);
    if (rc)
        return rc;
    /* The previous owner's copy, read with their own rights, before the
     * lock is taken for the change itself. */
    if (strcmp(t.data, "export") == 0) {
        struct principal prev = {.user_id = from.id, .role = ROLE_OWNER};
        snprintf(prev.name, sizeof(prev.name), "%s", from.name);
        json_t *x = device_export(h, &prev, t.device_id);
        export_txt = x ? json_dumps(x, JSON_COMPACT) : NULL;
        json_decref(x);
        if (!export_txt)
            return MAMORI_ERR_NOMEM;
    }
    int64_t export_id = 0;
    pthread_mutex_lock(&h->lock);
    /* the same transfer still (a second accept of the code finds nothing) */
    bool same = !find_transfer(h, code, &t2, &d) && strcmp(t2.device_id, t.device_id) == 0;
    /* readings taken in before this moment are committed first, so they
     * leave with the previous owner's data below */
    if (same)
        tm_flush(h);
    if (!same) {
        rc = refuse(h, who, key, &th, peer, e);
    } else if (!(rc = store_begin(h->store))) {
        char detail[200];
        snprintf(detail, sizeof(detail), "{\"from\":\"%s\",\"data\":\"%s\"}", from.name, t.data);
        int64_t now_ms = hub_now_ms(), now = now_ms / 1000;
        /* Everything of the previous owner's time goes: telemetry, events,
         * commands (theirs still pending are cancelled); the new owner sees
         * only what comes from now on. */
        rc = store_device_set_owner(h->store, d.id, who->user_id, now);
        if (!rc)
            rc = store_device_data_erase(h->store, d.id, from.name);
        if (!rc)
            rc = store_transfer_del(h->store, d.id);
        if (!rc && export_txt)
            rc = store_export_add(h->store, from.id, d.id, export_txt, now, &export_id);
        if (rc)
            store_rollback(h->store);
        else
            rc = hub_commit_audited(h, who, "device_transferred", d.id, "transfer code accepted",
                                    detail);
        if (!rc) {
            log_if_err(store_throttle_clear(h->store, key));
            /* what the device sent before now is the previous owner's */
            tm_owner_changed(h, d.id, now_ms);
            hub_event(h, d.id, "owner_changed", "info", "{\"data\":\"%s\"}", t.data);
            if (!store_device_get(h->store, d.id, &d))
                *out = device_json(&d);
        }
    }
    pthread_mutex_unlock(&h->lock);
    free(export_txt);
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}

/* --- data rights -------------------------------------------------------- */

static bool export_item(int64_t id, const char *device_id, int64_t created_at, const char *body,
                        void *arg)
{
    json_array_append_new(arg, json_pack("{s:I, s:s, s:I, s:I}", "id", (json_int_t)id, "device",
                                         device_id, "created_at", (json_int_t)created_at, "bytes",
                                         (json_int_t)strlen(body)));
    return true;
}

static bool export_body(int64_t id, const char *device_id, int64_t created_at, const char *body,
                        void *arg)
{
    (void)id, (void)device_id, (void)created_at;
    *(json_t **)arg = json_loads(body, 0, NULL);
    return false;
}

enum mamori_err hub_op_exports(struct hub *h, const struct principal *who, int64_t id, json_t **out)
{
    json_t *arr = json_array(), *one = NULL;
    *out = NULL;
    if (!arr)
        return MAMORI_ERR_NOMEM;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = id ? store_exports(h->store, who->user_id, id, export_body, &one)
                            : store_exports(h->store, who->user_id, 0, export_item, arr);
    pthread_mutex_unlock(&h->lock);
    if (!rc && id && !one)
        rc = MAMORI_ERR_NOTFOUND; /* none such, or another user's */
    if (rc) {
        json_decref(arr);
        json_decref(one);
        return rc;
    }
    if (id) {
        json_decref(arr);
        *out = one;
    } else {
        *out = json_pack("{s:o}", "exports", arr);
    }
    return *out ? MAMORI_OK : MAMORI_ERR_NOMEM;
}

/* The ids of the devices who sees (an owner: their own), all pages. */
static json_t *owned_ids(struct hub *h, const struct principal *who)
{
    json_t *ids = json_array();
    char after[24] = "";
    for (;;) {
        json_t *page = NULL;
        if (!ids || hub_op_device_list(h, who, after[0] ? after : NULL, 1000, &page)) {
            json_decref(page);
            break;
        }
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(page, "devices"), i, v)
            json_array_append(ids, json_object_get(v, "id"));
        const char *next = json_string_value(json_object_get(page, "next"));
        snprintf(after, sizeof(after), "%s", next ? next : "");
        json_decref(page);
        if (!next)
            break;
    }
    return ids;
}

enum mamori_err hub_op_me_export(struct hub *h, const struct principal *who, json_t **out)
{
    struct user_rec u;
    json_t *devs = json_array(), *exports = NULL;
    *out = NULL;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_user_by_id(h->store, who->user_id, &u);
    pthread_mutex_unlock(&h->lock);
    crypto_wipe(u.pwhash, sizeof(u.pwhash));
    if (rc || !devs) {
        json_decref(devs);
        return rc ? rc : MAMORI_ERR_NOMEM;
    }
    /* owners: their devices (staff own none) */
    json_t *ids = who->role == ROLE_OWNER ? owned_ids(h, who) : json_array();
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        json_t *x = device_export(h, who, json_string_value(v));
        if (x)
            json_array_append_new(devs, x);
    }
    json_decref(ids);
    if (hub_op_exports(h, who, 0, &exports)) {
        json_decref(exports);
        exports = NULL;
    }
    json_t *ex = exports ? json_incref(json_object_get(exports, "exports")) : NULL;
    json_decref(exports);
    *out = json_pack("{s:{s:s, s:s, s:I}, s:o, s:o, s:I}", "account", "name", u.name, "role",
                     store_role_name(u.role), "created_at", (json_int_t)u.created_at, "devices",
                     devs, "exports", ex ? ex : json_array(), "exported_at", (json_int_t)hub_now());
    return *out ? MAMORI_OK : MAMORI_ERR_NOMEM;
}

enum mamori_err hub_op_me_erase(struct hub *h, const struct principal *who, const char *confirm,
                                json_t **out, struct op_err *e)
{
    *out = NULL;
    if (who->role != ROLE_OWNER) {
        SET_ERR(e, "owner accounts erase the data of their devices");
        return MAMORI_ERR_FORBIDDEN;
    }
    if (strcmp(confirm, who->name) != 0) {
        SET_ERR(e, "confirm with your user name: this cannot be undone");
        return MAMORI_ERR_INVAL;
    }
    /* the owner's devices, then one transaction over them */
    json_t *ids = owned_ids(h, who);
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_begin(h->store);
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v) if (!rc) rc =
        store_device_data_erase(h->store, json_string_value(v), who->name);
    if (!rc)
        rc = store_exports_erase(h->store, who->user_id);
    char detail[64];
    snprintf(detail, sizeof(detail), "{\"devices\":%zu}", json_array_size(ids));
    if (rc)
        store_rollback(h->store);
    else
        rc = hub_commit_audited(h, who, "owner_data_erased", who->name, "", detail);
    pthread_mutex_unlock(&h->lock);
    if (!rc)
        *out = json_pack("{s:s, s:I}", "erased_for", who->name, "devices",
                         (json_int_t)json_array_size(ids));
    json_decref(ids);
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}

/* Deletes the account (lock held, no transaction open): refused for the
 * last administrator; everything that is only the account's goes with it
 * (store_user_delete), the audit log keeps its name. */
static enum mamori_err user_delete_locked(struct hub *h, const struct principal *who,
                                          const struct user_rec *u, const char *reason,
                                          size_t decommissioned, struct op_err *e)
{
    if (u->role == ROLE_ADMIN &&
        store_scalar(h->store, "SELECT count(*) FROM users WHERE role='admin'", NULL) <= 1) {
        SET_ERR(e, "the last administrator cannot be deleted");
        return MAMORI_ERR_STATE;
    }
    enum mamori_err rc = store_begin(h->store);
    if (rc)
        return rc;
    if ((rc = store_user_delete(h->store, u->id, hub_now()))) {
        store_rollback(h->store);
        if (rc == MAMORI_ERR_STATE)
            SET_ERR(e, "'%s' still owns devices: transfer or decommission them first", u->name);
        return rc;
    }
    char detail[96];
    snprintf(detail, sizeof(detail), "{\"role\":\"%s\",\"devices_decommissioned\":%zu}",
             store_role_name(u->role), decommissioned);
    return hub_commit_audited(h, who, "user_deleted", u->name, reason, detail);
}

enum mamori_err hub_op_me_delete(struct hub *h, const struct principal *who, const char *confirm,
                                 const char *devices, json_t **out, struct op_err *e)
{
    *out = NULL;
    if (strcmp(confirm, who->name) != 0) {
        SET_ERR(e, "confirm with your user name: this cannot be undone");
        return MAMORI_ERR_INVAL;
    }
    bool decommission = devices && strcmp(devices, "decommission") == 0;
    if (devices && devices[0] && !decommission) {
        SET_ERR(e, "devices must be \"decommission\" (or left out)");
        return MAMORI_ERR_INVAL;
    }
    json_t *ids = who->role == ROLE_OWNER ? owned_ids(h, who) : json_array();
    if (!ids)
        return MAMORI_ERR_NOMEM;
    if (json_array_size(ids) && !decommission) {
        SET_ERR(e,
                "you own %zu device(s): transfer them first, or delete with devices "
                "\"decommission\" (each is wiped, its certificate revoked, its data erased)",
                json_array_size(ids));
        json_decref(ids);
        return MAMORI_ERR_STATE;
    }
    struct user_rec u;
    size_t done = 0;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_user_by_id(h->store, who->user_id, &u);
    crypto_wipe(u.pwhash, sizeof(u.pwhash));
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        struct device_rec d;
        if (rc || store_device_get(h->store, json_string_value(v), &d) ||
            d.owner_id != who->user_id)
            continue;
        rc = hub_device_action_locked(h, who, &d, LC_DECOMMISSION, "the owner deleted the account",
                                      NULL);
        if (rc)
            SET_ERR(e, "device %s could not be decommissioned; the account stays", d.id);
        else
            done++;
    }
    if (!rc)
        rc = user_delete_locked(h, who, &u, "by the account's own request", done, e);
    pthread_mutex_unlock(&h->lock);
    json_decref(ids);
    if (!rc)
        *out = json_pack("{s:s, s:I}", "deleted", who->name, "devices_decommissioned",
                         (json_int_t)done);
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}

enum mamori_err hub_op_user_delete(struct hub *h, const struct principal *who, const char *name,
                                   const char *reason, json_t **out, struct op_err *e)
{
    *out = NULL;
    if (who->role != ROLE_ADMIN)
        return MAMORI_ERR_FORBIDDEN;
    struct user_rec u;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_user_get(h->store, name, &u);
    crypto_wipe(u.pwhash, sizeof(u.pwhash));
    char id[24];
    snprintf(id, sizeof(id), "%" PRId64, u.id);
    int64_t owned = rc ? 0
                       : store_scalar(h->store,
                                      "SELECT count(*) FROM devices WHERE owner_id=CAST(?1 AS "
                                      "INTEGER)",
                                      id);
    if (!rc && owned != 0) {
        SET_ERR(e, "'%s' owns %lld device(s): they transfer them, or staff decommission them first",
                name, (long long)owned);
        rc = MAMORI_ERR_STATE;
    }
    if (!rc)
        rc = user_delete_locked(h, who, &u, reason, 0, e);
    pthread_mutex_unlock(&h->lock);
    if (!rc)
        *out = json_pack("{s:s}", "deleted", name);
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}
