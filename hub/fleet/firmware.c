/*
 * hub/fleet/firmware.c - the firmware repository (see firmware.h); P-UPD.
 */
#include "hub/device/device.h"
#include "hub/fleet/firmware.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/crypto.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "common/upmeta.h"
#include "common/cmd.h"
#include "common/json.h"
#include "common/notice.h"
#include "common/proto.h"
#include "hub/device/lifecycle.h"

struct fw_upload {
    struct hub *h;
    struct principal who;
    struct fw_release_rec rel;
    char part[HUB_PATH_MAX + 80], final[HUB_PATH_MAX + 80];
    int fd;
    uint64_t got;
    bool too_big;
    struct crypto_sha256_ctx *sha;
};

static bool is_admin(const struct principal *who)
{
    return who->role == ROLE_ADMIN;
}

/* The newest root, parsed (MAMORI_ERR_NOTFOUND when none). Caller holds
 * the lock. */
static enum mamori_err newest_root(struct hub *h, struct upmeta_root *r)
{
    char *doc = NULL;
    enum mamori_err rc = store_fw_root_latest(h->store, &doc);
    if (!rc)
        rc = upmeta_root_first(doc, strlen(doc), INT64_MIN, r, NULL, 0);
    free(doc);
    return rc;
}

enum mamori_err hub_op_fw_root_add(struct hub *h, const struct principal *who, const char *doc,
                                   json_t **out, struct op_err *e)
{
    struct upmeta_root prev, r;
    char detail[96];
    *out = NULL;
    if (!is_admin(who))
        return MAMORI_ERR_FORBIDDEN;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = newest_root(h, &prev);
    int64_t now = hub_now_ms();
    if (rc == MAMORI_ERR_NOTFOUND)
        rc = upmeta_root_first(doc, strlen(doc), now, &r, e->msg, sizeof(e->msg));
    else if (!rc)
        rc = upmeta_root_next(&prev, doc, strlen(doc), true, now, &r, e->msg, sizeof(e->msg));
    if (rc && rc != MAMORI_ERR_DB) {
        pthread_mutex_unlock(&h->lock);
        return rc == MAMORI_ERR_NOMEM ? rc : MAMORI_ERR_VERIFY;
    }
    snprintf(detail, sizeof(detail), "{\"version\":%llu}", (unsigned long long)r.version);
    if (!rc && !(rc = store_begin(h->store))) {
        rc = store_fw_root_add(h->store, r.version, r.expires, doc, who->name, now);
        if (rc)
            store_rollback(h->store);
        else
            rc = hub_commit_audited(h, who, "fw_root_added", "", "", detail);
    }
    pthread_mutex_unlock(&h->lock);
    if (!rc)
        *out = json_pack("{s:I, s:I, s:i, s:i}", "version", (json_int_t)r.version, "expires",
                         (json_int_t)r.expires, "root_threshold", (int)r.root.threshold,
                         "release_threshold", (int)r.release.threshold);
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}

static bool root_item(uint64_t version, int64_t expires, const char *doc, void *arg)
{
    (void)doc;
    json_array_append_new(arg, json_pack("{s:I, s:I}", "version", (json_int_t)version, "expires",
                                         (json_int_t)expires));
    return true;
}

/* A list for staff: {key: [...]}, filled by fill under the hub lock. */
static enum mamori_err staff_list(struct hub *h, const struct principal *who, const char *key,
                                  enum mamori_err (*fill)(struct hub *, const char *, json_t *),
                                  const char *arg, json_t **out)
{
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    json_t *a = json_array();
    if (!a)
        return MAMORI_ERR_NOMEM;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = fill(h, arg, a);
    pthread_mutex_unlock(&h->lock);
    if (rc) {
        json_decref(a);
        return rc;
    }
    *out = json_pack("{s:o}", key, a);
    return *out ? MAMORI_OK : MAMORI_ERR_NOMEM;
}

static enum mamori_err fill_roots(struct hub *h, const char *arg, json_t *a)
{
    (void)arg;
    return store_fw_roots(h->store, root_item, a);
}

enum mamori_err hub_op_fw_roots(struct hub *h, const struct principal *who, json_t **out)
{
    return staff_list(h, who, "roots", fill_roots, NULL, out);
}

