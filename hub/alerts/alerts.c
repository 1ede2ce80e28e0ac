/*
 * hub/alerts/alerts.c - the rules over the hub's events, raising and clearing
 * alerts, the response policy, and the room's housekeeping jobs (see alerts.h).
 */
#include "hub/alerts/alerts_priv.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/proto.h"
#include "hub/device/device.h"
#include "hub/pki/ca.h"

const struct rule RULES[] = {
    {"heartbeat_loss",
     "no heartbeat for three intervals: theft, destruction, power or network loss",
     {"offline"},
     NULL,
     1,
     0,
     "alert",
     "online"},
    {"auth_failures",
     "refused connections in a burst: guessing, counterfeit or cloned devices, unknown "
     "certificates",
     {"broker_auth_fail", "claim_failed"},
     NULL,
     5,
     60,
     "alert",
     NULL},
    {"unexpected_topic",
     "publishing or subscribing outside the device's own topics",
     {"broker_acl_deny"},
     NULL,
     3,
     60,
     "warning",
     NULL},
    {"message_flood",
     "messages above the device's rate limit (the broker disconnected it)",
     {"broker_rate_kick"},
     NULL,
     1,
     0,
     "warning",
     NULL},
    {"value_out_of_range",
     "telemetry the model's schema refuses (range, type, rate, time)",
     {"telemetry_rejected", "event_rejected"},
     NULL,
     1, /* the hub reports refusals at most once a minute per device */
     0,
     "warning",
     NULL},
    {"replayed_messages",
     "messages the device already sent, sent again",
     {"telemetry_replay", "event_replay", "device_log_replay"},
     NULL,
     1,
     0,
     "alert",
     NULL},
    {"log_chain_break",
     "the device's signed log has a gap, an edit, a rewind or a forgery",
     {"device_log_gap", "device_log_chain_broken", "device_log_forged", "device_log_rewound"},
     NULL,
     1,
     0,
     "alert",
     NULL},
    {"log_access",
     "another process on the device read or changed its log",
     {"device_log_access"},
     NULL,
     1,
     0,
     "alert",
     NULL},
    {"config_drift",
     "a configuration file changed on the device",
     {"device_event"},
     "config_changed",
     1,
     0,
     "warning",
     NULL},
    {"command_replayed",
     "a signed command was sent to the device again",
     {"device_event"},
     "command_replayed",
     1,
     0,
     "alert",
     NULL},
    {"vulnerable_firmware",
     "the device runs a version named in a security advisory",
     {"device_vulnerable"},
     NULL,
     1,
     0,
     NULL,
     NULL},
    {"relay_latency",
     "a signed challenge's round trip far above the device's own: a relay in between",
     {"relay_suspected"},
     NULL,
     1,
     0,
     "alert",
     NULL},
    {"rate_spike",
     "messages far above the device's own usual rate (a compromised or runaway device)",
     {"rate_spike"},
     NULL,
     1,
     0,
     "warning",
     NULL},
    {"identity_clone",
     "one identity's live session taken over from another address: a cloned device",
     {"broker_duplicate_connection"},
     NULL,
     1,
     0,
     "alert",
     NULL},
    {"client_id_mismatch",
     "a certificate presented with a client id not its own: a device (or a stolen key) "
     "trying to take another device's or the hub's session over",
     {"broker_client_id_mismatch"},
     NULL,
     1,
     0,
     "alert",
     NULL},
    {"cert_expiry",
     "the device certificate expires within the renewal window",
     {"cert_expiring"},
     NULL,
     1,
     0,
     "warning",
     "cert_rotated"},
    {"stray_device",
     "silent longer than the stray period: restricted until its owner confirms it",
     {"device_stray"},
     NULL,
     1,
     0,
     "alert",
     NULL},
    {"stray_returned",
     "a stray device connected again: its owner must confirm it",
     {"stray_returned"},
     NULL,
     1,
     0,
     "alert",
     NULL},
    {"cert_rotation_failed",
     "the device's key and certificate could not be rotated",
     {"cert_rotation_failed"},
     NULL,
     1,
     0,
     "warning",
     NULL},
};
const size_t N_RULES = sizeof(RULES) / sizeof(RULES[0]);

const struct rule *alerts_rule_named(const char *name)
{
    for (size_t i = 0; i < N_RULES; i++)
        if (strcmp(RULES[i].name, name) == 0)
            return &RULES[i];
    return NULL;
}

const struct principal RULES_WHO = {.user_id = 0, .name = "rules", .role = ROLE_ADMIN};

