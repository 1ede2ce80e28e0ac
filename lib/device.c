/*
 * lib/device.c - libmamori's device connection (see include/mamori/device.h).
 *
 * Uses libmosquitto without its threads: the caller polls mamori_device_fd()
 * and calls mamori_device_step(), so one thread can drive many devices.
 * The broker is pinned to the platform CA in the identity (ca.crt) with host
 * name verification on (T05-L1a, T05-L1c, T06-L2c). Reconnects use exponential
 * backoff with "equal jitter" (half fixed, half random) so a fleet that lost
 * its broker does not come back in lockstep (T10-L3a).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <curl/curl.h>
#include <mosquitto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/cmd.h"
#include "common/crypto.h"
#include "common/devlog.h"
#include "common/fsutil.h"
#include "common/json.h"
#include "common/notice.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/schema.h"
#include "lib/fetch.h"
#include "lib/logwatch.h"
#include "lib/update.h"
#include "lib/devstate.h"
#include "lib/cfgstore.h"
#include "lib/identity.h"
#include "common/devcfg.h"
#include "common/eat.h"
#include "lib/outbox.h"
#include "mamori/device.h"

/* Messages published but not yet acknowledged by the hub, at most. */
#define OUTBOX_WINDOW 64
/* Without an acknowledgement for this long, everything unacknowledged is
 * sent again (the hub drops what it already holds). */
#define ACK_TIMEOUT_MS 10000
/* The signed security status (P-MGMT): published this long after each
 * connection, then daily, valid for two days. */
#define STATUS_AFTER_CONNECT_MS 1000
#define STATUS_EVERY_MS         (24 * 3600 * 1000ULL)
#define STATUS_TTL_S            (2 * 86400)

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

uint64_t mamori_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t wall_ms(void)
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

static enum mamori_err publish(struct mamori_device *d, const char *topic, uint64_t *seq,
                               const char *body_json);
static enum mamori_err queue(struct mamori_device *d, enum outbox_stream s,
                             const char *const *bodies, size_t n);

static void send_result(struct mamori_device *d, const struct cmd *c, const char *status,
                        const char *error, const char *detail_json)
{
    char body[4096];
    int n = snprintf(body, sizeof(body),
                     "{\"cmd\":\"%s\",\"type\":\"%s\",\"status\":\"%s\",\"error\":\"%s\","
                     "\"detail\":%s}",
                     c->id, cmd_type_name(c->type), status, error ? error : "",
                     detail_json ? detail_json : "{}");
    if (n > 0 && (size_t)n < sizeof(body) &&
        publish(d, d->topic_res, &d->res_seq, body) == MAMORI_OK)
        d->st.command_results++;
}

#define DEVLOG_ROTATE_BYTES (64 * 1024)

/* Finds the head of the chain (last valid record) in one log file. */
static void devlog_scan(const char *path, uint64_t *n, char prev[65])
{
    char *txt = NULL;
    size_t len;
    if (fs_read_file(path, 2 * DEVLOG_ROTATE_BYTES + DEVLOG_LINE_MAX, &txt, &len))
        return;
    struct mbuf b = mbuf_init(txt, len);
    while (mbuf_left(&b)) {
        const uint8_t *ln;
        size_t ll;
        struct devlog_rec r;
        mbuf_split(&b, '\n', &ln, &ll);
        if (ll && devlog_parse(ln, ll, NULL, &r) == MAMORI_OK && r.n > *n) {
            *n = r.n;
            memcpy(prev, r.hash, 65);
        }
    }
    free(txt);
}

/* The log lives in STATE/log: current.log and, after rotation, log.1 (the
 * size is bounded: two files of about 64 KiB). The chain continues across
 * files; the hub holds every record anyway. */
static enum mamori_err devlog_open(struct mamori_device *d, const char *key_path)
{
    char p[1200];
    enum mamori_err rc;
    struct crypto_key *k = NULL;
    if ((rc = fs_path(d->log_dir, sizeof(d->log_dir), d->state_dir, "log")) ||
        (rc = fs_mkdir_p(d->log_dir, 0700)) || (rc = crypto_key_load(key_path, &k)))
        return rc;
    if (d->keystore == CRYPTO_KEYSTORE_FILE)
        d->log_key = k;
    else
        crypto_key_free(k);
    d->log_on = true;
    snprintf(d->log_prev, sizeof(d->log_prev), "%s", DEVLOG_ZERO_HASH);
    d->log_n = 0;
    if (fs_path(p, sizeof(p), d->log_dir, "log.1") == MAMORI_OK)
        devlog_scan(p, &d->log_n, d->log_prev);
    if (fs_path(p, sizeof(p), d->log_dir, "current.log") == MAMORI_OK)
        devlog_scan(p, &d->log_n, d->log_prev);
    return MAMORI_OK;
}

#define LOG_ACCESS_EVERY_MS 10000

static void security_event(struct mamori_device *d, const char *type, const char *reason);
static void update_command(struct mamori_device *d, const struct cmd *c);
static void download_end(struct mamori_device *d);
static enum mamori_err update_open(struct mamori_device *d, const struct mamori_device_opts *o);
static void update_report(struct mamori_device *d);

/* T12-L2a: watches the log directory from now on (after the SDK's own
 * reading of it at start). Where the OS cannot (no inotify instance left),
 * the device says so rather than pretending to watch. */
static void log_watch_start(struct mamori_device *d)
{
    enum mamori_err rc = logwatch_open(d->log_dir, &d->lw);
    if (rc) {
        char why[96];
        snprintf(why, sizeof(why), "inotify: %s", mamori_strerror(rc));
        security_event(d, "log_watch_unavailable", why);
    }
}

/* The key that signs the log. A TPM key is loaded for each record and
 * released at once: a TPM without a resource manager holds only a few
 * loaded objects, and the TLS connection keeps one. */
static struct crypto_key *log_key_take(struct mamori_device *d)
{
    struct crypto_key *k = NULL;
    if (d->log_key)
        return d->log_key;
    return crypto_key_load(d->key_path, &k) == MAMORI_OK ? k : NULL;
}

static void log_key_give(struct mamori_device *d, struct crypto_key *k)
{
    if (k != d->log_key)
        crypto_key_free(k);
}

/* Appends a signed, chained record to the local log (synced) and queues
 * it for the hub (never dropped from the outbox). */
static void devlog_append(struct mamori_device *d, const char *type, const char *data_json)
{
    char line[DEVLOG_LINE_MAX + 1];
    struct devlog_rec r;
    if (!d->log_on || d->wiped)
        return;
    struct crypto_key *k = log_key_take(d);
    enum mamori_err brc = k ? devlog_build(k, d->log_n + 1, (int64_t)wall_ms(), type, data_json,
                                           d->log_prev, line, &r)
                            : MAMORI_ERR_CRYPTO;
    log_key_give(d, k);
    if (brc) {
        d->st.outbox_errors++;
        return;
    }
    size_t len = strlen(line);
    line[len] = '\n';
    enum mamori_err wrc = logwatch_append(d->lw, d->log_dir, line, len + 1, DEVLOG_ROTATE_BYTES);
    line[len] = '\0';
    if (wrc) {
        d->st.outbox_errors++;
        return;
    }
    d->log_n = r.n;
    memcpy(d->log_prev, r.hash, sizeof(d->log_prev));
    if (queue(d, OUTBOX_LOG, (const char *const[]){line}, 1) == MAMORI_OK)
        d->st.log_records++;
}

/* A security event the device records itself (never dropped). */
static void security_event(struct mamori_device *d, const char *type, const char *reason)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"type\":\"%s\",\"reason\":\"%s\"}", type, reason);
    if (queue(d, OUTBOX_EV, (const char *const[]){body}, 1) == MAMORI_OK)
        d->st.events_sent++;
    snprintf(body, sizeof(body), "{\"reason\":\"%s\"}", reason);
    devlog_append(d, type, body);
}

