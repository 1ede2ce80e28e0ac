/*
 * factory/factory.h - the factory station's side of provisioning, shared by
 * mamorictl and mamorid's demo fleet.
 *
 * An identity directory holds what one device carries out of the factory:
 *   device.key   generated here (on the device / factory station), 0600;
 *                it is never sent anywhere - only the CSR is
 *   device.csr   the signing request sent to the hub
 *   device.crt   the certificate the hub (or a manufacturer CA) issued
 *   ca.crt       the platform root the device pins the broker to
 *   device.json  management number, model and broker address
 *   claim-code   the single-use claim code for the label / QR code (0600)
 */
#ifndef MAMORI_FACTORY_FACTORY_H
#define MAMORI_FACTORY_FACTORY_H

#include "common/crypto.h"
#include "mamori/error.h"

/* Creates dir (0700) with device.key and device.csr. */
enum mamori_err factory_keygen(const char *dir, enum crypto_keystore ks) MAMORI_MUST_CHECK;
/* Writes the rest of the identity after enrolment. cert_pem may be NULL
 * when device.crt is already there (manufacturer-signed). */
enum mamori_err factory_finish(const char *dir, const char *device_id, const char *model,
                               const char *cert_pem, const char *ca_pem, const char *claim_code,
                               const char *mqtt_host, int mqtt_port) MAMORI_MUST_CHECK;
/* Offline manufacturer CA (for factories that sign device certificates
 * themselves, the "certificate in the chip"). */
enum mamori_err factory_mfr_ca_create(const char *dir, const char *name) MAMORI_MUST_CHECK;
enum mamori_err factory_mfr_ca_sign(const char *ca_dir, const char *csr_path, const char *cn,
                                    int days, const char *out_path) MAMORI_MUST_CHECK;

#endif
