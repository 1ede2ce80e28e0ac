/*
 * lib/device.c - libmamori's device connection (see include/mamori/device.h):
 * the session. Creation and teardown, the MQTT connection, heartbeats, the
 * outbox (telemetry, events, the hub's acknowledgements), the signed
 * security status and the step loop. Commands, the device log, settings,
 * rotation and updates live in the device_*.c files next to it
 * (lib/device_priv.h).
 *
 * Uses libmosquitto without its threads: the caller polls mamori_device_fd()
 * and calls mamori_device_step(), so one thread can drive many devices.
 * The broker is pinned to the platform CA in the identity (ca.crt) with host
 * name verification on (T05-L1a, T05-L1c, T06-L2c). Reconnects use exponential
 * backoff with "equal jitter" (half fixed, half random) so a fleet that lost
 * its broker does not come back in lockstep (T10-L3a).
 */
#include <unistd.h>
#include <curl/curl.h>
#include <mosquitto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/crypto.h"
#include "common/eat.h"
#include "common/fsutil.h"
#include "common/json.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/schema.h"
#include "lib/cfgstore.h"
#include "lib/devstate.h"
#include "lib/device_priv.h"
#include "lib/identity.h"
#include "lib/logwatch.h"
#include "lib/outbox.h"
#include "lib/update.h"
#include "mamori/device.h"

/* Without an acknowledgement for this long, everything unacknowledged is
 * sent again (the hub drops what it already holds). */
#define ACK_TIMEOUT_MS 10000
/* The signed security status (P-MGMT): published this long after each
 * connection, then daily, valid for two days. */
#define STATUS_AFTER_CONNECT_MS 1000
#define STATUS_EVERY_MS         (24 * 3600 * 1000ULL)
#define STATUS_TTL_S            (2 * 86400)

uint64_t mamori_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t dev_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

enum mamori_err mamori_sdk_init(void)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) /* update downloads */
        return MAMORI_ERR_INTERNAL;
    return mosquitto_lib_init() == MOSQ_ERR_SUCCESS ? MAMORI_OK : MAMORI_ERR_INTERNAL;
}

void mamori_sdk_cleanup(void)
{
    mosquitto_lib_cleanup();
    curl_global_cleanup();
}

static void schedule_retry(struct mamori_device *d, uint64_t now)
{
    unsigned base = d->backoff_cur ? d->backoff_cur : d->backoff_min;
    uint32_t r = 0;
    if (crypto_random(&r, sizeof(r)))
        r = (uint32_t)now;
    unsigned delay = base / 2 + (unsigned)(r % (base / 2 + 1));
    d->st.last_backoff_ms = delay;
    d->next_attempt_ms = now + delay;
    d->backoff_cur = base * 2 > d->backoff_max ? d->backoff_max : base * 2;
}

static void on_connect(struct mosquitto *m, void *arg, int rc)
{
    struct mamori_device *d = arg;
    if (rc != 0) {
        d->st.refused++;
        return; /* the broker closes; the next step schedules a retry */
    }
    d->state = MAMORI_DEV_CONNECTED;
    d->st.connects++;
    if (crypto_tls_resumed(mosquitto_ssl_get(m)))
        d->st.tls_resumed++;
    d->backoff_cur = 0;
    d->connected_at_ms = mamori_now_ms();
    d->next_hb_ms = d->connected_at_ms; /* announce at once */
    /* Resend everything not yet acknowledged: the hub keeps exactly one. */
    d->sent_id = 0;
    d->inflight = 0;
    d->last_progress_ms = d->connected_at_ms;
    d->status_due_ms = d->connected_at_ms + STATUS_AFTER_CONNECT_MS;
    mosquitto_subscribe(m, NULL, d->topic_cmd, 1);
}

/* {"v":1,"ack":{"tm":N,"ev":N,"log":N}}: the hub holds these. */
static void on_ack(struct mamori_device *d, json_t *ack)
{
    static const char *const names[OUTBOX_NSTREAMS] = {"tm", "ev", "log"};
    for (int s = 0; s < OUTBOX_NSTREAMS; s++) {
        uint64_t seq;
        if (!json_get_u64(ack, names[s], &seq) || seq == 0)
            continue;
        if (d->ob && outbox_ack(d->ob, (enum outbox_stream)s, seq) == MAMORI_OK && s == OUTBOX_TM &&
            seq > d->st.acked)
            d->st.acked = seq;
        if (s == OUTBOX_EV && seq > d->acked_ev)
            d->acked_ev = seq;
        /* What is acknowledged is no longer in flight. */
        unsigned k = 0;
        for (unsigned i = 0; i < d->inflight; i++)
            if (!(d->fly[i].stream == s && d->fly[i].seq <= seq))
                d->fly[k++] = d->fly[i];
        d->inflight = k;
    }
    d->last_progress_ms = mamori_now_ms();
}