/* T12-L2a, T12-L4a: what others did to the log files goes into the log
 * itself and to the hub as a "log_access" event (never dropped). At most
 * one report per LOG_ACCESS_EVERY_MS, covering everything since the last:
 * someone reading the log in a loop cannot flood the outbox. */
static void log_watch_step(struct mamori_device *d, uint64_t now)
{
    if (!d->lw)
        return;
    bool gone = logwatch_poll(d->lw) != MAMORI_OK;
    if (!gone && now < d->lw_next_report)
        return;
    struct logwatch_access a[LOGWATCH_FILES_MAX];
    size_t n = logwatch_take(d->lw, a, LOGWATCH_FILES_MAX);
    if (gone) {
        /* Watch again once the directory is back; the chain goes on in
         * new files and the hub holds every record before. */
        logwatch_close(d->lw);
        d->lw = NULL;
        if (fs_mkdir_p(d->log_dir, 0700) != MAMORI_OK || logwatch_open(d->log_dir, &d->lw))
            security_event(d, "log_watch_unavailable", "log directory gone and not made again");
    }
    if (!n)
        return;
    char files[LOGWATCH_FILES_MAX * (LOGWATCH_NAME_MAX + 128)], ops[160], body[sizeof(files) + 64];
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        logwatch_ops_str(a[i].ops, ops, sizeof(ops));
        /* names are printable ASCII without quote or backslash */
        int k = snprintf(files + used, sizeof(files) - used,
                         "%s{\"file\":\"%s\",\"ops\":\"%s\",\"events\":%llu}", i ? "," : "",
                         a[i].file, ops, (unsigned long long)a[i].events);
        if (k < 0 || (size_t)k >= sizeof(files) - used)
            break;
        used += (size_t)k;
    }
    files[used] = '\0';
    d->st.log_access++;
    d->lw_next_report = now + LOG_ACCESS_EVERY_MS;
    snprintf(body, sizeof(body), "{\"type\":\"log_access\",\"files\":[%s]}", files);
    if (queue(d, OUTBOX_EV, (const char *const[]){body}, 1) == MAMORI_OK)
        d->st.events_sent++;
    snprintf(body, sizeof(body), "{\"files\":[%s]}", files);
    devlog_append(d, "log_access", body);
}

/* T01-L1c: the self-test command checks what the device's security rests
 * on (private key, certificate, storage, clock) and reports it. */
static void self_test(struct mamori_device *d, char *detail, size_t n, bool *pass)
{
    char key[1200], crt[1200];
    struct crypto_cert *c = NULL;
    struct crypto_key *k = NULL;
    bool key_private = fs_path(key, sizeof(key), d->identity_dir, "device.key") == MAMORI_OK &&
                       fs_check_private(key, 0) == MAMORI_OK;
    bool cert_ok = fs_path(crt, sizeof(crt), d->identity_dir, "device.crt") == MAMORI_OK &&
                   crypto_cert_load(crt, &c) == MAMORI_OK;
    bool key_ok = key_private && crypto_key_load(key, &k) == MAMORI_OK;
    bool match = cert_ok && key_ok && crypto_cert_matches_key(c, k);
    long days =
        cert_ok ? (long)((crypto_cert_not_after(c) - (time_t)(wall_ms() / 1000)) / 86400) : -1;
    struct outbox_stats os = {0};
    bool outbox_ok = !d->ob || outbox_stats(d->ob, &os) == MAMORI_OK;
    bool clock_ok = wall_ms() > 1700000000000ULL;
    crypto_cert_free(c);
    crypto_key_free(k);
    *pass = key_private && match && days > 0 && outbox_ok && clock_ok;
    snprintf(detail, n,
             "{\"key_private\":%s,\"cert_matches_key\":%s,\"cert_days_left\":%ld,"
             "\"outbox_ok\":%s,\"outbox_queued\":%llu,\"clock_ok\":%s,\"locked\":%s,"
             "\"quarantined\":%s}",
             key_private ? "true" : "false", match ? "true" : "false", days,
             outbox_ok ? "true" : "false", (unsigned long long)os.queued,
             clock_ok ? "true" : "false", devstate_flag(d->ds, "locked") ? "true" : "false",
             devstate_flag(d->ds, "quarantined") ? "true" : "false");
}

/* Wipe / factory reset (T01-L5a, T06-L5a; ETSI 5.11-1): key and identity,
 * the outbox and the state are overwritten and removed; what is left
 * (device.json, ca.crt) is public. The device stops for good. */
static void wipe(struct mamori_device *d)
{
    static const char *const id_files[] = {"device.key",     "device.crt",        "device.csr",
                                           "claim-code",     "pending.key",       "device.key.old",
                                           "device.crt.new", "device.crt.new.tmp"};
    static const char *const st_files[] = {"outbox.db",   "outbox.db-wal",      "outbox.db-shm",
                                           "state.db",    "state.db-wal",       "state.db-shm",
                                           "notice.json", "update/command.json"};
    char p[1200];
    logwatch_close(d->lw); /* the erase below is ours */
    d->lw = NULL;
    download_end(d); /* an update under way ends; its token is wiped */
    upd_close(d->upd);
    d->upd = NULL;
    /* Let the result go out before the connection is dropped. */
    for (int i = 0; i < 20 && mosquitto_want_write(d->mosq); i++)
        mosquitto_loop_write(d->mosq, 1);
    mosquitto_disconnect(d->mosq);
    mosquitto_loop_write(d->mosq, 1);
    outbox_close(d->ob);
    d->ob = NULL;
    devstate_close(d->ds);
    d->ds = NULL;
    for (size_t i = 0; i < sizeof(id_files) / sizeof(id_files[0]); i++)
        if (fs_path(p, sizeof(p), d->identity_dir, id_files[i]) == MAMORI_OK &&
            fs_shred(p) != MAMORI_OK)
            d->st.outbox_errors++;
    for (size_t i = 0; d->state_dir[0] && i < sizeof(st_files) / sizeof(st_files[0]); i++)
        if (fs_path(p, sizeof(p), d->state_dir, st_files[i]) == MAMORI_OK &&
            fs_shred(p) != MAMORI_OK)
            d->st.outbox_errors++;
    static const char *const log_files[] = {"current.log", "log.1"};
    for (size_t i = 0; d->log_dir[0] && i < 2; i++)
        if (fs_path(p, sizeof(p), d->log_dir, log_files[i]) == MAMORI_OK &&
            fs_shred(p) != MAMORI_OK)
            d->st.outbox_errors++;
    crypto_key_free(d->log_key);
    d->log_key = NULL;
    d->log_on = false;
    d->wiped = true;
    d->state = MAMORI_DEV_WIPED;
}

/* T05-L2c, T07-L2a: "rotate" makes the next key in place (pending.key,
 * never leaving the device) and answers with its CSR. */
static enum mamori_err rotate_prepare(struct mamori_device *d, bool create, char *detail, size_t n)
{
    char *csr = NULL;
    enum mamori_err rc = identity_pending_csr(d->identity_dir, d->id, create, d->keystore, &csr);
    if (rc)
        return rc;
    json_t *j = json_pack("{s:s}", "csr", csr);
    char *txt = j ? json_dump_compact(j) : NULL;
    json_decref(j);
    free(csr);
    if (!txt)
        return MAMORI_ERR_NOMEM;
    rc = strlen(txt) < n ? MAMORI_OK : MAMORI_ERR_TOOBIG;
    if (!rc)
        memcpy(detail, txt, strlen(txt) + 1);
    free(txt);
    return rc;
}

/* "cert" args: {"cert": PEM, "chain": PEM of the issuing CA}. The
 * certificate must chain to the platform root, name this device and hold
 * the pending key. */
