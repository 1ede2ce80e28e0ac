/* broker/table.c - see table.h. */
#include "broker/table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/log.h"
#include "common/proto.h"

static size_t hash_str(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (size_t)(h % n);
}

enum mamori_err table_init(struct dev_table *t, size_t nbuckets)
{
    memset(t, 0, sizeof(*t));
    t->nbuckets = nbuckets ? nbuckets : 4096;
    t->by_fp = calloc(t->nbuckets, sizeof(*t->by_fp));
    t->by_id = calloc(t->nbuckets, sizeof(*t->by_id));
    if (!t->by_fp || !t->by_id) {
        table_free(t);
        return MAMORI_ERR_NOMEM;
    }
    return MAMORI_OK;
}

void table_free(struct dev_table *t)
{
    if (t->by_fp) {
        for (size_t i = 0; i < t->nbuckets; i++) {
            struct dev *d = t->by_fp[i];
            while (d) {
                struct dev *n = d->next_fp;
                free(d);
                d = n;
            }
        }
    }
    free(t->by_fp);
    free(t->by_id);
    memset(t, 0, sizeof(*t));
}

struct dev *table_by_fp(const struct dev_table *t, const char *fp)
{
    if (!t->nbuckets)
        return NULL;
    for (struct dev *d = t->by_fp[hash_str(fp, t->nbuckets)]; d; d = d->next_fp)
        if (strcmp(d->fp, fp) == 0)
            return d->alias_of ? d->alias_of : d;
    return NULL;
}

struct dev *table_by_id(const struct dev_table *t, const char *id)
{
    if (!t->nbuckets)
        return NULL;
    for (struct dev *d = t->by_id[hash_str(id, t->nbuckets)]; d; d = d->next_id)
        if (strcmp(d->id, id) == 0)
            return d;
    return NULL;
}

static void unlink_fp(struct dev_table *t, struct dev *x)
{
    struct dev **pp = &t->by_fp[hash_str(x->fp, t->nbuckets)];
    while (*pp && *pp != x)
        pp = &(*pp)->next_fp;
    if (*pp)
        *pp = x->next_fp;
}

static void link_fp(struct dev_table *t, struct dev *x)
{
    size_t bf = hash_str(x->fp, t->nbuckets);
    x->next_fp = t->by_fp[bf];
    t->by_fp[bf] = x;
}

static void drop_alias(struct dev_table *t, struct dev *d)
{
    if (!d->alias)
        return;
    unlink_fp(t, d->alias);
    free(d->alias);
    d->alias = NULL;
}

/* Admits fp_next for d (or nothing when NULL/""). */
static enum mamori_err set_alias(struct dev_table *t, struct dev *d, const char *fp_next)
{
    if (!fp_next || !fp_next[0] || strcmp(fp_next, d->fp) == 0) {
        drop_alias(t, d);
        return MAMORI_OK;
    }
    if (d->alias && strcmp(d->alias->fp, fp_next) == 0)
        return MAMORI_OK;
    drop_alias(t, d);
    struct dev *a = calloc(1, sizeof(*a));
    if (!a)
        return MAMORI_ERR_NOMEM;
    memcpy(a->fp, fp_next, 65);
    memcpy(a->id, d->id, sizeof(a->id));
    a->alias_of = d;
    d->alias = a;
    link_fp(t, a);
    return MAMORI_OK;
}

enum mamori_err table_set(struct dev_table *t, const char *fp, const char *id, enum dev_mode mode,
                          const char *fp_next)
{
    if (strlen(fp) != 64 || !proto_device_id_valid(id, strlen(id)) || mode > MODE_RESTRICTED ||
        (fp_next && fp_next[0] && strlen(fp_next) != 64))
        return MAMORI_ERR_INVAL;
    struct dev *d = table_by_id(t, id);
    struct dev *other = table_by_fp(t, fp);
    if (other && other != d)
        return MAMORI_ERR_EXISTS; /* one certificate, one device */
    other = fp_next && fp_next[0] ? table_by_fp(t, fp_next) : NULL;
    if (other && other != d)
        return MAMORI_ERR_EXISTS;
    /* The certificate in use may be the one admitted as next until now. */
    if (d && d->alias && strcmp(d->alias->fp, fp) == 0)
        drop_alias(t, d);
    if (!d) {
        d = calloc(1, sizeof(*d));
        if (!d)
            return MAMORI_ERR_NOMEM;
        memcpy(d->id, id, strlen(id) + 1);
        size_t bi = hash_str(id, t->nbuckets);
        d->next_id = t->by_id[bi];
        t->by_id[bi] = d;
        t->count++;
    } else if (strcmp(d->fp, fp) != 0) {
        unlink_fp(t, d);
        d->fp[0] = '\0';
    }
    if (d->fp[0] == '\0') {
        memcpy(d->fp, fp, 65);
        link_fp(t, d);
    }
    d->mode = mode;
    return set_alias(t, d, fp_next);
}

