/*
 * hub/compliance/report.c - the fleet audit (see report.h); vulnerable_firmware: T07-L1b, T11-L1c,
 * P-VULN.
 */
#include "hub/compliance/report.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "common/log.h"
#include "hub/fleet/firmware.h"

#define ITEMS_MAX   100
#define EXPIRY_DAYS 30 /* certificates expiring within this are a finding */
#define ADMINS_MAX  2  /* more administrators than this is a finding */

struct check {
    const char *id, *title;
    json_t *items;
    int count;
};

static void add(struct check *c, json_t *item)
{
    if (c->count++ < ITEMS_MAX)
        json_array_append_new(c->items, item);
    else
        json_decref(item);
}

struct keys {
    struct check *dup, *weak;
    json_t *seen; /* SPKI hash -> first device id */
};

static bool key_one(const char *id, const char *state, const char *pem, void *arg)
{
    struct keys *k = arg;
    struct crypto_cert *c = NULL;
    char sha[65], type[48];
    int bits = 0;
    if (strcmp(state, "decommissioned") == 0 || !pem || crypto_cert_parse(pem, strlen(pem), &c) ||
        crypto_cert_key_info(c, sha, type, sizeof(type), &bits)) {
        crypto_cert_free(c);
        return true;
    }
    crypto_cert_free(c);
    const char *first = json_string_value(json_object_get(k->seen, sha));
    if (first) /* one key, two identities: a cloned or shared key */
        add(k->dup,
            json_pack("{s:s, s:s, s:s}", "device", id, "same_key_as", first, "spki_sha256", sha));
    else
        json_object_set_new(k->seen, sha, json_string(id));
    bool ok = (strcmp(type, "EC:prime256v1") == 0 || strcmp(type, "EC:secp384r1") == 0 ||
               strcmp(type, "ED25519") == 0 || (strncmp(type, "RSA", 3) == 0 && bits >= 3072));
    if (!ok)
        add(k->weak, json_pack("{s:s, s:s, s:i}", "device", id, "key", type, "bits", bits));
    return true;
}

struct devs {
    struct hub *h;
    struct check *expiring, *stray, *unclaimed, *vulnerable, *rotation, *never_seen;
    int64_t now;
    int n;
    char last[24];
};

static bool dev_one(const struct device_rec *d, void *arg)
{
    struct devs *x = arg;
    snprintf(x->last, sizeof(x->last), "%s", d->id);
    x->n++;
    bool live = strcmp(d->state, "decommissioned") && strcmp(d->state, "revoked");
    if (live && d->cert_not_after < x->now + EXPIRY_DAYS * 86400LL)
        add(x->expiring, json_pack("{s:s, s:I}", "device", d->id, "cert_not_after",
                                   (json_int_t)d->cert_not_after));
    if (strcmp(d->state, "stray") == 0)
        add(x->stray,
            json_pack("{s:s, s:I}", "device", d->id, "last_seen", (json_int_t)d->last_seen));
    if (strcmp(d->state, "manufactured") == 0 && x->now - d->created_at > 90 * 86400LL)
        add(x->unclaimed,
            json_pack("{s:s, s:I}", "device", d->id, "created_at", (json_int_t)d->created_at));
    if (live && strcmp(d->state, "manufactured") && !d->last_seen &&
        x->now - d->claimed_at > 7 * 86400LL)
        add(x->never_seen,
            json_pack("{s:s, s:I}", "device", d->id, "claimed_at", (json_int_t)d->claimed_at));
    /* rotation overdue: past the policy's age (or its renewal window) */
    int64_t issued = d->cert_rotated_at ? d->cert_rotated_at : d->created_at;
    int64_t max_age = (int64_t)x->h->cfg.cert_max_age_days * 86400;
    if (live && max_age > 0 && x->now - issued > max_age + 7 * 86400LL)
        add(x->rotation,
            json_pack("{s:s, s:I}", "device", d->id, "certificate_since", (json_int_t)issued));
    json_t *adv = json_object();
    if (live && d->fw_version[0] && adv) {
        hub_fw_annotate(x->h, d, adv);
        size_t na = json_array_size(json_object_get(adv, "advisories"));
        if (na)
            add(x->vulnerable,
                json_pack("{s:s, s:s, s:O}", "device", d->id, "fw_version", d->fw_version,
                          "advisories", json_object_get(adv, "advisories")));
    }
    json_decref(adv);
    return true;
}