static json_t *release_json(const struct fw_release_rec *r)
{
    return json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:b, s:I, s:s}", "sha256", r->sha256,
                     "model", r->model, "fw_version", r->fw_version, "security_version",
                     (json_int_t)r->security_version, "floor", (json_int_t)r->floor, "size",
                     (json_int_t)r->size, "expires", (json_int_t)r->expires, "image",
                     r->image_at != 0, "retired_at", (json_int_t)r->retired_at, "added_by",
                     r->added_by);
}

enum mamori_err hub_op_fw_release_add(struct hub *h, const struct principal *who, const char *doc,
                                      json_t **out, struct op_err *e)
{
    struct upmeta_root root;
    struct upmeta_release m;
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = newest_root(h, &root);
    if (rc == MAMORI_ERR_NOTFOUND) {
        pthread_mutex_unlock(&h->lock);
        SET_ERR(e, "no firmware root yet: an administrator adds one first");
        return MAMORI_ERR_STATE;
    }
    int64_t now = hub_now_ms();
    if (!rc && (rc = upmeta_root_current(&root, now)))
        SET_ERR(e, "the newest root has expired: add the next one");
    else if (!rc &&
             (rc = upmeta_release_verify(&root, doc, strlen(doc), now, &m, e->msg, sizeof(e->msg))))
        rc = rc == MAMORI_ERR_NOMEM ? rc : MAMORI_ERR_VERIFY;
    struct fw_release_rec rec;
    memset(&rec, 0, sizeof(rec));
    if (!rc) {
        snprintf(rec.sha256, sizeof(rec.sha256), "%s", m.sha256);
        snprintf(rec.model, sizeof(rec.model), "%s", m.model);
        snprintf(rec.fw_version, sizeof(rec.fw_version), "%s", m.fw_version);
        rec.security_version = m.security_version;
        rec.floor = m.floor;
        rec.size = m.size;
        rec.expires = m.expires;
        rec.doc = doc;
        snprintf(rec.added_by, sizeof(rec.added_by), "%s", who->name);
        rec.added_at = now;
    }
    if (!rc && !(rc = store_begin(h->store))) {
        rc = store_fw_release_add(h->store, &rec);
        if (rc) {
            store_rollback(h->store);
            if (rc == MAMORI_ERR_EXISTS)
                SET_ERR(e, "this image, or %s %s, is in the repository already", m.model,
                        m.fw_version);
        } else {
            char detail[256];
            snprintf(detail, sizeof(detail),
                     "{\"model\":\"%s\",\"fw_version\":\"%s\",\"security_version\":%llu}", m.model,
                     m.fw_version, (unsigned long long)m.security_version);
            rc = hub_commit_audited(h, who, "fw_release_added", m.sha256, "", detail);
        }
    }
    pthread_mutex_unlock(&h->lock);
    if (!rc)
        *out = release_json(&rec);
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}

static bool release_item(const struct fw_release_rec *r, void *arg)
{
    json_array_append_new(arg, release_json(r));
    return true;
}

static enum mamori_err fill_releases(struct hub *h, const char *model, json_t *a)
{
    return store_fw_releases(h->store, model, release_item, a);
}

enum mamori_err hub_op_fw_releases(struct hub *h, const struct principal *who, const char *model,
                                   json_t **out)
{
    return staff_list(h, who, "releases", fill_releases, model, out);
}

enum mamori_err hub_op_fw_retire(struct hub *h, const struct principal *who, const char *sha256,
                                 const char *reason, json_t **out, struct op_err *e)
{
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_begin(h->store);
    if (!rc) {
        rc = store_fw_release_mark(h->store, sha256, true, reason, hub_now_ms());
        if (rc)
            store_rollback(h->store);
        else
            rc = hub_commit_audited(h, who, "fw_release_retired", sha256, reason, "{}");
    }
    pthread_mutex_unlock(&h->lock);
    if (rc == MAMORI_ERR_STATE)
        SET_ERR(e, "no such release, or retired already");
    if (!rc)
        *out = json_pack("{s:s, s:b}", "sha256", sha256, "retired", 1);
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}

/* --- image upload ------------------------------------------------------ */

