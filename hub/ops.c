/* hub/ops.c - see ops.h. */
#include "hub/firmware.h"
#include "hub/ops.h"
#include "hub/relay.h"
#include "hub/alerts.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cmd.h"
#include "common/devcfg.h"
#include "common/crypto.h"
#include "common/fsutil.h"
#include "common/json.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/schema.h"
#include "hub/auth.h"

static void actor_of(const struct principal *who, char *out, size_t n)
{
    if (!who || who->user_id == 0) /* the hub itself, or one of its parts */
        snprintf(out, n, "%s%s%s", "hub",
                 who && who->name[0] && strcmp(who->name, "hub") ? ":" : "",
                 who && strcmp(who->name, "hub") ? who->name : "");
    else
        snprintf(out, n, "%s:%s", store_role_name(who->role), who->name);
}

void hub_event(struct hub *h, const char *device_id, const char *kind, const char *severity,
               const char *detail_fmt, ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, detail_fmt);
    vsnprintf(detail, sizeof(detail), detail_fmt, ap);
    va_end(ap);
    if (store_event_add(h->store, hub_now(), device_id, kind, severity, detail))
        log_err("cannot record event %s", kind);
    if (strcmp(severity, "alert") == 0 || strcmp(severity, "warning") == 0)
        log_warn("event %s %s %s", kind, device_id ? device_id : "-", detail);
    if (!h->cfg.rules_off)
        alerts_on_event(h, device_id, kind, severity, detail);
}

/* Appends an audit entry and commits the open transaction. Lock held. */
enum mamori_err hub_commit_audited(struct hub *h, const struct principal *who, const char *action,
                                   const char *target, const char *reason, const char *detail)
{
    char actor[STORE_NAME_MAX + 16];
    actor_of(who, actor, sizeof(actor));
    enum mamori_err rc = audit_append(&h->audit, hub_now(), actor, action, target ? target : "",
                                      reason ? reason : "", detail ? detail : "");
    if (!rc)
        rc = store_commit(h->store);
    if (rc) {
        store_rollback(h->store);
        return rc;
    }
    if (audit_anchor(&h->audit) == MAMORI_ERR_VERIFY)
        hub_event(h, NULL, "audit_tampered", "alert",
                  "{\"reason\":\"anchored entry missing or changed\"}");
    return MAMORI_OK;
}

/* Audits an action that changes nothing else (e.g. a refused attempt). */
static void audit_only(struct hub *h, const struct principal *who, const char *action,
                       const char *target, const char *reason, const char *detail)
{
    if (store_begin(h->store) == MAMORI_OK)
        log_if_err(hub_commit_audited(h, who, action, target, reason, detail));
}

/* T08-L1a, T11-L1g, T12-L1c: administrator and operator privileges are
 * separate from owners'. */
bool hub_is_staff(const struct principal *who)
{
    return who->role == ROLE_ADMIN || who->role == ROLE_OPERATOR;
}

static bool name_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

enum mamori_err hub_throttled(struct hub *h, const char *key, struct throttle_rec *t,
                              struct op_err *e)
{
    if (store_throttle_get(h->store, key, t))
        return MAMORI_ERR_DB;
    if (throttle_check(t, hub_now(), &e->retry_after)) {
        SET_ERR(e, "too many failed attempts; retry in %" PRId64 " s", e->retry_after);
        return MAMORI_ERR_RATELIMIT;
    }
    return MAMORI_OK;
}

void hub_throttle_fail(struct hub *h, const struct throttle_policy *p, const char *key,
                       struct throttle_rec *t)
{
    throttle_fail(p, t, hub_now());
    log_if_err(store_throttle_set(h->store, key, t));
}

enum mamori_err hub_op_bootstrap(struct hub *h, const char *token, const char *user,
                                 const char *password, const char *peer, struct op_err *e)
{
    struct throttle_rec t;
    char stored[65] = "", given[65], key[80];
    enum mamori_err rc;
    /* Per peer, not global: the token has 256 bits, so the throttle only
     * slows and records probing; a global one would let anyone who can
     * reach the API lock the real operator out of the bootstrap. */
    snprintf(key, sizeof(key), "bootstrap:%s", peer);
    pthread_mutex_lock(&h->lock);
    if ((rc = hub_throttled(h, key, &t, e)))
        goto out;
    if (store_meta_get(h->store, "bootstrap_token_hash", stored, sizeof(stored)) ||
        strcmp(stored, "used") == 0) {
        SET_ERR(e, "bootstrap already done; log in as an administrator");
        rc = MAMORI_ERR_STATE;
        goto out;
    }
    auth_token_hash(token, given);
    if (strlen(stored) != 64 || !crypto_ct_eq(stored, given, 64)) {
        hub_throttle_fail(h, &THROTTLE_BOOTSTRAP, key, &t);
        audit_only(h, NULL, "bootstrap_failed", "", "wrong bootstrap token", peer);
        SET_ERR(e, "invalid bootstrap token");
        rc = MAMORI_ERR_AUTH;
        goto out;
    }
    if (!name_ok(user, STORE_NAME_MAX) || auth_password_policy(password)) {
        SET_ERR(e, "user name must be 1-64 of [A-Za-z0-9._-]; password %d-%d characters",
                AUTH_PASSWORD_MIN, AUTH_PASSWORD_MAX);
        rc = MAMORI_ERR_INVAL;
        goto out;
    }
    char pwh[256];
    if ((rc = auth_password_hash(password, pwh)))
        goto out;
    int64_t uid = 0;
    if ((rc = store_begin(h->store)))
        goto out;
    rc = store_user_add(h->store, user, ROLE_ADMIN, pwh, hub_now(), &uid);
    crypto_wipe(pwh, sizeof(pwh));
    /* The token is single-use: its hash is replaced, the file removed. */
    if (!rc)
        rc = store_meta_set(h->store, "bootstrap_token_hash", "used");
    if (!rc)
        log_if_err(store_throttle_clear(h->store, key));
    if (rc) {
        store_rollback(h->store);
        goto out;
    }
    struct principal p = {.user_id = uid, .role = ROLE_ADMIN};
    snprintf(p.name, sizeof(p.name), "%s", user);
    if ((rc = hub_commit_audited(h, &p, "bootstrap", user, "first administrator created", peer)))
        goto out;
    char path[HUB_PATH_MAX];
    if (!fs_path(path, sizeof(path), h->cfg.data_dir, "bootstrap-token"))
        (void)remove(path);
    log_info("bootstrap complete: administrator '%s' created; bootstrap token retired", user);
out:
    pthread_mutex_unlock(&h->lock);
    return rc;
}

