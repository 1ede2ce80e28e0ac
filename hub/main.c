/*
 * mamorid - the Mamori hub. Thin main over libmamori_hub (hub/daemon.h).
 *
 *   mamorid --data DIR [--store postgresql://...|sqlite:PATH] [--name NAME]
 *           [--broker HOST:PORT[,HOST:PORT...] [--mqtt-public HOST:PORT]] [--listen ADDR]
 *           [--api-port N] [--mqtt-port N] [--heartbeat S] [--max-connections N] [--api-connections
 * N]
 *           [--api-per-address N] [--api-head-timeout S] [--api-min-body-rate B]
 *           [--api-unauth-connections N] [--plugin PATH]
 *           [--mosquitto PATH] [--rate N] [--burst N] [--demo-fleet N]
 *           [--cert-days N] [--cert-renew-days N] [--cert-max-age-days N]
 *           [--rotation-check SECONDS] [--smtp URL --smtp-from ADDR]
 *           [--syslog local|udp://IP:PORT] [--stray-after SECONDS]
 *           [--rate-window SECONDS] [--challenge-interval SECONDS]
 *           [--owner-idle-after SECONDS] [--rules on|off]
 *           [--alert-retention-days N] [--data-retention-days N] [-v]
 *
 * Port 0 (the default) picks an ephemeral port; the chosen endpoints are
 * written to DIR/run/endpoints.json. SIGTERM or SIGINT stop it cleanly.
 * With --broker the hub starts no broker: it connects to each broker node
 * apart from it (`mamorid broker`, hub/broker_node.c), and gives devices
 * --mqtt-public (a load balancer in front of the nodes) or the first node.
 * Several hubs share one PostgreSQL store, each under a --name of its own
 * and a data directory made with `mamorid hub-init` (hub/core/cluster.h).
 *
 *   mamorid broker-init ...   prepares a broker node's directory
 *   mamorid broker ...        runs a broker node
 *   mamorid hub-init ...      prepares one more hub's data directory
 */
#include <curl/curl.h>
#include <getopt.h>
#include <stddef.h>
#include <stdint.h>
#include <libgen.h>
#include <mosquitto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "hub/demo.h"
#include "hub/alerts/alerts.h"
#include "hub/broker_node.h"
#include "hub/daemon.h"
#include "hub/hub_init.h"
#include "hub/io/broker.h"
#include "hub/store/store.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: mamorid --data DIR [--store postgresql://...|sqlite:PATH] [--name NAME]\n"
            "               [--broker HOST:PORT[,HOST:PORT...] [--mqtt-public HOST:PORT]]\n"
            "               [--listen ADDR] [--api-port N] [--mqtt-port N]\n"
            "               [--heartbeat SECONDS] [--max-connections N]\n"
            "               [--api-connections N] [--api-per-address N]\n"
            "               [--api-head-timeout SECONDS] [--api-min-body-rate BYTES/S]\n"
            "               [--api-unauth-connections N] [--plugin PATH]\n"
            "               [--mosquitto PATH] [--rate N] [--burst N] [--demo-fleet N]\n"
            "               [--cert-days N] [--cert-renew-days N] [--cert-max-age-days N]\n"
            "               [--rotation-check SECONDS] [--smtp URL --smtp-from ADDR]\n"
            "               [--syslog local|udp://IP:PORT] [--stray-after SECONDS]\n"
            "               [--rate-window SECONDS] [--challenge-interval SECONDS]\n"
            "               [--owner-idle-after SECONDS] [--rules on|off]\n"
            "               [--alert-retention-days N] [--data-retention-days N] [-v]\n"
            "       mamorid broker-init --from HUBDATA --data DIR --node NAME ...\n"
            "       mamorid broker --data DIR ...\n"
            "       mamorid hub-init --from HUBDATA --data DIR\n");
}

static void default_plugin(char *out, size_t n)
{
    char exe[HUB_PATH_MAX];
    ssize_t l = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (l <= 0) {
        snprintf(out, n, "mamori_broker.so");
        return;
    }
    exe[l] = '\0';
    snprintf(out, n, "%s/../lib/mamori_broker.so", dirname(exe));
}

/* Options: each long option and where its value goes (getopt_long does
 * the parsing; this table says what a value must be). */
enum opt_kind { OPT_INT, OPT_INT64, OPT_STR, OPT_RULES };

struct opt {
    const char *name;
    enum opt_kind kind;
    size_t off;                /* in struct hub_config (OPT_*), or SIZE_MAX: the demo fleet */
    size_t len;                /* OPT_STR: the field's size */
    long long lo, hi;          /* OPT_INT, OPT_INT64 */
    bool (*ok)(const char *v); /* OPT_STR: extra check, or NULL */
};

#define DEMO SIZE_MAX
#define I(n, f, l, h)                                                                              \
    {                                                                                              \
        n, OPT_INT, offsetof(struct hub_config, f), 0, l, h, NULL                                  \
    }
