/* hub/core/audit.c - see audit.h. */
#include "hub/core/audit.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/crypto.h"
#include "common/fsutil.h"
#include "common/log.h"

static enum mamori_err put_field(struct dbuf *d, const char *s)
{
    size_t n = strlen(s);
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
    enum mamori_err rc = dbuf_add(d, len, sizeof(len));
    return rc ? rc : dbuf_add(d, s, n);
}

enum mamori_err audit_entry_hash(const uint8_t key[AUDIT_KEY_LEN], const struct audit_rec *r,
                                 char out_hex[65])
{
    struct dbuf d;
    char ts[32];
    /* seq is not MACed: the chain of prev_hash already fixes each entry's
     * position, which is what lets verify tell "reordered" from "modified". */
    snprintf(ts, sizeof(ts), "%" PRId64, r->ts);
    dbuf_init(&d, 8192);
    const char *fields[] = {"mamori-audit-v1", r->prev_hash, ts,        r->actor,
                            r->action,         r->target,    r->reason, r->detail};
    enum mamori_err rc = MAMORI_OK;
    for (size_t i = 0; !rc && i < sizeof(fields) / sizeof(fields[0]); i++)
        rc = put_field(&d, fields[i]);
    uint8_t mac[CRYPTO_SHA256_LEN];
    if (!rc)
        rc = crypto_hmac_sha256(key, AUDIT_KEY_LEN, d.p, d.len, mac);
    if (!rc)
        crypto_hex(mac, sizeof(mac), out_hex);
    dbuf_free(&d);
    return rc;
}

