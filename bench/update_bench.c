/*
 * update-bench - the device update engine's verification throughput and
 * peak memory, side by side with sha256sum over the same image in the same
 * run. Each measured job runs in its own child process, so its peak RSS is
 * its own (wait4). Files only; no network.
 *
 *   update-bench [DIR=/tmp] [SIZE_MB=256]
 *
 * Jobs: sha256sum FILE (the baseline); the engine's verification alone
 * (crypto_sha256_file, 64 KiB reads); a whole install through lib/update
 * (offer, the image streamed in 64 KiB chunks into the inactive slot,
 * hashed as written, synced every MiB, digest check, switch).
 *
 * Where rauc and mksquashfs are installed, the same image is also packed
 * into a RAUC bundle (plain format, uncompressed squashfs, signed with a
 * throw-away P-256 certificate) and verified side by side: `rauc info
 * --keyring` (RAUC checks the bundle's CMS signature over all of it), the
 * engine's verification of that bundle file (what the hook backend does
 * before `rauc install`), and sha256sum of it.
 */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/crypto.h"
#include "common/fsutil.h"
#include "common/upmeta.h"
#include "lib/update.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct result {
    double seconds;
    long max_rss_kb;
    int status;
};

/* Runs fn(arg) in a child; its time and peak RSS. */
static struct result child(int (*fn)(void *), void *arg)
{
    struct result r = {0, 0, -1};
    struct rusage ru;
    fflush(stdout); /* the child must not print the parent's buffer again */
    double t0 = now_s();
    pid_t p = fork();
    if (p == 0)
        _exit(fn(arg));
    int st = 0;
    if (p > 0 && wait4(p, &st, 0, &ru) == p) {
        r.seconds = now_s() - t0;
        r.max_rss_kb = ru.ru_maxrss;
        r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
    }
    return r;
}

struct job {
    const char *image, *dir, *release;
    uint64_t size;
    const char *bundle, *cert; /* RAUC */
};

static int run_rauc_info(void *arg)
{
    const struct job *j = arg;
    if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
        return 1;
    execlp("rauc", "rauc", "info", "--keyring", j->cert, j->bundle, (char *)NULL);
    return 127;
}

static int run_verify_bundle(void *arg)
{
    const struct job *j = arg;
    uint8_t h[CRYPTO_SHA256_LEN];
    uint64_t size;
    return crypto_sha256_file(j->bundle, UPMETA_IMAGE_MAX, h, &size) == MAMORI_OK ? 0 : 1;
}

static int run_sha256sum_bundle(void *arg)
{
    const struct job *j = arg;
    if (!freopen("/dev/null", "w", stdout))
        return 1;
    execlp("sha256sum", "sha256sum", j->bundle, (char *)NULL);
    return 127;
}

/* The image as a signed RAUC bundle DIR/fw.raucb; false when RAUC is not
 * installed or the bundle cannot be made. */
static bool make_bundle(const char *dir, char *bundle, size_t bn, char *cert, size_t cn)
{
    char cmd[4096];
    snprintf(bundle, bn, "%s/fw.raucb", dir);
    snprintf(cert, cn, "%s/rauc.crt", dir);
    int n = snprintf(
        cmd, sizeof(cmd),
        "command -v rauc >/dev/null && command -v mksquashfs >/dev/null || exit 1; "
        "cd '%s' && mkdir -p content && ln image content/rootfs.img && "
        "printf '[update]\\ncompatible=bench\\nversion=1\\n\\n[bundle]\\nformat=plain\\n\\n"
        "[image.rootfs]\\nfilename=rootfs.img\\n' >content/manifest.raucm && "
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout rauc.key "
        "-out rauc.crt -days 2 -subj /CN=bench 2>/dev/null && "
        "rauc bundle --cert rauc.crt --key rauc.key --mksquashfs-args='-noI -noD -noF -noX' "
        "content fw.raucb >/dev/null 2>&1",
        dir);
    return n > 0 && (size_t)n < sizeof(cmd) && system(cmd) == 0;
}