static void on_message(struct mosquitto *m, void *arg, const struct mosquitto_message *msg)
{
    (void)m;
    struct mamori_device *d = arg;
    json_t *j = NULL;
    if (strcmp(msg->topic, d->topic_cmd) != 0 ||
        json_parse_untrusted(msg->payload, (size_t)msg->payloadlen, PROTO_MAX_PAYLOAD, &j, NULL, 0))
        return;
    json_t *ack = json_object_get(j, "ack");
    if (json_is_object(ack))
        on_ack(d, ack);
    else if (json_object_get(j, "cmd"))
        dev_on_command(d, msg->payload, (size_t)msg->payloadlen);
    json_decref(j);
}

static void on_disconnect(struct mosquitto *m, void *arg, int rc)
{
    (void)m;
    (void)rc;
    struct mamori_device *d = arg;
    if (d->state == MAMORI_DEV_CONNECTED)
        d->st.disconnects++;
    d->state = MAMORI_DEV_DISCONNECTED;
}

static enum mamori_err read_device_json(const char *dir, struct mamori_device *d)
{
    char p[4096], *txt = NULL;
    size_t len;
    json_t *j = NULL;
    const char *id, *host;
    uint64_t port;
    enum mamori_err rc = fs_path(p, sizeof(p), dir, "device.json");
    if (!rc)
        rc = fs_read_file(p, 4096, &txt, &len);
    if (!rc)
        rc = json_parse_untrusted(txt, len, 4096, &j, NULL, 0);
    free(txt);
    if (rc)
        return rc;
    if (!json_get_str(j, "device_id", PROTO_DEVICE_ID_LEN, &id) ||
        !proto_device_id_valid(id, strlen(id)) || !json_get_str(j, "mqtt_host", 255, &host) ||
        !json_get_u64(j, "mqtt_port", &port) || port == 0 || port > 65535) {
        json_decref(j);
        return MAMORI_ERR_PARSE;
    }
    snprintf(d->id, sizeof(d->id), "%s", id);
    snprintf(d->host, sizeof(d->host), "%s", host);
    d->port = (int)port;
    const char *model;
    if (json_get_str(j, "model", 64, &model))
        snprintf(d->model, sizeof(d->model), "%s", model);
    json_decref(j);
    return MAMORI_OK;
}

/* T05-L1b: the key must be in the store the device is configured for; a
 * TPM device never falls back to a key in a plain file. */
static enum mamori_err check_keystore(const char *key_path, enum crypto_keystore ks)
{
    struct crypto_key *k = NULL;
    enum mamori_err rc = crypto_key_load(key_path, &k);
    if (!rc && crypto_key_store(k) != ks) {
        log_err("%s: the device key is not in the configured keystore (%s)", key_path,
                crypto_keystore_name(ks));
        rc = MAMORI_ERR_PERM;
    }
    crypto_key_free(k);
    return rc;
}

/* One process per state directory: two would interleave the outbox, the
 * log chain and the identity's repair steps. The lock ends with the
 * process, however it ends. */
static enum mamori_err state_lock(struct mamori_device *d, const char *state_dir)
{
    char p[4096];
    enum mamori_err rc;
    if ((rc = fs_mkdir_p(state_dir, 0700)) || (rc = fs_check_private(state_dir, 0)) ||
        (rc = fs_path(p, sizeof(p), state_dir, "lock")))
        return rc;
    return fs_lock_file(p, &d->lock_fd);
}

/* With a state directory: the outbox, the commands' state, the device log
 * (a boot record first), the last notice and the remote settings. */
