/*
 * hub/hub.h - mamorid's core: configuration, shared state and the domain
 * operations the API and the MQTT side call.
 *
 * Concurrency: libmicrohttpd's threads, the MQTT client thread and the
 * liveness thread all take hub->lock around any use of the store, the audit
 * log or the in-memory liveness table. Operations named hub_op_* take the
 * lock themselves; everything else expects it held.
 */
#ifndef MAMORI_HUB_HUB_H
#define MAMORI_HUB_HUB_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/cmd.h"
#include "hub/audit.h"
#include "hub/lifecycle.h"
#include "hub/store/store.h"

struct crypto_cert;
struct crypto_key;
struct mosquitto;
struct MHD_Daemon;
struct passwd;

#define HUB_PATH_MAX 4096

struct hub_config {
    char data_dir[HUB_PATH_MAX];
    char listen_addr[64]; /* both listeners bind here (loopback default) */
    int api_port;         /* 0 = ephemeral */
    int mqtt_port;        /* 0 = ephemeral */
    int heartbeat_s;      /* expected device heartbeat interval */
    int max_connections;  /* broker connection limit */
    int api_connections;  /* HTTPS API connection limit */
    int api_per_address;  /* HTTPS API connections from one address */
    int max_payload;      /* bytes, enforced by broker and plugin */
    int msg_rate;         /* messages per second per device (sustained) */
    int msg_burst;        /* bucket size */
    int session_ttl_s;    /* API session lifetime */
    int device_cert_days;
    int cert_renew_days;      /* rotate when the certificate expires within this */
    int cert_max_age_days;    /* rotate certificates older than this (0: never) */
    int rotation_check_s;     /* how often the rotation policy runs */
    int64_t stray_after_s;    /* offline this long: stray (0: never) */
    int64_t owner_idle_s;     /* owner not logged in this long: stray (0: never) */
    int rate_window_s;        /* the rate_spike rule's window (0: off) */
    int challenge_s;          /* a timed signed challenge per online device (0: off) */
    bool rules_off;           /* alert rules not evaluated (--rules off: a measurement baseline) */
    int alert_retention_days; /* resolved alerts, finished deliveries kept (0: forever) */
    int data_retention_days;  /* telemetry and events kept (0: forever) */
    char smtp_url[256];       /* alert mail: smtp:// or smtps:// server ("": no mail) */
    char smtp_from[128];      /* its sender address */
    char syslog[128];         /* alerts to syslog: "local", "udp://IPv4:PORT" or "" */
    char mosquitto_bin[HUB_PATH_MAX];
    char plugin_path[HUB_PATH_MAX];
    /* HTTPS API deadlines and admission (hub/api_guard.h): the whole head
     * within api_head_s (also a body's grace), bodies at least
     * api_min_body_rate bytes/s, at most api_unauth_conns connections not
     * yet authenticated (0: 3/4 of api_connections). */
    int api_head_s;
    int api_min_body_rate;
    int api_unauth_conns;
};

void hub_config_defaults(struct hub_config *c);

/* Liveness of one device, kept in memory (heartbeats are not written to
 * the database one by one; only online/offline transitions are). */
struct tm_dev;
struct tm_state;

struct live_entry {
    char id[24];
    int64_t last_seen_ms;
    int interval_s;
    bool online;
    bool used;
    int64_t malformed_reported_ms; /* last "malformed_message" event */
    uint32_t malformed_suppressed; /* since then */
    struct tm_dev *tm;             /* stream state (hub/telemetry.c), lazily */
};

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

    /* broker supervision */
    pid_t broker_pid;
    char broker_conf[HUB_PATH_MAX];
    int broker_port;
    int broker_restarts;
    pthread_t broker_thread;

    /* hub's own MQTT session */
    struct mosquitto *mosq;
    pthread_t mqtt_thread;
    bool mqtt_connected;
    uint64_t mqtt_received; /* device messages the hub has read (all kinds) */
    bool plugin_synced;     /* last snapshot fully sent */
    uint64_t sync_gen;

    /* API */
    struct MHD_Daemon *mhd;
    struct api_guard *api_guard; /* hub/api_guard.c */
    int api_port;
    char *api_key_pem; /* kept for the daemon's lifetime, wiped at stop */
    size_t api_key_len;
    char *api_cert_pem;

    /* liveness */
    struct live_entry *live;
    size_t live_cap;
    size_t live_count;
    pthread_t live_thread;

    /* telemetry and event streams (hub/telemetry.c) */
    struct tm_state *tm;

    /* rules, alerts and their delivery (hub/alerts.c) */
    struct alerts_state *alerts;
    struct relay_state *relay; /* hub/relay.c */

    volatile int stopping;
};

