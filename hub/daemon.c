/*
 * hub/daemon.c - initialisation, start and stop of mamorid: the one place
 * that knows every room of the hub (docs/internals/hub.md).
 *
 * First start creates DATA (mode 0700): the PKI, the database, the audit
 * key, and the one-time bootstrap token (DATA/bootstrap-token, 0600; only
 * its hash is stored). There is no default credential anywhere (T01-L1a,
 * T07-L1a, T11-L1b, P-PWD): the first administrator exists only once someone
 * holding that file has chosen a name and password.
 */
#include "hub/daemon.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/crypto.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "hub/alerts/alerts.h"
#include "hub/core/auth.h"
#include "hub/device/ingest.h"
#include "hub/device/liveness.h"
#include "hub/device/register.h"
#include "hub/device/command.h"
#include "hub/device/relay.h"
#include "hub/device/telemetry.h"
#include "hub/fleet/campaign.h"
#include "hub/fleet/firmware.h"
#include "hub/io/api.h"
#include "hub/io/broker.h"
#include "hub/io/mqtt.h"
#include "hub/pki/ca.h"

static enum mamori_err load_audit_key(struct hub *h)
{
    char dir[HUB_PATH_MAX], p[HUB_PATH_MAX];
    enum mamori_err rc;
    if ((rc = fs_path(dir, sizeof(dir), h->cfg.data_dir, "secrets")) ||
        (rc = fs_mkdir_p(dir, 0700)) || (rc = fs_path(p, sizeof(p), dir, "audit.key")))
        return rc;
    char *k = NULL;
    size_t len = 0;
    rc = fs_read_file(p, 64, &k, &len);
    if (rc == MAMORI_ERR_NOTFOUND) {
        uint8_t fresh[AUDIT_KEY_LEN];
        if ((rc = crypto_random(fresh, sizeof(fresh))) ||
            (rc = fs_write_atomic(p, fresh, sizeof(fresh), 0600)))
            return rc;
        memcpy(h->audit.key, fresh, AUDIT_KEY_LEN);
        crypto_wipe(fresh, sizeof(fresh));
        return MAMORI_OK;
    }
    if (rc)
        return rc;
    if ((rc = fs_check_private(p, 0)) == MAMORI_OK && len != AUDIT_KEY_LEN)
        rc = MAMORI_ERR_PARSE;
    if (!rc)
        memcpy(h->audit.key, k, AUDIT_KEY_LEN);
    crypto_wipe(k, len);
    free(k);
    return rc;
}

static enum mamori_err ensure_bootstrap(struct hub *h)
{
    char v[80] = "";
    if (store_user_count(h->store) > 0)
        return MAMORI_OK;
    bool have = store_meta_get(h->store, "bootstrap_token_hash", v, sizeof(v)) == MAMORI_OK;
    if (have && strcmp(v, "used") == 0)
        return MAMORI_OK;
    /* Several hubs: the token stays the one the first hub wrote (in its own
     * data directory); another hub's start must not void it. */
    if (have && v[0] && store_shared(h->store)) {
        log_info("the administrator's bootstrap token is the one another hub wrote");
        return MAMORI_OK;
    }
    char p[HUB_PATH_MAX], tok[AUTH_TOKEN_TEXT], th[65];
    enum mamori_err rc = fs_path(p, sizeof(p), h->cfg.data_dir, "bootstrap-token");
    if (rc)
        return rc;
    /* A fresh token at every start until the bootstrap is done: a token
     * whose file was lost is never left valid. */
    if ((rc = auth_token_new("mmb_", tok)))
        return rc;
    auth_token_hash(tok, th);
    char line[AUTH_TOKEN_TEXT + 1];
    int n = snprintf(line, sizeof(line), "%s\n", tok);
    rc = fs_write_atomic(p, line, (size_t)n, 0600);
    crypto_wipe(tok, sizeof(tok));
    crypto_wipe(line, sizeof(line));
    if (!rc)
        rc = store_meta_set(h->store, "bootstrap_token_hash", th);
    if (!rc)
        log_info("one-time admin bootstrap token written to %s", p);
    return rc;
}

static void checkpoint_job(struct hub *h, int64_t now_ms)
{
    (void)now_ms;
    if (store_checkpoint(h->store) != MAMORI_OK)
        log_debug("store checkpoint postponed"); /* logged inside; the next turn tries again */
}

enum mamori_err hub_init(struct hub *h, const struct hub_config *cfg)
{
    memset(h, 0, sizeof(*h));
    h->cfg = *cfg;
    pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_init(&h->live_mu, NULL);
    enum mamori_err rc = fs_mkdir_p(cfg->data_dir, 0700);
    if (rc)
        return rc;
    if ((rc = fs_check_private(cfg->data_dir, 0)) != MAMORI_OK) {
        log_err("%s must be a directory owned by us with mode 0700", cfg->data_dir);
        return rc;
    }
    char p[HUB_PATH_MAX];
    /* One hub per data directory: a second one would run a second broker
     * for the same registry on the platform's port, and take the first
     * one's broker for an orphan to stop (hub/io/broker.c). */
    h->data_lock_fd = -1;
    if ((rc = fs_path(p, sizeof(p), cfg->data_dir, "hub.lock")))
        return rc;
    if ((rc = fs_lock_file(p, &h->data_lock_fd))) {
        if (rc == MAMORI_ERR_BUSY)
            log_err("%s is in use by another mamorid; not starting", cfg->data_dir);
        return rc;
    }
    /* the registry: --store, or SQLite in the data directory */
    if (cfg->store[0])
        snprintf(p, sizeof(p), "%s", cfg->store);
    else if ((rc = fs_path(p, sizeof(p), cfg->data_dir, "mamori.db")))
        return rc;
    if ((rc = store_open(p, &h->store)))
        return rc;
    log_info("registry on %s", store_engine(h->store));
    h->audit.store = h->store;
    if ((rc = fs_path(h->audit.head_path, sizeof(h->audit.head_path), cfg->data_dir,
                      "audit.head")) ||
        (rc = load_audit_key(h)))
        return rc;
    if ((rc = ca_init(h)))
        return rc;
    if ((rc = ensure_bootstrap(h)))
        return rc;
    /* each domain's handlers and periodic jobs, in this order: the order
     * in which the bus hands them a message and the jobs run */
    if ((rc = device_register(h)) || (rc = campaign_register(h)) || (rc = firmware_register(h)) ||
        (rc = alerts_register(h)) || (rc = hub_cluster_start(h)))
        return rc;
    /* the store's checkpoints, out of the commits (without the hub lock) */
    return hub_job_add(h, "store_checkpoint", 1000, 1000, HUB_JOB_EVERY_HUB, checkpoint_job);
}