static enum mamori_err state_open(struct mamori_device *d, const struct mamori_device_opts *o,
                                  const char *key)
{
    enum mamori_err rc;
    if (!o->state_dir) {
        /* No outbox to remember them: sequence numbers start from the
         * clock (ms x 1000), so those of a restarted device go on above
         * the last it sent (the hub refuses one at or below as a replay). */
        for (int s = 0; s < OUTBOX_NSTREAMS; s++)
            d->seq[s] = dev_wall_ms() * 1000;
        return MAMORI_OK;
    }
    char ob[4096];
    if ((rc = fs_mkdir_p(o->state_dir, 0700)) || (rc = fs_check_private(o->state_dir, 0)) ||
        (rc = fs_path(ob, sizeof(ob), o->state_dir, "outbox.db")) ||
        (rc = outbox_open(ob, o->outbox_max, NULL, &d->ob)) ||
        (rc = fs_path(ob, sizeof(ob), o->state_dir, "state.db")) ||
        (rc = devstate_open(ob, &d->ds)))
        return rc;
    snprintf(d->state_dir, sizeof(d->state_dir), "%s", o->state_dir);
    /* T12-L1a: the device's own tamper-evident log starts with a boot
     * record (the chain head is found again after a restart). */
    if ((rc = dev_log_open(d, key)))
        return rc;
    dev_log_watch_start(d);
    dev_log_append(d, "boot", "{\"sdk\":\"0.1\"}");
    dev_notice_load(d);
    /* Remote settings: a version still on probation did not prove
     * itself before this restart and goes back to the known-good one. */
    if ((rc = cfgstore_open(o->state_dir, &d->cfg)))
        return rc;
    d->cfg_on = true;
    if (d->cfg.pending)
        dev_config_fallback(d, "restart before the health check passed", false);
    else if (d->cfg.version && dev_settings_apply(d, d->cfg.settings, false))
        dev_config_fallback(d, "settings in force do not parse", false);
    return MAMORI_OK;
}

