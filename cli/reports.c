/*
 * cli/reports.c - mamorictl's commands for oversight: fleet reports, the
 * audit log, alerts with their response rules and webhooks
 * (docs/alerts.md), events and the hub's health.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

/* ---- report ---- */

static int report_audit(const struct cli *c)
{
    return api_call_print(&c->a, "GET", "reports/fleet-audit", NULL);
}

/* matrix, etsi: Markdown (or the JSON with --json). */
static int report_markdown(const struct cli *c)
{
    char path[96];
    long st;
    json_t *resp = NULL;
    int ret = 0;
    if (strcmp(c->sub, "etsi") == 0)
        snprintf(path, sizeof(path), "reports/etsi");
    else
        snprintf(path, sizeof(path), "reports/matrix%s%.24s", c->o.device ? "?device=" : "",
                 c->o.device ? c->o.device : "");
    if (api_call(&c->a, "GET", path, NULL, &st, &resp))
        return cli_die("request failed");
    if (st != 200)
        ret = api_print_error(st, resp);
    else if (c->o.json)
        api_print_json(resp);
    else {
        const char *md = json_string_value(json_object_get(resp, "markdown"));
        fputs(md ? md : "", stdout);
    }
    json_decref(resp);
    return ret;
}

int cmd_report(const struct cli *c)
{
    static const struct command SUBS[] = {
        {"audit", report_audit, NULL, NULL},
        {"matrix", report_markdown, NULL, NULL},
        {"etsi", report_markdown, NULL, NULL},
    };
    return cli_dispatch(SUBS, CLI_LEN(SUBS), c->sub, c);
}

/* ---- audit ---- */

static int audit_list(const struct cli *c)
{
    char path[128];
    snprintf(path, sizeof(path), "audit?after=%ld&limit=%ld", c->o.after, c->o.limit);
    return api_call_print(&c->a, "GET", path, NULL);
}

/* Exit 3 when the hash chain is broken. */
static int audit_verify(const struct cli *c)
{
    long st;
    json_t *resp = NULL;
    if (api_call(&c->a, "GET", "audit/verify", NULL, &st, &resp))
        return cli_die("request failed");
    if (st != 200) {
        int ret = api_print_error(st, resp);
        json_decref(resp);
        return ret;
    }
    bool intact = json_is_true(json_object_get(resp, "intact"));
    if (c->o.json)
        api_print_json(resp);
    else if (intact)
        printf("audit log intact: %lld entries, hash chain verified\n",
               (long long)json_integer_value(json_object_get(resp, "entries")));
    else
        printf("audit log TAMPERED: first bad entry seq %lld (%s)\n",
               (long long)json_integer_value(json_object_get(resp, "first_bad_seq")),
               json_string_value(json_object_get(resp, "problem")));
    json_decref(resp);
    return intact ? EXIT_OK : EXIT_TAMPERED;
}

int cmd_audit(const struct cli *c)
{
    static const struct command SUBS[] = {
        {"list", audit_list, NULL, NULL},
        {"verify", audit_verify, NULL, NULL},
    };
    return cli_dispatch(SUBS, CLI_LEN(SUBS), c->sub, c);
}

/* ---- alert, rule, webhook ---- */

static int alert_list(const struct cli *c)
{
    const struct opts *o = &c->o;
    char path[256];
    snprintf(path, sizeof(path), "alerts?after=%ld&limit=%ld%s%.20s%s%.24s", o->after, o->limit,
             o->state ? "&state=" : "", o->state ? o->state : "", o->device ? "&device=" : "",
             o->device ? o->device : "");
    return api_call_print(&c->a, "GET", path, NULL);
}

/* ack, resolve: the subcommand is the action's name in the API. */
static int alert_note(const struct cli *c)
{
    char path[256];
    if (!c->third)
        return cli_usage();
    snprintf(path, sizeof(path), "alerts/%.20s/%s", c->third, c->sub);
    return api_call_print(&c->a, "POST", path,
                          json_pack("{s:s}", "note", c->o.reason ? c->o.reason : ""));
}

int cmd_alert(const struct cli *c)
{
    static const struct command SUBS[] = {
        {"list", alert_list, NULL, NULL},
        {"ack", alert_note, NULL, NULL},
        {"resolve", alert_note, NULL, NULL},
    };
    return cli_dispatch(SUBS, CLI_LEN(SUBS), c->sub, c);
}

static int rule_list(const struct cli *c)
{
    return api_call_print(&c->a, "GET", "rules", NULL);
}

static int rule_set(const struct cli *c)
{
    const struct opts *o = &c->o;
    char path[256];
    if (!c->third || !o->action)
        return cli_usage();
    snprintf(path, sizeof(path), "rules/%.40s/policy", c->third);
    return api_call_print(&c->a, "POST", path,
                          json_pack("{s:s, s:s, s:I}", "action", o->action, "model",
                                    o->model ? o->model : "", "act_after",
                                    (json_int_t)(o->count ? o->count : 1)));
}

int cmd_rule(const struct cli *c)
{
    static const struct command SUBS[] = {
        {"list", rule_list, NULL, NULL},
        {"set", rule_set, NULL, NULL},
    };
    return cli_dispatch(SUBS, CLI_LEN(SUBS), c->sub, c);
}

static int webhook_add(const struct cli *c)
{
    if (!c->third)
        return cli_usage();
    return api_call_print(&c->a, "POST", "webhooks", json_pack("{s:s}", "url", c->third));
}

static int webhook_list(const struct cli *c)
{
    return api_call_print(&c->a, "GET", "webhooks", NULL);
}

static int webhook_remove(const struct cli *c)
{
    char path[256];
    if (!c->third)
        return cli_usage();
    snprintf(path, sizeof(path), "webhooks/%.20s", c->third);
    return api_call_print(&c->a, "DELETE", path, NULL);
}

int cmd_webhook(const struct cli *c)
{
    static const struct command SUBS[] = {
        {"add", webhook_add, NULL, NULL},
        {"list", webhook_list, NULL, NULL},
        {"remove", webhook_remove, NULL, NULL},
    };
    return cli_dispatch(SUBS, CLI_LEN(SUBS), c->sub, c);
}

/* ---- events, health ---- */

int cmd_events(const struct cli *c)
{
    char path[160];
    if (c->o.device)
        snprintf(path, sizeof(path), "events?after=%ld&limit=%ld&device=%.40s", c->o.after,
                 c->o.limit, c->o.device);
    else
        snprintf(path, sizeof(path), "events?after=%ld&limit=%ld", c->o.after, c->o.limit);
    return api_call_print(&c->a, "GET", path, NULL);
}

int cmd_health(const struct cli *c)
{
    return api_call_print(&c->a, "GET", "health", NULL);
}
