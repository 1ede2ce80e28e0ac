/*
 * hub/compliance/matrix.c - the live threat-matrix report (see matrix.h); P-MGMT.
 */
#include "hub/device/device.h"
#include "hub/compliance/matrix.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/proto.h"
#include "hub/compliance/matrix_table.h"

static const char *const STATES[5] = {"L1 setup", "L2 normal", "L3 abnormal", "L4 stray",
                                      "L5 disposal"};

#define N_ROWS (sizeof(MATRIX_ROWS) / sizeof(MATRIX_ROWS[0]))

static int64_t count(struct hub *h, const char *sql, const char *arg)
{
    int64_t v = store_scalar(h->store, sql, arg);
    return v < 0 ? 0 : v;
}

static void days_ago(int64_t t, char *out, size_t n)
{
    int64_t d = (hub_now() - t) / 86400;
    snprintf(out, n, "%lld day%s ago", (long long)d, d == 1 ? "" : "s");
}

/* What the hub can say now of one countermeasure ("" : nothing live). Lock
 * held; d is the device for a device report (else NULL). */
static void live(struct hub *h, const char *id, const struct device_rec *d, char *out, size_t n)
{
    char when[48];
    out[0] = '\0';
    if (!strcmp(id, "T03-L2a") || !strcmp(id, "T01-L2b") || !strcmp(id, "T04-L2a")) {
        if (d)
            snprintf(out, n, "heartbeat %d s; %s, last seen %s", d->hb_interval,
                     d->online ? "online" : "offline",
                     d->last_seen ? (days_ago(d->last_seen, when, sizeof(when)), when) : "never");
        else
            snprintf(out, n, "heartbeat %d s, offline alert %s; %lld of %lld devices online",
                     h->cfg.heartbeat_s, h->cfg.rules_off ? "OFF (--rules off)" : "on",
                     (long long)count(h, "SELECT count(*) FROM devices WHERE online=1", NULL),
                     (long long)count(h, "SELECT count(*) FROM devices", NULL));
    } else if (!strcmp(id, "T05-L2c") || !strcmp(id, "T01-L2a")) {
        if (d) {
            if (d->cert_rotated_at)
                days_ago(d->cert_rotated_at, when, sizeof(when));
            snprintf(out, n, "last rotation %s; certificate expires in %lld days",
                     d->cert_rotated_at ? when : "never (factory certificate)",
                     (long long)((d->cert_not_after - hub_now()) / 86400));
        } else {
            snprintf(
                out, n,
                "rotation policy: renew %d days before expiry, at most %d days old; %lld rotations "
                "done",
                h->cfg.cert_renew_days, h->cfg.cert_max_age_days,
                (long long)count(h, "SELECT count(*) FROM devices WHERE cert_rotated_at>0", NULL));
        }
    } else if (!strcmp(id, "T01-L4a") || !strcmp(id, "T01-L4b")) {
        char period[32];
        int64_t p = h->cfg.stray_after_s;
        snprintf(period, sizeof(period), p >= 86400 ? "%lld days" : "%lld s",
                 (long long)(p >= 86400 ? p / 86400 : p));
        if (p <= 0)
            snprintf(out, n, "stray detection off");
        else if (d)
            snprintf(out, n, "stray after %s offline; state %s", period, d->state);
        else
            snprintf(out, n, "stray after %s offline; %lld stray now", period,
                     (long long)count(h, "SELECT count(*) FROM devices WHERE state='stray'", NULL));
    } else if (!strcmp(id, "T01-L5d") || !strcmp(id, "T02-L5a")) {
        snprintf(out, n, "CRL lists %lld certificates; %lld webhook/mail targets",
                 (long long)count(
                     h, "SELECT count(*) FROM devices WHERE state IN ('revoked','decommissioned')",
                     NULL),
                 (long long)count(h, "SELECT count(*) FROM webhooks", NULL));
    } else if (!strcmp(id, "T02-L2b")) {
        if (d) {
            static struct status_rec st; /* large; the lock is held */
            char sig[64] = "no signed status yet";
            if (store_status_get(h->store, d->id, &st) == MAMORI_OK)
                snprintf(sig, sizeof(sig), "signed status %s",
                         st.exp > hub_now() ? "current" : "expired");
            snprintf(
                out, n, "runs %s; %lld advisories for its model; %s",
                d->fw_version[0] ? d->fw_version : "(version not reported)",
                (long long)count(h, "SELECT count(*) FROM advisories WHERE model=?1", d->model),
                sig);
        } else
            snprintf(out, n, "%lld advisories published; %lld models with a support end",
                     (long long)count(h, "SELECT count(*) FROM advisories", NULL),
                     (long long)count(h, "SELECT count(*) FROM model_support", NULL));
    } else if (!strcmp(id, "T02-L1d")) {
        snprintf(
            out, n, "update root version %lld; %lld releases; %lld campaigns running",
            (long long)count(h, "SELECT coalesce(max(version),0) FROM fw_roots", NULL),
            (long long)count(h, "SELECT count(*) FROM fw_releases WHERE retired_at IS NULL", NULL),
            (long long)count(h, "SELECT count(*) FROM campaigns WHERE state='running'", NULL));
    } else if (!strcmp(id, "T10-L1a")) {
        snprintf(out, n,
                 "broker max %d connections, %d msg/s per device (burst %d); API %d connections, "
                 "%d per address",
                 h->cfg.max_connections, h->cfg.msg_rate, h->cfg.msg_burst, h->cfg.api_connections,
                 h->cfg.api_per_address);
    } else if (!strcmp(id, "T07-L2d") || !strcmp(id, "T10-L2a")) {
        snprintf(
            out, n, "%s%lld alerts open (%lld identity_clone, %lld auth_failures)",
            h->cfg.rules_off ? "alert rules OFF (--rules off); " : "",
            (long long)count(h, "SELECT count(*) FROM alerts WHERE state<>'resolved'", NULL),
            (long long)count(
                h, "SELECT count(*) FROM alerts WHERE state<>'resolved' AND rule='identity_clone'",
                NULL),
            (long long)count(
                h, "SELECT count(*) FROM alerts WHERE state<>'resolved' AND rule='auth_failures'",
                NULL));
    } else if (d && (!strcmp(id, "T12-L2a") || !strcmp(id, "T12-L1a"))) {
        snprintf(
            out, n, "%lld device-log records received",
            (long long)count(
                h, "SELECT count(*) FROM events WHERE kind='device_log' AND device_id=?1", d->id));
    }
}

