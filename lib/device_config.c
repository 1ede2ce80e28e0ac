/*
 * lib/device_config.c - remote settings (common/devcfg.h) over the local
 * ones: the signed "config" and "config-rollback" commands, probation until
 * the hub hears from the device under the new settings, and the fall back
 * to the known-good version (lib/cfgstore.h; T01-L3c, T08-L3a).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cmd.h"
#include "common/crypto.h"
#include "common/devcfg.h"
#include "common/json.h"
#include "common/schema.h"
#include "lib/cfgstore.h"
#include "lib/devstate.h"
#include "lib/device_priv.h"
#include "lib/outbox.h"
#include "mamori/device.h"

/* Puts settings in force: the remote ones (JSON text; NULL: none) over
 * the local ones. live: the device is running, so a new broker address is
 * checked from the next connection on and the connection is renewed. */
enum mamori_err dev_settings_apply(struct mamori_device *d, const char *settings, bool live)
{
    struct devcfg c;
    char why[160];
    enum mamori_err rc;
    memset(&c, 0, sizeof(c));
    if (settings && settings[0] &&
        (rc = devcfg_parse(settings, strlen(settings), &c, why, sizeof(why))))
        return rc;
    const char *host = c.broker_host[0] ? c.broker_host : d->base_host;
    int port = c.broker_port ? c.broker_port : d->base_port;
    const char *schema = c.has_schema ? c.schema_json : d->base_schema;
    struct schema *ns = NULL;
    if (schema) {
        if (!(ns = malloc(sizeof(*ns))))
            return MAMORI_ERR_NOMEM;
        if ((rc = schema_parse(schema, strlen(schema), ns, why, sizeof(why)))) {
            free(ns);
            return rc;
        }
    }
    bool moved = strcmp(host, d->host) != 0 || port != d->port;
    if (live && moved && d->tls && (rc = crypto_tls_ctx_set_host(d->tls, host))) {
        free(ns);
        return rc;
    }
    free(d->schema);
    d->schema = ns;
    memset(&d->rate, 0, sizeof(d->rate));
    d->hb_interval_ms = c.heartbeat_s ? c.heartbeat_s * 1000u : d->base_hb_ms;
    snprintf(d->host, sizeof(d->host), "%s", host);
    d->port = port;
    if (live && moved)
        d->reconnect_pending = true;
    d->st.config_version = d->cfg.version;
    return MAMORI_OK;
}

/* Back to the known-good settings (T01-L3c, T08-L3a), reported and logged. */
void dev_config_fallback(struct mamori_device *d, const char *reason, bool live)
{
    uint64_t from = d->cfg.version;
    enum mamori_err rc = cfgstore_rollback(&d->cfg, 0);
    if (rc && rc != MAMORI_ERR_NOTFOUND) {
        d->st.outbox_errors++;
        return;
    }
    if (dev_settings_apply(d, d->cfg.version ? d->cfg.settings : NULL, live))
        (void)dev_settings_apply(d, NULL, live); /* the local settings always parse */
    d->cfg_probe_seq = 0;
    d->st.config_rollbacks++;
    char body[320];
    snprintf(body, sizeof(body),
             "{\"type\":\"config_rolled_back\",\"from\":%llu,\"to\":%llu,\"reason\":\"%s\"}",
             (unsigned long long)from, (unsigned long long)d->cfg.version, reason);
    if (dev_queue(d, OUTBOX_EV, (const char *const[]){body}, 1) == MAMORI_OK)
        d->st.events_sent++;
    snprintf(body, sizeof(body), "{\"from\":%llu,\"to\":%llu,\"reason\":\"%s\"}",
             (unsigned long long)from, (unsigned long long)d->cfg.version, reason);
    dev_log_append(d, "config_rolled_back", body);
}

/* The health check of settings on probation: the hub acknowledged the
 * event queued after they took effect (it reached the hub with them), or
 * the deadline passed. */
void dev_config_probe(struct mamori_device *d)
{
    if (!d->cfg_on || !d->cfg.pending)
        return;
    if (d->cfg_probe_seq && d->acked_ev >= d->cfg_probe_seq) {
        if (cfgstore_commit(&d->cfg) != MAMORI_OK) {
            d->st.outbox_errors++;
            return;
        }
        d->cfg_probe_seq = 0;
        char body[96];
        snprintf(body, sizeof(body), "{\"type\":\"config_committed\",\"version\":%llu}",
                 (unsigned long long)d->cfg.version);
        if (dev_queue(d, OUTBOX_EV, (const char *const[]){body}, 1) == MAMORI_OK)
            d->st.events_sent++;
        dev_log_append(d, "config_committed", body);
    } else if ((int64_t)dev_wall_ms() > d->cfg.deadline_ms) {
        dev_config_fallback(d, "health check failed: the hub did not hear from the device in time",
                            true);
    }
}

