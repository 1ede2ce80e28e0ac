/*
 * hub/api.c - the HTTPS JSON API (/api/v1), a thin shell over hub/ops.c.
 *
 * libmicrohttpd with GnuTLS, held to the platform's TLS floor: TLS 1.2 and
 * 1.3 only, AEAD suites only, ECDHE only (T01-L1b, T05-L1b, T06-L1c, T11-L1d,
 * T11-L1f, T12-L1c).
 * Request bodies are capped (API_MAX_BODY) while they arrive and parsed as
 * untrusted JSON; every error has the one shape
 *   {"error": {"code": "...", "message": "..."}}
 * and every endpoint but health, bootstrap and login needs a bearer token.
 * Deadlines for a request's head and body, and the admission of
 * connections that have not authenticated, are hub/api_guard.c's.
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <errno.h>

#include "hub/io/api.h"
#include "hub/io/health.h"
#include "hub/users/users.h"
#include "hub/device/device.h"
#include "hub/pki/ca.h"
#include "hub/core/records.h"
#include "common/buf.h"
#include "common/crypto.h"
#include "common/fsutil.h"
#include "common/json.h"
#include "common/log.h"
#include "hub/fleet/campaign.h"
#include "hub/fleet/firmware.h"
#include "hub/core/tx.h"
#include "hub/owners/owners.h"
#include "hub/device/devstatus.h"
#include "hub/compliance/matrix.h"
#include "hub/compliance/report.h"
#include "hub/alerts/alerts.h"
#include "hub/io/api_guard.h"
#include "hub/io/route.h"

#define API_MAX_BODY (64 * 1024)
#define API_PRIORITIES                                                                             \
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:"            \
    "+CHACHA20-POLY1305:-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:%SERVER_PRECEDENCE"

struct req {
    struct dbuf body;
    bool too_big;
    /* PUT .../firmware/releases/{sha}/image: streamed to disk, not buffered */
    bool upload;
    struct fw_upload *up;
    enum mamori_err up_rc;
    struct op_err up_e;
};

struct reply {
    int status;
    json_t *body; /* owned */
    int64_t retry_after;
    /* a file instead of JSON (firmware images): fd owned, from off, len bytes */
    int fd;
    uint64_t off, len, total;
    const char *ctype; /* of the file (NULL: application/octet-stream) */
};

static void reply_err(struct reply *r, int status, const char *code, const char *msg)
{
    r->status = status;
    r->body = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
}

static void reply_rc(struct reply *r, enum mamori_err rc, const struct op_err *e)
{
    const char *msg = e && e->msg[0] ? e->msg : mamori_strerror(rc);
    switch (rc) {
    case MAMORI_ERR_INVAL:
    case MAMORI_ERR_PARSE:
    case MAMORI_ERR_TRUNCATED:
        reply_err(r, 400, "invalid_request", msg);
        break;
    case MAMORI_ERR_TOOBIG:
        reply_err(r, 413, "payload_too_large", msg);
        break;
    case MAMORI_ERR_AUTH:
        reply_err(r, 401, "unauthorized", msg);
        break;
    case MAMORI_ERR_FORBIDDEN:
        reply_err(r, 403, "forbidden", msg);
        break;
    case MAMORI_ERR_NOTFOUND:
        reply_err(r, 404, "not_found", msg);
        break;
    case MAMORI_ERR_EXISTS:
    case MAMORI_ERR_STATE:
        reply_err(r, 409, "conflict", msg);
        break;
    case MAMORI_ERR_RATELIMIT:
        reply_err(r, 429, "rate_limited", msg);
        r->retry_after = e ? e->retry_after : 60;
        break;
    case MAMORI_ERR_VERIFY:
    case MAMORI_ERR_CRYPTO:
    case MAMORI_ERR_EXPIRED:
        reply_err(r, 422, "verification_failed", msg);
        break;
    default:
        reply_err(r, 500, "internal", "internal error");
        break;
    }
}

static void reply_ok(struct reply *r, int status, json_t *body)
{
    r->status = status;
    r->body = body ? body : json_object();
}

/* Parses the body as a JSON object; replies 400/413 on failure. */
static json_t *body_json(struct req *q, struct reply *r)
{
    json_t *v = NULL;
    char err[160];
    if (q->too_big) {
        reply_err(r, 413, "payload_too_large", "request body exceeds 65536 bytes");
        return NULL;
    }
    enum mamori_err rc =
        json_parse_untrusted(q->body.p, q->body.len, API_MAX_BODY, &v, err, sizeof(err));
    if (rc)
        reply_err(r, rc == MAMORI_ERR_TOOBIG ? 413 : 400,
                  rc == MAMORI_ERR_TOOBIG ? "payload_too_large" : "invalid_request", err);
    return v;
}

/* Fetches required string members; replies 400 naming the first bad one. */
static bool need_str(json_t *o, const char *key, size_t max, const char **out, struct reply *r)
{
    if (json_get_str(o, key, max, out) &&
        strlen(*out) == json_string_length(json_object_get(o, key)))
        return true;
    char msg[128];
    snprintf(msg, sizeof(msg), "field '%s' must be a non-empty string of at most %zu bytes", key,
             max);
    reply_err(r, 400, "invalid_request", msg);
    return false;
}

static int64_t query_int(struct MHD_Connection *c, const char *k, int64_t def, int64_t lo,
                         int64_t hi)
{
    return route_int(MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, k), def, lo, hi);
}

