/*
 * cli/cli.h - what the parts of mamorictl share: the parsed command line,
 * the command tables' entries and the helpers every command uses
 * (cli/main.c). The commands themselves are grouped by subject:
 * cli/account.c (sessions, users, owners), cli/devices.c (factory, trust,
 * devices, schemas), cli/firmware.c (releases, firmware, campaigns, groups,
 * advisories) and cli/reports.c (reports, audit, alerts, events, health).
 */
#ifndef MAMORI_CLI_CLI_H
#define MAMORI_CLI_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "cli/http.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_TAMPERED = 3 };

/* What the command line said. Numbers not given are 0, except where
 * cli/main.c's defaults say otherwise (-1: not given). */
struct opts {
    const char *data, *api, *ca, *session, *password_file, *user, *role, *model, *out, *cert, *csr,
        *identity, *reason, *device, *name, *token_file, *mqtt_host, *cn, *file, *keystore, *tcti,
        *root_keys, *release_keys, *fw_version, *image, *key, *root, *title, *severity, *affected,
        *fixed, *end, *group, *state, *action, *keep, *confirm, *devices;
    const char *pos[4];
    int npos;
    long count, after, limit, days, from, to, ttl, mqtt_port;
    long version, root_threshold, release_threshold, security_version, floor;
    long canary, wave, interval, max_fail, window, window_start, window_end; /* -1: not given */
    int json;
};

/* One run of mamorictl: the options, the hub's API and MQTT endpoints, and
 * the words of the command (cmd, sub: "" when absent; third: NULL). */
struct cli {
    struct opts o;
    struct api a;
    const char *data; /* --data, else $MAMORI_DATA (may be NULL) */
    const char *cmd, *sub, *third;
    char mqtt_host[64];
    int mqtt_port;
};

/* A command (or a subcommand of one): its name, what runs it (returns the
 * exit status) and its lines of the usage text (NULL for subcommands and
 * for commands described on another command's lines). offline, when set,
 * runs before the hub is needed; it returns CLI_NEEDS_HUB to go on to run. */
struct command {
    const char *name;
    int (*run)(const struct cli *c);
    const char *help;
    int (*offline)(const struct cli *c);
};
#define CLI_NEEDS_HUB  (-1)
#define CLI_LEN(table) (sizeof(table) / sizeof((table)[0]))

/* The entry of table called name, or NULL. */
const struct command *cli_find(const struct command *table, size_t n, const char *name);
/* Runs the entry of table called name; without one, the usage text. */
int cli_dispatch(const struct command *table, size_t n, const char *name, const struct cli *c);
/* "mamorictl: msg" on stderr; returns EXIT_FAIL. */
int cli_die(const char *msg);
/* The usage text on stderr; returns EXIT_USAGE. */
int cli_usage(void);
/* One line from env, else file, else standard input (no echo on a
 * terminal, after prompt) into out. */
bool cli_read_secret(const char *file, const char *env, const char *prompt, char *out, size_t n);
/* A JSON document from a file of at most max bytes (NULL, said, on error). */
json_t *cli_read_json_file(const char *file, size_t max);
/* Where the session token is kept (--session, $MAMORI_SESSION or
 * ~/.config/mamori/session). */
void cli_session_path(const struct opts *o, char *out, size_t n);

/* cli/account.c */
int cmd_bootstrap(const struct cli *c);
int cmd_login(const struct cli *c);
int cmd_logout(const struct cli *c);
int cmd_whoami(const struct cli *c);
int cmd_user(const struct cli *c);
int cmd_claim(const struct cli *c);
int cmd_transfer(const struct cli *c);
int cmd_me(const struct cli *c);
int cmd_exports(const struct cli *c);
/* cli/devices.c */
int cmd_factory_offline(const struct cli *c);
int cmd_factory(const struct cli *c);
int cmd_ca(const struct cli *c);
int cmd_device(const struct cli *c);
int cmd_schema(const struct cli *c);
/* cli/firmware.c */
int cmd_release(const struct cli *c);
int cmd_firmware(const struct cli *c);
int cmd_campaign(const struct cli *c);
int cmd_group(const struct cli *c);
int cmd_advisory(const struct cli *c);
int cmd_support(const struct cli *c);
/* cli/reports.c */
int cmd_report(const struct cli *c);
int cmd_audit(const struct cli *c);
int cmd_alert(const struct cli *c);
int cmd_rule(const struct cli *c);
int cmd_webhook(const struct cli *c);
int cmd_events(const struct cli *c);
int cmd_health(const struct cli *c);

#endif