static struct win *window_of(struct alerts_state *s, const struct rule *r, const char *dev)
{
    uint8_t h[CRYPTO_SHA256_LEN];
    char key[64];
    snprintf(key, sizeof(key), "%s/%s", r->name, dev);
    crypto_sha256(key, strlen(key), h);
    struct win *w = &s->win[((unsigned)h[0] << 8 | h[1]) % WIN_SLOTS];
    if (w->rule != r || strcmp(w->dev, dev) != 0) {
        memset(w, 0, sizeof(*w));
        w->rule = r;
        snprintf(w->dev, sizeof(w->dev), "%s", dev);
    }
    return w;
}

/* --- raising ---------------------------------------------------------- */

json_t *alerts_json(const struct alert_rec *a)
{
    const struct rule *r = alerts_rule_named(a->rule);
    json_t *d = json_loads(a->detail, 0, NULL);
    return json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:o, s:s, s:s, s:s}", "id",
                     (json_int_t)a->id, "rule", a->rule, "what", r ? r->what : "", "device_id",
                     a->device_id, "severity", a->severity, "state", a->state, "action", a->action,
                     "first_at", (json_int_t)a->first_at, "last_at", (json_int_t)a->last_at,
                     "count", (json_int_t)a->count, "detail", d ? d : json_string(a->detail),
                     "acked_by", a->acked_by, "resolved_by", a->resolved_by, "note", a->note);
}

/* The response the policy asks for, marked on the alert ("due:ACTION");
 * the alerts thread applies it outside the caller's transaction. */
static void respond(struct hub *h, struct alert_rec *a)
{
    struct device_rec d;
    struct policy_rec p;
    if (a->action[0] || !a->device_id[0] || store_device_get(h->store, a->device_id, &d) ||
        store_policy_get(h->store, a->rule, d.model, &p) || strcmp(p.action, "notify") == 0 ||
        a->count < p.act_after)
        return;
    const char *due = strcmp(p.action, "lock") == 0 ? "due:lock" : "due:quarantine";
    if (store_alert_action(h->store, a->id, due) == MAMORI_OK) {
        snprintf(a->action, sizeof(a->action), "%s", due);
        alerts_wake(h);
    }
}

static void raise_alert(struct hub *h, const struct rule *r, const char *dev, const char *severity,
                        const char *detail)
{
    struct alert_rec a;
    bool created = false;
    if (store_alert_raise(h->store, r->name, dev, severity, detail, hub_now_ms(), &a, &created))
        return;
    if (created) {
        log_warn("alert %lld %s %s", (long long)a.id, r->name, dev[0] ? dev : "(fleet)");
        alerts_deliver(h, &a, "alert.opened");
    }
    respond(h, &a);
}

/* The condition is over (e.g. heartbeats are back): the live alert of the
 * rule for the device is resolved by the rules themselves. */
static void clear_alert(struct hub *h, const struct rule *r, const char *dev)
{
    struct alert_rec a;
    if (store_alert_live(h->store, r->name, dev, &a) == MAMORI_OK &&
        store_alert_set(h->store, a.id, "resolved", RULES_WHO.name, "the condition cleared") ==
            MAMORI_OK &&
        store_alert_get(h->store, a.id, &a) == MAMORI_OK)
        alerts_deliver(h, &a, "alert.resolved");
}

void alerts_on_event(struct hub *h, const char *device_id, const char *kind, const char *severity,
                     const char *detail)
{
    const char *dev = device_id ? device_id : "";
    for (size_t i = 0; dev[0] && i < N_RULES; i++)
        if (RULES[i].clears && strcmp(RULES[i].clears, kind) == 0)
            clear_alert(h, &RULES[i], dev);
    char type[40] = "";
    if (strcmp(kind, "device_event") == 0) {
        json_t *o = json_loads(detail, 0, NULL);
        const char *t = json_string_value(json_object_get(o, "type"));
        const char *old = json_string_value(json_object_get(o, "old"));
        /* a configuration's first digest (old "none") is a record, not drift */
        if (t && !(strcmp(t, "config_changed") == 0 && old && strcmp(old, "none") == 0))
            snprintf(type, sizeof(type), "%s", t);
        json_decref(o);
    }
    for (size_t i = 0; i < N_RULES; i++) {
        const struct rule *r = &RULES[i];
        bool hit = false;
        for (size_t k = 0; k < 4 && r->kinds[k]; k++)
            hit |= strcmp(r->kinds[k], kind) == 0;
        if (!hit || (r->type && strcmp(r->type, type) != 0))
            continue;
        if (r->n > 1) {
            if (!h->alerts)
                continue;
            struct win *w = window_of(h->alerts, r, dev);
            int64_t now = hub_now_ms();
            if (!w->n || now - w->start > (int64_t)r->window_s * 1000) {
                w->start = now;
                w->n = 0;
            }
            if (++w->n < r->n)
                continue;
            w->n = 0; /* the next alert needs another n */
        }
        raise_alert(h, r, dev, r->severity ? r->severity : severity, detail);
    }
}

