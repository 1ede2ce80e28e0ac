/*
 * mqtt-resume-probe - test tool: connects to the broker over TLS with a
 * client certificate, optionally resuming a saved TLS session, sends an MQTT
 * 3.1.1 CONNECT and prints what came back:
 *
 *   reused=0|1 connack=N      (N = CONNACK return code, -1 = connection closed)
 *
 * It exists because revocation must hold on a resumed TLS session, which
 * skips certificate verification (DESIGN.md §1); libmosquitto cannot resume
 * sessions, so this drives OpenSSL directly. The MQTT bytes are a CONNECT
 * of MQTT 3.1.1 §3.1 (clean session, keepalive 60) with CLIENT_ID (the
 * broker admits a device only under its own id; default "resume01").
 *
 *   mqtt-resume-probe PORT CA CERT KEY SESSION_FILE save|resume [1.2|1.3 [CLIENT_ID]]
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/buf.h"

static int tcp(long port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {5, 0};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: mqtt-resume-probe PORT CA CERT KEY SESSION_FILE save|resume "
                        "[1.2|1.3 [CLIENT_ID]]\n");
        return 2;
    }
    char *end;
    long port = strtol(argv[1], &end, 10);
    if (*end || port <= 0 || port > 65535)
        return 2;
    const char *ca = argv[2], *cert = argv[3], *key = argv[4], *sess_file = argv[5];
    int resume = strcmp(argv[6], "resume") == 0;
    int v13 = argc > 7 && strcmp(argv[7], "1.3") == 0;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, v13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, v13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
    if (!SSL_CTX_load_verify_locations(ctx, ca, NULL) ||
        SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        ERR_print_errors_fp(stderr);
        return 2;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int fd = tcp(port);
    if (fd < 0) {
        perror("connect");
        return 2;
    }
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set1_host(ssl, "127.0.0.1");
    if (resume) {
        FILE *f = fopen(sess_file, "r");
        SSL_SESSION *s = f ? PEM_read_SSL_SESSION(f, NULL, NULL, NULL) : NULL;
        if (f)
            fclose(f);
        if (!s || !SSL_set_session(ssl, s)) {
            fprintf(stderr, "cannot load session\n");
            return 2;
        }
        SSL_SESSION_free(s);
    }
    if (SSL_connect(ssl) != 1) {
        printf("reused=0 connack=-2\n"); /* TLS refused */
        return 0;
    }
    /* fixed header, remaining length (one byte: the id is at most 64),
     * protocol name, level 4, flags: clean session, keepalive 60, id */
    const char *cid = argc > 8 ? argv[8] : "resume01";
    size_t cl = strnlen(cid, 65);
    if (cl > 64)
        return 2;
    uint8_t connect_pkt[16 + 64] = {
        0x10, (uint8_t)(12 + cl), 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, (uint8_t)cl};
    memcpy(connect_pkt + 14, cid, cl);
    SSL_write(ssl, connect_pkt, (int)(14 + cl));
    uint8_t in[16];
    int n = SSL_read(ssl, in, sizeof(in));
    int rc = -1;
    struct mbuf b = mbuf_init(in, n > 0 ? (size_t)n : 0);
    uint8_t type, len, flags, code;
    if (mbuf_u8(&b, &type) == MAMORI_OK && type == 0x20 && mbuf_u8(&b, &len) == MAMORI_OK &&
        len == 2 && mbuf_u8(&b, &flags) == MAMORI_OK && mbuf_u8(&b, &code) == MAMORI_OK)
        rc = code;
    printf("reused=%d connack=%d\n", SSL_session_reused(ssl), rc);
    if (!resume && rc == 0) {
        /* TLS 1.3 tickets arrive after the handshake; a read has happened. */
        SSL_SESSION *s = SSL_get1_session(ssl);
        FILE *f = fopen(sess_file, "w");
        if (!s || !f || !PEM_write_SSL_SESSION(f, s))
            return 2;
        fclose(f);
        SSL_SESSION_free(s);
    }
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);
    return 0;
}
