/*
 * hub/store/store_audit.c - the rows of the audit log. The table is
 * append-only (triggers refuse UPDATE and DELETE, store_sqlite.c); the
 * chain over the rows is computed and checked by hub/core/audit.c.
 */
#include <string.h>

#include "hub/store/store_priv.h"

#define AUDIT_COLS "seq,ts,actor,action,target,reason,detail,prev_hash,hash"

static void audit_row(const struct db_row *st, void *out)
{
    struct audit_rec *a = out;
    memset(a, 0, sizeof(*a));
    a->seq = db_col_int(st, 0);
    a->ts = db_col_int(st, 1);
    db_col_text(st, 2, a->actor, sizeof(a->actor));
    db_col_text(st, 3, a->action, sizeof(a->action));
    db_col_text(st, 4, a->target, sizeof(a->target));
    db_col_text(st, 5, a->reason, sizeof(a->reason));
    db_col_text(st, 6, a->detail, sizeof(a->detail));
    db_col_text(st, 7, a->prev_hash, sizeof(a->prev_hash));
    db_col_text(st, 8, a->hash, sizeof(a->hash));
}

enum mamori_err store_audit_last(struct store *s, struct audit_rec *out)
{
    /* Several hubs append to one chain: within a transaction, the last
     * entry is read once the others' appends are committed, and no other
     * hub appends until this transaction ends. */
    if (s->drv->serialize_sql && store_in_transaction(s) &&
        db_exec(s, s->drv->serialize_sql, DB_NO_ARGS, NULL))
        return MAMORI_ERR_DB;
    return db_one(s, "SELECT " AUDIT_COLS " FROM audit ORDER BY seq DESC LIMIT 1", DB_NO_ARGS,
                  audit_row, out, sizeof(*out));
}

enum mamori_err store_audit_get(struct store *s, int64_t seq, struct audit_rec *out)
{
    return db_one(s, "SELECT " AUDIT_COLS " FROM audit WHERE seq=?", DB_ARGS(db_int(seq)),
                  audit_row, out, sizeof(*out));
}

enum mamori_err store_audit_append(struct store *s, const struct audit_rec *r)
{
    return db_exec(s, "INSERT INTO audit(" AUDIT_COLS ") VALUES(?,?,?,?,?,?,?,?,?)",
                   DB_ARGS(db_int(r->seq), db_int(r->ts), db_text(r->actor), db_text(r->action),
                           db_text(r->target), db_text(r->reason), db_text(r->detail),
                           db_text(r->prev_hash), db_text(r->hash)),
                   NULL);
}

enum mamori_err store_audit_list(struct store *s, int64_t after, int limit,
                                 bool (*cb)(const struct audit_rec *, void *), void *arg)
{
    struct db_rows q;
    enum mamori_err rc =
        db_query(s, "SELECT " AUDIT_COLS " FROM audit WHERE seq>? ORDER BY seq LIMIT ?",
                 DB_ARGS(db_int(after), db_int(limit)), &q);
    if (rc)
        return rc;
    struct audit_rec a;
    while (db_next(&q)) {
        audit_row(&q.row, &a);
        if (!cb(&a, arg))
            break;
    }
    return db_done(&q);
}
