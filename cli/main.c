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
 *
 * This file: the command table (with the usage text), the options, where
 * the hub is, and the helpers the commands share (cli/cli.h); the
 * commands are in cli/account.c, cli/devices.c, cli/firmware.c and
 * cli/reports.c.
 */
#include <getopt.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <curl/curl.h>

#include "cli/cli.h"
#include "common/crypto.h"
#include "common/fsutil.h"
#include "common/json.h"

static const char USAGE_HEAD[] =
    "usage: mamorictl [--data DIR | --api URL --ca FILE] [--session FILE] [--json] COMMAND\n"
    "\n";

/* The commands, in the order of the usage text (their help lines make it). */
static const struct command COMMANDS[] = {
    {"bootstrap", cmd_bootstrap,
     "session:   bootstrap --user NAME [--token-file FILE]   create the first administrator\n",
     NULL},
    {"login", cmd_login, "           login --user NAME | logout | whoami\n", NULL},
    {"logout", cmd_logout, NULL /* on login's line */, NULL},
    {"whoami", cmd_whoami, NULL /* on login's line */, NULL},
    {"user", cmd_user,
     "users:     user add NAME --role admin|operator|owner | user list\n"
     "           user delete NAME --reason TEXT          (admin; the account must own no device)\n",
     NULL},
    {"factory", cmd_factory,
     "factory:   factory keygen --out DIR [--keystore file|tpm2 [--tcti T]]\n"
     "                                                        device key + CSR (key stays here;\n"
     "                                                        tpm2: made in the TPM)\n"
     "           factory enroll --model M --identity DIR      hub signs DIR/device.csr\n"
     "           factory register --model M --identity DIR    DIR/device.crt signed by a "
     "manufacturer CA\n"
     "           factory batch --model M --count N --out DIR  N identities (simulation, tests)\n"
     "           factory mfr-ca-create --out DIR --name NAME  offline manufacturer CA\n"
     "           factory mfr-ca-sign --ca DIR --csr F --out F [--cn CN] [--days N]\n",
     cmd_factory_offline},
    {"ca", cmd_ca, "trust:     ca import --model M --cert FILE | ca list\n", NULL},
    {"claim", cmd_claim, "owners:    claim CODE\n", NULL},
    {"device", cmd_device,
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
     "           device telemetry ID [--from MS] [--to MS] [--after ID] [--limit N]\n",
     NULL},
    {"release", NULL,
     "releases:  (offline, the release signer's machine; docs/updates.md)\n"
     "           release keygen --out PREFIX                  PREFIX.key (0600) + PREFIX.pub\n"
     "           release root --version N --root-keys A.pub,B.pub --root-threshold K\n"
     "                  --release-keys R.pub,... --release-threshold K [--days D] --out ROOT.json\n"
     "           release manifest --model M --fw-version V --security-version S [--floor F]\n"
     "                  --image FILE [--days D] --out REL.json\n"
     "           release sign --file DOC.json --key K.key     add a signature (root or release)\n"
     "           release verify --root R1.json[,R2.json...] [--file REL.json [--image FILE]]\n",
     cmd_release},
    {"firmware", cmd_firmware,
     "firmware:  firmware root add --file ROOT.json | firmware roots    (roots: administrators)\n"
     "           firmware add --file REL.json [--image FILE]   a signed release (and its image)\n"
     "           firmware upload SHA256 --image FILE | firmware list [--model M]\n"
     "           firmware retire SHA256 --reason TEXT\n"
     "           firmware deploy SHA256 --device ID --reason TEXT [--ttl S]   signed update "
     "command\n",
     NULL},
    {"campaign", cmd_campaign,
     "campaigns: campaign create SHA256 --reason R [--group G] [--canary N] [--wave N] [--interval "
     "S]\n"
     "                  [--max-fail PCT] [--window HHhh]   canary, then waves; pauses on failures\n"
     "           campaign list | campaign show ID | campaign pause|resume|cancel ID --reason R\n",
     NULL},
    {"group", cmd_group,
     "           group add|remove NAME --device ID | group show NAME   campaign targets\n", NULL},
    {"advisory", cmd_advisory,
     "advisories: advisory add --model M --title T --severity low|medium|high|critical\n"
     "                  --affected V1,V2 [--fixed V] | advisory list [--model M]\n",
     NULL},
    {"support", cmd_support,
     "           support set MODEL --end YYYY-MM-DD | support show MODEL   security support end\n",
     NULL},
    {"schema", cmd_schema,
     "schemas:   schema set MODEL --file F | schema show MODEL   telemetry schema per model\n",
     NULL},
    {"audit", cmd_audit,
     "audit:     audit list [--after SEQ] | audit verify   (exit 3 when tampered)\n", NULL},
    {"transfer", cmd_transfer,
     "owners:    transfer start ID [--owner-data export|erase] | transfer cancel ID   (prints the "
     "code)\n"
     "           transfer accept CODE                    the new owner takes the device over\n",
     NULL},
    {"me", cmd_me,
     "           me export | me erase --confirm USERNAME | exports [ID]   your data (JSON)\n"
     "           me delete --confirm USERNAME [--devices decommission]   delete your account\n",
     NULL},
    {"exports", cmd_exports, NULL /* on me's line */, NULL},
    {"report", cmd_report,
     "reports:   report audit                            fleet audit checks (staff)\n"
     "           report matrix [--device ID] [--json]    the live 12 x 5 threat matrix (Markdown)\n"
     "           report etsi [--json]                    ETSI EN 303 645 self-assessment\n",
     NULL},
    {"alert", cmd_alert,
     "alerts:    alert list [--state open|acknowledged|resolved] [--device ID] [--after ID]\n"
     "           alert ack|resolve ID [--reason NOTE]\n",
     NULL},
    {"rule", cmd_rule,
     "           rule list | rule set RULE --action notify|quarantine|lock [--model M] [--count "
     "N]\n"
     "                                                   act once the alert counted N (default "
     "1)\n",
     NULL},
    {"webhook", cmd_webhook,
     "           webhook add URL | webhook list | webhook remove ID   (add prints the HMAC secret "
     "once)\n",
     NULL},
    {"events", cmd_events, "events:    events [--device ID] [--after ID]\n", NULL},
    {"health", cmd_health, "           health\n", NULL},
};

