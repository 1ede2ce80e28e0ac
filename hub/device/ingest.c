/* hub/device/ingest.c - see ingest.h. */
#include "hub/device/ingest.h"

#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "common/json.h"
#include "common/log.h"
#include "hub/device/command.h"
#include "hub/device/device.h"
#include "hub/device/liveness.h"
#include "hub/device/relay.h"
#include "hub/device/telemetry.h"

struct item {
    char id[PROTO_DEVICE_ID_LEN + 1];
    enum proto_kind kind;
    size_t len;
    char *payload;
};

struct ingest_state {
    pthread_mutex_t mu;
    pthread_cond_t nonempty, nonfull;
    struct item *q; /* ring of INGEST_QUEUE */
    size_t head, n, bytes;
    bool stop, running;
    bool gathering; /* the worker lets a short batch fill (gather) */
    pthread_t thread;
    struct item batch[INGEST_BATCH];
    struct ingest_stats st;
};

static const struct principal HUB_WHO = {.user_id = 0, .name = "hub", .role = ROLE_ADMIN};

void ingest_heartbeat(struct hub *h, const char *id, const void *payload, size_t len)
{
    struct proto_envelope env;
    json_t *body = NULL;
    int64_t now = hub_now_ms();
    if (proto_envelope_parse(payload, len, &env, &body)) {
        pthread_mutex_lock(&h->lock);
        live_malformed(h, id, now);
        pthread_mutex_unlock(&h->lock);
        return;
    }
    /* uptime 0: the first heartbeat of a connection */
    uint64_t up = 1;
    bool fresh = json_get_u64(body, "uptime_s", &up) && up == 0;
    json_decref(body);
    /* the common case: an online device's beat, without the hub lock */
    if (!fresh && live_beat(h, id, now))
        return;
    pthread_mutex_lock(&h->lock);
    bool came = live_heartbeat(h, id, now);
    if (!hub_owns(h, id)) { /* its holder records it (hub/core/cluster.h) */
        pthread_mutex_unlock(&h->lock);
        return;
    }
    /* T01-L1c: the first heartbeat of a claimed device completes its
     * setup: it holds a valid identity and runs. Looked up only when the
     * device comes online or (re)connects, never per beat. */
    struct device_rec d;
    bool claimed = (came || fresh) && store_device_get(h->store, id, &d) == MAMORI_OK &&
                   strcmp(d.state, "claimed") == 0;
    pthread_mutex_unlock(&h->lock);
    if (claimed)
        log_if_err(hub_op_transition(h, &HUB_WHO, id, LC_ACTIVATE, "first heartbeat after claim"));
    if (fresh) {
        /* commands still pending (issued while it was away) go again */
        pthread_mutex_lock(&h->lock);
        relay_on_connect(h, id); /* before: a challenge is not re-sent */
        cmd_resend_pending(h, id);
        pthread_mutex_unlock(&h->lock);
    }
}

static void on_stream(struct hub *h, const struct item *it, const struct proto_envelope *env,
                      json_t *body)
{
    enum stream_kind s = it->kind == PROTO_KIND_TM   ? STREAM_TM
                         : it->kind == PROTO_KIND_EV ? STREAM_EV
                                                     : STREAM_LOG;
    tm_ingest(h, it->id, s, env, body, it->payload, it->len);
}

static void on_result(struct hub *h, const struct item *it, const struct proto_envelope *env,
                      json_t *body)
{
    (void)env;
    cmd_result(h, it->id, body);
}

/* What a queued message is, by kind. */
static const struct {
    enum proto_kind kind;
    void (*fn)(struct hub *h, const struct item *it, const struct proto_envelope *env,
               json_t *body);
} KINDS[] = {
    {PROTO_KIND_TM, on_stream},
    {PROTO_KIND_EV, on_stream},
    {PROTO_KIND_LOG, on_stream},
    {PROTO_KIND_RES, on_result},
};

