/* Unit tests: the API's route table (hub/io/api_table.h): the pattern
 * matcher, 404 and 405 with Allow, the role gate, and the real table's
 * entries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "hub/io/api_table.h"

static void h_dummy(struct api_call *x, struct api_reply *r)
{
    (void)x;
    (void)r;
}

/* A route for url in tab (API_NO_PATH when the URL does not even split). */
static enum api_found look(const struct api_route *tab, size_t n, const char *method,
                           const char *url, struct route *rt, struct api_match *m)
{
    if (!route_split(url, rt))
        return API_NO_PATH;
    return api_match(tab, n, method, rt, m);
}

static void pattern_exact(void **st)
{
    (void)st;
    struct route rt;
    const char *arg[ROUTE_MAX_SEGS];
    int n = -1;
    assert_true(route_split("/api/v1/health", &rt));
    assert_true(api_pattern_match("/health", &rt, arg, &n));
    assert_int_equal(n, 0);
    assert_false(api_pattern_match("/healthz", &rt, arg, &n));
    assert_false(api_pattern_match("/healt", &rt, arg, &n));
    assert_false(api_pattern_match("/health/x", &rt, arg, &n)); /* the URL is shorter */
    assert_true(route_split("/api/v1/audit/verify", &rt));
    assert_true(api_pattern_match("/audit/verify", &rt, arg, &n));
    assert_false(api_pattern_match("/audit", &rt, arg, &n)); /* a segment left over */
    assert_false(api_pattern_match("/audit/:x/y", &rt, arg, &n));
    assert_false(api_pattern_match("", &rt, arg, &n));
}

static void pattern_params(void **st)
{
    (void)st;
    struct route rt;
    const char *arg[ROUTE_MAX_SEGS];
    int n = 0;
    assert_true(route_split("/api/v1/devices/MM0123456789ABCDEF/telemetry", &rt));
    assert_true(api_pattern_match("/devices/:id/telemetry", &rt, arg, &n));
    assert_int_equal(n, 1);
    assert_string_equal(arg[0], "MM0123456789ABCDEF");
    assert_false(api_pattern_match("/devices/:id/status", &rt, arg, &n));
    assert_false(api_pattern_match("/devices/:id", &rt, arg, &n));
    assert_false(api_pattern_match("/devices/:id/telemetry/:more", &rt, arg, &n));
    assert_true(api_pattern_match("/:a/:b/:c", &rt, arg, &n));
    assert_int_equal(n, 3);
    assert_string_equal(arg[0], "devices");
    assert_string_equal(arg[2], "telemetry");
    /* a placeholder takes one segment whatever it holds, never a '/' */
    assert_true(route_split("/api/v1/firmware/campaigns/12/pause", &rt));
    assert_true(api_pattern_match("/firmware/campaigns/:id/pause", &rt, arg, &n));
    assert_string_equal(arg[0], "12");
    assert_true(route_split("/api/v1/devices/../../etc/passwd", &rt));
    assert_false(api_pattern_match("/devices/:id", &rt, arg, &n));
    /* eight placeholders fill ROUTE_MAX_SEGS */
    assert_true(route_split("/api/v1/1/2/3/4/5/6/7/8", &rt));
    assert_true(api_pattern_match("/:a/:b/:c/:d/:e/:f/:g/:h", &rt, arg, &n));
    assert_int_equal(n, 8);
    assert_string_equal(arg[7], "8");
}

