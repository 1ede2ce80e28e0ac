/*
 * hub/pki/ca.c - the platform PKI, created on first start under DATA/pki:
 *
 *   offline/root.key  root CA key (P-256). Only needed to re-issue the issuing
 *                     CA: move it off the machine after initialisation.
 *   root.crt          platform root CA (trust anchor given to devices/clients)
 *   issuing.key/.crt  issuing CA: signs device, broker, API and hub certificates
 *   broker.*, api.*   server certificates (leaf + issuing chain)
 *   hub-client.*      the hub's own client certificate for the broker; the
 *                     plugin knows it by fingerprint and grants it alone the
 *                     privileged control topics
 *   cmd-signer.*      signs remote commands (CN mamori-command-signer)
 *   device-trust.pem  CAs whose device certificates the broker accepts
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cmd.h"
#include "common/crypto.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "hub/pki/ca.h"

#define YEAR (365L * 24 * 3600)

static enum mamori_err pki_path(struct hub *h, const char *name, char *out)
{
    char dir[HUB_PATH_MAX];
    enum mamori_err rc = fs_path(dir, sizeof(dir), h->cfg.data_dir, "pki");
    return rc ? rc : fs_path(out, HUB_PATH_MAX, dir, name);
}

static bool exists(const char *p)
{
    return access(p, F_OK) == 0;
}

static enum mamori_err write_pem(const char *path, const char *pem, mode_t mode)
{
    return fs_write_atomic(path, pem, strlen(pem), mode);
}

/* Issues a leaf (server or client) for kind/cn; writes key + leaf||issuing chain. */
static enum mamori_err issue_leaf(struct hub *h, enum crypto_cert_kind kind, const char *cn,
                                  const char *base)
{
    char kp[HUB_PATH_MAX], cp[HUB_PATH_MAX], name[64];
    struct crypto_key *key = NULL;
    char *pem = NULL;
    snprintf(name, sizeof(name), "%s.key", base);
    enum mamori_err rc = pki_path(h, name, kp);
    snprintf(name, sizeof(name), "%s.crt", base);
    if (!rc)
        rc = pki_path(h, name, cp);
    if (rc)
        return rc;
    if (exists(kp) && exists(cp))
        return MAMORI_OK;
    rc = crypto_key_generate(&key);
    if (rc)
        goto out;
    struct crypto_issue p = {.kind = kind,
                             .cn = cn,
                             .org = "Mamori platform",
                             .subject = key,
                             .issuer = h->issuing_cert,
                             .issuer_key = h->issuing_key,
                             .not_after = (time_t)hub_now() + 2 * YEAR};
    rc = crypto_cert_issue_chain(&p, &pem);
    if (!rc)
        rc = crypto_key_save(key, kp);
    if (!rc)
        rc = write_pem(cp, pem, 0644);
out:
    free(pem);
    crypto_key_free(key);
    return rc;
}

static enum mamori_err create_cas(struct hub *h)
{
    char rk[HUB_PATH_MAX], rc_[HUB_PATH_MAX], ik[HUB_PATH_MAX], ic[HUB_PATH_MAX], off[HUB_PATH_MAX];
    enum mamori_err rc;
    if ((rc = pki_path(h, "offline", off)) || (rc = pki_path(h, "offline/root.key", rk)) ||
        (rc = pki_path(h, "root.crt", rc_)) || (rc = pki_path(h, "issuing.key", ik)) ||
        (rc = pki_path(h, "issuing.crt", ic)))
        return rc;
    if (exists(ic) && exists(ik))
        return MAMORI_OK;
    if ((rc = fs_mkdir_p(off, 0700)))
        return rc;
    struct crypto_key *root_key = NULL, *iss_key = NULL;
    struct crypto_cert *root = NULL;
    char *root_pem = NULL, *iss_pem = NULL;
    if ((rc = crypto_key_generate(&root_key)) || (rc = crypto_key_generate(&iss_key)))
        goto out;
    struct crypto_issue rp = {.kind = CRYPTO_CERT_ROOT_CA,
                              .cn = "Mamori Platform Root CA",
                              .org = "Mamori platform",
                              .subject = root_key,
                              .issuer_key = root_key,
                              .not_after = (time_t)hub_now() + 20 * YEAR};
    if ((rc = crypto_cert_issue(&rp, &root_pem)) ||
        (rc = crypto_cert_parse(root_pem, strlen(root_pem), &root)))
        goto out;
    struct crypto_issue ip = {.kind = CRYPTO_CERT_SUB_CA,
                              .cn = "Mamori Issuing CA 1",
                              .org = "Mamori platform",
                              .subject = iss_key,
                              .issuer = root,
                              .issuer_key = root_key,
                              .not_after = (time_t)hub_now() + 10 * YEAR};
    if ((rc = crypto_cert_issue(&ip, &iss_pem)))
        goto out;
    if ((rc = crypto_key_save(root_key, rk)) || (rc = write_pem(rc_, root_pem, 0644)) ||
        (rc = crypto_key_save(iss_key, ik)) || (rc = write_pem(ic, iss_pem, 0644)))
        goto out;
    log_info("created platform root and issuing CA in %s/pki", h->cfg.data_dir);
out:
    free(root_pem);
    free(iss_pem);
    crypto_cert_free(root);
    crypto_key_free(root_key);
    crypto_key_free(iss_key);
    return rc;
}

