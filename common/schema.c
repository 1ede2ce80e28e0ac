/*
 * common/schema.c - telemetry schema parsing and checking (schema.h).
 */
#include "common/schema.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/json.h"

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SCHEMA_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return s[0] < '0' || s[0] > '9';
}

static bool unit_ok(const char *s)
{
    size_t n = strlen(s);
    if (n > SCHEMA_UNIT_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

static bool get_num(const json_t *o, const char *k, double *out)
{
    const json_t *v = json_object_get(o, k);
    if (!v || !json_is_number(v))
        return false;
    double d = json_number_value(v);
    if (!isfinite(d))
        return false;
    *out = d;
    return true;
}

#define WHY(...) (snprintf(why, whylen, __VA_ARGS__), MAMORI_ERR_PARSE)

static enum mamori_err parse_field(json_t *fo, size_t idx, struct schema_field *f, char *why,
                                   size_t whylen)
{
    const char *name, *type, *unit = "";
    if (!json_is_object(fo))
        return WHY("fields[%zu] is not an object", idx);
    const char *k;
    json_t *v;
    json_object_foreach(fo, k, v)
    {
        if (strcmp(k, "name") && strcmp(k, "type") && strcmp(k, "unit") && strcmp(k, "min") &&
            strcmp(k, "max") && strcmp(k, "max_rate_hz"))
            return WHY("fields[%zu]: unknown member", idx);
    }
    if (!json_get_str(fo, "name", SCHEMA_NAME_MAX, &name) || !name_ok(name))
        return WHY("fields[%zu].name must be 1-%d of [a-z0-9_], not starting with a digit", idx,
                   SCHEMA_NAME_MAX);
    if (!json_get_str(fo, "type", 16, &type))
        return WHY("fields[%zu].type missing", idx);
    if (json_object_get(fo, "unit") &&
        (!json_get_str(fo, "unit", SCHEMA_UNIT_MAX, &unit) || !unit_ok(unit)))
        return WHY("fields[%zu].unit must be at most %d printable characters", idx,
                   SCHEMA_UNIT_MAX);
    snprintf(f->name, sizeof(f->name), "%s", name);
    snprintf(f->unit, sizeof(f->unit), "%s", unit);
    if (strcmp(type, "number") == 0)
        f->type = SCHEMA_NUMBER;
    else if (strcmp(type, "integer") == 0)
        f->type = SCHEMA_INTEGER;
    else if (strcmp(type, "boolean") == 0)
        f->type = SCHEMA_BOOLEAN;
    else
        return WHY("fields[%zu].type must be number, integer or boolean", idx);
    f->min = 0;
    f->max = 1;
    if (f->type != SCHEMA_BOOLEAN) {
        /* A range is what makes a value checkable: required. */
        if (!get_num(fo, "min", &f->min) || !get_num(fo, "max", &f->max))
            return WHY("fields[%zu] needs numeric min and max", idx);
        if (f->min > f->max)
            return WHY("fields[%zu]: min is above max", idx);
    } else if (json_object_get(fo, "min") || json_object_get(fo, "max")) {
        return WHY("fields[%zu]: a boolean has no range", idx);
    }
    f->max_rate_hz = 0;
    if (json_object_get(fo, "max_rate_hz") &&
        (!get_num(fo, "max_rate_hz", &f->max_rate_hz) || f->max_rate_hz <= 0 ||
         f->max_rate_hz > SCHEMA_RATE_MAX))
        return WHY("fields[%zu].max_rate_hz must be in (0, %g]", idx, SCHEMA_RATE_MAX);
    return MAMORI_OK;
}

enum mamori_err schema_parse(const void *data, size_t len, struct schema *out, char *why,
                             size_t whylen)
{
    json_t *j = NULL;
    memset(out, 0, sizeof(*out));
    enum mamori_err rc = json_parse_untrusted(data, len, SCHEMA_JSON_MAX, &j, why, whylen);
    if (rc)
        return rc;
    json_t *fields = json_object_get(j, "fields");
    if (json_object_size(j) != 1 || !json_is_array(fields)) {
        json_decref(j);
        return WHY("a schema is {\"fields\": [...]}");
    }
    size_t n = json_array_size(fields);
    if (n == 0 || n > SCHEMA_MAX_FIELDS) {
        json_decref(j);
        return WHY("a schema has 1 to %d fields", SCHEMA_MAX_FIELDS);
    }
    for (size_t i = 0; i < n && !rc; i++) {
        rc = parse_field(json_array_get(fields, i), i, &out->f[i], why, whylen);
        for (size_t k = 0; k < i && !rc; k++)
            if (strcmp(out->f[k].name, out->f[i].name) == 0)
                rc = WHY("field %s declared twice", out->f[i].name);
        out->n = i + 1;
    }
    json_decref(j);
    if (rc)
        memset(out, 0, sizeof(*out));
    return rc;
}

json_t *schema_to_json(const struct schema *s)
{
    static const char *const TYPES[] = {"number", "integer", "boolean"};
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < s->n; i++) {
        const struct schema_field *f = &s->f[i];
        json_t *o = json_pack("{s:s,s:s}", "name", f->name, "type", TYPES[f->type]);
        if (!o)
            continue;
        if (f->unit[0])
            json_object_set_new(o, "unit", json_string(f->unit));
        if (f->type != SCHEMA_BOOLEAN) {
            json_object_set_new(o, "min", json_real(f->min));
            json_object_set_new(o, "max", json_real(f->max));
        }
        if (f->max_rate_hz > 0)
            json_object_set_new(o, "max_rate_hz", json_real(f->max_rate_hz));
        json_array_append_new(arr, o);
    }
    return json_pack("{s:o}", "fields", arr);
}

static const struct schema_field *find(const struct schema *s, const char *name, size_t *idx)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->f[i].name, name) == 0) {
            if (idx)
                *idx = i;
            return &s->f[i];
        }
    return NULL;
}