enum mamori_err hub_op_login(struct hub *h, const char *user, const char *password,
                             const char *peer, json_t **out, struct op_err *e)
{
    struct throttle_rec tu, tp;
    char ku[STORE_NAME_MAX + 8], kp[80];
    enum mamori_err rc;
    *out = NULL;
    snprintf(ku, sizeof(ku), "u:%s", user);
    snprintf(kp, sizeof(kp), "ip:%s", peer);
    pthread_mutex_lock(&h->lock);
    /* T07-L2c, T10-L1a: slowed, then locked, per user name and per peer. */
    if ((rc = hub_throttled(h, ku, &tu, e)) || (rc = hub_throttled(h, kp, &tp, e))) {
        pthread_mutex_unlock(&h->lock);
        return rc;
    }
    struct user_rec u;
    bool found = store_user_get(h->store, user, &u) == MAMORI_OK;
    pthread_mutex_unlock(&h->lock);
    /* Argon2 runs without the lock: it is the slow part by design. */
    bool ok =
        found ? auth_password_verify(u.pwhash, password) : (auth_password_dummy(password), false);
    crypto_wipe(u.pwhash, sizeof(u.pwhash));
    pthread_mutex_lock(&h->lock);
    if (!ok) {
        hub_throttle_fail(h, &THROTTLE_LOGIN, ku, &tu);
        struct throttle_rec pol_ip = tp;
        hub_throttle_fail(h, &(struct throttle_policy){10, 50, 15 * 60}, kp, &pol_ip);
        char detail[160];
        snprintf(detail, sizeof(detail), "{\"peer\":\"%s\",\"failures\":%d}", peer, tu.failed);
        audit_only(h, NULL, tu.locked_until > hub_now() ? "login_locked" : "login_failed", user,
                   "wrong user name or password", detail);
        SET_ERR(e, "wrong user name or password");
        rc = MAMORI_ERR_AUTH;
        goto out;
    }
    log_if_err(store_throttle_clear(h->store, ku));
    log_if_err(store_user_seen(h->store, u.id, hub_now())); /* owner activity (strays) */
    char token[AUTH_TOKEN_TEXT], th[65];
    if ((rc = auth_token_new("mms_", token)))
        goto out;
    auth_token_hash(token, th);
    int64_t now = hub_now(), exp = now + h->cfg.session_ttl_s; /* T01-L4b */
    if ((rc = store_begin(h->store)))
        goto out;
    log_if_err(store_session_purge(h->store, now));
    if ((rc = store_session_add(h->store, th, u.id, now, exp))) {
        store_rollback(h->store);
        goto out;
    }
    struct principal p = {.user_id = u.id, .role = u.role};
    snprintf(p.name, sizeof(p.name), "%s", u.name);
    if ((rc = hub_commit_audited(h, &p, "login", u.name, "", peer)))
        goto out;
    *out = json_pack("{s:s,s:I,s:s,s:s}", "token", token, "expires_at", (json_int_t)exp, "user",
                     u.name, "role", store_role_name(u.role));
    crypto_wipe(token, sizeof(token));
out:
    pthread_mutex_unlock(&h->lock);
    return rc;
}

enum mamori_err hub_op_logout(struct hub *h, const char *token)
{
    char th[65];
    auth_token_hash(token, th);
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_session_del(h->store, th);
    pthread_mutex_unlock(&h->lock);
    return rc;
}

enum mamori_err hub_op_authenticate(struct hub *h, const char *token, struct principal *who)
{
    char th[65];
    int64_t uid = 0;
    struct user_rec u;
    if (strncmp(token, "mms_", 4) != 0 || strlen(token) != AUTH_TOKEN_TEXT - 1)
        return MAMORI_ERR_AUTH;
    auth_token_hash(token, th);
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_session_get(h->store, th, hub_now(), &uid);
    if (!rc)
        rc = store_user_by_id(h->store, uid, &u) ? MAMORI_ERR_AUTH : MAMORI_OK;
    pthread_mutex_unlock(&h->lock);
    if (rc)
        return MAMORI_ERR_AUTH;
    crypto_wipe(u.pwhash, sizeof(u.pwhash));
    who->user_id = u.id;
    who->role = u.role;
    snprintf(who->name, sizeof(who->name), "%s", u.name);
    return MAMORI_OK;
}

static json_t *user_json(const struct user_rec *u)
{
    return json_pack("{s:I,s:s,s:s,s:I}", "id", (json_int_t)u->id, "name", u->name, "role",
                     store_role_name(u->role), "created_at", (json_int_t)u->created_at);
}

enum mamori_err hub_op_user_add(struct hub *h, const struct principal *who, const char *name,
                                const char *role, const char *password, json_t **out,
                                struct op_err *e)
{
    enum store_role r;
    *out = NULL;
    if (who->role != ROLE_ADMIN)
        return MAMORI_ERR_FORBIDDEN;
    if (!name_ok(name, STORE_NAME_MAX) || !store_role_parse(role, &r) ||
        auth_password_policy(password)) {
        SET_ERR(e,
                "need name (1-64 of [A-Za-z0-9._-]), role (admin|operator|owner), password "
                "(%d-%d characters)",
                AUTH_PASSWORD_MIN, AUTH_PASSWORD_MAX);
        return MAMORI_ERR_INVAL;
    }
    char pwh[256];
    enum mamori_err rc = auth_password_hash(password, pwh);
    if (rc)
        return rc;
    int64_t id = 0;
    pthread_mutex_lock(&h->lock);
    if (store_name_retired(h->store, name)) {
        /* the audit log names the deleted account: no one else takes it */
        SET_ERR(e, "the name '%s' belonged to a deleted account and is not given out again", name);
        rc = MAMORI_ERR_EXISTS;
        goto out;
    }
    if ((rc = store_begin(h->store)))
        goto out;
    rc = store_user_add(h->store, name, r, pwh, hub_now(), &id);
    if (rc) {
        store_rollback(h->store);
        if (rc == MAMORI_ERR_EXISTS)
            SET_ERR(e, "user '%s' already exists", name);
        goto out;
    }
    if ((rc = hub_commit_audited(h, who, "user_add", name, role, "")))
        goto out;
    struct user_rec u;
    if (!store_user_by_id(h->store, id, &u)) {
        crypto_wipe(u.pwhash, sizeof(u.pwhash));
        *out = user_json(&u);
    }
out:
    pthread_mutex_unlock(&h->lock);
    crypto_wipe(pwh, sizeof(pwh));
    return rc;
}

