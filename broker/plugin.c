/*
 * broker/plugin.c - the mamori plugin for mosquitto 2.0 (plugin API v5):
 * the enforcement point on the data path.
 *
 *  - CONNECT (MOSQ_EVT_BASIC_AUTH): the TLS layer has already verified the
 *    certificate chain (require_certificate, cafile = device trust). Here the
 *    certificate's SHA-256 fingerprint must belong to a registered device
 *    whose state allows connecting; the plugin then sets the user name to
 *    the device id. Identity never comes from the client id or the user name
 *    the client sent (T07-L2d, T11-L1a, P-MUT). The client id is bound to
 *    that identity: a device's own id for a device, the hub's ids for the
 *    hub's certificate. This is decided here, before mosquitto looks the
 *    client id up and hands an existing session to the new connection
 *    (connect__on_authorised), so no client can take over another's
 *    session. This runs on every CONNECT, including over a resumed TLS
 *    session, which skips certificate checks.
 *  - Every publish, subscribe and delivery (MOSQ_EVT_ACL_CHECK): own topic
 *    subtree only, payload cap, per-device token-bucket rate (T06-L2b,
 *    T10-L1a, T11-L3a).
 *  - Live revocation: the hub's "set" messages on mamori/v1/ctl/sync (only
 *    from the hub's own certificate) change a device's access and kick it
 *    at once (T03-L2b, T07-L3a); when a rotation switches a device to its
 *    new certificate, a session still open on the old one is closed.
 *  - Fail closed: until the first complete snapshot arrives, no device is
 *    admitted.
 * Observations (refusals, kicks) go to the hub on mamori/v1/broker/ev
 * (T01-L3a, T01-L3b, T02-L2c: unauthorized behaviour is detected, recorded
 * and told apart by its reason).
 */
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker/notes.h"
#include "broker/parts.h"
#include "broker/table.h"
#include "common/crypto.h"
#include "common/proto.h"

#define EXPORT __attribute__((visibility("default")))

struct plugin {
    mosquitto_plugin_id_t *id;
    char hub_fp[65];
    char node[33]; /* this broker node's name, in every report */
    struct sync_state sync;
    struct parts parts; /* what each hub's data sessions are sent (parts.h) */
    struct limits lim;
    /* observation reports are themselves rate limited */
    double report_tokens;
    int64_t report_last_ms;
    uint64_t reports_dropped;
    /* devices marked for a kick since the last tick: the broker ticks on
     * every pass of its event loop, so the table is walked only then */
    size_t kicks_marked;
};

