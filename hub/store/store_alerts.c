/*
 * hub/store/store_alerts.c - alerts (hub/alerts/alerts.c): one live (open or
 * acknowledged) alert per rule and device, counted; the response policy
 * per rule and model; webhooks, their deliveries, and the retention of
 * both alerts and deliveries.
 */
#include <string.h>

#include "common/crypto.h"
#include "hub/store/store_priv.h"

#define ALERT_COLS                                                                                 \
    "id,rule,device_id,severity,state,action,first_at,last_at,count,detail,acked_by,resolved_by,"  \
    "note"

static void alert_row(const struct db_row *st, void *out)
{
    struct alert_rec *a = out;
    memset(a, 0, sizeof(*a));
    a->id = db_col_int(st, 0);
    db_col_text(st, 1, a->rule, sizeof(a->rule));
    db_col_text(st, 2, a->device_id, sizeof(a->device_id));
    db_col_text(st, 3, a->severity, sizeof(a->severity));
    db_col_text(st, 4, a->state, sizeof(a->state));
    db_col_text(st, 5, a->action, sizeof(a->action));
    a->first_at = db_col_int(st, 6);
    a->last_at = db_col_int(st, 7);
    a->count = db_col_int(st, 8);
    db_col_text(st, 9, a->detail, sizeof(a->detail));
    db_col_text(st, 10, a->acked_by, sizeof(a->acked_by));
    db_col_text(st, 11, a->resolved_by, sizeof(a->resolved_by));
    db_col_text(st, 12, a->note, sizeof(a->note));
}

enum mamori_err store_alert_raise(struct store *s, const char *rule, const char *device_id,
                                  const char *severity, const char *detail, int64_t now,
                                  struct alert_rec *out, bool *created)
{
    int64_t counted;
    *created = false;
    /* the live alert for (rule, device) counts one more; else a new one */
    enum mamori_err rc =
        db_exec(s,
                "UPDATE alerts SET count=count+1, last_at=?3, detail=?4 WHERE "
                "rule=?1 AND device_id=?2 AND state<>'resolved'",
                DB_ARGS(db_text(rule), db_text(device_id), db_int(now), db_text(detail)), &counted);
    if (!rc && counted == 0) {
        rc = db_exec(s,
                     "INSERT INTO alerts(rule,device_id,severity,state,first_at,last_at,count,"
                     "detail) VALUES(?1,?2,?3,'open',?4,?4,1,?5)",
                     DB_ARGS(db_text(rule), db_text(device_id), db_text(severity), db_int(now),
                             db_text(detail)),
                     NULL);
        *created = rc == MAMORI_OK;
    }
    if (!rc)
        rc = store_alert_live(s, rule, device_id, out);
    if (rc) {
        *created = false;
        memset(out, 0, sizeof(*out));
    }
    return rc;
}

enum mamori_err store_alert_live(struct store *s, const char *rule, const char *device_id,
                                 struct alert_rec *out)
{
    return db_one(s,
                  "SELECT " ALERT_COLS " FROM alerts WHERE rule=?1 AND device_id=?2 AND "
                  "state<>'resolved'",
                  DB_ARGS(db_text(rule), db_text(device_id)), alert_row, out, sizeof(*out));
}

enum mamori_err store_alert_get(struct store *s, int64_t id, struct alert_rec *out)
{
    return db_one(s, "SELECT " ALERT_COLS " FROM alerts WHERE id=?1", DB_ARGS(db_int(id)),
                  alert_row, out, sizeof(*out));
}

enum mamori_err store_alerts(struct store *s, const char *state, const char *device_id,
                             int64_t after, int limit, bool (*cb)(const struct alert_rec *, void *),
                             void *arg)
{
    struct db_rows q;
    enum mamori_err rc =
        db_query(s,
                 "SELECT " ALERT_COLS " FROM alerts WHERE (?1 IS NULL OR state=?1) AND (?2 IS "
                 "NULL OR device_id=?2) AND id>?3 ORDER BY id LIMIT ?4",
                 DB_ARGS(db_text(state), db_text(device_id), db_int(after), db_int(limit)), &q);
    if (rc)
        return rc;
    struct alert_rec a;
    while (db_next(&q)) {
        alert_row(&q.row, &a);
        if (!cb(&a, arg))
            break;
    }
    return db_done(&q);
}

