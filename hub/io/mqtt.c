/*
 * hub/io/mqtt.c - the hub's own MQTT sessions with the broker.
 *
 * The hub is the broker's only privileged client: the plugin recognises its
 * certificate by fingerprint. It holds sessions with every broker node
 * (h->nodes: its own broker, or each node of --broker). Over a node's
 * control session the hub
 *   - sends the plugin the registry's view (snapshot on every (re)connect,
 *     then one message per change) on mamori/v1/ctl/sync, and everything
 *     else it sends devices;
 *   - receives heartbeats, taken at once;
 *   - receives the plugin's own observations (auth failures, kicks) on
 *     mamori/v1/broker/ev.
 * Its data sessions (DATA_SESSIONS) read the rest of what devices send
 * (mamori/v1/d/+/..., whose topic id the plugin has already bound to the
 * certificate that sent it) into the ingest queue, one session per kind of
 * stream.
 *
 * With several nodes, every registry change goes to all of them (a revoked
 * device is kicked wherever it is), while commands and acknowledgements go
 * to the node that holds the device (hub/io/nodes.h), or to all when that
 * is not known.
 */
#include <errno.h>
#include <mosquitto.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/prctl.h>

#include "common/buf.h"
#include "common/crypto.h"
#include "common/fsutil.h"
#include "common/json.h"
#include "common/log.h"
#include "common/proto.h"
#include "hub/device/ingest.h"
#include "hub/device/lifecycle.h"
#include "hub/io/mqtt.h"
#include "hub/io/nodes.h"

/* A snapshot batch stays well under the broker's packet limit (max_payload
 * + 1 KiB): a larger one makes the broker drop the hub's session, and every
 * device stays refused until a snapshot gets through. */
#define SYNC_BATCH_BYTES (8 * 1024)

static void publish_json(struct hub_node *n, json_t *msg)
{
    struct hub *h = n->h;
    char *s = json_dump_compact(msg);
    if (s && strlen(s) > (size_t)h->cfg.max_payload) {
        log_err("sync message of %zu bytes over the payload limit: not sent", strlen(s));
    } else if (s) {
        /* QoS 0: a sync message of a session that was lost must never be
         * delivered after the snapshot of the next session (which holds
         * the registry's newer word); QoS 1 would re-send it after the
         * reconnection. TCP keeps the order within a session, and every
         * session begins with a snapshot, so nothing is missed. */
        int rc =
            mosquitto_publish(n->mosq, NULL, PROTO_TOPIC_CTL_SYNC, (int)strlen(s), s, 0, false);
        if (rc != MOSQ_ERR_SUCCESS)
            log_warn("sync publish failed: %s", mosquitto_strerror(rc));
        free(s);
    }
}

/* The node holding device id, when its control session is up; else NULL
 * (then: every node). */
static struct hub_node *holder(struct hub *h, const char *id)
{
    int i = h->n_nodes == 1 ? 0 : nodes_of(h, id);
    return i >= 0 && h->nodes[i].mosq && h->nodes[i].connected ? &h->nodes[i] : NULL;
}

static void publish_to(struct hub_node *n, const char *topic, const void *p, size_t len, int qos)
{
    int rc = mosquitto_publish(n->mosq, NULL, topic, (int)len, p, qos, false);
    if (rc != MOSQ_ERR_SUCCESS)
        log_warn("publish to %s on %s:%d failed: %s", topic, n->host, n->port,
                 mosquitto_strerror(rc));
}

static void send_device(struct hub *h, const char *id, const char *payload, size_t len, int qos)
{
    char topic[96];
    if (!h->mqtt_connected || len > PROTO_MAX_PAYLOAD ||
        proto_topic(topic, sizeof(topic), id, PROTO_KIND_CMD))
        return;
    struct hub_node *n = holder(h, id);
    if (n) {
        publish_to(n, topic, payload, len, qos);
        return;
    }
    for (size_t i = 0; i < h->n_nodes; i++)
        if (h->nodes[i].connected)
            publish_to(&h->nodes[i], topic, payload, len, qos);
}

/* Notes ("ID SP MESSAGE LF" lines) for the nodes that hold their devices:
 * one message per node; a line whose device's node is not known goes to
 * every node. */