static void print_usage(FILE *f)
{
    fputs(USAGE_HEAD, f);
    for (size_t i = 0; i < CLI_LEN(COMMANDS); i++)
        if (COMMANDS[i].help)
            fputs(COMMANDS[i].help, f);
}

int cli_usage(void)
{
    print_usage(stderr);
    return EXIT_USAGE;
}

int cli_die(const char *msg)
{
    fprintf(stderr, "mamorictl: %s\n", msg);
    return EXIT_FAIL;
}

const struct command *cli_find(const struct command *table, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(table[i].name, name) == 0)
            return &table[i];
    return NULL;
}

int cli_dispatch(const struct command *table, size_t n, const char *name, const struct cli *c)
{
    const struct command *e = cli_find(table, n, name);
    return e && e->run ? e->run(c) : cli_usage();
}

/* ---- options (getopt_long; every option but --json takes a value) ---- */

/* --NAME TEXT: where the text goes. */
static const struct text_opt {
    const char *name;
    size_t off; /* of a const char * in struct opts */
} TEXT_OPTS[] = {
    {"data", offsetof(struct opts, data)},
    {"api", offsetof(struct opts, api)},
    {"ca", offsetof(struct opts, ca)},
    {"session", offsetof(struct opts, session)},
    {"password-file", offsetof(struct opts, password_file)},
    {"user", offsetof(struct opts, user)},
    {"role", offsetof(struct opts, role)},
    {"model", offsetof(struct opts, model)},
    {"out", offsetof(struct opts, out)},
    {"keystore", offsetof(struct opts, keystore)},
    {"tcti", offsetof(struct opts, tcti)},
    {"cert", offsetof(struct opts, cert)},
    {"csr", offsetof(struct opts, csr)},
    {"identity", offsetof(struct opts, identity)},
    {"reason", offsetof(struct opts, reason)},
    {"device", offsetof(struct opts, device)},
    {"name", offsetof(struct opts, name)},
    {"token-file", offsetof(struct opts, token_file)},
    {"mqtt-host", offsetof(struct opts, mqtt_host)},
    {"cn", offsetof(struct opts, cn)},
    {"file", offsetof(struct opts, file)},
    {"root-keys", offsetof(struct opts, root_keys)},
    {"release-keys", offsetof(struct opts, release_keys)},
    {"fw-version", offsetof(struct opts, fw_version)},
    {"image", offsetof(struct opts, image)},
    {"key", offsetof(struct opts, key)},
    {"root", offsetof(struct opts, root)},
    {"title", offsetof(struct opts, title)},
    {"severity", offsetof(struct opts, severity)},
    {"affected", offsetof(struct opts, affected)},
    {"fixed", offsetof(struct opts, fixed)},
    {"end", offsetof(struct opts, end)},
    {"group", offsetof(struct opts, group)},
    {"state", offsetof(struct opts, state)},
    {"action", offsetof(struct opts, action)},
    {"owner-data", offsetof(struct opts, keep)},
    {"confirm", offsetof(struct opts, confirm)},
    {"devices", offsetof(struct opts, devices)},
};

