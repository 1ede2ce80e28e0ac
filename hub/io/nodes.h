/*
 * hub/io/nodes.h - where each device is connected: the broker node that
 * holds its session, learned from the node's plugin (its connect and
 * disconnect reports) and from the session a heartbeat arrives on. Commands
 * and acknowledgements go to that node only (hub/io/mqtt.c); the API shows
 * it as the device's "node". In memory, under its own mutex: no call here
 * takes the hub lock or touches the store.
 */
#ifndef MAMORI_HUB_IO_NODES_H
#define MAMORI_HUB_IO_NODES_H

#include "hub/core/hub.h"

enum mamori_err nodes_init(struct hub *h) MAMORI_MUST_CHECK;
void nodes_free(struct hub *h);
/* Device id is connected to node (an index into h->nodes). */
void nodes_here(struct hub *h, const char *id, int node);
/* Device id left node: forgotten unless it is already on another. */
void nodes_gone(struct hub *h, const char *id, int node);
/* The node holding id, or -1 when unknown. */
int nodes_of(struct hub *h, const char *id);
/* How many devices are known on node. */
size_t nodes_count(struct hub *h, int node);

#endif