static void send_notes(struct hub *h, const char *lines, size_t len)
{
    if (!h->mqtt_connected)
        return; /* notes are QoS 0: the next one replaces a lost one */
    if (h->n_nodes == 1) {
        if (h->nodes[0].connected)
            publish_to(&h->nodes[0], PROTO_TOPIC_CTL_NOTES, lines, len, 0);
        return;
    }
    struct dbuf per[HUB_NODES_MAX];
    for (size_t i = 0; i < h->n_nodes; i++)
        dbuf_init(&per[i], len); /* at most all of them */
    for (const char *p = lines, *end = lines + len; p < end;) {
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        const char *sp = memchr(p, ' ', (size_t)((lf ? lf : end) - p));
        size_t n = (size_t)((lf ? lf + 1 : end) - p);
        char id[PROTO_DEVICE_ID_LEN + 1] = "";
        if (sp && (size_t)(sp - p) < sizeof(id)) {
            memcpy(id, p, (size_t)(sp - p));
            id[sp - p] = '\0';
        }
        struct hub_node *to = id[0] ? holder(h, id) : NULL;
        for (size_t i = 0; i < h->n_nodes; i++)
            if (h->nodes[i].connected && (!to || to == &h->nodes[i]))
                log_if_err(dbuf_add(&per[i], p, n));
        p += n;
    }
    for (size_t i = 0; i < h->n_nodes; i++) {
        if (per[i].len)
            publish_to(&h->nodes[i], PROTO_TOPIC_CTL_NOTES, per[i].p, per[i].len, 0);
        dbuf_free(&per[i]);
    }
}

static void push_device(struct hub *h, const struct device_rec *d, int access)
{
    if (!h->mqtt_connected)
        return; /* the next snapshot carries it */
    /* gen: the snapshot this change follows (the plugin drops a stale one) */
    json_t *m = json_pack("{s:s,s:s,s:s,s:i,s:I}", "op", "set", "fp", d->cert_fp, "id", d->id,
                          "mode", (int)access, "gen", (json_int_t)h->sync_gen);
    if (m && d->cert_next_fp[0])
        json_object_set_new(m, "fp_next", json_string(d->cert_next_fp));
    /* every node: a revoked or locked device is kicked wherever it is */
    for (size_t i = 0; m && i < h->n_nodes; i++)
        if (h->nodes[i].connected)
            publish_json(&h->nodes[i], m);
    json_decref(m);
}

struct snap {
    struct hub *h;
    struct hub_node *n;
    json_t *batch;
    uint64_t gen;
    int count;
    size_t bytes; /* of the batch's entries, as sent */
    char last_id[24];
};

static void flush_batch(struct snap *s)
{
    if (json_array_size(s->batch) == 0)
        return;
    json_t *m =
        json_pack("{s:s,s:I,s:O}", "op", "batch", "gen", (json_int_t)s->gen, "devs", s->batch);
    if (m) {
        publish_json(s->n, m);
        json_decref(m);
    }
    json_array_clear(s->batch);
    s->bytes = 0;
}

static bool snap_dev(const struct device_rec *d, void *arg)
{
    struct snap *s = arg;
    enum lc_state st;
    snprintf(s->last_id, sizeof(s->last_id), "%s", d->id);
    if (!lc_state_parse(d->state, &st))
        return true;
    enum lc_access a = lc_access(st);
    /* Denied devices are sent too, so the plugin can tell "known but
     * refused" from "unknown" in what it reports back. */
    size_t one = strlen(d->cert_fp) + strlen(d->id) + strlen(d->cert_next_fp) + 24;
    if (s->bytes + one > SYNC_BATCH_BYTES)
        flush_batch(s);
    s->bytes += one;
    json_array_append_new(s->batch,
                          d->cert_next_fp[0]
                              ? json_pack("[s,s,i,s]", d->cert_fp, d->id, (int)a, d->cert_next_fp)
                              : json_pack("[s,s,i]", d->cert_fp, d->id, (int)a));
    s->count++;
    return true;
}

