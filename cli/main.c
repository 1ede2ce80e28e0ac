/*
 * mamorictl - the command line over the hub's API, plus the factory
 * station's offline tools. Run `mamorictl help` for the commands.
 *
 * Where the hub is: --data DIR (reads DIR/run/endpoints.json and trusts
 * DIR/pki/root.crt), or --api URL --ca FILE, or MAMORI_DATA. The session
 * token lives in --session FILE (default $MAMORI_SESSION, else
 * ~/.config/mamori/session), mode 0600. Passwords come from
 * MAMORI_PASSWORD, --password-file, or one line of standard input; never
 * from the command line, where other users could read them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "factory/factory.h"
#include "cli/http.h"
#include "cli/release.h"
#include "common/crypto.h"
#include "common/fsutil.h"
#include "common/json.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_TAMPERED = 3 };

struct opts {
    const char *data, *api, *ca, *session, *password_file, *user, *role, *model, *out, *cert, *csr,
        *identity, *reason, *device, *name, *token_file, *mqtt_host, *cn, *file, *keystore, *tcti,
        *root_keys, *release_keys, *fw_version, *image, *key, *root, *title, *severity, *affected,
        *fixed, *end, *group, *state, *action, *keep, *confirm, *devices;
    const char *pos[4];
    int npos;
    long count, after, limit, days, from, to, ttl;
    long version, root_threshold, release_threshold, security_version, floor;
    long canary, wave, interval, max_fail, window_start, window_end; /* -1: not given */
    int mqtt_port;
    int json;
};

static const char *USAGE =
    "usage: mamorictl [--data DIR | --api URL --ca FILE] [--session FILE] [--json] COMMAND\n"
    "\n"
    "session:   bootstrap --user NAME [--token-file FILE]   create the first administrator\n"
    "           login --user NAME | logout | whoami\n"
    "users:     user add NAME --role admin|operator|owner | user list\n"
    "           user delete NAME --reason TEXT          (admin; the account must own no device)\n"
    "factory:   factory keygen --out DIR [--keystore file|tpm2 [--tcti T]]\n"
    "                                                        device key + CSR (key stays here;\n"
    "                                                        tpm2: made in the TPM)\n"
    "           factory enroll --model M --identity DIR      hub signs DIR/device.csr\n"
    "           factory register --model M --identity DIR    DIR/device.crt signed by a "
    "manufacturer CA\n"
    "           factory batch --model M --count N --out DIR  N identities (simulation, tests)\n"
    "           factory mfr-ca-create --out DIR --name NAME  offline manufacturer CA\n"
    "           factory mfr-ca-sign --ca DIR --csr F --out F [--cn CN] [--days N]\n"
    "trust:     ca import --model M --cert FILE | ca list\n"
    "owners:    claim CODE\n"
    "devices:   device list | device show ID\n"
    "           device revoke|lock|unlock|decommission ID --reason TEXT\n"
    "           device confirm ID --reason TEXT          take a stray device back (its owner)\n"
    "           device cmd ID lock|unlock|wipe|reboot|quarantine|release|self-test|rotate|\n"
    "                  config-rollback --reason TEXT [--ttl S]\n"
    "           device commands ID                      commands sent and their results\n"
    "           device status ID                        its signed security status (EAT)\n"
    "           device config ID --file SETTINGS.json --reason TEXT   remote settings (signed,\n"
    "                                                   on probation until the device proves "
    "them)\n"
    "           device telemetry ID [--from MS] [--to MS] [--after ID] [--limit N]\n"
    "releases:  (offline, the release signer's machine; docs/updates.md)\n"
    "           release keygen --out PREFIX                  PREFIX.key (0600) + PREFIX.pub\n"
    "           release root --version N --root-keys A.pub,B.pub --root-threshold K\n"
    "                  --release-keys R.pub,... --release-threshold K [--days D] --out ROOT.json\n"
    "           release manifest --model M --fw-version V --security-version S [--floor F]\n"
    "                  --image FILE [--days D] --out REL.json\n"
    "           release sign --file DOC.json --key K.key     add a signature (root or release)\n"
    "           release verify --root R1.json[,R2.json...] [--file REL.json [--image FILE]]\n"
    "firmware:  firmware root add --file ROOT.json | firmware roots    (roots: administrators)\n"
    "           firmware add --file REL.json [--image FILE]   a signed release (and its image)\n"
    "           firmware upload SHA256 --image FILE | firmware list [--model M]\n"
    "           firmware retire SHA256 --reason TEXT\n"
    "           firmware deploy SHA256 --device ID --reason TEXT [--ttl S]   signed update "
    "command\n"
    "campaigns: campaign create SHA256 --reason R [--group G] [--canary N] [--wave N] [--interval "
    "S]\n"
    "                  [--max-fail PCT] [--window HHhh]   canary, then waves; pauses on failures\n"
    "           campaign list | campaign show ID | campaign pause|resume|cancel ID --reason R\n"
    "           group add|remove NAME --device ID | group show NAME   campaign targets\n"
    "advisories: advisory add --model M --title T --severity low|medium|high|critical\n"
    "                  --affected V1,V2 [--fixed V] | advisory list [--model M]\n"
    "           support set MODEL --end YYYY-MM-DD | support show MODEL   security support end\n"
    "schemas:   schema set MODEL --file F | schema show MODEL   telemetry schema per model\n"
    "audit:     audit list [--after SEQ] | audit verify   (exit 3 when tampered)\n"
    "owners:    transfer start ID [--owner-data export|erase] | transfer cancel ID   (prints the "
    "code)\n"
    "           transfer accept CODE                    the new owner takes the device over\n"
    "           me export | me erase --confirm USERNAME | exports [ID]   your data (JSON)\n"
    "           me delete --confirm USERNAME [--devices decommission]   delete your account\n"
    "reports:   report audit                            fleet audit checks (staff)\n"
    "           report matrix [--device ID] [--json]    the live 12 x 5 threat matrix (Markdown)\n"
    "           report etsi [--json]                    ETSI EN 303 645 self-assessment\n"
    "alerts:    alert list [--state open|acknowledged|resolved] [--device ID] [--after ID]\n"
    "           alert ack|resolve ID [--reason NOTE]\n"
    "           rule list | rule set RULE --action notify|quarantine|lock [--model M] [--count N]\n"
    "                                                   act once the alert counted N (default 1)\n"
    "           webhook add URL | webhook list | webhook remove ID   (add prints the HMAC secret "
    "once)\n"
    "events:    events [--device ID] [--after ID]\n"
    "           health\n";

