/*
 * hub/device/telemetry.c - what devices send on their data streams: telemetry
 * ("tm") and events ("ev"), each with its own sequence numbers.
 *
 * Every message is checked before it is stored (T11-L1e, T11-L3a):
 *   - sequence: a number at or below the last accepted one is either the
 *     exact message already stored (a resend after a lost acknowledgement:
 *     acknowledged again, not stored twice) or a replay/reordering, which is
 *     refused with an alert; a jump forward is accepted and noted (the
 *     device reports its own drops);
 *   - time: device timestamps may not run ahead of the hub by more than
 *     TM_SKEW_MS, nor be older than TM_MAX_AGE_MS (store-and-forward keeps
 *     messages for a week at most), nor go backwards by more than the skew;
 *   - content (telemetry): the model's schema (common/schema.h) - types,
 *     ranges, unknown fields, per-field rate. A model without a schema gets
 *     no telemetry stored (fail closed).
 *
 * Accepted rows are buffered and written in the transaction of the batch of
 * device messages that brought them (hub/device/ingest.h), together with
 * the per-device sequence state; only after its commit does the hub
 * acknowledge, per device and stream, the highest number up to which it
 * has dealt with everything (hub/device/seqwin.h; {"v":1,"ack":{...}} on
 * the device's cmd topic). The device deletes messages from its outbox only on
 * that acknowledgement, so what it sent is stored exactly once even across
 * a crash of the hub or the broker (T10-L3c, T10-L3d).
 *
 * Rejections are events of severity "alert", at most one per device and
 * minute with the count of those left out, so a device cannot turn bad
 * input into a stream of database writes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "common/devlog.h"
#include "common/json.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/schema.h"
#include "hub/device/command.h"
#include "hub/device/devstatus.h"
#include "hub/device/liveness.h"
#include "hub/device/seqwin.h"
#include "hub/device/telemetry.h"

#define TM_BATCH        512
#define TM_SCHEMA_CACHE 64

static const char *const STREAM_NAMES[STREAM_N] = {"tm", "ev", "log"};

struct tm_dev {
    char id[24];
    char model[STORE_NAME_MAX + 1];
    bool loaded, dirty;
    bool ack_due, ack_listed;    /* an acknowledgement is owed; in tm_state.owed */
    uint64_t owe[STREAM_N];      /* acknowledged by the last commit */
    uint64_t told[STREAM_N];     /* in the last acknowledgement sent */
    uint64_t last_seq[STREAM_N]; /* highest stored */
    int64_t last_ts[STREAM_N];
    struct seqwin win[STREAM_N]; /* what is dealt with: acknowledged up to win.acked */
    int64_t owner_since_ms;      /* messages sent before: the previous owner's */
    struct schema_rate rate;
    int64_t reject_reported_ms;
    uint32_t reject_suppressed;
    /* the device log's chain as the hub holds it */
    bool log_loaded;
    uint64_t log_n;
    char log_hash[65];
    struct {
        uint64_t n;
        uint64_t h;   /* first 8 bytes of the record's hash */
    } log_recent[64]; /* recently accepted: a resend of one is not an attack */
    /* message rate against the device's own baseline (rate_spike rule) */
    int64_t win_start; /* this window's start (ms) */
    uint32_t win_n;    /* messages in it */
    uint32_t windows;  /* windows learned */
    double base;       /* messages per window, moving average */
    bool spiked;       /* reported in this window */
};

struct tm_row {
    struct tm_dev *dev;
    enum stream_kind stream;
    uint64_t seq;
    int64_t ts, recv_at;
    char digest[65];
    char *body; /* JSON text */
};

struct tm_schema_slot {
    char model[STORE_NAME_MAX + 1];
    bool present;
    struct schema s;
};

/* A stream whose state a batch saves. */
struct tm_save {
    const struct tm_dev *dev;
    enum stream_kind stream;
};

struct tm_state {
    struct tm_row *rows;
    size_t nrows;
    struct tm_save *saves; /* tm_write's list */
    size_t nsaves, saves_cap;
    struct tm_dev **dirty; /* touched by this batch */
    size_t ndirty, dirty_cap;
    struct tm_dev **owed; /* committed, acknowledgement not yet sent */
    size_t nowed, owed_cap;
    struct tm_schema_slot *schemas;
    size_t nschemas;
    struct tm_counts n;
    bool write_failed; /* a write of this batch failed: no acknowledgement */
};

