/*
 * hub/daemon.h - the life of mamorid: every room of the hub put together.
 *
 * hub_init creates DATA on first start (PKI, database, bootstrap token,
 * broker config) and lets each domain register its handlers and periodic
 * jobs; hub_start launches the broker, the MQTT session, the API and the
 * jobs; hub_stop undoes it.
 */
#ifndef MAMORI_HUB_DAEMON_H
#define MAMORI_HUB_DAEMON_H

#include "hub/core/hub.h"

enum mamori_err hub_init(struct hub *h, const struct hub_config *cfg) MAMORI_MUST_CHECK;
enum mamori_err hub_start(struct hub *h) MAMORI_MUST_CHECK;
void hub_stop(struct hub *h);
void hub_free(struct hub *h);

#endif
