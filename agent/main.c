/*
 * mamori-agent - the device-side daemon over libmamori.
 *
 *   mamori-agent --config FILE [--status FILE]       run
 *   mamori-agent send --socket PATH [--event] JSON    hand one message to it
 *
 * Applications on the device hand telemetry and events to the agent over a
 * local Unix socket (mode 0600, in the state directory by default), one JSON
 * object per line:
 *   {"tm": {...}}   {"tm_batch": [{...}, ...]}   {"ev": {...}}
 * and get one line back: {"ok":true} or {"ok":false,"error":"..."}. An "ok"
 * means the message is on disk in the outbox; delivery follows whenever the
 * hub is reachable. SIGTERM/SIGINT stop it cleanly.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/config.h"
#include "common/buf.h"
#include "common/crypto.h"
#include "common/fsutil.h"
#include "common/json.h"
#include "common/log.h"
#include "common/notice.h"
#include "mamori/device.h"

#define MAX_CLIENTS  8
#define LINE_MAX_LEN (64 * 1024)

static volatile sig_atomic_t g_stop;

static void on_sig(int s)
{
    (void)s;
    g_stop = 1;
}

struct client {
    int fd;
    size_t len;
    char buf[LINE_MAX_LEN];
};

static int listen_unix(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(a.sun_path))
        return -1;
    memcpy(a.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    unlink(path);
    mode_t old = umask(0177); /* the socket is created 0600 */
    int r = bind(fd, (struct sockaddr *)&a, sizeof(a));
    umask(old);
    if (r || listen(fd, 16)) {
        close(fd);
        return -1;
    }
    return fd;
}

static void reply(int fd, enum mamori_err rc)
{
    char out[160];
    int n =
        rc ? snprintf(out, sizeof(out), "{\"ok\":false,\"error\":\"%s\"}\n", mamori_strerror(rc))
           : snprintf(out, sizeof(out), "{\"ok\":true}\n");
    if (n > 0 && write(fd, out, (size_t)n) < 0)
        log_debug("client reply: %s", strerror(errno));
}

static enum mamori_err handle_line(struct mamori_device *dev, const char *line, size_t len)
{
    json_t *j = NULL;
    enum mamori_err rc = json_parse_untrusted(line, len, LINE_MAX_LEN, &j, NULL, 0);
    if (rc)
        return rc;
    json_t *tm = json_object_get(j, "tm"), *ev = json_object_get(j, "ev");
    json_t *batch = json_object_get(j, "tm_batch");
    if (json_object_size(j) != 1) {
        rc = MAMORI_ERR_PARSE;
    } else if (json_is_object(tm) || json_is_object(ev)) {
        char *s = json_dump_compact(tm ? tm : ev);
        rc = !s   ? MAMORI_ERR_NOMEM
             : tm ? mamori_device_send_telemetry(dev, s)
                  : mamori_device_send_event(dev, s);
        free(s);
    } else if (json_is_array(batch) && json_array_size(batch) > 0 &&
               json_array_size(batch) <= 1000) {
        size_t n = json_array_size(batch);
        char **v = calloc(n, sizeof(*v));
        rc = v ? MAMORI_OK : MAMORI_ERR_NOMEM;
        for (size_t i = 0; i < n && !rc; i++) {
            json_t *o = json_array_get(batch, i);
            if (!json_is_object(o) || !(v[i] = json_dump_compact(o)))
                rc = MAMORI_ERR_PARSE;
        }
        if (!rc)
            rc = mamori_device_send_telemetry_batch(dev, (const char *const *)v, n);
        for (size_t i = 0; v && i < n; i++)
            free(v[i]);
        free(v);
    } else {
        rc = MAMORI_ERR_PARSE;
    }
    json_decref(j);
    return rc;
}

/* Reads what the client sent; answers each complete line. Returns false
 * when the client is gone or misbehaved (a line over the cap). */
