/* Unit tests: broker/table (snapshot sync protocol, live updates, client ids
 * bound to identities, live sessions, ACL and rate decisions). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "broker/notes.h"
#include "broker/parts.h"
#include "broker/table.h"

#define FP_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define FP_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define FP_C "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
#define ID_A "MM000000000000000A"
#define ID_B "MM000000000000000B"

struct kicks {
    char ids[8][24];
    int n;
};

static void on_kick(const char *id, void *arg)
{
    struct kicks *k = arg;
    if (k->n < 8)
        snprintf(k->ids[k->n++], 24, "%s", id);
}

static enum mamori_err apply(struct sync_state *s, struct kicks *k, const char *msg)
{
    return sync_apply(s, msg, strlen(msg), on_kick, k);
}

static void snapshot_takes_effect_only_when_complete(void **st)
{
    (void)st;
    struct sync_state s;
    struct kicks k = {{{0}}, 0};
    memset(&s, 0, sizeof(s));
    assert_false(s.synced); /* fail closed from the start */
    assert_int_equal(apply(&s, &k, "{\"op\":\"begin\",\"gen\":1}"), MAMORI_OK);
    assert_int_equal(apply(&s, &k,
                           "{\"op\":\"batch\",\"gen\":1,\"devs\":[[\"" FP_A "\",\"" ID_A
                           "\",1],[\"" FP_B "\",\"" ID_B "\",0]]}"),
                     MAMORI_OK);
    assert_false(s.synced);
    assert_null(table_by_fp(&s.active, FP_A));
    /* wrong count: refused, still not synced */
    assert_int_equal(apply(&s, &k, "{\"op\":\"end\",\"gen\":1,\"count\":3}"), MAMORI_ERR_PARSE);
    assert_false(s.synced);
    assert_int_equal(apply(&s, &k, "{\"op\":\"end\",\"gen\":1,\"count\":2}"), MAMORI_OK);
    assert_true(s.synced);
    assert_int_equal(table_by_fp(&s.active, FP_A)->mode, MODE_FULL);
    assert_string_equal(table_by_id(&s.active, ID_B)->fp, FP_B);
    /* a denied device is kicked when the snapshot lands */
    assert_int_equal(k.n, 1);
    assert_string_equal(k.ids[0], ID_B);
    sync_free(&s);
}

/* A change pushed for an older snapshot (a lost session's message
 * delivered late) must not undo the newer snapshot: a device registered
 * (denied) before a broker restart and claimed during it stays admitted. */
static void stale_set_after_newer_snapshot_is_ignored(void **st)
{
    (void)st;
    struct sync_state s;
    struct kicks k = {{{0}}, 0};
    memset(&s, 0, sizeof(s));
    assert_int_equal(apply(&s, &k, "{\"op\":\"begin\",\"gen\":3}"), MAMORI_OK);
    assert_int_equal(
        apply(&s, &k, "{\"op\":\"batch\",\"gen\":3,\"devs\":[[\"" FP_A "\",\"" ID_A "\",1]]}"),
        MAMORI_OK);
    /* during the snapshot: one for the previous generation is stale too */
    assert_int_equal(apply(&s, &k,
                           "{\"op\":\"set\",\"fp\":\"" FP_A "\",\"id\":\"" ID_A
                           "\",\"mode\":0,\"gen\":2}"),
                     MAMORI_OK);
    assert_int_equal(apply(&s, &k, "{\"op\":\"end\",\"gen\":3,\"count\":1}"), MAMORI_OK);
    assert_int_equal(table_by_id(&s.active, ID_A)->mode, MODE_FULL);
    assert_int_equal(apply(&s, &k,
                           "{\"op\":\"set\",\"fp\":\"" FP_A "\",\"id\":\"" ID_A
                           "\",\"mode\":0,\"gen\":2}"),
                     MAMORI_OK);
    assert_int_equal(table_by_id(&s.active, ID_A)->mode, MODE_FULL);
    assert_int_equal(k.n, 0); /* nobody kicked by a stale word */
    /* a change of the snapshot in force applies at once */
    assert_int_equal(apply(&s, &k,
                           "{\"op\":\"set\",\"fp\":\"" FP_A "\",\"id\":\"" ID_A
                           "\",\"mode\":0,\"gen\":3}"),
                     MAMORI_OK);
    assert_int_equal(table_by_id(&s.active, ID_A)->mode, MODE_DENY);
    assert_int_equal(k.n, 1);
    sync_free(&s);
}

