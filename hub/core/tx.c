/* hub/core/tx.c - see tx.h. */
#include "hub/core/tx.h"
#include "hub/core/auth.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/proto.h"

static void actor_of(const struct principal *who, char *out, size_t n)
{
    if (!who || who->user_id == 0) /* the hub itself, or one of its parts */
        snprintf(out, n, "%s%s%s", "hub",
                 who && who->name[0] && strcmp(who->name, "hub") ? ":" : "",
                 who && strcmp(who->name, "hub") ? who->name : "");
    else
        snprintf(out, n, "%s:%s", store_role_name(who->role), who->name);
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
    /* The anchor moves only past what is durable: inside a batch's
     * transaction the entry is not yet, and the next audited change made
     * outside one moves the anchor past it. */
    if (!store_in_transaction(h->store) && audit_anchor(&h->audit) == MAMORI_ERR_VERIFY)
        hub_event(h, NULL, "audit_tampered", "alert",
                  "{\"reason\":\"anchored entry missing or changed\"}");
    return MAMORI_OK;
}

/* Audits an action that changes nothing else (e.g. a refused attempt). */
void hub_audit_only(struct hub *h, const struct principal *who, const char *action,
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

bool hub_name_ok(const char *s, size_t max)
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
