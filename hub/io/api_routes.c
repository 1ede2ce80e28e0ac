/*
 * hub/io/api_routes.c - the API's routes (docs/api.md): the table at the
 * end, and a handler per endpoint that turns the request into a domain
 * operation (hub_op_*) and its outcome into the reply. The dispatch
 * (hub/io/api.c) has matched the route, checked its role and parsed the
 * body before a handler runs; the operations check roles again.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cmd.h"
#include "common/crypto.h"
#include "common/fsutil.h"
#include "hub/alerts/alerts.h"
#include "hub/compliance/matrix.h"
#include "hub/compliance/report.h"
#include "hub/core/records.h"
#include "hub/device/device.h"
#include "hub/device/devstatus.h"
#include "hub/fleet/campaign.h"
#include "hub/fleet/firmware.h"
#include "hub/io/api_guard.h"
#include "hub/io/api_priv.h"
#include "hub/io/health.h"
#include "hub/owners/owners.h"
#include "hub/pki/ca.h"
#include "hub/users/users.h"

/* ---- request helpers */

/* Fetches a required string member; replies 400 naming it when it is
 * missing, not a string, empty, longer than max or holds a NUL. */
static bool need_str(const struct api_call *x, const char *key, size_t max, const char **out,
                     struct api_reply *r)
{
    if (json_get_str(x->in, key, max, out) &&
        strlen(*out) == json_string_length(json_object_get(x->in, key)))
        return true;
    char msg[128];
    snprintf(msg, sizeof(msg), "field '%s' must be a non-empty string of at most %zu bytes", key,
             max);
    api_reply_err(r, 400, "invalid_request", msg);
    return false;
}

static const char *query(const struct api_call *x, const char *k)
{
    return MHD_lookup_connection_value(x->c, MHD_GET_ARGUMENT_KIND, k);
}

static int64_t query_int(const struct api_call *x, const char *k, int64_t def, int64_t lo,
                         int64_t hi)
{
    return route_int(query(x, k), def, lo, hi);
}

/* A numeric :param (ids of campaigns, alerts, webhooks, exports); 0 when
 * it is not a plain decimal number (no such id). */
static int64_t arg_id(const struct api_call *x, int i)
{
    return route_int(x->arg[i], 0, 1, INT64_MAX);
}

/* The route's last literal segment: the action of POST .../{action}. */
static const char *last_seg(const struct api_call *x)
{
    return x->rt->seg[x->rt->n - 1];
}

/* ttl_s of a command: absent is the operation's default; anything but an
 * integer from 10 s to 30 days is refused, never replaced by the default. */
static bool ttl_of(const json_t *in, int64_t *ttl_s, struct api_reply *r)
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
    api_reply_err(r, 400, "invalid_request",
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

/* Opens a non-empty file for a file reply; -1 when there is none. */
static int open_file(const char *path, uint64_t *size)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && (fstat(fd, &st) || st.st_size <= 0)) {
        close(fd);
        fd = -1;
    }
    if (fd >= 0)
        *size = (uint64_t)st.st_size;
    return fd;
}

/* ---- unauthenticated */

static void h_health(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    enum mamori_err rc = hub_op_health(x->h, &out);
    if (!rc) /* NULL stats (no guard): not set */
        json_object_set_new(out, "api", api_guard_stats(x->h->api_guard));
    api_answer(r, rc, NULL, 200, out);
}

/* The CRL of device certificates, for any relying party (signed). */
static void h_crl(struct api_call *x, struct api_reply *r)
{
    char p[HUB_PATH_MAX + 16];
    uint64_t size = 0;
    int fd = fs_path(p, sizeof(p), x->h->cfg.data_dir, "pki/crl.pem") ? -1 : open_file(p, &size);
    if (fd < 0) {
        api_reply_err(r, 503, "unavailable", "no CRL yet");
        return;
    }
    r->status = 200;
    r->fd = fd;
    r->off = 0;
    r->len = r->total = size;
    r->ctype = "application/x-pem-file";
}