enum mamori_err store_alert_set(struct store *s, int64_t id, const char *state, const char *by,
                                const char *note)
{
    bool ack = strcmp(state, "acknowledged") == 0;
    return db_exec_one(s,
                       ack ? "UPDATE alerts SET state=?2, acked_by=?3, note=?4 WHERE id=?1 AND "
                             "state='open'"
                           : "UPDATE alerts SET state=?2, resolved_by=?3, note=?4 WHERE id=?1 "
                             "AND state<>'resolved'",
                       DB_ARGS(db_int(id), db_text(state), db_text(by), db_text(note)),
                       MAMORI_ERR_STATE);
}

enum mamori_err store_alerts_action_due(struct store *s, struct alert_rec *out, size_t max,
                                        size_t *n)
{
    return db_many(
        s, "SELECT " ALERT_COLS " FROM alerts WHERE action LIKE 'due:%' ORDER BY id LIMIT ?",
        DB_ARGS(db_int((int64_t)max)), alert_row, out, sizeof(*out), max, n);
}

enum mamori_err store_alert_action(struct store *s, int64_t id, const char *action)
{
    return db_exec(s, "UPDATE alerts SET action=?2 WHERE id=?1",
                   DB_ARGS(db_int(id), db_text(action)), NULL);
}

enum mamori_err store_alerts_prune(struct store *s, int64_t before_ms, int64_t *alerts,
                                   int64_t *deliveries)
{
    *alerts = 0;
    enum mamori_err rc =
        db_exec(s, "DELETE FROM deliveries WHERE state<>'pending' AND created_at<?1",
                DB_ARGS(db_int(before_ms)), deliveries);
    if (!rc)
        rc = db_exec(s, "DELETE FROM alerts WHERE state='resolved' AND last_at<?1",
                     DB_ARGS(db_int(before_ms)), alerts);
    if (rc)
        *deliveries = 0;
    return rc;
}

/* --- response policies ------------------------------------------------------- */

enum mamori_err store_policy_set(struct store *s, const struct policy_rec *p, const char *by,
                                 int64_t now)
{
    return db_exec(s,
                   "INSERT INTO rule_policies(rule,model,action,act_after,updated_by,updated_at) "
                   "VALUES(?,?,?,?,?,?) ON CONFLICT(rule,model) DO UPDATE SET "
                   "action=excluded.action, act_after=excluded.act_after, "
                   "updated_by=excluded.updated_by, updated_at=excluded.updated_at",
                   DB_ARGS(db_text(p->rule), db_text(p->model), db_text(p->action),
                           db_int(p->act_after), db_text(by), db_int(now)),
                   NULL);
}

static void policy_row(const struct db_row *st, void *out)
{
    struct policy_rec *p = out;
    memset(p, 0, sizeof(*p));
    db_col_text(st, 0, p->rule, sizeof(p->rule));
    db_col_text(st, 1, p->model, sizeof(p->model));
    db_col_text(st, 2, p->action, sizeof(p->action));
    p->act_after = (int)db_col_int(st, 3);
}

enum mamori_err store_policy_get(struct store *s, const char *rule, const char *model,
                                 struct policy_rec *out)
{
    /* the model's own policy first, then the default ('') */
    return db_one(s,
                  "SELECT rule,model,action,act_after FROM rule_policies WHERE rule=?1 AND "
                  "model IN (?2,'') ORDER BY model DESC LIMIT 1",
                  DB_ARGS(db_text(rule), db_text(model)), policy_row, out, sizeof(*out));
}

enum mamori_err store_policies(struct store *s, bool (*cb)(const struct policy_rec *, void *),
                               void *arg)
{
    struct db_rows q;
    enum mamori_err rc =
        db_query(s, "SELECT rule,model,action,act_after FROM rule_policies ORDER BY rule,model",
                 DB_NO_ARGS, &q);
    if (rc)
        return rc;
    struct policy_rec p;
    while (db_next(&q)) {
        policy_row(&q.row, &p);
        if (!cb(&p, arg))
            break;
    }
    return db_done(&q);
}