enum mamori_err ca_write_device_trust(struct hub *h)
{
    char path[HUB_PATH_MAX];
    char *bundle = NULL;
    enum mamori_err rc = pki_path(h, "device-trust.pem", path);
    if (!rc)
        rc = store_ca_bundle(h->store, NULL, &bundle);
    if (rc)
        return rc;
    struct dbuf d;
    dbuf_init(&d, 8 * 1024 * 1024);
    /* The root is needed for the broker to complete issuing-CA chains. */
    char root[HUB_PATH_MAX];
    char *root_pem = NULL;
    size_t len = 0;
    if (!(rc = pki_path(h, "root.crt", root)) &&
        !(rc = fs_read_file(root, CRYPTO_PEM_MAX, &root_pem, &len)))
        rc = dbuf_add(&d, root_pem, len);
    if (!rc)
        rc = dbuf_addstr(&d, bundle);
    if (!rc)
        rc = write_pem(path, d.p, 0644);
    dbuf_free(&d);
    free(root_pem);
    free(bundle);
    return rc;
}

enum mamori_err ca_init(struct hub *h)
{
    char dir[HUB_PATH_MAX], p[HUB_PATH_MAX];
    enum mamori_err rc = fs_path(dir, sizeof(dir), h->cfg.data_dir, "pki");
    if (!rc)
        rc = fs_mkdir_p(dir, 0755);
    if (!rc)
        rc = create_cas(h);
    if (!rc)
        rc = pki_path(h, "issuing.crt", p);
    if (!rc)
        rc = crypto_cert_load(p, &h->issuing_cert);
    if (!rc)
        rc = pki_path(h, "issuing.key", p);
    if (!rc && (rc = fs_check_private(p, 0)) != MAMORI_OK)
        log_err("%s: %s (must be owned by us, mode 0600)", p, mamori_strerror(rc));
    if (!rc)
        rc = crypto_key_load(p, &h->issuing_key);
    if (rc)
        return rc;
    if ((rc = issue_leaf(h, CRYPTO_CERT_SERVER, "mamori-broker", "broker")) ||
        (rc = issue_leaf(h, CRYPTO_CERT_SERVER, "mamori-api", "api")) ||
        (rc = issue_leaf(h, CRYPTO_CERT_CLIENT, "mamori-hub", "hub-client")) ||
        (rc = issue_leaf(h, CRYPTO_CERT_CLIENT, CMD_SIGNER_CN, "cmd-signer")))
        return rc;
    /* The command signer: its key signs every remote command; devices
     * check it chains to the root they hold (common/cmd.h). */
    size_t clen;
    if ((rc = pki_path(h, "cmd-signer.key", p)) || (rc = fs_check_private(p, 0)) ||
        (rc = crypto_key_load(p, &h->cmd_key)) || (rc = pki_path(h, "cmd-signer.crt", p)) ||
        (rc = fs_read_file(p, CRYPTO_PEM_MAX, &h->cmd_chain_pem, &clen)))
        return rc;
    /* ca-chain.pem: what devices and clients pin the servers to. */
    char root[HUB_PATH_MAX];
    char *root_pem = NULL;
    size_t len = 0;
    if ((rc = pki_path(h, "root.crt", root)) ||
        (rc = fs_read_file(root, CRYPTO_PEM_MAX, &root_pem, &len)))
        return rc;
    h->ca_chain_pem = root_pem;
    struct crypto_cert *hc = NULL;
    if ((rc = pki_path(h, "hub-client.crt", p)) || (rc = crypto_cert_load(p, &hc)))
        return rc;
    crypto_cert_fingerprint(hc, h->hub_client_fp);
    crypto_cert_free(hc);
    /* Register the issuing CA as a device trust anchor (idempotent). */
    char fp[65], *iss_pem = NULL;
    crypto_cert_fingerprint(h->issuing_cert, fp);
    if ((rc = crypto_cert_pem(h->issuing_cert, &iss_pem)))
        return rc;
    rc = store_ca_add(h->store, NULL, "issuing", fp, "Mamori Issuing CA 1", iss_pem, hub_now());
    free(iss_pem);
    if (rc == MAMORI_ERR_EXISTS)
        rc = MAMORI_OK;
    return rc ? rc : ca_write_device_trust(h);
}