static void live_set_kicks_and_rotates(void **st)
{
    (void)st;
    struct sync_state s;
    struct kicks k = {{{0}}, 0};
    memset(&s, 0, sizeof(s));
    assert_int_equal(apply(&s, &k, "{\"op\":\"begin\",\"gen\":7}"), MAMORI_OK);
    assert_int_equal(
        apply(&s, &k, "{\"op\":\"batch\",\"gen\":7,\"devs\":[[\"" FP_A "\",\"" ID_A "\",1]]}"),
        MAMORI_OK);
    assert_int_equal(apply(&s, &k, "{\"op\":\"end\",\"gen\":7,\"count\":1}"), MAMORI_OK);
    assert_int_equal(k.n, 0);
    assert_int_equal(
        apply(&s, &k, "{\"op\":\"set\",\"fp\":\"" FP_A "\",\"id\":\"" ID_A "\",\"mode\":0}"),
        MAMORI_OK);
    assert_int_equal(k.n, 1); /* revocation: kicked at once */
    assert_int_equal(table_by_id(&s.active, ID_A)->mode, MODE_DENY);
    /* certificate rotation: the old fingerprint stops identifying the device */
    assert_int_equal(
        apply(&s, &k, "{\"op\":\"set\",\"fp\":\"" FP_C "\",\"id\":\"" ID_A "\",\"mode\":1}"),
        MAMORI_OK);
    assert_null(table_by_fp(&s.active, FP_A));
    assert_non_null(table_by_fp(&s.active, FP_C));
    /* one certificate cannot be two devices */
    assert_int_equal(
        apply(&s, &k, "{\"op\":\"set\",\"fp\":\"" FP_C "\",\"id\":\"" ID_B "\",\"mode\":1}"),
        MAMORI_ERR_EXISTS);
    sync_free(&s);
}