/* The MQTT client, driven by mamori_device_step (no libmosquitto thread). */
static enum mamori_err mqtt_open(struct mamori_device *d, const char *ca, const char *crt,
                                 const char *key)
{
    d->mosq = mosquitto_new(d->id, true, d);
    if (!d->mosq)
        return MAMORI_ERR_NOMEM;
    mosquitto_int_option(d->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_connect_callback_set(d->mosq, on_connect);
    mosquitto_disconnect_callback_set(d->mosq, on_disconnect);
    mosquitto_message_callback_set(d->mosq, on_message);
    /* Our own TLS context, used as it is by libmosquitto: the broker pinned
     * to the platform CA with its name checked, key and certificate loaded
     * once (a TPM key stays loaded, and signs in the TPM). */
    enum mamori_err rc = crypto_tls_client_ctx(d->keystore, ca, crt, key, d->host, &d->tls);
    if (rc)
        return rc;
    if (mosquitto_void_option(d->mosq, MOSQ_OPT_SSL_CTX, d->tls) != MOSQ_ERR_SUCCESS ||
        mosquitto_int_option(d->mosq, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0) != MOSQ_ERR_SUCCESS)
        return MAMORI_ERR_TLS;
    return MAMORI_OK;
}

enum mamori_err mamori_device_new(const struct mamori_device_opts *o, struct mamori_device **out)
{
    *out = NULL;
    if (!o || !o->identity_dir)
        return MAMORI_ERR_INVAL;
    struct mamori_device *d = calloc(1, sizeof(*d));
    if (!d)
        return MAMORI_ERR_NOMEM;
    char key[4096], crt[4096], ca[4096];
    d->lock_fd = -1;
    enum mamori_err rc = o->state_dir ? state_lock(d, o->state_dir) : MAMORI_OK;
    if (!rc)
        rc = read_device_json(o->identity_dir, d);
    if (!rc)
        rc = fs_path(key, sizeof(key), o->identity_dir, "device.key");
    if (!rc)
        rc = fs_path(crt, sizeof(crt), o->identity_dir, "device.crt");
    if (!rc)
        rc = fs_path(ca, sizeof(ca), o->identity_dir, "ca.crt");
    /* An interrupted certificate switch is finished first, so key and
     * certificate always match. The private key must be ours alone (ETSI
     * 5.4-1). */
    if (!rc && o->keystore && !crypto_keystore_parse(o->keystore, &d->keystore))
        rc = MAMORI_ERR_INVAL;
    if (!rc)
        rc = crypto_keystore_init(d->keystore, o->tpm_tcti);
    if (!rc)
        rc = identity_repair(o->identity_dir);
    if (!rc)
        rc = fs_check_private(key, 0);
    if (!rc)
        rc = check_keystore(key, d->keystore);
    if (rc)
        goto fail;
    snprintf(d->key_path, sizeof(d->key_path), "%s", key);
    snprintf(d->crt_path, sizeof(d->crt_path), "%s", crt);
    if (o->host_override)
        snprintf(d->host, sizeof(d->host), "%s", o->host_override);
    if (o->port_override)
        d->port = o->port_override;
    d->hb_interval_ms = (o->heartbeat_interval_s ? o->heartbeat_interval_s : 30) * 1000u;
    d->base_hb_ms = d->hb_interval_ms;
    snprintf(d->base_host, sizeof(d->base_host), "%s", d->host);
    d->base_port = d->port;
    if (o->schema_json && !(d->base_schema = strdup(o->schema_json))) {
        rc = MAMORI_ERR_NOMEM;
        goto fail;
    }
    d->backoff_min = o->backoff_min_ms ? o->backoff_min_ms : 500;
    d->backoff_max = o->backoff_max_ms ? o->backoff_max_ms : 60000;
    if (d->backoff_min < 2)
        d->backoff_min = 2;
    if ((rc = proto_topic(d->topic_hb, sizeof(d->topic_hb), d->id, PROTO_KIND_HB)) ||
        (rc = proto_topic(d->topic_tm, sizeof(d->topic_tm), d->id, PROTO_KIND_TM)) ||
        (rc = proto_topic(d->topic_ev, sizeof(d->topic_ev), d->id, PROTO_KIND_EV)) ||
        (rc = proto_topic(d->topic_log, sizeof(d->topic_log), d->id, PROTO_KIND_LOG)) ||
        (rc = proto_topic(d->topic_cmd, sizeof(d->topic_cmd), d->id, PROTO_KIND_CMD)) ||
        (rc = proto_topic(d->topic_res, sizeof(d->topic_res), d->id, PROTO_KIND_RES)))
        goto fail;
    size_t tlen;
    snprintf(d->identity_dir, sizeof(d->identity_dir), "%s", o->identity_dir);
    if ((rc = fs_read_file(ca, 64 * 1024, &d->trust_pem, &tlen)))
        goto fail;
    d->on_command = o->on_command;
    d->on_command_arg = o->on_command_arg;
    if (o->schema_json) {
        char why[160];
        d->schema = malloc(sizeof(*d->schema));
        if (!d->schema) {
            rc = MAMORI_ERR_NOMEM;
            goto fail;
        }
        if ((rc =
                 schema_parse(o->schema_json, strlen(o->schema_json), d->schema, why, sizeof(why))))
            goto fail;
    }
    if ((rc = state_open(d, o, key)))
        goto fail;
    snprintf(d->ca_path, sizeof(d->ca_path), "%s", ca);
    if ((o->update_slots_dir || o->update_hook) && (rc = dev_update_open(d, o)))
        goto fail;
    if ((rc = mqtt_open(d, ca, crt, key)))
        goto fail;
    d->state = MAMORI_DEV_DISCONNECTED;
    *out = d;
    return MAMORI_OK;
fail:
    mamori_device_free(d);
    return rc;
}

void mamori_device_free(struct mamori_device *d)
{
    if (!d)
        return;
    if (d->mosq) {
        if (d->state == MAMORI_DEV_CONNECTED)
            mosquitto_disconnect(d->mosq);
        mosquitto_destroy(d->mosq);
    }
    crypto_tls_ctx_free(d->tls);
    free(d->base_schema);
    outbox_close(d->ob);
    devstate_close(d->ds);
    crypto_key_free(d->log_key);
    logwatch_close(d->lw);
    dev_download_end(d);
    upd_close(d->upd);
    if (d->lock_fd >= 0)
        close(d->lock_fd);
    free(d->trust_pem);
    free(d->schema);
    crypto_wipe(d, sizeof(*d));
    free(d);
}

const char *mamori_device_id(const struct mamori_device *d)
{
    return d->id;
}

enum mamori_device_state mamori_device_state(const struct mamori_device *d)
{
    return d->state;
}

int mamori_device_fd(const struct mamori_device *d)
{
    return d->state == MAMORI_DEV_DISCONNECTED || d->wiped ? -1 : mosquitto_socket(d->mosq);
}

bool mamori_device_want_write(const struct mamori_device *d)
{
    return d->state != MAMORI_DEV_DISCONNECTED && mosquitto_want_write(d->mosq);
}

enum mamori_err dev_publish(struct mamori_device *d, const char *topic, uint64_t *seq,
                            const char *body_json)
{
    char buf[PROTO_MAX_PAYLOAD];
    int n = snprintf(buf, sizeof(buf), "{\"v\":1,\"seq\":%llu,\"ts\":%llu,\"body\":%s}",
                     (unsigned long long)++*seq, (unsigned long long)dev_wall_ms(), body_json);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return MAMORI_ERR_TOOBIG;
    /* A heartbeat goes at QoS 0: it says "alive now", so it must not wait
     * behind queued telemetry for the in-flight window (a QoS 1 message
     * waits for a PUBACK slot; a busy broker then delays the beat past the
     * hub's allowance). A lost beat is followed by the next one. */
    int qos = strcmp(topic, d->topic_hb) == 0 ? 0 : 1;
    int rc = mosquitto_publish(d->mosq, NULL, topic, n, buf, qos, false);
    return rc == MOSQ_ERR_SUCCESS ? MAMORI_OK : MAMORI_ERR_CONN;
}

/* The SDK sends only well-formed objects within the size cap. */
static enum mamori_err check_object(const char *body_json, json_t **out)
{
    return json_parse_untrusted(body_json, strlen(body_json), OUTBOX_BODY_MAX, out, NULL, 0);
}

enum mamori_err dev_queue(struct mamori_device *d, enum outbox_stream s, const char *const *bodies,
                          size_t n)
{
    if (d->ob)
        return outbox_put(d->ob, s, bodies, n, dev_wall_ms(), NULL);
    /* No state directory: nothing is kept, so only a live session works. */
    if (d->state != MAMORI_DEV_CONNECTED)
        return MAMORI_ERR_CONN;
    const char *topic = s == OUTBOX_TM ? d->topic_tm : s == OUTBOX_EV ? d->topic_ev : d->topic_log;
    for (size_t i = 0; i < n; i++) {
        enum mamori_err rc = dev_publish(d, topic, &d->seq[s], bodies[i]);
        if (rc)
            return rc;
    }
    return MAMORI_OK;
}

enum mamori_err mamori_device_send_telemetry_batch(struct mamori_device *d,
                                                   const char *const *bodies, size_t n)
{
    if (!d || !bodies || n == 0 || n > 10000)
        return MAMORI_ERR_INVAL;
    /* Locked (T03-L2b, T03-L3a: the flag is durable, so the lock holds
     * across reboots until the owner unlocks) or quarantined (T02-L3c): the
     * device's functions stop; only the management channel (heartbeats,
     * events, commands) runs. */
    if (mamori_device_locked(d) || mamori_device_quarantined(d) || d->wiped) {
        d->st.telemetry_refused++;
        return MAMORI_ERR_STATE;
    }
    int64_t ts = (int64_t)dev_wall_ms();
    enum mamori_err rc = MAMORI_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *chk = NULL;
        char why[160];
        rc = check_object(bodies[i], &chk);
        /* T11-L1e: values outside the model's declared ranges never leave
         * the device; the hub checks again. */
        if (!rc && d->schema) {
            rc = schema_check(d->schema, chk, why, sizeof(why));
            if (!rc && !schema_rate_ok(d->schema, &d->rate, chk, ts, 0, n == 1, why, sizeof(why)))
                rc = MAMORI_ERR_RATELIMIT;
        }
        json_decref(chk);
    }
    if (rc) {
        d->st.telemetry_refused++;
        return rc;
    }
    rc = dev_queue(d, OUTBOX_TM, bodies, n);
    if (!rc)
        d->st.telemetry_sent += n;
    return rc;
}

