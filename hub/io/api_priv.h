/*
 * hub/io/api_priv.h - what the API's connection side (hub/io/api.c) and its
 * handlers (hub/io/api_routes.c) share: the request as it arrives, the
 * reply, and the call a handler receives.
 */
#ifndef MAMORI_HUB_IO_API_PRIV_H
#define MAMORI_HUB_IO_API_PRIV_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/json.h"
#include "hub/core/hub.h"
#include "hub/core/tx.h"
#include "hub/fleet/firmware.h"
#include "hub/io/api_table.h"

#define API_MAX_BODY (64 * 1024)

struct api_reply {
    int status;
    json_t *body; /* owned */
    int64_t retry_after;
    /* a file instead of JSON (firmware images, the CRL): fd owned, from off, len bytes */
    int fd;
    uint64_t off, len, total;
    const char *ctype;         /* of the file (NULL: application/octet-stream) */
    char allow[API_ALLOW_MAX]; /* a 405's Allow header */
};

#define API_REPLY_INIT                                                                             \
    {                                                                                              \
        .fd = -1                                                                                   \
    }

/* One request as it arrives. A body is buffered up to API_MAX_BODY (a
 * JSON object); the body of a PUT route is streamed instead: its handler
 * runs once the head has arrived and opens the upload the body is written
 * to (PUT .../firmware/releases/{sha}/image, hub/fleet/firmware.c). */
struct api_req {
    struct dbuf body;
    bool too_big;
    bool upload; /* a PUT route: the body goes to up */
    struct fw_upload *up;
    enum mamori_err up_rc; /* a write failed: said at the end */
    struct op_err up_e;
    struct api_reply refused; /* status set: refused at the head, said once the body is drained */
};

/* What a handler receives. Its route's role has been checked. */
struct api_call {
    struct hub *h;
    struct MHD_Connection *c;
    const struct route *rt;      /* the URL's segments */
    const struct principal *who; /* ROUTE_USER and stricter; NULL otherwise */
    const char *const *arg;      /* the pattern's :params, in order */
    int nargs;
    json_t *in;        /* the body of a POST (and a DELETE that has one): an object; else NULL */
    const char *peer;  /* the client's address */
    const char *token; /* the bearer token that passed the gate (NULL on ROUTE_PUBLIC) */
    struct api_req *q;
    /* ROUTE_UPDATE_TOKEN: the release and the device the token is for */
    char fw_sha[65];
    char fw_dev[24];
};

/* Replies (hub/io/api.c). Every error has the one shape
 * {"error": {"code": "...", "message": "..."}}. */
void api_reply_err(struct api_reply *r, int status, const char *code, const char *msg);
/* The status and code of an operation's error; e's message when it has one. */
void api_reply_rc(struct api_reply *r, enum mamori_err rc, const struct op_err *e);
void api_reply_ok(struct api_reply *r, int status, json_t *body);
/* An operation's outcome: status with out (owned), or its error (out dropped). */
void api_answer(struct api_reply *r, enum mamori_err rc, const struct op_err *e, int status,
                json_t *out);

#endif