#define I64(n, f, l, h)                                                                            \
    {                                                                                              \
        n, OPT_INT64, offsetof(struct hub_config, f), 0, l, h, NULL                                \
    }
#define S(n, f, chk)                                                                               \
    {                                                                                              \
        n, OPT_STR, offsetof(struct hub_config, f), sizeof(((struct hub_config *)0)->f), 0, 0, chk \
    }

static bool smtp_url_ok(const char *v)
{
    return strncmp(v, "smtp://", 7) == 0 || strncmp(v, "smtps://", 8) == 0;
}

static bool syslog_ok(const char *v)
{
    return strcmp(v, "local") == 0 || strncmp(v, "udp://", 6) == 0;
}

/* A hub's name: a node's name that cannot be read as another hub's data
 * session (client ids mamori-hub-NAME, -NAME-data, -NAME-events). */
static bool hub_cli_name_ok(const char *v)
{
    static const char *const taken[] = {"-data", "-events"};
    size_t n = strlen(v);
    if (!hub_node_name_ok(v) || strcmp(v, "data") == 0 || strcmp(v, "events") == 0)
        return false;
    for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++) {
        size_t k = strlen(taken[i]);
        if (n > k && strcmp(v + n - k, taken[i]) == 0)
            return false;
    }
    return true;
}

static bool store_ok(const char *v)
{
    return store_is_postgresql(v) || (strncmp(v, "sqlite:", 7) == 0 && v[7]);
}

static bool addr_ok(const char *v)
{
    char host[HUB_HOST_LEN + 1];
    int port;
    return broker_addr_parse(v, host, sizeof(host), &port);
}

/* HOST:PORT[,HOST:PORT...], at most HUB_NODES_MAX */
static bool broker_ok(const char *v)
{
    char list[1024], *save = NULL;
    size_t n = 0;
    if ((size_t)snprintf(list, sizeof(list), "%s", v) >= sizeof(list))
        return false;
    for (char *a = strtok_r(list, ",", &save); a; a = strtok_r(NULL, ",", &save))
        if (++n > HUB_NODES_MAX || !addr_ok(a))
            return false;
    return n > 0;
}

static const struct opt OPTS[] = {
    S("data", data_dir, NULL),
    S("name", hub_name, hub_cli_name_ok),
    S("store", store, store_ok),
    S("broker", broker, broker_ok),
    S("mqtt-public", mqtt_public, addr_ok),
    S("listen", listen_addr, NULL),
    I("api-port", api_port, 0, 65535),
    I("mqtt-port", mqtt_port, 0, 65535),
    I("heartbeat", heartbeat_s, 1, 3600),
    I("max-connections", max_connections, 1, 1000000),
    I("api-connections", api_connections, 1, 100000),
    I("api-per-address", api_per_address, 1, 100000),
    I("api-head-timeout", api_head_s, 1, 3600),
    I("api-min-body-rate", api_min_body_rate, 1, 1000000000),
    I("api-unauth-connections", api_unauth_conns, 1, 100000),
    {"demo-fleet", OPT_INT, DEMO, 0, 0, 100000, NULL},
    I("rate", msg_rate, 1, 100000),
    I("burst", msg_burst, 1, 100000),
    I("cert-days", device_cert_days, 1, 3650),
    I("cert-renew-days", cert_renew_days, 0, 3650),
    I("cert-max-age-days", cert_max_age_days, 0, 3650),
    I("rotation-check", rotation_check_s, 1, 86400),
    I("challenge-interval", challenge_s, 0, 7 * 86400),
    I("data-retention-days", data_retention_days, 0, 36500),
    I("alert-retention-days", alert_retention_days, 0, 3650),
    {"rules", OPT_RULES, 0, 0, 0, 0, NULL},
    I("rate-window", rate_window_s, 0, 3600),
    I64("owner-idle-after", owner_idle_s, 0, 10LL * 365 * 24 * 3600),
    I64("stray-after", stray_after_s, 0, 365LL * 24 * 3600),
    S("smtp", smtp_url, smtp_url_ok),
    S("smtp-from", smtp_from, alerts_address_ok),
    S("syslog", syslog, syslog_ok),
    S("plugin", plugin_path, NULL),
    S("mosquitto", mosquitto_bin, NULL),
};
#define N_OPTS (sizeof(OPTS) / sizeof(OPTS[0]))

