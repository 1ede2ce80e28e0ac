/*
 * Unit tests: the device identity's rotation on disk (lib/identity.c).
 *
 * The install is stopped after each of its durable steps, as kill -9 would
 * stop it; identity_repair() must then leave a matching key and
 * certificate (the new pair once its certificate is on disk), no pending
 * or leftover file, and no file holding the replaced key.
 */
#define _GNU_SOURCE /* memmem */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/crypto.h"
#include "common/fsutil.h"
#include "lib/identity.h"

#define DEV_ID "MM0123456789ABCDEF"

struct fixture {
    char dir[64];
    struct crypto_key *ca_key;
    char *ca_pem;
    struct crypto_cert *ca;
    char *old_key_pem; /* the key being replaced, to look for afterwards */
    size_t old_key_len;
};

static char *issue(struct fixture *f, const struct crypto_key *subject, const char *cn,
                   const struct crypto_cert *issuer, const struct crypto_key *issuer_key)
{
    char *pem = NULL;
    struct crypto_issue p = {.kind = CRYPTO_CERT_CLIENT,
                             .cn = cn,
                             .subject = subject,
                             .issuer = issuer ? issuer : f->ca,
                             .issuer_key = issuer_key ? issuer_key : f->ca_key,
                             .not_after = time(NULL) + 86400};
    assert_int_equal(crypto_cert_issue(&p, &pem), MAMORI_OK);
    return pem;
}

static void path_in(const struct fixture *f, const char *name, char *out, size_t n)
{
    assert_int_equal(fs_path(out, n, f->dir, name), MAMORI_OK);
}

static void write_file(const struct fixture *f, const char *name, const char *text, mode_t mode)
{
    char p[256];
    path_in(f, name, p, sizeof(p));
    assert_int_equal(fs_write_atomic(p, text, strlen(text), mode), MAMORI_OK);
}

static bool present(const struct fixture *f, const char *name)
{
    char p[256];
    struct stat st;
    path_in(f, name, p, sizeof(p));
    return lstat(p, &st) == 0;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/mamori-identity-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(crypto_key_generate(&f->ca_key), MAMORI_OK);
    struct crypto_issue root = {.kind = CRYPTO_CERT_ROOT_CA,
                                .cn = "Test Root",
                                .subject = f->ca_key,
                                .issuer_key = f->ca_key,
                                .not_after = time(NULL) + 86400};
    assert_int_equal(crypto_cert_issue(&root, &f->ca_pem), MAMORI_OK);
    assert_int_equal(crypto_cert_parse(f->ca_pem, strlen(f->ca_pem), &f->ca), MAMORI_OK);
    struct crypto_key *k;
    char p[256];
    assert_int_equal(crypto_key_generate(&k), MAMORI_OK);
    path_in(f, "device.key", p, sizeof(p));
    assert_int_equal(crypto_key_save(k, p), MAMORI_OK);
    char *crt = issue(f, k, DEV_ID, NULL, NULL);
    write_file(f, "device.crt", crt, 0644);
    free(crt);
    crypto_key_free(k);
    assert_int_equal(fs_read_file(p, 8192, &f->old_key_pem, &f->old_key_len), MAMORI_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    DIR *d = opendir(f->dir);
    struct dirent *e;
    char p[512];
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' && snprintf(p, sizeof(p), "%s/%s", f->dir, e->d_name) > 0)
            unlink(p);
    if (d)
        closedir(d);
    rmdir(f->dir);
    crypto_key_free(f->ca_key);
    crypto_cert_free(f->ca);
    free(f->ca_pem);
    free(f->old_key_pem);
    free(f);
    return 0;
}

/* The certificate the hub would issue for the pending key's CSR. */
static char *cert_for_pending(struct fixture *f)
{
    char *csr_pem = NULL;
    struct crypto_csr *csr = NULL;
    assert_int_equal(identity_pending_csr(f->dir, DEV_ID, true, CRYPTO_KEYSTORE_FILE, &csr_pem),
                     MAMORI_OK);
    assert_int_equal(crypto_csr_parse(csr_pem, strlen(csr_pem), &csr), MAMORI_OK);
    char *pem = NULL;
    struct crypto_issue p = {.kind = CRYPTO_CERT_CLIENT,
                             .cn = DEV_ID,
                             .csr = csr,
                             .issuer = f->ca,
                             .issuer_key = f->ca_key,
                             .not_after = time(NULL) + 86400};
    assert_int_equal(crypto_cert_issue(&p, &pem), MAMORI_OK);
    crypto_csr_free(csr);
    free(csr_pem);
    return pem;
}

static bool pair_is(const struct fixture *f, const char *cert_pem)
{
    char p[256], *txt = NULL;
    size_t len;
    path_in(f, "device.crt", p, sizeof(p));
    if (fs_read_file(p, 8192, &txt, &len))
        return false;
    bool same = strcmp(txt, cert_pem) == 0;
    free(txt);
    return same;
}

/* No file in the directory holds the replaced key any more. */
static bool old_key_gone(const struct fixture *f)
{
    DIR *d = opendir(f->dir);
    struct dirent *e;
    bool gone = true;
    char p[512], *txt;
    size_t len;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' || snprintf(p, sizeof(p), "%s/%s", f->dir, e->d_name) <= 0 ||
            fs_read_file(p, 65536, &txt, &len))
            continue;
        if (memmem(txt, len, f->old_key_pem, f->old_key_len))
            gone = false;
        free(txt);
    }
    if (d)
        closedir(d);
    return gone;
}

