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
#include "lib/uphook.h"

#define FAILED_MAX   64           /* releases remembered as failed */
#define SYNC_EVERY   (1u << 20)   /* bytes between syncs of the image being written */
#define STATE_MAX    (192 * 1024) /* state.json: a release envelope and the failed list */
#define HOOK_SHORT_S 60           /* status, commit, rollback */

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
    /* the hook backend */
    char hook[4096];
    unsigned install_s;
    struct uphook hk;
    bool installing;
};

const char *upd_code_name(enum upd_code c)
{
    static const char *const names[] = {
        "ok",
        "bad_signature",
        "expired",
        "wrong_model",
        "below_floor",
        "digest",
        "oversize",
        "failed_before",
        "busy",
        "io",
        "root",
        "health",
        "already_running",
        "crashed",
        "installing",
        "install_failed",
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

/* Where the image arrives: the inactive slot, or the hook's staging file. */
static enum mamori_err part_path(const struct upd *u, char *out, size_t n)
{
    return u->hook[0] ? fs_path(out, n, u->dir, "image.part")
                      : slot_path(out, n, u->slots, u->target, "image.part");
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
    enum mamori_err rc = part_path(u, p, sizeof(p));
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
    if (!part_path(u, p, sizeof(p)) && fs_unlink_durable(p))
        u->unsynced = 0;
    free(u->release);
    u->release = NULL;
    u->phase = UPD_IDLE;
    u->last = why;
    return state_write(u) ? UPD_ERR_IO : why;
}

/* --- the hook backend -------------------------------------------------- */

enum mamori_err upd_hook_status_parse(const char *text, char booted[2], char primary[2])
{
    bool have_booted = false, have_primary = false;
    booted[0] = primary[0] = '\0';
    for (const char *q = text; *q;) {
        q += strspn(q, " \t\n");
        if (!*q)
            break;
        size_t n = strcspn(q, " \t\n");
        char tok[16];
        if (n >= sizeof(tok))
            return MAMORI_ERR_PARSE;
        memcpy(tok, q, n);
        tok[n] = '\0';
        q += n;
        if (strncmp(tok, "booted=", 7) == 0 && !have_booted && valid_slot(tok + 7)) {
            booted[0] = tok[7]; /* one letter: valid_slot */
            booted[1] = '\0';
            have_booted = true;
        } else if (strncmp(tok, "primary=", 8) == 0 && !have_primary &&
                   (!tok[8] || valid_slot(tok + 8))) {
            primary[0] = tok[8];
            primary[1] = '\0';
            have_primary = true;
        } else {
            return MAMORI_ERR_PARSE;
        }
    }
    return have_booted && have_primary ? MAMORI_OK : MAMORI_ERR_PARSE;
}

/* `HOOK status`: the slot running, and the one the next boot starts. */
static enum mamori_err hook_status(struct upd *u, struct env *e)
{
    memset(e, 0, sizeof(*e));
    enum mamori_err rc = uphook_run(&u->hk, u->hook, "status", NULL, HOOK_SHORT_S);
    return rc ? rc : upd_hook_status_parse(u->hk.out, u->booted, e->primary);
}

/* The boot loader's view in the built-in backend's terms: a new slot the
 * next boot tries (trial), or one it gave up on (fell_back). */
static void hook_env(const struct upd *u, struct env *e)
{
    if ((u->phase == UPD_SWITCH || u->phase == UPD_TRIAL) && strcmp(u->booted, u->target) != 0) {
        if (strcmp(e->primary, u->target) == 0)
            snprintf(e->trial, sizeof(e->trial), "%s", u->target);
        else
            snprintf(e->fell_back, sizeof(e->fell_back), "%s", u->target);
    }
}

/* Booted into the target while the state still says DOWNLOAD: power went
 * after the hook installed it and before that was written down. True when
 * the staged image is whole and the release's. */
static bool staged_image_whole(struct upd *u)
{
    uint8_t h[CRYPTO_SHA256_LEN];
    char hex[CRYPTO_FP_HEX_LEN];
    if (download_open(u) || u->received != u->rel.size)
        return false;
    enum mamori_err rc = crypto_sha256_end(u->sha, h);
    u->sha = NULL;
    if (rc)
        return false;
    crypto_hex(h, sizeof(h), hex);
    return crypto_ct_eq(hex, u->rel.sha256, 64);
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
    if (!c || !c->state_dir || !(c->slots_dir || c->hook) || !c->anchor_path || !c->model ||
        strlen(c->model) > UPMETA_NAME_MAX || (c->hook && c->hook[0] != '/'))
        return MAMORI_ERR_INVAL;
    struct upd *u = calloc(1, sizeof(*u));
    if (!u)
        return MAMORI_ERR_NOMEM;
    u->fd = -1;
    u->hk.fd = -1;
    snprintf(u->model, sizeof(u->model), "%s", c->model);
    u->slot_max = c->slot_max ? c->slot_max : UPMETA_IMAGE_MAX;
    u->trial_boots = c->trial_boots ? c->trial_boots : 1;
    enum mamori_err rc = fs_path(u->dir, sizeof(u->dir), c->state_dir, "update");
    u->install_s = c->install_s ? c->install_s : 1800;
    if (!rc && snprintf(u->slots, sizeof(u->slots), "%s", c->slots_dir ? c->slots_dir : "") >=
                   (int)sizeof(u->slots))
        rc = MAMORI_ERR_TOOBIG;
    if (!rc &&
        snprintf(u->hook, sizeof(u->hook), "%s", c->hook ? c->hook : "") >= (int)sizeof(u->hook))
        rc = MAMORI_ERR_TOOBIG;
    if (!rc)
        rc = fs_mkdir_p(u->dir, 0700);
    if (!rc)
        rc = load_root(u, c->anchor_path);
    char *b = NULL;
    size_t blen;
    if (!rc && u->hook[0]) {
        rc = hook_status(u, &e); /* the board's boot loader, through the hook */
    } else if (!rc && !(rc = fs_path(p, sizeof(p), u->slots, "booted"))) {
        rc = fs_read_file(p, 8, &b, &blen);
        if (!rc && (blen != 1 || !valid_slot(b)))
            rc = MAMORI_ERR_PARSE; /* upd_boot did not run */
        if (!rc)
            snprintf(u->booted, sizeof(u->booted), "%s", b);
        free(b);
    }
    if (!rc) {
        rc = state_read(u);
        if (rc == MAMORI_ERR_NOTFOUND || (rc == MAMORI_ERR_IO && errno == ENOENT)) {
            snprintf(u->target, sizeof(u->target), "%s", other(u->booted));
            rc = state_write(u); /* first start */
        }
    }
    if (!rc && !u->hook[0])
        rc = env_read(u->slots, &e);
    if (rc) {
        upd_close(u);
        return rc;
    }
    if (u->hook[0]) {
        hook_env(u, &e);
        if (u->phase != UPD_DOWNLOAD && !fs_path(p, sizeof(p), u->dir, "image.part"))
            (void)unlink(p); /* a staged copy the hook installed already */
    }
    /* Where an interrupted update stands, from what is on disk. */
    if (u->phase != UPD_IDLE && load_release(u) != MAMORI_OK) {
        (void)abandon(u, UPD_ERR_SIGNATURE); /* cannot happen unless the disk lies */
    } else if (u->phase == UPD_DOWNLOAD && u->hook[0] && strcmp(u->target, u->booted) == 0) {
        download_close(u);
        if (staged_image_whole(u)) {
            u->phase = UPD_TRIAL; /* installed and booted: prove it */
            rc = state_write(u);
        } else {
            (void)abandon(u, UPD_ERR_IO);
        }
    } else if (u->phase == UPD_DOWNLOAD) {
        if (strcmp(u->target, u->booted) == 0 || (rc = download_open(u)))
            (void)abandon(u, UPD_ERR_IO);
        rc = MAMORI_OK;
    } else if (u->phase == UPD_SWITCH || u->phase == UPD_TRIAL) {
        if (strcmp(u->booted, u->target) == 0) {
            u->phase = UPD_TRIAL; /* running the new slot: prove it */
            rc = state_write(u);
            if (!rc && failed_before(u, u->rel.sha256) && u->hook[0]) {
                /* rolled back, perhaps before the hook was told: again */
                rc = uphook_run(&u->hk, u->hook, "rollback", NULL, HOOK_SHORT_S);
            } else if (!rc && failed_before(u, u->rel.sha256) && e.trial[0]) {
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
            if (!(rc = state_write(u)) && !u->hook[0])
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
    uphook_stop(&u->hk);
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
    if (part_path(u, p, sizeof(p)) || fs_unlink_durable(p) || download_open(u))
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
    if (u->hook[0]) { /* the verified file goes to the board's installer */
        if (part_path(u, part, sizeof(part)) ||
            uphook_start(&u->hk, u->hook, "install", part, u->install_s))
            return abandon(u, UPD_ERR_INSTALL);
        u->installing = true;
        return UPD_PENDING;
    }
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

enum upd_code upd_poll(struct upd *u, int wait_ms)
{
    if (!u->installing)
        return UPD_ERR_BUSY;
    enum mamori_err rc = uphook_poll(&u->hk, wait_ms);
    if (rc == MAMORI_ERR_STATE)
        return UPD_PENDING;
    u->installing = false;
    if (rc)
        return abandon(u, UPD_ERR_INSTALL); /* not remembered: the hub may offer it again */
    if (crashed(u))
        return UPD_ERR_CRASHED;
    /* Installed, and the next boot tries it (the hook's part). The staged
     * copy goes only once that is written down. */
    char part[4200];
    u->phase = UPD_SWITCH;
    if (state_write(u))
        return UPD_ERR_IO;
    if (crashed(u))
        return UPD_ERR_CRASHED;
    if (part_path(u, part, sizeof(part)) || fs_unlink_durable(part))
        return UPD_OK; /* a copy left behind goes at the next offer */
    return crashed(u) ? UPD_ERR_CRASHED : UPD_OK;
}

enum upd_code upd_cancel(struct upd *u)
{
    if (u->phase != UPD_DOWNLOAD || u->installing)
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
    /* The boot loader's part first: from now on this slot boots. */
    if (u->hook[0]) {
        if (uphook_run(&u->hk, u->hook, "commit", NULL, HOOK_SHORT_S))
            return UPD_ERR_IO;
    } else {
        if (env_read(u->slots, &e))
            return UPD_ERR_IO;
        e.primary[0] = u->target[0];
        e.trial[0] = '\0';
        e.tries = 0;
        if (env_write(u->slots, &e))
            return UPD_ERR_IO;
    }
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
    if (u->hook[0])
        return uphook_run(&u->hk, u->hook, "rollback", NULL, HOOK_SHORT_S) ? UPD_ERR_IO : UPD_OK;
    if (env_read(u->slots, &e))
        return UPD_ERR_IO;
    e.trial[0] = '\0';
    e.tries = 0;
    return env_write(u->slots, &e) ? UPD_ERR_IO : UPD_OK;
}
