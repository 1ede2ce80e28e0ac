/*
 * hub/store/store_events.c - events: what the hub observed of a device or
 * the fleet (alerts and observations), in the order recorded.
 *
 * Their retention is in store_telemetry.c, their erasure with a device's
 * data in store_sqlite.c.
 */
#include <string.h>

#include "hub/store/store_priv.h"

enum mamori_err store_event_add(struct store *s, int64_t ts, const char *device_id,
                                const char *kind, const char *severity, const char *detail)
{
    return db_exec(s, "INSERT INTO events(ts,device_id,kind,severity,detail) VALUES(?,?,?,?,?)",
                   DB_ARGS(db_int(ts), db_text(device_id), db_text(kind), db_text(severity),
                           db_text(detail ? detail : "")),
                   NULL);
}

static void event_row(const struct db_row *st, struct event_rec *e)
{
    memset(e, 0, sizeof(*e));
    e->id = db_col_int(st, 0);
    e->ts = db_col_int(st, 1);
    db_col_text(st, 2, e->device_id, sizeof(e->device_id));
    db_col_text(st, 3, e->kind, sizeof(e->kind));
    db_col_text(st, 4, e->severity, sizeof(e->severity));
    db_col_text(st, 5, e->detail, sizeof(e->detail));
}

enum mamori_err store_event_list(struct store *s, const char *device_id, int64_t owner_id,
                                 int64_t after, int limit,
                                 bool (*cb)(const struct event_rec *, void *), void *arg)
{
    struct db_rows q;
    enum mamori_err rc = db_query(
        s,
        "SELECT e.id,e.ts,coalesce(e.device_id,''),e.kind,e.severity,e.detail FROM events e "
        "LEFT JOIN devices d ON d.id=e.device_id WHERE e.id>?1 "
        "AND (?2 IS NULL OR e.device_id=?2) AND (?3=0 OR d.owner_id=?3) "
        "ORDER BY e.id LIMIT ?4",
        DB_ARGS(db_int(after), db_text(device_id), db_int(owner_id), db_int(limit)), &q);
    if (rc)
        return rc;
    struct event_rec e;
    while (db_next(&q)) {
        event_row(&q.row, &e);
        if (!cb(&e, arg))
            break;
    }
    return db_done(&q);
}