/* Applies one option's value; false when it is not acceptable. */
static bool opt_apply(const struct opt *o, const char *v, struct hub_config *cfg, int *demo)
{
    char *base = (char *)cfg, *end;
    long long n;
    switch (o->kind) {
    case OPT_STR:
        return (size_t)snprintf(base + o->off, o->len, "%s", v) < o->len && (!o->ok || o->ok(v));
    case OPT_RULES:
        cfg->rules_off = strcmp(v, "off") == 0;
        return strcmp(v, "on") == 0 || strcmp(v, "off") == 0;
    case OPT_INT:
    case OPT_INT64:
        n = strtoll(v, &end, 10);
        if (*v == '\0' || *end != '\0' || n < o->lo || n > o->hi)
            return false;
        if (o->off == DEMO)
            *demo = (int)n;
        else if (o->kind == OPT_INT)
            *(int *)(void *)(base + o->off) = (int)n;
        else
            *(int64_t *)(void *)(base + o->off) = (int64_t)n;
        return true;
    }
    return false;
}

/* Fills cfg (and *demo) from the command line; false after a message on
 * a bad or missing value. */
static bool parse_args(int argc, char **argv, struct hub_config *cfg, int *demo)
{
    struct option lopts[N_OPTS + 1];
    for (size_t i = 0; i < N_OPTS; i++)
        lopts[i] = (struct option){OPTS[i].name, required_argument, NULL, (int)(i + 1000)};
    memset(&lopts[N_OPTS], 0, sizeof(lopts[N_OPTS]));
    int c;
    opterr = 1;
    while ((c = getopt_long_only(argc, argv, "v", lopts, NULL)) != -1) {
        if (c == 'v') {
            log_set_level(LOG_DEBUG);
            continue;
        }
        if (c < 1000 || (size_t)(c - 1000) >= N_OPTS)
            return false; /* getopt said why */
        const struct opt *o = &OPTS[c - 1000];
        if (!opt_apply(o, optarg, cfg, demo)) {
            fprintf(stderr, "mamorid: bad option --%s %s\n", o->name, optarg);
            return false;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mamorid: unexpected argument %s\n", argv[optind]);
        return false;
    }
    return true;
}

/* The broker node's commands (hub/broker_node.h). */
static int run_broker_init(int argc, char **argv, const char *plugin)
{
    (void)plugin;
    return broker_init_main(argc, argv);
}

static int run_hub_init(int argc, char **argv, const char *plugin)
{
    (void)plugin;
    return hub_init_main(argc, argv);
}

static const struct {
    const char *name;
    int (*run)(int argc, char **argv, const char *plugin);
} COMMANDS[] = {
    {"broker", broker_node_main},
    {"broker-init", run_broker_init},
    {"hub-init", run_hub_init},
};

int main(int argc, char **argv)
{
    struct hub_config cfg;
    int demo = 0;
    hub_config_defaults(&cfg);
    default_plugin(cfg.plugin_path, sizeof(cfg.plugin_path));
    log_set_tag("mamorid");
    for (size_t i = 0; argc > 1 && i < sizeof(COMMANDS) / sizeof(COMMANDS[0]); i++)
        if (strcmp(argv[1], COMMANDS[i].name) == 0)
            return COMMANDS[i].run(argc - 1, argv + 1, cfg.plugin_path);
    if (!parse_args(argc, argv, &cfg, &demo)) {
        usage();
        return 2;
    }
    if (!cfg.smtp_url[0] != !cfg.smtp_from[0]) {
        fprintf(stderr, "mamorid: --smtp and --smtp-from go together\n");
        return 2;
    }
    if (cfg.api_connections > 1 && cfg.api_unauth_conns >= cfg.api_connections) {
        fprintf(stderr, "mamorid: --api-unauth-connections must be below --api-connections\n");
        return 2;
    }
    if (!cfg.data_dir[0]) {
        usage();
        return 2;
    }
    umask(077);
    signal(SIGPIPE, SIG_IGN);
    /* Threads inherit this mask; only main waits for the stop signals. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    mosquitto_lib_init();
    curl_global_init(CURL_GLOBAL_DEFAULT); /* alert webhooks (hub/alerts/deliver.c) */

    struct hub h;
    enum mamori_err rc = hub_init(&h, &cfg);
    if (rc) {
        log_err("initialisation failed: %s", mamori_strerror(rc));
        return 1;
    }
    rc = hub_start(&h);
    if (rc) {
        log_err("start failed: %s", mamori_strerror(rc));
        hub_stop(&h);
        hub_free(&h);
        return 1;
    }
    if (cfg.rules_off)
        log_warn("alert rules are off (--rules off): events are recorded, no alert is raised");
    if (demo > 0 && (rc = demo_fleet(&h, demo)) != MAMORI_OK)
        log_warn("demo fleet incomplete: %s", mamori_strerror(rc));
    log_info("ready: API https://%s:%d/api/v1  MQTT mqtts://%s:%d  data %s", cfg.listen_addr,
             h.api_port, h.broker_host, h.broker_port, cfg.data_dir);
    int sig = 0;
    sigwait(&stop, &sig);
    log_info("signal %d: stopping", sig);
    hub_stop(&h);
    hub_free(&h);
    mosquitto_lib_cleanup();
    curl_global_cleanup();
    return 0;
}
