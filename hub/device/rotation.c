/*
 * hub/device/rotation.c - device key and certificate rotation (T01-L2a, T05-L2c,
 * T07-L2a).
 *
 *   hub  --rotate-->  device   makes pending.key in place, answers its CSR
 *   hub  issues a certificate for the CSR's key (subject set by the hub),
 *        admits it at the broker alongside the current one,
 *   hub  --cert-->    device   checks it, switches (crash-safe), reconnects
 *                              with it, answers {"fp": new}
 *   hub  makes it the current certificate; the old one is no longer
 *        admitted (kept only to verify log records signed before).
 *
 * Every step is a signed command with its result, audited. The policy asks
 * for a rotation when a certificate expires within cert_renew_days or is
 * older than cert_max_age_days, at most once a day per device.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "hub/device/device.h"
#include "hub/device/rotation.h"
#include "hub/pki/ca.h"

#define ROTATION_TTL_MS  (7LL * 24 * 3600 * 1000)
#define ROTATION_RETRY_S (24 * 3600)

static const struct principal HUB_PRINCIPAL = {.user_id = 0, .name = "hub", .role = ROLE_ADMIN};

enum mamori_err rotation_start(struct hub *h, const struct principal *who, const char *id,
                               const char *reason)
{
    struct command_rec c;
    enum mamori_err rc = store_device_rotation_asked(h->store, id, hub_now());
    if (!rc)
        rc = hub_command_issue(h, who, id, CMD_ROTATE, ROTATION_TTL_MS, reason, NULL, &c);
    return rc;
}

/* The device made its key and sent the CSR: issue and deliver the certificate. */
static void on_csr(struct hub *h, const char *id, const char *csr)
{
    struct device_rec d;
    struct crypto_cert *cert = NULL;
    char *pem = NULL, *chain = NULL, *args = NULL, fp[CRYPTO_FP_HEX_LEN], detail[160];
    json_t *a = NULL;
    enum lc_state st;
    struct command_rec c;
    enum mamori_err rc = store_device_get(h->store, id, &d);
    if (!rc && (!lc_state_parse(d.state, &st) || lc_access(st) == LC_ACCESS_DENY))
        rc = MAMORI_ERR_STATE;
    /* The subject is the hub's to set; only the key comes from the CSR. */
    if (!rc)
        rc = ca_issue_device(h, csr, strlen(csr), id, d.model, &pem);
    if (!rc)
        rc = crypto_cert_parse(pem, strlen(pem), &cert);
    if (!rc)
        crypto_cert_fingerprint(cert, fp);
    if (!rc && strcmp(fp, d.cert_fp) == 0)
        rc = MAMORI_ERR_EXISTS;
    if (!rc)
        rc = crypto_cert_pem(h->issuing_cert, &chain);
    if (!rc && (!(a = json_pack("{s:s,s:s}", "cert", pem, "chain", chain)) ||
                !(args = json_dump_compact(a))))
        rc = MAMORI_ERR_NOMEM;
    if (!rc)
        rc = store_begin(h->store);
    if (!rc) {
        rc = store_device_rotation_begin(h->store, id, fp, pem, hub_now());
        if (rc) {
            store_rollback(h->store);
        } else {
            snprintf(detail, sizeof(detail), "{\"fingerprint\":\"%s\"}", fp);
            rc = hub_commit_audited(h, &HUB_PRINCIPAL, "cert_issued", id,
                                    "certificate rotation: new key's CSR", detail);
        }
    }
    /* The broker admits the new certificate before the device has it. */
    if (!rc && !(rc = store_device_get(h->store, id, &d)))
        hub_push_device(h, &d, (int)lc_access(st));
    if (!rc)
        rc = hub_command_issue(h, &HUB_PRINCIPAL, id, CMD_CERT, ROTATION_TTL_MS,
                               "certificate rotation: deliver the new certificate", args, &c);
    if (rc)
        hub_event(h, id, "cert_rotation_failed", "warning",
                  "{\"step\":\"issue\",\"reason\":\"%s\"}", mamori_strerror(rc));
    json_decref(a);
    free(args);
    free(chain);
    free(pem);
    crypto_cert_free(cert);
}

