/*
 * lib/devstate.c - durable device flags and the command replay guard.
 */
#include "lib/devstate.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"

#define DEVSTATE_FLAGS 8

/* The flags are read on every telemetry send: they are kept in memory too,
 * loaded at open and changed only after their transaction committed. */
struct devstate {
    sqlite3 *db;
    size_t nflags;
    struct {
        char name[32];
        bool value;
    } flags[DEVSTATE_FLAGS];
};

static void cache_set(struct devstate *ds, const char *name, bool value)
{
    size_t i = 0;
    while (i < ds->nflags && strcmp(ds->flags[i].name, name) != 0)
        i++;
    if (i == ds->nflags) {
        if (ds->nflags == DEVSTATE_FLAGS || strlen(name) >= sizeof(ds->flags[i].name))
            return;
        snprintf(ds->flags[i].name, sizeof(ds->flags[i].name), "%s", name);
        ds->nflags++;
    }
    ds->flags[i].value = value;
}

static enum mamori_err cache_load(struct devstate *ds)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(ds->db, "SELECT name, value FROM flags", -1, &st, NULL) != SQLITE_OK)
        return MAMORI_ERR_DB;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *n = sqlite3_column_text(st, 0);
        if (n)
            cache_set(ds, (const char *)n, sqlite3_column_int(st, 1) != 0);
    }
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? MAMORI_OK : MAMORI_ERR_DB;
}

enum mamori_err devstate_open(const char *path, struct devstate **out)
{
    *out = NULL;
    struct devstate *ds = calloc(1, sizeof(*ds));
    if (!ds)
        return MAMORI_ERR_NOMEM;
    if (fs_create_private(path)) {
        free(ds);
        return MAMORI_ERR_IO;
    }
    if (sqlite3_open_v2(path, &ds->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(ds->db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA cache_size=-64;"
                     "PRAGMA secure_delete=ON;"
                     "CREATE TABLE IF NOT EXISTS flags(name TEXT PRIMARY KEY, value INTEGER);"
                     "CREATE TABLE IF NOT EXISTS seen(id TEXT PRIMARY KEY, exp INTEGER NOT NULL,"
                     "  status TEXT NOT NULL);",
                     NULL, NULL, NULL) != SQLITE_OK ||
        cache_load(ds) != MAMORI_OK) {
        devstate_close(ds);
        return MAMORI_ERR_DB;
    }
    *out = ds;
    return MAMORI_OK;
}

void devstate_close(struct devstate *ds)
{
    if (!ds)
        return;
    sqlite3_close(ds->db);
    free(ds);
}

bool devstate_flag(struct devstate *ds, const char *name)
{
    for (size_t i = 0; i < ds->nflags; i++)
        if (strcmp(ds->flags[i].name, name) == 0)
            return ds->flags[i].value;
    return false;
}

static int run(struct devstate *ds, const char *sql, const char *t1, int64_t i2, const char *t3)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(ds->db, sql, -1, &st, NULL) != SQLITE_OK)
        return SQLITE_ERROR;
    if (t1)
        sqlite3_bind_text(st, 1, t1, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, i2);
    if (t3)
        sqlite3_bind_text(st, 3, t3, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    return r;
}

bool devstate_seen(struct devstate *ds, const char *id, char prev_status[16])
{
    sqlite3_stmt *st;
    bool seen = false;
    prev_status[0] = '\0';
    if (sqlite3_prepare_v2(ds->db, "SELECT status FROM seen WHERE id=?", -1, &st, NULL) !=
        SQLITE_OK)
        return false;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        snprintf(prev_status, 16, "%s", t ? (const char *)t : "");
        seen = true;
    }
    sqlite3_finalize(st);
    return seen;
}

enum mamori_err devstate_accept(struct devstate *ds, const char *id, int64_t exp_ms, int64_t now_ms,
                                const char *status, const char *flag, bool value,
                                char prev_status[16])
{
    sqlite3_stmt *st;
    prev_status[0] = '\0';
    if (sqlite3_exec(ds->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return MAMORI_ERR_DB;
    enum mamori_err rc = MAMORI_OK;
    if (sqlite3_prepare_v2(ds->db, "SELECT status FROM seen WHERE id=?", -1, &st, NULL) !=
        SQLITE_OK) {
        rc = MAMORI_ERR_DB;
    } else {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) {
            const unsigned char *t = sqlite3_column_text(st, 0);
            snprintf(prev_status, 16, "%s", t ? (const char *)t : "");
            rc = MAMORI_ERR_EXISTS;
        }
        sqlite3_finalize(st);
    }
    /* Ids of expired commands can go: an expired command is refused anyway. */
    if (!rc &&
        run(ds, "DELETE FROM seen WHERE exp < ?2", NULL, now_ms - 3600 * 1000, NULL) != SQLITE_DONE)
        rc = MAMORI_ERR_DB;
    if (!rc && run(ds, "INSERT INTO seen(id,exp,status) VALUES(?1,?2,?3)", id, exp_ms, status) !=
                   SQLITE_DONE)
        rc = MAMORI_ERR_DB;
    if (!rc && flag &&
        run(ds, "INSERT OR REPLACE INTO flags(name,value) VALUES(?1,?2)", flag, value ? 1 : 0,
            NULL) != SQLITE_DONE)
        rc = MAMORI_ERR_DB;
    if (!rc && sqlite3_exec(ds->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = MAMORI_ERR_DB;
    if (rc)
        sqlite3_exec(ds->db, "ROLLBACK", NULL, NULL, NULL);
    else if (flag)
        cache_set(ds, flag, value);
    return rc;
}

enum mamori_err devstate_outcome(struct devstate *ds, const char *id, const char *status)
{
    /* ?2 is bound but unused: run() binds it always */
    return run(ds, "UPDATE seen SET status=?3 WHERE id=?1 AND ?2=0", id, 0, status) ==
                       SQLITE_DONE &&
                   sqlite3_changes(ds->db) == 1
               ? MAMORI_OK
               : MAMORI_ERR_NOTFOUND;
}