static void pattern_grammar(void **st)
{
    (void)st;
    const char *good[] = {"/health", "/devices/:id/telemetry", "/reports/fleet-audit",
                          "/firmware/releases/:sha256/image", "/:a/:b/:c/:d/:e/:f/:g/:h"};
    const char *bad[] = {NULL,
                         "",
                         "health",
                         "/",
                         "/devices/",
                         "//devices",
                         "/Devices",
                         "/devices/:",
                         "/a/:x/b/:x",
                         "/a b",
                         "/devices/:ID",
                         "/devices/:i-d",
                         "/a:b",
                         "/devices?x",
                         "/a/b/c/d/e/f/g/h/i"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(api_pattern_ok(good[i]));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(api_pattern_ok(bad[i]));
}

static const struct api_route TAB[] = {
    {"GET", "/things", ROUTE_USER, h_dummy},
    {"POST", "/things", ROUTE_STAFF, h_dummy},
    {"GET", "/things/:id", ROUTE_USER, h_dummy},
    {"GET", "/things/special", ROUTE_ADMIN, h_dummy}, /* shadowed by the one above */
    {"POST", "/things/special", ROUTE_ADMIN, h_dummy},
    {"DELETE", "/things/:id", ROUTE_ADMIN, h_dummy},
    {"PUT", "/things/:id/blob", ROUTE_STAFF, h_dummy},
};
#define NTAB (sizeof(TAB) / sizeof(TAB[0]))

static void match_table(void **st)
{
    (void)st;
    struct route rt;
    struct api_match m;
    assert_int_equal(look(TAB, NTAB, "GET", "/api/v1/things", &rt, &m), API_FOUND);
    assert_ptr_equal(m.route, &TAB[0]);
    assert_int_equal(look(TAB, NTAB, "POST", "/api/v1/things", &rt, &m), API_FOUND);
    assert_ptr_equal(m.route, &TAB[1]);
    /* the first match wins */
    assert_int_equal(look(TAB, NTAB, "GET", "/api/v1/things/special", &rt, &m), API_FOUND);
    assert_ptr_equal(m.route, &TAB[2]);
    assert_int_equal(m.nargs, 1);
    assert_string_equal(m.arg[0], "special");
    assert_int_equal(look(TAB, NTAB, "POST", "/api/v1/things/special", &rt, &m), API_FOUND);
    assert_ptr_equal(m.route, &TAB[4]);
    assert_int_equal(m.nargs, 0);
    assert_int_equal(look(TAB, NTAB, "PUT", "/api/v1/things/7/blob", &rt, &m), API_FOUND);
    assert_string_equal(m.arg[0], "7");
    /* unknown paths: none of the patterns, a trailing slash, an extra
     * segment, too many segments, outside /api/v1 */
    const char *none[] = {"/api/v1/nothing",           "/api/v1/things/",
                          "/api/v1/things/7/blob/x",   "/api/v1/things/7/other",
                          "/api/v1/a/b/c/d/e/f/g/h/i", "/api/v2/things",
                          "/api/v1//things",           "/api/v1/"};
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++)
        assert_int_equal(look(TAB, NTAB, "GET", none[i], &rt, &m), API_NO_PATH);
    assert_int_equal(look(TAB, NTAB, "DELETE", "/api/v1/nothing", &rt, &m), API_NO_PATH);
}

static void match_405(void **st)
{
    (void)st;
    struct route rt;
    struct api_match m;
    assert_int_equal(look(TAB, NTAB, "DELETE", "/api/v1/things", &rt, &m), API_NO_METHOD);
    assert_null(m.route);
    assert_string_equal(m.allow, "GET, POST");
    assert_int_equal(look(TAB, NTAB, "PATCH", "/api/v1/things/7", &rt, &m), API_NO_METHOD);
    assert_string_equal(m.allow, "GET, DELETE");
    /* every method of every pattern the path matches, each once */
    assert_int_equal(look(TAB, NTAB, "PUT", "/api/v1/things/special", &rt, &m), API_NO_METHOD);
    assert_string_equal(m.allow, "GET, POST, DELETE");
    assert_int_equal(look(TAB, NTAB, "GET", "/api/v1/things/7/blob", &rt, &m), API_NO_METHOD);
    assert_string_equal(m.allow, "PUT");
    assert_int_equal(look(TAB, NTAB, "get", "/api/v1/things", &rt, &m), API_NO_METHOD);
    assert_string_equal(m.allow, "GET, POST");
}