enum mamori_err mamori_device_send_telemetry(struct mamori_device *d, const char *body_json)
{
    return mamori_device_send_telemetry_batch(d, &body_json, 1);
}

bool mamori_device_locked(const struct mamori_device *d)
{
    return d->ds && devstate_flag(d->ds, "locked");
}

bool mamori_device_quarantined(const struct mamori_device *d)
{
    return d->ds && devstate_flag(d->ds, "quarantined");
}

enum mamori_err mamori_device_send_event(struct mamori_device *d, const char *body_json)
{
    if (d->wiped)
        return MAMORI_ERR_STATE;
    json_t *chk = NULL;
    enum mamori_err rc = check_object(body_json, &chk);
    json_decref(chk);
    if (!rc)
        rc = dev_queue(d, OUTBOX_EV, &body_json, 1);
    if (!rc)
        d->st.events_sent++;
    return rc;
}

static bool pump_one(int64_t id, enum outbox_stream s, uint64_t seq, const void *payload,
                     size_t len, void *arg)
{
    struct mamori_device *d = arg;
    const char *topic = s == OUTBOX_TM ? d->topic_tm : s == OUTBOX_EV ? d->topic_ev : d->topic_log;
    if (mosquitto_publish(d->mosq, NULL, topic, (int)len, payload, 1, false) != MOSQ_ERR_SUCCESS)
        return false;
    d->sent_id = id;
    if (d->inflight == 0)
        d->last_progress_ms = mamori_now_ms(); /* the ack timeout runs from here */
    d->fly[d->inflight].stream = (uint8_t)s;
    d->fly[d->inflight].seq = seq;
    d->inflight++;
    d->st.outbox_published++;
    return true;
}

