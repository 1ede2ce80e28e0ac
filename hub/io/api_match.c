/* hub/io/api_match.c - see api_table.h: route patterns and their matching. */
#include "hub/io/api_table.h"

#include <stdio.h>
#include <string.h>

static bool lit_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

bool api_pattern_ok(const char *pattern)
{
    const char *names[ROUTE_MAX_SEGS];
    size_t name_len[ROUTE_MAX_SEGS];
    int segs = 0, nnames = 0;
    if (!pattern || pattern[0] != '/' || strlen(pattern) >= ROUTE_MAX_URL)
        return false;
    for (const char *p = pattern; *p == '/';) {
        const char *s = ++p;
        bool param = *s == ':';
        if (param)
            p++;
        while (*p && *p != '/' && (param ? name_char(*p) : lit_char(*p)))
            p++;
        size_t len = (size_t)(p - s);
        if ((*p && *p != '/') || len == (param ? 1u : 0u) || ++segs > ROUTE_MAX_SEGS)
            return false; /* a bad character, an empty segment or name, too many */
        if (param) {
            for (int i = 0; i < nnames; i++)
                if (name_len[i] == len - 1 && memcmp(names[i], s + 1, len - 1) == 0)
                    return false;
            names[nnames] = s + 1;
            name_len[nnames++] = len - 1;
        }
        if (!*p)
            return true;
    }
    return false;
}

bool api_pattern_match(const char *pattern, const struct route *rt, const char **arg, int *nargs)
{
    int i = 0;
    *nargs = 0;
    const char *p = pattern;
    while (*p == '/') {
        const char *s = ++p;
        while (*p && *p != '/')
            p++;
        size_t len = (size_t)(p - s);
        if (i >= rt->n || i >= ROUTE_MAX_SEGS)
            return false; /* the URL is shorter */
        if (len > 0 && s[0] == ':')
            arg[(*nargs)++] = rt->seg[i];
        else if (strlen(rt->seg[i]) != len || memcmp(rt->seg[i], s, len) != 0)
            return false;
        i++;
    }
    return *p == '\0' && i == rt->n; /* no segment of the URL left over */
}

/* Appends method to the Allow list unless it is there already. */
static void allow_add(char *allow, const char *method)
{
    size_t n = strlen(allow), ml = strlen(method);
    for (const char *p = allow; (p = strstr(p, method)) != NULL; p += ml)
        if ((p == allow || p[-1] == ' ') && (p[ml] == ',' || p[ml] == '\0'))
            return;
    snprintf(allow + n, API_ALLOW_MAX - n, "%s%s", n ? ", " : "", method);
}

enum api_found api_match(const struct api_route *tab, size_t n, const char *method,
                         const struct route *rt, struct api_match *m)
{
    const char *arg[ROUTE_MAX_SEGS];
    int nargs;
    bool path = false;
    m->route = NULL;
    m->nargs = 0;
    m->allow[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (!api_pattern_match(tab[i].pattern, rt, arg, &nargs))
            continue;
        if (strcmp(tab[i].method, method) == 0) {
            m->route = &tab[i];
            m->nargs = nargs;
            memcpy(m->arg, arg, sizeof(arg[0]) * (size_t)nargs);
            return API_FOUND;
        }
        path = true;
        allow_add(m->allow, tab[i].method);
    }
    return path ? API_NO_METHOD : API_NO_PATH;
}
