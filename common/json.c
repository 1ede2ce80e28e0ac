/* common/json.c - see json.h. */
#include "common/json.h"

#include <stdio.h>
#include <string.h>

static bool depth_ok(json_t *v, int depth)
{
    if (depth > JSON_MAX_DEPTH)
        return false;
    if (json_is_object(v)) {
        const char *k;
        json_t *m;
        json_object_foreach(v, k, m)
        {
            if (!depth_ok(m, depth + 1))
                return false;
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m)
        {
            if (!depth_ok(m, depth + 1))
                return false;
        }
    }
    return true;
}

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

enum mamori_err json_parse_untrusted(const void *data, size_t len, size_t max, json_t **out,
                                     char *err, size_t errlen)
{
    *out = NULL;
    if (len > max) {
        set_err(err, errlen, "body too large");
        return MAMORI_ERR_TOOBIG;
    }
    if (len == 0 || !data) {
        set_err(err, errlen, "empty body");
        return MAMORI_ERR_PARSE;
    }
    json_error_t je;
    json_t *v = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
    if (!v) {
        if (err && errlen)
            snprintf(err, errlen, "invalid JSON at line %d column %d: %s", je.line, je.column,
                     je.text);
        return MAMORI_ERR_PARSE;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        set_err(err, errlen, "JSON body must be an object");
        return MAMORI_ERR_PARSE;
    }
    if (!depth_ok(v, 0)) {
        json_decref(v);
        set_err(err, errlen, "JSON nested too deeply");
        return MAMORI_ERR_PARSE;
    }
    *out = v;
    return MAMORI_OK;
}

bool json_get_str(const json_t *obj, const char *key, size_t maxlen, const char **out)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        return false;
    size_t n = json_string_length(v);
    if (n == 0 || n > maxlen)
        return false;
    *out = json_string_value(v);
    return true;
}

bool json_get_u64(const json_t *obj, const char *key, uint64_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

char *json_dump_compact(const json_t *v)
{
    return json_dumps(v, JSON_COMPACT);
}