struct users {
    struct check *admins;
    int nadmin;
};

static bool user_one(const struct user_rec *u, void *arg)
{
    struct users *x = arg;
    if (u->role == ROLE_ADMIN) {
        x->nadmin++;
        add(x->admins,
            json_pack("{s:s, s:I}", "user", u->name, "created_at", (json_int_t)u->created_at));
    }
    return true;
}

enum mamori_err hub_op_fleet_audit(struct hub *h, const struct principal *who, json_t **out)
{
    struct check c[] = {
        {"duplicate_keys", "one public key behind several device identities (cloned or shared)",
         NULL, 0},
        {"weak_keys", "device keys weaker than P-256 / RSA-3072", NULL, 0},
        {"expiring_certificates", "device certificates expired or expiring within 30 days", NULL,
         0},
        {"rotation_overdue", "certificates older than the rotation policy allows (+7 days)", NULL,
         0},
        {"vulnerable_firmware", "devices running a version named in a security advisory", NULL, 0},
        {"stray_devices", "devices left unattended (stray)", NULL, 0},
        {"claimed_never_seen", "claimed more than 7 days ago and never connected", NULL, 0},
        {"unclaimed_inventory", "manufactured more than 90 days ago and never claimed", NULL, 0},
        {"broad_admin_accounts", "more than two administrator accounts", NULL, 0},
        {"alert_rules_off", "the hub runs with its alert rules off (--rules off)", NULL, 0},
    };
    const size_t nc = sizeof(c) / sizeof(c[0]);
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    for (size_t i = 0; i < nc; i++)
        if (!(c[i].items = json_array()))
            goto nomem;
    struct keys k = {&c[0], &c[1], json_object()};
    struct devs d = {h, &c[2], &c[5], &c[7], &c[4], &c[3], &c[6], hub_now(), 0, ""};
    struct users u = {&c[8], 0};
    if (!k.seen)
        goto nomem;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_device_certs(h->store, key_one, &k);
    for (int before = -1; !rc && d.n != before;) {
        before = d.n;
        rc = store_device_list(h->store, 0, d.last[0] ? d.last : NULL, 1000, dev_one, &d);
    }
    if (!rc)
        rc = store_user_list(h->store, user_one, &u);
    pthread_mutex_unlock(&h->lock);
    json_decref(k.seen);
    if (u.nadmin <= ADMINS_MAX) { /* a finding only beyond the limit */
        json_array_clear(c[8].items);
        c[8].count = 0;
    }
    if (h->cfg.rules_off)
        add(&c[9], json_pack("{s:s}", "setting", "--rules off"));
    json_t *checks = json_array();
    for (size_t i = 0; !rc && checks && i < nc; i++) {
        json_array_append_new(checks, json_pack("{s:s, s:s, s:s, s:i, s:o}", "id", c[i].id, "title",
                                                c[i].title, "status", c[i].count ? "finding" : "ok",
                                                "count", c[i].count, "items", c[i].items));
        c[i].items = NULL;
    }
    for (size_t i = 0; i < nc; i++)
        json_decref(c[i].items);
    if (rc) {
        json_decref(checks);
        return rc;
    }
    *out = json_pack("{s:I, s:i, s:o}", "generated_at", (json_int_t)hub_now(), "devices", d.n,
                     "checks", checks);
    return *out ? MAMORI_OK : MAMORI_ERR_NOMEM;
nomem:
    for (size_t i = 0; i < nc; i++)
        json_decref(c[i].items);
    return MAMORI_ERR_NOMEM;
}
