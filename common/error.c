/* common/error.c - mamori_strerror(). */
#include "mamori/error.h"

const char *mamori_strerror(enum mamori_err err)
{
    switch (err) {
    case MAMORI_OK:
        return "success";
    case MAMORI_ERR_NOMEM:
        return "out of memory";
    case MAMORI_ERR_INVAL:
        return "invalid argument";
    case MAMORI_ERR_TRUNCATED:
        return "input truncated";
    case MAMORI_ERR_TOOBIG:
        return "input or output too large";
    case MAMORI_ERR_PARSE:
        return "malformed input";
    case MAMORI_ERR_IO:
        return "I/O error";
    case MAMORI_ERR_CRYPTO:
        return "cryptographic operation failed";
    case MAMORI_ERR_VERIFY:
        return "verification failed";
    case MAMORI_ERR_NOTFOUND:
        return "not found";
    case MAMORI_ERR_EXISTS:
        return "already exists";
    case MAMORI_ERR_STATE:
        return "not allowed in the current state";
    case MAMORI_ERR_AUTH:
        return "authentication failed";
    case MAMORI_ERR_FORBIDDEN:
        return "forbidden";
    case MAMORI_ERR_RATELIMIT:
        return "too many attempts, try again later";
    case MAMORI_ERR_DB:
        return "storage error";
    case MAMORI_ERR_CONN:
        return "connection failed";
    case MAMORI_ERR_TLS:
        return "TLS error";
    case MAMORI_ERR_PERM:
        return "unsafe file ownership or permissions";
    case MAMORI_ERR_EXPIRED:
        return "expired";
    case MAMORI_ERR_INTERNAL:
        return "internal error";
    case MAMORI_ERR_UNAVAILABLE:
        return "component unavailable (e.g. TPM)";
    case MAMORI_ERR_BUSY:
        return "in use by another process";
    }
    return "unknown error";
}
