/*
 * lib/device_priv.h - what the pieces of libmamori's device connection
 * share: the device object and the functions they call on each other.
 *
 * Private to lib/: never installed, never included outside it. The device
 * connection is split by concern:
 *
 *   device.c         the session: creation, MQTT connection and reconnection,
 *                    heartbeats, the outbox (telemetry, events, acks), the
 *                    signed security status, the step loop
 *   device_log.c     the signed, chained device log and the watch on its files
 *   device_cmd.c     signed commands: checks, replay protection, results,
 *                    lock/quarantine/self-test/wipe, notices
 *   device_rotate.c  key rotation: the pending key's CSR, the new certificate
 *   device_config.c  remote settings: apply, probation, rollback
 *   device_update.c  firmware updates: the update command, downloads, resume
 *                    after a power loss, trial and commit
 *
 * The shared functions are named dev_* and are hidden: the shared library
 * exports only the public API (libmamori.map), and the declarations below
 * carry hidden visibility for the static library too.
 */
#ifndef MAMORI_LIB_DEVICE_PRIV_H
#define MAMORI_LIB_DEVICE_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/cmd.h"
#include "common/crypto.h"
#include "common/json.h"
#include "common/notice.h"
#include "common/proto.h"
#include "common/schema.h"
#include "lib/cfgstore.h"
#include "lib/outbox.h"
#include "lib/update.h"
#include "mamori/device.h"

struct mosquitto;
struct devstate;
struct logwatch;
struct fetch;

/* Messages published but not yet acknowledged by the hub, at most. */
#define OUTBOX_WINDOW 64

struct mamori_device {
    char id[PROTO_DEVICE_ID_LEN + 1];
    char host[256];
    int port;
    char topic_hb[96], topic_tm[96], topic_ev[96], topic_log[96], topic_cmd[96];
    struct mosquitto *mosq;
    enum mamori_device_state state;
    unsigned hb_interval_ms, backoff_min, backoff_max, backoff_cur;
    uint64_t next_attempt_ms, next_hb_ms, connected_at_ms;
    uint64_t seq[OUTBOX_NSTREAMS]; /* without an outbox */
    struct outbox *ob;             /* NULL without a state directory */
    int64_t sent_id;               /* outbox rows up to here published on this connection */
    struct {
        uint8_t stream;
        uint64_t seq;
    } fly[OUTBOX_WINDOW]; /* published, not yet acknowledged */
    unsigned inflight;
    uint64_t last_progress_ms;
    struct schema *schema; /* NULL: no local check */
    struct schema_rate rate;
    /* commands */
    char identity_dir[1024], state_dir[1024];
    char topic_res[96];
    char *trust_pem; /* ca.crt: the platform root */
    char signer_fp[CRYPTO_FP_HEX_LEN];
    struct devstate *ds;
    uint64_t res_seq;
    bool wiped, wipe_pending;
    bool reconnect_pending; /* a new certificate is in place: reconnect with it */
    enum crypto_keystore keystore;
    /* remote settings (common/devcfg.h) over the local ones */
    struct cfgstore cfg;
    bool cfg_on;
    uint64_t cfg_probe_seq; /* the health check passes when the hub acks this event */
    uint64_t acked_ev;
    unsigned base_hb_ms;
    char base_host[256];
    int base_port;
    char *base_schema;
    void *tls; /* SSL_CTX (our reference; libmosquitto holds its own) */
    /* the device log (common/devlog.h) */
    struct crypto_key *log_key; /* file keystore: kept; TPM: loaded per record */
    bool log_on;
    char key_path[4096], crt_path[4096];
    uint64_t log_n;
    char log_prev[65];
    char log_dir[1100];
    int lock_fd;             /* STATE/lock, held while dev exists (-1: none) */
    struct logwatch *lw;     /* access to the log files by others (T12-L2a) */
    uint64_t lw_next_report; /* reports are at most one per LOG_ACCESS_EVERY_MS */
    mamori_command_cb on_command;
    void *on_command_arg;
    struct mamori_device_stats st;
    /* firmware updates (lib/update.h); upd NULL: none configured */
    struct upd *upd;
    char model[65], fw_version[65], ca_path[4096];
    unsigned upd_trial_ms;
    uint64_t upd_deadline; /* on trial: commit before this (monotonic ms) */
    uint64_t upd_check_ms, upd_next_check;
    bool upd_reboot; /* ask the application to reboot (MAMORI_CMD_UPDATE) */
    int dl_stage;    /* 0 none, 1 roots, 2 release, 3 image, 4 the hook installs it */
    struct fetch *fetch;
    struct dbuf dl_doc;
    char *dl_roots;
    struct cmd dl_cmd;
    char dl_url[512], dl_token[104], dl_sha[65];
    enum upd_code dl_code; /* why the image sink stopped */
    bool dl_cmd_on;        /* dl_cmd is under way (kept in STATE/update/command.json) */
    bool dl_retried;       /* a resumed image failed its digest: fetched again from 0 */
    uint64_t dl_from;      /* the image request began at this byte */
    uint64_t dl_rate;      /* bytes per second (0: no limit) */
    char dl_last_id[33];   /* the update command that ended last, */
    uint64_t dl_last_ms;   /* and when (monotonic) */
    /* the hub's last notice (common/notice.h), as its JSON text */
    char notice[NOTICE_MAX + 1];
    /* the next signed security status (common/eat.h; monotonic ms) */
    uint64_t status_due_ms;
};