static enum mamori_err cert_check(struct mamori_device *d, const struct cmd *c, json_t **args,
                                  const char **cert, char fp[CRYPTO_FP_HEX_LEN])
{
    const char *chain = NULL;
    *args = json_loads(c->args, JSON_REJECT_DUPLICATES, NULL);
    if (!json_get_str(*args, "cert", CMD_ARGS_MAX, cert))
        return MAMORI_ERR_PARSE;
    (void)json_get_str(*args, "chain", CMD_ARGS_MAX, &chain);
    return identity_check_new(d->identity_dir, *cert, strlen(*cert), chain,
                              chain ? strlen(chain) : 0, d->trust_pem, d->id, fp);
}

/* Installs the new pair (crash-safe, lib/identity.h), signs the log with
 * the new key from now on and reconnects with the new certificate once the
 * result is out. Nothing queued is lost: the outbox is resent after the
 * reconnection until the hub acknowledges it. */
static enum mamori_err cert_switch(struct mamori_device *d, const char *cert_pem)
{
    char key[1200];
    struct crypto_key *k = NULL;
    enum mamori_err rc = identity_install(d->identity_dir, cert_pem, strlen(cert_pem), 0);
    if (rc)
        return rc;
    if (d->log_key && fs_path(key, sizeof(key), d->identity_dir, "device.key") == MAMORI_OK &&
        crypto_key_load(key, &k) == MAMORI_OK) {
        crypto_key_free(d->log_key);
        d->log_key = k;
    }
    d->reconnect_pending = true;
    d->st.rotations++;
    return MAMORI_OK;
}

/* Puts settings in force: the remote ones (JSON text; NULL: none) over
 * the local ones. live: the device is running, so a new broker address is
 * checked from the next connection on and the connection is renewed. */
static enum mamori_err settings_apply(struct mamori_device *d, const char *settings, bool live)
{
    struct devcfg c;
    char why[160];
    enum mamori_err rc;
    memset(&c, 0, sizeof(c));
    if (settings && settings[0] &&
        (rc = devcfg_parse(settings, strlen(settings), &c, why, sizeof(why))))
        return rc;
    const char *host = c.broker_host[0] ? c.broker_host : d->base_host;
    int port = c.broker_port ? c.broker_port : d->base_port;
    const char *schema = c.has_schema ? c.schema_json : d->base_schema;
    struct schema *ns = NULL;
    if (schema) {
        if (!(ns = malloc(sizeof(*ns))))
            return MAMORI_ERR_NOMEM;
        if ((rc = schema_parse(schema, strlen(schema), ns, why, sizeof(why)))) {
            free(ns);
            return rc;
        }
    }
    bool moved = strcmp(host, d->host) != 0 || port != d->port;
    if (live && moved && d->tls && (rc = crypto_tls_ctx_set_host(d->tls, host))) {
        free(ns);
        return rc;
    }
    free(d->schema);
    d->schema = ns;
    memset(&d->rate, 0, sizeof(d->rate));
    d->hb_interval_ms = c.heartbeat_s ? c.heartbeat_s * 1000u : d->base_hb_ms;
    snprintf(d->host, sizeof(d->host), "%s", host);
    d->port = port;
    if (live && moved)
        d->reconnect_pending = true;
    d->st.config_version = d->cfg.version;
    return MAMORI_OK;
}

/* Back to the known-good settings (T01-L3c, T08-L3a), reported and logged. */
static void config_fallback(struct mamori_device *d, const char *reason, bool live)
{
    uint64_t from = d->cfg.version;
    enum mamori_err rc = cfgstore_rollback(&d->cfg, 0);
    if (rc && rc != MAMORI_ERR_NOTFOUND) {
        d->st.outbox_errors++;
        return;
    }
    if (settings_apply(d, d->cfg.version ? d->cfg.settings : NULL, live))
        (void)settings_apply(d, NULL, live); /* the local settings always parse */
    d->cfg_probe_seq = 0;
    d->st.config_rollbacks++;
    char body[320];
    snprintf(body, sizeof(body),
             "{\"type\":\"config_rolled_back\",\"from\":%llu,\"to\":%llu,\"reason\":\"%s\"}",
             (unsigned long long)from, (unsigned long long)d->cfg.version, reason);
    if (queue(d, OUTBOX_EV, (const char *const[]){body}, 1) == MAMORI_OK)
        d->st.events_sent++;
    snprintf(body, sizeof(body), "{\"from\":%llu,\"to\":%llu,\"reason\":\"%s\"}",
             (unsigned long long)from, (unsigned long long)d->cfg.version, reason);
    devlog_append(d, "config_rolled_back", body);
}

/* The health check of settings on probation: the hub acknowledged the
 * event queued after they took effect (it reached the hub with them), or
 * the deadline passed. */
static void config_probe(struct mamori_device *d)
{
    if (!d->cfg_on || !d->cfg.pending)
        return;
    if (d->cfg_probe_seq && d->acked_ev >= d->cfg_probe_seq) {
        if (cfgstore_commit(&d->cfg) != MAMORI_OK) {
            d->st.outbox_errors++;
            return;
        }
        d->cfg_probe_seq = 0;
        char body[96];
        snprintf(body, sizeof(body), "{\"type\":\"config_committed\",\"version\":%llu}",
                 (unsigned long long)d->cfg.version);
        if (queue(d, OUTBOX_EV, (const char *const[]){body}, 1) == MAMORI_OK)
            d->st.events_sent++;
        devlog_append(d, "config_committed", body);
    } else if ((int64_t)wall_ms() > d->cfg.deadline_ms) {
        config_fallback(d, "health check failed: the hub did not hear from the device in time",
                        true);
    }
}

/* A verified command is single-use whatever its outcome: one that failed
 * or was refused must not run when played again later, when it might
 * succeed (a rollback once there is something to roll back to). */
static void consume(struct mamori_device *d, const struct cmd *c, const char *outcome)
{
    char prev[16];
    if (devstate_accept(d->ds, c->id, c->exp, (int64_t)wall_ms(), outcome, NULL, false, prev) !=
        MAMORI_OK)
        d->st.outbox_errors++;
}