static bool user_cb(const struct user_rec *u, void *arg)
{
    json_array_append_new(arg, user_json(u));
    return true;
}

enum mamori_err hub_op_user_list(struct hub *h, const struct principal *who, json_t **out)
{
    if (who->role != ROLE_ADMIN)
        return MAMORI_ERR_FORBIDDEN;
    json_t *arr = json_array();
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_user_list(h->store, user_cb, arr);
    pthread_mutex_unlock(&h->lock);
    *out = json_pack("{s:o}", "users", arr);
    return rc;
}

/* T02-L3a: the device's state and liveness, as owners and operators see it. */
json_t *device_json(const struct device_rec *d)
{
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:b,s:I,s:i}", "id", d->id, "model", d->model,
                  "state", d->state, "cert_fingerprint", d->cert_fp, "cert_serial", d->cert_serial,
                  "cert_not_after", (json_int_t)d->cert_not_after, "created_at",
                  (json_int_t)d->created_at, "updated_at", (json_int_t)d->updated_at, "online",
                  d->online, "last_seen", (json_int_t)d->last_seen, "heartbeat_s", d->hb_interval);
    if (o && d->owner_id)
        json_object_set_new(o, "owner", json_string(d->owner_name));
    if (o && d->cert_rotated_at)
        json_object_set_new(o, "cert_rotated_at", json_integer(d->cert_rotated_at));
    if (o && d->cert_next_fp[0]) /* a rotation is under way */
        json_object_set_new(o, "cert_next_fingerprint", json_string(d->cert_next_fp));
    return o;
}

/* Registers a device whose certificate is already issued. Lock held. */
static enum mamori_err add_device(struct hub *h, const struct principal *who, const char *id,
                                  const char *model, const char *cert_pem, const char *how,
                                  char claim_out[PROTO_CLAIM_CODE_TEXT + 1], struct op_err *e)
{
    struct crypto_cert *c = NULL;
    enum mamori_err rc = crypto_cert_parse(cert_pem, strlen(cert_pem), &c);
    if (rc)
        return rc;
    struct device_rec d;
    memset(&d, 0, sizeof(d));
    snprintf(d.id, sizeof(d.id), "%s", id);
    snprintf(d.model, sizeof(d.model), "%s", model);
    snprintf(d.state, sizeof(d.state), "%s", lc_state_name(LC_MANUFACTURED));
    crypto_cert_fingerprint(c, d.cert_fp);
    if (crypto_cert_serial_hex(c, d.cert_serial, sizeof(d.cert_serial)))
        d.cert_serial[0] = '\0';
    d.cert_not_after = crypto_cert_not_after(c);
    crypto_cert_free(c);
    d.created_at = hub_now();
    d.hb_interval = h->cfg.heartbeat_s;
    /* P-ID: a unique management number and a single-use claim code, stored
     * only as a hash (setup information is useless to a third party later). */
    char canon[PROTO_CLAIM_CODE_CHARS + 1], ch[65];
    if ((rc = proto_claim_code_new(claim_out)) ||
        (rc = proto_claim_code_normalize(claim_out, strlen(claim_out), canon)))
        return rc;
    proto_claim_code_hash(canon, ch);
    crypto_wipe(canon, sizeof(canon));
    if ((rc = store_begin(h->store)))
        return rc;
    rc = store_device_add(h->store, &d, cert_pem, ch);
    if (rc) {
        store_rollback(h->store);
        if (rc == MAMORI_ERR_EXISTS)
            SET_ERR(e, "this certificate is already registered to a device");
        return rc;
    }
    char detail[200];
    snprintf(detail, sizeof(detail), "{\"model\":\"%s\",\"cert_fp\":\"%s\",\"via\":\"%s\"}", model,
             d.cert_fp, how);
    if ((rc =
             hub_commit_audited(h, who, "device_manufactured", id, "factory provisioning", detail)))
        return rc;
    mqtt_push_device(h, &d, LC_ACCESS_DENY);
    return MAMORI_OK;
}

static enum mamori_err new_device_id(struct hub *h, char id[PROTO_DEVICE_ID_LEN + 1])
{
    struct device_rec tmp;
    for (int i = 0; i < 8; i++) {
        enum mamori_err rc = proto_device_id_new(id);
        if (rc)
            return rc;
        if (store_device_get(h->store, id, &tmp) == MAMORI_ERR_NOTFOUND)
            return MAMORI_OK;
    }
    return MAMORI_ERR_INTERNAL;
}

enum mamori_err hub_op_enroll(struct hub *h, const struct principal *who, const char *model,
                              const char *csr_pem, json_t **out, struct op_err *e)
{
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    if (!name_ok(model, STORE_NAME_MAX)) {
        SET_ERR(e, "model must be 1-64 of [A-Za-z0-9._-]");
        return MAMORI_ERR_INVAL;
    }
    char id[PROTO_DEVICE_ID_LEN + 1], code[PROTO_CLAIM_CODE_TEXT + 1];
    char *cert = NULL;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = new_device_id(h, id);
    if (!rc)
        rc = ca_issue_device(h, csr_pem, strlen(csr_pem), id, model, &cert);
    if (rc) {
        if (rc != MAMORI_ERR_INTERNAL)
            SET_ERR(e, "certificate signing request rejected: %s", mamori_strerror(rc));
        goto out;
    }
    if ((rc = add_device(h, who, id, model, cert, "csr", code, e)))
        goto out;
    *out = json_pack("{s:s,s:s,s:s,s:s,s:s}", "device_id", id, "model", model, "certificate", cert,
                     "ca_chain", h->ca_chain_pem, "claim_code", code);
    crypto_wipe(code, sizeof(code));
out:
    pthread_mutex_unlock(&h->lock);
    free(cert);
    return rc;
}

