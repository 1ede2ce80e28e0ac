/* lib/identity.c - see identity.h. */
#include "lib/identity.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/log.h"

struct paths {
    char key[4096], crt[4096], pending[4096], crt_new[4096], old[4096];
};

static enum mamori_err paths_of(const char *dir, struct paths *p)
{
    enum mamori_err rc;
    if ((rc = fs_path(p->key, sizeof(p->key), dir, "device.key")) ||
        (rc = fs_path(p->crt, sizeof(p->crt), dir, "device.crt")) ||
        (rc = fs_path(p->pending, sizeof(p->pending), dir, "pending.key")) ||
        (rc = fs_path(p->crt_new, sizeof(p->crt_new), dir, "device.crt.new")) ||
        (rc = fs_path(p->old, sizeof(p->old), dir, "device.key.old")))
        return rc;
    return MAMORI_OK;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* True when the certificate file holds the public half of the key file. */
static bool pair_matches(const char *crt_path, const char *key_path)
{
    struct crypto_cert *c = NULL;
    struct crypto_key *k = NULL;
    bool ok = crypto_cert_load(crt_path, &c) == MAMORI_OK &&
              crypto_key_load(key_path, &k) == MAMORI_OK && crypto_cert_matches_key(c, k);
    crypto_cert_free(c);
    crypto_key_free(k);
    return ok;
}

static bool same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* Steps 2..5 of the install, from the one given. */
static enum mamori_err finish_from(const struct paths *p, int step, int stop_after)
{
    enum mamori_err rc;
    if (step <= ID_STEP_OLD_LINKED) {
        /* The old key keeps a name until the switch is complete, so it can
         * be shredded afterwards (a rename over it would only unlink it). */
        if (exists(p->old) && !same_file(p->old, p->key) && (rc = fs_shred(p->old)))
            return rc; /* left over from an earlier switch */
        if (!exists(p->old) && link(p->key, p->old) && errno != ENOENT)
            return MAMORI_ERR_IO;
        if (stop_after == ID_STEP_OLD_LINKED)
            return MAMORI_OK;
    }
    if (step <= ID_STEP_KEY_SWITCHED) {
        if ((rc = fs_rename_durable(p->pending, p->key)))
            return rc;
        if (stop_after == ID_STEP_KEY_SWITCHED)
            return MAMORI_OK;
    }
    if (step <= ID_STEP_CERT_SWITCHED) {
        if ((rc = fs_rename_durable(p->crt_new, p->crt)))
            return rc;
        if (stop_after == ID_STEP_CERT_SWITCHED)
            return MAMORI_OK;
    }
    /* Only a name of a replaced key is shredded, never the key in use. */
    if (exists(p->old) && !same_file(p->old, p->key) && (rc = fs_shred(p->old)))
        return rc;
    return MAMORI_OK;
}

enum mamori_err identity_repair(const char *dir)
{
    struct paths p;
    enum mamori_err rc = paths_of(dir, &p);
    if (rc)
        return rc;
    char tmp[4200];
    /* A certificate write cut short leaves only its temporary file. */
    snprintf(tmp, sizeof(tmp), "%s.tmp", p.crt_new);
    unlink(tmp);
    if (exists(p.crt_new)) {
        if (exists(p.pending) && pair_matches(p.crt_new, p.pending)) {
            log_warn("identity: finishing an interrupted certificate switch");
            return finish_from(&p, ID_STEP_OLD_LINKED, 0);
        }
        if (pair_matches(p.crt_new, p.key)) {
            log_warn(
                "identity: finishing an interrupted certificate switch (key already in place)");
            return finish_from(&p, ID_STEP_CERT_SWITCHED, 0);
        }
        unlink(p.crt_new); /* belongs to no key we hold */
    }
    if (exists(p.old)) {
        if (same_file(p.old, p.key)) {
            unlink(p.old); /* linked, never switched */
        } else if (pair_matches(p.crt, p.key)) {
            if ((rc = fs_shred(p.old)))
                return rc;
        } else if (pair_matches(p.crt, p.old)) {
            /* Not reachable through identity_install; restore the pair. */
            if ((rc = fs_rename_durable(p.old, p.key)))
                return rc;
        }
    }
    return pair_matches(p.crt, p.key) ? MAMORI_OK : MAMORI_ERR_CRYPTO;
}

enum mamori_err identity_pending_csr(const char *dir, const char *device_id, bool create,
                                     enum crypto_keystore ks, char **csr_pem)
{
    struct paths p;
    struct crypto_key *k = NULL;
    *csr_pem = NULL;
    enum mamori_err rc = paths_of(dir, &p);
    if (rc)
        return rc;
    if (exists(p.pending)) {
        if ((rc = fs_check_private(p.pending, 0)) || (rc = crypto_key_load(p.pending, &k)))
            return rc;
    } else if (!create) {
        return MAMORI_ERR_NOTFOUND;
    } else if ((rc = crypto_key_generate_in(ks, &k)) || (rc = crypto_key_save(k, p.pending))) {
        crypto_key_free(k);
        return rc;
    }
    rc = crypto_csr_create(k, device_id, csr_pem);
    crypto_key_free(k);
    return rc;
}

enum mamori_err identity_check_new(const char *dir, const char *cert_pem, size_t cert_len,
                                   const char *chain_pem, size_t chain_len, const char *trust_pem,
                                   const char *device_id, char fp_out[CRYPTO_FP_HEX_LEN])
{
    struct paths p;
    struct crypto_cert *c = NULL;
    struct crypto_key *k = NULL;
    char cn[64];
    enum mamori_err rc = paths_of(dir, &p);
    if (rc)
        return rc;
    if (!exists(p.pending))
        return MAMORI_ERR_STATE;
    if ((rc = crypto_cert_parse(cert_pem, cert_len, &c)))
        return rc;
    rc = crypto_cert_verify_chain(c, chain_len ? chain_pem : NULL, chain_len, trust_pem);
    if (!rc && (crypto_cert_cn(c, cn, sizeof(cn)) || strcmp(cn, device_id) != 0))
        rc = MAMORI_ERR_FORBIDDEN;
    if (!rc && !(rc = crypto_key_load(p.pending, &k)) && !crypto_cert_matches_key(c, k))
        rc = MAMORI_ERR_CRYPTO;
    if (!rc)
        crypto_cert_fingerprint(c, fp_out);
    crypto_key_free(k);
    crypto_cert_free(c);
    return rc;
}

enum mamori_err identity_install(const char *dir, const char *cert_pem, size_t cert_len,
                                 int stop_after)
{
    struct paths p;
    enum mamori_err rc = paths_of(dir, &p);
    if (rc)
        return rc;
    if (!exists(p.pending))
        return MAMORI_ERR_STATE;
    if ((rc = fs_write_atomic(p.crt_new, cert_pem, cert_len, 0644)))
        return rc;
    if (stop_after == ID_STEP_CERT_WRITTEN)
        return MAMORI_OK;
    return finish_from(&p, ID_STEP_OLD_LINKED, stop_after);
}