/* The device switched: the new certificate becomes the current one. */
static void on_switched(struct hub *h, const char *id, const char *fp)
{
    struct device_rec d;
    struct crypto_cert *cert = NULL;
    char *pem = NULL, serial[48], detail[200];
    enum lc_state st;
    enum mamori_err rc = store_device_get(h->store, id, &d);
    if (!rc && (!fp || strcmp(fp, d.cert_next_fp) != 0))
        rc = MAMORI_ERR_VERIFY; /* not the certificate we delivered */
    if (!rc)
        rc = store_device_cert_at(h->store, id, STORE_CERT_NEXT, &pem);
    if (!rc)
        rc = crypto_cert_parse(pem, strlen(pem), &cert);
    if (!rc)
        rc = crypto_cert_serial_hex(cert, serial, sizeof(serial));
    if (!rc)
        rc = store_begin(h->store);
    if (!rc) {
        rc = store_device_rotation_commit(h->store, id, fp, serial,
                                          (int64_t)crypto_cert_not_after(cert), hub_now());
        if (rc) {
            store_rollback(h->store);
        } else {
            snprintf(detail, sizeof(detail), "{\"old\":\"%s\",\"new\":\"%s\"}", d.cert_fp, fp);
            rc = hub_commit_audited(h, &HUB_PRINCIPAL, "cert_rotated", id,
                                    "device switched to its new certificate", detail);
        }
    }
    /* From here only the new certificate gets in. */
    if (!rc && !(rc = store_device_get(h->store, id, &d)) && lc_state_parse(d.state, &st))
        hub_push_device(h, &d, (int)lc_access(st));
    if (rc)
        hub_event(h, id, "cert_rotation_failed", "warning",
                  "{\"step\":\"switch\",\"reason\":\"%s\"}", mamori_strerror(rc));
    else
        hub_event(h, id, "cert_rotated", "info", "{\"fingerprint\":\"%s\",\"not_after\":%lld}", fp,
                  (long long)crypto_cert_not_after(cert));
    free(pem);
    crypto_cert_free(cert);
}

static void on_result(struct hub *h, const struct command_rec *c, const char *status,
                      const char *error, json_t *detail)
{
    (void)error;
    const char *v = NULL;
    if (strcmp(status, "ok") != 0) {
        if (strcmp(c->type, "rotate") == 0 || strcmp(c->type, "cert") == 0)
            hub_event(h, c->device_id, "cert_rotation_failed", "warning",
                      "{\"step\":\"%s\",\"reason\":\"device answered %s\"}", c->type, status);
        return;
    }
    if (strcmp(c->type, "rotate") == 0) {
        if (json_get_str(detail, "csr", CRYPTO_PEM_MAX, &v))
            on_csr(h, c->device_id, v);
        else
            hub_event(h, c->device_id, "cert_rotation_failed", "warning",
                      "{\"step\":\"rotate\",\"reason\":\"no CSR in the answer\"}");
    } else if (strcmp(c->type, "cert") == 0) {
        (void)json_get_str(detail, "fp", 64, &v);
        on_switched(h, c->device_id, v);
    }
}

struct due {
    char ids[64][24];
    int n;
};

static bool due_one(const struct device_rec *d, void *arg)
{
    struct due *u = arg;
    snprintf(u->ids[u->n++], sizeof(u->ids[0]), "%s", d->id);
    return u->n < 64;
}

void rotation_tick(struct hub *h, int64_t now_s)
{
    struct due u = {.n = 0};
    log_if_err(store_device_rotation_due(h->store, now_s, (int64_t)h->cfg.cert_renew_days * 86400,
                                         (int64_t)h->cfg.cert_max_age_days * 86400,
                                         ROTATION_RETRY_S, 64, due_one, &u));
    for (int i = 0; i < u.n; i++) {
        log_info("rotation policy: asking %s for a new key", u.ids[i]);
        log_if_err(rotation_start(h, &HUB_PRINCIPAL, u.ids[i], "rotation policy"));
    }
}

enum mamori_err rotation_register(struct hub *h)
{
    enum mamori_err rc = hub_on_result(h, "rotate", on_result);
    return rc ? rc : hub_on_result(h, "cert", on_result);
}