static struct tm_state *state(struct hub *h)
{
    if (!h->tm) {
        h->tm = calloc(1, sizeof(*h->tm));
        if (h->tm) {
            h->tm->rows = calloc(TM_BATCH, sizeof(struct tm_row));
            h->tm->schemas = calloc(TM_SCHEMA_CACHE, sizeof(struct tm_schema_slot));
            if (!h->tm->rows || !h->tm->schemas) {
                free(h->tm->rows);
                free(h->tm->schemas);
                free(h->tm);
                h->tm = NULL;
            }
        }
    }
    return h->tm;
}

void tm_free(struct hub *h)
{
    if (!h->tm)
        return;
    for (size_t i = 0; i < h->tm->nrows; i++)
        free(h->tm->rows[i].body);
    free(h->tm->rows);
    free(h->tm->saves);
    free(h->tm->dirty);
    free(h->tm->owed);
    free(h->tm->schemas);
    free(h->tm);
    h->tm = NULL;
    for (size_t i = 0; i < h->live_cap; i++) {
        free(h->live[i].tm);
        h->live[i].tm = NULL;
    }
}

void tm_forget(struct hub *h)
{
    /* kept (an acknowledgement owed may point at it), read again when used */
    for (size_t i = 0; i < h->live_cap; i++)
        if (h->live[i].tm)
            h->live[i].tm->loaded = false;
}

void tm_forget_one(struct hub *h, const char *id)
{
    struct live_entry *e = h->live_cap ? live_entry_of(h, id) : NULL;
    if (e && e->tm)
        e->tm->loaded = false;
}

void tm_stats(struct hub *h, struct tm_counts *out)
{
    static const struct tm_counts none;
    *out = h->tm ? h->tm->n : none;
}

void tm_schema_changed(struct hub *h, const char *model)
{
    struct tm_state *t = h->tm;
    if (!t)
        return;
    for (size_t i = 0; i < t->nschemas; i++)
        if (strcmp(t->schemas[i].model, model) == 0) {
            t->schemas[i] = t->schemas[--t->nschemas];
            break;
        }
}

/* The compiled schema of model, or NULL when it has none. */
static const struct schema *schema_of(struct hub *h, struct tm_state *t, const char *model)
{
    for (size_t i = 0; i < t->nschemas; i++)
        if (strcmp(t->schemas[i].model, model) == 0)
            return t->schemas[i].present ? &t->schemas[i].s : NULL;
    if (t->nschemas == TM_SCHEMA_CACHE)
        t->nschemas = 0; /* many models: start the cache over */
    struct tm_schema_slot *sl = &t->schemas[t->nschemas++];
    memset(sl, 0, sizeof(*sl));
    snprintf(sl->model, sizeof(sl->model), "%s", model);
    char *doc = NULL, why[160];
    if (store_schema_get(h->store, model, &doc) == MAMORI_OK &&
        schema_parse(doc, strlen(doc), &sl->s, why, sizeof(why)) == MAMORI_OK)
        sl->present = true;
    free(doc);
    return sl->present ? &sl->s : NULL;
}

static struct tm_dev *dev_of(struct hub *h, const char *id)
{
    struct live_entry *e = live_entry_of(h, id);
    if (!e)
        return NULL;
    if (!e->tm) {
        e->tm = calloc(1, sizeof(*e->tm));
        if (!e->tm)
            return NULL;
        snprintf(e->tm->id, sizeof(e->tm->id), "%s", id);
    }
    struct tm_dev *d = e->tm;
    if (!d->loaded) {
        struct device_rec rec;
        if (store_device_get(h->store, id, &rec))
            return NULL;
        snprintf(d->model, sizeof(d->model), "%s", rec.model);
        d->owner_since_ms = rec.claimed_at * 1000;
        for (int s = 0; s < STREAM_N; s++) {
            struct stream_rec r;
            if (store_stream_get(h->store, id, STREAM_NAMES[s], &r))
                return NULL;
            d->last_seq[s] = r.last_seq;
            d->last_ts[s] = r.last_ts;
            struct seqwin *w = &d->win[s];
            w->acked = r.acked;
            memcpy(w->bits, r.window, sizeof(w->bits));
            w->gone_from = r.gone_from;
            w->gone_to = r.gone_to;
            w->gap_since_ms = r.gap_since_ms;
        }
        d->loaded = true;
    }
    return d;
}

void tm_owner_changed(struct hub *h, const char *id, int64_t since_ms)
{
    struct tm_dev *d = dev_of(h, id);
    if (d)
        d->owner_since_ms = since_ms;
    hub_cluster_changed(h, id); /* the hub that records it reads it again */
}

