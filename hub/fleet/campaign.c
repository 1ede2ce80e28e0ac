/*
 * hub/fleet/campaign.c - staged update campaigns (see campaign.h); P-UPD.
 */
#include "hub/fleet/campaign.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/upmeta.h"
#include "hub/fleet/firmware.h"

#define CAMPAIGN_TTL_MS (7LL * 24 * 3600 * 1000)
#define CAMPAIGN_TRIES  3

static const struct principal CAMPAIGN = {.user_id = 0, .name = "campaign", .role = ROLE_ADMIN};

static json_t *campaign_json(const struct campaign_rec *c, const struct campaign_counts *n)
{
    return json_pack(
        "{s:I, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:s, s:s, s:I,"
        " s:{s:i, s:i, s:i, s:i, s:i}}",
        "id", (json_int_t)c->id, "sha256", c->sha256, "model", c->model, "state", c->state,
        "canary", c->canary, "wave", c->wave, "interval_s", c->interval_s, "max_failure_pct",
        c->max_fail_pct, "window_start", c->window_start, "window_end", c->window_end, "waves_sent",
        c->waves_sent, "reason", c->reason, "note", c->note, "created_by", c->created_by,
        "created_at", (json_int_t)c->created_at, "devices", "pending", n->pending, "in_flight",
        n->in_flight, "committed", n->committed, "failed", n->failed, "skipped", n->skipped);
}

/* A state change with its audit entry, in one transaction. Lock held. */
static enum mamori_err set_state(struct hub *h, const struct principal *who,
                                 const struct campaign_rec *c, const char *state, int waves_sent,
                                 int64_t next_wave_at, const char *note, const char *reason)
{
    char target[32], detail[320];
    enum mamori_err rc = store_begin(h->store);
    if (rc)
        return rc;
    if ((rc = store_campaign_set(h->store, c->id, state, waves_sent, next_wave_at, note,
                                 hub_now_ms()))) {
        store_rollback(h->store);
        return rc;
    }
    if (strcmp(state, c->state) == 0)
        return store_commit(h->store); /* a wave: audited per device command */
    snprintf(target, sizeof(target), "campaign:%lld", (long long)c->id);
    json_t *d = json_pack("{s:s, s:s, s:s}", "from", c->state, "to", state, "note", note);
    char *dt = d ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    snprintf(detail, sizeof(detail), "%s", dt ? dt : "{}");
    free(dt);
    char action[32];
    snprintf(action, sizeof(action), "campaign_%s", state);
    return hub_commit_audited(h, who, action, target, reason, detail);
}

enum mamori_err hub_op_campaign_create(struct hub *h, const struct principal *who,
                                       const char *sha256, const char *reason,
                                       const struct campaign_opts *o, json_t **out,
                                       struct op_err *e)
{
    struct fw_release_rec rel;
    struct campaign_rec c;
    struct campaign_counts n;
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    if (o->group && *o->group && !upmeta_name_ok(o->group)) {
        SET_ERR(e, "a group name is 1..64 of [A-Za-z0-9._+~-]");
        return MAMORI_ERR_INVAL;
    }
    if (o->canary < 0 || o->canary > 1000 || o->wave < 1 || o->wave > 1000 || o->interval_s < 1 ||
        o->interval_s > 86400 || o->max_fail_pct < 0 || o->max_fail_pct > 100 ||
        o->window_start < 0 || o->window_start > 23 || o->window_end < 0 || o->window_end > 23) {
        SET_ERR(e, "canary 0..1000, wave 1..1000, interval_s 1..86400, max_failure_pct "
                   "0..100, window hours 0..23");
        return MAMORI_ERR_INVAL;
    }
    memset(&c, 0, sizeof(c));
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_fw_release_get(h->store, sha256, &rel, NULL);
    if (rc == MAMORI_ERR_NOTFOUND)
        SET_ERR(e, "no such release");
    else if (!rc && (!rel.image_at || rel.retired_at)) {
        SET_ERR(e, "%s",
                rel.retired_at ? "the release is retired" : "the release has no image yet");
        rc = MAMORI_ERR_STATE;
    }
    if (!rc) {
        snprintf(c.sha256, sizeof(c.sha256), "%s", rel.sha256);
        snprintf(c.model, sizeof(c.model), "%s", rel.model);
        snprintf(c.state, sizeof(c.state), "running");
        c.canary = o->canary;
        c.wave = o->wave;
        c.interval_s = o->interval_s;
        c.max_fail_pct = o->max_fail_pct;
        c.window_start = o->window_start;
        c.window_end = o->window_end;
        snprintf(c.group, sizeof(c.group), "%s", o->group ? o->group : "");
        snprintf(c.reason, sizeof(c.reason), "%s", reason);
        snprintf(c.created_by, sizeof(c.created_by), "%s", who->name);
        c.created_at = hub_now_ms();
        if (!(rc = store_begin(h->store))) {
            char target[32], detail[320];
            rc = store_campaign_add(h->store, &c);
            snprintf(target, sizeof(target), "campaign:%lld", (long long)c.id);
            snprintf(detail, sizeof(detail),
                     "{\"sha256\":\"%s\",\"model\":\"%s\",\"fw_version\":\"%s\"}", rel.sha256,
                     rel.model, rel.fw_version);
            if (rc)
                store_rollback(h->store);
            else
                rc = hub_commit_audited(h, who, "campaign_created", target, reason, detail);
        }
    }
    if (!rc)
        rc = store_campaign_counts(h->store, c.id, &n);
    pthread_mutex_unlock(&h->lock);
    if (!rc)
        *out = campaign_json(&c, &n);
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}