static int die(const char *msg)
{
    fprintf(stderr, "mamorictl: %s\n", msg);
    return EXIT_FAIL;
}

static bool parse_args(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof(*o));
    o->limit = 100;
    o->days = 365;
    o->canary = o->wave = o->interval = o->max_fail = o->window_start = o->window_end = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) {
            o->json = 1;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            if (o->npos >= 4)
                return false;
            o->pos[o->npos++] = a;
            continue;
        }
        if (i + 1 >= argc)
            return false;
        const char *v = argv[++i];
        struct {
            const char *k;
            const char **dst;
        } s[] = {{"--data", &o->data},
                 {"--api", &o->api},
                 {"--ca", &o->ca},
                 {"--session", &o->session},
                 {"--password-file", &o->password_file},
                 {"--user", &o->user},
                 {"--role", &o->role},
                 {"--model", &o->model},
                 {"--out", &o->out},
                 {"--keystore", &o->keystore},
                 {"--tcti", &o->tcti},
                 {"--cert", &o->cert},
                 {"--csr", &o->csr},
                 {"--identity", &o->identity},
                 {"--reason", &o->reason},
                 {"--device", &o->device},
                 {"--name", &o->name},
                 {"--token-file", &o->token_file},
                 {"--mqtt-host", &o->mqtt_host},
                 {"--cn", &o->cn},
                 {"--file", &o->file},
                 {"--root-keys", &o->root_keys},
                 {"--release-keys", &o->release_keys},
                 {"--fw-version", &o->fw_version},
                 {"--image", &o->image},
                 {"--key", &o->key},
                 {"--root", &o->root},
                 {"--title", &o->title},
                 {"--severity", &o->severity},
                 {"--affected", &o->affected},
                 {"--fixed", &o->fixed},
                 {"--end", &o->end},
                 {"--group", &o->group},
                 {"--state", &o->state},
                 {"--action", &o->action},
                 {"--owner-data", &o->keep},
                 {"--confirm", &o->confirm},
                 {"--devices", &o->devices}};
        bool done = false;
        for (size_t k = 0; k < sizeof(s) / sizeof(s[0]); k++) {
            if (strcmp(a, s[k].k) == 0) {
                *s[k].dst = v;
                done = true;
            }
        }
        if (done)
            continue;
        char *end;
        long n = strtol(v, &end, 10);
        if (*v == '\0' || *end != '\0')
            return false;
        if (strcmp(a, "--count") == 0 && n > 0 && n <= 100000)
            o->count = n;
        else if (strcmp(a, "--after") == 0 && n >= 0)
            o->after = n;
        else if (strcmp(a, "--limit") == 0 && n > 0 && n <= 1000)
            o->limit = n;
        else if (strcmp(a, "--days") == 0 && n != 0 && n > -10000 && n < 10000)
            o->days = n;
        else if (strcmp(a, "--ttl") == 0 && n > 0)
            o->ttl = n;
        else if (strcmp(a, "--from") == 0 && n >= 0)
            o->from = n;
        else if (strcmp(a, "--to") == 0 && n >= 0)
            o->to = n;
        else if (strcmp(a, "--mqtt-port") == 0 && n > 0 && n < 65536)
            o->mqtt_port = (int)n;
        else if (strcmp(a, "--version") == 0 && n > 0)
            o->version = n;
        else if (strcmp(a, "--root-threshold") == 0 && n > 0 && n <= 16)
            o->root_threshold = n;
        else if (strcmp(a, "--release-threshold") == 0 && n > 0 && n <= 16)
            o->release_threshold = n;
        else if (strcmp(a, "--security-version") == 0 && n >= 0)
            o->security_version = n;
        else if (strcmp(a, "--floor") == 0 && n >= 0)
            o->floor = n;
        else if (strcmp(a, "--canary") == 0 && n >= 0)
            o->canary = n;
        else if (strcmp(a, "--wave") == 0 && n >= 0)
            o->wave = n;
        else if (strcmp(a, "--interval") == 0 && n >= 0)
            o->interval = n;
        else if (strcmp(a, "--max-fail") == 0 && n >= 0)
            o->max_fail = n;
        else if (strcmp(a, "--window") == 0 && n >= 0 && n <= 2323 && n % 100 < 24 &&
                 n / 100 < 24) {
            o->window_start = n / 100; /* HHhh: from HH to hh, UTC */
            o->window_end = n % 100;
        } else
            return false;
    }
    return o->npos > 0;
}

/* Reads endpoints.json of a data dir: api base, mqtt host/port, ca. */
static bool load_endpoints(const char *data, struct api *a, char *mqtt_host, size_t hl,
                           int *mqtt_port)
{
    char p[4096], *txt = NULL;
    size_t len;
    json_t *j = NULL;
    const char *api, *host;
    uint64_t port;
    if (fs_path(p, sizeof(p), data, "run/endpoints.json") || fs_read_file(p, 8192, &txt, &len))
        return false;
    bool ok = json_parse_untrusted(txt, len, 8192, &j, NULL, 0) == MAMORI_OK &&
              json_get_str(j, "api", 256, &api) && json_get_str(j, "mqtt_host", 64, &host) &&
              json_get_u64(j, "mqtt_port", &port);
    if (ok) {
        snprintf(a->base, sizeof(a->base), "%s", api);
        snprintf(mqtt_host, hl, "%s", host);
        *mqtt_port = (int)port;
        if (!a->ca[0] && fs_path(a->ca, sizeof(a->ca), data, "pki/root.crt"))
            ok = false;
    }
    json_decref(j);
    free(txt);
    return ok;
}