static void mark_dirty(struct tm_state *t, struct tm_dev *d);

#define TM_GAP_GIVE_UP_MS (120 * 1000LL) /* a gap nobody fills: given up (reported) */

/* seq of stream s is dealt with. The device log is acknowledged up to its
 * highest record (its chain reports what is missing); telemetry and events
 * only up to what is contiguous (hub/device/seqwin.h). */
static void dealt(struct tm_dev *d, enum stream_kind s, uint64_t seq, int64_t now)
{
    struct seqwin *w = &d->win[s];
    /* a stream first heard of far from 1 (not a device counting from its
     * start: one whose state the hub never held) begins where it is */
    if (w->acked == 0 && seqwin_top(w) == 0 && seq > SEQWIN_BITS)
        w->acked = seq - 1;
    if (s == STREAM_LOG && seq > w->acked + 1)
        seqwin_gone(w, w->acked + 1, seq - 1, now);
    seqwin_mark(w, seq, now);
}

/* Numbers missing for longer than TM_GAP_GIVE_UP_MS (the device sends again
 * what stays unacknowledged every few seconds, and reports what it dropped
 * itself) are given up: reported, and acknowledged past. */
static void give_up_gaps(struct hub *h, struct tm_dev *d, int64_t now)
{
    uint64_t from, to;
    for (int s = 0; s < STREAM_N; s++)
        if (seqwin_expire(&d->win[s], now, TM_GAP_GIVE_UP_MS, &from, &to)) {
            hub_event(h, d->id, "sequence_lost", "warning",
                      "{\"stream\":\"%s\",\"from\":%llu,\"to\":%llu}", STREAM_NAMES[s],
                      (unsigned long long)from, (unsigned long long)to);
            mark_dirty(h->tm, d);
        }
}

/* Refuses a message with an alert. It is still acknowledged: the device
 * must not send it forever; the refusal is the hub's answer. */
static void reject(struct hub *h, struct tm_dev *d, enum stream_kind s, const char *kind,
                   const struct proto_envelope *env, const char *why)
{
    h->tm->n.rejected++;
    int64_t now = hub_now_ms();
    dealt(d, s, env->seq, now);
    mark_dirty(h->tm, d);
    if (d->reject_reported_ms && now - d->reject_reported_ms < 60000) {
        d->reject_suppressed++;
        return;
    }
    json_t *j = json_pack("{s:s,s:I,s:I,s:s,s:I}", "stream", STREAM_NAMES[s], "seq",
                          (json_int_t)env->seq, "ts", (json_int_t)env->ts_ms, "reason", why,
                          "suppressed_before", (json_int_t)d->reject_suppressed);
    char *txt = j ? json_dump_compact(j) : NULL;
    hub_event(h, d->id, kind, "alert", "%s", txt ? txt : "{}");
    free(txt);
    json_decref(j);
    d->reject_reported_ms = now;
    d->reject_suppressed = 0;
}

/* Appends d to a growing list of devices; false without memory. */
static bool dev_list_add(struct tm_dev ***v, size_t *n, size_t *cap, struct tm_dev *d)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 256;
        struct tm_dev **grown = realloc(*v, ncap * sizeof(*grown));
        if (!grown)
            return false;
        *v = grown;
        *cap = ncap;
    }
    (*v)[(*n)++] = d;
    return true;
}

static void mark_dirty(struct tm_state *t, struct tm_dev *d)
{
    /* without memory: not acknowledged now; the device resends */
    if (!d->dirty && dev_list_add(&t->dirty, &t->ndirty, &t->dirty_cap, d))
        d->dirty = true;
}

enum mamori_err hub_device_certs_try(struct hub *h, const char *id,
                                     enum mamori_err (*check)(const struct crypto_cert *, void *),
                                     void *arg)
{
    enum mamori_err rc = MAMORI_ERR_VERIFY;
    for (int w = STORE_CERT_CURRENT; w <= STORE_CERT_PREVIOUS; w++) {
        struct crypto_cert *cert = NULL;
        char *pem = NULL;
        enum mamori_err r2 = store_device_cert_at(h->store, id, (enum store_cert_which)w, &pem);
        if (r2 == MAMORI_ERR_NOTFOUND)
            continue;
        if (!r2)
            r2 = crypto_cert_parse(pem, strlen(pem), &cert);
        free(pem);
        if (!r2)
            r2 = check(cert, arg);
        crypto_cert_free(cert);
        rc = r2;
        if (rc != MAMORI_ERR_VERIFY)
            break;
    }
    return rc;
}