/* Time helpers (seconds / milliseconds since the epoch). */
int64_t hub_now(void);
int64_t hub_now_ms(void);
/* Sleeps ms milliseconds, waking early when the hub is stopping. */
void hub_sleep(struct hub *h, unsigned ms);
/* Sleeps *backoff_ms (interruptible) and doubles it up to max_ms. */
void hub_backoff(struct hub *h, unsigned *backoff_ms, unsigned max_ms);

/* Lifecycle of the daemon. hub_init creates DATA on first start (PKI,
 * database, bootstrap token, broker config); hub_start launches the broker,
 * the MQTT session, the API and the liveness thread; hub_stop undoes it. */
enum mamori_err hub_init(struct hub *h, const struct hub_config *cfg) MAMORI_MUST_CHECK;
enum mamori_err hub_start(struct hub *h) MAMORI_MUST_CHECK;
void hub_stop(struct hub *h);
void hub_free(struct hub *h);

/* PKI (hub/ca.c). */
enum mamori_err ca_init(struct hub *h) MAMORI_MUST_CHECK;
enum mamori_err ca_issue_device(struct hub *h, const char *csr_pem, size_t csr_len,
                                const char *device_id, const char *model,
                                char **cert_pem) MAMORI_MUST_CHECK;
/* Rewrites pki/crl.pem: the issuing CA's CRL of revoked and decommissioned
 * devices' certificates, for other relying parties (GET /pki/crl). Lock held. */
enum mamori_err ca_crl_write(struct hub *h) MAMORI_MUST_CHECK;
/* Rewrites pki/device-trust.pem (the broker's cafile) from the store. */
enum mamori_err ca_write_device_trust(struct hub *h) MAMORI_MUST_CHECK;

/* Broker (hub/broker.c). */
enum mamori_err broker_write_config(struct hub *h) MAMORI_MUST_CHECK;
enum mamori_err broker_start(struct hub *h) MAMORI_MUST_CHECK;
void broker_stop(struct hub *h);
/* The user the broker drops to (NULL when it runs as we do). */
const struct passwd *broker_user(void);
/* Restarts the broker so it reloads its trust store. */
void broker_reload(struct hub *h);

/* Hub MQTT session (hub/mqtt.c). */
enum mamori_err mqtt_start(struct hub *h) MAMORI_MUST_CHECK;
void mqtt_stop(struct hub *h);
/* Publishes payload on the device's cmd topic (QoS 1). Lock held or not. */
void mqtt_send_device(struct hub *h, const char *id, const char *payload, size_t len);
/* Pushes one device's access to the plugin (kicks it when denied). Lock held. */
/* Sends the device's registry entry (certificate, next certificate during
 * a rotation, access) to the broker plugin. */
void mqtt_push_device(struct hub *h, const struct device_rec *d, enum lc_access access);

/* API (hub/api.c). */
enum mamori_err api_start(struct hub *h) MAMORI_MUST_CHECK;
void api_stop(struct hub *h);

/* Liveness (hub/liveness.c). Lock held for the first two. */
void live_heartbeat(struct hub *h, const char *id, int64_t now_ms);
void live_forget(struct hub *h, const char *id);
/* Records a malformed message from a device, at most one event per device
 * per minute (with the count of those left out), so a device cannot turn
 * garbage into a stream of database writes. Lock held. */
void live_malformed(struct hub *h, const char *id, int64_t now_ms);
/* Marks offline every device silent for longer than its allowance; returns
 * how many were marked. Takes the lock itself. */
int live_sweep(struct hub *h, int64_t now_ms);
enum mamori_err live_start(struct hub *h) MAMORI_MUST_CHECK;
/* The liveness entry of a registered device (found or added), NULL when the
 * id is not registered. Lock held; the pointer is valid until the table
 * grows. */
struct live_entry *live_entry_of(struct hub *h, const char *id);

