/* lib/cfgstore.c - see cfgstore.h. */
#include "lib/cfgstore.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/json.h"

#define P(s, name, buf) fs_path(buf, sizeof(buf), (s)->dir, name)

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Reads {"version":N,"settings":{...}}; version 0 when absent or damaged. */
static void read_doc(const char *path, uint64_t *version, char *settings, size_t n)
{
    char *txt = NULL;
    size_t len;
    json_t *j = NULL;
    *version = 0;
    if (settings)
        settings[0] = '\0';
    if (fs_read_file(path, 2 * DEVCFG_MAX, &txt, &len) ||
        json_parse_untrusted(txt, len, 2 * DEVCFG_MAX, &j, NULL, 0)) {
        free(txt);
        return;
    }
    free(txt);
    json_t *st = json_object_get(j, "settings");
    char *s = json_is_object(st) ? json_dump_compact(st) : NULL;
    if (s && json_get_u64(j, "version", version) && (!settings || strlen(s) < n)) {
        if (settings)
            memcpy(settings, s, strlen(s) + 1);
    } else {
        *version = 0;
    }
    free(s);
    json_decref(j);
}

static enum mamori_err load(struct cfgstore *s)
{
    char cur[4200], good[4200], pend[4200], *txt = NULL;
    size_t len;
    if (P(s, "current.json", cur) || P(s, "good.json", good) || P(s, "pending", pend))
        return MAMORI_ERR_TOOBIG;
    read_doc(cur, &s->version, s->settings, sizeof(s->settings));
    read_doc(good, &s->good_version, NULL, 0);
    s->pending = false;
    s->deadline_ms = 0;
    if (fs_read_file(pend, 64, &txt, &len) == MAMORI_OK) {
        uint64_t v = 0;
        long long dl = 0;
        s->pending = sscanf(txt, "%" SCNu64 " %lld", &v, &dl) == 2 && v == s->version;
        s->deadline_ms = dl;
        free(txt);
    }
    return MAMORI_OK;
}

enum mamori_err cfgstore_open(const char *state_dir, struct cfgstore *s)
{
    char nw[4200], cur[4200], good[4200], pend[4200], tmp[4300];
    memset(s, 0, sizeof(*s));
    enum mamori_err rc = fs_path(s->dir, sizeof(s->dir), state_dir, "config");
    if (!rc)
        rc = fs_mkdir_p(s->dir, 0700);
    if (!rc && (P(s, "new.json", nw) || P(s, "current.json", cur) || P(s, "good.json", good) ||
                P(s, "pending", pend)))
        rc = MAMORI_ERR_TOOBIG;
    if (rc)
        return rc;
    /* Temporary files of cut-short atomic writes. */
    static const char *const tmps[] = {"new.json.tmp", "pending.tmp", "current.json.tmp"};
    for (size_t i = 0; i < sizeof(tmps) / sizeof(tmps[0]); i++)
        if (fs_path(tmp, sizeof(tmp), s->dir, tmps[i]) == MAMORI_OK)
            unlink(tmp);
    if (exists(nw)) {
        if (!exists(pend)) {
            /* Stopped after writing new.json: the apply never happened. */
            if ((rc = fs_unlink_durable(nw)))
                return rc;
        } else {
            /* new.json is whole and marked: go forward. */
            if (exists(cur) && (rc = fs_rename_durable(cur, good)))
                return rc;
            if ((rc = fs_rename_durable(nw, cur)))
                return rc;
        }
    }
    return load(s);
}

enum mamori_err cfgstore_apply(struct cfgstore *s, uint64_t version, const char *settings,
                               int64_t deadline_ms, int stop_after)
{
    char nw[4200], cur[4200], good[4200], pend[4200], line[64];
    if (P(s, "new.json", nw) || P(s, "current.json", cur) || P(s, "good.json", good) ||
        P(s, "pending", pend))
        return MAMORI_ERR_TOOBIG;
    json_t *st = json_loads(settings, JSON_REJECT_DUPLICATES, NULL);
    json_t *doc = json_is_object(st)
                      ? json_pack("{s:I,s:O}", "version", (json_int_t)version, "settings", st)
                      : NULL;
    char *txt = doc ? json_dump_compact(doc) : NULL;
    json_decref(doc);
    json_decref(st);
    if (!txt)
        return MAMORI_ERR_INVAL;
    enum mamori_err rc = fs_write_atomic(nw, txt, strlen(txt), 0600);
    free(txt);
    if (rc || stop_after == CFG_STEP_NEW_WRITTEN)
        return rc;
    int n = snprintf(line, sizeof(line), "%" PRIu64 " %lld\n", version, (long long)deadline_ms);
    if ((rc = fs_write_atomic(pend, line, (size_t)n, 0600)) || stop_after == CFG_STEP_PENDING)
        return rc;
    if (exists(cur) && (rc = fs_rename_durable(cur, good)))
        return rc;
    if (stop_after == CFG_STEP_GOOD_KEPT)
        return MAMORI_OK;
    if ((rc = fs_rename_durable(nw, cur)))
        return rc;
    return load(s);
}

enum mamori_err cfgstore_commit(struct cfgstore *s)
{
    char pend[4200];
    if (P(s, "pending", pend))
        return MAMORI_ERR_TOOBIG;
    enum mamori_err rc = fs_unlink_durable(pend);
    if (!rc)
        s->pending = false;
    return rc;
}

enum mamori_err cfgstore_rollback(struct cfgstore *s, int stop_after)
{
    char cur[4200], good[4200], pend[4200];
    if (P(s, "current.json", cur) || P(s, "good.json", good) || P(s, "pending", pend))
        return MAMORI_ERR_TOOBIG;
    bool had_good = exists(good);
    enum mamori_err rc = MAMORI_OK;
    if (had_good && (rc = fs_rename_durable(good, cur)))
        return rc;
    if (stop_after == CFG_STEP_RESTORED)
        return MAMORI_OK;
    if ((rc = fs_unlink_durable(pend)))
        return rc;
    if ((rc = load(s)))
        return rc;
    return had_good ? MAMORI_OK : MAMORI_ERR_NOTFOUND;
}
