/*
 * hub/store/store_commands.c - remote commands (hub/device/command.c): issued,
 * finished with the device's result, listed, withdrawn.
 *
 * The download tokens of update commands are in store_firmware.c.
 */
#include <string.h>

#include "hub/store/store_priv.h"

#define CMD_COLS "id,device_id,type,args,issued_by,issued_at,expires_at,status,result,updated_at"

static void cmd_row(const struct db_row *st, void *out)
{
    struct command_rec *c = out;
    memset(c, 0, sizeof(*c));
    db_col_text(st, 0, c->id, sizeof(c->id));
    db_col_text(st, 1, c->device_id, sizeof(c->device_id));
    db_col_text(st, 2, c->type, sizeof(c->type));
    db_col_text(st, 3, c->args, sizeof(c->args));
    db_col_text(st, 4, c->issued_by, sizeof(c->issued_by));
    c->issued_at = db_col_int(st, 5);
    c->expires_at = db_col_int(st, 6);
    db_col_text(st, 7, c->status, sizeof(c->status));
    db_col_text(st, 8, c->result, sizeof(c->result));
    c->updated_at = db_col_int(st, 9);
}

enum mamori_err store_command_add(struct store *s, const struct command_rec *c)
{
    return db_exec(s, "INSERT INTO commands(" CMD_COLS ") VALUES(?,?,?,?,?,?,?,?,?,?)",
                   DB_ARGS(db_text(c->id), db_text(c->device_id), db_text(c->type),
                           db_text(c->args), db_text(c->issued_by), db_int(c->issued_at),
                           db_int(c->expires_at), db_text(c->status), db_text(c->result),
                           db_int(c->updated_at)),
                   NULL);
}

enum mamori_err store_command_get(struct store *s, const char *id, struct command_rec *out)
{
    return db_one(s, "SELECT " CMD_COLS " FROM commands WHERE id=?", DB_ARGS(db_text(id)), cmd_row,
                  out, sizeof(*out));
}

enum mamori_err store_command_finish(struct store *s, const char *id, const char *status,
                                     const char *result, int64_t now)
{
    return db_exec_one(s, "UPDATE commands SET status=?, result=?, updated_at=? WHERE id=?",
                       DB_ARGS(db_text(status), db_text(result), db_int(now), db_text(id)),
                       MAMORI_ERR_NOTFOUND);
}

enum mamori_err store_command_list(struct store *s, const char *device_id, bool pending_only,
                                   int64_t now, int limit,
                                   bool (*cb)(const struct command_rec *, void *), void *arg)
{
    struct db_rows q;
    enum mamori_err rc = db_query(
        s,
        "SELECT " CMD_COLS " FROM commands WHERE device_id=?1 "
        "AND (?2=0 OR (status='pending' AND expires_at>?3)) "
        "ORDER BY issued_at DESC, id LIMIT ?4",
        DB_ARGS(db_text(device_id), db_int(pending_only ? 1 : 0), db_int(now), db_int(limit)), &q);
    if (rc)
        return rc;
    struct command_rec c;
    while (db_next(&q)) {
        cmd_row(&q.row, &c);
        if (!cb(&c, arg))
            break;
    }
    return db_done(&q);
}

enum mamori_err store_command_delete(struct store *s, const char *id)
{
    return db_exec(s, "DELETE FROM commands WHERE id=?", DB_ARGS(db_text(id)), NULL);
}