/* One message, in the batch's transaction. Lock held. */
static void record_one(struct hub *h, const struct item *it)
{
    struct proto_envelope env;
    json_t *body = NULL;
    /* Another hub's device (hub/core/cluster.h), or the leases' session
     * gone: dropped unacknowledged, its holder records it. */
    if (!hub_owns(h, it->id) || !hub_cluster_current(h))
        return;
    if (proto_envelope_parse(it->payload, it->len, &env, &body)) {
        live_malformed(h, it->id, hub_now_ms());
        return;
    }
    for (size_t i = 0; i < sizeof(KINDS) / sizeof(KINDS[0]); i++)
        if (KINDS[i].kind == it->kind) {
            KINDS[i].fn(h, it, &env, body);
            break;
        }
    json_decref(body);
}

/* Records items[0..n) in transactions of at most INGEST_BATCH_MS of work;
 * true when acknowledgements of what they committed are owed. */
static bool record(struct hub *h, struct ingest_state *s, const struct item *items, size_t n)
{
    size_t i = 0;
    bool owed = false;
    while (i < n) {
        pthread_mutex_lock(&h->lock);
        bool tx = store_begin(h->store) == MAMORI_OK;
        int64_t t0 = hub_mono_ms();
        size_t first = i;
        for (; i < n && (i == first || hub_mono_ms() - t0 < INGEST_BATCH_MS); i++)
            record_one(h, &items[i]);
        tm_flush(h); /* inside the transaction: rows and sequence state */
        bool ok = tx && store_commit(h->store) == MAMORI_OK;
        if (ok && store_in_transaction(h->store)) {
            /* something inside left a transaction open: nothing of this
             * batch is durable, so nothing is acknowledged */
            log_err("a transaction was left open while recording device messages");
            ok = false;
        }
        if (tx && !ok) {
            store_abort(h->store);
            log_warn("a batch of %zu device messages was not recorded; devices will resend",
                     i - first);
        }
        tm_settle(h, ok || !tx); /* acknowledgements only for what is committed */
        owed = tm_acks_owed(h);
        pthread_mutex_unlock(&h->lock);
        pthread_mutex_lock(&s->mu);
        s->st.batches++;
        s->st.messages += i - first;
        if (i - first > s->st.largest)
            s->st.largest = i - first;
        if (tx && !ok)
            s->st.failed++;
        pthread_mutex_unlock(&s->mu);
    }
    return owed;
}

/* Sends the acknowledgements the batches owe (telemetry.h: paced). */
static void send_owed(struct hub *h, bool *owed)
{
    pthread_mutex_lock(&h->lock);
    tm_acks_send(h);
    pthread_mutex_unlock(&h->lock);
    *owed = false;
}

/* A short batch waits for more only while the rest of its messages are
 * sure to fit the queue's byte cap: a submitter never waits on the bytes
 * of a batch that is gathering. */
_Static_assert((size_t)INGEST_BATCH *(size_t)PROTO_MAX_PAYLOAD <= (size_t)INGEST_QUEUE_BYTES,
               "a gathering batch must fit the queue's byte cap");

/* Lets a short batch fill for up to ms, and never past *by (the owed
 * acknowledgements' time; NULL: none): a commit costs about the same for
 * a few messages as for hundreds (the pages it writes are shared), so
 * under load fewer, larger commits leave more of the CPU to the broker
 * (bench/ingest_bench.c measures it). s->mu held. */
static void gather(struct ingest_state *s, int ms, const struct timespec *by)
{
    if (ms <= 0 || s->n >= INGEST_BATCH || s->stop)
        return;
    struct timespec until;
    hub_wait_deadline(&until, CLOCK_MONOTONIC, (unsigned)ms);
    hub_deadline_cap(&until, by);
    s->gathering = true;
    while (s->n < INGEST_BATCH && !s->stop && !hub_deadline_passed(&until, CLOCK_MONOTONIC))
        (void)pthread_cond_timedwait(&s->nonempty, &s->mu, &until);
    s->gathering = false;
}