/* Sends node n the full registry view; lock held. */
static void send_snapshot(struct hub_node *n)
{
    struct hub *h = n->h;
    struct snap s = {.h = h, .n = n, .batch = json_array(), .gen = ++h->sync_gen};
    if (!s.batch)
        return;
    n->snap_gen = s.gen;
    json_t *b = json_pack("{s:s,s:I}", "op", "begin", "gen", (json_int_t)s.gen);
    publish_json(n, b);
    json_decref(b);
    for (;;) {
        int before = s.count;
        if (store_device_list(h->store, 0, s.last_id, 1000, snap_dev, &s))
            break;
        if (s.count - before < 1000)
            break;
    }
    flush_batch(&s);
    json_t *e = json_pack("{s:s,s:I,s:i}", "op", "end", "gen", (json_int_t)s.gen, "count", s.count);
    publish_json(n, e);
    json_decref(e);
    json_decref(s.batch);
    /* n->synced turns true when the plugin confirms this generation. */
    log_info("registry snapshot %llu sent to the broker plugin at %s:%d (%d devices)",
             (unsigned long long)s.gen, n->host, n->port, s.count);
}

/* Tells node n which partitions this hub holds: its data sessions are sent
 * only their devices' messages (broker/parts.h). */
static void send_parts(struct hub_node *n)
{
    char hex[17];
    snprintf(hex, sizeof(hex), "%016llx",
             (unsigned long long)__atomic_load_n(&n->h->cluster.owned, __ATOMIC_ACQUIRE));
    publish_to(n, PROTO_TOPIC_CTL_PARTS, hex, 16, 1);
}

/* The partitions this hub holds changed (hub/core/cluster.h). Lock held. */
static void on_owned(struct hub *h)
{
    for (size_t i = 0; i < h->n_nodes; i++)
        if (h->nodes[i].connected)
            send_parts(&h->nodes[i]);
}

static void any_connected(struct hub *h)
{
    h->mqtt_connected = false;
    for (size_t i = 0; i < h->n_nodes; i++)
        h->mqtt_connected = h->mqtt_connected || h->nodes[i].connected;
}

static void on_connect(struct mosquitto *m, void *arg, int rc)
{
    struct hub_node *n = arg;
    struct hub *h = n->h;
    if (rc != 0) {
        log_warn("broker at %s:%d refused hub session: %s", n->host, n->port,
                 mosquitto_connack_string(rc));
        return;
    }
    /* control: heartbeats and the broker's reports, never behind data */
    mosquitto_subscribe(m, NULL, PROTO_TOPIC_DEV_PREFIX "+/hb", 1);
    mosquitto_subscribe(m, NULL, PROTO_TOPIC_BROKER_EV, 1);
    pthread_mutex_lock(&h->lock);
    n->connected = true;
    any_connected(h);
    if (hub_leads(h)) /* the leader keeps the nodes' view (hub/core/cluster.h) */
        send_snapshot(n);
    else /* the node tells which snapshot it holds, and who is connected */
        publish_to(n, PROTO_TOPIC_CTL_HELLO, "{}", 2, 1);
    if (h->cluster.shared)
        send_parts(n);
    pthread_mutex_unlock(&h->lock);
}

static void on_disconnect(struct mosquitto *m, void *arg, int rc)
{
    (void)m;
    struct hub_node *n = arg;
    struct hub *h = n->h;
    pthread_mutex_lock(&h->lock);
    n->connected = false;
    n->synced = false;
    any_connected(h);
    pthread_mutex_unlock(&h->lock);
    if (!h->stopping)
        log_warn("hub session to the broker at %s:%d lost (%d); reconnecting", n->host, n->port,
                 rc);
}

bool mqtt_synced(struct hub *h)
{
    bool all = h->n_nodes > 0;
    for (size_t i = 0; i < h->n_nodes; i++)
        all = all && h->nodes[i].synced;
    return all;
}

void mqtt_unsync(struct hub *h)
{
    for (size_t i = 0; i < h->n_nodes; i++)
        h->nodes[i].synced = false;
}

/* T07-L2d, T10-L2a: refused connections (unknown or revoked certificates,
 * client ids not the certificate's own), ACL violations and floods are
 * recorded; the plugin's report types, by severity (others: info). */
