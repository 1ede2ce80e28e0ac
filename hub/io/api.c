/*
 * hub/io/api.c - the HTTPS JSON API (/api/v1): the daemon, its connections,
 * the assembly of each request and its dispatch through the route table
 * (hub/io/api_routes.c, hub/io/api_table.h).
 *
 * libmicrohttpd with GnuTLS, held to the platform's TLS floor: TLS 1.2 and
 * 1.3 only, AEAD suites only, ECDHE only (T01-L1b, T05-L1b, T06-L1c, T11-L1d,
 * T11-L1f, T12-L1c).
 * Request bodies are capped (API_MAX_BODY) while they arrive and parsed as
 * untrusted JSON; every error has the one shape
 *   {"error": {"code": "...", "message": "..."}}
 * A request is answered, in this order: 404 for a URL that is no
 * well-formed /api/v1 path, 413 for a body over the cap, 404 for a path no
 * route has, 405 (with Allow) for a method the path does not have, 401
 * without the credentials its route's role needs (a session token; for the
 * update downloads the device's download token), 403 for a principal whose
 * role the route does not admit, 400 for a malformed body, then whatever
 * the handler's operation says. Health, the CRL, bootstrap and login need
 * no credentials.
 * Deadlines for a request's head and body, and the admission of
 * connections that have not authenticated, are hub/io/api_guard.c's.
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hub/io/api.h"
#include "hub/users/users.h"
#include "common/buf.h"
#include "common/crypto.h"
#include "common/fsutil.h"
#include "common/json.h"
#include "common/log.h"
#include "hub/fleet/firmware.h"
#include "hub/io/api_guard.h"
#include "hub/io/api_priv.h"
#include "hub/io/api_table.h"
#include "hub/io/route.h"

#define API_PRIORITIES                                                                             \
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:"            \
    "+CHACHA20-POLY1305:-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:%SERVER_PRECEDENCE"

void api_reply_err(struct api_reply *r, int status, const char *code, const char *msg)
{
    r->status = status;
    r->body = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
}

void api_reply_rc(struct api_reply *r, enum mamori_err rc, const struct op_err *e)
{
    const char *msg = e && e->msg[0] ? e->msg : mamori_strerror(rc);
    switch (rc) {
    case MAMORI_ERR_INVAL:
    case MAMORI_ERR_PARSE:
    case MAMORI_ERR_TRUNCATED:
        api_reply_err(r, 400, "invalid_request", msg);
        break;
    case MAMORI_ERR_TOOBIG:
        api_reply_err(r, 413, "payload_too_large", msg);
        break;
    case MAMORI_ERR_AUTH:
        api_reply_err(r, 401, "unauthorized", msg);
        break;
    case MAMORI_ERR_FORBIDDEN:
        api_reply_err(r, 403, "forbidden", msg);
        break;
    case MAMORI_ERR_NOTFOUND:
        api_reply_err(r, 404, "not_found", msg);
        break;
    case MAMORI_ERR_EXISTS:
    case MAMORI_ERR_STATE:
        api_reply_err(r, 409, "conflict", msg);
        break;
    case MAMORI_ERR_RATELIMIT:
        api_reply_err(r, 429, "rate_limited", msg);
        r->retry_after = e ? e->retry_after : 60;
        break;
    case MAMORI_ERR_VERIFY:
    case MAMORI_ERR_CRYPTO:
    case MAMORI_ERR_EXPIRED:
        api_reply_err(r, 422, "verification_failed", msg);
        break;
    default:
        api_reply_err(r, 500, "internal", "internal error");
        break;
    }
}

void api_reply_ok(struct api_reply *r, int status, json_t *body)
{
    r->status = status;
    r->body = body ? body : json_object();
}

void api_answer(struct api_reply *r, enum mamori_err rc, const struct op_err *e, int status,
                json_t *out)
{
    if (rc) {
        json_decref(out);
        api_reply_rc(r, rc, e);
    } else {
        api_reply_ok(r, status, out);
    }
}

/* Parses the body as a JSON object; replies 400/413 on failure. */
static json_t *body_json(struct api_req *q, struct api_reply *r)
{
    json_t *v = NULL;
    char err[160];
    if (q->too_big) {
        api_reply_err(r, 413, "payload_too_large", "request body exceeds 65536 bytes");
        return NULL;
    }
    enum mamori_err rc =
        json_parse_untrusted(q->body.p, q->body.len, API_MAX_BODY, &v, err, sizeof(err));
    if (rc)
        api_reply_err(r, rc == MAMORI_ERR_TOOBIG ? 413 : 400,
                      rc == MAMORI_ERR_TOOBIG ? "payload_too_large" : "invalid_request", err);
    return v;
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

/* The token of "Authorization: Bearer <token>", or NULL. */
static const char *bearer(struct MHD_Connection *c)
{
    const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    return a && strncmp(a, "Bearer ", 7) == 0 ? a + 7 : NULL;
}

/* ROUTE_UPDATE_TOKEN: the download token of a device's update command,
 * checked at every request (the device's state may have changed). */
static bool gate_update(struct api_call *x, struct api_reply *r)
{
    const char *tok = bearer(x->c);
    enum mamori_err rc = tok && strlen(tok) < 193
                             ? hub_fw_token_check(x->h, tok, x->fw_sha, x->fw_dev)
                             : MAMORI_ERR_AUTH;
    if (rc == MAMORI_ERR_FORBIDDEN) {
        api_reply_err(r, 403, "forbidden", "the device may not receive new code in its state");
        return false;
    }
    if (rc) {
        api_reply_err(r, rc == MAMORI_ERR_AUTH ? 401 : 500,
                      rc == MAMORI_ERR_AUTH ? "unauthorized" : "internal",
                      rc == MAMORI_ERR_AUTH ? "missing, unknown or expired update token"
                                            : "internal error");
        return false;
    }
    x->token = tok;
    api_guard_authenticated(x->c); /* T10-L1a: no longer sheddable */
    return true;
}

/* The route's role, before its handler runs: 401 without valid
 * credentials, 403 for a principal the role does not admit. */
static bool gate(struct api_call *x, enum api_role role, struct principal *who, struct api_reply *r)
{
    if (role == ROUTE_PUBLIC)
        return true;
    if (role == ROUTE_UPDATE_TOKEN)
        return gate_update(x, r);
    const char *tok = bearer(x->c);
    if (!tok || hub_op_authenticate(x->h, tok, who)) {
        api_reply_err(r, 401, "unauthorized", "missing, invalid or expired session token");
        return false;
    }
    api_guard_authenticated(x->c); /* T10-L1a: no longer sheddable */
    x->who = who;
    x->token = tok;
    switch (api_gate(role, who)) {
    case GATE_PASS:
        return true;
    case GATE_UNAUTHENTICATED:
        api_reply_err(r, 401, "unauthorized", "missing, invalid or expired session token");
        return false;
    default:
        api_reply_err(r, 403, "forbidden", api_role_denied(role));
        return false;
    }
}

/* The route of method on a split URL; a 404 or 405 in r when there is none. */
static bool resolve(const char *method, const struct route *rt, struct api_match *m,
                    struct api_reply *r)
{
    switch (api_match(API_ROUTES, API_N_ROUTES, method, rt, m)) {
    case API_FOUND:
        return true;
    case API_NO_METHOD: {
        char msg[96];
        snprintf(msg, sizeof(msg), "method not allowed here (allowed: %s)", m->allow);
        api_reply_err(r, 405, "method_not_allowed", msg);
        snprintf(r->allow, sizeof(r->allow), "%s", m->allow);
        return false;
    }
    default:
        api_reply_err(r, 404, "not_found", "no such endpoint");
        return false;
    }
}

static void call_init(struct api_call *x, struct hub *h, struct MHD_Connection *c,
                      const struct route *rt, const struct api_match *m, struct api_req *q,
                      const char *peer)
{
    memset(x, 0, sizeof(*x));
    x->h = h;
    x->c = c;
    x->rt = rt;
    x->arg = m->arg;
    x->nargs = m->nargs;
    x->q = q;
    x->peer = peer;
}

/* A buffered request, whole: route, role, body, then the handler. */
static void dispatch(struct hub *h, struct MHD_Connection *c, const char *method, const char *url,
                     struct api_req *q, struct api_reply *r)
{
    struct route rt;
    struct api_match m;
    struct principal who;
    struct api_call x;
    char peer[64];
    if (!route_split(url, &rt)) {
        api_reply_err(r, 404, "not_found", "no such endpoint");
        return;
    }
    if (q->too_big) {
        api_reply_err(r, 413, "payload_too_large", "request body exceeds 65536 bytes");
        return;
    }
    if (!resolve(method, &rt, &m, r))
        return;
    peer_of(c, peer, sizeof(peer));
    call_init(&x, h, c, &rt, &m, q, peer);
    if (!gate(&x, m.route->role, &who, r))
        return;
    /* Every write takes a JSON object body (possibly {}), so that a
     * malformed one is refused the same way on every endpoint. */
    bool post = strcmp(method, "POST") == 0, del = strcmp(method, "DELETE") == 0;
    if ((post || (del && q->body.len)) && !(x.in = body_json(q, r)))
        return;
    m.route->handler(&x, r);
    json_decref(x.in);
}

/* A file (a firmware image, the CRL): 200 whole, 206 from a Range offset
 * (downloads resume). */
static enum MHD_Result send_file(struct MHD_Connection *c, struct api_reply *r)
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

static enum MHD_Result send_reply(struct MHD_Connection *c, struct api_reply *r)
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
    if (r->allow[0])
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    if (r->retry_after > 0) {
        char ra[24];
        snprintf(ra, sizeof(ra), "%lld", (long long)r->retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* A PUT route's body is streamed (api_priv.h): its route, role and handler
 * are settled when the head has arrived, before the first byte of the
 * body. A refusal is kept in q->refused and said once the body has been
 * read and dropped, so the client gets the answer rather than a reset. */
static void upload_begin(struct hub *h, struct MHD_Connection *c, const char *method,
                         const char *url, struct api_req *q)
{
    struct route rt;
    struct api_match m;
    struct principal who;
    struct api_call x;
    struct api_reply tmp = API_REPLY_INIT;
    char peer[64];
    if (!route_split(url, &rt) || !resolve(method, &rt, &m, &tmp)) {
        json_decref(tmp.body); /* answered as any other request, once it is whole */
        return;
    }
    q->upload = true;
    peer_of(c, peer, sizeof(peer));
    call_init(&x, h, c, &rt, &m, q, peer);
    if (gate(&x, m.route->role, &who, &q->refused))
        m.route->handler(&x, &q->refused);
}

/* The streamed body has all arrived (or the upload was refused). */
static enum MHD_Result upload_end(struct MHD_Connection *c, struct api_req *q)
{
    json_t *out = NULL;
    if (q->refused.status) {
        struct api_reply r = q->refused;
        q->refused.body = NULL; /* sent (and freed) below */
        return send_reply(c, &r);
    }
    struct api_reply r = API_REPLY_INIT;
    enum mamori_err rc = q->up_rc;
    if (!rc && !q->up)
        rc = MAMORI_ERR_INTERNAL; /* a handler that opened nothing: never */
    if (!rc) {
        rc = hub_fw_upload_end(q->up, &out, &q->up_e);
        q->up = NULL; /* freed by end */
    }
    api_answer(&r, rc, &q->up_e, 201, out);
    return send_reply(c, &r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **con_cls)
{
    (void)version;
    struct hub *h = cls;
    struct api_req *q = *con_cls;
    if (!q) {
        q = calloc(1, sizeof(*q));
        if (!q)
            return MHD_NO;
        dbuf_init(&q->body, API_MAX_BODY);
        q->refused.fd = -1;
        *con_cls = q;
        api_guard_head_done(c); /* T10-L1b: the body's clock starts */
        if (strcmp(method, "PUT") == 0)
            upload_begin(h, c, method, url, q);
        return MHD_YES;
    }
    if (*size)
        api_guard_body(c, *size);
    else
        api_guard_answering(c);
    if (q->upload) {
        if (*size) {
            /* After a refusal the rest is read and dropped. */
            if (q->up && !q->up_rc && !q->refused.status) {
                enum mamori_err wr = hub_fw_upload_write(q->up, data, *size);
                if (wr && wr != MAMORI_ERR_TOOBIG) /* too big: said at the end */
                    q->up_rc = wr;
            }
            *size = 0;
            return MHD_YES;
        }
        return upload_end(c, q);
    }
    if (*size) {
        /* Keep consuming past the cap (so the client gets a 413 rather than
         * a reset) but store nothing more. */
        if (!q->too_big && dbuf_add(&q->body, data, *size))
            q->too_big = true;
        *size = 0;
        return MHD_YES;
    }
    struct api_reply r = API_REPLY_INIT;
    dispatch(h, c, method, url, q, &r);
    return send_reply(c, &r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)toe;
    struct api_req *q = *con_cls;
    api_guard_request_done(c); /* keep-alive: the next head's clock starts */
    if (q) {
        json_decref(q->refused.body); /* a refusal never sent (connection cut) */
        hub_fw_upload_abort(q->up);   /* an upload cut short leaves nothing */
        dbuf_free(&q->body);          /* wiped: bodies carry passwords and tokens */
        free(q);
        *con_cls = NULL;
    }
}

/* The guard's limits (hub/io/api_guard.h): by default a quarter of the
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
