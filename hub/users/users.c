/* hub/users/users.c - see users.h. */
#include "common/fsutil.h"
#include "hub/users/users.h"
#include "hub/core/auth.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/proto.h"

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
        hub_audit_only(h, NULL, "bootstrap_failed", "", "wrong bootstrap token", peer);
        SET_ERR(e, "invalid bootstrap token");
        rc = MAMORI_ERR_AUTH;
        goto out;
    }
    if (!hub_name_ok(user, STORE_NAME_MAX) || auth_password_policy(password)) {
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
        hub_audit_only(h, NULL, tu.locked_until > hub_now() ? "login_locked" : "login_failed", user,
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
    if (!hub_name_ok(name, STORE_NAME_MAX) || !store_role_parse(role, &r) ||
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
