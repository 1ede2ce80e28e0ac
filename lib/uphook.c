/*
 * lib/uphook.c - the update hook's process (see uphook.h); P-UPD.
 */
#define _GNU_SOURCE
#include "lib/uphook.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void uphook_stop(struct uphook *h);

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

enum mamori_err uphook_start(struct uphook *h, const char *hook, const char *verb, const char *arg,
                             unsigned timeout_s)
{
    int p[2];
    memset(h, 0, sizeof(*h));
    h->fd = -1;
    h->status = -1;
    if (!hook || hook[0] != '/' || !verb)
        return MAMORI_ERR_INVAL;
    /* execv wants mutable strings: copies, made before the fork */
    char a0[4096], a1[32], a2[4200];
    if ((size_t)snprintf(a0, sizeof(a0), "%s", hook) >= sizeof(a0) ||
        (size_t)snprintf(a1, sizeof(a1), "%s", verb) >= sizeof(a1) ||
        (size_t)snprintf(a2, sizeof(a2), "%s", arg ? arg : "") >= sizeof(a2))
        return MAMORI_ERR_TOOBIG;
    char *argv[] = {a0, a1, arg ? a2 : NULL, NULL};
    if (pipe2(p, O_CLOEXEC) != 0)
        return MAMORI_ERR_IO;
    pid_t pid = fork();
    if (pid == 0) { /* only async-signal-safe calls from here */
        int null = open("/dev/null", O_RDONLY);
        if (null < 0 || dup2(null, 0) < 0 || dup2(p[1], 1) < 0)
            _exit(126);
        close_range(3, ~0u, 0); /* nothing of the agent's leaks into it */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(a0, argv);
        _exit(127);
    }
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        return MAMORI_ERR_IO;
    }
    h->pid = pid;
    h->fd = p[0];
    h->until = mono_ms() + (uint64_t)timeout_s * 1000u;
    return MAMORI_OK;
}

/* Reads what is there; false at end of output. */
static bool drain(struct uphook *h)
{
    char buf[512];
    ssize_t n = read(h->fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR)
        return true;
    if (n <= 0)
        return false;
    size_t keep = (size_t)n;
    if (keep > UPHOOK_OUT_MAX - h->len)
        keep = UPHOOK_OUT_MAX - h->len;
    memcpy(h->out + h->len, buf, keep);
    h->len += keep;
    h->out[h->len] = '\0';
    return true;
}

static void close_out(struct uphook *h)
{
    if (h->fd >= 0)
        close(h->fd);
    h->fd = -1;
}

/* It ended (st from waitpid): what it wrote last, and its exit code. */
static enum mamori_err ended(struct uphook *h, int st)
{
    if (h->fd >= 0 && fcntl(h->fd, F_SETFL, O_NONBLOCK) == 0)
        for (int i = 0; i < 64 && drain(h); i++) /* a child it left may hold the pipe */
            ;
    close_out(h);
    h->pid = 0;
    h->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return h->status == 0 ? MAMORI_OK : MAMORI_ERR_IO;
}

enum mamori_err uphook_poll(struct uphook *h, int wait_ms)
{
    if (h->pid <= 0)
        return MAMORI_ERR_IO;
    uint64_t end = mono_ms() + (uint64_t)(wait_ms > 0 ? wait_ms : 0);
    for (;;) {
        int st = 0;
        pid_t w = waitpid(h->pid, &st, WNOHANG);
        if (w == h->pid)
            return ended(h, st);
        if (w < 0 && errno != EINTR) { /* not ours to wait for any more */
            close_out(h);
            h->pid = 0;
            h->status = -1;
            return MAMORI_ERR_IO;
        }
        uint64_t now = mono_ms();
        if (now >= h->until) {
            uphook_stop(h);
            return MAMORI_ERR_IO;
        }
        uint64_t stop = end < h->until ? end : h->until;
        int ms = stop > now ? (int)(stop - now) : 0;
        if (ms > 50)
            ms = 50; /* its exit is seen within 50 ms */
        if (h->fd >= 0) {
            struct pollfd pf = {.fd = h->fd, .events = POLLIN};
            int r = poll(&pf, 1, ms);
            if (r > 0 && !drain(h))
                close_out(h);
        } else {
            struct timespec ts = {0, (long)ms * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (mono_ms() >= end && w == 0)
            return MAMORI_ERR_STATE;
    }
}

enum mamori_err uphook_run(struct uphook *h, const char *hook, const char *verb, const char *arg,
                           unsigned timeout_s)
{
    enum mamori_err rc = uphook_start(h, hook, verb, arg, timeout_s);
    while (rc == MAMORI_OK && (rc = uphook_poll(h, 1000)) == MAMORI_ERR_STATE)
        ;
    return rc;
}

void uphook_stop(struct uphook *h)
{
    if (h->pid <= 0)
        return;
    kill(h->pid, SIGKILL);
    while (waitpid(h->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    close_out(h);
    h->pid = 0;
    h->status = -1;
}
