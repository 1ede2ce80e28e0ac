/*
 * hub/core/hub.h - mamorid's state: its configuration and what every part
 * of the hub holds at run time. State only: the functions live with the
 * room that owns them (docs/internals/hub.md).
 *
 * Concurrency: libmicrohttpd's threads, the MQTT client thread and the
 * periodic jobs all take hub->lock around any use of the store, the audit
 * log or the in-memory liveness table. Operations named hub_op_* take the
 * lock themselves; everything else expects it held.
 */
#ifndef MAMORI_HUB_CORE_HUB_H
#define MAMORI_HUB_CORE_HUB_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "hub/core/audit.h"
#include "hub/core/bus.h"
#include "hub/core/clock.h"
#include "hub/core/cluster.h"
#include "hub/core/jobs.h"
#include "hub/core/out.h"
#include "hub/store/store.h"

struct crypto_cert;
struct crypto_key;
struct mosquitto;
struct MHD_Daemon;
struct passwd;

#define HUB_PATH_MAX      4096
#define HUB_DATA_SESSIONS 2  /* telemetry; events, logs and results */
#define HUB_NODE_LEN      32 /* a broker node's name: [a-z0-9-], 1-32 */
#define HUB_HOST_LEN      255
#define HUB_NODES_MAX     16 /* broker nodes one hub holds sessions with */

struct hub_config {
    char data_dir[HUB_PATH_MAX];
    char hub_name[HUB_NODE_LEN + 1]; /* --name: this hub among several ([a-z0-9-], 1-32) */
    char store[HUB_PATH_MAX]; /* --store: "" = SQLite at DATA/mamori.db (store.h: store_open) */
    char listen_addr[64];     /* both listeners bind here (loopback default) */
    char broker[1024];        /* --broker HOST:PORT[,...]: broker nodes apart ("": our own) */
    char mqtt_public[HUB_HOST_LEN + 8]; /* --mqtt-public HOST:PORT: what devices dial */
    int api_port;                       /* 0 = ephemeral */
    int mqtt_port;                      /* 0 = ephemeral */
    int heartbeat_s;                    /* expected device heartbeat interval */
    int max_connections;                /* broker connection limit */
    int api_connections;                /* HTTPS API connection limit */
    int api_per_address;                /* HTTPS API connections from one address */
    int max_payload;                    /* bytes, enforced by broker and plugin */
    int msg_rate;                       /* messages per second per device (sustained) */
    int msg_burst;                      /* bucket size */
    int session_ttl_s;                  /* API session lifetime */
    int device_cert_days;
    int cert_renew_days;      /* rotate when the certificate expires within this */
    int cert_max_age_days;    /* rotate certificates older than this (0: never) */
    int rotation_check_s;     /* how often the rotation policy runs */
    int64_t stray_after_s;    /* offline this long: stray (0: never) */
    int64_t owner_idle_s;     /* owner not logged in this long: stray (0: never) */
    int rate_window_s;        /* the rate_spike rule's window (0: off) */
    int challenge_s;          /* a timed signed challenge per online device (0: off) */
    bool rules_off;           /* alert rules not evaluated (--rules off: a measurement baseline) */
    int ingest_gather_ms;     /* a short ingest batch waits this long to fill (0: never) */
    int alert_retention_days; /* resolved alerts, finished deliveries kept (0: forever) */
    int data_retention_days;  /* telemetry and events kept (0: forever) */
    char smtp_url[256];       /* alert mail: smtp:// or smtps:// server ("": no mail) */
    char smtp_from[128];      /* its sender address */
    char syslog[128];         /* alerts to syslog: "local", "udp://IPv4:PORT" or "" */
    char mosquitto_bin[HUB_PATH_MAX];
    char plugin_path[HUB_PATH_MAX];
    /* HTTPS API deadlines and admission (hub/io/api_guard.h): the whole head
     * within api_head_s (also a body's grace), bodies at least
     * api_min_body_rate bytes/s, at most api_unauth_conns connections not
     * yet authenticated (0: 3/4 of api_connections). */
    int api_head_s;
    int api_min_body_rate;
    int api_unauth_conns;
};

/* One broker node and the hub's sessions with it (hub/io/mqtt.c): the
 * control session (registry sync, heartbeats, the plugin's reports,
 * everything sent) and the data sessions, one per kind of stream, for the
 * ingest queue. */
