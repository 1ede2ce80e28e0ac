/*
 * Unit tests: the device's update engine (lib/update.c) with its built-in
 * A/B slot backend, on real files.
 *
 * Every refusal has its own code; a release is installed only into the
 * inactive slot, tried through the boot loader and committed after the
 * health check; a failed health check or a trial that never came up rolls
 * back and the release is never taken again; a download resumes where it
 * stopped; and a power loss after every durable step of the whole flow
 * leaves a device that boots a whole, verified image and can finish.
 *
 * The same tests run again with the hook backend, through a hook that
 * keeps to the contract (docs/updates.md) with its slots as files and the
 * boot loader's choice in a file; tests/integration/it_rauc.sh drives the
 * real RAUC through scripts/hooks/rauc. Also: the hook's install failing or
 * running past its deadline, and its status answer being garbage.
 */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/unit/testutil.h"

#include "common/fsutil.h"
#include "common/json.h"
#include "lib/uphook.h"
#include "lib/update.h"

#define IMG_SIZE (3u * 1024 * 1024 + 12345)
#define CHUNK    (256u * 1024)
#define DAY      (24LL * 3600 * 1000)

static struct crypto_key *k_root, *k_rel, *k_other;
static char id_root[65], id_rel[65], b64_root[256], b64_rel[256];

struct fx {
    char dir[64], state[128], slots[128], anchor[128];
    uint8_t *img, *img_old;
    char *rel2; /* release "2.0" of img: security version 5, floor 4 */
    struct upd *u;
    struct upd_config cfg;
    char hook[160]; /* the hook backend ("": the built-in one) */
};

/* A hook that keeps the contract: slots DIR/slots/{a,b}.img, the boot
 * loader's environment in DIR/bootenv; "boot" is the test's power-on. Files
 * DIR/fail, DIR/slow, DIR/garbage make install fail, hang, or status lie. */
static const char HOOK[] =
    "#!/bin/sh\n"
    "D=$(dirname \"$0\"); E=$D/bootenv\n"
    "[ -f \"$E\" ] || printf 'PRIMARY=a\\nTRIAL=\\nTRIED=0\\nBOOTED=a\\n' >\"$E\"\n"
    ". \"$E\"\n"
    "save() { printf 'PRIMARY=%s\\nTRIAL=%s\\nTRIED=%s\\nBOOTED=%s\\n' \"$PRIMARY\" \"$TRIAL\" "
    "\"$TRIED\" \"$BOOTED\" >\"$E.tmp\" && mv \"$E.tmp\" \"$E\"; }\n"
    "next() { if [ -n \"$TRIAL\" ] && [ \"$TRIED\" = 0 ]; then echo $TRIAL; else echo $PRIMARY; "
    "fi; }\n"
    "case \"$1\" in\n"
    "status) [ -e \"$D/garbage\" ] && { echo 'booted=a primary=a extra=1'; exit 0; }\n"
    "  echo \"booted=$BOOTED primary=$(next)\" ;;\n"
    "install) [ -e \"$D/slow\" ] && exec sleep 30; [ -e \"$D/fail\" ] && exit 3\n"
    "  if [ $BOOTED = a ]; then t=b; else t=a; fi\n"
    "  cp \"$2\" \"$D/slots/$t.img.tmp\" && mv \"$D/slots/$t.img.tmp\" \"$D/slots/$t.img\" || exit "
    "1\n"
    "  TRIAL=$t; TRIED=0; save ;;\n"
    "commit) PRIMARY=$BOOTED; TRIAL=; save ;;\n"
    "rollback) TRIAL=; save ;;\n"
    "boot) BOOTED=$(next); [ \"$BOOTED\" = \"$TRIAL\" ] && TRIED=1; save ;;\n"
    "*) exit 2 ;;\n"
    "esac\n";

static int64_t now_ms(void)
{
    return (int64_t)time(NULL) * 1000;
}