static bool client_read(struct mamori_device *dev, struct client *c)
{
    ssize_t n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
    if (n <= 0)
        return n < 0 && (errno == EAGAIN || errno == EINTR);
    c->len += (size_t)n;
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        if (!nl) {
            if (c->len == sizeof(c->buf)) {
                reply(c->fd, MAMORI_ERR_TOOBIG);
                return false;
            }
            return true;
        }
        size_t ll = (size_t)(nl - c->buf);
        if (ll)
            reply(c->fd, handle_line(dev, c->buf, ll));
        memmove(c->buf, nl + 1, c->len - ll - 1);
        c->len -= ll + 1;
    }
}

static void write_status(const char *path, struct mamori_device *dev)
{
    static const char *const states[] = {"disconnected", "connecting", "connected", "wiped"};
    struct mamori_device_stats st;
    mamori_device_get_stats(dev, &st);
    enum mamori_device_state ds = mamori_device_state(dev);
    char buf[2048 + NOTICE_MAX];
    const char *notice = mamori_device_notice(dev);
    int n = snprintf(
        buf, sizeof(buf),
        "{\"device_id\":\"%s\",\"state\":\"%s\",\"connected\":%s,\"connects\":%llu,\"refused\":%"
        "llu,"
        "\"telemetry_sent\":%llu,\"telemetry_refused\":%llu,\"events_sent\":%llu,"
        "\"outbox_queued\":%llu,\"outbox_dropped\":%llu,\"outbox_published\":%llu,"
        "\"acked\":%llu,\"locked\":%s,\"quarantined\":%s,\"commands_accepted\":%llu,"
        "\"commands_refused\":%llu,\"rotations\":%llu,\"tls_resumed\":%llu,\"config_version\":%llu,"
        "\"config_rollbacks\":%llu,\"log_records\":%llu,\"log_access\":%llu,\"tls_full\":%llu,"
        "\"fw_version\":\"%s\",\"update_phase\":%llu,\"updates_committed\":%llu,"
        "\"update_rollbacks\":%llu,\"advisories\":%llu,\"support_end\":%llu,\"notice\":%s,"
        "\"pid\":%d}\n",
        mamori_device_id(dev), (unsigned)ds < 4 ? states[ds] : "?",
        ds == MAMORI_DEV_CONNECTED ? "true" : "false", (unsigned long long)st.connects,
        (unsigned long long)st.refused, (unsigned long long)st.telemetry_sent,
        (unsigned long long)st.telemetry_refused, (unsigned long long)st.events_sent,
        (unsigned long long)st.outbox_queued, (unsigned long long)st.outbox_dropped,
        (unsigned long long)st.outbox_published, (unsigned long long)st.acked,
        mamori_device_locked(dev) ? "true" : "false",
        mamori_device_quarantined(dev) ? "true" : "false", (unsigned long long)st.commands_accepted,
        (unsigned long long)st.commands_refused, (unsigned long long)st.rotations,
        (unsigned long long)st.tls_resumed, (unsigned long long)st.config_version,
        (unsigned long long)st.config_rollbacks, (unsigned long long)st.log_records,
        (unsigned long long)st.log_access, (unsigned long long)st.tls_full,
        mamori_device_fw_version(dev), (unsigned long long)st.update_phase,
        (unsigned long long)st.updates_committed, (unsigned long long)st.update_rollbacks,
        (unsigned long long)st.advisories, (unsigned long long)st.support_end,
        notice[0] ? notice : "null", (int)getpid());
    if (n > 0 && (size_t)n < sizeof(buf))
        log_if_err(fs_write_atomic(path, buf, (size_t)n, 0644));
}

/* ---- configuration integrity (T01-L2c, T05-L2b, T06-L2a, T08-L2a, T08-L4a, T12-L2b) ----
 * The agent keeps the SHA-256 of its configuration and schema files in
 * STATE/config.digests. A file that differs from the last digest known, at
 * start or while running (checked every 5 s), is reported to the hub as a
 * device event and a record in the tamper-evident device log. A change
 * takes effect at the next start. */
struct watched {
    const char *path;
    char digest[65];
};

