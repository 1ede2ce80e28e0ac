/* hub/io/api_gate.c - the role gate of the route table (api_table.h). */
#include "hub/io/api_table.h"

enum api_gate api_gate(enum api_role role, const struct principal *who)
{
    if (role == ROUTE_PUBLIC)
        return GATE_PASS;
    if (!who || role == ROUTE_UPDATE_TOKEN)
        return GATE_UNAUTHENTICATED;
    switch (role) {
    case ROUTE_USER:
        return GATE_PASS;
    case ROUTE_OWNER:
        return who->role == ROLE_OWNER ? GATE_PASS : GATE_FORBIDDEN;
    case ROUTE_STAFF:
        return hub_is_staff(who) ? GATE_PASS : GATE_FORBIDDEN;
    case ROUTE_ADMIN:
        return who->role == ROLE_ADMIN ? GATE_PASS : GATE_FORBIDDEN;
    default: /* not a role: nobody */
        return GATE_FORBIDDEN;
    }
}

const char *api_role_denied(enum api_role role)
{
    switch (role) {
    case ROUTE_OWNER:
        return "forbidden: for owner accounts only";
    case ROUTE_STAFF:
        return "forbidden: for administrators and operators only";
    case ROUTE_ADMIN:
        return "forbidden: for administrators only";
    default:
        return "forbidden";
    }
}