enum mamori_err hub_fw_upload_begin(struct hub *h, const struct principal *who, const char *sha256,
                                    struct fw_upload **out, struct op_err *e)
{
    char dir[HUB_PATH_MAX + 16];
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    if (!upmeta_hex64(sha256)) {
        SET_ERR(e, "no such release");
        return MAMORI_ERR_NOTFOUND;
    }
    struct fw_upload *u = calloc(1, sizeof(*u));
    if (!u)
        return MAMORI_ERR_NOMEM;
    u->fd = -1;
    u->h = h;
    u->who = *who;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_fw_release_get(h->store, sha256, &u->rel, NULL);
    pthread_mutex_unlock(&h->lock);
    if (rc == MAMORI_ERR_NOTFOUND)
        SET_ERR(e, "no such release: add its signed document first");
    else if (!rc && (u->rel.image_at || u->rel.retired_at)) {
        SET_ERR(e, u->rel.retired_at ? "the release is retired" : "the image is there already");
        rc = MAMORI_ERR_STATE;
    }
    /* One upload per release at a time: the part file is created O_EXCL. */
    if (!rc && ((rc = fs_path(dir, sizeof(dir), h->cfg.data_dir, "firmware")) ||
                (rc = fs_mkdir_p(dir, 0700))))
        SET_ERR(e, "storage");
    if (!rc &&
        (snprintf(u->part, sizeof(u->part), "%s/%s.part", dir, sha256) >= (int)sizeof(u->part) ||
         snprintf(u->final, sizeof(u->final), "%s/%s", dir, sha256) >= (int)sizeof(u->final)))
        rc = MAMORI_ERR_TOOBIG;
    if (!rc) {
        u->fd = open(u->part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (u->fd < 0) {
            rc = errno == EEXIST ? MAMORI_ERR_STATE : MAMORI_ERR_IO;
            SET_ERR(e, "%s",
                    rc == MAMORI_ERR_STATE ? "an upload of this image is under way" : "storage");
        }
    }
    if (!rc)
        rc = crypto_sha256_begin(&u->sha);
    if (rc) {
        if (u->fd >= 0) {
            close(u->fd);
            unlink(u->part);
        }
        free(u);
        return rc;
    }
    *out = u;
    return MAMORI_OK;
}

enum mamori_err hub_fw_upload_write(struct fw_upload *u, const void *data, size_t n)
{
    if (u->too_big || n > u->rel.size - u->got) {
        u->too_big = true; /* refused at the end; nothing more is stored */
        return MAMORI_ERR_TOOBIG;
    }
    return crypto_sha256_write(u->sha, u->fd, data, n, &u->got);
}

void hub_fw_upload_abort(struct fw_upload *u)
{
    if (!u)
        return;
    if (u->fd >= 0) {
        close(u->fd);
        unlink(u->part);
    }
    crypto_sha256_abort(u->sha);
    free(u);
}

enum mamori_err hub_fw_upload_end(struct fw_upload *u, json_t **out, struct op_err *e)
{
    uint8_t hsum[CRYPTO_SHA256_LEN];
    char hex[CRYPTO_FP_HEX_LEN];
    struct hub *h = u->h;
    *out = NULL;
    if (u->too_big || u->got != u->rel.size) {
        SET_ERR(e, "the image is %s than the release says (%llu bytes)",
                u->too_big ? "larger" : "smaller", (unsigned long long)u->rel.size);
        hub_fw_upload_abort(u);
        return MAMORI_ERR_VERIFY;
    }
    enum mamori_err rc = fsync(u->fd) == 0 ? MAMORI_OK : MAMORI_ERR_IO;
    close(u->fd);
    u->fd = -1;
    enum mamori_err hr = crypto_sha256_end(u->sha, hsum);
    u->sha = NULL;
    if (!rc)
        rc = hr;
    crypto_hex(hsum, sizeof(hsum), hex);
    if (!rc && !crypto_ct_eq(hex, u->rel.sha256, 64)) {
        SET_ERR(e, "the image's SHA-256 is not the release's");
        rc = MAMORI_ERR_VERIFY;
    }
    if (!rc)
        rc = fs_rename_durable(u->part, u->final);
    if (rc) {
        unlink(u->part);
        free(u);
        return rc;
    }
    pthread_mutex_lock(&h->lock);
    if (!(rc = store_begin(h->store))) {
        rc = store_fw_release_mark(h->store, u->rel.sha256, false, NULL, hub_now_ms());
        if (rc)
            store_rollback(h->store);
        else
            rc = hub_commit_audited(h, &u->who, "fw_image_uploaded", u->rel.sha256, "", "{}");
    }
    pthread_mutex_unlock(&h->lock);
    if (!rc) {
        u->rel.image_at = hub_now_ms();
        *out = release_json(&u->rel);
    }
    free(u);
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}

/* --- deployment to a device -------------------------------------------- */

#define TOKEN_PREFIX "mmu_"

static void token_hash(const char *token, char out[CRYPTO_FP_HEX_LEN])
{
    uint8_t h[CRYPTO_SHA256_LEN];
    crypto_sha256(token, strlen(token), h);
    crypto_hex(h, sizeof(h), out);
}

static bool device_may_connect(const struct device_rec *d)
{
    enum lc_state st;
    return lc_state_parse(d->state, &st) && lc_access(st) != LC_ACCESS_DENY;
}

/* New code goes only to a device in full service (P-UPD): claimed (to
 * finish setup, T02-L1d) or active. A locked device (reported stolen,
 * T03-L2b) must not fetch it, nor one in quarantine, a stray one until its owner
 * confirms it (T01-L4b), nor a manufactured, revoked or decommissioned
 * one. Checked at every request: a download token stops working the
 * moment its device leaves these states, and works again on its return
 * (unlock, release, confirm) while it has not expired. */
static bool device_may_download(const struct device_rec *d)
{
    enum lc_state st;
    return lc_state_parse(d->state, &st) && lc_access(st) == LC_ACCESS_FULL;
}

/* Issues the update command for rel to device_id (T02-L1d: a device is
 * brought to the latest release right after setup this way). Lock held. */
enum mamori_err hub_fw_deploy_locked(struct hub *h, const struct principal *who,
                                     const struct fw_release_rec *rel, const char *device_id,
                                     const char *reason, int64_t ttl_ms, char command_id[33],
                                     struct op_err *e)
{
    struct device_rec d;
    struct command_rec c;
    uint8_t rnd[32];
    char token[4 + 2 * sizeof(rnd) + 1], th[CRYPTO_FP_HEX_LEN], args[512];
    if (!rel->image_at || rel->retired_at) {
        SET_ERR(e, "%s",
                rel->retired_at ? "the release is retired" : "the release has no image yet");
        return MAMORI_ERR_STATE;
    }
    enum mamori_err rc = store_device_get(h->store, device_id, &d);
    if (rc == MAMORI_ERR_NOTFOUND)
        SET_ERR(e, "no such device");
    if (!rc && strcmp(d.model, rel->model) != 0) {
        SET_ERR(e, "the release is for model %.64s, the device is a %.64s", rel->model, d.model);
        rc = MAMORI_ERR_INVAL;
    }
    if (!rc && !device_may_connect(&d)) {
        SET_ERR(e, "a device in state '%s' cannot receive commands", d.state);
        rc = MAMORI_ERR_STATE;
    }
    if (!rc && !(rc = crypto_random(rnd, sizeof(rnd)))) {
        memcpy(token, TOKEN_PREFIX, 4);
        crypto_hex(rnd, sizeof(rnd), token + 4);
        crypto_wipe(rnd, sizeof(rnd));
        token_hash(token, th);
        int n = snprintf(args, sizeof(args),
                         "{\"sha256\":\"%s\",\"url\":\"https://%s:%d/api/v1/updates\","
                         "\"token\":\"%s\"}",
                         rel->sha256, h->cfg.listen_addr, h->api_port, token);
        if (n < 0 || (size_t)n >= sizeof(args))
            rc = MAMORI_ERR_TOOBIG;
        if (!rc)
            rc =
                store_update_token_add(h->store, th, device_id, rel->sha256, hub_now_ms() + ttl_ms);
        if (!rc)
            rc = hub_command_issue(h, who, device_id, CMD_UPDATE, ttl_ms, reason, args, &c);
        if (!rc) {
            memcpy(command_id, c.id, 33);
            /* the owner hears of it (events of their device) */
            hub_event(h, device_id, "update_sent", "info",
                      "{\"fw_version\":\"%s\",\"sha256\":\"%s\",\"command\":\"%s\"}",
                      rel->fw_version, rel->sha256, c.id);
        }
        crypto_wipe(token, sizeof(token));
        crypto_wipe(args, sizeof(args));
    }
    return rc;
}

enum mamori_err hub_op_fw_deploy(struct hub *h, const struct principal *who, const char *sha256,
                                 const char *device_id, const char *reason, int64_t ttl_s,
                                 json_t **out, struct op_err *e)
{
    struct fw_release_rec rel;
    char cid[33];
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    int64_t ttl_ms = ttl_s > 0 ? ttl_s * 1000 : 7 * 24 * 3600 * 1000LL;
    if (ttl_ms < 10000 || ttl_ms > CMD_MAX_TTL_MS) {
        SET_ERR(e, "ttl_s must be 10 s to 30 days");
        return MAMORI_ERR_INVAL;
    }
    if (!upmeta_hex64(sha256) || !proto_device_id_valid(device_id, strlen(device_id)))
        return MAMORI_ERR_NOTFOUND;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_fw_release_get(h->store, sha256, &rel, NULL);
    if (rc == MAMORI_ERR_NOTFOUND)
        SET_ERR(e, "no such release");
    if (!rc)
        rc = hub_fw_deploy_locked(h, who, &rel, device_id, reason, ttl_ms, cid, e);
    pthread_mutex_unlock(&h->lock);
    if (!rc)
        *out = json_pack("{s:s, s:s, s:s, s:s}", "command", cid, "device", device_id, "sha256",
                         sha256, "fw_version", rel.fw_version);
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}

enum mamori_err hub_fw_token_check(struct hub *h, const char *token, char sha256[65],
                                   char device_id[24])
{
    char th[CRYPTO_FP_HEX_LEN];
    int64_t exp = 0;
    struct device_rec d;
    struct fw_release_rec rel;
    if (strncmp(token, TOKEN_PREFIX, 4) != 0 || strlen(token) != 4 + 64)
        return MAMORI_ERR_AUTH;
    token_hash(token, th); /* looked up by hash: no timing on the secret */
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_update_token_get(h->store, th, device_id, sha256, &exp);
    if (!rc && exp <= hub_now_ms())
        rc = MAMORI_ERR_EXPIRED;
    if (!rc && (rc = store_device_get(h->store, device_id, &d)) == MAMORI_OK &&
        !device_may_download(&d))
        rc = MAMORI_ERR_FORBIDDEN; /* locked, quarantined, stray, revoked, ... since */
    if (!rc && (rc = store_fw_release_get(h->store, sha256, &rel, NULL)) == MAMORI_OK &&
        (rel.retired_at || !rel.image_at))
        rc = MAMORI_ERR_STATE;
    pthread_mutex_unlock(&h->lock);
    if (rc == MAMORI_ERR_FORBIDDEN)
        log_info("update token of %s refused: the device may not receive new code", device_id);
    return rc == MAMORI_ERR_DB || rc == MAMORI_OK || rc == MAMORI_ERR_FORBIDDEN ? rc
                                                                                : MAMORI_ERR_AUTH;
}

static bool root_doc_item(uint64_t version, int64_t expires, const char *doc, void *arg)
{
    (void)version, (void)expires;
    json_t *d = NULL;
    if (json_parse_untrusted(doc, strlen(doc), UPMETA_DOC_MAX, &d, NULL, 0) == MAMORI_OK)
        json_array_append_new(arg, d);
    return true;
}

enum mamori_err hub_fw_device_roots(struct hub *h, json_t **out)
{
    json_t *a = json_array();
    *out = NULL;
    if (!a)
        return MAMORI_ERR_NOMEM;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_fw_roots(h->store, root_doc_item, a);
    pthread_mutex_unlock(&h->lock);
    if (rc) {
        json_decref(a);
        return rc;
    }
    *out = json_pack("{s:o}", "roots", a);
    return *out ? MAMORI_OK : MAMORI_ERR_NOMEM;
}

enum mamori_err hub_fw_device_release(struct hub *h, const char *sha256, json_t **out)
{
    struct fw_release_rec rel;
    char *doc = NULL;
    *out = NULL;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_fw_release_get(h->store, sha256, &rel, &doc);
    pthread_mutex_unlock(&h->lock);
    if (!rc)
        rc = json_parse_untrusted(doc, strlen(doc), UPMETA_DOC_MAX, out, NULL, 0);
    free(doc);
    return rc;
}

enum mamori_err hub_fw_image_path(struct hub *h, const char *sha256, char *out, size_t n)
{
    int k = snprintf(out, n, "%s/firmware/%s", h->cfg.data_dir, sha256);
    return upmeta_hex64(sha256) && k > 0 && (size_t)k < n ? MAMORI_OK : MAMORI_ERR_NOTFOUND;
}

/* --- advisories and support periods (T02-L2b) -------------------------- */

static bool affects(const char *affected_json, const char *fw_version)
{
    json_t *a = json_loads(affected_json, 0, NULL);
    bool hit = false;
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        const char *s = json_string_value(v);
        hit |= s && strcmp(s, fw_version) == 0;
    }
    json_decref(a);
    return hit;
}