/* Remote commands (hub/command.c); lock held. */
struct command_rec;
/* Signs and publishes a stored command. */
void cmd_publish(struct hub *h, const struct command_rec *c);
/* Sends again every pending, unexpired command of a device (it came back). */
void cmd_resend_pending(struct hub *h, const char *id);
/* A result from the device (res topic). */
void cmd_result(struct hub *h, const char *id, json_t *body);

/* Device data streams (hub/telemetry.c); all with the lock held. */
enum stream_kind { STREAM_TM = 0, STREAM_EV = 1, STREAM_LOG = 2, STREAM_N };
#define TM_SKEW_MS    (5 * 60 * 1000LL)        /* device clock ahead of ours */
#define TM_MAX_AGE_MS (7 * 24 * 3600 * 1000LL) /* store-and-forward window */
#define TM_EV_WINDOW  1024                     /* resends recognised (events) */
struct proto_envelope;
void tm_ingest(struct hub *h, const char *id, enum stream_kind s, const struct proto_envelope *env,
               json_t *body, const void *payload, size_t len);
/* Commits buffered rows with the sequence state, then acknowledges. */
void tm_flush(struct hub *h);
void tm_schema_changed(struct hub *h, const char *model);
enum mamori_err tm_query(struct hub *h, const char *id, int64_t from_ts, int64_t to_ts,
                         int64_t after, int limit, json_t **out) MAMORI_MUST_CHECK;
struct tm_counts {
    uint64_t accepted, duplicates, rejected;
    uint64_t before_owner; /* sent before the device changed hands: not recorded */
};
void tm_stats(struct hub *h, struct tm_counts *out);
/* The device has a new owner from since_ms on (a transfer): what it sent
 * before belongs to the previous owner and never enters the records the
 * new owner sees. Call tm_flush first, in the same hold of the lock. */
void tm_owner_changed(struct hub *h, const char *id, int64_t since_ms);
void tm_free(struct hub *h);
/* Runs check with the device's current, next and previous certificates in
 * turn until one answers other than MAMORI_ERR_VERIFY: across a key
 * rotation the device signs with either key. */
struct crypto_cert;
enum mamori_err hub_device_certs_try(struct hub *h, const char *id,
                                     enum mamori_err (*check)(const struct crypto_cert *, void *),
                                     void *arg) MAMORI_MUST_CHECK;
/* A device's signed security status (hub/devstatus.c, common/eat.h). */
void status_ingest(struct hub *h, const char *id, const json_t *body);

/* Domain operations (hub/ops.c): called with the lock NOT held. Each state
 * change and its audit entry commit in one transaction. */
struct principal {
    int64_t user_id; /* 0 for the hub itself */
    char name[STORE_NAME_MAX + 1];
    enum store_role role;
};

enum mamori_err hub_op_transition(struct hub *h, const struct principal *who, const char *device_id,
                                  enum lc_action action, const char *reason) MAMORI_MUST_CHECK;
/* For the hub's own modules (lock held): audit entry + commit of the open
 * transaction (rolled back on failure); a stored, audited, published
 * command (args_json NULL: {}). */
enum mamori_err hub_commit_audited(struct hub *h, const struct principal *who, const char *action,
                                   const char *target, const char *reason,
                                   const char *detail) MAMORI_MUST_CHECK;
enum mamori_err hub_command_issue(struct hub *h, const struct principal *who, const char *id,
                                  enum cmd_type t, int64_t ttl_ms, const char *reason,
                                  const char *args_json, struct command_rec *c) MAMORI_MUST_CHECK;

/* Certificate rotation (hub/rotation.c), lock held. start: asks the device
 * for a new key ("rotate"); on_result: follows the device's answers
 * ("rotate" -> CSR -> certificate -> "cert" -> switch confirmed); tick:
 * the rotation policy (renew before expiry, maximum age). */
enum mamori_err rotation_start(struct hub *h, const struct principal *who, const char *id,
                               const char *reason) MAMORI_MUST_CHECK;
void rotation_on_result(struct hub *h, const struct command_rec *c, const char *status,
                        json_t *detail);
void rotation_tick(struct hub *h, int64_t now_s);

/* Records an event (alert or observation). Lock held. */
void hub_event(struct hub *h, const char *device_id, const char *kind, const char *severity,
               const char *detail_fmt, ...) __attribute__((format(printf, 5, 6)));

#endif
