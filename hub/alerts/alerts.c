/*
 * hub/alerts.c - rules, alerts, response policy and delivery (see alerts.h).
 */
#include "hub/alerts/alerts.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/proto.h"
#include "hub/alerts/syslog_local.h"
#include "hub/device/device.h"
#include "hub/pki/ca.h"

/* --- the rules ------------------------------------------------------------ */

struct rule {
    const char *name, *what;
    const char *kinds[4]; /* events that count */
    const char *type;     /* for device_event: the device's event type */
    unsigned n, window_s; /* n of them within window_s raise the alert */
    const char *severity; /* NULL: the event's own */
    const char *clears;   /* an event that resolves the device's live alert */
};

static const struct rule RULES[] = {
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
#define N_RULES (sizeof(RULES) / sizeof(RULES[0]))

static const struct rule *rule_named(const char *name)
{
    for (size_t i = 0; i < N_RULES; i++)
        if (strcmp(RULES[i].name, name) == 0)
            return &RULES[i];
    return NULL;
}

static const struct principal RULES_WHO = {.user_id = 0, .name = "rules", .role = ROLE_ADMIN};

/* Counting windows of rules that need n > 1 events: a small table, keyed
 * by rule and device; a slot taken by another key starts over (lossy only
 * beyond WIN_SLOTS devices counting at the same moment). */
#define WIN_SLOTS 4096
struct win {
    const struct rule *rule;
    char dev[24];
    int64_t start;
    unsigned n;
};

#define DELIVER_BATCH 16
#define DELIVER_TRIES 8

struct alerts_state {
    struct win win[WIN_SLOTS];
    pthread_t thread;
    bool running;
    int syslog_fd; /* udp:// target (-1: none) */
    struct sockaddr_in syslog_to;
    bool syslog_local;
    int64_t data_at;   /* last data retention sweep started (ms; 0: at once) */
    bool data_pruning; /* a sweep of telemetry and events is under way */
    /* woken when something is queued, so a delivery leaves at once */
    pthread_mutex_t wake_mu;
    pthread_cond_t wake;
    bool woken;
};

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

static json_t *alert_json(const struct alert_rec *a)
{
    const struct rule *r = rule_named(a->rule);
    json_t *d = json_loads(a->detail, 0, NULL);
    return json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:o, s:s, s:s, s:s}", "id",
                     (json_int_t)a->id, "rule", a->rule, "what", r ? r->what : "", "device_id",
                     a->device_id, "severity", a->severity, "state", a->state, "action", a->action,
                     "first_at", (json_int_t)a->first_at, "last_at", (json_int_t)a->last_at,
                     "count", (json_int_t)a->count, "detail", d ? d : json_string(a->detail),
                     "acked_by", a->acked_by, "resolved_by", a->resolved_by, "note", a->note);
}

struct fanout {
    struct store *store;
    int64_t alert_id, now;
    const char *payload;
};

static bool queue_one(const struct webhook_rec *w, void *arg)
{
    struct fanout *f = arg;
    log_if_err(store_delivery_add(f->store, w->id, f->alert_id, f->payload, f->now));
    return true;
}

/* RFC 5424 priorities: facility daemon (3), severities error, warning, notice. */
#define SYSLOG_DAEMON  (3 << 3)
#define SYSLOG_ERR     3
#define SYSLOG_WARNING 4
#define SYSLOG_NOTICE  5

/* One line per alert change to syslog (RFC 5424 over UDP, or the local
 * syslog(3)); every field is from a fixed set or a checked device id. */