static void rotation_admits_both_certificates_until_switched(void **st)
{
    (void)st;
    struct sync_state s;
    struct kicks k = {{{0}}, 0};
    memset(&s, 0, sizeof(s));
    assert_int_equal(apply(&s, &k, "{\"op\":\"begin\",\"gen\":3}"), MAMORI_OK);
    /* a snapshot entry may carry the next certificate */
    assert_int_equal(apply(&s, &k,
                           "{\"op\":\"batch\",\"gen\":3,\"devs\":[[\"" FP_A "\",\"" ID_A
                           "\",1,\"" FP_B "\"]]}"),
                     MAMORI_OK);
    assert_int_equal(apply(&s, &k, "{\"op\":\"end\",\"gen\":3,\"count\":1}"), MAMORI_OK);
    assert_ptr_equal(table_by_fp(&s.active, FP_A), table_by_id(&s.active, ID_A));
    assert_ptr_equal(table_by_fp(&s.active, FP_B), table_by_id(&s.active, ID_A));
    assert_int_equal(s.active.count, 1);
    /* the next certificate is not free for another device */
    assert_int_equal(
        apply(&s, &k, "{\"op\":\"set\",\"fp\":\"" FP_B "\",\"id\":\"" ID_B "\",\"mode\":1}"),
        MAMORI_ERR_EXISTS);
    /* a mode change keeps both while the rotation runs, and applies to both */
    assert_int_equal(apply(&s, &k,
                           "{\"op\":\"set\",\"fp\":\"" FP_A "\",\"id\":\"" ID_A
                           "\",\"mode\":2,\"fp_next\":\"" FP_B "\"}"),
                     MAMORI_OK);
    assert_int_equal(table_by_fp(&s.active, FP_B)->mode, MODE_RESTRICTED);
    /* switched: only the new one identifies the device */
    assert_int_equal(
        apply(&s, &k, "{\"op\":\"set\",\"fp\":\"" FP_B "\",\"id\":\"" ID_A "\",\"mode\":1}"),
        MAMORI_OK);
    assert_null(table_by_fp(&s.active, FP_A));
    assert_ptr_equal(table_by_fp(&s.active, FP_B), table_by_id(&s.active, ID_A));
    assert_null(table_by_id(&s.active, ID_A)->alias);
    /* the old fingerprint is free again, the count unchanged */
    assert_int_equal(
        apply(&s, &k, "{\"op\":\"set\",\"fp\":\"" FP_A "\",\"id\":\"" ID_B "\",\"mode\":1}"),
        MAMORI_OK);
    assert_int_equal(s.active.count, 2);
    /* a rotation abandoned (next dropped) */
    assert_int_equal(apply(&s, &k,
                           "{\"op\":\"set\",\"fp\":\"" FP_A "\",\"id\":\"" ID_B
                           "\",\"mode\":1,\"fp_next\":\"" FP_C "\"}"),
                     MAMORI_OK);
    assert_ptr_equal(table_by_fp(&s.active, FP_C), table_by_id(&s.active, ID_B));
    assert_int_equal(
        apply(&s, &k, "{\"op\":\"set\",\"fp\":\"" FP_A "\",\"id\":\"" ID_B "\",\"mode\":1}"),
        MAMORI_OK);
    assert_null(table_by_fp(&s.active, FP_C));
    /* malformed next fingerprints */
    assert_int_not_equal(apply(&s, &k,
                               "{\"op\":\"set\",\"fp\":\"" FP_A "\",\"id\":\"" ID_B
                               "\",\"mode\":1,\"fp_next\":\"short\"}"),
                         MAMORI_OK);
    assert_int_not_equal(apply(&s, &k,
                               "{\"op\":\"set\",\"fp\":\"" FP_A "\",\"id\":\"" ID_B
                               "\",\"mode\":1,\"fp_next\":7}"),
                         MAMORI_OK);
    sync_free(&s);
}

