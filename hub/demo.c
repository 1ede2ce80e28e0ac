/*
 * hub/demo.c - the simulated fleet of `make run` (mamorid --demo-fleet N).
 *
 * Provisions N devices the way a factory station would: each key is
 * generated into the device's own identity directory (DATA/demo-fleet/
 * dev-NNNNN, read by mamori-sim) and only its CSR is signed. The devices are
 * claimed for the owner account "demo-owner", which has no password at
 * all (its hash field holds a value no password can match), so the demo
 * adds no credential anyone could use. Each step is audited (actor: hub).
 * Runs once: an existing DATA/demo-fleet is left as it is.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hub/device/device.h"
#include "common/crypto.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "factory/factory.h"
#include "hub/demo.h"
#include "hub/core/tx.h"

#define DEMO_OWNER "demo-owner"

enum mamori_err demo_fleet(struct hub *h, int n)
{
    char dir[HUB_PATH_MAX], devdir[HUB_PATH_MAX], p[HUB_PATH_MAX];
    enum mamori_err rc = fs_path(dir, sizeof(dir), h->cfg.data_dir, "demo-fleet");
    if (rc)
        return rc;
    if (access(dir, F_OK) == 0)
        return MAMORI_OK;
    struct principal hubp = {.user_id = 0, .name = "hub", .role = ROLE_ADMIN};
    struct user_rec u;
    pthread_mutex_lock(&h->lock);
    if (store_user_get(h->store, DEMO_OWNER, &u) == MAMORI_ERR_NOTFOUND) {
        /* "!" is no Argon2 string: no password verifies against it. */
        rc = store_user_add(h->store, DEMO_OWNER, ROLE_OWNER, "!no-login", hub_now(), NULL);
        if (!rc)
            rc = store_user_get(h->store, DEMO_OWNER, &u);
    }
    pthread_mutex_unlock(&h->lock);
    if (rc)
        return rc;
    struct principal owner = {.user_id = u.id, .role = ROLE_OWNER};
    snprintf(owner.name, sizeof(owner.name), "%s", DEMO_OWNER);
    if ((rc = fs_mkdir_p(dir, 0700)))
        return rc;
    /* The demo model declares what it reports (mamori-sim sends temp_c),
     * so its telemetry is checked and stored like any real model's. */
    json_t *schema = json_loads("{\"fields\":[{\"name\":\"temp_c\",\"type\":\"number\","
                                "\"unit\":\"degC\",\"min\":-40,\"max\":85}]}",
                                0, NULL);
    json_t *sout = NULL;
    struct op_err se = {{0}, 0};
    rc = schema ? hub_op_schema_set(h, &hubp, "demo-sensor", schema, &sout, &se) : MAMORI_ERR_NOMEM;
    json_decref(schema);
    json_decref(sout);
    for (int i = 0; i < n && !rc; i++) {
        char *csr = NULL;
        size_t len = 0;
        json_t *out = NULL, *claimed = NULL;
        struct op_err e = {{0}, 0};
        char name[16];
        snprintf(name, sizeof(name), "dev-%05d", i);
        if ((rc = fs_path(devdir, sizeof(devdir), dir, name)) ||
            (rc = factory_keygen(devdir, CRYPTO_KEYSTORE_FILE)) ||
            (rc = fs_path(p, sizeof(p), devdir, "device.csr")) ||
            (rc = fs_read_file(p, CRYPTO_PEM_MAX, &csr, &len)))
            break;
        rc = hub_op_enroll(h, &hubp, "demo-sensor", csr, &out, &e);
        free(csr);
        if (rc)
            break;
        const char *id = json_string_value(json_object_get(out, "device_id"));
        const char *code = json_string_value(json_object_get(out, "claim_code"));
        rc = factory_finish(devdir, id, "demo-sensor",
                            json_string_value(json_object_get(out, "certificate")), h->ca_chain_pem,
                            code, h->broker_host, h->broker_port);
        if (!rc)
            rc = hub_op_claim(h, &owner, code, "demo", &claimed, &e);
        json_decref(out);
        json_decref(claimed);
    }
    if (rc)
        log_err("demo fleet: %s", mamori_strerror(rc));
    else
        log_info("demo fleet: %d simulated devices in %s (owner %s, no login)", n, dir, DEMO_OWNER);
    return rc;
}
