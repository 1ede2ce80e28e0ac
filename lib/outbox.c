/*
 * lib/outbox.c - the device's persistent outbox (see outbox.h); T03-L3b, T04-L3a.
 */
#include "lib/outbox.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"

struct outbox {
    sqlite3 *db;
    size_t max;
    uint64_t count; /* rows, kept in step with the table */
    uint64_t next_seq[OUTBOX_NSTREAMS];
    uint64_t dropped_total, dropped_unrep, drop_first, drop_last;
    sqlite3_stmt *ins, *peek;
};

static const char *const META_SEQ[OUTBOX_NSTREAMS] = {"seq_tm", "seq_ev", "seq_log"};

static int exec(struct outbox *ob, const char *sql)
{
    return sqlite3_exec(ob->db, sql, NULL, NULL, NULL);
}

static enum mamori_err meta_get(struct outbox *ob, const char *k, uint64_t *v)
{
    sqlite3_stmt *st;
    *v = 0;
    if (sqlite3_prepare_v2(ob->db, "SELECT v FROM meta WHERE k=?", -1, &st, NULL) != SQLITE_OK)
        return MAMORI_ERR_DB;
    sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
        *v = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return r == SQLITE_ROW || r == SQLITE_DONE ? MAMORI_OK : MAMORI_ERR_DB;
}

static enum mamori_err meta_set(struct outbox *ob, const char *k, uint64_t v)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(ob->db, "INSERT OR REPLACE INTO meta(k,v) VALUES(?,?)", -1, &st, NULL) !=
        SQLITE_OK)
        return MAMORI_ERR_DB;
    sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)v);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? MAMORI_OK : MAMORI_ERR_DB;
}

/* Reloads the cached counters from the database (at open, after a failed
 * transaction). */
static enum mamori_err load(struct outbox *ob)
{
    sqlite3_stmt *st;
    for (int s = 0; s < OUTBOX_NSTREAMS; s++)
        if (meta_get(ob, META_SEQ[s], &ob->next_seq[s]))
            return MAMORI_ERR_DB;
    if (meta_get(ob, "dropped_total", &ob->dropped_total) ||
        meta_get(ob, "dropped_unrep", &ob->dropped_unrep) ||
        meta_get(ob, "drop_first", &ob->drop_first) || meta_get(ob, "drop_last", &ob->drop_last))
        return MAMORI_ERR_DB;
    for (int s = 0; s < OUTBOX_NSTREAMS; s++)
        if (ob->next_seq[s] == 0)
            ob->next_seq[s] = 1;
    if (sqlite3_prepare_v2(ob->db, "SELECT count(*) FROM msg", -1, &st, NULL) != SQLITE_OK)
        return MAMORI_ERR_DB;
    if (sqlite3_step(st) == SQLITE_ROW)
        ob->count = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return MAMORI_OK;
}

