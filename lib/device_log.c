/*
 * lib/device_log.c - the device's own security log (common/devlog.h): each
 * record signed with the device key, hash-chained and queued for the hub
 * (T12-L1a, T12-L1b); the watch on its files (lib/logwatch.h, T12-L2a);
 * the security events the device records itself; mamori_device_log().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/crypto.h"
#include "common/devlog.h"
#include "common/fsutil.h"
#include "common/json.h"
#include "lib/device_priv.h"
#include "lib/logwatch.h"
#include "lib/outbox.h"
#include "mamori/device.h"

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
enum mamori_err dev_log_open(struct mamori_device *d, const char *key_path)
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

/* T12-L2a: watches the log directory from now on (after the SDK's own
 * reading of it at start). Where the OS cannot (no inotify instance left),
 * the device says so rather than pretending to watch. */
void dev_log_watch_start(struct mamori_device *d)
{
    enum mamori_err rc = logwatch_open(d->log_dir, &d->lw);
    if (rc) {
        char why[96];
        snprintf(why, sizeof(why), "inotify: %s", mamori_strerror(rc));
        dev_security_event(d, "log_watch_unavailable", why);
    }
}

/* The key that signs the log. A TPM key is loaded for each record and
 * released at once: a TPM without a resource manager holds only a few
 * loaded objects, and the TLS connection keeps one. */
struct crypto_key *dev_log_key_take(struct mamori_device *d)
{
    struct crypto_key *k = NULL;
    if (d->log_key)
        return d->log_key;
    return crypto_key_load(d->key_path, &k) == MAMORI_OK ? k : NULL;
}

void dev_log_key_give(struct mamori_device *d, struct crypto_key *k)
{
    if (k != d->log_key)
        crypto_key_free(k);
}

/* Appends a signed, chained record to the local log (synced) and queues
 * it for the hub (never dropped from the outbox). */
void dev_log_append(struct mamori_device *d, const char *type, const char *data_json)
{
    char line[DEVLOG_LINE_MAX + 1];
    struct devlog_rec r;
    if (!d->log_on || d->wiped)
        return;
    struct crypto_key *k = dev_log_key_take(d);
    enum mamori_err brc = k ? devlog_build(k, d->log_n + 1, (int64_t)dev_wall_ms(), type, data_json,
                                           d->log_prev, line, &r)
                            : MAMORI_ERR_CRYPTO;
    dev_log_key_give(d, k);
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
    if (dev_queue(d, OUTBOX_LOG, (const char *const[]){line}, 1) == MAMORI_OK)
        d->st.log_records++;
}

/* A security event the device records itself (never dropped). */
void dev_security_event(struct mamori_device *d, const char *type, const char *reason)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"type\":\"%s\",\"reason\":\"%s\"}", type, reason);
    if (dev_queue(d, OUTBOX_EV, (const char *const[]){body}, 1) == MAMORI_OK)
        d->st.events_sent++;
    snprintf(body, sizeof(body), "{\"reason\":\"%s\"}", reason);
    dev_log_append(d, type, body);
}

/* T12-L2a, T12-L4a: what others did to the log files goes into the log
 * itself and to the hub as a "log_access" event (never dropped). At most
 * one report per LOG_ACCESS_EVERY_MS, covering everything since the last:
 * someone reading the log in a loop cannot flood the outbox. */
void dev_log_watch_step(struct mamori_device *d, uint64_t now)
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
            dev_security_event(d, "log_watch_unavailable", "log directory gone and not made again");
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
    if (dev_queue(d, OUTBOX_EV, (const char *const[]){body}, 1) == MAMORI_OK)
        d->st.events_sent++;
    snprintf(body, sizeof(body), "{\"files\":[%s]}", files);
    dev_log_append(d, "log_access", body);
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
    dev_log_append(d, type, data_json);
    return d->log_n > before ? MAMORI_OK : MAMORI_ERR_INVAL;
}