static void peer_of(struct MHD_Connection *c, char *out, size_t n)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, n, "?");
    if (!ci || !ci->client_addr)
        return;
    if (ci->client_addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, out,
                  (socklen_t)n);
    else if (ci->client_addr->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ci->client_addr)->sin6_addr, out,
                  (socklen_t)n);
}

static bool authenticate(struct hub *h, struct MHD_Connection *c, struct principal *who,
                         struct reply *r)
{
    const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!a || strncmp(a, "Bearer ", 7) != 0 || hub_op_authenticate(h, a + 7, who)) {
        reply_err(r, 401, "unauthorized", "missing, invalid or expired session token");
        return false;
    }
    api_guard_authenticated(c); /* T10-L1a: no longer sheddable */
    return true;
}

/* ttl_s of a command: absent is the operation's default; anything but an
 * integer from 10 s to 30 days is refused, never replaced by the default. */
static bool ttl_of(const json_t *in, int64_t *ttl_s, struct reply *r)
{
    json_t *v = json_object_get(in, "ttl_s");
    *ttl_s = 0;
    if (!v)
        return true;
    if (json_is_integer(v) && json_integer_value(v) >= 10 &&
        json_integer_value(v) <= CMD_MAX_TTL_MS / 1000) {
        *ttl_s = (int64_t)json_integer_value(v);
        return true;
    }
    reply_err(r, 400, "invalid_request",
              "ttl_s must be an integer number of seconds from 10 to 2592000");
    return false;
}

/* An integer member, or def when absent; a value of another type or out
 * of int range becomes -1 (refused by the operation's bounds). */
static int64_t json_int_or(const json_t *o, const char *key, int64_t def)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return def;
    if (!json_is_integer(v) || json_integer_value(v) < INT32_MIN ||
        json_integer_value(v) > INT32_MAX)
        return -1;
    return (int64_t)json_integer_value(v);
}

/* "bytes=N-" or "bytes=N-M" within total; false for anything else. */
static bool parse_range(const char *v, uint64_t total, uint64_t *off, uint64_t *len)
{
    char *end;
    if (strncmp(v, "bytes=", 6) != 0 || v[6] < '0' || v[6] > '9')
        return false;
    errno = 0;
    unsigned long long a = strtoull(v + 6, &end, 10), b = total ? total - 1 : 0;
    if (errno || *end != '-' || a >= total)
        return false;
    if (end[1]) {
        char *e2;
        if (end[1] < '0' || end[1] > '9')
            return false;
        b = strtoull(end + 1, &e2, 10);
        if (errno || *e2 || b < a)
            return false;
        if (b >= total)
            b = total - 1;
    }
    *off = a;
    *len = b - a + 1;
    return true;
}

/* GET /updates/{roots,release,image}: a device fetching the release its
 * update command named, with the command's download token. */
static void device_update(struct hub *h, struct MHD_Connection *c, const struct route *rt,
                          struct reply *r)
{
    char sha[65], dev[24], path[HUB_PATH_MAX + 80];
    json_t *out = NULL;
    const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    enum mamori_err rc = a && strncmp(a, "Bearer ", 7) == 0 && strlen(a) < 200
                             ? hub_fw_token_check(h, a + 7, sha, dev)
                             : MAMORI_ERR_AUTH;
    if (rc == MAMORI_ERR_FORBIDDEN) {
        reply_err(r, 403, "forbidden", "the device may not receive new code in its state");
        return;
    }
    if (rc) {
        reply_err(r, rc == MAMORI_ERR_AUTH ? 401 : 500,
                  rc == MAMORI_ERR_AUTH ? "unauthorized" : "internal",
                  rc == MAMORI_ERR_AUTH ? "missing, unknown or expired update token"
                                        : "internal error");
        return;
    }
    api_guard_authenticated(c);
    if (route_is(rt, 1, "roots")) {
        rc = hub_fw_device_roots(h, &out);
        rc ? reply_rc(r, rc, NULL) : reply_ok(r, 200, out);
    } else if (route_is(rt, 1, "release")) {
        rc = hub_fw_device_release(h, sha, &out);
        rc ? reply_rc(r, rc, NULL) : reply_ok(r, 200, out);
    } else if (route_is(rt, 1, "image")) {
        struct stat st;
        int fd =
            hub_fw_image_path(h, sha, path, sizeof(path)) ? -1 : open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) || st.st_size <= 0) {
            if (fd >= 0)
                close(fd);
            reply_err(r, 404, "not_found", "image not found");
            return;
        }
        const char *range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
        r->total = (uint64_t)st.st_size;
        r->off = 0;
        r->len = r->total;
        r->status = 200;
        if (range && !parse_range(range, r->total, &r->off, &r->len)) {
            close(fd);
            reply_err(r, 416, "range_not_satisfiable",
                      "only bytes=N- or bytes=N-M within the image");
            return;
        }
        if (range)
            r->status = 206;
        r->fd = fd;
    } else {
        reply_err(r, 404, "not_found", "no such endpoint");
    }
}

