/* hub/io/broker.h - supervision of the mosquitto broker and its plugin. */
#ifndef MAMORI_HUB_IO_BROKER_H
#define MAMORI_HUB_IO_BROKER_H

#include "hub/core/hub.h"

struct passwd;

enum mamori_err broker_write_config(struct hub *h) MAMORI_MUST_CHECK;
/* Starts the broker and its supervisor; registers hub_reload_broker. */
enum mamori_err broker_start(struct hub *h) MAMORI_MUST_CHECK;
void broker_stop(struct hub *h);
/* The user the broker drops to (NULL when it runs as we do). */
const struct passwd *broker_user(void);

#endif