static void key_b64(struct crypto_key *k, char id[65], char b64[256])
{
    uint8_t spki[CRYPTO_SPKI_MAX];
    size_t n;
    assert_int_equal(crypto_key_spki(k, spki, &n), MAMORI_OK);
    crypto_key_id(spki, n, id);
    assert_true(crypto_b64_encode(spki, n, b64, 256) > 0);
}

static int setup_keys(void **state)
{
    (void)state;
    assert_int_equal(crypto_key_generate(&k_root), MAMORI_OK);
    assert_int_equal(crypto_key_generate(&k_rel), MAMORI_OK);
    assert_int_equal(crypto_key_generate(&k_other), MAMORI_OK);
    key_b64(k_root, id_root, b64_root);
    key_b64(k_rel, id_rel, b64_rel);
    return 0;
}

static int teardown_keys(void **state)
{
    (void)state;
    crypto_key_free(k_root);
    crypto_key_free(k_rel);
    crypto_key_free(k_other);
    return 0;
}

static char *sign_text(const char *text, struct crypto_key *k)
{
    char *doc = NULL, *out = NULL;
    assert_int_equal(upmeta_wrap(text, &doc), MAMORI_OK);
    assert_int_equal(upmeta_sign(doc, strlen(doc), k, &out), MAMORI_OK);
    free(doc);
    return out;
}

static char *root_doc(uint64_t version, int64_t expires, const char *rel_id, const char *rel_b64)
{
    char t[2048];
    snprintf(t, sizeof(t),
             "{\"type\":\"root\",\"version\":%llu,\"expires\":%lld,\"keys\":{\"%s\":\"%s\",\"%s\":"
             "\"%s\"},\"roles\":{\"root\":{\"keyids\":[\"%s\"],\"threshold\":1},\"release\":{"
             "\"keyids\":[\"%s\"],\"threshold\":1}}}",
             (unsigned long long)version, (long long)expires, id_root, b64_root, rel_id, rel_b64,
             id_root, rel_id);
    return sign_text(t, k_root);
}

static char *release_doc(const char *model, const char *ver, uint64_t sv, uint64_t floor,
                         int64_t expires, const uint8_t *img, uint64_t size, struct crypto_key *k)
{
    uint8_t h[CRYPTO_SHA256_LEN];
    char hex[65], t[1024];
    crypto_sha256(img, size, h);
    crypto_hex(h, sizeof(h), hex);
    snprintf(t, sizeof(t),
             "{\"type\":\"release\",\"model\":\"%s\",\"fw_version\":\"%s\",\"security_version\":%"
             "llu,\"floor\":%llu,\"expires\":%lld,\"image\":{\"sha256\":\"%s\",\"size\":%llu}}",
             model, ver, (unsigned long long)sv, (unsigned long long)floor, (long long)expires, hex,
             (unsigned long long)size);
    return sign_text(t, k);
}

static void put(const char *path, const void *data, size_t n)
{
    assert_int_equal(fs_write_atomic(path, data, n, 0600), MAMORI_OK);
}

/* A boot: the boot loader's part, then the engine. */
static void boot(struct fx *f)
{
    char booted[2];
    upd_close(f->u);
    f->u = NULL;
    if (f->hook[0]) {
        struct uphook h;
        assert_int_equal(uphook_run(&h, f->hook, "boot", NULL, 10), MAMORI_OK);
    } else {
        assert_int_equal(upd_boot(f->slots, booted), MAMORI_OK);
    }
    assert_int_equal(upd_open(&f->cfg, &f->u), MAMORI_OK);
}

