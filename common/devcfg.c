/* common/devcfg.c - see devcfg.h. */
#include "common/devcfg.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/schema.h"

static enum mamori_err why_fmt(char *why, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum mamori_err why_fmt(char *why, size_t n, const char *fmt, ...)
{
    if (why && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, n, fmt, ap);
        va_end(ap);
    }
    return MAMORI_ERR_INVAL;
}

static bool get_range(json_t *j, const char *k, uint64_t lo, uint64_t hi, uint64_t *out)
{
    return json_get_u64(j, k, out) && *out >= lo && *out <= hi;
}

enum mamori_err devcfg_parse(const void *data, size_t len, struct devcfg *c, char *why,
                             size_t whylen)
{
    static const char *const KEYS[] = {"heartbeat_s", "broker_host", "broker_port", "health_s",
                                       "schema"};
    json_t *j = NULL;
    memset(c, 0, sizeof(*c));
    c->health_s = 60;
    if (len > DEVCFG_MAX)
        return why_fmt(why, whylen, "settings larger than %d bytes", DEVCFG_MAX), MAMORI_ERR_TOOBIG;
    enum mamori_err rc = json_parse_untrusted(data, len, DEVCFG_MAX, &j, why, whylen);
    if (rc)
        return rc;
    const char *k;
    json_t *v;
    uint64_t n;
    rc = MAMORI_OK;
    json_object_foreach(j, k, v)
    {
        bool known = false;
        for (size_t i = 0; i < sizeof(KEYS) / sizeof(KEYS[0]); i++)
            known |= strcmp(k, KEYS[i]) == 0;
        if (!known) {
            rc = why_fmt(why, whylen, "unknown setting '%.40s'", k);
            goto out;
        }
    }
    if (json_object_get(j, "heartbeat_s")) {
        if (!get_range(j, "heartbeat_s", 1, 3600, &n)) {
            rc = why_fmt(why, whylen, "heartbeat_s must be 1..3600");
            goto out;
        }
        c->heartbeat_s = (unsigned)n;
    }
    if (json_object_get(j, "health_s")) {
        if (!get_range(j, "health_s", 5, 3600, &n)) {
            rc = why_fmt(why, whylen, "health_s must be 5..3600");
            goto out;
        }
        c->health_s = (unsigned)n;
    }
    if (json_object_get(j, "broker_port")) {
        if (!get_range(j, "broker_port", 1, 65535, &n)) {
            rc = why_fmt(why, whylen, "broker_port must be 1..65535");
            goto out;
        }
        c->broker_port = (int)n;
    }
    if (json_object_get(j, "broker_host")) {
        const char *h;
        if (!json_get_str(j, "broker_host", sizeof(c->broker_host) - 1, &h) || !h[0] ||
            strpbrk(h, " /\\\t\r\n")) {
            rc = why_fmt(why, whylen, "broker_host must be a host name or address");
            goto out;
        }
        snprintf(c->broker_host, sizeof(c->broker_host), "%s", h);
    }
    json_t *s = json_object_get(j, "schema");
    if (s) {
        char *txt = json_is_object(s) ? json_dump_compact(s) : NULL;
        struct schema *sc = malloc(sizeof(*sc));
        char swhy[160] = "";
        if (!txt || !sc || strlen(txt) >= sizeof(c->schema_json) ||
            schema_parse(txt, strlen(txt), sc, swhy, sizeof(swhy))) {
            rc = why_fmt(why, whylen, "schema: %s", swhy[0] ? swhy : "must be a schema object");
        } else {
            memcpy(c->schema_json, txt, strlen(txt) + 1);
            c->has_schema = true;
        }
        free(sc);
        free(txt);
    }
out:
    json_decref(j);
    return rc;
}