static void file_digest(const char *path, char out[65])
{
    char *txt = NULL;
    size_t len;
    uint8_t md[CRYPTO_SHA256_LEN];
    if (fs_read_file(path, 1 << 20, &txt, &len)) {
        snprintf(out, 65, "absent");
        return;
    }
    crypto_sha256(txt, len, md);
    crypto_hex(md, sizeof(md), out);
    free(txt);
}

static void report_change(struct mamori_device *dev, const char *path, const char *old,
                          const char *now)
{
    json_t *j = json_pack("{s:s,s:s,s:s,s:s}", "type", "config_changed", "file", path, "old", old,
                          "new", now);
    char *txt = j ? json_dump_compact(j) : NULL;
    if (txt) {
        log_warn("%s changed (%.12s -> %.12s): reported to the hub", path, old, now);
        log_if_err(mamori_device_send_event(dev, txt));
        json_object_del(j, "type");
        free(txt);
        txt = json_dump_compact(j);
        if (txt)
            log_if_err(mamori_device_log(dev, "config_changed", txt));
    }
    free(txt);
    json_decref(j);
}

static void save_digests(const char *state_dir, const struct watched *w, size_t n)
{
    char p[AGENT_PATH_MAX + 32], buf[4 * AGENT_PATH_MAX];
    size_t off = 0;
    for (size_t i = 0; i < n && off < sizeof(buf); i++)
        off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s %s\n", w[i].digest, w[i].path);
    if (off < sizeof(buf) && fs_path(p, sizeof(p), state_dir, "config.digests") == MAMORI_OK)
        log_if_err(fs_write_atomic(p, buf, off, 0600));
}

/* Compares with the digests of the last run; reports differences. */
static void check_at_start(struct mamori_device *dev, const char *state_dir, struct watched *w,
                           size_t n)
{
    char p[AGENT_PATH_MAX + 32], *txt = NULL;
    size_t len = 0;
    if (fs_path(p, sizeof(p), state_dir, "config.digests") != MAMORI_OK ||
        fs_read_file(p, 4 * AGENT_PATH_MAX, &txt, &len) != MAMORI_OK)
        len = 0; /* first start: every file is new */
    for (size_t i = 0; i < n; i++) {
        file_digest(w[i].path, w[i].digest);
        char old[65] = "none";
        struct mbuf b = mbuf_init(txt, len);
        while (mbuf_left(&b)) {
            const uint8_t *ln;
            size_t ll;
            mbuf_split(&b, '\n', &ln, &ll);
            if (ll > 65 && ln[64] == ' ' && ll - 65 == strlen(w[i].path) &&
                memcmp(ln + 65, w[i].path, ll - 65) == 0) {
                memcpy(old, ln, 64);
                old[64] = '\0';
            }
        }
        if (strcmp(old, w[i].digest) != 0)
            report_change(dev, w[i].path, old, w[i].digest);
    }
    free(txt);
    save_digests(state_dir, w, n);
}

static void check_running(struct mamori_device *dev, const char *state_dir, struct watched *w,
                          size_t n)
{
    bool changed = false;
    for (size_t i = 0; i < n; i++) {
        char now[65];
        file_digest(w[i].path, now);
        if (strcmp(now, w[i].digest) != 0) {
            report_change(dev, w[i].path, w[i].digest, now);
            memcpy(w[i].digest, now, sizeof(now));
            changed = true;
        }
    }
    if (changed)
        save_digests(state_dir, w, n);
}

static volatile sig_atomic_t g_reboot;

/* The SDK applied the command; what is left is the board's part. */
static void on_command(struct mamori_device *dev, enum mamori_command c, void *arg)
{
    (void)arg;
    static const char *const names[] = {
        "lock",      "unlock", "wipe", "reboot", "quarantine",      "release",
        "self-test", "rotate", "cert", "config", "config-rollback", "update"};
    log_info("%s: command %s applied", mamori_device_id(dev),
             (unsigned)c < sizeof(names) / sizeof(names[0]) ? names[c] : "?");
    if (c == MAMORI_CMD_REBOOT || c == MAMORI_CMD_UPDATE)
        g_reboot = 1; /* after the result is out: see the main loop */
}

/* Safe reboot (T02-L3b): the result went out, the outbox is on disk, the
 * connection is closed cleanly; only then the board's reboot runs. */
