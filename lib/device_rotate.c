/*
 * lib/device_rotate.c - key rotation run by the hub (T05-L2c): "rotate"
 * makes the next key in place and answers with its CSR; "cert" brings the
 * certificate for it, checked and switched to crash-safe (lib/identity.h).
 */
#include <stdlib.h>
#include <string.h>

#include "common/cmd.h"
#include "common/crypto.h"
#include "common/fsutil.h"
#include "common/json.h"
#include "lib/device_priv.h"
#include "lib/identity.h"
#include "mamori/device.h"

/* T05-L2c, T07-L2a: "rotate" makes the next key in place (pending.key,
 * never leaving the device) and answers with its CSR. */
enum mamori_err dev_rotate_prepare(struct mamori_device *d, bool create, char *detail, size_t n)
{
    char *csr = NULL;
    enum mamori_err rc = identity_pending_csr(d->identity_dir, d->id, create, d->keystore, &csr);
    if (rc)
        return rc;
    json_t *j = json_pack("{s:s}", "csr", csr);
    char *txt = j ? json_dump_compact(j) : NULL;
    json_decref(j);
    free(csr);
    if (!txt)
        return MAMORI_ERR_NOMEM;
    rc = strlen(txt) < n ? MAMORI_OK : MAMORI_ERR_TOOBIG;
    if (!rc)
        memcpy(detail, txt, strlen(txt) + 1);
    free(txt);
    return rc;
}

/* "cert" args: {"cert": PEM, "chain": PEM of the issuing CA}. The
 * certificate must chain to the platform root, name this device and hold
 * the pending key. */
enum mamori_err dev_cert_check(struct mamori_device *d, const struct cmd *c, json_t **args,
                               const char **cert, char fp[CRYPTO_FP_HEX_LEN])
{
    const char *chain = NULL;
    *args = json_loads(c->args, JSON_REJECT_DUPLICATES, NULL);
    if (!json_get_str(*args, "cert", CMD_ARGS_MAX, cert))
        return MAMORI_ERR_PARSE;
    (void)json_get_str(*args, "chain", CMD_ARGS_MAX, &chain);
    return identity_check_new(d->identity_dir, *cert, strlen(*cert), chain,
                              chain ? strlen(chain) : 0, d->trust_pem, d->id, fp);
}

/* Installs the new pair (crash-safe, lib/identity.h), signs the log with
 * the new key from now on and reconnects with the new certificate once the
 * result is out. Nothing queued is lost: the outbox is resent after the
 * reconnection until the hub acknowledges it. */
enum mamori_err dev_cert_switch(struct mamori_device *d, const char *cert_pem)
{
    char key[1200];
    struct crypto_key *k = NULL;
    enum mamori_err rc = identity_install(d->identity_dir, cert_pem, strlen(cert_pem), 0);
    if (rc)
        return rc;
    if (d->log_key && fs_path(key, sizeof(key), d->identity_dir, "device.key") == MAMORI_OK &&
        crypto_key_load(key, &k) == MAMORI_OK) {
        crypto_key_free(d->log_key);
        d->log_key = k;
    }
    d->reconnect_pending = true;
    d->st.rotations++;
    return MAMORI_OK;
}
