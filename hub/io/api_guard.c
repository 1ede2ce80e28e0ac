/*
 * hub/io/api_guard.c - head deadline, minimum body rate and admission of the
 * HTTPS API's connections (T10-L1a, T10-L1b); see hub/io/api_guard.h.
 *
 * Every connection has a small record, its libmicrohttpd socket context,
 * linked in the guard's list under the guard's mutex. The record is
 * created by the STARTED notification and freed by the CLOSED one, both
 * on the connection's own worker thread, so the access handler's hooks
 * may use it without looking it up. Shedding and deadlines only ever call
 * shutdown(2) (never close): libmicrohttpd then sees the end of the stream
 * on its own thread and closes the connection the usual way.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <sys/prctl.h>

#include "common/log.h"
#include "hub/core/clock.h"
#include "hub/io/api_guard.h"

#define SWEEP_MS 100 /* deadline resolution */

enum phase {
    PH_HEAD,   /* TLS handshake, request line, headers */
    PH_BODY,   /* head complete, body arriving */
    PH_ANSWER, /* request complete: handled, response going out */
};

struct gconn {
    struct gconn *prev, *next;
    struct api_guard *g;
    int fd;
    enum phase ph;
    bool authed; /* a request on this connection authenticated */
    bool cut;    /* shut down by the guard, closing */
    int64_t since_ms;
    uint64_t body_bytes;
};

struct api_guard {
    struct api_guard_cfg cfg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t sweeper;
    bool running, stopping;
    struct gconn *first, *last; /* in order of arrival */
    size_t conns;
    uint64_t head_timeouts, slow_bodies, shed;
};

static int64_t mono_ms(void)
{
    return hub_mono_ms();
}

/* Caller holds g->mu: the record is still linked, so its fd is open. */
static void cut_locked(struct gconn *gc, uint64_t *counter)
{
    gc->cut = true;
    (*counter)++;
    shutdown(gc->fd, SHUT_RDWR);
}

/* Over the cap of unauthenticated connections, the oldest one still in
 * its head is shed (possibly the newcomer itself, when every other such
 * connection is already past its head). Caller holds g->mu. */
static void admit_locked(struct api_guard *g)
{
    size_t unauth = 0;
    struct gconn *victim = NULL;
    for (struct gconn *p = g->first; p; p = p->next) {
        if (p->authed || p->cut)
            continue;
        unauth++;
        if (p->ph == PH_HEAD && (!victim || p->since_ms < victim->since_ms))
            victim = p;
    }
    if (unauth > (size_t)g->cfg.unauth_max && victim)
        cut_locked(victim, &g->shed); /* T10-L1a */
}

static void sweep_locked(struct api_guard *g, int64_t now)
{
    int64_t head_ms = (int64_t)g->cfg.head_timeout_s * 1000;
    for (struct gconn *p = g->first; p; p = p->next) {
        if (p->cut)
            continue;
        if (p->ph == PH_HEAD && now - p->since_ms > head_ms)
            cut_locked(p, &g->head_timeouts); /* T10-L1b */
        else if (p->ph == PH_BODY &&
                 now > p->since_ms + head_ms +
                           (int64_t)(p->body_bytes * 1000 / (uint64_t)g->cfg.min_body_rate))
            cut_locked(p, &g->slow_bodies); /* T10-L1b */
    }
}

static void *sweeper_main(void *arg)
{
    (void)prctl(PR_SET_NAME, "mamori-sweep", 0, 0, 0); /* top -H, ps -L */
    struct api_guard *g = arg;
    pthread_mutex_lock(&g->mu);
    while (!g->stopping) {
        struct timespec ts;
        hub_wait_deadline(&ts, CLOCK_MONOTONIC, SWEEP_MS);
        int rc = pthread_cond_timedwait(&g->cv, &g->mu, &ts);
        if (rc && rc != ETIMEDOUT)
            log_warn("API guard: wait failed (%d)", rc);
        if (!g->stopping)
            sweep_locked(g, mono_ms());
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

enum mamori_err api_guard_new(const struct api_guard_cfg *cfg, struct api_guard **out)
{
    pthread_condattr_t ca;
    *out = NULL;
    if (cfg->head_timeout_s < 1 || cfg->min_body_rate < 1 || cfg->unauth_max < 1)
        return MAMORI_ERR_INVAL;
    struct api_guard *g = calloc(1, sizeof(*g));
    if (!g)
        return MAMORI_ERR_NOMEM;
    g->cfg = *cfg;
    if (pthread_condattr_init(&ca))
        goto out_free;
    if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) || pthread_cond_init(&g->cv, &ca)) {
        pthread_condattr_destroy(&ca);
        goto out_free;
    }
    pthread_condattr_destroy(&ca);
    if (pthread_mutex_init(&g->mu, NULL))
        goto out_cond;
    if (pthread_create(&g->sweeper, NULL, sweeper_main, g))
        goto out_mutex;
    g->running = true;
    *out = g;
    return MAMORI_OK;
out_mutex:
    pthread_mutex_destroy(&g->mu);
out_cond:
    pthread_cond_destroy(&g->cv);
out_free:
    free(g);
    return MAMORI_ERR_NOMEM;
}

