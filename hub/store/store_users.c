/*
 * hub/store/store_users.c - accounts, sessions and login throttles.
 *
 * An account's deletion (which reaches its sessions, exports, transfers
 * and throttles) is in store_sqlite.c.
 */
#include <string.h>

#include "hub/store/store_priv.h"

const char *store_role_name(enum store_role r)
{
    switch (r) {
    case ROLE_ADMIN:
        return "admin";
    case ROLE_OPERATOR:
        return "operator";
    case ROLE_OWNER:
        return "owner";
    }
    return "?";
}

bool store_role_parse(const char *v, enum store_role *out)
{
    for (int r = ROLE_ADMIN; r <= ROLE_OWNER; r++) {
        if (strcmp(v, store_role_name((enum store_role)r)) == 0) {
            *out = (enum store_role)r;
            return true;
        }
    }
    return false;
}

enum mamori_err store_user_add(struct store *s, const char *name, enum store_role role,
                               const char *pwhash, int64_t now, int64_t *id_out)
{
    return db_insert(
        s, "INSERT INTO users(name,role,pwhash,created_at) VALUES(?,?,?,?)",
        DB_ARGS(db_text(name), db_text(store_role_name(role)), db_text(pwhash), db_int(now)),
        id_out);
}

#define USER_COLS "id,name,role,pwhash,created_at"

static void user_row(const struct db_row *st, void *out)
{
    struct user_rec *u = out;
    char role[16];
    memset(u, 0, sizeof(*u));
    u->id = db_col_int(st, 0);
    db_col_text(st, 1, u->name, sizeof(u->name));
    db_col_text(st, 2, role, sizeof(role));
    if (!store_role_parse(role, &u->role))
        u->role = ROLE_OWNER; /* CHECK constraint makes this unreachable */
    db_col_text(st, 3, u->pwhash, sizeof(u->pwhash));
    u->created_at = db_col_int(st, 4);
}

enum mamori_err store_user_get(struct store *s, const char *name, struct user_rec *out)
{
    return db_one(s, "SELECT " USER_COLS " FROM users WHERE name=?", DB_ARGS(db_text(name)),
                  user_row, out, sizeof(*out));
}

enum mamori_err store_user_by_id(struct store *s, int64_t id, struct user_rec *out)
{
    return db_one(s, "SELECT " USER_COLS " FROM users WHERE id=?", DB_ARGS(db_int(id)), user_row,
                  out, sizeof(*out));
}

enum mamori_err store_user_list(struct store *s, bool (*cb)(const struct user_rec *, void *),
                                void *arg)
{
    struct db_rows q;
    enum mamori_err rc =
        db_query(s, "SELECT " USER_COLS " FROM users ORDER BY name", DB_NO_ARGS, &q);
    if (rc)
        return rc;
    struct user_rec u;
    while (db_next(&q)) {
        user_row(&q.row, &u);
        bool more = cb(&u, arg);
        memset(u.pwhash, 0, sizeof(u.pwhash));
        if (!more)
            break;
    }
    return db_done(&q);
}

int64_t store_user_count(struct store *s)
{
    int64_t n;
    return db_one_int(s, "SELECT count(*) FROM users", DB_NO_ARGS, &n) ? -1 : n;
}

enum mamori_err store_user_seen(struct store *s, int64_t id, int64_t now)
{
    return db_exec(s, "UPDATE users SET last_login=? WHERE id=?", DB_ARGS(db_int(now), db_int(id)),
                   NULL);
}

bool store_name_retired(struct store *s, const char *name)
{
    return store_scalar(s, "SELECT count(*) FROM retired_names WHERE name=?1", name) != 0;
}

/* --- sessions -------------------------------------------------------------- */

enum mamori_err store_session_add(struct store *s, const char *token_hash, int64_t user_id,
                                  int64_t now, int64_t expires)
{
    return db_exec(
        s, "INSERT INTO sessions(token_hash,user_id,created_at,expires_at) VALUES(?,?,?,?)",
        DB_ARGS(db_text(token_hash), db_int(user_id), db_int(now), db_int(expires)), NULL);
}

enum mamori_err store_session_get(struct store *s, const char *token_hash, int64_t now,
                                  int64_t *user_id)
{
    enum mamori_err rc =
        db_one_int(s, "SELECT user_id FROM sessions WHERE token_hash=? AND expires_at>?",
                   DB_ARGS(db_text(token_hash), db_int(now)), user_id);
    return rc == MAMORI_ERR_NOTFOUND ? MAMORI_ERR_AUTH : rc;
}

enum mamori_err store_session_del(struct store *s, const char *token_hash)
{
    return db_exec(s, "DELETE FROM sessions WHERE token_hash=?", DB_ARGS(db_text(token_hash)),
                   NULL);
}

enum mamori_err store_session_purge(struct store *s, int64_t now)
{
    return db_exec(s, "DELETE FROM sessions WHERE expires_at<=?", DB_ARGS(db_int(now)), NULL);
}

/* --- throttles ------------------------------------------------------------- */

static void throttle_row(const struct db_row *st, void *out)
{
    struct throttle_rec *t = out;
    t->failed = (int)db_col_int(st, 0);
    t->next_try_at = db_col_int(st, 1);
    t->locked_until = db_col_int(st, 2);
}

enum mamori_err store_throttle_get(struct store *s, const char *key, struct throttle_rec *out)
{
    enum mamori_err rc =
        db_one(s, "SELECT failed,next_try_at,locked_until FROM throttle WHERE key=?",
               DB_ARGS(db_text(key)), throttle_row, out, sizeof(*out));
    return rc == MAMORI_ERR_NOTFOUND ? MAMORI_OK : rc; /* none yet: all zero */
}

enum mamori_err store_throttle_set(struct store *s, const char *key, const struct throttle_rec *t)
{
    return db_exec(
        s,
        "INSERT INTO throttle(key,failed,next_try_at,locked_until) VALUES(?,?,?,?) "
        "ON CONFLICT(key) DO UPDATE SET failed=excluded.failed,"
        "next_try_at=excluded.next_try_at,locked_until=excluded.locked_until",
        DB_ARGS(db_text(key), db_int(t->failed), db_int(t->next_try_at), db_int(t->locked_until)),
        NULL);
}

enum mamori_err store_throttle_clear(struct store *s, const char *key)
{
    return db_exec(s, "DELETE FROM throttle WHERE key=?", DB_ARGS(db_text(key)), NULL);
}
