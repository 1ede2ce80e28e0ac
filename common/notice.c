/*
 * common/notice.c - the "notice" document (see notice.h); T02-L2b.
 */
#include "common/notice.h"

#include <stdio.h>
#include <string.h>

#include "common/json.h"
#include "common/upmeta.h"

static const char *const SEVERITIES[] = {"low", "medium", "high", "critical"};

static int severity_rank(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, SEVERITIES[i]) == 0)
            return i;
    return -1;
}

/* A version name, or "" where allowed. */
static bool version_ok(const char *v)
{
    return !*v || upmeta_name_ok(v);
}

static const char *str0(const json_t *o, const char *key, size_t maxlen)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) && json_string_length(v) <= maxlen &&
                   strlen(json_string_value(v)) == json_string_length(v) /* no NUL inside */
               ? json_string_value(v)
               : NULL;
}

enum mamori_err notice_parse(const void *data, size_t len, struct notice *out)
{
    json_t *o = NULL;
    memset(out, 0, sizeof(*out));
    enum mamori_err rc = json_parse_untrusted(data, len, NOTICE_MAX, &o, NULL, 0);
    if (rc)
        return rc;
    const char *fw = str0(o, "fw_version", 64);
    const json_t *end = json_object_get(o, "support_end"), *arr = json_object_get(o, "advisories");
    uint64_t more = 0;
    rc = MAMORI_ERR_PARSE;
    if (json_object_size(o) != 4 || !fw || !version_ok(fw) || !json_is_integer(end) ||
        json_integer_value(end) < 0 || json_integer_value(end) > 32503680000LL ||
        !json_is_array(arr) || json_array_size(arr) > NOTICE_ADVISORIES ||
        !json_get_u64(o, "more", &more) || more > 1000000)
        goto out;
    snprintf(out->fw_version, sizeof(out->fw_version), "%s", fw);
    out->support_end = (int64_t)json_integer_value(end);
    out->more = more;
    size_t i;
    json_t *a;
    json_array_foreach(arr, i, a)
    {
        struct notice_advisory *x = &out->adv[i];
        const json_t *id = json_object_get(a, "id");
        const char *sev = str0(a, "severity", 15), *title = str0(a, "title", NOTICE_TITLE_MAX),
                   *fixed = str0(a, "fixed_version", 64);
        if (json_object_size(a) != 4 || !json_is_integer(id) || json_integer_value(id) <= 0 ||
            !sev || severity_rank(sev) < 0 || !title || !*title || !fixed || !version_ok(fixed))
            goto out;
        x->id = (int64_t)json_integer_value(id);
        snprintf(x->severity, sizeof(x->severity), "%s", sev);
        snprintf(x->title, sizeof(x->title), "%s", title);
        snprintf(x->fixed_version, sizeof(x->fixed_version), "%s", fixed);
        out->n++;
    }
    rc = MAMORI_OK;
out:
    json_decref(o);
    if (rc)
        memset(out, 0, sizeof(*out));
    return rc;
}

const char *notice_worst(const struct notice *n)
{
    int worst = -1;
    for (size_t i = 0; i < n->n; i++) {
        int r = severity_rank(n->adv[i].severity);
        if (r > worst)
            worst = r;
    }
    return worst < 0 ? "" : SEVERITIES[worst];
}
