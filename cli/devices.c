/*
 * cli/devices.c - mamorictl's commands for devices: the factory station
 * (keys, enrolment, manufacturer CAs), trusted manufacturer CAs, the
 * devices themselves and the telemetry schema of each model.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/crypto.h"
#include "common/fsutil.h"
#include "factory/factory.h"

/* ---- factory: offline tools (no hub needed) ---- */

static int factory_keygen_cmd(const struct cli *c)
{
    const struct opts *o = &c->o;
    if (!o->out)
        return CLI_NEEDS_HUB;
    enum crypto_keystore ks = CRYPTO_KEYSTORE_FILE;
    if (o->keystore && !crypto_keystore_parse(o->keystore, &ks))
        return cli_die("--keystore is file or tpm2");
    enum mamori_err rc = crypto_keystore_init(ks, o->tcti);
    if (!rc)
        rc = factory_keygen(o->out, ks);
    if (rc)
        return cli_die(mamori_strerror(rc));
    printf("key and CSR written to %s (the key never leaves this directory)\n", o->out);
    return EXIT_OK;
}

static int factory_mfr_ca_create_cmd(const struct cli *c)
{
    if (!c->o.out || !c->o.name)
        return CLI_NEEDS_HUB;
    enum mamori_err rc = factory_mfr_ca_create(c->o.out, c->o.name);
    if (rc)
        return cli_die(mamori_strerror(rc));
    printf("manufacturer CA in %s\n", c->o.out);
    return EXIT_OK;
}

static int factory_mfr_ca_sign_cmd(const struct cli *c)
{
    const struct opts *o = &c->o;
    if (!o->ca || !o->csr || !o->out)
        return CLI_NEEDS_HUB;
    enum mamori_err rc =
        factory_mfr_ca_sign(o->ca, o->csr, o->cn ? o->cn : "mamori-device", (int)o->days, o->out);
    if (rc)
        return cli_die(mamori_strerror(rc));
    printf("certificate written to %s\n", o->out);
    return EXIT_OK;
}

int cmd_factory_offline(const struct cli *c)
{
    static const struct command SUBS[] = {
        {"keygen", factory_keygen_cmd, NULL, NULL},
        {"mfr-ca-create", factory_mfr_ca_create_cmd, NULL, NULL},
        {"mfr-ca-sign", factory_mfr_ca_sign_cmd, NULL, NULL},
    };
    const struct command *s = cli_find(SUBS, CLI_LEN(SUBS), c->sub);
    return s ? s->run(c) : CLI_NEEDS_HUB;
}

/* ---- factory: with the hub ---- */

/* Has the hub sign DIR/device.csr (or register DIR/device.crt, signed by a
 * manufacturer CA) and completes the identity directory. */
static int enroll_one(const struct cli *c, const char *dir, bool reg, bool quiet)
{
    char p[4096], *pem = NULL;
    size_t len;
    if (fs_path(p, sizeof(p), dir, reg ? "device.crt" : "device.csr") ||
        fs_read_file(p, CRYPTO_PEM_MAX, &pem, &len))
        return cli_die(reg ? "cannot read DIR/device.crt"
                           : "cannot read DIR/device.csr (run factory keygen)");
    json_t *body = json_pack("{s:s,s:s}", "model", c->o.model, reg ? "certificate" : "csr", pem);
    free(pem);
    long st;
    json_t *resp = NULL;
    enum mamori_err rc =
        api_call(&c->a, "POST", reg ? "factory/register" : "factory/enroll", body, &st, &resp);
    json_decref(body);
    if (rc)
        return cli_die(mamori_strerror(rc));
    if (st != 201) {
        int r = api_print_error(st, resp);
        json_decref(resp);
        return r;
    }
    const char *id = json_string_value(json_object_get(resp, "device_id"));
    const char *cert = json_string_value(json_object_get(resp, "certificate"));
    const char *ca = json_string_value(json_object_get(resp, "ca_chain"));
    const char *code = json_string_value(json_object_get(resp, "claim_code"));
    int ret = EXIT_OK;
    if (!id || !ca || !code || (!reg && !cert) ||
        factory_finish(dir, id, c->o.model, reg ? NULL : cert, ca, code, c->mqtt_host,
                       c->mqtt_port))
        ret = cli_die("could not write the identity directory");
    else if (!quiet)
        printf("device %s (model %s) provisioned in %s\nclaim code: %s\n", id, c->o.model, dir,
               code);
    json_decref(resp);
    return ret;
}

