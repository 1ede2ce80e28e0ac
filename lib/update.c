/*
 * lib/update.c - the device's update engine (see update.h); P-UPD.
 */
#include "lib/update.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/json.h"

#define FAILED_MAX 64           /* releases remembered as failed */
#define SYNC_EVERY (1u << 20)   /* bytes between syncs of the image being written */
#define STATE_MAX  (192 * 1024) /* state.json: a release envelope and the failed list */

struct env { /* the boot loader's environment (built-in backend) */
    char primary[2], trial[2], fell_back[2];
    unsigned tries;
};

struct upd {
    char dir[4096], slots[4096], model[UPMETA_NAME_MAX + 1];
    uint64_t slot_max;
    unsigned trial_boots;
    struct upmeta_root root;
    char booted[2];
    /* state.json */
    enum upd_phase phase;
    char *release; /* envelope of the release under way (NULL: none) */
    struct upmeta_release rel;
    char target[2];
    uint64_t floor;
    char running_fw[UPMETA_NAME_MAX + 1], running_sha[CRYPTO_FP_HEX_LEN];
    uint64_t running_sv;
    enum upd_code last;
    size_t nfailed;
    char failed[FAILED_MAX][CRYPTO_FP_HEX_LEN];
    /* the download */
    int fd;
    uint64_t received;
    struct crypto_sha256_ctx *sha;
    uint64_t unsynced;
    int crash_n;
};

const char *upd_code_name(enum upd_code c)
{
    static const char *const names[] = {
        "ok",     "bad_signature", "expired",         "wrong_model", "below_floor",
        "digest", "oversize",      "failed_before",   "busy",        "io",
        "root",   "health",        "already_running", "crashed",
    };
    return (unsigned)c < sizeof(names) / sizeof(names[0]) ? names[c] : "unknown";
}

/* Tests: true when a simulated power loss happens after this step. */
static bool crashed(struct upd *u)
{
    return u->crash_n > 0 && --u->crash_n == 0;
}

void upd_crash_after(struct upd *u, int n)
{
    u->crash_n = n;
}

int upd_crash_pending(const struct upd *u)
{
    return u->crash_n;
}

static enum mamori_err slot_path(char *out, size_t n, const char *slots, const char *slot,
                                 const char *name)
{
    int k = snprintf(out, n, "%s/%s/%s", slots, slot, name);
    return k > 0 && (size_t)k < n ? MAMORI_OK : MAMORI_ERR_TOOBIG;
}

static const char *other(const char *slot)
{
    return strcmp(slot, "a") == 0 ? "b" : "a";
}

static bool valid_slot(const char *s)
{
    return strcmp(s, "a") == 0 || strcmp(s, "b") == 0;
}

/* A string member that may be empty (json_get_str refuses ""). */
static bool get_str0(const json_t *o, const char *key, size_t maxlen, const char **out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v) || json_string_length(v) > maxlen)
        return false;
    *out = json_string_value(v);
    return true;
}

/* --- the boot loader's environment (built-in backend) ------------------ */

static enum mamori_err env_read(const char *slots, struct env *e)
{
    char p[4200], *txt = NULL;
    size_t len;
    json_t *o = NULL;
    const char *pr = "a", *tr = "", *fb = "";
    uint64_t tries = 0;
    memset(e, 0, sizeof(*e));
    if (fs_path(p, sizeof(p), slots, "boot.json"))
        return MAMORI_ERR_TOOBIG;
    enum mamori_err rc = fs_read_file(p, 4096, &txt, &len);
    if (rc == MAMORI_ERR_NOTFOUND || (rc == MAMORI_ERR_IO && errno == ENOENT)) {
        snprintf(e->primary, sizeof(e->primary), "a");
        return MAMORI_OK; /* first boot: slot a */
    }
    if (rc)
        return rc;
    rc = json_parse_untrusted(txt, len, 4096, &o, NULL, 0);
    free(txt);
    if (rc || !json_get_str(o, "primary", 1, &pr) || !valid_slot(pr) ||
        !get_str0(o, "trial", 1, &tr) || (*tr && !valid_slot(tr)) ||
        !get_str0(o, "fell_back", 1, &fb) || (*fb && !valid_slot(fb)) ||
        !json_get_u64(o, "tries", &tries) || tries > 16) {
        json_decref(o);
        return MAMORI_ERR_PARSE;
    }
    snprintf(e->primary, sizeof(e->primary), "%s", pr);
    snprintf(e->trial, sizeof(e->trial), "%s", tr);
    snprintf(e->fell_back, sizeof(e->fell_back), "%s", fb);
    e->tries = (unsigned)tries;
    json_decref(o);
    return MAMORI_OK;
}

