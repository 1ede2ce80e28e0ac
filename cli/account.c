/*
 * cli/account.c - mamorictl's commands for people: the first
 * administrator, sessions, users, claiming a device, ownership transfer and
 * data rights (docs/owners.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/crypto.h"
#include "common/fsutil.h"

int cmd_bootstrap(const struct cli *c)
{
    const struct opts *o = &c->o;
    char tok[128], pw[300], tf[4096];
    if (!o->user)
        return cli_usage();
    const char *file = o->token_file;
    if (!file && c->data && !fs_path(tf, sizeof(tf), c->data, "bootstrap-token"))
        file = tf;
    if (!cli_read_secret(file, "MAMORI_BOOTSTRAP_TOKEN", "bootstrap token: ", tok, sizeof(tok)) ||
        !cli_read_secret(o->password_file, "MAMORI_PASSWORD", "new admin password: ", pw,
                         sizeof(pw)))
        return cli_die("need the bootstrap token and a password");
    int ret = api_call_print(
        &c->a, "POST", "bootstrap",
        json_pack("{s:s,s:s,s:s}", "token", tok, "username", o->user, "password", pw));
    crypto_wipe(tok, sizeof(tok));
    crypto_wipe(pw, sizeof(pw));
    return ret;
}

/* The session token of a successful login goes to the session file. */
static int save_session(const struct cli *c, json_t *resp)
{
    char sp[4096], dir[4096];
    cli_session_path(&c->o, sp, sizeof(sp));
    snprintf(dir, sizeof(dir), "%s", sp);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        if (fs_mkdir_p(dir, 0700))
            return cli_die("cannot create the session directory");
    }
    const char *tok = json_string_value(json_object_get(resp, "token"));
    if (fs_write_atomic(sp, tok, strlen(tok), 0600))
        return cli_die("cannot write the session file");
    printf("logged in as %s (%s); session saved to %s\n", c->o.user,
           json_string_value(json_object_get(resp, "role")), sp);
    return EXIT_OK;
}

int cmd_login(const struct cli *c)
{
    char pw[300];
    if (!c->o.user)
        return cli_usage();
    if (!cli_read_secret(c->o.password_file, "MAMORI_PASSWORD", "password: ", pw, sizeof(pw)))
        return cli_die("need a password");
    json_t *body = json_pack("{s:s,s:s}", "username", c->o.user, "password", pw);
    crypto_wipe(pw, sizeof(pw));
    long st;
    json_t *resp = NULL;
    enum mamori_err rc = api_call(&c->a, "POST", "sessions", body, &st, &resp);
    json_decref(body);
    if (rc)
        return cli_die(mamori_strerror(rc));
    int ret = st != 201 || !json_string_value(json_object_get(resp, "token"))
                  ? api_print_error(st, resp)
                  : save_session(c, resp);
    json_decref(resp);
    return ret;
}

int cmd_logout(const struct cli *c)
{
    char sp[4096];
    int ret = api_call_print(&c->a, "DELETE", "sessions/current", NULL);
    cli_session_path(&c->o, sp, sizeof(sp));
    remove(sp);
    return ret;
}

int cmd_whoami(const struct cli *c)
{
    return api_call_print(&c->a, "GET", "me", NULL);
}

static int user_add(const struct cli *c)
{
    char pw[300];
    if (c->o.npos != 3 || !c->o.role)
        return cli_usage();
    if (!cli_read_secret(c->o.password_file, "MAMORI_NEW_PASSWORD",
                         "password for the new user: ", pw, sizeof(pw)))
        return cli_die("need a password for the new user");
    int ret = api_call_print(
        &c->a, "POST", "users",
        json_pack("{s:s,s:s,s:s}", "username", c->third, "role", c->o.role, "password", pw));
    crypto_wipe(pw, sizeof(pw));
    return ret;
}

static int user_list(const struct cli *c)
{
    return api_call_print(&c->a, "GET", "users", NULL);
}

static int user_delete(const struct cli *c)
{
    char path[128];
    if (c->o.npos != 3 || !c->o.reason)
        return cli_usage();
    snprintf(path, sizeof(path), "users/%.64s", c->third);
    return api_call_print(&c->a, "DELETE", path, json_pack("{s:s}", "reason", c->o.reason));
}

int cmd_user(const struct cli *c)
{
    static const struct command SUBS[] = {
        {"add", user_add, NULL, NULL},
        {"list", user_list, NULL, NULL},
        {"delete", user_delete, NULL, NULL},
    };
    return cli_dispatch(SUBS, CLI_LEN(SUBS), c->sub, c);
}

int cmd_claim(const struct cli *c)
{
    if (c->o.npos != 2)
        return cli_usage();
    return api_call_print(&c->a, "POST", "claims", json_pack("{s:s}", "claim_code", c->sub));
}

static int transfer_start(const struct cli *c)
{
    char path[128];
    if (!c->third)
        return cli_usage();
    snprintf(path, sizeof(path), "devices/%.24s/transfer", c->third);
    return api_call_print(&c->a, "POST", path,
                          json_pack("{s:s}", "data", c->o.keep ? c->o.keep : "erase"));
}

static int transfer_cancel(const struct cli *c)
{
    char path[128];
    if (!c->third)
        return cli_usage();
    snprintf(path, sizeof(path), "devices/%.24s/transfer", c->third);
    return api_call_print(&c->a, "DELETE", path, NULL);
}

static int transfer_accept(const struct cli *c)
{
    if (!c->third)
        return cli_usage();
    return api_call_print(&c->a, "POST", "transfers", json_pack("{s:s}", "code", c->third));
}

int cmd_transfer(const struct cli *c)
{
    static const struct command SUBS[] = {
        {"start", transfer_start, NULL, NULL},
        {"cancel", transfer_cancel, NULL, NULL},
        {"accept", transfer_accept, NULL, NULL},
    };
    return cli_dispatch(SUBS, CLI_LEN(SUBS), c->sub, c);
}

static int me_export(const struct cli *c)
{
    return api_call_print(&c->a, "GET", "me/export", NULL);
}

static int me_erase(const struct cli *c)
{
    if (!c->o.confirm)
        return cli_usage();
    return api_call_print(&c->a, "POST", "me/erase", json_pack("{s:s}", "confirm", c->o.confirm));
}

static int me_delete(const struct cli *c)
{
    if (!c->o.confirm)
        return cli_usage();
    return api_call_print(
        &c->a, "DELETE", "me",
        json_pack("{s:s, s:s*}", "confirm", c->o.confirm, "devices", c->o.devices));
}

int cmd_me(const struct cli *c)
{
    static const struct command SUBS[] = {
        {"export", me_export, NULL, NULL},
        {"erase", me_erase, NULL, NULL},
        {"delete", me_delete, NULL, NULL},
    };
    return cli_dispatch(SUBS, CLI_LEN(SUBS), c->sub, c);
}

int cmd_exports(const struct cli *c)
{
    char path[128];
    snprintf(path, sizeof(path), "exports%s%.20s", c->sub[0] ? "/" : "", c->sub);
    return api_call_print(&c->a, "GET", path, NULL);
}
