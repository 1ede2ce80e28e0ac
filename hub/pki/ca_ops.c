/* hub/pki/ca_ops.c - the manufacturers' CAs the platform trusts. */
#include "hub/pki/ca.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/proto.h"

enum mamori_err hub_op_ca_import(struct hub *h, const struct principal *who, const char *model,
                                 const char *cert_pem, json_t **out, struct op_err *e)
{
    *out = NULL;
    if (who->role != ROLE_ADMIN)
        return MAMORI_ERR_FORBIDDEN;
    if (!hub_name_ok(model, STORE_NAME_MAX)) {
        SET_ERR(e, "model must be 1-64 of [A-Za-z0-9._-]");
        return MAMORI_ERR_INVAL;
    }
    struct crypto_cert *c = NULL;
    char *clean = NULL, fp[65], cn[256];
    enum mamori_err rc = crypto_cert_parse(cert_pem, strlen(cert_pem), &c);
    if (rc) {
        SET_ERR(e, "certificate: %s", mamori_strerror(rc));
        return rc;
    }
    if (!crypto_cert_is_ca(c) || crypto_cert_not_after(c) <= hub_now()) {
        SET_ERR(e, "not a valid CA certificate (needs basicConstraints CA:TRUE, not expired)");
        crypto_cert_free(c);
        return MAMORI_ERR_INVAL;
    }
    crypto_cert_fingerprint(c, fp);
    if (crypto_cert_cn(c, cn, sizeof(cn)))
        snprintf(cn, sizeof(cn), "(no CN)");
    rc = crypto_cert_pem(c, &clean);
    crypto_cert_free(c);
    if (rc)
        return rc;
    pthread_mutex_lock(&h->lock);
    if ((rc = store_begin(h->store)))
        goto out;
    rc = store_ca_add(h->store, model, "manufacturer", fp, cn, clean, hub_now());
    if (rc) {
        store_rollback(h->store);
        if (rc == MAMORI_ERR_EXISTS)
            SET_ERR(e, "this CA is already trusted for model '%s'", model);
        goto out;
    }
    char detail[160];
    snprintf(detail, sizeof(detail), "{\"fingerprint\":\"%s\"}", fp);
    if ((rc = hub_commit_audited(h, who, "ca_import", model, cn, detail)))
        goto out;
    /* The broker must now accept chains ending in this CA. */
    if ((rc = ca_write_device_trust(h)))
        goto out;
    hub_reload_broker(h);
    *out = json_pack("{s:s,s:s,s:s}", "model", model, "fingerprint", fp, "subject", cn);
out:
    pthread_mutex_unlock(&h->lock);
    free(clean);
    return rc;
}

static bool ca_cb(const char *model, const char *kind, const char *fp, const char *subject,
                  void *arg)
{
    json_array_append_new(arg, json_pack("{s:s?,s:s,s:s,s:s}", "model", model, "kind", kind,
                                         "fingerprint", fp, "subject", subject));
    return true;
}

enum mamori_err hub_op_ca_list(struct hub *h, const struct principal *who, json_t **out)
{
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    json_t *arr = json_array();
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_ca_list(h->store, ca_cb, arr);
    pthread_mutex_unlock(&h->lock);
    *out = json_pack("{s:o}", "cas", arr);
    return rc;
}