static enum mamori_err env_write(const char *slots, const struct env *e)
{
    char p[4200], buf[160];
    int n = snprintf(buf, sizeof(buf),
                     "{\"primary\":\"%s\",\"trial\":\"%s\",\"tries\":%u,\"fell_back\":\"%s\"}\n",
                     e->primary, e->trial, e->tries, e->fell_back);
    if (fs_path(p, sizeof(p), slots, "boot.json"))
        return MAMORI_ERR_TOOBIG;
    return fs_write_atomic(p, buf, (size_t)n, 0600);
}

enum mamori_err upd_boot(const char *slots_dir, char booted[2])
{
    char p[4200];
    struct env e;
    enum mamori_err rc;
    if ((rc = fs_mkdir_p(slots_dir, 0700)) || (rc = slot_path(p, sizeof(p), slots_dir, "a", "")) ||
        (rc = fs_mkdir_p(p, 0700)) || (rc = slot_path(p, sizeof(p), slots_dir, "b", "")) ||
        (rc = fs_mkdir_p(p, 0700)) || (rc = env_read(slots_dir, &e)))
        return rc;
    const char *boot = e.primary;
    if (e.trial[0] && e.tries > 0) {
        e.tries--; /* counted before the slot runs, as boot loaders do */
        boot = e.trial;
    } else if (e.trial[0]) {
        snprintf(e.fell_back, sizeof(e.fell_back), "%s", e.trial); /* it never came up */
        e.trial[0] = '\0';
    }
    snprintf(booted, 2, "%s", boot);
    if ((rc = env_write(slots_dir, &e)) || (rc = fs_path(p, sizeof(p), slots_dir, "booted")))
        return rc;
    return fs_write_atomic(p, booted, 1, 0600);
}

/* --- state.json -------------------------------------------------------- */

static enum mamori_err state_write(struct upd *u)
{
    char p[4200];
    json_t *f = json_array();
    for (size_t i = 0; f && i < u->nfailed; i++)
        json_array_append_new(f, json_string(u->failed[i]));
    json_t *o =
        f ? json_pack("{s:i, s:s, s:s, s:I, s:o, s:i, s:{s:s, s:I, s:s}}", "phase", (int)u->phase,
                      "release", u->release ? u->release : "", "target", u->target, "floor",
                      (json_int_t)u->floor, "failed", f, "last", (int)u->last, "running",
                      "fw_version", u->running_fw, "security_version", (json_int_t)u->running_sv,
                      "sha256", u->running_sha)
          : NULL;
    char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    enum mamori_err rc = txt ? fs_path(p, sizeof(p), u->dir, "state.json") : MAMORI_ERR_NOMEM;
    if (!rc)
        rc = fs_write_atomic(p, txt, strlen(txt), 0600);
    free(txt);
    return rc;
}