static void pending_key_is_reused(void **state)
{
    struct fixture *f = *state;
    char *a = NULL, *b = NULL;
    assert_int_equal(identity_pending_csr(f->dir, DEV_ID, false, CRYPTO_KEYSTORE_FILE, &a),
                     MAMORI_ERR_NOTFOUND);
    assert_int_equal(identity_pending_csr(f->dir, DEV_ID, true, CRYPTO_KEYSTORE_FILE, &a),
                     MAMORI_OK);
    char p[256];
    path_in(f, "pending.key", p, sizeof(p));
    assert_int_equal(fs_check_private(p, 0), MAMORI_OK);
    assert_int_equal(identity_pending_csr(f->dir, DEV_ID, true, CRYPTO_KEYSTORE_FILE, &b),
                     MAMORI_OK);
    struct crypto_csr *ca = NULL, *cb = NULL;
    assert_int_equal(crypto_csr_parse(a, strlen(a), &ca), MAMORI_OK);
    assert_int_equal(crypto_csr_parse(b, strlen(b), &cb), MAMORI_OK);
    /* same key: the certificate issued for either fits */
    char *crt = cert_for_pending(f);
    char fp[CRYPTO_FP_HEX_LEN];
    assert_int_equal(identity_check_new(f->dir, crt, strlen(crt), NULL, 0, f->ca_pem, DEV_ID, fp),
                     MAMORI_OK);
    crypto_csr_free(ca);
    crypto_csr_free(cb);
    free(a);
    free(b);
    free(crt);
    /* a pending key alone is kept across a restart (waiting for its cert) */
    assert_int_equal(identity_repair(f->dir), MAMORI_OK);
    assert_true(present(f, "pending.key"));
}

