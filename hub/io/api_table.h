/*
 * hub/io/api_table.h - the API's route table (hub/io/api_routes.c) and the
 * parts of its dispatch that hold no connection: the pattern matcher over
 * route.h's segments and the role gate (tests/unit/test_routes.c).
 *
 * A route is {method, pattern, role, handler}. Patterns are under /api/v1
 * and made of "/"-separated segments: literals ([a-z0-9-]) and ":name"
 * placeholders that match any one segment, at most ROUTE_MAX_SEGS of them;
 * the URL must have exactly the pattern's segments. The first entry whose
 * method and pattern match a request serves it; a path that some pattern
 * matches under other methods only is a 405 naming them (Allow).
 */
#ifndef MAMORI_HUB_IO_API_TABLE_H
#define MAMORI_HUB_IO_API_TABLE_H

#include <stdbool.h>
#include <stddef.h>

#include "hub/core/tx.h"
#include "hub/io/route.h"

/* Who may call a route: checked by the dispatch before the handler runs
 * (the operations check again: other callers use them too). */
enum api_role {
    ROUTE_PUBLIC = 0,   /* no credentials */
    ROUTE_UPDATE_TOKEN, /* a device, with the download token of its update command */
    ROUTE_USER,         /* any signed-in principal */
    ROUTE_OWNER,        /* owner accounts */
    ROUTE_STAFF,        /* administrators and operators */
    ROUTE_ADMIN,        /* administrators */
    ROUTE_N_ROLES
};

struct api_call;  /* hub/io/api_priv.h: the principal, params and request */
struct api_reply; /* hub/io/api_priv.h */
typedef void (*api_handler)(struct api_call *x, struct api_reply *r);

struct api_route {
    const char *method;  /* GET, POST, PUT (streamed body, see api_priv.h) or DELETE */
    const char *pattern; /* e.g. "/devices/:id/telemetry" */
    enum api_role role;
    api_handler handler;
};

extern const struct api_route API_ROUTES[];
extern const size_t API_N_ROUTES;

/* Longest Allow value: "GET, POST, PUT, DELETE". */
#define API_ALLOW_MAX 32

enum api_found { API_FOUND = 0, API_NO_PATH, API_NO_METHOD };

struct api_match {
    const struct api_route *route;   /* API_FOUND: the entry */
    const char *arg[ROUTE_MAX_SEGS]; /* API_FOUND: the :params in order, inside the route */
    int nargs;
    char allow[API_ALLOW_MAX]; /* API_NO_METHOD: the methods the path has, "GET, POST" */
};

/* A well-formed pattern (the grammar above; placeholder names unique). */
bool api_pattern_ok(const char *pattern);
/* True when rt has exactly pattern's segments, each literal equal; the
 * placeholders' segments go to arg (ROUTE_MAX_SEGS of room), *nargs counts
 * them. No allocation, bounded by ROUTE_MAX_SEGS. */
bool api_pattern_match(const char *pattern, const struct route *rt, const char **arg, int *nargs);
/* The first of tab[0..n) to match method and rt, or why none does. */
enum api_found api_match(const struct api_route *tab, size_t n, const char *method,
                         const struct route *rt, struct api_match *m);

enum api_gate { GATE_PASS = 0, GATE_UNAUTHENTICATED, GATE_FORBIDDEN };
/* May a signed-in principal (NULL: no valid session) call a route of this
 * role? GATE_UNAUTHENTICATED (401) without a session where one is needed,
 * GATE_FORBIDDEN (403) for a role not allowed. A session never stands for
 * a device's download token (ROUTE_UPDATE_TOKEN: GATE_UNAUTHENTICATED). */
enum api_gate api_gate(enum api_role role, const struct principal *who);
/* The message of a GATE_FORBIDDEN answer for role. */
const char *api_role_denied(enum api_role role);

#endif
