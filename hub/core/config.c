/* hub/core/config.c - the hub's configuration defaults (mamorid --help). */
#include <stdio.h>
#include <string.h>

#include "hub/core/hub.h"

bool hub_node_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > HUB_NODE_LEN || s[0] == '-')
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

void hub_config_defaults(struct hub_config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->hub_name, sizeof(c->hub_name), "hub");
    snprintf(c->listen_addr, sizeof(c->listen_addr), "127.0.0.1");
    c->heartbeat_s = 30;
    c->max_connections = 10000;
    c->api_connections = 256;
    c->api_per_address = 64;
    c->api_head_s = 10;
    c->api_min_body_rate = 500;
    c->max_payload = 16 * 1024;
    c->msg_rate = 20;
    c->msg_burst = 100;
    c->session_ttl_s = 3600;
    c->device_cert_days = 3 * 365;
    c->cert_renew_days = 30;
    c->cert_max_age_days = 365;
    c->rotation_check_s = 60;
    c->stray_after_s = 30 * 24 * 3600;
    c->owner_idle_s = 365 * 24 * 3600;
    c->rate_window_s = 60;
    c->alert_retention_days = 365;
    c->data_retention_days = 365;
    c->challenge_s = 6 * 3600;
    c->ingest_gather_ms = 10; /* hub/device/ingest.h */
    snprintf(c->mosquitto_bin, sizeof(c->mosquitto_bin), "/usr/sbin/mosquitto");
}
