/*
 * hub/fleet/firmware.h - the firmware repository (docs/updates.md; P-UPD).
 *
 * Roots are taken one version after the other, each checked against the
 * one before it (the first is trusted as given: the administrator installs
 * the same anchor the factory writes into devices). Releases are taken
 * only when a threshold of the newest root's release keys signed them and
 * they have not expired. Images are uploaded afterwards, hashed as they
 * arrive, and kept only when size and SHA-256 are the release's; they live
 * in DATA/firmware/<sha256>. Every change is audited.
 */
#ifndef MAMORI_HUB_FIRMWARE_H
#define MAMORI_HUB_FIRMWARE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "hub/core/hub.h"
#include "hub/core/tx.h"

/* Administrators only: a root document (the envelope, as JSON text). */
enum mamori_err hub_op_fw_root_add(struct hub *h, const struct principal *who, const char *doc,
                                   json_t **out, struct op_err *e) MAMORI_MUST_CHECK;
enum mamori_err hub_op_fw_roots(struct hub *h, const struct principal *who,
                                json_t **out) MAMORI_MUST_CHECK;
/* Staff: a release document. */
enum mamori_err hub_op_fw_release_add(struct hub *h, const struct principal *who, const char *doc,
                                      json_t **out, struct op_err *e) MAMORI_MUST_CHECK;
enum mamori_err hub_op_fw_releases(struct hub *h, const struct principal *who, const char *model,
                                   json_t **out) MAMORI_MUST_CHECK;
enum mamori_err hub_op_fw_retire(struct hub *h, const struct principal *who, const char *sha256,
                                 const char *reason, json_t **out,
                                 struct op_err *e) MAMORI_MUST_CHECK;

/* Staff: sends a device the signed `update` command for a release (its
 * image present, not retired, made for the device's model), carrying the
 * URL of the device endpoints and a one-device, one-image download token
 * that expires with the command (only its hash is stored). */
enum mamori_err hub_op_fw_deploy(struct hub *h, const struct principal *who, const char *sha256,
                                 const char *device_id, const char *reason, int64_t ttl_s,
                                 json_t **out, struct op_err *e) MAMORI_MUST_CHECK;

/* The same for a release already loaded, with the hub lock held
 * (campaigns); the command's id goes to command_id. */
enum mamori_err hub_fw_deploy_locked(struct hub *h, const struct principal *who,
                                     const struct fw_release_rec *rel, const char *device_id,
                                     const char *reason, int64_t ttl_ms, char command_id[33],
                                     struct op_err *e) MAMORI_MUST_CHECK;

/* The device endpoints (GET /api/v1/updates/{roots,release,image}) with a
 * download token: MAMORI_ERR_AUTH for an unknown or expired token or a
 * retired release; MAMORI_ERR_FORBIDDEN while the device is in a state
 * that may not receive new code (anything but claimed or active: locked,
 * quarantined, stray, revoked, decommissioned). */
enum mamori_err hub_fw_token_check(struct hub *h, const char *token, char sha256[65],
                                   char device_id[24]) MAMORI_MUST_CHECK;
/* {"roots": [<every root document, oldest first>]} */
enum mamori_err hub_fw_device_roots(struct hub *h, json_t **out) MAMORI_MUST_CHECK;
/* The release document. */
enum mamori_err hub_fw_device_release(struct hub *h, const char *sha256,
                                      json_t **out) MAMORI_MUST_CHECK;
/* Path of the stored image. */
enum mamori_err hub_fw_image_path(struct hub *h, const char *sha256, char *out,
                                  size_t n) MAMORI_MUST_CHECK;

/* Security advisories (staff publish; anyone signed in reads) and each
 * model's security-support end (ETSI EN 303 645 5.3-13, CRA Art. 13).
 * Publishing flags every device reporting an affected version with a
 * device_vulnerable event (its owner sees it). */
enum mamori_err hub_op_advisory_add(struct hub *h, const struct principal *who, const json_t *in,
                                    json_t **out, struct op_err *e) MAMORI_MUST_CHECK;
enum mamori_err hub_op_advisories(struct hub *h, const char *model, json_t **out) MAMORI_MUST_CHECK;
enum mamori_err hub_op_support_set(struct hub *h, const struct principal *who, const char *model,
                                   int64_t end_s, json_t **out, struct op_err *e) MAMORI_MUST_CHECK;
enum mamori_err hub_op_support_get(struct hub *h, const char *model,
                                   json_t **out) MAMORI_MUST_CHECK;
/* Adds fw_version, the advisories that affect it and the model's support
 * end to a device's JSON. Lock held. */
void hub_fw_annotate(struct hub *h, const struct device_rec *d, json_t *o);
/* A device reported the firmware it runs (its update events). Lock held. */
void hub_fw_reported(struct hub *h, const char *device_id, const char *fw_version);
/* Registers the firmware's part: update events by type, and the device
 * view (hub_fw_annotate). */
enum mamori_err firmware_register(struct hub *h) MAMORI_MUST_CHECK;

/* An image upload, streamed: begin (staff; the release must exist, have
 * no image yet and not be retired), write as bytes arrive (never more than
 * the release's size), end (size and digest checked, then the image is
 * kept and the upload audited). Abort drops what arrived. */
struct fw_upload;
enum mamori_err hub_fw_upload_begin(struct hub *h, const struct principal *who, const char *sha256,
                                    struct fw_upload **out, struct op_err *e) MAMORI_MUST_CHECK;
enum mamori_err hub_fw_upload_write(struct fw_upload *u, const void *data,
                                    size_t n) MAMORI_MUST_CHECK;
enum mamori_err hub_fw_upload_end(struct fw_upload *u, json_t **out,
                                  struct op_err *e) MAMORI_MUST_CHECK;
void hub_fw_upload_abort(struct fw_upload *u);

#endif