static void malformed_control_changes_nothing(void **st)
{
    (void)st;
    struct sync_state s;
    struct kicks k = {{{0}}, 0};
    memset(&s, 0, sizeof(s));
    const char *bad[] = {
        "",
        "{",
        "[]",
        "{\"op\":\"set\"}",
        "{\"op\":\"set\",\"fp\":\"short\",\"id\":\"" ID_A "\",\"mode\":1}",
        "{\"op\":\"set\",\"fp\":\"" FP_A "\",\"id\":\"../../x\",\"mode\":1}",
        "{\"op\":\"set\",\"fp\":\"" FP_A "\",\"id\":\"" ID_A "\",\"mode\":9}",
        "{\"op\":\"batch\",\"gen\":1,\"devs\":[]}", /* batch without begin */
        "{\"op\":\"end\",\"gen\":1,\"count\":0}",   /* end without begin */
        "{\"op\":\"nope\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_not_equal(apply(&s, &k, bad[i]), MAMORI_OK);
    assert_false(s.synced);
    assert_int_equal(k.n, 0);
    /* a bad entry inside a batch spoils that snapshot only */
    assert_int_equal(apply(&s, &k, "{\"op\":\"begin\",\"gen\":2}"), MAMORI_OK);
    assert_int_not_equal(
        apply(&s, &k, "{\"op\":\"batch\",\"gen\":2,\"devs\":[[\"" FP_A "\",\"" ID_A "\",\"x\"]]}"),
        MAMORI_OK);
    assert_int_not_equal(apply(&s, &k, "{\"op\":\"end\",\"gen\":2,\"count\":0}"), MAMORI_OK);
    assert_false(s.synced);
    sync_free(&s);
}

static void client_id_bound_to_identity(void **st)
{
    (void)st;
    /* a device: its own id only */
    assert_int_equal(cid_decide(ID_A, ID_A), CID_OK);
    assert_int_equal(cid_decide(ID_A, ID_B), CID_OTHER_DEVICE);
    assert_int_equal(cid_decide(ID_A, "mamori-hub"), CID_HUB);
    assert_int_equal(cid_decide(ID_A, "mamori-hub-capture"), CID_HUB);
    const char *not_own[] = {"",
                             NULL,
                             "auto-2B8D3C39-6A4B-4E2C-9A39-0E9D3F1C7A11", /* broker-assigned */
                             ID_A "x",
                             ID_A " ",
                             "mm000000000000000a", /* case matters */
                             "MM000000000000000",
                             "mamori-hubx",
                             "mamori-hub-",
                             "clone-of-" ID_A};
    for (size_t i = 0; i < sizeof(not_own) / sizeof(not_own[0]); i++)
        assert_int_equal(cid_decide(ID_A, not_own[i]), CID_NOT_OWN);
    /* the hub's certificate: the hub's ids only */
    assert_int_equal(cid_decide(NULL, "mamori-hub"), CID_OK);
    assert_int_equal(cid_decide(NULL, "mamori-hub-capture"), CID_OK);
    assert_int_equal(cid_decide(NULL, ID_A), CID_NOT_HUB);
    assert_int_equal(cid_decide(NULL, ""), CID_NOT_HUB);
    assert_int_equal(cid_decide(NULL, NULL), CID_NOT_HUB);
    assert_int_equal(cid_decide(NULL, "mamori-hub-"), CID_NOT_HUB);
    assert_int_equal(cid_decide(NULL, "mamori-hubx"), CID_NOT_HUB);
    for (int v = CID_OK; v <= CID_NOT_HUB; v++)
        assert_string_not_equal(cid_verdict_name((enum cid_verdict)v), "?");
}

static void sync_one(struct sync_state *s, struct kicks *k, const char *next)
{
    char m[256];
    assert_int_equal(apply(s, k, "{\"op\":\"begin\",\"gen\":1}"), MAMORI_OK);
    snprintf(m, sizeof(m), "{\"op\":\"batch\",\"gen\":1,\"devs\":[[\"%s\",\"%s\",1%s%s%s]]}", FP_A,
             ID_A, next ? ",\"" : "", next ? next : "", next ? "\"" : "");
    assert_int_equal(apply(s, k, m), MAMORI_OK);
    assert_int_equal(apply(s, k, "{\"op\":\"end\",\"gen\":1,\"count\":1}"), MAMORI_OK);
}

static void takeover_keeps_the_newest_session(void **st)
{
    (void)st;
    struct sync_state s;
    struct kicks k = {{{0}}, 0};
    int c1, c2, c3;
    memset(&s, 0, sizeof(s));
    sync_one(&s, &k, NULL);
    struct dev *d = table_by_id(&s.active, ID_A);
    assert_false(session_open(d, &c1, FP_A, "127.0.0.1"));
    /* a reconnection from the same address takes over silently; the old
     * session's end (after the new one's authentication) changes nothing */
    assert_false(session_open(d, &c2, FP_A, "127.0.0.1"));
    session_close(d, &c1);
    assert_ptr_equal(d->live, &c2);
    /* taken over from elsewhere while live: one identity in two places */
    assert_true(session_open(d, &c3, FP_A, "127.0.0.2"));
    session_close(d, &c2);
    assert_ptr_equal(d->live, &c3);
    assert_string_equal(d->live_addr, "127.0.0.2");
    session_close(d, &c3);
    assert_null(d->live);
    /* after the live one ended, a new session is no takeover */
    assert_false(session_open(d, &c1, FP_A, "127.0.0.3"));
    session_close(NULL, &c1); /* unknown user name: nothing */
    sync_free(&s);
}

/* T07-L3a: a rotation's switch closes a session still on the old key. */
static void switch_kicks_a_session_on_the_old_certificate(void **st)
{
    (void)st;
    struct sync_state s;
    struct kicks k = {{{0}}, 0};
    int c1, c2;
    memset(&s, 0, sizeof(s));
    sync_one(&s, &k, FP_B); /* rotation under way: A current, B next */
    struct dev *d = table_by_id(&s.active, ID_A);
    assert_true(dev_fp_admitted(d, FP_A));
    assert_true(dev_fp_admitted(d, FP_B));
    assert_false(dev_fp_admitted(d, FP_C));
    /* the device on B (its next key), a mode change: nobody kicked */
    session_open(d, &c1, FP_B, "127.0.0.1");
    assert_int_equal(apply(&s, &k,
                           "{\"op\":\"set\",\"fp\":\"" FP_A "\",\"id\":\"" ID_A
                           "\",\"mode\":2,\"fp_next\":\"" FP_B "\"}"),
                     MAMORI_OK);
    assert_int_equal(k.n, 0);
    /* then a session on the old key A takes over; the switch to B closes it */
    session_open(d, &c2, FP_A, "127.0.0.1");
    assert_int_equal(
        apply(&s, &k, "{\"op\":\"set\",\"fp\":\"" FP_B "\",\"id\":\"" ID_A "\",\"mode\":1}"),
        MAMORI_OK);
    assert_int_equal(k.n, 1);
    assert_string_equal(k.ids[0], ID_A);
    assert_int_equal(table_by_id(&s.active, ID_A)->mode, MODE_FULL); /* a kick, not a denial */
    /* the device back on B: the same "set" again kicks nobody */
    session_close(d, &c2);
    session_open(d, &c1, FP_B, "127.0.0.1");
    assert_int_equal(
        apply(&s, &k, "{\"op\":\"set\",\"fp\":\"" FP_B "\",\"id\":\"" ID_A "\",\"mode\":1}"),
        MAMORI_OK);
    assert_int_equal(k.n, 1);
    sync_free(&s);
}

/* A snapshot carries live sessions over, and closes those its view no
 * longer admits (a switch or a removal the plugin learns from it). */
static void snapshot_carries_sessions_and_closes_stale_ones(void **st)
{
    (void)st;
    struct sync_state s;
    struct kicks k = {{{0}}, 0};
    int c1, c2;
    memset(&s, 0, sizeof(s));
    assert_int_equal(apply(&s, &k, "{\"op\":\"begin\",\"gen\":1}"), MAMORI_OK);
    assert_int_equal(apply(&s, &k,
                           "{\"op\":\"batch\",\"gen\":1,\"devs\":[[\"" FP_A "\",\"" ID_A
                           "\",1],[\"" FP_B "\",\"" ID_B "\",1]]}"),
                     MAMORI_OK);
    assert_int_equal(apply(&s, &k, "{\"op\":\"end\",\"gen\":1,\"count\":2}"), MAMORI_OK);
    session_open(table_by_id(&s.active, ID_A), &c1, FP_A, "127.0.0.1");
    session_open(table_by_id(&s.active, ID_B), &c2, FP_B, "127.0.0.1");
    /* gen 2: A unchanged, B switched to C */
    assert_int_equal(apply(&s, &k, "{\"op\":\"begin\",\"gen\":2}"), MAMORI_OK);
    assert_int_equal(apply(&s, &k,
                           "{\"op\":\"batch\",\"gen\":2,\"devs\":[[\"" FP_A "\",\"" ID_A
                           "\",1],[\"" FP_C "\",\"" ID_B "\",1]]}"),
                     MAMORI_OK);
    assert_int_equal(apply(&s, &k, "{\"op\":\"end\",\"gen\":2,\"count\":2}"), MAMORI_OK);
    assert_ptr_equal(table_by_id(&s.active, ID_A)->live, &c1);
    assert_string_equal(table_by_id(&s.active, ID_A)->live_fp, FP_A);
    assert_null(table_by_id(&s.active, ID_B)->live);
    assert_int_equal(k.n, 1);
    assert_string_equal(k.ids[0], ID_B);
    /* gen 3: A gone from the registry */
    assert_int_equal(apply(&s, &k, "{\"op\":\"begin\",\"gen\":3}"), MAMORI_OK);
    assert_int_equal(apply(&s, &k, "{\"op\":\"end\",\"gen\":3,\"count\":0}"), MAMORI_OK);
    assert_int_equal(k.n, 2);
    assert_string_equal(k.ids[1], ID_A);
    sync_free(&s);
}

static void acl_own_subtree_only(void **st)
{
    (void)st;
    struct dev d;
    memset(&d, 0, sizeof(d));
    snprintf(d.id, sizeof(d.id), ID_A);
    d.mode = MODE_FULL;
    struct limits lim = {.max_payload = 100, .rate = 10, .burst = 1000, .kick_after = 5};
    const char *own = "mamori/v1/d/" ID_A "/";
    char t[128];
    snprintf(t, sizeof(t), "%stm", own);
    assert_int_equal(acl_decide(&d, &lim, ACL_WRITE, t, 10, 1), ACL_ALLOW);
    snprintf(t, sizeof(t), "%scmd", own);
    assert_int_equal(acl_decide(&d, &lim, ACL_WRITE, t, 10, 1),
                     ACL_DENY_TOPIC); /* hub's direction */
    assert_int_equal(acl_decide(&d, &lim, ACL_SUBSCRIBE, t, 0, 1), ACL_ALLOW);
    assert_int_equal(acl_decide(&d, &lim, ACL_READ, t, 0, 1), ACL_ALLOW);
    const char *others[] = {"mamori/v1/d/" ID_B "/tm", "mamori/v1/d/+/tm",
                            "mamori/v1/d/#",           "#",
                            "mamori/v1/ctl/sync",      "mamori/v1/broker/ev",
                            "mamori/v1/d/" ID_A,       "mamori/v1/d/" ID_A "x/tm",
                            "$SYS/broker/clients"};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        assert_int_equal(acl_decide(&d, &lim, ACL_WRITE, others[i], 1, 1), ACL_DENY_TOPIC);
        assert_int_equal(acl_decide(&d, &lim, ACL_SUBSCRIBE, others[i], 0, 1), ACL_DENY_TOPIC);
        assert_int_equal(acl_decide(&d, &lim, ACL_READ, others[i], 0, 1), ACL_DENY_TOPIC);
    }
    snprintf(t, sizeof(t), "%s#", own);
    assert_int_equal(acl_decide(&d, &lim, ACL_SUBSCRIBE, t, 0, 1), ACL_ALLOW);
    snprintf(t, sizeof(t), "%stm", own);
    assert_int_equal(acl_decide(&d, &lim, ACL_READ, t, 0, 1), ACL_DENY_TOPIC);
    assert_int_equal(acl_decide(&d, &lim, ACL_WRITE, t, 101, 1), ACL_DENY_SIZE);
    /* quarantine: management channel only, telemetry stops */
    d.mode = MODE_RESTRICTED;
    assert_int_equal(acl_decide(&d, &lim, ACL_WRITE, t, 10, 1), ACL_DENY_TOPIC);
    snprintf(t, sizeof(t), "%shb", own);
    assert_int_equal(acl_decide(&d, &lim, ACL_WRITE, t, 10, 1), ACL_ALLOW);
    /* revoked / locked / unknown: denied even on a live connection */
    d.mode = MODE_DENY;
    assert_int_equal(acl_decide(&d, &lim, ACL_WRITE, t, 10, 1), ACL_DENY_STATE);
    assert_int_equal(acl_decide(NULL, &lim, ACL_WRITE, t, 10, 1), ACL_DENY_STATE);
}