/* "config" {"version":N,"settings":{...}} and "config-rollback". */
void dev_config_command(struct mamori_device *d, const struct cmd *c)
{
    char prev[16], detail[160];
    if (devstate_seen(d->ds, c->id, prev)) {
        d->st.commands_refused++;
        snprintf(detail, sizeof(detail), "{\"first_outcome\":\"%s\"}", prev);
        dev_send_result(d, c, "refused", "replay", detail);
        dev_security_event(d, "command_replayed", c->id);
        return;
    }
    if (!d->cfg_on) {
        dev_send_result(d, c, "refused", "no state directory", NULL);
        return;
    }
    enum mamori_err rc;
    uint64_t from = d->cfg.version;
    if (c->type == CMD_CONFIG_ROLLBACK) {
        rc = cfgstore_rollback(&d->cfg, 0);
        if (rc) {
            dev_consume(d, c, "failed");
            dev_send_result(
                d, c, "failed",
                rc == MAMORI_ERR_NOTFOUND ? "no known-good settings" : mamori_strerror(rc), NULL);
            return;
        }
        if (dev_settings_apply(d, d->cfg.version ? d->cfg.settings : NULL, true))
            (void)dev_settings_apply(d, NULL, true);
        d->cfg_probe_seq = 0;
        d->st.config_rollbacks++;
    } else {
        json_t *a = json_loads(c->args, JSON_REJECT_DUPLICATES, NULL);
        json_t *st = json_object_get(a, "settings");
        char *txt = json_is_object(st) ? json_dump_compact(st) : NULL;
        uint64_t ver = 0;
        struct devcfg cfg;
        char why[160];
        json_decref(a);
        json_t *va = json_loads(c->args, JSON_REJECT_DUPLICATES, NULL);
        bool ok = json_get_u64(va, "version", &ver) && txt &&
                  devcfg_parse(txt, strlen(txt), &cfg, why, sizeof(why)) == MAMORI_OK;
        json_decref(va);
        if (!ok || ver <= d->cfg.version) {
            free(txt);
            dev_consume(d, c, "refused");
            d->st.commands_refused++;
            dev_send_result(d, c, "refused",
                            ok ? "not newer than the settings in force" : "invalid settings", NULL);
            dev_security_event(d, "config_refused", ok ? "older version" : "invalid settings");
            return;
        }
        int64_t deadline = (int64_t)dev_wall_ms() + (int64_t)cfg.health_s * 1000;
        rc = cfgstore_apply(&d->cfg, ver, txt, deadline, 0);
        if (!rc && (rc = dev_settings_apply(d, txt, true)))
            dev_config_fallback(d, "settings could not be applied", true);
        free(txt);
        if (rc) {
            dev_consume(d, c, "failed");
            dev_send_result(d, c, "failed", mamori_strerror(rc), NULL);
            return;
        }
    }
    if (devstate_accept(d->ds, c->id, c->exp, (int64_t)dev_wall_ms(), "ok", NULL, false, prev) !=
        MAMORI_OK)
        d->st.outbox_errors++;
    d->st.commands_accepted++;
    char body[200];
    if (c->type == CMD_CONFIG) {
        /* The probe: this event must reach the hub under the new settings. */
        snprintf(body, sizeof(body), "{\"type\":\"config_applied\",\"version\":%llu,\"from\":%llu}",
                 (unsigned long long)d->cfg.version, (unsigned long long)from);
        uint64_t seq = 0;
        if (d->ob && outbox_put(d->ob, OUTBOX_EV, (const char *const[]){body}, 1, dev_wall_ms(),
                                &seq) == MAMORI_OK) {
            d->cfg_probe_seq = seq;
            d->st.events_sent++;
        }
        dev_log_append(d, "config_applied", body);
        snprintf(detail, sizeof(detail),
                 "{\"version\":%llu,\"state\":\"probation\",\"deadline_ms\":%lld}",
                 (unsigned long long)d->cfg.version, (long long)d->cfg.deadline_ms);
    } else {
        snprintf(body, sizeof(body), "{\"from\":%llu,\"to\":%llu,\"reason\":\"command\"}",
                 (unsigned long long)from, (unsigned long long)d->cfg.version);
        dev_log_append(d, "config_rolled_back", body);
        snprintf(detail, sizeof(detail), "{\"version\":%llu,\"from\":%llu}",
                 (unsigned long long)d->cfg.version, (unsigned long long)from);
    }
    dev_send_result(d, c, "ok", "", detail);
    if (d->on_command)
        d->on_command(d, (enum mamori_command)c->type, d->on_command_arg);
}
