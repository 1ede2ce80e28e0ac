#!/usr/bin/env python3
"""Claims every identity of a fleet directory for one owner, over one
kept-alive HTTPS connection (tests and benchmarks with hundreds of devices).

    scripts/claim_all.py API CA_FILE OWNER_TOKEN FLEET_DIR

Exits 1, naming the status, at the first claim the hub refuses."""
import http.client
import json
import os
import ssl
import sys
import urllib.parse

api, ca, tok, fleet = sys.argv[1:5]
u = urllib.parse.urlsplit(api)
conn = http.client.HTTPSConnection(u.hostname, u.port,
                                   context=ssl.create_default_context(cafile=ca), timeout=60)
for d in sorted(os.listdir(fleet)):
    code = open(os.path.join(fleet, d, "claim-code")).read().strip()
    conn.request("POST", "/api/v1/claims", json.dumps({"claim_code": code}),
                 {"Authorization": "Bearer " + tok, "Content-Type": "application/json"})
    r = conn.getresponse()
    r.read()
    if r.status // 100 != 2:
        sys.exit("claim refused: %d" % r.status)