static void do_reboot(const struct agent_config *cfg)
{
    if (!cfg->reboot_command[0]) {
        log_warn("reboot requested but no reboot_command is configured");
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        execl(cfg->reboot_command, cfg->reboot_command, (char *)NULL);
        _exit(127);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
}

/* The configuration (and the schema it names, malloc'd in *schema, or
 * NULL). False, said, when either cannot be read or is wrong. */
static bool load_config(const char *config_path, struct agent_config *cfg, char **schema)
{
    char *txt = NULL, why[200] = "";
    size_t len;
    enum mamori_err rc = fs_read_file(config_path, AGENT_CONFIG_MAX, &txt, &len);
    if (!rc)
        rc = agent_config_parse(txt, len, cfg, why, sizeof(why));
    free(txt);
    *schema = NULL;
    if (rc) {
        log_err("%s: %s%s%s", config_path, mamori_strerror(rc), why[0] ? ": " : "", why);
        return false;
    }
    if (cfg->schema_file[0] && (rc = fs_read_file(cfg->schema_file, 16 * 1024, schema, &len))) {
        log_err("%s: %s", cfg->schema_file, mamori_strerror(rc));
        return false;
    }
    return true;
}

/* The SDK and the device as the configuration says (NULL, said, when it
 * cannot start; the SDK is then cleaned up). */
static struct mamori_device *start_device(const struct agent_config *cfg, const char *schema)
{
    struct mamori_device_opts o = {
        .identity_dir = cfg->identity_dir,
        .state_dir = cfg->state_dir,
        .schema_json = schema,
        .heartbeat_interval_s = cfg->heartbeat_s,
        .host_override = cfg->broker_host[0] ? cfg->broker_host : NULL,
        .port_override = cfg->broker_port,
        .outbox_max = cfg->outbox_max,
        .keystore = cfg->keystore,
        .tpm_tcti = cfg->tpm_tcti[0] ? cfg->tpm_tcti : NULL,
        .update_slots_dir = cfg->update_slots_dir[0] ? cfg->update_slots_dir : NULL,
        .update_trial_s = cfg->update_trial_s,
        .update_check_s = cfg->update_check_s,
        .update_hook = cfg->update_hook[0] ? cfg->update_hook : NULL,
        .update_install_s = cfg->update_install_s,
        .update_rate_kbps = cfg->update_rate_kbps,
        .on_command = on_command,
    };
    struct mamori_device *dev = NULL;
    enum mamori_err rc;
    if ((rc = mamori_sdk_init()) || (rc = mamori_device_new(&o, &dev))) {
        log_err("cannot start the device: %s", mamori_strerror(rc));
        mamori_sdk_cleanup();
        return NULL;
    }
    return dev;
}

/* A running agent: the device, the local socket and its clients, the
 * watched files and when the next checks are due. */
struct agent {
    const char *status; /* --status FILE, or NULL */
    struct agent_config cfg;
    struct mamori_device *dev;
    int lfd;
    struct client *cl[MAX_CLIENTS];
    struct watched watch[2];
    size_t nwatch;
    uint64_t next_watch, next_status;
};

/* A new client on the local socket, in a free slot (none free: the client
 * is closed and retries). */
static void accept_client(struct agent *ag)
{
    int cfd = accept(ag->lfd, NULL, NULL);
    if (cfd >= 0 && (fcntl(cfd, F_SETFD, FD_CLOEXEC) ||
                     fcntl(cfd, F_SETFL, fcntl(cfd, F_GETFL) | O_NONBLOCK))) {
        close(cfd);
        cfd = -1;
    }
    int slot = -1;
    for (int i = 0; i < MAX_CLIENTS && slot < 0; i++)
        if (!ag->cl[i])
            slot = i;
    if (cfd >= 0 && (slot < 0 || !(ag->cl[slot] = calloc(1, sizeof(struct client))))) {
        close(cfd); /* busy: the client retries */
    } else if (cfd >= 0) {
        ag->cl[slot]->fd = cfd;
    }
}

static void drop_client(struct agent *ag, int i)
{
    close(ag->cl[i]->fd);
    free(ag->cl[i]);
    ag->cl[i] = NULL;
}

/* Reads from the clients with something to read (p: their poll entries). */
static void serve_clients(struct agent *ag, const struct pollfd *p)
{
    for (int i = 0; i < MAX_CLIENTS; i++) {
        if (!ag->cl[i] || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        if (!client_read(ag->dev, ag->cl[i]))
            drop_client(ag, i);
    }
}

/* One round of the loop: waits (at most *timeout ms) for the device's
 * connection, the local socket and the clients, serves them, steps the
 * device and runs the checks that are due. *timeout becomes the next
 * wait. False when poll() fails. */
static bool agent_round(struct agent *ag, int *timeout)
{
    struct pollfd p[2 + MAX_CLIENTS];
    int dfd = mamori_device_fd(ag->dev);
    p[0] = (struct pollfd){
        .fd = dfd, .events = (short)(POLLIN | (mamori_device_want_write(ag->dev) ? POLLOUT : 0))};
    p[1] = (struct pollfd){.fd = ag->lfd, .events = POLLIN};
    for (int i = 0; i < MAX_CLIENTS; i++)
        p[2 + i] = (struct pollfd){.fd = ag->cl[i] ? ag->cl[i]->fd : -1, .events = POLLIN};
    if (poll(p, 2 + MAX_CLIENTS, *timeout) < 0 && errno != EINTR)
        return false;
    if (p[1].revents & POLLIN)
        accept_client(ag);
    serve_clients(ag, p + 2);
    uint64_t now = mamori_now_ms();
    *timeout = mamori_device_step(ag->dev, now, dfd >= 0 && (p[0].revents & POLLIN),
                                  dfd >= 0 && (p[0].revents & POLLOUT));
    if (now >= ag->next_watch) {
        check_running(ag->dev, ag->cfg.state_dir, ag->watch, ag->nwatch);
        ag->next_watch = now + 5000;
    }
    if (ag->status && now >= ag->next_status) {
        write_status(ag->status, ag->dev);
        ag->next_status = now + 200;
    }
    if (ag->status && *timeout > 200)
        *timeout = 200;
    return true;
}

/* The device asked for a reboot: give the result a moment to leave, then
 * close and reboot. */
static void reboot_now(struct agent *ag)
{
    for (int i = 0; i < 10; i++) {
        struct pollfd rp = {.fd = mamori_device_fd(ag->dev), .events = POLLOUT};
        poll(&rp, 1, 50);
        (void)mamori_device_step(ag->dev, mamori_now_ms(), false, true);
    }
    g_reboot = 0;
    if (ag->status)
        write_status(ag->status, ag->dev);
    do_reboot(&ag->cfg);
}

/* Until a signal, a wipe or a reboot. */
static void agent_loop(struct agent *ag)
{
    int timeout = 0;
    while (!g_stop && agent_round(ag, &timeout)) {
        if (mamori_device_state(ag->dev) == MAMORI_DEV_WIPED) {
            log_warn("device wiped by command: keys and state erased; stopping");
            break;
        }
        if (g_reboot) {
            reboot_now(ag);
            break;
        }
    }
}

static void agent_stop(struct agent *ag)
{
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (ag->cl[i])
            drop_client(ag, i);
    close(ag->lfd);
    unlink(ag->cfg.socket);
    if (ag->status)
        write_status(ag->status, ag->dev);
    mamori_device_free(ag->dev);
    mamori_sdk_cleanup();
    log_info("agent stopped");
}

static int run(const char *config_path, const char *status)
{
    static struct agent ag; /* static: zeroed, and the configuration is large */
    char *schema = NULL;
    ag.status = status;
    if (!load_config(config_path, &ag.cfg, &schema)) {
        free(schema);
        return 1;
    }
    ag.dev = start_device(&ag.cfg, schema);
    free(schema);
    if (!ag.dev)
        return 1;
    if ((ag.lfd = listen_unix(ag.cfg.socket)) < 0) {
        log_err("%s: cannot listen: %s", ag.cfg.socket, strerror(errno));
        mamori_device_free(ag.dev);
        mamori_sdk_cleanup();
        return 1;
    }
    log_info("agent for %s running; local socket %s", mamori_device_id(ag.dev), ag.cfg.socket);
    ag.watch[0] = (struct watched){.path = config_path};
    ag.watch[1] = (struct watched){.path = ag.cfg.schema_file};
    ag.nwatch = ag.cfg.schema_file[0] ? 2 : 1;
    check_at_start(ag.dev, ag.cfg.state_dir, ag.watch, ag.nwatch);
    ag.next_watch = mamori_now_ms() + 5000;
    agent_loop(&ag);
    agent_stop(&ag);
    return 0;
}

static int send_one(const char *sock, bool event, const char *json)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(sock) >= sizeof(a.sun_path))
        return 2;
    memcpy(a.sun_path, sock, strlen(sock) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a))) {
        fprintf(stderr, "mamori-agent: %s: %s\n", sock, strerror(errno));
        if (fd >= 0)
            close(fd);
        return 1;
    }
    const char *key = event ? "ev" : json[0] == '[' ? "tm_batch" : "tm";
    char *line = NULL;
    size_t n = strlen(json) + 32;
    if (!(line = malloc(n)))
        return 1;
    int len = snprintf(line, n, "{\"%s\":%s}\n", key, json);
    bool ok = len > 0 && write(fd, line, (size_t)len) == len;
    free(line);
    char resp[256];
    ssize_t r = ok ? read(fd, resp, sizeof(resp) - 1) : -1;
    close(fd);
    if (r <= 0)
        return 1;
    resp[r] = '\0';
    fputs(resp, stdout);
    return strstr(resp, "\"ok\":true") ? 0 : 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: mamori-agent --config FILE [--status FILE]\n"
                    "       mamori-agent send --socket PATH [--event] JSON\n");
}

