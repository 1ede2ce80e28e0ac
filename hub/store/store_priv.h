/*
 * hub/store/store_priv.h - what the store's own files share.
 *
 * Included only by the .c files of hub/store/: the rest of the hub sees
 * store.h. The statement helpers below (store_db.c, over the engine's
 * struct db_driver: store_sqlite.c or store_pg.c) are the one place that
 * prepares, binds, steps and maps the engine's results to enum
 * mamori_err; the entity files (store_users.c, store_devices.c, ...) hold
 * SQL that both engines run and row layouts only.
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

struct pg_conn;   /* libpq's PGconn */
struct pg_result; /* libpq's PGresult */
struct db_rows;
struct db_row;
struct db_arg;

/* What a database engine gives the helpers below (store_sqlite.c,
 * store_pg.c). The helpers and the entity files are the same for both;
 * only SQL that differs between the engines is chosen per engine. */
struct db_driver {
    const char *name;
    /* runs sql with args (bound to ?1..?n) and makes its rows readable
     * with next; done gives its resources back */
    enum mamori_err (*query)(struct store *s, const char *sql, const struct db_arg *args, int n,
                             struct db_rows *q);
    bool (*next)(struct db_rows *q);
    enum mamori_err (*done)(struct db_rows *q);
    /* a statement without rows; *changes: rows changed; rowid non-NULL:
     * an INSERT, *rowid the new row's id */
    enum mamori_err (*exec)(struct store *s, const char *sql, const struct db_arg *args, int n,
                            int64_t *changes, int64_t *rowid);
    enum mamori_err (*script)(struct store *s, const char *sql);
    bool (*in_transaction)(struct store *s);
    const char *begin_sql;              /* the outermost transaction's BEGIN */
    size_t rows_max;                    /* tuples in one INSERT of many rows (db_rows_chunk) */
    void (*committed)(struct store *s); /* after the outermost COMMIT */
    enum mamori_err (*checkpoint)(struct store *s);
    void (*close)(struct store *s);
    int (*schema_version)(struct store *s); /* the last migration run; -1 on error */
    /* several hubs over one database (store_cluster.c); NULL: one hub only */
    const char *serialize_sql; /* within a transaction: waits for the others' to end */
    size_t (*notices)(struct store *s, store_notice_fn fn, void *arg);
    /* the current row's columns (db_col_*) */
    bool (*col_null)(const struct db_row *r, int col);
    int64_t (*col_int)(const struct db_row *r, int col);
    const char *(*col_str)(const struct db_row *r, int col, size_t *len);
    const void *(*col_blob)(const struct db_row *r, int col, size_t *len);
};

extern const struct db_driver db_sqlite_driver, db_pg_driver;

struct store {
    const struct db_driver *drv;
    int depth; /* transactions open (store_begin): the outermost, then savepoints */
    /* data was erased in the open transaction: once it commits, what the
     * engine still holds of the erased rows is cleared (the SQLite WAL) */
    bool erased;
    /* SQLite */
    sqlite3 *db;
    char *path;    /* the database file */
    sqlite3 *ckpt; /* store_checkpoint's own connection (its caller's thread) */
    struct store_stmt stmts[STORE_STMT_CACHE];
    uint64_t stmt_hits, stmt_prepared; /* statements reused, statements compiled */
    uint64_t session; /* grows whenever the connection is (re)opened (store_session) */
    /* PostgreSQL (store_pg.c) */
    struct pg_conn *pg;
    struct pg_cache *pg_cache; /* statements prepared on the connection */
};