struct list {
    struct hub *h;
    json_t *a;
};

static bool list_one(const struct campaign_rec *c, void *arg)
{
    struct list *l = arg;
    struct campaign_counts n;
    if (store_campaign_counts(l->h->store, c->id, &n) == MAMORI_OK)
        json_array_append_new(l->a, campaign_json(c, &n));
    return true;
}

enum mamori_err hub_op_campaigns(struct hub *h, const struct principal *who, json_t **out)
{
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    struct list l = {h, json_array()};
    if (!l.a)
        return MAMORI_ERR_NOMEM;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_campaigns(h->store, NULL, list_one, &l);
    pthread_mutex_unlock(&h->lock);
    if (rc) {
        json_decref(l.a);
        return rc;
    }
    *out = json_pack("{s:o}", "campaigns", l.a);
    return *out ? MAMORI_OK : MAMORI_ERR_NOMEM;
}

static bool device_one(const char *id, int wave, const char *status, const char *error, void *arg)
{
    json_array_append_new(arg, json_pack("{s:s, s:i, s:s, s:s}", "device", id, "wave", wave,
                                         "status", status, "error", error));
    return true;
}

enum mamori_err hub_op_campaign_get(struct hub *h, const struct principal *who, int64_t id,
                                    json_t **out)
{
    struct campaign_rec c;
    struct campaign_counts n;
    json_t *devs = json_array();
    *out = NULL;
    if (!hub_is_staff(who)) {
        json_decref(devs);
        return MAMORI_ERR_FORBIDDEN;
    }
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_campaign_get(h->store, id, &c);
    if (!rc)
        rc = store_campaign_counts(h->store, id, &n);
    if (!rc)
        rc = store_campaign_devices(h->store, id, device_one, devs);
    pthread_mutex_unlock(&h->lock);
    if (!rc && (*out = campaign_json(&c, &n)))
        json_object_set_new(*out, "device_status", devs);
    else
        json_decref(devs);
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}

enum mamori_err hub_op_campaign_action(struct hub *h, const struct principal *who, int64_t id,
                                       const char *action, const char *reason, json_t **out,
                                       struct op_err *e)
{
    struct campaign_rec c;
    struct campaign_counts n;
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    const char *to = strcmp(action, "pause") == 0    ? "paused"
                     : strcmp(action, "resume") == 0 ? "running"
                     : strcmp(action, "cancel") == 0 ? "cancelled"
                                                     : NULL;
    if (!to)
        return MAMORI_ERR_NOTFOUND;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_campaign_get(h->store, id, &c);
    bool ok = !rc && ((strcmp(to, "paused") == 0 && strcmp(c.state, "running") == 0) ||
                      (strcmp(to, "running") == 0 && strcmp(c.state, "paused") == 0) ||
                      (strcmp(to, "cancelled") == 0 &&
                       (strcmp(c.state, "running") == 0 || strcmp(c.state, "paused") == 0)));
    if (!rc && !ok) {
        SET_ERR(e, "a %s campaign cannot be %s", c.state, to);
        rc = MAMORI_ERR_STATE;
    }
    if (!rc)
        rc = set_state(h, who, &c, to, c.waves_sent, c.next_wave_at, "by an operator", reason);
    if (!rc && !(rc = store_campaign_get(h->store, id, &c)))
        rc = store_campaign_counts(h->store, id, &n);
    pthread_mutex_unlock(&h->lock);
    if (!rc)
        *out = campaign_json(&c, &n);
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}

/* --- the periodic step ------------------------------------------------- */