static enum mamori_err write_endpoints(struct hub *h)
{
    char dir[HUB_PATH_MAX], p[HUB_PATH_MAX], ca[HUB_PATH_MAX], buf[HUB_PATH_MAX * 2];
    enum mamori_err rc;
    if ((rc = fs_path(dir, sizeof(dir), h->cfg.data_dir, "run")) || (rc = fs_mkdir_p(dir, 0700)) ||
        (rc = fs_path(p, sizeof(p), dir, "endpoints.json")) ||
        (rc = fs_path(ca, sizeof(ca), h->cfg.data_dir, "pki/root.crt")))
        return rc;
    int n = snprintf(buf, sizeof(buf),
                     "{\"api\":\"https://%s:%d\",\"mqtt_host\":\"%s\",\"mqtt_port\":%d,"
                     "\"ca\":\"%s\",\"pid\":%d}\n",
                     h->cfg.listen_addr, h->api_port, h->broker_host, h->broker_port, ca,
                     (int)getpid());
    if (n < 0 || (size_t)n >= sizeof(buf))
        return MAMORI_ERR_TOOBIG;
    return fs_write_atomic(p, buf, (size_t)n, 0644);
}

/* Appends a hub lifecycle entry (start/stop). Lock held. */
static void audit_hub(struct hub *h, const char *action, const char *detail)
{
    if (store_begin(h->store) != MAMORI_OK)
        return;
    if (audit_append(&h->audit, hub_now(), "hub", action, "", "", detail) != MAMORI_OK ||
        store_commit(h->store) != MAMORI_OK) {
        store_rollback(h->store);
        return;
    }
    if (audit_anchor(&h->audit) == MAMORI_ERR_VERIFY)
        hub_event(h, NULL, "audit_tampered", "alert",
                  "{\"reason\":\"anchored entry missing or changed\"}");
}

enum mamori_err hub_start(struct hub *h)
{
    enum mamori_err rc;
    struct audit_verdict v;
    pthread_mutex_lock(&h->lock);
    /* T12-L3a: check the log before adding to it, so tampering done while
     * the hub was down is reported, and the evidence is not written over. */
    if (audit_verify(&h->audit, &v) == MAMORI_OK && v.problem != AUDIT_INTACT) {
        log_err("audit log %s at entry %lld", audit_problem_name(v.problem),
                (long long)v.first_bad_seq);
        hub_event(h, NULL, "audit_tampered", "alert", "{\"problem\":\"%s\",\"first_bad_seq\":%lld}",
                  audit_problem_name(v.problem), (long long)v.first_bad_seq);
    }
    char who[64];
    snprintf(who, sizeof(who), "{\"hub\":\"%s\"}", h->cfg.hub_name);
    audit_hub(h, "hub_start", who);
    /* this hub's share of the work before any device message comes in */
    hub_cluster_turn(h, hub_now_ms());
    log_if_err(ca_crl_write(h)); /* a fresh one at each start (next update: 7 days) */
    pthread_mutex_unlock(&h->lock);
    if ((rc = alerts_start(h)) || (rc = ingest_start(h)) || (rc = broker_start(h)) ||
        (rc = mqtt_start(h)) || (rc = api_start(h)) || (rc = live_start(h)) ||
        (rc = hub_jobs_start(h)))
        return rc;
    return write_endpoints(h);
}

void hub_stop(struct hub *h)
{
    h->stopping = 1;
    api_stop(h);
    mqtt_stop(h);
    ingest_stop(h); /* records what was queued */
    broker_stop(h);
    hub_jobs_stop(h);
    alerts_stop(h);
    pthread_mutex_lock(&h->lock);
    tm_flush(h);
    char who[64];
    snprintf(who, sizeof(who), "{\"hub\":\"%s\"}", h->cfg.hub_name);
    audit_hub(h, "hub_stop", who);
    pthread_mutex_unlock(&h->lock);
}

void hub_free(struct hub *h)
{
    store_close(h->store);
    crypto_cert_free(h->issuing_cert);
    crypto_key_free(h->issuing_key);
    crypto_key_free(h->cmd_key);
    free(h->cmd_chain_pem);
    free(h->ca_chain_pem);
    tm_free(h);
    relay_free(h);
    cmd_free(h);
    free(h->live);
    crypto_wipe(h->audit.key, sizeof(h->audit.key));
    pthread_mutex_destroy(&h->lock);
    pthread_mutex_destroy(&h->live_mu);
    if (h->data_lock_fd >= 0)
        close(h->data_lock_fd);
}
