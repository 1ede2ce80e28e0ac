/* hub/device/enroll.c - devices entering the registry: enrolled from a CSR (certificate issued
 * here) or registered with a manufacturer's certificate. */
#include "hub/device/device.h"
#include "hub/pki/ca.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/proto.h"

/* T02-L3a: the device's state and liveness, as owners and operators see it. */
json_t *device_json(const struct device_rec *d)
{
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:b,s:I,s:i}", "id", d->id, "model", d->model,
                  "state", d->state, "cert_fingerprint", d->cert_fp, "cert_serial", d->cert_serial,
                  "cert_not_after", (json_int_t)d->cert_not_after, "created_at",
                  (json_int_t)d->created_at, "updated_at", (json_int_t)d->updated_at, "online",
                  d->online, "last_seen", (json_int_t)d->last_seen, "heartbeat_s", d->hb_interval);
    if (o && d->owner_id)
        json_object_set_new(o, "owner", json_string(d->owner_name));
    if (o && d->cert_rotated_at)
        json_object_set_new(o, "cert_rotated_at", json_integer(d->cert_rotated_at));
    if (o && d->cert_next_fp[0]) /* a rotation is under way */
        json_object_set_new(o, "cert_next_fingerprint", json_string(d->cert_next_fp));
    return o;
}

/* Registers a device whose certificate is already issued. Lock held. */
static enum mamori_err add_device(struct hub *h, const struct principal *who, const char *id,
                                  const char *model, const char *cert_pem, const char *how,
                                  char claim_out[PROTO_CLAIM_CODE_TEXT + 1], struct op_err *e)
{
    struct crypto_cert *c = NULL;
    enum mamori_err rc = crypto_cert_parse(cert_pem, strlen(cert_pem), &c);
    if (rc)
        return rc;
    struct device_rec d;
    memset(&d, 0, sizeof(d));
    snprintf(d.id, sizeof(d.id), "%s", id);
    snprintf(d.model, sizeof(d.model), "%s", model);
    snprintf(d.state, sizeof(d.state), "%s", lc_state_name(LC_MANUFACTURED));
    crypto_cert_fingerprint(c, d.cert_fp);
    if (crypto_cert_serial_hex(c, d.cert_serial, sizeof(d.cert_serial)))
        d.cert_serial[0] = '\0';
    d.cert_not_after = crypto_cert_not_after(c);
    crypto_cert_free(c);
    d.created_at = hub_now();
    d.hb_interval = h->cfg.heartbeat_s;
    /* P-ID: a unique management number and a single-use claim code, stored
     * only as a hash (setup information is useless to a third party later). */
    char canon[PROTO_CLAIM_CODE_CHARS + 1], ch[65];
    if ((rc = proto_claim_code_new(claim_out)) ||
        (rc = proto_claim_code_normalize(claim_out, strlen(claim_out), canon)))
        return rc;
    proto_claim_code_hash(canon, ch);
    crypto_wipe(canon, sizeof(canon));
    if ((rc = store_begin(h->store)))
        return rc;
    rc = store_device_add(h->store, &d, cert_pem, ch);
    if (rc) {
        store_rollback(h->store);
        if (rc == MAMORI_ERR_EXISTS)
            SET_ERR(e, "this certificate is already registered to a device");
        return rc;
    }
    char detail[200];
    snprintf(detail, sizeof(detail), "{\"model\":\"%s\",\"cert_fp\":\"%s\",\"via\":\"%s\"}", model,
             d.cert_fp, how);
    if ((rc =
             hub_commit_audited(h, who, "device_manufactured", id, "factory provisioning", detail)))
        return rc;
    hub_push_device(h, &d, (int)LC_ACCESS_DENY);
    return MAMORI_OK;
}

static enum mamori_err new_device_id(struct hub *h, char id[PROTO_DEVICE_ID_LEN + 1])
{
    struct device_rec tmp;
    for (int i = 0; i < 8; i++) {
        enum mamori_err rc = proto_device_id_new(id);
        if (rc)
            return rc;
        if (store_device_get(h->store, id, &tmp) == MAMORI_ERR_NOTFOUND)
            return MAMORI_OK;
    }
    return MAMORI_ERR_INTERNAL;
}

enum mamori_err hub_op_enroll(struct hub *h, const struct principal *who, const char *model,
                              const char *csr_pem, json_t **out, struct op_err *e)
{
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    if (!hub_name_ok(model, STORE_NAME_MAX)) {
        SET_ERR(e, "model must be 1-64 of [A-Za-z0-9._-]");
        return MAMORI_ERR_INVAL;
    }
    char id[PROTO_DEVICE_ID_LEN + 1], code[PROTO_CLAIM_CODE_TEXT + 1];
    char *cert = NULL;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = new_device_id(h, id);
    if (!rc)
        rc = ca_issue_device(h, csr_pem, strlen(csr_pem), id, model, &cert);
    if (rc) {
        if (rc != MAMORI_ERR_INTERNAL)
            SET_ERR(e, "certificate signing request rejected: %s", mamori_strerror(rc));
        goto out;
    }
    if ((rc = add_device(h, who, id, model, cert, "csr", code, e)))
        goto out;
    *out = json_pack("{s:s,s:s,s:s,s:s,s:s}", "device_id", id, "model", model, "certificate", cert,
                     "ca_chain", h->ca_chain_pem, "claim_code", code);
    crypto_wipe(code, sizeof(code));
out:
    pthread_mutex_unlock(&h->lock);
    free(cert);
    return rc;
}

enum mamori_err hub_op_register(struct hub *h, const struct principal *who, const char *model,
                                const char *cert_pem, json_t **out, struct op_err *e)
{
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    if (!hub_name_ok(model, STORE_NAME_MAX)) {
        SET_ERR(e, "model must be 1-64 of [A-Za-z0-9._-]");
        return MAMORI_ERR_INVAL;
    }
    struct crypto_cert *c = NULL;
    char *trust = NULL, *clean = NULL, id[PROTO_DEVICE_ID_LEN + 1], code[PROTO_CLAIM_CODE_TEXT + 1];
    enum mamori_err rc = crypto_cert_parse(cert_pem, strlen(cert_pem), &c);
    if (rc) {
        SET_ERR(e, "certificate: %s", mamori_strerror(rc));
        return rc;
    }
    pthread_mutex_lock(&h->lock);
    /* T02-L1a, P-ID: a certificate made at the factory is accepted only if
     * it chains to a manufacturer CA trusted for this very model. */
    if ((rc = store_ca_bundle(h->store, model, &trust)))
        goto out;
    if ((rc = crypto_cert_verify(c, trust))) {
        SET_ERR(e, "certificate does not chain to a CA trusted for model '%s' (%s)", model,
                mamori_strerror(rc));
        rc = MAMORI_ERR_VERIFY;
        goto out;
    }
    if (crypto_cert_is_ca(c)) {
        SET_ERR(e, "a CA certificate cannot be a device identity");
        rc = MAMORI_ERR_INVAL;
        goto out;
    }
    if ((rc = crypto_cert_pem(c, &clean)) || (rc = new_device_id(h, id)))
        goto out;
    if ((rc = add_device(h, who, id, model, clean, "manufacturer_ca", code, e)))
        goto out;
    *out = json_pack("{s:s,s:s,s:s,s:s}", "device_id", id, "model", model, "ca_chain",
                     h->ca_chain_pem, "claim_code", code);
    crypto_wipe(code, sizeof(code));
out:
    pthread_mutex_unlock(&h->lock);
    crypto_cert_free(c);
    free(trust);
    free(clean);
    return rc;
}
