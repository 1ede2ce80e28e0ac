/*
 * hub/device/devstatus.c - each device's own security status (P-MGMT, JEITA 5.2):
 * a signed Entity Attestation Token (common/eat.h) the device publishes
 * when it connects, daily, and when its standing changes. The hub checks
 * it against the device's certificate, keeps the newest, and serves it as
 * it came (GET /api/v1/devices/{id}/status), with the certificate that
 * verifies it, so a relying party need not trust the hub's word for it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub/device/telemetry.h"
#include "hub/device/device.h"
#include "common/eat.h"
#include "common/json.h"
#include "common/log.h"
#include "hub/device/devstatus.h"

struct st_check {
    const char *tok, *id;
    json_t *claims;
    const char *why;
};

static enum mamori_err st_check(const struct crypto_cert *cert, void *arg)
{
    struct st_check *c = arg;
    json_decref(c->claims);
    c->claims = NULL;
    return eat_verify(c->tok, strlen(c->tok), cert, c->id, &c->claims, &c->why);
}

void status_ingest(struct hub *h, const char *id, const json_t *body)
{
    const char *tok = NULL;
    struct st_check c = {NULL, id, NULL,
                         "the event is {\"type\":\"security_status\",\"eat\":TOKEN}"};
    enum mamori_err rc = MAMORI_ERR_PARSE;
    if (json_object_size(body) == 2 && json_get_str(body, "eat", EAT_MAX, &tok)) {
        c.tok = tok;
        rc = hub_device_certs_try(h, id, st_check, &c);
    }
    int64_t iat = 0, exp = 0, now = hub_now();
    if (!rc) {
        iat = (int64_t)json_integer_value(json_object_get(c.claims, "iat"));
        exp = (int64_t)json_integer_value(json_object_get(c.claims, "exp"));
        if (iat > now + TM_SKEW_MS / 1000) {
            rc = MAMORI_ERR_PARSE;
            c.why = "issued in the future";
        } else if (exp <= now) {
            rc = MAMORI_ERR_PARSE;
            c.why = "expired";
        }
    }
    if (rc) {
        json_t *dj = json_pack("{s:s}", "reason", c.why ? c.why : "malformed");
        char *dt = dj ? json_dump_compact(dj) : NULL;
        hub_event(h, id, "security_status_rejected", "warning", "%s", dt ? dt : "{}");
        free(dt);
        json_decref(dj);
        json_decref(c.claims);
        return;
    }
    struct status_rec r = {.iat = iat, .exp = exp, .received_at = now};
    char *claims = json_dump_compact(c.claims);
    snprintf(r.device_id, sizeof(r.device_id), "%s", id);
    snprintf(r.token, sizeof(r.token), "%s", tok);
    snprintf(r.claims, sizeof(r.claims), "%s", claims ? claims : "{}");
    free(claims);
    json_decref(c.claims);
    rc = store_status_set(h->store, &r);
    if (rc == MAMORI_ERR_STATE)
        hub_event(h, id, "security_status_rejected", "warning",
                  "{\"reason\":\"not newer than the status held (iat %lld)\"}", (long long)iat);
    else if (rc)
        log_err("device %s: security status not stored: %s", id, mamori_strerror(rc));
    else
        hub_event(h, id, "security_status", "info", "{\"iat\":%lld,\"exp\":%lld}", (long long)iat,
                  (long long)exp);
}

enum mamori_err hub_op_device_status(struct hub *h, const struct principal *who, const char *id,
                                     json_t **out)
{
    struct device_rec d;
    struct status_rec r;
    char *pem = NULL;
    *out = NULL;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = hub_device_visible(h, who, id, &d);
    if (!rc)
        rc = store_status_get(h->store, id, &r);
    if (!rc)
        rc = store_device_cert(h->store, id, &pem);
    pthread_mutex_unlock(&h->lock);
    if (rc)
        return rc;
    json_t *claims = json_loads(r.claims, 0, NULL);
    int64_t now = hub_now();
    *out = json_pack("{s:s, s:s, s:o, s:I, s:I, s:I, s:b, s:s}", "device", id, "eat", r.token,
                     "claims", claims ? claims : json_object(), "issued_at", (json_int_t)r.iat,
                     "expires_at", (json_int_t)r.exp, "received_at", (json_int_t)r.received_at,
                     "current", r.exp > now, "certificate", pem);
    free(pem);
    return *out ? MAMORI_OK : MAMORI_ERR_NOMEM;
}