enum mamori_err outbox_open(const char *path, size_t max_msgs, const char *vfs, struct outbox **out)
{
    *out = NULL;
    struct outbox *ob = calloc(1, sizeof(*ob));
    if (!ob)
        return MAMORI_ERR_NOMEM;
    ob->max = max_msgs ? max_msgs : OUTBOX_DEFAULT_MAX;
    if (fs_create_private(path)) {
        free(ob);
        return MAMORI_ERR_IO;
    }
    if (sqlite3_open_v2(path, &ob->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, vfs) !=
        SQLITE_OK)
        goto fail;
    sqlite3_busy_timeout(ob->db, 2000);
    /* WAL + FULL: a commit is synced before it returns. A small page cache
     * keeps the device's memory low. */
    if (exec(ob, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA cache_size=-256;"
                 "PRAGMA secure_delete=ON;"
                 "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL);"
                 /* AUTOINCREMENT: an id is never reused, even after the
                  * table was emptied; the sender's cursor depends on it. */
                 "CREATE TABLE IF NOT EXISTS msg(id INTEGER PRIMARY KEY AUTOINCREMENT,"
                 "  stream INTEGER NOT NULL,"
                 "  seq INTEGER NOT NULL, payload BLOB NOT NULL);"
                 "CREATE INDEX IF NOT EXISTS msg_stream ON msg(stream, seq);") != SQLITE_OK)
        goto fail;
    if (sqlite3_prepare_v2(ob->db, "INSERT INTO msg(stream,seq,payload) VALUES(?,?,?)", -1,
                           &ob->ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(ob->db,
                           "SELECT id,stream,seq,payload FROM msg WHERE id>? ORDER BY id LIMIT ?",
                           -1, &ob->peek, NULL) != SQLITE_OK)
        goto fail;
    if (load(ob))
        goto fail;
    *out = ob;
    return MAMORI_OK;
fail:
    outbox_close(ob);
    return MAMORI_ERR_DB;
}

void outbox_close(struct outbox *ob)
{
    if (!ob)
        return;
    sqlite3_finalize(ob->ins);
    sqlite3_finalize(ob->peek);
    sqlite3_close(ob->db);
    free(ob);
}

/* Deletes up to k of the oldest telemetry rows; returns how many went. */
static enum mamori_err drop_oldest(struct outbox *ob, uint64_t k, uint64_t *dropped)
{
    sqlite3_stmt *st;
    *dropped = 0;
    if (sqlite3_prepare_v2(ob->db,
                           "SELECT min(seq), max(seq), count(*) FROM (SELECT seq FROM msg "
                           "WHERE stream=0 ORDER BY seq LIMIT ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)k);
    uint64_t lo = 0, hi = 0, n = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        lo = (uint64_t)sqlite3_column_int64(st, 0);
        hi = (uint64_t)sqlite3_column_int64(st, 1);
        n = (uint64_t)sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    if (n == 0)
        return MAMORI_OK;
    if (sqlite3_prepare_v2(ob->db, "DELETE FROM msg WHERE stream=0 AND seq<=?", -1, &st, NULL) !=
        SQLITE_OK)
        return MAMORI_ERR_DB;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)hi);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    if (r != SQLITE_DONE)
        return MAMORI_ERR_DB;
    *dropped = (uint64_t)sqlite3_changes(ob->db);
    if (ob->dropped_unrep == 0)
        ob->drop_first = lo;
    ob->drop_last = hi;
    ob->dropped_unrep += *dropped;
    ob->dropped_total += *dropped;
    return MAMORI_OK;
}

static enum mamori_err save_drops(struct outbox *ob)
{
    if (meta_set(ob, "dropped_total", ob->dropped_total) ||
        meta_set(ob, "dropped_unrep", ob->dropped_unrep) ||
        meta_set(ob, "drop_first", ob->drop_first) || meta_set(ob, "drop_last", ob->drop_last))
        return MAMORI_ERR_DB;
    return MAMORI_OK;
}

static enum mamori_err insert(struct outbox *ob, enum outbox_stream s, const char *body,
                              uint64_t ts_ms)
{
    size_t blen = strlen(body);
    if (blen > OUTBOX_BODY_MAX)
        return MAMORI_ERR_TOOBIG;
    char env[OUTBOX_BODY_MAX + 96];
    int n = snprintf(env, sizeof(env), "{\"v\":1,\"seq\":%llu,\"ts\":%llu,\"body\":%s}",
                     (unsigned long long)ob->next_seq[s], (unsigned long long)ts_ms, body);
    if (n < 0 || (size_t)n >= sizeof(env))
        return MAMORI_ERR_TOOBIG;
    sqlite3_reset(ob->ins);
    sqlite3_bind_int(ob->ins, 1, (int)s);
    sqlite3_bind_int64(ob->ins, 2, (sqlite3_int64)ob->next_seq[s]);
    sqlite3_bind_blob(ob->ins, 3, env, n, SQLITE_TRANSIENT);
    if (sqlite3_step(ob->ins) != SQLITE_DONE)
        return MAMORI_ERR_DB;
    ob->next_seq[s]++;
    ob->count++;
    return MAMORI_OK;
}

static enum mamori_err commit_or_reload(struct outbox *ob, enum mamori_err rc)
{
    if (!rc && exec(ob, "COMMIT") != SQLITE_OK)
        rc = MAMORI_ERR_DB;
    if (rc) {
        exec(ob, "ROLLBACK");
        enum mamori_err lr = load(ob);
        (void)lr; /* the error that matters is rc */
    }
    return rc;
}

enum mamori_err outbox_put(struct outbox *ob, enum outbox_stream s, const char *const *bodies,
                           size_t n, uint64_t ts_ms, uint64_t *first_seq)
{
    if ((unsigned)s >= OUTBOX_NSTREAMS || n == 0 || n > ob->max)
        return MAMORI_ERR_INVAL;
    uint64_t hard = s == OUTBOX_TM ? ob->max : ob->max * 2;
    if (exec(ob, "BEGIN IMMEDIATE") != SQLITE_OK)
        return MAMORI_ERR_DB;
    enum mamori_err rc = MAMORI_OK;
    if (ob->count + n > ob->max) {
        uint64_t dropped = 0;
        rc = drop_oldest(ob, ob->count + n - ob->max, &dropped);
        ob->count -= dropped;
        if (!rc && dropped)
            rc = save_drops(ob);
    }
    if (!rc && ob->count + n > hard)
        rc = MAMORI_ERR_TOOBIG; /* only security records left: never dropped */
    if (first_seq)
        *first_seq = ob->next_seq[s];
    for (size_t i = 0; i < n && !rc; i++)
        rc = insert(ob, s, bodies[i], ts_ms);
    if (!rc)
        rc = meta_set(ob, META_SEQ[s], ob->next_seq[s]);
    return commit_or_reload(ob, rc);
}

enum mamori_err outbox_peek(struct outbox *ob, int64_t after_id, size_t max, outbox_cb cb,
                            void *arg)
{
    sqlite3_reset(ob->peek);
    sqlite3_bind_int64(ob->peek, 1, after_id);
    sqlite3_bind_int64(ob->peek, 2, (sqlite3_int64)max);
    int r;
    while ((r = sqlite3_step(ob->peek)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(ob->peek, 0);
        int st = sqlite3_column_int(ob->peek, 1);
        uint64_t seq = (uint64_t)sqlite3_column_int64(ob->peek, 2);
        const void *p = sqlite3_column_blob(ob->peek, 3);
        size_t len = (size_t)sqlite3_column_bytes(ob->peek, 3);
        if (st < 0 || st >= OUTBOX_NSTREAMS)
            continue;
        if (!cb(id, (enum outbox_stream)st, seq, p, len, arg))
            break;
    }
    sqlite3_reset(ob->peek);
    return r == SQLITE_ROW || r == SQLITE_DONE ? MAMORI_OK : MAMORI_ERR_DB;
}

enum mamori_err outbox_ack(struct outbox *ob, enum outbox_stream s, uint64_t seq)
{
    sqlite3_stmt *st;
    if ((unsigned)s >= OUTBOX_NSTREAMS)
        return MAMORI_ERR_INVAL;
    if (sqlite3_prepare_v2(ob->db, "DELETE FROM msg WHERE stream=? AND seq<=?", -1, &st, NULL) !=
        SQLITE_OK)
        return MAMORI_ERR_DB;
    sqlite3_bind_int(st, 1, (int)s);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    if (r != SQLITE_DONE)
        return MAMORI_ERR_DB;
    uint64_t gone = (uint64_t)sqlite3_changes(ob->db);
    ob->count = gone > ob->count ? 0 : ob->count - gone;
    return MAMORI_OK;
}

enum mamori_err outbox_stats(struct outbox *ob, struct outbox_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->queued = ob->count;
    memcpy(out->next_seq, ob->next_seq, sizeof(out->next_seq));
    out->dropped_total = ob->dropped_total;
    out->dropped_unreported = ob->dropped_unrep;
    out->dropped_first_seq = ob->drop_first;
    out->dropped_last_seq = ob->drop_last;
    return MAMORI_OK;
}

enum mamori_err outbox_report_drops(struct outbox *ob, uint64_t ts_ms, bool *queued)
{
    *queued = false;
    if (ob->dropped_unrep == 0)
        return MAMORI_OK;
    char body[192];
    snprintf(body, sizeof(body),
             "{\"type\":\"outbox_dropped\",\"count\":%llu,\"first_seq\":%llu,\"last_seq\":%llu}",
             (unsigned long long)ob->dropped_unrep, (unsigned long long)ob->drop_first,
             (unsigned long long)ob->drop_last);
    if (exec(ob, "BEGIN IMMEDIATE") != SQLITE_OK)
        return MAMORI_ERR_DB;
    enum mamori_err rc = insert(ob, OUTBOX_EV, body, ts_ms);
    if (!rc)
        rc = meta_set(ob, META_SEQ[OUTBOX_EV], ob->next_seq[OUTBOX_EV]);
    if (!rc) {
        ob->dropped_unrep = ob->drop_first = ob->drop_last = 0;
        rc = save_drops(ob);
    }
    rc = commit_or_reload(ob, rc);
    *queued = rc == MAMORI_OK;
    return rc;
}