/* upd_finish, and the hook's install to its end. */
static enum upd_code finish(struct fx *f)
{
    enum upd_code c = upd_finish(f->u);
    for (int i = 0; c == UPD_PENDING && i < 60; i++)
        c = upd_poll(f->u, 1000);
    return c;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char p[256];
    snprintf(f->dir, sizeof(f->dir), "/tmp/mamori-upd-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->state, sizeof(f->state), "%s/state", f->dir);
    snprintf(f->slots, sizeof(f->slots), "%s/slots", f->dir);
    snprintf(f->anchor, sizeof(f->anchor), "%s/root.json", f->dir);
    f->img = malloc(IMG_SIZE);
    f->img_old = malloc(1000);
    assert_int_equal(crypto_random(f->img, IMG_SIZE), MAMORI_OK);
    assert_int_equal(crypto_random(f->img_old, 1000), MAMORI_OK);
    char *root = root_doc(1, now_ms() + 365 * DAY, id_rel, b64_rel);
    put(f->anchor, root, strlen(root));
    free(root);
    /* the factory image in slot a */
    assert_int_equal(fs_mkdir_p(f->slots, 0700), MAMORI_OK);
    snprintf(p, sizeof(p), "%s/a", f->slots);
    assert_int_equal(fs_mkdir_p(p, 0700), MAMORI_OK);
    snprintf(p, sizeof(p), "%s/a/image", f->slots);
    put(p, f->img_old, 1000);
    char *r1 = release_doc("cam", "1.0", 1, 0, now_ms() + DAY, f->img_old, 1000, k_rel);
    snprintf(p, sizeof(p), "%s/a/release.json", f->slots);
    put(p, r1, strlen(r1));
    free(r1);
    f->rel2 = release_doc("cam", "2.0", 5, 4, now_ms() + DAY, f->img, IMG_SIZE, k_rel);
    f->cfg = (struct upd_config){
        .state_dir = f->state, .slots_dir = f->slots, .anchor_path = f->anchor, .model = "cam"};
    boot(f);
    *state = f;
    return 0;
}

/* The same device with the hook backend: the factory image in slot a. */
static int setup_hook(void **state)
{
    setup(state);
    struct fx *f = *state;
    char p[256];
    upd_close(f->u);
    f->u = NULL;
    snprintf(f->hook, sizeof(f->hook), "%s/hook", f->dir);
    put(f->hook, HOOK, sizeof(HOOK) - 1);
    assert_int_equal(chmod(f->hook, 0700), 0);
    snprintf(p, sizeof(p), "%s/a.img", f->slots);
    put(p, f->img_old, 1000);
    f->cfg.slots_dir = NULL;
    f->cfg.hook = f->hook;
    boot(f);
    return 0;
}

/* A test file in the fixture's directory (the hook's switches). */
static void flag(struct fx *f, const char *name, bool on)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", f->dir, name);
    if (on)
        put(p, "", 0);
    else
        unlink(p);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    upd_close(f->u);
    rm_rf(f->dir);
    free(f->img);
    free(f->img_old);
    free(f->rel2);
    free(f);
    return 0;
}

static enum upd_code offer(struct fx *f, const char *rel)
{
    return upd_offer(f->u, NULL, NULL, 0, rel, strlen(rel), now_ms());
}

static enum upd_code send_from(struct fx *f, const uint8_t *img, uint64_t size)
{
    enum upd_code c = UPD_OK;
    for (uint64_t off = upd_offset(f->u); off < size && c == UPD_OK; off += CHUNK)
        c = upd_write(f->u, img + off, size - off < CHUNK ? size - off : CHUNK);
    return c;
}

static struct upd_status status(struct fx *f)
{
    struct upd_status st;
    upd_get_status(f->u, &st);
    return st;
}

/* Installs rel2 and boots into its trial. */
static void install_and_try(struct fx *f)
{
    assert_int_equal(offer(f, f->rel2), UPD_OK);
    assert_int_equal(send_from(f, f->img, IMG_SIZE), UPD_OK);
    assert_int_equal(finish(f), UPD_OK);
    assert_true(status(f).reboot);
    boot(f);
    assert_int_equal(status(f).phase, UPD_TRIAL);
    assert_string_equal(status(f).booted, "b");
}

static void happy_path(void **state)
{
    struct fx *f = *state;
    assert_string_equal(status(f).booted, "a");
    install_and_try(f);
    assert_int_equal(upd_commit(f->u), UPD_OK);
    struct upd_status st = status(f);
    assert_string_equal(st.fw_version, "2.0");
    assert_int_equal(st.security_version, 5);
    assert_int_equal(st.floor, 4);
    assert_int_equal(st.phase, UPD_IDLE);
    assert_false(st.reboot);
    boot(f);
    assert_string_equal(status(f).booted, "b"); /* b is primary now */
    assert_int_equal(offer(f, f->rel2), UPD_ERR_CURRENT);
}