/* Appends s (ok turns false on overflow). */
static void put(struct dbuf *b, const char *s, bool *ok)
{
    if (dbuf_addstr(b, s) != MAMORI_OK)
        *ok = false;
}

/* The finished text (NUL-terminated, malloc'd), or NULL when anything
 * overflowed (the buffer is freed either way). */
static char *md_text(struct dbuf *b, bool ok)
{
    if (ok && dbuf_add(b, "", 1) == MAMORI_OK)
        return dbuf_take(b);
    dbuf_free(b);
    return NULL;
}

/* Text in a Markdown cell: nothing that breaks the table. */
static void md_cell(struct dbuf *b, const char *s, bool *ok)
{
    char buf[512];
    size_t n = 0;
    for (; *s && n < sizeof(buf) - 1; s++)
        buf[n++] = *s == '|' ? '/' : (*s == '\n' ? ' ' : *s);
    buf[n] = '\0';
    put(b, buf, ok);
}

static const char *mark(const char *status)
{
    return !strcmp(status, "done")      ? "✓"
           : !strcmp(status, "partial") ? "◐"
           : !strcmp(status, "n/a")     ? "n/a"
                                        : "○";
}

enum mamori_err hub_op_matrix(struct hub *h, const struct principal *who, const char *device_id,
                              json_t **out)
{
    struct device_rec d;
    json_t *rows = NULL;
    *out = NULL;
    if (device_id) {
        json_t *dev = NULL;
        /* visibility as for any device read (owners: their own) */
        enum mamori_err rc = hub_op_device_get(h, who, device_id, &dev);
        json_decref(dev);
        if (rc)
            return rc;
    } else if (!hub_is_staff(who)) {
        return MAMORI_ERR_FORBIDDEN;
    }
    struct dbuf md;
    bool ok = true;
    dbuf_init(&md, 256 * 1024);
    char head[256];
    snprintf(head, sizeof(head), "# Threat matrix: %s%s\n\n| threat |",
             device_id ? "device " : "the fleet", device_id ? device_id : "");
    put(&md, head, &ok);
    for (int l = 0; l < 5; l++) {
        put(&md, " ", &ok);
        put(&md, STATES[l], &ok);
        put(&md, " |", &ok);
    }
    put(&md, "\n|---|---|---|---|---|---|\n", &ok);
    rows = json_array();
    pthread_mutex_lock(&h->lock);
    bool have_dev = device_id && store_device_get(h->store, device_id, &d) == MAMORI_OK;
    for (int t = 0; rows && t < (int)(sizeof(MATRIX_THREATS) / sizeof(MATRIX_THREATS[0])); t++) {
        put(&md, "| ", &ok);
        md_cell(&md, MATRIX_THREATS[t], &ok);
        for (int l = 0; l < 5; l++) {
            json_t *cms = json_array();
            put(&md, " | ", &ok);
            for (size_t i = 0; i < N_ROWS; i++) {
                const struct matrix_row *r = &MATRIX_ROWS[i];
                if (r->threat != t || r->state != l)
                    continue;
                char now[400];
                live(h, r->id, have_dev ? &d : NULL, now, sizeof(now));
                json_array_append_new(cms, json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", r->id,
                                                     "status", r->status, "summary", r->summary,
                                                     "live", now, "proof", r->proof));
                md_cell(&md, r->id, &ok);
                put(&md, " ", &ok);
                md_cell(&md, mark(r->status), &ok);
                if (now[0]) {
                    put(&md, " ", &ok);
                    md_cell(&md, now, &ok);
                }
                put(&md, "<br>", &ok);
            }
            json_array_append_new(rows, json_pack("{s:s, s:s, s:o}", "threat", MATRIX_THREATS[t],
                                                  "state", STATES[l], "countermeasures", cms));
        }
        put(&md, " |\n", &ok);
    }
    pthread_mutex_unlock(&h->lock);
    const char *legend = "\n✓ done · ◐ partial · ○ planned · n/a out of software's reach "
                         "(docs/threat-matrix.md gives each its code and proof)\n";
    put(&md, legend, &ok);
    char *text = md_text(&md, ok);
    if (rows && text)
        *out = json_pack("{s:s, s:s?, s:I, s:o, s:s}", "scope", device_id ? "device" : "fleet",
                         "device", device_id, "generated_at", (json_int_t)hub_now(), "cells", rows,
                         "markdown", text);
    else
        json_decref(rows);
    free(text);
    return *out ? MAMORI_OK : MAMORI_ERR_NOMEM;
}