static void acl_rate_limit_and_kick(void **st)
{
    (void)st;
    struct dev d;
    memset(&d, 0, sizeof(d));
    snprintf(d.id, sizeof(d.id), ID_A);
    d.mode = MODE_FULL;
    struct limits lim = {.max_payload = 100, .rate = 10, .burst = 20, .kick_after = 5};
    const char *t = "mamori/v1/d/" ID_A "/tm";
    int allowed = 0;
    for (int i = 0; i < 30; i++)
        allowed += acl_decide(&d, &lim, ACL_WRITE, t, 1, 1000) == ACL_ALLOW;
    assert_int_equal(allowed, 20); /* the burst, then nothing in the same ms */
    assert_true(d.kick_pending);   /* sustained flooding asks for a kick */
    d.kick_pending = false;
    /* 1 s later, 10 more tokens */
    allowed = 0;
    for (int i = 0; i < 30; i++)
        allowed += acl_decide(&d, &lim, ACL_WRITE, t, 1, 2000) == ACL_ALLOW;
    assert_int_equal(allowed, 10);
}

/* ---- notes the hub hands the plugin to deliver (broker/notes.h) ---- */

struct got_notes {
    char ids[8][PROTO_DEVICE_ID_LEN + 1];
    char msgs[8][64];
    size_t n;
};