static enum mamori_err state_read(struct upd *u)
{
    char p[4200], *txt = NULL;
    size_t len;
    json_t *o = NULL;
    enum mamori_err rc = fs_path(p, sizeof(p), u->dir, "state.json");
    if (!rc)
        rc = fs_read_file(p, STATE_MAX, &txt, &len);
    if (rc)
        return rc;
    rc = json_parse_untrusted(txt, len, STATE_MAX, &o, NULL, 0);
    free(txt);
    if (rc)
        return rc;
    uint64_t phase = 0, last = 0, sv = 0;
    const char *rel = "", *target = "", *fw = "", *sha = "";
    json_t *run = json_object_get(o, "running"), *failed = json_object_get(o, "failed");
    if (!json_get_u64(o, "phase", &phase) || phase > UPD_TRIAL ||
        !get_str0(o, "release", UPMETA_DOC_MAX, &rel) || !json_get_str(o, "target", 1, &target) ||
        !valid_slot(target) || !json_get_u64(o, "floor", &u->floor) ||
        !json_get_u64(o, "last", &last) || !json_is_array(failed) ||
        json_array_size(failed) > FAILED_MAX ||
        !get_str0(run, "fw_version", UPMETA_NAME_MAX, &fw) ||
        !json_get_u64(run, "security_version", &sv) || !get_str0(run, "sha256", 64, &sha)) {
        json_decref(o);
        return MAMORI_ERR_PARSE;
    }
    u->phase = (enum upd_phase)phase;
    u->last = (enum upd_code)last;
    u->running_sv = sv;
    snprintf(u->target, sizeof(u->target), "%s", target);
    snprintf(u->running_fw, sizeof(u->running_fw), "%s", fw);
    snprintf(u->running_sha, sizeof(u->running_sha), "%s", sha);
    u->nfailed = 0;
    size_t i;
    json_t *v;
    json_array_foreach(failed, i, v)
    {
        const char *s = json_string_value(v);
        if (s && strlen(s) == 64)
            memcpy(u->failed[u->nfailed++], s, CRYPTO_FP_HEX_LEN);
    }
    free(u->release);
    bool want = *rel != '\0';
    u->release = want ? strdup(rel) : NULL;
    json_decref(o); /* rel pointed into it */
    return want && !u->release ? MAMORI_ERR_NOMEM : MAMORI_OK;
}

static void remember_failed(struct upd *u, const char *sha)
{
    for (size_t i = 0; i < u->nfailed; i++)
        if (strcmp(u->failed[i], sha) == 0)
            return;
    if (u->nfailed == FAILED_MAX) { /* the oldest goes */
        memmove(u->failed[0], u->failed[1], (FAILED_MAX - 1) * CRYPTO_FP_HEX_LEN);
        u->nfailed--;
    }
    memcpy(u->failed[u->nfailed++], sha, CRYPTO_FP_HEX_LEN);
}

static bool failed_before(const struct upd *u, const char *sha)
{
    for (size_t i = 0; i < u->nfailed; i++)
        if (strcmp(u->failed[i], sha) == 0)
            return true;
    return false;
}

/* The release under way, parsed again (it was verified when offered). */
static enum mamori_err load_release(struct upd *u)
{
    if (!u->release)
        return MAMORI_ERR_NOTFOUND;
    /* Verified against the trusted root as it was offered; expiry is not
     * checked again mid-way (a release that expires during its own
     * download still installs the image that was verified). */
    return upmeta_release_verify(&u->root, u->release, strlen(u->release), INT64_MIN, &u->rel, NULL,
                                 0);
}

/* --- the download ------------------------------------------------------ */

static void download_close(struct upd *u)
{
    if (u->fd >= 0)
        close(u->fd);
    u->fd = -1;
    crypto_sha256_abort(u->sha);
    u->sha = NULL;
}