static const struct {
    const char *type, *severity;
} REPORT_SEVERITY[] = {
    {"client_id_mismatch", "alert"}, {"duplicate_connection", "alert"}, {"auth_fail", "warning"},
    {"acl_deny", "warning"},         {"rate_kick", "warning"},
};

static const char *report_severity(const char *type)
{
    for (size_t i = 0; i < sizeof(REPORT_SEVERITY) / sizeof(REPORT_SEVERITY[0]); i++)
        if (strcmp(type, REPORT_SEVERITY[i].type) == 0)
            return REPORT_SEVERITY[i].severity;
    return "info";
}

/* "synced": node n's plugin took over a snapshot; lock held. */
static void node_synced(struct hub_node *n, json_t *ev)
{
    uint64_t gen = 0;
    const char *name = NULL;
    if (json_get_str(ev, "node", HUB_NODE_LEN, &name) && name[0])
        snprintf(n->name, sizeof(n->name), "%s", name);
    /* another hub's snapshot counts as well when this one does not lead */
    if (json_get_u64(ev, "gen", &gen) && (gen == n->snap_gen || !hub_leads(n->h)) && n->connected) {
        n->synced = true;
        log_info("broker plugin %s at %s:%d took over registry snapshot %llu",
                 n->name[0] ? n->name : "-", n->host, n->port, (unsigned long long)gen);
    }
}

/* "here": the devices connected to node n when it took over a snapshot. */
static void node_here(struct hub_node *n, json_t *ev)
{
    json_t *devs = json_object_get(ev, "devices"), *v;
    size_t i;
    json_array_foreach(devs, i, v)
    {
        const char *id = json_string_value(v);
        if (id && proto_device_id_valid(id, strlen(id)))
            nodes_here(n->h, id, (int)(n - n->h->nodes));
    }
}

/* "presence": a device connected to node n, or left it. */
static void node_presence(struct hub_node *n, json_t *ev)
{
    const char *dev = NULL;
    json_t *on = json_object_get(ev, "on");
    if (!json_get_str(ev, "device", PROTO_DEVICE_ID_LEN, &dev) || !json_is_boolean(on))
        return;
    if (json_is_true(on))
        nodes_here(n->h, dev, (int)(n - n->h->nodes));
    else
        nodes_gone(n->h, dev, (int)(n - n->h->nodes));
}

/* The plugin's reports about itself, not stored as events: by type, and
 * whether the handler needs the hub lock. */
static const struct {
    const char *type;
    void (*fn)(struct hub_node *n, json_t *ev);
    bool locked;
} NODE_REPORTS[] = {
    {"synced", node_synced, true},
    {"presence", node_presence, false},
    {"here", node_here, false},
};

static void on_broker_event(struct hub_node *n, const struct mosquitto_message *msg)
{
    struct hub *h = n->h;
    json_t *ev = NULL;
    /* a "here" list holds up to 400 device ids */
    if (json_parse_untrusted(msg->payload, (size_t)msg->payloadlen, 32 * 1024, &ev, NULL, 0))
        return;
    const char *type = "unknown", *dev = NULL;
    (void)json_get_str(ev, "type", 32, &type);
    for (size_t i = 0; i < sizeof(NODE_REPORTS) / sizeof(NODE_REPORTS[0]); i++) {
        if (strcmp(type, NODE_REPORTS[i].type) != 0)
            continue;
        if (NODE_REPORTS[i].locked)
            pthread_mutex_lock(&h->lock);
        NODE_REPORTS[i].fn(n, ev);
        if (NODE_REPORTS[i].locked)
            pthread_mutex_unlock(&h->lock);
        json_decref(ev);
        return;
    }
    (void)json_get_str(ev, "device", PROTO_DEVICE_ID_LEN, &dev);
    const char *sev = report_severity(type);
    if (dev && !proto_device_id_valid(dev, strlen(dev)))
        dev = NULL;
    /* every hub hears every node: one of them records it */
    if (dev ? !hub_owns(h, dev) : !hub_leads(h)) {
        json_decref(ev);
        return;
    }
    char *detail = json_dump_compact(ev);
    pthread_mutex_lock(&h->lock);
    char kind[48];
    snprintf(kind, sizeof(kind), "broker_%s", type);
    hub_event(h, dev, kind, sev, "%s", detail ? detail : "{}");
    pthread_mutex_unlock(&h->lock);
    free(detail);
    json_decref(ev);
}