static void session_path(const struct opts *o, char *out, size_t n)
{
    const char *env = getenv("MAMORI_SESSION");
    if (o->session)
        snprintf(out, n, "%s", o->session);
    else if (env && *env)
        snprintf(out, n, "%s", env);
    else
        snprintf(out, n, "%s/.config/mamori/session", getenv("HOME") ? getenv("HOME") : ".");
}

static void load_token(const struct opts *o, struct api *a)
{
    char p[4096], *t = NULL;
    size_t len;
    session_path(o, p, sizeof(p));
    if (fs_read_file(p, 256, &t, &len) != MAMORI_OK)
        return;
    t[strcspn(t, "\r\n")] = '\0';
    snprintf(a->token, sizeof(a->token), "%s", t);
    crypto_wipe(t, len);
    free(t);
}

/* One line from fd/file/env into out (no echo on a terminal). */
static bool read_secret(const char *file, const char *env, const char *prompt, char *out, size_t n)
{
    const char *e = env ? getenv(env) : NULL;
    if (e && *e) {
        snprintf(out, n, "%s", e);
        return true;
    }
    if (file) {
        char *t = NULL;
        size_t len;
        if (fs_read_file(file, n - 1, &t, &len))
            return false;
        t[strcspn(t, "\r\n")] = '\0';
        snprintf(out, n, "%s", t);
        crypto_wipe(t, len);
        free(t);
        return true;
    }
    struct termios old, quiet;
    bool tty = isatty(0) && tcgetattr(0, &old) == 0;
    if (tty) {
        fprintf(stderr, "%s", prompt);
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(0, TCSAFLUSH, &quiet);
    }
    bool ok = fgets(out, (int)n, stdin) != NULL;
    if (tty) {
        tcsetattr(0, TCSAFLUSH, &old);
        fprintf(stderr, "\n");
    }
    if (ok)
        out[strcspn(out, "\r\n")] = '\0';
    return ok && out[0];
}

/* A JSON document from a file of at most max bytes (NULL, said, on error). */
static json_t *read_json_file(const char *file, size_t max)
{
    char *txt = NULL;
    size_t len;
    if (fs_read_file(file, max, &txt, &len)) {
        fprintf(stderr, "mamorictl: cannot read %s (at most %zu bytes)\n", file, max);
        return NULL;
    }
    json_t *doc = json_loadb(txt, len, JSON_REJECT_DUPLICATES, NULL);
    free(txt);
    if (!doc)
        fprintf(stderr, "mamorictl: %s is not valid JSON\n", file);
    return doc;
}

static int upload_image(const struct api *a, const char *sha, const char *image)
{
    char path[160];
    long st;
    json_t *resp = NULL;
    snprintf(path, sizeof(path), "firmware/releases/%.64s/image", sha);
    enum mamori_err rc = api_upload(a, path, image, &st, &resp);
    if (rc)
        return die(rc == MAMORI_ERR_NOTFOUND ? "cannot open the image" : mamori_strerror(rc));
    int ret = api_print_result(st, resp);
    json_decref(resp);
    return ret;
}

/* mamorictl firmware ...: the hub's firmware repository (hub/firmware.c). */
static int firmware_cmd(const struct api *a, const struct opts *o, const char *sub)
{
    char path[200];
    const char *third = o->npos > 2 ? o->pos[2] : "";
    if (strcmp(sub, "root") == 0 && strcmp(third, "add") == 0 && o->file) {
        json_t *doc = read_json_file(o->file, 64 * 1024);
        return doc ? api_call_print(a, "POST", "firmware/roots", doc) : EXIT_FAIL;
    }
    if (strcmp(sub, "roots") == 0)
        return api_call_print(a, "GET", "firmware/roots", NULL);
    if (strcmp(sub, "add") == 0 && o->file) {
        json_t *doc = read_json_file(o->file, 64 * 1024), *resp = NULL;
        long st;
        if (!doc)
            return EXIT_FAIL;
        enum mamori_err rc = api_call(a, "POST", "firmware/releases", doc, &st, &resp);
        json_decref(doc);
        if (rc)
            return die(mamori_strerror(rc));
        if (st < 200 || st >= 300) {
            int ret = api_print_error(st, resp);
            json_decref(resp);
            return ret;
        }
        const char *sha = json_string_value(json_object_get(resp, "sha256"));
        int ret =
            o->image && sha ? upload_image(a, sha, o->image) : (api_print_json(resp), EXIT_OK);
        json_decref(resp);
        return ret;
    }
    if (strcmp(sub, "upload") == 0 && o->npos == 3 && o->image)
        return upload_image(a, third, o->image);
    if (strcmp(sub, "list") == 0) {
        snprintf(path, sizeof(path), "firmware/releases%s%.64s", o->model ? "?model=" : "",
                 o->model ? o->model : "");
        return api_call_print(a, "GET", path, NULL);
    }
    if (strcmp(sub, "deploy") == 0 && o->npos == 3 && o->device && o->reason) {
        snprintf(path, sizeof(path), "firmware/releases/%.64s/deploy", third);
        json_t *body = json_pack("{s:s, s:s}", "device", o->device, "reason", o->reason);
        if (body && o->ttl) /* absent: the hub's default */
            json_object_set_new(body, "ttl_s", json_integer(o->ttl));
        return api_call_print(a, "POST", path, body);
    }
    if (strcmp(sub, "retire") == 0 && o->npos == 3 && o->reason) {
        snprintf(path, sizeof(path), "firmware/releases/%.64s/retire", third);
        return api_call_print(a, "POST", path, json_pack("{s:s}", "reason", o->reason));
    }
    fprintf(stderr, "%s", USAGE);
    return EXIT_USAGE;
}

/* mamorictl transfer ... | me ... | exports: ownership transfer and data
 * rights (docs/owners.md). */
