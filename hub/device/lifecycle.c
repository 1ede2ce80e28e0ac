/* hub/device/lifecycle.c - see lifecycle.h. One table is the whole state machine. */
#include "hub/device/lifecycle.h"

#include <string.h>

static const char *const STATE_NAMES[LC_N_STATES] = {
    "manufactured", "claimed", "active",         "quarantined",
    "locked",       "revoked", "decommissioned", "stray",
};

static const char *const ACTION_NAMES[LC_N_ACTIONS] = {
    "claim",   "activate", "lock",         "unlock", "quarantine",
    "release", "revoke",   "decommission", "stray",  "confirm",
};

#define X (-1)
/* NEXT[action][from] = to, or X when the transition is illegal. */
/* clang-format off */
static const int NEXT[LC_N_ACTIONS][LC_N_STATES] = {
    /*                 manuf.           claimed         active          quarant.        locked          revoked  decomm. stray */
    [LC_CLAIM]      = {LC_CLAIMED,      X,              X,              X,              X,              X,       X,      X},
    [LC_ACTIVATE]   = {X,               LC_ACTIVE,      X,              X,              X,              X,       X,      X},
    /* T03-L2b: a device reported stolen is locked out of service */
    [LC_LOCK]       = {X,               LC_LOCKED,      LC_LOCKED,      LC_LOCKED,      X,              X,       X,      LC_LOCKED},
    [LC_UNLOCK]     = {X,               X,              X,              X,              LC_ACTIVE,      X,       X,      X},
    /* T02-L3c: quarantine keeps only the management channel */
    [LC_QUARANTINE] = {X,               X,              LC_QUARANTINED, X,              X,              X,       X,      X},
    [LC_RELEASE]    = {X,               X,              X,              LC_ACTIVE,      X,              X,       X,      X},
    /* T01-L5a (hub side), P-LCM: decommissioned is terminal */
    [LC_REVOKE]     = {LC_REVOKED,      LC_REVOKED,     LC_REVOKED,     LC_REVOKED,     LC_REVOKED,     X,       X,      LC_REVOKED},
    [LC_DECOMMISSION] = {LC_DECOMMISSIONED, LC_DECOMMISSIONED, LC_DECOMMISSIONED, LC_DECOMMISSIONED,
                         LC_DECOMMISSIONED, LC_DECOMMISSIONED, X, LC_DECOMMISSIONED},
    /* T01-L4a/b: silent too long; back only when its owner confirms it */
    [LC_STRAY_MARK] = {X,               LC_STRAY,       LC_STRAY,       X,              X,              X,       X,      X},
    [LC_CONFIRM]    = {X,               X,              X,              X,              X,              X,       X,      LC_ACTIVE},
};
/* clang-format on */
#undef X

const char *lc_state_name(enum lc_state s)
{
    return (s >= 0 && s < LC_N_STATES) ? STATE_NAMES[s] : "?";
}

bool lc_state_parse(const char *name, enum lc_state *out)
{
    for (int i = 0; i < LC_N_STATES; i++) {
        if (strcmp(name, STATE_NAMES[i]) == 0) {
            *out = (enum lc_state)i;
            return true;
        }
    }
    return false;
}

const char *lc_action_name(enum lc_action a)
{
    return (a >= 0 && a < LC_N_ACTIONS) ? ACTION_NAMES[a] : "?";
}

bool lc_action_parse(const char *name, enum lc_action *out)
{
    for (int i = 0; i < LC_N_ACTIONS; i++) {
        if (strcmp(name, ACTION_NAMES[i]) == 0) {
            *out = (enum lc_action)i;
            return true;
        }
    }
    return false;
}

enum mamori_err lc_next(enum lc_state from, enum lc_action action, enum lc_state *to)
{
    if (from < 0 || from >= LC_N_STATES || action < 0 || action >= LC_N_ACTIONS)
        return MAMORI_ERR_INVAL;
    int n = NEXT[action][from];
    if (n < 0)
        return MAMORI_ERR_STATE;
    *to = (enum lc_state)n;
    return MAMORI_OK;
}

enum lc_access lc_access(enum lc_state s)
{
    switch (s) {
    case LC_CLAIMED: /* may connect to finish setup */
    case LC_ACTIVE:
        return LC_ACCESS_FULL;
    case LC_QUARANTINED:
    case LC_LOCKED:
    case LC_STRAY: /* heartbeats and commands only, until its owner confirms it */
        /* The management channel stays: a locked device must receive the
         * signed lock command (and later its unlock, or a wipe); it can no
         * longer send telemetry. */
        return LC_ACCESS_RESTRICTED;
    default:
        return LC_ACCESS_DENY; /* fail closed; T02-L1c: not before claim */
    }
}