static void got_note(const char *id, const char *msg, size_t n, void *arg)
{
    struct got_notes *g = arg;
    assert_true(g->n < 8);
    assert_true(n < sizeof(g->msgs[0]));
    snprintf(g->ids[g->n], sizeof(g->ids[0]), "%s", id);
    memcpy(g->msgs[g->n], msg, n);
    g->msgs[g->n][n] = '\0';
    g->n++;
}

static void notes_fan_out_and_bad_lines_lose_nothing_else(void **state)
{
    (void)state;
    struct got_notes g = {0};
    const char *ok = "MM0000000000000001 {\"ack\":1}\nMM0000000000000002 {\"ack\":2}\n";
    struct notes_result r = notes_apply(ok, strlen(ok), got_note, &g);
    assert_int_equal(r.delivered, 2);
    assert_int_equal(r.refused, 0);
    assert_string_equal(g.ids[1], "MM0000000000000002");
    assert_string_equal(g.msgs[1], "{\"ack\":2}");

    /* each bad line is refused on its own; the good ones around it go */
    char big[PROTO_NOTE_MAX + 64];
    memset(big, 'x', sizeof(big));
    memcpy(big, "MM0000000000000003 ", 19);
    big[sizeof(big) - 1] = '\n';
    const char *bad[] = {
        "\n",                      /* empty */
        "MM0000000000000001\n",    /* no message */
        "MM0000000000000001 \n",   /* empty message */
        "not-a-device x\n",        /* bad id */
        "MM00000000000000011 x\n", /* id too long */
        "../../#/MM00000001 x\n",  /* a topic, not an id */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char in[256];
        int n = snprintf(in, sizeof(in), "MM0000000000000004 a\n%sMM0000000000000005 b\n", bad[i]);
        memset(&g, 0, sizeof(g));
        r = notes_apply(in, (size_t)n, got_note, &g);
        assert_int_equal(r.delivered, 2);
        assert_int_equal(r.refused, 1);
        assert_string_equal(g.ids[1], "MM0000000000000005");
    }
    memset(&g, 0, sizeof(g));
    r = notes_apply(big, sizeof(big), got_note, &g);
    assert_int_equal(r.delivered, 0); /* above PROTO_NOTE_MAX */
    assert_int_equal(r.refused, 1);
    /* a last line without its LF was cut short: refused */
    r = notes_apply("MM0000000000000006 {\"ack\"", 24, got_note, &g);
    assert_int_equal(r.delivered, 0);
    assert_int_equal(r.refused, 1);
    r = notes_apply(NULL, 0, got_note, &g);
    assert_int_equal(r.delivered + r.refused, 0);
}

