/*
 * lib/fetch.h - one HTTPS GET at a time for the device (update downloads),
 * driven without blocking from mamori_device_step through libcurl's multi
 * interface. The server must chain to the device's platform root (ca.crt)
 * and match the URL's host; HTTPS only, TLS 1.2 or later, no redirects.
 */
#ifndef MAMORI_LIB_FETCH_H
#define MAMORI_LIB_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mamori/error.h"

struct fetch;

/* Body bytes as they arrive; false stops the transfer (fetch_step then
 * reports MAMORI_ERR_TOOBIG; why the sink stopped is the caller's to know). */
typedef bool (*fetch_sink)(const void *data, size_t n, void *arg);

/* GET url with "Authorization: Bearer <token>", from byte offset (a Range
 * request when offset > 0); at most max body bytes, received at most rate
 * bytes per second (0: as fast as they come). */
enum mamori_err fetch_start(const char *url, const char *token, const char *ca_path,
                            uint64_t offset, uint64_t max, uint64_t rate, fetch_sink sink,
                            void *arg, struct fetch **out) MAMORI_MUST_CHECK;
/* Moves the transfer on. MAMORI_ERR_STATE while it runs; MAMORI_OK when it
 * ended with 200 (or 206 for a range); otherwise an error, with the HTTP
 * status (0: none) in *status. */
enum mamori_err fetch_step(struct fetch *f, long *status) MAMORI_MUST_CHECK;
void fetch_free(struct fetch *f);

#endif
