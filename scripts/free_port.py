#!/usr/bin/env python3
"""Prints a TCP port free on 127.0.0.1 now, outside the kernel's range for
source ports: one from that range may be handed to an outgoing connection
before the listener meant for it binds (tests, benchmarks, cluster.sh)."""
import random
import socket
import sys

lo, hi = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
for _ in range(500):
    p = random.randint(10000, 65000)
    if lo <= p <= hi:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    sys.exit(0)
sys.exit("no free port found")