/* "config" {"version":N,"settings":{...}} and "config-rollback". */
static void config_command(struct mamori_device *d, const struct cmd *c)
{
    char prev[16], detail[160];
    if (devstate_seen(d->ds, c->id, prev)) {
        d->st.commands_refused++;
        snprintf(detail, sizeof(detail), "{\"first_outcome\":\"%s\"}", prev);
        send_result(d, c, "refused", "replay", detail);
        security_event(d, "command_replayed", c->id);
        return;
    }
    if (!d->cfg_on) {
        send_result(d, c, "refused", "no state directory", NULL);
        return;
    }
    enum mamori_err rc;
    uint64_t from = d->cfg.version;
    if (c->type == CMD_CONFIG_ROLLBACK) {
        rc = cfgstore_rollback(&d->cfg, 0);
        if (rc) {
            consume(d, c, "failed");
            send_result(d, c, "failed",
                        rc == MAMORI_ERR_NOTFOUND ? "no known-good settings" : mamori_strerror(rc),
                        NULL);
            return;
        }
        if (settings_apply(d, d->cfg.version ? d->cfg.settings : NULL, true))
            (void)settings_apply(d, NULL, true);
        d->cfg_probe_seq = 0;
        d->st.config_rollbacks++;
    } else {
        json_t *a = json_loads(c->args, JSON_REJECT_DUPLICATES, NULL);
        json_t *st = json_object_get(a, "settings");
        char *txt = json_is_object(st) ? json_dump_compact(st) : NULL;
        uint64_t ver = 0;
        struct devcfg cfg;
        char why[160];
        json_decref(a);
        json_t *va = json_loads(c->args, JSON_REJECT_DUPLICATES, NULL);
        bool ok = json_get_u64(va, "version", &ver) && txt &&
                  devcfg_parse(txt, strlen(txt), &cfg, why, sizeof(why)) == MAMORI_OK;
        json_decref(va);
        if (!ok || ver <= d->cfg.version) {
            free(txt);
            consume(d, c, "refused");
            d->st.commands_refused++;
            send_result(d, c, "refused",
                        ok ? "not newer than the settings in force" : "invalid settings", NULL);
            security_event(d, "config_refused", ok ? "older version" : "invalid settings");
            return;
        }
        int64_t deadline = (int64_t)wall_ms() + (int64_t)cfg.health_s * 1000;
        rc = cfgstore_apply(&d->cfg, ver, txt, deadline, 0);
        if (!rc && (rc = settings_apply(d, txt, true)))
            config_fallback(d, "settings could not be applied", true);
        free(txt);
        if (rc) {
            consume(d, c, "failed");
            send_result(d, c, "failed", mamori_strerror(rc), NULL);
            return;
        }
    }
    if (devstate_accept(d->ds, c->id, c->exp, (int64_t)wall_ms(), "ok", NULL, false, prev) !=
        MAMORI_OK)
        d->st.outbox_errors++;
    d->st.commands_accepted++;
    char body[200];
    if (c->type == CMD_CONFIG) {
        /* The probe: this event must reach the hub under the new settings. */
        snprintf(body, sizeof(body), "{\"type\":\"config_applied\",\"version\":%llu,\"from\":%llu}",
                 (unsigned long long)d->cfg.version, (unsigned long long)from);
        uint64_t seq = 0;
        if (d->ob && outbox_put(d->ob, OUTBOX_EV, (const char *const[]){body}, 1, wall_ms(),
                                &seq) == MAMORI_OK) {
            d->cfg_probe_seq = seq;
            d->st.events_sent++;
        }
        devlog_append(d, "config_applied", body);
        snprintf(detail, sizeof(detail),
                 "{\"version\":%llu,\"state\":\"probation\",\"deadline_ms\":%lld}",
                 (unsigned long long)d->cfg.version, (long long)d->cfg.deadline_ms);
    } else {
        snprintf(body, sizeof(body), "{\"from\":%llu,\"to\":%llu,\"reason\":\"command\"}",
                 (unsigned long long)from, (unsigned long long)d->cfg.version);
        devlog_append(d, "config_rolled_back", body);
        snprintf(detail, sizeof(detail), "{\"version\":%llu,\"from\":%llu}",
                 (unsigned long long)d->cfg.version, (unsigned long long)from);
    }
    send_result(d, c, "ok", "", detail);
    if (d->on_command)
        d->on_command(d, (enum mamori_command)c->type, d->on_command_arg);
}

/* Keeps a parsed notice's text (n checked already); stats follow it. */
static void notice_keep(struct mamori_device *d, const char *text, const struct notice *n)
{
    snprintf(d->notice, sizeof(d->notice), "%s", text);
    d->st.advisories = n->n + n->more;
    d->st.support_end = (uint64_t)n->support_end;
    d->status_due_ms = 0; /* its standing changed: a new status at once */
}

/* The last notice, from STATE/notice.json at start (checked again). */
static void notice_load(struct mamori_device *d)
{
    char p[4200], *txt = NULL;
    size_t len;
    struct notice n;
    if (fs_path(p, sizeof(p), d->state_dir, "notice.json") ||
        fs_read_file(p, NOTICE_MAX, &txt, &len))
        return;
    if (notice_parse(txt, len, &n) == MAMORI_OK && strlen(txt) == len)
        notice_keep(d, txt, &n);
    else
        security_event(d, "notice_unreadable", "STATE/notice.json does not parse");
    free(txt);
}

/* "notice" (common/notice.h): what the hub says of this device's security
 * standing; kept, logged, and handed to the application (T02-L2b). */
static void notice_command(struct mamori_device *d, const struct cmd *c)
{
    char prev[16], p[4200], body[256];
    struct notice n;
    if (devstate_seen(d->ds, c->id, prev)) {
        d->st.commands_refused++;
        send_result(d, c, "refused", "replay", NULL);
        security_event(d, "command_replayed", c->id);
        return;
    }
    if (notice_parse(c->args, strlen(c->args), &n)) {
        consume(d, c, "refused");
        d->st.commands_refused++;
        send_result(d, c, "refused", "invalid notice", NULL);
        return;
    }
    if (fs_path(p, sizeof(p), d->state_dir, "notice.json") ||
        fs_write_atomic(p, c->args, strlen(c->args), 0600)) {
        consume(d, c, "failed");
        send_result(d, c, "failed", "cannot keep the notice", NULL);
        return;
    }
    consume(d, c, "ok");
    d->st.commands_accepted++;
    notice_keep(d, c->args, &n);
    snprintf(body, sizeof(body),
             "{\"fw_version\":\"%s\",\"advisories\":%llu,\"worst\":\"%s\",\"support_end\":%lld}",
             n.fw_version, (unsigned long long)d->st.advisories, notice_worst(&n),
             (long long)n.support_end);
    devlog_append(d, "notice", body);
    send_result(d, c, "ok", "", NULL);
    if (d->on_command)
        d->on_command(d, MAMORI_CMD_NOTICE, d->on_command_arg);
}