static void every_refusal_has_its_code(void **state)
{
    struct fx *f = *state;
    char *d;
    d = release_doc("cam", "2.1", 5, 0, now_ms() + DAY, f->img, IMG_SIZE, k_other);
    assert_int_equal(offer(f, d), UPD_ERR_SIGNATURE);
    free(d);
    d = release_doc("cam", "2.1", 5, 0, now_ms() - 1, f->img, IMG_SIZE, k_rel);
    assert_int_equal(offer(f, d), UPD_ERR_EXPIRED);
    free(d);
    d = release_doc("doorbell", "2.1", 5, 0, now_ms() + DAY, f->img, IMG_SIZE, k_rel);
    assert_int_equal(offer(f, d), UPD_ERR_MODEL);
    free(d);
    assert_int_equal(offer(f, "{\"signed\":\"x\"}"), UPD_ERR_SIGNATURE);
    /* a slot too small */
    f->cfg.slot_max = IMG_SIZE - 1;
    boot(f);
    assert_int_equal(offer(f, f->rel2), UPD_ERR_SIZE);
    f->cfg.slot_max = 0;
    boot(f);
    /* a root that does not follow the trusted one */
    char *bad_root = root_doc(2, now_ms() + DAY, id_rel, b64_rel);
    char *wrong = sign_text("{\"type\":\"root\"}", k_other);
    const char *roots[] = {wrong};
    size_t lens[] = {strlen(wrong)};
    assert_int_equal(upd_offer(f->u, roots, lens, 1, f->rel2, strlen(f->rel2), now_ms()),
                     UPD_ERR_ROOT);
    free(wrong);
    free(bad_root);
    /* digest: the right size, other bytes */
    assert_int_equal(offer(f, f->rel2), UPD_OK);
    d = release_doc("cam", "2.2", 6, 0, now_ms() + DAY, f->img_old, 1000, k_rel);
    assert_int_equal(offer(f, d), UPD_ERR_BUSY); /* one at a time */
    assert_int_equal(offer(f, f->rel2), UPD_OK); /* the same one goes on */
    f->img[IMG_SIZE - 1] ^= 1;
    assert_int_equal(send_from(f, f->img, IMG_SIZE), UPD_OK);
    f->img[IMG_SIZE - 1] ^= 1;
    assert_int_equal(upd_finish(f->u), UPD_ERR_DIGEST);
    assert_int_equal(status(f).phase, UPD_IDLE);
    assert_int_equal(status(f).last, UPD_ERR_DIGEST);
    /* oversize: more bytes than the release names */
    assert_int_equal(offer(f, d), UPD_OK);
    assert_int_equal(upd_write(f->u, f->img, 1001), UPD_ERR_SIZE);
    assert_int_equal(status(f).phase, UPD_IDLE);
    /* too few bytes */
    assert_int_equal(offer(f, d), UPD_OK);
    assert_int_equal(upd_write(f->u, f->img_old, 999), UPD_OK);
    assert_int_equal(upd_finish(f->u), UPD_ERR_SIZE);
    free(d);
    /* nothing reached the booted slot, and it still boots */
    boot(f);
    assert_string_equal(status(f).booted, "a");
    assert_int_equal(status(f).phase, UPD_IDLE);
}

