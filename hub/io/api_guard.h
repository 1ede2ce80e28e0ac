/*
 * hub/io/api_guard.h - the HTTPS API's deadlines and connection admission
 * (T10-L1a, T10-L1b), independent of libmicrohttpd's idle timeout.
 *
 * libmicrohttpd only calls the access handler once a request's head is
 * complete, and its connection timeout is an idle timeout that a client
 * dribbling one header line at a time never trips. The guard follows
 * every connection from its start (MHD_OPTION_NOTIFY_CONNECTION) and a
 * sweeper thread shuts down, with shutdown(2), any connection that
 *  - is still in its head (TLS handshake, request line, headers) longer
 *    than head_timeout_s after it started or after its previous request
 *    on a keep-alive connection finished, or
 *  - sends its body slower than min_body_rate bytes/s after a grace of
 *    head_timeout_s (deadline = body start + grace + bytes / rate).
 * Admission: at most unauth_max connections whose request has not
 * authenticated. When a new connection goes over that cap, the oldest
 * connection still in its head (and not authenticated) is shed, so the
 * remaining api_connections - unauth_max slots stay for connections that
 * authenticated, and a new client is always given a place.
 *
 * The fd of a connection is only ever shut down under the guard's mutex,
 * which the CLOSED notification also takes: libmicrohttpd 0.9.75 notifies
 * CLOSED before it closes the socket (MHD_cleanup_connections), so an fd
 * number is never reused under the sweeper.
 */
#ifndef MAMORI_HUB_API_GUARD_H
#define MAMORI_HUB_API_GUARD_H

#include <jansson.h>
#include <microhttpd.h>
#include <stddef.h>

#include "mamori/error.h"

struct api_guard;

struct api_guard_cfg {
    int head_timeout_s; /* whole request head, and the body's grace */
    int min_body_rate;  /* bytes/s once the grace is over */
    int unauth_max;     /* connections not (yet) authenticated */
};

/* Allocates the guard and starts its sweeper thread. *out is freed with
 * api_guard_free. On error nothing is left. */
enum mamori_err api_guard_new(const struct api_guard_cfg *cfg,
                              struct api_guard **out) MAMORI_MUST_CHECK;

/* Stops the sweeper; call before MHD_stop_daemon. NULL is ignored. */
void api_guard_stop(struct api_guard *g);

/* Frees the guard; call after MHD_stop_daemon (every connection closed).
 * NULL is ignored. */
void api_guard_free(struct api_guard *g);

/* The MHD_OPTION_NOTIFY_CONNECTION callback; cls is the guard. */
void api_guard_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                      enum MHD_ConnectionNotificationCode toe);

/* Called from the access handler and the completion callback of the
 * connection's current request. */
void api_guard_head_done(struct MHD_Connection *c);      /* first handler call */
void api_guard_body(struct MHD_Connection *c, size_t n); /* n body bytes arrived */
void api_guard_answering(struct MHD_Connection *c);      /* body complete */
void api_guard_authenticated(struct MHD_Connection *c);  /* request authenticated */
void api_guard_request_done(struct MHD_Connection *c);   /* back to a head (keep-alive) */

/* The guard's counters as a new JSON object (NULL on allocation failure):
 * head_timeouts, slow_bodies, shed, connections, unauthenticated. */
json_t *api_guard_stats(struct api_guard *g);

#endif