/* The real table: the answers the integration tests count on. */
static void match_api(void **st)
{
    (void)st;
    struct route rt;
    struct api_match m;
    const size_t n = API_N_ROUTES;
    assert_int_equal(look(API_ROUTES, n, "PUT", "/api/v1/devices", &rt, &m), API_NO_METHOD);
    assert_string_equal(m.allow, "GET");
    assert_int_equal(look(API_ROUTES, n, "GET", "/api/v1/nothing-here", &rt, &m), API_NO_PATH);
    assert_int_equal(look(API_ROUTES, n, "POST", "/api/v1/devices/MM0/explode", &rt, &m),
                     API_NO_PATH);
    assert_int_equal(look(API_ROUTES, n, "POST", "/api/v1/devices/MM0/stray", &rt, &m),
                     API_NO_PATH);
    assert_int_equal(look(API_ROUTES, n, "POST", "/api/v1/devices/MM0/lock", &rt, &m), API_FOUND);
    assert_int_equal(m.route->role, ROUTE_USER);
    assert_string_equal(m.arg[0], "MM0");
    assert_int_equal(look(API_ROUTES, n, "POST", "/api/v1/devices/MM0/revoke", &rt, &m), API_FOUND);
    assert_int_equal(m.route->role, ROUTE_STAFF);
    assert_int_equal(look(API_ROUTES, n, "GET", "/api/v1/users", &rt, &m), API_FOUND);
    assert_int_equal(m.route->role, ROUTE_ADMIN);
    assert_int_equal(look(API_ROUTES, n, "PATCH", "/api/v1/users", &rt, &m), API_NO_METHOD);
    assert_string_equal(m.allow, "POST, GET");
    assert_int_equal(look(API_ROUTES, n, "GET", "/api/v1/devices/MM0/transfer", &rt, &m),
                     API_NO_METHOD);
    assert_string_equal(m.allow, "POST, DELETE");
    assert_int_equal(look(API_ROUTES, n, "GET", "/api/v1/firmware/releases/ab/image", &rt, &m),
                     API_NO_METHOD);
    assert_string_equal(m.allow, "PUT");
    assert_int_equal(look(API_ROUTES, n, "PUT", "/api/v1/firmware/releases/ab/image", &rt, &m),
                     API_FOUND);
    assert_int_equal(m.route->role, ROUTE_STAFF);
    assert_int_equal(look(API_ROUTES, n, "GET", "/api/v1/devices/", &rt, &m), API_NO_PATH);
}

static void role_gate(void **st)
{
    (void)st;
    struct principal admin = {1, "admin", ROLE_ADMIN}, op = {2, "op", ROLE_OPERATOR},
                     owner = {3, "alice", ROLE_OWNER};
    const struct principal *who[] = {&admin, &op, &owner, NULL};
    /* rows: roles; columns: admin, operator, owner, no principal */
    static const enum api_gate want[ROUTE_N_ROLES][4] = {
        [ROUTE_PUBLIC] = {GATE_PASS, GATE_PASS, GATE_PASS, GATE_PASS},
        [ROUTE_UPDATE_TOKEN] = {GATE_UNAUTHENTICATED, GATE_UNAUTHENTICATED, GATE_UNAUTHENTICATED,
                                GATE_UNAUTHENTICATED},
        [ROUTE_USER] = {GATE_PASS, GATE_PASS, GATE_PASS, GATE_UNAUTHENTICATED},
        [ROUTE_OWNER] = {GATE_FORBIDDEN, GATE_FORBIDDEN, GATE_PASS, GATE_UNAUTHENTICATED},
        [ROUTE_STAFF] = {GATE_PASS, GATE_PASS, GATE_FORBIDDEN, GATE_UNAUTHENTICATED},
        [ROUTE_ADMIN] = {GATE_PASS, GATE_FORBIDDEN, GATE_FORBIDDEN, GATE_UNAUTHENTICATED},
    };
    for (int role = 0; role < ROUTE_N_ROLES; role++)
        for (int w = 0; w < 4; w++) {
            enum api_gate g = api_gate((enum api_role)role, who[w]);
            if (g != want[role][w])
                fail_msg("role %d, principal %d: gate %d, want %d", role, w, g, want[role][w]);
        }
    /* not a role: nobody */
    assert_int_equal(api_gate(ROUTE_N_ROLES, &admin), GATE_FORBIDDEN);
    assert_int_equal(api_gate(ROUTE_N_ROLES, NULL), GATE_UNAUTHENTICATED);
    assert_string_equal(api_role_denied(ROUTE_ADMIN), "forbidden: for administrators only");
}