enum mamori_err hub_op_register(struct hub *h, const struct principal *who, const char *model,
                                const char *cert_pem, json_t **out, struct op_err *e)
{
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    if (!name_ok(model, STORE_NAME_MAX)) {
        SET_ERR(e, "model must be 1-64 of [A-Za-z0-9._-]");
        return MAMORI_ERR_INVAL;
    }
    struct crypto_cert *c = NULL;
    char *trust = NULL, *clean = NULL, id[PROTO_DEVICE_ID_LEN + 1], code[PROTO_CLAIM_CODE_TEXT + 1];
    enum mamori_err rc = crypto_cert_parse(cert_pem, strlen(cert_pem), &c);
    if (rc) {
        SET_ERR(e, "certificate: %s", mamori_strerror(rc));
        return rc;
    }
    pthread_mutex_lock(&h->lock);
    /* T02-L1a, P-ID: a certificate made at the factory is accepted only if
     * it chains to a manufacturer CA trusted for this very model. */
    if ((rc = store_ca_bundle(h->store, model, &trust)))
        goto out;
    if ((rc = crypto_cert_verify(c, trust))) {
        SET_ERR(e, "certificate does not chain to a CA trusted for model '%s' (%s)", model,
                mamori_strerror(rc));
        rc = MAMORI_ERR_VERIFY;
        goto out;
    }
    if (crypto_cert_is_ca(c)) {
        SET_ERR(e, "a CA certificate cannot be a device identity");
        rc = MAMORI_ERR_INVAL;
        goto out;
    }
    if ((rc = crypto_cert_pem(c, &clean)) || (rc = new_device_id(h, id)))
        goto out;
    if ((rc = add_device(h, who, id, model, clean, "manufacturer_ca", code, e)))
        goto out;
    *out = json_pack("{s:s,s:s,s:s,s:s}", "device_id", id, "model", model, "ca_chain",
                     h->ca_chain_pem, "claim_code", code);
    crypto_wipe(code, sizeof(code));
out:
    pthread_mutex_unlock(&h->lock);
    crypto_cert_free(c);
    free(trust);
    free(clean);
    return rc;
}

enum mamori_err hub_op_ca_import(struct hub *h, const struct principal *who, const char *model,
                                 const char *cert_pem, json_t **out, struct op_err *e)
{
    *out = NULL;
    if (who->role != ROLE_ADMIN)
        return MAMORI_ERR_FORBIDDEN;
    if (!name_ok(model, STORE_NAME_MAX)) {
        SET_ERR(e, "model must be 1-64 of [A-Za-z0-9._-]");
        return MAMORI_ERR_INVAL;
    }
    struct crypto_cert *c = NULL;
    char *clean = NULL, fp[65], cn[256];
    enum mamori_err rc = crypto_cert_parse(cert_pem, strlen(cert_pem), &c);
    if (rc) {
        SET_ERR(e, "certificate: %s", mamori_strerror(rc));
        return rc;
    }
    if (!crypto_cert_is_ca(c) || crypto_cert_not_after(c) <= hub_now()) {
        SET_ERR(e, "not a valid CA certificate (needs basicConstraints CA:TRUE, not expired)");
        crypto_cert_free(c);
        return MAMORI_ERR_INVAL;
    }
    crypto_cert_fingerprint(c, fp);
    if (crypto_cert_cn(c, cn, sizeof(cn)))
        snprintf(cn, sizeof(cn), "(no CN)");
    rc = crypto_cert_pem(c, &clean);
    crypto_cert_free(c);
    if (rc)
        return rc;
    pthread_mutex_lock(&h->lock);
    if ((rc = store_begin(h->store)))
        goto out;
    rc = store_ca_add(h->store, model, "manufacturer", fp, cn, clean, hub_now());
    if (rc) {
        store_rollback(h->store);
        if (rc == MAMORI_ERR_EXISTS)
            SET_ERR(e, "this CA is already trusted for model '%s'", model);
        goto out;
    }
    char detail[160];
    snprintf(detail, sizeof(detail), "{\"fingerprint\":\"%s\"}", fp);
    if ((rc = hub_commit_audited(h, who, "ca_import", model, cn, detail)))
        goto out;
    /* The broker must now accept chains ending in this CA. */
    if ((rc = ca_write_device_trust(h)))
        goto out;
    broker_reload(h);
    *out = json_pack("{s:s,s:s,s:s}", "model", model, "fingerprint", fp, "subject", cn);
out:
    pthread_mutex_unlock(&h->lock);
    free(clean);
    return rc;
}

static bool ca_cb(const char *model, const char *kind, const char *fp, const char *subject,
                  void *arg)
{
    json_array_append_new(arg, json_pack("{s:s?,s:s,s:s,s:s}", "model", model, "kind", kind,
                                         "fingerprint", fp, "subject", subject));
    return true;
}

enum mamori_err hub_op_ca_list(struct hub *h, const struct principal *who, json_t **out)
{
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    json_t *arr = json_array();
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_ca_list(h->store, ca_cb, arr);
    pthread_mutex_unlock(&h->lock);
    *out = json_pack("{s:o}", "cas", arr);
    return rc;
}

/* Applies a lifecycle action. Lock held. */
static enum mamori_err transition_locked(struct hub *h, const struct principal *who,
                                         struct device_rec *d, enum lc_action action,
                                         const char *reason)
{
    enum lc_state from, to;
    if (!lc_state_parse(d->state, &from))
        return MAMORI_ERR_INTERNAL;
    enum mamori_err rc = lc_next(from, action, &to);
    if (rc)
        return rc;
    if ((rc = store_begin(h->store)))
        return rc;
    int64_t now = hub_now();
    rc = store_device_set_state(h->store, d->id, lc_state_name(to), now);
    if (!rc && action == LC_DECOMMISSION)
        rc = store_device_clear_claim(h->store, d->id);
    if (rc) {
        store_rollback(h->store);
        return rc;
    }
    char detail[96];
    snprintf(detail, sizeof(detail), "{\"from\":\"%s\",\"to\":\"%s\"}", lc_state_name(from),
             lc_state_name(to));
    char action_name[48];
    snprintf(action_name, sizeof(action_name), "device_%s", lc_action_name(action));
    if ((rc = hub_commit_audited(h, who, action_name, d->id, reason, detail)))
        return rc;
    snprintf(d->state, sizeof(d->state), "%s", lc_state_name(to));
    d->updated_at = now;
    /* Live effect: the plugin kicks the device when its access drops. */
    mqtt_push_device(h, d, lc_access(to));
    if (lc_access(to) == LC_ACCESS_DENY)
        live_forget(h, d->id);
    return MAMORI_OK;
}

