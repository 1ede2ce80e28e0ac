/*
 * lib/devstate.h - the device's own durable state (state.db in the state
 * directory): flags that must survive a reboot (locked, quarantined) and
 * the ids of every command accepted, until they expire (replay guard).
 * SQLite WAL, synchronous=FULL; a flag and the command that set it commit
 * together.
 */
#ifndef MAMORI_LIB_DEVSTATE_H
#define MAMORI_LIB_DEVSTATE_H

#include <stdbool.h>
#include <stdint.h>

#include "mamori/error.h"

struct devstate;

enum mamori_err devstate_open(const char *path, struct devstate **out) MAMORI_MUST_CHECK;
void devstate_close(struct devstate *ds);

bool devstate_flag(struct devstate *ds, const char *name);

/* True when command id was accepted before (prev_status: its outcome). */
bool devstate_seen(struct devstate *ds, const char *id, char prev_status[16]);

/* Records command id (kept until exp_ms) with its outcome, and when flag is
 * not NULL sets it to value, in one transaction. MAMORI_ERR_EXISTS when the
 * id was seen before (nothing changes; prev_status gets its outcome). */
enum mamori_err devstate_accept(struct devstate *ds, const char *id, int64_t exp_ms, int64_t now_ms,
                                const char *status, const char *flag, bool value,
                                char prev_status[16]) MAMORI_MUST_CHECK;

/* The final outcome of command id, accepted before with an interim one
 * ("started": an update runs for minutes, across restarts). A replay is
 * answered with it from then on. MAMORI_ERR_NOTFOUND: id unknown. */
enum mamori_err devstate_outcome(struct devstate *ds, const char *id,
                                 const char *status) MAMORI_MUST_CHECK;

#endif