static struct plugin g;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void json_str(char *out, size_t n, const char *s)
{
    size_t o = 0;
    for (; s && *s && o + 7 < n; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            o += (size_t)snprintf(out + o, n - o, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            o += (size_t)snprintf(out + o, n - o, "\\u%04x", c);
        else
            out[o++] = (char)c;
    }
    out[o] = '\0';
}

static void report(const char *type, const char *device, const struct mosquitto *client,
                   const char *reason)
{
    int64_t t = now_ms();
    g.report_tokens += (double)(t - g.report_last_ms) * 0.1; /* 100/s */
    if (g.report_tokens > 200)
        g.report_tokens = 200;
    g.report_last_ms = t;
    if (g.report_tokens < 1) {
        g.reports_dropped++;
        return;
    }
    g.report_tokens -= 1;
    char addr[64] = "", cid[160] = "", why[160] = "", node[80] = "", buf[800];
    json_str(addr, sizeof(addr), client ? mosquitto_client_address(client) : NULL);
    json_str(cid, sizeof(cid), client ? mosquitto_client_id(client) : NULL);
    json_str(why, sizeof(why), reason);
    json_str(node, sizeof(node), g.node);
    int n = snprintf(buf, sizeof(buf),
                     "{\"type\":\"%s\",\"device\":\"%s\",\"address\":\"%s\",\"client_id\":\"%s\","
                     "\"reason\":\"%s\",\"node\":\"%s\",\"dropped_before\":%llu}",
                     type, device ? device : "", addr, cid, why, node,
                     (unsigned long long)g.reports_dropped);
    if (n > 0 && (size_t)n < sizeof(buf))
        mosquitto_broker_publish_copy(NULL, PROTO_TOPIC_BROKER_EV, n, buf, 0, false, NULL);
}

/* Tells the hub that device id connected to this node (on) or left it,
 * so commands to it go to this node. Not rate limited like the reports:
 * one per admitted connection and one per its end, never for a refusal. */
static void presence(const char *id, bool on)
{
    char node[80], buf[200];
    json_str(node, sizeof(node), g.node);
    int n = snprintf(buf, sizeof(buf),
                     "{\"type\":\"presence\",\"device\":\"%s\",\"node\":\"%s\",\"on\":%s}", id,
                     node, on ? "true" : "false");
    if (n > 0 && (size_t)n < sizeof(buf))
        mosquitto_broker_publish_copy(NULL, PROTO_TOPIC_BROKER_EV, n, buf, 0, false, NULL);
}

/* From sync_apply: a denied (or unknown) device loses every session of
 * its identity; a device still admitted loses the session under its
 * client id, whose certificate is no longer admitted (T07-L3a). */
static void kick(const char *id, void *arg)
{
    (void)arg;
    const struct dev *d = table_by_id(&g.sync.active, id);
    if (!d || d->mode == MODE_DENY) {
        mosquitto_kick_client_by_username(id, false);
        return;
    }
    report("stale_session_kick", id, NULL, "session on a certificate no longer admitted closed");
    mosquitto_kick_client_by_clientid(id, false);
}

static const char *fp_of(const struct mosquitto *client, char fp[CRYPTO_FP_HEX_LEN])
{
    X509 *cert = mosquitto_client_certificate(client);
    fp[0] = '\0';
    if (cert) {
        crypto_x509_fingerprint(cert, fp);
        X509_free(cert);
    }
    return fp;
}

/* T07-L2d: a client id not bound to the certificate is refused before
 * mosquitto can hand it anyone's session, and reported. */
static bool cid_refused(const char *dev_id, const struct mosquitto *client)
{
    enum cid_verdict v = cid_decide(dev_id, mosquitto_client_id(client));
    if (v == CID_OK)
        return false;
    report("client_id_mismatch", dev_id, client, cid_verdict_name(v));
    return true;
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
    (void)event;
    (void)userdata;
    struct mosquitto_evt_basic_auth *ed = event_data;
    char fp[CRYPTO_FP_HEX_LEN];
    if (!fp_of(ed->client, fp)[0]) {
        report("auth_fail", NULL, ed->client, "no client certificate");
        return MOSQ_ERR_AUTH;
    }
    if (crypto_ct_eq(fp, g.hub_fp, 64)) {
        if (cid_refused(NULL, ed->client) ||
            mosquitto_set_username(ed->client, PROTO_HUB_USERNAME) != MOSQ_ERR_SUCCESS)
            return MOSQ_ERR_AUTH;
        return MOSQ_ERR_SUCCESS;
    }
    if (!g.sync.synced) {
        report("auth_fail", NULL, ed->client, "broker not yet synchronised with hub");
        return MOSQ_ERR_AUTH; /* fail closed */
    }
    /* T06-L1b: only registered devices in a good state are admitted. */
    struct dev *d = table_by_fp(&g.sync.active, fp);
    if (!d) {
        report("auth_fail", NULL, ed->client, "certificate not registered");
        return MOSQ_ERR_AUTH;
    }
    if (d->mode == MODE_DENY) {
        report("auth_fail", d->id, ed->client, "device state does not allow connecting");
        return MOSQ_ERR_AUTH;
    }
    if (cid_refused(d->id, ed->client))
        return MOSQ_ERR_AUTH;
    /* Whatever user name the client sent is replaced by the identity. */
    if (mosquitto_set_username(ed->client, d->id) != MOSQ_ERR_SUCCESS)
        return MOSQ_ERR_AUTH;
    d->denied_in_row = 0;
    d->kick_pending = false;
    /* This session takes over the one open under the same client id (a
     * reconnection). T07-L2d: taken over while live from another address,
     * it is the same identity in two places at once. */
    if (session_open(d, ed->client, fp, mosquitto_client_address(ed->client)))
        report("duplicate_connection", d->id, ed->client,
               "the identity's live session taken over from another address");
    presence(d->id, true);
    return MOSQ_ERR_SUCCESS;
}

/* A session ends. Only the device's live session is forgotten: a session
 * that was taken over ends after its successor's authentication. */
static int on_disconnect(int event, void *event_data, void *userdata)
{
    (void)event;
    (void)userdata;
    struct mosquitto_evt_disconnect *ed = event_data;
    const char *user = mosquitto_client_username(ed->client);
    struct dev *d = user ? table_by_id(&g.sync.active, user) : NULL;
    /* only the live session: a refused client keeps the user name it sent */
    if (d && d->live == ed->client) {
        session_close(d, ed->client);
        presence(d->id, false);
    }
    return MOSQ_ERR_SUCCESS;
}

/* Every client that gets in went through on_basic_auth, which replaces
 * whatever user name it sent: "!hub" (not a valid device id) is set only
 * for the hub's certificate. Every session of that certificate is the hub
 * (an earlier version remembered one session, and a second connection with
 * the hub's certificate silently took the hub's rights from the first). */
static bool is_hub(const struct mosquitto *client)
{
    const char *u = mosquitto_client_username(client);
    return u && strcmp(u, PROTO_HUB_USERNAME) == 0;
}

/* The hub may do anything; with several hubs, each one's data sessions
 * are sent only the devices of its partitions (parts.h). */
static bool hub_may_read(const struct mosquitto_evt_acl_check *ed)
{
    char id[PROTO_DEVICE_ID_LEN + 1];
    enum proto_kind kind;
    if (ed->access != MOSQ_ACL_READ || !g.parts.n ||
        proto_topic_parse(ed->topic, strlen(ed->topic), id, &kind) != MAMORI_OK ||
        kind == PROTO_KIND_HB || kind == PROTO_KIND_CMD)
        return true;
    return parts_allow(&g.parts, mosquitto_client_id(ed->client), id);
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
    (void)event;
    (void)userdata;
    struct mosquitto_evt_acl_check *ed = event_data;
    if (is_hub(ed->client))
        return hub_may_read(ed) ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
    const char *u = mosquitto_client_username(ed->client);
    struct dev *d = u ? table_by_id(&g.sync.active, u) : NULL;
    int access = ed->access == MOSQ_ACL_READ        ? ACL_READ
                 : ed->access == MOSQ_ACL_WRITE     ? ACL_WRITE
                 : ed->access == MOSQ_ACL_SUBSCRIBE ? ACL_SUBSCRIBE
                                                    : ACL_UNSUBSCRIBE;
    bool marked = d && d->kick_pending;
    enum acl_verdict v = acl_decide(d, &g.lim, access, ed->topic, ed->payloadlen, now_ms());
    if (d && d->kick_pending && !marked)
        g.kicks_marked++;
    if (v == ACL_ALLOW)
        return MOSQ_ERR_SUCCESS;
    if (access != ACL_READ) {
        char why[96];
        snprintf(why, sizeof(why), "%s denied: %s", access == ACL_WRITE ? "publish" : "subscribe",
                 acl_verdict_name(v));
        if (v != ACL_DENY_RATE || (d && d->denied_in_row == 1))
            report("acl_deny", u, ed->client, why);
    }
    return MOSQ_ERR_ACL_DENIED;
}

/* Every device connected here, after a snapshot was taken over: a hub
 * that has just (re)connected learns where they are without waiting for
 * each device's next heartbeat. Batches of HERE_BATCH ids. */
#define HERE_BATCH 400

static void flush_here(const char *node, const char *ids, size_t n, size_t count)
{
    char buf[HERE_BATCH * 60 + 160];
    int k = snprintf(buf, sizeof(buf), "{\"type\":\"here\",\"node\":\"%s\",\"devices\":[%.*s]}",
                     node, (int)n, ids);
    if (count && k > 0 && (size_t)k < sizeof(buf))
        mosquitto_broker_publish_copy(NULL, PROTO_TOPIC_BROKER_EV, k, buf, 0, false, NULL);
}

static void report_here(void)
{
    char node[80], id[56], ids[HERE_BATCH * 60];
    size_t n = 0, count = 0;
    json_str(node, sizeof(node), g.node);
    const struct dev_table *t = &g.sync.active;
    for (size_t i = 0; i < t->nbuckets; i++)
        for (const struct dev *d = t->by_id[i]; d; d = d->next_id) {
            if (!d->live)
                continue;
            json_str(id, sizeof(id), d->id);
            int k = snprintf(ids + n, sizeof(ids) - n, "%s\"%s\"", count ? "," : "", id);
            if (k < 0 || (size_t)k >= sizeof(ids) - n)
                break; /* cannot happen: HERE_BATCH ids of at most 56 bytes fit */
            n += (size_t)k;
            if (++count == HERE_BATCH) {
                flush_here(node, ids, n, count);
                n = count = 0;
            }
        }
    flush_here(node, ids, n, count);
}

/* The snapshot in force and who is connected here, to every hub. */
static void announce(void)
{
    char buf[200];
    char node[80];
    json_str(node, sizeof(node), g.node);
    int n = snprintf(buf, sizeof(buf),
                     "{\"type\":\"synced\",\"gen\":%llu,\"count\":%zu,\"node\":\"%s\"}",
                     (unsigned long long)g.sync.synced_gen, g.sync.active.count, node);
    if (n > 0 && (size_t)n < sizeof(buf))
        mosquitto_broker_publish_copy(NULL, PROTO_TOPIC_BROKER_EV, n, buf, 1, false, NULL);
    report_here();
}

/* mamori/v1/ctl/sync: the registry's view, a snapshot or one change. */
static void on_sync(const struct mosquitto *hub, const void *payload, size_t len)
{
    (void)hub;
    uint64_t gen = g.sync.synced_gen;
    if (sync_apply(&g.sync, payload, len, kick, NULL) != MAMORI_OK)
        mosquitto_log_printf(MOSQ_LOG_WARNING, "mamori: malformed control message ignored");
    /* The hub learns that the snapshot is in force, not merely sent:
     * only then does it report the broker as synchronised. */
    if (g.sync.synced_gen != gen)
        announce();
}

/* mamori/v1/ctl/hello: a hub that joined after the snapshot (one of
 * several, not the one that sends snapshots) learns it, and where the
 * devices are; before any snapshot there is nothing to tell. */
static void on_hello(const struct mosquitto *hub, const void *payload, size_t len)
{
    (void)hub;
    (void)payload;
    (void)len;
    if (g.sync.synced)
        announce();
}

static void deliver_note(const char *id, const char *msg, size_t n, void *arg)
{
    (void)arg;
    char topic[64];
    if (proto_topic(topic, sizeof(topic), id, PROTO_KIND_CMD) == MAMORI_OK)
        mosquitto_broker_publish_copy(NULL, topic, (int)n, msg, 0, false, NULL);
}

/* mamori/v1/ctl/notes: the hub's QoS 0 notes to devices (its
 * acknowledgements), many in one message (broker/notes.h). */
static void on_notes(const struct mosquitto *hub, const void *payload, size_t len)
{
    (void)hub;
    struct notes_result r = notes_apply(payload, len, deliver_note, NULL);
    if (r.refused)
        mosquitto_log_printf(MOSQ_LOG_WARNING, "mamori: %zu malformed notes from the hub ignored",
                             r.refused);
}

/* mamori/v1/ctl/parts: the partitions the sending hub holds; its data
 * sessions are sent only those devices' messages (on_acl_check). */
static void on_parts(const struct mosquitto *hub, const void *payload, size_t len)
{
    if (parts_set(&g.parts, mosquitto_client_id(hub), payload, len) != MAMORI_OK)
        mosquitto_log_printf(MOSQ_LOG_WARNING, "mamori: partition list ignored (malformed, or "
                                               "more than 16 hubs: they get everything)");
}

/* The hub's control messages, by topic. */
static const struct {
    const char *topic;
    void (*fn)(const struct mosquitto *hub, const void *payload, size_t len);
} CONTROL[] = {
    {PROTO_TOPIC_CTL_SYNC, on_sync},
    {PROTO_TOPIC_CTL_NOTES, on_notes},
    {PROTO_TOPIC_CTL_HELLO, on_hello},
    {PROTO_TOPIC_CTL_PARTS, on_parts},
};

static int on_message(int event, void *event_data, void *userdata)
{
    (void)event;
    (void)userdata;
    struct mosquitto_evt_message *ed = event_data;
    if (!is_hub(ed->client) ||
        strncmp(ed->topic, PROTO_TOPIC_CTL_PREFIX, sizeof(PROTO_TOPIC_CTL_PREFIX) - 1))
        return MOSQ_ERR_SUCCESS;
    for (size_t i = 0; i < sizeof(CONTROL) / sizeof(CONTROL[0]); i++)
        if (strcmp(ed->topic, CONTROL[i].topic) == 0) {
            CONTROL[i].fn(ed->client, ed->payload, ed->payloadlen);
            return MOSQ_ERR_SUCCESS;
        }
    mosquitto_log_printf(MOSQ_LOG_WARNING, "mamori: control message on unknown topic ignored");
    return MOSQ_ERR_SUCCESS;
}

static int on_tick(int event, void *event_data, void *userdata)
{
    (void)event;
    (void)event_data;
    (void)userdata;
    /* Floods are kicked here, outside the flooding client's own callbacks. */
    if (!g.kicks_marked)
        return MOSQ_ERR_SUCCESS;
    g.kicks_marked = 0;
    struct dev_table *t = &g.sync.active;
    for (size_t i = 0; i < t->nbuckets; i++) {
        for (struct dev *d = t->by_id[i]; d; d = d->next_id) {
            if (d->kick_pending) {
                d->kick_pending = false;
                d->denied_in_row = 0;
                report("rate_kick", d->id, NULL, "message rate exceeded");
                mosquitto_kick_client_by_username(d->id, false);
            }
        }
    }
    return MOSQ_ERR_SUCCESS;
}

EXPORT int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
    for (int i = 0; i < supported_version_count; i++)
        if (supported_versions[i] == 5)
            return 5;
    return -1;
}

