/*
 * hub/device/lifecycle.h - the registry's device state machine (docs/DESIGN.md §2).
 *
 *   manufactured --claim--> claimed --activate--> active <--lock/unlock--> locked
 *   active <--quarantine/release--> quarantined
 *   any live state --revoke--> revoked;  any non-terminal --decommission--> decommissioned
 *   claimed/active --stray--> stray (the hub: silent too long) --confirm--> active (its owner)
 *
 * Illegal transitions are refused with MAMORI_ERR_STATE, never applied.
 * P-LCM: the registry's part of product lifecycle management.
 */
#ifndef MAMORI_HUB_LIFECYCLE_H
#define MAMORI_HUB_LIFECYCLE_H

#include <stdbool.h>

#include "mamori/error.h"

enum lc_state {
    LC_MANUFACTURED = 0,
    LC_CLAIMED,
    LC_ACTIVE,
    LC_QUARANTINED,
    LC_LOCKED,
    LC_REVOKED,
    LC_DECOMMISSIONED,
    LC_STRAY, /* left unattended: restricted until its owner confirms it (T01-L4*) */
    LC_N_STATES
};

enum lc_action {
    LC_CLAIM = 0,
    LC_ACTIVATE,
    LC_LOCK,
    LC_UNLOCK,
    LC_QUARANTINE,
    LC_RELEASE,
    LC_REVOKE,
    LC_DECOMMISSION,
    LC_STRAY_MARK, /* "stray": the hub's, never an API caller's */
    LC_CONFIRM,    /* "confirm": the owner takes a stray device back */
    LC_N_ACTIONS
};

/* What the broker lets a device in a state do (sent to the plugin). */
enum lc_access { LC_ACCESS_DENY = 0, LC_ACCESS_FULL = 1, LC_ACCESS_RESTRICTED = 2 };

const char *lc_state_name(enum lc_state s);
bool lc_state_parse(const char *name, enum lc_state *out);
const char *lc_action_name(enum lc_action a);
bool lc_action_parse(const char *name, enum lc_action *out);
/* Computes the state after action; MAMORI_ERR_STATE when not allowed. */
enum mamori_err lc_next(enum lc_state from, enum lc_action action,
                        enum lc_state *to) MAMORI_MUST_CHECK;
enum lc_access lc_access(enum lc_state s);

#endif
