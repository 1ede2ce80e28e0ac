/*
 * broker/parts.h - which devices' data each hub's sessions are sent
 * (mamori/v1/ctl/parts).
 *
 * With several hubs each records the devices of the partitions it holds
 * (hub/core/cluster.h, common/proto.h proto_partition). Its control
 * session (client id C) tells the plugin which, as 16 hex digits, a bit per
 * partition; the plugin then sends its data sessions (C "-data" and
 * C "-events") only those devices' messages, so a hub reads its share of
 * the fleet's stream, not all of it. A filter only: the hub checks again
 * whatever it is sent. Sessions of a hub that never said (one hub alone),
 * and every other session of the hub's certificate, are sent everything.
 * Pure logic, no mosquitto types.
 */
#ifndef MAMORI_BROKER_PARTS_H
#define MAMORI_BROKER_PARTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mamori/error.h"

#define PARTS_HUBS    16 /* hubs told apart; a further one is sent everything */
#define PARTS_CID_MAX 64

struct parts {
    struct {
        char cid[PARTS_CID_MAX + 1]; /* the control session's client id */
        uint64_t bits;
    } hub[PARTS_HUBS];
    size_t n;
};

/* What the hub whose control session is cid holds, from 16 hex digits:
 * MAMORI_ERR_PARSE for anything else, MAMORI_ERR_TOOBIG when PARTS_HUBS
 * other hubs are known (nothing changes then). */
enum mamori_err parts_set(struct parts *p, const char *cid, const void *payload,
                          size_t len) MAMORI_MUST_CHECK;
/* Whether session cid is sent a data message of device device_id. */
bool parts_allow(const struct parts *p, const char *cid, const char *device_id);

#endif