static void copy_str(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

enum mamori_err audit_append(struct audit *a, int64_t ts, const char *actor, const char *action,
                             const char *target, const char *reason, const char *detail)
{
    struct audit_rec r, last;
    memset(&r, 0, sizeof(r));
    enum mamori_err rc = store_audit_last(a->store, &last);
    if (rc == MAMORI_ERR_NOTFOUND) {
        r.seq = 1;
        memset(r.prev_hash, '0', 64);
    } else if (rc) {
        return rc;
    } else {
        r.seq = last.seq + 1;
        memcpy(r.prev_hash, last.hash, sizeof(r.prev_hash));
    }
    r.ts = ts;
    copy_str(r.actor, sizeof(r.actor), actor);
    copy_str(r.action, sizeof(r.action), action);
    copy_str(r.target, sizeof(r.target), target);
    copy_str(r.reason, sizeof(r.reason), reason);
    copy_str(r.detail, sizeof(r.detail), detail);
    rc = audit_entry_hash(a->key, &r, r.hash);
    return rc ? rc : store_audit_append(a->store, &r);
}

/* Reads the anchor file: 0 with *seq = 0 when there is none yet. */
static enum mamori_err read_anchor(const struct audit *a, int64_t *seq, char hash[65])
{
    char *head = NULL;
    size_t len = 0;
    *seq = 0;
    hash[0] = '\0';
    enum mamori_err rc = fs_read_file(a->head_path, 256, &head, &len);
    if (rc == MAMORI_ERR_NOTFOUND)
        return MAMORI_OK;
    if (rc)
        return rc;
    long long hs = 0;
    if (sscanf(head, "%lld %64s", &hs, hash) != 2 || hs < 0 || strlen(hash) != 64)
        rc = MAMORI_ERR_PARSE;
    *seq = hs;
    free(head);
    return rc;
}

enum mamori_err audit_anchor(struct audit *a)
{
    struct audit_rec last, anchored;
    int64_t aseq;
    char ahash[65];
    if (!a->head_path[0] || store_audit_last(a->store, &last))
        return MAMORI_OK;
    enum mamori_err rc = read_anchor(a, &aseq, ahash);
    if (rc)
        return rc;
    if (aseq > 0 && (store_audit_get(a->store, aseq, &anchored) != MAMORI_OK ||
                     !crypto_ct_eq(anchored.hash, ahash, 64))) {
        log_err("audit log: anchored entry %lld is missing or changed; anchor kept as evidence",
                (long long)aseq);
        return MAMORI_ERR_VERIFY;
    }
    char line[128];
    int n = snprintf(line, sizeof(line), "%" PRId64 " %s\n", last.seq, last.hash);
    rc = fs_write_atomic(a->head_path, line, (size_t)n, 0600);
    if (rc)
        log_err("cannot write audit head anchor %s", a->head_path);
    return rc;
}

const char *audit_problem_name(enum audit_problem p)
{
    switch (p) {
    case AUDIT_INTACT:
        return "intact";
    case AUDIT_MODIFIED:
        return "modified";
    case AUDIT_REMOVED:
        return "removed";
    case AUDIT_REORDERED:
        return "reordered";
    case AUDIT_TRUNCATED:
        return "truncated";
    }
    return "?";
}

struct walk {
    struct audit *a;
    struct audit_verdict *v;
    int64_t expect_seq;
    char prev_hash[65];
    int64_t last_seq;
    enum mamori_err rc;
};

static void flag(struct walk *w, enum audit_problem p, int64_t seq)
{
    if (w->v->problem == AUDIT_INTACT) {
        w->v->problem = p;
        w->v->first_bad_seq = seq;
    }
}

static bool walk_one(const struct audit_rec *r, void *arg)
{
    struct walk *w = arg;
    char h[65];
    w->v->entries++;
    w->last_seq = r->seq;
    if (r->seq != w->expect_seq) {
        flag(w, r->seq > w->expect_seq ? AUDIT_REMOVED : AUDIT_REORDERED, w->expect_seq);
        return false;
    }
    w->rc = audit_entry_hash(w->a->key, r, h);
    if (w->rc)
        return false;
    if (!crypto_ct_eq(h, r->hash, 64)) {
        flag(w, AUDIT_MODIFIED, r->seq);
        return false;
    }
    /* Internally consistent but not linked to its predecessor: an authentic
     * entry that was moved. */
    if (!crypto_ct_eq(r->prev_hash, w->prev_hash, 64)) {
        flag(w, AUDIT_REORDERED, r->seq);
        return false;
    }
    memcpy(w->prev_hash, r->hash, sizeof(w->prev_hash));
    w->expect_seq++;
    return true;
}

enum mamori_err audit_verify(struct audit *a, struct audit_verdict *v)
{
    memset(v, 0, sizeof(*v));
    struct walk w = {.a = a, .v = v, .expect_seq = 1};
    memset(w.prev_hash, '0', 64);
    w.prev_hash[64] = '\0';
    /* Page through the chain so memory stays bounded whatever its length. */
    int64_t after = 0;
    for (;;) {
        int64_t before = v->entries;
        enum mamori_err rc = store_audit_list(a->store, after, 1000, walk_one, &w);
        if (rc)
            return rc;
        if (w.rc)
            return w.rc;
        if (v->problem != AUDIT_INTACT || v->entries - before < 1000)
            break;
        after = w.last_seq;
    }
    if (v->problem == AUDIT_INTACT && a->head_path[0]) {
        int64_t hs;
        char hh[65];
        struct audit_rec at;
        if (read_anchor(a, &hs, hh) != MAMORI_OK) {
            flag(&w, AUDIT_TRUNCATED, 0); /* an unreadable anchor proves nothing */
        } else if (hs > 0) {
            v->head_seq = hs;
            /* The anchored entry must still be there, unchanged: if entries
             * were cut off and new ones appended since, its hash differs. */
            if (hs > w.expect_seq - 1)
                flag(&w, AUDIT_TRUNCATED, w.expect_seq);
            else if (store_audit_get(a->store, hs, &at) != MAMORI_OK ||
                     !crypto_ct_eq(at.hash, hh, 64))
                flag(&w, AUDIT_TRUNCATED, hs);
        }
    }
    return MAMORI_OK;
}