static long opt_long(const char *v, long lo, long hi, long def)
{
    char *end;
    long n = strtol(v, &end, 10);
    return (*v && !*end && n >= lo && n <= hi) ? n : def;
}

EXPORT int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
                                 struct mosquitto_opt *opts, int opt_count)
{
    memset(&g, 0, sizeof(g));
    g.id = identifier;
    g.lim.max_payload = 16 * 1024;
    g.lim.rate = 20;
    g.lim.burst = 100;
    g.lim.kick_after = 50;
    g.report_last_ms = now_ms();
    for (int i = 0; i < opt_count; i++) {
        if (strcmp(opts[i].key, "hub_fp") == 0 && strlen(opts[i].value) == 64)
            memcpy(g.hub_fp, opts[i].value, 65);
        else if (strcmp(opts[i].key, "node") == 0)
            snprintf(g.node, sizeof(g.node), "%s", opts[i].value);
        else if (strcmp(opts[i].key, "max_payload") == 0)
            g.lim.max_payload = (uint32_t)opt_long(opts[i].value, 1, 256 * 1024 * 1024, 16384);
        else if (strcmp(opts[i].key, "rate") == 0)
            g.lim.rate = (double)opt_long(opts[i].value, 1, 1000000, 20);
        else if (strcmp(opts[i].key, "burst") == 0)
            g.lim.burst = (double)opt_long(opts[i].value, 1, 1000000, 100);
    }
    g.lim.kick_after = (uint32_t)g.lim.burst / 2 + 10;
    if (!g.hub_fp[0]) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "mamori: plugin_opt_hub_fp missing; refusing to start");
        return MOSQ_ERR_INVAL;
    }
    if (table_init(&g.sync.active, 8192) != MAMORI_OK)
        return MOSQ_ERR_NOMEM;
    *userdata = &g;
    int rc = mosquitto_callback_register(g.id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL);
    if (!rc)
        rc = mosquitto_callback_register(g.id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
    if (!rc)
        rc = mosquitto_callback_register(g.id, MOSQ_EVT_MESSAGE, on_message, NULL, NULL);
    if (!rc)
        rc = mosquitto_callback_register(g.id, MOSQ_EVT_TICK, on_tick, NULL, NULL);
    if (!rc)
        rc = mosquitto_callback_register(g.id, MOSQ_EVT_DISCONNECT, on_disconnect, NULL, NULL);
    mosquitto_log_printf(MOSQ_LOG_NOTICE, "mamori: plugin loaded (fail-closed until synchronised)");
    return rc;
}

EXPORT int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *opts, int opt_count)
{
    (void)userdata;
    (void)opts;
    (void)opt_count;
    mosquitto_callback_unregister(g.id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
    mosquitto_callback_unregister(g.id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
    mosquitto_callback_unregister(g.id, MOSQ_EVT_MESSAGE, on_message, NULL);
    mosquitto_callback_unregister(g.id, MOSQ_EVT_TICK, on_tick, NULL);
    mosquitto_callback_unregister(g.id, MOSQ_EVT_DISCONNECT, on_disconnect, NULL);
    sync_free(&g.sync);
    return MOSQ_ERR_SUCCESS;
}