enum mamori_err hub_op_transition(struct hub *h, const struct principal *who, const char *device_id,
                                  enum lc_action action, const char *reason)
{
    struct device_rec d;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_device_get(h->store, device_id, &d);
    if (!rc)
        rc = transition_locked(h, who, &d, action, reason);
    pthread_mutex_unlock(&h->lock);
    return rc;
}

/* T07-L2b, T02-L1b: ownership needs the code printed with the device
 * (pairing-like), sent only over TLS. */
enum mamori_err hub_op_claim(struct hub *h, const struct principal *who, const char *code,
                             const char *peer, json_t **out, struct op_err *e)
{
    *out = NULL;
    if (who->role != ROLE_OWNER) {
        SET_ERR(e, "only owner accounts claim devices");
        return MAMORI_ERR_FORBIDDEN;
    }
    char key[48], canon[PROTO_CLAIM_CODE_CHARS + 1], ch[65];
    struct throttle_rec t;
    snprintf(key, sizeof(key), "claim:%" PRId64, who->user_id);
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = hub_throttled(h, key, &t, e);
    if (rc)
        goto out;
    struct device_rec d;
    rc = proto_claim_code_normalize(code, strlen(code), canon);
    if (!rc) {
        proto_claim_code_hash(canon, ch);
        crypto_wipe(canon, sizeof(canon));
        rc = store_device_by_claim(h->store, ch, &d);
    }
    if (rc) {
        /* Unknown or malformed: one answer, and failures are rate limited
         * per account, so the code space cannot be probed. */
        hub_throttle_fail(h, &THROTTLE_CLAIM, key, &t);
        hub_event(h, NULL, "claim_failed", "warning", "{\"user\":\"%s\",\"peer\":\"%s\"}",
                  who->name, peer);
        audit_only(h, who, "claim_failed", "", "invalid or used claim code", peer);
        SET_ERR(e, "invalid claim code");
        rc = MAMORI_ERR_NOTFOUND;
        goto out;
    }
    if (d.owner_id) {
        /* The code was right, so this is no guessing attempt; the device
         * stays with its owner. */
        SET_ERR(e, "this device is already claimed");
        hub_event(h, d.id, "claim_reused", "warning", "{\"user\":\"%s\",\"peer\":\"%s\"}",
                  who->name, peer);
        audit_only(h, who, "claim_refused", d.id, "device already claimed", peer);
        rc = MAMORI_ERR_STATE;
        goto out;
    }
    enum lc_state st, to;
    if (!lc_state_parse(d.state, &st) || lc_next(st, LC_CLAIM, &to)) {
        SET_ERR(e, "device %s cannot be claimed in state %s", d.id, d.state);
        rc = MAMORI_ERR_STATE;
        goto out;
    }
    if ((rc = store_begin(h->store)))
        goto out;
    int64_t now = hub_now();
    rc = store_device_claim(h->store, d.id, who->user_id, now);
    if (!rc)
        rc = store_device_set_state(h->store, d.id, lc_state_name(to), now);
    if (rc) {
        store_rollback(h->store);
        goto out;
    }
    log_if_err(store_throttle_clear(h->store, key));
    if ((rc = hub_commit_audited(h, who, "device_claim", d.id, "claim code accepted", peer)))
        goto out;
    mqtt_push_device(h, &d, lc_access(to));
    if (!store_device_get(h->store, d.id, &d))
        *out = device_json(&d);
out:
    pthread_mutex_unlock(&h->lock);
    return rc;
}

/* Owners see only their own devices; others see all. Lock held. */
enum mamori_err hub_device_visible(struct hub *h, const struct principal *who, const char *id,
                                   struct device_rec *d)
{
    if (!proto_device_id_valid(id, strlen(id)))
        return MAMORI_ERR_NOTFOUND;
    enum mamori_err rc = store_device_get(h->store, id, d);
    if (rc)
        return rc;
    /* Another owner's device is "not found", not "forbidden": its existence
     * is not the caller's business either (T06-L1a). */
    if (who->role == ROLE_OWNER && d->owner_id != who->user_id)
        return MAMORI_ERR_NOTFOUND;
    return MAMORI_OK;
}

enum mamori_err hub_op_device_get(struct hub *h, const struct principal *who, const char *id,
                                  json_t **out)
{
    struct device_rec d;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = hub_device_visible(h, who, id, &d);
    *out = rc ? NULL : device_json(&d);
    if (*out)
        hub_fw_annotate(h, &d, *out); /* P-UPD: version, advisories, support end */
    if (*out)
        relay_describe(h, id, *out); /* T09-L2b: the round trip it is held against */
    pthread_mutex_unlock(&h->lock);
    return rc;
}

struct list_ctx {
    json_t *arr;
    char last[24];
    int n;
};

static bool dev_cb(const struct device_rec *d, void *arg)
{
    struct list_ctx *c = arg;
    json_array_append_new(c->arr, device_json(d));
    snprintf(c->last, sizeof(c->last), "%s", d->id);
    c->n++;
    return true;
}

enum mamori_err hub_op_device_list(struct hub *h, const struct principal *who, const char *after,
                                   int limit, json_t **out)
{
    struct list_ctx c = {.arr = json_array()};
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_device_list(h->store, who->role == ROLE_OWNER ? who->user_id : 0,
                                           after, limit, dev_cb, &c);
    pthread_mutex_unlock(&h->lock);
    *out = json_pack("{s:o}", "devices", c.arr);
    if (c.n == limit)
        json_object_set_new(*out, "next", json_string(c.last));
    return rc;
}

