/* hub/core/records.c - see records.h. */
#include "hub/core/records.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/proto.h"

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