struct log_check {
    const char *line;
    struct devlog_rec r;
};

static enum mamori_err log_check(const struct crypto_cert *cert, void *arg)
{
    struct log_check *c = arg;
    return devlog_parse(c->line, strlen(c->line), cert, &c->r);
}

/* The device log (common/devlog.h): every record must carry the device's
 * signature and extend the chain the hub holds (T12-L1a, T12-L1b,
 * T12-L3a). A gap or a broken link is reported and the record becomes the
 * new head (one alert, not one per later record); a bad signature or a
 * record at or before the head (replayed, reordered, or a log that was cut
 * back and started again) is reported and changes nothing. */
static void log_record(struct hub *h, struct tm_dev *d, const char *line)
{
    char key[64], val[96];
    snprintf(key, sizeof(key), "devlog:%s", d->id);
    if (!d->log_loaded) {
        d->log_n = 0;
        snprintf(d->log_hash, sizeof(d->log_hash), "%s", DEVLOG_ZERO_HASH);
        unsigned long long n;
        char hash[65];
        if (store_meta_get(h->store, key, val, sizeof(val)) == MAMORI_OK &&
            sscanf(val, "%llu %64s", &n, hash) == 2 && strlen(hash) == 64) {
            d->log_n = n;
            memcpy(d->log_hash, hash, sizeof(d->log_hash));
        }
        d->log_loaded = true;
    }
    struct log_check lc = {line, {0}};
    enum mamori_err rc = hub_device_certs_try(h, d->id, log_check, &lc);
    struct devlog_rec r = lc.r;
    if (rc) {
        hub_event(h, d->id, "device_log_forged", "alert", "{\"reason\":\"%s\",\"after\":%llu}",
                  rc == MAMORI_ERR_VERIFY ? "signature does not verify" : "malformed record",
                  (unsigned long long)d->log_n);
        return;
    }
    char h16[17];
    memcpy(h16, r.hash, 16);
    h16[16] = '\0';
    uint64_t h64 = strtoull(h16, NULL, 16);
    for (size_t i = 0; r.n <= d->log_n && i < 64; i++)
        if (d->log_recent[i].n == r.n && d->log_recent[i].h == h64)
            return; /* the same record again (a lost acknowledgement) */
    if (r.n <= d->log_n) {
        hub_event(h, d->id, "device_log_rewound", "alert",
                  "{\"n\":%llu,\"head\":%llu,\"reason\":\"record at or before the head: "
                  "replayed, reordered, or the log was cut back\"}",
                  (unsigned long long)r.n, (unsigned long long)d->log_n);
        return;
    }
    if (r.n > d->log_n + 1)
        hub_event(h, d->id, "device_log_gap", "alert", "{\"from\":%llu,\"to\":%llu}",
                  (unsigned long long)d->log_n, (unsigned long long)r.n);
    else if (strcmp(r.prev, d->log_hash) != 0)
        hub_event(h, d->id, "device_log_chain_broken", "alert",
                  "{\"n\":%llu,\"reason\":\"does not follow the record the hub holds\"}",
                  (unsigned long long)r.n);
    if (r.ts >= d->owner_since_ms) /* a record before a transfer: the previous owner's */
        hub_event(h, d->id, "device_log", "info", "{\"n\":%llu,\"ts\":%lld,\"type\":\"%s\"}",
                  (unsigned long long)r.n, (long long)r.ts, r.type);
    else
        h->tm->n.before_owner++;
    d->log_n = r.n;
    memcpy(d->log_hash, r.hash, sizeof(d->log_hash));
    d->log_recent[r.n % 64].n = r.n;
    d->log_recent[r.n % 64].h = h64;
    snprintf(val, sizeof(val), "%llu %s", (unsigned long long)r.n, r.hash);
    log_if_err(store_meta_set(h->store, key, val));
}

/* A resend may arrive while the first copy waits in the batch. */
static bool pending_has(const struct tm_state *t, const struct tm_dev *d, uint64_t seq,
                        const char *digest)
{
    for (size_t i = 0; i < t->nrows; i++)
        if (t->rows[i].dev == d && t->rows[i].seq == seq && strcmp(t->rows[i].digest, digest) == 0)
            return true;
    return false;
}