static int owner_cmd(const struct api *a, const struct opts *o, const char *cmd, const char *sub)
{
    char path[128];
    const char *third = o->npos > 2 ? o->pos[2] : NULL;
    if (strcmp(cmd, "transfer") == 0 && strcmp(sub, "start") == 0 && third) {
        snprintf(path, sizeof(path), "devices/%.24s/transfer", third);
        return api_call_print(a, "POST", path,
                              json_pack("{s:s}", "data", o->keep ? o->keep : "erase"));
    }
    if (strcmp(cmd, "transfer") == 0 && strcmp(sub, "cancel") == 0 && third) {
        snprintf(path, sizeof(path), "devices/%.24s/transfer", third);
        return api_call_print(a, "DELETE", path, NULL);
    }
    if (strcmp(cmd, "transfer") == 0 && strcmp(sub, "accept") == 0 && third)
        return api_call_print(a, "POST", "transfers", json_pack("{s:s}", "code", third));
    if (strcmp(cmd, "me") == 0 && strcmp(sub, "export") == 0)
        return api_call_print(a, "GET", "me/export", NULL);
    if (strcmp(cmd, "me") == 0 && strcmp(sub, "erase") == 0 && o->confirm)
        return api_call_print(a, "POST", "me/erase", json_pack("{s:s}", "confirm", o->confirm));
    if (strcmp(cmd, "me") == 0 && strcmp(sub, "delete") == 0 && o->confirm)
        return api_call_print(
            a, "DELETE", "me",
            json_pack("{s:s, s:s*}", "confirm", o->confirm, "devices", o->devices));
    if (strcmp(cmd, "exports") == 0) {
        snprintf(path, sizeof(path), "exports%s%.20s", sub[0] ? "/" : "", sub);
        return api_call_print(a, "GET", path, NULL);
    }
    fputs(USAGE, stderr);
    return EXIT_USAGE;
}

/* mamorictl alert ... | rule ... | webhook ...: alerts, response policy
 * and delivery (docs/alerts.md). */
static int alert_cmd(const struct api *a, const struct opts *o, const char *cmd, const char *sub)
{
    char path[256];
    const char *third = o->npos > 2 ? o->pos[2] : NULL;
    if (strcmp(cmd, "alert") == 0 && strcmp(sub, "list") == 0) {
        snprintf(path, sizeof(path), "alerts?after=%ld&limit=%ld%s%.20s%s%.24s", o->after, o->limit,
                 o->state ? "&state=" : "", o->state ? o->state : "", o->device ? "&device=" : "",
                 o->device ? o->device : "");
        return api_call_print(a, "GET", path, NULL);
    }
    if (strcmp(cmd, "alert") == 0 && (strcmp(sub, "ack") == 0 || strcmp(sub, "resolve") == 0) &&
        third) {
        snprintf(path, sizeof(path), "alerts/%.20s/%s", third, sub);
        return api_call_print(a, "POST", path,
                              json_pack("{s:s}", "note", o->reason ? o->reason : ""));
    }
    if (strcmp(cmd, "rule") == 0 && strcmp(sub, "list") == 0)
        return api_call_print(a, "GET", "rules", NULL);
    if (strcmp(cmd, "rule") == 0 && strcmp(sub, "set") == 0 && third && o->action) {
        snprintf(path, sizeof(path), "rules/%.40s/policy", third);
        return api_call_print(a, "POST", path,
                              json_pack("{s:s, s:s, s:I}", "action", o->action, "model",
                                        o->model ? o->model : "", "act_after",
                                        (json_int_t)(o->count ? o->count : 1)));
    }
    if (strcmp(cmd, "webhook") == 0 && strcmp(sub, "add") == 0 && third)
        return api_call_print(a, "POST", "webhooks", json_pack("{s:s}", "url", third));
    if (strcmp(cmd, "webhook") == 0 && strcmp(sub, "list") == 0)
        return api_call_print(a, "GET", "webhooks", NULL);
    if (strcmp(cmd, "webhook") == 0 && strcmp(sub, "remove") == 0 && third) {
        snprintf(path, sizeof(path), "webhooks/%.20s", third);
        return api_call_print(a, "DELETE", path, NULL);
    }
    fputs(USAGE, stderr);
    return EXIT_USAGE;
}

/* mamorictl advisory ... | support ...: security advisories and support
 * periods (hub/firmware.c). */
static int advisory_cmd(const struct api *a, const struct opts *o, const char *cmd, const char *sub)
{
    char path[200];
    const char *third = o->npos > 2 ? o->pos[2] : "";
    if (strcmp(cmd, "advisory") == 0 && strcmp(sub, "add") == 0 && o->model && o->title &&
        o->severity && o->affected) {
        json_t *aff = json_array();
        char *copy = strdup(o->affected), *save = NULL;
        for (char *v = copy ? strtok_r(copy, ",", &save) : NULL; v; v = strtok_r(NULL, ",", &save))
            json_array_append_new(aff, json_string(v));
        free(copy);
        json_t *b = json_pack("{s:s, s:s, s:s, s:o}", "model", o->model, "title", o->title,
                              "severity", o->severity, "affected", aff);
        if (b && o->fixed)
            json_object_set_new(b, "fixed_version", json_string(o->fixed));
        return api_call_print(a, "POST", "advisories", b);
    }
    if (strcmp(cmd, "advisory") == 0 && strcmp(sub, "list") == 0) {
        snprintf(path, sizeof(path), "advisories%s%.64s", o->model ? "?model=" : "",
                 o->model ? o->model : "");
        return api_call_print(a, "GET", path, NULL);
    }
    if (strcmp(cmd, "support") == 0 && strcmp(sub, "set") == 0 && o->npos == 3 && o->end) {
        struct tm tm;
        int y, m, d;
        char extra;
        memset(&tm, 0, sizeof(tm));
        if (strlen(o->end) != 10 || sscanf(o->end, "%4d-%2d-%2d%c", &y, &m, &d, &extra) != 3 ||
            y < 1970 || y > 2999 || m < 1 || m > 12 || d < 1 || d > 31)
            return die("--end takes a date: YYYY-MM-DD (UTC)");
        tm.tm_year = y - 1900;
        tm.tm_mon = m - 1;
        tm.tm_mday = d;
        snprintf(path, sizeof(path), "models/%.64s/support", third);
        return api_call_print(a, "POST", path, json_pack("{s:I}", "end", (json_int_t)timegm(&tm)));
    }
    if (strcmp(cmd, "support") == 0 && strcmp(sub, "show") == 0 && o->npos == 3) {
        snprintf(path, sizeof(path), "models/%.64s/support", third);
        return api_call_print(a, "GET", path, NULL);
    }
    fprintf(stderr, "%s", USAGE);
    return EXIT_USAGE;
}