static void h_bootstrap(struct api_call *x, struct api_reply *r)
{
    const char *tok, *user, *pw;
    struct op_err e = {{0}, 0};
    if (need_str(x, "token", 128, &tok, r) && need_str(x, "username", STORE_NAME_MAX, &user, r) &&
        need_str(x, "password", 256, &pw, r)) {
        enum mamori_err rc = hub_op_bootstrap(x->h, tok, user, pw, x->peer, &e);
        api_answer(r, rc, &e, 201,
                   rc ? NULL : json_pack("{s:s,s:s}", "user", user, "role", "admin"));
    }
}

static void h_login(struct api_call *x, struct api_reply *r)
{
    const char *user, *pw;
    struct op_err e = {{0}, 0};
    json_t *out = NULL;
    if (need_str(x, "username", STORE_NAME_MAX, &user, r) && need_str(x, "password", 256, &pw, r)) {
        enum mamori_err rc = hub_op_login(x->h, user, pw, x->peer, &out, &e);
        api_answer(r, rc, &e, 201, out);
    }
}

/* ---- a device fetching the release its update command named */

static void h_update_roots(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    enum mamori_err rc = hub_fw_device_roots(x->h, &out);
    api_answer(r, rc, NULL, 200, out);
}

static void h_update_release(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    enum mamori_err rc = hub_fw_device_release(x->h, x->fw_sha, &out);
    api_answer(r, rc, NULL, 200, out);
}

