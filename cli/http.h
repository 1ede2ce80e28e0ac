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

/* The CLI's answer to a response: a 2xx prints resp as indented JSON on
 * stdout and returns 0; anything else prints the API's error message on
 * stderr and returns 1 (the exit status). resp stays the caller's. */
int api_print_result(long status, json_t *resp);
/* The API's error message of resp on stderr; returns 1 (the exit status). */
int api_print_error(long status, json_t *resp);
/* Pretty-prints j on stdout. */
void api_print_json(json_t *j);
/* api_call, then api_print_result; takes body over. A request that fails
 * before an answer prints why and returns 1. */
int api_call_print(const struct api *a, const char *method, const char *path, json_t *body);

#endif