static bool get_gen(json_t *m, uint64_t *gen)
{
    return json_get_u64(m, "gen", gen);
}

/* Parses [fp, id, mode] or [fp, id, mode, fp_next]. */
static bool dev_triple(json_t *v, const char **fp, const char **id, int *mode, const char **next)
{
    if (!json_is_array(v) || json_array_size(v) < 3 || json_array_size(v) > 4)
        return false;
    json_t *a = json_array_get(v, 0), *b = json_array_get(v, 1), *c = json_array_get(v, 2);
    json_t *n = json_array_get(v, 3);
    if (!json_is_string(a) || !json_is_string(b) || !json_is_integer(c) ||
        (n && !json_is_string(n)))
        return false;
    *fp = json_string_value(a);
    *id = json_string_value(b);
    *next = n ? json_string_value(n) : NULL;
    json_int_t m = json_integer_value(c);
    if (m < 0 || m > MODE_RESTRICTED)
        return false;
    *mode = (int)m;
    return true;
}

static void kick_denied(const struct dev_table *t, kick_fn kick, void *arg)
{
    for (size_t i = 0; i < t->nbuckets; i++)
        for (struct dev *d = t->by_id[i]; d; d = d->next_id)
            if (d->mode == MODE_DENY)
                kick(d->id, arg);
}

bool dev_fp_admitted(const struct dev *d, const char *fp)
{
    return strcmp(d->fp, fp) == 0 || (d->alias && strcmp(d->alias->fp, fp) == 0);
}

/* A new snapshot replaces the table: the live sessions move over to it,
 * unless the new view no longer admits their certificate (the switch of a
 * rotation the plugin missed, or a device gone from the registry): those
 * are kicked (T07-L3a). Denied devices are kicked by kick_denied. */
static void carry_sessions(const struct dev_table *from, struct dev_table *to, kick_fn kick,
                           void *arg)
{
    for (size_t i = 0; i < from->nbuckets; i++) {
        for (struct dev *o = from->by_id[i]; o; o = o->next_id) {
            if (!o->live)
                continue;
            struct dev *n = table_by_id(to, o->id);
            if (n && n->mode == MODE_DENY)
                continue;
            if (!n || !dev_fp_admitted(n, o->live_fp)) {
                kick(o->id, arg);
                continue;
            }
            n->live = o->live;
            memcpy(n->live_fp, o->live_fp, sizeof(n->live_fp));
            memcpy(n->live_addr, o->live_addr, sizeof(n->live_addr));
        }
    }
}

/* After a "set": the device's live session must go when its state denies
 * it, or when its certificate is no longer admitted (T07-L3a: a rotation
 * switched away from a key that may have leaked). */
static void kick_after_set(struct sync_state *s, const char *id, enum dev_mode mode, kick_fn kick,
                           void *arg)
{
    const struct dev *d = table_by_id(&s->active, id);
    if (mode == MODE_DENY)
        kick(id, arg); /* live revocation / lock */
    else if (d && d->live && !dev_fp_admitted(d, d->live_fp))
        kick(id, arg);
}

