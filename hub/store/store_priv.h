/*
 * hub/store/store_priv.h - what the SQLite store's own files share.
 *
 * Included only by the .c files of hub/store/: the rest of the hub sees
 * store.h. The statement helpers below are the one place that prepares,
 * binds, steps, finalizes and maps SQLite's results to enum mamori_err;
 * the entity files (store_users.c, store_devices.c, ...) hold SQL and row
 * layouts only.
 *
 * A statement's arguments are a small array of tagged values, bound to
 * ?1..?n in order:
 *
 *     return db_exec(s, "UPDATE devices SET state=?, updated_at=? WHERE id=?",
 *                    DB_ARGS(db_text(state), db_int(now), db_text(id)), NULL);
 *
 * Errors: a failed prepare or step is logged and returns MAMORI_ERR_DB; a
 * step refused by a constraint returns MAMORI_ERR_EXISTS; a statement given
 * fewer arguments than it has parameters is a bug (MAMORI_ERR_INTERNAL).
 * Arguments beyond its parameters are ignored, so one list can serve a
 * family of statements. Text arguments are copied when bound, so an
 * argument may point into the record a helper then fills (the out-parameter
 * convention of store.h is kept by these helpers: outputs are cleared after
 * binding, and again on any error).
 */
#ifndef MAMORI_HUB_STORE_PRIV_H
#define MAMORI_HUB_STORE_PRIV_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hub/store/store.h"

/* Prepared statements kept for reuse, keyed by their SQL text
 * (store_stmt.c). A power of two. */
#define STORE_STMT_CACHE 128

struct store_stmt {
    sqlite3_stmt *st;
    bool busy; /* handed out and not yet back */
};

struct store {
    sqlite3 *db;
    char *path;    /* the database file */
    sqlite3 *ckpt; /* store_checkpoint's own connection (its caller's thread) */
    int depth;     /* transactions open (store_begin): the outermost, then savepoints */
    /* data was erased in the open transaction: once it commits, the WAL,
     * which still holds the erased rows' earlier page images, is emptied */
    bool erased;
    struct store_stmt stmts[STORE_STMT_CACHE];
    uint64_t stmt_hits, stmt_prepared; /* statements reused, statements compiled */
};

/* --- arguments ----------------------------------------------------------- */

enum db_arg_type { DB_ARG_NULL, DB_ARG_INT, DB_ARG_TEXT, DB_ARG_BLOB };

struct db_arg {
    enum db_arg_type type;
    int64_t i;        /* DB_ARG_INT; DB_ARG_BLOB: its length */
    const char *text; /* DB_ARG_TEXT; DB_ARG_BLOB: its bytes */
};

/* Text (NULL binds SQL NULL). */
static inline struct db_arg db_text(const char *v)
{
    struct db_arg a = {v ? DB_ARG_TEXT : DB_ARG_NULL, 0, v};
    return a;
}

static inline struct db_arg db_int(int64_t v)
{
    struct db_arg a = {DB_ARG_INT, v, NULL};
    return a;
}

/* An unsigned 64-bit value, stored as SQLite's signed integer (bit pattern
 * kept, as sqlite3_bind_int64 of a cast always did). */
static inline struct db_arg db_u64(uint64_t v)
{
    return db_int((int64_t)v);
}

/* len bytes at p, copied when bound. */
static inline struct db_arg db_blob(const void *p, size_t len)
{
    struct db_arg a = {DB_ARG_BLOB, (int64_t)len, (const char *)p};
    return a;
}

static inline struct db_arg db_null(void)
{
    struct db_arg a = {DB_ARG_NULL, 0, NULL};
    return a;
}

/* The argument list of a helper call: the array and its length. */
#define DB_ARGS(...)                                                                               \
    (const struct db_arg[]){__VA_ARGS__},                                                          \
        (int)(sizeof((const struct db_arg[]){__VA_ARGS__}) / sizeof(struct db_arg))
#define DB_NO_ARGS NULL, 0

/* --- statements ---------------------------------------------------------- */

/* A statement for sql and binds args[0..n) to ?1..?n; give it back with
 * db_stmt_put (never sqlite3_finalize: it may be kept for the next call). */
enum mamori_err db_prepare(struct store *s, const char *sql, const struct db_arg *args, int n,
                           sqlite3_stmt **st) MAMORI_MUST_CHECK;

/* The statement cache (store_stmt.c): get a statement for sql (NULL when
 * SQLite refuses it, logged), put it back after use, finalize all kept
 * statements (before the connection closes). */
sqlite3_stmt *db_stmt_get(struct store *s, const char *sql);
void db_stmt_put(struct store *s, sqlite3_stmt *st);
void db_stmt_clear(struct store *s);

/* The error of a step result that is neither SQLITE_ROW nor SQLITE_DONE
 * (SQLITE_ROW too, for a statement expected to return none):
 * MAMORI_ERR_EXISTS for a constraint, else MAMORI_ERR_DB (logged). */
enum mamori_err db_err(struct store *s, int r);