/* Device messages by kind (the topic's last level): heartbeats are taken
 * at once, on the control session; the rest goes to the ingest queue,
 * recorded and acknowledged in batches (hub/device/ingest.h). */
static void on_device_message(struct hub_node *n, const struct mosquitto_message *msg)
{
    struct hub *h = n->h;
    char id[PROTO_DEVICE_ID_LEN + 1];
    enum proto_kind kind;
    /* A retained copy is stale by definition: a broker node outlives the
     * hub and would hand it to every new session of the hub. */
    if (msg->retain || proto_topic_parse(msg->topic, strlen(msg->topic), id, &kind))
        return;
    __atomic_add_fetch(&h->mqtt_received, 1, __ATOMIC_RELAXED);
    if (kind == PROTO_KIND_HB && h->n_nodes > 1)
        nodes_here(h, id, (int)(n - h->nodes)); /* it is where its heartbeat comes from */
    if (kind == PROTO_KIND_HB)
        ingest_heartbeat(h, id, msg->payload, (size_t)msg->payloadlen);
    else if (kind != PROTO_KIND_CMD && !hub_owns(h, id)) /* another hub's to record */
        __atomic_add_fetch(&h->mqtt_foreign, 1, __ATOMIC_RELAXED);
    else if (kind != PROTO_KIND_CMD)
        (void)ingest_submit(h, id, kind, msg->payload, (size_t)msg->payloadlen);
}

static void on_message(struct mosquitto *m, void *arg, const struct mosquitto_message *msg)
{
    (void)m;
    struct hub_node *n = arg;
    if (strcmp(msg->topic, PROTO_TOPIC_BROKER_EV) == 0)
        on_broker_event(n, msg);
    else
        on_device_message(n, msg);
}

/* The data sessions. Each stream of a device (telemetry, events, logs)
 * is read by exactly one session of the node the device is on (a device
 * that moves to another node may have a late message come after its
 * successor: the stream's checks treat it as a gap filled), so it reaches the ingest queue in the
 * order the device sent it: the stream's checks (sequence, timestamps,
 * rate limits) rely on that order. MQTT v5 shared subscriptions would add
 * sessions to one stream, but the broker deals their messages out in turn,
 * whatever device sent them (docs/internals/hub.md). So a flood of
 * telemetry has its own session and thread, and never delays events,
 * logs or command results.
 *
 * The streams at QoS 0: each message stays in its device's outbox until
 * the hub acknowledges it after the commit, so one the broker drops (the
 * hub's queue full) comes again, as it would at QoS 1 (a full queue drops
 * those too). QoS 1 added a PUBACK per message in each direction and the
 * broker's in-flight bookkeeping, for nothing the outbox does not already
 * give. Command results leave no outbox: QoS 1. */
static const struct {
    const char *suffix; /* of the client id (client_ids) */
    const char *thread; /* its name in top -H, ps -L */
    struct {
        const char *kind;
        int qos;
    } topics[3];
} DATA_SESSIONS[HUB_DATA_SESSIONS] = {
    {"-data", "mamori-mqdata", {{"tm", 0}}},
    {"-events", "mamori-mqevent", {{"ev", 0}, {"log", 0}, {"res", 1}}},
};

/* The hub's client ids: PROTO_HUB_CLIENT_ID, then "-<name>" unless the
 * hub has the default name (one hub: "mamori-hub"), then the session's
 * suffix. Each hub of several needs its own: the broker lets one session
 * per client id live. */
static void client_ids(struct hub *h)
{
    const char *name = strcmp(h->cfg.hub_name, "hub") == 0 ? "" : h->cfg.hub_name;
    for (size_t i = 0; i <= HUB_DATA_SESSIONS; i++)
        snprintf(h->mqtt_ids[i], sizeof(h->mqtt_ids[i]), "%s%s%s%s", PROTO_HUB_CLIENT_ID,
                 name[0] ? "-" : "", name, i ? DATA_SESSIONS[i - 1].suffix : "");
}

