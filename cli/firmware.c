/*
 * cli/firmware.c - mamorictl's commands for updates: the release signer's
 * offline tools (cli/release.c), the hub's firmware repository, staged
 * campaigns and their groups, security advisories and support periods
 * (docs/updates.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/release.h"

/* ---- release: offline, on the release signer's machine ---- */

/* What a release tool said went wrong (its own words, else the error's). */
static int release_fail(enum mamori_err rc, char *msg, size_t n)
{
    if (!msg[0])
        snprintf(msg, n, "%s", mamori_strerror(rc));
    return cli_die(msg);
}

/* --days: validity from now (365 by default; negative makes expired
 * metadata, for tests of the refusal) */
static int64_t release_expires(const struct opts *o)
{
    return (int64_t)time(NULL) * 1000 + (int64_t)o->days * 24 * 3600 * 1000;
}

static int release_keygen_cmd(const struct cli *c)
{
    char id[65], msg[600];
    if (!c->o.out)
        return cli_usage();
    enum mamori_err rc = release_keygen(c->o.out, id);
    if (rc == MAMORI_OK) {
        printf("key id %s\n%s.key (keep it offline) and %s.pub written\n", id, c->o.out, c->o.out);
        return EXIT_OK;
    }
    snprintf(msg, sizeof(msg), "%s",
             rc == MAMORI_ERR_EXISTS ? "key files exist already" : mamori_strerror(rc));
    return cli_die(msg);
}

static int release_root_cmd(const struct cli *c)
{
    const struct opts *o = &c->o;
    char msg[600] = "";
    if (!o->out || !o->version || !o->root_keys || !o->release_keys || !o->root_threshold ||
        !o->release_threshold)
        return cli_usage();
    struct release_root_opts ro = {(uint64_t)o->version,
                                   o->root_keys,
                                   o->release_keys,
                                   (unsigned)o->root_threshold,
                                   (unsigned)o->release_threshold,
                                   release_expires(o)};
    enum mamori_err rc = release_root_create(&ro, o->out, msg, sizeof(msg));
    if (rc)
        return release_fail(rc, msg, sizeof(msg));
    printf("root version %ld written to %s, unsigned: sign it with release sign\n", o->version,
           o->out);
    return EXIT_OK;
}

static int release_manifest_cmd(const struct cli *c)
{
    const struct opts *o = &c->o;
    char msg[600] = "";
    if (!o->out || !o->model || !o->fw_version || !o->image)
        return cli_usage();
    struct release_manifest_opts mo = {o->model,           o->fw_version,
                                       o->image,           (uint64_t)o->security_version,
                                       (uint64_t)o->floor, release_expires(o)};
    enum mamori_err rc = release_manifest_create(&mo, o->out, msg, sizeof(msg));
    if (rc)
        return release_fail(rc, msg, sizeof(msg));
    printf("release manifest written to %s, unsigned: sign it with release sign\n", o->out);
    return EXIT_OK;
}

static int release_sign_cmd(const struct cli *c)
{
    char msg[600] = "";
    if (!c->o.file || !c->o.key)
        return cli_usage();
    enum mamori_err rc = release_sign(c->o.file, c->o.key, msg, sizeof(msg));
    if (rc)
        return release_fail(rc, msg, sizeof(msg));
    printf("signed %s\n", c->o.file);
    return EXIT_OK;
}

static int release_verify_cmd(const struct cli *c)
{
    char msg[600] = "";
    if (!c->o.root)
        return cli_usage();
    enum mamori_err rc = release_verify(c->o.root, c->o.file, c->o.image, msg, sizeof(msg));
    printf("%s\n", msg);
    return rc ? EXIT_FAIL : EXIT_OK;
}

int cmd_release(const struct cli *c)
{
    static const struct command SUBS[] = {
        {"keygen", release_keygen_cmd, NULL, NULL},     {"root", release_root_cmd, NULL, NULL},
        {"manifest", release_manifest_cmd, NULL, NULL}, {"sign", release_sign_cmd, NULL, NULL},
        {"verify", release_verify_cmd, NULL, NULL},
    };
    return cli_dispatch(SUBS, CLI_LEN(SUBS), c->sub, c);
}

/* ---- firmware: the hub's firmware repository (hub/fleet/firmware.c) ---- */

static int upload_image(const struct api *a, const char *sha, const char *image)
{
    char path[160];
    long st;
    json_t *resp = NULL;
    snprintf(path, sizeof(path), "firmware/releases/%.64s/image", sha);
    enum mamori_err rc = api_upload(a, path, image, &st, &resp);
    if (rc)
        return cli_die(rc == MAMORI_ERR_NOTFOUND ? "cannot open the image" : mamori_strerror(rc));
    int ret = api_print_result(st, resp);
    json_decref(resp);
    return ret;
}