static void bad_certificates_refused(void **state)
{
    struct fixture *f = *state;
    char fp[CRYPTO_FP_HEX_LEN];
    struct crypto_key *other, *rogue_key;
    assert_int_equal(crypto_key_generate(&other), MAMORI_OK);
    char *for_other = issue(f, other, DEV_ID, NULL, NULL);
    /* nothing pending: nothing to install */
    assert_int_equal(
        identity_check_new(f->dir, for_other, strlen(for_other), NULL, 0, f->ca_pem, DEV_ID, fp),
        MAMORI_ERR_STATE);
    char *good = cert_for_pending(f);
    /* another key */
    assert_int_equal(
        identity_check_new(f->dir, for_other, strlen(for_other), NULL, 0, f->ca_pem, DEV_ID, fp),
        MAMORI_ERR_CRYPTO);
    /* another device's name */
    assert_int_equal(identity_check_new(f->dir, good, strlen(good), NULL, 0, f->ca_pem,
                                        "MM0000000000000000", fp),
                     MAMORI_ERR_FORBIDDEN);
    /* a CA the device does not trust */
    assert_int_equal(crypto_key_generate(&rogue_key), MAMORI_OK);
    struct crypto_issue rr = {.kind = CRYPTO_CERT_ROOT_CA,
                              .cn = "Rogue",
                              .subject = rogue_key,
                              .issuer_key = rogue_key,
                              .not_after = time(NULL) + 86400};
    char *rogue_pem = NULL;
    struct crypto_cert *rogue = NULL;
    assert_int_equal(crypto_cert_issue(&rr, &rogue_pem), MAMORI_OK);
    assert_int_equal(crypto_cert_parse(rogue_pem, strlen(rogue_pem), &rogue), MAMORI_OK);
    char *csr_pem = NULL;
    assert_int_equal(identity_pending_csr(f->dir, DEV_ID, false, CRYPTO_KEYSTORE_FILE, &csr_pem),
                     MAMORI_OK);
    struct crypto_csr *csr = NULL;
    assert_int_equal(crypto_csr_parse(csr_pem, strlen(csr_pem), &csr), MAMORI_OK);
    char *forged = NULL;
    struct crypto_issue fi = {.kind = CRYPTO_CERT_CLIENT,
                              .cn = DEV_ID,
                              .csr = csr,
                              .issuer = rogue,
                              .issuer_key = rogue_key,
                              .not_after = time(NULL) + 86400};
    assert_int_equal(crypto_cert_issue(&fi, &forged), MAMORI_OK);
    assert_int_not_equal(identity_check_new(f->dir, forged, strlen(forged), rogue_pem,
                                            strlen(rogue_pem), f->ca_pem, DEV_ID, fp),
                         MAMORI_OK);
    /* garbage */
    assert_int_not_equal(identity_check_new(f->dir, "x", 1, NULL, 0, f->ca_pem, DEV_ID, fp),
                         MAMORI_OK);
    /* none of this touched the pair in use */
    assert_int_equal(identity_repair(f->dir), MAMORI_OK);
    assert_false(old_key_gone(f));
    crypto_csr_free(csr);
    crypto_cert_free(rogue);
    crypto_key_free(rogue_key);
    crypto_key_free(other);
    free(csr_pem);
    free(rogue_pem);
    free(forged);
    free(good);
    free(for_other);
}

static void crash_at_every_step(void **state)
{
    struct fixture *f = *state;
    for (int step = 0; step <= ID_N_STEPS; step++) {
        if (step) {
            /* a fresh identity for each round */
            teardown(state);
            setup(state);
            f = *state;
        }
        char *crt = cert_for_pending(f);
        char fp[CRYPTO_FP_HEX_LEN];
        assert_int_equal(
            identity_check_new(f->dir, crt, strlen(crt), NULL, 0, f->ca_pem, DEV_ID, fp),
            MAMORI_OK);
        /* step 0: the install runs to its end */
        assert_int_equal(identity_install(f->dir, crt, strlen(crt), step), MAMORI_OK);
        assert_int_equal(identity_repair(f->dir), MAMORI_OK);
        if (!pair_is(f, crt))
            fail_msg("after a stop at step %d the new pair is not in place", step);
        assert_false(present(f, "pending.key"));
        assert_false(present(f, "device.crt.new"));
        assert_false(present(f, "device.key.old"));
        if (!old_key_gone(f))
            fail_msg("after a stop at step %d the old key is still on disk", step);
        char p[256];
        path_in(f, "device.key", p, sizeof(p));
        assert_int_equal(fs_check_private(p, 0), MAMORI_OK);
        /* a second repair changes nothing */
        assert_int_equal(identity_repair(f->dir), MAMORI_OK);
        assert_true(pair_is(f, crt));
        free(crt);
    }
}

static void stray_files_cleaned(void **state)
{
    struct fixture *f = *state;
    struct crypto_key *other;
    assert_int_equal(crypto_key_generate(&other), MAMORI_OK);
    char *for_other = issue(f, other, DEV_ID, NULL, NULL);
    write_file(f, "device.crt.new", for_other, 0644);
    write_file(f, "device.crt.new.tmp", "half", 0644);
    assert_int_equal(identity_repair(f->dir), MAMORI_OK);
    assert_false(present(f, "device.crt.new"));
    assert_false(present(f, "device.crt.new.tmp"));
    /* a certificate that fits no key we hold: the identity is broken */
    write_file(f, "device.crt", for_other, 0644);
    assert_int_equal(identity_repair(f->dir), MAMORI_ERR_CRYPTO);
    crypto_key_free(other);
    free(for_other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(pending_key_is_reused, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_certificates_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(crash_at_every_step, setup, teardown),
        cmocka_unit_test_setup_teardown(stray_files_cleaned, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