/* Several hubs: each one's data sessions are sent only the devices of the
 * partitions its control session named; anyone else is sent everything. */
static void parts_send_each_hub_its_share(void **st)
{
    (void)st;
    static struct parts p;
    char id[PROTO_DEVICE_ID_LEN + 1] = "";
    /* a device of partition 0 and one of partition 63 */
    char in0[PROTO_DEVICE_ID_LEN + 1] = "", in63[PROTO_DEVICE_ID_LEN + 1] = "";
    for (unsigned i = 0; !in0[0] || !in63[0]; i++) {
        snprintf(id, sizeof(id), "d-%016x", i);
        unsigned part = proto_partition(id);
        if (part == 0 && !in0[0])
            memcpy(in0, id, sizeof(in0));
        if (part == 63 && !in63[0])
            memcpy(in63, id, sizeof(in63));
    }
    assert_true(parts_allow(&p, "mamori-hub-a-data", in0)); /* nothing said yet */
    assert_int_equal(parts_set(&p, "mamori-hub-a", "0000000000000001", 16), MAMORI_OK);
    assert_int_equal(parts_set(&p, "mamori-hub-b", "8000000000000000", 16), MAMORI_OK);
    assert_true(parts_allow(&p, "mamori-hub-a-data", in0));
    assert_true(parts_allow(&p, "mamori-hub-a-events", in0));
    assert_false(parts_allow(&p, "mamori-hub-a-data", in63));
    assert_true(parts_allow(&p, "mamori-hub-b-events", in63));
    assert_false(parts_allow(&p, "mamori-hub-b-data", in0));
    /* the control session itself, a tool, a longer name: everything */
    assert_true(parts_allow(&p, "mamori-hub-a", in63));
    assert_true(parts_allow(&p, "mamori-hub-capture-1", in63));
    assert_true(parts_allow(&p, "mamori-hub-ab-data", in63));
    /* a new list replaces the old one */
    assert_int_equal(parts_set(&p, "mamori-hub-a", "8000000000000000", 16), MAMORI_OK);
    assert_true(parts_allow(&p, "mamori-hub-a-data", in63));
    assert_false(parts_allow(&p, "mamori-hub-a-data", in0));
    /* bad lists change nothing */
    assert_int_equal(parts_set(&p, "mamori-hub-a", "000000000000000G", 16), MAMORI_ERR_PARSE);
    assert_int_equal(parts_set(&p, "mamori-hub-a", "FFFFFFFFFFFFFFFF", 16), MAMORI_ERR_PARSE);
    assert_int_equal(parts_set(&p, "mamori-hub-a", "0000000000000001", 15), MAMORI_ERR_PARSE);
    assert_int_equal(parts_set(&p, "", "0000000000000001", 16), MAMORI_ERR_PARSE);
    assert_true(parts_allow(&p, "mamori-hub-a-data", in63));
    /* a table full of other hubs: a further one is sent everything */
    for (unsigned i = 0; p.n < PARTS_HUBS; i++) {
        char cid[32];
        snprintf(cid, sizeof(cid), "mamori-hub-x%u", i);
        assert_int_equal(parts_set(&p, cid, "0000000000000000", 16), MAMORI_OK);
    }
    assert_int_equal(parts_set(&p, "mamori-hub-z", "0000000000000000", 16), MAMORI_ERR_TOOBIG);
    assert_true(parts_allow(&p, "mamori-hub-z-data", in0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(snapshot_takes_effect_only_when_complete),
        cmocka_unit_test(live_set_kicks_and_rotates),
        cmocka_unit_test(stale_set_after_newer_snapshot_is_ignored),
        cmocka_unit_test(rotation_admits_both_certificates_until_switched),
        cmocka_unit_test(malformed_control_changes_nothing),
        cmocka_unit_test(client_id_bound_to_identity),
        cmocka_unit_test(takeover_keeps_the_newest_session),
        cmocka_unit_test(switch_kicks_a_session_on_the_old_certificate),
        cmocka_unit_test(snapshot_carries_sessions_and_closes_stale_ones),
        cmocka_unit_test(acl_own_subtree_only),
        cmocka_unit_test(acl_rate_limit_and_kick),
        cmocka_unit_test(notes_fan_out_and_bad_lines_lose_nothing_else),
        cmocka_unit_test(parts_send_each_hub_its_share),
    };
    return cmocka_run_group_tests_name("broker", tests, NULL, NULL);
}