/* --- webhooks and their deliveries --------------------------------------------- */

enum mamori_err store_webhook_add(struct store *s, struct webhook_rec *w)
{
    return db_insert(
        s, "INSERT INTO webhooks(url,secret,created_by,created_at) VALUES(?,?,?,?)",
        DB_ARGS(db_text(w->url), db_text(w->secret), db_text(w->created_by), db_int(w->created_at)),
        &w->id);
}

enum mamori_err store_webhook_del(struct store *s, int64_t id)
{
    enum mamori_err rc =
        db_exec_one(s, "DELETE FROM webhooks WHERE id=?", DB_ARGS(db_int(id)), MAMORI_ERR_NOTFOUND);
    if (!rc)
        rc = db_exec(s,
                     "UPDATE deliveries SET state='dropped' WHERE webhook_id=? AND "
                     "state='pending'",
                     DB_ARGS(db_int(id)), NULL);
    return rc;
}

enum mamori_err store_webhooks(struct store *s, bool (*cb)(const struct webhook_rec *, void *),
                               void *arg)
{
    struct db_rows q;
    enum mamori_err rc = db_query(
        s, "SELECT id,url,secret,created_by,created_at FROM webhooks ORDER BY id", DB_NO_ARGS, &q);
    if (rc)
        return rc;
    struct webhook_rec w;
    while (db_next(&q)) {
        memset(&w, 0, sizeof(w));
        w.id = db_col_int(&q.row, 0);
        db_col_text(&q.row, 1, w.url, sizeof(w.url));
        db_col_text(&q.row, 2, w.secret, sizeof(w.secret));
        db_col_text(&q.row, 3, w.created_by, sizeof(w.created_by));
        w.created_at = db_col_int(&q.row, 4);
        bool go = cb(&w, arg);
        crypto_wipe(w.secret, sizeof(w.secret));
        if (!go)
            break;
    }
    return db_done(&q);
}

enum mamori_err store_delivery_add(struct store *s, int64_t webhook_id, int64_t alert_id,
                                   const char *payload, int64_t now)
{
    return db_exec(s,
                   "INSERT INTO deliveries(webhook_id,alert_id,payload,state,next_at,created_at) "
                   "VALUES(?,?,?,'pending',?4,?4)",
                   DB_ARGS(db_int(webhook_id), db_int(alert_id), db_text(payload), db_int(now)),
                   NULL);
}

static void delivery_row(const struct db_row *st, void *out)
{
    struct delivery_rec *d = out;
    memset(d, 0, sizeof(*d));
    d->id = db_col_int(st, 0);
    d->webhook_id = db_col_int(st, 1);
    d->alert_id = db_col_int(st, 2);
    db_col_text(st, 3, d->payload, sizeof(d->payload));
    d->tries = (int)db_col_int(st, 4);
    d->created_at = db_col_int(st, 5);
    db_col_text(st, 6, d->url, sizeof(d->url));
    db_col_text(st, 7, d->secret, sizeof(d->secret));
}

enum mamori_err store_deliveries_due(struct store *s, int64_t now, struct delivery_rec *out,
                                     size_t max, size_t *n)
{
    return db_many(s,
                   "SELECT d.id,d.webhook_id,d.alert_id,d.payload,d.tries,d.created_at,w.url,"
                   "w.secret FROM deliveries d JOIN webhooks w ON w.id=d.webhook_id WHERE "
                   "d.state='pending' AND d.next_at<=? ORDER BY d.next_at LIMIT ?",
                   DB_ARGS(db_int(now), db_int((int64_t)max)), delivery_row, out, sizeof(*out), max,
                   n);
}

enum mamori_err store_delivery_set(struct store *s, int64_t id, const char *state, int tries,
                                   int64_t next_at, const char *error)
{
    return db_exec(
        s, "UPDATE deliveries SET state=?2, tries=?3, next_at=?4, error=?5 WHERE id=?1",
        DB_ARGS(db_int(id), db_text(state), db_int(tries), db_int(next_at), db_text(error)), NULL);
}