/* mamorictl campaign ...: staged update campaigns (hub/campaign.c). */
static int campaign_cmd(const struct api *a, const struct opts *o, const char *sub)
{
    char path[200];
    const char *third = o->npos > 2 ? o->pos[2] : "";
    if (strcmp(sub, "create") == 0 && o->npos == 3 && o->reason) {
        json_t *b = json_pack("{s:s, s:s}", "sha256", third, "reason", o->reason);
        if (b && o->group)
            json_object_set_new(b, "group", json_string(o->group));
        const struct {
            const char *k;
            long v;
        } opt[] = {{"canary", o->canary},
                   {"wave", o->wave},
                   {"interval_s", o->interval},
                   {"max_failure_pct", o->max_fail},
                   {"window_start", o->window_start},
                   {"window_end", o->window_end}};
        for (size_t i = 0; b && i < sizeof(opt) / sizeof(opt[0]); i++)
            if (opt[i].v >= 0)
                json_object_set_new(b, opt[i].k, json_integer(opt[i].v));
        return api_call_print(a, "POST", "firmware/campaigns", b);
    }
    if (strcmp(sub, "list") == 0)
        return api_call_print(a, "GET", "firmware/campaigns", NULL);
    if (strcmp(sub, "show") == 0 && o->npos == 3) {
        snprintf(path, sizeof(path), "firmware/campaigns/%.20s", third);
        return api_call_print(a, "GET", path, NULL);
    }
    if ((strcmp(sub, "pause") == 0 || strcmp(sub, "resume") == 0 || strcmp(sub, "cancel") == 0) &&
        o->npos == 3 && o->reason) {
        snprintf(path, sizeof(path), "firmware/campaigns/%.20s/%s", third, sub);
        return api_call_print(a, "POST", path, json_pack("{s:s}", "reason", o->reason));
    }
    fprintf(stderr, "%s", USAGE);
    return EXIT_USAGE;
}

static int cmd_enroll(const struct api *a, const struct opts *o, const char *dir, bool reg,
                      const char *mh, int mp, bool quiet)
{
    char p[4096], *pem = NULL;
    size_t len;
    if (fs_path(p, sizeof(p), dir, reg ? "device.crt" : "device.csr") ||
        fs_read_file(p, CRYPTO_PEM_MAX, &pem, &len))
        return die(reg ? "cannot read DIR/device.crt"
                       : "cannot read DIR/device.csr (run factory keygen)");
    json_t *body = json_pack("{s:s,s:s}", "model", o->model, reg ? "certificate" : "csr", pem);
    free(pem);
    long st;
    json_t *resp = NULL;
    enum mamori_err rc =
        api_call(a, "POST", reg ? "factory/register" : "factory/enroll", body, &st, &resp);
    json_decref(body);
    if (rc)
        return die(mamori_strerror(rc));
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
        factory_finish(dir, id, o->model, reg ? NULL : cert, ca, code, mh, mp))
        ret = die("could not write the identity directory");
    else if (!quiet)
        printf("device %s (model %s) provisioned in %s\nclaim code: %s\n", id, o->model, dir, code);
    json_decref(resp);
    return ret;
}

/* mamorictl release ...: the offline signing tools (cli/release.c). */
static int release_cmd(const struct opts *o, const char *sub)
{
    char msg[600] = "";
    enum mamori_err rc = MAMORI_ERR_INVAL;
    /* --days: validity from now (365 by default; negative makes expired
     * metadata, for tests of the refusal) */
    int64_t expires = (int64_t)time(NULL) * 1000 + (int64_t)o->days * 24 * 3600 * 1000;
    if (strcmp(sub, "keygen") == 0 && o->out) {
        char id[65];
        if ((rc = release_keygen(o->out, id)) == MAMORI_OK) {
            printf("key id %s\n%s.key (keep it offline) and %s.pub written\n", id, o->out, o->out);
            return EXIT_OK;
        }
        snprintf(msg, sizeof(msg), "%s",
                 rc == MAMORI_ERR_EXISTS ? "key files exist already" : mamori_strerror(rc));
    } else if (strcmp(sub, "root") == 0 && o->out && o->version && o->root_keys &&
               o->release_keys && o->root_threshold && o->release_threshold) {
        struct release_root_opts ro = {(uint64_t)o->version,
                                       o->root_keys,
                                       o->release_keys,
                                       (unsigned)o->root_threshold,
                                       (unsigned)o->release_threshold,
                                       expires};
        if ((rc = release_root_create(&ro, o->out, msg, sizeof(msg))) == MAMORI_OK) {
            printf("root version %ld written to %s, unsigned: sign it with release sign\n",
                   o->version, o->out);
            return EXIT_OK;
        }
    } else if (strcmp(sub, "manifest") == 0 && o->out && o->model && o->fw_version && o->image) {
        struct release_manifest_opts mo = {o->model,           o->fw_version,
                                           o->image,           (uint64_t)o->security_version,
                                           (uint64_t)o->floor, expires};
        if ((rc = release_manifest_create(&mo, o->out, msg, sizeof(msg))) == MAMORI_OK) {
            printf("release manifest written to %s, unsigned: sign it with release sign\n", o->out);
            return EXIT_OK;
        }
    } else if (strcmp(sub, "sign") == 0 && o->file && o->key) {
        if ((rc = release_sign(o->file, o->key, msg, sizeof(msg))) == MAMORI_OK) {
            printf("signed %s\n", o->file);
            return EXIT_OK;
        }
    } else if (strcmp(sub, "verify") == 0 && o->root) {
        rc = release_verify(o->root, o->file, o->image, msg, sizeof(msg));
        printf("%s\n", msg);
        return rc ? EXIT_FAIL : EXIT_OK;
    } else {
        fprintf(stderr, "%s", USAGE);
        return EXIT_USAGE;
    }
    if (!msg[0])
        snprintf(msg, sizeof(msg), "%s", mamori_strerror(rc));
    return die(msg);
}

