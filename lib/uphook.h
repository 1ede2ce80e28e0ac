/*
 * lib/uphook.h - runs the update hook (docs/updates.md, "Hook backend"):
 * the board's installer (RAUC, SWUpdate, ...) behind one executable,
 * called as HOOK VERB [ARG], without a shell. Its standard output is read
 * up to a bound (the rest is drained and dropped), its standard error is
 * the caller's, and it is killed at its deadline.
 */
#ifndef MAMORI_LIB_UPHOOK_H
#define MAMORI_LIB_UPHOOK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mamori/error.h"

#define UPHOOK_OUT_MAX 1024 /* bytes of output kept */

struct uphook {
    pid_t pid;      /* 0: none running */
    int fd;         /* its standard output */
    uint64_t until; /* deadline (monotonic ms) */
    size_t len;
    char out[UPHOOK_OUT_MAX + 1]; /* NUL-terminated */
    int status;                   /* exit code; -1: killed, crashed or timed out */
};

/* Starts HOOK VERB [ARG]; it may run for timeout_s seconds. */
enum mamori_err uphook_start(struct uphook *h, const char *hook, const char *verb, const char *arg,
                             unsigned timeout_s) MAMORI_MUST_CHECK;
/* Waits up to wait_ms for it. MAMORI_ERR_STATE: still running; MAMORI_OK:
 * it exited 0; MAMORI_ERR_IO: it failed (h->status), timed out or could
 * not run. */
enum mamori_err uphook_poll(struct uphook *h, int wait_ms) MAMORI_MUST_CHECK;
/* Starts it and waits for the end. */
enum mamori_err uphook_run(struct uphook *h, const char *hook, const char *verb, const char *arg,
                           unsigned timeout_s) MAMORI_MUST_CHECK;
/* Kills a hook still running and reaps it. */
void uphook_stop(struct uphook *h);

#endif