static json_t *advisory_json(const struct advisory_rec *a)
{
    return json_pack("{s:I, s:s, s:s, s:s, s:o, s:s, s:s, s:I}", "id", (json_int_t)a->id, "model",
                     a->model, "title", a->title, "severity", a->severity, "affected",
                     json_loads(a->affected, 0, NULL), "fixed_version", a->fixed_version,
                     "published_by", a->published_by, "published_at", (json_int_t)a->published_at);
}

/* --- notices: what a device is told of its own standing (T02-L2b) ------ */

static const struct principal NOTICE_FROM = {
    .user_id = 0, .name = "advisories", .role = ROLE_ADMIN};

struct notice_acc {
    const char *fw;
    json_t *arr;
    uint64_t more;
};

static bool notice_one(const struct advisory_rec *a, void *arg)
{
    struct notice_acc *x = arg;
    if (!affects(a->affected, x->fw))
        return true;
    if (json_array_size(x->arr) == NOTICE_ADVISORIES)
        x->more++;
    else
        json_array_append_new(x->arr, json_pack("{s:I, s:s, s:s, s:s}", "id", (json_int_t)a->id,
                                                "severity", a->severity, "title", a->title,
                                                "fixed_version", a->fixed_version));
    return true;
}

/* Sends device_id a signed notice (common/notice.h): the advisories on the
 * version it runs (newest first) and its model's support end. Lock held. */