int main(int argc, char **argv)
{
    struct opts o;
    if (argc > 1 && (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0)) {
        printf("%s", USAGE);
        return EXIT_OK;
    }
    if (!parse_args(argc, argv, &o)) {
        fprintf(stderr, "%s", USAGE);
        return EXIT_USAGE;
    }
    umask(077);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *cmd = o.pos[0], *sub = o.npos > 1 ? o.pos[1] : "";
    struct api a;
    memset(&a, 0, sizeof(a));
    char mqtt_host[64] = "127.0.0.1";
    int mqtt_port = 0;
    if (o.ca)
        snprintf(a.ca, sizeof(a.ca), "%s", o.ca);
    const char *data = o.data ? o.data : getenv("MAMORI_DATA");
    if (o.api)
        snprintf(a.base, sizeof(a.base), "%s", o.api);
    else if (data && !load_endpoints(data, &a, mqtt_host, sizeof(mqtt_host), &mqtt_port) &&
             strcmp(cmd, "factory") != 0)
        return die("cannot read DATA/run/endpoints.json: is mamorid running?");
    if (o.mqtt_host)
        snprintf(mqtt_host, sizeof(mqtt_host), "%s", o.mqtt_host);
    if (o.mqtt_port)
        mqtt_port = o.mqtt_port;
    load_token(&o, &a);
    int ret = EXIT_USAGE;

    /* Offline factory tools first: no hub needed. */
    if (strcmp(cmd, "factory") == 0 && strcmp(sub, "keygen") == 0 && o.out) {
        enum crypto_keystore ks = CRYPTO_KEYSTORE_FILE;
        if (o.keystore && !crypto_keystore_parse(o.keystore, &ks))
            return die("--keystore is file or tpm2");
        enum mamori_err rc = crypto_keystore_init(ks, o.tcti);
        if (!rc)
            rc = factory_keygen(o.out, ks);
        if (rc)
            return die(mamori_strerror(rc));
        printf("key and CSR written to %s (the key never leaves this directory)\n", o.out);
        return EXIT_OK;
    }
    if (strcmp(cmd, "factory") == 0 && strcmp(sub, "mfr-ca-create") == 0 && o.out && o.name) {
        enum mamori_err rc = factory_mfr_ca_create(o.out, o.name);
        return rc ? die(mamori_strerror(rc)) : (printf("manufacturer CA in %s\n", o.out), EXIT_OK);
    }
    if (strcmp(cmd, "factory") == 0 && strcmp(sub, "mfr-ca-sign") == 0 && o.ca && o.csr && o.out) {
        enum mamori_err rc =
            factory_mfr_ca_sign(o.ca, o.csr, o.cn ? o.cn : "mamori-device", (int)o.days, o.out);
        return rc ? die(mamori_strerror(rc))
                  : (printf("certificate written to %s\n", o.out), EXIT_OK);
    }
    if (strcmp(cmd, "release") == 0)
        return release_cmd(&o, sub);
    if (!a.base[0] || !a.ca[0])
        return die("where is the hub? give --data DIR (or --api URL --ca FILE)");

    if (strcmp(cmd, "health") == 0) {
        ret = api_call_print(&a, "GET", "health", NULL);
    } else if (strcmp(cmd, "bootstrap") == 0 && o.user) {
        char tok[128], pw[300], tf[4096];
        const char *file = o.token_file;
        if (!file && data && !fs_path(tf, sizeof(tf), data, "bootstrap-token"))
            file = tf;
        if (!read_secret(file, "MAMORI_BOOTSTRAP_TOKEN", "bootstrap token: ", tok, sizeof(tok)) ||
            !read_secret(o.password_file, "MAMORI_PASSWORD", "new admin password: ", pw,
                         sizeof(pw)))
            return die("need the bootstrap token and a password");
        ret = api_call_print(
            &a, "POST", "bootstrap",
            json_pack("{s:s,s:s,s:s}", "token", tok, "username", o.user, "password", pw));
        crypto_wipe(tok, sizeof(tok));
        crypto_wipe(pw, sizeof(pw));
    } else if (strcmp(cmd, "login") == 0 && o.user) {
        char pw[300], sp[4096], dir[4096];
        if (!read_secret(o.password_file, "MAMORI_PASSWORD", "password: ", pw, sizeof(pw)))
            return die("need a password");
        json_t *body = json_pack("{s:s,s:s}", "username", o.user, "password", pw);
        crypto_wipe(pw, sizeof(pw));
        long st;
        json_t *resp = NULL;
        enum mamori_err rc = api_call(&a, "POST", "sessions", body, &st, &resp);
        json_decref(body);
        if (rc)
            return die(mamori_strerror(rc));
        const char *tok = json_string_value(json_object_get(resp, "token"));
        if (st != 201 || !tok) {
            ret = api_print_error(st, resp);
        } else {
            session_path(&o, sp, sizeof(sp));
            snprintf(dir, sizeof(dir), "%s", sp);
            char *slash = strrchr(dir, '/');
            if (slash) {
                *slash = '\0';
                if (fs_mkdir_p(dir, 0700))
                    return die("cannot create the session directory");
            }
            if (fs_write_atomic(sp, tok, strlen(tok), 0600))
                return die("cannot write the session file");
            printf("logged in as %s (%s); session saved to %s\n", o.user,
                   json_string_value(json_object_get(resp, "role")), sp);
            ret = EXIT_OK;
        }
        json_decref(resp);
    } else if (strcmp(cmd, "logout") == 0) {
        char sp[4096];
        ret = api_call_print(&a, "DELETE", "sessions/current", NULL);
        session_path(&o, sp, sizeof(sp));
        remove(sp);
    } else if (strcmp(cmd, "whoami") == 0) {
        ret = api_call_print(&a, "GET", "me", NULL);
    } else if (strcmp(cmd, "user") == 0 && strcmp(sub, "add") == 0 && o.npos == 3 && o.role) {
        char pw[300];
        if (!read_secret(o.password_file, "MAMORI_NEW_PASSWORD", "password for the new user: ", pw,
                         sizeof(pw)))
            return die("need a password for the new user");
        ret = api_call_print(
            &a, "POST", "users",
            json_pack("{s:s,s:s,s:s}", "username", o.pos[2], "role", o.role, "password", pw));
        crypto_wipe(pw, sizeof(pw));
    } else if (strcmp(cmd, "user") == 0 && strcmp(sub, "list") == 0) {
        ret = api_call_print(&a, "GET", "users", NULL);
    } else if (strcmp(cmd, "user") == 0 && strcmp(sub, "delete") == 0 && o.npos == 3 && o.reason) {
        char path[128];
        snprintf(path, sizeof(path), "users/%.64s", o.pos[2]);
        ret = api_call_print(&a, "DELETE", path, json_pack("{s:s}", "reason", o.reason));
    } else if (strcmp(cmd, "factory") == 0 &&
               (strcmp(sub, "enroll") == 0 || strcmp(sub, "register") == 0) && o.model &&
               o.identity) {
        ret = cmd_enroll(&a, &o, o.identity, strcmp(sub, "register") == 0, mqtt_host, mqtt_port,
                         false);
    } else if (strcmp(cmd, "factory") == 0 && strcmp(sub, "batch") == 0 && o.model && o.count &&
               o.out) {
        ret = EXIT_OK;
        for (long i = 0; i < o.count && ret == EXIT_OK; i++) {
            char dir[4096];
            snprintf(dir, sizeof(dir), "%s/dev-%05ld", o.out, i);
            if (factory_keygen(dir, CRYPTO_KEYSTORE_FILE))
                return die("key generation failed");
            ret = cmd_enroll(&a, &o, dir, false, mqtt_host, mqtt_port, true);
        }
        if (ret == EXIT_OK)
            printf("%ld device identities of model %s in %s/dev-*\n", o.count, o.model, o.out);
    } else if (strcmp(cmd, "ca") == 0 && strcmp(sub, "import") == 0 && o.model && o.cert) {
        char *pem = NULL;
        size_t len;
        if (fs_read_file(o.cert, CRYPTO_PEM_MAX, &pem, &len))
            return die("cannot read the certificate");
        ret = api_call_print(&a, "POST", "cas",
                             json_pack("{s:s,s:s}", "model", o.model, "certificate", pem));
        free(pem);
    } else if (strcmp(cmd, "ca") == 0 && strcmp(sub, "list") == 0) {
        ret = api_call_print(&a, "GET", "cas", NULL);
    } else if (strcmp(cmd, "claim") == 0 && o.npos == 2) {
        ret = api_call_print(&a, "POST", "claims", json_pack("{s:s}", "claim_code", o.pos[1]));
    } else if (strcmp(cmd, "device") == 0 && strcmp(sub, "list") == 0) {
        long st;
        json_t *resp = NULL;
        char path[128];
        snprintf(path, sizeof(path), "devices?limit=%ld", o.limit);
        if (api_call(&a, "GET", path, NULL, &st, &resp))
            return die("request failed");
        if (st != 200) {
            ret = api_print_error(st, resp);
        } else if (o.json) {
            api_print_json(resp);
            ret = EXIT_OK;
        } else {
            size_t i;
            json_t *d;
            printf("%-20s %-14s %-15s %-7s %s\n", "DEVICE", "MODEL", "STATE", "ONLINE", "OWNER");
            json_array_foreach(json_object_get(resp, "devices"), i, d)
            {
                const char *owner = json_string_value(json_object_get(d, "owner"));
                printf("%-20s %-14s %-15s %-7s %s\n", json_string_value(json_object_get(d, "id")),
                       json_string_value(json_object_get(d, "model")),
                       json_string_value(json_object_get(d, "state")),
                       json_is_true(json_object_get(d, "online")) ? "yes" : "no",
                       owner ? owner : "-");
            }
            ret = EXIT_OK;
        }
        json_decref(resp);
    } else if (strcmp(cmd, "device") == 0 && strcmp(sub, "show") == 0 && o.npos == 3) {
        char path[128];
        snprintf(path, sizeof(path), "devices/%.40s", o.pos[2]);
        ret = api_call_print(&a, "GET", path, NULL);
    } else if (strcmp(cmd, "device") == 0 && o.npos == 3 &&
               (strcmp(sub, "revoke") == 0 || strcmp(sub, "lock") == 0 ||
                strcmp(sub, "unlock") == 0 || strcmp(sub, "decommission") == 0 ||
                strcmp(sub, "quarantine") == 0 || strcmp(sub, "release") == 0 ||
                strcmp(sub, "confirm") == 0)) {
        if (!o.reason)
            return die("give a --reason: it goes to the audit log");
        char path[128];
        snprintf(path, sizeof(path), "devices/%.40s/%s", o.pos[2], sub);
        ret = api_call_print(&a, "POST", path, json_pack("{s:s}", "reason", o.reason));
    } else if (strcmp(cmd, "device") == 0 && strcmp(sub, "cmd") == 0 && o.npos == 4) {
        if (!o.reason)
            return die("give a --reason: it goes to the audit log");
        char path[128];
        snprintf(path, sizeof(path), "devices/%.40s/commands", o.pos[2]);
        json_t *body = json_pack("{s:s,s:s}", "type", o.pos[3], "reason", o.reason);
        if (body && o.ttl)
            json_object_set_new(body, "ttl_s", json_integer(o.ttl));
        ret = api_call_print(&a, "POST", path, body);
    } else if (strcmp(cmd, "device") == 0 && strcmp(sub, "config") == 0 && o.npos == 3 && o.file) {
        if (!o.reason)
            return die("give a --reason: it goes to the audit log");
        json_error_t je;
        json_t *settings = json_load_file(o.file, JSON_REJECT_DUPLICATES, &je);
        if (!json_is_object(settings)) {
            json_decref(settings);
            return die("--file must hold a JSON object of settings");
        }
        char path[128];
        snprintf(path, sizeof(path), "devices/%.40s/config", o.pos[2]);
        ret = api_call_print(&a, "POST", path,
                             json_pack("{s:o,s:s}", "settings", settings, "reason", o.reason));
    } else if (strcmp(cmd, "device") == 0 && strcmp(sub, "status") == 0 && o.npos == 3) {
        char path[128];
        snprintf(path, sizeof(path), "devices/%.40s/status", o.pos[2]);
        ret = api_call_print(&a, "GET", path, NULL);
    } else if (strcmp(cmd, "device") == 0 && strcmp(sub, "commands") == 0 && o.npos == 3) {
        char path[128];
        snprintf(path, sizeof(path), "devices/%.40s/commands?limit=%ld", o.pos[2], o.limit);
        ret = api_call_print(&a, "GET", path, NULL);
    } else if (strcmp(cmd, "device") == 0 && strcmp(sub, "telemetry") == 0 && o.npos == 3) {
        char path[256], to[32] = "";
        if (o.to)
            snprintf(to, sizeof(to), "&to=%ld", o.to);
        snprintf(path, sizeof(path), "devices/%.40s/telemetry?from=%ld&after=%ld&limit=%ld%s",
                 o.pos[2], o.from, o.after, o.limit, to);
        ret = api_call_print(&a, "GET", path, NULL);
    } else if (strcmp(cmd, "schema") == 0 && strcmp(sub, "set") == 0 && o.npos == 3 && o.file) {
        char path[128];
        json_t *doc = read_json_file(o.file, 16 * 1024);
        if (!doc)
            return EXIT_FAIL;
        snprintf(path, sizeof(path), "models/%.64s/schema", o.pos[2]);
        ret = api_call_print(&a, "POST", path, doc);
    } else if (strcmp(cmd, "firmware") == 0) {
        ret = firmware_cmd(&a, &o, sub);
    } else if (strcmp(cmd, "campaign") == 0) {
        ret = campaign_cmd(&a, &o, sub);
    } else if (strcmp(cmd, "group") == 0 &&
               (strcmp(sub, "add") == 0 || strcmp(sub, "remove") == 0) && o.npos == 3 && o.device) {
        char path[128];
        snprintf(path, sizeof(path), "groups/%.64s/%s", o.pos[2], sub);
        ret = api_call_print(&a, "POST", path, json_pack("{s:s}", "device", o.device));
    } else if (strcmp(cmd, "group") == 0 && strcmp(sub, "show") == 0 && o.npos == 3) {
        char path[128];
        snprintf(path, sizeof(path), "groups/%.64s", o.pos[2]);
        ret = api_call_print(&a, "GET", path, NULL);
    } else if (strcmp(cmd, "report") == 0 && strcmp(sub, "audit") == 0) {
        ret = api_call_print(&a, "GET", "reports/fleet-audit", NULL);
    } else if (strcmp(cmd, "report") == 0 &&
               (strcmp(sub, "matrix") == 0 || strcmp(sub, "etsi") == 0)) {
        char path[96];
        long st;
        json_t *resp = NULL;
        if (strcmp(sub, "etsi") == 0)
            snprintf(path, sizeof(path), "reports/etsi");
        else
            snprintf(path, sizeof(path), "reports/matrix%s%.24s", o.device ? "?device=" : "",
                     o.device ? o.device : "");
        if (api_call(&a, "GET", path, NULL, &st, &resp))
            return die("request failed");
        if (st != 200)
            ret = api_print_error(st, resp);
        else if (o.json)
            api_print_json(resp);
        else {
            const char *md = json_string_value(json_object_get(resp, "markdown"));
            fputs(md ? md : "", stdout);
        }
        json_decref(resp);
    } else if (strcmp(cmd, "transfer") == 0 || strcmp(cmd, "me") == 0 ||
               strcmp(cmd, "exports") == 0) {
        ret = owner_cmd(&a, &o, cmd, sub);
    } else if (strcmp(cmd, "alert") == 0 || strcmp(cmd, "rule") == 0 ||
               strcmp(cmd, "webhook") == 0) {
        ret = alert_cmd(&a, &o, cmd, sub);
    } else if (strcmp(cmd, "advisory") == 0 || strcmp(cmd, "support") == 0) {
        ret = advisory_cmd(&a, &o, cmd, sub);
    } else if (strcmp(cmd, "schema") == 0 && strcmp(sub, "show") == 0 && o.npos == 3) {
        char path[128];
        snprintf(path, sizeof(path), "models/%.64s/schema", o.pos[2]);
        ret = api_call_print(&a, "GET", path, NULL);
    } else if (strcmp(cmd, "audit") == 0 && strcmp(sub, "list") == 0) {
        char path[128];
        snprintf(path, sizeof(path), "audit?after=%ld&limit=%ld", o.after, o.limit);
        ret = api_call_print(&a, "GET", path, NULL);
    } else if (strcmp(cmd, "audit") == 0 && strcmp(sub, "verify") == 0) {
        long st;
        json_t *resp = NULL;
        if (api_call(&a, "GET", "audit/verify", NULL, &st, &resp))
            return die("request failed");
        if (st != 200) {
            ret = api_print_error(st, resp);
        } else {
            bool intact = json_is_true(json_object_get(resp, "intact"));
            if (o.json)
                api_print_json(resp);
            else if (intact)
                printf("audit log intact: %lld entries, hash chain verified\n",
                       (long long)json_integer_value(json_object_get(resp, "entries")));
            else
                printf("audit log TAMPERED: first bad entry seq %lld (%s)\n",
                       (long long)json_integer_value(json_object_get(resp, "first_bad_seq")),
                       json_string_value(json_object_get(resp, "problem")));
            ret = intact ? EXIT_OK : EXIT_TAMPERED;
        }
        json_decref(resp);
    } else if (strcmp(cmd, "events") == 0) {
        char path[160];
        if (o.device)
            snprintf(path, sizeof(path), "events?after=%ld&limit=%ld&device=%.40s", o.after,
                     o.limit, o.device);
        else
            snprintf(path, sizeof(path), "events?after=%ld&limit=%ld", o.after, o.limit);
        ret = api_call_print(&a, "GET", path, NULL);
    } else {
        fprintf(stderr, "%s", USAGE);
    }
    crypto_wipe(a.token, sizeof(a.token));
    curl_global_cleanup();
    return ret;
}