/* Opens SLOTS/<target>/image.part for appending and hashes what it holds. */
static enum mamori_err download_open(struct upd *u)
{
    char p[4200];
    uint8_t buf[64 * 1024];
    enum mamori_err rc = slot_path(p, sizeof(p), u->slots, u->target, "image.part");
    if (rc || (rc = crypto_sha256_begin(&u->sha)))
        return rc;
    u->fd = open(p, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (u->fd < 0)
        return MAMORI_ERR_IO;
    u->received = 0;
    ssize_t n;
    while ((n = pread(u->fd, buf, sizeof(buf), (off_t)u->received)) > 0) {
        crypto_sha256_update(u->sha, buf, (size_t)n);
        u->received += (uint64_t)n;
    }
    if (n < 0 || u->received > u->rel.size) {
        /* unreadable, or longer than the release: start again */
        if (ftruncate(u->fd, 0) != 0)
            return MAMORI_ERR_IO;
        crypto_sha256_abort(u->sha);
        u->sha = NULL;
        u->received = 0;
        return crypto_sha256_begin(&u->sha);
    }
    return MAMORI_OK;
}

/* Back to idle without the release (the download is dropped). */
static enum upd_code abandon(struct upd *u, enum upd_code why)
{
    char p[4200];
    download_close(u);
    /* a .part left behind by a failed unlink is dropped at the next offer */
    if (!slot_path(p, sizeof(p), u->slots, u->target, "image.part") && fs_unlink_durable(p))
        u->unsynced = 0;
    free(u->release);
    u->release = NULL;
    u->phase = UPD_IDLE;
    u->last = why;
    return state_write(u) ? UPD_ERR_IO : why;
}

/* --- open -------------------------------------------------------------- */

static enum mamori_err load_root(struct upd *u, const char *anchor_path)
{
    char p[4200], *doc = NULL;
    size_t len;
    enum mamori_err rc = fs_path(p, sizeof(p), u->dir, "root.json");
    if (rc)
        return rc;
    /* The newest root taken so far; else the factory's. Expiry is checked
     * when a release is offered, not here: an expired root must not keep
     * the device from booting or from taking the next root. */
    if (fs_read_file(p, UPMETA_DOC_MAX, &doc, &len) != MAMORI_OK &&
        (rc = fs_read_file(anchor_path, UPMETA_DOC_MAX, &doc, &len)))
        return rc;
    rc = upmeta_root_first(doc, len, INT64_MIN, &u->root, NULL, 0);
    free(doc);
    return rc;
}

enum mamori_err upd_open(const struct upd_config *c, struct upd **out)
{
    char p[4200];
    struct env e;
    *out = NULL;
    if (!c || !c->state_dir || !c->slots_dir || !c->anchor_path || !c->model ||
        strlen(c->model) > UPMETA_NAME_MAX)
        return MAMORI_ERR_INVAL;
    struct upd *u = calloc(1, sizeof(*u));
    if (!u)
        return MAMORI_ERR_NOMEM;
    u->fd = -1;
    snprintf(u->model, sizeof(u->model), "%s", c->model);
    u->slot_max = c->slot_max ? c->slot_max : UPMETA_IMAGE_MAX;
    u->trial_boots = c->trial_boots ? c->trial_boots : 1;
    enum mamori_err rc = fs_path(u->dir, sizeof(u->dir), c->state_dir, "update");
    if (!rc && snprintf(u->slots, sizeof(u->slots), "%s", c->slots_dir) >= (int)sizeof(u->slots))
        rc = MAMORI_ERR_TOOBIG;
    if (!rc)
        rc = fs_mkdir_p(u->dir, 0700);
    if (!rc)
        rc = load_root(u, c->anchor_path);
    char *b = NULL;
    size_t blen;
    if (!rc && !(rc = fs_path(p, sizeof(p), u->slots, "booted")))
        rc = fs_read_file(p, 8, &b, &blen);
    if (!rc && (blen != 1 || !valid_slot(b)))
        rc = MAMORI_ERR_PARSE; /* upd_boot did not run */
    if (!rc)
        snprintf(u->booted, sizeof(u->booted), "%s", b);
    free(b);
    if (!rc) {
        rc = state_read(u);
        if (rc == MAMORI_ERR_NOTFOUND || (rc == MAMORI_ERR_IO && errno == ENOENT)) {
            snprintf(u->target, sizeof(u->target), "%s", other(u->booted));
            rc = state_write(u); /* first start */
        }
    }
    if (!rc)
        rc = env_read(u->slots, &e);
    if (rc) {
        upd_close(u);
        return rc;
    }
    /* Where an interrupted update stands, from what is on disk. */
    if (u->phase != UPD_IDLE && load_release(u) != MAMORI_OK) {
        (void)abandon(u, UPD_ERR_SIGNATURE); /* cannot happen unless the disk lies */
    } else if (u->phase == UPD_DOWNLOAD) {
        if (strcmp(u->target, u->booted) == 0 || (rc = download_open(u)))
            (void)abandon(u, UPD_ERR_IO);
        rc = MAMORI_OK;
    } else if (u->phase == UPD_SWITCH || u->phase == UPD_TRIAL) {
        if (strcmp(u->booted, u->target) == 0) {
            u->phase = UPD_TRIAL; /* running the new slot: prove it */
            rc = state_write(u);
            if (!rc && failed_before(u, u->rel.sha256) && e.trial[0]) {
                /* rolled back already, but power went before the boot
                 * loader was told: tell it now; the caller reboots */
                e.trial[0] = '\0';
                e.tries = 0;
                rc = env_write(u->slots, &e);
            }
        } else if (strcmp(e.fell_back, u->target) == 0) {
            /* the boot loader gave up on it: it never came up */
            remember_failed(u, u->rel.sha256);
            e.fell_back[0] = '\0';
            u->phase = UPD_IDLE;
            u->last = UPD_ERR_HEALTH;
            free(u->release);
            u->release = NULL;
            if (!(rc = state_write(u)))
                rc = env_write(u->slots, &e);
        } else if (u->phase == UPD_TRIAL) {
            /* rolled back on purpose: upd_rollback ran, and the reboot
             * brought the previous slot back */
            u->phase = UPD_IDLE;
            free(u->release);
            u->release = NULL;
            rc = state_write(u);
        } else if (strcmp(e.trial, u->target) != 0) {
            /* power went before the trial was set: set it again */
            e.trial[0] = u->target[0];
            e.tries = u->trial_boots;
            rc = env_write(u->slots, &e);
        }
    }
    if (rc) {
        upd_close(u);
        return rc;
    }
    *out = u;
    return MAMORI_OK;
}

void upd_close(struct upd *u)
{
    if (!u)
        return;
    download_close(u);
    free(u->release);
    free(u);
}

void upd_get_status(const struct upd *u, struct upd_status *st)
{
    memset(st, 0, sizeof(*st));
    st->phase = u->phase;
    snprintf(st->booted, sizeof(st->booted), "%s", u->booted);
    snprintf(st->fw_version, sizeof(st->fw_version), "%s", u->running_fw);
    st->security_version = u->running_sv;
    st->floor = u->floor;
    if (u->phase != UPD_IDLE) {
        snprintf(st->target_version, sizeof(st->target_version), "%s", u->rel.fw_version);
        snprintf(st->target_sha256, sizeof(st->target_sha256), "%s", u->rel.sha256);
    }
    st->received = u->received;
    st->size = u->phase != UPD_IDLE ? u->rel.size : 0;
    st->last = u->last;
    st->root_version = u->root.version;
    st->nfailed = u->nfailed;
    st->reboot = (u->phase == UPD_SWITCH && strcmp(u->booted, u->target) != 0) ||
                 (u->phase == UPD_TRIAL && failed_before(u, u->rel.sha256));
}

/* --- offer, download, install ------------------------------------------ */

static enum upd_code take_roots(struct upd *u, const char *const *roots, const size_t *lens,
                                size_t n, int64_t now)
{
    struct upmeta_root r = u->root;
    size_t newest = n;
    for (size_t i = 0; i < n; i++) {
        struct upmeta_root next;
        enum mamori_err rc = upmeta_root_first(roots[i], lens[i], INT64_MIN, &next, NULL, 0);
        if (!rc && next.version <= r.version)
            continue; /* already trusted: the hub sends the whole chain */
        if ((rc = upmeta_root_next(&r, roots[i], lens[i], false, now, &next, NULL, 0)))
            return UPD_ERR_ROOT;
        r = next;
        newest = i;
    }
    if (upmeta_root_current(&r, now))
        return UPD_ERR_EXPIRED;
    if (newest < n) {
        char p[4200];
        if (fs_path(p, sizeof(p), u->dir, "root.json") ||
            fs_write_atomic(p, roots[newest], lens[newest], 0600))
            return UPD_ERR_IO;
        u->root = r;
    }
    return UPD_OK;
}

enum upd_code upd_offer(struct upd *u, const char *const *roots, const size_t *root_lens,
                        size_t nroots, const void *release, size_t len, int64_t now_ms)
{
    struct upmeta_release m;
    enum upd_code c = take_roots(u, roots, root_lens, nroots, now_ms);
    if (c)
        return c;
    enum mamori_err rc = upmeta_release_verify(&u->root, release, len, now_ms, &m, NULL, 0);
    if (rc)
        return rc == MAMORI_ERR_EXPIRED ? UPD_ERR_EXPIRED : UPD_ERR_SIGNATURE;
    if (strcmp(m.model, u->model) != 0)
        return UPD_ERR_MODEL;
    if (u->phase != UPD_IDLE)
        /* the same release again: go on with it */
        return u->phase == UPD_DOWNLOAD && strcmp(m.sha256, u->rel.sha256) == 0 ? UPD_OK
                                                                                : UPD_ERR_BUSY;
    if (m.security_version < u->floor)
        return UPD_ERR_FLOOR;
    if (failed_before(u, m.sha256))
        return UPD_ERR_FAILED;
    if (strcmp(m.sha256, u->running_sha) == 0)
        return UPD_ERR_CURRENT;
    if (m.size > u->slot_max)
        return UPD_ERR_SIZE;
    char *copy = malloc(len + 1);
    if (!copy)
        return UPD_ERR_IO;
    memcpy(copy, release, len);
    copy[len] = '\0';
    free(u->release);
    u->release = copy;
    u->rel = m;
    snprintf(u->target, sizeof(u->target), "%s", other(u->booted));
    u->phase = UPD_DOWNLOAD;
    if (state_write(u))
        return UPD_ERR_IO;
    if (crashed(u))
        return UPD_ERR_CRASHED;
    char p[4200];
    /* whatever an earlier download left in the slot goes */
    if (slot_path(p, sizeof(p), u->slots, u->target, "image.part") || fs_unlink_durable(p) ||
        download_open(u))
        return abandon(u, UPD_ERR_IO);
    return UPD_OK;
}

uint64_t upd_offset(const struct upd *u)
{
    return u->phase == UPD_DOWNLOAD ? u->received : 0;
}

enum upd_code upd_write(struct upd *u, const void *data, size_t n)
{
    if (u->phase != UPD_DOWNLOAD || u->fd < 0)
        return UPD_ERR_BUSY;
    if (n > u->rel.size - u->received)
        return abandon(u, UPD_ERR_SIZE);
    uint64_t before = u->received;
    enum mamori_err rc = crypto_sha256_write(u->sha, u->fd, data, n, &u->received);
    u->unsynced += u->received - before;
    if (rc)
        return UPD_ERR_IO; /* what was written is counted and hashed: resumable */
    if (u->unsynced >= SYNC_EVERY) {
        if (fdatasync(u->fd) != 0)
            return UPD_ERR_IO;
        u->unsynced = 0;
        if (crashed(u))
            return UPD_ERR_CRASHED;
    }
    return UPD_OK;
}

enum upd_code upd_finish(struct upd *u)
{
    uint8_t h[CRYPTO_SHA256_LEN];
    char hex[CRYPTO_FP_HEX_LEN], part[4200], img[4200], relp[4200];
    struct env e;
    if (u->phase != UPD_DOWNLOAD || u->fd < 0)
        return UPD_ERR_BUSY;
    if (u->received != u->rel.size)
        return abandon(u, UPD_ERR_SIZE);
    if (fdatasync(u->fd) != 0)
        return UPD_ERR_IO;
    close(u->fd);
    u->fd = -1;
    enum mamori_err rc = crypto_sha256_end(u->sha, h);
    u->sha = NULL;
    if (rc)
        return UPD_ERR_IO;
    crypto_hex(h, sizeof(h), hex);
    if (!crypto_ct_eq(hex, u->rel.sha256, 64))
        return abandon(u, UPD_ERR_DIGEST);
    if (crashed(u))
        return UPD_ERR_CRASHED;
    /* Into the inactive slot: the image, then the release it came from.
     * The booted slot is never written. */
    if (slot_path(part, sizeof(part), u->slots, u->target, "image.part") ||
        slot_path(img, sizeof(img), u->slots, u->target, "image") ||
        slot_path(relp, sizeof(relp), u->slots, u->target, "release.json") ||
        fs_unlink_durable(relp))
        return UPD_ERR_IO;
    if (crashed(u))
        return UPD_ERR_CRASHED;
    if (fs_rename_durable(part, img))
        return UPD_ERR_IO;
    if (crashed(u))
        return UPD_ERR_CRASHED;
    if (fs_write_atomic(relp, u->release, strlen(u->release), 0600))
        return UPD_ERR_IO;
    if (crashed(u))
        return UPD_ERR_CRASHED;
    u->phase = UPD_SWITCH;
    if (state_write(u))
        return UPD_ERR_IO;
    if (crashed(u))
        return UPD_ERR_CRASHED;
    if (env_read(u->slots, &e))
        return UPD_ERR_IO;
    e.trial[0] = u->target[0];
    e.trial[1] = '\0';
    e.tries = u->trial_boots;
    e.fell_back[0] = '\0';
    if (env_write(u->slots, &e))
        return UPD_ERR_IO;
    if (crashed(u))
        return UPD_ERR_CRASHED;
    return UPD_OK;
}

enum upd_code upd_cancel(struct upd *u)
{
    if (u->phase != UPD_DOWNLOAD)
        return UPD_ERR_BUSY;
    return abandon(u, UPD_OK) ? UPD_ERR_IO : UPD_OK;
}

/* --- trial ------------------------------------------------------------- */

enum upd_code upd_commit(struct upd *u)
{
    struct env e;
    if (u->phase != UPD_TRIAL)
        return UPD_ERR_BUSY;
    if (failed_before(u, u->rel.sha256))
        return UPD_ERR_FAILED; /* a rollback was decided: never commit it */
    if (env_read(u->slots, &e))
        return UPD_ERR_IO;
    /* The boot loader's part first: from now on this slot boots. */
    e.primary[0] = u->target[0];
    e.trial[0] = '\0';
    e.tries = 0;
    if (env_write(u->slots, &e))
        return UPD_ERR_IO;
    if (crashed(u))
        return UPD_ERR_CRASHED;
    snprintf(u->running_fw, sizeof(u->running_fw), "%s", u->rel.fw_version);
    memcpy(u->running_sha, u->rel.sha256, CRYPTO_FP_HEX_LEN);
    u->running_sv = u->rel.security_version;
    if (u->rel.floor > u->floor)
        u->floor = u->rel.floor;
    u->phase = UPD_IDLE;
    u->last = UPD_OK;
    free(u->release);
    u->release = NULL;
    snprintf(u->target, sizeof(u->target), "%s", other(u->booted));
    return state_write(u) ? UPD_ERR_IO : UPD_OK;
}

enum upd_code upd_rollback(struct upd *u)
{
    struct env e;
    if (u->phase != UPD_TRIAL)
        return UPD_ERR_BUSY;
    remember_failed(u, u->rel.sha256);
    u->last = UPD_ERR_HEALTH;
    if (state_write(u))
        return UPD_ERR_IO;
    if (crashed(u))
        return UPD_ERR_CRASHED;
    if (env_read(u->slots, &e))
        return UPD_ERR_IO;
    e.trial[0] = '\0';
    e.tries = 0;
    return env_write(u->slots, &e) ? UPD_ERR_IO : UPD_OK;
}