static bool method_ok(const char *m)
{
    return m &&
           (!strcmp(m, "GET") || !strcmp(m, "POST") || !strcmp(m, "PUT") || !strcmp(m, "DELETE"));
}

/* Does every URL that matches b also match a (a at least as general)? */
static bool covers(const char *a, const char *b)
{
    while (*a == '/' && *b == '/') {
        size_t la = strcspn(a + 1, "/"), lb = strcspn(b + 1, "/");
        if (a[1] != ':' && (la != lb || memcmp(a + 1, b + 1, la) != 0 || b[1] == ':'))
            return false;
        a += la + 1;
        b += lb + 1;
    }
    return !*a && !*b;
}

static void table_well_formed(void **st)
{
    (void)st;
    assert_true(API_N_ROUTES > 0);
    for (size_t i = 0; i < API_N_ROUTES; i++) {
        const struct api_route *e = &API_ROUTES[i];
        if (!method_ok(e->method) || !api_pattern_ok(e->pattern) || !e->handler ||
            (unsigned)e->role >= ROUTE_N_ROLES)
            fail_msg("route %zu (%s %s) is malformed", i, e->method ? e->method : "(null)",
                     e->pattern ? e->pattern : "(null)");
        /* a streamed upload needs a session */
        if (!strcmp(e->method, "PUT") && e->role < ROUTE_USER)
            fail_msg("PUT %s is open to role %d", e->pattern, e->role);
        for (size_t j = 0; j < i; j++) {
            const struct api_route *p = &API_ROUTES[j];
            if (strcmp(p->method, e->method) != 0)
                continue;
            if (!strcmp(p->pattern, e->pattern))
                fail_msg("%s %s is in the table twice", e->method, e->pattern);
            if (covers(p->pattern, e->pattern))
                fail_msg("%s %s is never reached: %s comes first", e->method, e->pattern,
                         p->pattern);
        }
    }
    assert_true(covers("/a/:x", "/a/b"));
    assert_false(covers("/a/b", "/a/:x"));
    assert_false(covers("/a/:x", "/a/b/c"));
}

/* What answers without a session is exactly this. */
static void table_unauthenticated(void **st)
{
    (void)st;
    const char *unauth_routes[] = {
        "GET /health",        "GET /pki/crl",         "POST /bootstrap",   "POST /sessions",
        "GET /updates/roots", "GET /updates/release", "GET /updates/image"};
    size_t seen = 0;
    for (size_t i = 0; i < API_N_ROUTES; i++) {
        const struct api_route *e = &API_ROUTES[i];
        char k[96];
        bool listed = false;
        snprintf(k, sizeof(k), "%s %s", e->method, e->pattern);
        for (size_t j = 0; j < sizeof(unauth_routes) / sizeof(unauth_routes[0]); j++)
            listed = listed || !strcmp(k, unauth_routes[j]);
        bool unauth = e->role == ROUTE_PUBLIC || e->role == ROUTE_UPDATE_TOKEN;
        if (unauth != listed)
            fail_msg("%s: role %d", k, e->role);
        if (!strncmp(e->pattern, "/updates/", 9) && e->role != ROUTE_UPDATE_TOKEN)
            fail_msg("%s: downloads take the device's token", k);
        seen += listed;
    }
    assert_int_equal(seen, sizeof(unauth_routes) / sizeof(unauth_routes[0]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pattern_exact),
        cmocka_unit_test(pattern_params),
        cmocka_unit_test(pattern_grammar),
        cmocka_unit_test(match_table),
        cmocka_unit_test(match_405),
        cmocka_unit_test(match_api),
        cmocka_unit_test(role_gate),
        cmocka_unit_test(table_well_formed),
        cmocka_unit_test(table_unauthenticated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