/* A reading counted as dealt with that the hub holds under no content at
 * all: a stream whose state began at a later number (the hub first heard
 * the device after a crash, say, while its first readings were on their
 * way again) - new, not a replay. Telemetry only: the rows say what the
 * hub holds; a number it holds with other content is a replay. */
static bool tm_never_had(struct hub *h, const struct tm_state *t, const struct tm_dev *d,
                         enum stream_kind s, const struct proto_envelope *env, int64_t ts)
{
    if (s != STREAM_TM)
        return false;
    for (size_t i = 0; i < t->nrows; i++)
        if (t->rows[i].dev == d && t->rows[i].seq == env->seq)
            return false;
    return !store_telemetry_seq_near(h->store, d->id, env->seq, ts - TM_SKEW_MS, ts + TM_SKEW_MS);
}

#define RATE_WARMUP 5   /* windows learned before a spike can be told */
#define RATE_FACTOR 3.0 /* a window above factor x baseline + slack is a spike */
#define RATE_SLACK  10.0

/* Counts a message against the device's own rate: windows of
 * --rate-window s; the baseline is a moving average of past windows
 * (spikes are not learned, silent windows pull it down). */
static void rate_observe(struct hub *h, struct tm_dev *d, int64_t now)
{
    int64_t w = (int64_t)h->cfg.rate_window_s * 1000;
    if (w <= 0)
        return;
    if (!d->win_start)
        d->win_start = now;
    if (now - d->win_start >= w) {
        if (!d->spiked)
            d->base = d->windows ? 0.8 * d->base + 0.2 * d->win_n : (double)d->win_n;
        for (int64_t k = (now - d->win_start) / w - 1; k > 0 && k < 64; k--)
            d->base *= 0.8; /* windows without a message */
        d->windows++;
        d->win_start = now;
        d->win_n = 0;
        d->spiked = false;
    }
    d->win_n++;
    if (d->windows >= RATE_WARMUP && !d->spiked && d->win_n > RATE_FACTOR * d->base + RATE_SLACK) {
        d->spiked = true;
        hub_event(h, d->id, "rate_spike", "warning",
                  "{\"messages\":%u,\"window_s\":%d,\"baseline\":%.1f}", d->win_n,
                  h->cfg.rate_window_s, d->base);
    }
}

static void status_event(struct hub *h, const char *id, const json_t *body)
{
    status_ingest(h, id, body);
}

/* Device events the hub itself treats by type: those that mean someone is
 * at the device's records are raised (kind, severity); a signed security
 * status is checked and recorded as the device's status. */
static const struct ev_rule {
    const char *type, *kind, *severity;
    void (*consume)(struct hub *h, const char *id, const json_t *body);
} EV_RULES[] = {
    {"log_access", "device_log_access", "alert", NULL}, /* T12-L2a */
    {"security_status", NULL, NULL, status_event},      /* P-MGMT */
    {"log_watch_unavailable", "device_log_unwatched", "warning", NULL},
};

/* An accepted device event: recorded (an observation, or raised by its
 * rule), then handed to the handlers registered for its type
 * (core/bus.h: campaigns, firmware). */
static void ev_record(struct hub *h, struct tm_dev *d, const json_t *body, const char *txt,
                      int64_t ts)
{
    const char *type = json_string_value(json_object_get(body, "type"));
    uint64_t from = 0, to = 0;
    /* the device dropped these readings itself: no gap to wait on */
    if (type && strcmp(type, "outbox_dropped") == 0 && json_get_u64(body, "first_seq", &from) &&
        json_get_u64(body, "last_seq", &to)) {
        seqwin_gone(&d->win[STREAM_TM], from, to, hub_now_ms());
        mark_dirty(h->tm, d);
    }
    /* the device refused a copy the hub sent again itself: expected */
    const char *kind = "device_event";
    if (type && strcmp(type, "command_replayed") == 0 &&
        cmd_copy_expected(h, d->id, json_string_value(json_object_get(body, "reason"))))
        kind = "command_redelivered";
    const struct ev_rule *r = NULL;
    for (size_t i = 0; type && !r && i < sizeof(EV_RULES) / sizeof(EV_RULES[0]); i++)
        if (strcmp(EV_RULES[i].type, type) == 0)
            r = &EV_RULES[i];
    if (r && r->kind)
        hub_event(h, d->id, r->kind, r->severity, "%s", txt);
    else if (r)
        r->consume(h, d->id, body);
    else if (ts >= d->owner_since_ms)
        hub_event(h, d->id, kind, "info", "%s", txt);
    else
        h->tm->n.before_owner++; /* in flight at a transfer: not the new owner's */
    if (!type)
        return;
    (void)hub_device_event(h, d->id, type, body);
    /* the device's periodic check: what is pending for it goes again */
    if (strcmp(type, "update_status") == 0)
        cmd_resend_pending(h, d->id);
}

