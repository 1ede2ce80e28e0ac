/*
 * lib/device_update.c - firmware updates on the device (P-UPD; lib/update.h,
 * docs/updates.md): the signed "update" command, the downloads (roots,
 * release, image; resumed from the bytes on disk), the command kept in
 * STATE/update/command.json across a power loss, the install, the trial
 * and its commit or rollback, and the periodic status report.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/cmd.h"
#include "common/crypto.h"
#include "common/fsutil.h"
#include "common/json.h"
#include "common/log.h"
#include "common/upmeta.h"
#include "lib/devstate.h"
#include "lib/device_priv.h"
#include "lib/fetch.h"
#include "lib/outbox.h"
#include "lib/update.h"
#include "mamori/device.h"

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
    if (dev_queue(d, OUTBOX_EV, (const char *const[]){body}, 1) == MAMORI_OK)
        d->st.events_sent++;
    dev_log_append(d, type, data);
}

void dev_download_end(struct mamori_device *d)
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
        dev_security_event(d, "update_state_unreadable",
                           "STATE/update/command.json does not parse");
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
    dev_send_result(d, &d->dl_cmd, status, error, detail);
    update_event(d, strcmp(status, "ok") == 0 ? "update_installed" : "update_failed",
                 "{\"sha256\":\"%s\",\"status\":\"%s\",\"error\":\"%s\"}", d->dl_sha, status,
                 error);
    dev_download_end(d);
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
        code = upd_offer(d->upd, roots, lens, n, release, rlen, (int64_t)dev_wall_ms());
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
    if (d->dl_cmd.exp <= (int64_t)dev_wall_ms()) {
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

/* Drives the download, and the health check of a slot on trial. */
void dev_update_step(struct mamori_device *d, uint64_t now)
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
            dev_self_test(d, detail, sizeof(detail), &pass);
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
void dev_update_command(struct mamori_device *d, const struct cmd *c)
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
        dev_send_result(d, c, "refused", "replay", detail);
        /* The hub's own re-send that crossed the result of the command
         * that just ended is answered the same, but is no attack. */
        if (strcmp(d->dl_last_id, c->id) == 0 && mamori_now_ms() - d->dl_last_ms < CROSSED_MS)
            return;
        d->st.commands_refused++;
        dev_security_event(d, "command_replayed", c->id);
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
        dev_consume(d, c, "refused");
        d->st.commands_refused++;
        dev_send_result(d, c, "refused", why, NULL);
        return;
    }
    d->dl_cmd_on = true;
    dev_consume(d, c, "started");
    d->st.commands_accepted++;
    update_event(d, "update_started", "{\"sha256\":\"%s\"}", d->dl_sha);
    d->dl_retried = false;
    download_begin(d);
}

/* At start: the boot loader's part for the built-in slots, then where the
 * last update stands. */
enum mamori_err dev_update_open(struct mamori_device *d, const struct mamori_device_opts *o)
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