static void floor_allows_rollback_only_down_to_it(void **state)
{
    struct fx *f = *state;
    install_and_try(f);
    assert_int_equal(upd_commit(f->u), UPD_OK); /* security version 5, floor 4 */
    uint8_t small[64] = {1, 2, 3};
    char *below = release_doc("cam", "1.9", 3, 0, now_ms() + DAY, small, 64, k_rel);
    char *at = release_doc("cam", "1.9.1", 4, 0, now_ms() + DAY, small, 64, k_rel);
    assert_int_equal(offer(f, below), UPD_ERR_FLOOR);
    assert_int_equal(offer(f, at), UPD_OK); /* an older release at the floor */
    assert_int_equal(send_from(f, small, 64), UPD_OK);
    assert_int_equal(finish(f), UPD_OK);
    boot(f);
    assert_int_equal(upd_commit(f->u), UPD_OK);
    assert_string_equal(status(f).fw_version, "1.9.1");
    assert_int_equal(status(f).floor, 4); /* a floor never goes down */
    assert_int_equal(offer(f, below), UPD_ERR_FLOOR);
    free(below);
    free(at);
}

static void failed_health_check_rolls_back_and_never_loops(void **state)
{
    struct fx *f = *state;
    install_and_try(f);
    assert_int_equal(upd_rollback(f->u), UPD_OK);
    assert_true(status(f).reboot);
    assert_int_equal(upd_commit(f->u), UPD_ERR_FAILED);
    boot(f);
    struct upd_status st = status(f);
    assert_string_equal(st.booted, "a");
    assert_int_equal(st.phase, UPD_IDLE);
    assert_int_equal(st.last, UPD_ERR_HEALTH);
    assert_int_equal(offer(f, f->rel2), UPD_ERR_FAILED);
    boot(f);
    assert_int_equal(offer(f, f->rel2), UPD_ERR_FAILED);
}

static void trial_that_never_comes_up_falls_back(void **state)
{
    struct fx *f = *state;
    install_and_try(f);
    /* the new slot hangs: no commit, no rollback; the next boot */
    boot(f);
    struct upd_status st = status(f);
    assert_string_equal(st.booted, "a");
    assert_int_equal(st.phase, UPD_IDLE);
    assert_int_equal(st.last, UPD_ERR_HEALTH);
    assert_int_equal(offer(f, f->rel2), UPD_ERR_FAILED);
}

static void download_resumes(void **state)
{
    struct fx *f = *state;
    assert_int_equal(offer(f, f->rel2), UPD_OK);
    assert_int_equal(upd_write(f->u, f->img, 2 * CHUNK), UPD_OK);
    boot(f); /* the agent restarts mid-download */
    assert_int_equal(status(f).phase, UPD_DOWNLOAD);
    assert_int_equal(upd_offset(f->u), 2 * CHUNK);
    assert_int_equal(offer(f, f->rel2), UPD_OK); /* offered again: goes on */
    assert_int_equal(upd_offset(f->u), 2 * CHUNK);
    assert_int_equal(send_from(f, f->img, IMG_SIZE), UPD_OK);
    assert_int_equal(finish(f), UPD_OK);
    boot(f);
    assert_int_equal(upd_commit(f->u), UPD_OK);
    assert_string_equal(status(f).fw_version, "2.0");
}

/* Where the image arrives (either backend). */
static void part_of(const struct fx *f, char *p, size_t n)
{
    if (f->hook[0])
        snprintf(p, n, "%s/update/image.part", f->state);
    else
        snprintf(p, n, "%s/b/image.part", f->slots);
}

/* The bytes kept across a restart are hashed again: one changed on disk
 * fails the digest at the end, and nothing is installed; offered again,
 * the download starts from byte 0 and the image installs. */