static struct hub_data_session *data_session_of(struct hub_node *n, const struct mosquitto *m,
                                                size_t *index)
{
    for (size_t i = 0; i < HUB_DATA_SESSIONS; i++)
        if (n->data[i].m == m) {
            *index = i;
            return &n->data[i];
        }
    return NULL;
}

static void on_data_connect(struct mosquitto *m, void *arg, int rc)
{
    struct hub_node *n = arg;
    size_t i;
    struct hub_data_session *ds = data_session_of(n, m, &i);
    if (!ds)
        return;
    if (rc != 0) {
        log_warn("broker at %s:%d refused hub session %s: %s", n->host, n->port,
                 n->h->mqtt_ids[1 + i], mosquitto_connack_string(rc));
        return;
    }
    size_t ntopics = sizeof(DATA_SESSIONS[i].topics) / sizeof(DATA_SESSIONS[i].topics[0]);
    for (size_t t = 0; t < ntopics && DATA_SESSIONS[i].topics[t].kind; t++) {
        char topic[64];
        snprintf(topic, sizeof(topic), "%s+/%s", PROTO_TOPIC_DEV_PREFIX,
                 DATA_SESSIONS[i].topics[t].kind);
        mosquitto_subscribe(m, NULL, topic, DATA_SESSIONS[i].topics[t].qos);
    }
    __atomic_store_n(&ds->connected, true, __ATOMIC_RELAXED);
}

static void on_data_disconnect(struct mosquitto *m, void *arg, int rc)
{
    struct hub_node *n = arg;
    size_t i;
    struct hub_data_session *ds = data_session_of(n, m, &i);
    if (!ds)
        return;
    __atomic_store_n(&ds->connected, false, __ATOMIC_RELAXED);
    if (!n->h->stopping)
        log_warn("hub session %s to the broker at %s:%d lost (%d); reconnecting",
                 n->h->mqtt_ids[1 + i], n->host, n->port, rc);
}

bool mqtt_data_connected(struct hub *h, size_t i, const char **client_id)
{
    *client_id = h->mqtt_ids[1 + i];
    bool all = h->n_nodes > 0;
    for (size_t k = 0; k < h->n_nodes; k++)
        all = all && __atomic_load_n(&h->nodes[k].data[i].connected, __ATOMIC_RELAXED);
    return all;
}

static void on_log(struct mosquitto *m, void *arg, int level, const char *str)
{
    (void)m;
    (void)arg;
    if (level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING))
        log_warn("hub mqtt: %s", str);
}

/* The data session's reading loop, in place of libmosquitto's: that one
 * waits on the socket before every TLS record, then reads the record's
 * header and its body (a poll and two reads per device message). Its
 * connection reads ahead (crypto_tls_ctx_read_ahead), so one read takes
 * every record waiting, and this loop reads all that OpenSSL holds before
 * it waits on the socket again. Returns why the connection ended. */
static int data_loop(struct hub *h, struct mosquitto *m)
{
    int rc = MOSQ_ERR_SUCCESS;
    bool blocked = false; /* the last read would block: the rest of a record is on its way */
    while (!rc) {
        int fd = mosquitto_socket(m);
        if (fd < 0)
            return MOSQ_ERR_NO_CONN;
        bool readable = !blocked && crypto_tls_pending(mosquitto_ssl_get(m));
        if (!readable) {
            struct pollfd p = {.fd = fd,
                               .events = POLLIN | (mosquitto_want_write(m) ? POLLOUT : 0)};
            int n = poll(&p, 1, 200);
            if (n < 0 && errno != EINTR)
                return MOSQ_ERR_ERRNO;
            readable = n > 0 && (p.revents & (POLLIN | POLLERR | POLLHUP));
        }
        while (!rc && readable) {
            errno = 0; /* libmosquitto tells "would block" only by errno */
            rc = mosquitto_loop_read(m, 1);
            blocked = errno == EAGAIN || errno == EWOULDBLOCK;
            readable = !blocked && crypto_tls_pending(mosquitto_ssl_get(m));
        }
        if (!rc && mosquitto_want_write(m))
            rc = mosquitto_loop_write(m, 1);
        if (!rc)
            rc = mosquitto_loop_misc(m); /* keepalive */
        if (h->stopping && !rc)
            rc = mosquitto_disconnect(m) ? MOSQ_ERR_NO_CONN : mosquitto_loop_write(m, 1);
    }
    return rc;
}