static int firmware_root(const struct cli *c)
{
    if (!c->third || strcmp(c->third, "add") != 0 || !c->o.file)
        return cli_usage();
    json_t *doc = cli_read_json_file(c->o.file, 64 * 1024);
    return doc ? api_call_print(&c->a, "POST", "firmware/roots", doc) : EXIT_FAIL;
}

static int firmware_roots(const struct cli *c)
{
    return api_call_print(&c->a, "GET", "firmware/roots", NULL);
}

static int firmware_add(const struct cli *c)
{
    if (!c->o.file)
        return cli_usage();
    json_t *doc = cli_read_json_file(c->o.file, 64 * 1024), *resp = NULL;
    long st;
    if (!doc)
        return EXIT_FAIL;
    enum mamori_err rc = api_call(&c->a, "POST", "firmware/releases", doc, &st, &resp);
    json_decref(doc);
    if (rc)
        return cli_die(mamori_strerror(rc));
    if (st < 200 || st >= 300) {
        int ret = api_print_error(st, resp);
        json_decref(resp);
        return ret;
    }
    const char *sha = json_string_value(json_object_get(resp, "sha256"));
    int ret =
        c->o.image && sha ? upload_image(&c->a, sha, c->o.image) : (api_print_json(resp), EXIT_OK);
    json_decref(resp);
    return ret;
}

static int firmware_upload(const struct cli *c)
{
    if (c->o.npos != 3 || !c->o.image)
        return cli_usage();
    return upload_image(&c->a, c->third, c->o.image);
}

static int firmware_list(const struct cli *c)
{
    char path[200];
    snprintf(path, sizeof(path), "firmware/releases%s%.64s", c->o.model ? "?model=" : "",
             c->o.model ? c->o.model : "");
    return api_call_print(&c->a, "GET", path, NULL);
}

static int firmware_deploy(const struct cli *c)
{
    char path[200];
    if (c->o.npos != 3 || !c->o.device || !c->o.reason)
        return cli_usage();
    snprintf(path, sizeof(path), "firmware/releases/%.64s/deploy", c->third);
    json_t *body = json_pack("{s:s, s:s}", "device", c->o.device, "reason", c->o.reason);
    if (body && c->o.ttl) /* absent: the hub's default */
        json_object_set_new(body, "ttl_s", json_integer(c->o.ttl));
    return api_call_print(&c->a, "POST", path, body);
}

static int firmware_retire(const struct cli *c)
{
    char path[200];
    if (c->o.npos != 3 || !c->o.reason)
        return cli_usage();
    snprintf(path, sizeof(path), "firmware/releases/%.64s/retire", c->third);
    return api_call_print(&c->a, "POST", path, json_pack("{s:s}", "reason", c->o.reason));
}

int cmd_firmware(const struct cli *c)
{
    static const struct command SUBS[] = {
        {"root", firmware_root, NULL, NULL},     {"roots", firmware_roots, NULL, NULL},
        {"add", firmware_add, NULL, NULL},       {"upload", firmware_upload, NULL, NULL},
        {"list", firmware_list, NULL, NULL},     {"deploy", firmware_deploy, NULL, NULL},
        {"retire", firmware_retire, NULL, NULL},
    };
    return cli_dispatch(SUBS, CLI_LEN(SUBS), c->sub, c);
}

/* ---- campaign: staged update campaigns (hub/fleet/campaign.c) ---- */

static int campaign_create(const struct cli *c)
{
    const struct opts *o = &c->o;
    if (o->npos != 3 || !o->reason)
        return cli_usage();
    json_t *b = json_pack("{s:s, s:s}", "sha256", c->third, "reason", o->reason);
    if (b && o->group)
        json_object_set_new(b, "group", json_string(o->group));
    const struct {
        const char *k;
        long v;
    } opt[] = {{"canary", o->canary},
               {"wave", o->wave},
               {"interval_s", o->interval},
               {"max_failure_pct", o->max_fail},
               {"window_start", o->window_start},
               {"window_end", o->window_end}};
    for (size_t i = 0; b && i < sizeof(opt) / sizeof(opt[0]); i++)
        if (opt[i].v >= 0)
            json_object_set_new(b, opt[i].k, json_integer(opt[i].v));
    return api_call_print(&c->a, "POST", "firmware/campaigns", b);
}

static int campaign_list(const struct cli *c)
{
    return api_call_print(&c->a, "GET", "firmware/campaigns", NULL);
}

static int campaign_show(const struct cli *c)
{
    char path[200];
    if (c->o.npos != 3)
        return cli_usage();
    snprintf(path, sizeof(path), "firmware/campaigns/%.20s", c->third);
    return api_call_print(&c->a, "GET", path, NULL);
}