/* mamori-agent send: --socket PATH and --event, in any order; any other
 * word is the message (one). */
static int send_main(int argc, char **argv)
{
    static const struct option lo[] = {{"socket", required_argument, NULL, 's'},
                                       {"event", no_argument, NULL, 'e'},
                                       {NULL, 0, NULL, 0}};
    const char *sock = NULL, *json = NULL;
    bool event = false;
    opterr = 0;
    while (optind < argc) {
        const char *w = argv[optind];
        int ch = 1;
        if (strcmp(w, "--event") == 0 || (strcmp(w, "--socket") == 0 && optind + 1 < argc))
            ch = getopt_long(argc, argv, "-", lo, NULL);
        else
            optarg = argv[optind++]; /* even "--x" or "-5": the message */
        if (ch == 's')
            sock = optarg;
        else if (ch == 'e')
            event = true;
        else if (!json)
            json = optarg;
        else {
            usage();
            return 2;
        }
    }
    if (!sock || !json) {
        usage();
        return 2;
    }
    return send_one(sock, event, json);
}

/* mamori-agent --config FILE [--status FILE]: options in pairs, written
 * out in full; a last word with nothing after it is not read. */
static bool parse_run_opts(int argc, char **argv, const char **config, const char **status)
{
    static const struct option lo[] = {{"config", required_argument, NULL, 'c'},
                                       {"status", required_argument, NULL, 's'},
                                       {NULL, 0, NULL, 0}};
    opterr = 0;
    while (optind + 1 < argc) {
        const char *w = argv[optind];
        int idx = -1, ch = getopt_long(argc, argv, "-", lo, &idx);
        if (idx < 0 || strncmp(w, "--", 2) != 0 || strcmp(w + 2, lo[idx].name) != 0)
            return false;
        *(ch == 'c' ? config : status) = optarg;
    }
    return *config != NULL;
}

int main(int argc, char **argv)
{
    log_set_tag("mamori-agent");
    if (argc >= 2 && strcmp(argv[1], "send") == 0)
        return send_main(argc - 1, argv + 1);
    const char *config = NULL, *status = NULL;
    if (!parse_run_opts(argc, argv, &config, &status)) {
        usage();
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_sig};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return run(config, status);
}
