/* factory/factory.c - see factory.h. */
#include "factory/factory.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/crypto.h"
#include "common/fsutil.h"

static enum mamori_err write_text(const char *dir, const char *name, const char *text, mode_t mode)
{
    char p[4096];
    enum mamori_err rc = fs_path(p, sizeof(p), dir, name);
    return rc ? rc : fs_write_atomic(p, text, strlen(text), mode);
}

enum mamori_err factory_keygen(const char *dir, enum crypto_keystore ks)
{
    struct crypto_key *k = NULL;
    char *csr = NULL, p[4096];
    enum mamori_err rc = fs_mkdir_p(dir, 0700);
    if (!rc)
        rc = crypto_key_generate_in(ks, &k);
    if (!rc)
        rc = fs_path(p, sizeof(p), dir, "device.key");
    if (!rc)
        rc = crypto_key_save(k, p);
    /* The CN is a placeholder: the hub assigns the management number. */
    if (!rc)
        rc = crypto_csr_create(k, "mamori-device", &csr);
    if (!rc)
        rc = write_text(dir, "device.csr", csr, 0644);
    free(csr);
    crypto_key_free(k);
    return rc;
}

enum mamori_err factory_finish(const char *dir, const char *device_id, const char *model,
                               const char *cert_pem, const char *ca_pem, const char *claim_code,
                               const char *mqtt_host, int mqtt_port)
{
    char json[1024], code[64];
    enum mamori_err rc = MAMORI_OK;
    if (cert_pem)
        rc = write_text(dir, "device.crt", cert_pem, 0644);
    if (!rc)
        rc = write_text(dir, "ca.crt", ca_pem, 0644);
    int n =
        snprintf(json, sizeof(json),
                 "{\"device_id\":\"%s\",\"model\":\"%s\",\"mqtt_host\":\"%s\",\"mqtt_port\":%d}\n",
                 device_id, model, mqtt_host, mqtt_port);
    if (!rc && (n < 0 || (size_t)n >= sizeof(json)))
        rc = MAMORI_ERR_TOOBIG;
    if (!rc)
        rc = write_text(dir, "device.json", json, 0644);
    snprintf(code, sizeof(code), "%s\n", claim_code);
    if (!rc)
        rc = write_text(dir, "claim-code", code, 0600);
    crypto_wipe(code, sizeof(code));
    return rc;
}

enum mamori_err factory_mfr_ca_create(const char *dir, const char *name)
{
    struct crypto_key *k = NULL;
    char *pem = NULL, p[4096];
    enum mamori_err rc = fs_mkdir_p(dir, 0700);
    if (!rc)
        rc = crypto_key_generate(&k);
    struct crypto_issue ip = {.kind = CRYPTO_CERT_ROOT_CA,
                              .cn = name,
                              .org = name,
                              .subject = k,
                              .issuer = NULL,
                              .issuer_key = k,
                              .not_after = time(NULL) + 15L * 365 * 86400};
    if (!rc)
        rc = crypto_cert_issue(&ip, &pem);
    if (!rc)
        rc = fs_path(p, sizeof(p), dir, "ca.key");
    if (!rc)
        rc = crypto_key_save(k, p);
    if (!rc)
        rc = write_text(dir, "ca.crt", pem, 0644);
    free(pem);
    crypto_key_free(k);
    return rc;
}

enum mamori_err factory_mfr_ca_sign(const char *ca_dir, const char *csr_path, const char *cn,
                                    int days, const char *out_path)
{
    struct crypto_key *k = NULL;
    struct crypto_cert *ca = NULL;
    struct crypto_csr *csr = NULL;
    char p[4096], *csr_pem = NULL, *pem = NULL;
    size_t len = 0;
    enum mamori_err rc = fs_path(p, sizeof(p), ca_dir, "ca.key");
    if (!rc)
        rc = crypto_key_load(p, &k);
    if (!rc)
        rc = fs_path(p, sizeof(p), ca_dir, "ca.crt");
    if (!rc)
        rc = crypto_cert_load(p, &ca);
    if (!rc)
        rc = fs_read_file(csr_path, CRYPTO_PEM_MAX, &csr_pem, &len);
    if (!rc)
        rc = crypto_csr_parse(csr_pem, len, &csr);
    time_t now = time(NULL);
    struct crypto_issue ip = {.kind = CRYPTO_CERT_CLIENT,
                              .cn = cn,
                              .csr = csr,
                              .issuer = ca,
                              .issuer_key = k,
                              .not_after = now + (time_t)days * 86400};
    /* A negative validity makes an already expired certificate (for tests). */
    if (days < 0) {
        ip.not_before = now + (time_t)days * 86400 * 2;
        ip.not_after = now + (time_t)days * 86400;
    }
    if (!rc)
        rc = crypto_cert_issue(&ip, &pem);
    if (!rc)
        rc = fs_write_atomic(out_path, pem, strlen(pem), 0644);
    free(pem);
    free(csr_pem);
    crypto_csr_free(csr);
    crypto_cert_free(ca);
    crypto_key_free(k);
    return rc;
}