static void handle(struct hub *h, struct MHD_Connection *c, const char *method, const char *url,
                   struct req *q, struct reply *r)
{
    struct route rt;
    struct principal who;
    struct op_err e = {{0}, 0};
    json_t *in = NULL, *out = NULL;
    char peer[64];
    enum mamori_err rc;
    bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    bool del = strcmp(method, "DELETE") == 0;
    peer_of(c, peer, sizeof(peer));
    if (!route_split(url, &rt)) {
        reply_err(r, 404, "not_found", "no such endpoint");
        return;
    }
    if (q->too_big) {
        reply_err(r, 413, "payload_too_large", "request body exceeds 65536 bytes");
        return;
    }
    /* Unauthenticated endpoints. */
    if (rt.n == 1 && route_is(&rt, 0, "health") && get) {
        rc = hub_op_health(h, &out);
        json_object_set_new(out, "api", api_guard_stats(h->api_guard)); /* NULL: not set */
        reply_ok(r, 200, out);
        return;
    }
    if (rt.n == 2 && route_is(&rt, 0, "pki") && route_is(&rt, 1, "crl") && get) {
        /* the CRL of device certificates, for any relying party (signed) */
        char p[HUB_PATH_MAX + 16];
        struct stat st;
        int fd = fs_path(p, sizeof(p), h->cfg.data_dir, "pki/crl.pem")
                     ? -1
                     : open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) || st.st_size <= 0) {
            if (fd >= 0)
                close(fd);
            reply_err(r, 503, "unavailable", "no CRL yet");
            return;
        }
        r->status = 200;
        r->fd = fd;
        r->off = 0;
        r->len = r->total = (uint64_t)st.st_size;
        r->ctype = "application/x-pem-file";
        return;
    }
    if (rt.n == 1 && route_is(&rt, 0, "bootstrap") && post) {
        const char *tok, *user, *pw;
        if (!(in = body_json(q, r)))
            return;
        if (need_str(in, "token", 128, &tok, r) &&
            need_str(in, "username", STORE_NAME_MAX, &user, r) &&
            need_str(in, "password", 256, &pw, r)) {
            rc = hub_op_bootstrap(h, tok, user, pw, peer, &e);
            if (rc)
                reply_rc(r, rc, &e);
            else
                reply_ok(r, 201, json_pack("{s:s,s:s}", "user", user, "role", "admin"));
        }
        json_decref(in);
        return;
    }
    if (rt.n == 1 && route_is(&rt, 0, "sessions") && post) {
        const char *user, *pw;
        if (!(in = body_json(q, r)))
            return;
        if (need_str(in, "username", STORE_NAME_MAX, &user, r) &&
            need_str(in, "password", 256, &pw, r)) {
            rc = hub_op_login(h, user, pw, peer, &out, &e);
            if (rc)
                reply_rc(r, rc, &e);
            else
                reply_ok(r, 201, out);
        }
        json_decref(in);
        return;
    }
    if (rt.n == 2 && route_is(&rt, 0, "updates") && get) {
        device_update(h, c, &rt, r);
        return;
    }
    if (!authenticate(h, c, &who, r))
        return;
    /* Every write takes a JSON object body (possibly {}), so that a
     * malformed one is refused the same way on every endpoint. */
    if ((post || (del && q->body.len)) && !(in = body_json(q, r)))
        return;
    const char *reason = "";

    if (rt.n == 2 && route_is(&rt, 0, "sessions") && route_is(&rt, 1, "current") && del) {
        const char *a =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        rc = hub_op_logout(h, a + 7);
        if (rc)
            reply_rc(r, rc, NULL);
        else
            reply_ok(r, 200, json_pack("{s:b}", "logged_out", 1));
    } else if (rt.n == 1 && route_is(&rt, 0, "me") && get) {
        reply_ok(r, 200,
                 json_pack("{s:s,s:s}", "user", who.name, "role", store_role_name(who.role)));
    } else if (rt.n == 1 && route_is(&rt, 0, "users") && post) {
        const char *name, *role, *pw;
        if (need_str(in, "username", STORE_NAME_MAX, &name, r) &&
            need_str(in, "role", 16, &role, r) && need_str(in, "password", 256, &pw, r)) {
            rc = hub_op_user_add(h, &who, name, role, pw, &out, &e);
            rc ? reply_rc(r, rc, &e) : reply_ok(r, 201, out);
        }
    } else if (rt.n == 1 && route_is(&rt, 0, "users") && get) {
        rc = hub_op_user_list(h, &who, &out);
        rc ? (json_decref(out), reply_rc(r, rc, NULL)) : reply_ok(r, 200, out);
    } else if (rt.n == 2 && route_is(&rt, 0, "factory") &&
               (route_is(&rt, 1, "enroll") || route_is(&rt, 1, "register")) && post) {
        const char *model, *pem;
        bool enroll = route_is(&rt, 1, "enroll");
        if (need_str(in, "model", STORE_NAME_MAX, &model, r) &&
            need_str(in, enroll ? "csr" : "certificate", CRYPTO_PEM_MAX, &pem, r)) {
            rc = enroll ? hub_op_enroll(h, &who, model, pem, &out, &e)
                        : hub_op_register(h, &who, model, pem, &out, &e);
            rc ? reply_rc(r, rc, &e) : reply_ok(r, 201, out);
        }
    } else if (rt.n == 1 && route_is(&rt, 0, "cas") && post) {
        const char *model, *pem;
        if (need_str(in, "model", STORE_NAME_MAX, &model, r) &&
            need_str(in, "certificate", CRYPTO_PEM_MAX, &pem, r)) {
            rc = hub_op_ca_import(h, &who, model, pem, &out, &e);
            rc ? reply_rc(r, rc, &e) : reply_ok(r, 201, out);
        }
    } else if (rt.n == 1 && route_is(&rt, 0, "cas") && get) {
        rc = hub_op_ca_list(h, &who, &out);
        rc ? (json_decref(out), reply_rc(r, rc, NULL)) : reply_ok(r, 200, out);
    } else if (rt.n == 1 && route_is(&rt, 0, "claims") && post) {
        const char *code;
        if (need_str(in, "claim_code", 64, &code, r)) {
            rc = hub_op_claim(h, &who, code, peer, &out, &e);
            rc ? reply_rc(r, rc, &e) : reply_ok(r, 201, out);
        }
    } else if (rt.n == 1 && route_is(&rt, 0, "devices") && get) {
        const char *after = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "after");
        if (after && strlen(after) > 32)
            after = NULL;
        rc = hub_op_device_list(h, &who, after, (int)query_int(c, "limit", 100, 1, 500), &out);
        rc ? (json_decref(out), reply_rc(r, rc, NULL)) : reply_ok(r, 200, out);
    } else if (rt.n == 2 && route_is(&rt, 0, "devices") && get) {
        rc = hub_op_device_get(h, &who, rt.seg[1], &out);
        rc ? reply_rc(r, rc, NULL) : reply_ok(r, 200, out);
    } else if (rt.n == 3 && route_is(&rt, 0, "devices") && route_is(&rt, 2, "commands") && post) {
        const char *type;
        int64_t ttl;
        if (need_str(in, "type", 16, &type, r) &&
            need_str(in, "reason", STORE_REASON_MAX, &reason, r) && ttl_of(in, &ttl, r)) {
            rc = hub_op_command(h, &who, rt.seg[1], type, reason, ttl, &out, &e);
            rc ? reply_rc(r, rc, &e) : reply_ok(r, 201, out);
        }
    } else if (rt.n == 3 && route_is(&rt, 0, "devices") && route_is(&rt, 2, "config") && post) {
        if (need_str(in, "reason", STORE_REASON_MAX, &reason, r)) {
            rc = hub_op_config(h, &who, rt.seg[1], json_object_get(in, "settings"), reason, &out,
                               &e);
            rc ? reply_rc(r, rc, &e) : reply_ok(r, 201, out);
        }
    } else if (rt.n == 3 && route_is(&rt, 0, "devices") && route_is(&rt, 2, "status") && get) {
        rc = hub_op_device_status(h, &who, rt.seg[1], &out);
        rc ? reply_rc(r, rc, NULL) : reply_ok(r, 200, out);
    } else if (rt.n == 3 && route_is(&rt, 0, "devices") && route_is(&rt, 2, "commands") && get) {
        rc = hub_op_command_list(h, &who, rt.seg[1], (int)query_int(c, "limit", 50, 1, 500), &out);
        rc ? reply_rc(r, rc, NULL) : reply_ok(r, 200, out);
    } else if (rt.n == 3 && route_is(&rt, 0, "devices") && route_is(&rt, 2, "transfer") &&
               (post || del)) {
        json_t *data = json_object_get(in, "data");
        if (post && data && !json_is_string(data))
            reply_err(r, 400, "invalid_request", "data must be \"export\" or \"erase\"");
        else {
            rc = post ? hub_op_transfer_start(h, &who, rt.seg[1],
                                              data ? json_string_value(data) : "erase", &out, &e)
                      : hub_op_transfer_cancel(h, &who, rt.seg[1], &out, &e);
            rc ? reply_rc(r, rc, &e) : reply_ok(r, post ? 201 : 200, out);
        }
    } else if (rt.n == 1 && route_is(&rt, 0, "transfers") && post) {
        const char *code;
        if (need_str(in, "code", 64, &code, r)) {
            rc = hub_op_transfer_accept(h, &who, code, peer, &out, &e);
            rc ? reply_rc(r, rc, &e) : reply_ok(r, 200, out);
        }
    } else if (rt.n == 2 && route_is(&rt, 0, "me") && route_is(&rt, 1, "export") && get) {
        rc = hub_op_me_export(h, &who, &out);
        rc ? reply_rc(r, rc, NULL) : reply_ok(r, 200, out);
    } else if (rt.n == 2 && route_is(&rt, 0, "me") && route_is(&rt, 1, "erase") && post) {
        const char *confirm;
        if (need_str(in, "confirm", STORE_NAME_MAX, &confirm, r)) {
            rc = hub_op_me_erase(h, &who, confirm, &out, &e);
            rc ? reply_rc(r, rc, &e) : reply_ok(r, 200, out);
        }
    } else if (rt.n == 1 && route_is(&rt, 0, "me") && del) {
        const char *confirm;
        json_t *dv = json_object_get(in, "devices");
        if (dv && !json_is_string(dv) && !json_is_null(dv))
            reply_err(r, 400, "invalid_request", "devices must be \"decommission\"");
        else if (need_str(in, "confirm", STORE_NAME_MAX, &confirm, r)) {
            rc = hub_op_me_delete(h, &who, confirm, json_string_value(dv), &out, &e);
            rc ? reply_rc(r, rc, &e) : reply_ok(r, 200, out);
        }
    } else if (rt.n == 2 && route_is(&rt, 0, "users") && del) {
        if (need_str(in, "reason", STORE_REASON_MAX, &reason, r)) {
            rc = hub_op_user_delete(h, &who, rt.seg[1], reason, &out, &e);
            rc ? reply_rc(r, rc, &e) : reply_ok(r, 200, out);
        }
    } else if ((rt.n == 1 || rt.n == 2) && route_is(&rt, 0, "exports") && get) {
        int64_t xid = rt.n == 2 ? route_int(rt.seg[1], 0, 1, INT64_MAX) : 0;
        rc = rt.n == 2 && !xid ? MAMORI_ERR_NOTFOUND : hub_op_exports(h, &who, xid, &out);
        rc ? reply_rc(r, rc, NULL) : reply_ok(r, 200, out);
    } else if (rt.n == 3 && route_is(&rt, 0, "devices") && post) {
        /* Every operator action is audited with its reason: no reason, no action. */
        if (need_str(in, "reason", STORE_REASON_MAX, &reason, r)) {
            rc = hub_op_device_action(h, &who, rt.seg[1], rt.seg[2], reason, &out, &e);
            rc ? reply_rc(r, rc, &e) : reply_ok(r, 200, out);
        }
    } else if (rt.n == 3 && route_is(&rt, 0, "models") && route_is(&rt, 2, "schema") && post) {
        rc = hub_op_schema_set(h, &who, rt.seg[1], in, &out, &e);
        rc ? reply_rc(r, rc, &e) : reply_ok(r, 200, out);
    } else if (rt.n == 3 && route_is(&rt, 0, "models") && route_is(&rt, 2, "schema") && get) {
        rc = hub_op_schema_get(h, &who, rt.seg[1], &out);
        rc ? reply_rc(r, rc, NULL) : reply_ok(r, 200, out);
    } else if (rt.n == 3 && route_is(&rt, 0, "devices") && route_is(&rt, 2, "telemetry") && get) {
        rc = hub_op_telemetry(h, &who, rt.seg[1], query_int(c, "from", 0, 0, INT64_MAX),
                              query_int(c, "to", INT64_MAX, 0, INT64_MAX),
                              query_int(c, "after", 0, 0, INT64_MAX),
                              (int)query_int(c, "limit", 100, 1, 1000), &out);
        rc ? (json_decref(out), reply_rc(r, rc, NULL)) : reply_ok(r, 200, out);
    } else if (rt.n == 2 && route_is(&rt, 0, "firmware") && route_is(&rt, 1, "roots") && post) {
        char *doc = json_dump_compact(in);
        rc = doc ? hub_op_fw_root_add(h, &who, doc, &out, &e) : MAMORI_ERR_NOMEM;
        free(doc);
        rc ? reply_rc(r, rc, &e) : reply_ok(r, 201, out);
    } else if (rt.n == 2 && route_is(&rt, 0, "firmware") && route_is(&rt, 1, "roots") && get) {
        rc = hub_op_fw_roots(h, &who, &out);
        rc ? reply_rc(r, rc, NULL) : reply_ok(r, 200, out);
    } else if (rt.n == 2 && route_is(&rt, 0, "firmware") && route_is(&rt, 1, "releases") && post) {
        char *doc = json_dump_compact(in);
        rc = doc ? hub_op_fw_release_add(h, &who, doc, &out, &e) : MAMORI_ERR_NOMEM;
        free(doc);
        rc ? reply_rc(r, rc, &e) : reply_ok(r, 201, out);
    } else if (rt.n == 2 && route_is(&rt, 0, "firmware") && route_is(&rt, 1, "releases") && get) {
        const char *model = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "model");
        if (model && strlen(model) > STORE_NAME_MAX)
            model = NULL;
        rc = hub_op_fw_releases(h, &who, model, &out);
        rc ? reply_rc(r, rc, NULL) : reply_ok(r, 200, out);
    } else if (rt.n == 3 && route_is(&rt, 0, "groups") &&
               (route_is(&rt, 2, "add") || route_is(&rt, 2, "remove")) && post) {
        const char *device;
        if (need_str(in, "device", 32, &device, r)) {
            rc = hub_op_group_set(h, &who, rt.seg[1], device, route_is(&rt, 2, "add"), &out, &e);
            rc ? reply_rc(r, rc, &e) : reply_ok(r, 200, out);
        }
    } else if (rt.n == 2 && route_is(&rt, 0, "groups") && get) {
        rc = hub_op_group_get(h, &who, rt.seg[1], &out);
        rc ? reply_rc(r, rc, NULL) : reply_ok(r, 200, out);
    } else if (rt.n == 1 && route_is(&rt, 0, "advisories") && post) {
        rc = hub_op_advisory_add(h, &who, in, &out, &e);
        rc ? reply_rc(r, rc, &e) : reply_ok(r, 201, out);
    } else if (rt.n == 1 && route_is(&rt, 0, "advisories") && get) {
        const char *model = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "model");
        rc = hub_op_advisories(h, model && strlen(model) <= STORE_NAME_MAX ? model : NULL, &out);
        rc ? reply_rc(r, rc, NULL) : reply_ok(r, 200, out);
    } else if (rt.n == 3 && route_is(&rt, 0, "models") && route_is(&rt, 2, "support") && post) {
        json_t *end = json_object_get(in, "end");
        rc = hub_op_support_set(h, &who, rt.seg[1],
                                json_is_integer(end) ? (int64_t)json_integer_value(end) : -1, &out,
                                &e);
        rc ? reply_rc(r, rc, &e) : reply_ok(r, 200, out);
    } else if (rt.n == 3 && route_is(&rt, 0, "models") && route_is(&rt, 2, "support") && get) {
        rc = hub_op_support_get(h, rt.seg[1], &out);
        rc ? reply_rc(r, rc, NULL) : reply_ok(r, 200, out);
    } else if (rt.n == 2 && route_is(&rt, 0, "firmware") && route_is(&rt, 1, "campaigns") && post) {
        const char *sha;
        if (need_str(in, "sha256", 64, &sha, r) &&
            need_str(in, "reason", STORE_REASON_MAX, &reason, r)) {
            struct campaign_opts o = {(int)json_int_or(in, "canary", 1),
                                      (int)json_int_or(in, "wave", 10),
                                      (int)json_int_or(in, "interval_s", 300),
                                      (int)json_int_or(in, "max_failure_pct", 10),
                                      (int)json_int_or(in, "window_start", 0),
                                      (int)json_int_or(in, "window_end", 0),
                                      json_string_value(json_object_get(in, "group"))};
            json_t *g = json_object_get(in, "group");
            if (g && !json_is_string(g)) /* never widened to the whole model by a typo */
                reply_err(r, 400, "invalid_request", "group must be a string");
            else {
                rc = hub_op_campaign_create(h, &who, sha, reason, &o, &out, &e);
                rc ? reply_rc(r, rc, &e) : reply_ok(r, 201, out);
            }
        }
    } else if (rt.n == 2 && route_is(&rt, 0, "firmware") && route_is(&rt, 1, "campaigns") && get) {
        rc = hub_op_campaigns(h, &who, &out);
        rc ? reply_rc(r, rc, NULL) : reply_ok(r, 200, out);
    } else if (rt.n == 3 && route_is(&rt, 0, "firmware") && route_is(&rt, 1, "campaigns") && get) {
        rc = hub_op_campaign_get(h, &who, route_int(rt.seg[2], 0, 1, INT64_MAX), &out);
        rc ? reply_rc(r, rc, NULL) : reply_ok(r, 200, out);
    } else if (rt.n == 4 && route_is(&rt, 0, "firmware") && route_is(&rt, 1, "campaigns") && post) {
        if (need_str(in, "reason", STORE_REASON_MAX, &reason, r)) {
            rc = hub_op_campaign_action(h, &who, route_int(rt.seg[2], 0, 1, INT64_MAX), rt.seg[3],
                                        reason, &out, &e);
            rc ? reply_rc(r, rc, &e) : reply_ok(r, 200, out);
        }
    } else if (rt.n == 4 && route_is(&rt, 0, "firmware") && route_is(&rt, 1, "releases") &&
               route_is(&rt, 3, "deploy") && post) {
        const char *device;
        int64_t ttl;
        if (need_str(in, "device", 32, &device, r) &&
            need_str(in, "reason", STORE_REASON_MAX, &reason, r) && ttl_of(in, &ttl, r)) {
            rc = hub_op_fw_deploy(h, &who, rt.seg[2], device, reason, ttl, &out, &e);
            rc ? reply_rc(r, rc, &e) : reply_ok(r, 201, out);
        }
    } else if (rt.n == 4 && route_is(&rt, 0, "firmware") && route_is(&rt, 1, "releases") &&
               route_is(&rt, 3, "retire") && post) {
        if (need_str(in, "reason", STORE_REASON_MAX, &reason, r)) {
            rc = hub_op_fw_retire(h, &who, rt.seg[2], reason, &out, &e);
            rc ? reply_rc(r, rc, &e) : reply_ok(r, 200, out);
        }
    } else if (rt.n == 1 && route_is(&rt, 0, "audit") && get) {
        rc = hub_op_audit_list(h, &who, query_int(c, "after", 0, 0, INT64_MAX),
                               (int)query_int(c, "limit", 100, 1, 1000), &out);
        rc ? (json_decref(out), reply_rc(r, rc, NULL)) : reply_ok(r, 200, out);
    } else if (rt.n == 2 && route_is(&rt, 0, "audit") && route_is(&rt, 1, "verify") && get) {
        rc = hub_op_audit_verify(h, &who, &out);
        rc ? reply_rc(r, rc, NULL) : reply_ok(r, 200, out);
    } else if (rt.n == 2 && route_is(&rt, 0, "reports") && route_is(&rt, 1, "etsi") && get) {
        rc = hub_op_etsi(h, &who, &out);
        rc ? reply_rc(r, rc, NULL) : reply_ok(r, 200, out);
    } else if (rt.n == 2 && route_is(&rt, 0, "reports") && route_is(&rt, 1, "matrix") && get) {
        const char *dev = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "device");
        rc = hub_op_matrix(h, &who, dev && *dev ? dev : NULL, &out);
        rc ? reply_rc(r, rc, NULL) : reply_ok(r, 200, out);
    } else if (rt.n == 2 && route_is(&rt, 0, "reports") && route_is(&rt, 1, "fleet-audit") && get) {
        rc = hub_op_fleet_audit(h, &who, &out);
        rc ? reply_rc(r, rc, NULL) : reply_ok(r, 200, out);
    } else if (rt.n == 1 && route_is(&rt, 0, "alerts") && get) {
        const char *st = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "state");
        const char *dev = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "device");
        rc = hub_op_alerts(h, &who, st, dev, query_int(c, "after", 0, 0, INT64_MAX),
                           (int)query_int(c, "limit", 100, 1, 1000), &out);
        rc ? reply_rc(r, rc, NULL) : reply_ok(r, 200, out);
    } else if (rt.n == 3 && route_is(&rt, 0, "alerts") && post) {
        json_t *note = json_object_get(in, "note");
        if (note && (!json_is_string(note) || json_string_length(note) > STORE_REASON_MAX)) {
            reply_err(r, 400, "invalid_request", "note must be a string of at most 512 bytes");
        } else {
            rc = hub_op_alert_set(h, &who, route_int(rt.seg[1], 0, 1, INT64_MAX), rt.seg[2],
                                  note ? json_string_value(note) : "", &out, &e);
            rc ? reply_rc(r, rc, &e) : reply_ok(r, 200, out);
        }
    } else if (rt.n == 1 && route_is(&rt, 0, "rules") && get) {
        rc = hub_op_rules(h, &who, &out);
        rc ? reply_rc(r, rc, NULL) : reply_ok(r, 200, out);
    } else if (rt.n == 3 && route_is(&rt, 0, "rules") && route_is(&rt, 2, "policy") && post) {
        rc = hub_op_rule_policy(h, &who, rt.seg[1], in, &out, &e);
        rc ? reply_rc(r, rc, &e) : reply_ok(r, 200, out);
    } else if (rt.n == 1 && route_is(&rt, 0, "webhooks") && post) {
        const char *hook_url;
        if (need_str(in, "url", 600, &hook_url, r)) {
            rc = hub_op_webhook_add(h, &who, hook_url, &out, &e);
            rc ? reply_rc(r, rc, &e) : reply_ok(r, 201, out);
        }
    } else if (rt.n == 1 && route_is(&rt, 0, "webhooks") && get) {
        rc = hub_op_webhooks(h, &who, &out);
        rc ? reply_rc(r, rc, NULL) : reply_ok(r, 200, out);
    } else if (rt.n == 2 && route_is(&rt, 0, "webhooks") && del) {
        rc = hub_op_webhook_del(h, &who, route_int(rt.seg[1], 0, 1, INT64_MAX), &out);
        rc ? reply_rc(r, rc, NULL) : reply_ok(r, 200, out);
    } else if (rt.n == 1 && route_is(&rt, 0, "events") && get) {
        const char *dev = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "device");
        rc = hub_op_events(h, &who, dev, query_int(c, "after", 0, 0, INT64_MAX),
                           (int)query_int(c, "limit", 100, 1, 1000), &out);
        rc ? (json_decref(out), reply_rc(r, rc, NULL)) : reply_ok(r, 200, out);
    } else {
        reply_err(r, (get || post || del) ? 404 : 405,
                  (get || post || del) ? "not_found" : "method_not_allowed", "no such endpoint");
    }
    json_decref(in);
}

