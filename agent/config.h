/*
 * agent/config.h - mamori-agent's configuration file.
 *
 * A JSON object (at most 16 KiB, no duplicate keys, unknown keys refused so
 * a typo is an error, not a silently ignored setting):
 *
 *   {"identity_dir": "/var/lib/mamori/identity",   required
 *    "state_dir":    "/var/lib/mamori/state",      required
 *    "socket":       "/run/mamori/agent.sock",     default: STATE/agent.sock
 *    "schema_file":  "/etc/mamori/schema.json",    default: none
 *    "reboot_command": "/sbin/reboot",             default: none (reboot refused)
 *    "keystore":     "file" | "tpm2",              default: file
 *    "tpm_tcti":     "device:/dev/tpmrm0",         default: tpm2-openssl's
 *    "update_slots_dir": "/var/lib/mamori/slots",  default: none (updates refused)
 *    "update_trial_s": 120,                        health check deadline of a new slot
 *    "update_check_s": 21600,                      periodic update check
 *    "update_hook":  "/usr/lib/mamori/hooks/rauc", or the hook backend (not both)
 *    "update_install_s": 1800,                     the hook's install deadline
 *    "update_rate_kbps": 0,                        download limit in KiB/s (0: none)
 *    "heartbeat_s":  30,   "outbox_max": 100000,
 *    "broker_host":  "...", "broker_port": 8883}     default: from the identity
 */
#ifndef MAMORI_AGENT_CONFIG_H
#define MAMORI_AGENT_CONFIG_H

#include <stddef.h>

#include "mamori/error.h"

#define AGENT_PATH_MAX   1024
#define AGENT_CONFIG_MAX (16 * 1024)

struct agent_config {
    char identity_dir[AGENT_PATH_MAX];
    char state_dir[AGENT_PATH_MAX];
    char socket[AGENT_PATH_MAX];
    char schema_file[AGENT_PATH_MAX];
    char reboot_command[AGENT_PATH_MAX]; /* run (no shell, no args) on a reboot command */
    char keystore[8];                    /* "file" or "tpm2" */
    char tpm_tcti[256];
    char broker_host[256];
    int broker_port;
    unsigned heartbeat_s;
    size_t outbox_max;
    char update_slots_dir[AGENT_PATH_MAX];
    unsigned update_trial_s;
    unsigned update_check_s;
    char update_hook[AGENT_PATH_MAX];
    unsigned update_install_s;
    unsigned update_rate_kbps;
};

/* Parses a configuration document (untrusted bytes). why gets a message
 * naming the offending key. */
enum mamori_err agent_config_parse(const void *data, size_t len, struct agent_config *out,
                                   char *why, size_t whylen) MAMORI_MUST_CHECK;

#endif
