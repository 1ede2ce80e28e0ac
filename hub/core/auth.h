/*
 * hub/core/auth.h - passwords, session tokens and attempt throttling.
 *
 * Passwords: Argon2id (libsodium crypto_pwhash_str) with t=2, m=19 MiB, the
 * OWASP baseline, small enough that logins cannot push the hub's memory far.
 * Tokens (sessions, bootstrap): 256 random bits; only their SHA-256 is
 * stored, so a copy of the database yields no usable token.
 * Throttling: after `free_attempts` failures each further attempt must wait
 * 2^(n-free) seconds (capped at 60); at `lock_after` failures the key is
 * locked for `lock_s` seconds. Success clears the record.
 */
#ifndef MAMORI_HUB_AUTH_H
#define MAMORI_HUB_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hub/store/store.h"

#define AUTH_TOKEN_TEXT   68 /* "mms_" + 64 hex + NUL */
#define AUTH_PASSWORD_MIN 12
#define AUTH_PASSWORD_MAX 256

enum mamori_err auth_password_hash(const char *pw, char out[256]) MAMORI_MUST_CHECK;
bool auth_password_verify(const char *hash, const char *pw);
/* Burns the same time as a verification; used for unknown user names so
 * that timing does not reveal which names exist. */
void auth_password_dummy(const char *pw);
enum mamori_err auth_password_policy(const char *pw) MAMORI_MUST_CHECK;

enum mamori_err auth_token_new(const char *prefix, char out[AUTH_TOKEN_TEXT]) MAMORI_MUST_CHECK;
void auth_token_hash(const char *token, char out_hex[65]);

struct throttle_policy {
    int free_attempts;
    int lock_after;
    int lock_s;
};
extern const struct throttle_policy THROTTLE_LOGIN;
extern const struct throttle_policy THROTTLE_CLAIM;
extern const struct throttle_policy THROTTLE_BOOTSTRAP;

/* MAMORI_OK when an attempt may be made now; otherwise MAMORI_ERR_RATELIMIT
 * with *retry_after seconds. */
enum mamori_err throttle_check(const struct throttle_rec *t, int64_t now,
                               int64_t *retry_after) MAMORI_MUST_CHECK;
void throttle_fail(const struct throttle_policy *p, struct throttle_rec *t, int64_t now);

#endif
