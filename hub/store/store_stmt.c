/*
 * hub/store/store_stmt.c - prepared statements kept for reuse (store_priv.h).
 *
 * Preparing is most of what a short statement costs: the ingest path runs
 * the same few INSERTs and UPSERTs for every message of every batch, and
 * compiling them each time took a fifth of the hub's CPU under load. A
 * statement is therefore kept after its first use, keyed by its SQL text
 * (compared in full, so a text built at run time is never mistaken for
 * another), and reset rather than finalized when its caller is done.
 *
 * A slot in use is busy: a nested query of the same text (a loop over rows
 * that runs the same query inside) gets its own statement, finalized after
 * use. The cache is open-addressed over a short probe run; when every slot
 * of the run is taken, an idle one is replaced. A statement is reset
 * before it goes back, so a kept statement never holds a read transaction
 * or a lock. Like the connection, the cache is used under the store's
 * caller's lock (SQLITE_OPEN_NOMUTEX).
 */
#include <string.h>

#include "common/log.h"
#include "hub/store/store_priv.h"

#define PROBE 4

static bool whole(const char *tail)
{
    while (tail && (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == ';'))
        tail++;
    return tail && *tail == '\0';
}

/* A statement for sql, from the cache or newly prepared (and kept when a
 * slot is free); NULL when SQLite refuses the text. */
sqlite3_stmt *db_stmt_get(struct store *s, const char *sql)
{
    size_t first = (db_sql_hash(sql) & (STORE_STMT_CACHE - 1));
    struct store_stmt *spare = NULL;
    for (size_t i = 0; i < PROBE; i++) {
        struct store_stmt *c = &s->stmts[(first + i) & (STORE_STMT_CACHE - 1)];
        if (c->st && !c->busy && strcmp(sqlite3_sql(c->st), sql) == 0) {
            c->busy = true;
            s->stmt_hits++;
            return c->st;
        }
        if (!spare && !c->st)
            spare = c;
    }
    for (size_t i = 0; !spare && i < PROBE; i++) {
        struct store_stmt *c = &s->stmts[(first + i) & (STORE_STMT_CACHE - 1)];
        if (!c->busy)
            spare = c; /* an idle statement of another text makes room */
    }
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    if (sqlite3_prepare_v3(s->db, sql, -1, spare ? SQLITE_PREPARE_PERSISTENT : 0, &st, &tail) !=
        SQLITE_OK) {
        log_err("sqlite prepare: %s", sqlite3_errmsg(s->db));
        sqlite3_finalize(st);
        return NULL;
    }
    s->stmt_prepared++;
    if (spare && st && whole(tail)) {
        sqlite3_finalize(spare->st);
        spare->st = st;
        spare->busy = true;
    }
    return st;
}

/* Hands st back: reset (its bindings cleared) when the cache keeps it,
 * finalized otherwise. */
void db_stmt_put(struct store *s, sqlite3_stmt *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < STORE_STMT_CACHE; i++) {
        if (s->stmts[i].st == st) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            s->stmts[i].busy = false;
            return;
        }
    }
    sqlite3_finalize(st);
}

void db_stmt_clear(struct store *s)
{
    for (size_t i = 0; i < STORE_STMT_CACHE; i++) {
        sqlite3_finalize(s->stmts[i].st);
        s->stmts[i].st = NULL;
        s->stmts[i].busy = false;
    }
}
