/*
 * cli/release.h - the release signer's offline tools (mamorictl release):
 * keys, root documents, release manifests, signatures and verification
 * (docs/updates.md). Nothing here talks to the hub; root keys belong on
 * an offline machine.
 */
#ifndef MAMORI_CLI_RELEASE_H
#define MAMORI_CLI_RELEASE_H

#include <stddef.h>
#include <stdint.h>

#include "mamori/error.h"

/* PREFIX.key (P-256, 0600, never overwritten) and PREFIX.pub (base64 DER
 * SPKI); the key id (64 hex) goes to id_out. */
enum mamori_err release_keygen(const char *prefix, char id_out[65]) MAMORI_MUST_CHECK;

/* An unsigned root document: root_pubs and release_pubs are comma-separated
 * .pub files. */
struct release_root_opts {
    uint64_t version;
    const char *root_pubs, *release_pubs;
    unsigned root_threshold, release_threshold;
    int64_t expires_ms;
};
enum mamori_err release_root_create(const struct release_root_opts *o, const char *out, char *why,
                                    size_t whylen) MAMORI_MUST_CHECK;

/* An unsigned release manifest for image (hashed here, streaming). */
struct release_manifest_opts {
    const char *model, *fw_version, *image;
    uint64_t security_version, floor;
    int64_t expires_ms;
};
enum mamori_err release_manifest_create(const struct release_manifest_opts *o, const char *out,
                                        char *why, size_t whylen) MAMORI_MUST_CHECK;

/* Adds the signature of key_path's key to the document in file (rewritten
 * atomically). */
enum mamori_err release_sign(const char *file, const char *key_path, char *why,
                             size_t whylen) MAMORI_MUST_CHECK;

/* Verifies a chain of roots (comma-separated files, the first taken as the
 * anchor) and, when release_file is not NULL, a release under the newest
 * root; when image is not NULL too, the image against the release. Writes
 * a summary (or the reason for refusal) to out. */
enum mamori_err release_verify(const char *roots, const char *release_file, const char *image,
                               char *out, size_t outlen) MAMORI_MUST_CHECK;

#endif
