/*
 * lib/cfgstore.h - the device's remote settings on disk (common/devcfg.h),
 * with the previous version kept as known-good (T01-L3c, T08-*).
 *
 * In STATE/config: current.json ({"version":N,"settings":{...}}), good.json
 * (the version before it), new.json (being installed) and pending (the
 * version on probation and its deadline). Applying is a fixed sequence of
 * durable steps; cfgstore_open() finds where an interrupted one stopped and
 * goes forward (the new version is on disk whole) or back (it is not). A
 * version on probation that survives a restart has not proven itself: the
 * SDK rolls it back.
 */
#ifndef MAMORI_LIB_CFGSTORE_H
#define MAMORI_LIB_CFGSTORE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/devcfg.h"
#include "mamori/error.h"

enum cfg_step {
    CFG_STEP_NEW_WRITTEN = 1, /* new.json on disk */
    CFG_STEP_PENDING,         /* pending written */
    CFG_STEP_GOOD_KEPT,       /* current.json renamed to good.json */
    CFG_STEP_SWITCHED,        /* new.json renamed to current.json */
    CFG_N_APPLY_STEPS = CFG_STEP_SWITCHED,
    CFG_STEP_RESTORED = 1, /* rollback: good.json renamed to current.json */
    CFG_STEP_CLEARED,      /* rollback: pending removed */
    CFG_N_ROLLBACK_STEPS = CFG_STEP_CLEARED
};

struct cfgstore {
    char dir[4096];
    uint64_t version; /* 0: none applied */
    char settings[DEVCFG_MAX + 1];
    bool pending; /* on probation until cfgstore_commit */
    int64_t deadline_ms;
    uint64_t good_version; /* 0: none kept */
};

/* Opens (creating STATE/config, 0700) and repairs the store. */
enum mamori_err cfgstore_open(const char *state_dir, struct cfgstore *s) MAMORI_MUST_CHECK;
/* Installs version (settings: checked JSON text) on probation until
 * deadline_ms; the current version becomes the known-good one. stop_after
 * (0: none) returns right after that step as a crash would. */
enum mamori_err cfgstore_apply(struct cfgstore *s, uint64_t version, const char *settings,
                               int64_t deadline_ms, int stop_after) MAMORI_MUST_CHECK;
/* The version on probation proved itself. */
enum mamori_err cfgstore_commit(struct cfgstore *s) MAMORI_MUST_CHECK;
/* Back to the known-good version (MAMORI_ERR_NOTFOUND: there is none; a
 * pending mark is cleared anyway). */
enum mamori_err cfgstore_rollback(struct cfgstore *s, int stop_after) MAMORI_MUST_CHECK;

#endif
