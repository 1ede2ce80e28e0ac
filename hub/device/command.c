/*
 * hub/device/command.c - remote commands: signing, delivery, redelivery, results.
 *
 * A command is stored (pending) and audited before it is published, signed
 * with the command signer's key (common/cmd.h). A device that was offline
 * gets its pending commands again when it comes back, until they expire;
 * the device answers a command it already ran with a "replay" refusal that
 * carries the first outcome, which the hub records. Such a copy is often
 * not needed (the first reached the device just as it reconnected, or its
 * answer is still on its way), so the hub counts the copies it sends: the
 * device's "command_replayed" report of one of them is expected and raises
 * nothing; a report beyond the copies sent is a replay by someone else.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cmd.h"
#include "common/json.h"
#include "common/log.h"
#include "hub/device/command.h"
#include "hub/device/relay.h"

void cmd_publish(struct hub *h, const struct command_rec *r)
{
    struct cmd c = {.iat = r->issued_at, .exp = r->expires_at};
    char *msg = NULL;
    if (!cmd_type_parse(r->type, &c.type))
        return;
    snprintf(c.id, sizeof(c.id), "%s", r->id);
    snprintf(c.device, sizeof(c.device), "%s", r->device_id);
    snprintf(c.args, sizeof(c.args), "%s", r->args);
    if (cmd_build(&c, h->cmd_key, h->cmd_chain_pem, &msg) == MAMORI_OK)
        hub_send_device(h, r->device_id, msg, strlen(msg));
    else
        log_warn("command %s for %s could not be signed", r->id, r->device_id);
    free(msg);
}

/* The copies sent again, newest over oldest. A copy's refusal is expected
 * while the command waits for its answer (at most COPY_TTL_MS) and for
 * COPY_GRACE_MS after the answer is in (the device answers the first copy,
 * then refuses the next); later, a copy played again is a replay. */
enum { COPY_SLOTS = 512, COPY_TTL_MS = 10 * 60 * 1000, COPY_GRACE_MS = 15 * 1000 };
struct copy {
    char device[sizeof(((struct command_rec *)0)->device_id)];
    char cmd[sizeof(((struct command_rec *)0)->id)];
    int64_t until;    /* ms: expected no longer */
    unsigned pending; /* copies not yet reported as refused */
};
struct cmd_state {
    struct copy c[COPY_SLOTS];
    size_t next;
};

static struct copy *copy_find(struct cmd_state *s, const char *id, const char *cmd_id)
{
    int64_t now = hub_now_ms();
    for (size_t i = 0; s && i < COPY_SLOTS; i++)
        if (s->c[i].pending && now < s->c[i].until && strcmp(s->c[i].cmd, cmd_id) == 0 &&
            strcmp(s->c[i].device, id) == 0)
            return &s->c[i];
    return NULL;
}

static void copy_sent(struct hub *h, const struct command_rec *r)
{
    if (!h->cmd && !(h->cmd = calloc(1, sizeof(*h->cmd))))
        return;
    struct copy *c = copy_find(h->cmd, r->device_id, r->id);
    if (!c) {
        c = &h->cmd->c[h->cmd->next];
        h->cmd->next = (h->cmd->next + 1) % COPY_SLOTS;
        snprintf(c->device, sizeof(c->device), "%s", r->device_id);
        snprintf(c->cmd, sizeof(c->cmd), "%s", r->id);
        c->pending = 0;
    }
    c->pending++;
    c->until = hub_now_ms() + COPY_TTL_MS;
}

/* The command's answer is in: its copies are expected a little longer. */
static void copy_answered(struct hub *h, const char *id, const char *cmd_id)
{
    struct copy *c = copy_find(h->cmd, id, cmd_id);
    int64_t end = hub_now_ms() + COPY_GRACE_MS;
    if (c && c->until > end)
        c->until = end;
}

bool cmd_copy_expected(struct hub *h, const char *id, const char *cmd_id)
{
    struct copy *c = cmd_id ? copy_find(h->cmd, id, cmd_id) : NULL;
    if (!c)
        return false;
    c->pending--;
    return true;
}

void cmd_free(struct hub *h)
{
    free(h->cmd);
    h->cmd = NULL;
}

static bool resend_one(const struct command_rec *c, void *arg)
{
    log_info("device %s: sending pending command %s (%s) again", c->device_id, c->id, c->type);
    copy_sent(arg, c);
    cmd_publish(arg, c);
    return true;
}

void cmd_resend_pending(struct hub *h, const char *id)
{
    log_if_err(store_command_list(h->store, id, true, hub_now_ms(), 20, resend_one, h));
}

void cmd_result(struct hub *h, const char *id, json_t *body)
{
    const char *cid, *status, *error = "";
    struct command_rec c;
    if (!json_get_str(body, "cmd", 32, &cid) || !json_get_str(body, "status", 15, &status) ||
        store_command_get(h->store, cid, &c) || strcmp(c.device_id, id) != 0)
        return; /* not a command of ours for this device */
    (void)json_get_str(body, "error", 128, &error);
    json_t *detail = json_object_get(body, "detail");
    const char *first = NULL;
    /* A replay refusal of a command we are still waiting for means its
     * first answer was lost: take the outcome it reports. */
    if (strcmp(c.status, "pending") != 0)
        return; /* already answered */
    if (strcmp(status, "refused") == 0 && strcmp(error, "replay") == 0) {
        if (!json_get_str(detail, "first_outcome", 15, &first))
            return;
        status = first;
    }
    if (strcmp(status, "ok") && strcmp(status, "failed") && strcmp(status, "refused"))
        return;
    char *txt = json_dump_compact(body);
    bool done =
        store_command_finish(h->store, cid, status, txt ? txt : "{}", hub_now_ms()) == MAMORI_OK;
    if (done)
        copy_answered(h, id, cid);
    if (done && !relay_on_result(h, id, cid)) { /* a timed challenge leaves no trace */
        hub_event(h, id, "command_result", strcmp(status, "ok") ? "warning" : "info",
                  "{\"cmd\":\"%s\",\"type\":\"%s\",\"status\":\"%s\"}", cid, c.type, status);
        hub_command_result(h, &c, status, error, detail); /* by type: core/bus.h */
    }
    free(txt);
}