static bool in_window(const struct campaign_rec *c, int64_t now_ms)
{
    if (c->window_start == c->window_end)
        return true;
    int hour = (int)((now_ms / 1000 / 3600) % 24);
    return c->window_start < c->window_end ? hour >= c->window_start && hour < c->window_end
                                           : hour >= c->window_start || hour < c->window_end;
}

struct send {
    struct hub *h;
    const struct campaign_rec *c;
    const struct fw_release_rec *rel;
    int wave;
};

static bool send_one(const char *device_id, void *arg)
{
    struct send *s = arg;
    struct op_err e = {{0}, 0};
    char cid[33] = "", reason[64];
    snprintf(reason, sizeof(reason), "campaign %lld, wave %d", (long long)s->c->id, s->wave);
    enum mamori_err rc =
        hub_fw_deploy_locked(s->h, &CAMPAIGN, s->rel, device_id, reason, CAMPAIGN_TTL_MS, cid, &e);
    /* A device that cannot take it now (locked, revoked) is skipped, not
     * a failure of the release. */
    log_if_err(store_campaign_device_set(s->h->store, s->c->id, device_id, s->wave,
                                         rc ? "skipped" : "sent", rc ? NULL : cid, rc ? e.msg : "",
                                         hub_now_ms()));
    return true;
}

static bool tick_one(const struct campaign_rec *c, void *arg)
{
    struct hub *h = ((struct list *)arg)->h;
    int64_t now = hub_now_ms();
    struct campaign_counts n;
    struct fw_release_rec rel;
    char note[256];
    if (store_campaign_counts(h->store, c->id, &n))
        return true;
    int finished = n.committed + n.failed;
    if (finished > 0 && n.failed * 100 > c->max_fail_pct * finished) {
        snprintf(note, sizeof(note), "failure rate %d%% (%d of %d finished) over %d%%",
                 n.failed * 100 / finished, n.failed, finished, c->max_fail_pct);
        if (set_state(h, &CAMPAIGN, c, "paused", c->waves_sent, c->next_wave_at, note,
                      "automatic pause") == MAMORI_OK)
            hub_event(h, NULL, "campaign_paused", "alert", "{\"campaign\":%lld,\"reason\":\"%s\"}",
                      (long long)c->id, note);
        return true;
    }
    if (n.pending == 0 && n.in_flight == 0) {
        snprintf(note, sizeof(note), "%d committed, %d failed, %d skipped", n.committed, n.failed,
                 n.skipped);
        if (set_state(h, &CAMPAIGN, c, "done", c->waves_sent, 0, note, "all devices finished") ==
            MAMORI_OK)
            hub_event(h, NULL, "campaign_done", "info", "{\"campaign\":%lld,\"note\":\"%s\"}",
                      (long long)c->id, note);
        return true;
    }
    /* Canaries first; the first wave only after every canary finished. */
    bool canary_phase = c->canary > 0 && c->waves_sent == 0;
    if (n.pending == 0 || now < c->next_wave_at || !in_window(c, now) ||
        (c->canary > 0 && c->waves_sent == 1 && n.in_flight > 0) ||
        store_fw_release_get(h->store, c->sha256, &rel, NULL))
        return true;
    struct send s = {h, c, &rel, c->waves_sent};
    log_if_err(
        store_campaign_next(h->store, c->id, canary_phase ? c->canary : c->wave, send_one, &s));
    log_if_err(store_campaign_set(h->store, c->id, c->state, c->waves_sent + 1,
                                  now + (int64_t)c->interval_s * 1000, c->note, now));
    return true;
}

static void waves_job(struct hub *h, int64_t now_ms)
{
    (void)now_ms;
    struct list l = {h, NULL};
    log_if_err(store_campaigns(h->store, "running", tick_one, &l));
}

static void on_result(struct hub *h, const struct command_rec *c, const char *status,
                      const char *error, json_t *detail)
{
    (void)detail;
    const char *device_id = c->device_id, *command_id = c->id;
    int64_t id;
    if (store_campaign_device_find(h->store, device_id, command_id, "sent", &id))
        return;
    /* A download that did not get through says nothing of the release:
     * the device is sent it again in a later wave (it resumes), up to
     * CAMPAIGN_TRIES times. */
    if (strcmp(status, "failed") == 0 && strncmp(error, "download", 8) == 0) {
        log_if_err(store_campaign_device_retry(h->store, id, device_id, CAMPAIGN_TRIES, error,
                                               hub_now_ms()));
        return;
    }
    /* a device that runs the release already has what the campaign brings */
    const char *to = strcmp(status, "ok") == 0               ? "installed"
                     : strcmp(error, "already_running") == 0 ? "committed"
                                                             : "failed";
    log_if_err(
        store_campaign_device_set(h->store, id, device_id, -1, to, NULL, error, hub_now_ms()));
}