static bool nonzero(long n)
{
    return n != 0;
}

/* HHhh: from hour HH to hour hh, UTC */
static bool two_hours(long n)
{
    return n % 100 < 24 && n / 100 < 24;
}

/* --NAME N: a whole number in min..max (that check too, when there is
 * one), and where it goes. */
static const struct num_opt {
    const char *name;
    size_t off; /* of a long in struct opts */
    long min, max;
    bool (*check)(long n);
} NUM_OPTS[] = {
    {"count", offsetof(struct opts, count), 1, 100000, NULL},
    {"after", offsetof(struct opts, after), 0, LONG_MAX, NULL},
    {"limit", offsetof(struct opts, limit), 1, 1000, NULL},
    {"days", offsetof(struct opts, days), -9999, 9999, nonzero},
    {"ttl", offsetof(struct opts, ttl), 1, LONG_MAX, NULL},
    {"from", offsetof(struct opts, from), 0, LONG_MAX, NULL},
    {"to", offsetof(struct opts, to), 0, LONG_MAX, NULL},
    {"mqtt-port", offsetof(struct opts, mqtt_port), 1, 65535, NULL},
    {"version", offsetof(struct opts, version), 1, LONG_MAX, NULL},
    {"root-threshold", offsetof(struct opts, root_threshold), 1, 16, NULL},
    {"release-threshold", offsetof(struct opts, release_threshold), 1, 16, NULL},
    {"security-version", offsetof(struct opts, security_version), 0, LONG_MAX, NULL},
    {"floor", offsetof(struct opts, floor), 0, LONG_MAX, NULL},
    {"canary", offsetof(struct opts, canary), 0, LONG_MAX, NULL},
    {"wave", offsetof(struct opts, wave), 0, LONG_MAX, NULL},
    {"interval", offsetof(struct opts, interval), 0, LONG_MAX, NULL},
    {"max-fail", offsetof(struct opts, max_fail), 0, LONG_MAX, NULL},
    {"window", offsetof(struct opts, window), 0, 2323, two_hours},
};

/* getopt_long's codes: 1 for a word (in order), then one per option. */
enum {
    N_TEXT = CLI_LEN(TEXT_OPTS),
    N_NUM = CLI_LEN(NUM_OPTS),
    OPT_JSON = 256,
    OPT_TEXT = 257,
    OPT_NUM = OPT_TEXT + N_TEXT,
};

static bool set_number(const struct num_opt *n, const char *v, struct opts *o)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || x < n->min || x > n->max || (n->check && !n->check(x)))
        return false;
    *(long *)(void *)((char *)o + n->off) = x;
    return true;
}

static bool add_word(struct opts *o, const char *w)
{
    if (o->npos >= 4)
        return false;
    o->pos[o->npos++] = w;
    return true;
}

static void set_defaults(struct opts *o)
{
    memset(o, 0, sizeof(*o));
    o->limit = 100;
    o->days = 365;
    o->canary = o->wave = o->interval = o->max_fail = o->window = -1;
}

/* The option getopt_long found in word w, written out in full: no
 * abbreviation, no --name=value (mamorictl never took them). */
static bool written_out(const char *w, const struct option *lo, int idx)
{
    return idx >= 0 && strncmp(w, "--", 2) == 0 && strcmp(w + 2, lo[idx].name) == 0;
}

/* Words and options in any order; at most four words. A word may start
 * with a single '-' (a user may be called "-x"): it is taken as a word
 * before getopt_long would read it as short options. "--" is no word. */
