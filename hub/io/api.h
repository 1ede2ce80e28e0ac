/* hub/io/api.h - the HTTPS API (libmicrohttpd), docs/api.md. */
#ifndef MAMORI_HUB_IO_API_H
#define MAMORI_HUB_IO_API_H

#include "hub/core/hub.h"

enum mamori_err api_start(struct hub *h) MAMORI_MUST_CHECK;
void api_stop(struct hub *h);

#endif