/* Owns a session: libmosquitto's own loop gives up for good on some
 * errors (a TLS failure while the broker restarts, say), so we retry here
 * with backoff for as long as the hub runs. */
static void run_session(struct hub_node *n, struct mosquitto *m,
                        int (*loop)(struct hub *, struct mosquitto *))
{
    struct hub *h = n->h;
    unsigned backoff_ms = 100;
    while (!h->stopping) {
        int rc = mosquitto_connect(m, n->host, n->port, 30);
        if (rc == MOSQ_ERR_SUCCESS) {
            backoff_ms = 100;
            rc = loop(h, m);
        }
        if (h->stopping)
            break;
        log_debug("hub mqtt: %s; retry in %u ms", mosquitto_strerror(rc), backoff_ms);
        hub_backoff(h, &backoff_ms, 5000);
    }
}

static int control_loop(struct hub *h, struct mosquitto *m)
{
    (void)h;
    return mosquitto_loop_forever(m, 200, 1);
}

static void *control_thread(void *arg)
{
    (void)prctl(PR_SET_NAME, "mamori-mqtt", 0, 0, 0); /* top -H, ps -L */
    struct hub_node *n = arg;
    run_session(n, n->mosq, control_loop);
    return NULL;
}

static void *data_thread(void *arg)
{
    struct hub_data_session *ds = arg;
    (void)prctl(PR_SET_NAME, DATA_SESSIONS[ds - ds->node->data].thread, 0, 0, 0);
    run_session(ds->node, ds->m, data_loop);
    return NULL;
}

/* QoS 1 messages the broker may have in flight to one hub session. */
#define HUB_RECEIVE_MAXIMUM 1000

/* A session with the hub's certificate: TLS 1.2+ with the broker checked
 * against the platform CA and the node's address, MQTT v5, usable from any
 * thread (API threads publish while the session's thread reads). *tls gets
 * its TLS context, freed by the caller after the session. */
static struct mosquitto *new_session(struct hub_node *n, const char *client_id,
                                     void (*on_conn)(struct mosquitto *, void *, int),
                                     void (*on_disc)(struct mosquitto *, void *, int),
                                     bool read_ahead, void **tls)
{
    struct hub *h = n->h;
    char ca[HUB_PATH_MAX], crt[HUB_PATH_MAX], key[HUB_PATH_MAX];
    if (fs_path(ca, sizeof(ca), h->cfg.data_dir, "pki/root.crt") ||
        fs_path(crt, sizeof(crt), h->cfg.data_dir, "pki/hub-client.crt") ||
        fs_path(key, sizeof(key), h->cfg.data_dir, "pki/hub-client.key") ||
        crypto_tls_client_ctx(CRYPTO_KEYSTORE_FILE, ca, crt, key, n->host, tls))
        return NULL;
    if (read_ahead)
        crypto_tls_ctx_read_ahead(*tls);
    struct mosquitto *m = mosquitto_new(client_id, true, n);
    if (!m)
        return NULL;
    /* MQTT v5 for its receive maximum: the broker keeps at most
     * max_inflight_messages (20) unacknowledged QoS 1 messages in flight to
     * a v3.1.1 session, which capped a session at 20 per round trip. */
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_int_option(m, MOSQ_OPT_RECEIVE_MAXIMUM, HUB_RECEIVE_MAXIMUM);
    /* Without this, libmosquitto writes a publish straight from the
     * calling thread, and two threads would use one OpenSSL connection. */
    mosquitto_threaded_set(m, true);
    mosquitto_connect_callback_set(m, on_conn);
    mosquitto_disconnect_callback_set(m, on_disc);
    mosquitto_message_callback_set(m, on_message);
    mosquitto_log_callback_set(m, on_log);
    mosquitto_reconnect_delay_set(m, 1, 5, true);
    mosquitto_max_inflight_messages_set(m, 0);
    if (mosquitto_void_option(m, MOSQ_OPT_SSL_CTX, *tls) != MOSQ_ERR_SUCCESS ||
        mosquitto_int_option(m, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0) != MOSQ_ERR_SUCCESS) {
        mosquitto_destroy(m);
        return NULL;
    }
    return m;
}