static int factory_enroll(const struct cli *c)
{
    if (!c->o.model || !c->o.identity)
        return cli_usage();
    return enroll_one(c, c->o.identity, strcmp(c->sub, "register") == 0, false);
}

static int factory_batch(const struct cli *c)
{
    const struct opts *o = &c->o;
    if (!o->model || !o->count || !o->out)
        return cli_usage();
    int ret = EXIT_OK;
    for (long i = 0; i < o->count && ret == EXIT_OK; i++) {
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s/dev-%05ld", o->out, i);
        if (factory_keygen(dir, CRYPTO_KEYSTORE_FILE))
            return cli_die("key generation failed");
        ret = enroll_one(c, dir, false, true);
    }
    if (ret == EXIT_OK)
        printf("%ld device identities of model %s in %s/dev-*\n", o->count, o->model, o->out);
    return ret;
}

int cmd_factory(const struct cli *c)
{
    static const struct command SUBS[] = {
        {"enroll", factory_enroll, NULL, NULL},
        {"register", factory_enroll, NULL, NULL},
        {"batch", factory_batch, NULL, NULL},
    };
    return cli_dispatch(SUBS, CLI_LEN(SUBS), c->sub, c);
}

/* ---- ca: manufacturer CAs the hub trusts ---- */

static int ca_import(const struct cli *c)
{
    char *pem = NULL;
    size_t len;
    if (!c->o.model || !c->o.cert)
        return cli_usage();
    if (fs_read_file(c->o.cert, CRYPTO_PEM_MAX, &pem, &len))
        return cli_die("cannot read the certificate");
    int ret = api_call_print(&c->a, "POST", "cas",
                             json_pack("{s:s,s:s}", "model", c->o.model, "certificate", pem));
    free(pem);
    return ret;
}

static int ca_list(const struct cli *c)
{
    return api_call_print(&c->a, "GET", "cas", NULL);
}

int cmd_ca(const struct cli *c)
{
    static const struct command SUBS[] = {
        {"import", ca_import, NULL, NULL},
        {"list", ca_list, NULL, NULL},
    };
    return cli_dispatch(SUBS, CLI_LEN(SUBS), c->sub, c);
}

/* ---- device ---- */

static void print_device_table(json_t *resp)
{
    size_t i;
    json_t *d;
    printf("%-20s %-14s %-15s %-7s %s\n", "DEVICE", "MODEL", "STATE", "ONLINE", "OWNER");
    json_array_foreach(json_object_get(resp, "devices"), i, d)
    {
        const char *owner = json_string_value(json_object_get(d, "owner"));
        printf("%-20s %-14s %-15s %-7s %s\n", json_string_value(json_object_get(d, "id")),
               json_string_value(json_object_get(d, "model")),
               json_string_value(json_object_get(d, "state")),
               json_is_true(json_object_get(d, "online")) ? "yes" : "no", owner ? owner : "-");
    }
}

static int device_list(const struct cli *c)
{
    long st;
    json_t *resp = NULL;
    char path[128];
    int ret = EXIT_OK;
    snprintf(path, sizeof(path), "devices?limit=%ld", c->o.limit);
    if (api_call(&c->a, "GET", path, NULL, &st, &resp))
        return cli_die("request failed");
    if (st != 200)
        ret = api_print_error(st, resp);
    else if (c->o.json)
        api_print_json(resp);
    else
        print_device_table(resp);
    json_decref(resp);
    return ret;
}

static int device_show(const struct cli *c)
{
    char path[128];
    if (c->o.npos != 3)
        return cli_usage();
    snprintf(path, sizeof(path), "devices/%.40s", c->third);
    return api_call_print(&c->a, "GET", path, NULL);
}

/* revoke, lock, unlock, decommission, quarantine, release, confirm: the
 * subcommand is the action's name in the API. */
static int device_action(const struct cli *c)
{
    char path[128];
    if (c->o.npos != 3)
        return cli_usage();
    if (!c->o.reason)
        return cli_die("give a --reason: it goes to the audit log");
    snprintf(path, sizeof(path), "devices/%.40s/%s", c->third, c->sub);
    return api_call_print(&c->a, "POST", path, json_pack("{s:s}", "reason", c->o.reason));
}