enum mamori_err sync_apply(struct sync_state *s, const void *payload, size_t len, kick_fn kick,
                           void *kick_arg)
{
    json_t *m = NULL;
    enum mamori_err rc = json_parse_untrusted(payload, len, 1024 * 1024, &m, NULL, 0);
    if (rc)
        return rc;
    const char *op = NULL;
    uint64_t gen = 0;
    rc = MAMORI_ERR_PARSE;
    if (!json_get_str(m, "op", 16, &op))
        goto out;
    if (strcmp(op, "begin") == 0 && get_gen(m, &gen)) {
        if (s->pending_open)
            table_free(&s->pending);
        if ((rc = table_init(&s->pending, s->active.nbuckets ? s->active.nbuckets : 4096)))
            goto out;
        s->pending_gen = gen;
        s->pending_open = true;
    } else if (strcmp(op, "batch") == 0 && get_gen(m, &gen)) {
        json_t *devs = json_object_get(m, "devs");
        if (!s->pending_open || gen != s->pending_gen || !json_is_array(devs))
            goto out;
        size_t i;
        json_t *v;
        json_array_foreach(devs, i, v)
        {
            const char *fp, *id, *next;
            int mode;
            if (!dev_triple(v, &fp, &id, &mode, &next) ||
                table_set(&s->pending, fp, id, (enum dev_mode)mode, next)) {
                /* A bad entry spoils the snapshot: drop it, keep the active view. */
                table_free(&s->pending);
                s->pending_open = false;
                goto out;
            }
        }
        rc = MAMORI_OK;
    } else if (strcmp(op, "end") == 0 && get_gen(m, &gen)) {
        uint64_t count = 0;
        if (!s->pending_open || gen != s->pending_gen || !json_get_u64(m, "count", &count) ||
            count != s->pending.count)
            goto out;
        struct dev_table old = s->active;
        s->active = s->pending;
        memset(&s->pending, 0, sizeof(s->pending));
        s->pending_open = false;
        s->synced = true;
        s->synced_gen = gen;
        /* Anyone connected whom the new view denies, or no longer
         * admits on the certificate in use, goes now. */
        carry_sessions(&old, &s->active, kick, kick_arg);
        table_free(&old);
        kick_denied(&s->active, kick, kick_arg);
        rc = MAMORI_OK;
    } else if (strcmp(op, "set") == 0) {
        const char *fp, *id, *next = NULL;
        uint64_t mode = 0;
        if (!json_get_str(m, "fp", 64, &fp) || !json_get_str(m, "id", 32, &id) ||
            !json_get_u64(m, "mode", &mode) || mode > MODE_RESTRICTED ||
            (json_object_get(m, "fp_next") && !json_get_str(m, "fp_next", 64, &next)))
            goto out;
        /* A change made for an older snapshot than the one in force (or
         * being received) is stale: a message of a lost session delivered
         * late. The newer snapshot already holds the registry's word, and
         * the stale one must not overwrite it (a claim made during a broker
         * restart would be undone by the registration pushed before it). */
        gen = 0;
        if (json_get_u64(m, "gen", &gen) &&
            gen < (s->pending_open ? s->pending_gen : s->synced_gen)) {
            rc = MAMORI_OK;
            goto out;
        }
        if (!s->active.nbuckets && (rc = table_init(&s->active, 4096)))
            goto out;
        if ((rc = table_set(&s->active, fp, id, (enum dev_mode)mode, next)))
            goto out;
        /* A change during a snapshot must survive the snapshot's swap. */
        if (s->pending_open)
            log_if_err(table_set(&s->pending, fp, id, (enum dev_mode)mode, next));
        kick_after_set(s, id, (enum dev_mode)mode, kick, kick_arg);
        rc = MAMORI_OK;
    }
out:
    json_decref(m);
    return rc;
}

void sync_free(struct sync_state *s)
{
    table_free(&s->active);
    if (s->pending_open)
        table_free(&s->pending);
    memset(s, 0, sizeof(*s));
}

static bool is_hub_cid(const char *cid)
{
    size_t pl = sizeof(PROTO_HUB_CLIENT_ID) - 1;
    if (strncmp(cid, PROTO_HUB_CLIENT_ID, pl) != 0)
        return false;
    return cid[pl] == '\0' || (cid[pl] == '-' && cid[pl + 1] != '\0');
}

enum cid_verdict cid_decide(const char *dev_id, const char *cid)
{
    if (!cid)
        cid = "";
    /* Client ids come from the CONNECT packet (at most 65535 bytes, NUL
     * terminated by the broker); a device id is 18 characters. */
    size_t n = strnlen(cid, PROTO_DEVICE_ID_LEN + 1);
    bool hub = is_hub_cid(cid);
    if (!dev_id)
        return hub ? CID_OK : CID_NOT_HUB;
    if (n == PROTO_DEVICE_ID_LEN && memcmp(cid, dev_id, n) == 0 && dev_id[n] == '\0')
        return CID_OK;
    if (hub)
        return CID_HUB;
    return proto_device_id_valid(cid, n) ? CID_OTHER_DEVICE : CID_NOT_OWN;
}

