/* hub/device/data.c - telemetry schemas (staff) and stored telemetry (owners: their own devices).
 */
#include "common/schema.h"
#include "hub/device/device.h"
#include "hub/device/telemetry.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/proto.h"

/* ---- telemetry schemas and queries ---- */

enum mamori_err hub_op_schema_set(struct hub *h, const struct principal *who, const char *model,
                                  const json_t *doc, json_t **out, struct op_err *e)
{
    *out = NULL;
    if (!hub_is_staff(who))
        return MAMORI_ERR_FORBIDDEN;
    if (!hub_name_ok(model, STORE_NAME_MAX)) {
        SET_ERR(e, "model must be 1-64 of [A-Za-z0-9._-]");
        return MAMORI_ERR_INVAL;
    }
    char *txt = json_dump_compact(doc);
    if (!txt)
        return MAMORI_ERR_NOMEM;
    struct schema *sc = malloc(sizeof(*sc));
    enum mamori_err rc =
        sc ? schema_parse(txt, strlen(txt), sc, e->msg, sizeof(e->msg)) : MAMORI_ERR_NOMEM;
    free(txt);
    txt = NULL;
    if (rc) {
        free(sc);
        return rc == MAMORI_ERR_NOMEM ? rc : MAMORI_ERR_INVAL;
    }
    json_t *canon = schema_to_json(sc);
    free(sc);
    txt = canon ? json_dump_compact(canon) : NULL;
    if (!txt) {
        json_decref(canon);
        return MAMORI_ERR_NOMEM;
    }
    pthread_mutex_lock(&h->lock);
    if (!(rc = store_begin(h->store))) {
        rc = store_schema_set(h->store, model, txt, hub_now());
        if (rc)
            store_rollback(h->store);
        else
            rc = hub_commit_audited(h, who, "schema_set", model, "", txt);
    }
    if (!rc)
        tm_schema_changed(h, model);
    pthread_mutex_unlock(&h->lock);
    free(txt);
    if (rc) {
        json_decref(canon);
        return rc;
    }
    json_object_set_new(canon, "model", json_string(model));
    *out = canon;
    return MAMORI_OK;
}

enum mamori_err hub_op_schema_get(struct hub *h, const struct principal *who, const char *model,
                                  json_t **out)
{
    (void)who; /* schemas are not secret to any signed-in principal */
    *out = NULL;
    if (!hub_name_ok(model, STORE_NAME_MAX))
        return MAMORI_ERR_NOTFOUND;
    char *doc = NULL;
    pthread_mutex_lock(&h->lock);
    enum mamori_err rc = store_schema_get(h->store, model, &doc);
    pthread_mutex_unlock(&h->lock);
    if (rc)
        return rc;
    *out = json_loads(doc, 0, NULL);
    free(doc);
    if (!*out)
        return MAMORI_ERR_INTERNAL;
    json_object_set_new(*out, "model", json_string(model));
    return MAMORI_OK;
}

enum mamori_err hub_op_telemetry(struct hub *h, const struct principal *who, const char *id,
                                 int64_t from_ts, int64_t to_ts, int64_t after, int limit,
                                 json_t **out)
{
    struct device_rec d;
    *out = NULL;
    pthread_mutex_lock(&h->lock);
    /* Owners read their own devices' data only (T06-L1a). */
    enum mamori_err rc = hub_device_visible(h, who, id, &d);
    if (!rc)
        rc = tm_query(h, id, from_ts, to_ts, after, limit, out);
    pthread_mutex_unlock(&h->lock);
    return rc;
}

/* ---- events ---- */

static bool event_cb(const struct event_rec *ev, void *arg)
{
    json_t *detail = json_loads(ev->detail, 0, NULL);
    json_array_append_new(arg, json_pack("{s:I,s:I,s:s?,s:s,s:s,s:o}", "id", (json_int_t)ev->id,
                                         "ts", (json_int_t)ev->ts, "device_id",
                                         ev->device_id[0] ? ev->device_id : NULL, "kind", ev->kind,
                                         "severity", ev->severity, "detail",
                                         detail ? detail : json_string(ev->detail)));
    return true;
}

enum mamori_err hub_op_events(struct hub *h, const struct principal *who, const char *device_id,
                              int64_t after, int limit, json_t **out)
{
    json_t *arr = json_array();
    enum mamori_err rc = MAMORI_OK;
    pthread_mutex_lock(&h->lock);
    if (device_id) {
        struct device_rec d;
        rc = hub_device_visible(h, who, device_id, &d);
    }
    /* Owners without a device filter get the events of their own devices. */
    if (!rc)
        rc = store_event_list(h->store, device_id, who->role == ROLE_OWNER ? who->user_id : 0,
                              after, limit, event_cb, arr);
    pthread_mutex_unlock(&h->lock);
    *out = json_pack("{s:o}", "events", arr);
    return rc;
}
