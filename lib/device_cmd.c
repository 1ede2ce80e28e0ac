/*
 * lib/device_cmd.c - the signed commands a device takes from the hub
 * (common/cmd.h): verification, single use (replays are refused and
 * answered with the first outcome), the results, and the commands that
 * change the device's state: lock, unlock, quarantine, release, self-test,
 * wipe, notice. Settings (lib/device_config.c), rotation
 * (lib/device_rotate.c) and updates (lib/device_update.c) have their own
 * files; this one hands their commands over.
 */
#include <mosquitto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cmd.h"
#include "common/crypto.h"
#include "common/fsutil.h"
#include "common/json.h"
#include "common/notice.h"
#include "lib/devstate.h"
#include "lib/device_priv.h"
#include "lib/logwatch.h"
#include "lib/outbox.h"
#include "lib/update.h"
#include "mamori/device.h"

void dev_send_result(struct mamori_device *d, const struct cmd *c, const char *status,
                     const char *error, const char *detail_json)
{
    char body[4096];
    int n = snprintf(body, sizeof(body),
                     "{\"cmd\":\"%s\",\"type\":\"%s\",\"status\":\"%s\",\"error\":\"%s\","
                     "\"detail\":%s}",
                     c->id, cmd_type_name(c->type), status, error ? error : "",
                     detail_json ? detail_json : "{}");
    if (n > 0 && (size_t)n < sizeof(body) &&
        dev_publish(d, d->topic_res, &d->res_seq, body) == MAMORI_OK)
        d->st.command_results++;
}

/* T01-L1c: the self-test command checks what the device's security rests
 * on (private key, certificate, storage, clock) and reports it. */
void dev_self_test(struct mamori_device *d, char *detail, size_t n, bool *pass)
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
        cert_ok ? (long)((crypto_cert_not_after(c) - (time_t)(dev_wall_ms() / 1000)) / 86400) : -1;
    struct outbox_stats os = {0};
    bool outbox_ok = !d->ob || outbox_stats(d->ob, &os) == MAMORI_OK;
    bool clock_ok = dev_wall_ms() > 1700000000000ULL;
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
void dev_wipe(struct mamori_device *d)
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
    dev_download_end(d); /* an update under way ends; its token is wiped */
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

/* A verified command is single-use whatever its outcome: one that failed
 * or was refused must not run when played again later, when it might
 * succeed (a rollback once there is something to roll back to). */
void dev_consume(struct mamori_device *d, const struct cmd *c, const char *outcome)
{
    char prev[16];
    if (devstate_accept(d->ds, c->id, c->exp, (int64_t)dev_wall_ms(), outcome, NULL, false, prev) !=
        MAMORI_OK)
        d->st.outbox_errors++;
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
void dev_notice_load(struct mamori_device *d)
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
        dev_security_event(d, "notice_unreadable", "STATE/notice.json does not parse");
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
        dev_send_result(d, c, "refused", "replay", NULL);
        dev_security_event(d, "command_replayed", c->id);
        return;
    }
    if (notice_parse(c->args, strlen(c->args), &n)) {
        dev_consume(d, c, "refused");
        d->st.commands_refused++;
        dev_send_result(d, c, "refused", "invalid notice", NULL);
        return;
    }
    if (fs_path(p, sizeof(p), d->state_dir, "notice.json") ||
        fs_write_atomic(p, c->args, strlen(c->args), 0600)) {
        dev_consume(d, c, "failed");
        dev_send_result(d, c, "failed", "cannot keep the notice", NULL);
        return;
    }
    dev_consume(d, c, "ok");
    d->st.commands_accepted++;
    notice_keep(d, c->args, &n);
    snprintf(body, sizeof(body),
             "{\"fw_version\":\"%s\",\"advisories\":%llu,\"worst\":\"%s\",\"support_end\":%lld}",
             n.fw_version, (unsigned long long)d->st.advisories, notice_worst(&n),
             (long long)n.support_end);
    dev_log_append(d, "notice", body);
    dev_send_result(d, c, "ok", "", NULL);
    if (d->on_command)
        d->on_command(d, MAMORI_CMD_NOTICE, d->on_command_arg);
}

/* The commands that change the device's state (lock, unlock, quarantine,
 * release, wipe), test it (self-test) or rotate its key (rotate, cert):
 * the id and the state change commit together. */