/* The checks on a new message of stream s: true with the reason in why
 * when it is refused (time, and for telemetry the model's schema). */
static bool refused(struct hub *h, struct tm_state *t, struct tm_dev *d, enum stream_kind s,
                    const struct proto_envelope *env, json_t *body, int64_t now, char *why,
                    size_t whylen)
{
    int64_t ts = (int64_t)env->ts_ms;
    const char *time_why =
        ts > now + TM_SKEW_MS      ? "timestamp ahead of the hub's clock"
        : ts < now - TM_MAX_AGE_MS ? "timestamp older than the store-and-forward window"
        : d->last_ts[s] && ts < d->last_ts[s] - TM_SKEW_MS ? "timestamp goes backwards"
                                                           : NULL;
    if (time_why) {
        snprintf(why, whylen, "%s", time_why);
        return true;
    }
    if (s != STREAM_TM)
        return false;
    const struct schema *sc = schema_of(h, t, d->model);
    if (!sc) {
        snprintf(why, whylen, "model %s has no telemetry schema", d->model);
        return true;
    }
    if (schema_check(sc, body, why, whylen))
        return true;
    /* A number below the highest, never had, fills a gap (sent again after
     * the broker dropped it): it comes after readings it preceded, so the
     * rate is measured between the newest ones only. */
    bool fills_gap = env->seq < d->last_seq[s];
    return !fills_gap && !schema_rate_ok(sc, &d->rate, body, ts, 0.1, true, why, whylen);
}

void tm_ingest(struct hub *h, const char *id, enum stream_kind s, const struct proto_envelope *env,
               json_t *body, const void *payload, size_t len)
{
    struct tm_state *t = state(h);
    struct tm_dev *d = t ? dev_of(h, id) : NULL;
    if (!d)
        return;
    int64_t now = hub_now_ms();
    rate_observe(h, d, now);
    char why[200];
    uint8_t md[CRYPTO_SHA256_LEN];
    char digest[65];
    crypto_sha256(payload, len, md);
    crypto_hex(md, sizeof(md), digest);
    int64_t ts = (int64_t)env->ts_ms;

    if (s == STREAM_LOG && env->seq <= d->last_seq[s]) {
        /* The chain itself tells a resend from a replay or a reordering. */
        char *txt = json_dump_compact(body);
        if (txt)
            log_record(h, d, txt);
        free(txt);
        t->n.duplicates++;
        mark_dirty(t, d);
        return;
    }
    give_up_gaps(h, d, now);
    if (env->seq <= d->last_seq[s] && seqwin_seen(&d->win[s], env->seq) &&
        !tm_never_had(h, t, d, s, env, ts)) {
        /* A resend after a lost acknowledgement is the same message. (One
         * below the highest but not yet dealt with fills a gap: new.) */
        if (s == STREAM_TM ? pending_has(t, d, env->seq, digest) ||
                                 store_telemetry_has(h->store, id, ts, env->seq, digest)
                           : env->seq + TM_EV_WINDOW > d->last_seq[s] && ts <= d->last_ts[s]) {
            t->n.duplicates++;
            mark_dirty(t, d); /* acknowledge again */
            return;
        }
        snprintf(why, sizeof(why), "sequence %llu at or below last accepted %llu",
                 (unsigned long long)env->seq, (unsigned long long)d->last_seq[s]);
        reject(h, d, s,
               s == STREAM_TM   ? "telemetry_replay"
               : s == STREAM_EV ? "event_replay"
                                : "device_log_replay",
               env, why);
        return;
    }
    const char *rej = s == STREAM_TM   ? "telemetry_rejected"
                      : s == STREAM_EV ? "event_rejected"
                                       : "device_log_rejected";
    if (refused(h, t, d, s, env, body, now, why, sizeof(why))) {
        reject(h, d, s, rej, env, why);
        return;
    }
    if (env->seq > d->last_seq[s] + 1 && d->last_seq[s] != 0)
        hub_event(h, id, "sequence_gap", "info", "{\"stream\":\"%s\",\"from\":%llu,\"to\":%llu}",
                  STREAM_NAMES[s], (unsigned long long)d->last_seq[s],
                  (unsigned long long)env->seq);
    char *txt = json_dump_compact(body);
    if (!txt)
        return;
    if (s == STREAM_EV) {
        ev_record(h, d, body, txt, ts);
        free(txt);
    } else if (s == STREAM_LOG) {
        log_record(h, d, txt);
        free(txt);
    } else if (ts < d->owner_since_ms) {
        /* Readings sent before the device changed hands (in flight at the
         * transfer) belong to the previous owner, whose data left the
         * device's records then: acknowledged, never the new owner's. */
        t->n.before_owner++;
        free(txt);
    } else {
        if (t->nrows == TM_BATCH)
            tm_flush(h);
        struct tm_row *r = &t->rows[t->nrows++];
        r->dev = d;
        r->stream = s;
        r->seq = env->seq;
        r->ts = ts;
        r->recv_at = now;
        memcpy(r->digest, digest, sizeof(r->digest));
        r->body = txt;
    }
    if (env->seq > d->last_seq[s]) {
        d->last_seq[s] = env->seq;
        d->last_ts[s] = ts;
    }
    dealt(d, s, env->seq, now);
    t->n.accepted++;
    mark_dirty(t, d);
}

