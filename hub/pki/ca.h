/*
 * hub/pki/ca.h - the platform's PKI (pki/ under DATA): the root and issuing
 * CAs, the hub's own certificates, the command signer, device certificates,
 * the CRL, the broker's trust store and the manufacturers' CAs.
 */
#ifndef MAMORI_HUB_PKI_CA_H
#define MAMORI_HUB_PKI_CA_H

#include <jansson.h>
#include <stddef.h>

#include "hub/core/hub.h"
#include "hub/core/tx.h"

enum mamori_err ca_init(struct hub *h) MAMORI_MUST_CHECK;
enum mamori_err ca_issue_device(struct hub *h, const char *csr_pem, size_t csr_len,
                                const char *device_id, const char *model,
                                char **cert_pem) MAMORI_MUST_CHECK;
/* Rewrites pki/crl.pem: the issuing CA's CRL of revoked and decommissioned
 * devices' certificates, for other relying parties (GET /pki/crl). Lock held. */
enum mamori_err ca_crl_write(struct hub *h) MAMORI_MUST_CHECK;
/* Rewrites pki/device-trust.pem (the broker's cafile) from the store. */
enum mamori_err ca_write_device_trust(struct hub *h) MAMORI_MUST_CHECK;

/* A manufacturer's CA for a model (administrators; audited; the broker
 * reloads its trust store), and the list of trusted CAs (staff). */
enum mamori_err hub_op_ca_import(struct hub *h, const struct principal *who, const char *model,
                                 const char *cert_pem, json_t **out,
                                 struct op_err *e) MAMORI_MUST_CHECK;
enum mamori_err hub_op_ca_list(struct hub *h, const struct principal *who,
                               json_t **out) MAMORI_MUST_CHECK;

#endif
