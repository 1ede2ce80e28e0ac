#!/usr/bin/env bash
# Alert latency: from a device's triggering message to the signed webhook
# at a receiver, end to end (device -> broker + plugin -> hub -> rules ->
# alert -> delivery thread -> HTTP POST), over N devices one after another.
# The trigger is a replayed event (same sequence number, new time): the
# replayed_messages rule raises an alert at once. t0 is taken just before
# the device writes the replay; t1 when the receiver has the POST.
# Loopback only; every wait is bounded.
#
#   bench/alert-latency.sh [BUILD_DIR] [N=200]
set -uo pipefail
BUILD=${1:-build}
N=${2:-200}
cd "$(dirname "$0")/.."
BIN=$PWD/$BUILD/bin
W=$(mktemp -d /tmp/mamori-alert-bench.XXXXXX)
. bench/lib.sh  # PIDS, cleanup, ep, cpu_ms, jget, bench_accounts

cat >"$W/recv.py" <<'PY'
import http.server, json, sys, time
out, portfile = sys.argv[1], sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        t1 = int(time.time() * 1000)
        a = json.loads(body).get("alert", {})
        with open(out, "a") as f:
            f.write("%s %s %d\n" % (a.get("device_id"), a.get("rule"), t1))
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(portfile, "w").write(str(s.server_port))
s.serve_forever()
PY
python3 "$W/recv.py" "$W/recv.log" "$W/recv.port" &
PIDS+=($!)
"$BIN/mamorid" --data "$W/data" --heartbeat 300 >"$W/hub.log" 2>&1 &
HUB=$!; PIDS+=($HUB)
for _ in $(seq 1 100); do [ -f "$W/data/run/endpoints.json" ] && [ -s "$W/recv.port" ] && break; sleep 0.1; done
API=$(ep api); MQTT=$(ep mqtt_port); CA=$W/data/pki/root.crt
bench_accounts
$C webhook add "http://127.0.0.1:$(cat "$W/recv.port")/alerts" >/dev/null
$C factory batch --model bench --count "$N" --out "$W/fleet" >/dev/null
for d in "$W"/fleet/dev-*; do
    curl -s -o /dev/null --cacert "$CA" -H "Authorization: Bearer $(cat "$W/s-owner")" \
        -d "{\"claim_code\":\"$(cat "$d/claim-code")\"}" "$API/api/v1/claims"
done
sleep 2 # the plugin's registry snapshot
echo "# alert-latency $BUILD $N   (commit $(git rev-parse --short HEAD 2>/dev/null), $(nproc) cores, loopback)"
echo "\$ replay an event on each of $N devices, one after another; measure until the webhook POST"
for d in "$W"/fleet/dev-*; do
    id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["device_id"])' "$d/device.json")
    now=$(date +%s%3N)
    { printf '{"v":1,"seq":1,"ts":%s,"body":{"type":"bench"}}\n' "$now"; sleep 0.3
      date +%s%3N >"$W/t0-$id"
      printf '{"v":1,"seq":1,"ts":%s,"body":{"type":"bench","again":1}}\n' "$((now + 1))"; sleep 0.2; } |
        timeout 10 mosquitto_pub -h 127.0.0.1 -p "$MQTT" --cafile "$CA" --cert "$d/device.crt" \
            --key "$d/device.key" -i "$id" -q 1 -t "mamori/v1/d/$id/ev" -l >/dev/null 2>&1
done
for _ in $(seq 1 100); do [ "$(grep -c replayed_messages "$W/recv.log" 2>/dev/null)" -ge "$N" ] && break; sleep 0.1; done
python3 - "$W" "$N" <<'PY'
import os, sys
w, n = sys.argv[1], int(sys.argv[2])
got = {}
for line in open(os.path.join(w, "recv.log")):
    dev, rule, t1 = line.split()
    if rule == "replayed_messages" and dev not in got:
        got[dev] = int(t1)
lat = sorted(got[d] - int(open(os.path.join(w, "t0-" + d)).read()) for d in got)
if not lat:
    print("no alert arrived"); sys.exit(1)
pct = lambda p: lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))]
print("  alerts received %d of %d; latency ms: p50 %d, p90 %d, p99 %d, max %d (target p99 < 1000)"
      % (len(lat), n, pct(50), pct(90), pct(99), lat[-1]))
PY
echo "  hub CPU $(awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$HUB/stat") ms in all"
