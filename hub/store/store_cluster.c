/*
 * hub/store/store_cluster.c - several hubs over one database: leases and
 * notices (store.h). On PostgreSQL a lease is a session-level advisory
 * lock in its two-key form, and a notice is NOTIFY; SQLite has one hub.
 */
#include <stdio.h>
#include <string.h>

#include "hub/store/store_priv.h"

bool store_shared(const struct store *s)
{
    return s->drv->notices != NULL;
}

uint64_t store_session(const struct store *s)
{
    return s->session;
}

static bool key_ok(int space, int key)
{
    return space >= 0 && key >= 0;
}

enum mamori_err store_lease_take(struct store *s, int space, int key, bool shared, bool *got)
{
    *got = false;
    if (!key_ok(space, key))
        return MAMORI_ERR_INVAL;
    if (!store_shared(s)) {
        *got = true;
        return MAMORI_OK;
    }
    int64_t v = 0;
    enum mamori_err rc =
        db_one_int(s,
                   shared ? "SELECT CASE WHEN pg_try_advisory_lock_shared(CAST(?1 AS integer), "
                            "CAST(?2 AS integer)) THEN 1 ELSE 0 END"
                          : "SELECT CASE WHEN pg_try_advisory_lock(CAST(?1 AS integer), "
                            "CAST(?2 AS integer)) THEN 1 ELSE 0 END",
                   DB_ARGS(db_int(space), db_int(key)), &v);
    *got = !rc && v == 1;
    return rc;
}

enum mamori_err store_lease_drop(struct store *s, int space, int key)
{
    if (!key_ok(space, key))
        return MAMORI_ERR_INVAL;
    if (!store_shared(s))
        return MAMORI_OK;
    int64_t v = 0;
    enum mamori_err rc = db_one_int(s,
                                    "SELECT CASE WHEN pg_advisory_unlock(CAST(?1 AS integer), "
                                    "CAST(?2 AS integer)) THEN 1 ELSE 0 END",
                                    DB_ARGS(db_int(space), db_int(key)), &v);
    return rc ? rc : v == 1 ? MAMORI_OK : MAMORI_ERR_NOTFOUND;
}

enum mamori_err store_lease_holders(struct store *s, int space, int key, int64_t *n)
{
    *n = 0;
    if (!key_ok(space, key))
        return MAMORI_ERR_INVAL;
    if (!store_shared(s)) {
        *n = 1;
        return MAMORI_OK;
    }
    /* the two-key form: classid, objid, objsubid 2 (PostgreSQL's pg_locks) */
    return db_one_int(s,
                      "SELECT count(*) FROM pg_locks WHERE locktype='advisory' AND granted "
                      "AND objsubid=2 AND classid::bigint=?1 AND objid::bigint=?2 AND "
                      "database=(SELECT oid FROM pg_database WHERE datname=current_database())",
                      DB_ARGS(db_int(space), db_int(key)), n);
}

static bool channel_ok(const char *c)
{
    size_t n = strlen(c);
    return n > 0 && n < 64 && strspn(c, "abcdefghijklmnopqrstuvwxyz_") == n;
}

enum mamori_err store_listen(struct store *s, const char *channel)
{
    if (!channel_ok(channel))
        return MAMORI_ERR_INVAL;
    if (!store_shared(s))
        return MAMORI_OK;
    char sql[96];
    snprintf(sql, sizeof(sql), "LISTEN %s", channel); /* a name: no parameter for it */
    return db_script(s, sql);
}

enum mamori_err store_notify(struct store *s, const char *channel, const char *payload)
{
    if (!channel_ok(channel) || strlen(payload) > STORE_NOTICE_MAX)
        return MAMORI_ERR_INVAL;
    if (!store_shared(s))
        return MAMORI_OK;
    return db_exec(s, "SELECT pg_notify(?1, ?2)", DB_ARGS(db_text(channel), db_text(payload)),
                   NULL);
}

size_t store_notices(struct store *s, store_notice_fn fn, void *arg)
{
    return s->drv->notices ? s->drv->notices(s, fn, arg) : 0;
}
