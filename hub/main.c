/*
 * mamorid - the Mamori hub. Thin main over libmamori_hub (hub/hub.h).
 *
 *   mamorid --data DIR [--listen ADDR] [--api-port N] [--mqtt-port N]
 *           [--heartbeat S] [--max-connections N] [--api-connections N]
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
 */
#include <curl/curl.h>
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
#include "hub/daemon.h"

static void usage(void)
{
    fprintf(stderr, "usage: mamorid --data DIR [--listen ADDR] [--api-port N] [--mqtt-port N]\n"
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
                    "               [--alert-retention-days N] [--data-retention-days N] [-v]\n");
}

static bool parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi)
        return false;
    *out = (int)v;
    return true;
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

int main(int argc, char **argv)
{
    struct hub_config cfg;
    int demo = 0;
    hub_config_defaults(&cfg);
    default_plugin(cfg.plugin_path, sizeof(cfg.plugin_path));
    log_set_tag("mamorid");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (strcmp(a, "-v") == 0) {
            log_set_level(LOG_DEBUG);
            continue;
        }
        if (!v) {
            usage();
            return 2;
        }
        if (strcmp(a, "--data") == 0)
            ok = (size_t)snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", v) <
                 sizeof(cfg.data_dir);
        else if (strcmp(a, "--listen") == 0)
            ok = (size_t)snprintf(cfg.listen_addr, sizeof(cfg.listen_addr), "%s", v) <
                 sizeof(cfg.listen_addr);
        else if (strcmp(a, "--api-port") == 0)
            ok = parse_int(v, 0, 65535, &cfg.api_port);
        else if (strcmp(a, "--mqtt-port") == 0)
            ok = parse_int(v, 0, 65535, &cfg.mqtt_port);
        else if (strcmp(a, "--heartbeat") == 0)
            ok = parse_int(v, 1, 3600, &cfg.heartbeat_s);
        else if (strcmp(a, "--max-connections") == 0)
            ok = parse_int(v, 1, 1000000, &cfg.max_connections);
        else if (strcmp(a, "--api-connections") == 0)
            ok = parse_int(v, 1, 100000, &cfg.api_connections);
        else if (strcmp(a, "--api-per-address") == 0)
            ok = parse_int(v, 1, 100000, &cfg.api_per_address);
        else if (strcmp(a, "--api-head-timeout") == 0)
            ok = parse_int(v, 1, 3600, &cfg.api_head_s);
        else if (strcmp(a, "--api-min-body-rate") == 0)
            ok = parse_int(v, 1, 1000000000, &cfg.api_min_body_rate);
        else if (strcmp(a, "--api-unauth-connections") == 0)
            ok = parse_int(v, 1, 100000, &cfg.api_unauth_conns);
        else if (strcmp(a, "--demo-fleet") == 0)
            ok = parse_int(v, 0, 100000, &demo);
        else if (strcmp(a, "--rate") == 0)
            ok = parse_int(v, 1, 100000, &cfg.msg_rate);
        else if (strcmp(a, "--burst") == 0)
            ok = parse_int(v, 1, 100000, &cfg.msg_burst);
        else if (strcmp(a, "--cert-days") == 0)
            ok = parse_int(v, 1, 3650, &cfg.device_cert_days);
        else if (strcmp(a, "--cert-renew-days") == 0)
            ok = parse_int(v, 0, 3650, &cfg.cert_renew_days);
        else if (strcmp(a, "--cert-max-age-days") == 0)
            ok = parse_int(v, 0, 3650, &cfg.cert_max_age_days);
        else if (strcmp(a, "--rotation-check") == 0)
            ok = parse_int(v, 1, 86400, &cfg.rotation_check_s);
        else if (strcmp(a, "--challenge-interval") == 0)
            ok = parse_int(v, 0, 7 * 86400, &cfg.challenge_s);
        else if (strcmp(a, "--data-retention-days") == 0)
            ok = parse_int(v, 0, 36500, &cfg.data_retention_days);
        else if (strcmp(a, "--alert-retention-days") == 0)
            ok = parse_int(v, 0, 3650, &cfg.alert_retention_days);
        else if (strcmp(a, "--rules") == 0) {
            ok = strcmp(v, "on") == 0 || strcmp(v, "off") == 0;
            cfg.rules_off = strcmp(v, "off") == 0;
        } else if (strcmp(a, "--rate-window") == 0)
            ok = parse_int(v, 0, 3600, &cfg.rate_window_s);
        else if (strcmp(a, "--owner-idle-after") == 0) {
            int v2 = 0;
            ok = parse_int(v, 0, 10 * 365 * 24 * 3600, &v2);
            cfg.owner_idle_s = v2;
        } else if (strcmp(a, "--stray-after") == 0) {
            int v2 = 0;
            ok = parse_int(v, 0, 365 * 24 * 3600, &v2);
            cfg.stray_after_s = v2;
        } else if (strcmp(a, "--smtp") == 0)
            ok = (size_t)snprintf(cfg.smtp_url, sizeof(cfg.smtp_url), "%s", v) <
                     sizeof(cfg.smtp_url) &&
                 (strncmp(v, "smtp://", 7) == 0 || strncmp(v, "smtps://", 8) == 0);
        else if (strcmp(a, "--smtp-from") == 0)
            ok = (size_t)snprintf(cfg.smtp_from, sizeof(cfg.smtp_from), "%s", v) <
                     sizeof(cfg.smtp_from) &&
                 alerts_address_ok(v);
        else if (strcmp(a, "--syslog") == 0)
            ok = (size_t)snprintf(cfg.syslog, sizeof(cfg.syslog), "%s", v) < sizeof(cfg.syslog) &&
                 (strcmp(v, "local") == 0 || strncmp(v, "udp://", 6) == 0);
        else if (strcmp(a, "--plugin") == 0)
            ok = (size_t)snprintf(cfg.plugin_path, sizeof(cfg.plugin_path), "%s", v) <
                 sizeof(cfg.plugin_path);
        else if (strcmp(a, "--mosquitto") == 0)
            ok = (size_t)snprintf(cfg.mosquitto_bin, sizeof(cfg.mosquitto_bin), "%s", v) <
                 sizeof(cfg.mosquitto_bin);
        else
            ok = false;
        if (!ok) {
            fprintf(stderr, "mamorid: bad option %s %s\n", a, v);
            usage();
            return 2;
        }
        i++;
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
    curl_global_init(CURL_GLOBAL_DEFAULT); /* alert webhooks (hub/alerts.c) */

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
             h.api_port, cfg.listen_addr, h.broker_port, cfg.data_dir);
    int sig = 0;
    sigwait(&stop, &sig);
    log_info("signal %d: stopping", sig);
    hub_stop(&h);
    hub_free(&h);
    mosquitto_lib_cleanup();
    curl_global_cleanup();
    return 0;
}