static void notice_send(struct hub *h, const char *device_id, const char *why)
{
    struct device_rec d;
    struct command_rec c;
    int64_t end = 0;
    if (store_device_get(h->store, device_id, &d) != MAMORI_OK || !device_may_connect(&d))
        return;
    if (store_support_get(h->store, d.model, &end) != MAMORI_OK)
        end = 0;
    struct notice_acc x = {d.fw_version, json_array(), 0};
    if (x.arr && d.fw_version[0])
        log_if_err(store_advisories(h->store, d.model, notice_one, &x));
    json_t *o = x.arr ? json_pack("{s:s, s:I, s:o, s:I}", "fw_version", d.fw_version, "support_end",
                                  (json_int_t)end, "advisories", x.arr, "more", (json_int_t)x.more)
                      : NULL;
    char *args = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    struct notice check;
    /* what the device will parse, checked here first */
    if (!args || notice_parse(args, strlen(args), &check) != MAMORI_OK)
        log_err("notice for %s could not be built", device_id);
    else
        log_if_err(hub_command_issue(h, &NOTICE_FROM, device_id, CMD_NOTICE, CMD_MAX_TTL_MS, why,
                                     args, &c));
    free(args);
}

static bool tell_one(const char *id, void *arg)
{
    struct hub *h = arg;
    notice_send(h, id, "support period");
    return true;
}