/* Creates, audits and publishes a remote command. Lock held. */
enum mamori_err hub_command_issue(struct hub *h, const struct principal *who, const char *id,
                                  enum cmd_type t, int64_t ttl_ms, const char *reason,
                                  const char *args_json, struct command_rec *c)
{
    uint8_t nonce[16];
    enum mamori_err rc = crypto_random(nonce, sizeof(nonce));
    if (rc)
        return rc;
    memset(c, 0, sizeof(*c));
    crypto_hex(nonce, sizeof(nonce), c->id);
    snprintf(c->device_id, sizeof(c->device_id), "%s", id);
    snprintf(c->type, sizeof(c->type), "%s", cmd_type_name(t));
    if (snprintf(c->args, sizeof(c->args), "%s", args_json ? args_json : "{}") >=
        (int)sizeof(c->args))
        return MAMORI_ERR_TOOBIG;
    snprintf(c->issued_by, sizeof(c->issued_by), "%s", who->name);
    snprintf(c->status, sizeof(c->status), "pending");
    snprintf(c->result, sizeof(c->result), "{}");
    c->issued_at = c->updated_at = hub_now_ms();
    c->expires_at = c->issued_at + ttl_ms;
    if ((rc = store_begin(h->store)))
        return rc;
    if ((rc = store_command_add(h->store, c))) {
        store_rollback(h->store);
        return rc;
    }
    char action[32], detail[96];
    snprintf(action, sizeof(action), "command_%s", c->type);
    snprintf(detail, sizeof(detail), "{\"command\":\"%s\",\"expires_at\":%lld}", c->id,
             (long long)c->expires_at);
    if ((rc = hub_commit_audited(h, who, action, id, reason, detail)))
        return rc;
    cmd_publish(h, c);
    return MAMORI_OK;
}

static json_t *command_json(const struct command_rec *c)
{
    json_t *res = json_loads(c->result, 0, NULL);
    return json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:s,s:o*}", "id", c->id, "device", c->device_id,
                     "type", c->type, "issued_by", c->issued_by, "issued_at",
                     (json_int_t)c->issued_at, "expires_at", (json_int_t)c->expires_at, "status",
                     c->status, "result", res);
}

/* The device command that follows a registry transition, if any. */
static bool command_of(enum lc_action a, enum cmd_type *t)
{
    switch (a) {
    case LC_LOCK:
        *t = CMD_LOCK;
        return true;
    case LC_UNLOCK:
        *t = CMD_UNLOCK;
        return true;
    case LC_QUARANTINE:
        *t = CMD_QUARANTINE;
        return true;
    case LC_RELEASE:
        *t = CMD_RELEASE;
        return true;
    default:
        return false;
    }
}

enum mamori_err hub_device_action_locked(struct hub *h, const struct principal *who,
                                         struct device_rec *d, enum lc_action a, const char *reason,
                                         json_t **command)
{
    enum cmd_type t;
    struct command_rec c;
    enum lc_state from, to;
    /* Disposal (T01-L5a, T02-L5a): a device that may still connect is told
     * to wipe itself before its access goes (best effort: an offline
     * device cannot hear it; its certificate is in the CRL either way). */
    bool wipe = a == LC_DECOMMISSION && lc_state_parse(d->state, &from) && !lc_next(from, a, &to) &&
                lc_access(from) != LC_ACCESS_DENY;
    if (wipe && hub_command_issue(h, who, d->id, CMD_WIPE, CMD_MAX_TTL_MS, reason, NULL, &c))
        log_warn("device %s: decommissioned without a wipe command", d->id);
    enum mamori_err rc = transition_locked(h, who, d, a, reason);
    if (!rc && (a == LC_DECOMMISSION || a == LC_REVOKE)) {
        char detail[160];
        snprintf(detail, sizeof(detail),
                 "{\"model\":\"%s\",\"cert_serial\":\"%s\",\"wipe_sent\":%s}", d->model,
                 d->cert_serial, wipe ? "true" : "false");
        /* its certificate goes into the CRL for other relying parties */
        log_if_err(ca_crl_write(h));
        if (a == LC_DECOMMISSION) {
            /* what the hub held of its use goes; the registry entry and the
             * audit log keep the device id, which names no person */
            log_if_err(store_device_data_erase(h->store, d->id, NULL));
            log_if_err(store_transfer_del(h->store, d->id));
            log_if_err(store_device_set_owner(h->store, d->id, 0, hub_now()));
        }
        alerts_notify(h, a == LC_DECOMMISSION ? "device.decommissioned" : "device.revoked", d->id,
                      detail);
    }
    /* The registry changed; now tell the device itself (T03-L2b, T02-L3c).
     * A lock must reach a device that is offline now: it is kept for 30
     * days and sent again whenever the device comes back. */
    if (!rc && command_of(a, &t)) {
        if (hub_command_issue(h, who, d->id, t, CMD_MAX_TTL_MS, reason, NULL, &c) == MAMORI_OK) {
            if (command)
                *command = command_json(&c);
        } else {
            log_warn("device %s: %s recorded but the command was not issued", d->id,
                     lc_action_name(a));
        }
    }
    return rc;
}

enum mamori_err hub_op_device_action(struct hub *h, const struct principal *who, const char *id,
                                     const char *action, const char *reason, json_t **out,
                                     struct op_err *e)
{
    enum lc_action a;
    *out = NULL;
    if (!lc_action_parse(action, &a) || a == LC_CLAIM || a == LC_ACTIVATE || a == LC_STRAY_MARK) {
        SET_ERR(e, "unknown action '%s'", action);
        return MAMORI_ERR_NOTFOUND;
    }
    /* Owners may lock and unlock their own devices (T03-L2b: a stolen
     * device is put out of service by its owner); every other action is for
     * operators and administrators. */
    bool owner_ok = a == LC_LOCK || a == LC_UNLOCK || a == LC_CONFIRM;
    if (!hub_is_staff(who) && !(owner_ok && who->role == ROLE_OWNER))
        return MAMORI_ERR_FORBIDDEN;
    struct device_rec d;
    json_t *cj = NULL;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = hub_device_visible(h, who, id, &d);
    if (!rc) {
        rc = hub_device_action_locked(h, who, &d, a, reason, &cj);
        if (rc == MAMORI_ERR_STATE)
            SET_ERR(e, "cannot %s a device in state '%s'", action, d.state);
    }
    if (!rc) {
        *out = device_json(&d);
        if (*out && cj)
            json_object_set_new(*out, "command", cj);
        else
            json_decref(cj);
    }
    pthread_mutex_unlock(&h->lock);
    return rc;
}

static bool audit_cb(const struct audit_rec *a, void *arg)
{
    json_array_append_new(arg, json_pack("{s:I,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "seq",
                                         (json_int_t)a->seq, "ts", (json_int_t)a->ts, "actor",
                                         a->actor, "action", a->action, "target", a->target,
                                         "reason", a->reason, "detail", a->detail, "prev_hash",
                                         a->prev_hash, "hash", a->hash));
    return true;
}

