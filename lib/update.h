/*
 * lib/update.h - the device's update engine: signed releases verified
 * before, while and after they arrive, installed into the inactive slot of
 * an A/B pair, tried once through the boot loader and committed only when
 * the health check passes (P-UPD, docs/updates.md).
 *
 * Two backends install into the inactive slot. The hook backend runs one
 * executable (HOOK status|install FILE|commit|rollback) that drives the
 * board's installer and boot loader, e.g. RAUC (scripts/hooks/rauc):
 * images are downloaded into STATE/update/image.part, verified, then handed
 * to `install`.
 *
 * Slots: the built-in backend keeps them as directories (SLOTS/a, SLOTS/b,
 * each an `image` and the `release.json` it came from) with a boot loader
 * environment (SLOTS/boot.json: primary slot, trial slot, tries left), and
 * upd_boot() plays the boot loader's part at each start: a trial slot is
 * booted while it has tries left, then the primary one again. Real devices
 * drive RAUC or SWUpdate and their boot loader instead (the same steps).
 *
 * State in STATE/update: state.json (phase, the release under way, the
 * anti-rollback floor, releases that failed), root.json (the newest
 * trusted root; the first comes from the factory). Every step is durable
 * (an atomic file write or an fsync'd rename): after a power loss at any
 * step the device boots a slot holding a whole, verified image, and
 * upd_open() goes on from where the step left things or backs out.
 *
 * Never a loop: a release that failed its health check, or whose boot did
 * not come up, is recorded and refused from then on.
 */
#ifndef MAMORI_LIB_UPDATE_H
#define MAMORI_LIB_UPDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/upmeta.h"
#include "mamori/error.h"

/* Why an update was refused or failed: each has its own code, reported to
 * the hub. Append only. */
enum upd_code {
    UPD_OK = 0,
    UPD_ERR_SIGNATURE = 1, /* not signed by enough release keys, or malformed */
    UPD_ERR_EXPIRED = 2,   /* release or root metadata expired */
    UPD_ERR_MODEL = 3,     /* made for another device model */
    UPD_ERR_FLOOR = 4,     /* security version below the device's floor */
    UPD_ERR_DIGEST = 5,    /* the image is not the one the release names */
    UPD_ERR_SIZE = 6,      /* image larger than the release says or the slot holds */
    UPD_ERR_FAILED = 7,    /* this release failed here before: never again */
    UPD_ERR_BUSY = 8,      /* another update is under way */
    UPD_ERR_IO = 9,        /* storage */
    UPD_ERR_ROOT = 10,     /* a new root does not follow the trusted one */
    UPD_ERR_HEALTH = 11,   /* the new slot failed its health check or did not boot */
    UPD_ERR_CURRENT = 12,  /* this release is the one running */
    UPD_ERR_CRASHED = 13,  /* test builds: stopped after a step, as power loss would */
    UPD_PENDING = 14,      /* the hook is installing: upd_poll until it ends */
    UPD_ERR_INSTALL = 15,  /* the hook could not install the verified image */
};
const char *upd_code_name(enum upd_code c);

enum upd_phase {
    UPD_IDLE = 0,
    UPD_DOWNLOAD = 1, /* release accepted; image arriving in the inactive slot */
    UPD_SWITCH = 2,   /* image installed; the next boot tries it */
    UPD_TRIAL = 3,    /* running the new slot on trial: commit or roll back */
};

struct upd_config {
    const char *state_dir;   /* STATE: update/ is kept here */
    const char *slots_dir;   /* the built-in slot backend (NULL with a hook) */
    const char *hook;        /* or the hook backend: absolute path (docs/updates.md) */
    unsigned install_s;      /* the hook's install may run this long; 0: 1800 s */
    const char *anchor_path; /* the factory root (first trusted root) */
    const char *model;       /* this device's model */
    uint64_t slot_max;       /* largest image a slot holds; 0: UPMETA_IMAGE_MAX */
    unsigned trial_boots;    /* tries the boot loader gives a new slot; 0: 1 */
};

struct upd_status {
    enum upd_phase phase;
    char booted[2];                       /* "a" or "b" */
    char fw_version[UPMETA_NAME_MAX + 1]; /* running ("" unknown) */
    uint64_t security_version, floor;
    char target_version[UPMETA_NAME_MAX + 1]; /* the release under way */
    char target_sha256[CRYPTO_FP_HEX_LEN];    /* and its image */
    uint64_t received, size;                  /* bytes of it on disk, and its size */
    enum upd_code last; /* outcome of the last update (rollback reason included) */
    uint64_t root_version;
    size_t nfailed;
    bool reboot; /* the update goes on only after a reboot (to try the new slot,
                    or back to the previous one) */
};

struct upd;

/* The boot loader's part (built-in backend): picks the slot to boot and
 * counts a trial down; call once per boot, before upd_open. */
enum mamori_err upd_boot(const char *slots_dir, char booted[2]) MAMORI_MUST_CHECK;

/* Opens the engine after boot; repairs interrupted steps. A boot that fell
 * back from a trial marks that release failed (last = UPD_ERR_HEALTH). */
enum mamori_err upd_open(const struct upd_config *c, struct upd **out) MAMORI_MUST_CHECK;
void upd_close(struct upd *u);
void upd_get_status(const struct upd *u, struct upd_status *st);

/* A release offered by the hub, with any newer roots (in order). Checked
 * against everything but the image; on success the download begins (or
 * resumes, for the same release). */
enum upd_code upd_offer(struct upd *u, const char *const *roots, const size_t *root_lens,
                        size_t nroots, const void *release, size_t len, int64_t now_ms);
/* Bytes of the image already on disk: download from here. */
uint64_t upd_offset(const struct upd *u);
/* The next bytes of the image, hashed as they are written; never more than
 * the release's size (UPD_ERR_SIZE, the download is dropped). */
enum upd_code upd_write(struct upd *u, const void *data, size_t n);
/* All bytes in: digest and size checked (UPD_ERR_DIGEST drops the
 * download), image installed in the inactive slot, trial set. Reboot next. */
enum upd_code upd_finish(struct upd *u);
/* Hook backend: upd_finish answered UPD_PENDING; waits up to wait_ms for
 * the install. UPD_PENDING: still running; UPD_OK: installed, reboot next;
 * else it failed (UPD_ERR_INSTALL) and the download is dropped. */
enum upd_code upd_poll(struct upd *u, int wait_ms);
/* Drops the download under way (the hub withdrew it). */
enum upd_code upd_cancel(struct upd *u);

/* On trial (phase UPD_TRIAL): the health check passed: the new slot
 * becomes primary and the floor rises to the release's. */
enum upd_code upd_commit(struct upd *u);
/* On trial: it failed; back to the previous slot at the next boot, and the
 * release is never taken again. Reboot next. (A trial that is booted again
 * after this, before the boot loader heard, is not committed.) */
enum upd_code upd_rollback(struct upd *u);

/* The hook's answer to `status` (untrusted text): "booted=S primary=P",
 * S one of a, b; P one of a, b or empty (no slot would boot), in any order,
 * separated by blanks or newlines; nothing else. */
enum mamori_err upd_hook_status_parse(const char *text, char booted[2],
                                      char primary[2]) MAMORI_MUST_CHECK;

/* Tests: stop right after the n-th durable step from now (0: never), as
 * power loss would; the call returns UPD_ERR_CRASHED. */
void upd_crash_after(struct upd *u, int n);
/* Steps still to go before that stop (0: none pending). */
int upd_crash_pending(const struct upd *u);

#endif