/* Node n's sessions and their threads. */
static enum mamori_err node_start(struct hub_node *n)
{
    n->mosq = new_session(n, n->h->mqtt_ids[0], on_connect, on_disconnect, false, &n->tls);
    if (!n->mosq)
        return MAMORI_ERR_TLS;
    for (size_t i = 0; i < HUB_DATA_SESSIONS; i++) {
        n->data[i].node = n;
        n->data[i].m = new_session(n, n->h->mqtt_ids[1 + i], on_data_connect, on_data_disconnect,
                                   true, &n->data[i].tls);
        if (!n->data[i].m)
            return MAMORI_ERR_TLS;
    }
    if (pthread_create(&n->thread, NULL, control_thread, n))
        return MAMORI_ERR_INTERNAL;
    n->started = true;
    for (size_t i = 0; i < HUB_DATA_SESSIONS; i++) {
        if (pthread_create(&n->data[i].thread, NULL, data_thread, &n->data[i]))
            return MAMORI_ERR_INTERNAL;
        n->data[i].started = true;
    }
    return MAMORI_OK;
}

static void node_stop(struct hub_node *n)
{
    if (n->mosq)
        mosquitto_disconnect(n->mosq);
    if (n->started)
        pthread_join(n->thread, NULL);
    n->started = false;
    for (size_t i = 0; i < HUB_DATA_SESSIONS; i++) {
        struct hub_data_session *ds = &n->data[i];
        if (ds->started)
            pthread_join(ds->thread, NULL);
        ds->started = false;
        if (ds->m)
            mosquitto_destroy(ds->m);
        ds->m = NULL;
        crypto_tls_ctx_free(ds->tls);
        ds->tls = NULL;
    }
    if (n->mosq)
        mosquitto_destroy(n->mosq);
    n->mosq = NULL;
    crypto_tls_ctx_free(n->tls);
    n->tls = NULL;
}

/* The API shows where a device is connected. Lock held. */
static void node_view(struct hub *h, const struct device_rec *d, json_t *out)
{
    int i = nodes_of(h, d->id);
    /* the node's name, never its address (owners see this view) */
    const char *name = i >= 0 && h->nodes[i].name[0] ? h->nodes[i].name : NULL;
    json_object_set_new(out, "node", name ? json_string(name) : json_null());
}

/* This hub took the lead (hub/core/cluster.h): it sends every node its
 * view at once (what the others told before it listened is in it). Lock
 * held. */
static void on_leader(struct hub *h)
{
    uint64_t now = (uint64_t)hub_now_ms();
    if (h->sync_gen < now)
        h->sync_gen = now; /* above its predecessor's generations */
    for (size_t i = 0; i < h->n_nodes; i++)
        if (h->nodes[i].connected)
            send_snapshot(&h->nodes[i]);
}

enum mamori_err mqtt_start(struct hub *h)
{
    client_ids(h);
    h->out.send_device = send_device;
    h->out.send_notes = send_notes;
    h->out.push_device = push_device;
    /* Snapshot generations grow across the hub's restarts (milliseconds
     * of the wall clock at start): a broker node outlives the hub, and must
     * take a restarted hub's changes and drop what its predecessor's lost
     * session still delivers late (broker/table.c). */
    h->sync_gen = (uint64_t)hub_now_ms();
    pthread_mutex_lock(&h->lock);
    h->cluster.on_leader = on_leader;
    h->cluster.on_owned = on_owned;
    pthread_mutex_unlock(&h->lock);
    enum mamori_err rc = nodes_init(h);
    if (!rc && h->n_nodes > 1)
        rc = hub_on_device_view(h, node_view);
    h->mqtt_started = true;
    for (size_t i = 0; !rc && i < h->n_nodes; i++) {
        h->nodes[i].h = h;
        rc = node_start(&h->nodes[i]);
    }
    return rc;
}

void mqtt_stop(struct hub *h)
{
    h->stopping = 1;
    for (size_t i = 0; h->mqtt_started && i < h->n_nodes; i++)
        node_stop(&h->nodes[i]);
    h->mqtt_started = false;
    nodes_free(h);
}