enum mamori_err hub_op_etsi(struct hub *h, const struct principal *who, json_t **out)
{
    struct dbuf md;
    bool ok = true;
    int met = 0, na = 0, other = 0;
    (void)h;
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    json_t *rows = json_array();
    dbuf_init(&md, 256 * 1024);
    put(&md,
        "# ETSI EN 303 645 V2.1.1: self-assessment\n\n| provision | status | how | evidence |\n"
        "|---|---|---|---|\n",
        &ok);
    for (size_t i = 0; rows && i < sizeof(ETSI_ROWS) / sizeof(ETSI_ROWS[0]); i++) {
        const struct etsi_row *r = &ETSI_ROWS[i];
        met += !strcmp(r->status, "met");
        na += !strcmp(r->status, "n/a");
        other += strcmp(r->status, "met") && strcmp(r->status, "n/a");
        json_array_append_new(rows,
                              json_pack("{s:s, s:s, s:s, s:s}", "provision", r->provision, "status",
                                        r->status, "how", r->how, "evidence", r->evidence));
        const char *cols[4] = {r->provision, r->status, r->how, r->evidence};
        for (int c = 0; c < 4; c++) {
            put(&md, "| ", &ok);
            md_cell(&md, cols[c], &ok);
            put(&md, " ", &ok);
        }
        put(&md, "|\n", &ok);
    }
    char sum[160];
    snprintf(sum, sizeof(sum),
             "\n%d provisions met, %d not applicable, %d otherwise (docs/etsi-en-303-645.md)\n",
             met, na, other);
    put(&md, sum, &ok);
    char *text = md_text(&md, ok);
    if (rows && text)
        *out = json_pack("{s:s, s:i, s:i, s:i, s:o, s:s}", "standard", "ETSI EN 303 645 V2.1.1",
                         "met", met, "not_applicable", na, "other", other, "provisions", rows,
                         "markdown", text);
    else
        json_decref(rows);
    free(text);
    return *out ? MAMORI_OK : MAMORI_ERR_NOMEM;
}