static void altered_partial_image_is_never_installed(void **state)
{
    struct fx *f = *state;
    char p[256];
    assert_int_equal(offer(f, f->rel2), UPD_OK);
    assert_int_equal(upd_write(f->u, f->img, 3 * CHUNK), UPD_OK);
    upd_close(f->u); /* the device stops mid-download */
    f->u = NULL;
    part_of(f, p, sizeof(p));
    int fd = open(p, O_WRONLY);
    assert_true(fd >= 0);
    uint8_t x = (uint8_t)(f->img[CHUNK] ^ 0xff);
    assert_int_equal(pwrite(fd, &x, 1, CHUNK), 1);
    close(fd);
    boot(f);
    assert_int_equal(upd_offset(f->u), 3 * CHUNK); /* resumed at the bytes on disk */
    assert_int_equal(offer(f, f->rel2), UPD_OK);
    assert_int_equal(send_from(f, f->img, IMG_SIZE), UPD_OK);
    assert_int_equal(finish(f), UPD_ERR_DIGEST);
    assert_int_equal(status(f).phase, UPD_IDLE);
    assert_false(status(f).reboot);
    assert_int_equal(access(p, F_OK), -1); /* dropped */
    snprintf(p, sizeof(p), "%s/b/image", f->slots);
    assert_int_equal(access(p, F_OK), -1); /* never installed */
    assert_int_equal(offer(f, f->rel2), UPD_OK);
    assert_int_equal(upd_offset(f->u), 0);
    assert_int_equal(send_from(f, f->img, IMG_SIZE), UPD_OK);
    assert_int_equal(finish(f), UPD_OK);
    boot(f);
    assert_int_equal(upd_commit(f->u), UPD_OK);
    assert_string_equal(status(f).fw_version, "2.0");
}

/* Every byte arrived, then the device stopped before the checks: after
 * the restart the download is complete and goes straight to them. */
static void whole_image_on_disk_resumes_at_its_end(void **state)
{
    struct fx *f = *state;
    assert_int_equal(offer(f, f->rel2), UPD_OK);
    assert_int_equal(send_from(f, f->img, IMG_SIZE), UPD_OK);
    boot(f);
    assert_int_equal(status(f).phase, UPD_DOWNLOAD);
    assert_int_equal(offer(f, f->rel2), UPD_OK);
    assert_int_equal(upd_offset(f->u), IMG_SIZE);
    assert_int_equal(finish(f), UPD_OK);
    boot(f);
    assert_int_equal(upd_commit(f->u), UPD_OK);
    assert_string_equal(status(f).fw_version, "2.0");
}

/* The booted slot holds a whole image, the one its release names. */
static void assert_boots_verified_image(struct fx *f)
{
    char p[256], *rel = NULL;
    size_t len;
    uint8_t h[CRYPTO_SHA256_LEN];
    char hex[65];
    uint64_t size;
    const char *slot = status(f).booted;
    if (f->hook[0]) { /* the slot's file is one of the two verified images */
        char want_old[65], want_new[65];
        snprintf(p, sizeof(p), "%s/%s.img", f->slots, slot);
        assert_int_equal(crypto_sha256_file(p, UPMETA_IMAGE_MAX, h, &size), MAMORI_OK);
        crypto_hex(h, sizeof(h), hex);
        crypto_sha256(f->img_old, 1000, h);
        crypto_hex(h, sizeof(h), want_old);
        crypto_sha256(f->img, IMG_SIZE, h);
        crypto_hex(h, sizeof(h), want_new);
        assert_true(strcmp(hex, want_old) == 0 || strcmp(hex, want_new) == 0);
        return;
    }
    snprintf(p, sizeof(p), "%s/%s/release.json", f->slots, slot);
    assert_int_equal(fs_read_file(p, UPMETA_DOC_MAX, &rel, &len), MAMORI_OK);
    char *text = NULL;
    json_t *o = NULL;
    assert_int_equal(upmeta_signed_text(rel, len, &text), MAMORI_OK);
    assert_int_equal(json_parse_untrusted(text, strlen(text), UPMETA_SIGNED_MAX, &o, NULL, 0),
                     MAMORI_OK);
    const char *want = json_string_value(json_object_get(json_object_get(o, "image"), "sha256"));
    assert_non_null(want);
    snprintf(p, sizeof(p), "%s/%s/image", f->slots, slot);
    assert_int_equal(crypto_sha256_file(p, UPMETA_IMAGE_MAX, h, &size), MAMORI_OK);
    crypto_hex(h, sizeof(h), hex);
    assert_string_equal(hex, want);
    json_decref(o);
    free(text);
    free(rel);
}

/* Runs the whole update, stopping (as power loss would) after the k-th
 * durable step; returns false when the flow ended before step k. */