/* update_status from a device whose campaign install went through: idle
 * again, it runs the release (committed) or not (it was rolled back).
 * This settles devices whose update_committed or update_rolled_back never
 * arrived; a trial still running (phase 3) settles nothing. */
static void status_settles(struct hub *h, const char *device_id, const json_t *body)
{
    int64_t id;
    struct campaign_rec c;
    struct fw_release_rec rel;
    const json_t *u = json_object_get(body, "update");
    const char *fw = json_string_value(json_object_get(u, "fw_version"));
    const json_t *phase = json_object_get(u, "phase");
    if (!fw || !json_is_integer(phase) || json_integer_value(phase) != 0 ||
        store_campaign_device_find(h->store, device_id, NULL, "installed", &id) ||
        store_campaign_get(h->store, id, &c) ||
        store_fw_release_get(h->store, c.sha256, &rel, NULL))
        return;
    bool runs = strcmp(fw, rel.fw_version) == 0;
    log_if_err(store_campaign_device_set(h->store, id, device_id, -1, runs ? "committed" : "failed",
                                         NULL, runs ? "" : "health", hub_now_ms()));
}

static void on_event(struct hub *h, const char *device_id, const char *type, const json_t *body)
{
    int64_t id;
    bool committed = strcmp(type, "update_committed") == 0;
    if (strcmp(type, "update_status") == 0) {
        status_settles(h, device_id, body);
        return;
    }
    if (!committed && strcmp(type, "update_rolled_back") != 0)
        return;
    /* "installed", or still "sent" when the install's result was lost as
     * the device rebooted: the event says how it ended either way */
    if (store_campaign_device_find(h->store, device_id, NULL, "installed", &id) &&
        store_campaign_device_find(h->store, device_id, NULL, "sent", &id))
        return;
    log_if_err(store_campaign_device_set(h->store, id, device_id, -1,
                                         committed ? "committed" : "failed", NULL,
                                         committed ? "" : "health", hub_now_ms()));
}

/* --- device groups ----------------------------------------------------- */

enum mamori_err hub_op_group_set(struct hub *h, const struct principal *who, const char *group,
                                 const char *device_id, bool member, json_t **out, struct op_err *e)
{
    struct device_rec d;
    char detail[96];
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    if (!upmeta_name_ok(group)) {
        SET_ERR(e, "a group name is 1..64 of [A-Za-z0-9._+~-]");
        return MAMORI_ERR_INVAL;
    }
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_device_get(h->store, device_id, &d);
    if (rc == MAMORI_ERR_NOTFOUND)
        SET_ERR(e, "no such device");
    if (!rc && !(rc = store_begin(h->store))) {
        rc = store_group_set(h->store, group, device_id, member);
        snprintf(detail, sizeof(detail), "{\"group\":\"%s\"}", group);
        if (rc)
            store_rollback(h->store);
        else
            rc = hub_commit_audited(h, who, member ? "group_added" : "group_removed", device_id, "",
                                    detail);
    }
    pthread_mutex_unlock(&h->lock);
    if (!rc)
        *out = json_pack("{s:s, s:s, s:b}", "group", group, "device", device_id, "member", member);
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}

static bool group_one(const char *id, void *arg)
{
    json_array_append_new(arg, json_string(id));
    return true;
}

enum mamori_err hub_op_group_get(struct hub *h, const struct principal *who, const char *group,
                                 json_t **out)
{
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    json_t *a = json_array();
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = a ? store_group_devices(h->store, group, group_one, a) : MAMORI_ERR_NOMEM;
    pthread_mutex_unlock(&h->lock);
    if (rc) {
        json_decref(a);
        return rc;
    }
    *out = json_pack("{s:s, s:o}", "group", group, "devices", a);
    return *out ? MAMORI_OK : MAMORI_ERR_NOMEM;
}

enum mamori_err campaign_register(struct hub *h)
{
    static const char *const EVENTS[] = {"update_status", "update_committed", "update_rolled_back"};
    enum mamori_err rc;
    for (size_t i = 0; i < sizeof(EVENTS) / sizeof(EVENTS[0]); i++)
        if ((rc = hub_on_device_event(h, EVENTS[i], on_event)))
            return rc;
    if ((rc = hub_on_result(h, "update", on_result)))
        return rc;
    /* Staged update campaigns move on (P-UPD), while commands can go out. */
    return hub_job_add(h, "campaign_waves", 1000, 1000, HUB_JOB_LOCKED | HUB_JOB_SESSION,
                       waves_job);
}