static void state_command(struct mamori_device *d, const struct cmd *c)
{
    enum mamori_err rc;
    const char *flag = NULL;
    bool value = false, pass = true;
    char detail[2048] = "{}", prev[16], new_fp[CRYPTO_FP_HEX_LEN] = "";
    json_t *cargs = NULL;
    const char *cert_pem = NULL;
    switch (c->type) {
    case CMD_ROTATE: {
        /* A replayed "rotate" makes no new key; see the replay answer. */
        bool seen = devstate_seen(d->ds, c->id, prev);
        if ((rc = dev_rotate_prepare(d, !seen, detail, sizeof(detail))) && !seen) {
            dev_consume(d, c, "failed");
            dev_send_result(d, c, "failed", mamori_strerror(rc), NULL);
            return;
        }
        break;
    }
    case CMD_CERT:
        if ((rc = dev_cert_check(d, c, &cargs, &cert_pem, new_fp))) {
            json_decref(cargs);
            if (!devstate_seen(d->ds, c->id, prev))
                dev_consume(d, c, "refused");
            d->st.commands_refused++;
            dev_send_result(d, c, "refused", mamori_strerror(rc), NULL);
            dev_security_event(d, "certificate_refused", mamori_strerror(rc));
            return;
        }
        snprintf(detail, sizeof(detail), "{\"fp\":\"%s\"}", new_fp);
        break;
    case CMD_LOCK:
    case CMD_UNLOCK:
        flag = "locked";
        value = c->type == CMD_LOCK;
        break;
    case CMD_QUARANTINE:
    case CMD_RELEASE:
        flag = "quarantined";
        value = c->type == CMD_QUARANTINE;
        break;
    case CMD_SELF_TEST:
        dev_self_test(d, detail, sizeof(detail), &pass);
        break;
    default:
        break;
    }
    /* The id and the state change commit together: a replay changes
     * nothing and is answered with the first outcome. */
    rc = devstate_accept(d->ds, c->id, c->exp, (int64_t)dev_wall_ms(), pass ? "ok" : "failed", flag,
                         value, prev);
    if (rc == MAMORI_ERR_EXISTS) {
        json_decref(cargs);
        d->st.commands_refused++;
        char pd[2200];
        /* A repeated "rotate" whose first answer was lost gets the CSR
         * again (same pending key), so the hub can go on. */
        if (c->type == CMD_ROTATE && strcmp(prev, "ok") == 0 && detail[0] == '{' &&
            detail[1] == '"')
            snprintf(pd, sizeof(pd), "{\"first_outcome\":\"%s\",%s", prev, detail + 1);
        else
            snprintf(pd, sizeof(pd), "{\"first_outcome\":\"%s\"}", prev);
        dev_send_result(d, c, "refused", "replay", pd);
        dev_security_event(d, "command_replayed", c->id);
        return;
    }
    if (rc) {
        json_decref(cargs);
        dev_send_result(d, c, "failed", mamori_strerror(rc), NULL);
        return;
    }
    if (c->type == CMD_CERT) {
        rc = dev_cert_switch(d, cert_pem);
        json_decref(cargs);
        if (rc) {
            dev_send_result(d, c, "failed", mamori_strerror(rc), NULL);
            dev_security_event(d, "certificate_switch_failed", mamori_strerror(rc));
            return;
        }
    }
    d->st.commands_accepted++;
    char logd[128];
    snprintf(logd, sizeof(logd), "{\"cmd\":\"%s\",\"type\":\"%s\",\"status\":\"%s\"}", c->id,
             cmd_type_name(c->type), pass ? "ok" : "failed");
    dev_log_append(d, "command", logd);
    dev_send_result(d, c, pass ? "ok" : "failed", "", detail);
    if (d->on_command)
        d->on_command(d, (enum mamori_command)c->type, d->on_command_arg);
    /* The erase runs from mamori_device_step, outside libmosquitto's
     * callback (which holds the client's locks). */
    if (c->type == CMD_WIPE)
        d->wipe_pending = true;
}

/* A command from the hub (on_message in lib/device.c): its signature, signer,
 * addressee and validity first, then each kind to its handler. */
void dev_on_command(struct mamori_device *d, const void *payload, size_t len)
{
    struct cmd_msg m;
    struct cmd c;
    d->st.commands_received++;
    if (cmd_msg_parse(payload, len, &m)) {
        dev_security_event(d, "command_rejected", "malformed");
        return;
    }
    /* Unauthenticated input gets no answer beyond the local record. */
    if (!d->trust_pem || cmd_msg_verify(&m, d->trust_pem, d->signer_fp) ||
        cmd_parse(m.text, m.text_len, &c)) {
        cmd_msg_free(&m);
        d->st.commands_refused++;
        dev_security_event(d, "command_rejected", "signature or signer not valid");
        return;
    }
    cmd_msg_free(&m);
    enum mamori_err rc = cmd_check(&c, d->id, (int64_t)dev_wall_ms());
    if (rc) {
        d->st.commands_refused++;
        dev_send_result(d, &c, "refused",
                        rc == MAMORI_ERR_EXPIRED     ? "expired"
                        : rc == MAMORI_ERR_FORBIDDEN ? "wrong device"
                                                     : "validity too long",
                        NULL);
        return;
    }
    if (!d->ds) {
        dev_send_result(d, &c, "refused", "no state directory", NULL);
        return;
    }
    if (c.type == CMD_CONFIG || c.type == CMD_CONFIG_ROLLBACK) {
        dev_config_command(d, &c);
        return;
    }
    if (c.type == CMD_UPDATE) {
        dev_update_command(d, &c);
        return;
    }
    if (c.type == CMD_NOTICE) {
        notice_command(d, &c);
        return;
    }
    state_command(d, &c);
}
