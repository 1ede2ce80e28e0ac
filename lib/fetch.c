/*
 * lib/fetch.c - see fetch.h.
 */
#include "lib/fetch.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"

struct fetch {
    CURLM *m;
    CURL *e;
    struct curl_slist *hdr;
    fetch_sink sink;
    void *arg;
    uint64_t got, max;
    bool stopped;
    char range[48];
};

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    struct fetch *f = arg;
    size_t len = sz * n;
    if (f->stopped || len > f->max - f->got || !f->sink(p, len, f->arg)) {
        f->stopped = true;
        return 0; /* curl ends the transfer with a write error */
    }
    f->got += len;
    return len;
}

enum mamori_err fetch_start(const char *url, const char *token, const char *ca_path,
                            uint64_t offset, uint64_t max, uint64_t rate, fetch_sink sink,
                            void *arg, struct fetch **out)
{
    char auth[160];
    *out = NULL;
    if (strncmp(url, "https://", 8) != 0 || strlen(token) > 100)
        return MAMORI_ERR_INVAL;
    struct fetch *f = calloc(1, sizeof(*f));
    if (!f)
        return MAMORI_ERR_NOMEM;
    f->sink = sink;
    f->arg = arg;
    f->max = max;
    f->m = curl_multi_init();
    f->e = curl_easy_init();
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    f->hdr = curl_slist_append(NULL, auth);
    crypto_wipe(auth, sizeof(auth));
    if (!f->m || !f->e || !f->hdr) {
        fetch_free(f);
        return MAMORI_ERR_NOMEM;
    }
    CURL *e = f->e;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, f->hdr);
    curl_easy_setopt(e, CURLOPT_CAINFO, ca_path);
    curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 15L);
    /* a stalled transfer ends: under 1 KB/s for 60 s */
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    if (rate) {
        /* libcurl reads up to 100 buffers at once while the socket has
         * data, and checks the limit between such rounds: a buffer of a
         * 500th of the rate keeps a burst under a fifth of a second. */
        long bufsz = rate / 500 < 1024 ? 1024 : rate / 500 > 16384 ? 16384 : (long)(rate / 500);
        curl_easy_setopt(e, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)rate);
        curl_easy_setopt(e, CURLOPT_BUFFERSIZE, bufsz);
    }
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, f);
    if (offset) {
        snprintf(f->range, sizeof(f->range), "%llu-", (unsigned long long)offset);
        curl_easy_setopt(e, CURLOPT_RANGE, f->range);
    }
    if (curl_multi_add_handle(f->m, e) != CURLM_OK) {
        fetch_free(f);
        return MAMORI_ERR_INTERNAL;
    }
    *out = f;
    return MAMORI_OK;
}

enum mamori_err fetch_step(struct fetch *f, long *status)
{
    int running = 0, left = 0;
    *status = 0;
    if (curl_multi_perform(f->m, &running) != CURLM_OK)
        return MAMORI_ERR_CONN;
    if (running)
        return MAMORI_ERR_STATE;
    CURLMsg *msg = curl_multi_info_read(f->m, &left);
    if (!msg || msg->msg != CURLMSG_DONE)
        return MAMORI_ERR_CONN;
    curl_easy_getinfo(f->e, CURLINFO_RESPONSE_CODE, status);
    CURLcode cr = msg->data.result;
    if (cr == CURLE_WRITE_ERROR && f->stopped)
        return MAMORI_ERR_TOOBIG; /* refused by the sink or over max */
    if (cr == CURLE_PEER_FAILED_VERIFICATION || cr == CURLE_SSL_CONNECT_ERROR)
        return MAMORI_ERR_TLS;
    if (cr != CURLE_OK)
        return MAMORI_ERR_CONN;
    bool ranged = f->range[0] != '\0';
    if (*status == 200 && !ranged)
        return MAMORI_OK;
    if (*status == 206 && ranged)
        return MAMORI_OK;
    return *status == 401 || *status == 403 ? MAMORI_ERR_AUTH : MAMORI_ERR_CONN;
}

void fetch_free(struct fetch *f)
{
    if (!f)
        return;
    if (f->m && f->e)
        curl_multi_remove_handle(f->m, f->e);
    curl_easy_cleanup(f->e);
    curl_multi_cleanup(f->m);
    curl_slist_free_all(f->hdr);
    free(f);
}
