/* hub/io/health.c - see health.h. */
#include "hub/io/health.h"
#include "hub/device/ingest.h"
#include "hub/device/telemetry.h"
#include "hub/io/mqtt.h"
#include "hub/io/nodes.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/proto.h"

enum mamori_err hub_op_health(struct hub *h, json_t **out)
{
    pthread_mutex_lock(&h->lock);
    *out = json_pack("{s:s,s:b,s:b,s:b,s:i,s:I,s:i,s:I}", "status", "ok", "broker_running",
                     h->cfg.broker[0] ? h->mqtt_connected : h->broker_pid > 0, "broker_session",
                     h->mqtt_connected, "plugin_synced", mqtt_synced(h), "broker_restarts",
                     h->broker_restarts, "devices", (json_int_t)store_device_count(h->store),
                     "mqtt_port", h->broker_port, "mqtt_received",
                     (json_int_t)__atomic_load_n(&h->mqtt_received, __ATOMIC_RELAXED));
    json_t *nodes = json_array();
    for (size_t i = 0; i < h->n_nodes; i++) {
        const struct hub_node *nd = &h->nodes[i];
        /* names, not addresses: the health check answers anyone */
        json_array_append_new(nodes, json_pack("{s:s,s:b,s:b,s:I}", "name", nd->name, "session",
                                               nd->connected, "synced", nd->synced, "devices",
                                               (json_int_t)nodes_count(h, (int)i)));
    }
    if (*out)
        json_object_set_new(*out, "nodes", nodes);
    else
        json_decref(nodes);
    /* this hub's part of the cluster's work (hub/core/cluster.h) */
    const struct hub_cluster *c = &h->cluster;
    const struct hub_job *sweep = hub_job_named(h, "stray_sweep");
    if (*out)
        json_object_set_new(
            *out, "hub",
            json_pack("{s:s,s:b,s:i,s:i,s:I,s:I,s:I,s:I,s:I,s:I}", "name", h->cfg.hub_name,
                      "leader", hub_leads(h), "partitions",
                      __builtin_popcountll(__atomic_load_n(&c->owned, __ATOMIC_RELAXED)),
                      "partitions_of", HUB_PARTITIONS, "hubs", (json_int_t)c->hubs, "foreign",
                      (json_int_t)__atomic_load_n(&h->mqtt_foreign, __ATOMIC_RELAXED), "gained",
                      (json_int_t)c->gained, "given", (json_int_t)c->given, "lost",
                      (json_int_t)c->lost, "leader_jobs_run",
                      (json_int_t)(sweep ? sweep->runs : 0)));
    struct tm_counts n;
    tm_stats(h, &n);
    if (*out)
        json_object_set_new(*out, "streams",
                            json_pack("{s:I,s:I,s:I,s:I}", "accepted", (json_int_t)n.accepted,
                                      "duplicates", (json_int_t)n.duplicates, "rejected",
                                      (json_int_t)n.rejected, "before_owner",
                                      (json_int_t)n.before_owner));
    pthread_mutex_unlock(&h->lock);
    /* device messages recorded in batches (hub/device/ingest.h) */
    struct ingest_stats in;
    ingest_stats(h, &in);
    if (*out) {
        json_t *sessions = json_object();
        bool all = true;
        for (size_t i = 0; i < HUB_DATA_SESSIONS; i++) {
            const char *id;
            bool up = mqtt_data_connected(h, i, &id);
            all = all && up;
            json_object_set_new(sessions, id, json_boolean(up));
        }
        json_object_set_new(*out, "data_session", json_boolean(all));
        json_object_set_new(*out, "data_sessions", sessions);
        json_object_set_new(*out, "ingest",
                            json_pack("{s:I,s:I,s:I,s:I,s:I}", "batches", (json_int_t)in.batches,
                                      "messages", (json_int_t)in.messages, "largest_batch",
                                      (json_int_t)in.largest, "failed_batches",
                                      (json_int_t)in.failed, "queued", (json_int_t)in.queued));
    }
    return MAMORI_OK;
}