static void to_syslog(struct hub *h, const struct alert_rec *a, const char *event)
{
    struct alerts_state *s = h->alerts;
    if (!s || (s->syslog_fd < 0 && !s->syslog_local))
        return;
    int sev = strcmp(a->severity, "alert") == 0     ? SYSLOG_ERR
              : strcmp(a->severity, "warning") == 0 ? SYSLOG_WARNING
                                                    : SYSLOG_NOTICE;
    char msg[384], line[640], ts[40], host[64] = "-";
    snprintf(msg, sizeof(msg),
             "%s id=%lld rule=%s device=%s severity=%s state=%s count=%lld action=%s", event,
             (long long)a->id, a->rule, a->device_id[0] ? a->device_id : "-", a->severity, a->state,
             (long long)a->count, a->action[0] ? a->action : "-");
    if (s->syslog_local) {
        alerts_syslog_send(SYSLOG_DAEMON | sev, msg);
        return;
    }
    time_t t = (time_t)hub_now();
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "-");
    host[sizeof(host) - 1] = '\0';
    int n = snprintf(line, sizeof(line), "<%d>1 %s %s mamorid %d alert - %s", SYSLOG_DAEMON | sev,
                     ts, host, (int)getpid(), msg);
    if (n > 0 && (size_t)n < sizeof(line) &&
        sendto(s->syslog_fd, line, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&s->syslog_to,
               sizeof(s->syslog_to)) < 0)
        log_warn("syslog: cannot send alert %lld", (long long)a->id);
}

/* Wakes the alerts thread (something to deliver, or a response due). */
static void wake_up(struct hub *h)
{
    struct alerts_state *s = h->alerts;
    if (!s)
        return;
    pthread_mutex_lock(&s->wake_mu);
    s->woken = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->wake_mu);
}

/* Sleeps up to ms, or until woken. */
static void nap(struct alerts_state *s, unsigned ms)
{
    struct timespec until;
    hub_wait_deadline(&until, CLOCK_REALTIME, ms);
    pthread_mutex_lock(&s->wake_mu);
    while (!s->woken && pthread_cond_timedwait(&s->wake, &s->wake_mu, &until) == 0)
        ;
    s->woken = false;
    pthread_mutex_unlock(&s->wake_mu);
}

/* Queues "event" about a for every target (the delivery thread sends). */
static void deliver(struct hub *h, const struct alert_rec *a, const char *event)
{
    to_syslog(h, a, event);
    json_t *o = json_pack("{s:s, s:o, s:I}", "event", event, "alert", alert_json(a), "at",
                          (json_int_t)hub_now_ms());
    char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (txt && strlen(txt) < sizeof(((struct delivery_rec *)0)->payload)) {
        struct fanout f = {h->store, a->id, hub_now_ms(), txt};
        log_if_err(store_webhooks(h->store, queue_one, &f));
        wake_up(h);
    } else {
        log_err("alert %lld: %s too large to deliver", (long long)a->id, event);
    }
    free(txt);
}

void alerts_notify(struct hub *h, const char *event, const char *device_id, const char *detail)
{
    json_t *d = json_loads(detail, 0, NULL);
    json_t *o = json_pack("{s:s, s:s, s:o, s:I}", "event", event, "device_id", device_id, "detail",
                          d ? d : json_object(), "at", (json_int_t)hub_now_ms());
    char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (txt && strlen(txt) < sizeof(((struct delivery_rec *)0)->payload)) {
        struct fanout f = {h->store, 0, hub_now_ms(), txt};
        log_if_err(store_webhooks(h->store, queue_one, &f));
        wake_up(h);
    }
    free(txt);
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
        wake_up(h);
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
        deliver(h, &a, "alert.opened");
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
        deliver(h, &a, "alert.resolved");
}

