/*
 * hub/device/relay.c - relay detection by timed signed challenges (see relay.h);
 * T09-L2b; as a periodic self-test of every online device, T02-L2a and T02-L4a.
 */
#include "hub/device/device.h"
#include "hub/device/relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cmd.h"
#include "common/crypto.h"
#include "common/log.h"

#define SLOTS            16384 /* devices followed (open addressing; a full table skips) */
#define BATCH            64    /* devices looked at per tick */
#define WARMUP           3     /* round trips learned before one can be told apart */
#define FACTOR           3.0   /* a round trip above factor x baseline + slack is a relay */
#define SLACK_MS         200.0
#define CHALLENGE_TTL_MS 60000 /* a challenge's validity */

struct follow {
    char id[24];
    char cid[33];    /* the challenge under way ("" : none) */
    int64_t sent_ms; /* when it went out */
    int64_t next_ms; /* when the next one is due */
    double base_ms;  /* moving average of round trips */
    unsigned samples;
};

struct relay_state {
    struct follow slot[SLOTS];
    char cursor[24]; /* round robin over the online devices */
};

static const struct principal CHALLENGER = {.user_id = 0, .name = "challenge", .role = ROLE_ADMIN};

static struct follow *follow_of(struct relay_state *s, const char *id, bool add)
{
    uint8_t h[CRYPTO_SHA256_LEN];
    crypto_sha256(id, strlen(id), h);
    size_t i = ((size_t)h[0] << 8 | h[1]) % SLOTS;
    for (size_t k = 0; k < 32; k++, i = (i + 1) % SLOTS) {
        if (strcmp(s->slot[i].id, id) == 0)
            return &s->slot[i];
        if (!s->slot[i].id[0]) {
            if (!add)
                return NULL;
            snprintf(s->slot[i].id, sizeof(s->slot[i].id), "%s", id);
            return &s->slot[i];
        }
    }
    return NULL;
}

void relay_tick(struct hub *h)
{
    static char ids[BATCH][24];
    size_t n = 0;
    if (h->cfg.challenge_s <= 0)
        return;
    if (!h->relay && !(h->relay = calloc(1, sizeof(*h->relay))))
        return;
    struct relay_state *s = h->relay;
    log_if_err(store_devices_online_after(h->store, s->cursor, ids, BATCH, &n));
    if (n < BATCH)
        s->cursor[0] = '\0'; /* the end: from the start next time */
    else
        snprintf(s->cursor, sizeof(s->cursor), "%s", ids[n - 1]);
    int64_t now = hub_now_ms();
    for (size_t i = 0; i < n; i++) {
        /* challenged by the hub that records its answers (core/cluster.h) */
        struct follow *f = hub_owns(h, ids[i]) ? follow_of(s, ids[i], true) : NULL;
        struct command_rec c;
        if (!f)
            continue;
        if (!f->next_ms) /* first seen: the first challenge one interval on */
            f->next_ms = now + (int64_t)h->cfg.challenge_s * 1000;
        if (now < f->next_ms)
            continue;
        /* One challenge at a time: a round trip longer than the interval
         * is timed when it ends, never overtaken (an overtaken one would
         * no longer be recognised, and its record would stay). One not
         * answered within its validity is gone with its record. */
        if (f->cid[0] && now - f->sent_ms < CHALLENGE_TTL_MS)
            continue;
        if (f->cid[0]) {
            log_if_err(store_command_delete(h->store, f->cid));
            f->cid[0] = '\0';
        }
        f->next_ms = now + (int64_t)h->cfg.challenge_s * 1000;
        if (hub_command_issue(h, &CHALLENGER, ids[i], CMD_SELF_TEST, CHALLENGE_TTL_MS,
                              "latency challenge (relay detection)", NULL, &c) == MAMORI_OK) {
            snprintf(f->cid, sizeof(f->cid), "%s", c.id);
            f->sent_ms = hub_now_ms();
        }
    }
}

bool relay_on_result(struct hub *h, const char *device_id, const char *command_id)
{
    struct follow *f = h->relay ? follow_of(h->relay, device_id, false) : NULL;
    if (!f || !f->cid[0] || strcmp(f->cid, command_id) != 0)
        return false; /* not a challenge (or an old one) */
    double rtt = (double)(hub_now_ms() - f->sent_ms);
    f->cid[0] = '\0';
    /* timed: its record goes (a challenge an hour per device would
     * otherwise fill the commands table) */
    log_if_err(store_command_delete(h->store, command_id));
    if (f->samples >= WARMUP && rtt > FACTOR * f->base_ms + SLACK_MS) {
        hub_event(h, device_id, "relay_suspected", "alert",
                  "{\"rtt_ms\":%.0f,\"baseline_ms\":%.0f}", rtt, f->base_ms);
        return true; /* not learned */
    }
    f->base_ms = f->samples ? 0.8 * f->base_ms + 0.2 * rtt : rtt;
    f->samples++;
    return true;
}

void relay_on_connect(struct hub *h, const char *device_id)
{
    struct follow *f = h->relay ? follow_of(h->relay, device_id, false) : NULL;
    if (!f)
        return;
    if (f->cid[0]) {
        log_if_err(store_command_delete(h->store, f->cid));
        f->cid[0] = '\0';
    }
    f->next_ms = hub_now_ms() + (int64_t)h->cfg.challenge_s * 1000;
}

void relay_describe(struct hub *h, const char *device_id, json_t *out)
{
    const struct follow *f = h->relay ? follow_of(h->relay, device_id, false) : NULL;
    if (!f || !f->samples)
        return;
    json_object_set_new(out, "round_trip",
                        json_pack("{s:f,s:i,s:b}", "baseline_ms", f->base_ms, "samples",
                                  (json_int_t)f->samples, "learned", f->samples >= WARMUP));
}

void relay_free(struct hub *h)
{
    free(h->relay);
    h->relay = NULL;
}
