/*
 * hub/broker_node.c - a broker node apart from the hub.
 *
 *   mamorid broker-init --from HUBDATA --data DIR --node NAME [--listen ADDR]
 *                       [--names NAME,ADDR,...] [--mqtt-port N] [--max-connections N]
 * [--max-payload B]
 *                       [--rate N] [--burst N]
 *   mamorid broker --data DIR [--plugin PATH] [--mosquitto PATH] [-v]
 *
 * broker-init gives a node what it needs from the hub's pki/: a key of
 * its own with a certificate from the hub's issuing CA naming what devices
 * and hubs dial (--names: host names and addresses; else loopback), the
 * device trust bundle, and the fingerprint of the hub's client certificate
 * (the only client the plugin obeys); it writes them with DIR/node.json.
 * Run again, it renews them (a new key; a manufacturer CA imported since)
 * and keeps the node's settings.
 *
 * broker runs mosquitto with the plugin on them and keeps it running:
 * restarted with backoff (0.25 s doubling to 30 s, reset after 60 s of
 * good running) when it dies, stopped with us (SIGTERM, SIGINT; kill -9
 * takes it too: parent-death signal). The node never needs a hub to run,
 * and a hub's restart costs it nothing: the plugin keeps the registry
 * snapshot the last hub sent and the devices stay connected. A node that
 * has no snapshot yet (its first start, or a restart of mosquitto) admits
 * no device until a hub sends one (fail closed, broker/plugin.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/crypto.h"
#include "common/fsutil.h"
#include "common/json.h"
#include "common/log.h"
#include "hub/broker_node.h"
#include "hub/io/broker.h"

#define NODE_JSON_MAX  (16 * 1024)
#define NODE_CERT_DAYS (2 * 365) /* the node's certificate; broker-init again renews it */

/* The command line of both commands: each option and where it goes. */
struct node_args {
    char from[HUB_PATH_MAX]; /* broker-init: the hub's data directory */
    char names[1024];        /* broker-init: names and addresses its certificate holds */
    struct broker_spec s;    /* data_dir, listen, node, port, limits; plugin, mosquitto */
};

enum arg_kind { ARG_STR, ARG_INT };

struct arg {
    const char *name;
    enum arg_kind kind;
    size_t off, len; /* in struct node_args; ARG_STR: the field's size */
    long lo, hi;     /* ARG_INT */
};

#define A_STR(n, f)                                                                                \
    {                                                                                              \
        n, ARG_STR, offsetof(struct node_args, f), sizeof(((struct node_args *)0)->f), 0, 0        \
    }
#define A_INT(n, f, l, h)                                                                          \
    {                                                                                              \
        n, ARG_INT, offsetof(struct node_args, f), 0, l, h                                         \
    }

static const struct arg INIT_ARGS[] = {
    A_STR("from", from),
    A_STR("data", s.data_dir),
    A_STR("node", s.node),
    A_STR("listen", s.listen),
    A_STR("names", names),
    A_INT("mqtt-port", s.port, 1, 65535),
    A_INT("max-connections", s.max_connections, 1, 1000000),
    A_INT("max-payload", s.max_payload, 256, 256 * 1024),
    A_INT("rate", s.rate, 1, 100000),
    A_INT("burst", s.burst, 1, 100000),
};

static const struct arg RUN_ARGS[] = {
    A_STR("data", s.data_dir),
    A_STR("plugin", s.plugin),
    A_STR("mosquitto", s.mosquitto),
};

/* Fills a from the command line; false after a message. */
static bool parse(int argc, char **argv, const struct arg *args, size_t n, struct node_args *a)
{
    struct option lopts[16];
    if (n >= sizeof(lopts) / sizeof(lopts[0]))
        return false;
    for (size_t i = 0; i < n; i++)
        lopts[i] = (struct option){args[i].name, required_argument, NULL, (int)(i + 1000)};
    memset(&lopts[n], 0, sizeof(lopts[n]));
    optind = 1;
    int c;
    while ((c = getopt_long_only(argc, argv, "v", lopts, NULL)) != -1) {
        if (c == 'v') {
            log_set_level(LOG_DEBUG);
            continue;
        }
        if (c < 1000 || (size_t)(c - 1000) >= n)
            return false; /* getopt said why */
        const struct arg *o = &args[c - 1000];
        char *base = (char *)a, *end;
        long v = o->kind == ARG_INT ? strtol(optarg, &end, 10) : 0;
        bool ok = o->kind == ARG_STR
                      ? (size_t)snprintf(base + o->off, o->len, "%s", optarg) < o->len
                      : *optarg && !*end && v >= o->lo && v <= o->hi;
        if (!ok) {
            fprintf(stderr, "mamorid: bad option --%s %s\n", o->name, optarg);
            return false;
        }
        if (o->kind == ARG_INT)
            *(int *)(void *)(base + o->off) = (int)v;
    }
    if (optind < argc) {
        fprintf(stderr, "mamorid: unexpected argument %s\n", argv[optind]);
        return false;
    }
    return true;
}