/* Tells the device what the last commit acknowledged. */
static void send_ack(struct hub *h, struct tm_dev *d)
{
    char msg[160];
    int n = snprintf(msg, sizeof(msg), "{\"v\":1,\"ack\":{\"tm\":%llu,\"ev\":%llu,\"log\":%llu}}",
                     (unsigned long long)d->owe[STREAM_TM], (unsigned long long)d->owe[STREAM_EV],
                     (unsigned long long)d->owe[STREAM_LOG]);
    if (n > 0 && (size_t)n < sizeof(msg))
        hub_note_device(h, d->id, msg, (size_t)n);
    memcpy(d->told, d->owe, sizeof(d->told));
    d->ack_due = false;
}

/* d's messages of a batch are committed: an acknowledgement is owed, sent
 * with the next tm_acks_send, or now when a stream is TM_ACK_EVERY ahead
 * (or the list cannot grow). Only committed numbers enter owe. */
static void owe_ack(struct hub *h, struct tm_state *t, struct tm_dev *d)
{
    bool now = false;
    for (int s = 0; s < STREAM_N; s++) {
        d->owe[s] = d->win[s].acked;
        now = now || d->owe[s] >= d->told[s] + TM_ACK_EVERY;
    }
    d->ack_due = true;
    if (!d->ack_listed && dev_list_add(&t->owed, &t->nowed, &t->owed_cap, d))
        d->ack_listed = true;
    if (now || !d->ack_listed)
        send_ack(h, d);
}

bool tm_acks_owed(struct hub *h)
{
    return h->tm && h->tm->nowed > 0;
}

void tm_acks_send(struct hub *h)
{
    struct tm_state *t = h->tm;
    if (!t)
        return;
    for (size_t i = 0; i < t->nowed; i++) {
        struct tm_dev *d = t->owed[i];
        d->ack_listed = false;
        if (d->ack_due)
            send_ack(h, d);
    }
    t->nowed = 0;
    hub_notes_flush(h);
}

_Static_assert(sizeof(((struct seqwin *)0)->bits) == STORE_STREAM_WINDOW,
               "the store keeps the whole window");

/* The i-th buffered row, as the store takes it. */
static void row_of(size_t i, void *ctx, struct telemetry_rec *out)
{
    const struct tm_row *r = &((const struct tm_state *)ctx)->rows[i];
    out->seq = r->seq;
    out->ts = r->ts;
    out->recv_at = r->recv_at;
    out->body = r->body;
    snprintf(out->device_id, sizeof(out->device_id), "%s", r->dev->id);
    memcpy(out->digest, r->digest, sizeof(out->digest));
}

/* The streams of the batch's devices that have state: (device, stream)
 * pairs in t->saves. */
static bool saves_collect(struct tm_state *t)
{
    t->nsaves = 0;
    if (t->saves_cap < t->ndirty * STREAM_N) {
        struct tm_save *n = realloc(t->saves, t->ndirty * STREAM_N * sizeof(*n));
        if (!n)
            return false;
        t->saves = n;
        t->saves_cap = t->ndirty * STREAM_N;
    }
    for (size_t i = 0; i < t->ndirty; i++)
        for (int s = 0; s < STREAM_N; s++)
            if (t->dirty[i]->last_seq[s] || t->dirty[i]->win[s].acked)
                t->saves[t->nsaves++] = (struct tm_save){t->dirty[i], (enum stream_kind)s};
    return true;
}

