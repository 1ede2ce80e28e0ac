/*
 * hub/alerts/deliver.c - alert delivery: webhooks (HMAC-signed, retried with
 * backoff), mail and syslog, from one thread, and the responses it applies.
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
#include <sys/prctl.h>

#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/proto.h"
#include "hub/alerts/syslog_local.h"
#include "hub/device/device.h"

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
void alerts_wake(struct hub *h)
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
void alerts_deliver(struct hub *h, const struct alert_rec *a, const char *event)
{
    to_syslog(h, a, event);
    json_t *o = json_pack("{s:s, s:o, s:I}", "event", event, "alert", alerts_json(a), "at",
                          (json_int_t)hub_now_ms());
    char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (txt && strlen(txt) < sizeof(((struct delivery_rec *)0)->payload)) {
        struct fanout f = {h->store, a->id, hub_now_ms(), txt};
        log_if_err(store_webhooks(h->store, queue_one, &f));
        alerts_wake(h);
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
        alerts_wake(h);
    }
    free(txt);
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
        alerts_deliver(h, &now, "alert.acted");
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

static void *alerts_loop(void *arg)
{
    (void)prctl(PR_SET_NAME, "mamori-alerts", 0, 0, 0); /* top -H, ps -L */
    struct hub *h = arg;
    static struct delivery_rec due[DELIVER_BATCH]; /* one thread */
    while (!h->stopping) {
        size_t n = 0;
        if (!hub_leads(h)) { /* one hub delivers (hub/core/cluster.h) */
            nap(h->alerts, 100);
            continue;
        }
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
    alerts_wake(h); /* out of its nap: it sees stopping */
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