void api_guard_stop(struct api_guard *g)
{
    if (!g || !g->running)
        return;
    pthread_mutex_lock(&g->mu);
    g->stopping = true;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->sweeper, NULL);
    g->running = false;
}

void api_guard_free(struct api_guard *g)
{
    if (!g)
        return;
    api_guard_stop(g);
    while (g->first) { /* none once the daemon has stopped; defensive */
        struct gconn *p = g->first;
        g->first = p->next;
        free(p);
    }
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g);
}

static void conn_started(struct api_guard *g, struct MHD_Connection *c, void **ctx)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct gconn *gc = ci ? calloc(1, sizeof(*gc)) : NULL;
    if (!gc) {
        /* untracked would mean unbounded: refuse it (fail closed) */
        if (ci)
            shutdown(ci->connect_fd, SHUT_RDWR);
        return;
    }
    gc->g = g;
    gc->fd = ci->connect_fd;
    gc->ph = PH_HEAD;
    gc->since_ms = mono_ms();
    *ctx = gc;
    pthread_mutex_lock(&g->mu);
    gc->prev = g->last;
    if (g->last)
        g->last->next = gc;
    else
        g->first = gc;
    g->last = gc;
    g->conns++;
    admit_locked(g);
    pthread_mutex_unlock(&g->mu);
}

static void conn_closed(struct api_guard *g, void **ctx)
{
    struct gconn *gc = *ctx;
    if (!gc)
        return;
    pthread_mutex_lock(&g->mu);
    if (gc->prev)
        gc->prev->next = gc->next;
    else
        g->first = gc->next;
    if (gc->next)
        gc->next->prev = gc->prev;
    else
        g->last = gc->prev;
    g->conns--;
    pthread_mutex_unlock(&g->mu);
    free(gc);
    *ctx = NULL;
}

void api_guard_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                      enum MHD_ConnectionNotificationCode toe)
{
    struct api_guard *g = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED)
        conn_started(g, c, socket_context);
    else if (toe == MHD_CONNECTION_NOTIFY_CLOSED)
        conn_closed(g, socket_context);
}

static struct gconn *gconn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* Moves the connection's record to phase ph (restarting its clock when
 * start is set); adds n body bytes; sets authed when auth is set. */
static void update(struct MHD_Connection *c, int ph, bool start, size_t n, bool auth)
{
    struct gconn *gc = gconn_of(c);
    if (!gc)
        return;
    pthread_mutex_lock(&gc->g->mu);
    if (ph >= 0)
        gc->ph = (enum phase)ph;
    if (start) {
        gc->since_ms = mono_ms();
        gc->body_bytes = 0;
    }
    gc->body_bytes += n;
    if (auth)
        gc->authed = true;
    pthread_mutex_unlock(&gc->g->mu);
}

void api_guard_head_done(struct MHD_Connection *c)
{
    update(c, PH_BODY, true, 0, false);
}

void api_guard_body(struct MHD_Connection *c, size_t n)
{
    update(c, PH_BODY, false, n, false);
}

void api_guard_answering(struct MHD_Connection *c)
{
    update(c, PH_ANSWER, false, 0, false);
}

void api_guard_authenticated(struct MHD_Connection *c)
{
    update(c, -1, false, 0, true);
}

void api_guard_request_done(struct MHD_Connection *c)
{
    update(c, PH_HEAD, true, 0, false);
}

json_t *api_guard_stats(struct api_guard *g)
{
    if (!g)
        return NULL;
    pthread_mutex_lock(&g->mu);
    json_int_t unauth = 0;
    for (struct gconn *p = g->first; p; p = p->next)
        unauth += !p->authed && !p->cut;
    json_t *o = json_pack("{s:I,s:I,s:I,s:I,s:I}", "head_timeouts", (json_int_t)g->head_timeouts,
                          "slow_bodies", (json_int_t)g->slow_bodies, "shed", (json_int_t)g->shed,
                          "connections", (json_int_t)g->conns, "unauthenticated", unauth);
    pthread_mutex_unlock(&g->mu);
    return o;
}