enum mamori_err hub_op_audit_list(struct hub *h, const struct principal *who, int64_t after,
                                  int limit, json_t **out)
{
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    json_t *arr = json_array();
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_audit_list(h->store, after, limit, audit_cb, arr);
    pthread_mutex_unlock(&h->lock);
    *out = json_pack("{s:o}", "entries", arr);
    return rc;
}

enum mamori_err hub_op_audit_verify(struct hub *h, const struct principal *who, json_t **out)
{
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    struct audit_verdict v;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = audit_verify(&h->audit, &v);
    pthread_mutex_unlock(&h->lock);
    if (rc)
        return rc;
    *out = json_pack("{s:b,s:s,s:I,s:I,s:I}", "intact", v.problem == AUDIT_INTACT, "problem",
                     audit_problem_name(v.problem), "first_bad_seq", (json_int_t)v.first_bad_seq,
                     "entries", (json_int_t)v.entries, "head_seq", (json_int_t)v.head_seq);
    return MAMORI_OK;
}

static bool event_cb(const struct event_rec *ev, void *arg)
{
    json_t *detail = json_loads(ev->detail, 0, NULL);
    json_array_append_new(arg, json_pack("{s:I,s:I,s:s?,s:s,s:s,s:o}", "id", (json_int_t)ev->id,
                                         "ts", (json_int_t)ev->ts, "device_id",
                                         ev->device_id[0] ? ev->device_id : NULL, "kind", ev->kind,
                                         "severity", ev->severity, "detail",
                                         detail ? detail : json_string(ev->detail)));
    return true;
}

enum mamori_err hub_op_events(struct hub *h, const struct principal *who, const char *device_id,
                              int64_t after, int limit, json_t **out)
{
    json_t *arr = json_array();
    enum mamori_err rc = MAMORI_OK;
    pthread_mutex_lock(&h->lock);
    if (device_id) {
        struct device_rec d;
        rc = hub_device_visible(h, who, device_id, &d);
    }
    /* Owners without a device filter get the events of their own devices. */
    if (!rc)
        rc = store_event_list(h->store, device_id, who->role == ROLE_OWNER ? who->user_id : 0,
                              after, limit, event_cb, arr);
    pthread_mutex_unlock(&h->lock);
    *out = json_pack("{s:o}", "events", arr);
    return rc;
}

enum mamori_err hub_op_health(struct hub *h, json_t **out)
{
    pthread_mutex_lock(&h->lock);
    *out = json_pack("{s:s,s:b,s:b,s:b,s:i,s:I,s:i,s:I}", "status", "ok", "broker_running",
                     h->broker_pid > 0, "broker_session", h->mqtt_connected, "plugin_synced",
                     h->plugin_synced, "broker_restarts", h->broker_restarts, "devices",
                     (json_int_t)store_device_count(h->store), "mqtt_port", h->broker_port,
                     "mqtt_received",
                     (json_int_t)__atomic_load_n(&h->mqtt_received, __ATOMIC_RELAXED));
    struct tm_counts n;
    tm_stats(h, &n);
    if (*out)
        json_object_set_new(*out, "streams",
                            json_pack("{s:I,s:I,s:I,s:I}", "accepted", (json_int_t)n.accepted,
                                      "duplicates", (json_int_t)n.duplicates, "rejected",
                                      (json_int_t)n.rejected, "before_owner",
                                      (json_int_t)n.before_owner));
    pthread_mutex_unlock(&h->lock);
    return MAMORI_OK;
}

/* ---- telemetry schemas and queries ---- */

enum mamori_err hub_op_schema_set(struct hub *h, const struct principal *who, const char *model,
                                  const json_t *doc, json_t **out, struct op_err *e)
{
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    if (!name_ok(model, STORE_NAME_MAX)) {
        SET_ERR(e, "model must be 1-64 of [A-Za-z0-9._-]");
        return MAMORI_ERR_INVAL;
    }
    char *txt = json_dump_compact(doc);
    if (!txt)
        return MAMORI_ERR_NOMEM;
    struct schema *sc = malloc(sizeof(*sc));
    enum mamori_err rc =
        sc ? schema_parse(txt, strlen(txt), sc, e->msg, sizeof(e->msg)) : MAMORI_ERR_NOMEM;
    free(txt);
    txt = NULL;
    if (rc) {
        free(sc);
        return rc == MAMORI_ERR_NOMEM ? rc : MAMORI_ERR_INVAL;
    }
    json_t *canon = schema_to_json(sc);
    free(sc);
    txt = canon ? json_dump_compact(canon) : NULL;
    if (!txt) {
        json_decref(canon);
        return MAMORI_ERR_NOMEM;
    }
    pthread_mutex_lock(&h->lock);
    if (!(rc = store_begin(h->store))) {
        rc = store_schema_set(h->store, model, txt, hub_now());
        if (rc)
            store_rollback(h->store);
        else
            rc = hub_commit_audited(h, who, "schema_set", model, "", txt);
    }
    if (!rc)
        tm_schema_changed(h, model);
    pthread_mutex_unlock(&h->lock);
    free(txt);
    if (rc) {
        json_decref(canon);
        return rc;
    }
    json_object_set_new(canon, "model", json_string(model));
    *out = canon;
    return MAMORI_OK;
}

enum mamori_err hub_op_schema_get(struct hub *h, const struct principal *who, const char *model,
                                  json_t **out)
{
    (void)who; /* schemas are not secret to any signed-in principal */
    *out = NULL;
    if (!name_ok(model, STORE_NAME_MAX))
        return MAMORI_ERR_NOTFOUND;
    char *doc = NULL;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_schema_get(h->store, model, &doc);
    pthread_mutex_unlock(&h->lock);
    if (rc)
        return rc;
    *out = json_loads(doc, 0, NULL);
    free(doc);
    if (!*out)
        return MAMORI_ERR_INTERNAL;
    json_object_set_new(*out, "model", json_string(model));
    return MAMORI_OK;
}

enum mamori_err hub_op_telemetry(struct hub *h, const struct principal *who, const char *id,
                                 int64_t from_ts, int64_t to_ts, int64_t after, int limit,
                                 json_t **out)
{
    struct device_rec d;
    *out = NULL;
    pthread_mutex_lock(&h->lock);
    /* Owners read their own devices' data only (T06-L1a). */
    enum mamori_err rc = hub_device_visible(h, who, id, &d);
    if (!rc)
        rc = tm_query(h, id, from_ts, to_ts, after, limit, out);
    pthread_mutex_unlock(&h->lock);
    return rc;
}