struct hub_node {
    struct hub *h;
    char host[HUB_HOST_LEN + 1]; /* dialled; the broker's certificate must name it */
    int port;
    char name[HUB_NODE_LEN + 1]; /* as its plugin names itself ("" until it says) */
    struct mosquitto *mosq;      /* control session */
    void *tls;                   /* its TLS context (SSL_CTX *) */
    pthread_t thread;
    bool started;
    bool connected;    /* control session up (hub->lock) */
    bool synced;       /* its plugin took over snap_gen (hub->lock) */
    uint64_t snap_gen; /* the last snapshot sent to it (hub->lock) */
    struct hub_data_session {
        struct hub_node *node;
        struct mosquitto *m;
        void *tls; /* SSL_CTX * */
        pthread_t thread;
        bool started, connected;
    } data[HUB_DATA_SESSIONS];
};

struct tm_state;
struct ingest_state;
struct hub_locations;
struct live_entry; /* hub/device/liveness.h */

struct hub {
    struct hub_config cfg;
    pthread_mutex_t lock;
    struct store *store;
    struct audit audit;
    int data_lock_fd; /* DATA/hub.lock: one hub per data directory */

    /* PKI (pki/ under data_dir) */
    struct crypto_cert *issuing_cert;
    struct crypto_key *issuing_key;
    char *ca_chain_pem; /* issuing + root, handed to devices */
    char hub_client_fp[65];
    struct crypto_key *cmd_key; /* command signer */
    char *cmd_chain_pem;        /* its certificate + issuing CA */

    /* the broker: our own child (broker_pid), or nodes apart (cfg.broker) */
    char broker_host[HUB_HOST_LEN + 1]; /* with broker_port: the address devices dial */
    pid_t broker_pid;
    char broker_conf[HUB_PATH_MAX];
    int broker_port;
    int broker_restarts;
    pthread_t broker_thread;

    /* The hub's MQTT sessions (hub/io/mqtt.c), with each broker node: our
     * own broker (one node), or every node given with --broker. */
    struct hub_node nodes[HUB_NODES_MAX];
    size_t n_nodes;
    bool mqtt_started;
    /* its client ids: the control session's, then the data sessions' */
    char mqtt_ids[1 + HUB_DATA_SESSIONS][HUB_NODE_LEN + 24];
    bool mqtt_connected;       /* some node's control session is up (lock) */
    uint64_t mqtt_received;    /* device messages the hub has read (all kinds) */
    uint64_t mqtt_foreign;     /* ... of them another hub's to record (dropped) */
    uint64_t sync_gen;         /* the last snapshot generation sent (lock) */
    struct hub_locations *loc; /* which node holds each device (hub/io/nodes.c) */

    /* API */
    struct MHD_Daemon *mhd;
    struct api_guard *api_guard; /* hub/io/api_guard.c */
    int api_port;
    char *api_key_pem; /* kept for the daemon's lifetime, wiped at stop */
    size_t api_key_len;
    char *api_cert_pem;

    /* liveness (hub/device/liveness.c). live_mu guards the entries'
     * online flag and last heartbeat (taken after lock, never before); the
     * table's shape changes only with both held. */
    pthread_mutex_t live_mu;
    struct live_entry *live;
    size_t live_cap;
    size_t live_count;

    /* telemetry and event streams (hub/device/telemetry.c) */
    struct tm_state *tm;
    struct ingest_state *ingest; /* hub/device/ingest.c */

    /* rules, alerts and their delivery (hub/alerts/alerts.c) */
    struct alerts_state *alerts;
    struct relay_state *relay; /* hub/device/relay.c */
    struct cmd_state *cmd;     /* hub/device/command.c: copies sent again */

    struct hub_bus bus;         /* hub/core/bus.h */
    struct hub_out out;         /* hub/core/out.h, set by hub/io/ */
    struct hub_jobs jobs;       /* hub/core/jobs.h */
    struct hub_cluster cluster; /* hub/core/cluster.h: what this hub does of the cluster's work */

    volatile int stopping;
};

void hub_config_defaults(struct hub_config *c);
/* A hub's or a broker node's name: 1-32 of [a-z0-9-], not starting with '-'. */
bool hub_node_name_ok(const char *s);

#endif