struct flag {
    struct hub *h;
    const struct advisory_rec *a;
    int n;
};

static bool flag_one(const char *id, void *arg)
{
    struct flag *f = arg;
    bool grave = strcmp(f->a->severity, "high") == 0 || strcmp(f->a->severity, "critical") == 0;
    hub_event(f->h, id, "device_vulnerable", grave ? "alert" : "warning",
              "{\"advisory\":%lld,\"severity\":\"%s\",\"fixed_version\":\"%s\"}",
              (long long)f->a->id, f->a->severity, f->a->fixed_version);
    f->n++;
    return true;
}

static bool flag_and_tell(const char *id, void *arg)
{
    struct flag *f = arg;
    (void)flag_one(id, arg);
    notice_send(f->h, id, "advisory");
    return true;
}

enum mamori_err hub_op_advisory_add(struct hub *h, const struct principal *who, const json_t *in,
                                    json_t **out, struct op_err *e)
{
    struct advisory_rec a;
    const char *model, *title, *sev, *fixed = "";
    json_t *aff = json_object_get(in, "affected");
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    memset(&a, 0, sizeof(a));
    bool ok =
        json_get_str(in, "model", UPMETA_NAME_MAX, &model) && upmeta_name_ok(model) &&
        json_get_str(in, "title", sizeof(a.title) - 1, &title) &&
        json_get_str(in, "severity", 15, &sev) &&
        (!strcmp(sev, "low") || !strcmp(sev, "medium") || !strcmp(sev, "high") ||
         !strcmp(sev, "critical")) &&
        (!json_object_get(in, "fixed_version") ||
         (json_get_str(in, "fixed_version", UPMETA_NAME_MAX, &fixed) && upmeta_name_ok(fixed))) &&
        json_is_array(aff) && json_array_size(aff) > 0 && json_array_size(aff) <= 20;
    size_t i;
    json_t *v;
    json_array_foreach(aff, i, v) ok =
        ok && json_is_string(v) && upmeta_name_ok(json_string_value(v));
    char *affected = ok ? json_dumps(aff, JSON_COMPACT) : NULL;
    if (!ok || !affected || strlen(affected) >= sizeof(a.affected)) {
        free(affected);
        SET_ERR(e, "need model, title, severity (low|medium|high|critical), affected: [versions] "
                   "(1..20) and optionally fixed_version; names of [A-Za-z0-9._+~-]");
        return MAMORI_ERR_INVAL;
    }
    snprintf(a.model, sizeof(a.model), "%s", model);
    snprintf(a.title, sizeof(a.title), "%s", title);
    snprintf(a.severity, sizeof(a.severity), "%s", sev);
    snprintf(a.affected, sizeof(a.affected), "%s", affected);
    snprintf(a.fixed_version, sizeof(a.fixed_version), "%s", fixed);
    snprintf(a.published_by, sizeof(a.published_by), "%s", who->name);
    a.published_at = hub_now();
    free(affected);
    struct flag f = {h, &a, 0};
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_begin(h->store);
    if (!rc) {
        char target[32], detail[300];
        rc = store_advisory_add(h->store, &a);
        snprintf(target, sizeof(target), "advisory:%lld", (long long)a.id);
        snprintf(detail, sizeof(detail), "{\"model\":\"%s\",\"severity\":\"%s\"}", a.model,
                 a.severity);
        if (rc)
            store_rollback(h->store);
        else
            rc = hub_commit_audited(h, who, "advisory_published", target, a.title, detail);
    }
    json_array_foreach(aff, i, v) if (!rc)
        log_if_err(store_devices_on(h->store, a.model, json_string_value(v), flag_and_tell, &f));
    pthread_mutex_unlock(&h->lock);
    if (!rc && (*out = advisory_json(&a)))
        json_object_set_new(*out, "devices_flagged", json_integer(f.n));
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}

