/*
 * common/notice.h - what the hub tells a device of its own security
 * standing (T02-L2b, docs/updates.md "Advisories and the support period"):
 * the advisories on the firmware it runs and its model's security-support
 * end. Sent as the signed "notice" command; the hub builds it with these
 * limits and the device parses it again (untrusted bytes) before it keeps
 * it.
 *
 *   {"fw_version": "2.0",            the version the advisories were matched on
 *    "support_end": 1932595200,       Unix seconds; 0: not announced
 *    "advisories": [                  at most NOTICE_ADVISORIES, newest first
 *      {"id": 7, "severity": "high", "title": "...", "fixed_version": "3.1"}],
 *    "more": 0}                       advisories beyond those listed
 */
#ifndef MAMORI_COMMON_NOTICE_H
#define MAMORI_COMMON_NOTICE_H

#include <stddef.h>
#include <stdint.h>

#include "mamori/error.h"

#define NOTICE_ADVISORIES 8
#define NOTICE_TITLE_MAX  200
#define NOTICE_MAX        4096 /* the whole document (a command's arguments) */

struct notice_advisory {
    int64_t id;
    char severity[16]; /* low, medium, high, critical */
    char title[NOTICE_TITLE_MAX + 1];
    char fixed_version[65]; /* "" : none yet */
};

struct notice {
    char fw_version[65];
    int64_t support_end; /* Unix seconds, 0: not announced */
    size_t n;
    struct notice_advisory adv[NOTICE_ADVISORIES];
    uint64_t more;
};

enum mamori_err notice_parse(const void *data, size_t len, struct notice *out) MAMORI_MUST_CHECK;
/* The gravest severity listed ("" : none), for a one-word summary. */
const char *notice_worst(const struct notice *n);

#endif