/* An IP address, or a host name of letters, digits, dots and hyphens: what
 * may reach mosquitto.conf (a listener) or a certificate's subjectAltName. */
static bool host_ok(const char *a, bool *ip)
{
    unsigned char bin[16];
    size_t len = strlen(a);
    *ip = inet_pton(AF_INET, a, bin) == 1 || inet_pton(AF_INET6, a, bin) == 1;
    return *ip ||
           (len > 0 && len <= 253 && a[0] != '-' && a[0] != '.' &&
            strspn(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") == len);
}

static bool hex64(const char *s)
{
    return strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

/* DIR/node.json into s (its data_dir already set) and, when names is not
 * NULL, the names its certificate holds; false when it is missing or not
 * valid. */
static bool node_load(struct broker_spec *s, char *names, size_t nn)
{
    char p[HUB_PATH_MAX];
    char *txt = NULL;
    size_t len = 0;
    json_t *j = NULL;
    bool ip;
    const char *node = NULL, *listen = NULL, *fp = NULL, *nm = "";
    uint64_t port = 0, conns = 0, payload = 0, rate = 0, burst = 0;
    bool ok = fs_path(p, sizeof(p), s->data_dir, "node.json") == MAMORI_OK &&
              fs_read_file(p, NODE_JSON_MAX, &txt, &len) == MAMORI_OK &&
              json_parse_untrusted(txt, len, NODE_JSON_MAX, &j, NULL, 0) == MAMORI_OK &&
              json_get_str(j, "node", HUB_NODE_LEN, &node) && hub_node_name_ok(node) &&
              json_get_str(j, "listen", sizeof(s->listen) - 1, &listen) && host_ok(listen, &ip) &&
              json_get_str(j, "hub_fp", 64, &fp) && hex64(fp) &&
              (!json_object_get(j, "names") || json_get_str(j, "names", nn ? nn - 1 : 1023, &nm)) &&
              json_get_u64(j, "port", &port) && port >= 1 && port <= 65535 &&
              json_get_u64(j, "max_connections", &conns) && conns >= 1 && conns <= 1000000 &&
              json_get_u64(j, "max_payload", &payload) && payload >= 256 && payload <= 256 * 1024 &&
              json_get_u64(j, "rate", &rate) && rate >= 1 && rate <= 100000 &&
              json_get_u64(j, "burst", &burst) && burst >= 1 && burst <= 100000;
    if (ok) {
        snprintf(s->node, sizeof(s->node), "%s", node);
        snprintf(s->listen, sizeof(s->listen), "%s", listen);
        snprintf(s->hub_fp, sizeof(s->hub_fp), "%s", fp);
        s->port = (int)port;
        s->max_connections = (int)conns;
        s->max_payload = (int)payload;
        s->rate = (int)rate;
        s->burst = (int)burst;
        if (names)
            snprintf(names, nn, "%s", nm);
    }
    json_decref(j);
    free(txt);
    return ok;
}

static enum mamori_err node_save(const struct broker_spec *s, const char *names)
{
    char p[HUB_PATH_MAX];
    enum mamori_err rc = fs_path(p, sizeof(p), s->data_dir, "node.json");
    json_t *j =
        json_pack("{s:s,s:s,s:i,s:s,s:i,s:i,s:i,s:i}", "node", s->node, "listen", s->listen, "port",
                  s->port, "hub_fp", s->hub_fp, "max_connections", s->max_connections,
                  "max_payload", s->max_payload, "rate", s->rate, "burst", s->burst);
    if (j && names[0]) /* the certificate's names, kept for its renewal */
        json_object_set_new(j, "names", json_string(names));
    char *txt = j ? json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
    if (!rc)
        rc = txt ? fs_write_atomic(p, txt, strlen(txt), 0600) : MAMORI_ERR_NOMEM;
    free(txt);
    json_decref(j);
    return rc;
}

/* Copies the hub's pki/NAME into DIR/tls/NAME. */
static enum mamori_err copy_pki(const struct node_args *a, const char *tls, const char *name,
                                mode_t mode)
{
    char src[HUB_PATH_MAX], dst[HUB_PATH_MAX], pki[HUB_PATH_MAX];
    enum mamori_err rc;
    if ((rc = fs_path(pki, sizeof(pki), a->from, "pki")) ||
        (rc = fs_path(src, sizeof(src), pki, name)) || (rc = fs_path(dst, sizeof(dst), tls, name)))
        return rc;
    return fs_copy(src, dst, 32 * 1024 * 1024, mode);
}

/* The hub client certificate's fingerprint, from the hub's pki/. */
static enum mamori_err hub_fingerprint(const char *from, char fp[65])
{
    char p[HUB_PATH_MAX], pki[HUB_PATH_MAX];
    struct crypto_cert *c = NULL;
    enum mamori_err rc;
    if ((rc = fs_path(pki, sizeof(pki), from, "pki")) ||
        (rc = fs_path(p, sizeof(p), pki, "hub-client.crt")) || (rc = crypto_cert_load(p, &c)))
        return rc;
    crypto_cert_fingerprint(c, fp);
    crypto_cert_free(c);
    return MAMORI_OK;
}

/* "DNS:name,IP:addr,..." from a comma list of host names and addresses;
 * false on anything else (the result is OpenSSL configuration text: no
 * character beyond a name's may reach it). */
static bool san_of(const char *names, char *out, size_t n)
{
    char list[sizeof(((struct node_args *)0)->names)], *save = NULL;
    size_t o = 0;
    snprintf(list, sizeof(list), "%s", names);
    out[0] = '\0';
    for (char *a = strtok_r(list, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
        bool ip;
        if (!host_ok(a, &ip))
            return false;
        int k = snprintf(out + o, n - o, "%s%s:%s", o ? "," : "", ip ? "IP" : "DNS", a);
        if (k < 0 || (size_t)k >= n - o)
            return false;
        o += (size_t)k;
    }
    return o > 0;
}

/* A key of the node's own and its certificate from the hub's issuing CA,
 * naming what devices and hubs dial (--names; else loopback only), into
 * DIR/tls: broker.key (0600), broker.crt (leaf + issuing CA). */
static enum mamori_err issue_node_cert(const struct node_args *a, const char *tls)
{
    char pki[HUB_PATH_MAX], p[HUB_PATH_MAX], san[2048], cn[64];
    struct crypto_cert *iss = NULL;
    struct crypto_key *iss_key = NULL, *key = NULL;
    char *pem = NULL;
    enum mamori_err rc;
    if (a->names[0] && !san_of(a->names, san, sizeof(san))) {
        log_err("--names %s: host names and IP addresses, separated by commas", a->names);
        return MAMORI_ERR_INVAL;
    }
    snprintf(cn, sizeof(cn), "mamori-broker-%s", a->s.node);
    if ((rc = fs_path(pki, sizeof(pki), a->from, "pki")) ||
        (rc = fs_path(p, sizeof(p), pki, "issuing.crt")) || (rc = crypto_cert_load(p, &iss)) ||
        (rc = fs_path(p, sizeof(p), pki, "issuing.key")) || (rc = fs_check_private(p, 0)) ||
        (rc = crypto_key_load(p, &iss_key)) || (rc = crypto_key_generate(&key)))
        goto out;
    struct crypto_issue ip = {.kind = CRYPTO_CERT_SERVER,
                              .cn = cn,
                              .org = "Mamori platform",
                              .subject = key,
                              .issuer = iss,
                              .issuer_key = iss_key,
                              .not_after = time(NULL) + NODE_CERT_DAYS * 86400L,
                              .san = a->names[0] ? san : NULL};
    if (!(rc = crypto_cert_issue_chain(&ip, &pem)) &&
        !(rc = fs_path(p, sizeof(p), tls, "broker.key")) && !(rc = crypto_key_save(key, p)) &&
        !(rc = fs_path(p, sizeof(p), tls, "broker.crt")))
        rc = fs_write_atomic(p, pem, strlen(pem), 0644);
out:
    free(pem);
    crypto_cert_free(iss);
    crypto_key_free(iss_key);
    crypto_key_free(key);
    return rc;
}

/* Fills what the command line left out: the node's earlier settings
 * (kept by a refresh), else the hub's defaults and a free port. */
static void init_defaults(struct node_args *a)
{
    struct broker_spec old = {0};
    struct hub_config def;
    hub_config_defaults(&def);
    snprintf(old.data_dir, sizeof(old.data_dir), "%s", a->s.data_dir);
    char names[sizeof(a->names)] = "";
    bool had = node_load(&old, names, sizeof(names));
    struct broker_spec *s = &a->s;
    if (!a->names[0] && had) /* a renewal keeps the names its certificate held */
        snprintf(a->names, sizeof(a->names), "%s", names);
    if (!s->listen[0])
        snprintf(s->listen, sizeof(s->listen), "%s", had ? old.listen : def.listen_addr);
    if (!s->port)
        s->port = had ? old.port : broker_pick_port(s->listen);
    if (!s->max_connections)
        s->max_connections = had ? old.max_connections : def.max_connections;
    if (!s->max_payload)
        s->max_payload = had ? old.max_payload : def.max_payload;
    if (!s->rate)
        s->rate = had ? old.rate : def.msg_rate;
    if (!s->burst)
        s->burst = had ? old.burst : def.msg_burst;
}

int broker_init_main(int argc, char **argv)
{
    struct node_args a = {0};
    char tls[HUB_PATH_MAX];
    if (!parse(argc, argv, INIT_ARGS, sizeof(INIT_ARGS) / sizeof(INIT_ARGS[0]), &a) || !a.from[0] ||
        !a.s.data_dir[0] || !hub_node_name_ok(a.s.node)) {
        fprintf(stderr, "usage: mamorid broker-init --from HUBDATA --data DIR --node NAME "
                        "(a-z, 0-9, -; at most 32)\n"
                        "       [--listen ADDR] [--names NAME,ADDR,...] [--mqtt-port N]\n"
                        "       [--max-connections N]\n"
                        "       [--max-payload BYTES] [--rate N] [--burst N]\n");
        return 2;
    }
    umask(077);
    enum mamori_err rc;
    if ((rc = fs_mkdir_p(a.s.data_dir, 0700)) || (rc = fs_check_private(a.s.data_dir, 0))) {
        log_err("%s must be a directory owned by us with mode 0700: %s", a.s.data_dir,
                mamori_strerror(rc));
        return 1;
    }
    init_defaults(&a);
    bool ip;
    if (!host_ok(a.s.listen, &ip)) {
        log_err("--listen %s: an IP address or a host name", a.s.listen);
        return 1;
    }
    if (a.s.port <= 0) {
        log_err("no free port found on %s for the node: give --mqtt-port", a.s.listen);
        return 1;
    }
    if ((rc = fs_path(tls, sizeof(tls), a.s.data_dir, "tls")) || (rc = fs_mkdir_p(tls, 0700)) ||
        (rc = hub_fingerprint(a.from, a.s.hub_fp)) || (rc = issue_node_cert(&a, tls)) ||
        (rc = copy_pki(&a, tls, "device-trust.pem", 0644)) || (rc = node_save(&a.s, a.names))) {
        log_err("cannot prepare broker node %s from %s: %s", a.s.node, a.from, mamori_strerror(rc));
        return 1;
    }
    printf("broker node %s: mqtts://%s:%d\nstart it with: mamorid broker --data %s\n", a.s.node,
           a.s.listen, a.s.port, a.s.data_dir);
    return 0;
}

static void write_pid(const struct broker_spec *s, pid_t pid)
{
    char p[HUB_PATH_MAX], dir[HUB_PATH_MAX], line[32];
    int n = snprintf(line, sizeof(line), "%d\n", (int)pid);
    if (fs_path(dir, sizeof(dir), s->data_dir, "run") || fs_mkdir_p(dir, 0700) ||
        fs_path(p, sizeof(p), dir, "broker.pid") || fs_write_atomic(p, line, (size_t)n, 0644))
        log_warn("cannot write the broker pid file");
}

/* Waits for a signal in set for at most ms (-1: no limit); 0 on timeout. */
static int wait_signal(const sigset_t *set, long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    int sig;
    do
        sig = ms < 0 ? sigwaitinfo(set, NULL) : sigtimedwait(set, NULL, &ts);
    while (sig < 0 && errno == EINTR);
    return sig < 0 ? 0 : sig;
}

/* Stops mosquitto: SIGTERM, then SIGKILL after 10 s. */
static void stop_child(pid_t pid, const sigset_t *set)
{
    kill(pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return;
        (void)wait_signal(set, 100);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs mosquitto until a stop signal; restarts it when it dies. */
static int supervise(const struct broker_spec *s, const sigset_t *set)
{
    unsigned backoff_ms = 250;
    char conf[HUB_PATH_MAX];
    for (;;) {
        int64_t started = mono_ms();
        pid_t pid = -1;
        enum mamori_err rc = broker_spec_config(s, conf, sizeof(conf));
        if (rc)
            log_err("cannot write the broker's configuration: %s", mamori_strerror(rc));
        else if ((pid = broker_spawn(s, conf)) < 0)
            log_err("cannot start mosquitto (%s)", s->mosquitto);
        if (pid > 0) {
            write_pid(s, pid);
            log_info("broker node %s: mosquitto started (pid %d, mqtts://%s:%d)", s->node, (int)pid,
                     s->listen, s->port);
        }
        int st = 0;
        while (pid > 0) {
            int sig = wait_signal(set, -1);
            if (sig == SIGTERM || sig == SIGINT) {
                log_info("signal %d: stopping broker node %s", sig, s->node);
                stop_child(pid, set);
                return 0;
            }
            if (waitpid(pid, &st, WNOHANG) == pid)
                break;
        }
        if (pid > 0)
            log_warn("mosquitto exited (%s %d); restarting in %u ms",
                     WIFEXITED(st) ? "status" : "signal",
                     WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), backoff_ms);
        if (mono_ms() - started > 60000)
            backoff_ms = 250;
        int sig = wait_signal(set, (long)backoff_ms);
        if (sig == SIGTERM || sig == SIGINT)
            return 0;
        backoff_ms = backoff_ms * 2 > 30000 ? 30000 : backoff_ms * 2;
    }
}

/* The node's own files: what it runs on must be ours alone. */
static bool node_files_ok(struct broker_spec *s)
{
    char p[HUB_PATH_MAX];
    static const char *const need[] = {"broker.crt", "device-trust.pem"};
    if (fs_path(s->tls_dir, sizeof(s->tls_dir), s->data_dir, "tls") ||
        fs_path(p, sizeof(p), s->tls_dir, "broker.key") || fs_check_private(p, 0) != MAMORI_OK) {
        log_err("%s/tls/broker.key must be ours with mode 0600 (mamorid broker-init)", s->data_dir);
        return false;
    }
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
        if (fs_path(p, sizeof(p), s->tls_dir, need[i]) || access(p, R_OK)) {
            log_err("%s missing (mamorid broker-init)", p);
            return false;
        }
    if (access(s->mosquitto, X_OK) || access(s->plugin, R_OK)) {
        log_err("mosquitto (%s) or the plugin (%s) not found", s->mosquitto, s->plugin);
        return false;
    }
    return true;
}

int broker_node_main(int argc, char **argv, const char *plugin)
{
    struct node_args a = {0};
    struct hub_config def;
    hub_config_defaults(&def);
    snprintf(a.s.plugin, sizeof(a.s.plugin), "%s", plugin);
    snprintf(a.s.mosquitto, sizeof(a.s.mosquitto), "%s", def.mosquitto_bin);
    if (!parse(argc, argv, RUN_ARGS, sizeof(RUN_ARGS) / sizeof(RUN_ARGS[0]), &a) ||
        !a.s.data_dir[0]) {
        fprintf(stderr, "usage: mamorid broker --data DIR [--plugin PATH] [--mosquitto PATH] "
                        "[-v]\n");
        return 2;
    }
    umask(077);
    log_set_tag("mamori-broker");
    char lock[HUB_PATH_MAX];
    int lock_fd = -1;
    enum mamori_err rc;
    if (fs_check_private(a.s.data_dir, 0) != MAMORI_OK || !node_load(&a.s, NULL, 0)) {
        log_err("%s: not a broker node's directory (0700, with a valid node.json: mamorid "
                "broker-init)",
                a.s.data_dir);
        return 1;
    }
    if (!node_files_ok(&a.s))
        return 1;
    /* one supervisor per node directory */
    if ((rc = fs_path(lock, sizeof(lock), a.s.data_dir, "node.lock")) ||
        (rc = fs_lock_file(lock, &lock_fd))) {
        log_err("%s is in use by another broker node: %s", a.s.data_dir, mamori_strerror(rc));
        return 1;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int ret = supervise(&a.s, &set);
    broker_spec_cleanup(&a.s);
    close(lock_fd);
    return ret;
}