static bool flow_with_crash(struct fx *f, int k)
{
    int left = k;
    upd_crash_after(f->u, left);
#define STEP(call)                                                                                 \
    do {                                                                                           \
        enum upd_code c_ = (call);                                                                 \
        if (c_ == UPD_ERR_CRASHED)                                                                 \
            return true;                                                                           \
        assert_int_equal(c_, UPD_OK);                                                              \
    } while (0)
    STEP(offer(f, f->rel2));
    STEP(send_from(f, f->img, IMG_SIZE));
    STEP(finish(f));
    left = upd_crash_pending(f->u);
    boot(f);
    upd_crash_after(f->u, left);
    STEP(upd_commit(f->u));
    return false; /* the whole flow ran: k is past its last step */
#undef STEP
}

static void power_loss_at_every_step(void **state)
{
    struct fx *f0 = *state;
    int k;
    bool hooked = f0->hook[0] != '\0';
    for (k = 1; k < 40; k++) {
        struct fx *f = NULL;
        void *st;
        assert_int_equal(hooked ? setup_hook(&st) : setup(&st), 0);
        f = st;
        bool crashed = flow_with_crash(f, k);
        if (!crashed) {
            teardown(&st);
            break; /* the flow has fewer steps than k: every one was covered */
        }
        /* power back: a verified image boots, and the update can finish */
        boot(f);
        assert_boots_verified_image(f);
        struct upd_status s = status(f);
        for (int round = 0; round < 4 && !(s.phase == UPD_IDLE && s.fw_version[0] == '2');
             round++) {
            if (s.phase == UPD_IDLE) {
                enum upd_code c = offer(f, f->rel2);
                if (c == UPD_ERR_FAILED)
                    break; /* the trial was cut: failed, the old image runs */
                assert_int_equal(c, UPD_OK);
            } else if (s.phase == UPD_DOWNLOAD) {
                assert_int_equal(send_from(f, f->img, IMG_SIZE), UPD_OK);
                assert_int_equal(finish(f), UPD_OK);
            } else if (s.phase == UPD_SWITCH) {
                boot(f);
            } else if (s.phase == UPD_TRIAL) {
                assert_int_equal(upd_commit(f->u), UPD_OK);
            }
            s = status(f);
        }
        boot(f);
        assert_boots_verified_image(f);
        s = status(f);
        assert_int_equal(s.phase, UPD_IDLE);
        if (s.fw_version[0] == '2')
            assert_string_equal(s.booted, "b");
        else
            assert_true(s.last == UPD_ERR_HEALTH && strcmp(s.booted, "a") == 0);
        teardown(&st);
    }
    (void)f0;
    /* offer, 3 syncs of the download, finish (6 steps; with the hook: the
     * digest checked, then after its install 3), commit (1): the loop must
     * have stopped after each of them */
    print_message("power loss injected after each of %d durable steps (%s backend)\n", k - 1,
                  hooked ? "hook" : "built-in");
    assert_int_equal(k - 1, hooked ? 9 : 11);
}

static void hook_install_failure_is_reported_not_remembered(void **state)
{
    struct fx *f = *state;
    flag(f, "fail", true);
    assert_int_equal(offer(f, f->rel2), UPD_OK);
    assert_int_equal(send_from(f, f->img, IMG_SIZE), UPD_OK);
    assert_int_equal(finish(f), UPD_ERR_INSTALL);
    struct upd_status st = status(f);
    assert_int_equal(st.phase, UPD_IDLE);
    assert_int_equal(st.last, UPD_ERR_INSTALL);
    assert_int_equal(st.nfailed, 0);
    assert_false(st.reboot);
    char p[256];
    snprintf(p, sizeof(p), "%s/update/image.part", f->state);
    assert_int_not_equal(access(p, F_OK), 0); /* the staged copy is gone */
    /* the cause fixed, the hub may offer it again */
    flag(f, "fail", false);
    assert_int_equal(offer(f, f->rel2), UPD_OK);
    assert_int_equal(send_from(f, f->img, IMG_SIZE), UPD_OK);
    assert_int_equal(finish(f), UPD_OK);
    boot(f);
    assert_int_equal(upd_commit(f->u), UPD_OK);
    assert_string_equal(status(f).fw_version, "2.0");
}

