/* hub/core/auth.c - see auth.h. */
#include "hub/core/auth.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "common/crypto.h"

#define PW_OPS 2
#define PW_MEM (19u * 1024 * 1024)

const struct throttle_policy THROTTLE_LOGIN = {3, 10, 15 * 60};
const struct throttle_policy THROTTLE_CLAIM = {5, 10, 15 * 60};
const struct throttle_policy THROTTLE_BOOTSTRAP = {3, 10, 15 * 60};

enum mamori_err auth_password_hash(const char *pw, char out[256])
{
    if (crypto_pwhash_str(out, pw, strlen(pw), PW_OPS, PW_MEM) != 0)
        return MAMORI_ERR_NOMEM;
    return MAMORI_OK;
}

bool auth_password_verify(const char *hash, const char *pw)
{
    return crypto_pwhash_str_verify(hash, pw, strlen(pw)) == 0;
}

static char g_dummy[crypto_pwhash_STRBYTES];
static pthread_once_t g_dummy_once = PTHREAD_ONCE_INIT;

static void dummy_init(void)
{
    if (crypto_pwhash_str(g_dummy, "mamori-dummy", 12, PW_OPS, PW_MEM) != 0)
        g_dummy[0] = '\0';
}

void auth_password_dummy(const char *pw)
{
    pthread_once(&g_dummy_once, dummy_init);
    if (g_dummy[0] && crypto_pwhash_str_verify(g_dummy, pw, strlen(pw)) == 0)
        return; /* no user has this hash: the result does not matter, the time does */
}

enum mamori_err auth_password_policy(const char *pw)
{
    size_t n = strlen(pw);
    /* NIST SP 800-63B: length is what matters; no composition rules. */
    if (n < AUTH_PASSWORD_MIN || n > AUTH_PASSWORD_MAX)
        return MAMORI_ERR_INVAL;
    return MAMORI_OK;
}

enum mamori_err auth_token_new(const char *prefix, char out[AUTH_TOKEN_TEXT])
{
    uint8_t r[32];
    char hex[65];
    enum mamori_err rc = crypto_random(r, sizeof(r));
    if (rc)
        return rc;
    crypto_hex(r, sizeof(r), hex);
    snprintf(out, AUTH_TOKEN_TEXT, "%s%s", prefix, hex);
    crypto_wipe(r, sizeof(r));
    crypto_wipe(hex, sizeof(hex));
    return MAMORI_OK;
}

void auth_token_hash(const char *token, char out_hex[65])
{
    uint8_t md[CRYPTO_SHA256_LEN];
    crypto_sha256(token, strlen(token), md);
    crypto_hex(md, sizeof(md), out_hex);
}

enum mamori_err throttle_check(const struct throttle_rec *t, int64_t now, int64_t *retry_after)
{
    int64_t until = t->locked_until > t->next_try_at ? t->locked_until : t->next_try_at;
    if (until > now) {
        *retry_after = until - now;
        return MAMORI_ERR_RATELIMIT;
    }
    *retry_after = 0;
    return MAMORI_OK;
}

void throttle_fail(const struct throttle_policy *p, struct throttle_rec *t, int64_t now)
{
    /* A lock that has run out starts a fresh count. */
    if (t->locked_until && t->locked_until <= now) {
        t->failed = 0;
        t->locked_until = 0;
    }
    t->failed++;
    if (t->failed >= p->lock_after) {
        t->locked_until = now + p->lock_s;
        t->next_try_at = t->locked_until;
    } else if (t->failed >= p->free_attempts) {
        int shift = t->failed - p->free_attempts;
        int64_t delay = shift >= 6 ? 60 : (int64_t)1 << shift;
        t->next_try_at = now + delay;
    }
}
