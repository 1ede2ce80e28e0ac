/*
 * hub/store/store_campaigns.c - staged update campaigns (hub/fleet/campaign.c),
 * each device's part in them, and the device groups campaigns target.
 */
#include <stdlib.h>
#include <string.h>

#include "hub/store/store_priv.h"

enum mamori_err store_campaign_add(struct store *s, struct campaign_rec *c)
{
    enum mamori_err rc = db_insert(
        s,
        "INSERT INTO campaigns(sha256,model,state,canary,wave,interval_s,max_fail_pct,"
        "window_start,window_end,waves_sent,next_wave_at,reason,note,created_by,created_at,"
        "updated_at,grp) VALUES(?,?,?,?,?,?,?,?,?,0,0,?,'',?,?,?,?)",
        DB_ARGS(db_text(c->sha256), db_text(c->model), db_text(c->state), db_int(c->canary),
                db_int(c->wave), db_int(c->interval_s), db_int(c->max_fail_pct),
                db_int(c->window_start), db_int(c->window_end), db_text(c->reason),
                db_text(c->created_by), db_int(c->created_at), db_int(c->created_at),
                db_text(c->group)),
        &c->id);
    if (rc)
        return rc;
    /* every device of the model that may take commands, in a stable order */
    rc = db_exec(
        s,
        "INSERT INTO campaign_devices(campaign_id,device_id,wave,status,error,updated_at) "
        "SELECT ?1, id, -1, 'pending', '', ?2 FROM devices WHERE model=?3 "
        "AND state IN ('claimed','active','quarantined') AND (?4 = '' OR id IN "
        "(SELECT device_id FROM device_groups WHERE grp=?4)) ORDER BY id",
        DB_ARGS(db_int(c->id), db_int(c->created_at), db_text(c->model), db_text(c->group)), NULL);
    if (rc)
        c->id = 0;
    return rc;
}

#define CAMPAIGN_COLS                                                                              \
    "id,sha256,model,state,canary,wave,interval_s,max_fail_pct,window_start,window_end,"           \
    "waves_sent,next_wave_at,reason,note,created_by,created_at,updated_at,grp"

static void campaign_row(const struct db_row *st, void *out)
{
    struct campaign_rec *c = out;
    memset(c, 0, sizeof(*c));
    c->id = db_col_int(st, 0);
    db_col_text(st, 1, c->sha256, sizeof(c->sha256));
    db_col_text(st, 2, c->model, sizeof(c->model));
    db_col_text(st, 3, c->state, sizeof(c->state));
    c->canary = (int)db_col_int(st, 4);
    c->wave = (int)db_col_int(st, 5);
    c->interval_s = (int)db_col_int(st, 6);
    c->max_fail_pct = (int)db_col_int(st, 7);
    c->window_start = (int)db_col_int(st, 8);
    c->window_end = (int)db_col_int(st, 9);
    c->waves_sent = (int)db_col_int(st, 10);
    c->next_wave_at = db_col_int(st, 11);
    db_col_text(st, 12, c->reason, sizeof(c->reason));
    db_col_text(st, 13, c->note, sizeof(c->note));
    db_col_text(st, 14, c->created_by, sizeof(c->created_by));
    c->created_at = db_col_int(st, 15);
    c->updated_at = db_col_int(st, 16);
    db_col_text(st, 17, c->group, sizeof(c->group));
}

enum mamori_err store_campaigns(struct store *s, const char *state,
                                bool (*cb)(const struct campaign_rec *, void *), void *arg)
{
    struct db_rows q;
    enum mamori_err rc = db_query(s,
                                  "SELECT " CAMPAIGN_COLS " FROM campaigns WHERE ?1 IS NULL OR "
                                  "state=?1 ORDER BY id DESC LIMIT 500",
                                  DB_ARGS(db_text(state)), &q);
    if (rc)
        return rc;
    struct campaign_rec c;
    while (db_next(&q)) {
        campaign_row(&q.row, &c);
        if (!cb(&c, arg))
            break;
    }
    return db_done(&q);
}

enum mamori_err store_campaign_get(struct store *s, int64_t id, struct campaign_rec *out)
{
    return db_one(s, "SELECT " CAMPAIGN_COLS " FROM campaigns WHERE id=?", DB_ARGS(db_int(id)),
                  campaign_row, out, sizeof(*out));
}

enum mamori_err store_campaign_set(struct store *s, int64_t id, const char *state, int waves_sent,
                                   int64_t next_wave_at, const char *note, int64_t now)
{
    return db_exec(s,
                   "UPDATE campaigns SET state=?2, waves_sent=?3, next_wave_at=?4, note=?5, "
                   "updated_at=?6 WHERE id=?1",
                   DB_ARGS(db_int(id), db_text(state), db_int(waves_sent), db_int(next_wave_at),
                           db_text(note), db_int(now)),
                   NULL);
}

