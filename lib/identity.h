/*
 * lib/identity.h - the device's key and certificate on disk, and their
 * replacement during a rotation (T05-L2c, T07-L2a).
 *
 * In the identity directory:
 *   device.key, device.crt   the pair in use (the key 0600, ours alone)
 *   pending.key              the next key, made in place by "rotate"
 *   device.crt.new           its certificate, written before the switch
 *   device.key.old           a link to the replaced key until it is shredded
 *
 * The switch is a fixed sequence of durable steps; identity_repair() finds
 * where an interrupted one stopped (kill -9 or power loss at any step) and
 * finishes it, so the directory always holds a matching pair: the old one
 * before the new certificate is on disk, the new one after.
 */
#ifndef MAMORI_LIB_IDENTITY_H
#define MAMORI_LIB_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>

#include "common/crypto.h"
#include "mamori/error.h"

/* The steps of identity_install, for crash injection in tests. */
enum identity_step {
    ID_STEP_CERT_WRITTEN = 1, /* device.crt.new on disk */
    ID_STEP_OLD_LINKED,       /* device.key.old -> the current key */
    ID_STEP_KEY_SWITCHED,     /* pending.key renamed over device.key */
    ID_STEP_CERT_SWITCHED,    /* device.crt.new renamed over device.crt */
    ID_STEP_OLD_SHREDDED,     /* the old key overwritten and unlinked */
    ID_N_STEPS = ID_STEP_OLD_SHREDDED
};

/* Finishes an interrupted install and removes what is left of one. Run
 * before the identity is used. MAMORI_ERR_CRYPTO when no matching pair can
 * be made (the identity is broken; the device must not connect). */
enum mamori_err identity_repair(const char *dir) MAMORI_MUST_CHECK;

/* Returns a CSR (malloc'd PEM, CN = device_id) for pending.key, which is
 * created first (in keystore ks) when create is set and there is none (a
 * repeated "rotate" reuses it). MAMORI_ERR_NOTFOUND: no pending key and create not set. */
enum mamori_err identity_pending_csr(const char *dir, const char *device_id, bool create,
                                     enum crypto_keystore ks, char **csr_pem) MAMORI_MUST_CHECK;

/* Checks a certificate offered for pending.key: it chains to trust_pem
 * (chain_pem: untrusted intermediates, may be NULL), names device_id, is a
 * client certificate and holds pending.key's public key. fp_out gets its
 * fingerprint. MAMORI_ERR_STATE when there is no pending key. */
enum mamori_err identity_check_new(const char *dir, const char *cert_pem, size_t cert_len,
                                   const char *chain_pem, size_t chain_len, const char *trust_pem,
                                   const char *device_id,
                                   char fp_out[CRYPTO_FP_HEX_LEN]) MAMORI_MUST_CHECK;

/* Installs the checked certificate and switches to pending.key. stop_after
 * (0: none) returns right after that step as a crash would. */
enum mamori_err identity_install(const char *dir, const char *cert_pem, size_t cert_len,
                                 int stop_after) MAMORI_MUST_CHECK;

#endif