/* pause, resume, cancel: the subcommand is the action's name in the API. */
static int campaign_action(const struct cli *c)
{
    char path[200];
    if (c->o.npos != 3 || !c->o.reason)
        return cli_usage();
    snprintf(path, sizeof(path), "firmware/campaigns/%.20s/%s", c->third, c->sub);
    return api_call_print(&c->a, "POST", path, json_pack("{s:s}", "reason", c->o.reason));
}

int cmd_campaign(const struct cli *c)
{
    static const struct command SUBS[] = {
        {"create", campaign_create, NULL, NULL}, {"list", campaign_list, NULL, NULL},
        {"show", campaign_show, NULL, NULL},     {"pause", campaign_action, NULL, NULL},
        {"resume", campaign_action, NULL, NULL}, {"cancel", campaign_action, NULL, NULL},
    };
    return cli_dispatch(SUBS, CLI_LEN(SUBS), c->sub, c);
}

/* ---- group: campaign targets ---- */

/* add, remove: the subcommand is the action's name in the API. */
static int group_member(const struct cli *c)
{
    char path[128];
    if (c->o.npos != 3 || !c->o.device)
        return cli_usage();
    snprintf(path, sizeof(path), "groups/%.64s/%s", c->third, c->sub);
    return api_call_print(&c->a, "POST", path, json_pack("{s:s}", "device", c->o.device));
}

static int group_show(const struct cli *c)
{
    char path[128];
    if (c->o.npos != 3)
        return cli_usage();
    snprintf(path, sizeof(path), "groups/%.64s", c->third);
    return api_call_print(&c->a, "GET", path, NULL);
}

int cmd_group(const struct cli *c)
{
    static const struct command SUBS[] = {
        {"add", group_member, NULL, NULL},
        {"remove", group_member, NULL, NULL},
        {"show", group_show, NULL, NULL},
    };
    return cli_dispatch(SUBS, CLI_LEN(SUBS), c->sub, c);
}

/* ---- advisory, support: security advisories and support periods ---- */

static int advisory_add(const struct cli *c)
{
    const struct opts *o = &c->o;
    if (!o->model || !o->title || !o->severity || !o->affected)
        return cli_usage();
    json_t *aff = json_array();
    char *copy = strdup(o->affected), *save = NULL;
    for (char *v = copy ? strtok_r(copy, ",", &save) : NULL; v; v = strtok_r(NULL, ",", &save))
        json_array_append_new(aff, json_string(v));
    free(copy);
    json_t *b = json_pack("{s:s, s:s, s:s, s:o}", "model", o->model, "title", o->title, "severity",
                          o->severity, "affected", aff);
    if (b && o->fixed)
        json_object_set_new(b, "fixed_version", json_string(o->fixed));
    return api_call_print(&c->a, "POST", "advisories", b);
}

static int advisory_list(const struct cli *c)
{
    char path[200];
    snprintf(path, sizeof(path), "advisories%s%.64s", c->o.model ? "?model=" : "",
             c->o.model ? c->o.model : "");
    return api_call_print(&c->a, "GET", path, NULL);
}

int cmd_advisory(const struct cli *c)
{
    static const struct command SUBS[] = {
        {"add", advisory_add, NULL, NULL},
        {"list", advisory_list, NULL, NULL},
    };
    return cli_dispatch(SUBS, CLI_LEN(SUBS), c->sub, c);
}

static int support_set(const struct cli *c)
{
    char path[200];
    struct tm tm;
    int y, m, d;
    char extra;
    const char *end = c->o.end;
    if (c->o.npos != 3 || !end)
        return cli_usage();
    memset(&tm, 0, sizeof(tm));
    if (strlen(end) != 10 || sscanf(end, "%4d-%2d-%2d%c", &y, &m, &d, &extra) != 3 || y < 1970 ||
        y > 2999 || m < 1 || m > 12 || d < 1 || d > 31)
        return cli_die("--end takes a date: YYYY-MM-DD (UTC)");
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    snprintf(path, sizeof(path), "models/%.64s/support", c->third);
    return api_call_print(&c->a, "POST", path, json_pack("{s:I}", "end", (json_int_t)timegm(&tm)));
}

static int support_show(const struct cli *c)
{
    char path[200];
    if (c->o.npos != 3)
        return cli_usage();
    snprintf(path, sizeof(path), "models/%.64s/support", c->third);
    return api_call_print(&c->a, "GET", path, NULL);
}

int cmd_support(const struct cli *c)
{
    static const struct command SUBS[] = {
        {"set", support_set, NULL, NULL},
        {"show", support_show, NULL, NULL},
    };
    return cli_dispatch(SUBS, CLI_LEN(SUBS), c->sub, c);
}