enum mamori_err store_campaign_counts(struct store *s, int64_t id, struct campaign_counts *n)
{
    struct db_rows q;
    memset(n, 0, sizeof(*n));
    enum mamori_err rc = db_query(
        s, "SELECT status, count(*) FROM campaign_devices WHERE campaign_id=? GROUP BY status",
        DB_ARGS(db_int(id)), &q);
    if (rc)
        return rc;
    while (db_next(&q)) {
        const char *k = db_col_str(&q.row, 0);
        int v = (int)db_col_int(&q.row, 1);
        if (strcmp(k, "pending") == 0)
            n->pending = v;
        else if (strcmp(k, "sent") == 0 || strcmp(k, "installed") == 0)
            n->in_flight += v;
        else if (strcmp(k, "committed") == 0)
            n->committed = v;
        else if (strcmp(k, "skipped") == 0)
            n->skipped = v;
        else
            n->failed += v;
    }
    rc = db_done(&q);
    if (rc)
        memset(n, 0, sizeof(*n));
    return rc;
}

enum mamori_err store_campaign_next(struct store *s, int64_t id, int n,
                                    bool (*cb)(const char *device_id, void *), void *arg)
{
    if (n < 1 || n > 100000)
        return MAMORI_ERR_INVAL;
    /* the ids first: cb issues commands while no statement is open */
    char(*ids)[24] = calloc((size_t)n, sizeof(*ids));
    if (!ids)
        return MAMORI_ERR_NOMEM;
    size_t k;
    enum mamori_err rc =
        db_many(s,
                "SELECT device_id FROM campaign_devices WHERE campaign_id=? AND "
                "status='pending' ORDER BY tries, device_id LIMIT ?",
                DB_ARGS(db_int(id), db_int(n)), db_fill_id, ids, sizeof(*ids), (size_t)n, &k);
    for (size_t i = 0; i < k && cb(ids[i], arg); i++)
        ;
    free(ids);
    return rc;
}

enum mamori_err store_campaign_device_retry(struct store *s, int64_t id, const char *device_id,
                                            int max_tries, const char *error, int64_t now)
{
    return db_exec(
        s,
        "UPDATE campaign_devices SET status=CASE WHEN tries + 1 < ?3 THEN 'pending' "
        "ELSE 'failed' END, tries=tries+1, error=?4, updated_at=?5 "
        "WHERE campaign_id=?1 AND device_id=?2",
        DB_ARGS(db_int(id), db_text(device_id), db_int(max_tries), db_text(error), db_int(now)),
        NULL);
}

enum mamori_err store_campaign_device_set(struct store *s, int64_t id, const char *device_id,
                                          int wave, const char *status, const char *command_id,
                                          const char *error, int64_t now)
{
    return db_exec(s,
                   "UPDATE campaign_devices SET wave=CASE WHEN ?3 >= 0 THEN ?3 ELSE wave END, "
                   "status=?4, command_id=coalesce(?5, command_id), error=?6, updated_at=?7 "
                   "WHERE campaign_id=?1 AND device_id=?2",
                   DB_ARGS(db_int(id), db_text(device_id), db_int(wave), db_text(status),
                           db_text(command_id), db_text(error), db_int(now)),
                   NULL);
}

enum mamori_err store_campaign_device_find(struct store *s, const char *device_id,
                                           const char *command_id, const char *status,
                                           int64_t *campaign_id)
{
    return db_one_int(s,
                      "SELECT campaign_id FROM campaign_devices WHERE device_id=?1 AND "
                      "(?2 IS NULL OR command_id=?2) AND (?3 IS NULL OR status=?3) "
                      "ORDER BY campaign_id DESC LIMIT 1",
                      DB_ARGS(db_text(device_id), db_text(command_id), db_text(status)),
                      campaign_id);
}

enum mamori_err store_campaign_devices(struct store *s, int64_t id,
                                       bool (*cb)(const char *device_id, int wave,
                                                  const char *status, const char *error, void *arg),
                                       void *arg)
{
    struct db_rows q;
    enum mamori_err rc = db_query(s,
                                  "SELECT device_id, wave, status, error FROM campaign_devices "
                                  "WHERE campaign_id=? ORDER BY device_id LIMIT 10000",
                                  DB_ARGS(db_int(id)), &q);
    if (rc)
        return rc;
    while (db_next(&q) && cb(db_col_str(&q.row, 0), (int)db_col_int(&q.row, 1),
                             db_col_str(&q.row, 2), db_col_str(&q.row, 3), arg))
        ;
    return db_done(&q);
}

/* --- device groups ------------------------------------------------------------ */

enum mamori_err store_group_set(struct store *s, const char *group, const char *device_id,
                                bool member)
{
    return db_exec(
        s,
        member ? "INSERT INTO device_groups(grp,device_id) VALUES(?,?) ON CONFLICT DO NOTHING"
               : "DELETE FROM device_groups WHERE grp=? AND device_id=?",
        DB_ARGS(db_text(group), db_text(device_id)), NULL);
}

enum mamori_err store_group_devices(struct store *s, const char *group,
                                    bool (*cb)(const char *device_id, void *), void *arg)
{
    struct db_rows q;
    enum mamori_err rc =
        db_query(s,
                 "SELECT device_id FROM device_groups WHERE grp=? ORDER BY device_id "
                 "LIMIT 100000",
                 DB_ARGS(db_text(group)), &q);
    if (rc)
        return rc;
    while (db_next(&q) && cb(db_col_str(&q.row, 0), arg))
        ;
    return db_done(&q);
}