static void hook_install_past_its_deadline_is_stopped(void **state)
{
    struct fx *f = *state;
    f->cfg.install_s = 1;
    boot(f);
    flag(f, "slow", true);
    assert_int_equal(offer(f, f->rel2), UPD_OK);
    assert_int_equal(send_from(f, f->img, IMG_SIZE), UPD_OK);
    time_t t0 = time(NULL);
    assert_int_equal(upd_finish(f->u), UPD_PENDING);
    assert_int_equal(upd_poll(f->u, 0), UPD_PENDING); /* the device goes on meanwhile */
    assert_int_equal(upd_cancel(f->u), UPD_ERR_BUSY); /* not while it installs */
    enum upd_code c = UPD_PENDING;
    for (int i = 0; c == UPD_PENDING && i < 100; i++)
        c = upd_poll(f->u, 100);
    assert_int_equal(c, UPD_ERR_INSTALL);
    assert_true(time(NULL) - t0 < 10);
    assert_int_equal(status(f).phase, UPD_IDLE);
    boot(f);
    assert_string_equal(status(f).booted, "a");
}

static void hook_status_must_be_exact(void **state)
{
    struct fx *f = *state;
    struct upd *u = NULL;
    flag(f, "garbage", true);
    upd_close(f->u);
    f->u = NULL;
    assert_int_equal(upd_open(&f->cfg, &u), MAMORI_ERR_PARSE); /* fails closed */
    assert_null(u);
    flag(f, "garbage", false);
    struct upd_config c = f->cfg;
    c.hook = "hook"; /* a hook is named by its absolute path */
    assert_int_equal(upd_open(&c, &u), MAMORI_ERR_INVAL);
    char missing[200];
    snprintf(missing, sizeof(missing), "%s/no-such-hook", f->dir);
    c.hook = missing;
    assert_int_not_equal(upd_open(&c, &u), MAMORI_OK);
    assert_null(u);
    assert_int_equal(upd_open(&f->cfg, &f->u), MAMORI_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(happy_path, setup, teardown),
        cmocka_unit_test_setup_teardown(every_refusal_has_its_code, setup, teardown),
        cmocka_unit_test_setup_teardown(floor_allows_rollback_only_down_to_it, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_health_check_rolls_back_and_never_loops, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(trial_that_never_comes_up_falls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(download_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(altered_partial_image_is_never_installed, setup, teardown),
        cmocka_unit_test_setup_teardown(whole_image_on_disk_resumes_at_its_end, setup, teardown),
        cmocka_unit_test_setup_teardown(power_loss_at_every_step, setup, teardown),
        /* the hook backend */
        cmocka_unit_test_setup_teardown(happy_path, setup_hook, teardown),
        cmocka_unit_test_setup_teardown(every_refusal_has_its_code, setup_hook, teardown),
        cmocka_unit_test_setup_teardown(failed_health_check_rolls_back_and_never_loops, setup_hook,
                                        teardown),
        cmocka_unit_test_setup_teardown(trial_that_never_comes_up_falls_back, setup_hook, teardown),
        cmocka_unit_test_setup_teardown(download_resumes, setup_hook, teardown),
        cmocka_unit_test_setup_teardown(altered_partial_image_is_never_installed, setup_hook,
                                        teardown),
        cmocka_unit_test_setup_teardown(whole_image_on_disk_resumes_at_its_end, setup_hook,
                                        teardown),
        cmocka_unit_test_setup_teardown(power_loss_at_every_step, setup_hook, teardown),
        cmocka_unit_test_setup_teardown(hook_install_failure_is_reported_not_remembered, setup_hook,
                                        teardown),
        cmocka_unit_test_setup_teardown(hook_install_past_its_deadline_is_stopped, setup_hook,
                                        teardown),
        cmocka_unit_test_setup_teardown(hook_status_must_be_exact, setup_hook, teardown),
    };
    return cmocka_run_group_tests(tests, setup_keys, teardown_keys);
}