static void on_command(struct mamori_device *d, const void *payload, size_t len)
{
    struct cmd_msg m;
    struct cmd c;
    d->st.commands_received++;
    if (cmd_msg_parse(payload, len, &m)) {
        security_event(d, "command_rejected", "malformed");
        return;
    }
    /* Unauthenticated input gets no answer beyond the local record. */
    if (!d->trust_pem || cmd_msg_verify(&m, d->trust_pem, d->signer_fp) ||
        cmd_parse(m.text, m.text_len, &c)) {
        cmd_msg_free(&m);
        d->st.commands_refused++;
        security_event(d, "command_rejected", "signature or signer not valid");
        return;
    }
    cmd_msg_free(&m);
    enum mamori_err rc = cmd_check(&c, d->id, (int64_t)wall_ms());
    if (rc) {
        d->st.commands_refused++;
        send_result(d, &c, "refused",
                    rc == MAMORI_ERR_EXPIRED     ? "expired"
                    : rc == MAMORI_ERR_FORBIDDEN ? "wrong device"
                                                 : "validity too long",
                    NULL);
        return;
    }
    if (!d->ds) {
        send_result(d, &c, "refused", "no state directory", NULL);
        return;
    }
    if (c.type == CMD_CONFIG || c.type == CMD_CONFIG_ROLLBACK) {
        config_command(d, &c);
        return;
    }
    if (c.type == CMD_UPDATE) {
        update_command(d, &c);
        return;
    }
    if (c.type == CMD_NOTICE) {
        notice_command(d, &c);
        return;
    }
    const char *flag = NULL;
    bool value = false, pass = true;
    char detail[2048] = "{}", prev[16], new_fp[CRYPTO_FP_HEX_LEN] = "";
    json_t *cargs = NULL;
    const char *cert_pem = NULL;
    switch (c.type) {
    case CMD_ROTATE: {
        /* A replayed "rotate" makes no new key; see the replay answer. */
        bool seen = devstate_seen(d->ds, c.id, prev);
        if ((rc = rotate_prepare(d, !seen, detail, sizeof(detail))) && !seen) {
            consume(d, &c, "failed");
            send_result(d, &c, "failed", mamori_strerror(rc), NULL);
            return;
        }
        break;
    }
    case CMD_CERT:
        if ((rc = cert_check(d, &c, &cargs, &cert_pem, new_fp))) {
            json_decref(cargs);
            if (!devstate_seen(d->ds, c.id, prev))
                consume(d, &c, "refused");
            d->st.commands_refused++;
            send_result(d, &c, "refused", mamori_strerror(rc), NULL);
            security_event(d, "certificate_refused", mamori_strerror(rc));
            return;
        }
        snprintf(detail, sizeof(detail), "{\"fp\":\"%s\"}", new_fp);
        break;
    case CMD_LOCK:
    case CMD_UNLOCK:
        flag = "locked";
        value = c.type == CMD_LOCK;
        break;
    case CMD_QUARANTINE:
    case CMD_RELEASE:
        flag = "quarantined";
        value = c.type == CMD_QUARANTINE;
        break;
    case CMD_SELF_TEST:
        self_test(d, detail, sizeof(detail), &pass);
        break;
    default:
        break;
    }
    /* The id and the state change commit together: a replay changes
     * nothing and is answered with the first outcome. */
    rc = devstate_accept(d->ds, c.id, c.exp, (int64_t)wall_ms(), pass ? "ok" : "failed", flag,
                         value, prev);
    if (rc == MAMORI_ERR_EXISTS) {
        json_decref(cargs);
        d->st.commands_refused++;
        char pd[2200];
        /* A repeated "rotate" whose first answer was lost gets the CSR
         * again (same pending key), so the hub can go on. */
        if (c.type == CMD_ROTATE && strcmp(prev, "ok") == 0 && detail[0] == '{' && detail[1] == '"')
            snprintf(pd, sizeof(pd), "{\"first_outcome\":\"%s\",%s", prev, detail + 1);
        else
            snprintf(pd, sizeof(pd), "{\"first_outcome\":\"%s\"}", prev);
        send_result(d, &c, "refused", "replay", pd);
        security_event(d, "command_replayed", c.id);
        return;
    }
    if (rc) {
        json_decref(cargs);
        send_result(d, &c, "failed", mamori_strerror(rc), NULL);
        return;
    }
    if (c.type == CMD_CERT) {
        rc = cert_switch(d, cert_pem);
        json_decref(cargs);
        if (rc) {
            send_result(d, &c, "failed", mamori_strerror(rc), NULL);
            security_event(d, "certificate_switch_failed", mamori_strerror(rc));
            return;
        }
    }
    d->st.commands_accepted++;
    char logd[128];
    snprintf(logd, sizeof(logd), "{\"cmd\":\"%s\",\"type\":\"%s\",\"status\":\"%s\"}", c.id,
             cmd_type_name(c.type), pass ? "ok" : "failed");
    devlog_append(d, "command", logd);
    send_result(d, &c, pass ? "ok" : "failed", "", detail);
    if (d->on_command)
        d->on_command(d, (enum mamori_command)c.type, d->on_command_arg);
    /* The erase runs from mamori_device_step, outside libmosquitto's
     * callback (which holds the client's locks). */
    if (c.type == CMD_WIPE)
        d->wipe_pending = true;
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
        on_command(d, msg->payload, (size_t)msg->payloadlen);
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
    snprintf(d->key_path, sizeof(d->key_path), "%s", key);
    snprintf(d->crt_path, sizeof(d->crt_path), "%s", crt);
    if (rc)
        goto fail;
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
    if (o->state_dir) {
        char ob[4096];
        if ((rc = fs_mkdir_p(o->state_dir, 0700)) || (rc = fs_check_private(o->state_dir, 0)) ||
            (rc = fs_path(ob, sizeof(ob), o->state_dir, "outbox.db")) ||
            (rc = outbox_open(ob, o->outbox_max, NULL, &d->ob)) ||
            (rc = fs_path(ob, sizeof(ob), o->state_dir, "state.db")) ||
            (rc = devstate_open(ob, &d->ds)))
            goto fail;
        snprintf(d->state_dir, sizeof(d->state_dir), "%s", o->state_dir);
        /* T12-L1a: the device's own tamper-evident log starts with a boot
         * record (the chain head is found again after a restart). */
        if ((rc = devlog_open(d, key)))
            goto fail;
        log_watch_start(d);
        devlog_append(d, "boot", "{\"sdk\":\"0.1\"}");
        notice_load(d);
        /* Remote settings: a version still on probation did not prove
         * itself before this restart and goes back to the known-good one. */
        if ((rc = cfgstore_open(o->state_dir, &d->cfg)))
            goto fail;
        d->cfg_on = true;
        if (d->cfg.pending)
            config_fallback(d, "restart before the health check passed", false);
        else if (d->cfg.version && settings_apply(d, d->cfg.settings, false))
            config_fallback(d, "settings in force do not parse", false);
    } else {
        /* No outbox to remember them: sequence numbers start from the
         * clock (ms x 1000), so those of a restarted device go on above
         * the last it sent (the hub refuses one at or below as a replay). */
        for (int s = 0; s < OUTBOX_NSTREAMS; s++)
            d->seq[s] = wall_ms() * 1000;
    }
    snprintf(d->ca_path, sizeof(d->ca_path), "%s", ca);
    if ((o->update_slots_dir || o->update_hook) && (rc = update_open(d, o)))
        goto fail;
    d->mosq = mosquitto_new(d->id, true, d);
    if (!d->mosq) {
        rc = MAMORI_ERR_NOMEM;
        goto fail;
    }
    mosquitto_int_option(d->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_connect_callback_set(d->mosq, on_connect);
    mosquitto_disconnect_callback_set(d->mosq, on_disconnect);
    mosquitto_message_callback_set(d->mosq, on_message);
    /* Our own TLS context, used as it is by libmosquitto: the broker pinned
     * to the platform CA with its name checked, key and certificate loaded
     * once (a TPM key stays loaded, and signs in the TPM). */
    if ((rc = crypto_tls_client_ctx(d->keystore, ca, crt, key, d->host, &d->tls)))
        goto fail;
    if (mosquitto_void_option(d->mosq, MOSQ_OPT_SSL_CTX, d->tls) != MOSQ_ERR_SUCCESS ||
        mosquitto_int_option(d->mosq, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0) != MOSQ_ERR_SUCCESS) {
        rc = MAMORI_ERR_TLS;
        goto fail;
    }
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
    download_end(d);
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

static enum mamori_err publish(struct mamori_device *d, const char *topic, uint64_t *seq,
                               const char *body_json)
{
    char buf[PROTO_MAX_PAYLOAD];
    int n = snprintf(buf, sizeof(buf), "{\"v\":1,\"seq\":%llu,\"ts\":%llu,\"body\":%s}",
                     (unsigned long long)++*seq, (unsigned long long)wall_ms(), body_json);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return MAMORI_ERR_TOOBIG;
    int rc = mosquitto_publish(d->mosq, NULL, topic, n, buf, 1, false);
    return rc == MOSQ_ERR_SUCCESS ? MAMORI_OK : MAMORI_ERR_CONN;
}

/* The SDK sends only well-formed objects within the size cap. */
static enum mamori_err check_object(const char *body_json, json_t **out)
{
    return json_parse_untrusted(body_json, strlen(body_json), OUTBOX_BODY_MAX, out, NULL, 0);
}

static enum mamori_err queue(struct mamori_device *d, enum outbox_stream s,
                             const char *const *bodies, size_t n)
{
    if (d->ob)
        return outbox_put(d->ob, s, bodies, n, wall_ms(), NULL);
    /* No state directory: nothing is kept, so only a live session works. */
    if (d->state != MAMORI_DEV_CONNECTED)
        return MAMORI_ERR_CONN;
    const char *topic = s == OUTBOX_TM ? d->topic_tm : s == OUTBOX_EV ? d->topic_ev : d->topic_log;
    for (size_t i = 0; i < n; i++) {
        enum mamori_err rc = publish(d, topic, &d->seq[s], bodies[i]);
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
    int64_t ts = (int64_t)wall_ms();
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
    rc = queue(d, OUTBOX_TM, bodies, n);
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
        rc = queue(d, OUTBOX_EV, &body_json, 1);
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
    if (outbox_report_drops(d->ob, wall_ms(), &q) != MAMORI_OK)
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

/* --- firmware updates (P-UPD; lib/update.h, docs/updates.md) ---------- */

#define DL_DOC_MAX (256 * 1024)
/* A re-send of the update command that ended this long ago or less
 * crossed its result on the way (the hub sends what it waits for at each
 * connection and status report). */
#define CROSSED_MS 60000

static void update_event(struct mamori_device *d, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* An update step, as a never-dropped event and a device log record. */
static void update_event(struct mamori_device *d, const char *type, const char *fmt, ...)
{
    char data[512], body[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(data, sizeof(data), fmt, ap);
    va_end(ap);
    snprintf(body, sizeof(body), "{\"type\":\"%s\",\"update\":%s}", type, data);
    if (queue(d, OUTBOX_EV, (const char *const[]){body}, 1) == MAMORI_OK)
        d->st.events_sent++;
    devlog_append(d, type, data);
}

static void download_end(struct mamori_device *d)
{
    fetch_free(d->fetch);
    d->fetch = NULL;
    dbuf_free(&d->dl_doc);
    free(d->dl_roots);
    d->dl_roots = NULL;
    d->dl_stage = 0;
    crypto_wipe(d->dl_token, sizeof(d->dl_token));
    crypto_wipe(d->dl_cmd.args, sizeof(d->dl_cmd.args)); /* the token is in them too */
}

/* The update command under way is kept in STATE/update/command.json (0600,
 * in the state directory that is ours alone; with its download token) from
 * the moment it is accepted until it ends. After a power loss the device
 * takes it up again by itself, and the hub's sending it again (at each
 * connection, until it has the result) is no replay. */
static enum mamori_err cmd_file(const struct mamori_device *d, char *p, size_t n)
{
    char dir[1200];
    enum mamori_err rc = fs_path(dir, sizeof(dir), d->state_dir, "update");
    return rc ? rc : fs_path(p, n, dir, "command.json");
}

/* The command's URL and token go into that file as they are: only plain
 * characters (no quote, backslash or control byte) are taken. */
static bool plain(const char *s, const char *allowed_extra)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr(allowed_extra, *s)))
            return false;
    return true;
}

static enum mamori_err cmd_save(struct mamori_device *d)
{
    char p[1300], txt[1024];
    int n =
        snprintf(txt, sizeof(txt),
                 "{\"id\":\"%s\",\"exp\":%lld,\"sha256\":\"%s\",\"url\":\"%s\",\"token\":\"%s\"}",
                 d->dl_cmd.id, (long long)d->dl_cmd.exp, d->dl_sha, d->dl_url, d->dl_token);
    enum mamori_err rc =
        n > 0 && (size_t)n < sizeof(txt) ? cmd_file(d, p, sizeof(p)) : MAMORI_ERR_TOOBIG;
    if (!rc)
        rc = fs_write_atomic(p, txt, (size_t)n, 0600);
    crypto_wipe(txt, sizeof(txt));
    return rc;
}

/* At start: the update command that was under way when the device stopped. */
static void cmd_load(struct mamori_device *d)
{
    char p[1300], *txt = NULL;
    size_t len = 0;
    json_t *o = NULL;
    const char *id, *sha, *url, *token;
    uint64_t exp = 0;
    if (cmd_file(d, p, sizeof(p)) || fs_read_file(p, 1024, &txt, &len))
        return; /* none */
    bool ok = json_parse_untrusted(txt, len, 1024, &o, NULL, 0) == MAMORI_OK &&
              json_get_str(o, "id", 32, &id) && plain(id, "-_") && json_get_u64(o, "exp", &exp) &&
              exp <= INT64_MAX && json_get_str(o, "sha256", 64, &sha) && upmeta_hex64(sha) &&
              json_get_str(o, "url", 400, &url) && strncmp(url, "https://", 8) == 0 &&
              plain(url, ":/.-_[]%") && json_get_str(o, "token", 100, &token) && plain(token, "_");
    if (ok) {
        memset(&d->dl_cmd, 0, sizeof(d->dl_cmd));
        snprintf(d->dl_cmd.id, sizeof(d->dl_cmd.id), "%s", id);
        snprintf(d->dl_cmd.device, sizeof(d->dl_cmd.device), "%s", d->id);
        d->dl_cmd.type = CMD_UPDATE;
        d->dl_cmd.exp = (int64_t)exp;
        snprintf(d->dl_sha, sizeof(d->dl_sha), "%s", sha);
        snprintf(d->dl_url, sizeof(d->dl_url), "%s", url);
        snprintf(d->dl_token, sizeof(d->dl_token), "%s", token);
        d->dl_cmd_on = true;
    }
    json_decref(o);
    crypto_wipe(txt, len);
    free(txt);
    if (!ok) {
        security_event(d, "update_state_unreadable", "STATE/update/command.json does not parse");
        if (fs_unlink_durable(p))
            d->st.outbox_errors++;
    }
}

/* The command under way ends: its outcome replaces "started" (a replay is
 * answered with it), and the file goes. */
static void cmd_end(struct mamori_device *d, const char *status)
{
    char p[1300];
    if (devstate_outcome(d->ds, d->dl_cmd.id, status) != MAMORI_OK)
        d->st.outbox_errors++;
    if (d->dl_cmd_on && (cmd_file(d, p, sizeof(p)) || fs_unlink_durable(p)))
        d->st.outbox_errors++;
    d->dl_cmd_on = false;
}

/* The update command ends: its result, and the step in the log. */
static void update_done(struct mamori_device *d, const char *status, const char *error)
{
    char detail[160];
    cmd_end(d, status);
    memcpy(d->dl_last_id, d->dl_cmd.id, sizeof(d->dl_last_id));
    d->dl_last_ms = mamori_now_ms();
    snprintf(detail, sizeof(detail), "{\"sha256\":\"%s\"}", d->dl_sha);
    send_result(d, &d->dl_cmd, status, error, detail);
    update_event(d, strcmp(status, "ok") == 0 ? "update_installed" : "update_failed",
                 "{\"sha256\":\"%s\",\"status\":\"%s\",\"error\":\"%s\"}", d->dl_sha, status,
                 error);
    download_end(d);
}

static bool sink_doc(const void *data, size_t n, void *arg)
{
    struct mamori_device *d = arg;
    return dbuf_add(&d->dl_doc, data, n) == MAMORI_OK;
}

static bool sink_image(const void *data, size_t n, void *arg)
{
    struct mamori_device *d = arg;
    d->dl_code = upd_write(d->upd, data, n);
    return d->dl_code == UPD_OK;
}

static enum mamori_err download_start(struct mamori_device *d, const char *what, uint64_t offset,
                                      uint64_t max, fetch_sink sink)
{
    char url[600];
    if (snprintf(url, sizeof(url), "%s/%s", d->dl_url, what) >= (int)sizeof(url))
        return MAMORI_ERR_TOOBIG;
    dbuf_free(&d->dl_doc);
    dbuf_init(&d->dl_doc, DL_DOC_MAX);
    d->dl_code = UPD_OK;
    return fetch_start(url, d->dl_token, d->ca_path, offset, max, d->dl_rate, sink, d, &d->fetch);
}

/* The chain from the start: roots, release (checked), image from what is
 * on disk. */
static void download_begin(struct mamori_device *d)
{
    d->dl_stage = 1;
    if (download_start(d, "roots", 0, DL_DOC_MAX, sink_doc))
        update_done(d, "failed", "download could not start");
}

/* All of the image is on disk: its digest and size, then the install. */
static void image_done(struct mamori_device *d)
{
    enum upd_code code = upd_finish(d->upd);
    if (code == UPD_PENDING) {
        d->dl_stage = 4; /* the hook installs; upd_poll in the next steps */
        return;
    }
    if (code == UPD_ERR_DIGEST && d->dl_from && !d->dl_retried) {
        /* The bytes kept on disk were not those the hub serves (torn by a
         * power loss, or altered): the engine dropped them; once more from
         * byte 0. Nothing unverified is ever installed. */
        log_warn("update %s: the image resumed at byte %llu failed its digest; fetching it again",
                 d->dl_sha, (unsigned long long)d->dl_from);
        d->dl_retried = true;
        download_begin(d);
        return;
    }
    if (code) {
        update_done(d, "failed", upd_code_name(code));
        return;
    }
    update_done(d, "ok", "");
    d->upd_reboot = true; /* the result first, then the reboot */
}

/* Roots and release fetched: the engine checks them; then the image. */
static void update_offer(struct mamori_device *d, const char *release, size_t rlen)
{
    json_t *o = NULL, *arr;
    const char *roots[UPMETA_KEYS_MAX * 4];
    size_t lens[UPMETA_KEYS_MAX * 4], n = 0;
    char *texts[UPMETA_KEYS_MAX * 4];
    struct upd_status st;
    enum upd_code code = UPD_ERR_ROOT;
    if (json_parse_untrusted(d->dl_roots, strlen(d->dl_roots), DL_DOC_MAX, &o, NULL, 0) ==
            MAMORI_OK &&
        json_is_array(arr = json_object_get(o, "roots"))) {
        size_t i;
        json_t *v;
        code = UPD_OK;
        json_array_foreach(arr, i, v)
        {
            if (n == sizeof(texts) / sizeof(texts[0]) ||
                !(texts[n] = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER))) {
                code = UPD_ERR_ROOT;
                break;
            }
            roots[n] = texts[n];
            lens[n] = strlen(texts[n]);
            n++;
        }
    }
    json_decref(o);
    if (code == UPD_OK)
        code = upd_offer(d->upd, roots, lens, n, release, rlen, (int64_t)wall_ms());
    for (size_t i = 0; i < n; i++)
        free(texts[i]);
    upd_get_status(d->upd, &st);
    if (code == UPD_OK && strcmp(st.target_sha256, d->dl_sha) != 0) {
        /* the hub served another release than its command named */
        if (upd_cancel(d->upd) != UPD_OK)
            d->st.outbox_errors++;
        code = UPD_ERR_SIGNATURE;
    }
    if (code) {
        d->st.commands_refused++;
        update_done(d, "refused", upd_code_name(code));
        return;
    }
    /* What is on disk was hashed again when the engine opened it: the
     * request goes on from there (docs/updates.md, "resume"). */
    uint64_t off = upd_offset(d->upd);
    d->dl_from = off;
    d->dl_stage = 3;
    log_info("update %s: image from byte %llu of %llu", d->dl_sha, (unsigned long long)off,
             (unsigned long long)st.size);
    if (off == st.size)
        image_done(d); /* all of it arrived before the device stopped */
    else if (download_start(d, "image", off, st.size - off, sink_image))
        update_done(d, "failed", "download could not start");
}

/* The update command kept from before a restart (or sent again while no
 * download runs): carried on from where it stands. */
static void update_resume(struct mamori_device *d)
{
    struct upd_status st;
    if (d->dl_cmd.exp <= (int64_t)wall_ms()) {
        update_done(d, "failed", "expired"); /* its token is void; the image stays */
        return;
    }
    upd_get_status(d->upd, &st);
    if ((st.phase == UPD_SWITCH || st.phase == UPD_TRIAL) &&
        strcmp(st.target_sha256, d->dl_sha) == 0) {
        update_done(d, "ok", ""); /* installed; only its result was missing */
        return;
    }
    if (st.phase == UPD_SWITCH || st.phase == UPD_TRIAL) {
        update_done(d, "refused", upd_code_name(UPD_ERR_BUSY));
        return;
    }
    if (st.phase == UPD_DOWNLOAD && strcmp(st.target_sha256, d->dl_sha) != 0 &&
        upd_cancel(d->upd) != UPD_OK)
        d->st.outbox_errors++; /* another release's download gives way (upd_offer: busy) */
    log_info("update %s: taking up the command %s again", d->dl_sha, d->dl_cmd.id);
    d->dl_retried = false;
    download_begin(d);
}

/* Drives the download, and the health check of a slot on trial. */
static void update_step(struct mamori_device *d, uint64_t now)
{
    if (!d->upd)
        return;
    if (d->upd_reboot) {
        d->upd_reboot = false;
        if (d->on_command)
            d->on_command(d, MAMORI_CMD_UPDATE, d->on_command_arg);
        return;
    }
    if (d->dl_cmd_on && !d->dl_stage && d->state == MAMORI_DEV_CONNECTED) {
        update_resume(d); /* its result goes out over this connection */
        return;
    }
    struct upd_status st;
    upd_get_status(d->upd, &st);
    if (st.phase == UPD_TRIAL && !st.reboot) {
        char detail[2048];
        bool pass = false;
        if (d->state == MAMORI_DEV_CONNECTED)
            self_test(d, detail, sizeof(detail), &pass);
        if (pass && upd_commit(d->upd) == UPD_OK) {
            upd_get_status(d->upd, &st);
            snprintf(d->fw_version, sizeof(d->fw_version), "%s", st.fw_version);
            d->st.updates_committed++;
            update_event(d, "update_committed",
                         "{\"fw_version\":\"%s\",\"security_version\":%llu,\"floor\":%llu}",
                         st.fw_version, (unsigned long long)st.security_version,
                         (unsigned long long)st.floor);
        } else if (now >= d->upd_deadline && upd_rollback(d->upd) == UPD_OK) {
            d->st.update_rollbacks++;
            update_event(
                d, "update_rolled_back",
                "{\"fw_version\":\"%s\",\"reason\":\"health check failed: %s\"}", st.target_version,
                d->state == MAMORI_DEV_CONNECTED ? "self-test" : "no connection to the hub");
            d->upd_reboot = true;
        }
        return;
    }
    if (st.phase == UPD_IDLE && !d->fetch && d->state == MAMORI_DEV_CONNECTED &&
        now >= d->upd_next_check) {
        update_report(d); /* the hub answers with what is pending for us */
        d->upd_next_check = now + d->upd_check_ms;
    }
    if (d->dl_stage == 4) {
        enum upd_code code = upd_poll(d->upd, 0);
        if (code == UPD_PENDING)
            return;
        if (code) {
            update_done(d, "failed", upd_code_name(code));
            return;
        }
        update_done(d, "ok", "");
        d->upd_reboot = true;
        return;
    }
    if (!d->fetch)
        return;
    long http = 0;
    enum mamori_err rc = fetch_step(d->fetch, &http);
    if (rc == MAMORI_ERR_STATE)
        return; /* still running */
    fetch_free(d->fetch);
    d->fetch = NULL;
    char why[96];
    if (d->dl_stage == 3 && d->dl_code) {
        update_done(d, "failed", upd_code_name(d->dl_code)); /* digest, size */
        return;
    }
    if (rc) {
        snprintf(why, sizeof(why), "download failed (%s, HTTP %ld)", mamori_strerror(rc), http);
        update_done(d, "failed", why); /* what arrived stays: the next try resumes */
        return;
    }
    if (d->dl_stage == 1) {
        d->dl_roots = dbuf_take(&d->dl_doc);
        d->dl_stage = 2;
        if (!d->dl_roots || download_start(d, "release", 0, DL_DOC_MAX, sink_doc))
            update_done(d, "failed", "download could not start");
    } else if (d->dl_stage == 2) {
        char *rel = dbuf_take(&d->dl_doc);
        if (rel)
            update_offer(d, rel, strlen(rel));
        else
            update_done(d, "failed", "no release document");
        free(rel);
    } else if (d->dl_stage == 3) {
        image_done(d);
    }
}

/* "update" {sha256, url, token}: the hub names a release; the device
 * fetches and checks everything itself (the command adds no trust to the
 * documents, which carry their own signatures). */
static void update_command(struct mamori_device *d, const struct cmd *c)
{
    char prev[16], detail[64];
    const char *sha = NULL, *url = NULL, *token = NULL;
    if (d->dl_cmd_on && strcmp(d->dl_cmd.id, c->id) == 0) {
        /* The hub sends the command it waits for again (at each
         * connection): the device is carrying it out, which is no replay. */
        log_info("update %s: command %s sent again: carried on", d->dl_sha, c->id);
        if (!d->dl_stage)
            update_resume(d);
        return;
    }
    if (devstate_seen(d->ds, c->id, prev)) {
        snprintf(detail, sizeof(detail), "{\"first_outcome\":\"%s\"}", prev);
        send_result(d, c, "refused", "replay", detail);
        /* The hub's own re-send that crossed the result of the command
         * that just ended is answered the same, but is no attack. */
        if (strcmp(d->dl_last_id, c->id) == 0 && mamori_now_ms() - d->dl_last_ms < CROSSED_MS)
            return;
        d->st.commands_refused++;
        security_event(d, "command_replayed", c->id);
        return;
    }
    struct upd_status st;
    const char *why = NULL;
    json_t *a = json_loads(c->args, JSON_REJECT_DUPLICATES, NULL);
    bool ok = json_get_str(a, "sha256", 64, &sha) && upmeta_hex64(sha) &&
              json_get_str(a, "url", 400, &url) && strncmp(url, "https://", 8) == 0 &&
              plain(url, ":/.-_[]%") && json_get_str(a, "token", 100, &token) && plain(token, "_");
    if (!d->upd)
        why = "updates are not enabled on this device";
    else if (!ok)
        why = "invalid update command";
    else if (d->dl_stage || d->dl_cmd_on)
        why = upd_code_name(UPD_ERR_BUSY); /* another command's update runs */
    if (!why) {
        upd_get_status(d->upd, &st);
        /* A download of another release that stopped (and was never
         * resumed) gives way to the release the hub names now. */
        if (st.phase == UPD_DOWNLOAD && strcmp(st.target_sha256, sha) != 0 &&
            upd_cancel(d->upd) == UPD_OK)
            upd_get_status(d->upd, &st);
        if (st.phase == UPD_SWITCH || st.phase == UPD_TRIAL ||
            (st.phase == UPD_DOWNLOAD && strcmp(st.target_sha256, sha) != 0))
            why = upd_code_name(UPD_ERR_BUSY);
    }
    if (!why) {
        snprintf(d->dl_sha, sizeof(d->dl_sha), "%s", sha);
        snprintf(d->dl_url, sizeof(d->dl_url), "%s", url);
        snprintf(d->dl_token, sizeof(d->dl_token), "%s", token);
        d->dl_cmd = *c;
        /* Kept before its id is taken: a power loss in between leaves a
         * command to take up, never one refused as a replay. */
        if (cmd_save(d)) {
            crypto_wipe(d->dl_token, sizeof(d->dl_token));
            why = upd_code_name(UPD_ERR_IO);
        }
    }
    json_decref(a);
    if (why) {
        consume(d, c, "refused");
        d->st.commands_refused++;
        send_result(d, c, "refused", why, NULL);
        return;
    }
    d->dl_cmd_on = true;
    consume(d, c, "started");
    d->st.commands_accepted++;
    update_event(d, "update_started", "{\"sha256\":\"%s\"}", d->dl_sha);
    d->dl_retried = false;
    download_begin(d);
}

/* Where updates stand (at start, and as the periodic check). */
static void update_report(struct mamori_device *d)
{
    struct upd_status st;
    upd_get_status(d->upd, &st);
    update_event(d, "update_status",
                 "{\"slot\":\"%s\",\"fw_version\":\"%s\",\"security_version\":%llu,"
                 "\"floor\":%llu,\"phase\":%d,\"last\":\"%s\",\"root_version\":%llu}",
                 st.booted, st.fw_version, (unsigned long long)st.security_version,
                 (unsigned long long)st.floor, (int)st.phase, upd_code_name(st.last),
                 (unsigned long long)st.root_version);
}

/* At start: the boot loader's part for the built-in slots, then where the
 * last update stands. */
static enum mamori_err update_open(struct mamori_device *d, const struct mamori_device_opts *o)
{
    char anchor[4096], booted[2];
    struct upd_status st;
    enum mamori_err rc = MAMORI_OK;
    if (!o->state_dir || !d->model[0])
        return MAMORI_ERR_INVAL; /* updates need state and the model */
    if ((o->update_slots_dir && o->update_hook) ||
        (rc = fs_path(anchor, sizeof(anchor), o->identity_dir, "update-root.json")) ||
        (!o->update_hook && (rc = upd_boot(o->update_slots_dir, booted))))
        return rc ? rc : MAMORI_ERR_INVAL; /* one backend, not both */
    struct upd_config c = {.state_dir = o->state_dir,
                           .slots_dir = o->update_hook ? NULL : o->update_slots_dir,
                           .hook = o->update_hook,
                           .install_s = o->update_install_s,
                           .anchor_path = anchor,
                           .model = d->model};
    if ((rc = upd_open(&c, &d->upd)))
        return rc;
    d->upd_trial_ms = (o->update_trial_s ? o->update_trial_s : 120) * 1000u;
    upd_get_status(d->upd, &st);
    snprintf(d->fw_version, sizeof(d->fw_version), "%s", st.fw_version);
    d->upd_deadline = mamori_now_ms() + d->upd_trial_ms;
    d->upd_reboot = st.reboot;
    d->upd_check_ms = (uint64_t)(o->update_check_s ? o->update_check_s : 21600) * 1000u;
    d->upd_next_check = mamori_now_ms() + d->upd_check_ms;
    d->dl_rate = (uint64_t)o->update_rate_kbps * 1024u;
    cmd_load(d); /* an update command under way before the stop: taken up once online */
    update_report(d);
    return MAMORI_OK;
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
        wipe(d);
    }
    if (d->wiped)
        return 60000; /* nothing left to do: no key, no state */
    /* Also while disconnected: settings that cut the device off must
     * still be rolled back, and the log is watched whatever the network. */
    config_probe(d);
    log_watch_step(d, now);
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
            security_event(d, "certificate_switch_failed", "new identity does not load");
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
        if (publish(d, d->topic_hb, &hb_seq, body) == MAMORI_OK)
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
    int64_t not_after = 0, now = (int64_t)(wall_ms() / 1000);
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
    struct crypto_key *k = claims ? log_key_take(d) : NULL;
    enum mamori_err rc = k ? eat_sign(k, claims, tok) : MAMORI_ERR_CRYPTO;
    log_key_give(d, k);
    free(claims);
    if (rc)
        return;
    snprintf(body, sizeof(body), "{\"type\":\"security_status\",\"eat\":\"%s\"}", tok);
    (void)queue(d, OUTBOX_EV, (const char *const[]){body}, 1);
}

int mamori_device_step(struct mamori_device *d, uint64_t now, bool readable, bool writable)
{
    int t = device_step(d, now, readable, writable);
    if (!d->wiped && d->state == MAMORI_DEV_CONNECTED && now >= d->status_due_ms) {
        d->status_due_ms = now + STATUS_EVERY_MS;
        status_publish(d);
    }
    if (!d->wiped)
        update_step(d, now);
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

enum mamori_err mamori_device_log(struct mamori_device *d, const char *type, const char *data_json)
{
    json_t *chk = NULL;
    if (!d || !type || !data_json)
        return MAMORI_ERR_INVAL;
    if (!d->log_on)
        return MAMORI_ERR_STATE; /* no state directory, or wiped */
    enum mamori_err rc =
        json_parse_untrusted(data_json, strlen(data_json), DEVLOG_TEXT_MAX / 2, &chk, NULL, 0);
    json_decref(chk);
    if (rc)
        return rc;
    uint64_t before = d->log_n;
    devlog_append(d, type, data_json);
    return d->log_n > before ? MAMORI_OK : MAMORI_ERR_INVAL;
}