static int run_sha256sum(void *arg)
{
    const struct job *j = arg;
    if (!freopen("/dev/null", "w", stdout))
        return 1;
    execlp("sha256sum", "sha256sum", j->image, (char *)NULL);
    return 127;
}

static int run_verify(void *arg)
{
    const struct job *j = arg;
    uint8_t h[CRYPTO_SHA256_LEN];
    uint64_t size;
    return crypto_sha256_file(j->image, UPMETA_IMAGE_MAX, h, &size) == MAMORI_OK ? 0 : 1;
}

static int run_install(void *arg)
{
    const struct job *j = arg;
    char state[512], slots[512], anchor[512];
    char booted[2];
    static uint8_t buf[64 * 1024];
    snprintf(state, sizeof(state), "%s/state", j->dir);
    snprintf(slots, sizeof(slots), "%s/slots", j->dir);
    snprintf(anchor, sizeof(anchor), "%s/root.json", j->dir);
    struct upd_config c = {
        .state_dir = state, .slots_dir = slots, .anchor_path = anchor, .model = "bench"};
    struct upd *u = NULL;
    if (upd_boot(slots, booted) || upd_open(&c, &u))
        return 1;
    int rc = 2;
    FILE *f = fopen(j->image, "rb");
    if (f && upd_offer(u, NULL, NULL, 0, j->release, strlen(j->release),
                       (int64_t)time(NULL) * 1000) == UPD_OK) {
        size_t n;
        rc = 0;
        while (!rc && (n = fread(buf, 1, sizeof(buf), f)) > 0)
            rc = upd_write(u, buf, n) == UPD_OK ? 0 : 3;
        if (!rc)
            rc = upd_finish(u) == UPD_OK ? 0 : 4;
    }
    if (f)
        fclose(f);
    upd_close(u);
    return rc;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static char *signed_doc(const char *text, const struct crypto_key *k)
{
    char *doc = NULL, *out = NULL;
    if (upmeta_wrap(text, &doc) || upmeta_sign(doc, strlen(doc), k, &out))
        out = NULL;
    free(doc);
    return out;
}

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : "/tmp";
    char *end = NULL;
    long mb = argc > 2 ? strtol(argv[2], &end, 10) : 256;
    if (argc > 2 && (!*argv[2] || *end))
        return 2;
    char dir[512], image[600], p[700], text[2048], kid[65], b64[256], hex[65];
    if (mb < 1 || mb > 16384)
        return 2;
    snprintf(dir, sizeof(dir), "%s/mamori-update-bench.XXXXXX", base);
    if (!mkdtemp(dir))
        return 1;
    snprintf(image, sizeof(image), "%s/image", dir);
    /* the image: pseudo-random 1 MiB blocks */
    FILE *f = fopen(image, "wb");
    static uint8_t block[1 << 20];
    if (!f || crypto_random(block, sizeof(block)))
        return 1;
    for (long i = 0; i < mb; i++) {
        memcpy(block, &i, sizeof(i));
        if (fwrite(block, 1, sizeof(block), f) != sizeof(block))
            return 1;
    }
    fclose(f);
    uint64_t size = (uint64_t)mb << 20;
    /* a root and a release for it, one key for both roles */
    struct crypto_key *k = NULL;
    uint8_t spki[CRYPTO_SPKI_MAX], h[CRYPTO_SHA256_LEN];
    size_t n;
    uint64_t got;
    if (crypto_key_generate(&k) || crypto_key_spki(k, spki, &n) ||
        crypto_sha256_file(image, UPMETA_IMAGE_MAX, h, &got))
        return 1;
    crypto_key_id(spki, n, kid);
    crypto_b64_encode(spki, n, b64, sizeof(b64));
    crypto_hex(h, sizeof(h), hex);
    snprintf(text, sizeof(text),
             "{\"type\":\"root\",\"version\":1,\"expires\":%lld,\"keys\":{\"%s\":\"%s\"},\"roles\":"
             "{\"root\":{\"keyids\":[\"%s\"],\"threshold\":1},\"release\":{\"keyids\":[\"%s\"],"
             "\"threshold\":1}}}",
             (long long)(time(NULL) + 86400) * 1000, kid, b64, kid, kid);
    char *root = signed_doc(text, k);
    snprintf(text, sizeof(text),
             "{\"type\":\"release\",\"model\":\"bench\",\"fw_version\":\"1\",\"security_version\":"
             "1,\"floor\":0,\"expires\":%lld,\"image\":{\"sha256\":\"%s\",\"size\":%llu}}",
             (long long)(time(NULL) + 86400) * 1000, hex, (unsigned long long)size);
    char *release = signed_doc(text, k);
    crypto_key_free(k);
    snprintf(p, sizeof(p), "%s/root.json", dir);
    if (!root || !release || fs_write_atomic(p, root, strlen(root), 0600))
        return 1;
    struct job j = {image, dir, release, size, NULL, NULL};

    printf("# update-bench %s %ld   (image %ld MiB, page cache warm: it was just written and "
           "hashed)\n",
           base, mb, mb);
    printf("%-52s %10s %10s %12s\n", "job", "seconds", "MB/s", "peak RSS kB");
    struct {
        const char *name;
        int (*fn)(void *);
    } jobs[] = {
        {"sha256sum FILE (baseline)", run_sha256sum},
        {"mamori verify (crypto_sha256_file, 64 KiB reads)", run_verify},
        {"sha256sum FILE (baseline, again)", run_sha256sum},
        {"mamori verify (again)", run_verify},
        {"mamori install: stream into slot + hash + sync + switch", run_install},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof(jobs) / sizeof(jobs[0]); i++) {
        struct result r = child(jobs[i].fn, &j);
        printf("%-52s %10.2f %10.1f %12ld%s\n", jobs[i].name, r.seconds,
               r.seconds > 0 ? (double)size / 1e6 / r.seconds : 0.0, r.max_rss_kb,
               r.status ? "  FAILED" : "");
        bad |= r.status != 0;
    }
    char bundle[700], cert[700];
    struct stat bst;
    if (make_bundle(dir, bundle, sizeof(bundle), cert, sizeof(cert)) && stat(bundle, &bst) == 0) {
        j.bundle = bundle;
        j.cert = cert;
        printf("# the same image as a RAUC bundle (plain, uncompressed squashfs): %lld bytes\n",
               (long long)bst.st_size);
        struct {
            const char *name;
            int (*fn)(void *);
        } rjobs[] = {
            {"sha256sum BUNDLE (baseline)", run_sha256sum_bundle},
            {"rauc info --keyring (RAUC verifies the bundle)", run_rauc_info},
            {"mamori verify BUNDLE (hook backend, before install)", run_verify_bundle},
            {"rauc info --keyring (again)", run_rauc_info},
            {"mamori verify BUNDLE (again)", run_verify_bundle},
        };
        for (size_t i = 0; i < sizeof(rjobs) / sizeof(rjobs[0]); i++) {
            struct result r = child(rjobs[i].fn, &j);
            printf("%-52s %10.2f %10.1f %12ld%s\n", rjobs[i].name, r.seconds,
                   r.seconds > 0 ? (double)bst.st_size / 1e6 / r.seconds : 0.0, r.max_rss_kb,
                   r.status ? "  FAILED" : "");
            bad |= r.status != 0;
        }
    } else {
        printf("# RAUC side by side: skipped (rauc or mksquashfs not installed)\n");
    }
    free(root);
    free(release);
    /* leave nothing behind */
    if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        bad = 1;
    return bad;
}