static bool parse_args(int argc, char **argv, struct opts *o)
{
    struct option lo[N_TEXT + N_NUM + 2];
    for (size_t i = 0; i < N_TEXT; i++)
        lo[i] = (struct option){TEXT_OPTS[i].name, required_argument, NULL, OPT_TEXT + (int)i};
    for (size_t i = 0; i < N_NUM; i++)
        lo[N_TEXT + i] =
            (struct option){NUM_OPTS[i].name, required_argument, NULL, OPT_NUM + (int)i};
    lo[N_TEXT + N_NUM] = (struct option){"json", no_argument, NULL, OPT_JSON};
    lo[N_TEXT + N_NUM + 1] = (struct option){NULL, 0, NULL, 0};
    set_defaults(o);
    opterr = 0; /* the usage text says it */
    while (optind < argc) {
        const char *w = argv[optind];
        int idx = -1, ch = 1;
        if (w[0] == '-' && w[1] != '-' && w[1] != '\0')
            optarg = argv[optind++]; /* "-x": a word */
        else
            ch = getopt_long(argc, argv, "-", lo, &idx); /* -1: "--" */
        bool ok = ch != -1 && (ch == 1 || written_out(w, lo, idx));
        if (ok && ch == 1)
            ok = add_word(o, optarg);
        else if (ok && ch == OPT_JSON)
            o->json = 1;
        else if (ok && ch >= OPT_TEXT && ch < OPT_TEXT + N_TEXT)
            *(const char **)(void *)((char *)o + TEXT_OPTS[ch - OPT_TEXT].off) = optarg;
        else if (ok && ch >= OPT_NUM && ch < OPT_NUM + N_NUM)
            ok = set_number(&NUM_OPTS[ch - OPT_NUM], optarg, o);
        else
            ok = false; /* unknown, without its value, or "--" */
        if (!ok)
            return false;
    }
    o->window_start = o->window_end = -1;
    if (o->window >= 0) {
        o->window_start = o->window / 100;
        o->window_end = o->window % 100;
    }
    return o->npos > 0;
}

/* ---- the hub and the session ---- */

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

void cli_session_path(const struct opts *o, char *out, size_t n)
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
    cli_session_path(o, p, sizeof(p));
    if (fs_read_file(p, 256, &t, &len) != MAMORI_OK)
        return;
    t[strcspn(t, "\r\n")] = '\0';
    snprintf(a->token, sizeof(a->token), "%s", t);
    crypto_wipe(t, len);
    free(t);
}

/* Where the hub is (--api and --ca, else DATA/run/endpoints.json) and the
 * MQTT endpoint identities are made for. False when DATA's endpoints
 * cannot be read, which only the factory commands do without. */
static bool locate_hub(struct cli *c)
{
    const struct opts *o = &c->o;
    if (o->ca)
        snprintf(c->a.ca, sizeof(c->a.ca), "%s", o->ca);
    if (o->api)
        snprintf(c->a.base, sizeof(c->a.base), "%s", o->api);
    else if (c->data &&
             !load_endpoints(c->data, &c->a, c->mqtt_host, sizeof(c->mqtt_host), &c->mqtt_port) &&
             strcmp(c->cmd, "factory") != 0)
        return false;
    if (o->mqtt_host)
        snprintf(c->mqtt_host, sizeof(c->mqtt_host), "%s", o->mqtt_host);
    if (o->mqtt_port)
        c->mqtt_port = (int)o->mqtt_port;
    return true;
}

bool cli_read_secret(const char *file, const char *env, const char *prompt, char *out, size_t n)
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

json_t *cli_read_json_file(const char *file, size_t max)
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

/* The command's offline part first (no hub needed), then the hub is. */
static int run_command(const struct cli *c)
{
    const struct command *e = cli_find(COMMANDS, CLI_LEN(COMMANDS), c->cmd);
    if (e && e->offline) {
        int ret = e->offline(c);
        if (ret != CLI_NEEDS_HUB)
            return ret;
    }
    if (!c->a.base[0] || !c->a.ca[0])
        return cli_die("where is the hub? give --data DIR (or --api URL --ca FILE)");
    return e && e->run ? e->run(c) : cli_usage();
}

int main(int argc, char **argv)
{
    static struct cli c; /* static: zeroed, and large */
    if (argc > 1 && (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0)) {
        print_usage(stdout);
        return EXIT_OK;
    }
    if (!parse_args(argc, argv, &c.o))
        return cli_usage();
    umask(077);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    c.cmd = c.o.pos[0];
    c.sub = c.o.npos > 1 ? c.o.pos[1] : "";
    c.third = c.o.npos > 2 ? c.o.pos[2] : NULL;
    c.data = c.o.data ? c.o.data : getenv("MAMORI_DATA");
    snprintf(c.mqtt_host, sizeof(c.mqtt_host), "127.0.0.1");
    if (!locate_hub(&c))
        return cli_die("cannot read DATA/run/endpoints.json: is mamorid running?");
    load_token(&c.o, &c.a);
    int ret = run_command(&c);
    crypto_wipe(c.a.token, sizeof(c.a.token));
    curl_global_cleanup();
    return ret;
}