static bool advisory_item(const struct advisory_rec *a, void *arg)
{
    json_array_append_new(arg, advisory_json(a));
    return true;
}

enum mamori_err hub_op_advisories(struct hub *h, const char *model, json_t **out)
{
    json_t *arr = json_array();
    *out = NULL;
    if (!arr)
        return MAMORI_ERR_NOMEM;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_advisories(h->store, model, advisory_item, arr);
    pthread_mutex_unlock(&h->lock);
    if (rc) {
        json_decref(arr);
        return rc;
    }
    *out = json_pack("{s:o}", "advisories", arr);
    return *out ? MAMORI_OK : MAMORI_ERR_NOMEM;
}

enum mamori_err hub_op_support_set(struct hub *h, const struct principal *who, const char *model,
                                   int64_t end_s, json_t **out, struct op_err *e)
{
    char detail[64];
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    if (!upmeta_name_ok(model) || end_s <= 0 || end_s > 32503680000LL) {
        SET_ERR(e, "a model name and an end date (Unix seconds, before the year 3000)");
        return MAMORI_ERR_INVAL;
    }
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_begin(h->store);
    if (!rc) {
        rc = store_support_set(h->store, model, end_s, hub_now());
        snprintf(detail, sizeof(detail), "{\"support_end\":%lld}", (long long)end_s);
        if (rc)
            store_rollback(h->store);
        else
            rc = hub_commit_audited(h, who, "support_end_set", model, "", detail);
    }
    if (!rc) /* every device of the model hears of it */
        log_if_err(store_devices_on(h->store, model, NULL, tell_one, h));
    pthread_mutex_unlock(&h->lock);
    if (!rc)
        *out = json_pack("{s:s, s:I}", "model", model, "support_end", (json_int_t)end_s);
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}

