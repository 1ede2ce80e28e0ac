#!/usr/bin/env python3
"""A TLS server that is not the platform, for the integration tests.

    tlsimpostor.py CERT KEY

Listens on 127.0.0.1 on an ephemeral port (printed on stdout), completes
TLS handshakes with the certificate given, and prints one line per client
that went on past the handshake ("accepted") or gave up ("refused").
"""
import socket
import ssl
import sys

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(16)
print(srv.getsockname()[1], flush=True)
while True:
    conn, _ = srv.accept()
    conn.settimeout(5)
    try:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)
            print("accepted", flush=True)
    except (ssl.SSLError, OSError):
        print("refused", flush=True)