/* The i-th stream state to save, as the store takes it. */
static void save_of(size_t i, void *ctx, const char **device_id, const char **stream,
                    struct stream_rec *out)
{
    const struct tm_save *v = &((const struct tm_state *)ctx)->saves[i];
    const struct tm_dev *d = v->dev;
    const struct seqwin *w = &d->win[v->stream];
    *device_id = d->id;
    *stream = STREAM_NAMES[v->stream];
    *out = (struct stream_rec){.last_seq = d->last_seq[v->stream],
                               .last_ts = d->last_ts[v->stream],
                               .has_acked = true,
                               .acked = w->acked,
                               .gone_from = w->gone_from,
                               .gone_to = w->gone_to,
                               .gap_since_ms = w->gap_since_ms};
    memcpy(out->window, w->bits, sizeof(out->window));
}

/* Writes the buffered rows and the sequence state of the devices they
 * touched, many rows to a statement; false when a write failed. Lock
 * held, a transaction open. */
static bool tm_write(struct hub *h, struct tm_state *t)
{
    bool ok = store_telemetry_add_many(h->store, t->nrows, row_of, t) == MAMORI_OK &&
              saves_collect(t) &&
              store_stream_set_many(h->store, t->nsaves, save_of, t) == MAMORI_OK;
    if (!ok)
        log_warn("telemetry batch of %zu rows not stored; devices will resend", t->nrows);
    for (size_t i = 0; i < t->nrows; i++)
        free(t->rows[i].body);
    t->nrows = 0;
    return ok;
}

void tm_flush(struct hub *h)
{
    struct tm_state *t = h->tm;
    if (!t || (t->nrows == 0 && t->ndirty == 0))
        return;
    if (store_in_transaction(h->store)) {
        /* a batch's transaction: written now, acknowledged by tm_settle
         * once the batch has committed */
        if (!tm_write(h, t))
            t->write_failed = true;
        return;
    }
    bool ok = store_begin(h->store) == MAMORI_OK;
    ok = ok && tm_write(h, t);
    if (ok)
        ok = store_commit(h->store) == MAMORI_OK;
    if (!ok)
        store_rollback(h->store);
    tm_settle(h, ok);
    tm_acks_send(h); /* outside the ingest worker's pace */
}

void tm_settle(struct hub *h, bool committed)
{
    struct tm_state *t = h->tm;
    if (!t)
        return;
    bool ok = committed && !t->write_failed;
    for (size_t i = 0; i < t->nrows; i++)
        free(t->rows[i].body);
    t->nrows = 0;
    for (size_t i = 0; i < t->ndirty; i++) {
        struct tm_dev *d = t->dirty[i];
        d->dirty = false;
        if (ok)
            owe_ack(h, t, d);
        else
            d->loaded = false; /* reload the state that is really stored */
    }
    t->ndirty = 0;
    t->write_failed = false;
    hub_notes_flush(h); /* the acknowledgements due at once */
}

/* ---- queries ---- */

struct tm_list {
    json_t *arr;
    int64_t last_id;
};

static bool tm_one(const struct telemetry_rec *r, void *arg)
{
    struct tm_list *l = arg;
    json_t *body = json_loads(r->body, 0, NULL);
    json_array_append_new(l->arr, json_pack("{s:I,s:I,s:I,s:o*}", "seq", (json_int_t)r->seq, "ts",
                                            (json_int_t)r->ts, "received_at",
                                            (json_int_t)r->recv_at, "body", body));
    l->last_id = r->id;
    return true;
}

enum mamori_err tm_query(struct hub *h, const char *id, int64_t from_ts, int64_t to_ts,
                         int64_t after, int limit, json_t **out)
{
    struct tm_list l = {.arr = json_array()};
    if (!l.arr)
        return MAMORI_ERR_NOMEM;
    enum mamori_err rc =
        store_telemetry_list(h->store, id, from_ts, to_ts, after, limit, tm_one, &l);
    if (rc) {
        json_decref(l.arr);
        return rc;
    }
    size_t n = json_array_size(l.arr);
    *out = json_pack("{s:s,s:o}", "device", id, "items", l.arr);
    if (*out)
        json_object_set_new(*out, "next",
                            (int)n < limit ? json_null() : json_integer((json_int_t)l.last_id));
    return *out ? MAMORI_OK : MAMORI_ERR_NOMEM;
}