/* Runs SQL text (several statements, no parameters): migrations, BEGIN. */
enum mamori_err db_script(struct store *s, const char *sql);

/* Runs a statement that returns no rows; *changes (may be NULL) gets the
 * number of rows it changed (0 on error). */
enum mamori_err db_exec(struct store *s, const char *sql, const struct db_arg *args, int n,
                        int64_t *changes) MAMORI_MUST_CHECK;

/* db_exec of a statement that must change exactly one row: if_not when it
 * changed another number (none: no such row, or not in the state asked). */
enum mamori_err db_exec_one(struct store *s, const char *sql, const struct db_arg *args, int n,
                            enum mamori_err if_not) MAMORI_MUST_CHECK;

/* db_exec of an INSERT; *rowid (may be NULL) gets the new row's id (0 on
 * error). */
enum mamori_err db_insert(struct store *s, const char *sql, const struct db_arg *args, int n,
                          int64_t *rowid) MAMORI_MUST_CHECK;

/* --- rows ---------------------------------------------------------------- */

/* Copies the current row of st into out. */
typedef void (*db_fill_fn)(sqlite3_stmt *st, void *out);

/* The first row of a query, copied by fill into out (size bytes);
 * MAMORI_ERR_NOTFOUND when there is none. out is all zero on any error. */
enum mamori_err db_one(struct store *s, const char *sql, const struct db_arg *args, int n,
                       db_fill_fn fill, void *out, size_t size) MAMORI_MUST_CHECK;

/* The first column of the first row as an integer (0 on any error; NULL
 * reads as 0); MAMORI_ERR_NOTFOUND when there is no row. */
enum mamori_err db_one_int(struct store *s, const char *sql, const struct db_arg *args, int n,
                           int64_t *out) MAMORI_MUST_CHECK;

/* The first column of the first row as text, copied into out (outlen bytes,
 * truncated; "" on any error); MAMORI_ERR_NOTFOUND when there is no row. */
enum mamori_err db_one_text(struct store *s, const char *sql, const struct db_arg *args, int n,
                            char *out, size_t outlen) MAMORI_MUST_CHECK;

/* The first column of the first row as malloc'd text (NULL on any error);
 * MAMORI_ERR_NOTFOUND when there is no row or the column is NULL. */
enum mamori_err db_one_dup(struct store *s, const char *sql, const struct db_arg *args, int n,
                           char **out) MAMORI_MUST_CHECK;

/* Up to max rows, each copied by fill into out[i] (elements of size
 * bytes); *count gets how many (0 on error). */
enum mamori_err db_many(struct store *s, const char *sql, const struct db_arg *args, int n,
                        db_fill_fn fill, void *out, size_t size, size_t max,
                        size_t *count) MAMORI_MUST_CHECK;

/* Iterating over the rows of a query:
 *
 *     struct db_rows q;
 *     if (db_query(s, sql, DB_ARGS(...), &q))
 *         return MAMORI_ERR_DB;
 *     while (db_next(&q))
 *         ... q.st is the row; break to stop early ...
 *     return db_done(&q);
 *
 * db_done finalizes the statement (call it exactly once after a successful
 * db_query) and says whether stepping failed. */
struct db_rows {
    struct store *s;
    sqlite3_stmt *st;
    int r; /* the last sqlite3_step result */
};
enum mamori_err db_query(struct store *s, const char *sql, const struct db_arg *args, int n,
                         struct db_rows *q) MAMORI_MUST_CHECK;
bool db_next(struct db_rows *q);
enum mamori_err db_done(struct db_rows *q) MAMORI_MUST_CHECK;

/* --- columns ------------------------------------------------------------- */

/* Copies a text column into a fixed field (outlen bytes, truncated, always
 * terminated; NULL reads as ""). */
void db_col_text(sqlite3_stmt *st, int col, char *out, size_t outlen);

/* A text column as SQLite holds it (NULL stays NULL), valid until the next
 * step: for callbacks that receive the row's strings. */
static inline const char *db_col_str(sqlite3_stmt *st, int col)
{
    return (const char *)sqlite3_column_text(st, col);
}

/* Copies column 0 into a device id field (char[24]): for db_many. */
void db_fill_id(sqlite3_stmt *st, void *out);

/* --- shared between entity files ------------------------------------------ */

/* The device columns (device_rec order) with the owner's name. */
#define DEV_COLS                                                                                   \
    "d.id,d.model,d.state,coalesce(d.owner_id,0),coalesce(u.name,''),d.cert_fp,d.cert_serial,"     \
    "d.cert_not_after,d.created_at,d.updated_at,coalesce(d.claimed_at,0),coalesce(d.last_seen,0)," \
    "d.online,d.hb_interval,coalesce(d.cert_next_fp,''),coalesce(d.cert_rotated_at,0),"            \
    "coalesce(d.rotate_asked_at,0),coalesce(d.fw_version,'')"
#define DEV_FROM " FROM devices d LEFT JOIN users u ON u.id=d.owner_id "

/* A row of DEV_COLS into a struct device_rec (store_devices.c). */
void store_device_row(sqlite3_stmt *st, void *out);

#endif