static void *worker(void *arg)
{
    (void)prctl(PR_SET_NAME, "mamori-ingest", 0, 0, 0); /* top -H, ps -L */
    struct hub *h = arg;
    struct ingest_state *s = h->ingest;
    bool owed = false;      /* acknowledgements owed ... */
    struct timespec ack_at; /* ... to be sent by then (CLOCK_MONOTONIC) */
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (s->n == 0 && !s->stop && !(owed && hub_deadline_passed(&ack_at, CLOCK_MONOTONIC))) {
            if (owed)
                (void)pthread_cond_timedwait(&s->nonempty, &s->mu, &ack_at);
            else
                pthread_cond_wait(&s->nonempty, &s->mu);
        }
        if (s->n == 0) { /* acknowledgements due, or stopping and all recorded */
            bool stop = s->stop;
            pthread_mutex_unlock(&s->mu);
            if (owed)
                send_owed(h, &owed);
            if (stop)
                break;
            continue;
        }
        gather(s, h->cfg.ingest_gather_ms, owed ? &ack_at : NULL);
        size_t k = s->n < INGEST_BATCH ? s->n : INGEST_BATCH;
        for (size_t i = 0; i < k; i++) {
            s->batch[i] = s->q[(s->head + i) % INGEST_QUEUE];
            s->bytes -= s->batch[i].len;
        }
        s->head = (s->head + k) % INGEST_QUEUE;
        s->n -= k;
        pthread_cond_broadcast(&s->nonfull);
        pthread_mutex_unlock(&s->mu);
        bool more = record(h, s, s->batch, k);
        for (size_t i = 0; i < k; i++)
            free(s->batch[i].payload);
        if (more && !owed) {
            owed = true;
            hub_wait_deadline(&ack_at, CLOCK_MONOTONIC, TM_ACK_PERIOD_MS);
        } else if (owed && hub_deadline_passed(&ack_at, CLOCK_MONOTONIC)) {
            send_owed(h, &owed); /* under a steady stream, the queue never empties */
        }
    }
    return NULL;
}

bool ingest_submit(struct hub *h, const char *id, enum proto_kind kind, const void *payload,
                   size_t len)
{
    struct ingest_state *s = h->ingest;
    char *copy = s ? malloc(len + 1) : NULL;
    if (!copy)
        return false;
    memcpy(copy, payload, len);
    copy[len] = '\0';
    pthread_mutex_lock(&s->mu);
    while ((s->n == INGEST_QUEUE || (s->n && s->bytes + len > INGEST_QUEUE_BYTES)) && !s->stop)
        pthread_cond_wait(&s->nonfull, &s->mu);
    if (s->stop) {
        pthread_mutex_unlock(&s->mu);
        free(copy);
        return false;
    }
    struct item *it = &s->q[(s->head + s->n) % INGEST_QUEUE];
    snprintf(it->id, sizeof(it->id), "%s", id);
    it->kind = kind;
    it->len = len;
    it->payload = copy;
    s->n++;
    s->bytes += len;
    if (!s->gathering || s->n >= INGEST_BATCH)
        pthread_cond_signal(&s->nonempty);
    pthread_mutex_unlock(&s->mu);
    return true;
}

void ingest_stats(struct hub *h, struct ingest_stats *out)
{
    struct ingest_state *s = h->ingest;
    memset(out, 0, sizeof(*out));
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    out->queued = s->n;
    out->gathering = s->gathering;
    pthread_mutex_unlock(&s->mu);
}

enum mamori_err ingest_start(struct hub *h)
{
    struct ingest_state *s = calloc(1, sizeof(*s));
    if (!s || !(s->q = calloc(INGEST_QUEUE, sizeof(*s->q)))) {
        free(s);
        return MAMORI_ERR_NOMEM;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the acknowledgements' pace */
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->nonempty, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&s->nonfull, NULL);
    h->ingest = s;
    if (pthread_create(&s->thread, NULL, worker, h))
        return MAMORI_ERR_INTERNAL;
    s->running = true;
    return MAMORI_OK;
}

void ingest_stop(struct hub *h)
{
    struct ingest_state *s = h->ingest;
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_broadcast(&s->nonempty);
    pthread_cond_broadcast(&s->nonfull);
    pthread_mutex_unlock(&s->mu);
    if (s->running)
        pthread_join(s->thread, NULL);
    for (size_t i = 0; i < s->n; i++)
        free(s->q[(s->head + i) % INGEST_QUEUE].payload);
    h->ingest = NULL;
    pthread_cond_destroy(&s->nonempty);
    pthread_cond_destroy(&s->nonfull);
    pthread_mutex_destroy(&s->mu);
    free(s->q);
    free(s);
}