enum mamori_err hub_op_support_get(struct hub *h, const char *model, json_t **out)
{
    int64_t end = 0;
    *out = NULL;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc =
        upmeta_name_ok(model) ? store_support_get(h->store, model, &end) : MAMORI_ERR_NOTFOUND;
    pthread_mutex_unlock(&h->lock);
    if (!rc)
        *out = json_pack("{s:s, s:I, s:b}", "model", model, "support_end", (json_int_t)end,
                         "supported", end > hub_now());
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}

struct annot {
    const char *fw;
    json_t *arr;
};

static bool annot_one(const struct advisory_rec *a, void *arg)
{
    struct annot *x = arg;
    if (affects(a->affected, x->fw))
        json_array_append_new(x->arr, json_pack("{s:I, s:s, s:s, s:s}", "id", (json_int_t)a->id,
                                                "title", a->title, "severity", a->severity,
                                                "fixed_version", a->fixed_version));
    return true;
}

void hub_fw_annotate(struct hub *h, const struct device_rec *d, json_t *o)
{
    int64_t end;
    if (!o)
        return;
    json_object_set_new(o, "fw_version", json_string(d->fw_version));
    if (d->fw_version[0]) {
        struct annot x = {d->fw_version, json_array()};
        log_if_err(store_advisories(h->store, d->model, annot_one, &x));
        json_object_set_new(o, "advisories", x.arr);
    }
    if (store_support_get(h->store, d->model, &end) == MAMORI_OK) {
        json_object_set_new(o, "support_end", json_integer(end));
        json_object_set_new(o, "supported", json_boolean(end > hub_now()));
    }
}

struct reported {
    struct hub *h;
    const char *id, *fw;
    bool any; /* the model has advisories */
};

static bool reported_one(const struct advisory_rec *a, void *arg)
{
    struct reported *r = arg;
    r->any = true;
    if (affects(a->affected, r->fw)) {
        struct flag f = {r->h, a, 0};
        (void)flag_one(r->id, &f);
    }
    return true;
}

void hub_fw_reported(struct hub *h, const char *device_id, const char *fw_version)
{
    struct device_rec d;
    if (!upmeta_name_ok(fw_version) ||
        store_device_fw_set(h->store, device_id, fw_version) != MAMORI_OK ||
        store_device_get(h->store, device_id, &d) != MAMORI_OK)
        return; /* unchanged, or not a version name */
    struct reported r = {h, device_id, fw_version, false};
    log_if_err(store_advisories(h->store, d.model, reported_one, &r));
    int64_t end;
    /* a new version: what the device was told may no longer hold */
    if (r.any || store_support_get(h->store, d.model, &end) == MAMORI_OK)
        notice_send(h, device_id, "firmware version");
}

/* The firmware a device runs, as its update events say. */
static void on_update_event(struct hub *h, const char *device_id, const char *type,
                            const json_t *body)
{
    (void)type;
    const char *fw =
        json_string_value(json_object_get(json_object_get(body, "update"), "fw_version"));
    if (fw)
        hub_fw_reported(h, device_id, fw);
}

enum mamori_err firmware_register(struct hub *h)
{
    enum mamori_err rc;
    if ((rc = hub_on_device_event(h, "update_status", on_update_event)) ||
        (rc = hub_on_device_event(h, "update_committed", on_update_event)))
        return rc;
    return hub_on_device_view(h, hub_fw_annotate); /* P-UPD: version, advisories, support end */
}