/* A firmware image: 200 whole, 206 from a Range offset (downloads resume). */
static enum MHD_Result send_file(struct MHD_Connection *c, struct reply *r)
{
    char cr[96];
    struct MHD_Response *resp = MHD_create_response_from_fd_at_offset64(r->len, r->fd, r->off);
    if (!resp) {
        close(r->fd);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            r->ctype ? r->ctype : "application/octet-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (r->status == 206) {
        snprintf(cr, sizeof(cr), "bytes %llu-%llu/%llu", (unsigned long long)r->off,
                 (unsigned long long)(r->off + r->len - 1), (unsigned long long)r->total);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
    }
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)r->status, resp);
    MHD_destroy_response(resp); /* closes the fd when the response is done */
    return ret;
}

static enum MHD_Result send_reply(struct MHD_Connection *c, struct reply *r)
{
    if (r->fd >= 0)
        return send_file(c, r);
    char *s = r->body ? json_dumps(r->body, JSON_COMPACT) : NULL;
    json_decref(r->body);
    if (!s) {
        s = strdup("{\"error\":{\"code\":\"internal\",\"message\":\"internal error\"}}");
        r->status = 500;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(s);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Strict-Transport-Security", "max-age=31536000");
    if (r->retry_after > 0) {
        char ra[24];
        snprintf(ra, sizeof(ra), "%lld", (long long)r->retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* An image upload is checked before its first byte (who, which release)
 * and then streamed to disk through hub/firmware.c, hashed on the way. */
static void upload_begin(struct hub *h, struct MHD_Connection *c, const char *url, struct req *q)
{
    struct route rt;
    struct principal who;
    struct reply tmp = {0, NULL, 0, -1, 0, 0, 0, NULL};
    if (!route_split(url, &rt) || rt.n != 4 || !route_is(&rt, 0, "firmware") ||
        !route_is(&rt, 1, "releases") || !route_is(&rt, 3, "image"))
        return;
    q->upload = true;
    if (!authenticate(h, c, &who, &tmp)) {
        json_decref(tmp.body);
        q->up_rc = MAMORI_ERR_AUTH;
        return;
    }
    q->up_rc = hub_fw_upload_begin(h, &who, rt.seg[2], &q->up, &q->up_e);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **con_cls)
{
    (void)version;
    struct hub *h = cls;
    struct req *q = *con_cls;
    if (!q) {
        q = calloc(1, sizeof(*q));
        if (!q)
            return MHD_NO;
        dbuf_init(&q->body, API_MAX_BODY);
        *con_cls = q;
        api_guard_head_done(c); /* T10-L1b: the body's clock starts */
        if (strcmp(method, "PUT") == 0)
            upload_begin(h, c, url, q);
        return MHD_YES;
    }
    if (*size)
        api_guard_body(c, *size);
    else
        api_guard_answering(c);
    if (q->upload) {
        if (*size) {
            /* After a refusal the rest is read and dropped, so the client
             * gets the answer rather than a reset. */
            if (q->up && !q->up_rc) {
                enum mamori_err wr = hub_fw_upload_write(q->up, data, *size);
                if (wr && wr != MAMORI_ERR_TOOBIG) /* too big: said at the end */
                    q->up_rc = wr;
            }
            *size = 0;
            return MHD_YES;
        }
        struct reply r = {0, NULL, 0, -1, 0, 0, 0, NULL};
        json_t *out = NULL;
        enum mamori_err rc = q->up_rc;
        if (!rc) {
            rc = hub_fw_upload_end(q->up, &out, &q->up_e);
            q->up = NULL; /* freed by end */
        }
        if (rc)
            reply_rc(&r, rc, &q->up_e);
        else
            reply_ok(&r, 201, out);
        return send_reply(c, &r);
    }
    if (*size) {
        /* Keep consuming past the cap (so the client gets a 413 rather than
         * a reset) but store nothing more. */
        if (!q->too_big && dbuf_add(&q->body, data, *size))
            q->too_big = true;
        *size = 0;
        return MHD_YES;
    }
    struct reply r = {0, NULL, 0, -1, 0, 0, 0, NULL};
    handle(h, c, method, url, q, &r);
    return send_reply(c, &r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)toe;
    struct req *q = *con_cls;
    api_guard_request_done(c); /* keep-alive: the next head's clock starts */
    if (q) {
        hub_fw_upload_abort(q->up); /* an upload cut short leaves nothing */
        dbuf_free(&q->body);        /* wiped: bodies carry passwords and tokens */
        free(q);
        *con_cls = NULL;
    }
}

/* The guard's limits (hub/api_guard.h): by default a quarter of the
 * connections is kept for connections that authenticated (T10-L1a). */
static enum mamori_err guard_start(struct hub *h)
{
    int total = h->cfg.api_connections;
    struct api_guard_cfg gc = {h->cfg.api_head_s, h->cfg.api_min_body_rate,
                               h->cfg.api_unauth_conns};
    if (!gc.unauth_max)
        gc.unauth_max = total > 1 ? total - (total / 4 > 0 ? total / 4 : 1) : 1;
    if (total > 1 && gc.unauth_max >= total) {
        log_err("--api-unauth-connections %d must be below --api-connections %d", gc.unauth_max,
                total);
        return MAMORI_ERR_INVAL;
    }
    return api_guard_new(&gc, &h->api_guard);
}

enum mamori_err api_start(struct hub *h)
{
    char kp[HUB_PATH_MAX], cp[HUB_PATH_MAX];
    char *key = NULL, *cert = NULL;
    size_t kl = 0, cl;
    enum mamori_err rc;
    if ((rc = fs_path(kp, sizeof(kp), h->cfg.data_dir, "pki/api.key")) ||
        (rc = fs_path(cp, sizeof(cp), h->cfg.data_dir, "pki/api.crt")) ||
        (rc = fs_read_file(kp, CRYPTO_PEM_MAX, &key, &kl)) ||
        (rc = fs_read_file(cp, CRYPTO_PEM_MAX, &cert, &cl)))
        goto out;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)h->cfg.api_port)};
    if (inet_pton(AF_INET, h->cfg.listen_addr, &sa.sin_addr) != 1) {
        rc = MAMORI_ERR_INVAL;
        goto out;
    }
    if ((rc = guard_start(h)))
        goto out;
    h->mhd = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_TLS | MHD_USE_POLL, 0, NULL, NULL, on_request, h,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_HTTPS_MEM_KEY, key,
        MHD_OPTION_HTTPS_MEM_CERT, cert, MHD_OPTION_HTTPS_PRIORITIES, API_PRIORITIES,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)2, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)h->cfg.api_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)h->cfg.api_per_address,            /* T10-L1a */
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)15, /* T10-L1b */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(128 * 1024), MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, NULL, MHD_OPTION_NOTIFY_CONNECTION, api_guard_notify, h->api_guard,
        MHD_OPTION_END);
    if (!h->mhd) {
        log_err("cannot start HTTPS API on %s:%d", h->cfg.listen_addr, h->cfg.api_port);
        rc = MAMORI_ERR_IO;
        goto out_guard;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
    h->api_port = di ? di->port : h->cfg.api_port;
    h->api_key_pem = key;
    h->api_key_len = kl;
    h->api_cert_pem = cert;
    return MAMORI_OK;
out_guard:
    api_guard_free(h->api_guard);
    h->api_guard = NULL;
out:
    if (key) {
        crypto_wipe(key, kl);
        free(key);
    }
    free(cert);
    return rc;
}

void api_stop(struct hub *h)
{
    api_guard_stop(h->api_guard); /* no shutdown(2) while the daemon closes */
    if (h->mhd)
        MHD_stop_daemon(h->mhd);
    h->mhd = NULL;
    api_guard_free(h->api_guard); /* every connection's CLOSED has run */
    h->api_guard = NULL;
    if (h->api_key_pem) {
        crypto_wipe(h->api_key_pem, h->api_key_len);
        free(h->api_key_pem);
    }
    free(h->api_cert_pem);
    h->api_key_pem = h->api_cert_pem = NULL;
}