/* ---- remote commands ---- */

enum mamori_err hub_op_command(struct hub *h, const struct principal *who, const char *id,
                               const char *type, const char *reason, int64_t ttl_s, json_t **out,
                               struct op_err *e)
{
    enum cmd_type t;
    *out = NULL;
    if (!cmd_type_parse(type, &t)) {
        SET_ERR(e, "unknown command '%s'", type);
        return MAMORI_ERR_INVAL;
    }
    /* Lock, unlock, quarantine and release change the registry too. */
    if (t == CMD_LOCK || t == CMD_UNLOCK || t == CMD_QUARANTINE || t == CMD_RELEASE)
        return hub_op_device_action(h, who, id, type, reason, out, e);
    /* Certificates reach devices only through a rotation the hub runs;
     * settings only with their document (POST .../config). */
    if (t == CMD_CERT) {
        SET_ERR(e, "'cert' is sent by the hub during a rotation; issue 'rotate'");
        return MAMORI_ERR_INVAL;
    }
    if (t == CMD_CONFIG) {
        SET_ERR(e, "settings go to POST /devices/{id}/config");
        return MAMORI_ERR_INVAL;
    }
    if (t == CMD_UPDATE || t == CMD_NOTICE) {
        SET_ERR(e, "%s",
                t == CMD_UPDATE ? "releases go out with 'firmware deploy' or a campaign"
                                : "notices are sent by the hub from its advisories and support "
                                  "periods");
        return MAMORI_ERR_INVAL;
    }
    /* Owners may test and wipe their own device; reboots are operators'. */
    if (!hub_is_staff(who) && !(who->role == ROLE_OWNER && (t == CMD_SELF_TEST || t == CMD_WIPE)))
        return MAMORI_ERR_FORBIDDEN;
    int64_t ttl_ms = ttl_s > 0 ? ttl_s * 1000 : 24 * 3600 * 1000LL;
    if (ttl_ms < 10000 || ttl_ms > CMD_MAX_TTL_MS) {
        SET_ERR(e, "ttl_s must be 10 s to 30 days");
        return MAMORI_ERR_INVAL;
    }
    struct device_rec d;
    struct command_rec c;
    enum lc_state st;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = hub_device_visible(h, who, id, &d);
    if (!rc && (!lc_state_parse(d.state, &st) || lc_access(st) == LC_ACCESS_DENY)) {
        SET_ERR(e, "a device in state '%s' cannot receive commands", d.state);
        rc = MAMORI_ERR_STATE;
    }
    if (!rc && t == CMD_ROTATE) {
        /* The rotation's own validity; the policy sees it was asked. */
        rc = store_device_rotation_asked(h->store, id, hub_now());
        if (!rc)
            rc = hub_command_issue(h, who, id, t, ttl_ms, reason, NULL, &c);
    } else if (!rc) {
        rc = hub_command_issue(h, who, id, t, ttl_ms, reason, NULL, &c);
    }
    if (!rc)
        *out = command_json(&c);
    pthread_mutex_unlock(&h->lock);
    return rc;
}

/* T01-L3c, T08-*: remote settings come only from the hub, signed, checked
 * here with the device's own parser, numbered per device (the device takes
 * only a newer version), and audited. */
enum mamori_err hub_op_config(struct hub *h, const struct principal *who, const char *id,
                              json_t *settings, const char *reason, json_t **out, struct op_err *e)
{
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    char *txt = json_is_object(settings) ? json_dump_compact(settings) : NULL;
    struct devcfg cfg;
    char why[160] = "settings must be an object";
    if (!txt || devcfg_parse(txt, strlen(txt), &cfg, why, sizeof(why))) {
        free(txt);
        SET_ERR(e, "%s", why);
        return MAMORI_ERR_INVAL;
    }
    struct device_rec d;
    struct command_rec c;
    enum lc_state st;
    char key[64], val[32];
    unsigned long long ver = 0;
    snprintf(key, sizeof(key), "cfgver:%s", id);
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = hub_device_visible(h, who, id, &d);
    if (!rc && (!lc_state_parse(d.state, &st) || lc_access(st) == LC_ACCESS_DENY)) {
        SET_ERR(e, "a device in state '%s' cannot receive commands", d.state);
        rc = MAMORI_ERR_STATE;
    }
    if (!rc && store_meta_get(h->store, key, val, sizeof(val)) == MAMORI_OK)
        ver = strtoull(val, NULL, 10);
    ver++;
    json_t *args = NULL;
    char *atxt = NULL;
    if (!rc &&
        (!(args = json_pack("{s:I,s:O}", "version", (json_int_t)ver, "settings", settings)) ||
         !(atxt = json_dump_compact(args))))
        rc = MAMORI_ERR_NOMEM;
    if (!rc) {
        snprintf(val, sizeof(val), "%llu", ver);
        rc = store_meta_set(h->store, key, val);
    }
    if (!rc)
        rc = hub_command_issue(h, who, id, CMD_CONFIG, 7LL * 24 * 3600 * 1000, reason, atxt, &c);
    if (!rc)
        *out = command_json(&c);
    pthread_mutex_unlock(&h->lock);
    json_decref(args);
    free(atxt);
    free(txt);
    return rc;
}

struct cmd_list {
    json_t *arr;
};

static bool cmd_list_one(const struct command_rec *c, void *arg)
{
    struct cmd_list *l = arg;
    json_array_append_new(l->arr, command_json(c));
    return true;
}

enum mamori_err hub_op_command_list(struct hub *h, const struct principal *who, const char *id,
                                    int limit, json_t **out)
{
    struct device_rec d;
    struct cmd_list l = {.arr = json_array()};
    *out = NULL;
    if (!l.arr)
        return MAMORI_ERR_NOMEM;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = hub_device_visible(h, who, id, &d);
    if (!rc)
        rc = store_command_list(h->store, id, false, 0, limit, cmd_list_one, &l);
    pthread_mutex_unlock(&h->lock);
    if (rc) {
        json_decref(l.arr);
        return rc;
    }
    *out = json_pack("{s:s,s:o}", "device", id, "commands", l.arr);
    return *out ? MAMORI_OK : MAMORI_ERR_NOMEM;
}