static int device_cmd(const struct cli *c)
{
    char path[128];
    if (c->o.npos != 4)
        return cli_usage();
    if (!c->o.reason)
        return cli_die("give a --reason: it goes to the audit log");
    snprintf(path, sizeof(path), "devices/%.40s/commands", c->third);
    json_t *body = json_pack("{s:s,s:s}", "type", c->o.pos[3], "reason", c->o.reason);
    if (body && c->o.ttl)
        json_object_set_new(body, "ttl_s", json_integer(c->o.ttl));
    return api_call_print(&c->a, "POST", path, body);
}

static int device_config(const struct cli *c)
{
    if (c->o.npos != 3 || !c->o.file)
        return cli_usage();
    if (!c->o.reason)
        return cli_die("give a --reason: it goes to the audit log");
    json_error_t je;
    json_t *settings = json_load_file(c->o.file, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(settings)) {
        json_decref(settings);
        return cli_die("--file must hold a JSON object of settings");
    }
    char path[128];
    snprintf(path, sizeof(path), "devices/%.40s/config", c->third);
    return api_call_print(&c->a, "POST", path,
                          json_pack("{s:o,s:s}", "settings", settings, "reason", c->o.reason));
}

static int device_status(const struct cli *c)
{
    char path[128];
    if (c->o.npos != 3)
        return cli_usage();
    snprintf(path, sizeof(path), "devices/%.40s/status", c->third);
    return api_call_print(&c->a, "GET", path, NULL);
}

static int device_commands(const struct cli *c)
{
    char path[128];
    if (c->o.npos != 3)
        return cli_usage();
    snprintf(path, sizeof(path), "devices/%.40s/commands?limit=%ld", c->third, c->o.limit);
    return api_call_print(&c->a, "GET", path, NULL);
}

static int device_telemetry(const struct cli *c)
{
    const struct opts *o = &c->o;
    char path[256], to[32] = "";
    if (o->npos != 3)
        return cli_usage();
    if (o->to)
        snprintf(to, sizeof(to), "&to=%ld", o->to);
    snprintf(path, sizeof(path), "devices/%.40s/telemetry?from=%ld&after=%ld&limit=%ld%s", c->third,
             o->from, o->after, o->limit, to);
    return api_call_print(&c->a, "GET", path, NULL);
}

int cmd_device(const struct cli *c)
{
    static const struct command SUBS[] = {
        {"list", device_list, NULL, NULL},         {"show", device_show, NULL, NULL},
        {"revoke", device_action, NULL, NULL},     {"lock", device_action, NULL, NULL},
        {"unlock", device_action, NULL, NULL},     {"decommission", device_action, NULL, NULL},
        {"quarantine", device_action, NULL, NULL}, {"release", device_action, NULL, NULL},
        {"confirm", device_action, NULL, NULL},    {"cmd", device_cmd, NULL, NULL},
        {"config", device_config, NULL, NULL},     {"status", device_status, NULL, NULL},
        {"commands", device_commands, NULL, NULL}, {"telemetry", device_telemetry, NULL, NULL},
    };
    return cli_dispatch(SUBS, CLI_LEN(SUBS), c->sub, c);
}

/* ---- schema: telemetry schema per model ---- */

static int schema_set(const struct cli *c)
{
    char path[128];
    if (c->o.npos != 3 || !c->o.file)
        return cli_usage();
    json_t *doc = cli_read_json_file(c->o.file, 16 * 1024);
    if (!doc)
        return EXIT_FAIL;
    snprintf(path, sizeof(path), "models/%.64s/schema", c->third);
    return api_call_print(&c->a, "POST", path, doc);
}

static int schema_show(const struct cli *c)
{
    char path[128];
    if (c->o.npos != 3)
        return cli_usage();
    snprintf(path, sizeof(path), "models/%.64s/schema", c->third);
    return api_call_print(&c->a, "GET", path, NULL);
}

int cmd_schema(const struct cli *c)
{
    static const struct command SUBS[] = {
        {"set", schema_set, NULL, NULL},
        {"show", schema_show, NULL, NULL},
    };
    return cli_dispatch(SUBS, CLI_LEN(SUBS), c->sub, c);
}