enum mamori_err ca_issue_device(struct hub *h, const char *csr_pem, size_t csr_len,
                                const char *device_id, const char *model, char **cert_pem)
{
    struct crypto_csr *csr = NULL;
    *cert_pem = NULL;
    enum mamori_err rc = crypto_csr_parse(csr_pem, csr_len, &csr);
    if (rc)
        return rc;
    /* The subject is ours to set: CN = management number, O = model. What
     * the CSR asked for is ignored (the key is all we take from it).
     * T01-L4b: device certificates expire (device_cert_days). */
    struct crypto_issue p = {.kind = CRYPTO_CERT_CLIENT,
                             .cn = device_id,
                             .org = model,
                             .csr = csr,
                             .issuer = h->issuing_cert,
                             .issuer_key = h->issuing_key,
                             .not_after =
                                 (time_t)hub_now() + (time_t)h->cfg.device_cert_days * 86400};
    rc = crypto_cert_issue(&p, cert_pem);
    crypto_csr_free(csr);
    return rc;
}

/* --- the CRL of device certificates (T01-L5a, T01-L5d) ------------------- */

struct crl_acc {
    struct crypto_revoked *v;
    size_t n, cap;
    char (*serials)[80];
    bool fail;
};

static bool crl_one(const char *serial, int64_t when, bool retired, void *arg)
{
    struct crl_acc *a = arg;
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 64;
        struct crypto_revoked *v = realloc(a->v, cap * sizeof(*v));
        char(*s)[80] = v ? realloc(a->serials, cap * sizeof(*s)) : NULL;
        if (v)
            a->v = v;
        if (!s) {
            a->fail = true;
            return false;
        }
        a->serials = s;
        a->cap = cap;
        for (size_t i = 0; i < a->n; i++) /* the strings moved with the array */
            a->v[i].serial_hex = a->serials[i];
    }
    snprintf(a->serials[a->n], sizeof(a->serials[a->n]), "%s", serial);
    a->v[a->n].serial_hex = a->serials[a->n];
    a->v[a->n].when = (time_t)when;
    a->v[a->n].reason = retired ? 5 /* cessationOfOperation */ : 1 /* keyCompromise */;
    a->n++;
    return true;
}

enum mamori_err ca_crl_write(struct hub *h)
{
    char p[HUB_PATH_MAX], *pem = NULL;
    struct crl_acc a = {0};
    enum mamori_err rc = store_revoked_certs(h->store, crl_one, &a);
    if (!rc && a.fail)
        rc = MAMORI_ERR_NOMEM;
    /* next update in 7 days; its number grows with time (ms) */
    if (!rc)
        rc = crypto_crl_issue(h->issuing_cert, h->issuing_key, a.v, a.n, 7 * 24 * 3600,
                              (uint64_t)hub_now_ms(), &pem);
    if (!rc)
        rc = fs_path(p, sizeof(p), h->cfg.data_dir, "pki/crl.pem");
    if (!rc)
        rc = fs_write_atomic(p, pem, strlen(pem), 0644);
    free(pem);
    free(a.v);
    free(a.serials);
    if (rc)
        log_err("cannot write the CRL: %s", mamori_strerror(rc));
    return rc;
}
