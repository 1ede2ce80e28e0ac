/*
 * hub/hub_init.c - `mamorid hub-init --from HUBDATA --data DIR`: the data
 * directory of one more hub over the same PostgreSQL store.
 *
 * Hubs over one store are one platform: they sign with the same issuing CA
 * and command signer, present the same API and broker certificates, are
 * known to the broker plugin by the same client certificate, and chain
 * the one audit log with the same key. So the new directory gets copies
 * of those (keys 0600, the rest 0644) and nothing else: not the root CA's
 * key (pki/offline/, kept off line), not the database, not the bootstrap
 * token, not the audit anchor (each hub anchors the chain as it sees it).
 * The copy is made once, into a directory that has none of them yet.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/log.h"
#include "hub/core/hub.h"
#include "hub/hub_init.h"

#define SHARED_MAX (64 * 1024)

static const struct {
    const char *path;
    mode_t mode;
} SHARED[] = {
    {"pki/root.crt", 0644},       {"pki/issuing.crt", 0644},    {"pki/issuing.key", 0600},
    {"pki/api.crt", 0644},        {"pki/api.key", 0600},        {"pki/broker.crt", 0644},
    {"pki/broker.key", 0600},     {"pki/hub-client.crt", 0644}, {"pki/hub-client.key", 0600},
    {"pki/cmd-signer.crt", 0644}, {"pki/cmd-signer.key", 0600}, {"pki/device-trust.pem", 0644},
    {"secrets/audit.key", 0600},
};
#define N_SHARED (sizeof(SHARED) / sizeof(SHARED[0]))

/* Copies one file; a private one must be private at the source too. */
static enum mamori_err copy_one(const char *from, const char *to, const char *rel, mode_t mode)
{
    char src[HUB_PATH_MAX], dst[HUB_PATH_MAX], dir[HUB_PATH_MAX];
    enum mamori_err rc;
    if ((rc = fs_path(src, sizeof(src), from, rel)) || (rc = fs_path(dst, sizeof(dst), to, rel)))
        return rc;
    if (mode == 0600 && (rc = fs_check_private(src, 0)))
        return rc;
    snprintf(dir, sizeof(dir), "%s", dst);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    return (rc = fs_mkdir_p(dir, 0700)) ? rc : fs_copy(src, dst, SHARED_MAX, mode);
}

int hub_init_main(int argc, char **argv)
{
    const char *from = NULL, *data = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--from") == 0)
            from = argv[i + 1];
        else if (strcmp(argv[i], "--data") == 0)
            data = argv[i + 1];
        else
            from = data = NULL, i = argc;
    }
    if (!from || !data || argc % 2 == 0) {
        fprintf(stderr, "usage: mamorid hub-init --from HUBDATA --data DIR\n");
        return 2;
    }
    umask(077);
    enum mamori_err rc;
    char p[HUB_PATH_MAX];
    if ((rc = fs_check_private(from, 0))) {
        log_err("%s must be a hub's data directory, owned by us with mode 0700", from);
        return 1;
    }
    if ((rc = fs_mkdir_p(data, 0700)) || (rc = fs_check_private(data, 0))) {
        log_err("%s must be a directory owned by us with mode 0700: %s", data, mamori_strerror(rc));
        return 1;
    }
    /* everything there before anything is written: no half-made directory */
    for (size_t i = 0; i < N_SHARED; i++) {
        if (!fs_path(p, sizeof(p), data, SHARED[i].path) && access(p, F_OK) == 0) {
            log_err("%s already holds %s: not overwritten", data, SHARED[i].path);
            return 1;
        }
        if (fs_path(p, sizeof(p), from, SHARED[i].path) || access(p, R_OK) != 0) {
            log_err("%s has no %s: not a hub's data directory (start that hub once)", from,
                    SHARED[i].path);
            return 1;
        }
    }
    for (size_t i = 0; i < N_SHARED; i++)
        if ((rc = copy_one(from, data, SHARED[i].path, SHARED[i].mode))) {
            log_err("cannot copy %s from %s: %s", SHARED[i].path, from, mamori_strerror(rc));
            return 1;
        }
    printf("hub data directory %s made from %s\n"
           "start it with: mamorid --data %s --name NAME --store postgresql://...\n",
           data, from, data);
    return 0;
}