void alerts_on_event(struct hub *h, const char *device_id, const char *kind, const char *severity,
                     const char *detail)
{
    const char *dev = device_id ? device_id : "";
    struct device_rec sd;
    /* a stray device back online: its owner must confirm it */
    if (dev[0] && strcmp(kind, "online") == 0 &&
        store_device_get(h->store, dev, &sd) == MAMORI_OK && strcmp(sd.state, "stray") == 0)
        hub_event(h, dev, "stray_returned", "alert", "{\"state\":\"stray\"}");
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

/* --- stray devices (T01-L4a, T01-L4b) --------------------------------------- */

static const struct principal STRAY_WHO = {.user_id = 0, .name = "stray", .role = ROLE_ADMIN};

/* Devices offline longer than the stray period become stray: restricted to
 * heartbeats and commands, download tokens void, owner and integrations
 * told (the stray_device rule). Lock held. */
static void stray_mark(struct hub *h, char (*ids)[24], size_t n, const char *reason);

static void stray_sweep(struct hub *h)
{
    static char ids[256][24];
    size_t n = 0;
    char reason[96];
    if (h->cfg.stray_after_s > 0) {
        snprintf(reason, sizeof(reason), "offline longer than the stray period (%lld s)",
                 (long long)h->cfg.stray_after_s);
        log_if_err(store_devices_silent(h->store, hub_now() - h->cfg.stray_after_s, ids, 256, &n));
        stray_mark(h, ids, n, reason);
    }
    /* forgotten by its owner: no login for the owner-idle period (JNSA L4) */
    if (h->cfg.owner_idle_s > 0) {
        snprintf(reason, sizeof(reason), "its owner has not logged in for %lld s",
                 (long long)h->cfg.owner_idle_s);
        log_if_err(
            store_devices_owner_idle(h->store, hub_now() - h->cfg.owner_idle_s, ids, 256, &n));
        stray_mark(h, ids, n, reason);
    }
}

static void stray_mark(struct hub *h, char (*ids)[24], size_t n, const char *reason)
{
    for (size_t i = 0; i < n; i++) {
        struct device_rec d;
        if (store_device_get(h->store, ids[i], &d) ||
            hub_device_action_locked(h, &STRAY_WHO, &d, LC_STRAY_MARK, reason, NULL))
            continue;
        hub_event(h, d.id, "device_stray", "alert", "{\"reason\":\"%s\",\"last_seen\":%lld}",
                  reason, (long long)d.last_seen);
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

/* --- the alerts thread: responses, then deliveries -------------------------- */

static void due_one(struct hub *h, const struct alert_rec *a)
{
    struct device_rec d;
    struct alert_rec now = *a;
    bool lock = strcmp(a->action, "due:lock") == 0;
    char reason[96];
    snprintf(reason, sizeof(reason), "rule %s (alert %lld)", a->rule, (long long)a->id);
    enum mamori_err rc = store_device_get(h->store, a->device_id, &d);
    if (!rc)
        rc = hub_device_action_locked(h, &RULES_WHO, &d, lock ? LC_LOCK : LC_QUARANTINE, reason,
                                      NULL);
    const char *done = !rc                      ? (lock ? "locked" : "quarantined")
                       : rc == MAMORI_ERR_STATE ? "none (state)"
                                                : "failed";
    log_if_err(store_alert_action(h->store, a->id, done));
    snprintf(now.action, sizeof(now.action), "%s", done);
    if (!rc)
        deliver(h, &now, "alert.acted");
}

static size_t write_discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p, (void)arg;
    return size * n;
}

bool alerts_address_ok(const char *addr)
{
    const char *at = strchr(addr, '@');
    size_t len = strlen(addr);
    if (!at || at == addr || !at[1] || len > 254 || strchr(at + 1, '@'))
        return false;
    for (const char *p = addr; *p; p++) {
        unsigned char c = (unsigned char)*p;
        bool local = p < at && (strchr("._%+-", c) || (c >= '0' && c <= '9') ||
                                ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'));
        bool domain = p > at && (strchr(".-", c) || (c >= '0' && c <= '9') ||
                                 ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'));
        if (p != at && !local && !domain)
            return false;
    }
    return true;
}

struct mailbuf {
    const char *p;
    size_t left;
};

static size_t mail_read(char *out, size_t size, size_t n, void *arg)
{
    struct mailbuf *m = arg;
    size_t k = size * n < m->left ? size * n : m->left;
    memcpy(out, m->p, k);
    m->p += k;
    m->left -= k;
    return k;
}

/* Mails one delivery through the configured server; NULL when it took it. */
static const char *mail(struct hub *h, const struct delivery_rec *d, const char *sig,
                        const char *ts, char *why, size_t n)
{
    const char *rcpt = d->url + 7; /* "mailto:" */
    json_t *o = json_loads(d->payload, 0, NULL);
    json_t *a = json_object_get(o, "alert");
    char subject[200], date[64], *msg = NULL;
    snprintf(subject, sizeof(subject), "[mamori] %s: %s on %s (%s)",
             json_string_value(json_object_get(o, "event"))
                 ? json_string_value(json_object_get(o, "event"))
                 : "?",
             json_string_value(json_object_get(a, "rule"))
                 ? json_string_value(json_object_get(a, "rule"))
                 : "?",
             json_string_value(json_object_get(a, "device_id")) &&
                     json_string_length(json_object_get(a, "device_id"))
                 ? json_string_value(json_object_get(a, "device_id"))
                 : "the fleet",
             json_string_value(json_object_get(a, "severity"))
                 ? json_string_value(json_object_get(a, "severity"))
                 : "?");
    /* a line for people, then the signed JSON exactly as signed (the
     * last line: receivers check X-Mamori-Signature over it) */
    const char *what = json_string_value(json_object_get(a, "what"));
    size_t plen = strlen(d->payload) + strlen(subject) + (what ? strlen(what) : 0) + 16;
    char *pretty = o ? malloc(plen) : NULL;
    if (pretty)
        snprintf(pretty, plen, "%s%s%s\r\n\r\n%s", subject + 9, what ? ": " : "", what ? what : "",
                 d->payload);
    json_decref(o);
    time_t t = (time_t)hub_now();
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    size_t cap = 1024 + (pretty ? strlen(pretty) : 0);
    if (!pretty || !(msg = malloc(cap))) {
        free(pretty);
        return "out of memory";
    }
    int len = snprintf(msg, cap,
                       "From: Mamori <%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: %s\r\n"
                       "Message-ID: <mamori-delivery-%lld-%s@%s>\r\nMIME-Version: 1.0\r\n"
                       "Content-Type: application/json; charset=utf-8\r\n"
                       "X-Mamori-Timestamp: %s\r\nX-Mamori-Signature: %s\r\n\r\n%s\r\n",
                       h->cfg.smtp_from, rcpt, subject, date, (long long)d->id, ts,
                       strchr(h->cfg.smtp_from, '@') + 1, ts, sig, pretty);
    free(pretty);
    if (len < 0 || (size_t)len >= cap) {
        free(msg);
        return "message too large";
    }
    struct mailbuf mb = {msg, (size_t)len};
    struct curl_slist *to = curl_slist_append(NULL, rcpt);
    CURL *c = curl_easy_init();
    CURLcode cc = CURLE_FAILED_INIT;
    if (c && to) {
        curl_easy_setopt(c, CURLOPT_URL, h->cfg.smtp_url);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
        curl_easy_setopt(c, CURLOPT_MAIL_FROM, h->cfg.smtp_from);
        curl_easy_setopt(c, CURLOPT_MAIL_RCPT, to);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, mail_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &mb);
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        /* STARTTLS whenever the server is not on this machine */
        if (strncmp(h->cfg.smtp_url, "smtp://127.", 11) != 0 &&
            strncmp(h->cfg.smtp_url, "smtp://localhost", 16) != 0)
            curl_easy_setopt(c, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
        cc = curl_easy_perform(c);
    }
    curl_slist_free_all(to);
    curl_easy_cleanup(c);
    free(msg);
    if (cc != CURLE_OK) {
        snprintf(why, n, "smtp: %s", curl_easy_strerror(cc));
        return why;
    }
    return NULL;
}

/* POSTs (or mails) one delivery; NULL when the receiver took it. */
static const char *post(struct hub *h, const struct delivery_rec *d, char *why, size_t n)
{
    uint8_t mac[CRYPTO_SHA256_LEN];
    char hex[CRYPTO_FP_HEX_LEN], hdr[3][160], ts[24];
    snprintf(ts, sizeof(ts), "%lld", (long long)hub_now_ms());
    /* signed: "<timestamp>.<body>", so a captured body cannot be replayed
     * under a new timestamp */
    size_t tl = strlen(ts), bl = strlen(d->payload);
    char *msg = malloc(tl + 1 + bl);
    if (!msg)
        return "out of memory";
    memcpy(msg, ts, tl);
    msg[tl] = '.';
    memcpy(msg + tl + 1, d->payload, bl);
    enum mamori_err rc = crypto_hmac_sha256(d->secret, strlen(d->secret), msg, tl + 1 + bl, mac);
    free(msg);
    if (rc)
        return "hmac";
    crypto_hex(mac, sizeof(mac), hex);
    if (strncmp(d->url, "mailto:", 7) == 0) {
        char sig[80];
        snprintf(sig, sizeof(sig), "sha256=%s", hex);
        crypto_wipe(hex, sizeof(hex));
        return mail(h, d, sig, ts, why, n);
    }
    snprintf(hdr[0], sizeof(hdr[0]), "X-Mamori-Signature: sha256=%s", hex);
    snprintf(hdr[1], sizeof(hdr[1]), "X-Mamori-Timestamp: %s", ts);
    snprintf(hdr[2], sizeof(hdr[2]), "X-Mamori-Delivery: %lld", (long long)d->id);
    CURL *c = curl_easy_init();
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/json");
    for (int i = 0; i < 3; i++)
        hl = curl_slist_append(hl, hdr[i]);
    long code = 0;
    CURLcode cc = CURLE_FAILED_INIT;
    if (c && hl) {
        curl_easy_setopt(c, CURLOPT_URL, d->url);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, d->payload);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_discard);
        cc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    }
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    crypto_wipe(hex, sizeof(hex));
    if (cc != CURLE_OK) {
        snprintf(why, n, "%s", curl_easy_strerror(cc));
        return why;
    }
    if (code < 200 || code > 299) {
        snprintf(why, n, "HTTP %ld", code);
        return why;
    }
    return NULL;
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

/* --- periodic jobs (core/jobs.h) ------------------------------------------ */

static void stray_job(struct hub *h, int64_t now_ms)
{
    (void)now_ms;
    stray_sweep(h);
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
    if ((h->cfg.stray_after_s > 0 || h->cfg.owner_idle_s > 0) &&
        (rc = hub_job_add(h, "stray_sweep", 1000, 0, HUB_JOB_LOCKED, stray_job)))
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

static void *alerts_loop(void *arg)
{
    struct hub *h = arg;
    static struct delivery_rec due[DELIVER_BATCH]; /* one thread */
    while (!h->stopping) {
        size_t n = 0;
        pthread_mutex_lock(&h->lock);
        static struct alert_rec acts[DELIVER_BATCH];
        size_t na = 0;
        log_if_err(store_alerts_action_due(h->store, acts, DELIVER_BATCH, &na));
        for (size_t i = 0; i < na; i++)
            due_one(h, &acts[i]);
        log_if_err(store_deliveries_due(h->store, hub_now_ms(), due, DELIVER_BATCH, &n));
        pthread_mutex_unlock(&h->lock);
        for (size_t i = 0; i < n && !h->stopping; i++) {
            char why[160];
            const char *err = post(h, &due[i], why, sizeof(why));
            int tries = due[i].tries + 1;
            /* backoff 1, 2, 4 ... 64 s; given up after DELIVER_TRIES */
            int64_t next = hub_now_ms() + (1000LL << (tries < 7 ? tries - 1 : 6));
            const char *state = !err ? "sent" : tries >= DELIVER_TRIES ? "failed" : "pending";
            pthread_mutex_lock(&h->lock);
            log_if_err(store_delivery_set(h->store, due[i].id, state, tries, next, err ? err : ""));
            if (!strcmp(state, "failed"))
                hub_event(h, NULL, "webhook_failed", "warning",
                          "{\"delivery\":%lld,\"webhook\":%lld,\"error\":\"%s\"}",
                          (long long)due[i].id, (long long)due[i].webhook_id, err);
            pthread_mutex_unlock(&h->lock);
            crypto_wipe(due[i].secret, sizeof(due[i].secret));
        }
        if (!n)
            nap(h->alerts, 100);
    }
    return NULL;
}

enum mamori_err alerts_start(struct hub *h)
{
    struct alerts_state *s = calloc(1, sizeof(*s));
    if (!s)
        return MAMORI_ERR_NOMEM;
    s->syslog_fd = -1;
    pthread_mutex_init(&s->wake_mu, NULL);
    pthread_cond_init(&s->wake, NULL);
    if (strcmp(h->cfg.syslog, "local") == 0) {
        alerts_syslog_open();
        s->syslog_local = true;
    } else if (h->cfg.syslog[0]) {
        char ip[64];
        unsigned port = 0;
        char extra;
        s->syslog_to.sin_family = AF_INET;
        if (sscanf(h->cfg.syslog, "udp://%63[0-9.]:%u%c", ip, &port, &extra) != 2 || !port ||
            port > 65535 || inet_pton(AF_INET, ip, &s->syslog_to.sin_addr) != 1 ||
            (s->syslog_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0) {
            log_err("--syslog %s: want udp://IPv4:PORT", h->cfg.syslog);
            free(s);
            return MAMORI_ERR_INVAL;
        }
        s->syslog_to.sin_port = htons((uint16_t)port);
    }
    pthread_mutex_lock(&h->lock);
    h->alerts = s;
    pthread_mutex_unlock(&h->lock);
    if (pthread_create(&s->thread, NULL, alerts_loop, h))
        return MAMORI_ERR_INTERNAL;
    s->running = true;
    return MAMORI_OK;
}

void alerts_stop(struct hub *h)
{
    struct alerts_state *s = h->alerts;
    if (!s)
        return;
    wake_up(h); /* out of its nap: it sees stopping */
    if (s->running)
        pthread_join(s->thread, NULL);
    pthread_mutex_lock(&h->lock);
    h->alerts = NULL;
    pthread_mutex_unlock(&h->lock);
    if (s->syslog_fd >= 0)
        close(s->syslog_fd);
    if (s->syslog_local)
        alerts_syslog_close();
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->wake_mu);
    free(s);
}

/* --- operations --------------------------------------------------------- */

static bool list_one(const struct alert_rec *a, void *arg)
{
    json_array_append_new(arg, alert_json(a));
    return true;
}

enum mamori_err hub_op_alerts(struct hub *h, const struct principal *who, const char *state,
                              const char *device_id, int64_t after, int limit, json_t **out)
{
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    if (state && strcmp(state, "open") && strcmp(state, "acknowledged") &&
        strcmp(state, "resolved"))
        return MAMORI_ERR_INVAL;
    if (device_id && !proto_device_id_valid(device_id, strlen(device_id)))
        return MAMORI_ERR_NOTFOUND;
    json_t *arr = json_array();
    if (!arr)
        return MAMORI_ERR_NOMEM;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_alerts(h->store, state, device_id, after, limit, list_one, arr);
    pthread_mutex_unlock(&h->lock);
    if (rc) {
        json_decref(arr);
        return rc;
    }
    *out = json_pack("{s:o}", "alerts", arr);
    return *out ? MAMORI_OK : MAMORI_ERR_NOMEM;
}

enum mamori_err hub_op_alert_set(struct hub *h, const struct principal *who, int64_t id,
                                 const char *action, const char *note, json_t **out,
                                 struct op_err *e)
{
    struct alert_rec a;
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    bool ack = strcmp(action, "ack") == 0;
    if (!ack && strcmp(action, "resolve") != 0)
        return MAMORI_ERR_NOTFOUND;
    const char *to = ack ? "acknowledged" : "resolved";
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_begin(h->store);
    if (!rc) {
        char target[32];
        snprintf(target, sizeof(target), "alert:%lld", (long long)id);
        rc = store_alert_set(h->store, id, to, who->name, note);
        if (rc == MAMORI_ERR_STATE)
            SET_ERR(e, "%s",
                    ack ? "only an open alert can be acknowledged"
                        : "the alert is resolved already");
        if (rc)
            store_rollback(h->store);
        else
            rc = hub_commit_audited(h, who, ack ? "alert_acknowledged" : "alert_resolved", target,
                                    note, "");
    }
    if (!rc && !(rc = store_alert_get(h->store, id, &a))) {
        deliver(h, &a, ack ? "alert.acknowledged" : "alert.resolved");
        *out = alert_json(&a);
    }
    pthread_mutex_unlock(&h->lock);
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}

static bool policy_one(const struct policy_rec *p, void *arg)
{
    json_t *rules = arg;
    for (size_t i = 0; i < json_array_size(rules); i++) {
        json_t *r = json_array_get(rules, i);
        if (strcmp(json_string_value(json_object_get(r, "rule")), p->rule) == 0)
            json_array_append_new(json_object_get(r, "policies"),
                                  json_pack("{s:s, s:s, s:i}", "model", p->model, "action",
                                            p->action, "act_after", p->act_after));
    }
    return true;
}

enum mamori_err hub_op_rules(struct hub *h, const struct principal *who, json_t **out)
{
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < N_RULES; i++) {
        const struct rule *r = &RULES[i];
        json_t *kinds = json_array();
        for (size_t k = 0; k < 4 && r->kinds[k]; k++)
            json_array_append_new(kinds, json_string(r->kinds[k]));
        json_array_append_new(
            arr, json_pack("{s:s, s:s, s:o, s:s?, s:i, s:i, s:s, s:[]}", "rule", r->name, "what",
                           r->what, "events", kinds, "device_event", r->type, "count", (int)r->n,
                           "window_s", (int)r->window_s, "severity",
                           r->severity ? r->severity : "(the event's)", "policies"));
    }
    if (!arr)
        return MAMORI_ERR_NOMEM;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_policies(h->store, policy_one, arr);
    pthread_mutex_unlock(&h->lock);
    if (rc) {
        json_decref(arr);
        return rc;
    }
    *out = json_pack("{s:o, s:s}", "rules", arr, "default_policy", "notify");
    return *out ? MAMORI_OK : MAMORI_ERR_NOMEM;
}

enum mamori_err hub_op_rule_policy(struct hub *h, const struct principal *who, const char *rule,
                                   const json_t *in, json_t **out, struct op_err *e)
{
    struct policy_rec p;
    const char *model = "", *action = NULL;
    uint64_t after = 1;
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    if (!rule_named(rule))
        return MAMORI_ERR_NOTFOUND;
    memset(&p, 0, sizeof(p));
    bool ok =
        json_get_str(in, "action", 15, &action) &&
        (!strcmp(action, "notify") || !strcmp(action, "quarantine") || !strcmp(action, "lock")) &&
        (!json_object_get(in, "model") ||
         (json_is_string(json_object_get(in, "model")) &&
          strlen(model = json_string_value(json_object_get(in, "model"))) <= STORE_NAME_MAX)) &&
        (!json_object_get(in, "act_after") ||
         (json_get_u64(in, "act_after", &after) && after >= 1 && after <= 1000000));
    if (!ok) {
        SET_ERR(e, "need action (notify|quarantine|lock), optionally model (\"\": every model) "
                   "and act_after (1..1000000: act once the alert counted this many)");
        return MAMORI_ERR_INVAL;
    }
    snprintf(p.rule, sizeof(p.rule), "%s", rule);
    snprintf(p.model, sizeof(p.model), "%s", model);
    snprintf(p.action, sizeof(p.action), "%s", action);
    p.act_after = (int)after;
    char detail[160];
    snprintf(detail, sizeof(detail), "{\"model\":\"%s\",\"action\":\"%s\",\"act_after\":%d}",
             p.model, p.action, p.act_after);
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_begin(h->store);
    if (!rc) {
        rc = store_policy_set(h->store, &p, who->name, hub_now());
        if (rc)
            store_rollback(h->store);
        else
            rc = hub_commit_audited(h, who, "rule_policy_set", rule, "", detail);
    }
    pthread_mutex_unlock(&h->lock);
    if (!rc)
        *out = json_pack("{s:s, s:s, s:s, s:i}", "rule", rule, "model", p.model, "action", p.action,
                         "act_after", p.act_after);
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}

/* http only to a loopback receiver; everything else https. */
static bool url_ok(const char *url)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    bool ok = u && strlen(url) < 500 && !curl_url_set(u, CURLUPART_URL, url, 0) &&
              !curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) &&
              !curl_url_get(u, CURLUPART_HOST, &host, 0);
    for (const char *p = url; ok && *p; p++)
        ok = (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f;
    if (ok)
        ok = strcmp(scheme, "https") == 0 ||
             (strcmp(scheme, "http") == 0 &&
              (strncmp(host, "127.", 4) == 0 || strcmp(host, "localhost") == 0 ||
               strcmp(host, "[::1]") == 0));
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}

enum mamori_err hub_op_webhook_add(struct hub *h, const struct principal *who, const char *url,
                                   json_t **out, struct op_err *e)
{
    struct webhook_rec w;
    uint8_t rnd[32];
    *out = NULL;
    if (who->role != ROLE_ADMIN)
        return MAMORI_ERR_FORBIDDEN;
    bool mailto = strncmp(url, "mailto:", 7) == 0;
    if (mailto && !h->cfg.smtp_url[0]) {
        SET_ERR(e, "mail needs the hub started with --smtp URL --smtp-from ADDR");
        return MAMORI_ERR_INVAL;
    }
    if (mailto ? !alerts_address_ok(url + 7) : !url_ok(url)) {
        SET_ERR(e, "an https:// URL (http:// only to 127.0.0.0/8, localhost or [::1]), "
                   "printable, under 500 bytes; or mailto:ADDRESS");
        return MAMORI_ERR_INVAL;
    }
    memset(&w, 0, sizeof(w));
    snprintf(w.url, sizeof(w.url), "%s", url);
    snprintf(w.created_by, sizeof(w.created_by), "%s", who->name);
    w.created_at = hub_now();
    enum mamori_err rc = crypto_random(rnd, sizeof(rnd));
    if (rc)
        return rc;
    memcpy(w.secret, "whsec_", 6);
    crypto_hex(rnd, sizeof(rnd), w.secret + 6);
    crypto_wipe(rnd, sizeof(rnd));
    pthread_mutex_lock(&h->lock);
    if (!(rc = store_begin(h->store))) {
        rc = store_webhook_add(h->store, &w);
        if (rc)
            store_rollback(h->store);
        else
            rc = hub_commit_audited(h, who, "webhook_added", url, "", "");
    }
    pthread_mutex_unlock(&h->lock);
    /* the secret is shown this once */
    if (!rc)
        *out =
            json_pack("{s:I, s:s, s:s}", "id", (json_int_t)w.id, "url", w.url, "secret", w.secret);
    crypto_wipe(w.secret, sizeof(w.secret));
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}

static bool webhook_one(const struct webhook_rec *w, void *arg)
{
    json_array_append_new(arg, json_pack("{s:I, s:s, s:s, s:I}", "id", (json_int_t)w->id, "url",
                                         w->url, "created_by", w->created_by, "created_at",
                                         (json_int_t)w->created_at));
    return true;
}

enum mamori_err hub_op_webhooks(struct hub *h, const struct principal *who, json_t **out)
{
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    json_t *arr = json_array();
    if (!arr)
        return MAMORI_ERR_NOMEM;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_webhooks(h->store, webhook_one, arr);
    pthread_mutex_unlock(&h->lock);
    if (rc) {
        json_decref(arr);
        return rc;
    }
    *out = json_pack("{s:o}", "webhooks", arr);
    return *out ? MAMORI_OK : MAMORI_ERR_NOMEM;
}

enum mamori_err hub_op_webhook_del(struct hub *h, const struct principal *who, int64_t id,
                                   json_t **out)
{
    char target[32];
    *out = NULL;
    if (who->role != ROLE_ADMIN)
        return MAMORI_ERR_FORBIDDEN;
    snprintf(target, sizeof(target), "webhook:%lld", (long long)id);
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_begin(h->store);
    if (!rc) {
        rc = store_webhook_del(h->store, id);
        if (rc)
            store_rollback(h->store);
        else
            rc = hub_commit_audited(h, who, "webhook_removed", target, "", "");
    }
    pthread_mutex_unlock(&h->lock);
    if (!rc)
        *out = json_pack("{s:I, s:b}", "id", (json_int_t)id, "removed", 1);
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}