#pragma GCC visibility push(hidden)

/* device.c: the session */
uint64_t dev_wall_ms(void); /* CLOCK_REALTIME, ms */
/* Publishes one message on topic with the next of *seq (QoS 1). */
enum mamori_err dev_publish(struct mamori_device *d, const char *topic, uint64_t *seq,
                            const char *body_json);
/* Into the outbox (kept until the hub acknowledges it); without a state
 * directory, published at once while connected. */
enum mamori_err dev_queue(struct mamori_device *d, enum outbox_stream s, const char *const *bodies,
                          size_t n);

/* device_log.c: the device log (T12-L1a) and its watch (T12-L2a) */
enum mamori_err dev_log_open(struct mamori_device *d, const char *key_path);
void dev_log_watch_start(struct mamori_device *d);
void dev_log_watch_step(struct mamori_device *d, uint64_t now);
struct crypto_key *dev_log_key_take(struct mamori_device *d);
void dev_log_key_give(struct mamori_device *d, struct crypto_key *k);
void dev_log_append(struct mamori_device *d, const char *type, const char *data_json);
void dev_security_event(struct mamori_device *d, const char *type, const char *reason);

/* device_cmd.c: commands */
void dev_on_command(struct mamori_device *d, const void *payload, size_t len);
void dev_send_result(struct mamori_device *d, const struct cmd *c, const char *status,
                     const char *error, const char *detail_json);
void dev_consume(struct mamori_device *d, const struct cmd *c, const char *outcome);
void dev_self_test(struct mamori_device *d, char *detail, size_t n, bool *pass);
void dev_wipe(struct mamori_device *d);
void dev_notice_load(struct mamori_device *d);

/* device_rotate.c: key rotation (T05-L2c) */
enum mamori_err dev_rotate_prepare(struct mamori_device *d, bool create, char *detail, size_t n);
enum mamori_err dev_cert_check(struct mamori_device *d, const struct cmd *c, json_t **args,
                               const char **cert, char fp[CRYPTO_FP_HEX_LEN]);
enum mamori_err dev_cert_switch(struct mamori_device *d, const char *cert_pem);

/* device_config.c: remote settings (T01-L3c) */
enum mamori_err dev_settings_apply(struct mamori_device *d, const char *settings, bool live);
void dev_config_fallback(struct mamori_device *d, const char *reason, bool live);
void dev_config_probe(struct mamori_device *d);
void dev_config_command(struct mamori_device *d, const struct cmd *c);

/* device_update.c: firmware updates (P-UPD) */
enum mamori_err dev_update_open(struct mamori_device *d, const struct mamori_device_opts *o);
void dev_update_step(struct mamori_device *d, uint64_t now);
void dev_update_command(struct mamori_device *d, const struct cmd *c);
void dev_download_end(struct mamori_device *d);

#pragma GCC visibility pop

#endif
