/*
 * mamori/error.h - the one error enum of Mamori.
 *
 * Append-only: never renumber or remove a value (values are stable across
 * releases and appear in logs and API responses). Actions return
 * enum mamori_err; predicates return bool.
 */
#ifndef MAMORI_ERROR_H
#define MAMORI_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define MAMORI_MUST_CHECK __attribute__((warn_unused_result))
#else
#define MAMORI_MUST_CHECK
#endif

enum mamori_err {
    MAMORI_OK = 0,
    MAMORI_ERR_NOMEM = 1,        /* allocation failed */
    MAMORI_ERR_INVAL = 2,        /* invalid argument */
    MAMORI_ERR_TRUNCATED = 3,    /* input ended before a complete item */
    MAMORI_ERR_TOOBIG = 4,       /* input or output exceeds its hard cap */
    MAMORI_ERR_PARSE = 5,        /* malformed input */
    MAMORI_ERR_IO = 6,           /* file or socket I/O failed */
    MAMORI_ERR_CRYPTO = 7,       /* a cryptographic operation failed */
    MAMORI_ERR_VERIFY = 8,       /* signature, chain or MAC did not verify */
    MAMORI_ERR_NOTFOUND = 9,     /* no such object */
    MAMORI_ERR_EXISTS = 10,      /* object already exists */
    MAMORI_ERR_STATE = 11,       /* operation not allowed in the current state */
    MAMORI_ERR_AUTH = 12,        /* authentication failed */
    MAMORI_ERR_FORBIDDEN = 13,   /* authenticated but not allowed */
    MAMORI_ERR_RATELIMIT = 14,   /* too many attempts; try again later */
    MAMORI_ERR_DB = 15,          /* storage failure */
    MAMORI_ERR_CONN = 16,        /* could not connect / connection lost */
    MAMORI_ERR_TLS = 17,         /* TLS set-up or handshake failed */
    MAMORI_ERR_PERM = 18,        /* file ownership or permission unsafe */
    MAMORI_ERR_EXPIRED = 19,     /* credential or token expired */
    MAMORI_ERR_INTERNAL = 20,    /* bug: an invariant did not hold */
    MAMORI_ERR_UNAVAILABLE = 21, /* a required component (e.g. the TPM) cannot be reached */
    MAMORI_ERR_BUSY = 22,        /* in use by another process (e.g. the state directory) */
};

/* Returns a static, human-readable description of err. Never NULL. */
const char *mamori_strerror(enum mamori_err err);

#ifdef __cplusplus
}
#endif
#endif
