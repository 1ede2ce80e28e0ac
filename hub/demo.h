/* hub/demo.h - the simulated fleet of `make run`; see demo.c. */
#ifndef MAMORI_HUB_DEMO_H
#define MAMORI_HUB_DEMO_H

#include "hub/core/hub.h"

/* Provisions and claims n simulated devices under DATA/demo-fleet, once. */
enum mamori_err demo_fleet(struct hub *h, int n) MAMORI_MUST_CHECK;

#endif