/* A row being read: the engine's handle on it. */
struct db_row {
    struct store *s;
    sqlite3_stmt *st;      /* SQLite: the statement, stepped onto the row */
    struct pg_result *res; /* PostgreSQL: the query's result ... */
    int i;                 /* ... and the row's index in it */
    struct db_rows *q;     /* the query it is a row of */
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

/* A hash of a statement's text, for the engines' statement caches. */
size_t db_sql_hash(const char *sql);

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

/* Many rows in one statement: "HEAD VALUES (?,..),(?,..) TAIL", a chunk of
 * at most the engine's rows_max tuples at a time (a power of two, at most
 * DB_ROWS_MAX, so that few texts are prepared: the statement caches key on
 * the text). On PostgreSQL a batch then costs a round trip per chunk, not
 * per row; on SQLite, where a statement costs no round trip, a chunk is one
 * row (measured: 64-row statements cost a third more CPU per row there).
 * fill(i, ctx, args, scratch) gives the i-th row's cols arguments; they may
 * point into scratch, one of DB_ROWS_MAX elements of scratch_size bytes
 * the caller provides, kept until the chunk has run. */
#define DB_ROWS_MAX     64
#define DB_ROWS_COLS    10 /* columns of a row at most */
#define DB_ROWS_SQL_MAX 4096
typedef void (*db_row_args_fn)(size_t i, void *ctx, struct db_arg *args, void *scratch);
enum mamori_err db_insert_rows(struct store *s, const char *head, int cols, const char *tail,
                               size_t n, db_row_args_fn fill, void *ctx, void *scratch,
                               size_t scratch_size) MAMORI_MUST_CHECK;

/* --- rows ---------------------------------------------------------------- */

/* Copies the current row of st into out. */
typedef void (*db_fill_fn)(const struct db_row *r, void *out);

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
 *         ... &q.row is the row; break to stop early ...
 *     return db_done(&q);
 *
 * db_done finalizes the statement (call it exactly once after a successful
 * db_query) and says whether stepping failed. */
struct db_rows {
    struct store *s;
    struct db_row row;   /* the current row */
    int r;               /* SQLite: the last sqlite3_step result; PostgreSQL: rows in res */
    unsigned char *blob; /* PostgreSQL: the row's last bytea column, decoded */
};
enum mamori_err db_query(struct store *s, const char *sql, const struct db_arg *args, int n,
                         struct db_rows *q) MAMORI_MUST_CHECK;
bool db_next(struct db_rows *q);
enum mamori_err db_done(struct db_rows *q) MAMORI_MUST_CHECK;

/* --- the SQLite driver's own --------------------------------------------- */

/* SQLite only (store_sqlite.c, store_stmt.c). A statement for sql and binds args[0..n) to ?1..?n;
 * give it back with db_stmt_put (never sqlite3_finalize: it may be kept for the next call). */
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

/* --- columns ------------------------------------------------------------- */

bool db_col_null(const struct db_row *r, int col);
/* An integer column (NULL reads as 0). */
int64_t db_col_int(const struct db_row *r, int col);

/* Copies a text column into a fixed field (outlen bytes, truncated, always
 * terminated; NULL reads as ""). */
void db_col_text(const struct db_row *r, int col, char *out, size_t outlen);

/* A text column as the engine holds it (NULL stays NULL), valid until the
 * next row: for callbacks that receive the row's strings. */
const char *db_col_str(const struct db_row *r, int col);

/* A blob column's bytes (*len of them; NULL and 0 for NULL), valid until
 * the next row or the next blob column read. */
const void *db_col_blob(const struct db_row *r, int col, size_t *len);

/* Copies column 0 into a device id field (char[24]): for db_many. */
void db_fill_id(const struct db_row *r, void *out);

/* Opening either engine: fills s (its driver, connection, schema). */
enum mamori_err db_sqlite_open(struct store *s, const char *path) MAMORI_MUST_CHECK;
enum mamori_err db_pg_open(struct store *s, const char *conninfo) MAMORI_MUST_CHECK;
/* PostgreSQL's migrations (store_pg_schema.c): how many, and the SQL of
 * the one after version v (NULL past the last). */
int db_pg_migrations(void);
const char *db_pg_migration(int v);

/* --- shared between entity files ------------------------------------------ */

/* The device columns (device_rec order) with the owner's name. */
#define DEV_COLS                                                                                   \
    "d.id,d.model,d.state,coalesce(d.owner_id,0),coalesce(u.name,''),d.cert_fp,d.cert_serial,"     \
    "d.cert_not_after,d.created_at,d.updated_at,coalesce(d.claimed_at,0),coalesce(d.last_seen,0)," \
    "d.online,d.hb_interval,coalesce(d.cert_next_fp,''),coalesce(d.cert_rotated_at,0),"            \
    "coalesce(d.rotate_asked_at,0),coalesce(d.fw_version,'')"
#define DEV_FROM " FROM devices d LEFT JOIN users u ON u.id=d.owner_id "

/* A row of DEV_COLS into a struct device_rec (store_devices.c). */
void store_device_row(const struct db_row *r, void *out);
/* Hands each row of q (DEV_COLS) to cb until it answers false, then ends
 * q (db_done). */
enum mamori_err store_device_each(struct db_rows *q, bool (*cb)(const struct device_rec *, void *),
                                  void *arg) MAMORI_MUST_CHECK;

#endif