/* Publishes queued messages in order, keeping at most OUTBOX_WINDOW
 * unacknowledged. */
static void pump(struct mamori_device *d, uint64_t now)
{
    if (!d->ob)
        return;
    bool q;
    if (outbox_report_drops(d->ob, dev_wall_ms(), &q) != MAMORI_OK)
        d->st.outbox_errors++;
    /* now was read before this step; an acknowledgement read during the
     * step may be newer (no unsigned wrap-around here). */
    if (d->inflight && now > d->last_progress_ms && now - d->last_progress_ms > ACK_TIMEOUT_MS) {
        d->sent_id = 0; /* no acknowledgement: send again from the oldest */
        d->inflight = 0;
        d->last_progress_ms = now;
    }
    struct outbox_stats os;
    if (d->inflight >= OUTBOX_WINDOW || outbox_stats(d->ob, &os) || os.queued <= d->inflight)
        return;
    if (outbox_peek(d->ob, d->sent_id, OUTBOX_WINDOW - d->inflight, pump_one, d) != MAMORI_OK)
        d->st.outbox_errors++;
}

static void lost(struct mamori_device *d, uint64_t now)
{
    if (d->state == MAMORI_DEV_CONNECTED)
        d->st.disconnects++;
    else
        d->st.refused++;
    d->state = MAMORI_DEV_DISCONNECTED;
    mosquitto_disconnect(d->mosq);
    schedule_retry(d, now);
}

const char *mamori_device_notice(const struct mamori_device *d)
{
    return d->notice;
}

const char *mamori_device_fw_version(const struct mamori_device *d)
{
    return d->fw_version;
}

static int device_step(struct mamori_device *d, uint64_t now, bool readable, bool writable)
{
    if (d->wipe_pending) {
        d->wipe_pending = false;
        dev_wipe(d);
    }
    if (d->wiped)
        return 60000; /* nothing left to do: no key, no state */
    /* Also while disconnected: settings that cut the device off must
     * still be rolled back, and the log is watched whatever the network. */
    dev_config_probe(d);
    dev_log_watch_step(d, now);
    if (d->state == MAMORI_DEV_DISCONNECTED) {
        if (d->next_attempt_ms > now)
            return d->lw && d->next_attempt_ms - now > 1000 ? 1000
                                                            : (int)(d->next_attempt_ms - now);
        int rc =
            mosquitto_connect(d->mosq, d->host, d->port, (int)(d->hb_interval_ms / 1000) * 2 + 5);
        if (rc != MOSQ_ERR_SUCCESS) {
            d->st.refused++;
            schedule_retry(d, now);
            return (int)(d->next_attempt_ms - now);
        }
        d->state = MAMORI_DEV_CONNECTING;
        return 0;
    }
    if (readable && mosquitto_loop_read(d->mosq, 1) != MOSQ_ERR_SUCCESS) {
        lost(d, now);
        return (int)(d->next_attempt_ms - now);
    }
    if ((writable || mosquitto_want_write(d->mosq)) &&
        mosquitto_loop_write(d->mosq, 1) != MOSQ_ERR_SUCCESS) {
        lost(d, now);
        return (int)(d->next_attempt_ms - now);
    }
    if (mosquitto_loop_misc(d->mosq) != MOSQ_ERR_SUCCESS || d->state == MAMORI_DEV_DISCONNECTED) {
        lost(d, now);
        return (int)(d->next_attempt_ms - now);
    }
    if (d->state != MAMORI_DEV_CONNECTED)
        return 100;
    if (d->reconnect_pending && !mosquitto_want_write(d->mosq)) {
        /* The next connection presents the new certificate. */
        d->reconnect_pending = false;
        if (crypto_tls_ctx_set_identity(d->tls, d->crt_path, d->key_path) != MAMORI_OK)
            dev_security_event(d, "certificate_switch_failed", "new identity does not load");
        mosquitto_disconnect(d->mosq);
        d->state = MAMORI_DEV_DISCONNECTED;
        d->next_attempt_ms = now;
        return 0;
    }
    pump(d, now);
    if (now >= d->next_hb_ms) {
        char body[96];
        uint64_t hb_seq = d->st.heartbeats_sent;
        snprintf(body, sizeof(body), "{\"uptime_s\":%llu}",
                 (unsigned long long)((now - d->connected_at_ms) / 1000));
        if (dev_publish(d, d->topic_hb, &hb_seq, body) == MAMORI_OK)
            d->st.heartbeats_sent++;
        d->next_hb_ms = now + d->hb_interval_ms;
    }
    uint64_t until = d->next_hb_ms - now;
    return until > 1000 ? 1000 : (int)until;
}