enum mamori_err schema_check(const struct schema *s, json_t *body, char *why, size_t whylen)
{
    if (!json_is_object(body) || json_object_size(body) == 0)
        return WHY("telemetry body must be a non-empty object");
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v)
    {
        const struct schema_field *f = find(s, k, NULL);
        if (!f)
            return WHY("unknown field '%.32s'", k);
        double d;
        switch (f->type) {
        case SCHEMA_BOOLEAN:
            if (!json_is_boolean(v))
                return WHY("field %s must be a boolean", f->name);
            continue;
        case SCHEMA_INTEGER:
            if (!json_is_integer(v))
                return WHY("field %s must be an integer", f->name);
            d = (double)json_integer_value(v);
            break;
        case SCHEMA_NUMBER:
        default:
            if (!json_is_number(v))
                return WHY("field %s must be a number", f->name);
            d = json_number_value(v);
            break;
        }
        if (!isfinite(d) || d < f->min || d > f->max) {
            snprintf(why, whylen, "field %s=%g outside [%g, %g]%s%s", f->name, d, f->min, f->max,
                     f->unit[0] ? " " : "", f->unit);
            return MAMORI_ERR_INVAL;
        }
    }
    return MAMORI_OK;
}

bool schema_rate_ok(const struct schema *s, struct schema_rate *r, json_t *body, int64_t ts_ms,
                    double tol, bool accept, char *why, size_t whylen)
{
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v)
    {
        size_t i;
        const struct schema_field *f = find(s, k, &i);
        if (!f || f->max_rate_hz <= 0 || r->last_ms[i] == 0)
            continue;
        double period = 1000.0 / f->max_rate_hz * (1.0 - tol);
        if ((double)(ts_ms - r->last_ms[i]) < period) {
            snprintf(why, whylen, "field %s sent faster than %g Hz", f->name, f->max_rate_hz);
            return false;
        }
    }
    if (accept) {
        json_object_foreach(body, k, v)
        {
            size_t i;
            if (find(s, k, &i))
                r->last_ms[i] = ts_ms;
        }
    }
    return true;
}
