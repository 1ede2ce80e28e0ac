/* hub/alerts/alerts_ops.c - alerts, rules, response policies and webhooks as
 * staff (and owners, for their own devices' alerts) see and change them. */
#include "hub/alerts/alerts_priv.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/proto.h"

/* --- operations --------------------------------------------------------- */

static bool list_one(const struct alert_rec *a, void *arg)
{
    json_array_append_new(arg, alerts_json(a));
    return true;
}

enum mamori_err hub_op_alerts(struct hub *h, const struct principal *who, const char *state,
                              const char *device_id, int64_t after, int limit, json_t **out)
{
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    if (state && strcmp(state, "open") && strcmp(state, "acknowledged") &&
        strcmp(state, "resolved"))
        return MAMORI_ERR_INVAL;
    if (device_id && !proto_device_id_valid(device_id, strlen(device_id)))
        return MAMORI_ERR_NOTFOUND;
    json_t *arr = json_array();
    if (!arr)
        return MAMORI_ERR_NOMEM;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_alerts(h->store, state, device_id, after, limit, list_one, arr);
    pthread_mutex_unlock(&h->lock);
    if (rc) {
        json_decref(arr);
        return rc;
    }
    *out = json_pack("{s:o}", "alerts", arr);
    return *out ? MAMORI_OK : MAMORI_ERR_NOMEM;
}

enum mamori_err hub_op_alert_set(struct hub *h, const struct principal *who, int64_t id,
                                 const char *action, const char *note, json_t **out,
                                 struct op_err *e)
{
    struct alert_rec a;
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    bool ack = strcmp(action, "ack") == 0;
    if (!ack && strcmp(action, "resolve") != 0)
        return MAMORI_ERR_NOTFOUND;
    const char *to = ack ? "acknowledged" : "resolved";
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_begin(h->store);
    if (!rc) {
        char target[32];
        snprintf(target, sizeof(target), "alert:%lld", (long long)id);
        rc = store_alert_set(h->store, id, to, who->name, note);
        if (rc == MAMORI_ERR_STATE)
            SET_ERR(e, "%s",
                    ack ? "only an open alert can be acknowledged"
                        : "the alert is resolved already");
        if (rc)
            store_rollback(h->store);
        else
            rc = hub_commit_audited(h, who, ack ? "alert_acknowledged" : "alert_resolved", target,
                                    note, "");
    }
    if (!rc && !(rc = store_alert_get(h->store, id, &a))) {
        alerts_deliver(h, &a, ack ? "alert.acknowledged" : "alert.resolved");
        *out = alerts_json(&a);
    }
    pthread_mutex_unlock(&h->lock);
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}

static bool policy_one(const struct policy_rec *p, void *arg)
{
    json_t *rules = arg;
    for (size_t i = 0; i < json_array_size(rules); i++) {
        json_t *r = json_array_get(rules, i);
        if (strcmp(json_string_value(json_object_get(r, "rule")), p->rule) == 0)
            json_array_append_new(json_object_get(r, "policies"),
                                  json_pack("{s:s, s:s, s:i}", "model", p->model, "action",
                                            p->action, "act_after", p->act_after));
    }
    return true;
}

enum mamori_err hub_op_rules(struct hub *h, const struct principal *who, json_t **out)
{
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < N_RULES; i++) {
        const struct rule *r = &RULES[i];
        json_t *kinds = json_array();
        for (size_t k = 0; k < 4 && r->kinds[k]; k++)
            json_array_append_new(kinds, json_string(r->kinds[k]));
        json_array_append_new(
            arr, json_pack("{s:s, s:s, s:o, s:s?, s:i, s:i, s:s, s:[]}", "rule", r->name, "what",
                           r->what, "events", kinds, "device_event", r->type, "count", (int)r->n,
                           "window_s", (int)r->window_s, "severity",
                           r->severity ? r->severity : "(the event's)", "policies"));
    }
    if (!arr)
        return MAMORI_ERR_NOMEM;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_policies(h->store, policy_one, arr);
    pthread_mutex_unlock(&h->lock);
    if (rc) {
        json_decref(arr);
        return rc;
    }
    *out = json_pack("{s:o, s:s}", "rules", arr, "default_policy", "notify");
    return *out ? MAMORI_OK : MAMORI_ERR_NOMEM;
}

enum mamori_err hub_op_rule_policy(struct hub *h, const struct principal *who, const char *rule,
                                   const json_t *in, json_t **out, struct op_err *e)
{
    struct policy_rec p;
    const char *model = "", *action = NULL;
    uint64_t after = 1;
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    if (!alerts_rule_named(rule))
        return MAMORI_ERR_NOTFOUND;
    memset(&p, 0, sizeof(p));
    bool ok =
        json_get_str(in, "action", 15, &action) &&
        (!strcmp(action, "notify") || !strcmp(action, "quarantine") || !strcmp(action, "lock")) &&
        (!json_object_get(in, "model") ||
         (json_is_string(json_object_get(in, "model")) &&
          strlen(model = json_string_value(json_object_get(in, "model"))) <= STORE_NAME_MAX)) &&
        (!json_object_get(in, "act_after") ||
         (json_get_u64(in, "act_after", &after) && after >= 1 && after <= 1000000));
    if (!ok) {
        SET_ERR(e, "need action (notify|quarantine|lock), optionally model (\"\": every model) "
                   "and act_after (1..1000000: act once the alert counted this many)");
        return MAMORI_ERR_INVAL;
    }
    snprintf(p.rule, sizeof(p.rule), "%s", rule);
    snprintf(p.model, sizeof(p.model), "%s", model);
    snprintf(p.action, sizeof(p.action), "%s", action);
    p.act_after = (int)after;
    char detail[160];
    snprintf(detail, sizeof(detail), "{\"model\":\"%s\",\"action\":\"%s\",\"act_after\":%d}",
             p.model, p.action, p.act_after);
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_begin(h->store);
    if (!rc) {
        rc = store_policy_set(h->store, &p, who->name, hub_now());
        if (rc)
            store_rollback(h->store);
        else
            rc = hub_commit_audited(h, who, "rule_policy_set", rule, "", detail);
    }
    pthread_mutex_unlock(&h->lock);
    if (!rc)
        *out = json_pack("{s:s, s:s, s:s, s:i}", "rule", rule, "model", p.model, "action", p.action,
                         "act_after", p.act_after);
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}

