/* cli/http.h - the CLI's HTTPS JSON client (libcurl), pinned to the platform CA. */
#ifndef MAMORI_CLI_HTTP_H
#define MAMORI_CLI_HTTP_H

#include <jansson.h>

#include "mamori/error.h"

struct api {
    char base[512];  /* https://host:port */
    char ca[4096];   /* CA file the server must chain to */
    char token[128]; /* session token or "" */
};

/* Performs method on /api/v1/path with body (may be NULL). On a response
 * *status and *out (new reference, may be NULL for non-JSON) are set. */
enum mamori_err api_call(const struct api *a, const char *method, const char *path, json_t *body,
                         long *status, json_t **out) MAMORI_MUST_CHECK;

/* PUTs the contents of file (streamed, never read whole) to /api/v1/path. */
enum mamori_err api_upload(const struct api *a, const char *path, const char *file, long *status,
                           json_t **out) MAMORI_MUST_CHECK;

#endif