const char *cid_verdict_name(enum cid_verdict v)
{
    static const char *const names[] = {
        [CID_OK] = "own client id",
        [CID_OTHER_DEVICE] = "client id of another device",
        [CID_HUB] = "client id reserved for the hub",
        [CID_NOT_OWN] = "client id not the device's own",
        [CID_NOT_HUB] = "the hub's certificate with a client id not the hub's",
    };
    return (unsigned)v < sizeof(names) / sizeof(names[0]) ? names[v] : "?";
}

bool session_open(struct dev *d, const void *client, const char *fp, const char *addr)
{
    if (!addr)
        addr = "";
    char a[sizeof(d->live_addr)];
    snprintf(a, sizeof(a), "%s", addr);
    bool elsewhere = d->live && d->live != client && strcmp(d->live_addr, a) != 0;
    d->live = client;
    snprintf(d->live_fp, sizeof(d->live_fp), "%s", fp);
    memcpy(d->live_addr, a, sizeof(a));
    return elsewhere;
}

void session_close(struct dev *d, const void *client)
{
    if (d && client && d->live == client) {
        d->live = NULL;
        d->live_fp[0] = '\0';
        d->live_addr[0] = '\0';
    }
}

const char *acl_verdict_name(enum acl_verdict v)
{
    switch (v) {
    case ACL_ALLOW:
        return "allow";
    case ACL_DENY_TOPIC:
        return "topic";
    case ACL_DENY_SIZE:
        return "size";
    case ACL_DENY_RATE:
        return "rate";
    case ACL_DENY_STATE:
        return "state";
    }
    return "?";
}

/* Is topic (or filter) inside mamori/v1/d/<id>/ ? Returns the rest. */
static const char *own_subtree(const struct dev *d, const char *topic)
{
    size_t pl = sizeof(PROTO_TOPIC_DEV_PREFIX) - 1, il = strlen(d->id);
    if (strncmp(topic, PROTO_TOPIC_DEV_PREFIX, pl) != 0 || strncmp(topic + pl, d->id, il) != 0 ||
        topic[pl + il] != '/')
        return NULL;
    return topic + pl + il + 1;
}

static bool rate_take(struct dev *d, const struct limits *lim, int64_t now_ms)
{
    if (d->last_ms == 0) {
        d->tokens = lim->burst;
        d->last_ms = now_ms;
    }
    if (now_ms > d->last_ms) {
        d->tokens += (double)(now_ms - d->last_ms) * lim->rate / 1000.0;
        if (d->tokens > lim->burst)
            d->tokens = lim->burst;
        d->last_ms = now_ms;
    }
    if (d->tokens < 1.0)
        return false;
    d->tokens -= 1.0;
    return true;
}

enum acl_verdict acl_decide(struct dev *d, const struct limits *lim, int access, const char *topic,
                            uint32_t payloadlen, int64_t now_ms)
{
    if (!d || d->mode == MODE_DENY)
        return ACL_DENY_STATE; /* fail closed, even on a live connection */
    if (access == ACL_UNSUBSCRIBE)
        return ACL_ALLOW;
    const char *rest = own_subtree(d, topic);
    if (!rest || *rest == '\0')
        return ACL_DENY_TOPIC; /* T06-L2b: only its own subtree */
    bool is_cmd = strcmp(rest, "cmd") == 0;
    switch (access) {
    case ACL_WRITE: {
        /* Devices write their uplink kinds only, never their own command
         * topic (that direction belongs to the hub). */
        bool up = strcmp(rest, "hb") == 0 || strcmp(rest, "ev") == 0 || strcmp(rest, "res") == 0 ||
                  strcmp(rest, "log") == 0 || (strcmp(rest, "tm") == 0 && d->mode == MODE_FULL);
        if (!up)
            return ACL_DENY_TOPIC;
        if (payloadlen > lim->max_payload)
            return ACL_DENY_SIZE;
        if (!rate_take(d, lim, now_ms)) {
            if (++d->denied_in_row >= lim->kick_after)
                d->kick_pending = true;
            return ACL_DENY_RATE;
        }
        d->denied_in_row = 0;
        return ACL_ALLOW;
    }
    case ACL_SUBSCRIBE:
        /* Wildcards only below the own prefix (the prefix itself is literal). */
        return (is_cmd || strcmp(rest, "#") == 0 || strcmp(rest, "+") == 0) ? ACL_ALLOW
                                                                            : ACL_DENY_TOPIC;
    case ACL_READ:
        return is_cmd ? ACL_ALLOW : ACL_DENY_TOPIC;
    default:
        return ACL_DENY_TOPIC;
    }
}