/* http only to a loopback receiver; everything else https. */
static bool url_ok(const char *url)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    bool ok = u && strlen(url) < 500 && !curl_url_set(u, CURLUPART_URL, url, 0) &&
              !curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) &&
              !curl_url_get(u, CURLUPART_HOST, &host, 0);
    for (const char *p = url; ok && *p; p++)
        ok = (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f;
    if (ok)
        ok = strcmp(scheme, "https") == 0 ||
             (strcmp(scheme, "http") == 0 &&
              (strncmp(host, "127.", 4) == 0 || strcmp(host, "localhost") == 0 ||
               strcmp(host, "[::1]") == 0));
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}

enum mamori_err hub_op_webhook_add(struct hub *h, const struct principal *who, const char *url,
                                   json_t **out, struct op_err *e)
{
    struct webhook_rec w;
    uint8_t rnd[32];
    *out = NULL;
    if (who->role != ROLE_ADMIN)
        return MAMORI_ERR_FORBIDDEN;
    bool mailto = strncmp(url, "mailto:", 7) == 0;
    if (mailto && !h->cfg.smtp_url[0]) {
        SET_ERR(e, "mail needs the hub started with --smtp URL --smtp-from ADDR");
        return MAMORI_ERR_INVAL;
    }
    if (mailto ? !alerts_address_ok(url + 7) : !url_ok(url)) {
        SET_ERR(e, "an https:// URL (http:// only to 127.0.0.0/8, localhost or [::1]), "
                   "printable, under 500 bytes; or mailto:ADDRESS");
        return MAMORI_ERR_INVAL;
    }
    memset(&w, 0, sizeof(w));
    snprintf(w.url, sizeof(w.url), "%s", url);
    snprintf(w.created_by, sizeof(w.created_by), "%s", who->name);
    w.created_at = hub_now();
    enum mamori_err rc = crypto_random(rnd, sizeof(rnd));
    if (rc)
        return rc;
    memcpy(w.secret, "whsec_", 6);
    crypto_hex(rnd, sizeof(rnd), w.secret + 6);
    crypto_wipe(rnd, sizeof(rnd));
    pthread_mutex_lock(&h->lock);
    if (!(rc = store_begin(h->store))) {
        rc = store_webhook_add(h->store, &w);
        if (rc)
            store_rollback(h->store);
        else
            rc = hub_commit_audited(h, who, "webhook_added", url, "", "");
    }
    pthread_mutex_unlock(&h->lock);
    /* the secret is shown this once */
    if (!rc)
        *out =
            json_pack("{s:I, s:s, s:s}", "id", (json_int_t)w.id, "url", w.url, "secret", w.secret);
    crypto_wipe(w.secret, sizeof(w.secret));
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}

static bool webhook_one(const struct webhook_rec *w, void *arg)
{
    json_array_append_new(arg, json_pack("{s:I, s:s, s:s, s:I}", "id", (json_int_t)w->id, "url",
                                         w->url, "created_by", w->created_by, "created_at",
                                         (json_int_t)w->created_at));
    return true;
}

enum mamori_err hub_op_webhooks(struct hub *h, const struct principal *who, json_t **out)
{
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    json_t *arr = json_array();
    if (!arr)
        return MAMORI_ERR_NOMEM;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_webhooks(h->store, webhook_one, arr);
    pthread_mutex_unlock(&h->lock);
    if (rc) {
        json_decref(arr);
        return rc;
    }
    *out = json_pack("{s:o}", "webhooks", arr);
    return *out ? MAMORI_OK : MAMORI_ERR_NOMEM;
}

enum mamori_err hub_op_webhook_del(struct hub *h, const struct principal *who, int64_t id,
                                   json_t **out)
{
    char target[32];
    *out = NULL;
    if (who->role != ROLE_ADMIN)
        return MAMORI_ERR_FORBIDDEN;
    snprintf(target, sizeof(target), "webhook:%lld", (long long)id);
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_begin(h->store);
    if (!rc) {
        rc = store_webhook_del(h->store, id);
        if (rc)
            store_rollback(h->store);
        else
            rc = hub_commit_audited(h, who, "webhook_removed", target, "", "");
    }
    pthread_mutex_unlock(&h->lock);
    if (!rc)
        *out = json_pack("{s:I, s:b}", "id", (json_int_t)id, "removed", 1);
    return rc ? rc : (*out ? MAMORI_OK : MAMORI_ERR_NOMEM);
}
