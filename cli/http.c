/* cli/http.c - see http.h. Responses are capped at 8 MiB and parsed as untrusted JSON. */
#include "cli/http.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/crypto.h"
#include "common/json.h"

#define MAX_RESPONSE (8 * 1024 * 1024)

static size_t on_data(char *p, size_t sz, size_t n, void *arg)
{
    struct dbuf *d = arg;
    return dbuf_add(d, p, sz * n) ? 0 : sz * n;
}

/* One request: a JSON body, or the contents of an open file streamed as
 * the body (upload, with its size). */
static enum mamori_err perform(const struct api *a, const char *method, const char *path,
                               json_t *body, FILE *upload, curl_off_t upload_size, long *status,
                               json_t **out)
{
    *out = NULL;
    *status = 0;
    CURL *c = curl_easy_init();
    if (!c)
        return MAMORI_ERR_NOMEM;
    char url[1024], auth[200];
    struct curl_slist *hdr = NULL;
    char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct dbuf resp;
    dbuf_init(&resp, MAX_RESPONSE);
    enum mamori_err rc = MAMORI_ERR_CONN;
    snprintf(url, sizeof(url), "%s/api/v1/%s", a->base, path);
    hdr = curl_slist_append(hdr, upload ? "Content-Type: application/octet-stream"
                                        : "Content-Type: application/json");
    hdr = curl_slist_append(hdr, "Accept: application/json");
    if (a->token[0]) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", a->token);
        hdr = curl_slist_append(hdr, auth);
        crypto_wipe(auth, sizeof(auth));
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_CAINFO, a->ca);
    curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, upload ? 3600L : 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
    if (payload)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
    if (upload) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READDATA, upload); /* fread on it */
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, upload_size);
    }
    CURLcode cr = curl_easy_perform(c);
    if (cr != CURLE_OK) {
        fprintf(stderr, "mamorictl: %s: %s\n", url, curl_easy_strerror(cr));
        rc = cr == CURLE_PEER_FAILED_VERIFICATION || cr == CURLE_SSL_CONNECT_ERROR
                 ? MAMORI_ERR_TLS
                 : MAMORI_ERR_CONN;
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    if (resp.len && json_parse_untrusted(resp.p, resp.len, MAX_RESPONSE, out, NULL, 0) != MAMORI_OK)
        *out = NULL;
    rc = MAMORI_OK;
out:
    if (payload) {
        crypto_wipe(payload, strlen(payload)); /* may hold a password */
        free(payload);
    }
    dbuf_free(&resp);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(c);
    return rc;
}

enum mamori_err api_call(const struct api *a, const char *method, const char *path, json_t *body,
                         long *status, json_t **out)
{
    return perform(a, method, path, body, NULL, 0, status, out);
}

enum mamori_err api_upload(const struct api *a, const char *path, const char *file, long *status,
                           json_t **out)
{
    *out = NULL;
    *status = 0;
    FILE *f = fopen(file, "rb");
    if (!f)
        return MAMORI_ERR_NOTFOUND;
    enum mamori_err rc = MAMORI_ERR_IO;
    if (fseeko(f, 0, SEEK_END) == 0) {
        off_t size = ftello(f);
        if (size >= 0 && fseeko(f, 0, SEEK_SET) == 0)
            rc = perform(a, "PUT", path, NULL, f, (curl_off_t)size, status, out);
    }
    fclose(f);
    return rc;
}

void api_print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (s) {
        printf("%s\n", s);
        free(s);
    }
}

int api_print_error(long status, json_t *resp)
{
    json_t *err = json_object_get(resp, "error");
    const char *msg = json_string_value(json_object_get(err, "message"));
    fprintf(stderr, "mamorictl: HTTP %ld: %s\n", status, msg ? msg : "(no message)");
    return 1;
}

int api_print_result(long status, json_t *resp)
{
    if (status >= 200 && status < 300) {
        api_print_json(resp);
        return 0;
    }
    return api_print_error(status, resp);
}

int api_call_print(const struct api *a, const char *method, const char *path, json_t *body)
{
    long st;
    json_t *resp = NULL;
    enum mamori_err rc = api_call(a, method, path, body, &st, &resp);
    json_decref(body);
    if (rc) {
        fprintf(stderr, "mamorictl: %s\n", mamori_strerror(rc));
        return 1;
    }
    int ret = api_print_result(st, resp);
    json_decref(resp);
    return ret;
}