/* The device's security status as an EAT (common/eat.h), signed with its
 * key, as a device event. A key that cannot sign ES256 (RSA) publishes
 * none. */
static void status_publish(struct mamori_device *d)
{
    struct crypto_cert *cert = NULL;
    int64_t not_after = 0, now = (int64_t)(dev_wall_ms() / 1000);
    if (crypto_cert_load(d->crt_path, &cert) == MAMORI_OK)
        not_after = (int64_t)crypto_cert_not_after(cert);
    crypto_cert_free(cert);
    json_t *c = json_pack(
        "{s:s, s:s, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:b, s:b}}", "eat_profile", EAT_PROFILE, "sub",
        d->id, "iat", (json_int_t)now, "exp", (json_int_t)(now + STATUS_TTL_S), "mamori",
        "cert_not_after", (json_int_t)not_after, "support_end", (json_int_t)d->st.support_end,
        "advisories", (json_int_t)d->st.advisories, "log_records", (json_int_t)d->log_n, "locked",
        mamori_device_locked(d), "quarantined", mamori_device_quarantined(d));
    if (c && d->fw_version[0])
        json_object_set_new(c, "swversion", json_pack("[s,i]", d->fw_version, 1));
    char *claims = c ? json_dump_compact(c) : NULL;
    json_decref(c);
    char tok[EAT_MAX + 1], body[EAT_MAX + 64];
    struct crypto_key *k = claims ? dev_log_key_take(d) : NULL;
    enum mamori_err rc = k ? eat_sign(k, claims, tok) : MAMORI_ERR_CRYPTO;
    dev_log_key_give(d, k);
    free(claims);
    if (rc)
        return;
    snprintf(body, sizeof(body), "{\"type\":\"security_status\",\"eat\":\"%s\"}", tok);
    (void)dev_queue(d, OUTBOX_EV, (const char *const[]){body}, 1);
}

int mamori_device_step(struct mamori_device *d, uint64_t now, bool readable, bool writable)
{
    int t = device_step(d, now, readable, writable);
    if (!d->wiped && d->state == MAMORI_DEV_CONNECTED && now >= d->status_due_ms) {
        d->status_due_ms = now + STATUS_EVERY_MS;
        status_publish(d);
    }
    if (!d->wiped)
        dev_update_step(d, now);
    /* a download moves only while the SDK is driven: come back soon */
    return d->fetch && t > 5 ? 5 : t;
}

void mamori_device_get_stats(const struct mamori_device *d, struct mamori_device_stats *out)
{
    *out = d->st;
    out->tls_full = crypto_tls_full_handshakes(d->tls);
    if (d->upd) {
        struct upd_status us;
        upd_get_status(d->upd, &us);
        out->update_phase = (uint64_t)us.phase;
    }
    struct outbox_stats os;
    if (d->ob && outbox_stats(d->ob, &os) == MAMORI_OK) {
        out->outbox_queued = os.queued;
        out->outbox_dropped = os.dropped_total;
    }
}