/* The image: 200 whole, 206 from a Range (downloads resume), 416 outside. */
static void h_update_image(struct api_call *x, struct api_reply *r)
{
    char path[HUB_PATH_MAX + 80];
    uint64_t size = 0;
    int fd = hub_fw_image_path(x->h, x->fw_sha, path, sizeof(path)) ? -1 : open_file(path, &size);
    if (fd < 0) {
        api_reply_err(r, 404, "not_found", "image not found");
        return;
    }
    const char *range = MHD_lookup_connection_value(x->c, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
    r->total = size;
    r->off = 0;
    r->len = r->total;
    r->status = 200;
    if (range && !parse_range(range, r->total, &r->off, &r->len)) {
        close(fd);
        api_reply_err(r, 416, "range_not_satisfiable",
                      "only bytes=N- or bytes=N-M within the image");
        return;
    }
    if (range)
        r->status = 206;
    r->fd = fd;
}

/* ---- sessions and accounts */

static void h_logout(struct api_call *x, struct api_reply *r)
{
    enum mamori_err rc = hub_op_logout(x->h, x->token);
    api_answer(r, rc, NULL, 200, rc ? NULL : json_pack("{s:b}", "logged_out", 1));
}

static void h_me(struct api_call *x, struct api_reply *r)
{
    api_reply_ok(
        r, 200,
        json_pack("{s:s,s:s}", "user", x->who->name, "role", store_role_name(x->who->role)));
}

static void h_user_add(struct api_call *x, struct api_reply *r)
{
    const char *name, *role, *pw;
    struct op_err e = {{0}, 0};
    json_t *out = NULL;
    if (need_str(x, "username", STORE_NAME_MAX, &name, r) && need_str(x, "role", 16, &role, r) &&
        need_str(x, "password", 256, &pw, r)) {
        enum mamori_err rc = hub_op_user_add(x->h, x->who, name, role, pw, &out, &e);
        api_answer(r, rc, &e, 201, out);
    }
}

static void h_users(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    enum mamori_err rc = hub_op_user_list(x->h, x->who, &out);
    api_answer(r, rc, NULL, 200, out);
}

static void h_user_delete(struct api_call *x, struct api_reply *r)
{
    const char *reason;
    struct op_err e = {{0}, 0};
    json_t *out = NULL;
    if (need_str(x, "reason", STORE_REASON_MAX, &reason, r)) {
        enum mamori_err rc = hub_op_user_delete(x->h, x->who, x->arg[0], reason, &out, &e);
        api_answer(r, rc, &e, 200, out);
    }
}

static void h_me_export(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    enum mamori_err rc = hub_op_me_export(x->h, x->who, &out);
    api_answer(r, rc, NULL, 200, out);
}

static void h_me_erase(struct api_call *x, struct api_reply *r)
{
    const char *confirm;
    struct op_err e = {{0}, 0};
    json_t *out = NULL;
    if (need_str(x, "confirm", STORE_NAME_MAX, &confirm, r)) {
        enum mamori_err rc = hub_op_me_erase(x->h, x->who, confirm, &out, &e);
        api_answer(r, rc, &e, 200, out);
    }
}

static void h_me_delete(struct api_call *x, struct api_reply *r)
{
    const char *confirm;
    struct op_err e = {{0}, 0};
    json_t *out = NULL, *dv = json_object_get(x->in, "devices");
    if (dv && !json_is_string(dv) && !json_is_null(dv)) {
        api_reply_err(r, 400, "invalid_request", "devices must be \"decommission\"");
    } else if (need_str(x, "confirm", STORE_NAME_MAX, &confirm, r)) {
        enum mamori_err rc =
            hub_op_me_delete(x->h, x->who, confirm, json_string_value(dv), &out, &e);
        api_answer(r, rc, &e, 200, out);
    }
}

/* GET /exports, GET /exports/{id}: a previous owner's exports. */
static void h_exports(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    int64_t xid = x->nargs ? arg_id(x, 0) : 0;
    enum mamori_err rc =
        x->nargs && !xid ? MAMORI_ERR_NOTFOUND : hub_op_exports(x->h, x->who, xid, &out);
    api_answer(r, rc, NULL, 200, out);
}

/* ---- factory and trust */

/* POST /factory/enroll {model, csr}, POST /factory/register {model, certificate} */
static void h_factory(struct api_call *x, struct api_reply *r)
{
    const char *model, *pem;
    struct op_err e = {{0}, 0};
    json_t *out = NULL;
    bool enroll = strcmp(last_seg(x), "enroll") == 0;
    if (need_str(x, "model", STORE_NAME_MAX, &model, r) &&
        need_str(x, enroll ? "csr" : "certificate", CRYPTO_PEM_MAX, &pem, r)) {
        enum mamori_err rc = enroll ? hub_op_enroll(x->h, x->who, model, pem, &out, &e)
                                    : hub_op_register(x->h, x->who, model, pem, &out, &e);
        api_answer(r, rc, &e, 201, out);
    }
}

static void h_ca_add(struct api_call *x, struct api_reply *r)
{
    const char *model, *pem;
    struct op_err e = {{0}, 0};
    json_t *out = NULL;
    if (need_str(x, "model", STORE_NAME_MAX, &model, r) &&
        need_str(x, "certificate", CRYPTO_PEM_MAX, &pem, r)) {
        enum mamori_err rc = hub_op_ca_import(x->h, x->who, model, pem, &out, &e);
        api_answer(r, rc, &e, 201, out);
    }
}

static void h_cas(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    enum mamori_err rc = hub_op_ca_list(x->h, x->who, &out);
    api_answer(r, rc, NULL, 200, out);
}

/* ---- devices */

static void h_claim(struct api_call *x, struct api_reply *r)
{
    const char *code;
    struct op_err e = {{0}, 0};
    json_t *out = NULL;
    if (need_str(x, "claim_code", 64, &code, r)) {
        enum mamori_err rc = hub_op_claim(x->h, x->who, code, x->peer, &out, &e);
        api_answer(r, rc, &e, 201, out);
    }
}

static void h_devices(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    const char *after = query(x, "after");
    if (after && strlen(after) > 32)
        after = NULL;
    enum mamori_err rc =
        hub_op_device_list(x->h, x->who, after, (int)query_int(x, "limit", 100, 1, 500), &out);
    api_answer(r, rc, NULL, 200, out);
}

static void h_device(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    enum mamori_err rc = hub_op_device_get(x->h, x->who, x->arg[0], &out);
    api_answer(r, rc, NULL, 200, out);
}

/* POST /devices/{id}/{lock|unlock|confirm|quarantine|release|revoke|decommission}:
 * every operator action is audited with its reason: no reason, no action. */
static void h_device_action(struct api_call *x, struct api_reply *r)
{
    const char *reason;
    struct op_err e = {{0}, 0};
    json_t *out = NULL;
    if (need_str(x, "reason", STORE_REASON_MAX, &reason, r)) {
        enum mamori_err rc =
            hub_op_device_action(x->h, x->who, x->arg[0], last_seg(x), reason, &out, &e);
        api_answer(r, rc, &e, 200, out);
    }
}

static void h_command(struct api_call *x, struct api_reply *r)
{
    const char *type, *reason;
    struct op_err e = {{0}, 0};
    json_t *out = NULL;
    int64_t ttl;
    if (need_str(x, "type", 16, &type, r) && need_str(x, "reason", STORE_REASON_MAX, &reason, r) &&
        ttl_of(x->in, &ttl, r)) {
        enum mamori_err rc = hub_op_command(x->h, x->who, x->arg[0], type, reason, ttl, &out, &e);
        api_answer(r, rc, &e, 201, out);
    }
}

static void h_commands(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    enum mamori_err rc =
        hub_op_command_list(x->h, x->who, x->arg[0], (int)query_int(x, "limit", 50, 1, 500), &out);
    api_answer(r, rc, NULL, 200, out);
}

static void h_config(struct api_call *x, struct api_reply *r)
{
    const char *reason;
    struct op_err e = {{0}, 0};
    json_t *out = NULL;
    if (need_str(x, "reason", STORE_REASON_MAX, &reason, r)) {
        enum mamori_err rc = hub_op_config(x->h, x->who, x->arg[0],
                                           json_object_get(x->in, "settings"), reason, &out, &e);
        api_answer(r, rc, &e, 201, out);
    }
}

static void h_status(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    enum mamori_err rc = hub_op_device_status(x->h, x->who, x->arg[0], &out);
    api_answer(r, rc, NULL, 200, out);
}

static void h_telemetry(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    enum mamori_err rc = hub_op_telemetry(
        x->h, x->who, x->arg[0], query_int(x, "from", 0, 0, INT64_MAX),
        query_int(x, "to", INT64_MAX, 0, INT64_MAX), query_int(x, "after", 0, 0, INT64_MAX),
        (int)query_int(x, "limit", 100, 1, 1000), &out);
    api_answer(r, rc, NULL, 200, out);
}

static void h_events(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    enum mamori_err rc =
        hub_op_events(x->h, x->who, query(x, "device"), query_int(x, "after", 0, 0, INT64_MAX),
                      (int)query_int(x, "limit", 100, 1, 1000), &out);
    api_answer(r, rc, NULL, 200, out);
}

/* ---- owners: transfers */

static void h_transfer_start(struct api_call *x, struct api_reply *r)
{
    struct op_err e = {{0}, 0};
    json_t *out = NULL, *data = json_object_get(x->in, "data");
    if (data && !json_is_string(data)) {
        api_reply_err(r, 400, "invalid_request", "data must be \"export\" or \"erase\"");
        return;
    }
    enum mamori_err rc = hub_op_transfer_start(x->h, x->who, x->arg[0],
                                               data ? json_string_value(data) : "erase", &out, &e);
    api_answer(r, rc, &e, 201, out);
}

static void h_transfer_cancel(struct api_call *x, struct api_reply *r)
{
    struct op_err e = {{0}, 0};
    json_t *out = NULL;
    enum mamori_err rc = hub_op_transfer_cancel(x->h, x->who, x->arg[0], &out, &e);
    api_answer(r, rc, &e, 200, out);
}

static void h_transfer_accept(struct api_call *x, struct api_reply *r)
{
    const char *code;
    struct op_err e = {{0}, 0};
    json_t *out = NULL;
    if (need_str(x, "code", 64, &code, r)) {
        enum mamori_err rc = hub_op_transfer_accept(x->h, x->who, code, x->peer, &out, &e);
        api_answer(r, rc, &e, 200, out);
    }
}

/* ---- models: telemetry schema, security support, advisories */

static void h_schema_set(struct api_call *x, struct api_reply *r)
{
    struct op_err e = {{0}, 0};
    json_t *out = NULL;
    enum mamori_err rc = hub_op_schema_set(x->h, x->who, x->arg[0], x->in, &out, &e);
    api_answer(r, rc, &e, 200, out);
}

static void h_schema(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    enum mamori_err rc = hub_op_schema_get(x->h, x->who, x->arg[0], &out);
    api_answer(r, rc, NULL, 200, out);
}

static void h_support_set(struct api_call *x, struct api_reply *r)
{
    struct op_err e = {{0}, 0};
    json_t *out = NULL, *end = json_object_get(x->in, "end");
    enum mamori_err rc =
        hub_op_support_set(x->h, x->who, x->arg[0],
                           json_is_integer(end) ? (int64_t)json_integer_value(end) : -1, &out, &e);
    api_answer(r, rc, &e, 200, out);
}

static void h_support(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    enum mamori_err rc = hub_op_support_get(x->h, x->arg[0], &out);
    api_answer(r, rc, NULL, 200, out);
}

static void h_advisory_add(struct api_call *x, struct api_reply *r)
{
    struct op_err e = {{0}, 0};
    json_t *out = NULL;
    enum mamori_err rc = hub_op_advisory_add(x->h, x->who, x->in, &out, &e);
    api_answer(r, rc, &e, 201, out);
}

static void h_advisories(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    const char *model = query(x, "model");
    enum mamori_err rc =
        hub_op_advisories(x->h, model && strlen(model) <= STORE_NAME_MAX ? model : NULL, &out);
    api_answer(r, rc, NULL, 200, out);
}

/* ---- firmware: roots, releases, images, groups, campaigns */

static void h_fw_root_add(struct api_call *x, struct api_reply *r)
{
    struct op_err e = {{0}, 0};
    json_t *out = NULL;
    char *doc = json_dump_compact(x->in);
    enum mamori_err rc = doc ? hub_op_fw_root_add(x->h, x->who, doc, &out, &e) : MAMORI_ERR_NOMEM;
    free(doc);
    api_answer(r, rc, &e, 201, out);
}

static void h_fw_roots(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    enum mamori_err rc = hub_op_fw_roots(x->h, x->who, &out);
    api_answer(r, rc, NULL, 200, out);
}

static void h_fw_release_add(struct api_call *x, struct api_reply *r)
{
    struct op_err e = {{0}, 0};
    json_t *out = NULL;
    char *doc = json_dump_compact(x->in);
    enum mamori_err rc =
        doc ? hub_op_fw_release_add(x->h, x->who, doc, &out, &e) : MAMORI_ERR_NOMEM;
    free(doc);
    api_answer(r, rc, &e, 201, out);
}

static void h_fw_releases(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    const char *model = query(x, "model");
    if (model && strlen(model) > STORE_NAME_MAX)
        model = NULL;
    enum mamori_err rc = hub_op_fw_releases(x->h, x->who, model, &out);
    api_answer(r, rc, NULL, 200, out);
}

/* PUT /firmware/releases/{sha256}/image: runs when the head has arrived;
 * the image is then streamed to disk through hub/fleet/firmware.c, hashed
 * on the way, and hub/io/api.c answers once it has all arrived. */
static void h_fw_image(struct api_call *x, struct api_reply *r)
{
    struct op_err e = {{0}, 0};
    enum mamori_err rc = hub_fw_upload_begin(x->h, x->who, x->arg[0], &x->q->up, &e);
    if (rc)
        api_reply_rc(r, rc, &e);
}

static void h_fw_deploy(struct api_call *x, struct api_reply *r)
{
    const char *device, *reason;
    struct op_err e = {{0}, 0};
    json_t *out = NULL;
    int64_t ttl;
    if (need_str(x, "device", 32, &device, r) &&
        need_str(x, "reason", STORE_REASON_MAX, &reason, r) && ttl_of(x->in, &ttl, r)) {
        enum mamori_err rc =
            hub_op_fw_deploy(x->h, x->who, x->arg[0], device, reason, ttl, &out, &e);
        api_answer(r, rc, &e, 201, out);
    }
}

static void h_fw_retire(struct api_call *x, struct api_reply *r)
{
    const char *reason;
    struct op_err e = {{0}, 0};
    json_t *out = NULL;
    if (need_str(x, "reason", STORE_REASON_MAX, &reason, r)) {
        enum mamori_err rc = hub_op_fw_retire(x->h, x->who, x->arg[0], reason, &out, &e);
        api_answer(r, rc, &e, 200, out);
    }
}

/* POST /groups/{name}/add, POST /groups/{name}/remove {device} */
static void h_group_set(struct api_call *x, struct api_reply *r)
{
    const char *device;
    struct op_err e = {{0}, 0};
    json_t *out = NULL;
    if (need_str(x, "device", 32, &device, r)) {
        enum mamori_err rc = hub_op_group_set(x->h, x->who, x->arg[0], device,
                                              strcmp(last_seg(x), "add") == 0, &out, &e);
        api_answer(r, rc, &e, 200, out);
    }
}

static void h_group(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    enum mamori_err rc = hub_op_group_get(x->h, x->who, x->arg[0], &out);
    api_answer(r, rc, NULL, 200, out);
}

static void h_campaign_create(struct api_call *x, struct api_reply *r)
{
    const char *sha, *reason;
    struct op_err e = {{0}, 0};
    json_t *out = NULL, *in = x->in, *g = json_object_get(in, "group");
    if (!need_str(x, "sha256", 64, &sha, r) || !need_str(x, "reason", STORE_REASON_MAX, &reason, r))
        return;
    if (g && !json_is_string(g)) { /* never widened to the whole model by a typo */
        api_reply_err(r, 400, "invalid_request", "group must be a string");
        return;
    }
    struct campaign_opts o = {(int)json_int_or(in, "canary", 1),
                              (int)json_int_or(in, "wave", 10),
                              (int)json_int_or(in, "interval_s", 300),
                              (int)json_int_or(in, "max_failure_pct", 10),
                              (int)json_int_or(in, "window_start", 0),
                              (int)json_int_or(in, "window_end", 0),
                              json_string_value(g)};
    enum mamori_err rc = hub_op_campaign_create(x->h, x->who, sha, reason, &o, &out, &e);
    api_answer(r, rc, &e, 201, out);
}

static void h_campaigns(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    enum mamori_err rc = hub_op_campaigns(x->h, x->who, &out);
    api_answer(r, rc, NULL, 200, out);
}

static void h_campaign(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    enum mamori_err rc = hub_op_campaign_get(x->h, x->who, arg_id(x, 0), &out);
    api_answer(r, rc, NULL, 200, out);
}

/* POST /firmware/campaigns/{id}/{pause|resume|cancel} {reason} */
static void h_campaign_action(struct api_call *x, struct api_reply *r)
{
    const char *reason;
    struct op_err e = {{0}, 0};
    json_t *out = NULL;
    if (need_str(x, "reason", STORE_REASON_MAX, &reason, r)) {
        enum mamori_err rc =
            hub_op_campaign_action(x->h, x->who, arg_id(x, 0), last_seg(x), reason, &out, &e);
        api_answer(r, rc, &e, 200, out);
    }
}

/* ---- audit and reports */

static void h_audit(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    enum mamori_err rc = hub_op_audit_list(x->h, x->who, query_int(x, "after", 0, 0, INT64_MAX),
                                           (int)query_int(x, "limit", 100, 1, 1000), &out);
    api_answer(r, rc, NULL, 200, out);
}

static void h_audit_verify(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    enum mamori_err rc = hub_op_audit_verify(x->h, x->who, &out);
    api_answer(r, rc, NULL, 200, out);
}

static void h_etsi(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    enum mamori_err rc = hub_op_etsi(x->h, x->who, &out);
    api_answer(r, rc, NULL, 200, out);
}

/* The fleet's matrix (staff), or one device's (staff or its owner). */
static void h_matrix(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    const char *dev = query(x, "device");
    enum mamori_err rc = hub_op_matrix(x->h, x->who, dev && *dev ? dev : NULL, &out);
    api_answer(r, rc, NULL, 200, out);
}

static void h_fleet_audit(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    enum mamori_err rc = hub_op_fleet_audit(x->h, x->who, &out);
    api_answer(r, rc, NULL, 200, out);
}

/* ---- alerts, rules, webhooks */

static void h_alerts(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    enum mamori_err rc = hub_op_alerts(x->h, x->who, query(x, "state"), query(x, "device"),
                                       query_int(x, "after", 0, 0, INT64_MAX),
                                       (int)query_int(x, "limit", 100, 1, 1000), &out);
    api_answer(r, rc, NULL, 200, out);
}

/* POST /alerts/{id}/ack, POST /alerts/{id}/resolve {note?} */
static void h_alert_set(struct api_call *x, struct api_reply *r)
{
    struct op_err e = {{0}, 0};
    json_t *out = NULL, *note = json_object_get(x->in, "note");
    if (note && (!json_is_string(note) || json_string_length(note) > STORE_REASON_MAX)) {
        api_reply_err(r, 400, "invalid_request", "note must be a string of at most 512 bytes");
        return;
    }
    enum mamori_err rc = hub_op_alert_set(x->h, x->who, arg_id(x, 0), last_seg(x),
                                          note ? json_string_value(note) : "", &out, &e);
    api_answer(r, rc, &e, 200, out);
}

static void h_rules(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    enum mamori_err rc = hub_op_rules(x->h, x->who, &out);
    api_answer(r, rc, NULL, 200, out);
}

static void h_rule_policy(struct api_call *x, struct api_reply *r)
{
    struct op_err e = {{0}, 0};
    json_t *out = NULL;
    enum mamori_err rc = hub_op_rule_policy(x->h, x->who, x->arg[0], x->in, &out, &e);
    api_answer(r, rc, &e, 200, out);
}

static void h_webhook_add(struct api_call *x, struct api_reply *r)
{
    const char *url;
    struct op_err e = {{0}, 0};
    json_t *out = NULL;
    if (need_str(x, "url", 600, &url, r)) {
        enum mamori_err rc = hub_op_webhook_add(x->h, x->who, url, &out, &e);
        api_answer(r, rc, &e, 201, out);
    }
}

static void h_webhooks(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    enum mamori_err rc = hub_op_webhooks(x->h, x->who, &out);
    api_answer(r, rc, NULL, 200, out);
}

static void h_webhook_del(struct api_call *x, struct api_reply *r)
{
    json_t *out = NULL;
    enum mamori_err rc = hub_op_webhook_del(x->h, x->who, arg_id(x, 0), &out);
    api_answer(r, rc, NULL, 200, out);
}

/* ---- the table: first match wins; docs/api.md lists the same. */

const struct api_route API_ROUTES[] = {
    {"GET", "/health", ROUTE_PUBLIC, h_health},
    {"GET", "/pki/crl", ROUTE_PUBLIC, h_crl},
    {"POST", "/bootstrap", ROUTE_PUBLIC, h_bootstrap},
    {"POST", "/sessions", ROUTE_PUBLIC, h_login},
    {"GET", "/updates/roots", ROUTE_UPDATE_TOKEN, h_update_roots},
    {"GET", "/updates/release", ROUTE_UPDATE_TOKEN, h_update_release},
    {"GET", "/updates/image", ROUTE_UPDATE_TOKEN, h_update_image},

    {"DELETE", "/sessions/current", ROUTE_USER, h_logout},
    {"GET", "/me", ROUTE_USER, h_me},
    {"DELETE", "/me", ROUTE_USER, h_me_delete},
    {"GET", "/me/export", ROUTE_USER, h_me_export},
    {"POST", "/me/erase", ROUTE_OWNER, h_me_erase},
    {"GET", "/exports", ROUTE_USER, h_exports},
    {"GET", "/exports/:id", ROUTE_USER, h_exports},
    {"POST", "/users", ROUTE_ADMIN, h_user_add},
    {"GET", "/users", ROUTE_ADMIN, h_users},
    {"DELETE", "/users/:name", ROUTE_ADMIN, h_user_delete},

    {"POST", "/factory/enroll", ROUTE_STAFF, h_factory},
    {"POST", "/factory/register", ROUTE_STAFF, h_factory},
    {"POST", "/cas", ROUTE_ADMIN, h_ca_add},
    {"GET", "/cas", ROUTE_STAFF, h_cas},

    {"POST", "/claims", ROUTE_OWNER, h_claim},
    {"GET", "/devices", ROUTE_USER, h_devices},
    {"GET", "/devices/:id", ROUTE_USER, h_device},
    {"POST", "/devices/:id/lock", ROUTE_USER, h_device_action},
    {"POST", "/devices/:id/unlock", ROUTE_USER, h_device_action},
    {"POST", "/devices/:id/confirm", ROUTE_USER, h_device_action},
    {"POST", "/devices/:id/quarantine", ROUTE_STAFF, h_device_action},
    {"POST", "/devices/:id/release", ROUTE_STAFF, h_device_action},
    {"POST", "/devices/:id/revoke", ROUTE_STAFF, h_device_action},
    {"POST", "/devices/:id/decommission", ROUTE_STAFF, h_device_action},
    {"POST", "/devices/:id/commands", ROUTE_USER, h_command},
    {"GET", "/devices/:id/commands", ROUTE_USER, h_commands},
    {"POST", "/devices/:id/config", ROUTE_STAFF, h_config},
    {"GET", "/devices/:id/status", ROUTE_USER, h_status},
    {"GET", "/devices/:id/telemetry", ROUTE_USER, h_telemetry},
    {"POST", "/devices/:id/transfer", ROUTE_OWNER, h_transfer_start},
    {"DELETE", "/devices/:id/transfer", ROUTE_OWNER, h_transfer_cancel},
    {"POST", "/transfers", ROUTE_OWNER, h_transfer_accept},
    {"GET", "/events", ROUTE_USER, h_events},

    {"POST", "/models/:model/schema", ROUTE_STAFF, h_schema_set},
    {"GET", "/models/:model/schema", ROUTE_USER, h_schema},
    {"POST", "/models/:model/support", ROUTE_STAFF, h_support_set},
    {"GET", "/models/:model/support", ROUTE_USER, h_support},
    {"POST", "/advisories", ROUTE_STAFF, h_advisory_add},
    {"GET", "/advisories", ROUTE_USER, h_advisories},

    {"POST", "/firmware/roots", ROUTE_ADMIN, h_fw_root_add},
    {"GET", "/firmware/roots", ROUTE_STAFF, h_fw_roots},
    {"POST", "/firmware/releases", ROUTE_STAFF, h_fw_release_add},
    {"GET", "/firmware/releases", ROUTE_STAFF, h_fw_releases},
    {"PUT", "/firmware/releases/:sha256/image", ROUTE_STAFF, h_fw_image},
    {"POST", "/firmware/releases/:sha256/deploy", ROUTE_STAFF, h_fw_deploy},
    {"POST", "/firmware/releases/:sha256/retire", ROUTE_STAFF, h_fw_retire},
    {"POST", "/groups/:name/add", ROUTE_STAFF, h_group_set},
    {"POST", "/groups/:name/remove", ROUTE_STAFF, h_group_set},
    {"GET", "/groups/:name", ROUTE_STAFF, h_group},
    {"POST", "/firmware/campaigns", ROUTE_STAFF, h_campaign_create},
    {"GET", "/firmware/campaigns", ROUTE_STAFF, h_campaigns},
    {"GET", "/firmware/campaigns/:id", ROUTE_STAFF, h_campaign},
    {"POST", "/firmware/campaigns/:id/pause", ROUTE_STAFF, h_campaign_action},
    {"POST", "/firmware/campaigns/:id/resume", ROUTE_STAFF, h_campaign_action},
    {"POST", "/firmware/campaigns/:id/cancel", ROUTE_STAFF, h_campaign_action},

    {"GET", "/audit", ROUTE_STAFF, h_audit},
    {"GET", "/audit/verify", ROUTE_STAFF, h_audit_verify},
    {"GET", "/reports/etsi", ROUTE_STAFF, h_etsi},
    {"GET", "/reports/matrix", ROUTE_USER, h_matrix},
    {"GET", "/reports/fleet-audit", ROUTE_STAFF, h_fleet_audit},
    {"GET", "/alerts", ROUTE_STAFF, h_alerts},
    {"POST", "/alerts/:id/ack", ROUTE_STAFF, h_alert_set},
    {"POST", "/alerts/:id/resolve", ROUTE_STAFF, h_alert_set},
    {"GET", "/rules", ROUTE_STAFF, h_rules},
    {"POST", "/rules/:rule/policy", ROUTE_STAFF, h_rule_policy},
    {"POST", "/webhooks", ROUTE_ADMIN, h_webhook_add},
    {"GET", "/webhooks", ROUTE_STAFF, h_webhooks},
    {"DELETE", "/webhooks/:id", ROUTE_ADMIN, h_webhook_del},
};

const size_t API_N_ROUTES = sizeof(API_ROUTES) / sizeof(API_ROUTES[0]);