/* Certificates about to expire: the rotation policy renews them; until it
 * has, an alert says so (resolved by the rotation). Checked at the rotation
 * policy's interval; one event per live alert. Lock held. */
static void expiry_sweep(struct hub *h)
{
    static char ids[256][24];
    size_t n = 0;
    log_if_err(store_devices_expiring(h->store, hub_now() + (int64_t)h->cfg.cert_renew_days * 86400,
                                      ids, 256, &n));
    for (size_t i = 0; i < n; i++) {
        struct device_rec d;
        struct alert_rec live;
        if (store_alert_live(h->store, "cert_expiry", ids[i], &live) != MAMORI_OK &&
            store_device_get(h->store, ids[i], &d) == MAMORI_OK)
            hub_event(h, d.id, "cert_expiring", "warning",
                      "{\"cert_not_after\":%lld,\"days_left\":%lld}", (long long)d.cert_not_after,
                      (long long)((d.cert_not_after - hub_now()) / 86400));
    }
}

/* Resolved alerts last seen, and deliveries made, more than
 * --alert-retention-days ago go (the audit log keeps who acknowledged and
 * resolved what). Lock held. */
static void prune_sweep(struct hub *h)
{
    int64_t na = 0, nd = 0;
    int64_t before = hub_now_ms() - (int64_t)h->cfg.alert_retention_days * 86400 * 1000;
    if (store_alerts_prune(h->store, before, &na, &nd) == MAMORI_OK && (na || nd))
        log_info("retention: %lld resolved alerts and %lld deliveries older than %d days removed",
                 (long long)na, (long long)nd, h->cfg.alert_retention_days);
}

#define DATA_PRUNE_CHUNK 2000

/* Telemetry and events older than --data-retention-days go (GDPR art.
 * 5(1)(e), P-DATA), a chunk per turn of the loop so the lock is held
 * briefly; the audit log is not touched. Lock held. */
static void data_prune_step(struct hub *h)
{
    static int64_t total_tm, total_ev;
    int64_t tm = 0, ev = 0;
    int64_t before = hub_now_ms() - (int64_t)h->cfg.data_retention_days * 86400 * 1000;
    if (store_data_prune(h->store, before, DATA_PRUNE_CHUNK, &tm, &ev) != MAMORI_OK) {
        h->alerts->data_pruning = false;
        return;
    }
    total_tm += tm;
    total_ev += ev;
    if (tm < DATA_PRUNE_CHUNK && ev < DATA_PRUNE_CHUNK) {
        h->alerts->data_pruning = false;
        if (total_tm || total_ev)
            log_info("retention: %lld telemetry rows and %lld events older than %d days removed",
                     (long long)total_tm, (long long)total_ev, h->cfg.data_retention_days);
        total_tm = total_ev = 0;
    }
}

static void expiry_job(struct hub *h, int64_t now_ms)
{
    (void)now_ms;
    expiry_sweep(h);
}

/* retention: telemetry and events, daily, a chunk per turn */
static void data_retention_job(struct hub *h, int64_t now_ms)
{
    if (!h->alerts)
        return;
    if (!h->alerts->data_pruning && now_ms - h->alerts->data_at > 24LL * 3600 * 1000) {
        h->alerts->data_pruning = true;
        h->alerts->data_at = now_ms;
    }
    if (h->alerts->data_pruning)
        data_prune_step(h);
}

/* retention: resolved alerts and finished deliveries, daily */
static void alert_retention_job(struct hub *h, int64_t now_ms)
{
    (void)now_ms;
    prune_sweep(h);
}

/* the CRL's next update is 7 days out: renewed daily */
static void crl_job(struct hub *h, int64_t now_ms)
{
    (void)now_ms;
    log_if_err(ca_crl_write(h));
}

enum mamori_err alerts_register(struct hub *h)
{
    const int64_t day = 24LL * 3600 * 1000;
    enum mamori_err rc;
    if ((rc = hub_on_event(h, alerts_on_event)) || (rc = hub_on_notice(h, alerts_notify)))
        return rc;
    if ((rc = hub_job_add(h, "cert_expiry", (int64_t)h->cfg.rotation_check_s * 1000, 0,
                          HUB_JOB_LOCKED, expiry_job)))
        return rc;
    if (h->cfg.data_retention_days > 0 &&
        (rc = hub_job_add(h, "data_retention", 100, 0, HUB_JOB_LOCKED, data_retention_job)))
        return rc;
    if (h->cfg.alert_retention_days > 0 &&
        (rc = hub_job_add(h, "alert_retention", day, 0, HUB_JOB_LOCKED, alert_retention_job)))
        return rc;
    /* hub_start wrote one */
    return hub_job_add(h, "crl_renewal", day, day, HUB_JOB_LOCKED, crl_job);
}
